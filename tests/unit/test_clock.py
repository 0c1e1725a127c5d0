"""The clocks in-process: one bound of a plausible time for the ingest and dbt, and CoinCap's
clock ahead of this machine's as a warning and one alert per episode (ingest/clock.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import yaml

from ingest import clock
from ingest.coincap.settings import CLOCK_SKEW_WARNING_MS, MAX_CLOCK_SKEW_MS
from ingest.transform import dbt_vars

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000
HOST = 1_764_900_000_000  # 2025-12-05T02:00:00Z


# --------------------------------------------------------------------------- one bound
def test_dbt_gets_the_ingests_bound_and_has_the_same_default() -> None:
    project = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())
    assert dbt_vars() == {"max_clock_skew_minutes": MAX_CLOCK_SKEW_MS // MINUTE}
    assert project["vars"]["max_clock_skew_minutes"] == MAX_CLOCK_SKEW_MS // MINUTE


def test_every_not_in_future_test_uses_that_bound() -> None:
    found = 0
    for path in (REPO / "dbt_project" / "models").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models") or []:
            for column in model.get("columns") or []:
                for test in column.get("data_tests") or []:
                    if isinstance(test, dict) and "not_in_future" in test:
                        found += 1
                        tolerance = test["not_in_future"]["arguments"]["tolerance"]
                        assert tolerance == "{{ var('max_clock_skew_minutes') }} minutes", path
    assert found >= 2


# --------------------------------------------------------------------------- the warning
@pytest.mark.parametrize(
    "skew_ms", [None, 0, CLOCK_SKEW_WARNING_MS, -10 * MINUTE, -MAX_CLOCK_SKEW_MS + 1]
)
def test_no_warning_within_two_minutes_ahead_or_behind(skew_ms: int | None) -> None:
    assert clock.skew_warning(skew_ms, HOST) is None


def test_coincap_ahead_says_which_clock_by_how_much_and_what_to_do() -> None:
    text = clock.skew_warning(10 * MINUTE, HOST)
    assert text is not None
    assert text.startswith("CoinCap's clock is 10.0 min ahead of this machine's")
    assert "CoinCap 2025-12-05T02:10:00Z, this machine 2025-12-05T02:00:00Z" in text
    assert "this machine's clock is most likely behind" in text and "NTP" in text
    assert clock.skew_warning(CLOCK_SKEW_WARNING_MS + 1, HOST) is not None


def test_one_alert_per_episode(tmp_path: Path, monkeypatch, caplog) -> None:
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(
        clock, "notify_once", lambda _s, topic, period, _t: sent.append((topic, period))
    )
    settings = NS(run_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="ingest"):
        clock.report_clock_skew(settings, 10 * MINUTE)
        clock.report_clock_skew(settings, 9 * MINUTE)
        episode = (tmp_path / "clock_skew").read_text().strip()
        clock.report_clock_skew(settings, None)  # no answer this cycle: the episode goes on
        assert (tmp_path / "clock_skew").exists()
        clock.report_clock_skew(settings, 1_000)  # the clocks agree again: the episode ends
        assert not (tmp_path / "clock_skew").exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "10.0 min ahead" in warnings[0].getMessage()
    # notify_once sends once per (topic, period): the same period for the whole episode
    assert sent == [("clock_skew", episode), ("clock_skew", episode)]
    assert any("agree again" in r.getMessage() for r in caplog.records)
