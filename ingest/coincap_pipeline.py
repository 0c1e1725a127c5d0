"""Runs the CoinCap source into the warehouse's `raw` dataset: `python -m ingest`.

Exit status 0 when the snapshot is loaded; 1 with one `error:` line that says what to do
otherwise. A failed extract loads nothing, so the warehouse is left as it was.
"""

from __future__ import annotations

import logging
import os
import sys
import time

# No network for telemetry here or in production containers; must be set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
from dlt.common.destination import Destination  # noqa: E402
from dlt.pipeline.exceptions import PipelineStepFailed  # noqa: E402

from ingest.coincap import coincap  # noqa: E402
from ingest.coincap.helpers import CoinCapClient, CoinCapError  # noqa: E402
from ingest.config import ConfigError, Settings  # noqa: E402
from ingest.runlog import IngestSummary  # noqa: E402

logger = logging.getLogger("ingest")

DATASET = "raw"


def main() -> int:
    _configure_logging()
    summary = IngestSummary()  # rows, requests and error, for the cycle's run log
    try:
        settings = Settings.from_env()
        run(settings, summary)
    except (ConfigError, CoinCapError) as exc:
        summary.error = str(exc)
        logger.error("%s", exc)
        return 1
    except PipelineStepFailed as exc:
        summary.error = _explain(exc)
        logger.error("%s", summary.error)
        return 1
    finally:
        summary.save()
    return 0


def run(settings: Settings, summary: IngestSummary | None = None) -> None:
    summary = summary if summary is not None else IngestSummary()
    started = time.monotonic()
    pipeline = dlt.pipeline(
        # One pipeline (and so one local state and set of pending packages) per warehouse:
        # switching WAREHOUSE never mixes one warehouse's state into the other's.
        pipeline_name=f"coincap_{settings.warehouse}",
        pipelines_dir=str(settings.pipelines_dir),
        destination=destination(settings),
        dataset_name=DATASET,
    )
    if pipeline.has_pending_data:
        # A cycle that failed after extracting (warehouse down, process killed) left its
        # snapshot on disk. Load it first: `run` alone would load it and skip today's snapshot.
        logger.info("loading pending load packages left by an earlier cycle")
        pipeline.normalize()
        pending = pipeline.load()
        logger.info("loaded pending load packages %s", ", ".join(pending.loads_ids))
        summary.pending_packages_loaded = len(pending.loads_ids)
        summary.load_ids.extend(pending.loads_ids)

    client = CoinCapClient(settings.api_key, settings.base_url)
    summary.client = client
    load_info = pipeline.run(coincap(client, settings.asset_ids, settings.backfill_days))
    rows = pipeline.last_trace.last_normalize_info.row_counts
    summary.rows_loaded = rows.get("assets", 0) + rows.get("asset_history", 0)
    summary.load_ids.extend(load_info.loads_ids)
    logger.info(
        "loaded %d rows into %s.assets and %d into %s.asset_history on %s (load id %s) "
        "in %.1f s, %d CoinCap request(s)",
        rows.get("assets", 0),
        DATASET,
        rows.get("asset_history", 0),
        DATASET,
        settings.warehouse,
        ", ".join(load_info.loads_ids) or "none",
        time.monotonic() - started,
        client.requests_made,
    )


def destination(settings: Settings) -> Destination:
    if settings.warehouse == "duckdb":
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(credentials=str(settings.duckdb_path))
    return dlt.destinations.postgres(
        credentials=dict(settings.postgres, port=int(settings.postgres["port"]))
    )


def _explain(exc: PipelineStepFailed) -> str:
    """The CoinCap error behind a failed step, else the step and its first line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, (CoinCapError, ConfigError)):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    first_line = str(exc.exception).strip().splitlines()[0] if str(exc.exception) else ""
    return (
        f"the {exc.step} step failed: {type(exc.exception).__name__}: {first_line[:300]}; "
        "check that the warehouse is reachable, the next cycle retries what was extracted"
    )


def _configure_logging() -> None:
    """One line per event, each starting with an ISO-8601 UTC timestamp."""
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    formatter = logging.Formatter(
        "%(asctime)s %(name)s: %(levelname)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


if __name__ == "__main__":
    sys.exit(main())
