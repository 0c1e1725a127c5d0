"""End to end: fake CoinCap v3 -> scripts/run_pipeline.sh -> the marts, on DuckDB and PostgreSQL.

Every test runs the real script (ingest, then `dbt build`) against a real warehouse; only CoinCap
is a fake, at the HTTP level (devkit/fake_coincap.py). Assertions are on what a user sees: rows in
the marts, the exit status, and the lines of the cycle's log.

Scenarios that only read are grouped on module-scoped warehouses (one per engine) so the file runs
in a few minutes: `three_cycles` (two observations, then the second served again) and `baseline`
(one good cycle, then failures that must leave it untouched).
"""

from __future__ import annotations

import fcntl
import os
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    API_KEY,
    ENGINES,
    ISO_UTC_LINE,
    REPO,
    Installation,
    Warehouse,
    daily_columns,
    make_installation,
)

from devkit.fake_coincap import ALL_DEFAULT_IDS, DEFAULT_ASSETS, FakeCoinCap, Scripted, now_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# CoinCap field -> mart column (docs/contract.md), for the exact decimals
DECIMAL_COLUMNS = {
    "priceUsd": "price_usd",
    "marketCapUsd": "market_cap_usd",
    "volumeUsd24Hr": "volume_usd_24h",
    "supply": "supply",
    "maxSupply": "max_supply",
    "changePercent24Hr": "change_percent_24h",
    "vwap24Hr": "vwap_24h",
}
# dlt's load id, carried into the marts: a re-delivered observation may refresh it, nothing else
LOAD_METADATA = ("load_id",)
FCT_COLUMNS = ["asset_id", "symbol", "name", "rank", *DECIMAL_COLUMNS.values(), "observed_at"]


def observed_at(ts_ms: int) -> datetime:
    """CoinCap's ms timestamp as the exact UTC instant (no float rounding)."""
    return EPOCH + timedelta(milliseconds=ts_ms)


# --------------------------------------------------------------------------- the stack
class Stack(Installation):
    """An installation (devkit.installation) of every default asset; `state()` is what a failed
    cycle must leave exactly as it was."""

    base_snapshot: tuple[list[dict], int] | None = None

    def __init__(self, warehouse: Warehouse, fake: FakeCoinCap, tmp: Path):
        super().__init__(warehouse, fake, tmp, asset_ids=ALL_DEFAULT_IDS)

    def state(self) -> dict[str, Any]:
        """What a failed cycle must leave exactly as it was."""
        return {
            "marts": self.warehouse.marts(),
            "loads": self.warehouse.load_ids(),
            "raw_rows": self.warehouse.count("raw.assets"),
        }


def shifted_snapshot(assets: list[dict], step: int) -> list[dict]:
    """The same assets a few minutes later: prices up for some, down for others, one rank change.
    Every number stays a 16-decimal string, as CoinCap sends it."""
    q = Decimal("0.0000000000000001")
    out = []
    with localcontext(prec=60):  # market caps have 30 significant digits
        for i, asset in enumerate(assets):
            new = dict(asset)
            move = Decimal("0.0137") if i % 2 else Decimal("-0.0071")
            factor = 1 + step * move
            new["priceUsd"] = f"{(Decimal(asset['priceUsd']) * factor).quantize(q):f}"
            new["marketCapUsd"] = f"{(Decimal(asset['marketCapUsd']) * factor).quantize(q):f}"
            if asset["id"] == "solana":
                new["rank"] = str(int(asset["rank"]) + step)
            out.append(new)
    return out


@pytest.fixture
def stack(warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path) -> Stack:
    return Stack(warehouse, fake_coincap, tmp_path)


def _module_stack(request, tmp_path_factory, name: str) -> Stack:
    engine = request.param
    return make_installation(request, engine, tmp_path_factory.mktemp(f"{name}-{engine}"), Stack)


