"""History end to end: the 5-minute series a first run backfills and later cycles keep gap-free.

Every test runs the real `scripts/run_pipeline.sh` (ingest, then `dbt build`) against a real
DuckDB file or PostgreSQL database; only CoinCap is faked, at the HTTP level. The fake's clock
(`fake.now_ms`) is CoinCap's time: the `timestamp` of its answers and the upper limit of its
history. The tests move it, never the machine's clock, and keep it in the past (the marts test
that nothing is observed in the future). Prices follow the fake's clock
(`prices_follow_clock=True`), so every history point and snapshot has a price the tests can
recompute with `fake.price_usd(asset, t)`.

Assertions are on what a user sees: rows in `marts.fct_asset_price_history` and
`marts.fct_asset_prices_daily`, no duplicate in `raw.asset_history`, the history requests CoinCap
received (count, start, end: credits cost money), exit statuses and the run log's `history:` line.

`week` (one warehouse per engine, shared by the read-only checks) runs three cycles on a CoinCap
clock 12 hours behind the machine's: a first cycle with the real 7-day backfill, a cycle 5 minutes
later, and a cycle after 3 hours of CoinCap time without cycles. The retry and kill scenarios each
get a fresh warehouse with a 2-day backfill (20 windows: enough to fail or die in the middle).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    API_KEY,
    ENGINES,
    REPO,
    RUN_PIPELINE,
    CycleResult,
    Installation,
    Warehouse,
    daily_columns,
    make_installation,
)

from devkit.fake_coincap import (
    DAY_MS,
    DEFAULT_ASSET_IDS,
    FIVE_MINUTES_MS,
    FakeCoinCap,
    HistoryRequest,
    Scripted,
    now_ms,
)
from devkit.webhook import WebhookReceiver

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRID = FIVE_MINUTES_MS
HOUR_MS = 3_600_000
ASSETS = list(DEFAULT_ASSET_IDS)  # the ten default assets: 10 x 7 = 70 backfill requests
POINTS_PER_DAY = DAY_MS // GRID  # 288
# CoinCap time in these tests is this far behind the machine's (host clock skew, test 6)
SKEW_MS = 12 * HOUR_MS  # within the 24 h ingest/coincap/settings.py allows (MAX_CLOCK_SKEW_MS)
# ... and sits this far into a 5-minute slot: nothing lands on the grid by accident
OFF_GRID_MS = 2 * 60_000 + 3_457


def floor_grid(t_ms: int) -> int:
    return t_ms - t_ms % GRID


def to_ms(value: datetime) -> int:
    assert value.tzinfo is not None, f"{value!r} is not time-zone aware"
    return (value - EPOCH) // timedelta(milliseconds=1)


def coincap_start_time(behind_ms: int) -> int:
    """A CoinCap time `behind_ms` behind the machine's, OFF_GRID_MS into a 5-minute slot."""
    return floor_grid(now_ms() - behind_ms) - GRID + OFF_GRID_MS


# --------------------------------------------------------------------------- the stack
def new_stack(
    request, tmp: Path, engine: str, coincap_now: int, backfill_days: int
) -> Installation:
    """An installation of the ten default assets, CoinCap's clock at `coincap_now`."""
    fake = FakeCoinCap(api_key=API_KEY, timestamp_ms=coincap_now, prices_follow_clock=True)
    settings = {"COINCAP_BACKFILL_DAYS": str(backfill_days)}
    return make_installation(request, engine, tmp, fake=fake, asset_ids=ASSETS, settings=settings)


# --------------------------------------------------------------------------- reading the marts
@dataclass
class Point:
    price_at: int  # ms
    price_usd: Decimal
    circulating_supply: Decimal | None
    source: str


