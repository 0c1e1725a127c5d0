"""The Metabase provisioning's pure logic, in-process: the dashboard's definition and the API
shapes built from it, the diff that decides what a run changes, and the configuration parser.
No subprocess, no network, no warehouse (the provisioning runs themselves are in
tests/test_stack_metabase.py)."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest

from ingest.config import ConfigError
from ingest.metabase.config import MetabaseConfig, read_config
from ingest.metabase.dashboard import (
    ASSET_FILTER,
    CARDS,
    DASHBOARD_DESCRIPTION,
    DATE_FILTER,
    card_body,
    dashboard_parameters,
    dashcards,
    filter_fields,
    parameter_id,
    parameter_mappings,
    stable_id,
    template_tags,
)
from ingest.metabase.provision import (
    card_in_place,
    covers,
    dashboard_in_place,
    mapping_keys,
    native_part,
)

OHLC = next(spec for spec in CARDS if spec.name == "Daily OHLC")
OHLC_FIELDS = {
    ("fct_asset_prices_daily", "asset_id"): 11,
    ("fct_asset_prices_daily", "price_date"): 12,
}
ALL_FIELDS = {key: n for n, key in enumerate(sorted(filter_fields()), start=100)}


# ------------------------------------------------------------------------ the definition
def test_card_names_are_the_ones_existing_dashboards_hold():
    """Questions are found by name: a renamed card would leave its old question behind."""
    assert [spec.name for spec in CARDS] == [
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
    ]


def test_every_card_filters_its_own_mart_and_fits_the_grid():
    for spec in CARDS:
        assert set(spec.filter_columns) == {"asset", "date_range"}, spec.name
        assert spec.filter_columns["asset"] == "asset_id", spec.name
        # the field filters sit in the WHERE of the read of `table`, which has no alias
        assert re.search(
            rf"from marts\.{spec.table}\n\s*where \{{\{{asset\}}\}} and \{{\{{date_range\}}\}}",
            spec.sql,
        ), spec.name
        assert "raw." not in spec.sql and "staging." not in spec.sql, spec.name
        assert 0 <= spec.col and spec.col + spec.size_x <= 24, spec.name


def test_filter_fields_are_the_columns_metabase_must_have_synced():
    assert filter_fields() == {
        ("fct_asset_price_history", "asset_id"),
        ("fct_asset_price_history", "price_at"),
        ("fct_asset_prices", "asset_id"),
        ("fct_asset_prices", "observed_at"),
        ("fct_asset_prices_daily", "asset_id"),
        ("fct_asset_prices_daily", "price_date"),
        ("fct_asset_returns_daily", "asset_id"),
        ("fct_asset_returns_daily", "price_date"),
        ("fct_market_share_daily", "asset_id"),
        ("fct_market_share_daily", "price_date"),
    }


# ------------------------------------------------------------------------ stable ids
def test_stable_ids_are_the_same_on_every_run_and_for_every_install():
    """Pinned values: a change would make every install's next run rewrite every question and
    the dashboard's filters (and break saved links to filtered dashboards)."""
    assert stable_id("card", "Latest prices", "asset") == "6cb7a496-c2dc-589e-9a50-60bb461ce2f1"
    assert stable_id("card", "Daily OHLC", "date_range") == "e66532ae-732e-5480-b680-c230d144ec8c"
    assert stable_id("card", "Daily OHLC", "asset") != stable_id("card", "Daily OHLC", "date")
    assert stable_id("a", "b/c") == stable_id("a/b", "c")  # parts are joined by "/"


def test_parameter_ids_are_eight_stable_characters_per_filter():
    assert parameter_id(ASSET_FILTER) == "f01c25d1"
    assert parameter_id(DATE_FILTER) == "25516c69"


