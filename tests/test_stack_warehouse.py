"""The warehouse's init script (docker/warehouse-init/10-coincap-roles.sh), applied to a real
throwaway PostgreSQL the way the official postgres image applies it on first start, then one real
cycle (scripts/run_pipeline.sh against the fake CoinCap) run as the pipeline role.

Then, as Metabase's read-only role: every mart can be read, raw and staging cannot, nothing can be
written anywhere, a statement timeout applies; and Metabase's application database is separate.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from helpers import API_KEY, MARTS, REPO, base_env, run_cycle

from devkit.fake_coincap import FakeCoinCap
from devkit.fake_metabase import FakeMetabase
from devkit.postgres_cluster import find_bindir

INIT_SCRIPT = REPO / "docker" / "warehouse-init" / "10-coincap-roles.sh"
STATEMENT_TIMEOUT = "2s"  # short, so the test can hit it


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

    def pipeline_env(self, tmp, coincap_url: str, **extra: str) -> dict[str, str]:
        """A cycle's environment as the pipeline role, against the fake CoinCap at that URL."""
        pipeline_user, pipeline_password = self.roles["pipeline"]
        return {
            **base_env(tmp),
            "WAREHOUSE": "postgres",
            "POSTGRES_HOST": self.server["POSTGRES_HOST"],
            "POSTGRES_PORT": self.server["POSTGRES_PORT"],
            "POSTGRES_DB": self.db,
            "POSTGRES_USER": pipeline_user,
            "POSTGRES_PASSWORD": pipeline_password,
            "COINCAP_API_KEY": API_KEY,
            "COINCAP_BASE_URL": coincap_url,
            **extra,
        }

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
        with FakeCoinCap(api_key=API_KEY) as fake:
            env = stack.pipeline_env(tmp, fake.base_url)
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


# --------------------------------------------------------------------------- the analyst's view
# A month of history for three assets, one real cycle (backfill), then the dashboard provisioned
# into the fake Metabase, whose sync and queries run on this PostgreSQL as metabase_reader.
ANALYST_ASSETS = ("bitcoin", "ethereum", "solana")
CHOSEN = ["bitcoin", "ethereum"]
ADMIN = ("analyst-admin@example.com", "admin-secret-Zq81x")


@pytest.fixture(scope="module")
def analyst_stack(postgres_server, tmp_path_factory):
    stack = Stack(postgres_server)
    try:
        init = stack.run_init_script()
        assert init.returncode == 0, init.stdout + init.stderr
        tmp = tmp_path_factory.mktemp("analyst-cycle")
        with FakeCoinCap(api_key=API_KEY, prices_follow_clock=True) as fake:
            env = stack.pipeline_env(
                tmp,
                fake.base_url,
                COINCAP_ASSET_IDS=",".join(ANALYST_ASSETS),
                COINCAP_BACKFILL_DAYS="62",  # 30-day volatility on every day of the range
                COINCAP_MAX_HISTORY_REQUESTS="200",
            )
            cycle = run_cycle(env, timeout=600)
            assert cycle.returncode == 0, cycle.describe()
        yield stack
    finally:
        stack.drop()


class Dashboard:
    """The provisioned dashboard, asked for its cards as Metabase's dashboard page asks."""

    def __init__(self, fake: FakeMetabase):
        self.fake = fake
        (self.board,) = fake.dashboards.values()
        self.parameters = {p["slug"]: p["id"] for p in self.board["parameters"]}
        self.session = self._call(
            "POST", "/api/session", {"username": ADMIN[0], "password": ADMIN[1]}
        )["id"]

    def _call(self, method: str, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.fake.base_url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"}
            | ({"X-Metabase-Session": self.session} if hasattr(self, "session") else {}),
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def card(self, name: str, assets: list[str] | None, dates: str | None) -> list[dict]:
        """The card's rows as dicts, with these filter values (None: the filter left alone)."""
        (card_id,) = [c["id"] for c in self.fake.cards.values() if c["name"] == name]
        (dashcard_id,) = [dc["id"] for dc in self.board["dashcards"] if dc["card_id"] == card_id]
        # a filter left alone is not sent: Metabase then applies the filter's default
        parameters = [
            {"id": self.parameters[slug], "type": kind, "value": value}
            for slug, kind, value in (
                ("asset", "string/=", assets),
                ("date_range", "date/all-options", dates),
            )
            if value is not None
        ]
        answer = self._call(
            "POST",
            f"/api/dashboard/{self.board['id']}/dashcard/{dashcard_id}/card/{card_id}/query",
            {"parameters": parameters},
        )
        assert answer["status"] == "completed", (name, answer.get("error"))
        columns = [c["name"] for c in answer["data"]["cols"]]
        return [dict(zip(columns, row, strict=True)) for row in answer["data"]["rows"]]


@pytest.fixture(scope="module")
def dashboard(analyst_stack, postgres_server):
    reader, reader_password = analyst_stack.roles["reader"]
    with FakeMetabase() as fake:  # its sync reads this PostgreSQL's catalog as the reader
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "METABASE_URL": fake.base_url,
            "METABASE_ADMIN_EMAIL": ADMIN[0],
            "METABASE_ADMIN_PASSWORD": ADMIN[1],
            "METABASE_WAREHOUSE_HOST": postgres_server["POSTGRES_HOST"],
            "METABASE_WAREHOUSE_PORT": postgres_server["POSTGRES_PORT"],
            "METABASE_WAREHOUSE_DB": analyst_stack.db,
            "METABASE_WAREHOUSE_USER": reader,
            "METABASE_WAREHOUSE_PASSWORD": reader_password,
            "METABASE_WAIT_SECONDS": "20",
            "METABASE_MARTS_WAIT_SECONDS": "30",
            "COINCAP_ENV_FILE": os.devnull,  # never a developer's .env
        }
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "coincap-elt"), "metabase"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert reader_password not in proc.stdout + proc.stderr
        yield Dashboard(fake)


