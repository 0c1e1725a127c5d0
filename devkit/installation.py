"""One installation of the pipeline, as the tests and the benchmarks set it up.

Nothing here is mocked but CoinCap (devkit/fake_coincap.py, at the HTTP level): a `Warehouse` is
a real DuckDB file or a real PostgreSQL database made for the occasion (and dropped after), and
an `Installation` is that warehouse, a fake CoinCap and the working directories a host keeps (dlt's
data, the run directory with the cycle lock, dbt's target and logs). A cycle is
`scripts/run_pipeline.sh` in a subprocess with an explicit environment, as cron runs it; the other
commands are the venv's `coincap-elt` console script. Queries go through the package's own
read-only reader (`ingest.warehouse.Warehouse.reader`, made by `ingest.config.warehouse_from`).

    with Installation.create("duckdb", tmp, asset_ids=["bitcoin"]) as inst:
        result = inst.cycle()
        assert result.returncode == 0, result.describe()
        inst.warehouse.count("marts.fct_asset_prices")
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.fake_coincap import FakeCoinCap
from ingest.config import warehouse_from

REPO = Path(__file__).resolve().parent.parent
RUN_PIPELINE = REPO / "scripts" / "run_pipeline.sh"
COINCAP_ELT = Path(sys.executable).parent / "coincap-elt"  # the venv's console script
ENGINES = ["duckdb", "postgres"]
API_KEY = "test-coincap-key-7f3a9c"  # what the fake CoinCap is started with
# Three of the marts, the tests look for rows in them (docs/contract.md lists every mart)
MARTS = ["fct_asset_prices", "dim_assets", "fct_asset_prices_daily"]


# --------------------------------------------------------------------------- warehouses
class Warehouse:
    """A fresh, empty warehouse: a new DuckDB file in `workdir`, or a new database on the
    PostgreSQL server that `postgres` names (its POSTGRES_* variables; a role that may create
    databases), or on Spark (`postgres` then holds the Spark cluster's SPARK_HOST/SPARK_PORT:
    devkit/spark_cluster.py) a lake folder in `workdir` and the cluster's catalogue, which holds
    one warehouse at a time. `.env` holds the variables a cycle needs for it; `drop()` removes
    the database (Spark: its schemas and the lake folder)."""

    def __init__(
        self,
        engine: str,
        workdir: Path,
        postgres: dict[str, str] | None = None,
        name: str = "warehouse",
    ):
        self.engine = engine
        self.workdir = Path(workdir)
        self.server = postgres
        if engine == "duckdb":
            self.duckdb_path = self.workdir / f"{name}.duckdb"
            self.env = {"WAREHOUSE": "duckdb", "DUCKDB_PATH": str(self.duckdb_path)}
        elif engine == "postgres":
            assert postgres is not None, "a PostgreSQL warehouse needs the server's POSTGRES_* env"
            prefix = "coincap_test" if name == "warehouse" else name
            self.dbname = f"{prefix}_{uuid.uuid4().hex[:12]}"
            self.admin(f'create database "{self.dbname}"')
            self.env = {"WAREHOUSE": "postgres", **postgres, "POSTGRES_DB": self.dbname}
        elif engine == "spark":
            assert postgres is not None, "a Spark warehouse needs the cluster's SPARK_* env"
            self.lake = self.workdir / f"{name}-lake"
            self.env = {"WAREHOUSE": "spark", **postgres, "RAW_BUCKET_URL": str(self.lake)}
            self.drop()  # the cluster's catalogue may hold an earlier test's schemas
        else:
            raise ValueError(engine)

    def __repr__(self) -> str:
        return f"Warehouse({self.engine})"

    @property
    def product(self) -> Any:
        """The package's own warehouse object (ingest.warehouse.Warehouse) for this one."""
        return warehouse_from(self.env)

    # ---- connections
    def connect(self, dbname: str | None = None) -> Any:
        """A connection that may write: DuckDB's, or psycopg2's to `dbname` (this database)."""
        if self.engine == "duckdb":
            import duckdb

            return duckdb.connect(str(self.duckdb_path))
        import psycopg2

        server = self.server
        assert server is not None
        return psycopg2.connect(
            host=server["POSTGRES_HOST"],
            port=int(server["POSTGRES_PORT"]),
            user=server["POSTGRES_USER"],
            password=server["POSTGRES_PASSWORD"],
            dbname=dbname or self.dbname,
            connect_timeout=10,
        )

    def admin(self, sql: str) -> None:
        """One statement on the server's maintenance database (PostgreSQL), in autocommit."""
        assert self.server is not None
        conn = self.connect(self.server["POSTGRES_DB"])
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def drop(self) -> None:
        """The warehouse gone: the database dropped, or the DuckDB file (and its WAL) removed."""
        if self.engine == "postgres":
            self.admin(f'drop database if exists "{self.dbname}" with (force)')
        elif self.engine == "spark":
            import shutil

            from ingest.lake import DATASETS, DERIVED_DATABASES

            with self.product.spark_session() as session:
                for schema in DATASETS + DERIVED_DATABASES:
                    session(f"drop database if exists {schema} cascade")
            shutil.rmtree(self.lake, ignore_errors=True)
        else:
            for path in (
                self.duckdb_path,
                self.duckdb_path.with_name(self.duckdb_path.name + ".wal"),
            ):
                path.unlink(missing_ok=True)

    # ---- reading
    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of one query, parameters written `?`. Read-only, through the package's reader; the
        connection is opened and closed here, so a cycle can use the warehouse in between (DuckDB
        allows one writing process at a time)."""
        with self.product.reader("devkit") as query:
            return query(sql.replace("?", "%s"), *(params or ()))

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        """One statement that writes (a test's set-up of a broken state), committed."""
        self.run_sql(sql.replace("?", "%s") if self.engine == "postgres" else sql, params=params)

    def run_sql(
        self, *statements: str, params: Iterable[Any] | None = None, autocommit: bool = False
    ) -> None:
        """Statements that write, in one transaction (PostgreSQL: each on its own with
        `autocommit`, for `vacuum`); parameters in the engine's own style."""
        conn = self.connect()
        try:
            if self.engine == "duckdb":
                for sql in statements:
                    conn.execute(sql, list(params or []))
                return
            conn.autocommit = autocommit
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql, list(params or []) or None)
            if not autocommit:
                conn.commit()
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
        if self.engine == "spark":
            rows = self.query(f"describe table {schema}.{table}")
            names = {}
            for name, dtype, *_ in rows:
                if not name or name.startswith("#"):
                    break  # partition information and the like follow the columns
                names[name] = dtype.lower()
            return names
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

    def count(self, table: str, where: str = "true") -> int:
        return self.query(f"select count(*) from {table} where {where}")[0][0]

    def load_ids(self) -> list[str]:
        """dlt's completed loads into `raw`."""
        return [r[0] for r in self.query("select load_id from raw._dlt_loads order by load_id")]


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
        "BACKUP_DIR": str(tmp / "backups"),
        "DBT_TARGET_PATH": str(tmp / "dbt_target"),
        "DBT_LOG_PATH": str(tmp / "dbt_logs"),
        # never a developer's .env from the repo root: each caller sets exactly what it means
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


