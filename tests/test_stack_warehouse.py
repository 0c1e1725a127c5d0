"""The warehouse's init script (docker/warehouse-init/10-coincap-roles.sh), applied to a real
throwaway PostgreSQL the way the official postgres image applies it on first start, then one real
cycle (scripts/run_pipeline.sh against the fake CoinCap) run as the pipeline role.

Then, as Metabase's read-only role: every mart can be read, raw and staging cannot, nothing can be
written anywhere, a statement timeout applies; and Metabase's application database is separate.
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
import uuid

import psycopg2
import psycopg2.errors
import pytest
from fake_coincap import FakeCoinCap
from helpers import API_KEY, MARTS, REPO, base_env, run_cycle
from postgres_cluster import find_bindir

INIT_SCRIPT = REPO / "docker" / "warehouse-init" / "10-coincap-roles.sh"
STATEMENT_TIMEOUT = "2s"  # short, so the test can hit it


def load_provisioning():
    spec = importlib.util.spec_from_file_location(
        "provision_metabase", REPO / "scripts" / "provision_metabase.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


class Stack:
    def __init__(self, server: dict[str, str]):
        suffix = uuid.uuid4().hex[:8]
        self.server = server
        self.db = f"coincap_stack_{suffix}"
        self.app_db = f"metabase_stack_{suffix}"
        self.roles = {
            "pipeline": (f"pipeline_{suffix}", secrets.token_hex(12)),
            "reader": (f"metabase_reader_{suffix}", secrets.token_hex(12)),
            "app": (f"metabase_app_{suffix}", secrets.token_hex(12)),
        }

    def connect(self, who: str = "admin", dbname: str | None = None):
        if who == "admin":
            user, password = self.server["POSTGRES_USER"], self.server["POSTGRES_PASSWORD"]
        else:
            user, password = self.roles[who]
        conn = psycopg2.connect(
            host=self.server["POSTGRES_HOST"],
            port=int(self.server["POSTGRES_PORT"]),
            user=user,
            password=password,
            dbname=dbname or self.db,
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def admin(self, sql: str, dbname: str | None = None) -> list[tuple]:
        conn = self.connect("admin", dbname or self.server["POSTGRES_DB"])
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def run_init_script(self) -> subprocess.CompletedProcess[str]:
        """As the image does: POSTGRES_DB exists, the script runs with the superuser's settings."""
        self.admin(f'create database "{self.db}"')
        env = {
            "PATH": f"{find_bindir()}:/usr/bin:/bin",
            "PGHOST": self.server["POSTGRES_HOST"],
            "PGPORT": self.server["POSTGRES_PORT"],
            "PGPASSWORD": self.server["POSTGRES_PASSWORD"],
            "POSTGRES_USER": self.server["POSTGRES_USER"],
            "POSTGRES_DB": self.db,
            "PIPELINE_DB_USER": self.roles["pipeline"][0],
            "PIPELINE_DB_PASSWORD": self.roles["pipeline"][1],
            "METABASE_READER_DB_USER": self.roles["reader"][0],
            "METABASE_READER_DB_PASSWORD": self.roles["reader"][1],
            "METABASE_READER_STATEMENT_TIMEOUT": STATEMENT_TIMEOUT,
            "METABASE_APP_DB_NAME": self.app_db,
            "METABASE_APP_DB_USER": self.roles["app"][0],
            "METABASE_APP_DB_PASSWORD": self.roles["app"][1],
        }
        return subprocess.run(
            ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )

    def drop(self) -> None:
        for db in (self.db, self.app_db):
            self.admin(f'drop database if exists "{db}" with (force)')
        for role, _ in self.roles.values():
            self.admin(f'drop role if exists "{role}"')


@pytest.fixture(scope="module")
def stack(postgres_server, tmp_path_factory):
    stack = Stack(postgres_server)
    try:
        init = stack.run_init_script()
        assert init.returncode == 0, init.stdout + init.stderr
        for _, password in stack.roles.values():
            assert password not in init.stdout + init.stderr
        # one real cycle, as the pipeline role, against the fake CoinCap
        tmp = tmp_path_factory.mktemp("stack-cycle")
        pipeline_user, pipeline_password = stack.roles["pipeline"]
        with FakeCoinCap(api_key=API_KEY) as fake:
            env = {
                **base_env(tmp),
                "WAREHOUSE": "postgres",
                "POSTGRES_HOST": postgres_server["POSTGRES_HOST"],
                "POSTGRES_PORT": postgres_server["POSTGRES_PORT"],
                "POSTGRES_DB": stack.db,
                "POSTGRES_USER": pipeline_user,
                "POSTGRES_PASSWORD": pipeline_password,
                "COINCAP_API_KEY": API_KEY,
                "COINCAP_BASE_URL": fake.base_url,
            }
            stack.cycle = run_cycle(env)
        yield stack
    finally:
        stack.drop()


