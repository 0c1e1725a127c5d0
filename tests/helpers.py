"""Shared pieces of the end-to-end tests, on top of devkit.installation (the one installation
helper: warehouses, cycles, commands): the pytest glue and what the tests check against.

Nothing here is mocked: a Warehouse is a real DuckDB file or a real PostgreSQL database, and a
cycle is `scripts/run_pipeline.sh` run in a subprocess with an explicit environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devkit.installation import (  # noqa: F401 - the tests import these from here too
    API_KEY,
    COINCAP_ELT,
    ENGINES,
    MARTS,
    REPO,
    RUN_PIPELINE,
    CycleResult,
    Installation,
    Warehouse,
    base_env,
    coincap_elt,
    run_cycle,
)

# Headless Chromium as these machines run it (docs/environment.md), for the docs-site tests
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
# fct_asset_prices' contract columns (docs/contract.md): what the docs site must show
FCT_COLUMNS = [
    "asset_id",
    "symbol",
    "name",
    "rank",
    "price_usd",
    "market_cap_usd",
    "volume_usd_24h",
    "supply",
    "max_supply",
    "change_percent_24h",
    "vwap_24h",
    "observed_at",
]

# "every log line starts with an ISO-8601 UTC timestamp"
ISO_UTC_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:?00)\b")


def make_warehouse(engine: str, workdir: Path, request) -> Warehouse:
    """A fresh warehouse; `request` is a pytest FixtureRequest (for the session's PostgreSQL)."""
    pg = request.getfixturevalue("postgres_server") if engine == "postgres" else None
    return Warehouse(engine, workdir, pg)


def make_installation(
    request, engine: str, tmp: Path, cls: type[Installation] = Installation, **kwargs: Any
) -> Any:
    """A new installation on `engine` (`cls.create`, cls an Installation or a test file's
    subclass), on the session's PostgreSQL; `kwargs` as create() takes them. close() it."""
    pg = request.getfixturevalue("postgres_server") if engine == "postgres" else None
    return cls.create(engine, tmp, pg, **kwargs)


def daily_columns(wh: Warehouse) -> dict[str, str]:
    """The daily mart's columns for day, open, high, low, close and count (names by meaning)."""
    cols = wh.columns("marts", "fct_asset_prices_daily")

    def one(pattern: str, what: str) -> str:
        found = [c for c in cols if re.search(pattern, c)]
        assert len(found) == 1, f"no single {what} column in fct_asset_prices_daily: {list(cols)}"
        return found[0]

    return {
        "day": one(r"(^|_)(day|date|observed_on)($|_)", "day"),
        "open": one(r"open", "open"),
        "high": one(r"high", "high"),
        "low": one(r"low", "low"),
        "close": one(r"close", "close"),
        "count": one(r"(observation|count)", "observation count"),
    }


def unit_tests_defined(incremental_only: bool = False) -> set[str]:
    """The names of the unit tests the project's YAML files define (`incremental_only`: those
    of the incremental path, which override `is_incremental` to true)."""
    return {
        test["name"]
        for path in (REPO / "dbt_project" / "models").rglob("*.yml")
        for test in (yaml.safe_load(path.read_text()) or {}).get("unit_tests") or []
        if not incremental_only
        or ((test.get("overrides") or {}).get("macros") or {}).get("is_incremental")
    }


def run_dbt_unit_tests(env: dict[str, str]) -> tuple[int, str, set[str]]:
    """`dbt test --select test_type:unit` with a cycle's environment: (exit status, output,
    the names of the unit tests that passed)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "test", "--select", "test_type:unit"]
        + ["--project-dir", "dbt_project", "--profiles-dir", "profiles", "--no-use-colors"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    return proc.returncode, out, set(re.findall(r" PASS \w+::(\w+) ", out))