def series(wh: Warehouse) -> dict[str, list[Point]]:
    """marts.fct_asset_price_history per asset, ordered by price_at (duplicates kept)."""
    rows = wh.query(
        "select asset_id, price_at, price_usd, circulating_supply, source "
        "from marts.fct_asset_price_history order by asset_id, price_at"
    )
    out: dict[str, list[Point]] = defaultdict(list)
    for asset_id, price_at, price, supply, source in rows:
        out[asset_id].append(Point(to_ms(price_at), price, supply, source))
    return dict(out)


def read_series(wh: Warehouse) -> dict[str, list[Point]] | str:
    """The series, or why it could not be read (a test reports it; the scenario goes on)."""
    try:
        return series(wh)
    except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
        return f"marts.fct_asset_price_history could not be read: {type(exc).__name__}: {exc}"


def require(value):
    if isinstance(value, str):
        pytest.fail(value)
    return value


def gaps(points: list[Point]) -> list[str]:
    """Consecutive price_at that are not exactly 5 minutes apart, described."""
    out = []
    for a, b in zip(points, points[1:], strict=False):
        if b.price_at - a.price_at != GRID:
            out.append(
                f"{datetime.fromtimestamp(a.price_at / 1000, UTC):%Y-%m-%d %H:%M:%S} -> "
                f"{datetime.fromtimestamp(b.price_at / 1000, UTC):%Y-%m-%d %H:%M:%S}"
            )
    return out


def check_continuous(
    points_by_asset: dict[str, list[Point]], first: dict[str, int] | int, last: int
) -> None:
    """Every asset's series runs from `first` to `last` on the 5-minute grid with no gap and no
    repeat: exactly (last - first) / 5 min + 1 points."""
    assert sorted(points_by_asset) == sorted(ASSETS), "assets in the series"
    for asset_id, points in points_by_asset.items():
        want_first = first[asset_id] if isinstance(first, dict) else first
        assert all(p.price_at % GRID == 0 for p in points), f"{asset_id}: price_at off the grid"
        holes = gaps(points)
        assert not holes, f"{asset_id}: {len(holes)} gaps or repeats, e.g. {holes[:5]}"
        assert (points[0].price_at, points[-1].price_at) == (want_first, last), (
            f"{asset_id}: series runs {points[0].price_at} .. {points[-1].price_at}, "
            f"expected {want_first} .. {last}"
        )
        assert len(points) == (last - want_first) // GRID + 1


def check_history_prices(
    fake: FakeCoinCap, points_by_asset: dict[str, list[Point]], times: set[int] | None = None
) -> int:
    """Points from history carry exactly CoinCap's price and circulating supply."""
    supply = {a["id"]: Decimal(a["supply"]) for a in fake.snapshot()}
    checked = 0
    for asset_id, points in points_by_asset.items():
        for p in points:
            if p.source != "history" or (times is not None and p.price_at not in times):
                continue
            assert p.price_usd == Decimal(fake.price_usd(asset_id, p.price_at)), (
                asset_id,
                p,
            )
            assert p.circulating_supply == supply[asset_id], (asset_id, p)
            checked += 1
    return checked


def check_nothing_doubled(wh: Warehouse) -> None:
    total, distinct = wh.query(
        "select count(*), count(distinct asset_id || '@' || cast(price_at as varchar)) "
        "from marts.fct_asset_price_history"
    )[0]
    assert total == distinct, f"fct_asset_price_history: {total} rows, {distinct} distinct keys"
    doubled = wh.query(
        "select asset_id, time, count(*) from raw.asset_history "
        "group by asset_id, time having count(*) > 1 order by asset_id, time"
    )
    assert not doubled, f"raw.asset_history has repeated (asset_id, time): {doubled[:10]}"


def raw_history_counts(wh: Warehouse) -> dict[str, int]:
    return dict(wh.query("select asset_id, count(*) from raw.asset_history group by asset_id"))


def history_lines(result: CycleResult) -> list[str]:
    return result.lines_with("history:")


def assert_history_logged(result: CycleResult, n: int) -> None:
    lines = history_lines(result)
    assert [ln for ln in lines if re.search(rf"history:\s*{n}\b", ln)], (
        f"no run-log line 'history: {n} ...'; history lines: {lines}\n{result.describe()}"
    )


