import sys

from ingest.coincap_pipeline import main

sys.exit(main())