def coincap_elt(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`coincap-elt ARGS` (status, backfill, doctor, ...) as an operator runs it, from HOME."""
    return subprocess.run(
        [str(COINCAP_ELT), *args],
        env=env,
        cwd=env.get("HOME", str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- an installation
class Installation:
    """A warehouse, a fake CoinCap and the working directories (under `tmp`) of one installation.

    `settings` are variables every command of this installation gets (on top of base_env, the
    warehouse's and CoinCap's); `asset_ids`, when given, is COINCAP_ASSET_IDS (else the
    package's default). Every cycle's log is checked for the API key, which is never logged."""

    def __init__(
        self,
        warehouse: Warehouse,
        fake: FakeCoinCap,
        tmp: Path,
        asset_ids: Iterable[str] | None = None,
        settings: dict[str, str] | None = None,
    ):
        self.warehouse = warehouse
        self.fake = fake
        self.tmp = Path(tmp)
        self.asset_ids = list(asset_ids) if asset_ids is not None else None
        self.settings = dict(settings or {})
        self.results: list[CycleResult] = []
        self.owned = False  # made by create(): close() stops the fake and drops the warehouse

    @classmethod
    def create(
        cls,
        engine: str,
        tmp: Path,
        postgres: dict[str, str] | None = None,
        fake: FakeCoinCap | None = None,
        **kwargs: Any,
    ) -> Installation:
        """A new installation: a fresh warehouse on `engine` (a DuckDB file under `tmp`, or a new
        database on the server `postgres` names) and a fake CoinCap (`fake`, else a default one),
        started here. close() stops the fake and drops the warehouse."""
        tmp.mkdir(parents=True, exist_ok=True)
        wh = Warehouse(engine, tmp, postgres if engine in ("postgres", "spark") else None)
        try:
            if fake is None:
                fake = FakeCoinCap(api_key=API_KEY)
            if not fake.running:
                fake.start()
            inst = cls(wh, fake, tmp, **kwargs)
        except BaseException:
            wh.drop()
            raise
        inst.owned = True
        return inst

    def close(self) -> None:
        if self.owned:
            self.owned = False
            self.fake.stop()
            self.warehouse.drop()

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- where things are
    @property
    def engine(self) -> str:
        return self.warehouse.engine

    @property
    def run_dir(self) -> Path:
        return Path(self.env()["COINCAP_RUN_DIR"])

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "run_pipeline.lock"

    @property
    def dlt_dir(self) -> Path:
        return Path(self.env()["DLT_DATA_DIR"])

    # ---- running things
    def env(self, **overrides: str | None) -> dict[str, str]:
        """The environment of this installation's commands; an override of None unsets."""
        env = {
            **base_env(self.tmp),
            **self.warehouse.env,
            "COINCAP_API_KEY": self.fake.api_key,
            "COINCAP_BASE_URL": self.fake.base_url,
        }
        if self.asset_ids is not None:
            env["COINCAP_ASSET_IDS"] = ",".join(self.asset_ids)
        env.update(self.settings)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def cycle(self, timeout: float = 300, **overrides: str | None) -> CycleResult:
        """One cycle as cron runs it; the fake's request log starts afresh."""
        self.fake.reset_requests()
        env = self.env(**overrides)
        result = run_cycle(env, timeout=timeout)
        self.results.append(result)
        # docs/contract.md: the key is never logged, whatever happens
        for key in {self.fake.api_key, env.get("COINCAP_API_KEY") or self.fake.api_key}:
            assert key not in result.output, f"the API key appears in the log:\n{result.describe()}"
        return result

    def good_cycle(self, **overrides: str | None) -> CycleResult:
        result = self.cycle(**overrides)
        assert result.returncode == 0, result.describe()
        return result

    def command(
        self, *args: str, timeout: float = 120, **overrides: str | None
    ) -> subprocess.CompletedProcess[str]:
        """`coincap-elt ARGS` with this installation's environment."""
        return coincap_elt(self.env(**overrides), *args, timeout=timeout)