def windows_by_asset(requests: list[HistoryRequest]) -> dict[str, list[HistoryRequest]]:
    out: dict[str, list[HistoryRequest]] = defaultdict(list)
    for r in requests:
        out[r.asset_id].append(r)
    return {k: sorted(v, key=lambda r: (r.start or 0, r.at)) for k, v in out.items()}


def check_windows(requests: list[HistoryRequest], after: int, until: int) -> None:
    """One asset's successful windows cover exactly (after, until]: the first starts at `after`
    (+1 ms allowed), each next one where the previous ended (+1 ms allowed), the last ends at
    `until`; every window is m5 and at most one day long."""
    ok = [r for r in requests if r.status == 200]
    assert ok, "no successful history request"
    for r in requests:
        assert r.interval == "m5", r
        assert r.start is not None and r.end is not None, f"history request without a range: {r}"
        assert r.end - r.start <= DAY_MS, f"window longer than a day: {r}"
    assert ok[0].start in (after, after + 1), (
        f"first window starts {ok[0].start}, gap after {after}"
    )
    for prev, nxt in zip(ok, ok[1:], strict=False):
        assert nxt.start in (prev.end, prev.end + 1), f"windows not contiguous: {prev} -> {nxt}"
    assert ok[-1].end == until, f"last window ends {ok[-1].end}, CoinCap time is {until}"


# --------------------------------------------------------------------------- a week, then more
def doubled(wh: Warehouse) -> str | None:
    """Why the series or raw history has a repeated key, or None."""
    try:
        check_nothing_doubled(wh)
    except AssertionError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
        return f"could not check for repeated keys: {type(exc).__name__}: {exc}"
    return None


def read_daily(wh: Warehouse) -> dict[tuple[str, date], tuple] | str:
    """fct_asset_prices_daily: (asset, UTC day) -> (open, high, low, close, count)."""
    try:
        c = daily_columns(wh)
        rows = wh.query(
            f"select asset_id, {c['day']}, {c['open']}, {c['high']}, {c['low']}, {c['close']}, "
            f"{c['count']} from marts.fct_asset_prices_daily"
        )
    except Exception as exc:  # noqa: BLE001 - reported by the test that needs it
        return f"marts.fct_asset_prices_daily could not be read: {type(exc).__name__}: {exc}"
    got = {}
    for asset_id, day, open_, high, low, close, count in rows:
        day = day.date() if isinstance(day, datetime) else day
        got[(asset_id, day)] = (open_, high, low, close, int(count))
    return got


@pytest.fixture(scope="module", params=ENGINES)
def week(request, tmp_path_factory):
    """Five cycles on one warehouse, CoinCap's clock SKEW_MS (12 hours) behind the machine's:
    T1 (empty warehouse: 7-day backfill), T2 = T1 + 5 min, T3 = T2 + 3 h (a gap), then two
    cycles about 5 minutes apart whose timestamps jitter across slot edges: T4 is 4 min 59 s
    into the slot after T3's, T5 = T4 + 5 min 2 s is 1 s into the slot after next.
    What the read-only tests check is captured after the cycle it belongs to."""
    engine = request.param
    t1 = coincap_start_time(SKEW_MS)
    stack = new_stack(request, tmp_path_factory.mktemp(f"week-{engine}"), engine, t1, 7)
    try:
        times, history, series_after, assets_requests = [], [], [], []
        after_gap: dict[str, Any] = {}
        t3 = t1 + 5 * 60_000 + 3 * HOUR_MS
        t4 = floor_grid(t3) + GRID + 299_000
        for step in (0, 5 * 60_000, 3 * HOUR_MS, t4 - t3, 302_000):
            stack.fake.advance(step)
            times.append(stack.fake.now_ms)
            stack.cycle()
            history.append(stack.fake.history_requests())
            assets_requests.append(len(stack.fake.requests_to("/assets")))
            series_after.append(read_series(stack.warehouse))
            if len(times) == 3:
                after_gap = {
                    "doubled": doubled(stack.warehouse),
                    "raw_counts": raw_history_counts(stack.warehouse),
                    "daily": read_daily(stack.warehouse),
                }
        assert times[2] == t3 and times[3] == t4
        yield {
            "stack": stack,
            "t": times,
            "history": history,
            "series": series_after,
            "assets_requests": assets_requests,
            "after_gap": after_gap,
            "machine_ms": now_ms(),
        }
    finally:
        stack.close()


