"""Metabase as code: scripts/provision_metabase.py against a local fake of Metabase's REST API.

The fake (tests/fake_metabase.py) follows Metabase's API documentation; a real Metabase could not be
run here. First run: setup, the warehouse (read-only role, only `marts` visible), a collection, four
questions and a dashboard. Second run: nothing changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_metabase import FakeMetabase
from helpers import REPO

SCRIPT = REPO / "scripts" / "provision_metabase.py"
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
    }
    env.update(overrides)
    return env


def provision(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(env.get("HOME", REPO)),
    )
    # never a password in the output
    for secret in (READER_PASSWORD, ADMIN_PASSWORD):
        assert secret not in proc.stdout + proc.stderr
    return proc


@pytest.fixture
def fake_metabase():
    with FakeMetabase() as fake:
        yield fake


def test_first_run_creates_everything_and_second_run_changes_nothing(fake_metabase):
    fake = fake_metabase
    fake.unhealthy_for = 3  # Metabase still starting: the script waits
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
    assert fake.synced == [warehouses[0]["id"]]

    # four native questions on the marts, in one collection, and a dashboard showing all four
    assert len(fake.collections) == 1
    collection_id = next(iter(fake.collections))
    cards = {c["name"]: c for c in fake.cards.values()}
    assert set(cards) == {
        "Price history per asset",
        "Daily OHLC",
        "Share of total market cap",
        "Latest prices",
    }
    for card in cards.values():
        assert card["collection_id"] == collection_id
        query = card["dataset_query"]
        assert query["type"] == "native" and query["database"] == warehouses[0]["id"]
        sql = query["native"]["query"]
        assert "marts." in sql and "raw." not in sql and "staging." not in sql
    assert "marts.fct_asset_prices_daily" in cards["Daily OHLC"]["dataset_query"]["native"]["query"]
    assert "marts.dim_assets" in cards["Latest prices"]["dataset_query"]["native"]["query"]
    assert cards["Price history per asset"]["display"] == "line"
    assert cards["Share of total market cap"]["display"] == "pie"

    assert len(fake.dashboards) == 1
    dashboard = next(iter(fake.dashboards.values()))
    assert dashboard["name"] == "CoinCap market overview"
    assert dashboard["collection_id"] == collection_id
    assert sorted(dc["card_id"] for dc in dashboard["dashcards"]) == sorted(
        c["id"] for c in cards.values()
    )
    assert f"/dashboard/{dashboard['id']}" in first.stdout

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
    dashboard = next(iter(fake.dashboards.values()))
    dashboard["dashcards"].pop()
    db = next(db for db in fake.databases.values() if db["engine"] == "postgres")
    db["details"]["schema-filters-patterns"] = "marts,raw"

    fake.reset_requests()
    again = provision(provision_env(fake))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "marts.fct_asset_prices_daily" in card["dataset_query"]["native"]["query"]
    assert len(dashboard["dashcards"]) == 4
    assert db["details"]["schema-filters-patterns"] == "marts"
    assert len(fake.cards) == 4 and len(fake.dashboards) == 1  # put back, not duplicated
    assert sorted(fake.mutations()) == sorted(
        [
            ("PUT", f"/api/card/{card['id']}"),
            ("PUT", f"/api/dashboard/{dashboard['id']}"),
            ("PUT", f"/api/database/{db['id']}"),
        ]
    )


def test_missing_setting_fails_clearly(fake_metabase):
    env = provision_env(fake_metabase)
    del env["METABASE_WAREHOUSE_PASSWORD"]
    proc = provision(env)
    assert proc.returncode == 2
    assert "METABASE_WAREHOUSE_PASSWORD not set" in proc.stderr
    assert fake_metabase.requests == []


def test_wrong_admin_password_fails_clearly(fake_metabase):
    assert provision(provision_env(fake_metabase)).returncode == 0
    proc = provision(provision_env(fake_metabase, METABASE_ADMIN_PASSWORD="not-the-password-1"))
    assert proc.returncode == 1
    assert "check METABASE_ADMIN_EMAIL and METABASE_ADMIN_PASSWORD" in proc.stderr


def test_metabase_never_healthy_fails_clearly(fake_metabase):
    fake_metabase.unhealthy_for = 10_000
    proc = provision(provision_env(fake_metabase, METABASE_WAIT_SECONDS="2"))
    assert proc.returncode == 1
    assert "was not healthy after 2 s" in proc.stderr
