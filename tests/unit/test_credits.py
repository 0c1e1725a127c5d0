"""ingest/credits.py in-process: the month's CoinCap credits and the month-end projection from the
run log's (started_at, coincap_credits) rows. Every expected value is worked out by hand in the
test's comments."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ingest.credits import MonthCredits, month_credits, since


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "oldest"),
    [
        # mid-month: the month's start is older than a day ago
        ("2026-05-15 12:00", "2026-05-01 00:00"),
        # early on the 1st: the pace's 24 hours reach into the previous month
        ("2026-06-01 06:00", "2026-05-31 06:00"),
        ("2027-01-01 00:30", "2026-12-31 00:30"),
        # a day and more into the month: the month's start again
        ("2026-06-02 06:00", "2026-06-01 00:00"),
    ],
)
def test_since_is_the_month_start_or_a_day_ago_whichever_is_older(now: str, oldest: str) -> None:
    assert since(at(now)) == at(oldest)


def test_used_counts_this_month_only_and_the_pace_is_the_last_24_hours() -> None:
    now = at("2026-05-15 12:00")
    runs = [
        (at("2026-04-30 23:00"), 500),  # April: neither used nor pace
        (at("2026-05-01 00:00"), 10),  # this month, older than 24 h: used, not pace
        (at("2026-05-14 12:00"), 20),
        (at("2026-05-14 18:00"), 30),
        (at("2026-05-15 00:00"), 40),
        (at("2026-05-15 12:00"), 50),
    ]
    # used = 10 + 20 + 30 + 40 + 50 = 150
    # pace: 4 cycles over 24 h -> 3/24 = 0.125 cycles an hour, median 35 credits a cycle
    # hours left: 2026-06-01 00:00 - 2026-05-15 12:00 = 16.5 days = 396 h
    # projected = 150 + 35 * 0.125 * 396 = 150 + 1732.5 -> 1882
    assert month_credits(now, runs) == MonthCredits("2026-05", 150, 1882, True)


def test_the_pace_is_the_median_so_a_one_off_backfill_counts_once() -> None:
    now = at("2026-05-15 12:00")
    runs = [
        (at("2026-05-15 09:00"), 3),
        (at("2026-05-15 10:00"), 5000),  # a backfill
        (at("2026-05-15 11:00"), 3),
        (at("2026-05-15 12:00"), 3),
    ]
    # used = 5009; median 3 credits, 3 cycles in 3 h = 1 an hour, 396 h left: 5009 + 1188
    assert month_credits(now, runs) == MonthCredits("2026-05", 5009, 6197, True)


def test_in_december_the_month_ends_at_the_new_year() -> None:
    now = at("2026-12-31 23:00")
    runs = [(at("2026-12-31 22:00"), 5), (at("2026-12-31 23:00"), 5)]
    # used 10; 1 cycle an hour at 5 credits, 1 h left: 15
    assert month_credits(now, runs) == MonthCredits("2026-12", 10, 15, True)


def test_early_in_a_month_the_pace_reaches_into_the_previous_one() -> None:
    now = at("2026-06-01 06:00")
    runs = [
        (at("2026-05-31 12:00"), 300),
        (at("2026-05-31 18:00"), 300),
        (at("2026-06-01 00:00"), 60),
        (at("2026-06-01 06:00"), 60),
    ]
    # used (June only) = 120; pace: 4 cycles over 18 h = 1/6 an hour, median (60 + 300) / 2 = 180
    # hours left: 29 days and 18 h = 714 h: 120 + 180 / 6 * 714 = 120 + 21420
    assert month_credits(now, runs) == MonthCredits("2026-06", 120, 21540, True)


def test_an_exact_projection_is_not_rounded_down_by_float_error() -> None:
    now = at("2026-06-01 06:00")
    runs = [
        (at("2026-05-31 12:00"), 100),
        (at("2026-05-31 18:00"), 100),
        (at("2026-06-01 00:00"), 100),
        (at("2026-06-01 06:00"), 100),
    ]
    # used 200; 100 credits a cycle, 1/6 cycle an hour, 714 h left: 200 + 11,900
    assert month_credits(now, runs).projected == 12100


def test_a_projection_needs_two_cycles_with_credits_in_24_hours() -> None:
    now = at("2026-05-15 12:00")
    runs = [
        (at("2026-05-10 00:00"), 7),
        (at("2026-05-15 11:00"), None),  # recorded before credits were counted
        (at("2026-05-15 12:00"), 4),
    ]
    # used = 7 + 0 + 4 = 11; only one recent cycle has credits: no pace, projected = used
    assert month_credits(now, runs) == MonthCredits("2026-05", 11, 11, False)


def test_cycles_recorded_at_one_instant_give_no_pace() -> None:
    now = at("2026-05-15 12:00")
    runs = [(at("2026-05-15 11:00"), 3), (at("2026-05-15 11:00"), 4)]
    # two rows but no time between them: no pace to project from, projected = used
    assert month_credits(now, runs) == MonthCredits("2026-05", 7, 7, False)


def test_no_cycles_give_zero_and_no_pace() -> None:
    assert month_credits(at("2026-02-10 08:00"), []) == MonthCredits("2026-02", 0, 0, False)


def test_rows_in_any_order_give_the_same_pace() -> None:
    now = at("2026-05-15 12:00")
    runs = [
        (at("2026-05-15 12:00"), 2),
        (at("2026-05-15 10:00"), 2),
        (at("2026-05-15 11:00"), 2),
    ]
    # span 2 h, 2 cycles in it: 1 an hour, 2 credits: 6 + 2 * 396
    assert month_credits(now, runs).projected == 6 + 2 * 396
    assert month_credits(now, list(reversed(runs))) == month_credits(now, runs)