def require_ok(result: CycleResult) -> None:
    assert result.returncode == 0, result.describe()


def test_first_cycle_backfills_seven_days_of_5_minute_points(week):
    """An empty warehouse: 7 days x 288 points for every asset, 7 one-day requests per asset.

    CoinCap answers points on the grid within the windows, which cover (T1 - 7 d, T1]: a half-open
    range of exactly 7 x 288 intervals holds exactly 2016 grid points whatever T1's alignment,
    the last being floor(T1) and the first floor(T1) - 2015 x 5 min. The snapshot at T1 floors to
    floor(T1), a point already there, so the series has exactly 2016 points per asset."""
    stack, t1 = week["stack"], week["t"][0]
    result = stack.results[0]
    require_ok(result)
    requests = week["history"][0]
    assert len(requests) == len(ASSETS) * 7, [(r.asset_id, r.start, r.end) for r in requests]
    assert all(r.status == 200 for r in requests), [r for r in requests if r.status != 200]
    by_asset = windows_by_asset(requests)
    assert sorted(by_asset) == sorted(ASSETS)
    for asset_id, windows in by_asset.items():
        assert len(windows) == 7, (asset_id, windows)
        check_windows(windows, t1 - 7 * DAY_MS, t1)
    assert_history_logged(result, len(ASSETS) * 7)

    points = require(week["series"][0])
    last = floor_grid(t1)
    first = last - (7 * POINTS_PER_DAY - 1) * GRID
    check_continuous(points, first, last)
    assert {len(p) for p in points.values()} == {7 * POINTS_PER_DAY}  # 2016
    # prices and supplies are CoinCap's, point by point (the last point may be the snapshot's)
    assert check_history_prices(stack.fake, points) >= len(ASSETS) * (7 * POINTS_PER_DAY - 1)


def test_next_cycle_makes_no_history_request_and_the_snapshot_extends_the_series(week):
    stack, t1, t2 = week["stack"], week["t"][0], week["t"][1]
    result = stack.results[1]
    require_ok(result)
    assert week["history"][1] == [], "history requests without a gap (credits cost money)"
    assert week["assets_requests"][1] == 1
    assert_history_logged(result, 0)

    points = require(week["series"][1])
    first = floor_grid(t1) - (7 * POINTS_PER_DAY - 1) * GRID
    check_continuous(points, first, floor_grid(t2))
    for asset_id, pts in points.items():
        assert len(pts) == 7 * POINTS_PER_DAY + 1
        newest = pts[-1]
        assert newest.source == "snapshot", (asset_id, newest)
        assert newest.price_usd == Decimal(stack.fake.price_usd(asset_id, t2)), (asset_id, newest)


