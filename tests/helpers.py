"""Shared pieces of the end-to-end tests: a warehouse to load and query, and one pipeline cycle.

Nothing here is mocked: a Warehouse is a real DuckDB file or a real PostgreSQL database, and a
cycle is `scripts/run_pipeline.sh` run in a subprocess with an explicit environment.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUN_PIPELINE = REPO / "scripts" / "run_pipeline.sh"
ENGINES = ["duckdb", "postgres"]
API_KEY = "test-coincap-key-7f3a9c"  # what the fake CoinCap accepts

# Three of the marts, the tests look for rows in them (docs/contract.md lists every mart)
MARTS = ["fct_asset_prices", "dim_assets", "fct_asset_prices_daily"]

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


# --------------------------------------------------------------------------- warehouses
class Warehouse:
    """A fresh, empty warehouse for one test (or one module's scenario)."""

    def __init__(self, engine: str, workdir: Path, pg_admin: dict[str, str] | None = None):
        self.engine = engine
        self.workdir = workdir
        self._pg_admin = pg_admin
        if engine == "duckdb":
            self.duckdb_path = workdir / "warehouse.duckdb"
            self.env = {"WAREHOUSE": "duckdb", "DUCKDB_PATH": str(self.duckdb_path)}
        elif engine == "postgres":
            assert pg_admin is not None, "postgres warehouse needs the server's POSTGRES_* env"
            self.dbname = f"coincap_test_{uuid.uuid4().hex[:12]}"
            self._admin_exec(f'create database "{self.dbname}"')
            self.env = {"WAREHOUSE": "postgres", **pg_admin, "POSTGRES_DB": self.dbname}
        else:
            raise ValueError(engine)

    def __repr__(self) -> str:
        return f"Warehouse({self.engine})"

    # ---- postgres plumbing
    def _pg_connect(self, dbname: str):
        import psycopg2

        env = self._pg_admin
        assert env is not None
        return psycopg2.connect(
            host=env["POSTGRES_HOST"],
            port=int(env["POSTGRES_PORT"]),
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            dbname=dbname,
            connect_timeout=10,
        )

    def _admin_exec(self, sql: str) -> None:
        assert self._pg_admin is not None
        conn = self._pg_connect(self._pg_admin["POSTGRES_DB"])
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def drop(self) -> None:
        if self.engine == "postgres":
            self._admin_exec(f'drop database if exists "{self.dbname}" with (force)')

    # ---- reading
    def query(self, sql: str, params: tuple | list | None = None) -> list[tuple[Any, ...]]:
        """Rows of one query. The connection is opened and closed here, so a cycle can use the
        warehouse in between (DuckDB allows one writing process at a time)."""
        if self.engine == "duckdb":
            import duckdb

            conn = duckdb.connect(str(self.duckdb_path), read_only=True)
            try:
                return conn.execute(sql, params or []).fetchall()
            finally:
                conn.close()
        conn = self._pg_connect(self.dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params or None)
                return cur.fetchall()
        finally:
            conn.close()

    def execute(self, sql: str, params: tuple | list | None = None) -> None:
        """One statement that writes (a test's setup of a broken state), committed."""
        if self.engine == "duckdb":
            import duckdb

            conn = duckdb.connect(str(self.duckdb_path))
            try:
                conn.execute(sql, params or [])
            finally:
                conn.close()
            return
        conn = self._pg_connect(self.dbname)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params or None)
        finally:
            conn.close()

    def exists(self) -> bool:
        """Whether anything was ever written (a DuckDB file exists / the database has tables)."""
        if self.engine == "duckdb":
            return self.duckdb_path.exists()
        return bool(
            self.query(
                "select 1 from information_schema.tables "
                "where table_schema not in ('pg_catalog', 'information_schema')"
            )
        )

    def columns(self, schema: str, table: str) -> dict[str, str]:
        """column name -> data type as the engine reports it (lower case)."""
        rows = self.query(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            (schema, table),
        )
        return {name: dtype.lower() for name, dtype in rows}

    def marts(self, without: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every mart, in a stable order: what an analyst would see. `without` leaves
        out columns by name (e.g. load metadata that a re-delivered observation may refresh)."""
        out = {}
        for table in MARTS:
            cols = [c for c in self.columns("marts", table) if c not in without]
            assert cols, f"marts.{table} does not exist"
            order = ", ".join(str(i + 1) for i in range(len(cols)))  # every column: stable
            out[table] = self.query(f"select {', '.join(cols)} from marts.{table} order by {order}")
        return out

    def count(self, table: str) -> int:
        return self.query(f"select count(*) from {table}")[0][0]

    def load_ids(self) -> list[str]:
        """dlt's completed loads into `raw`."""
        return [r[0] for r in self.query("select load_id from raw._dlt_loads order by load_id")]


def make_warehouse(engine: str, workdir: Path, request) -> Warehouse:
    """A fresh warehouse; `request` is a pytest FixtureRequest (for the session's PostgreSQL)."""
    pg = request.getfixturevalue("postgres_server") if engine == "postgres" else None
    return Warehouse(engine, workdir, pg)


# --------------------------------------------------------------------------- one cycle
@dataclass
class CycleResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    env: dict[str, str] = field(repr=False, default_factory=dict)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]

    def lines_with(self, *fragments: str, case: bool = True) -> list[str]:
        """Lines that contain every fragment."""

        def has(line: str, frag: str) -> bool:
            return frag in line if case else frag.lower() in line.lower()

        return [ln for ln in self.lines if all(has(ln, f) for f in fragments)]

    def describe(self) -> str:
        return (
            f"exit {self.returncode} after {self.seconds:.1f} s\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def base_env(tmp: Path) -> dict[str, str]:
    """What every cycle gets besides the warehouse and CoinCap settings. The venv's bin comes first
    on PATH, as for a user who activated it; HOME is a throwaway so no ~/.dlt or ~/.dbt leaks in,
    and COINCAP_ENV_FILE points at a file that does not exist so no repo-root .env leaks in."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "/usr/bin:/bin")]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DLT_DATA_DIR": str(tmp / "dlt"),
        "COINCAP_RUN_DIR": str(tmp / "run"),
        "DBT_TARGET_PATH": str(tmp / "dbt_target"),
        "DBT_LOG_PATH": str(tmp / "dbt_logs"),
        # never a developer's .env from the repo root: each test sets exactly what it means
        "COINCAP_ENV_FILE": str(tmp / "no.env"),
        # a short backfill keeps first cycles quick; tests/test_history.py checks the 7-day default
        "COINCAP_BACKFILL_DAYS": "1",
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def run_cycle(env: dict[str, str], timeout: float = 300) -> CycleResult:
    """One `scripts/run_pipeline.sh`, exactly as cron runs it, but with an explicit environment."""
    assert RUN_PIPELINE.exists(), f"{RUN_PIPELINE} does not exist (yet)"
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(RUN_PIPELINE)],
        env=env,
        cwd=str(env.get("HOME", REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CycleResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started, env)


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
