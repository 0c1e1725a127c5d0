"""`coincap-elt status` in-process: the lines an operator reads, rendered from report dicts shaped
like `collect()` returns them, and the small conversions behind them (a run log row, ages, the
run directory's quota and heartbeat files). No warehouse is opened."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ingest.alerts import hide
from ingest.cycle import HEARTBEAT_FILE
from ingest.quota import STATE_FILE as QUOTA_FILE
from ingest.status import (
    RUN_COLUMNS,
    _cycle,
    _duration,
    _heartbeat,
    _iso,
    _iso_text,
    _quota,
    render,
)

CYCLE = {
    "run_id": "a1",
    "started_at": "2026-05-15T11:55:00Z",
    "finished_at": "2026-05-15T11:55:42Z",
    "status": "succeeded",
    "failed_step": None,
    "source_freshness": "pass",
    "rows_loaded": 10,
    "coincap_requests": 1,
    "coincap_credits": 1234,
    "pending_packages_loaded": 0,
    "load_ids": "1747310100.123",
    "error": None,
    "warehouse": "duckdb",
}
FAILED_CYCLE = {
    **CYCLE,
    "run_id": "a0",
    "started_at": "2026-05-15T11:50:00Z",
    "finished_at": "2026-05-15T11:53:30Z",
    "status": "failed",
    "failed_step": "dbt build",
    "source_freshness": "not checked",
    "rows_loaded": 0,
    "coincap_requests": 12,
    "coincap_credits": None,  # recorded before credits were counted
    "error": "dbt build failed: model.coincap_elt.stg_assets: Database Error",
}
REPORT: dict[str, Any] = {
    "checked_at": "2026-05-15T12:00:00Z",
    "warehouse": "duckdb",
    "warehouse_location": "/srv/coincap/data/warehouse.duckdb",
    "run_log": "marts.pipeline_runs",
    "cycles": [CYCLE, FAILED_CYCLE],
    "freshness": {
        "newest_observation_at": "2026-05-15T11:55:00Z",
        "newest_observation_age_s": 300,
        "source_freshness": "pass",
        "last_success_at": "2026-05-15T09:00:00Z",
        "last_success_age_s": 10800,
    },
    "alert": {"state": "failed", "since": "2026-05-15T11:53:30Z"},
    "quota": {
        "state": "exhausted",
        "since": "2026-05-15T10:00:00Z",
        "next_probe_at": "2026-05-15T12:15:00Z",
    },
    "pending_packages": {
        "coincap_duckdb": ["1747310100.123", "1747310400.456"],
        "coincap_runlog_duckdb": [],
    },
    "gaps": {
        "slots": 3,
        "per_asset": {
            "bitcoin": {"known": 2, "pending": 0},
            "ethereum": {"known": 0, "pending": 1},
        },
        "newest": [
            {
                "asset_id": "ethereum",
                "price_at": "2026-05-15T11:45:00Z",
                "gap_status": "pending",
                "reason": "history asked next cycle",
            }
        ],
    },
    "credits": {
        "month": "2026-05",
        "used_this_month": 12345,
        "projected_month_end": 40000,
        "has_pace": True,
        "monthly_allowance": 25000,
    },
    "backup": {
        "newest_path": "/var/lib/coincap/backups/coincap-duckdb-20261204T033000Z.tar.gz",
        "newest_at": "2026-05-15T03:30:00Z",
        "newest_age_s": 30600,
        "schedule": "32 3 * * *",
        "max_age_hours": 36,
        "watching_since": "2026-05-01T00:00:00Z",
        "stale": False,
        "warning": None,
    },
}
# what collect() returns for a warehouse no cycle has reached yet
EMPTY: dict[str, Any] = {
    **REPORT,
    "run_log": None,
    "cycles": [],
    "freshness": {
        "newest_observation_at": None,
        "newest_observation_age_s": None,
        "source_freshness": None,
        "last_success_at": None,
        "last_success_age_s": None,
    },
    "alert": {"state": "ok", "since": None},
    "quota": {"state": "ok", "since": None, "next_probe_at": None},
    "pending_packages": {"coincap_duckdb": [], "coincap_runlog_duckdb": []},
    "gaps": None,
    "credits": {
        "month": "2026-05",
        "used_this_month": 0,
        "projected_month_end": 0,
        "has_pace": False,
        "monthly_allowance": None,
    },
    "backup": {
        "newest_path": None,
        "newest_at": None,
        "newest_age_s": None,
        "schedule": None,
        "max_age_hours": 36,
        "watching_since": None,
        "stale": False,
        "warning": None,
    },
}


def line_with(text: str, start: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(start)]
    return line


def test_the_header_names_the_time_and_the_warehouse() -> None:
    assert render(REPORT).splitlines()[0] == (
        "CoinCap ELT status at 2026-05-15T12:00:00Z (duckdb: /srv/coincap/data/warehouse.duckdb)"
    )


def test_the_last_cycles_are_listed_newest_first_with_their_figures() -> None:
    lines = render(REPORT).splitlines()
    start = lines.index("Last 2 cycle(s), newest first (marts.pipeline_runs):")
    header, first, second, error = lines[start + 1 : start + 5]
    assert header.split() == [
        "started", "(UTC)", "took", "status", "failed", "step", "freshness", "rows",
        "requests", "credits",
    ]  # fmt: skip
    assert first.split() == [
        "2026-05-15T11:55:00Z", "42", "s", "succeeded", "-", "pass", "10", "1", "1,234",
    ]  # fmt: skip
    assert second.split() == [
        "2026-05-15T11:50:00Z", "3", "min", "failed", "dbt", "build", "not", "checked", "0",
        "12", "-",
    ]  # fmt: skip
    assert error == "      error: dbt build failed: model.coincap_elt.stg_assets: Database Error"
    # the columns line up under the header
    assert len(first) == len(header) == len(second)


def test_a_cycles_error_is_redacted_and_shortened_on_one_line() -> None:
    hide(("key-7f3a9c",))
    try:
        report = copy.deepcopy(REPORT)
        report["cycles"][1]["error"] = "refused key-7f3a9c\n" + "x" * 400
        text = render(report)
    finally:
        hide(())
    error = line_with(text, "      error: ")
    assert "key-7f3a9c" not in text
    assert error.startswith("      error: refused *** xxx")
    assert len(error) == len("      error: ") + 300 and error.endswith("…")


def test_freshness_shows_times_with_their_age_and_the_alert_and_quota_states() -> None:
    lines = render(REPORT).splitlines()
    start = lines.index("Freshness:")
    assert lines[start + 1 : start + 7] == [
        "  newest observation  2026-05-15T11:55:00Z (5 min ago)",
        "  source freshness    pass (last cycle)",
        "  last success        2026-05-15T09:00:00Z (3 h 0 min ago)",
        "  alert state         failed since 2026-05-15T11:53:30Z",
        "  CoinCap quota       exhausted since 2026-05-15T10:00:00Z; "
        "next probe at 2026-05-15T12:15:00Z",
        "",
    ]


def test_pending_load_packages_are_listed_per_pipeline_that_has_some() -> None:
    text = render(REPORT)
    assert (
        "Pending load packages (the next cycle that reaches the warehouse loads them first):\n"
        "  coincap_duckdb: 2 (1747310100.123, 1747310400.456)\n"
    ) in text
    assert "coincap_runlog_duckdb" not in text


def test_holes_in_the_series_are_counted_per_asset_with_the_newest_listed() -> None:
    text = render(REPORT)
    assert (
        "Holes in the series: 3 slot(s) of 5 minutes: bitcoin 2 known/0 pending, "
        "ethereum 0 known/1 pending\n"
        "  2026-05-15T11:45:00Z  ethereum  pending: history asked next cycle\n"
    ) in text


def test_credits_over_the_plan_are_flagged() -> None:
    assert render(REPORT).splitlines()[-1] == (
        "CoinCap credits: 12,345 this month (2026-05, UTC), about 40,000 by month end; "
        "plan allows 25,000  OVER THE PLAN"
    )


def test_credits_within_the_plan_are_not_flagged() -> None:
    report = copy.deepcopy(REPORT)
    report["credits"]["projected_month_end"] = 25000  # exactly the plan: not over
    assert render(report).splitlines()[-1] == (
        "CoinCap credits: 12,345 this month (2026-05, UTC), about 25,000 by month end; "
        "plan allows 25,000"
    )


def test_a_new_warehouse_says_what_is_missing_and_what_to_do() -> None:
    assert render(EMPTY).splitlines() == [
        "CoinCap ELT status at 2026-05-15T12:00:00Z (duckdb: /srv/coincap/data/warehouse.duckdb)",
        "",
        "Cycles: none recorded yet (the run log is empty); run one: coincap-elt run",
        "",
        "Freshness:",
        "  newest observation  none in the marts",
        "  source freshness    not checked yet (last cycle)",
        "  last success        never (no heartbeat)",
        "  alert state         ok",
        "  CoinCap quota       ok",
        "",
        "Pending load packages: none",
        "Holes in the series: not built yet (marts.fct_asset_price_gaps)",
        "Newest backup: none yet; not scheduled here (BACKUP_SCHEDULE unset)",
        "CoinCap credits: 0 this month (2026-05, UTC), about 0 by month end (a projection "
        "needs two cycles in 24 hours); no plan set (COINCAP_MONTHLY_CREDITS)",
    ]


def test_the_newest_backup_is_shown_with_its_age_and_the_schedule() -> None:
    assert render(REPORT).splitlines()[-2] == (
        "Newest backup: /var/lib/coincap/backups/coincap-duckdb-20261204T033000Z.tar.gz, made "
        "2026-05-15T03:30:00Z (8 h 30 min ago); scheduled '32 3 * * *' UTC, at most 36 h old"
    )


def test_a_stale_backup_is_a_warning_line_after_it() -> None:
    text = (
        "the newest backup, coincap-duckdb-20261204T033000Z.tar.gz, is 56 h old "
        "(BACKUP_MAX_AGE_HOURS is 36); check `docker compose logs runpipeline` for the backup's "
        "error"
    )
    report = copy.deepcopy(REPORT)
    report["backup"].update(newest_at="2026-05-13T03:30:00Z", stale=True, warning=text)
    lines = render(report).splitlines()
    assert lines[-3].startswith("Newest backup: ") and "(2 d 8 h ago)" in lines[-3]
    assert lines[-2] == f"warning: {text}"
    scheduled_none = copy.deepcopy(EMPTY)
    scheduled_none["backup"].update(schedule="32 3 * * *", watching_since="2026-05-15T00:00:00Z")
    assert render(scheduled_none).splitlines()[-2] == (
        "Newest backup: none yet; scheduled '32 3 * * *' UTC, at most 36 h old"
    )


def test_a_built_series_without_holes_says_none() -> None:
    report = {**EMPTY, "gaps": {"slots": 0, "per_asset": {}, "newest": []}}
    assert "Holes in the series: none" in render(report).splitlines()


def test_a_rate_limited_quota_shows_no_probe_time() -> None:
    report = {
        **EMPTY,
        "quota": {"state": "rate_limited", "since": "2026-05-15T11:58:00Z", "next_probe_at": None},
    }
    assert "  CoinCap quota       rate_limited since 2026-05-15T11:58:00Z" in (
        render(report).splitlines()
    )


# --------------------------------------------------------------------------- conversions
@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "0 s"),  # a clock step backwards: never a negative age
        (0, "0 s"),
        (119, "119 s"),
        (120, "2 min"),
        (7199, "119 min"),
        (7200, "2 h 0 min"),
        (2 * 86400 - 1, "47 h 59 min"),
        (2 * 86400, "2 d 0 h"),
        (9 * 86400 + 5 * 3600 + 59, "9 d 5 h"),
    ],
)
def test_durations_are_shown_in_the_largest_readable_unit(seconds: int, shown: str) -> None:
    assert _duration(timedelta(seconds=seconds)) == shown


def test_times_are_shown_in_utc_to_the_second() -> None:
    paris = timezone(timedelta(hours=2))
    assert _iso(datetime(2026, 5, 15, 14, 0, 7, 999_000, tzinfo=paris)) == "2026-05-15T12:00:07Z"
    assert _iso(None) is None


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("2026-05-15T14:00:00+02:00", "2026-05-15T12:00:00Z"),  # the alert state's local time
        ("", None),
        (None, None),
        ("yesterday", "yesterday"),  # not ISO-8601: shown as written
    ],
)
def test_the_alert_states_time_is_shown_in_utc(text: str | None, shown: str | None) -> None:
    assert _iso_text(text) == shown


def test_a_run_log_row_becomes_a_cycle_with_utc_times_and_a_redacted_error() -> None:
    started = datetime(2026, 5, 15, 11, 55, tzinfo=UTC)
    row = (
        "a1",
        started,
        started + timedelta(seconds=42),
        "failed",
        "ingest",
        "not checked",
        0,
        5,
        5,
        0,
        None,
        "could not reach postgresql://u:pw@db/x\nretrying",
        "postgres",
    )
    cycle = _cycle(row)
    assert list(cycle) == list(RUN_COLUMNS)
    assert cycle["started_at"] == "2026-05-15T11:55:00Z"
    assert cycle["finished_at"] == "2026-05-15T11:55:42Z"
    assert cycle["error"] == "could not reach postgresql://***@db/x retrying"
    assert _cycle(row[:11] + (None, "postgres"))["error"] is None


def test_the_quota_state_shows_the_next_probe_only_while_exhausted(tmp_path: Path) -> None:
    state = {
        "state": "exhausted",
        "since": "2026-05-15T10:00:00Z",
        "pause_s": 900,
        "next_probe_ms": 1_747_311_300_000,  # 2025-05-15T12:15:00Z
    }
    (tmp_path / QUOTA_FILE).write_text(json.dumps(state))
    assert _quota(tmp_path) == {
        "state": "exhausted",
        "since": "2026-05-15T10:00:00Z",
        "next_probe_at": "2025-05-15T12:15:00Z",
    }
    (tmp_path / QUOTA_FILE).write_text(json.dumps({**state, "state": "rate_limited"}))
    assert _quota(tmp_path)["next_probe_at"] is None
    assert _quota(tmp_path / "none") == {"state": "ok", "since": None, "next_probe_at": None}


def test_the_heartbeat_is_the_last_good_cycles_end(tmp_path: Path) -> None:
    assert _heartbeat(tmp_path) is None
    (tmp_path / HEARTBEAT_FILE).write_text("2026-05-15T09:00:00+00:00\n")
    assert _heartbeat(tmp_path) == datetime(2026, 5, 15, 9, tzinfo=UTC)
    (tmp_path / HEARTBEAT_FILE).write_text("garbage")
    assert _heartbeat(tmp_path) is None