@pytest.fixture(scope="module", params=ENGINES)
def three_cycles(request, tmp_path_factory):
    """Cycle 1 at t1, cycle 2 at t2 = t1 + 5 min (new figures), cycle 3 serving t2 again.
    Yields the stack, the observations CoinCap sent and the marts after each cycle."""
    stack = _module_stack(request, tmp_path_factory, "three-cycles")
    try:
        t1 = now_ms() - 11 * 60_000 + 123  # in the past, with milliseconds that must survive
        t2 = t1 + 5 * 60_000 + 271
        snap1 = [dict(a) for a in DEFAULT_ASSETS]
        snap2 = shifted_snapshot(snap1, 1)
        sent: dict[int, list[dict]] = {}
        marts_after: list[dict] = []
        requests_per_cycle: list[list] = []
        for ts, snap in ((t1, snap1), (t2, snap2), (t2, snap2)):
            stack.fake.set_snapshot(snap, ts)
            sent[ts] = snap
            # no history backfill: the daily mart then holds exactly the snapshots sent here
            stack.good_cycle(COINCAP_BACKFILL_DAYS="0")
            requests_per_cycle.append(list(stack.fake.requests))
            marts_after.append(stack.warehouse.marts(without=LOAD_METADATA))
        yield {
            "stack": stack,
            "sent": sent,
            "t1": t1,
            "t2": t2,
            "marts_after": marts_after,
            "requests": requests_per_cycle,
        }
    finally:
        stack.close()


@pytest.fixture(scope="module", params=ENGINES)
def baseline_stack(request, tmp_path_factory):
    """One good cycle; the tests using it then try cycles that must leave it as it is."""
    stack = _module_stack(request, tmp_path_factory, "baseline")
    try:
        stack.base_snapshot = (DEFAULT_ASSETS, now_ms() - 60_000)
        stack.fake.set_snapshot(*stack.base_snapshot)
        stack.good_cycle()
        yield stack
    finally:
        stack.close()


@pytest.fixture
def baseline(baseline_stack: Stack):
    """The baseline stack, its fake serving the baseline's snapshot with normal answers."""
    baseline_stack.fake.reset()
    baseline_stack.fake.set_snapshot(*baseline_stack.base_snapshot)
    yield baseline_stack
    baseline_stack.fake.reset()


def fct_rows(wh: Warehouse) -> dict[tuple[str, datetime], dict[str, Any]]:
    rows = wh.query(f"select {', '.join(FCT_COLUMNS)} from marts.fct_asset_prices")
    return {(r[0], r[-1]): dict(zip(FCT_COLUMNS, r, strict=True)) for r in rows}


# ------------------------------------------------------------------ two cycles, then a repeat
def test_each_observation_is_one_row_and_a_repeat_adds_none(three_cycles):
    stack, t1, t2 = three_cycles["stack"], three_cycles["t1"], three_cycles["t2"]
    wh = stack.warehouse
    counts = wh.query("select asset_id, count(*) from marts.fct_asset_prices group by asset_id")
    assert dict(counts) == {asset_id: 2 for asset_id in ALL_DEFAULT_IDS}
    keys = set(fct_rows(wh))
    assert keys == {(a, observed_at(t)) for a in ALL_DEFAULT_IDS for t in (t1, t2)}
    after = three_cycles["marts_after"]
    assert len(after[0]["fct_asset_prices"]) == len(ALL_DEFAULT_IDS)
    assert len(after[1]["fct_asset_prices"]) == 2 * len(ALL_DEFAULT_IDS)
    # the same snapshot served again: every mart exactly as it was
    assert after[2] == after[1]
    # and raw did not double either (dlt merges on (id, timestamp))
    assert wh.count("raw.assets") == 2 * len(ALL_DEFAULT_IDS)