def test_three_hours_without_cycles_then_one_fills_exactly_the_gap(week):
    stack, (t1, t2, t3) = week["stack"], week["t"][:3]
    result = stack.results[2]
    require_ok(result)
    requests = week["history"][2]
    # one request per asset, exactly (T2, T3]: the newest stored point is the snapshot at T2
    assert sorted(r.asset_id for r in requests) == sorted(ASSETS), requests
    for r in requests:
        assert r.status == 200 and r.interval == "m5", r
        assert r.start in (t2, t2 + 1) and r.end == t3, (
            f"{r.asset_id}: asked for [{r.start}, {r.end}], the gap is ({t2}, {t3}]"
        )
    assert_history_logged(result, len(ASSETS))

    points = require(week["series"][2])
    first = floor_grid(t1) - (7 * POINTS_PER_DAY - 1) * GRID
    check_continuous(points, first, floor_grid(t3))
    gap_points = (t3 - t2) // GRID  # 36 grid points in (T2, T3]
    assert gap_points == 36
    assert {len(p) for p in points.values()} == {7 * POINTS_PER_DAY + 1 + gap_points}
    filled = set(range(floor_grid(t2) + GRID, floor_grid(t3), GRID))
    assert check_history_prices(stack.fake, points, filled) == len(ASSETS) * len(filled)
    assert week["after_gap"]["doubled"] is None, week["after_gap"]["doubled"]
    # raw: the 2016 backfilled points and the 36 of the gap, each once
    assert week["after_gap"]["raw_counts"] == {a: 7 * POINTS_PER_DAY + gap_points for a in ASSETS}


def test_host_clock_skew_neither_invents_nor_hides_a_gap(week):
    """CoinCap's clock runs 12 hours behind the machine's. Cycle 2 (CoinCap +5 min) must make no
    history request although the machine's clock is 12 hours past the newest point (no invented
    gap), and cycle 3 (CoinCap +3 h, a few seconds on the machine's clock) must fill the 3 hours
    (no hidden gap); no point is ever asked for or stored after CoinCap's time."""
    stack, times = week["stack"], week["t"]
    assert week["machine_ms"] - times[-1] > SKEW_MS - 4 * HOUR_MS, "the scenario lost its skew"
    for result in stack.results[:3]:
        require_ok(result)
    assert week["history"][1] == [], "the machine's clock invented a gap"
    assert len(week["history"][2]) == len(ASSETS), "a gap in CoinCap time was not filled"
    for n, (requests, t) in enumerate(zip(week["history"], times, strict=True)):
        beyond = [r for r in requests if r.end is None or r.end > t]
        assert not beyond, f"cycle {n + 1} asked beyond CoinCap's time {t}: {beyond}"
    points = require(week["series"][2])
    assert {p[-1].price_at for p in points.values()} == {floor_grid(times[2])}


def test_daily_prices_come_from_the_continuous_series(week):
    """fct_asset_prices_daily has no holes: every UTC day the series touches, with open, high,
    low, close and count of that day's points of the series (288 on a whole day). Read after
    the gap was filled (cycle 3)."""
    stack = week["stack"]
    require_ok(stack.results[2])
    points = require(week["series"][2])
    got = require(week["after_gap"]["daily"])
    expected = {}
    for asset_id, pts in points.items():
        by_day: dict[date, list[Decimal]] = defaultdict(list)
        for p in pts:
            by_day[datetime.fromtimestamp(p.price_at / 1000, UTC).date()].append(p.price_usd)
        for day, prices in by_day.items():
            expected[(asset_id, day)] = (
                prices[0],
                max(prices),
                min(prices),
                prices[-1],
                len(prices),
            )
    assert set(got) == set(expected), (
        f"days missing: {sorted(set(expected) - set(got))[:5]}, "
        f"extra: {sorted(set(got) - set(expected))[:5]}"
    )
    wrong = {k: (got[k], v) for k, v in expected.items() if got[k] != v}
    assert not wrong, f"{len(wrong)} days differ (got, expected), e.g. {list(wrong.items())[:3]}"
    assert Counter(v[4] for v in expected.values())[POINTS_PER_DAY] >= len(ASSETS) * 6


