"""Runs the CoinCap source into the warehouse's `raw` dataset: the cycle's ingest step, and
`python -m ingest` (the step alone).

Exit status 0 when the snapshot is loaded; 1 with one `error:` line that says what to do
otherwise. A failed extract loads nothing, so the warehouse is left as it was.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
from pathlib import Path

import dlt
from dlt.pipeline.exceptions import PipelineStepFailed

from ingest.clock import report_clock_skew
from ingest.coincap import coincap
from ingest.coincap.helpers import CoinCapClient, CoinCapError
from ingest.coincap.settings import HISTORY_INTERVAL_MS
from ingest.config import ConfigError, Settings, load_environment
from ingest.drift import Watch
from ingest.logs import configure_logging, first_line
from ingest.quota import EXHAUSTED, Quota
from ingest.summary import IngestSummary

logger = logging.getLogger("ingest")

DATASET = "raw"


def main() -> int:
    """`python -m ingest`: the ingest step alone, with the same configuration as a cycle."""
    configure_logging()
    load_environment()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        logger.error("%s", exc)
        return 1
    from ingest.alerts import hide

    hide(settings.secrets)
    return 1 if ingest_step(settings).error else 0


def ingest_step(settings: Settings) -> IngestSummary:
    """The ingest as a cycle runs it: never raises for what goes wrong (a CoinCap error, a bad
    setting, a warehouse that is down, dlt's directory full); `summary.error` says it in one line,
    logged as the step's `error:` line. The summary is what the run log records."""
    summary = IngestSummary()
    try:
        settings.require_api_key()
        run(settings, summary)
    except (ConfigError, CoinCapError) as exc:
        summary.error = summary.error or str(exc)
    except PipelineStepFailed as exc:
        summary.error = summary.error or _explain(exc, settings)
    except OSError as exc:  # dlt's own files outside a step (e.g. saving the run's trace)
        summary.error = _disk_error(exc, settings) or f"{type(exc).__name__}: {exc}"
    finally:
        summary.close()
    if summary.error:
        logger.error("%s", summary.error)
    return summary


def run(settings: Settings, summary: IngestSummary | None = None) -> None:
    summary = summary if summary is not None else IngestSummary()
    started = time.monotonic()
    pipeline = open_pipeline(settings)
    load_pending(pipeline, summary)

    quota = Quota.load(settings.run_dir)
    try:
        attempts = quota.attempts()
    except CoinCapError:
        summary.quota_exhausted = True
        raise
    client = CoinCapClient(
        settings.api_key, settings.base_url, settings.request_timeout_s, max_attempts=attempts
    )
    summary.meter = client.meter
    drift = Watch(client)  # sees what CoinCap sends, compares it after the load
    source = coincap(
        client,
        settings.asset_ids,
        settings.backfill_days,
        series_ends=_series_ends(settings),
        max_history_requests=settings.max_history_requests,
        write_disposition=settings.warehouse.raw_write_disposition,
    )
    try:
        load_info = pipeline.run(source, loader_file_format=settings.warehouse.loader_file_format)
    finally:
        report_clock_skew(settings, client.clock_skew_ms)
        cause = client.last_unavailable
        exhausted = quota.after(cause)
        quota.save(settings.run_dir)
        if exhausted:
            summary.error, summary.quota_exhausted = exhausted, True
        elif quota.state == EXHAUSTED:
            summary.quota_exhausted = True
    rows = pipeline.last_trace.last_normalize_info.row_counts
    summary.rows_loaded = rows.get("assets", 0) + rows.get("asset_history", 0)
    summary.load_ids.extend(load_info.loads_ids)
    logger.info(
        "loaded %d rows into %s.assets and %d into %s.asset_history on %s (load id %s) "
        "in %.1f s; %d CoinCap request(s), %d credit(s)",
        rows.get("assets", 0),
        DATASET,
        rows.get("asset_history", 0),
        DATASET,
        settings.warehouse.engine,
        ", ".join(load_info.loads_ids) or "none",
        time.monotonic() - started,
        client.meter.requests,
        client.meter.credits,
    )
    drift.after_load(settings, pipeline)


def open_pipeline(settings: Settings) -> dlt.Pipeline:
    """The warehouse's CoinCap pipeline (the cycle's and the backfill's): one pipeline, and so
    one local state and set of pending packages, per warehouse, so switching WAREHOUSE never
    mixes one warehouse's state into the other's."""
    pipeline = dlt.pipeline(
        pipeline_name=f"coincap_{settings.warehouse.engine}",
        pipelines_dir=str(settings.pipelines_dir),
        destination=settings.warehouse.destination(),
        dataset_name=DATASET,
    )
    _finish_interrupted_completions(pipeline)
    return pipeline


def load_pending(pipeline: dlt.Pipeline, summary: IngestSummary) -> None:
    """Loads what an earlier run extracted but could not load (warehouse down, process killed).
    First, because `pipeline.run` alone would load it and skip the new data. (Each package
    keeps the file format it was extracted with: Parquet on Spark.)"""
    if not pipeline.has_pending_data:
        return
    logger.info("loading pending load packages left by an earlier cycle")
    pipeline.normalize()
    pending = pipeline.load()
    logger.info("loaded pending load packages %s", ", ".join(pending.loads_ids))
    summary.pending_packages_loaded += len(pending.loads_ids)
    summary.load_ids.extend(pending.loads_ids)


def _series_ends(settings: Settings) -> dict[str, int]:
    """Per asset, the end (ms) of the newest 5-minute slot of marts.fct_asset_price_history:
    what dbt accepted, the one definition of a usable figure. Empty when the mart does not exist
    yet or the warehouse cannot be read now: the marks in dlt's state decide then."""
    warehouse = settings.warehouse
    ids = ", ".join("('" + asset_id.replace("'", "''") + "')" for asset_id in settings.asset_ids)
    sql = (
        "select ids.asset_id, (select max(series.price_at) from marts.fct_asset_price_history "
        "as series where series.asset_id = ids.asset_id) "
        f"from (values {ids}) as ids(asset_id)"
    )
    try:
        with warehouse.cycle_reader("coincap-elt ingest") as query:
            if "marts.fct_asset_price_history" not in warehouse.relations(query, ("marts",)):
                logger.info("the marts are not built yet; dlt's state decides gaps")
                return {}
            rows = query(sql)
    except Exception as exc:  # noqa: BLE001 - any failure: fall back to dlt's state
        logger.info(
            "the series in the marts was not read (%s); dlt's state decides gaps",
            first_line(str(exc))[:160],
        )
        return {}
    slot_ms = HISTORY_INTERVAL_MS
    return {
        asset_id: int(price_at.timestamp() * 1000) // slot_ms * slot_ms + slot_ms - 1
        for asset_id, price_at in rows
        if price_at is not None
    }


def _finish_interrupted_completions(pipeline: dlt.Pipeline) -> None:
    """Finishes dlt's last move for packages a killed cycle left half-completed.

    dlt completes a load in three steps: the `_dlt_loads` row in the warehouse, the marker
    `package_completed.json` in the package, then the move of the package from `load/normalized`
    to `load/loaded`. Killed between the last two, the package looks pending but dlt refuses
    to complete it again (LoadPackageAlreadyCompleted), so every later cycle would fail. Its
    data is already in the warehouse: doing the move dlt did not get to is all that is left.
    """
    storage = pipeline._get_load_storage()  # dlt has no public call for this repair
    for load_id in pipeline.list_normalized_load_packages():
        if storage.normalized_packages.is_package_completed(load_id):
            storage.storage.rename_tree(
                storage.get_normalized_package_path(load_id),
                storage.get_loaded_package_path(load_id),
            )
            logger.warning(
                "load package %s was loaded by an earlier cycle that was stopped before dlt "
                "filed it; filed it now",
                load_id,
            )


_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


def _disk_error(exc: BaseException, settings: Settings | None) -> str | None:
    """A one-line message when dlt could not write its own files, else None."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if cause is None or cause.errno not in (*_FULL, *_UNWRITABLE):
        return None
    where = settings.pipelines_dir.parent if settings else Path("data/dlt")
    problem = "is full" if cause.errno in _FULL else "is not writable"
    fix = "free space there" if problem == "is full" else "make it writable"
    return (
        f"dlt's data directory {where} (DLT_DATA_DIR) {problem} ({cause.strerror}); {fix} "
        "and the next cycle goes on from where this one stopped"
    )


def _explain(exc: PipelineStepFailed, settings: Settings | None = None) -> str:
    """The CoinCap error behind a failed step, else the step and its first line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (CoinCapError, ConfigError)):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    disk = _disk_error(exc, settings)
    if disk:
        return disk
    cause = exc.exception
    return (
        f"the {exc.step} step failed: {type(cause).__name__}: {first_line(str(cause))}; "
        "check that the warehouse is reachable, the next cycle retries what was extracted"
    )


if __name__ == "__main__":
    sys.exit(main())