def test_the_cycle_runs_as_the_pipeline_role(stack):
    assert stack.cycle.returncode == 0, stack.cycle.describe()
    owners = dict(
        stack.admin(
            "select nspname, pg_get_userbyid(nspowner) from pg_namespace "
            "where nspname in ('raw', 'staging', 'marts')",
            stack.db,
        )
    )
    pipeline = stack.roles["pipeline"][0]
    assert owners == {"raw": pipeline, "staging": pipeline, "marts": pipeline}
    table_owners = stack.admin(
        "select distinct tableowner from pg_tables where schemaname in ('raw', 'marts')", stack.db
    )
    assert table_owners == [(pipeline,)]


def test_reader_selects_every_mart(stack):
    conn = stack.connect("reader")
    try:
        with conn.cursor() as cur:
            for mart in MARTS:
                cur.execute(f"select count(*) from marts.{mart}")
                assert cur.fetchone()[0] > 0, mart
    finally:
        conn.close()


def test_reader_cannot_read_raw_or_staging(stack):
    relations = stack.admin(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('raw', 'staging', 'raw_staging') order by 1, 2",
        stack.db,
    )
    schemas = {schema for schema, _ in relations}
    assert {"raw", "staging"} <= schemas, relations
    conn = stack.connect("reader")
    try:
        for schema, table in relations:
            with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(f'select * from "{schema}"."{table}" limit 1')
    finally:
        conn.close()


@pytest.mark.parametrize(
    "sql",
    [
        "insert into marts.fct_asset_prices select * from marts.fct_asset_prices limit 1",
        "update marts.dim_assets set name = 'x'",
        "delete from marts.fct_asset_prices_daily",
        "truncate marts.fct_asset_prices",
        "create table marts.scratch (id int)",
        "create table public.scratch (id int)",
        "create temporary table scratch (id int)",
        "create schema scratch",
        "drop table marts.fct_asset_prices",
    ],
)
def test_reader_cannot_write_anywhere(stack, sql):
    conn = stack.connect("reader")
    try:
        with conn.cursor() as cur:
            # even in a read-write transaction: no privilege allows it
            for prelude in ("", "set session characteristics as transaction read write; "):
                with pytest.raises(
                    (psycopg2.errors.InsufficientPrivilege, psycopg2.errors.ReadOnlySqlTransaction)
                ):
                    cur.execute(prelude + sql)
    finally:
        conn.close()
    assert stack.admin("select count(*) from marts.fct_asset_prices", stack.db)[0][0] > 0


def test_reader_has_a_statement_timeout(stack):
    conn = stack.connect("reader")
    try:
        with conn.cursor() as cur:
            cur.execute("show statement_timeout")
            assert cur.fetchone()[0] == STATEMENT_TIMEOUT
            with pytest.raises(psycopg2.errors.QueryCanceled):
                cur.execute("select pg_sleep(5)")
    finally:
        conn.close()


def test_tables_the_pipeline_creates_later_are_readable(stack):
    pipeline = stack.connect("pipeline")
    try:
        with pipeline.cursor() as cur:
            cur.execute("create table marts.later_mart as select 1 as answer")
        reader = stack.connect("reader")
        try:
            with reader.cursor() as cur:
                cur.execute("select answer from marts.later_mart")
                assert cur.fetchone() == (1,)
        finally:
            reader.close()
    finally:
        with pipeline.cursor() as cur:
            cur.execute("drop table marts.later_mart")
        pipeline.close()


def test_metabase_app_database_is_separate(stack):
    app = stack.connect("app", stack.app_db)
    try:
        with app.cursor() as cur:  # Metabase creates its own tables there
            cur.execute("create table metabase_probe (id int)")
            cur.execute("drop table metabase_probe")
    finally:
        app.close()
    for who, dbname in (
        ("app", stack.db),
        ("reader", stack.app_db),
        ("pipeline", stack.app_db),
        ("reader", "postgres"),
    ):
        with pytest.raises(psycopg2.OperationalError, match="permission denied"):
            stack.connect(who, dbname).close()


def test_dashboard_questions_run_as_the_reader(stack):
    """The starter dashboard's SQL (scripts/provision_metabase.py) works on the real marts,
    through the role Metabase uses."""
    cards = load_provisioning().CARDS
    conn = stack.connect("reader")
    try:
        with conn.cursor() as cur:
            for card in cards:
                cur.execute(card.sql)
                assert cur.fetchall(), card.name
    finally:
        conn.close()


def test_reader_reads_the_run_log_and_rejections_but_not_ops(stack):
    """marts.pipeline_runs and marts.fct_rejected_asset_prices are views the pipeline creates in
    marts: the default privileges let the reader select them; the run log's table in `ops` stays
    closed to it."""
    assert stack.admin("select count(*) from ops.pipeline_runs", stack.db)[0][0] == 1
    conn = stack.connect("reader")
    try:
        for view in ("pipeline_runs", "fct_rejected_asset_prices"):
            with conn.cursor() as cur:
                cur.execute(f"select count(*) from marts.{view}")
                cur.fetchone()
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("select * from ops.pipeline_runs limit 1")
    finally:
        conn.close()
