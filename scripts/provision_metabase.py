"""Metabase as code: first-time setup, the warehouse connection and a starter dashboard.

Run once by the compose service ``metabase-provision``, and safe to run again: every object is
looked up by name first, so a second run changes nothing; an object that drifted from the
definition here is put back. Python standard library only.

What it does, through Metabase's documented REST API:

1. waits until ``GET /api/health`` answers ``{"status": "ok"}``;
2. if Metabase has no user yet: reads the setup token (``GET /api/session/properties``) and creates
   the first admin with ``POST /api/setup``;
3. logs in (``POST /api/session``) as that admin;
4. registers the warehouse (``POST /api/database``, engine ``postgres``) with the read-only role
   and a schema filter so that only ``marts`` is visible;
5. creates a collection, four native-SQL questions (``POST /api/card``) on the marts and a dashboard
   (``POST /api/dashboard``, then ``PUT /api/dashboard/:id`` with its ``dashcards``).

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

Exit status: 0 when everything is in place, 1 on any failure (one line on stderr saying what to do),
2 when a required variable is missing. Passwords are never printed.

Tested only against a local fake of the Metabase API (tests/fake_metabase.py), not a real Metabase.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CardSpec:
    """One native-SQL question and where it sits on the dashboard (24-column grid)."""

    name: str
    description: str
    sql: str
    display: str
    visualization_settings: dict[str, Any]
    row: int
    col: int
    size_x: int
    size_y: int


# Only contract columns of the marts (DESIGN.md) and the mart models' documented columns.
CARDS: tuple[CardSpec, ...] = (
    CardSpec(
        name="Latest prices",
        description="The latest CoinCap observation of every asset, by market-cap rank.",
        sql=(
            "select\n"
            "    assets.rank,\n"
            "    assets.symbol,\n"
            "    assets.name,\n"
            "    prices.price_usd,\n"
            "    prices.change_percent_24h,\n"
            "    prices.market_cap_usd,\n"
            "    prices.volume_usd_24h,\n"
            "    prices.observed_at\n"
            "from marts.dim_assets as assets\n"
            "inner join marts.fct_asset_prices as prices\n"
            "    on prices.asset_id = assets.asset_id\n"
            "    and prices.observed_at = assets.last_observed_at\n"
            "order by assets.rank"
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
            "Each asset's share of the summed market cap of the configured assets, "
            "latest observation."
        ),
        # dim_assets holds each asset's latest figures: one row per asset, where the fact would
        # have to be searched for every asset's newest row (BENCHMARKS.md, analyst queries)
        sql=(
            "select\n"
            "    symbol,\n"
            "    latest_market_cap_usd as market_cap_usd\n"
            "from marts.dim_assets\n"
            "where latest_market_cap_usd is not null\n"
            "order by asset_id"
        ),
        display="pie",
        visualization_settings={"pie.dimension": "symbol", "pie.metric": "market_cap_usd"},
        row=0,
        col=12,
        size_x=12,
        size_y=6,
    ),
    CardSpec(
        name="Price history per asset",
        description="Price in USD of every asset over the last 7 days, one line per asset (log).",
        sql=(
            "select\n"
            "    observed_at,\n"
            "    symbol,\n"
            "    price_usd\n"
            "from marts.fct_asset_prices\n"
            "where observed_at >= now() - interval '7 days'\n"
            "order by observed_at, symbol"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["observed_at", "symbol"],
            "graph.metrics": ["price_usd"],
            "graph.y_axis.scale": "log",
        },
        row=6,
        col=0,
        size_x=24,
        size_y=8,
    ),
    CardSpec(
        name="Daily OHLC",
        description=(
            "Open, high, low and close price per asset and UTC day, "
            "with the number of observations."
        ),
        sql=(
            "select\n"
            "    daily.price_date,\n"
            "    assets.symbol,\n"
            "    daily.open_price_usd,\n"
            "    daily.high_price_usd,\n"
            "    daily.low_price_usd,\n"
            "    daily.close_price_usd,\n"
            "    daily.observation_count\n"
            "from marts.fct_asset_prices_daily as daily\n"
            "inner join marts.dim_assets as assets\n"
            "    on daily.asset_id = assets.asset_id\n"
            "order by daily.price_date desc, assets.rank"
        ),
        display="table",
        visualization_settings={},
        row=14,
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
    # ask for a sync now rather than at the next scheduled one; the marts may not exist yet
    mb.post(f"/api/database/{db_id}/sync_schema")
    return db_id


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


def native_sql(dataset_query: Any) -> str | None:
    """The SQL of a native question, in the legacy or the newer (stages) query shape."""
    if not isinstance(dataset_query, dict):
        return None
    native = dataset_query.get("native")
    if isinstance(native, dict):
        return native.get("query")
    stages = dataset_query.get("stages")
    if isinstance(stages, list) and stages and isinstance(stages[0], dict):
        return stages[0].get("native")
    return None


def card_body(spec: CardSpec, database_id: int, collection_id: int) -> dict[str, Any]:
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
            "native": {"query": spec.sql, "template-tags": {}},
        },
    }


def ensure_cards(mb: Metabase, database_id: int, collection_id: int) -> dict[str, int]:
    existing = collection_items(mb, collection_id, "card")
    ids: dict[str, int] = {}
    for spec in CARDS:
        body = card_body(spec, database_id, collection_id)
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
        same = (
            native_sql(query) == spec.sql
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
            "parameter_mappings": [],
            "visualization_settings": {},
            "series": [],
        }
        # an existing dashcard keeps its id; a new one gets a negative id (Metabase's convention)
        dashcard["id"] = by_card[card_id]["id"] if card_id in by_card else -n
        wanted.append(dashcard)

    in_place = len(current) == len(wanted) and all(
        dc["card_id"] in by_card
        and all(by_card[dc["card_id"]].get(key) == dc[key] for key in layout)
        for dc in wanted
    )
    if in_place:
        log(f"dashboard {DASHBOARD_NAME!r}: in place (id {dashboard_id}, {len(wanted)} cards)")
    else:
        mb.put(f"/api/dashboard/{dashboard_id}", {"dashcards": wanted})
        mb.changes.append(f"laid out the dashboard {DASHBOARD_NAME!r}")
        log(f"dashboard {DASHBOARD_NAME!r}: laid out {len(wanted)} cards (id {dashboard_id})")
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
        card_ids = ensure_cards(mb, database_id, collection_id)
        dashboard_id = ensure_dashboard(mb, collection_id, card_ids)
    except ProvisionError as exc:
        print(f"provision_metabase: error: {exc}", file=sys.stderr)
        return 1
    summary = "; ".join(mb.changes) if mb.changes else "nothing to change"
    log(f"done: {summary}. Dashboard: {mb.base_url}/dashboard/{dashboard_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
