"""Metabase as code: first-time setup, the warehouse connection, the marts' metadata from dbt and
a dashboard analysts can filter.

Run by the compose service ``metabase-provision`` on every ``up``, and safe to run again: every
object is looked up by name first, so a second run changes nothing; an object that drifted from
the definition here is put back.

What it does, through Metabase's REST API (v0.56):

1. waits until ``GET /api/health`` answers ``{"status": "ok"}``;
2. if Metabase has no user yet: reads the setup token (``GET /api/session/properties``) and creates
   the first admin with ``POST /api/setup``;
3. logs in (``POST /api/session``) as that admin;
4. registers the warehouse (``POST /api/database``, engine ``postgres``) with the read-only role
   and a schema filter so that only ``marts`` is visible;
5. waits until Metabase has synced the marts (``GET /api/database/:id/metadata``; ``POST
   /api/database/:id/sync_schema`` at most once a minute while one is missing): they exist once
   the pipeline's first cycle has run;
6. pushes dbt's model and column descriptions, keys and semantic types into Metabase's metadata
   with dbt-metabase (``dbt parse`` of this project for the manifest; ``PUT /api/table/:id``,
   ``PUT /api/field/:id``), so analysts see the docs and can join without SQL;
7. creates a collection, the native-SQL questions of CARDS on the marts, each with two field
   filters (``{{asset}}``, ``{{date_range}}``), and a dashboard whose two filters, Asset (pick
   several) and Date range (default: the last 30 days and today), are wired to every question.

Configuration (environment variables):
    METABASE_URL                    default http://metabase:3000
    METABASE_ADMIN_EMAIL            required
    METABASE_ADMIN_PASSWORD         required
    METABASE_ADMIN_FIRST_NAME       default CoinCap
    METABASE_ADMIN_LAST_NAME        default Admin
    METABASE_SITE_NAME              default CoinCap ELT
    METABASE_WAREHOUSE_NAME         default CoinCap warehouse
    METABASE_WAREHOUSE_HOST/PORT/DB default warehouse / 5432 / coincap
    METABASE_WAREHOUSE_USER         default metabase_reader
    METABASE_WAREHOUSE_PASSWORD     required
    METABASE_WAIT_SECONDS           how long to wait for Metabase to come up (default 600)
    METABASE_MARTS_WAIT_SECONDS     how long to wait for the marts to be in Metabase (default 1800)

Exit status: 0 when everything is in place, 1 on any failure (one line on stderr saying what to do),
2 when a required variable is missing. Passwords are never printed.

Tested only against a local fake of the Metabase API (tests/fake_metabase.py), not a real Metabase.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLLECTION_NAME = "CoinCap"
COLLECTION_DESCRIPTION = (
    "CoinCap market data from the marts (provisioned by scripts/provision_metabase.py)"
)
DASHBOARD_NAME = "CoinCap market overview"
DASHBOARD_DESCRIPTION = (
    "Prices, daily OHLC and market-cap share of the configured CoinCap assets, from the dbt marts. "
    "Provisioned by scripts/provision_metabase.py; declared as the dbt exposure "
    "coincap_market_overview."
)
MARTS_SCHEMA = "marts"
ROOT = Path(__file__).resolve().parent.parent  # the project: dbt_project/ and profiles/
SYNC_EVERY_SECONDS = 60.0  # while a mart is missing, ask Metabase to sync at most this often
# dbt-metabase's own wait for Metabase's tables to match the dbt project (they do by then)
DOCS_SYNC_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class DashboardFilter:
    """A dashboard filter, wired to the template tag of the same name in every card.

    ``column`` names, per card, the mart column the field filter acts on (CardSpec.filter_columns).
    """

    slug: str
    name: str
    type: str  # Metabase's parameter type, also the tags' widget-type
    section_id: str
    default: str | None


# The analyst's two filters: pick assets, pick dates (a month, a range, "past 30 days"...).
ASSET_FILTER = DashboardFilter("asset", "Asset", "string/=", "string", None)
# "past30days~": the 30 days before today and today (Metabase's relative-date syntax)
DATE_FILTER = DashboardFilter("date_range", "Date range", "date/all-options", "date", "past30days~")
FILTERS: tuple[DashboardFilter, ...] = (ASSET_FILTER, DATE_FILTER)


@dataclass(frozen=True)
class CardSpec:
    """One native-SQL question and where it sits on the dashboard (24-column grid).

    Its SQL reads the mart ``table`` without an alias and has ``{{asset}}`` and ``{{date_range}}``
    in that read's WHERE: Metabase replaces a field filter with a condition on
    ``"marts"."<table>"."<column>"``, and with ``1 = 1`` when the filter is empty.
    """

    name: str
    description: str
    table: str
    filter_columns: dict[str, str]  # filter slug -> column of `table`
    sql: str
    display: str
    visualization_settings: dict[str, Any]
    row: int
    col: int
    size_x: int
    size_y: int


def percent(*columns: str) -> dict[str, Any]:
    """Show these result columns as percentages (the marts store fractions: 0.05 is 5 %)."""
    return {
        "column_settings": {
            json.dumps(["name", column]): {"number_style": "percent"} for column in columns
        }
    }


DAILY = {"asset": "asset_id", "date_range": "price_date"}


def daily_line(
    name: str, description: str, table: str, column: str, row: int, col: int
) -> CardSpec:
    """A line per asset of one percentage column of a daily mart over the chosen dates."""
    return CardSpec(
        name=name,
        description=description,
        table=table,
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            f"    {column}\n"
            f"from marts.{table}\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date, asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_date", "asset_id"],
            "graph.metrics": [column],
            **percent(column),
        },
        row=row,
        col=col,
        size_x=12,
        size_y=7,
    )


# Only contract columns of the marts (docs/contract.md) and the mart models' documented columns.
CARDS: tuple[CardSpec, ...] = (
    CardSpec(
        name="Latest prices",
        description=(
            "Each chosen asset's last CoinCap observation within the chosen dates "
            "(the latest one when the dates reach today), by market cap."
        ),
        table="fct_asset_prices",
        filter_columns={"asset": "asset_id", "date_range": "observed_at"},
        # one backward index probe per asset (the key is asset_id, observed_at), not a scan of
        # every observation in the dates
        sql=(
            "select last_prices.*\n"
            "from marts.dim_assets as assets\n"
            "cross join lateral (\n"
            "    select\n"
            "        asset_id,\n"
            "        symbol,\n"
            "        name,\n"
            "        rank,\n"
            "        price_usd,\n"
            "        change_percent_24h,\n"
            "        market_cap_usd,\n"
            "        volume_usd_24h,\n"
            "        observed_at\n"
            "    from marts.fct_asset_prices\n"
            "    where {{asset}} and {{date_range}}\n"
            "        and fct_asset_prices.asset_id = assets.asset_id\n"
            "    order by observed_at desc\n"
            "    limit 1\n"
            ") as last_prices\n"
            "order by last_prices.market_cap_usd desc nulls last, last_prices.asset_id"
        ),
        display="table",
        visualization_settings={},
        row=0,
        col=0,
        size_x=12,
        size_y=6,
    ),
    CardSpec(
        name="Share of total market cap",
        description=(
            "Each chosen asset's share of the summed market cap of all the configured assets "
            "(not of the whole crypto market), on the last day of the chosen dates."
        ),
        table="fct_market_share_daily",
        filter_columns=DAILY,
        sql=(
            "with shares as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        market_share,\n"
            "        market_share_rank\n"
            "    from marts.fct_market_share_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            ")\n"
            "\n"
            "select\n"
            "    asset_id,\n"
            "    market_share,\n"
            "    market_share_rank,\n"
            "    price_date\n"
            "from shares\n"
            "where price_date = (select max(price_date) from shares)\n"
            "order by market_share_rank, asset_id"
        ),
        display="row",
        visualization_settings={
            "graph.dimensions": ["asset_id"],
            "graph.metrics": ["market_share"],
            **percent("market_share"),
        },
        row=0,
        col=12,
        size_x=12,
        size_y=6,
    ),
    CardSpec(
        name="Price history per asset",
        description=(
            "Price in USD over the chosen dates, one line per asset (log scale), from the "
            "continuous 5-minute series: the price at the end of each of at most 200 equal "
            "slices of the dates, so that a year draws as fast as a day."
        ),
        table="fct_asset_price_history",
        filter_columns={"asset": "asset_id", "date_range": "price_at"},
        # the series is on a 5-minute grid: the slice ends are grid points, counted back from
        # the last one, and read by key (asset_id, price_at) rather than by a scan of the dates
        sql=(
            "with bounds as (\n"
            "    select\n"
            "        max(price_at) as last_price_at,\n"
            "        300 * greatest(\n"
            "            1, ceil(extract(epoch from max(price_at) - min(price_at)) / 300 / 200)\n"
            "        ) as slice_seconds\n"
            "    from marts.fct_asset_price_history\n"
            "    where {{asset}} and {{date_range}}\n"
            "),\n"
            "\n"
            "slice_ends as (\n"
            "    select\n"
            "        bounds.last_price_at\n"
            "        - interval '1 second' * cast(bounds.slice_seconds * slice_number as integer)\n"
            "            as price_at\n"
            "    from bounds\n"
            "    cross join generate_series(0, 200) as slices (slice_number)\n"
            ")\n"
            "\n"
            "select\n"
            "    price_at,\n"
            "    asset_id,\n"
            "    price_usd\n"
            "from marts.fct_asset_price_history\n"
            "where {{asset}} and {{date_range}}\n"
            "    and price_at in (select slice_ends.price_at from slice_ends)\n"
            "order by price_at, asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_at", "asset_id"],
            "graph.metrics": ["price_usd"],
            "graph.y_axis.scale": "log",
        },
        row=6,
        col=0,
        size_x=24,
        size_y=8,
    ),
    CardSpec(
        name="Cumulative return",
        description=(
            "Return since the first chosen day's close, per asset: close / first close - 1, "
            "from the daily closes (UTC days) of fct_asset_returns_daily."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "with closes as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        close_price_usd\n"
            "    from marts.fct_asset_returns_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            "),\n"
            "\n"
            "first_closes as (\n"
            "    select distinct on (asset_id)\n"
            "        asset_id,\n"
            "        close_price_usd as first_close_price_usd\n"
            "    from closes\n"
            "    order by asset_id, price_date\n"
            ")\n"
            "\n"
            "select\n"
            "    closes.price_date,\n"
            "    closes.asset_id,\n"
            "    closes.close_price_usd / first_closes.first_close_price_usd - 1\n"
            "        as cumulative_return\n"
            "from closes\n"
            "inner join first_closes on closes.asset_id = first_closes.asset_id\n"
            "order by closes.price_date, closes.asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_date", "asset_id"],
            "graph.metrics": ["cumulative_return"],
            **percent("cumulative_return"),
        },
        row=14,
        col=0,
        size_x=12,
        size_y=7,
    ),
    daily_line(
        "Drawdown from peak",
        "How far each day's close is below the highest close so far (0 at a new high, "
        "-0.5 is half the value lost): `drawdown` of fct_asset_returns_daily.",
        "fct_asset_returns_daily",
        "drawdown",
        row=14,
        col=12,
    ),
    daily_line(
        "Volatility, 30 days, annualised",
        "Standard deviation of the one-day log returns over the 30 days up to each day, "
        "times the square root of 365 (crypto trades every day): "
        "`annualized_volatility_30d` of fct_asset_returns_daily.",
        "fct_asset_returns_daily",
        "annualized_volatility_30d",
        row=21,
        col=0,
    ),
    daily_line(
        "Market share over time",
        "Each chosen asset's daily share of the summed market cap of the configured assets "
        "(not of the whole crypto market): `market_share` of fct_market_share_daily.",
        "fct_market_share_daily",
        "market_share",
        row=21,
        col=12,
    ),
    CardSpec(
        name="Correlation of daily returns",
        description=(
            "Pearson correlation of the chosen assets' one-day log returns over the chosen "
            "dates, each pair once. Empty below 20 days both assets have a return on "
            "(`overlap_days`), as in fct_asset_correlations_30d, which holds the last 30 days."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "with one_day_returns as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        cast(log_return as double precision) as log_return\n"
            "    from marts.fct_asset_returns_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            "        and days_since_previous_close = 1\n"
            ")\n"
            "\n"
            "select\n"
            "    one_day_returns.asset_id,\n"
            "    other_returns.asset_id as other_asset_id,\n"
            "    count(*) as overlap_days,\n"
            "    case\n"
            "        when\n"
            "            count(*) >= 20\n"
            "            and var_samp(one_day_returns.log_return) > 0\n"
            "            and var_samp(other_returns.log_return) > 0\n"
            "            then round(\n"
            "                cast(corr(one_day_returns.log_return, other_returns.log_return)\n"
            "                    as numeric), 4\n"
            "            )\n"
            "    end as correlation\n"
            "from one_day_returns\n"
            "inner join one_day_returns as other_returns\n"
            "    on one_day_returns.price_date = other_returns.price_date\n"
            "    and one_day_returns.asset_id < other_returns.asset_id\n"
            "group by one_day_returns.asset_id, other_returns.asset_id\n"
            "order by one_day_returns.asset_id, other_returns.asset_id"
        ),
        display="table",
        visualization_settings={},
        row=28,
        col=0,
        size_x=12,
        size_y=7,
    ),
    CardSpec(
        name="Daily returns",
        description=(
            "Per asset and UTC day: close, simple and log return against the previous close, "
            "7- and 30-day annualised volatility, drawdown, and whether the day has all its "
            "288 five-minute points (`is_complete_day`)."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            "    close_price_usd,\n"
            "    simple_return,\n"
            "    log_return,\n"
            "    annualized_volatility_7d,\n"
            "    annualized_volatility_30d,\n"
            "    drawdown,\n"
            "    observation_count,\n"
            "    is_complete_day\n"
            "from marts.fct_asset_returns_daily\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date desc, asset_id"
        ),
        display="table",
        visualization_settings=percent(
            "simple_return", "annualized_volatility_7d", "annualized_volatility_30d", "drawdown"
        ),
        row=28,
        col=12,
        size_x=12,
        size_y=7,
    ),
    CardSpec(
        name="Daily OHLC",
        description=(
            "Open, high, low and close price per asset and UTC day, "
            "with the number of observations."
        ),
        table="fct_asset_prices_daily",
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            "    open_price_usd,\n"
            "    high_price_usd,\n"
            "    low_price_usd,\n"
            "    close_price_usd,\n"
            "    observation_count\n"
            "from marts.fct_asset_prices_daily\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date desc, asset_id"
        ),
        display="table",
        visualization_settings={},
        row=35,
        col=0,
        size_x=24,
        size_y=8,
    ),
)


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what to do."""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} provision_metabase: {message}", flush=True)