def test_cycles_a_little_more_than_5_minutes_apart_leave_no_hole(week):
    """CoinCap's timestamps jitter around the cron cadence. T4 is 4 min 59 s into its slot;
    T5 = T4 + 5 min 2 s is 1 s into the slot after next. No cycle was missed, yet no snapshot
    falls in the slot between: the series must still be continuous after cycle 5 (CoinCap's
    history for (T4, T5] is the only source of that point: at most one request per asset),
    and both cycles succeed."""
    t1, t3, t4, t5 = week["t"][0], *week["t"][2:5]
    results = week["stack"].results
    assert (floor_grid(t4) - floor_grid(t3), floor_grid(t5) - floor_grid(t4)) == (GRID, 2 * GRID)
    require_ok(results[3])
    assert week["history"][3] == [], "history requests although no slot is missing"
    require_ok(results[4])
    requests = week["history"][4]
    assert len({r.asset_id for r in requests}) == len(requests) <= len(ASSETS), requests
    for r in requests:
        assert r.status == 200 and r.start in (t4, t4 + 1) and r.end == t5, r
    points = require(week["series"][4])
    check_continuous(points, floor_grid(t1) - (7 * POINTS_PER_DAY - 1) * GRID, floor_grid(t5))


# --------------------------------------------------------------------------- fresh warehouses
@pytest.fixture(params=ENGINES)
def fresh(request, tmp_path):
    """An empty warehouse and a fake CoinCap 20 hours behind the machine; 2-day backfill."""
    stack = new_stack(request, tmp_path, request.param, coincap_start_time(20 * HOUR_MS), 2)
    try:
        yield stack
    finally:
        stack.close()


def test_429_and_500_in_the_middle_of_a_backfill_are_retried(fresh):
    """The 5th history request is answered 429 (Retry-After: 1), the 12th 500, once each: both
    are retried with the same window, the cycle succeeds and the series is complete."""
    t = fresh.fake.now_ms
    fresh.fake.fail_history(5, Scripted(429, {"error": "Too Many Requests"}, {"Retry-After": "1"}))
    fresh.fake.fail_history(12, Scripted(500, {"error": "Internal Server Error"}))

    result = fresh.cycle()

    require_ok(result)
    requests = fresh.fake.history_requests()
    assert [r.status for r in requests].count(200) == len(ASSETS) * 2, requests
    assert len(requests) == len(ASSETS) * 2 + 2, "not exactly one retry per failure"
    for nth, status in ((5, 429), (12, 500)):
        failed, retry = requests[nth - 1], requests[nth]
        assert failed.status == status, (nth, failed)
        assert (retry.asset_id, retry.start, retry.end, retry.status) == (
            failed.asset_id,
            failed.start,
            failed.end,
            200,
        ), f"request {nth} ({status}) was not retried with the same window: {retry}"
    assert requests[5].at - requests[4].at >= 0.9, "Retry-After: 1 was not honoured"
    by_asset = windows_by_asset(requests)
    assert sorted(by_asset) == sorted(ASSETS)
    for windows in by_asset.values():
        check_windows(windows, t - 2 * DAY_MS, t)
    points = series(fresh.warehouse)
    last = floor_grid(t)
    check_continuous(points, last - (2 * POINTS_PER_DAY - 1) * GRID, last)
    check_nothing_doubled(fresh.warehouse)


