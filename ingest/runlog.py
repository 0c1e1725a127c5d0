"""The run log: one row per cycle in the warehouse (`ops.pipeline_runs`, read through the view
`marts.pipeline_runs`), and the alert when the pipeline's state changes (ingest/alerts.py).

The cycle (ingest/cycle.py) calls `record_run` at its end, failed cycles included, with what its
steps returned: the ingest's summary and dbt's outcome. The row goes through dlt (pipeline
`coincap_runlog_<warehouse>`, dataset `ops`, append). When the warehouse is down the row stays
in dlt's pending load package and is written first by the next cycle that reaches the
warehouse. This step never changes the cycle's exit status: what goes wrong here is a warning.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingest.alerts import notify, notify_once, redact
from ingest.credits import RUNS_SQL, month_credits, since
from ingest.logs import first_line
from ingest.summary import IngestSummary
from ingest.transform import DbtOutcome

if TYPE_CHECKING:
    from ingest.config import Settings

logger = logging.getLogger("ingest.runlog")

DATASET = "ops"
TABLE = "pipeline_runs"
COLUMNS: dict[str, dict[str, Any]] = {
    "run_id": {"data_type": "text", "nullable": False},
    "started_at": {"data_type": "timestamp", "nullable": False},
    "finished_at": {"data_type": "timestamp", "nullable": False},
    "status": {"data_type": "text", "nullable": False},
    "failed_step": {"data_type": "text", "nullable": True},
    "source_freshness": {"data_type": "text", "nullable": False},
    "rows_loaded": {"data_type": "bigint", "nullable": False},
    "coincap_requests": {"data_type": "bigint", "nullable": False},
    "coincap_credits": {"data_type": "bigint", "nullable": True},
    "pending_packages_loaded": {"data_type": "bigint", "nullable": False},
    "load_ids": {"data_type": "text", "nullable": True},
    "error": {"data_type": "text", "nullable": True},
    "warehouse": {"data_type": "text", "nullable": False},
}


def record_run(
    settings: Settings,
    started_at: datetime,
    summary: IngestSummary,
    dbt: DbtOutcome | None,
    failed_step: str | None = None,
    alert: bool = True,
) -> None:
    """The cycle's row and its alert. `dbt` is None when the build did not run (ingest failed)."""
    error = None
    if failed_step == "ingest":
        error = summary.error or "the ingest step failed (see the cycle's log)"
    elif failed_step == "dbt build" and dbt is not None:
        error = dbt.build_error or "dbt build failed (see the cycle's log)"
    freshness, detail = (dbt.freshness, dbt.freshness_detail) if dbt else ("not checked", "")
    warehouse = settings.warehouse.engine
    status = "failed" if failed_step else "succeeded"
    row = {
        "run_id": uuid.uuid4().hex,
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "status": status,
        "failed_step": failed_step,
        "source_freshness": freshness,
        "rows_loaded": summary.rows_loaded,
        "coincap_requests": summary.coincap_requests,
        "coincap_credits": summary.coincap_credits,
        "pending_packages_loaded": summary.pending_packages_loaded,
        "load_ids": ", ".join(summary.load_ids) or None,
        "error": redact(error) if error else None,
        "warehouse": warehouse,
    }
    if _record(settings, row) is not None:
        _credits_this_month(settings, row)

    if not alert:
        return
    if status == "failed" and summary.quota_exhausted:
        notify(settings, "quota", row["error"] or "")
    elif status == "failed":
        notify(settings, "failed", f"Step: {failed_step}. {row['error'] or ''}".strip())
    elif freshness == "error":
        notify(settings, "stale", redact(detail))
    else:
        notify(settings, "ok", "")


def _record(settings: Settings, row: dict[str, Any]) -> Any:
    """Appends the row to ops.pipeline_runs through dlt, with rows earlier cycles could not write.

    Extract and normalize are local; only the load needs the warehouse. So when it is down, the
    row waits in dlt's pending package, and the next load writes every pending row at once.
    (`pipeline.run` would first sync state with the warehouse and lose the row when it is down.)
    Returns the pipeline, or None when the row was not written.
    """
    import dlt

    try:
        pipeline = dlt.pipeline(
            pipeline_name=f"coincap_runlog_{settings.warehouse.engine}",
            pipelines_dir=str(settings.pipelines_dir),
            destination=settings.warehouse.destination(),
            dataset_name=DATASET,
        )
        pipeline.extract(
            [row],
            table_name=TABLE,
            write_disposition="append",
            columns=COLUMNS,  # type: ignore[arg-type]
            loader_file_format=settings.warehouse.loader_file_format,  # type: ignore[arg-type]
        )
        pipeline.normalize()
        load_info = pipeline.load()
    except Exception as exc:  # the run log must never change the cycle's outcome
        cause = getattr(exc, "exception", exc)  # PipelineStepFailed wraps the real error
        logger.warning(
            "the run log row was not written to %s.%s (%s: %s); dlt keeps it and the next "
            "cycle writes it",
            DATASET,
            TABLE,
            type(cause).__name__,
            redact(first_line(str(cause)), limit=200),
        )
        return None
    if len(load_info.loads_ids) > 1:
        logger.info(
            "run log: also wrote %d row(s) of earlier cycles that could not reach the warehouse",
            len(load_info.loads_ids) - 1,
        )
    logger.info(
        "run log: %s run recorded in %s.%s (%d rows loaded, %d CoinCap request(s), %d credit(s))",
        row["status"],
        DATASET,
        TABLE,
        row["rows_loaded"],
        row["coincap_requests"],
        row["coincap_credits"],
    )
    return pipeline


def _credits_this_month(settings: Settings, row: dict[str, Any]) -> None:
    """Logs the credits used this UTC month and the month-end projection (ingest/credits.py);
    with COINCAP_MONTHLY_CREDITS set, a warning (and one alert a month) when the projection
    exceeds it."""
    now = row["finished_at"]
    warehouse = settings.warehouse
    try:
        with warehouse.cycle_reader("coincap-elt runlog") as query:
            if warehouse.engine == "spark":  # the first row: Spark learns the table
                from ingest.lake import register_tables

                register_tables(warehouse, query, datasets=(DATASET,), new_only=True)
            runs = query(RUNS_SQL.format(table=f"{DATASET}.{TABLE}"), since(now))
    except Exception as exc:  # noqa: BLE001 - a report, never the cycle's outcome
        logger.warning("credits this month not computed: %s", redact(str(exc), limit=200))
        return
    month = month_credits(now, runs or [])
    allowance = settings.monthly_credits
    used, projected = month.used, month.projected
    plan = f"plan allows {allowance:,}" if allowance else "no plan set (COINCAP_MONTHLY_CREDITS)"
    pace = "" if month.has_pace else " (a projection needs two cycles)"
    logger.info(
        "credits: %d this cycle, %s this month (UTC), about %s by month end at the last "
        "24 hours' pace%s; %s",
        row["coincap_credits"],
        f"{used:,}",
        f"{projected:,}",
        pace,
        plan,
    )
    if allowance and projected > allowance:
        message = (
            f"CoinCap credits: {used:,} used this month, about {projected:,} projected by month "
            f"end, over the plan's {allowance:,} (COINCAP_MONTHLY_CREDITS); slow the schedule "
            "(PIPELINE_SCHEDULE), track fewer assets or upgrade the plan before CoinCap stops "
            "answering (see docs/operations.md, credits)"
        )
        logger.warning("%s", message)
        notify_once(settings, "credits", month.month, message)
