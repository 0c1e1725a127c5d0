"""WAREHOUSE=spark end to end, on a real local Spark cluster (a standalone master, a worker and the
Thrift Server from the pyspark wheel: devkit/spark_cluster.py, the `spark_cluster` fixture).

The same CoinCap answers (one fake, its clock moved for both) go through real cycles on DuckDB
and on Spark; every mart an analyst can query must hold the same rows on both (load ids and the
run log's own times aside): odd numbers as CoinCap prints them (exponent form, 18 decimals, values
held back), a snapshot loaded twice (a rerun at the same CoinCap time: raw on Parquet is
append-only, staging keeps one row per key), and a gap of 30 minutes filled from CoinCap's
history. Then the drills that apply to Spark: a cycle killed mid-load, the Thrift Server away for
a cycle.

Without Java the tests skip with the install line (fail under CI=true): tests/conftest.py.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from drills.drillkit import start_cycle
from helpers import API_KEY, Installation, run_dbt_unit_tests, unit_tests_defined

from devkit.fake_coincap import FakeCoinCap, now_ms

pytestmark = pytest.mark.slow

ASSETS = ["bitcoin", "ethereum", "dogecoin", "litecoin", "solana"]
FIVE_MINUTES = 5 * 60_000
# odd but legal numbers as CoinCap prints them, and values that hold their row back
ODD_SNAPSHOT = {
    "bitcoin": {"priceUsd": "80399.570000000006984919"},
    "dogecoin": {"priceUsd": "1.58e-05", "vwap24Hr": "1.6E-5"},
    "litecoin": {"supply": "1.2345678901234567891e+7", "changePercent24Hr": "-2.5e-3"},
    "ethereum": {"priceUsd": "1e-19"},  # not above zero after rounding: held back
    "solana": {"supply": "1e400"},  # does not fit: held back
}
# a mart's columns that differ between two installations by nature, not by their data
PER_INSTALLATION = {"load_id"}
# marts.pipeline_runs describes each installation's own runs (ids, durations, its engine)
RUN_LOG_COLUMNS = ("status",)
TIMESTAMP_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$")


def spark_cycle(inst: Installation, **overrides: str) -> Any:
    """A cycle that must succeed."""
    result = inst.cycle(timeout=600, **overrides)
    assert result.returncode == 0, result.describe()
    return result


def normalised(value: Any) -> Any:
    """One spelling per value across drivers: DuckDB's aware datetimes and PyHive's naive UTC
    ones (the session is UTC), dates as ISO text, doubles to 12 significant digits (the engines'
    last bits of a standard deviation or correlation may differ), decimals exact."""
    if isinstance(value, datetime):
        aware = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, Decimal):
        return value.normalize() if value == value else "NaN"
    if isinstance(value, str) and TIMESTAMP_TEXT.match(value):
        return normalised(datetime.fromisoformat(value))
    return value


def mart_names(inst: Installation) -> list[str]:
    """Every relation in DuckDB's marts schema: the marts an analyst sees."""
    rows = inst.warehouse.query(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "order by table_name"
    )
    return [name for (name,) in rows]


def double_figure(value: Any) -> Any:
    """A figure the marts compute in double precision (returns, shares, moves, correlations:
    numeric(38, 12)) to the 15 significant digits a double holds: beyond them each engine
    spells the same double differently when it casts it to a decimal (DuckDB its exact binary
    value, Spark and PostgreSQL its shortest decimal form)."""
    if isinstance(value, Decimal) and value.is_finite() and value:
        return float(f"{value:.15g}")
    return value


def mart_rows(
    inst: Installation, mart: str, columns: list[str], doubles: set[str]
) -> list[tuple[Any, ...]]:
    rows = inst.warehouse.query(f"select {', '.join(columns)} from marts.{mart}")
    return sorted(
        (
            tuple(
                normalised(double_figure(v) if c in doubles else v)
                for c, v in zip(columns, row, strict=True)
            )
            for row in rows
        ),
        key=repr,
    )


@pytest.fixture(scope="module")
def fake() -> FakeCoinCap:
    t0 = (now_ms() - 3 * 3_600_000) // FIVE_MINUTES * FIVE_MINUTES + 7_123
    fake = FakeCoinCap(
        api_key=API_KEY, recorded_style=True, prices_follow_clock=True, timestamp_ms=t0
    )
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def twins(spark_cluster, fake, tmp_path_factory):
    """A DuckDB and a Spark installation fed the same answers, cycle by cycle:
    1. a first cycle (a day of history), 2. five minutes on with odd numbers, 3. the same
    CoinCap time again (a rerun), 4. thirty minutes on (a gap filled from history)."""
    tmp = tmp_path_factory.mktemp("twins")
    duck = Installation.create("duckdb", tmp / "duckdb", fake=fake, asset_ids=ASSETS)
    spark = Installation.create("spark", tmp / "spark", spark_cluster, fake=fake, asset_ids=ASSETS)
    duck.owned = spark.owned = False  # the module's fake outlives them; dropped below
    # (CoinCap's clock moved by, odd values, a field CoinCap starts sending)
    steps = [
        (0, {}, {}),
        (FIVE_MINUTES, ODD_SNAPSHOT, {"chain": "main"}),
        (0, ODD_SNAPSHOT, {"chain": "main"}),
        (6 * FIVE_MINUTES, {}, {"chain": "main"}),
    ]
    results: dict[str, list] = {"duckdb": [], "spark": []}
    for advance, overrides, extra in steps:
        fake.advance(advance)
        fake.snapshot_overrides, fake.extra_fields = overrides, extra
        # both engines at once: the same answers (the fake's clock stands still meanwhile)
        with ThreadPoolExecutor(max_workers=2) as pool:
            cycles = {i.engine: pool.submit(spark_cycle, i) for i in (duck, spark)}
        for engine, cycle in cycles.items():
            results[engine].append(cycle.result())
    fake.snapshot_overrides, fake.extra_fields = {}, {}
    yield duck, spark, results
    spark.warehouse.drop()
    duck.warehouse.drop()


