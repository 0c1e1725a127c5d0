"""End to end: CoinCap's numbers as they really are, through real cycles on DuckDB and PostgreSQL.

CoinCap prints 18 decimal places and, for small values, exponent form; the marts keep exactly what
it sent (numeric(38,18)). A value that is not a number, does not fit, or (for the price) is not
above zero after rounding to 18 decimals holds back its own row, with the reason, and never fails
a build: this cycle and the next normal one exit 0. The odd values come in a second cycle, in the
same 5-minute slot as a good one, so the marts' rows are compared slot for slot. (A held-back
snapshot alone in its slot, and one held back in a warehouse's very first cycle, are covered by
tests/test_coincap_reality.py, as are hostile history points.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import API_KEY, ENGINES, CycleResult, Warehouse, base_env, make_warehouse, run_cycle

from devkit.fake_coincap import ALL_DEFAULT_IDS, DEFAULT_ASSETS, FakeCoinCap, now_ms

# real cycles on both engines: `make test` runs them, the quick loop does not
pytestmark = pytest.mark.slow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OUT_OF_RANGE = "out of range (more than 20 integer digits after rounding to 18 decimals)"

# asset -> (CoinCap field, value sent)
ACCEPTED = {
    "bitcoin": ("priceUsd", "80399.570000000006984919"),  # 18 decimals, exactly as sent
    "dogecoin": ("priceUsd", "1.58e-05"),  # exponent form: 0.0000158
    "litecoin": ("supply", "1.2345678901234567891e+7"),  # rounded to 18 decimals
}
EXPECTED_VALUES = {
    "bitcoin": ("price_usd", Decimal("80399.570000000006984919")),
    "dogecoin": ("price_usd", Decimal("0.0000158")),
    "litecoin": ("supply", Decimal("12345678.901234567891000000")),
}
# asset -> (CoinCap field, value sent, mart column, reason)
REJECTED = {
    "ethereum": ("priceUsd", "1e-19", "price_usd", "price_usd: not above zero"),
    "solana": ("supply", "1e400", "supply", f"supply: {OUT_OF_RANGE}"),
    "cardano": (
        "supply",
        "99999999999999999999.9999999999999999995",
        "supply",
        f"supply: {OUT_OF_RANGE}",
    ),
    "polkadot": ("marketCapUsd", "1.5 ", "market_cap_usd", "market_cap_usd: not a number"),
}


def observed_at(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


@dataclass
class Numbers:
    warehouse: Warehouse
    t1: int
    t2: int
    cycles: list[CycleResult] = field(default_factory=list)
    prices_after_odd_cycle: list[tuple] = field(default_factory=list)


@pytest.fixture(scope="module", params=ENGINES)
def numbers(request, tmp_path_factory) -> Numbers:
    """A normal first cycle (backfill) at t0, the odd values above a minute later (t1), the normal
    snapshot again in the next 5-minute slot (t2)."""
    tmp: Path = tmp_path_factory.mktemp(f"numbers-{request.param}")
    wh = make_warehouse(request.param, tmp, request)
    # t0 and t1 share a 5-minute slot, so the assets held back at t1 leave no hole in the
    # continuous series (t0's snapshot fills the slot); t2 is the next slot
    t0 = (now_ms() - 16 * 60_000) // 300_000 * 300_000 + 20_457
    t1 = t0 + 60_000
    t2 = t0 + 5 * 60_000
    try:
        with FakeCoinCap(api_key=API_KEY, timestamp_ms=t0) as fake:
            env = {
                **base_env(tmp),
                **wh.env,
                "COINCAP_API_KEY": API_KEY,
                "COINCAP_BASE_URL": fake.base_url,
                "COINCAP_ASSET_IDS": ",".join(ALL_DEFAULT_IDS),
            }
            result = Numbers(wh, t1, t2)
            fake.set_snapshot(DEFAULT_ASSETS, t0)
            result.cycles.append(run_cycle(env))
            fake.set_snapshot(DEFAULT_ASSETS, t1)
            fake.snapshot_overrides = {
                asset: {name: value} for asset, (name, value) in ACCEPTED.items()
            } | {asset: {name: value} for asset, (name, value, _, _) in REJECTED.items()}
            result.cycles.append(run_cycle(env))
            result.prices_after_odd_cycle = wh.query(
                "select asset_id, price_usd, supply from marts.fct_asset_prices "
                "where observed_at = ? order by asset_id",
                (observed_at(t1),),
            )
            fake.snapshot_overrides = {}
            fake.set_snapshot(DEFAULT_ASSETS, t2)
            result.cycles.append(run_cycle(env))
            yield result
    finally:
        wh.drop()


def test_every_cycle_exits_zero(numbers: Numbers) -> None:
    for cycle in numbers.cycles:
        assert cycle.returncode == 0, cycle.describe()


def test_accepted_values_equal_what_coincap_sent(numbers: Numbers) -> None:
    assert numbers.cycles[1].returncode == 0, numbers.cycles[1].describe()
    rows = {r[0]: {"price_usd": r[1], "supply": r[2]} for r in numbers.prices_after_odd_cycle}
    assert set(rows) == set(ALL_DEFAULT_IDS) - set(REJECTED)
    for asset_id, (column, expected) in EXPECTED_VALUES.items():
        got = rows[asset_id][column]
        assert isinstance(got, Decimal), f"{asset_id}.{column} is {type(got).__name__}"
        assert got == expected, f"{asset_id}.{column}: {got} != {expected}"
    latest = numbers.warehouse.query(
        "select latest_price_usd from marts.dim_assets where asset_id = 'bitcoin'"
    )
    # dim_assets follows the newest observation (cycle 2's normal snapshot)
    assert latest == [(Decimal(DEFAULT_ASSETS[0]["priceUsd"]),)]


def test_mart_numbers_are_numeric_38_18(numbers: Numbers) -> None:
    for table, column in [
        ("fct_asset_prices", "price_usd"),
        ("dim_assets", "latest_supply"),
        ("fct_asset_price_history", "price_usd"),
        ("fct_asset_prices_daily", "close_price_usd"),
    ]:
        rows = numbers.warehouse.query(
            "select numeric_precision, numeric_scale from information_schema.columns "
            "where table_schema = 'marts' and table_name = ? and column_name = ?",
            (table, column),
        )
        assert rows == [(38, 18)], f"{table}.{column}: {rows}"


def test_rejected_values_are_held_back_with_their_reason(numbers: Numbers) -> None:
    rejected = {
        r[0]: r[1:]
        for r in numbers.warehouse.query(
            "select asset_id, rejected_fields, rejected_values, rejection_reason "
            "from marts.fct_rejected_asset_prices where observed_at = ?",
            (observed_at(numbers.t1),),
        )
    }
    assert set(rejected) == set(REJECTED)
    for asset_id, (_, sent, column, reason) in REJECTED.items():
        assert rejected[asset_id] == (column, f'{column}="{sent}"', reason), asset_id


def test_the_next_normal_cycle_loads_every_asset(numbers: Numbers) -> None:
    assert numbers.cycles[2].returncode == 0, numbers.cycles[2].describe()
    rows = numbers.warehouse.query(
        "select asset_id, price_usd from marts.fct_asset_prices where observed_at = ?",
        (observed_at(numbers.t2),),
    )
    sent = {a["id"]: Decimal(a["priceUsd"]) for a in DEFAULT_ASSETS}
    assert dict(rows) == sent


TINY_PRICE = "0.000000000000000001"  # the smallest price numeric(38,18) holds above 0
HUGE_PRICE = "99999999999999999999"  # the largest whole price it holds


@pytest.mark.parametrize("engine", ENGINES)
def test_legal_extreme_prices_never_fail_a_build(engine: str, request, tmp_path: Path) -> None:
    """A crash of almost 100 % is market data: bitcoin falls from its price yesterday to
    0.000000000000000001 USD today (its simple return rounds to -1), ethereum rises from that to
    99999999999999999999 USD (a ratio of 1e38: no simple return fits, the log return does). Both
    cycles (the first, then an incremental one) exit 0 and the marts hold the rows."""
    from helpers import make_installation

    now = now_ms() - 3_000
    today_ms = now // 86_400_000 * 86_400_000
    today = observed_at(today_ms).date()

    def extreme(asset_id: str, points: list[dict]) -> list[dict]:
        for point in points:
            if asset_id == "bitcoin" and point["time"] >= today_ms:
                point["priceUsd"] = TINY_PRICE
            if asset_id == "ethereum":
                point["priceUsd"] = TINY_PRICE if point["time"] < today_ms else HUGE_PRICE
        return points

    fake = FakeCoinCap(api_key=API_KEY, timestamp_ms=now)
    fake.history_hook = extreme
    fake.snapshot_overrides = {
        "bitcoin": {"priceUsd": TINY_PRICE},
        "ethereum": {"priceUsd": HUGE_PRICE},
    }
    with make_installation(
        request, engine, tmp_path, fake=fake, asset_ids=["bitcoin", "ethereum"]
    ) as inst:
        inst.good_cycle()
        fake.advance(5 * 60_000)
        inst.good_cycle()
        wh = inst.warehouse
        assert wh.query(
            "select asset_id, price_usd from marts.fct_asset_prices "
            "where observed_at = ? order by asset_id",
            (observed_at(fake.now_ms),),
        ) == [("bitcoin", Decimal(TINY_PRICE)), ("ethereum", Decimal(HUGE_PRICE))]
        rows = wh.query(
            "select asset_id, close_price_usd, simple_return, log_return, drawdown "
            "from marts.fct_asset_returns_daily where price_date = ? order by asset_id",
            (today,),
        )
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("bitcoin", Decimal(TINY_PRICE), Decimal("-1")),
            ("ethereum", Decimal(HUGE_PRICE), None),
        ], rows
        assert rows[0][3] < -40 and rows[0][4] == Decimal("-1"), rows
        assert rows[1][3] == Decimal("87.498233533774") and rows[1][4] == 0, rows
