"""The run log: one row per cycle in the warehouse (`ops.pipeline_runs`, read through the view
`marts.pipeline_runs`), and the alert when the pipeline's state changes (ingest/alerts.py).

`scripts/run_pipeline.sh` runs this at the end of every cycle, failed ones included:

    python -m ingest.runlog --started-at 2026-11-28T11:00:00.123Z --status failed \
        --failed-step ingest

It reads what the cycle left behind: the ingest's summary (`$COINCAP_RUN_DIR/ingest_summary.json`,
written by `python -m ingest`), dbt's `run_results.json` when the build failed and `sources.json`
after `dbt source freshness`. The row goes through dlt (pipeline `coincap_runlog_<warehouse>`,
dataset `ops`, append). When the warehouse is down the row stays in dlt's pending load package
and is written first by the next cycle that reaches the warehouse. This step never changes the
cycle's exit status: what goes wrong here is a warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from ingest.alerts import notify, notify_once, redact
from ingest.summary import SUMMARY_FILE

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


def main(argv: list[str] | None = None) -> int:
    from ingest.coincap_pipeline import _configure_logging

    _configure_logging()
    parser = argparse.ArgumentParser(prog="python -m ingest.runlog", description=__doc__)
    parser.add_argument("--started-at", required=True, help="ISO-8601 UTC start of the cycle")
    parser.add_argument("--status", required=True, choices=["succeeded", "failed"])
    parser.add_argument("--failed-step", choices=["ingest", "dbt build"])
    parser.add_argument(
        "--freshness",
        default="not checked",
        choices=["passed", "failed", "not checked"],
        help="whether `dbt source freshness` exited 0 (its results are read from sources.json)",
    )
    args = parser.parse_args(argv)
    load_dotenv(os.environ.get("COINCAP_ENV_FILE") or ".env", override=False)
    run_dir = Path(os.environ.get("COINCAP_RUN_DIR", "").strip() or "data")
    started_at = datetime.fromisoformat(args.started_at.replace("Z", "+00:00"))

    summary = _read_json(run_dir / SUMMARY_FILE) or {}
    error = None
    if args.failed_step == "ingest":
        error = summary.get("error") or "the ingest step failed (see the cycle's log)"
    elif args.failed_step == "dbt build":
        error = _dbt_build_error(started_at)
    freshness, freshness_detail = ("not checked", "")
    if args.freshness != "not checked":
        freshness, freshness_detail = _freshness(args.freshness == "passed", started_at)
    warehouse = os.environ.get("WAREHOUSE", "").strip().lower() or "duckdb"

    row = {
        "run_id": uuid.uuid4().hex,
        "started_at": started_at,
        "finished_at": datetime.now(UTC),
        "status": args.status,
        "failed_step": args.failed_step,
        "source_freshness": freshness,
        "rows_loaded": int(summary.get("rows_loaded", 0)),
        "coincap_requests": int(summary.get("coincap_requests", 0)),
        "coincap_credits": int(summary.get("coincap_credits", 0)),
        "pending_packages_loaded": int(summary.get("pending_packages_loaded", 0)),
        "load_ids": ", ".join(summary.get("load_ids", [])) or None,
        "error": redact(error) if error else None,
        "warehouse": warehouse,
    }
    pipeline = _record(row)
    if pipeline is not None:
        _credits_this_month(pipeline, row, run_dir, warehouse)

    if args.status == "failed" and summary.get("quota_exhausted"):
        notify(run_dir, "quota", row["error"] or "", warehouse)
    elif args.status == "failed":
        step = args.failed_step or "the cycle"
        notify(run_dir, "failed", f"Step: {step}. {row['error'] or ''}".strip(), warehouse)
    elif freshness == "error":
        notify(run_dir, "stale", redact(freshness_detail), warehouse)
    else:
        notify(run_dir, "ok", "", warehouse)
    return 0


def _record(row: dict[str, Any]) -> Any:
    """Appends the row to ops.pipeline_runs through dlt, with rows earlier cycles could not write.

    Extract and normalize are local; only the load needs the warehouse. So when it is down, the
    row waits in dlt's pending package, and the next load writes every pending row at once.
    (`pipeline.run` would first sync state with the warehouse and lose the row when it is down.)
    """
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    from ingest.coincap_pipeline import destination
    from ingest.config import ConfigError, Settings

    try:
        settings = Settings.from_env(require_api_key=False)
    except ConfigError as exc:
        logger.warning("the run log was not written: %s", exc)
        return None
    try:
        pipeline = dlt.pipeline(
            pipeline_name=f"coincap_runlog_{settings.warehouse}",
            pipelines_dir=str(settings.pipelines_dir),
            destination=destination(settings),
            dataset_name=DATASET,
        )
        pipeline.extract(
            [row],
            table_name=TABLE,
            write_disposition="append",
            columns=COLUMNS,  # type: ignore[arg-type]
        )
        pipeline.normalize()
        load_info = pipeline.load()
    except Exception as exc:  # the run log must never change the cycle's outcome
        cause = getattr(exc, "exception", exc)  # PipelineStepFailed wraps the real error
        first_line = (str(cause).strip().splitlines() or [""])[0]
        logger.warning(
            "the run log row was not written to %s.%s (%s: %s); dlt keeps it and the next "
            "cycle writes it",
            DATASET,
            TABLE,
            type(cause).__name__,
            redact(first_line, limit=200),
        )
        return None
    if len(load_info.loads_ids) > 1:
        logger.info(
            "run log: also wrote %d row(s) of earlier cycles that could not reach the warehouse",
            len(load_info.loads_ids) - 1,
        )
    logger.info(
        "run log: %s cycle recorded in %s.%s (%d rows loaded, %d CoinCap request(s), %d credit(s))",
        row["status"],
        DATASET,
        TABLE,
        row["rows_loaded"],
        row["coincap_requests"],
        row["coincap_credits"],
    )
    return pipeline


def _credits_this_month(pipeline: Any, row: dict[str, Any], run_dir: Path, warehouse: str) -> None:
    """Logs the credits used this UTC month and the month-end projection; with
    COINCAP_MONTHLY_CREDITS set, a warning (and one alert a month) when the projection exceeds it.

    The projection is the month so far plus, for the hours left, the pace of the last 24 hours'
    cycles: their median credits per cycle times their cycles per hour. A one-off backfill
    therefore counts once, not as the pace of the rest of the month.
    """
    now = row["finished_at"]
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    try:
        with pipeline.sql_client() as client:
            used = client.execute_sql(
                f"select coalesce(sum(coincap_credits), 0) from {DATASET}.{TABLE} "
                "where started_at >= %s",
                month_start,
            )[0][0]
            recent = client.execute_sql(
                f"select started_at, coincap_credits from {DATASET}.{TABLE} "
                "where started_at >= %s and coincap_credits is not null order by started_at",
                now - timedelta(days=1),
            )
    except Exception as exc:  # noqa: BLE001 - a report, never the cycle's outcome
        logger.warning("credits this month not computed: %s", redact(str(exc), limit=200))
        return
    used = int(used or 0)
    projected = used
    if len(recent) >= 2:
        span_h = (recent[-1][0] - recent[0][0]).total_seconds() / 3600
        if span_h > 0:
            per_cycle = statistics.median(int(spent) for _, spent in recent)
            cycles_per_hour = (len(recent) - 1) / span_h
            hours_left = (next_month - now).total_seconds() / 3600
            projected = int(used + per_cycle * cycles_per_hour * hours_left)
    allowance = _monthly_credits()
    plan = f"plan allows {allowance:,}" if allowance else "no plan set (COINCAP_MONTHLY_CREDITS)"
    pace = "" if len(recent) >= 2 else " (a projection needs two cycles)"
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
            "answering (see the README's credits table)"
        )
        logger.warning("%s", message)
        notify_once(run_dir, "credits", now.strftime("%Y-%m"), message, warehouse)


def _monthly_credits() -> int | None:
    value = os.environ.get("COINCAP_MONTHLY_CREDITS", "").strip()
    return int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None


def _target_dir() -> Path:
    return Path(os.environ.get("DBT_TARGET_PATH", "").strip() or "dbt_project/target")


def _dbt_build_error(started_at: datetime) -> str:
    """The failing nodes of this cycle's `dbt build`, from run_results.json, in one line."""
    results = _read_json(_target_dir() / "run_results.json", newer_than=started_at)
    failing = [
        r
        for r in (results or {}).get("results", [])
        if r.get("status") in ("error", "fail", "runtime error")
    ]
    if not failing:
        return "dbt build failed before running any model or test (see the cycle's log)"
    first = failing[0]
    message = (str(first.get("message") or "").strip().splitlines() or [""])[0]
    more = f" and {len(failing) - 1} more" if len(failing) > 1 else ""
    return f"dbt build failed: {first.get('unique_id')}{more}: {message}"[:500]