def test_mart_values_equal_what_coincap_sent(three_cycles):
    """Exact decimals (16 decimals, < 0.0001, 15 integer digits), nulls kept, UTC timestamps."""
    rows = fct_rows(three_cycles["stack"].warehouse)
    checked = 0
    for ts, assets in three_cycles["sent"].items():
        for asset in assets:
            row = rows[(asset["id"], observed_at(ts))]
            assert row["symbol"] == asset["symbol"]
            assert row["name"] == asset["name"]
            assert row["rank"] == int(asset["rank"])
            for field_name, column in DECIMAL_COLUMNS.items():
                sent = asset[field_name]
                got = row[column]
                if sent is None:
                    assert got is None, f"{asset['id']}.{column}: null became {got!r}"
                else:
                    assert isinstance(got, Decimal), f"{column} is {type(got).__name__}"
                    assert got == Decimal(sent), f"{asset['id']}.{column}: {got} != {sent}"
                    checked += 1
            got_at = row["observed_at"]
            assert got_at.tzinfo is not None, "observed_at is not time-zone aware"
            assert got_at == observed_at(ts)
            assert got_at.utcoffset() is not None
    assert checked > 100
    # the extremes are really in there
    shib = rows[("shiba-inu", observed_at(three_cycles["t1"]))]
    assert shib["price_usd"] == Decimal("0.0000157050460924")
    assert shib["supply"] == Decimal("589247837171287.3220000000000000")
    assert shib["max_supply"] is None
    btc = rows[("bitcoin", observed_at(three_cycles["t1"]))]
    assert btc["price_usd"] == Decimal("96239.8456418046889309")


def test_mart_column_types(three_cycles):
    """Money and supply are exact decimals (never float or text); observed_at is timestamptz."""
    cols = three_cycles["stack"].warehouse.columns("marts", "fct_asset_prices")
    missing = [c for c in FCT_COLUMNS if c not in cols]
    assert not missing, f"fct_asset_prices lacks {missing}; has {list(cols)}"
    for column in DECIMAL_COLUMNS.values():
        assert re.match(r"(numeric|decimal)", cols[column]), f"{column} is {cols[column]}"
    assert cols["observed_at"] == "timestamp with time zone"


def test_dim_assets_one_row_per_asset_with_latest_attributes(three_cycles):
    wh = three_cycles["stack"].warehouse
    dim_cols = wh.columns("marts", "dim_assets")
    shared = [c for c in ("symbol", "name", "rank") if c in dim_cols]
    rows = wh.query(f"select {', '.join(['asset_id', *shared])} from marts.dim_assets")
    assert sorted(r[0] for r in rows) == sorted(ALL_DEFAULT_IDS)
    latest = {a["id"]: a for a in three_cycles["sent"][three_cycles["t2"]]}
    for row in rows:
        got = dict(zip(["asset_id", *shared], row, strict=True))
        want = {
            "symbol": latest[row[0]]["symbol"],
            "name": latest[row[0]]["name"],
            "rank": int(latest[row[0]]["rank"]),
        }
        assert {c: got[c] for c in shared} == {c: want[c] for c in shared}, row[0]
    if "rank" in shared:  # solana's rank changed between the two observations
        assert dict((r[0], r[shared.index("rank") + 1]) for r in rows)["solana"] == 6


def test_daily_ohlc(three_cycles):
    wh = three_cycles["stack"].warehouse
    c = daily_columns(wh)
    rows = wh.query(
        f"select asset_id, {c['day']}, {c['open']}, {c['high']}, {c['low']}, {c['close']}, "
        f"{c['count']} from marts.fct_asset_prices_daily"
    )
    observations = defaultdict(list)  # (asset, UTC day) -> [(ts, price)]
    for ts, assets in three_cycles["sent"].items():
        for asset in assets:
            day = observed_at(ts).date()
            observations[(asset["id"], day)].append((ts, Decimal(asset["priceUsd"])))
    expected = {}
    for key, points in observations.items():
        points.sort()
        prices = [p for _, p in points]
        expected[key] = (prices[0], max(prices), min(prices), prices[-1], len(points))
    got = {}
    for asset_id, day, open_, high, low, close, count in rows:
        day = day.date() if isinstance(day, datetime) else day
        got[(asset_id, day)] = (open_, high, low, close, int(count))
    assert got == expected


def test_log_says_what_was_fetched_and_loaded(three_cycles):
    stack = three_cycles["stack"]
    first = stack.results[0]
    load_id = stack.warehouse.load_ids()[0]
    n = len(ALL_DEFAULT_IDS)
    assert first.lines_with(load_id), f"no line names the load id {load_id}:\n{first.describe()}"
    assert [ln for ln in first.lines if re.search(rf"\b{n} assets?\b", ln)], first.describe()
    assert [ln for ln in first.lines if re.search(rf"\b{n} rows?\b", ln)], first.describe()
    assert [
        ln
        for ln in first.lines
        if load_id in ln and re.search(r"\d+(\.\d+)? ?(s|sec|seconds)\b", ln)
    ], first.describe()