def month_range() -> tuple[dt.date, dt.date, str]:
    """The 30 days up to today (UTC), as the date filter's range value."""
    last = dt.datetime.now(dt.UTC).date()
    first = last - dt.timedelta(days=29)
    return first, last, f"{first.isoformat()}~{last.isoformat()}"


def mart(stack: Stack, sql: str) -> list[tuple]:
    return stack.admin(sql, stack.db)


def test_an_analyst_picks_two_assets_and_a_month(analyst_stack, dashboard):
    """The issue's check: two assets and 30 days give their returns, volatility, drawdown, share
    and correlation; every card shows those assets only and those dates only, with the marts'
    values."""
    first, last, dates = month_range()
    in_range = lambda day: first.isoformat() <= day[:10] <= last.isoformat()  # noqa: E731

    returns = dashboard.card("Daily returns", CHOSEN, dates)
    expected = mart(
        analyst_stack,
        "select price_date, asset_id, close_price_usd, simple_return, "
        "annualized_volatility_30d, drawdown from marts.fct_asset_returns_daily "
        f"where asset_id in ('bitcoin', 'ethereum') and price_date between '{first}' and '{last}' "
        "order by price_date desc, asset_id",
    )
    assert len(returns) == len(expected) == 2 * 30
    for row, (day, asset, close, simple, vol30, drawdown) in zip(returns, expected, strict=True):
        assert (row["price_date"], row["asset_id"]) == (day.isoformat(), asset)
        assert row["close_price_usd"] == pytest.approx(float(close), rel=1e-12)
        assert row["simple_return"] == pytest.approx(float(simple), abs=1e-12)
        assert row["drawdown"] == pytest.approx(float(drawdown), abs=1e-12)
        assert row["drawdown"] <= 0
        assert row["annualized_volatility_30d"] == pytest.approx(float(vol30), abs=1e-12)
    # a month of history: every day of the range has a volatility
    assert all(r["annualized_volatility_30d"] is not None for r in returns)

    # cumulative return: close over the first chosen day's close, per asset
    cumulative = dashboard.card("Cumulative return", CHOSEN, dates)
    closes = {(r["asset_id"], r["price_date"]): r["close_price_usd"] for r in returns}
    for row in cumulative:
        first_close = closes[(row["asset_id"], first.isoformat())]
        own = closes[(row["asset_id"], row["price_date"])]
        assert row["cumulative_return"] == pytest.approx(own / first_close - 1, abs=1e-9)
    assert {r["asset_id"] for r in cumulative} == set(CHOSEN) and len(cumulative) == 60

    for name, column in (
        ("Drawdown from peak", "drawdown"),
        ("Volatility, 30 days, annualised", "annualized_volatility_30d"),
    ):
        rows = dashboard.card(name, CHOSEN, dates)
        assert len(rows) == 60, name
        for row in rows:
            match = next(
                r
                for r in returns
                if (r["asset_id"], r["price_date"]) == (row["asset_id"], row["price_date"])
            )
            assert row[column] == pytest.approx(match[column], abs=1e-12), name

    # correlation over the chosen dates, computed here from the one-day log returns
    one_day = mart(
        analyst_stack,
        "select asset_id, price_date, log_return from marts.fct_asset_returns_daily "
        "where days_since_previous_close = 1 and asset_id in ('bitcoin', 'ethereum') "
        f"and price_date between '{first}' and '{last}'",
    )
    by_asset = {a: {d: float(r) for aa, d, r in one_day if aa == a} for a in CHOSEN}
    overlap = sorted(set(by_asset["bitcoin"]) & set(by_asset["ethereum"]))
    assert len(overlap) >= 20
    expected_correlation = statistics.correlation(
        [by_asset["bitcoin"][d] for d in overlap], [by_asset["ethereum"][d] for d in overlap]
    )
    (pair,) = dashboard.card("Correlation of daily returns", CHOSEN, dates)
    assert (pair["asset_id"], pair["other_asset_id"]) == ("bitcoin", "ethereum")
    assert pair["overlap_days"] == len(overlap)
    assert pair["correlation"] == pytest.approx(round(expected_correlation, 4), abs=1e-4)
    assert -1 <= pair["correlation"] <= 1

    # share: of all three tracked assets' market cap, on the last chosen day that has one
    share = dashboard.card("Share of total market cap", CHOSEN, dates)
    assert {r["asset_id"] for r in share} == set(CHOSEN)
    caps = dict(
        mart(
            analyst_stack,
            "select distinct on (asset_id) asset_id, market_cap_usd from marts.fct_asset_prices "
            f"where (observed_at at time zone 'UTC')::date = '{share[0]['price_date']}' "
            "and market_cap_usd is not null order by asset_id, observed_at desc",
        )
    )
    assert set(caps) == set(ANALYST_ASSETS)
    total = sum(caps.values())
    for row in share:
        assert row["market_share"] == pytest.approx(float(caps[row["asset_id"]] / total), abs=1e-9)
    over_time = dashboard.card("Market share over time", CHOSEN, dates)
    assert over_time and {r["asset_id"] for r in over_time} == set(CHOSEN)

    # the price cards: the chosen assets, inside the dates, a bounded number of points
    latest = dashboard.card("Latest prices", CHOSEN, dates)
    assert sorted(r["asset_id"] for r in latest) == CHOSEN
    history = dashboard.card("Price history per asset", CHOSEN, dates)
    for asset in CHOSEN:
        points = [r for r in history if r["asset_id"] == asset]
        assert 100 <= len(points) <= 201, len(points)
        assert all(in_range(p["price_at"]) for p in points)
    ohlc = dashboard.card("Daily OHLC", CHOSEN, dates)
    assert len(ohlc) == 60 and all(in_range(r["price_date"]) for r in ohlc)