def _freshness(passed: bool, started_at: datetime) -> tuple[str, str]:
    """("pass" | "warn" | "error", what is stale) from this cycle's sources.json."""
    results = (_read_json(_target_dir() / "sources.json", newer_than=started_at) or {}).get(
        "results", []
    )
    if not results and passed:
        return "pass", ""
    if not results:
        return "error", "dbt source freshness failed without results (see the cycle's log)"
    rank = {"pass": 0, "warn": 1, "error": 2, "runtime error": 2}
    worst = max(results, key=lambda r: rank.get(r.get("status"), 2))
    status = "error" if rank.get(worst.get("status"), 2) == 2 else worst["status"]
    if status == "pass":
        return status, ""
    source = worst.get("unique_id", "a source").removeprefix("source.coincap_elt.")
    age_min = float(worst.get("max_loaded_at_time_ago_in_s") or 0) / 60
    limit = (worst.get("criteria") or {}).get(f"{status}_after") or {}
    after = f" ({status} after {limit.get('count')} {limit.get('period')}s)" if limit else ""
    return status, (
        f"Source freshness {status}: the newest figures in {source} are {age_min:.0f} min old"
        f"{after}; check that CoinCap's timestamp moves and that cycles run."
    )


def _read_json(path: Path, newer_than: datetime | None = None) -> dict[str, Any] | None:
    """The JSON object in `path`; None when missing, unreadable or older than `newer_than`."""
    try:
        if newer_than is not None and path.stat().st_mtime < newer_than.timestamp() - 1:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


if __name__ == "__main__":
    sys.exit(main())
