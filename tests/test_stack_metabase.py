"""Metabase as code: `coincap-elt metabase` against a local fake of Metabase's REST API.

The fake (devkit/fake_metabase.py) follows Metabase's API documentation; a real Metabase could
not be run here. Its sync finds the marts as dbt declares them (the contract columns of the mart
models); tests/test_stack_warehouse.py runs the dashboard against real marts in PostgreSQL.

First run: setup, the warehouse (read-only role, only `marts` visible), dbt's descriptions, keys
and semantic types in Metabase's metadata, a collection, the questions with their field filters
and a dashboard with two filters wired to every question. Second run: nothing changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from devkit.fake_metabase import FakeMetabase, dimension_field
from ingest.metabase.dashboard import CARDS, DASHBOARD_NAME

COINCAP_ELT = Path(sys.executable).parent / "coincap-elt"
READER_PASSWORD = "reader-secret-5d1e"
ADMIN_PASSWORD = "admin-secret-Zq81x"


def provision_env(fake: FakeMetabase, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "METABASE_URL": fake.base_url,
        "METABASE_ADMIN_EMAIL": "admin@example.com",
        "METABASE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "METABASE_WAREHOUSE_HOST": "warehouse",
        "METABASE_WAREHOUSE_PORT": "5432",
        "METABASE_WAREHOUSE_DB": "coincap",
        "METABASE_WAREHOUSE_USER": "metabase_reader",
        "METABASE_WAREHOUSE_PASSWORD": READER_PASSWORD,
        "METABASE_WAIT_SECONDS": "20",
        # never a developer's .env from the repo root: each test sets exactly what it means
        "COINCAP_ENV_FILE": os.devnull,
    }
    env.update(overrides)
    return env


def provision(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(COINCAP_ELT), "metabase"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(env.get("HOME", REPO)),
    )
    # never a password in the output
    for secret in (READER_PASSWORD, ADMIN_PASSWORD):
        assert secret not in proc.stdout + proc.stderr
    return proc


MARTS_DIR = REPO / "dbt_project" / "models" / "marts"
CARD_NAMES = {
    "Latest prices",
    "Share of total market cap",
    "Price history per asset",
    "Cumulative return",
    "Drawdown from peak",
    "Volatility, 30 days, annualised",
    "Market share over time",
    "Correlation of daily returns",
    "Daily returns",
    "Daily OHLC",
}


def marts_catalog() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """What Metabase's sync finds in `marts`: every mart model (under its alias) with its
    contract columns."""
    tables = {}
    for yml in sorted(MARTS_DIR.rglob("_*.yml")):
        for model in (yaml.safe_load(yml.read_text()) or {}).get("models") or []:
            sql = (yml.parent / f"{model['name']}.sql").read_text()
            alias = re.search(r"alias\s*=\s*'(\w+)'", sql)
            tables[alias.group(1) if alias else model["name"]] = [
                (column["name"], re.sub(r"\(.*\)", "", column["data_type"]).strip())
                for column in model["columns"]
            ]
    return {"marts": tables}


@pytest.fixture
def fake_metabase():
    with FakeMetabase() as fake:
        fake.catalog = marts_catalog()
        yield fake


def field(fake: FakeMetabase, table: str, column: str) -> dict:
    (table_id,) = [t["id"] for t in fake.tables.values() if t["name"] == table]
    (found,) = [
        f for f in fake.fields.values() if f["table_id"] == table_id and f["name"] == column
    ]
    return found


def test_first_run_creates_everything_and_second_run_changes_nothing(fake_metabase):
    fake = fake_metabase
    fake.unhealthy_for = 3  # Metabase still starting: provisioning waits
    first = provision(provision_env(fake))
    assert first.returncode == 0, first.stdout + first.stderr

    # setup: one admin; the setup token is used up
    assert [u["email"] for u in fake.users] == ["admin@example.com"]
    assert ("POST", "/api/setup") in fake.requests

    # the warehouse, through the read-only role, with only marts visible; the sample DB untouched
    warehouses = [db for db in fake.databases.values() if db["engine"] == "postgres"]
    assert len(warehouses) == 1
    details = warehouses[0]["details"]
    assert details["user"] == "metabase_reader"
    assert details["password"] == READER_PASSWORD
    assert details["dbname"] == "coincap" and details["host"] == "warehouse"
    assert details["schema-filters-type"] == "inclusion"
    assert details["schema-filters-patterns"] == "marts"
    assert fake.databases[1]["name"] == "Sample Database"
    assert warehouses[0]["id"] in fake.synced and 1 not in fake.synced

    # native questions on the marts, in one collection, and a dashboard showing them all
    assert len(fake.collections) == 1
    collection_id = next(iter(fake.collections))
    cards = {c["name"]: c for c in fake.cards.values()}
    assert set(cards) == CARD_NAMES
    for card in cards.values():
        assert card["collection_id"] == collection_id
        query = card["dataset_query"]
        assert query["type"] == "native" and query["database"] == warehouses[0]["id"]
        sql = query["native"]["query"]
        assert "marts." in sql and "raw." not in sql and "staging." not in sql
        # two field filters, each on a column of the mart the question reads
        tags = query["native"]["template-tags"]
        assert set(tags) == {"asset", "date_range"}, card["name"]
        assert tags["asset"]["widget-type"] == "string/="
        assert tags["date_range"]["widget-type"] == "date/all-options"
        asset_field = fake.fields[dimension_field(tags["asset"])]
        assert asset_field["name"] == "asset_id"
        table = fake.tables[asset_field["table_id"]]
        assert f"from marts.{table['name']}\n" in sql, card["name"]
        date_field = fake.fields[dimension_field(tags["date_range"])]
        assert date_field["table_id"] == table["id"]
        assert date_field["name"] in ("price_date", "observed_at", "price_at")
    assert "marts.fct_asset_prices_daily" in cards["Daily OHLC"]["dataset_query"]["native"]["query"]
    assert cards["Price history per asset"]["display"] == "line"

    assert len(fake.dashboards) == 1
    dashboard = next(iter(fake.dashboards.values()))
    assert dashboard["name"] == "CoinCap market overview"
    assert dashboard["collection_id"] == collection_id
    assert sorted(dc["card_id"] for dc in dashboard["dashcards"]) == sorted(
        c["id"] for c in cards.values()
    )
    # the two filters, each wired to every card's tag of that name
    parameters = {p["slug"]: p for p in dashboard["parameters"]}
    assert parameters["asset"]["type"] == "string/="
    assert parameters["date_range"]["type"] == "date/all-options"
    assert parameters["date_range"]["default"] == "past30days~"
    for dashcard in dashboard["dashcards"]:
        wired = {(m["parameter_id"], m["target"][1][1]) for m in dashcard["parameter_mappings"]}
        assert wired == {
            (parameters["asset"]["id"], "asset"),
            (parameters["date_range"]["id"], "date_range"),
        }
    assert f"/dashboard/{dashboard['id']}" in first.stdout

    # dbt's documentation and keys in Metabase's metadata
    tables = {t["name"]: t for t in fake.tables.values()}
    assert tables["fct_asset_returns_daily"]["description"].startswith(
        "One row per asset per UTC day"
    )
    dim_asset_id = field(fake, "dim_assets", "asset_id")
    assert dim_asset_id["semantic_type"] == "type/PK"
    assert dim_asset_id["description"].startswith("CoinCap's id for the asset")
    for table in ("fct_asset_prices", "fct_asset_returns_daily", "fct_market_share_daily"):
        asset_id = field(fake, table, "asset_id")
        assert asset_id["semantic_type"] == "type/FK", table
        assert asset_id["fk_target_field_id"] == dim_asset_id["id"], table
    for column in ("asset_id", "other_asset_id"):
        pair = field(fake, "fct_asset_correlations_30d", column)
        assert (pair["semantic_type"], pair["fk_target_field_id"]) == (
            "type/FK",
            dim_asset_id["id"],
        )
    assert field(fake, "fct_asset_prices", "price_usd")["semantic_type"] == "type/Currency"
    assert field(fake, "fct_market_share_daily", "market_share")["semantic_type"] == (
        "type/Percentage"
    )
    assert field(fake, "fct_asset_returns_daily", "drawdown")["semantic_type"] == "type/Percentage"
    # percent as CoinCap sends it (2.5 is 2.5 %): not a fraction Metabase should multiply by 100
    assert field(fake, "fct_asset_prices", "change_percent_24h")["semantic_type"] is None
    undocumented = [
        (fake.tables[f["table_id"]]["name"], f["name"])
        for f in fake.fields.values()
        if not (f["description"] or "").strip()
    ]
    assert undocumented == []

    # second run: reads and logs in, changes nothing
    snapshot = (
        repr(fake.users),
        repr(fake.databases),
        repr(fake.collections),
        repr(fake.cards),
        repr(fake.dashboards),
    )
    fake.reset_requests()
    second = provision(provision_env(fake))
    assert second.returncode == 0, second.stdout + second.stderr
    assert fake.mutations() == [], fake.mutations()
    assert ("POST", "/api/setup") not in fake.requests
    assert (
        repr(fake.users),
        repr(fake.databases),
        repr(fake.collections),
        repr(fake.cards),
        repr(fake.dashboards),
    ) == snapshot
    assert "nothing to change" in second.stdout


def test_drift_is_put_back(fake_metabase):
    fake = fake_metabase
    assert provision(provision_env(fake)).returncode == 0
    card = next(c for c in fake.cards.values() if c["name"] == "Daily OHLC")
    card["dataset_query"]["native"]["query"] = "select 1"
    volatility = next(c for c in fake.cards.values() if c["name"].startswith("Volatility"))
    volatility["dataset_query"]["native"]["template-tags"]["asset"]["dimension"][1] = 1
    dashboard = next(iter(fake.dashboards.values()))
    dashboard["dashcards"].pop()
    dashboard["dashcards"][0]["parameter_mappings"].pop()
    dashboard["parameters"][1].pop("default")
    db = next(db for db in fake.databases.values() if db["engine"] == "postgres")
    db["details"]["schema-filters-patterns"] = "marts,raw"
    market_share = field(fake, "fct_market_share_daily", "market_share")
    market_share["semantic_type"] = None
    market_share["description"] = "edited by hand"

    fake.reset_requests()
    again = provision(provision_env(fake))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "marts.fct_asset_prices_daily" in card["dataset_query"]["native"]["query"]
    tag = volatility["dataset_query"]["native"]["template-tags"]["asset"]
    assert fake.fields[dimension_field(tag)]["name"] == "asset_id"
    assert len(dashboard["dashcards"]) == len(CARD_NAMES)
    assert all(len(dc["parameter_mappings"]) == 2 for dc in dashboard["dashcards"])
    assert dashboard["parameters"][1]["default"] == "past30days~"
    assert db["details"]["schema-filters-patterns"] == "marts"
    assert market_share["semantic_type"] == "type/Percentage"
    assert market_share["description"].startswith("`market_cap_usd / total_market_cap_usd`")
    # put back, not duplicated
    assert len(fake.cards) == len(CARD_NAMES) and len(fake.dashboards) == 1
    assert sorted(fake.mutations()) == sorted(
        [
            ("PUT", f"/api/card/{card['id']}"),
            ("PUT", f"/api/card/{volatility['id']}"),
            ("PUT", f"/api/dashboard/{dashboard['id']}"),
            ("PUT", f"/api/database/{db['id']}"),
            ("PUT", f"/api/field/{market_share['id']}"),
        ]
    )


def test_missing_setting_fails_clearly(fake_metabase):
    env = provision_env(fake_metabase)
    del env["METABASE_WAREHOUSE_PASSWORD"]
    proc = provision(env)
    assert proc.returncode == 2
    assert proc.stderr == (
        "metabase: error: METABASE_WAREHOUSE_PASSWORD not set; set it in .env (see .env.example)\n"
    )
    assert fake_metabase.requests == []


def test_settings_come_from_the_env_file_too(fake_metabase, tmp_path):
    """What the environment does not set, the `.env` file (COINCAP_ENV_FILE) does, as for every
    other command; the environment wins."""
    env = provision_env(fake_metabase, METABASE_WAIT_SECONDS="0")
    del env["METABASE_WAREHOUSE_PASSWORD"]
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"METABASE_WAREHOUSE_PASSWORD={READER_PASSWORD}\nMETABASE_WAIT_SECONDS=oops\n"
    )
    env["COINCAP_ENV_FILE"] = str(env_file)
    fake_metabase.unhealthy_for = 10_000
    proc = provision(env)
    # not "not set" (exit 2): the password came from the file, the wait from the environment
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "was not healthy after 0 s" in proc.stderr


def test_wrong_admin_password_fails_clearly(fake_metabase):
    fake_metabase.catalog = {}  # the first run creates the admin, then stops waiting for marts
    first = provision(provision_env(fake_metabase, METABASE_MARTS_WAIT_SECONDS="0"))
    assert first.returncode == 1 and [u["email"] for u in fake_metabase.users] == [
        "admin@example.com"
    ], first.stdout + first.stderr
    proc = provision(provision_env(fake_metabase, METABASE_ADMIN_PASSWORD="not-the-password-1"))
    assert proc.returncode == 1
    assert "check METABASE_ADMIN_EMAIL and METABASE_ADMIN_PASSWORD" in proc.stderr


def test_metabase_never_healthy_fails_clearly(fake_metabase):
    fake_metabase.unhealthy_for = 10_000
    proc = provision(provision_env(fake_metabase, METABASE_WAIT_SECONDS="2"))
    assert proc.returncode == 1
    assert "was not healthy after 2 s" in proc.stderr


def test_waits_for_the_marts_and_says_so_when_they_never_come(fake_metabase):
    """A new stack: Metabase is up before the pipeline's first cycle has built the marts.
    Provisioning asks for a sync, waits, and at its limit fails with what to do; the next run,
    once the marts exist, finishes the job."""
    fake = fake_metabase
    fake.catalog = {}
    proc = provision(provision_env(fake, METABASE_MARTS_WAIT_SECONDS="3"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1, proc.stderr
    assert "are not in Metabase after 3 s" in error[0]
    assert "docker compose up metabase-provision" in error[0]
    assert "asked Metabase to sync" in proc.stdout
    assert len(fake.synced) == 1  # at most once a minute, not in a loop
    assert fake.cards == {} and fake.dashboards == {}

    fake.catalog = marts_catalog()  # the first cycle has run
    again = provision(provision_env(fake, METABASE_MARTS_WAIT_SECONDS="30"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert {c["name"] for c in fake.cards.values()} == CARD_NAMES


def test_the_exposure_lists_every_mart_the_dashboard_reads():
    """dbt's exposure of the dashboard (lineage in the docs site) names exactly the marts its
    questions read."""
    read = {table for card in CARDS for table in re.findall(r"marts\.(\w+)", card.sql)}
    exposures_yml = MARTS_DIR / "analytics" / "_analytics__exposures.yml"
    exposures = yaml.safe_load(exposures_yml.read_text())["exposures"]
    (dashboard,) = [e for e in exposures if e["label"] == DASHBOARD_NAME]
    declared = {re.fullmatch(r"ref\('(\w+)'\)", ref).group(1) for ref in dashboard["depends_on"]}
    assert declared == read