def test_filters_left_empty_or_narrowed(analyst_stack, dashboard):
    """No asset chosen: every tracked asset; a week: the correlation says it has too few days
    (empty, with the overlap) rather than a number from 6 points; the default dates: the last
    30 days and today."""
    first, last, dates = month_range()
    everyone = dashboard.card("Daily returns", None, dates)
    assert {r["asset_id"] for r in everyone} == set(ANALYST_ASSETS)
    pairs = dashboard.card("Correlation of daily returns", None, dates)
    assert [(p["asset_id"], p["other_asset_id"]) for p in pairs] == [
        ("bitcoin", "ethereum"),
        ("bitcoin", "solana"),
        ("ethereum", "solana"),
    ]
    week = f"{(last - dt.timedelta(days=6)).isoformat()}~{last.isoformat()}"
    (pair,) = dashboard.card("Correlation of daily returns", CHOSEN, week)
    assert pair["overlap_days"] <= 7 and pair["correlation"] is None
    # the default: the dashboard's own (no value sent for it: Metabase applies the default)
    default = dashboard.card("Daily OHLC", CHOSEN, None)
    assert {r["price_date"] for r in default} == {
        (last - dt.timedelta(days=n)).isoformat() for n in range(31)
    }


def test_the_correlation_card_agrees_with_the_correlation_mart(analyst_stack, dashboard):
    """Over the mart's own window, the card computes what fct_asset_correlations_30d holds."""
    rows = mart(
        analyst_stack,
        "select window_start_date, as_of_date, asset_id, other_asset_id, overlap_days, "
        "correlation_30d from marts.fct_asset_correlations_30d where asset_id < other_asset_id",
    )
    assert len(rows) == 3
    start, end = rows[0][0], rows[0][1]
    cards = dashboard.card("Correlation of daily returns", None, f"{start}~{end}")
    by_pair = {(c["asset_id"], c["other_asset_id"]): c for c in cards}
    for _, _, asset, other, overlap, correlation in rows:
        card = by_pair[(asset, other)]
        assert card["overlap_days"] == overlap
        assert correlation is not None and not math.isnan(float(correlation))
        assert card["correlation"] == pytest.approx(float(correlation), abs=1e-4)
