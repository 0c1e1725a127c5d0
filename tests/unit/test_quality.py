"""ingest/quality.py's decisions in-process (when a finding holds, its episode, its line), how
PRICE_MOVE_ALERT_PCT is read and handed to dbt, and the status lines of the findings. No
warehouse is opened: tests/test_data_quality.py runs the checks end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from ingest.config import ConfigError, Settings, price_move_alert_pct_from
from ingest.quality import (
    FROZEN_AFTER,
    Finding,
    frozen_finding,
    missing_finding,
    move_finding,
    unchanged,
)
from ingest.status import _render_quality
from ingest.transform import dbt_vars, project_args

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 5, 4, 2, 3, tzinfo=UTC)
MIN = timedelta(minutes=1)


# --------------------------------------------------------------------------- missing
def test_missing_names_the_asset_its_episode_and_when_it_was_last_seen() -> None:
    found = missing_finding("solana", T0, T0 + 5 * MIN)
    assert found.since == T0 + 5 * MIN  # the episode: from the first answer without it
    assert found.check == "missing" and found.topic == "quality_missing_solana"
    assert "solana is missing from CoinCap's answers since 2026-12-05T04:07:03Z" in found.text
    assert "last seen 2026-12-05T04:02:03Z" in found.text
    assert "COINCAP_ASSET_IDS" in found.text


def test_an_asset_never_seen_is_missing_from_every_answer() -> None:
    found = missing_finding("bitcoim", None, T0)
    assert found.since == T0
    assert found.text.startswith(
        "bitcoim is missing from every CoinCap answer so far (never in the warehouse)"
    )


def test_a_later_episode_has_another_period_the_same_one_the_same() -> None:
    first = missing_finding("solana", T0, T0 + 5 * MIN)
    again = missing_finding("solana", T0 + 20 * MIN, T0 + 25 * MIN)
    assert first.topic == again.topic and first.period != again.period
    assert missing_finding("solana", T0, T0 + 5 * MIN).period == first.period


def test_odd_characters_of_an_id_never_reach_the_state_file_name() -> None:
    assert missing_finding("../Evil Coin", None, T0).topic == "quality_missing____evil_coin"


# --------------------------------------------------------------------------- frozen
def test_frozen_from_sixty_minutes_of_coincap_time() -> None:
    assert frozen_finding("ethereum", T0 + 59 * MIN + timedelta(seconds=59), T0) is None
    found = frozen_finding("ethereum", T0 + FROZEN_AFTER, T0)
    assert found is not None and found.since == T0 and found.check == "frozen"
    assert "ethereum's CoinCap figures" in found.text and "60 min" in found.text


def test_frozen_takes_any_time_zone_as_utc() -> None:
    plus_one = datetime(2026, 12, 5, 6, 2, 3, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    found = frozen_finding("ethereum", plus_one, T0)
    assert found is not None and "(120 min of CoinCap's time" in found.text


def test_unchanged_needs_two_snapshots_with_every_figure_equal() -> None:
    same = (Decimal("1.5"), Decimal("10"), None, Decimal("3"), Decimal("1.4"), Decimal("-0.5"))
    assert not unchanged([same])
    assert unchanged([same, same, same])
    for i in range(len(same)):  # any one figure that moved, a null that became a value too
        moved = list(same)
        moved[i] = Decimal("7")
        assert not unchanged([same, tuple(moved), same]), i


# --------------------------------------------------------------------------- price moves
def test_no_flagged_slot_no_finding() -> None:
    assert move_finding("bitcoin", []) is None


def test_a_spike_is_one_episode_from_its_first_slot_naming_the_largest_move() -> None:
    found = move_finding(
        "bitcoin", [(T0, Decimal("120.5")), (T0 + 5 * MIN, Decimal("-60.0000001"))]
    )
    assert found is not None and found.since == T0
    assert "bitcoin's price moved +120.5 % in 5 minutes at 2026-12-05T04:02:03Z" in found.text
    assert "2 flagged slots" in found.text and "is_large_price_move" in found.text


def test_a_fall_is_named_with_its_sign() -> None:
    found = move_finding("bitcoin", [(T0, Decimal("-75"))])
    assert found is not None and "moved -75.0 %" in found.text


# --------------------------------------------------------------------------- PRICE_MOVE_ALERT_PCT
def test_price_move_threshold_unset_leaves_dbt_its_default() -> None:
    settings = Settings.from_env({})
    assert settings.price_move_alert_pct is None
    assert "price_move_alert_pct" not in dbt_vars(settings.price_move_alert_pct)
    default = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["vars"]
    assert default["price_move_alert_pct"] == 50


@pytest.mark.parametrize("given, pct", [("50", 50.0), (" 12.5 ", 12.5), ("200", 200.0)])
def test_price_move_threshold_is_handed_to_dbt(given: str, pct: float) -> None:
    settings = Settings.from_env({"PRICE_MOVE_ALERT_PCT": given})
    assert settings.price_move_alert_pct == pct
    args = project_args(settings.warehouse, settings.price_move_alert_pct)
    # one --vars (dbt keeps only the last one given): the threshold beside the clock bound
    assert args.count("--vars") == 1
    handed = json.loads(args[args.index("--vars") + 1])
    assert handed["price_move_alert_pct"] == pct and "max_clock_skew_minutes" in handed


@pytest.mark.parametrize("given", ["0", "-5", "abc", "50%", "nan", "inf", "1e9"])
def test_a_wrong_price_move_threshold_is_refused_naming_the_variable(given: str) -> None:
    with pytest.raises(ConfigError) as refused:
        price_move_alert_pct_from({"PRICE_MOVE_ALERT_PCT": given})
    assert str(refused.value).startswith(f"PRICE_MOVE_ALERT_PCT is {given!r}; set it to")
    with pytest.raises(ConfigError):
        Settings.from_env({"PRICE_MOVE_ALERT_PCT": given})


# --------------------------------------------------------------------------- status
def test_status_lists_the_findings_or_says_none() -> None:
    assert _render_quality(None) == []  # not built yet
    assert _render_quality([]) == ["Data quality: no warnings"]
    found = missing_finding("solana", T0, T0 + 5 * MIN)
    assert isinstance(found, Finding)
    lines = _render_quality([found.as_dict()])
    assert lines[0] == "Data quality:"
    assert lines[1] == f"  warning: {found.text}"
    assert found.as_dict()["since"] == "2026-12-05T04:07:03Z"