# --------------------------------------------------------------------------- HTTP
class Metabase:
    """A minimal JSON client for Metabase's REST API (session header X-Metabase-Session)."""

    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session_id: str | None = None
        self.changes: list[str] = []  # what this run created or changed, for the summary

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.session_id:
            headers["X-Metabase-Session"] = self.session_id
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300].strip()
            raise ProvisionError(
                f"{method} {path} answered HTTP {exc.code}: {detail or exc.reason}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ProvisionError(
                f"{method} {path} failed: {exc}; is Metabase up at {self.base_url}?"
            ) from None
        if not payload:
            return None
        try:
            return json.loads(payload)
        except json.JSONDecodeError:
            return payload.decode(errors="replace")

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)


def as_list(answer: Any) -> list[dict[str, Any]]:
    """Metabase lists come bare or wrapped as {"data": [...], "total": n} depending on version."""
    if isinstance(answer, dict) and isinstance(answer.get("data"), list):
        return answer["data"]
    if isinstance(answer, list):
        return answer
    raise ProvisionError(f"unexpected answer from Metabase, expected a list: {str(answer)[:200]}")


# --------------------------------------------------------------------------- steps
def wait_until_healthy(mb: Metabase, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    last = "no answer"
    while True:
        try:
            health = mb.get("/api/health")
            if isinstance(health, dict) and health.get("status") == "ok":
                return
            last = str(health)[:200]
        except ProvisionError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise ProvisionError(
                f"Metabase at {mb.base_url} was not healthy after {wait_seconds:.0f} s ({last}); "
                "check `docker compose logs metabase`"
            )
        time.sleep(min(5.0, max(0.2, wait_seconds / 100)))


def ensure_setup(mb: Metabase, cfg: dict[str, str]) -> None:
    props = mb.get("/api/session/properties")
    if not isinstance(props, dict):
        raise ProvisionError("GET /api/session/properties did not answer a JSON object")
    token = props.get("setup-token") or props.get("setup_token")
    if props.get("has-user-setup") is True or not token:
        log("first-time setup: already done")
        return
    mb.post(
        "/api/setup",
        {
            "token": token,
            "user": {
                "email": cfg["admin_email"],
                "password": cfg["admin_password"],
                "first_name": cfg["admin_first_name"],
                "last_name": cfg["admin_last_name"],
                "site_name": cfg["site_name"],
            },
            "prefs": {"site_name": cfg["site_name"], "site_locale": "en", "allow_tracking": False},
        },
    )
    mb.changes.append(f"created the first admin {cfg['admin_email']}")
    log(f"first-time setup: created the admin {cfg['admin_email']}")


def login(mb: Metabase, cfg: dict[str, str]) -> None:
    try:
        answer = mb.post(
            "/api/session", {"username": cfg["admin_email"], "password": cfg["admin_password"]}
        )
    except ProvisionError as exc:
        raise ProvisionError(
            f"could not log in to Metabase as {cfg['admin_email']} ({exc}); "
            "check METABASE_ADMIN_EMAIL and METABASE_ADMIN_PASSWORD"
        ) from None
    if not isinstance(answer, dict) or not answer.get("id"):
        raise ProvisionError("POST /api/session did not return a session id")
    mb.session_id = str(answer["id"])


def warehouse_details(cfg: dict[str, str]) -> dict[str, Any]:
    return {
        "host": cfg["wh_host"],
        "port": int(cfg["wh_port"]),
        "dbname": cfg["wh_db"],
        "user": cfg["wh_user"],
        "password": cfg["wh_password"],
        "ssl": False,
        "tunnel-enabled": False,
        "advanced-options": False,
        # only the marts schema is synced and shown: raw and staging stay out of Metabase
        "schema-filters-type": "inclusion",
        "schema-filters-patterns": MARTS_SCHEMA,
    }


# details compared on later runs (Metabase does not return the password)
COMPARED_DETAILS = (
    "host",
    "port",
    "dbname",
    "user",
    "schema-filters-type",
    "schema-filters-patterns",
)


def ensure_database(mb: Metabase, cfg: dict[str, str]) -> int:
    name = cfg["warehouse_name"]
    wanted = warehouse_details(cfg)
    for db in as_list(mb.get("/api/database")):
        if db.get("name") != name:
            continue
        details = db.get("details") or {}
        drift = [key for key in COMPARED_DETAILS if str(details.get(key)) != str(wanted[key])]
        if db.get("engine") != "postgres" or drift:
            mb.put(f"/api/database/{db['id']}", {"engine": "postgres", "details": wanted})
            mb.changes.append(f"updated the database {name!r} ({', '.join(drift) or 'engine'})")
            log(f"database {name!r}: updated {', '.join(drift) or 'engine'}")
        else:
            log(f"database {name!r}: in place (id {db['id']})")
        return int(db["id"])
    created = mb.post(
        "/api/database",
        {
            "engine": "postgres",
            "name": name,
            "details": wanted,
            "is_full_sync": True,
            "is_on_demand": False,
            "auto_run_queries": True,
        },
    )
    db_id = int(created["id"])
    mb.changes.append(f"registered the database {name!r}")
    log(f"database {name!r}: registered (id {db_id}), only schema {MARTS_SCHEMA!r} visible")
    return db_id  # its first sync: wait_for_marts asks for it


def ensure_collection(mb: Metabase) -> int:
    for coll in as_list(mb.get("/api/collection")):
        if (
            coll.get("name") == COLLECTION_NAME
            and not coll.get("archived")
            and coll.get("personal_owner_id") is None
            and isinstance(coll.get("id"), int)
        ):
            log(f"collection {COLLECTION_NAME!r}: in place (id {coll['id']})")
            return int(coll["id"])
    created = mb.post(
        "/api/collection", {"name": COLLECTION_NAME, "description": COLLECTION_DESCRIPTION}
    )
    mb.changes.append(f"created the collection {COLLECTION_NAME!r}")
    log(f"collection {COLLECTION_NAME!r}: created (id {created['id']})")
    return int(created["id"])


def collection_items(mb: Metabase, collection_id: int, model: str) -> dict[str, int]:
    """name -> id of the non-archived items of one kind in the collection."""
    items = as_list(mb.get(f"/api/collection/{collection_id}/items", models=model))
    return {
        item["name"]: int(item["id"])
        for item in items
        if item.get("model") == model and not item.get("archived")
    }


def native_part(dataset_query: Any) -> dict[str, Any]:
    """SQL and template tags of a native question, in the legacy or the newer (stages) shape."""
    if not isinstance(dataset_query, dict):
        return {}
    native = dataset_query.get("native")
    if isinstance(native, dict):
        return {"query": native.get("query"), "template-tags": native.get("template-tags") or {}}
    stages = dataset_query.get("stages")
    if isinstance(stages, list) and stages and isinstance(stages[0], dict):
        stage = stages[0]
        return {"query": stage.get("native"), "template-tags": stage.get("template-tags") or {}}
    return {}


def stable_id(*parts: str) -> str:
    """The same id on every run for the same object, so that a second run finds it unchanged."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "coincap-elt/metabase/" + "/".join(parts)))


def parameter_id(dashboard_filter: DashboardFilter) -> str:
    return stable_id("dashboard", DASHBOARD_NAME, dashboard_filter.slug)[:8]  # as Metabase's own


def covers(current: Any, wanted: Any) -> bool:
    """True when ``current`` has every key of ``wanted`` with the same value (Metabase may add
    keys of its own to what it stores, e.g. defaults)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            covers(current.get(key), value) for key, value in wanted.items()
        )
    return current == wanted


# ----------------------------------------------------------------- the marts in Metabase
def mart_fields(mb: Metabase, database_id: int) -> dict[tuple[str, str], int]:
    """(table, column) -> Metabase field id, for the marts Metabase has synced so far."""
    metadata = mb.get(f"/api/database/{database_id}/metadata", include_hidden="true")
    fields: dict[tuple[str, str], int] = {}
    for table in (metadata or {}).get("tables") or []:
        if table.get("schema") != MARTS_SCHEMA:
            continue
        for field in table.get("fields") or []:
            fields[(table["name"], field["name"])] = int(field["id"])
    return fields


def wait_for_marts(
    mb: Metabase, database_id: int, wait_seconds: float
) -> dict[tuple[str, str], int]:
    """Wait until Metabase has synced every mart column the filters act on; ask it to sync
    (at most once a minute) while one is missing. The marts exist after the pipeline's first
    cycle: on a new stack that is a few minutes after `up`."""
    needed = {(spec.table, column) for spec in CARDS for column in spec.filter_columns.values()}
    deadline = time.monotonic() + wait_seconds
    next_sync = time.monotonic()
    while True:
        fields = mart_fields(mb, database_id)
        missing = sorted(needed - fields.keys())
        if not missing:
            return fields
        now = time.monotonic()
        if now >= deadline:
            table, column = missing[0]
            raise ProvisionError(
                f"{len(missing)} mart columns the dashboard filters on are not in Metabase after "
                f"{wait_seconds:.0f} s (first: {MARTS_SCHEMA}.{table}.{column}); the pipeline's "
                "first cycle builds them (`docker compose logs runpipeline`): run `docker "
                "compose up metabase-provision` again once it has"
            )
        if now >= next_sync:
            mb.post(f"/api/database/{database_id}/sync_schema")
            log(
                f"asked Metabase to sync the warehouse; waiting for {len(missing)} mart columns "
                f"(first: {MARTS_SCHEMA}.{missing[0][0]}.{missing[0][1]})"
            )
            next_sync = now + SYNC_EVERY_SECONDS
        time.sleep(min(5.0, max(0.2, wait_seconds / 100)))


def parse_dbt_project(target: Path) -> Path:
    """dbt's manifest of this project (descriptions, constraints, tests, meta), from `dbt parse`;
    no warehouse connection needed."""
    from dbt.cli.main import dbtRunner

    os.environ["WAREHOUSE"] = "postgres"  # the warehouse Metabase reads
    result = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            str(ROOT / "dbt_project"),
            "--profiles-dir",
            str(ROOT / "profiles"),
            "--target-path",
            str(target),
            "--log-path",
            str(target),
            "--quiet",
            "--no-send-anonymous-usage-stats",
        ]
    )
    if not result.success:
        raise ProvisionError(
            f"dbt parse of {ROOT / 'dbt_project'} failed ({result.exception}); "
            "run `dbt parse` there to see why"
        )
    return target / "manifest.json"


class _DbtMetabaseLines(logging.Handler):
    """dbt-metabase's log, one line each: its warnings and what it changed (not every field it
    found up to date), counted for the summary."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.updates = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "updated successfully" in message:
            self.updates += 1
        elif record.levelno < logging.WARNING:
            return
        log(f"dbt-metabase: {message}")


def push_model_docs(mb: Metabase, cfg: dict[str, str]) -> None:
    """dbt's descriptions, keys and semantic types into Metabase's metadata, with dbt-metabase
    (as `dbt-metabase models` does): table and column descriptions; `asset_id` an entity key of
    dim_assets and a foreign key to it elsewhere (from the relationships tests and `meta`);
    `metabase.semantic_type` from each column's `meta` (prices currency, shares percentages).
    Only what differs is written."""
    import requests
    from dbtmetabase import DbtMetabase, Filter
    from dbtmetabase.errors import MetabaseStateError

    handler = _DbtMetabaseLines()
    dbtmetabase_log = logging.getLogger("dbtmetabase")
    dbtmetabase_log.addHandler(handler)
    dbtmetabase_log.setLevel(logging.INFO)
    dbtmetabase_log.propagate = False
    with tempfile.TemporaryDirectory(prefix="coincap-dbt-") as target:
        manifest = parse_dbt_project(Path(target))
        try:
            DbtMetabase(
                manifest_path=manifest,
                metabase_url=mb.base_url,
                metabase_username=cfg["admin_email"],
                metabase_password=cfg["admin_password"],
            ).export_models(
                metabase_database=cfg["warehouse_name"],
                schema_filter=Filter(include=[MARTS_SCHEMA]),
                sync_timeout=DOCS_SYNC_TIMEOUT_SECONDS,
            )
        except (MetabaseStateError, requests.RequestException) as exc:
            raise ProvisionError(
                f"pushing dbt's descriptions and keys into Metabase failed ({exc}); "
                "the lines above say which table or field"
            ) from None
    if handler.updates:
        mb.changes.append(f"updated the metadata of {handler.updates} mart tables and columns")
    log(f"marts' metadata from dbt: {handler.updates} tables and columns updated")


# ----------------------------------------------------------------- questions and dashboard
def template_tags(spec: CardSpec, field_ids: dict[tuple[str, str], int]) -> dict[str, Any]:
    """The card's field filters, one per dashboard filter, on the mart's own columns."""
    return {
        f.slug: {
            "id": stable_id("card", spec.name, f.slug),
            "name": f.slug,
            "display-name": f.name,
            "type": "dimension",
            "dimension": ["field", field_ids[(spec.table, spec.filter_columns[f.slug])], None],
            "widget-type": f.type,
            "required": False,
        }
        for f in FILTERS
    }


def card_body(
    spec: CardSpec, database_id: int, collection_id: int, field_ids: dict[tuple[str, str], int]
) -> dict[str, Any]:
    tags = template_tags(spec, field_ids)
    return {
        "name": spec.name,
        "description": spec.description,
        "collection_id": collection_id,
        "type": "question",
        "display": spec.display,
        "visualization_settings": spec.visualization_settings,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": spec.sql, "template-tags": tags},
        },
        # the question's own filter widgets, when opened outside the dashboard
        "parameters": [
            {
                "id": tags[f.slug]["id"],
                "type": f.type,
                "target": ["dimension", ["template-tag", f.slug]],
                "name": f.name,
                "slug": f.slug,
            }
            for f in FILTERS
        ],
    }


def ensure_cards(
    mb: Metabase, database_id: int, collection_id: int, field_ids: dict[tuple[str, str], int]
) -> dict[str, int]:
    existing = collection_items(mb, collection_id, "card")
    ids: dict[str, int] = {}
    for spec in CARDS:
        body = card_body(spec, database_id, collection_id, field_ids)
        card_id = existing.get(spec.name)
        if card_id is None:
            created = mb.post("/api/card", body)
            ids[spec.name] = int(created["id"])
            mb.changes.append(f"created the question {spec.name!r}")
            log(f"question {spec.name!r}: created (id {created['id']})")
            continue
        ids[spec.name] = card_id
        card = mb.get(f"/api/card/{card_id}")
        query = card.get("dataset_query") or {}
        native = native_part(query)
        same = (
            native.get("query") == spec.sql
            and covers(
                native.get("template-tags"), body["dataset_query"]["native"]["template-tags"]
            )
            and set(native.get("template-tags") or {}) == {f.slug for f in FILTERS}
            and query.get("database") == database_id
            and card.get("display") == spec.display
            and (card.get("visualization_settings") or {}) == spec.visualization_settings
            and (card.get("description") or "") == spec.description
        )
        if same:
            log(f"question {spec.name!r}: in place (id {card_id})")
        else:
            mb.put(f"/api/card/{card_id}", body)
            mb.changes.append(f"updated the question {spec.name!r}")
            log(f"question {spec.name!r}: updated to the definition here (id {card_id})")
    return ids


def dashboard_parameters() -> list[dict[str, Any]]:
    parameters = []
    for f in FILTERS:
        parameter: dict[str, Any] = {
            "id": parameter_id(f),
            "name": f.name,
            "slug": f.slug,
            "type": f.type,
            "sectionId": f.section_id,
        }
        if f.default is not None:
            parameter["default"] = f.default
        parameters.append(parameter)
    return parameters


def parameter_mappings(card_id: int) -> list[dict[str, Any]]:
    """Every dashboard filter to the card's template tag of the same name."""
    return [
        {
            "parameter_id": parameter_id(f),
            "card_id": card_id,
            "target": ["dimension", ["template-tag", f.slug]],
        }
        for f in FILTERS
    ]


def mapping_keys(mappings: Any) -> set[tuple[Any, str]]:
    """(filter, tag) pairs of a dashcard's wiring; options Metabase may append to a target
    (["dimension", ["template-tag", "asset"], {...}]) do not count."""
    return {
        (m.get("parameter_id"), json.dumps((m.get("target") or [])[:2]))
        for m in mappings or []
        if isinstance(m, dict)
    }


def ensure_dashboard(mb: Metabase, collection_id: int, card_ids: dict[str, int]) -> int:
    dashboard_id = collection_items(mb, collection_id, "dashboard").get(DASHBOARD_NAME)
    if dashboard_id is None:
        created = mb.post(
            "/api/dashboard",
            {
                "name": DASHBOARD_NAME,
                "description": DASHBOARD_DESCRIPTION,
                "collection_id": collection_id,
            },
        )
        dashboard_id = int(created["id"])
        mb.changes.append(f"created the dashboard {DASHBOARD_NAME!r}")
        log(f"dashboard {DASHBOARD_NAME!r}: created (id {dashboard_id})")

    dashboard = mb.get(f"/api/dashboard/{dashboard_id}")
    current = dashboard.get("dashcards")
    if current is None:  # before Metabase 0.47 the key was ordered_cards
        current = dashboard.get("ordered_cards") or []
    layout = ("row", "col", "size_x", "size_y")
    by_card = {dc.get("card_id"): dc for dc in current}

    wanted: list[dict[str, Any]] = []
    for n, spec in enumerate(CARDS, start=1):
        card_id = card_ids[spec.name]
        dashcard = {
            "card_id": card_id,
            "row": spec.row,
            "col": spec.col,
            "size_x": spec.size_x,
            "size_y": spec.size_y,
            "parameter_mappings": parameter_mappings(card_id),
            "visualization_settings": {},
            "series": [],
        }
        # an existing dashcard keeps its id; a new one gets a negative id (Metabase's convention)
        dashcard["id"] = by_card[card_id]["id"] if card_id in by_card else -n
        wanted.append(dashcard)

    parameters = dashboard_parameters()
    in_place = (
        len(current) == len(wanted)
        and all(
            dc["card_id"] in by_card
            and all(by_card[dc["card_id"]].get(key) == dc[key] for key in layout)
            and mapping_keys(by_card[dc["card_id"]].get("parameter_mappings"))
            == mapping_keys(dc["parameter_mappings"])
            for dc in wanted
        )
        and len(dashboard.get("parameters") or []) == len(parameters)
        and all(
            covers(have, want)
            for have, want in zip(dashboard["parameters"], parameters, strict=True)
        )
        and (dashboard.get("description") or "") == DASHBOARD_DESCRIPTION
    )
    if in_place:
        log(f"dashboard {DASHBOARD_NAME!r}: in place (id {dashboard_id}, {len(wanted)} cards)")
    else:
        mb.put(
            f"/api/dashboard/{dashboard_id}",
            {"description": DASHBOARD_DESCRIPTION, "parameters": parameters, "dashcards": wanted},
        )
        mb.changes.append(f"laid out the dashboard {DASHBOARD_NAME!r}")
        log(
            f"dashboard {DASHBOARD_NAME!r}: laid out {len(wanted)} cards and "
            f"{len(parameters)} filters (id {dashboard_id})"
        )
    return dashboard_id


# --------------------------------------------------------------------------- main
REQUIRED = ("METABASE_ADMIN_EMAIL", "METABASE_ADMIN_PASSWORD", "METABASE_WAREHOUSE_PASSWORD")


def read_config(env: dict[str, str]) -> dict[str, str]:
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise KeyError(", ".join(missing))
    return {
        "url": env.get("METABASE_URL", "http://metabase:3000"),
        "admin_email": env["METABASE_ADMIN_EMAIL"].strip(),
        "admin_password": env["METABASE_ADMIN_PASSWORD"],
        "admin_first_name": env.get("METABASE_ADMIN_FIRST_NAME", "CoinCap"),
        "admin_last_name": env.get("METABASE_ADMIN_LAST_NAME", "Admin"),
        "site_name": env.get("METABASE_SITE_NAME", "CoinCap ELT"),
        "warehouse_name": env.get("METABASE_WAREHOUSE_NAME", "CoinCap warehouse"),
        "wh_host": env.get("METABASE_WAREHOUSE_HOST", "warehouse"),
        "wh_port": env.get("METABASE_WAREHOUSE_PORT", "5432"),
        "wh_db": env.get("METABASE_WAREHOUSE_DB", "coincap"),
        "wh_user": env.get("METABASE_WAREHOUSE_USER", "metabase_reader"),
        "wh_password": env["METABASE_WAREHOUSE_PASSWORD"],
        "wait_seconds": env.get("METABASE_WAIT_SECONDS", "600"),
        "marts_wait_seconds": env.get("METABASE_MARTS_WAIT_SECONDS", "1800"),
    }


def main() -> int:
    try:
        cfg = read_config(dict(os.environ))
    except KeyError as exc:
        print(
            f"provision_metabase: error: {exc.args[0]} not set; set it in .env (see .env.example)",
            file=sys.stderr,
        )
        return 2
    mb = Metabase(cfg["url"])
    try:
        log(f"waiting for Metabase at {mb.base_url}")
        wait_until_healthy(mb, float(cfg["wait_seconds"]))
        ensure_setup(mb, cfg)
        login(mb, cfg)
        database_id = ensure_database(mb, cfg)
        collection_id = ensure_collection(mb)
        field_ids = wait_for_marts(mb, database_id, float(cfg["marts_wait_seconds"]))
        push_model_docs(mb, cfg)
        card_ids = ensure_cards(mb, database_id, collection_id, field_ids)
        dashboard_id = ensure_dashboard(mb, collection_id, card_ids)
    except ProvisionError as exc:
        print(f"provision_metabase: error: {exc}", file=sys.stderr)
        return 1
    summary = "; ".join(mb.changes) if mb.changes else "nothing to change"
    log(f"done: {summary}. Dashboard: {mb.base_url}/dashboard/{dashboard_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
