"""One CoinCap ELT cycle, in one process: the lock, the ingest (dlt), `dbt build` + `dbt source
freshness` (+ the docs site), then, failed or not, the cycle's row in the run log and, when the
pipeline's state changed, an alert. `coincap-elt run` and `scripts/run_pipeline.sh` (what cron
runs) call `run_cycle`; the steps hand their results to each other in memory.

Exit status 0 only when the ingest and `dbt build` succeeded (stale data is an alert and a
warning, not a failure). A cycle started while another one runs exits 0 at once and says so.
Every line starts with an ISO-8601 UTC timestamp.

It reads nothing from the environment itself: the command line hands it the Settings
(ingest/config.py), whose run directory (COINCAP_RUN_DIR) holds the lock, the heartbeat
`last_success`, the alert and quota states, and whose DBT_DOCS_DIR, when set, is where the
static docs site is regenerated after each good build.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.config import Settings
    from ingest.summary import IngestSummary
    from ingest.transform import DbtOutcome

LOCK_FILE = "run_pipeline.lock"
HEARTBEAT_FILE = "last_success"

logger = logging.getLogger("run_pipeline")


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


def run_cycle(settings: Settings) -> int:
    run_dir = settings.run_dir
    with cycle_lock(run_dir) as locked:
        if not locked:
            logger.info(
                "another cycle is running (or a backfill, or `coincap-elt status` reading "
                "DuckDB: it holds %s); this one exits without doing anything",
                run_dir / LOCK_FILE,
            )
            return 0
        return _locked_cycle(settings)


def _locked_cycle(settings: Settings) -> int:
    from ingest.coincap_pipeline import ingest_step
    from ingest.transform import DbtOutcome, run_dbt_steps

    started, started_at = time.monotonic(), datetime.now(UTC)
    logger.info("cycle started: warehouse %s", settings.warehouse.engine)

    summary = ingest_step(settings)
    if summary.error:
        logger.info(
            "error: the ingest step failed (see the line above); dbt build skipped, "
            "the marts are unchanged"
        )
        _record(settings, started_at, summary, None, "ingest")
        return 1

    try:
        dbt = run_dbt_steps(settings)
    except Exception as exc:  # noqa: BLE001 - dbt itself broke: a failed build, said in one line
        dbt = DbtOutcome(build_error=f"dbt stopped: {type(exc).__name__}: {exc}"[:500])
    if not dbt.built:
        logger.info(
            "error: dbt build failed (see the lines above); raw holds the new snapshot, "
            "the next cycle builds it"
        )
        _record(settings, started_at, summary, dbt, "dbt build")
        return 1

    heartbeat = settings.run_dir / HEARTBEAT_FILE
    heartbeat.write_text(datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n")
    if dbt.freshness == "error":
        logger.info(
            "warning: source freshness failed (see the lines above): CoinCap's newest figures "
            "are too old"
        )
    from ingest.quality import check_after_build

    check_after_build(settings)  # warnings and alerts on CoinCap's answers, never a failure
    _record(settings, started_at, summary, dbt, None)
    logger.info("cycle finished in %d s", time.monotonic() - started)
    return 0


def _record(
    settings: Settings,
    started_at: datetime,
    summary: IngestSummary,
    dbt: DbtOutcome | None,
    failed_step: str | None,
) -> None:
    """The run log, the alert and the backups' age check; they never change the cycle's
    outcome."""
    from ingest.runlog import record_run

    try:
        record_run(settings, started_at, summary, dbt, failed_step)
    except Exception as exc:  # noqa: BLE001
        logger.info(
            "warning: the run log step failed (%s: %s); the cycle's outcome stands",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )
    # the newest backup's age, when backups are scheduled: one alert per stale episode
    from ingest.backup_watch import watch

    watch(settings)