# ------------------------------------------------------------------------ API shapes
def test_template_tags_put_each_field_filter_on_the_cards_mart_columns():
    tags = template_tags(OHLC, OHLC_FIELDS)
    assert tags == {
        "asset": {
            "id": stable_id("card", "Daily OHLC", "asset"),
            "name": "asset",
            "display-name": "Asset",
            "type": "dimension",
            "dimension": ["field", 11, None],
            "widget-type": "string/=",
            "required": False,
        },
        "date_range": {
            "id": "e66532ae-732e-5480-b680-c230d144ec8c",
            "name": "date_range",
            "display-name": "Date range",
            "type": "dimension",
            "dimension": ["field", 12, None],
            "widget-type": "date/all-options",
            "required": False,
        },
    }


def test_template_tags_need_the_field_ids_of_the_cards_own_table():
    with pytest.raises(KeyError):
        template_tags(OHLC, {("fct_asset_prices", "asset_id"): 1, ("fct_asset_prices", "x"): 2})


def test_card_body_is_a_native_question_in_the_collection_with_its_filter_widgets():
    body = card_body(OHLC, database_id=3, collection_id=4, field_ids=OHLC_FIELDS)
    assert body["name"] == "Daily OHLC"
    assert body["collection_id"] == 4 and body["type"] == "question"
    assert body["display"] == "table"
    assert body["dataset_query"] == {
        "type": "native",
        "database": 3,
        "native": {"query": OHLC.sql, "template-tags": template_tags(OHLC, OHLC_FIELDS)},
    }
    assert body["parameters"] == [
        {
            "id": stable_id("card", "Daily OHLC", "asset"),
            "type": "string/=",
            "target": ["dimension", ["template-tag", "asset"]],
            "name": "Asset",
            "slug": "asset",
        },
        {
            "id": stable_id("card", "Daily OHLC", "date_range"),
            "type": "date/all-options",
            "target": ["dimension", ["template-tag", "date_range"]],
            "name": "Date range",
            "slug": "date_range",
        },
    ]


def test_dashboard_parameters_are_the_two_filters_with_the_date_default():
    assert dashboard_parameters() == [
        {
            "id": "f01c25d1",
            "name": "Asset",
            "slug": "asset",
            "type": "string/=",
            "sectionId": "string",
        },
        {
            "id": "25516c69",
            "name": "Date range",
            "slug": "date_range",
            "type": "date/all-options",
            "sectionId": "date",
            "default": "past30days~",
        },
    ]


def test_parameter_mappings_wire_both_filters_to_the_cards_tags():
    assert parameter_mappings(42) == [
        {
            "parameter_id": "f01c25d1",
            "card_id": 42,
            "target": ["dimension", ["template-tag", "asset"]],
        },
        {
            "parameter_id": "25516c69",
            "card_id": 42,
            "target": ["dimension", ["template-tag", "date_range"]],
        },
    ]


def test_mapping_keys_ignore_the_options_metabase_appends():
    stored = [
        {
            "parameter_id": "f01c25d1",
            "card_id": 42,
            "target": ["dimension", ["template-tag", "asset"], {"stage-number": 0}],
        },
        "not a mapping",
    ]
    assert mapping_keys(stored) == {("f01c25d1", '["dimension", ["template-tag", "asset"]]')}
    assert mapping_keys(parameter_mappings(42)) == {
        ("f01c25d1", '["dimension", ["template-tag", "asset"]]'),
        ("25516c69", '["dimension", ["template-tag", "date_range"]]'),
    }
    assert mapping_keys(None) == set()


def test_dashcards_keep_the_ids_of_existing_ones_and_number_new_ones_negative():
    card_ids = {spec.name: 500 + n for n, spec in enumerate(CARDS)}
    wanted = dashcards(card_ids, existing={500: 7, 509: 9})
    assert [dc["id"] for dc in wanted] == [7, -2, -3, -4, -5, -6, -7, -8, -9, 9]
    assert [dc["card_id"] for dc in wanted] == list(range(500, 510))
    first = wanted[0]
    assert (first["row"], first["col"], first["size_x"], first["size_y"]) == (0, 0, 12, 6)
    assert first["parameter_mappings"] == parameter_mappings(500)


