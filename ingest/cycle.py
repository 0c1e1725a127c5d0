"""One CoinCap ELT cycle, in one process: the lock, the ingest (dlt), `dbt build` + `dbt source
freshness` (+ the docs site), then, failed or not, the cycle's row in the run log and, when the
pipeline's state changed, an alert. `coincap-elt run` and `scripts/run_pipeline.sh` (what cron
runs) call `run_cycle`; the steps hand their results to each other in memory.

Exit status 0 only when the ingest and `dbt build` succeeded (stale data is an alert and a
warning, not a failure). A cycle started while another one runs exits 0 at once and says so.
Every line starts with an ISO-8601 UTC timestamp.

Besides the public variables (README, "Configuration") it reads COINCAP_RUN_DIR (the lock, the
heartbeat `last_success`, the alert and quota states; default data/), DBT_DOCS_DIR (when set,
the static docs site is regenerated there after each good build) and COINCAP_ENV_FILE (the
`.env` file that fills in what the environment does not set; default: the repo root's `.env`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.summary import IngestSummary
    from ingest.transform import DbtOutcome

# Where dbt_project/ and profiles/ are: COINCAP_HOME (the image sets /app, where the package is
# installed into site-packages), else the checkout this package was imported from (`make install`
# installs it in editable mode).
ROOT = Path(os.environ.get("COINCAP_HOME", "").strip() or Path(__file__).resolve().parent.parent)
LOCK_FILE = "run_pipeline.lock"
HEARTBEAT_FILE = "last_success"

logger = logging.getLogger("run_pipeline")


def prepare_environment(create_run_dir: bool = True) -> Path:
    """What every command does first: UTC, no telemetry, the `.env` file, the repo root as the
    working directory (relative paths mean the same for dlt and dbt). Returns the run directory,
    created unless `create_run_dir` is False (`coincap-elt doctor` reports an unwritable one
    instead of stopping on it)."""
    os.environ["TZ"] = "UTC"
    time.tzset()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.chdir(ROOT)
    from dotenv import load_dotenv

    env_file = os.environ.get("COINCAP_ENV_FILE", "").strip() or str(ROOT / ".env")
    os.environ["COINCAP_ENV_FILE"] = env_file
    load_dotenv(env_file, override=False)
    run_dir = Path(os.environ.get("COINCAP_RUN_DIR", "").strip() or ROOT / "data").resolve()
    if create_run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["COINCAP_RUN_DIR"] = str(run_dir)
    return run_dir


@contextmanager
def cycle_lock(run_dir: Path, wait: bool = False) -> Iterator[bool]:
    """The cycle lock (flock on $COINCAP_RUN_DIR/run_pipeline.lock, as the container's entrypoint
    and flock(1) see it). Yields False when another cycle holds it and `wait` is False."""
    with open(run_dir / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_cycle() -> int:
    run_dir = prepare_environment()
    with cycle_lock(run_dir) as locked:
        if not locked:
            logger.info(
                "another cycle is running (or a backfill, or `coincap-elt status` reading "
                "DuckDB: it holds %s); this one exits without doing anything",
                run_dir / LOCK_FILE,
            )
            return 0
        return _locked_cycle(run_dir)


def _locked_cycle(run_dir: Path) -> int:
    from ingest.coincap_pipeline import ingest_step
    from ingest.transform import DbtOutcome, run_dbt_steps

    started, started_at = time.monotonic(), datetime.now(UTC)
    logger.info("cycle started: warehouse %s", os.environ.get("WAREHOUSE", "").strip() or "duckdb")

    summary = ingest_step()
    if summary.error:
        logger.info(
            "error: the ingest step failed (see the line above); dbt build skipped, "
            "the marts are unchanged"
        )
        _record(run_dir, started_at, summary, None, "ingest")
        return 1

    try:
        dbt = run_dbt_steps()
    except Exception as exc:  # noqa: BLE001 - dbt itself broke: a failed build, said in one line
        dbt = DbtOutcome(build_error=f"dbt stopped: {type(exc).__name__}: {exc}"[:500])
    if not dbt.built:
        logger.info(
            "error: dbt build failed (see the lines above); raw holds the new snapshot, "
            "the next cycle builds it"
        )
        _record(run_dir, started_at, summary, dbt, "dbt build")
        return 1

    heartbeat = run_dir / HEARTBEAT_FILE
    heartbeat.write_text(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
    if dbt.freshness == "error":
        logger.info(
            "warning: source freshness failed (see the lines above): CoinCap's newest figures "
            "are too old"
        )
    _record(run_dir, started_at, summary, dbt, None)
    logger.info("cycle finished in %d s", time.monotonic() - started)
    return 0


def _record(
    run_dir: Path,
    started_at: datetime,
    summary: IngestSummary,
    dbt: DbtOutcome | None,
    failed_step: str | None,
) -> None:
    """The run log and the alert; they never change the cycle's outcome."""
    from ingest.runlog import record_run

    try:
        record_run(run_dir, started_at, summary, dbt, failed_step)
    except Exception as exc:  # noqa: BLE001
        logger.info(
            "warning: the run log step failed (%s: %s); the cycle's outcome stands",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )
