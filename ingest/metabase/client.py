"""A minimal client of Metabase's REST API (v0.56) and the first steps of every run: wait until
Metabase is healthy, create the first admin when it has none, log in.

Every failure is a ProvisionError whose message is one line saying what to do; passwords never
appear in a message or a log line.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ingest.metabase.config import MetabaseConfig


class ProvisionError(Exception):
    """Provisioning cannot go on; the message says what to do."""


def log(message: str) -> None:
    """One line on stdout: an ISO-8601 UTC timestamp, who speaks, the message."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} metabase: {message}", flush=True)


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


def wait_until_healthy(mb: Metabase, wait_seconds: float) -> None:
    """Until `GET /api/health` answers {"status": "ok"}: Metabase takes minutes to start."""
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


def ensure_setup(mb: Metabase, config: MetabaseConfig) -> None:
    """The first admin, with the setup token `GET /api/session/properties` shows while Metabase
    has no user yet (`POST /api/setup`); nothing once it has one."""
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
                "email": config.admin_email,
                "password": config.admin_password,
                "first_name": config.admin_first_name,
                "last_name": config.admin_last_name,
                "site_name": config.site_name,
            },
            "prefs": {"site_name": config.site_name, "site_locale": "en", "allow_tracking": False},
        },
    )
    mb.changes.append(f"created the first admin {config.admin_email}")
    log(f"first-time setup: created the admin {config.admin_email}")


def login(mb: Metabase, config: MetabaseConfig) -> None:
    """A session as the admin (`POST /api/session`), sent with every later request."""
    try:
        answer = mb.post(
            "/api/session", {"username": config.admin_email, "password": config.admin_password}
        )
    except ProvisionError as exc:
        raise ProvisionError(
            f"could not log in to Metabase as {config.admin_email} ({exc}); "
            "check METABASE_ADMIN_EMAIL and METABASE_ADMIN_PASSWORD"
        ) from None
    if not isinstance(answer, dict) or not answer.get("id"):
        raise ProvisionError("POST /api/session did not return a session id")
    mb.session_id = str(answer["id"])
