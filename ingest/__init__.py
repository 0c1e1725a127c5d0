"""CoinCap ELT: the pipeline's Python package.

It holds:

- the dlt source for CoinCap v3 (`ingest/coincap/`: the source, its HTTP client and constants),
  which loads CoinCap's figures into the `raw` schema;
- the cycle (`ingest/cycle.py`): the lock, the ingest, `dbt build` and source freshness, the
  cycle's row in the run log and the alerts, in one process;
- the operator's command line `coincap-elt` (`ingest/cli.py`): `run`, `backfill`, `status`,
  `doctor` and `metabase`;
- backups (`ingest/backup.py`): `coincap-elt backup` and `coincap-elt restore`.

`scripts/run_pipeline.sh` (what cron runs) is `coincap-elt run`; `python -m ingest` runs the
ingest step alone.
"""
