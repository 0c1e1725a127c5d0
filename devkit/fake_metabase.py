"""A local HTTP fake of the Metabase REST API endpoints that `coincap-elt metabase` calls.

Shaped after Metabase's API documentation (https://www.metabase.com/docs/latest/api) for the
version the compose file pins (v0.56): JSON bodies, a session id sent back as the
``X-Metabase-Session`` header, 401 without it, 400 with ``{"errors": {...}}`` when a required
parameter is missing, lists wrapped as ``{"data": [...], "total": n}`` where recent versions wrap
them (databases, collection items).

    with FakeMetabase() as fake:
        fake.base_url                  # http://127.0.0.1:PORT  (use as METABASE_URL)
        fake.unhealthy_for = 3         # the first 3 GET /api/health answer 503 (still starting)
        fake.users / databases / collections / cards / dashboards   # what exists now
        fake.requests                  # every request: (method, path)
        fake.mutations()               # the requests that changed something
        fake.catalog = {...}           # what a sync finds: {"marts": {table: [(column, type)]}};
                                       # None (default): read information_schema of the
                                       # registered PostgreSQL with its details (psycopg2)
        fake.tables / fields           # what the syncs found, with the metadata pushed since

A sync (``POST /api/database/:id/sync_schema``) runs at once, not in the background, and keeps the
ids of tables and fields it saw before. The query endpoint of a dashboard card (``POST
/api/dashboard/:id/dashcard/:id/card/:id/query``) runs the card's SQL on the registered
PostgreSQL, with its field filters replaced as Metabase does: ``"schema"."table"."column" IN
(...)`` or a date range, ``1 = 1`` when a filter has no value.

Real Metabase was not available on the machine these tests run on: no registry there carries it.

Run as a server (the Metabase stand-in image of the stack test, tests/standins/metabase, runs it on
port 3000): ``python fake_metabase.py --host 0.0.0.0 --port 3000``; every request that changes
something is printed to stdout as ``fake-metabase: changed: METHOD PATH``.
"""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PUBLIC = {
    ("GET", "/api/health"),
    ("GET", "/api/session/properties"),
    ("POST", "/api/setup"),
    ("POST", "/api/session"),
}
# requests that only read, or log in: a second provisioning run may make these and nothing else
NON_MUTATING = {"GET"}
# asks Metabase to look at the warehouse again: changes nothing that was provisioned
SYNC = re.compile(r"/api/database/\d+/sync_schema")
QUERY = re.compile(r"/api/dashboard/\d+/dashcard/\d+/card/\d+/query")

# Metabase v0.56's widget types (metabase.lib.schema.parameter.widget-type in its API spec)
WIDGET_TYPES = {
    "none", "category", "date", "string/!=", "number/=", "string/ends-with", "location/state",
    "boolean/=", "number/between", "date/all-options", "number", "number/>=", "location/country",
    "temporal-unit", "string/=", "string/does-not-contain", "date/range", "string/starts-with",
    "string/contains", "date/single", "location/city", "id", "date/relative",
    "location/zip_code", "date/month-year", "date/quarter-year", "number/!=", "boolean", "text",
    "number/<=",
}  # fmt: skip
# the semantic types the provisioning may set (Metabase's type hierarchy has more)
SEMANTIC_TYPES = {
    None, "type/PK", "type/FK", "type/Name", "type/Title", "type/Category", "type/URL",
    "type/Currency", "type/Percentage", "type/Price", "type/Quantity", "type/Score",
    "type/CreationTimestamp", "type/Description",
}  # fmt: skip
VISIBILITY_TYPES = {"normal", "details-only", "sensitive", "hidden", "retired"}
# PostgreSQL's data types as Metabase's base types
BASE_TYPES = {
    "text": "type/Text",
    "character varying": "type/Text",
    "numeric": "type/Decimal",
    "double precision": "type/Float",
    "integer": "type/Integer",
    "bigint": "type/BigInteger",
    "boolean": "type/Boolean",
    "date": "type/Date",
    "timestamp with time zone": "type/DateTimeWithLocalTZ",
    "timestamp without time zone": "type/DateTime",
}
TAG = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


def changes(method: str, path: str) -> bool:
    """Whether a request may change what is provisioned (reads, logins, syncs and queries not)."""
    return not (
        method in NON_MUTATING
        or (method, path) == ("POST", "/api/session")
        or SYNC.fullmatch(path)
        or QUERY.fullmatch(path)
    )


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status = status
        self.body = body