def test_every_cycle_on_spark_succeeds(twins):
    _, _, results = twins
    for engine, runs in results.items():
        for i, result in enumerate(runs, 1):
            assert result.returncode == 0, f"{engine} cycle {i}:\n{result.describe()}"


def test_every_mart_on_spark_equals_duckdb(twins):
    duck, spark, _ = twins
    marts = mart_names(duck)
    assert "fct_asset_prices" in marts and "fct_asset_price_history" in marts, marts
    compared = []
    for mart in marts:
        duck_types = duck.warehouse.columns("marts", mart)
        duck_columns = list(duck_types)
        doubles = {c for c, t in duck_types.items() if t in ("decimal(38,12)", "double")}
        spark_columns = list(spark.warehouse.columns("marts", mart))
        assert spark_columns == duck_columns, f"marts.{mart}: columns differ"
        if mart == "pipeline_runs":
            columns = list(RUN_LOG_COLUMNS)
        else:
            columns = [c for c in duck_columns if c not in PER_INSTALLATION]
        expected = mart_rows(duck, mart, columns, doubles)
        actual = mart_rows(spark, mart, columns, doubles)
        if mart == "pipeline_runs":  # the runs that succeeded (spark_cycle may log a failure)
            expected = [r for r in expected if r == ("succeeded",)]
            actual = [r for r in actual if r == ("succeeded",)]
        missing = Counter(expected) - Counter(actual)
        extra = Counter(actual) - Counter(expected)
        assert not missing and not extra, (
            f"marts.{mart} differs on Spark: {sum(missing.values())} row(s) only on DuckDB, "
            f"e.g. {list(missing)[:2]}; {sum(extra.values())} only on Spark, e.g. {list(extra)[:2]}"
        )
        compared.append((mart, len(expected)))
    # the comparison had something to compare: every analytics mart has rows
    counts = dict(compared)
    for mart in ("fct_asset_prices", "fct_asset_price_history", "dim_assets",
                 "fct_asset_prices_daily", "fct_market_share_daily",
                 "fct_rejected_asset_prices"):  # fmt: skip
        assert counts.get(mart), f"marts.{mart} is empty on both engines: {counts}"


def test_odd_numbers_land_exact_and_bad_ones_are_held_back_on_spark(twins):
    _, spark, _ = twins
    wh = spark.warehouse
    # the snapshot of step 2 (and its rerun): "1.58e-05" and "1.6E-5" as CoinCap printed them
    dogecoin = wh.query(
        "select price_usd, vwap_24h from marts.fct_asset_prices "
        "where asset_id = 'dogecoin' and price_usd < 0.001"
    )
    assert dogecoin == [(Decimal("0.0000158"), Decimal("0.000016"))], dogecoin
    held = dict(wh.query("select asset_id, rejection_reason from marts.fct_rejected_asset_prices"))
    assert held.get("ethereum") == "price_usd: not above zero", held
    assert "supply: out of range" in (held.get("solana") or ""), held


def test_a_snapshot_loaded_twice_is_one_row_in_staging_and_the_marts(twins):
    _, spark, _ = twins
    wh = spark.warehouse
    raw = wh.query(
        "select id, coincap_timestamp, count(*) from raw.assets "
        "group by id, coincap_timestamp having count(*) > 1"
    )
    assert raw, "the rerun should have appended the same snapshot to raw a second time"
    for relation, key in (
        ("staging.stg_coincap__assets", "asset_id, observed_at"),
        ("marts.fct_asset_prices", "asset_id, observed_at"),
        ("marts.fct_asset_price_history", "asset_id, price_at"),
    ):
        doubled = wh.query(f"select {key} from {relation} group by {key} having count(*) > 1")
        assert doubled == [], f"{relation} holds a key twice: {doubled[:3]}"


def test_the_thirty_minute_gap_is_filled_from_history_on_spark(twins):
    _, spark, _ = twins
    wh = spark.warehouse
    assert wh.count("marts.fct_asset_price_gaps") == 0
    sources = dict(
        wh.query(
            "select source, count(*) from marts.fct_asset_price_history "
            "where price_at > (select max(price_at) from marts.fct_asset_price_history) "
            "- interval 30 minutes group by source"
        )
    )
    assert sources.get("history"), f"no slot of the last 30 minutes came from history: {sources}"


