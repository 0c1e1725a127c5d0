"""`coincap-elt status`: the pipeline's state at a glance, for an operator or (`--json`) a script.

It shows the last cycles from the run log, how fresh the marts are (the newest observation, the
last cycle's source freshness, the heartbeat), the alert and CoinCap quota states, dlt's pending
load packages, the known holes of the 5-minute series and the month's CoinCap credits.

It only reads: the warehouse through a read-only connection (DuckDB's read-only open, a
PostgreSQL session in read-only mode; on Spark a Thrift Server session, which has no read-only
mode, sending only queries), the run directory's files and dlt's pipeline directories.
It never imports dbt, never calls CoinCap and spends no credits, so it is safe to run at any
time, also while a cycle runs (on DuckDB, while a cycle holds the file for writing, it says the
warehouse is busy and exits 1).

Exit status 0 when the state could be read, whatever the state is; 1 with one `error:` line that
says what to do when it could not (bad configuration, warehouse missing, busy or unreachable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.alerts import last_state, redact
from ingest.config import Settings
from ingest.credits import RUNS_SQL, month_credits, since
from ingest.cycle import HEARTBEAT_FILE, LOCK_FILE, cycle_lock
from ingest.drift import render_changes, unacknowledged
from ingest.logs import first_line
from ingest.quality import find as find_quality
from ingest.warehouse import Query, Warehouse, WarehouseError

# the run log: the public view first; the table behind it has a cycle's row as soon as the cycle
# wrote it, while the view shows the table only from the build after the first row
RUN_LOGS = ("marts.pipeline_runs", "ops.pipeline_runs")
RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "failed_step",
    "source_freshness",
    "rows_loaded",
    "coincap_requests",
    "coincap_credits",
    "pending_packages_loaded",
    "load_ids",
    "error",
    "warehouse",
)
LAST_CYCLES = 10
NEWEST_GAPS = 5
PIPELINES = ("coincap_{}", "coincap_runlog_{}")  # the ingest's and the run log's dlt pipelines


class StatusError(Exception):
    """The state could not be read. Its message is one line that says what to do."""


def main(settings: Settings, as_json: bool = False) -> int:
    """The command: the report on stdout, or one `error:` line on stderr and exit 1."""
    try:
        report = collect(settings, settings.run_dir, datetime.now(UTC))
    except (StatusError, WarehouseError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0


def collect(settings: Settings, run_dir: Path, now: datetime) -> dict[str, Any]:
    """Everything the status shows, as the JSON object `--json` prints."""
    with connect(settings, run_dir) as query:
        existing = _relations(settings.warehouse, query)
        run_log, cycles = _cycles(query, existing)
        newest = _newest_observation(query, existing)
        gaps = _gaps(query, existing)
        schema_changes = unacknowledged(query, existing)
        quality = (
            [finding.as_dict() for finding in find_quality(query, settings.asset_ids, existing)]
            if "marts.fct_asset_price_history" in existing
            else None  # not built yet
        )
        runs = query(RUNS_SQL.format(table=run_log), since(now)) if run_log else []
    month = month_credits(now, runs)
    heartbeat = _heartbeat(run_dir)
    alert = last_state(run_dir)
    backup = _backup(settings, now)
    return {
        "checked_at": _iso(now),
        "warehouse": settings.warehouse.engine,
        "warehouse_location": settings.warehouse.location,
        "run_log": run_log,
        "cycles": cycles,
        "freshness": {
            "newest_observation_at": _iso(newest),
            "newest_observation_age_s": _age_s(now, newest),
            "source_freshness": cycles[0]["source_freshness"] if cycles else None,
            "last_success_at": _iso(heartbeat),
            "last_success_age_s": _age_s(now, heartbeat),
        },
        "alert": {"state": alert["state"], "since": _iso_text(alert.get("since"))},
        "quota": _quota(run_dir),
        "pending_packages": _pending_packages(settings),
        "gaps": gaps,
        "schema_changes": schema_changes,
        "quality": quality,
        "credits": {
            "month": month.month,
            "used_this_month": month.used,
            "projected_month_end": month.projected,
            "has_pace": month.has_pace,
            "monthly_allowance": settings.monthly_credits,
        },
        "backup": backup,
    }


# --------------------------------------------------------------------------- the warehouse
@contextmanager
def connect(settings: Settings, run_dir: Path) -> Iterator[Query]:
    """A read-only connection as `query(sql, *params)` (params written `%s`), closed at once.

    On DuckDB a reader keeps a cycle from opening the file for writing, so status holds the cycle
    lock while it reads (when a cycle ever ran from this run directory): a cycle starting in that
    moment skips, as it does behind a running cycle, instead of failing its ingest; the next
    cycle fills the 5-minute slot from history. A running cycle makes status say so."""
    warehouse = settings.warehouse
    if warehouse.engine == "duckdb":
        # no cycle ever ran from this run directory: nothing to lock, and status creates no file
        lock = cycle_lock(run_dir) if (run_dir / LOCK_FILE).exists() else nullcontext(True)
        with lock as free:
            if not free:
                raise StatusError(
                    f"the warehouse {warehouse.duckdb_path} is busy (a cycle or a backfill holds "
                    f"{run_dir / LOCK_FILE}, and DuckDB lets no other process open the file "
                    "meanwhile); try again in a minute"
                )
            with warehouse.reader() as query:
                yield query
    else:
        with warehouse.reader("coincap-elt status") as query:
            yield query


def _relations(warehouse: Warehouse, query: Query) -> set[str]:
    """The tables and views status reads that exist (a new warehouse has none of them)."""
    return warehouse.relations(query, ("raw", "marts", "ops"))


def _cycles(query: Query, existing: set[str]) -> tuple[str | None, list[dict[str, Any]]]:
    """The last cycles, newest first, and the run log they come from (None: no cycle yet)."""
    for table in RUN_LOGS:
        if table not in existing:
            continue
        rows = query(
            f"select {', '.join(RUN_COLUMNS)} from {table} "
            f"order by started_at desc limit {LAST_CYCLES}"
        )
        if rows:
            return table, [_cycle(row) for row in rows]
    return None, []


def _cycle(row: tuple[Any, ...]) -> dict[str, Any]:
    cycle = dict(zip(RUN_COLUMNS, row, strict=True))
    cycle["started_at"], cycle["finished_at"] = _iso(row[1]), _iso(row[2])
    cycle["error"] = redact(cycle["error"]) if cycle["error"] else None
    return cycle


def _newest_observation(query: Query, existing: set[str]) -> datetime | None:
    if "marts.fct_asset_prices" not in existing:
        return None
    return query("select max(observed_at) from marts.fct_asset_prices")[0][0]


def _gaps(query: Query, existing: set[str]) -> dict[str, Any] | None:
    """The series' known and pending holes (marts.fct_asset_price_gaps): per asset and the
    newest few. None before the first build."""
    if "marts.fct_asset_price_gaps" not in existing:
        return None
    per_asset: dict[str, dict[str, int]] = {}
    for asset_id, gap_status, slots in query(
        "select asset_id, gap_status, count(*) from marts.fct_asset_price_gaps "
        "group by asset_id, gap_status order by asset_id, gap_status"
    ):
        per_asset.setdefault(asset_id, {"known": 0, "pending": 0})[gap_status] = int(slots)
    newest = query(
        "select asset_id, price_at, gap_status, reason from marts.fct_asset_price_gaps "
        f"order by price_at desc, asset_id limit {NEWEST_GAPS}"
    )
    return {
        "slots": sum(sum(counts.values()) for counts in per_asset.values()),
        "per_asset": per_asset,
        "newest": [
            {"asset_id": asset_id, "price_at": _iso(price_at), "gap_status": status, "reason": why}
            for asset_id, price_at, status, why in newest
        ],
    }


# --------------------------------------------------------------------------- local state
def _heartbeat(run_dir: Path) -> datetime | None:
    """When the last good cycle ended ($COINCAP_RUN_DIR/last_success, written by the cycle)."""
    try:
        return datetime.fromisoformat((run_dir / HEARTBEAT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _quota(run_dir: Path) -> dict[str, Any]:
    from ingest.quota import EXHAUSTED, Quota

    quota = Quota.load(run_dir)
    probe = datetime.fromtimestamp(quota.next_probe_ms / 1000, UTC)
    return {
        "state": quota.state,
        "since": quota.since or None,
        "next_probe_at": _iso(probe) if quota.state == EXHAUSTED else None,
    }


def _pending_packages(settings: Settings) -> dict[str, list[str]]:
    """Per dlt pipeline, the load ids of the packages extracted or normalized but not yet loaded:
    what the next cycle that reaches the warehouse loads first."""
    import dlt

    pending = {}
    for name in (template.format(settings.warehouse.engine) for template in PIPELINES):
        if not (settings.pipelines_dir / name).is_dir():  # attach would create it
            pending[name] = []
            continue
        try:
            pipeline = dlt.attach(name, pipelines_dir=str(settings.pipelines_dir))
            extracted = pipeline.list_extracted_load_packages()
            normalized = pipeline.list_normalized_load_packages()
        except Exception as exc:  # noqa: BLE001 - whatever dlt raises: one line, not a traceback
            raise StatusError(
                f"dlt's pipeline {settings.pipelines_dir / name} could not be read "
                f"({type(exc).__name__}: {_first_line(exc)}); check DLT_DATA_DIR"
            ) from exc
        pending[name] = sorted({*extracted, *normalized})
    return pending


def _backup(settings: Settings, now: datetime) -> dict[str, Any]:
    """The newest backup in BACKUP_DIR, its age and whether it is too old (ingest/backup_watch.py:
    the same verdict as the cycles' alert)."""
    from ingest.backup_watch import current

    try:
        return current(settings, now).as_json()
    except OSError as exc:
        raise StatusError(
            f"the backup directory {settings.backup_dir} could not be read ({_first_line(exc)}); "
            "check BACKUP_DIR"
        ) from exc


# --------------------------------------------------------------------------- the terminal
def render(report: dict[str, Any]) -> str:
    """The report as lines for a terminal (or a cron mail): plain text, no colours."""
    now = datetime.fromisoformat(report["checked_at"])
    lines = [
        f"CoinCap ELT status at {report['checked_at']} ({report['warehouse']}: "
        f"{report['warehouse_location']})",
        "",
        *_render_cycles(report),
        "",
        *_render_freshness(report, now),
        "",
        *_render_pending(report["pending_packages"]),
        *_render_gaps(report["gaps"]),
        *render_changes(report.get("schema_changes")),
        *_render_quality(report.get("quality")),
        *_render_backup(report.get("backup"), now),
        *_render_credits(report["credits"]),
    ]
    return "\n".join(lines)


def _render_cycles(report: dict[str, Any]) -> list[str]:
    cycles = report["cycles"]
    if not cycles:
        return ["Cycles: none recorded yet (the run log is empty); run one: coincap-elt run"]
    lines = [
        f"Last {len(cycles)} cycle(s), newest first ({report['run_log']}):",
        f"  {'started (UTC)':<20}  {'took':>6}  {'status':<9}  {'failed step':<11}  "
        f"{'freshness':<11}  {'rows':>6}  {'requests':>8}  {'credits':>7}",
    ]
    for cycle in cycles:
        started, finished = (
            datetime.fromisoformat(cycle[k]) for k in ("started_at", "finished_at")
        )
        lines.append(
            f"  {cycle['started_at']:<20}  {_duration(finished - started):>6}  "
            f"{cycle['status']:<9}  {cycle['failed_step'] or '-':<11}  "
            f"{cycle['source_freshness']:<11}  {cycle['rows_loaded']:>6}  "
            f"{cycle['coincap_requests']:>8}  {_number(cycle['coincap_credits']):>7}"
        )
        if cycle["error"]:
            lines.append(f"      error: {redact(cycle['error'], limit=300)}")
    return lines


def _render_freshness(report: dict[str, Any], now: datetime) -> list[str]:
    fresh, alert, quota = report["freshness"], report["alert"], report["quota"]
    quota_line = quota["state"]
    if quota["since"]:
        quota_line += f" since {quota['since']}"
    if quota["next_probe_at"]:
        quota_line += f"; next probe at {quota['next_probe_at']}"
    return [
        "Freshness:",
        f"  newest observation  {_when(fresh['newest_observation_at'], now, 'none in the marts')}",
        f"  source freshness    {fresh['source_freshness'] or 'not checked yet'} (last cycle)",
        f"  last success        {_when(fresh['last_success_at'], now, 'never (no heartbeat)')}",
        f"  alert state         {alert['state']}"
        + (f" since {alert['since']}" if alert["since"] else ""),
        f"  CoinCap quota       {quota_line}",
    ]


def _render_pending(pending: dict[str, list[str]]) -> list[str]:
    waiting = {name: ids for name, ids in pending.items() if ids}
    if not waiting:
        return ["Pending load packages: none"]
    return [
        "Pending load packages (the next cycle that reaches the warehouse loads them first):",
        *(f"  {name}: {len(ids)} ({', '.join(ids)})" for name, ids in waiting.items()),
    ]


def _render_gaps(gaps: dict[str, Any] | None) -> list[str]:
    if gaps is None:
        return ["Holes in the series: not built yet (marts.fct_asset_price_gaps)"]
    if not gaps["slots"]:
        return ["Holes in the series: none"]
    per_asset = ", ".join(
        f"{asset} {counts['known']} known/{counts['pending']} pending"
        for asset, counts in gaps["per_asset"].items()
    )
    return [
        f"Holes in the series: {gaps['slots']} slot(s) of 5 minutes: {per_asset}",
        *(
            f"  {gap['price_at']}  {gap['asset_id']}  {gap['gap_status']}: {gap['reason']}"
            for gap in gaps["newest"]
        ),
    ]


def _render_quality(findings: list[dict[str, str]] | None) -> list[str]:
    """The data-quality warnings that hold now (ingest/quality.py; docs/operations.md); nothing
    before the first build."""
    if findings is None:
        return []
    if not findings:
        return ["Data quality: no warnings"]
    return ["Data quality:", *(f"  warning: {finding['text']}" for finding in findings)]


def _render_credits(spend: dict[str, Any]) -> list[str]:
    allowance = spend["monthly_allowance"]
    plan = f"plan allows {allowance:,}" if allowance else "no plan set (COINCAP_MONTHLY_CREDITS)"
    pace = "" if spend["has_pace"] else " (a projection needs two cycles in 24 hours)"
    over = "  OVER THE PLAN" if allowance and spend["projected_month_end"] > allowance else ""
    return [
        f"CoinCap credits: {spend['used_this_month']:,} this month ({spend['month']}, UTC), "
        f"about {spend['projected_month_end']:,} by month end{pace}; {plan}{over}"
    ]


def _render_backup(backup: dict[str, Any] | None, now: datetime) -> list[str]:
    if backup is None:
        return []
    schedule = (
        f"scheduled '{backup['schedule']}' UTC, at most {backup['max_age_hours']} h old"
        if backup["schedule"]
        else "not scheduled here (BACKUP_SCHEDULE unset)"
    )
    if backup["newest_path"]:
        newest = f"{backup['newest_path']}, made {_when(backup['newest_at'], now, '')}"
    else:
        newest = "none yet"
    lines = [f"Newest backup: {newest}; {schedule}"]
    if backup["warning"]:
        lines.append(f"warning: {backup['warning']}")
    return lines


# --------------------------------------------------------------------------- small helpers
def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso_text(text: str | None) -> str | None:
    """A timestamp another module wrote (the alert state's local-time ISO-8601), as UTC."""
    try:
        return _iso(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return text


def _age_s(now: datetime, when: datetime | None) -> int | None:
    return None if when is None else int((now - when).total_seconds())


def _when(iso: str | None, now: datetime, missing: str) -> str:
    if iso is None:
        return missing
    return f"{iso} ({_duration(now - datetime.fromisoformat(iso))} ago)"


def _duration(delta: Any) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _first_line(exc: BaseException) -> str:
    return redact(first_line(exc), limit=200)