# ------------------------------------------------------------------------ the diff
def test_covers_accepts_keys_metabase_adds_and_nothing_else():
    wanted = {"a": 1, "b": {"c": [1, 2], "d": None}}
    assert covers({"a": 1, "b": {"c": [1, 2], "d": None, "extra": 5}, "more": 0}, wanted)
    assert not covers({"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 2], "d": 0}})
    assert not covers({"a": 2, "b": {"c": [1, 2], "d": None}}, wanted)
    assert not covers({"a": 1, "b": {"c": [2, 1], "d": None}}, wanted)  # lists: exactly
    assert not covers({"a": 1, "b": "not a dict"}, wanted)
    assert not covers(None, {"a": 1})
    assert covers({"anything": 1}, {})


def stored_card(body: dict) -> dict:
    """A question as Metabase answers it: what was sent, plus keys of its own."""
    card = copy.deepcopy(body)
    card["id"] = 77
    card["archived"] = False
    for tag in card["dataset_query"]["native"]["template-tags"].values():
        tag["default"] = None
    return card


def test_a_card_as_stored_is_in_place_and_each_drift_is_seen():
    body = card_body(OHLC, 3, 4, OHLC_FIELDS)
    card = stored_card(body)
    assert card_in_place(card, OHLC, body)

    drifts = {
        "sql": lambda c: c["dataset_query"]["native"].update(query="select 1"),
        "tag field": lambda c: c["dataset_query"]["native"]["template-tags"]["asset"].update(
            dimension=["field", 99, None]
        ),
        "extra tag": lambda c: c["dataset_query"]["native"]["template-tags"].update(x={}),
        "database": lambda c: c["dataset_query"].update(database=1),
        "display": lambda c: c.update(display="bar"),
        "settings": lambda c: c.update(visualization_settings={"table.pivot": True}),
        "description": lambda c: c.update(description=None),
    }
    for what, drift in drifts.items():
        drifted = copy.deepcopy(card)
        drift(drifted)
        assert not card_in_place(drifted, OHLC, body), what


def test_a_card_in_the_newer_stages_shape_is_read_too():
    body = card_body(OHLC, 3, 4, OHLC_FIELDS)
    native = body["dataset_query"]["native"]
    card = stored_card(body)
    card["dataset_query"] = {
        "database": 3,
        "stages": [{"native": native["query"], "template-tags": native["template-tags"]}],
    }
    assert native_part(card["dataset_query"]) == native
    assert card_in_place(card, OHLC, body)
    assert native_part("not a query") == {}


def stored_dashboard(wanted: list[dict], parameters: list[dict]) -> dict:
    """The dashboard as Metabase answers it after a PUT: dashcards with real ids and extra keys,
    mapping targets with options appended, filters with keys of their own."""
    cards = []
    for n, dc in enumerate(wanted, start=1):
        stored = copy.deepcopy(dc)
        stored["id"] = 1000 + n
        stored["dashboard_tab_id"] = None
        for mapping in stored["parameter_mappings"]:
            mapping["target"].append({"stage-number": 0})
        cards.append(stored)
    cards.reverse()  # Metabase's order is not the definition's
    filters = [dict(p, values_source_type=None) for p in parameters]
    return {
        "id": 5,
        "description": DASHBOARD_DESCRIPTION,
        "dashcards": cards,
        "parameters": filters,
    }


def test_a_dashboard_as_stored_is_in_place_and_each_drift_is_seen():
    card_ids = {spec.name: 500 + n for n, spec in enumerate(CARDS)}
    wanted = dashcards(card_ids, existing={})
    parameters = dashboard_parameters()
    dashboard = stored_dashboard(wanted, parameters)
    assert dashboard_in_place(dashboard, wanted, parameters)

    old_shape = dict(dashboard)  # before Metabase 0.47 the key was ordered_cards
    old_shape["ordered_cards"] = old_shape.pop("dashcards")
    assert dashboard_in_place(old_shape, wanted, parameters)

    drifts = {
        "card removed": lambda d: d["dashcards"].pop(),
        "card moved": lambda d: d["dashcards"][0].update(row=99),
        "filter unwired": lambda d: d["dashcards"][3]["parameter_mappings"].pop(),
        "default dropped": lambda d: d["parameters"][1].pop("default"),
        "filter added": lambda d: d["parameters"].append({"id": "x", "slug": "x"}),
        "description": lambda d: d.update(description="edited"),
    }
    for what, drift in drifts.items():
        drifted = copy.deepcopy(dashboard)
        drift(drifted)
        assert not dashboard_in_place(drifted, wanted, parameters), what


# ------------------------------------------------------------------------ configuration
REQUIRED = {
    "METABASE_ADMIN_EMAIL": " admin@example.com ",
    "METABASE_ADMIN_PASSWORD": "admin-secret-1",
    "METABASE_WAREHOUSE_PASSWORD": "reader-secret-2",
}


def test_config_defaults_and_the_required_settings():
    config = read_config(REQUIRED)
    assert config == MetabaseConfig(
        url="http://metabase:3000",
        admin_email="admin@example.com",
        admin_password="admin-secret-1",
        warehouse_password="reader-secret-2",
        admin_first_name="CoinCap",
        admin_last_name="Admin",
        site_name="CoinCap ELT",
        warehouse_name="CoinCap warehouse",
        warehouse_host="warehouse",
        warehouse_port=5432,
        warehouse_db="coincap",
        warehouse_user="metabase_reader",
        wait_seconds=600.0,
        marts_wait_seconds=1800.0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.url = "http://elsewhere"  # type: ignore[misc]
    # passwords stay out of anything that prints the settings
    assert "secret" not in repr(config)


def test_config_reads_the_mapping_it_is_given_not_the_process_environment(monkeypatch):
    monkeypatch.setenv("METABASE_URL", "http://from-os-environ:1")
    monkeypatch.setenv("METABASE_WAREHOUSE_HOST", "from-os-environ")
    env = {
        **REQUIRED,
        "METABASE_URL": "http://127.0.0.1:3001",
        "METABASE_WAREHOUSE_PORT": "6432",
        "METABASE_WAIT_SECONDS": "2.5",
        "METABASE_MARTS_WAIT_SECONDS": "0",
        "METABASE_SITE_NAME": "",  # empty counts as unset
    }
    config = read_config(env)
    assert config.url == "http://127.0.0.1:3001"
    assert config.warehouse_host == "warehouse"
    assert config.warehouse_port == 6432
    assert (config.wait_seconds, config.marts_wait_seconds) == (2.5, 0.0)
    assert config.site_name == "CoinCap ELT"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_setting_is_one_line_naming_it(missing):
    env = {name: value for name, value in REQUIRED.items() if name != missing}
    with pytest.raises(ConfigError) as error:
        read_config(env)
    assert str(error.value) == f"{missing} not set; set it in .env (see .env.example)"


def test_blank_required_settings_count_as_missing_and_are_named_together():
    with pytest.raises(ConfigError) as error:
        read_config({"METABASE_ADMIN_EMAIL": "  ", "METABASE_ADMIN_PASSWORD": "x"})
    assert str(error.value) == (
        "METABASE_ADMIN_EMAIL, METABASE_WAREHOUSE_PASSWORD not set; set them in .env "
        "(see .env.example)"
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("METABASE_WAREHOUSE_PORT", "54x2", "METABASE_WAREHOUSE_PORT is '54x2', not a port number"),
        ("METABASE_WAREHOUSE_PORT", "70000", "METABASE_WAREHOUSE_PORT is '70000', not a port"),
        ("METABASE_WAIT_SECONDS", "ten", "METABASE_WAIT_SECONDS is 'ten', not a number of seconds"),
        ("METABASE_MARTS_WAIT_SECONDS", "-1", "METABASE_MARTS_WAIT_SECONDS is '-1', not a number"),
        ("METABASE_WAIT_SECONDS", "nan", "METABASE_WAIT_SECONDS is 'nan', not a number"),
    ],
)
def test_an_invalid_number_is_one_line_naming_it(name, value, message):
    with pytest.raises(ConfigError) as error:
        read_config({**REQUIRED, name: value})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)
