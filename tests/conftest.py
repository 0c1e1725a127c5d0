"""Fixtures shared by the test suite: a real PostgreSQL server, fresh warehouses, a fake CoinCap.

PostgreSQL: the server named by the POSTGRES_* variables when POSTGRES_HOST is set (CI can start
one with `python -m devkit.postgres_cluster start DIR`), otherwise a throwaway cluster started
here and removed at the end of the session. Every test gets its own database (and its own
DuckDB file).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# the tests import their helpers as plain modules (tests/ has no __init__.py)
sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import API_KEY, ENGINES, Warehouse, make_warehouse  # noqa: E402

from devkit.fake_coincap import FakeCoinCap  # noqa: E402
from devkit.postgres_cluster import PostgresCluster, server  # noqa: E402
from devkit.spark_cluster import SparkCluster  # noqa: E402
from devkit.spark_cluster import missing as spark_missing  # noqa: E402

# The tests and everything they start must not try to reach telemetry endpoints (no network).
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"


# `make test` runs the suite on two workers with `--dist loadfile --no-loadscope-reorder`: a test
# file runs on one worker, and files are handed out in this order (pytest-xdist would otherwise
# order them by their number of tests), so the long ones start first and the short ones fill in
# behind them (minutes of each, measured on 2 cores, in docs/testing.md). (pytest-xdist's
# `loadgroup` would split a file by engine, but with pytest 9 its groups are ignored.)
LONGEST_FIRST = [
    "tests/test_stack_up.py",
    "tests/test_spark.py",
    "tests/drills/test_kill_drills.py",
    "tests/drills/test_drills.py",
    "tests/test_coincap_reality.py",
    "tests/drills/test_restore_drill.py",
    "tests/test_history.py",
    "tests/test_cli_doctor.py",
    "tests/test_cycle.py",
    "tests/test_cli_status.py",
    "tests/test_cli_backfill.py",
    "tests/test_stack_cron.py",
    "tests/test_stack_warehouse.py",
    "tests/test_bench.py",
    "tests/test_schema_drift.py",
    "tests/test_reliability_features.py",
    "tests/test_data_quality.py",
    "tests/test_stack_metabase.py",
    "tests/test_numbers.py",
    "tests/test_dbt_unit_tests.py",
    "tests/test_stack_docs.py",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `one_engine`: the behaviour is decided before anything reaches the warehouse; its
    # PostgreSQL instance would repeat the DuckDB one
    repeated = [i for i in items if i.get_closest_marker("one_engine") and "[postgres" in i.nodeid]
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = [item for item in items if item not in repeated]
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # stable: the order inside a file (module fixtures, the drills' sequence) is kept
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, str]]:
    """POSTGRES_HOST/PORT/USER/PASSWORD/DB of a server where the tests may create databases."""
    with server() as env:
        yield env


@pytest.fixture(scope="session")
def spark_cluster() -> Iterator[dict[str, str]]:
    """SPARK_HOST/SPARK_PORT of a local Spark cluster (a standalone master, a worker and the
    Thrift Server, devkit/spark_cluster.py), started for the session's Spark tests. Without Java
    or pyspark the test skips saying how to install it (fails under CI=true)."""
    from system_tools import missing

    reason = spark_missing()
    if reason:
        missing(reason)
    cluster = SparkCluster(tempfile.mkdtemp(prefix="coincap-spark-"))
    cluster.start()
    try:
        yield cluster.env()
    finally:
        cluster.destroy()


@pytest.fixture
def own_postgres_cluster() -> Iterator[PostgresCluster]:
    """A private, started PostgreSQL cluster for a test that stops and restarts its warehouse
    (`.stop()`, `.start()` on the same port; `.env()` for the POSTGRES_* variables)."""
    cluster = PostgresCluster(tempfile.mkdtemp(prefix="coincap-pg-own-"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=ENGINES)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Warehouse]:
    """A fresh, empty warehouse on each engine: a new DuckDB file / a new PostgreSQL database.
    `.env` holds the variables a cycle needs for it; `.query(sql)` returns rows."""
    wh = make_warehouse(request.param, tmp_path, request)
    try:
        yield wh
    finally:
        wh.drop()


@pytest.fixture
def fake_coincap() -> Iterator[FakeCoinCap]:
    """A fake CoinCap v3 serving the default snapshot (ten default assets plus shiba-inu)."""
    with FakeCoinCap(api_key=API_KEY) as fake:
        yield fake
