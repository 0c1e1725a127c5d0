"""Fixtures shared by the test suite: a real PostgreSQL server, fresh warehouses, a fake CoinCap.

PostgreSQL: the server named by the POSTGRES_* variables when POSTGRES_HOST is set (CI can start
one with `python -m devkit.postgres_cluster start DIR`), otherwise a throwaway cluster started
here and removed at the end of the session. Every test gets its own database (and its own
DuckDB file).
"""

from __future__ import annotations

import os
import re
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


# `make test` runs the suite on two workers with `--dist loadgroup`: a group runs on one worker,
# and groups are handed out in this order, so the long ones start first and the short ones fill
# in behind them. A group is a test file, except where a file keeps one long-lived installation
# per engine (the drills; CoinCap's odd answers): there each engine is a group of its own.
# Minutes of each, measured on 2 cores, are in docs/testing.md.
LONGEST_FIRST = [
    "tests/test_stack_up.py",
    "tests/drills/test_drills.py[duckdb]",
    "tests/drills/test_drills.py[postgres]",
    "tests/test_coincap_reality.py[duckdb]",
    "tests/test_history.py",
    "tests/test_cli_doctor.py",
    "tests/test_cycle.py",
    "tests/test_cli_status.py",
    "tests/test_cli_backfill.py",
    "tests/test_stack_cron.py",
    "tests/test_coincap_reality.py[postgres]",
    "tests/test_stack_warehouse.py",
    "tests/test_bench.py",
    "tests/test_reliability_features.py",
    "tests/test_stack_metabase.py",
    "tests/test_numbers.py",
    "tests/test_dbt_unit_tests.py",
    "tests/test_stack_docs.py",
]
PER_ENGINE = ("tests/drills/test_drills.py", "tests/test_coincap_reality.py")


def group_of(nodeid: str) -> str:
    path = nodeid.split("::")[0]
    engine = re.search(r"\[(duckdb|postgres)\b", nodeid)
    return f"{path}[{engine[1]}]" if path in PER_ENGINE and engine else path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # `one_engine`: the behaviour is decided before anything reaches the warehouse; its
    # PostgreSQL instance would repeat the DuckDB one
    repeated = [i for i in items if i.get_closest_marker("one_engine") and "[postgres" in i.nodeid]
    if repeated:
        config.hook.pytest_deselected(items=repeated)
        items[:] = [item for item in items if item not in repeated]
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item.nodeid)))
    # stable: the order inside a group (module fixtures, the drills' sequence) is kept
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


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
