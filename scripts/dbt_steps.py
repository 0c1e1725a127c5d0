"""The cycle's dbt steps, in one dbt process: `dbt build` (without unit tests), then `dbt source
freshness`, then, when DBT_DOCS_DIR is set, `dbt docs generate --static` copied to
DBT_DOCS_DIR/index.html.

scripts/run_pipeline.sh runs this after the ingest. Each step is the dbt command of the same
name with the arguments given here (e.g. `--project-dir dbt_project --profiles-dir profiles`)
and prints what that command prints; running them through dbt's documented programmatic entry
point (dbtRunner) imports dbt and parses the project once instead of three times, about 3 s of
every 5-minute cycle on a small VM.

Exit status: 0 the build passed and the data is fresh; 1 the build failed (nothing after it
runs); 3 the build passed but `dbt source freshness` failed (stale data: a warning, not a failed
cycle). A docs site that cannot be written is a warning and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dbt.cli.main import dbtRunner

BUILD_FAILED = 1
STALE = 3


def main(args: list[str]) -> int:
    parsed = dbtRunner().invoke(["parse", "--quiet", *args])
    if not parsed.success:
        return BUILD_FAILED  # dbt printed why (a broken model, a profile it cannot read, ...)
    dbt = dbtRunner(manifest=parsed.result)  # the steps below reuse this parse

    # Unit tests check the models' SQL against fixed rows, not the data: they run in the test
    # suite (tests/test_dbt_unit_tests.py), not every 5 minutes (dbt's docs advise the same).
    if not dbt.invoke(["build", "--exclude-resource-type", "unit_test", *args]).success:
        return BUILD_FAILED
    fresh = dbt.invoke(["source", "freshness", *args]).success

    docs_dir = os.environ.get("DBT_DOCS_DIR")
    if docs_dir:
        _refresh_docs(dbt, args, Path(docs_dir))
    return 0 if fresh else STALE


def _refresh_docs(dbt: dbtRunner, args: list[str], docs_dir: Path) -> None:
    target = Path(os.environ.get("DBT_TARGET_PATH") or "dbt_project/target")
    try:
        if not dbt.invoke(["docs", "generate", "--static", *args]).success:
            raise RuntimeError("dbt docs generate failed (see the lines above)")
        docs_dir.mkdir(parents=True, exist_ok=True)
        partial = docs_dir / ".index.html.tmp"
        shutil.copyfile(target / "static_index.html", partial)
        partial.replace(docs_dir / "index.html")  # atomic: the site never serves half a page
    except (OSError, RuntimeError) as exc:
        _say(f"warning: the docs site could not be refreshed ({exc}); it shows the previous build")
        return
    _say(f"docs site refreshed in {docs_dir}")


def _say(message: str) -> None:
    # run_pipeline.sh puts the UTC timestamp in front of every line this process prints
    print(f"dbt_steps: {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
