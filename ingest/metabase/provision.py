"""Metabase as code: first-time setup, the warehouse connection, the marts' metadata from dbt and
a dashboard analysts can filter (`coincap-elt metabase`).

Run by the compose service ``metabase-provision`` on every ``up``, and safe to run again: every
object is looked up by name first, so a second run changes nothing; an object that drifted from
the definition (ingest/metabase/dashboard.py) is put back.

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
   with dbt-metabase (``dbt parse`` of the project for the manifest; ``PUT /api/table/:id``,
   ``PUT /api/field/:id``), so analysts see the docs and can join without SQL;
7. creates a collection, the native-SQL questions of CARDS on the marts, each with two field
   filters (``{{asset}}``, ``{{date_range}}``), and a dashboard whose two filters, Asset (pick
   several) and Date range (default: the last 30 days and today), are wired to every question.

Tested only against a local fake of the Metabase API (devkit/fake_metabase.py), not a real Metabase.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ingest.metabase.client import (
    Metabase,
    ProvisionError,
    as_list,
    ensure_setup,
    log,
    login,
    wait_until_healthy,
)
from ingest.metabase.config import MetabaseConfig
from ingest.metabase.dashboard import (
    CARDS,
    COLLECTION_DESCRIPTION,
    COLLECTION_NAME,
    DASHBOARD_DESCRIPTION,
    DASHBOARD_NAME,
    FILTERS,
    MARTS_SCHEMA,
    CardSpec,
    card_body,
    dashboard_parameters,
    dashcards,
    filter_fields,
)

SYNC_EVERY_SECONDS = 60.0  # while a mart is missing, ask Metabase to sync at most this often
# dbt-metabase's own wait for Metabase's tables to match the dbt project (they do by then)
DOCS_SYNC_TIMEOUT_SECONDS = 60
DASHCARD_LAYOUT = ("row", "col", "size_x", "size_y")


def run_provisioning(config: MetabaseConfig, project_root: Path) -> int:
    """The steps listed at the top, in order. ``project_root`` holds dbt_project/ and profiles/.
    Returns 0 when everything is in place, 1 after one `error:` line on stderr saying what to do."""
    mb = Metabase(config.url)
    try:
        log(f"waiting for Metabase at {mb.base_url}")
        wait_until_healthy(mb, config.wait_seconds)
        ensure_setup(mb, config)
        login(mb, config)
        database_id = ensure_database(mb, config)
        collection_id = ensure_collection(mb)
        field_ids = wait_for_marts(mb, database_id, config.marts_wait_seconds)
        push_model_docs(mb, config, project_root)
        card_ids = ensure_cards(mb, database_id, collection_id, field_ids)
        dashboard_id = ensure_dashboard(mb, collection_id, card_ids)
    except ProvisionError as exc:
        print(f"metabase: error: {exc}", file=sys.stderr)
        return 1
    summary = "; ".join(mb.changes) if mb.changes else "nothing to change"
    log(f"done: {summary}. Dashboard: {mb.base_url}/dashboard/{dashboard_id}")
    return 0


# ------------------------------------------------------------------------ the diff (pure)
def covers(current: Any, wanted: Any) -> bool:
    """True when ``current`` has every key of ``wanted`` with the same value (Metabase may add
    keys of its own to what it stores, e.g. defaults)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            covers(current.get(key), value) for key, value in wanted.items()
        )
    return current == wanted


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


def card_in_place(card: dict[str, Any], spec: CardSpec, body: dict[str, Any]) -> bool:
    """Whether the question Metabase has (``card``, from `GET /api/card/:id`) is the one
    ``body`` (`card_body` of ``spec``) would make: same SQL, field filters, database, display,
    visualization settings and description."""
    query = card.get("dataset_query") or {}
    native = native_part(query)
    return (
        native.get("query") == spec.sql
        and covers(native.get("template-tags"), body["dataset_query"]["native"]["template-tags"])
        and set(native.get("template-tags") or {}) == {f.slug for f in FILTERS}
        and query.get("database") == body["dataset_query"]["database"]
        and card.get("display") == spec.display
        and (card.get("visualization_settings") or {}) == spec.visualization_settings
        and (card.get("description") or "") == spec.description
    )