def test_cycle_killed_in_the_middle_of_a_backfill_is_completed_by_the_next(fresh):
    """The first cycle is SIGKILLed (its whole process group, as a reboot or OOM kill would)
    while its 6th history request is in flight. The next cycle, 5 minutes later in CoinCap time,
    succeeds and leaves a complete, gap-free series with nothing doubled."""
    t_killed = fresh.fake.now_ms
    served = 5
    fresh.fake.hold_history(after=served)
    env = fresh.env()
    log = fresh.tmp / "killed-cycle.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", str(RUN_PIPELINE)],
            env=env,
            cwd=env.get("HOME", str(REPO)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        arrived = fresh.fake.wait_for_history_requests(served + 1, timeout=120)
        assert arrived, f"the cycle never reached history request {served + 1}:\n{log.read_text()}"
        assert proc.poll() is None, f"the cycle ended on its own:\n{log.read_text()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        fresh.fake.release()
    assert proc.returncode == -signal.SIGKILL
    before = fresh.fake.history_requests()
    assert [r.status for r in before[:served]] == [200] * served, before
    time.sleep(0.2)  # the held request is answered into a dead socket

    t = fresh.fake.advance(5 * 60_000)
    result = fresh.cycle()

    require_ok(result)
    requests = fresh.fake.history_requests()
    assert all(r.status == 200 for r in requests), requests
    assert len(requests) <= len(ASSETS) * 2 + len(ASSETS), f"{len(requests)} history requests"
    for r in requests:  # nothing asked twice, nothing beyond what the two cycles needed
        assert r.start > t_killed - 2 * DAY_MS - GRID and r.end <= t, r
    assert len({(r.asset_id, r.start) for r in requests}) == len(requests), requests
    points = series(fresh.warehouse)
    last = floor_grid(t)
    # the next cycle either backfills (T - 2 d, T] afresh or completes what the killed one
    # fetched (from T_killed - 2 d): either way it covers at least 2 days and starts on one of them
    full_from = last - (2 * POINTS_PER_DAY - 1) * GRID
    firsts = {a: p[0].price_at for a, p in points.items()}
    for asset_id, first in firsts.items():
        assert first in (full_from, full_from - GRID), (asset_id, first, full_from)
    check_continuous(points, firsts, last)
    check_nothing_doubled(fresh.warehouse)
    assert check_history_prices(fresh.fake, points) >= len(ASSETS) * (2 * POINTS_PER_DAY - 1)


def test_history_down_during_a_gap_is_fetched_by_a_later_cycle(fresh):
    """CoinCap's history is down for bitcoin (503 on every try) when a 1-hour gap is noticed.
    That cycle names bitcoin's history in its log; once history answers again, the next cycle
    asks for bitcoin's whole hole, exactly (T0, T2], and the series ends complete and single."""
    if fresh.warehouse.engine != "duckdb":  # ingest behaviour, engine-independent: runtime budget
        pytest.skip("history-down recovery is checked on DuckDB only (runtime budget)")
    fresh.settings["COINCAP_BACKFILL_DAYS"] = "1"
    t0 = fresh.fake.now_ms
    require_ok(fresh.cycle())

    t1 = fresh.fake.advance(HOUR_MS)
    fresh.fake.fail_history_always(
        Scripted(503, {"error": "Service Unavailable"}, {"Retry-After": "0"}), asset_id="bitcoin"
    )
    down = fresh.cycle()
    # not asserted (a design choice): whether a known, retried hole fails the cycle. Shown by -rP.
    print(f"cycle with bitcoin's history down: exit {down.returncode}")
    print("\n".join(ln for ln in down.lines if re.search(r"error|warn|FAIL |history: \d", ln)))
    tried = fresh.fake.history_requests("bitcoin")
    assert len(tried) > 1 and all(r.status == 503 for r in tried), f"not retried: {tried}"
    assert [ln for ln in down.lines if "bitcoin" in ln and "history" in ln.lower()], (
        f"the log does not say bitcoin's history was not fetched:\n{down.describe()}"
    )
    for r in fresh.fake.history_requests():
        assert (r.start, r.end) in ((t0, t1), (t0 + 1, t1)), r

    fresh.fake.fail_history_always(None, asset_id="bitcoin")
    t2 = fresh.fake.advance(5 * 60_000)
    require_ok(fresh.cycle())

    requests = fresh.fake.history_requests()
    bitcoin = [r for r in requests if r.asset_id == "bitcoin"]
    assert len(bitcoin) == 1 and bitcoin[0].start in (t0, t0 + 1) and bitcoin[0].end == t2, (
        f"bitcoin's hole is ({t0}, {t2}]; asked for {bitcoin}"
    )
    for r in requests:  # another asset is asked again only if the failed cycle loaded nothing
        assert r.status == 200 and r.start in (t0, t0 + 1) and r.end == t2, r
    last = floor_grid(t2)
    check_continuous(series(fresh.warehouse), floor_grid(t0) - (POINTS_PER_DAY - 1) * GRID, last)
    check_nothing_doubled(fresh.warehouse)


def test_a_backfill_spread_over_cycles_by_the_budget_leaves_no_slot_pending(fresh):
    """COINCAP_MAX_HISTORY_REQUESTS=2 and three assets with a 2-day backfill (two windows each):
    the first cycle fetches bitcoin's and defers the others' windows (pending holes), the
    cycles after it, 5 minutes apart, ask every deferred window, from the first cycle's horizon
    on (not from their own clock minus 2 days, which would leave its first slots pending for
    ever), and then nothing: no hole is left, the series runs from that horizon without a gap."""
    assets = ["bitcoin", "ethereum", "solana"]
    fresh.asset_ids = assets
    fresh.settings["COINCAP_MAX_HISTORY_REQUESTS"] = "2"
    t0 = fresh.fake.now_ms
    require_ok(fresh.cycle())
    pending = fresh.warehouse.count("marts.fct_asset_price_gaps", "gap_status = 'pending'")
    assert pending > 0, "the budget deferred nothing: the test proves nothing"
    for _ in range(8):
        fresh.fake.advance(5 * 60_000)
        require_ok(fresh.cycle())
        if not fresh.fake.history_requests():
            break
    assert not fresh.fake.history_requests(), "history still asked for after 8 cycles"
    left = fresh.warehouse.query(
        "select asset_id, price_at, gap_status, reason from marts.fct_asset_price_gaps "
        "order by asset_id, price_at"
    )
    assert left == [], f"{len(left)} slot(s) left in the gaps, e.g. {left[:3]}"
    points = {k: v for k, v in series(fresh.warehouse).items() if k in assets}
    horizon = -(-(t0 - 2 * DAY_MS + 1) // GRID) * GRID  # the first slot the first cycle planned
    for asset_id in assets:
        first = points[asset_id][0].price_at
        assert first == horizon, f"{asset_id}: series starts {first}, expected {horizon}"
        assert not gaps(points[asset_id]), f"{asset_id}: {gaps(points[asset_id])[:3]}"


@pytest.mark.parametrize("engine", ENGINES)
def test_coincap_clock_ten_minutes_ahead_is_a_warning_and_one_alert(engine, request, tmp_path):
    """CoinCap's clock 10 minutes ahead of this machine's (the machine's clock is behind), two
    cycles: both exit 0 and load every asset into the marts (dbt's `not_in_future` tests use the
    ingest's bound, 24 h), each cycle says so in one `warning:` line, and the episode is one
    alert, naming the clock and NTP."""
    webhook = WebhookReceiver()
    ahead = 10 * 60_000
    fake = FakeCoinCap(api_key=API_KEY, timestamp_ms=now_ms() + ahead, prices_follow_clock=True)
    settings = {"COINCAP_BACKFILL_DAYS": "1", "ALERT_WEBHOOK_URL": webhook.url}
    assets = ["bitcoin", "ethereum"]
    try:
        with make_installation(
            request, engine, tmp_path, fake=fake, asset_ids=assets, settings=settings
        ) as inst:
            for _ in range(2):
                fake.now_ms = now_ms() + ahead
                result = inst.cycle()
                require_ok(result)
                warned = result.lines_with("warning:", "CoinCap's clock is")
                assert len(warned) == 1, result.describe()
                assert "min ahead of this machine's" in warned[0] and "NTP" in warned[0]
                observed = EPOCH + timedelta(milliseconds=fake.now_ms)
                rows = inst.warehouse.query(
                    "select asset_id from marts.fct_asset_prices where observed_at = ? "
                    "order by asset_id",
                    (observed,),
                )
                assert [r[0] for r in rows] == assets, result.describe()
            texts = webhook.delivered()
            assert len(texts) == 1, texts
            assert "CoinCap's clock is" in texts[0] and "ahead" in texts[0] and "NTP" in texts[0]
    finally:
        webhook.close()