def require(body: dict[str, Any], *keys: str) -> None:
    """400 with Metabase's {"errors": {param: message}} shape when a parameter is missing."""
    missing = {k: "value must be a non-blank string." for k in keys if body.get(k) in (None, "")}
    if missing:
        raise ApiError(400, {"errors": missing})


def humanize(name: str) -> str:
    """Metabase's display name for a column or table: asset_id -> "Asset ID"."""
    return " ".join("ID" if word == "id" else word.capitalize() for word in name.split("_"))


def dimension_field(tag: dict[str, Any]) -> Any:
    """The field id of a field filter's dimension, ["field", id, options]."""
    dimension = tag.get("dimension")
    if isinstance(dimension, list) and len(dimension) >= 2 and dimension[0] == "field":
        return dimension[1]
    return None


class FakeMetabase:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, log_changes: bool = False) -> None:
        self.host, self.port, self.log_changes = host, port, log_changes
        self._lock = threading.Lock()
        self.setup_token = secrets.token_hex(16)
        self.unhealthy_for = 0
        self.users: list[dict[str, Any]] = []
        self.sessions: dict[str, int] = {}
        self.databases: dict[int, dict[str, Any]] = {}
        self.collections: dict[int, dict[str, Any]] = {}
        self.cards: dict[int, dict[str, Any]] = {}
        self.dashboards: dict[int, dict[str, Any]] = {}
        self.settings: dict[str, Any] = {}
        self.synced: list[int] = []
        self.catalog: dict[str, dict[str, list[tuple[str, str]]]] | None = None
        self.tables: dict[int, dict[str, Any]] = {}
        self.fields: dict[int, dict[str, Any]] = {}
        self.today: dt.date | None = None  # "today" of relative dates; None: the real UTC date
        self.requests: list[tuple[str, str]] = []
        self._ids = {
            "db": 1,
            "coll": 1,
            "card": 1,
            "dash": 1,
            "dashcard": 1,
            "table": 1,
            "field": 1,
        }
        # Metabase ships a sample database; provisioning must leave it alone
        self.databases[1] = {
            "id": 1,
            "name": "Sample Database",
            "engine": "h2",
            "details": {"db": "sample-database.db"},
        }
        self._ids["db"] = 2
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ inspection
    def mutations(self) -> list[tuple[str, str]]:
        """Requests that created or changed something (logging in does not count)."""
        return [(m, p) for m, p in self.requests if changes(m, p)]

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _next(self, kind: str) -> int:
        value = self._ids[kind]
        self._ids[kind] += 1
        return value

    # ------------------------------------------------------------------ server
    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeMetabase:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def do_POST(self):  # noqa: N802
                fake._handle(self)

            def do_PUT(self):  # noqa: N802
                fake._handle(self)

            def do_DELETE(self):  # noqa: N802
                fake._handle(self)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeMetabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ plumbing
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path.rstrip("/") or "/"
        query = parse_qs(parts.query)
        method = handler.command
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((method, path))
            try:
                body: Any = json.loads(raw) if raw else {}
                if (method, path) not in PUBLIC:
                    session = handler.headers.get("X-Metabase-Session")
                    if session not in self.sessions:
                        raise ApiError(401, "Unauthenticated")
                status, answer = self._route(method, path, query, body)
            except ApiError as exc:
                status, answer = exc.status, exc.body
            except json.JSONDecodeError:
                status, answer = 400, {"message": "malformed JSON body"}
            except (KeyError, TypeError, ValueError) as exc:
                status, answer = 400, {"message": f"bad request: {exc!r}"}
        if self.log_changes and changes(method, path):
            print(f"fake-metabase: changed: {method} {path} -> {status}", flush=True)
        payload = json.dumps(answer).encode() if not isinstance(answer, str) else answer.encode()
        handler.send_response(status)
        handler.send_header(
            "Content-Type", "application/json" if not isinstance(answer, str) else "text/plain"
        )
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        routes = [
            ("GET", r"/api/health", self._health),
            ("GET", r"/api/session/properties", self._properties),
            ("POST", r"/api/setup", self._setup),
            ("POST", r"/api/session", self._login),
            ("GET", r"/api/database", self._list_databases),
            ("POST", r"/api/database", self._create_database),
            ("GET", r"/api/database/(\d+)", self._get_database),
            ("PUT", r"/api/database/(\d+)", self._update_database),
            ("POST", r"/api/database/(\d+)/sync_schema", self._sync_schema),
            ("GET", r"/api/database/(\d+)/metadata", self._metadata),
            ("PUT", r"/api/table/(\d+)", self._update_table),
            ("GET", r"/api/field/(\d+)", self._get_field),
            ("PUT", r"/api/field/(\d+)", self._update_field),
            ("GET", r"/api/collection", self._list_collections),
            ("POST", r"/api/collection", self._create_collection),
            ("GET", r"/api/collection/(\d+|root)/items", self._collection_items),
            ("POST", r"/api/card", self._create_card),
            ("GET", r"/api/card/(\d+)", self._get_card),
            ("PUT", r"/api/card/(\d+)", self._update_card),
            ("POST", r"/api/dashboard", self._create_dashboard),
            ("GET", r"/api/dashboard/(\d+)", self._get_dashboard),
            ("PUT", r"/api/dashboard/(\d+)", self._update_dashboard),
            (
                "POST",
                r"/api/dashboard/(\d+)/dashcard/(\d+)/card/(\d+)/query",
                self._dashcard_query,
            ),
        ]
        for verb, pattern, fn in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                return fn(*match.groups(), query=query, body=body)
        return 404, "API endpoint does not exist."

    # ------------------------------------------------------------------ health, setup, session
    def _health(self, **_: Any) -> tuple[int, Any]:
        if self.unhealthy_for > 0:
            self.unhealthy_for -= 1
            return 503, {"status": "initializing", "progress": 0.5}
        return 200, {"status": "ok"}

    def _properties(self, **_: Any) -> tuple[int, Any]:
        # the setup token is only handed out until the first user exists
        return 200, {
            "setup-token": None if self.users else self.setup_token,
            "has-user-setup": bool(self.users),
            "site-name": self.settings.get("site-name"),
            "version": {"tag": "v0.56.4"},
        }

    def _setup(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        if self.users:
            raise ApiError(
                403,
                "The /api/setup route can only be used to create the first user, "
                "however a user currently exists.",
            )
        if body.get("token") != self.setup_token:
            raise ApiError(400, {"errors": {"token": "Token does not match the setup token."}})
        user = body.get("user") or {}
        require(user, "email", "password")
        prefs = body.get("prefs") or {}
        require(prefs, "site_name")
        if len(user["password"]) < 6 or user["password"].lower() in {"password", "123456"}:
            raise ApiError(400, {"errors": {"password": "password is too common."}})
        self.users.append(
            {
                "id": 1,
                "email": user["email"],
                "password": user["password"],
                "first_name": user.get("first_name"),
                "is_superuser": True,
            }
        )
        self.settings["site-name"] = prefs["site_name"]
        session = secrets.token_hex(16)
        self.sessions[session] = 1
        return 200, {"id": session}

    def _login(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        require(body, "username", "password")
        for user in self.users:
            if user["email"] == body["username"] and user["password"] == body["password"]:
                session = secrets.token_hex(16)
                self.sessions[session] = user["id"]
                return 200, {"id": session}
        raise ApiError(401, {"errors": {"password": "did not match stored password"}})

    # ------------------------------------------------------------------ databases
    @staticmethod
    def _public_db(db: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(db)
        if "password" in out.get("details", {}):
            out["details"]["password"] = "**MetabasePass**"  # Metabase never returns it
        return out

    def _list_databases(self, **_: Any) -> tuple[int, Any]:
        data = [self._public_db(db) for db in self.databases.values()]
        return 200, {"data": data, "total": len(data)}

    def _create_database(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        require(body, "name", "engine")
        if not isinstance(body.get("details"), dict):
            raise ApiError(400, {"errors": {"details": "value must be a map."}})
        db_id = self._next("db")
        self.databases[db_id] = {
            "id": db_id,
            "name": body["name"],
            "engine": body["engine"],
            "details": copy.deepcopy(body["details"]),
            "is_full_sync": body.get("is_full_sync", True),
        }
        return 200, self._public_db(self.databases[db_id])

    def _get_database(self, db_id: str, **_: Any) -> tuple[int, Any]:
        db = self.databases.get(int(db_id))
        if db is None:
            raise ApiError(404, "Not found.")
        return 200, self._public_db(db)

    def _update_database(self, db_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        db = self.databases.get(int(db_id))
        if db is None:
            raise ApiError(404, "Not found.")
        for key in ("name", "engine"):
            if key in body:
                db[key] = body[key]
        if "details" in body:
            db["details"].update(copy.deepcopy(body["details"]))
        return 200, self._public_db(db)

    def _sync_schema(self, db_id: str, **_: Any) -> tuple[int, Any]:
        db = self.databases.get(int(db_id))
        if db is None:
            raise ApiError(404, "Not found.")
        self.synced.append(db["id"])
        try:
            found = self.catalog if self.catalog is not None else self._read_catalog(db)
        except Exception as exc:  # Metabase logs a failed sync; the request still answers ok
            print(f"fake-metabase: sync of database {db['id']} failed: {exc}", flush=True)
            found = {}
        patterns = str(db["details"].get("schema-filters-patterns") or "").split(",")
        for schema, tables in found.items():
            if db["details"].get("schema-filters-type") == "inclusion" and schema not in patterns:
                continue
            for table_name, columns in tables.items():
                table = self._upsert_table(db["id"], schema, table_name)
                for position, (column, data_type) in enumerate(columns):
                    self._upsert_field(table, column, data_type, position)
        return 200, {"status": "ok"}

    @staticmethod
    def _read_catalog(db: dict[str, Any]) -> dict[str, dict[str, list[tuple[str, str]]]]:
        """What Metabase's sync reads: the relations and columns the role can see."""
        with FakeMetabase._connect(db) as conn, conn.cursor() as cur:
            cur.execute(
                "select table_schema, table_name, column_name, data_type "
                "from information_schema.columns "
                "where table_schema not in ('pg_catalog', 'information_schema') "
                "order by table_schema, table_name, ordinal_position"
            )
            catalog: dict[str, dict[str, list[tuple[str, str]]]] = {}
            for schema, table, column, data_type in cur.fetchall():
                catalog.setdefault(schema, {}).setdefault(table, []).append((column, data_type))
        return catalog

    @staticmethod
    def _connect(db: dict[str, Any]):
        import psycopg2  # the stand-in image installs python3-psycopg2

        details = db["details"]
        conn = psycopg2.connect(
            host=details["host"],
            port=int(details["port"]),
            dbname=details["dbname"],
            user=details["user"],
            password=details["password"],
            connect_timeout=10,
            options="-c TimeZone=UTC",  # Metabase's report timezone in the compose file
        )
        conn.set_session(readonly=True, autocommit=True)
        return conn

    def _upsert_table(self, db_id: int, schema: str, name: str) -> dict[str, Any]:
        for table in self.tables.values():
            if (table["db_id"], table["schema"], table["name"]) == (db_id, schema, name):
                return table
        table_id = self._next("table")
        self.tables[table_id] = {
            "id": table_id,
            "db_id": db_id,
            "schema": schema,
            "name": name,
            "display_name": humanize(name),
            "description": None,
            "visibility_type": None,
            "points_of_interest": None,
            "caveats": None,
            "entity_type": "entity/GenericTable",
            "active": True,
        }
        return self.tables[table_id]

    def _upsert_field(
        self, table: dict[str, Any], name: str, data_type: str, position: int
    ) -> dict[str, Any]:
        for field in self.fields.values():
            if (field["table_id"], field["name"]) == (table["id"], name):
                return field
        field_id = self._next("field")
        self.fields[field_id] = {
            "id": field_id,
            "table_id": table["id"],
            "name": name,
            "display_name": humanize(name),
            "database_type": data_type,
            "base_type": BASE_TYPES.get(data_type, "type/*"),
            "semantic_type": "type/Name" if name == "name" else None,  # as Metabase guesses
            "fk_target_field_id": None,
            "description": None,
            "visibility_type": "normal",
            "has_field_values": "list" if data_type == "text" else "none",
            "settings": None,
            "coercion_strategy": None,
            "position": position,
            "active": True,
        }
        return self.fields[field_id]

    def _metadata(self, db_id: str, **_: Any) -> tuple[int, Any]:
        db = self.databases.get(int(db_id))
        if db is None:
            raise ApiError(404, "Not found.")
        tables = []
        for table in self.tables.values():
            if table["db_id"] != db["id"]:
                continue
            fields = [
                copy.deepcopy(f) for f in self.fields.values() if f["table_id"] == table["id"]
            ]
            tables.append({**copy.deepcopy(table), "fields": fields})
        return 200, {**self._public_db(db), "tables": tables}

    def _update_table(self, table_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        table = self.tables.get(int(table_id))
        if table is None:
            raise ApiError(404, "Not found.")
        for key in ("description", "caveats", "points_of_interest", "display_name"):
            if key in body and body[key] is not None and not str(body[key]).strip():
                raise ApiError(400, {"errors": {key: "nullable value must be a non-blank string."}})
        if body.get("visibility_type") not in (None, "technical", "hidden", "cruft"):
            raise ApiError(400, {"errors": {"visibility_type": "invalid value"}})
        for key in (
            "description",
            "caveats",
            "points_of_interest",
            "display_name",
            "visibility_type",
        ):
            if key in body:
                table[key] = body[key] if key != "display_name" else body[key] or table["name"]
        return 200, copy.deepcopy(table)

    def _get_field(self, field_id: str, **_: Any) -> tuple[int, Any]:
        field = self.fields.get(int(field_id))
        if field is None:
            raise ApiError(404, "Not found.")
        return 200, copy.deepcopy(field)

    def _update_field(self, field_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        field = self.fields.get(int(field_id))
        if field is None:
            raise ApiError(404, "Not found.")
        if "semantic_type" in body and body["semantic_type"] not in SEMANTIC_TYPES:
            raise ApiError(
                400, {"errors": {"semantic_type": "value must be a valid semantic type."}}
            )
        target = body.get("fk_target_field_id")
        if target is not None and target not in self.fields:
            raise ApiError(400, {"errors": {"fk_target_field_id": "no such field"}})
        if body.get("visibility_type", "normal") not in VISIBILITY_TYPES:
            raise ApiError(400, {"errors": {"visibility_type": "invalid value"}})
        if "description" in body and body["description"] is not None:
            if not str(body["description"]).strip():
                raise ApiError(
                    400, {"errors": {"description": "nullable value must be a non-blank string."}}
                )
        for key in (
            "description",
            "display_name",
            "semantic_type",
            "fk_target_field_id",
            "visibility_type",
            "has_field_values",
            "settings",
            "coercion_strategy",
        ):
            if key in body:
                field[key] = copy.deepcopy(body[key])
        if field["display_name"] is None:
            field["display_name"] = humanize(field["name"])
        return 200, copy.deepcopy(field)

    # ------------------------------------------------------------------ collections
    def _list_collections(self, **_: Any) -> tuple[int, Any]:
        root = {"id": "root", "name": "Our analytics", "can_write": True}
        personal = {
            "id": 1000,
            "name": "Admin's Personal Collection",
            "personal_owner_id": 1,
            "archived": False,
        }
        return 200, [root, personal, *copy.deepcopy(list(self.collections.values()))]

    def _create_collection(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        require(body, "name")
        coll_id = self._next("coll")
        self.collections[coll_id] = {
            "id": coll_id,
            "name": body["name"],
            "description": body.get("description"),
            "archived": False,
            "personal_owner_id": None,
            "parent_id": body.get("parent_id"),
        }
        return 200, copy.deepcopy(self.collections[coll_id])

    def _collection_items(
        self, coll_id: str, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        wanted_id = None if coll_id == "root" else int(coll_id)
        if wanted_id is not None and wanted_id not in self.collections:
            raise ApiError(404, "Not found.")
        models = set(query.get("models", [])) or {"card", "dashboard"}
        items = []
        if "card" in models:
            items += [
                {
                    "id": c["id"],
                    "name": c["name"],
                    "model": "card",
                    "archived": c.get("archived", False),
                }
                for c in self.cards.values()
                if c["collection_id"] == wanted_id
            ]
        if "dashboard" in models:
            items += [
                {
                    "id": d["id"],
                    "name": d["name"],
                    "model": "dashboard",
                    "archived": d.get("archived", False),
                }
                for d in self.dashboards.values()
                if d["collection_id"] == wanted_id
            ]
        return 200, {"data": items, "total": len(items), "models": sorted(models)}

    # ------------------------------------------------------------------ cards
    def _check_card(self, body: dict[str, Any]) -> None:
        query = body.get("dataset_query")
        if not isinstance(query, dict):
            raise ApiError(400, {"errors": {"dataset_query": "value must be a map."}})
        if query.get("type") != "native" or not isinstance(query.get("native"), dict):
            raise ApiError(400, {"errors": {"dataset_query": "only native queries in this fake"}})
        if not str(query["native"].get("query", "")).strip():
            raise ApiError(400, {"errors": {"dataset_query": "native query is blank"}})
        if query.get("database") not in self.databases:
            raise ApiError(400, {"errors": {"dataset_query": "unknown database"}})
        tags = query["native"].get("template-tags") or {}
        used = set(TAG.findall(query["native"]["query"]))
        if used != set(tags):
            raise ApiError(
                400,
                {"errors": {"template-tags": f"SQL uses {sorted(used)}, defined {sorted(tags)}"}},
            )
        for name, tag in tags.items():
            if tag.get("name") != name or tag.get("type") not in {
                "dimension",
                "text",
                "number",
                "date",
            }:
                raise ApiError(400, {"errors": {"template-tags": f"{name}: bad name or type"}})
            if tag["type"] == "dimension":
                missing = [
                    key
                    for key in ("type", "name", "display-name", "dimension", "widget-type")
                    if tag.get(key) in (None, "")
                ]
                if missing:
                    raise ApiError(400, {"errors": {"template-tags": f"{name}: missing {missing}"}})
                if tag["widget-type"] not in WIDGET_TYPES:
                    raise ApiError(400, {"errors": {"template-tags": f"{name}: bad widget-type"}})
                if dimension_field(tag) not in self.fields:
                    raise ApiError(400, {"errors": {"template-tags": f"{name}: unknown field"}})
        if not isinstance(body.get("visualization_settings"), dict):
            raise ApiError(400, {"errors": {"visualization_settings": "value must be a map."}})

    def _create_card(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        require(body, "name", "display")
        self._check_card(body)
        coll = body.get("collection_id")
        if coll is not None and coll not in self.collections:
            raise ApiError(400, {"errors": {"collection_id": "unknown collection"}})
        card_id = self._next("card")
        self.cards[card_id] = {
            "id": card_id,
            "name": body["name"],
            "description": body.get("description"),
            "collection_id": coll,
            "display": body["display"],
            "dataset_query": copy.deepcopy(body["dataset_query"]),
            "visualization_settings": copy.deepcopy(body["visualization_settings"]),
            "parameters": copy.deepcopy(body.get("parameters") or []),
            "type": body.get("type", "question"),
            "archived": False,
        }
        return 200, copy.deepcopy(self.cards[card_id])

    def _get_card(self, card_id: str, **_: Any) -> tuple[int, Any]:
        card = self.cards.get(int(card_id))
        if card is None:
            raise ApiError(404, "Not found.")
        return 200, copy.deepcopy(card)

    def _update_card(self, card_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        card = self.cards.get(int(card_id))
        if card is None:
            raise ApiError(404, "Not found.")
        if "dataset_query" in body:
            self._check_card({**card, **body})
        for key in (
            "name",
            "description",
            "display",
            "dataset_query",
            "visualization_settings",
            "parameters",
            "collection_id",
            "archived",
        ):
            if key in body:
                card[key] = copy.deepcopy(body[key])
        return 200, copy.deepcopy(card)

    # ------------------------------------------------------------------ dashboards
    def _create_dashboard(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        require(body, "name")
        dash_id = self._next("dash")
        self.dashboards[dash_id] = {
            "id": dash_id,
            "name": body["name"],
            "description": body.get("description"),
            "collection_id": body.get("collection_id"),
            "dashcards": [],
            "tabs": [],
            "parameters": body.get("parameters", []),
            "archived": False,
        }
        return 200, copy.deepcopy(self.dashboards[dash_id])

    def _get_dashboard(self, dash_id: str, **_: Any) -> tuple[int, Any]:
        dash = self.dashboards.get(int(dash_id))
        if dash is None:
            raise ApiError(404, "Not found.")
        out = copy.deepcopy(dash)
        for dashcard in out["dashcards"]:
            dashcard["card"] = copy.deepcopy(self.cards.get(dashcard["card_id"]))
        return 200, out

    def _check_mapping(
        self, mapping: dict[str, Any], dashcard: dict[str, Any], parameter_ids: set[str]
    ) -> None:
        """A filter wired to a card: a parameter of this dashboard, to a template tag the card
        has (["dimension", ["template-tag", name]])."""
        if mapping.get("parameter_id") not in parameter_ids:
            raise ApiError(400, {"errors": {"parameter_mappings": "unknown parameter_id"}})
        if mapping.get("card_id") != dashcard.get("card_id"):
            raise ApiError(400, {"errors": {"parameter_mappings": "card_id is not the dashcard's"}})
        target = mapping.get("target")
        card = self.cards.get(dashcard.get("card_id")) or {}
        tags = card.get("dataset_query", {}).get("native", {}).get("template-tags") or {}
        if not (
            isinstance(target, list)
            and len(target) >= 2
            and target[0] in ("dimension", "variable")
            and isinstance(target[1], list)
            and target[1][:1] == ["template-tag"]
            and len(target[1]) == 2
            and target[1][1] in tags
        ):
            raise ApiError(400, {"errors": {"parameter_mappings": f"bad target {target!r}"}})

    def _update_dashboard(self, dash_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        """Since v0.47: `dashcards` is the complete new list; negative ids are new dashcards,
        existing ids are updated, dashcards left out are removed."""
        dash = self.dashboards.get(int(dash_id))
        if dash is None:
            raise ApiError(404, "Not found.")
        for parameter in body.get("parameters") or []:
            if not parameter.get("id") or not parameter.get("type"):
                raise ApiError(400, {"errors": {"parameters": "id and type are required"}})
            if parameter["type"] not in WIDGET_TYPES:
                raise ApiError(400, {"errors": {"parameters": f"bad type {parameter['type']}"}})
        for key in ("name", "description", "collection_id", "parameters", "archived"):
            if key in body:
                dash[key] = copy.deepcopy(body[key])
        if "dashcards" in body:
            parameter_ids = {p["id"] for p in dash["parameters"]}
            for dc in body["dashcards"]:
                for mapping in dc.get("parameter_mappings") or []:
                    self._check_mapping(mapping, dc, parameter_ids)
            existing = {dc["id"]: dc for dc in dash["dashcards"]}
            new_list = []
            for dc in body["dashcards"]:
                for key in ("id", "row", "col", "size_x", "size_y"):
                    if not isinstance(dc.get(key), int):
                        raise ApiError(400, {"errors": {"dashcards": f"{key} must be an integer"}})
                if dc.get("card_id") not in self.cards:
                    raise ApiError(400, {"errors": {"dashcards": "unknown card_id"}})
                if dc["id"] < 0:
                    dashcard_id = self._next("dashcard")
                elif dc["id"] in existing:
                    dashcard_id = dc["id"]
                else:
                    raise ApiError(400, {"errors": {"dashcards": f"no dashcard {dc['id']}"}})
                new_list.append(
                    {
                        "id": dashcard_id,
                        "card_id": dc["card_id"],
                        "dashboard_id": dash["id"],
                        "row": dc["row"],
                        "col": dc["col"],
                        "size_x": dc["size_x"],
                        "size_y": dc["size_y"],
                        "parameter_mappings": copy.deepcopy(dc.get("parameter_mappings", [])),
                        "visualization_settings": copy.deepcopy(
                            dc.get("visualization_settings", {})
                        ),
                        "series": copy.deepcopy(dc.get("series", [])),
                    }
                )
            dash["dashcards"] = new_list
        return 200, copy.deepcopy(dash)

    # ------------------------------------------------------------------ a dashboard card's query
    def _dashcard_query(
        self, dash_id: str, dashcard_id: str, card_id: str, body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        """What a dashboard shows: the card's SQL with the dashboard's filter values (given in
        the request, else the filter's default) put into the tags the filters are wired to."""
        dash = self.dashboards.get(int(dash_id))
        dashcard = next(
            (
                dc
                for dc in (dash or {}).get("dashcards", [])
                if dc["id"] == int(dashcard_id) and dc["card_id"] == int(card_id)
            ),
            None,
        )
        if dash is None or dashcard is None:
            raise ApiError(404, "Not found.")
        card = self.cards[int(card_id)]
        given = {p.get("id"): p for p in body.get("parameters") or []}
        unknown = set(given) - {p["id"] for p in dash["parameters"]}
        if unknown:
            raise ApiError(400, {"message": f"unknown dashboard parameters {sorted(unknown)}"})
        values: dict[str, tuple[str, Any]] = {}
        for parameter in dash["parameters"]:
            if parameter["id"] in given:
                value = given[parameter["id"]].get("value")
            else:
                value = parameter.get("default")
            if value in (None, "", []):
                continue
            for mapping in dashcard["parameter_mappings"]:
                if mapping["parameter_id"] == parameter["id"]:
                    values[mapping["target"][1][1]] = (parameter["type"], value)
        native = card["dataset_query"]["native"]
        try:
            sql, params = self._substitute(native["query"], native["template-tags"], values)
            db = self.databases[card["dataset_query"]["database"]]
            with self._connect(db) as conn, conn.cursor() as cur:
                cur.execute(sql, params)
                cols = [{"name": c.name, "display_name": humanize(c.name)} for c in cur.description]
                rows = [[jsonable(v) for v in row] for row in cur.fetchall()]
        except Exception as exc:  # Metabase answers 202 with the database's error
            return 202, {
                "status": "failed",
                "error": str(exc).strip(),
                "row_count": 0,
                "data": {"rows": [], "cols": []},
            }
        return 202, {
            "status": "completed",
            "row_count": len(rows),
            "data": {"cols": cols, "rows": rows},
        }

    def _substitute(
        self, query: str, tags: dict[str, Any], values: dict[str, tuple[str, Any]]
    ) -> tuple[str, list[Any]]:
        params: list[Any] = []

        def condition(match: re.Match[str]) -> str:
            tag = tags[match.group(1)]
            field = self.fields[dimension_field(tag)]
            table = self.tables[field["table_id"]]
            column = f'"{table["schema"]}"."{table["name"]}"."{field["name"]}"'
            if match.group(1) not in values:
                return "1 = 1"  # a field filter with no value
            kind, value = values[match.group(1)]
            if kind == "string/=":
                chosen = value if isinstance(value, list) else [value]
                params.extend(chosen)
                return f"{column} IN ({', '.join(['%s'] * len(chosen))})"
            if kind.startswith("date"):
                start, end = date_bounds(value[0] if isinstance(value, list) else value, self.today)
                parts = []
                if start is not None:
                    parts.append(f"{column} >= %s")
                    params.append(start)
                if end is not None:
                    parts.append(f"{column} < %s")
                    params.append(end)
                return "(" + " AND ".join(parts) + ")"
            raise ValueError(f"this fake does not know parameter type {kind}")

        return TAG.sub(condition, query.replace("%", "%%")), params


def jsonable(value: Any) -> Any:
    """A result value as Metabase's JSON has it: numbers as numbers, dates as ISO strings."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def date_bounds(value: str, today: dt.date | None) -> tuple[dt.date | None, dt.date | None]:
    """[start, end) of a date filter value of Metabase's "date/all-options" widget: a range
    "2026-10-01~2026-10-31", one day, a month "2026-10", "~day" (up to), "day~" (from), or
    relative "past30days" (the 30 days before today) and "past30days~" (and today)."""
    day = dt.timedelta(days=1)
    today = today or dt.datetime.now(dt.UTC).date()
    if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})?~(\d{4}-\d{2}-\d{2})?", value):
        first, last = match.groups()
        if first is None and last is None:
            raise ValueError(f"Don't know how to parse date param '{value}'")
        return (
            dt.date.fromisoformat(first) if first else None,
            dt.date.fromisoformat(last) + day if last else None,
        )
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return dt.date.fromisoformat(value), dt.date.fromisoformat(value) + day
    if match := re.fullmatch(r"(\d{4})-(\d{2})", value):
        first = dt.date(int(match.group(1)), int(match.group(2)), 1)
        return first, (first + dt.timedelta(days=32)).replace(day=1)
    if match := re.fullmatch(r"past(\d+)days(~)?", value):
        return today - int(match.group(1)) * day, today + day if match.group(2) else today
    raise ValueError(f"Don't know how to parse date param '{value}'")


if __name__ == "__main__":
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="a fake of Metabase's REST API, for tests only")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    # as a container's PID 1, SIGTERM (docker stop) is ignored unless handled: stop as Metabase does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = FakeMetabase(host=args.host, port=args.port, log_changes=True).start()
    print(f"fake-metabase: serving on {server.base_url} (a test fake, not Metabase)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()