def mapping_keys(mappings: Any) -> set[tuple[Any, str]]:
    """(filter, tag) pairs of a dashcard's wiring; options Metabase may append to a target
    (["dimension", ["template-tag", "asset"], {...}]) do not count."""
    return {
        (m.get("parameter_id"), json.dumps((m.get("target") or [])[:2]))
        for m in mappings or []
        if isinstance(m, dict)
    }


def dashboard_in_place(
    dashboard: dict[str, Any], wanted: list[dict[str, Any]], parameters: list[dict[str, Any]]
) -> bool:
    """Whether the dashboard Metabase has shows exactly the ``wanted`` dashcards (layout and
    wiring) with the ``parameters`` (filters) and the description."""
    current = current_dashcards(dashboard)
    by_card = {dc.get("card_id"): dc for dc in current}
    return (
        len(current) == len(wanted)
        and all(
            dc["card_id"] in by_card
            and all(by_card[dc["card_id"]].get(key) == dc[key] for key in DASHCARD_LAYOUT)
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


def current_dashcards(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    current = dashboard.get("dashcards")
    if current is None:  # before Metabase 0.47 the key was ordered_cards
        current = dashboard.get("ordered_cards") or []
    return current


# ------------------------------------------------------------------------ the warehouse
def warehouse_details(config: MetabaseConfig) -> dict[str, Any]:
    return {
        "host": config.warehouse_host,
        "port": config.warehouse_port,
        "dbname": config.warehouse_db,
        "user": config.warehouse_user,
        "password": config.warehouse_password,
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


def ensure_database(mb: Metabase, config: MetabaseConfig) -> int:
    """The warehouse as a Metabase database, found by name; its connection put back when it
    drifted. Returns its id."""
    name = config.warehouse_name
    wanted = warehouse_details(config)
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
    """The dashboard's collection (not a personal one, not archived), found by name."""
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
    needed = filter_fields()
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


def parse_dbt_project(project_root: Path, target: Path) -> Path:
    """dbt's manifest of the project in ``project_root`` (descriptions, constraints, tests, meta),
    from `dbt parse` into ``target``; no warehouse connection needed."""
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            str(project_root / "dbt_project"),
            "--profiles-dir",
            str(project_root / "profiles"),
            # the warehouse Metabase reads, whatever WAREHOUSE says
            "--target",
            "postgres",
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
            f"dbt parse of {project_root / 'dbt_project'} failed ({result.exception}); "
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


def push_model_docs(mb: Metabase, config: MetabaseConfig, project_root: Path) -> None:
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
        manifest = parse_dbt_project(project_root, Path(target))
        try:
            DbtMetabase(
                manifest_path=manifest,
                metabase_url=mb.base_url,
                metabase_username=config.admin_email,
                metabase_password=config.admin_password,
            ).export_models(
                metabase_database=config.warehouse_name,
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
def ensure_cards(
    mb: Metabase, database_id: int, collection_id: int, field_ids: dict[tuple[str, str], int]
) -> dict[str, int]:
    """Every question of CARDS in the collection, found by name, put back when it drifted.
    Returns card name -> question id."""
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
        if card_in_place(mb.get(f"/api/card/{card_id}"), spec, body):
            log(f"question {spec.name!r}: in place (id {card_id})")
        else:
            mb.put(f"/api/card/{card_id}", body)
            mb.changes.append(f"updated the question {spec.name!r}")
            log(f"question {spec.name!r}: updated to the definition here (id {card_id})")
    return ids


def ensure_dashboard(mb: Metabase, collection_id: int, card_ids: dict[str, int]) -> int:
    """The dashboard in the collection, found by name, showing every question with both filters
    wired; laid out again when anything drifted. Returns its id."""
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
    existing = {dc.get("card_id"): dc.get("id") for dc in current_dashcards(dashboard)}
    wanted = dashcards(card_ids, existing)
    parameters = dashboard_parameters()
    if dashboard_in_place(dashboard, wanted, parameters):
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
