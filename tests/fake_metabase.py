"""A local HTTP fake of the Metabase REST API endpoints that scripts/provision_metabase.py calls.

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

Real Metabase was not available on the machine these tests run on: no registry there carries it.

Run as a server (the Metabase stand-in image of the stack test, tests/standins/metabase, runs it on
port 3000): ``python fake_metabase.py --host 0.0.0.0 --port 3000``; every request that changes
something is printed to stdout as ``fake-metabase: changed: METHOD PATH``.
"""

from __future__ import annotations

import copy
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
        self.requests: list[tuple[str, str]] = []
        self._ids = {"db": 1, "coll": 1, "card": 1, "dash": 1, "dashcard": 1}
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
        return [
            (m, p)
            for m, p in self.requests
            if m not in NON_MUTATING and (m, p) != ("POST", "/api/session")
        ]

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
        if (
            self.log_changes
            and method not in NON_MUTATING
            and (method, path) != ("POST", "/api/session")
        ):
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
            ("GET", r"/api/collection", self._list_collections),
            ("POST", r"/api/collection", self._create_collection),
            ("GET", r"/api/collection/(\d+|root)/items", self._collection_items),
            ("POST", r"/api/card", self._create_card),
            ("GET", r"/api/card/(\d+)", self._get_card),
            ("PUT", r"/api/card/(\d+)", self._update_card),
            ("POST", r"/api/dashboard", self._create_dashboard),
            ("GET", r"/api/dashboard/(\d+)", self._get_dashboard),
            ("PUT", r"/api/dashboard/(\d+)", self._update_dashboard),
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
        if int(db_id) not in self.databases:
            raise ApiError(404, "Not found.")
        self.synced.append(int(db_id))
        return 200, {"status": "ok"}

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

    def _update_dashboard(self, dash_id: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        """Since v0.47: `dashcards` is the complete new list; negative ids are new dashcards,
        existing ids are updated, dashcards left out are removed."""
        dash = self.dashboards.get(int(dash_id))
        if dash is None:
            raise ApiError(404, "Not found.")
        for key in ("name", "description", "collection_id", "parameters", "archived"):
            if key in body:
                dash[key] = copy.deepcopy(body[key])
        if "dashcards" in body:
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