def test_every_log_line_starts_with_an_iso_utc_timestamp(three_cycles):
    for result in three_cycles["stack"].results:
        bad = [ln for ln in result.lines if not ISO_UTC_LINE.match(ln)]
        assert not bad, "lines without an ISO-8601 UTC timestamp:\n" + "\n".join(bad[:20])


def test_one_assets_request_per_cycle_with_the_key_in_the_header(three_cycles):
    """Credits cost money: one GET /assets?ids=... per cycle for all assets; key in the header."""
    for requests in three_cycles["requests"]:
        assets_requests = [r for r in requests if r.path.rstrip("/").endswith("/assets")]
        assert len(assets_requests) == 1, [(r.path, r.query) for r in requests]
        req = assets_requests[0]
        assert set(req.query["ids"].split(",")) == set(ALL_DEFAULT_IDS)
        for r in requests:
            assert r.headers.get("authorization") == f"Bearer {API_KEY}"
            assert "apiKey" not in r.query, "the key went into the query string (ends up in logs)"


# ------------------------------------------------------------------ failures leave it as it was
FAILURES = {
    # name: (how to provoke it, fragments of the one clear line)
    "key-refused-401": ({"env": {"COINCAP_API_KEY": "not-the-key"}}, ["error:", "API key", "401"]),
    "key-refused-403": (
        {"queue": [Scripted(403, {"error": "Forbidden"})]},
        ["error:", "API key", "403"],
    ),
    "body-not-json": (
        {"queue": [Scripted(200, "<html><body>Bad gateway</body></html>")]},
        ["error:", "unexpected response"],
    ),
    "json-without-data": (
        {"queue": [Scripted(200, {"timestamp": now_ms()})]},
        ["error:", "unexpected response"],
    ),
    "data-not-a-list": (
        {"queue": [Scripted(200, {"data": {"id": "bitcoin"}, "timestamp": now_ms()})]},
        ["error:", "unexpected response"],
    ),
    "503-every-time": (
        {"always": Scripted(503, {"error": "Service Unavailable"})},
        ["error:", "503"],
    ),
    "429-every-time": (
        {"always": Scripted(429, {"error": "Too Many Requests"}, {"Retry-After": "1"})},
        ["error:", "429"],
    ),
    "api-key-unset": ({"env": {"COINCAP_API_KEY": None}}, ["error:", "COINCAP_API_KEY"]),
    "api-key-empty": ({"env": {"COINCAP_API_KEY": ""}}, ["error:", "COINCAP_API_KEY"]),
}


@pytest.mark.parametrize("failure", list(FAILURES), ids=list(FAILURES))
def test_failure_exits_nonzero_with_one_clear_line_and_leaves_warehouse_untouched(
    baseline, failure
):
    provoke, fragments = FAILURES[failure]
    fake = baseline.fake
    fake.set_snapshot(shifted_snapshot(DEFAULT_ASSETS, 2), now_ms() - 30_000)  # new figures
    fake.queue(*provoke.get("queue", []))
    fake.fail_always(provoke.get("always"))
    before = baseline.state()

    result = baseline.cycle(**provoke.get("env", {}))

    assert result.returncode != 0, result.describe()
    clear = [ln for ln in result.stderr.splitlines() if all(f in ln for f in fragments)]
    assert len(clear) == 1, f"not one stderr line with {fragments}:\n{result.describe()}"
    assert "Traceback (most recent call last)" not in result.output, result.describe()
    assert baseline.state() == before, "a failed cycle changed the warehouse"
    if failure.startswith("api-key"):
        # stops at once, before asking CoinCap, and says how to get a key
        assert fake.requests == [], "a request was sent without a key"
        line = clear[0]
        assert re.search(r"https?://\S+", line), f"the line does not say where to get a key: {line}"
        assert result.seconds < 30, result.describe()
    if failure.endswith("every-time"):
        assert len(fake.requests) > 1, "no retry before giving up"


