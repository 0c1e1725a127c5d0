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
    fetch_history,
    history_start,
    owed_start,
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


# --------------------------------------------------------------------------- owed windows
def test_a_first_plan_runs_back_the_backfill_days() -> None:
    assert history_start(NOW, None, None, 7) == (NOW - 7 * DAY_MS, "backfill of 7 d")


def test_a_plan_starts_at_the_oldest_owed_window_even_before_the_backfill_horizon() -> None:
    # the first cycle planned from NOW - 7 d and deferred everything; this cycle's clock is
    # 5 minutes later, but the slots between the two horizons are owed
    owed = NOW - 7 * DAY_MS + 1
    later = NOW + SLOT
    assert history_start(later, None, owed, 7) == (owed - 1, "windows owed by earlier cycles")
    # the same after the backfill days changed, or with none at all
    assert history_start(later, None, owed, 0) == (owed - 1, "windows owed by earlier cycles")


def test_owed_windows_are_asked_even_when_the_series_has_no_gap() -> None:
    assert history_start(NOW, NOW - 60_000, None, 7) is None  # nothing to ask
    owed = NOW - 2 * DAY_MS
    assert history_start(NOW, NOW - 60_000, owed, 7) == (owed - 1, "windows owed by earlier cycles")
    # a gap that starts before the owed window plans from the gap
    assert history_start(NOW, NOW - DAY_MS, NOW - DAY_MS + 1, 7)[0] == NOW - DAY_MS


def r(outcome: str, start: int) -> HistoryResult:
    return HistoryResult(HistoryWindow("bitcoin", start, start + 1), outcome)


@pytest.mark.parametrize(
    ("outcomes", "owed"),
    [
        ([], None),
        (["fetched", "fetched"], None),  # all fetched: nothing owed
        (["fetched", "deferred", "deferred"], 2),  # owed from the first deferred window
        (["failed", "deferred"], 1),  # a failed window is owed too
        (["not_found", "not_found"], None),  # no history at CoinCap: known holes, never again
    ],
)
def test_what_an_asset_still_owes_after_a_cycle(outcomes: list[str], owed: int | None) -> None:
    assert owed_start([r(o, i + 1) for i, o in enumerate(outcomes)]) == owed


class _Meter:
    requests = 0
    credits = 0


class _History:
    """CoinCap's history, in-process: every 5-minute point in the window asked for."""

    def __init__(self) -> None:
        self.meter = _Meter()

    def get(self, path: str, params: dict) -> dict:
        self.meter.requests += 1
        self.meter.credits += 1
        first = -(-params["start"] // SLOT) * SLOT
        points = [{"time": t, "priceUsd": "1"} for t in range(first, params["end"] + 1, SLOT)]
        return {"data": points, "timestamp": params["end"]}


def test_a_backfill_spread_over_cycles_by_the_budget_leaves_no_slot_unasked() -> None:
    """Two assets, a 2-day backfill, one history request per cycle, the clock moving 5 minutes a
    cycle: whatever was recorded as deferred is fetched by a later cycle, from the first cycle's
    horizon on, without a hole (the transformer's planning: history_start and owed_start)."""
    client, asked, owed = _History(), {}, {}
    deferred, fetched = [], {"bitcoin": [], "ethereum": []}
    now = NOW
    for _ in range(20):
        windows = []
        for asset_id in ("bitcoin", "ethereum"):
            start = history_start(now, asked.get(asset_id), owed.get(asset_id), 2)
            if start is not None:
                windows += [HistoryWindow(asset_id, s, e) for s, e in split_windows(start[0], now)]
        results = list(fetch_history(client, windows, max_requests=1))
        for result in results:
            if result.outcome == "fetched":
                fetched[result.window.asset_id].append(result.window)
                asked[result.window.asset_id] = result.window.end
            else:
                deferred.append(result.window)
        for asset_id in ("bitcoin", "ethereum"):
            mine = [x for x in results if x.window.asset_id == asset_id]
            if mine and owed_start(mine) is None:
                owed.pop(asset_id, None)
            elif mine:
                owed[asset_id] = owed_start(mine)
        now += SLOT
    assert deferred, "the budget deferred nothing: the test proves nothing"
    assert not owed
    for asset_id, windows in fetched.items():
        assert windows[0].start == NOW - 2 * DAY_MS + 1, asset_id  # the first cycle's horizon
        for before, after in zip(windows, windows[1:], strict=False):
            assert after.start == before.end + 1, asset_id  # no hole between fetched windows
    # every window once deferred lies inside what was fetched later
    for window in deferred:
        assert any(
            f.start <= window.start and window.end <= f.end or f.start <= window.start <= f.end
            for f in fetched[window.asset_id]
        ), window
