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

# The tests and everything they start must not try to reach telemetry endpoints (no network).
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"


# Scenarios that run a long series of cycles each (minutes on 2 cores): marked `slow`, so that
# `make quick` stays under 3 minutes; `make test` and CI run them as always. Node-id prefixes.
SLOW_SCENARIOS = {
    "tests/test_history.py::": "a week's backfill per engine, then gaps, outages and kills",
    "tests/test_reliability_features.py::test_bad_values_run_log_and_alerts": "many cycles",
    "tests/test_stack_cron.py::test_crontab_command_succeeds_as_cron_runs_it": (
        "builds the job user's venv with pip once per dependency set"
    ),
    # a minute or more each on 2 cores; `make quick` took 4.6 minutes with them
    "tests/test_dbt_unit_tests.py::": "dbt's unit tests on both engines",
    "tests/test_cycle.py::test_a_new_relative_duckdb_path": "cycles from other directories",
    "tests/test_stack_warehouse.py::test_the_cycle_runs_as_the_pipeline_role": "init + cycle",
    # the analyst's dashboard: a two-month backfill, then provisioning (dbt parse, dbt-metabase)
    "tests/test_stack_warehouse.py::test_an_analyst_picks": "two months of history + Metabase",
    "tests/test_stack_warehouse.py::test_filters_left_empty": "the same warehouse",
    "tests/test_stack_warehouse.py::test_the_correlation_card": "the same warehouse",
    "tests/test_stack_metabase.py::test_drift_is_put_back": "two provisioning runs",
    "tests/test_stack_metabase.py::test_waits_for_the_marts": "two provisioning runs",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(tuple(SLOW_SCENARIOS)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[dict[str, str]]:
    """POSTGRES_HOST/PORT/USER/PASSWORD/DB of a server where the tests may create databases."""
    with server() as env:
        yield env


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
