"""Alerts: a short Slack-compatible message (`{"text": ...}`) to ALERT_WEBHOOK_URL when the
pipeline's state changes, never every 5 minutes.

States: `ok` (the cycle succeeded and CoinCap's data is fresh), `failed` (the ingest or `dbt build`
failed), `stale` (the cycle succeeded but `dbt source freshness` failed) and `quota` (CoinCap's
credits are used up: cycles probe it, spaced out, until it answers again; ingest/quota.py).
Besides the state, `notify_once` sends a message once per period (the credit budget: once a
month). The last state announced is kept in `$COINCAP_RUN_DIR/alert_state`; a message goes out
only when the new state differs (to `ok`: "recovered"). A webhook that cannot be reached never
fails the cycle: the state file then keeps the old state, so the next cycle tries again. The text
never carries the API key, a password or a URL with credentials (`redact`).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.config import Settings

logger = logging.getLogger("ingest.alerts")

STATE_FILE = "alert_state"
WEBHOOK_TIMEOUT_S = 10.0
# the values of the secret settings (ingest/config.py, SECRET_VARIABLES), set once by the command
# line from its Settings (`hide`): `redact` takes them out of every message
_secrets: tuple[str, ...] = ()
_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_KEY_PARAMETER = re.compile(r"(?i)\b(api_?key|token|password|secret)=[^&\s]+")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


def hide(secrets: tuple[str, ...]) -> None:
    """The secret values `redact` takes out (Settings.secrets): called once per process."""
    global _secrets
    _secrets = tuple(secrets)


def redact(text: str, limit: int = 500) -> str:
    """`text` without secret values, URL credentials (`scheme://user:pass@`), key parameters or
    bearer tokens, on one line of at most `limit` characters."""
    for value in _secrets:
        text = text.replace(value, "***")
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _KEY_PARAMETER.sub(lambda m: f"{m.group(1)}=***", text)
    text = _BEARER.sub("Bearer ***", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notify(settings: Settings, state: str, detail: str) -> None:
    """Announces `state` ("ok", "failed" or "stale"; `detail` says why) when it differs from the
    last one announced. Without ALERT_WEBHOOK_URL the state is only remembered."""
    announce(settings.run_dir, settings.alert_webhook_url, settings.warehouse.engine, state, detail)


def announce(run_dir: Path, url: str, warehouse: str, state: str, detail: str) -> None:
    """`notify` for a run directory and webhook URL, also when the settings could not be read
    (a cycle stopped by a wrong setting is a failed cycle to its operator)."""
    path = run_dir / STATE_FILE
    previous = _read_state(path)
    if state == previous["state"]:
        return
    text = _message(state, previous, detail, warehouse) if url else ""
    _change(path, state, previous, url, text, state)


def notify_once(settings: Settings, topic: str, period: str, text: str) -> None:
    """Sends `text` once per `period` (e.g. "2026-11") for `topic`; remembered in
    $COINCAP_RUN_DIR/alert_<topic>. Without ALERT_WEBHOOK_URL nothing is sent or remembered."""
    url, warehouse = settings.alert_webhook_url, settings.warehouse.engine
    path = settings.run_dir / f"{STATE_FILE}_{topic}"
    try:
        if not url or path.read_text().strip() == period:
            return
    except OSError:
        pass
    where = f"CoinCap ELT ({warehouse} on {socket.gethostname()})"
    if _post(url, redact(f":warning: {where}: {text}", limit=600)):
        logger.info("alert sent: %s for %s", topic, period)
        path.write_text(period + "\n")


def announce_change(settings: Settings, topic: str, state: str, text: str) -> None:
    """A state-change alert beside the cycle's (the backups': ingest/backup_watch.py): `text`
    goes out when `state` ("ok" or a problem) differs from the last one announced for `topic`,
    kept in $COINCAP_RUN_DIR/alert_state_<topic> (no file: ok). Without ALERT_WEBHOOK_URL the
    state is only remembered; when the webhook fails the old state stays, so the next report
    tries again."""
    path = settings.run_dir / f"{STATE_FILE}_{topic}"
    previous = _read_state(path, states=None)
    if state == previous["state"]:
        return
    url, message = settings.alert_webhook_url, ""
    if url:
        where = f"CoinCap ELT ({settings.warehouse.engine} on {socket.gethostname()})"
        if state == "ok":
            since = f" since {previous['since']}" if previous.get("since") else ""
            message = f":large_green_circle: {where}: {text} (was {previous['state']}{since})."
        else:
            message = f":red_circle: {where}: {text}"
        message = redact(message, limit=600)
    _change(path, state, previous, url, message, f"{topic} {state}")


def _change(
    path: Path, state: str, previous: dict[str, str], url: str, text: str, what: str
) -> None:
    """The one state-change mechanism of `announce` and `announce_change`: `text` goes to the
    webhook (when one is set), then `state` is remembered in `path` with its time. When the
    webhook fails the old state stays, so the next report tries again."""
    if url:
        if not _post(url, text):
            return  # keep the old state: the next cycle tries again
        logger.info("alert sent: %s (was %s)", what, previous["state"])
    now = datetime.now().astimezone().isoformat(timespec="seconds")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"state": state, "since": now}) + "\n")
    tmp.replace(path)


def _message(state: str, previous: dict[str, str], detail: str, warehouse: str) -> str:
    where = f"CoinCap ELT ({warehouse} on {socket.gethostname()})"
    if state == "failed":
        text = f":red_circle: {where}: a cycle failed. {detail}"
    elif state == "stale":
        text = f":warning: {where}: CoinCap data is stale. {detail}"
    elif state == "quota":
        text = f":no_entry: {where}: CoinCap's credits are used up. {detail}"
    else:
        since = f" since {previous['since']}" if previous.get("since") else ""
        text = (
            f":large_green_circle: {where}: recovered; the last cycle succeeded and the data is "
            f"fresh (was {previous['state']}{since})."
        )
    return redact(text, limit=600)


def _post(url: str, text: str) -> bool:
    request = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read(1024)
        return True
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = type(getattr(exc, "reason", exc)).__name__
    # never the URL itself: a Slack webhook URL is a secret
    logger.warning(
        "the alert could not be delivered to ALERT_WEBHOOK_URL (%s); the cycle goes on and the "
        "next one tries again",
        reason,
    )
    return False


def last_state(run_dir: Path) -> dict[str, str]:
    """The last state announced and since when (`since` is empty before the first change):
    what `coincap-elt status` shows. No file means `ok`, as for the next alert."""
    return _read_state(run_dir / STATE_FILE)


def _read_state(
    path: Path, states: tuple[str, ...] | None = ("ok", "failed", "stale", "quota")
) -> dict[str, str]:
    """The state remembered in `path` and since when; `states` are the ones it may hold (None:
    any). No file, or one that cannot be read, means `ok`."""
    try:
        state = json.loads(path.read_text())
        if isinstance(state, dict) and isinstance(state.get("state"), str):
            if states is None or state["state"] in states:
                return state
    except (OSError, ValueError):
        pass
    return {"state": "ok", "since": ""}