def test_drift_and_data_quality_warn_on_spark_as_on_duckdb(twins):
    """Step 2: CoinCap starts sending `chain` (schema drift) and dogecoin's price falls from about
    0.27 to 0.0000158 (a move above PRICE_MOVE_ALERT_PCT): the same warnings on both engines,
    once for the drift (not again in step 3), every cycle exit 0."""
    _, _, results = twins
    for engine, runs in results.items():
        drift = [r.lines_with("warning:", "schema drift") for r in runs]
        assert [len(lines) for lines in drift] == [0, 1, 0, 0], (engine, drift)
        assert "`chain`" in drift[1][0] and "is new" in drift[1][0], (engine, drift[1])
        moves = runs[1].lines_with("warning: data quality:", "dogecoin")
        assert moves, (engine, runs[1].describe())


def test_the_operator_commands_work_on_spark(twins):
    _, spark, _ = twins
    status = spark.command("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "spark" in status.stdout.lower() and "dogecoin" in status.stdout, status.stdout
    doctor = spark.command("doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "Thrift Server" in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr
    history_rows = spark.warehouse.count("raw.asset_history")
    backfill = spark.command("backfill", "--days", "2", "--yes", timeout=600)
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert "error:" not in backfill.stdout + backfill.stderr
    # the backfill's history is in the lake: Spark sees it once the tables are registered again
    from ingest.lake import register_tables

    register_tables(spark.warehouse.product)
    assert spark.warehouse.count("raw.asset_history") > history_rows


def test_the_dbt_unit_tests_pass_on_spark(twins):
    """All of them but those of the incremental path (`is_incremental: true`): Spark rebuilds
    those marts whole, and dbt_project disables those tests there."""
    _, spark, results = twins
    returncode, out, passed = run_dbt_unit_tests(results["spark"][-1].env)
    assert returncode == 0, out
    incremental = unit_tests_defined(incremental_only=True)
    assert len(incremental) == 5, incremental
    assert passed == unit_tests_defined() - incremental, out


# --------------------------------------------------------------------------- drills
@pytest.fixture(scope="module")
def spark_install(spark_cluster, tmp_path_factory):
    """One Spark installation for the drills, one after the other (the twins are dropped)."""
    t0 = (now_ms() - 3_600_000) // FIVE_MINUTES * FIVE_MINUTES + 3_457
    fake = FakeCoinCap(api_key=API_KEY, recorded_style=True, timestamp_ms=t0)
    inst = Installation.create(
        "spark", tmp_path_factory.mktemp("drills"), spark_cluster, fake=fake, asset_ids=ASSETS[:3]
    )
    spark_cycle(inst)
    yield inst
    inst.close()


def one_row_per_snapshot(inst: Installation) -> tuple[int, int]:
    """(snapshots CoinCap served that reached fct_asset_prices, keys held more than once)."""
    wh = inst.warehouse
    doubled = wh.count(
        "(select asset_id, observed_at from marts.fct_asset_prices "
        "group by asset_id, observed_at having count(*) > 1) as doubled"
    )
    return wh.count("marts.fct_asset_prices"), doubled


def test_a_cycle_killed_mid_build_loses_and_doubles_nothing_on_spark(spark_install):
    inst = spark_install
    before, _ = one_row_per_snapshot(inst)
    inst.fake.advance(FIVE_MINUTES)
    # the next cycle loads its snapshot into the lake, then is killed while dbt rebuilds the
    # marts on Spark (a table may be dropped and not yet re-created: the next build makes it)
    running = start_cycle(inst.env(), inst.tmp / "killed.log")
    assert running.wait_for(lambda: running.seen("dbt"), timeout=300), "no dbt step started"
    time.sleep(3)
    assert running.kill(), "the cycle ended before it could be killed"
    inst.fake.advance(FIVE_MINUTES)
    spark_cycle(inst)
    rows, doubled = one_row_per_snapshot(inst)
    # three assets, two more CoinCap times (the killed cycle's snapshot was in the lake already)
    assert (rows, doubled) == (before + 6, 0), (rows, before, doubled)


def test_the_thrift_server_away_for_a_cycle_fails_it_clearly_and_loses_nothing(
    spark_install,
):
    inst = spark_install
    before = inst.warehouse.count("marts.fct_asset_prices")
    inst.fake.advance(FIVE_MINUTES)
    away = inst.cycle(SPARK_PORT="1")  # nothing listens there: the warehouse is away
    assert away.returncode != 0, away.describe()
    errors = away.lines_with("error:")
    assert any("Spark Thrift Server" in line and "SPARK_HOST" in line for line in errors), (
        away.describe()
    )
    assert inst.warehouse.count("marts.fct_asset_prices") == before  # left as it was
    inst.fake.advance(FIVE_MINUTES)
    spark_cycle(inst)
    rows, doubled = one_row_per_snapshot(inst)
    # the snapshot taken while Spark was away is in the lake and reaches the marts now
    assert (rows, doubled) == (before + 6, 0), (rows, before, doubled)