def test_unknown_new_field_is_kept_in_raw_and_changes_no_mart(baseline):
    fake = baseline.fake
    before = baseline.warehouse.marts(without=LOAD_METADATA)
    fake.extra_fields = {
        "circulatingSupply": "19813906.0000000000000000",
        "listedAt": "2013-04-28T00:00:00.000Z",
    }

    baseline.good_cycle()

    assert baseline.warehouse.marts(without=LOAD_METADATA) == before
    raw_cols = baseline.warehouse.columns("raw", "assets")
    assert "circulating_supply" in raw_cols, f"the new field was not kept in raw: {list(raw_cols)}"


def test_cycle_started_while_another_holds_the_lock_exits_at_once(baseline):
    before = baseline.state()
    baseline.fake.set_snapshot(shifted_snapshot(DEFAULT_ASSETS, 3), now_ms() - 20_000)
    baseline.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(baseline.lock_file, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "the other cycle"
        result = baseline.cycle()
    assert result.returncode == 0, result.describe()
    assert [
        ln
        for ln in result.lines
        if re.search(r"another cycle is running|already running", ln, re.I)
    ], result.describe()
    assert result.seconds < 5, f"did not exit at once: {result.describe()}"
    assert baseline.fake.requests == [], "the locked-out cycle still asked CoinCap"
    assert baseline.state() == before


# --------------------------------------------------------------------------- fresh warehouses
TRANSIENT = {
    "429-with-retry-after": Scripted(429, {"error": "Too Many Requests"}, {"Retry-After": "1"}),
    "503-once": Scripted(503, {"error": "Service Unavailable"}),
}


@pytest.mark.parametrize("answer", list(TRANSIENT), ids=list(TRANSIENT))
def test_transient_error_is_retried_and_the_cycle_succeeds(stack, answer):
    ts = now_ms() - 45_000
    stack.fake.set_snapshot(DEFAULT_ASSETS, ts)
    stack.fake.queue(TRANSIENT[answer])

    result = stack.good_cycle()

    tries = stack.fake.requests_to("/assets")
    assert len(tries) == 2, [(r.path, r.query) for r in stack.fake.requests]
    if answer == "429-with-retry-after":
        assert tries[1].at - tries[0].at >= 0.9, "Retry-After: 1 was not honoured"
    keys = set(fct_rows(stack.warehouse))
    assert keys == {(a, observed_at(ts)) for a in ALL_DEFAULT_IDS}, result.describe()


def test_configured_id_coincap_does_not_return_is_named_and_the_rest_load(stack):
    ts = now_ms() - 40_000
    stack.fake.set_snapshot(DEFAULT_ASSETS, ts)
    stack.asset_ids = [*ALL_DEFAULT_IDS, "polygon"]  # retired id: missing from the answer

    result = stack.good_cycle()

    warnings = [ln for ln in result.lines if "polygon" in ln and re.search(r"warn", ln, re.I)]
    assert warnings, f"no warning naming polygon:\n{result.describe()}"
    keys = set(fct_rows(stack.warehouse))
    assert keys == {(a, observed_at(ts)) for a in ALL_DEFAULT_IDS}


def test_a_new_relative_duckdb_path_is_the_file_both_steps_use(fake_coincap, tmp_path):
    """DUCKDB_PATH relative to the repo root names the file for ingest and dbt alike, even after
    it changed: dlt alone would keep loading the relative path it saw first (stored in its
    pipeline state) while dbt built the new, empty file. The second cycle spells the warehouse
    `DuckDB`: WAREHOUSE is case-insensitive, for dlt and dbt alike (dbt's profile has no target
    named `DuckDB`; the cycle hands it `duckdb`)."""
    first = Warehouse("duckdb", tmp_path / "first")
    second = Warehouse("duckdb", tmp_path / "second")
    stack = Stack(first, fake_coincap, tmp_path)
    ts = now_ms() - 40_000
    fake_coincap.set_snapshot(DEFAULT_ASSETS, ts - 300_000)
    stack.good_cycle(DUCKDB_PATH=os.path.relpath(first.duckdb_path, REPO))
    fake_coincap.set_snapshot(DEFAULT_ASSETS, ts)

    stack.good_cycle(DUCKDB_PATH=os.path.relpath(second.duckdb_path, REPO), WAREHOUSE="DuckDB")

    assert set(fct_rows(second)) == {(a, observed_at(ts)) for a in ALL_DEFAULT_IDS}
