"""Which 5-minute history is asked for, in-process: the one-day windows (split_windows), the mark an
asset's series needs nothing before (_mark), the credit estimate, and the backfill's plan (newest
first, every asset moving back together)."""

from __future__ import annotations

import pytest

from ingest.backfill import estimate_credits, plan
from ingest.coincap import (
    DAY_MS,
    HistoryResult,
    HistoryWindow,
    _mark,
    estimate_history_credits,
    split_windows,
)

SLOT = 5 * 60 * 1000
NOW = 20_000 * DAY_MS  # a day boundary (2024-10-04T00:00Z), so the windows read easily


# --------------------------------------------------------------------------- split_windows
@pytest.mark.parametrize(
    ("after", "until", "windows"),
    [
        (0, 0, []),
        (100, 50, []),  # nothing after the mark
        (0, 1, [(1, 1)]),  # (after, until]: the mark itself is never asked again
        (0, DAY_MS, [(1, DAY_MS)]),  # one day is one window
        (0, DAY_MS + 1, [(1, DAY_MS), (DAY_MS + 1, DAY_MS + 1)]),
        (
            5,
            3 * DAY_MS,
            [(6, DAY_MS + 5), (DAY_MS + 6, 2 * DAY_MS + 5), (2 * DAY_MS + 6, 3 * DAY_MS)],
        ),
    ],
)
def test_split_windows_cuts_after_until_into_inclusive_windows_of_a_day_at_most(
    after: int, until: int, windows: list[tuple[int, int]]
) -> None:
    assert list(split_windows(after, until)) == windows


def test_split_windows_cover_the_span_without_overlap_or_gap() -> None:
    after, until = 1234, 1234 + 7 * DAY_MS + 99  # seven days and a bit
    windows = list(split_windows(after, until))
    assert len(windows) == 8
    assert windows[0][0] == after + 1 and windows[-1][1] == until
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert start == end + 1
    assert all(0 <= end - start < DAY_MS for start, end in windows)


# --------------------------------------------------------------------------- _mark
@pytest.mark.parametrize(
    ("seen", "asked", "series_end", "mark"),
    [
        (None, None, None, None),  # nothing known: backfill
        (None, None, 900, None),  # the mart alone does not stop a backfill
        (None, 800, None, 800),  # state of a run that never saw a snapshot
        (1000, None, None, 1000),  # no mart yet: the newest snapshot
        (1000, 800, None, 1000),
        (800, 1000, None, 1000),  # history asked beyond the snapshot
        (1000, 800, 900, 900),  # dbt held back the newest snapshot: ask history from 900
        (1000, 950, 900, 950),  # ...but never again for what history was already asked for
        (1000, None, 700, 700),
        (1000, None, 1200, 1200),  # the mart reaches further (history loaded beyond)
        (1000, 1000, 1000, 1000),  # all agree: nothing to ask
    ],
)
def test_the_mark_is_the_newest_snapshot_unless_dbt_accepted_less(
    seen: int | None, asked: int | None, series_end: int | None, mark: int | None
) -> None:
    assert _mark(seen, asked, series_end) == mark


# --------------------------------------------------------------------------- credits
@pytest.mark.parametrize(
    ("windows", "cost"),
    [
        ([], 0),
        # a whole day: 86,399,999 ms // 5 min = 287 points x 146 bytes = 41,902 bytes
        # -> 1 + ceil(41,902 / 2,500) = 1 + 17 = 18
        ([(1, DAY_MS)], 18),
        ([(1, DAY_MS)] * 3, 54),
        # an hour: 12 points x 146 = 1,752 bytes -> 1 + 1 = 2
        ([(0, 3_600_000)], 2),
        # less than one slot: no bytes, the call itself still costs 1
        ([(0, SLOT - 1)], 1),
    ],
)
def test_estimate_history_credits_is_one_per_call_plus_the_expected_bytes(
    windows: list[tuple[int, int]], cost: int
) -> None:
    assert estimate_history_credits(windows) == cost


# --------------------------------------------------------------------------- backfill plan
def w(asset: str, days_ago_start: int, days_ago_end: int) -> HistoryWindow:
    """The window (days_ago_start days ago, days_ago_end days ago] of `asset`."""
    return HistoryWindow(asset, NOW - days_ago_start * DAY_MS + 1, NOW - days_ago_end * DAY_MS)


def test_a_backfill_of_nothing_stored_runs_from_now_back_newest_first_interleaved() -> None:
    windows = plan({}, ("bitcoin", "ethereum"), 3, NOW)
    assert windows == [
        w("bitcoin", 1, 0),
        w("ethereum", 1, 0),
        w("bitcoin", 2, 1),
        w("ethereum", 2, 1),
        w("bitcoin", 3, 2),
        w("ethereum", 3, 2),
    ]


def test_a_backfill_starts_below_the_oldest_point_stored() -> None:
    oldest = {"bitcoin": NOW - DAY_MS + 1}  # bitcoin holds the last day already
    windows = plan(oldest, ("bitcoin", "ethereum"), 2, NOW)
    assert windows == [w("ethereum", 1, 0), w("bitcoin", 2, 1), w("ethereum", 2, 1)]
    # the oldest stored point itself is not asked again
    assert max(x.end for x in windows if x.asset_id == "bitcoin") == NOW - DAY_MS


def test_a_backfill_that_already_reaches_back_plans_nothing() -> None:
    reached = {"bitcoin": NOW - 3 * DAY_MS + 1, "ethereum": NOW - 10 * DAY_MS}
    assert plan(reached, ("bitcoin", "ethereum"), 3, NOW) == []


def test_a_backfill_partly_reached_plans_the_remainder_in_short_windows() -> None:
    # the oldest stored point is half a day above the target: one half-day window
    oldest = {"bitcoin": NOW - 2 * DAY_MS - DAY_MS // 2}
    assert plan(oldest, ("bitcoin",), 3, NOW) == [
        HistoryWindow("bitcoin", NOW - 3 * DAY_MS + 1, NOW - 2 * DAY_MS - DAY_MS // 2 - 1)
    ]


def test_assets_not_asked_for_are_not_planned() -> None:
    windows = plan({"solana": NOW}, ("bitcoin",), 1, NOW)
    assert {x.asset_id for x in windows} == {"bitcoin"}


def test_the_backfill_estimate_is_the_history_estimate_of_its_windows() -> None:
    windows = plan({}, ("bitcoin", "ethereum"), 3, NOW)
    assert estimate_credits(windows) == 6 * 18
    assert estimate_credits([]) == 0


# --------------------------------------------------------------------------- a window's record
def test_a_fetched_window_records_its_points_and_credits() -> None:
    window = HistoryWindow("bitcoin", 1, DAY_MS)
    result = HistoryResult(window, "fetched", [{"time": 300_000}] * 3, credits=18)
    assert result.asked
    assert result.record() == {
        "asset_id": "bitcoin",
        "window_start": 1,
        "window_end": DAY_MS,
        "outcome": "fetched",
        "points": 3,
        "coincap_credits": 18,
    }


def test_a_deferred_window_records_no_points_and_no_credits() -> None:
    result = HistoryResult(HistoryWindow("bitcoin", 1, 2), "deferred")
    assert not result.asked
    assert result.record() == {
        "asset_id": "bitcoin",
        "window_start": 1,
        "window_end": 2,
        "outcome": "deferred",
    }


def test_a_not_found_window_that_was_asked_records_what_it_cost() -> None:
    result = HistoryResult(HistoryWindow("x", 1, 2), "not_found", credits=1, detail="unknown")
    assert result.record()["coincap_credits"] == 1
    assert "points" not in result.record()
