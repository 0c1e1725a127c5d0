"""HTTP client for the CoinCap v3 REST API: authentication, retries, credits and answer checks.

CoinCap is a stranger: any field of any answer may be odd. What this module lets through is a JSON
object whose `timestamp` is plausible milliseconds; everything else about the answer is checked
where it is used (ingest/coincap/__init__.py) or by dbt (staging's checks of the numbers).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dlt.sources.helpers.requests import Client
from requests import PreparedRequest, RequestException, Response
from requests.adapters import HTTPAdapter

from ingest.coincap.settings import (
    API_KEY_HELP,
    BACKOFF_FACTOR,
    BYTES_PER_CREDIT,
    CREDITS_PER_CALL,
    MAX_ATTEMPTS,
    MAX_CLOCK_SKEW_MS,
    MAX_RESPONSE_BYTES,
    MAX_RETRY_DELAY_S,
    QUOTA_WORDS,
    REQUEST_TIMEOUT_S,
)

logger = logging.getLogger("ingest")


class CoinCapError(Exception):
    """A failure talking to CoinCap. Its message is one line that says what to do."""


class CoinCapAuthError(CoinCapError):
    pass


class CoinCapUnavailableError(CoinCapError):
    """No usable answer after the retries: 429, 5xx, timeouts. `status` is the last HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CoinCapQuotaError(CoinCapUnavailableError):
    """CoinCap says the plan's credits are used up: retrying only burns calls."""


class CoinCapResponseError(CoinCapError):
    pass


class CoinCapNotFoundError(CoinCapResponseError):
    """HTTP 400 or 404: CoinCap does not know something in the request. `text` is its reason."""

    def __init__(self, message: str, text: str) -> None:
        super().__init__(message)
        self.text = text


def credits_for(response_bytes: int | None) -> int:
    """The credits CoinCap bills for one request whose answer had `response_bytes` bytes (None:
    no answer arrived; the call is counted, as CoinCap may have billed it). The one place the
    formula is applied; its source is in settings.py."""
    return CREDITS_PER_CALL + math.ceil((response_bytes or 0) / BYTES_PER_CREDIT)


@dataclass
class Meter:
    """What a cycle spent: every attempt (retries included), the bytes received, the credits."""

    requests: int = 0
    response_bytes: int = 0
    credits: int = 0

    def count(self, response_bytes: int | None) -> None:
        self.requests += 1
        self.response_bytes += response_bytes or 0
        self.credits += credits_for(response_bytes)


class _MeteredAdapter(HTTPAdapter):
    """Counts every attempt the retrying session sends, and reads each answer's body here, at most
    MAX_RESPONSE_BYTES of it, so credits follow the bytes of every attempt, retries included."""

    def __init__(self, meter: Meter) -> None:
        super().__init__()
        self.meter = meter

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        try:
            response = super().send(request, *args, **kwargs)
        except Exception:
            self.meter.count(None)
            raise
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                response.close()
                break
        response._content = bytes(body)  # what requests' own `content` would hold
        response._content_consumed = True  # type: ignore[attr-defined]
        self.meter.count(len(body))
        return response


class _MeteredClient(Client):
    """dlt's retrying client (429 unless it says the quota is used up, 5xx, timeouts, dropped
    connections; backoff honouring Retry-After) with every attempt going through the meter."""

    def __init__(self, meter: Meter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._adapter = _MeteredAdapter(meter)  # mounted by dlt on each session it makes


def _retry_429(response: Response | None, exception: BaseException | None) -> bool:
    """A 429 is worth retrying (a rate limit) unless its text says the quota is used up."""
    return response is not None and response.status_code == 429 and not _says_quota(response)


def _says_quota(response: Response) -> bool:
    text = response.content[:2000].decode("utf-8", "replace").lower()
    return any(word in text for word in QUOTA_WORDS)


class CoinCapClient:
    """GETs CoinCap endpoints with `Authorization: Bearer`, retrying through dlt's requests helper.

    `meter` counts every attempt, the bytes received and the credits they cost. `max_attempts=1`
    sends a single probe (while CoinCap's quota is used up). JSON numbers are read as their text
    (a float stays "1.58e-05", exactly as sent), so raw can keep every value as CoinCap sent it.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str,
        timeout_s: float = REQUEST_TIMEOUT_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.meter = Meter()
        self.max_attempts = max_attempts
        # the last "no usable answer" (429, 5xx, unreachable) of the cycle, for the quota logic
        self.last_unavailable: CoinCapUnavailableError | None = None
        # called with (path, the answer's bytes) for each answer returned (ingest/drift.py)
        self.on_answer: Callable[[str, bytes], None] | None = None
        # CoinCap's clock minus this machine's at the last answer (ms; ingest/clock.py)
        self.clock_skew_ms: int | None = None
        self._client = _MeteredClient(
            self.meter,
            request_timeout=timeout_s,
            raise_for_status=False,
            status_codes=tuple(range(500, 600)),  # 429: _retry_429 decides
            retry_condition=_retry_429,
            request_max_attempts=max_attempts,
            request_backoff_factor=BACKOFF_FACTOR,
            request_max_retry_delay=MAX_RETRY_DELAY_S,
            respect_retry_after_header=True,
            session_attrs={"headers": {"Authorization": f"Bearer {api_key}"}},
        )

    @property
    def requests_made(self) -> int:
        return self.meter.requests

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Returns the JSON object of a successful answer, or raises a CoinCapError."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            try:
                response = self._client.get(url, params=params, stream=True)
            except RequestException as exc:
                raise CoinCapUnavailableError(
                    f"CoinCap could not be reached at {self.base_url} after {self.max_attempts} "
                    f"attempt(s) ({type(exc).__name__}); check COINCAP_BASE_URL and the network, "
                    "the next cycle will try again"
                ) from None
            body = self._parse(response)
            if self.on_answer is not None:
                self.on_answer(path, response.content)
            return body
        except CoinCapUnavailableError as exc:
            self.last_unavailable = exc
            raise

    def _parse(self, response: Response) -> dict[str, Any]:
        status, where = response.status_code, _path(response)
        if status in (401, 403):
            raise CoinCapAuthError(
                f"CoinCap refused the API key (HTTP {status}{_reason(response)}); {API_KEY_HELP}"
            )
        if status == 429 and _says_quota(response):
            raise CoinCapQuotaError(
                f"CoinCap says the plan's credits are used up (HTTP 429{_reason(response)}); "
                "new figures wait until the plan renews or is upgraded at "
                "https://pro.coincap.io/dashboard",
                status,
            )
        if status == 429 or status >= 500:
            raise CoinCapUnavailableError(
                f"CoinCap still answered HTTP {status}{_reason(response)} after "
                f"{self.max_attempts} attempt(s); if it persists check the key's credits, "
                "the next cycle will try again",
                status,
            )
        if status in (400, 404):
            raise CoinCapNotFoundError(
                f"CoinCap answered HTTP {status}{_reason(response)} to {where}; "
                "check COINCAP_BASE_URL and COINCAP_ASSET_IDS",
                _reason(response).removeprefix(": "),
            )
        if status != 200:
            raise CoinCapResponseError(
                f"CoinCap answered HTTP {status}{_reason(response)} to {where}; "
                "check COINCAP_BASE_URL and COINCAP_ASSET_IDS"
            )
        if len(response.content) > MAX_RESPONSE_BYTES:
            raise CoinCapResponseError(
                f"CoinCap sent more than {MAX_RESPONSE_BYTES // 1024 // 1024} MB to {where}; "
                "nothing of it was loaded, the next cycle asks again"
            )
        try:
            body = json.loads(response.content, parse_float=str, parse_constant=str)
        except ValueError:  # also bytes that are not UTF-8
            raise CoinCapResponseError(
                f"CoinCap sent an unexpected response to {where}: the body is not JSON "
                f"(content-type {response.headers.get('Content-Type', 'unknown')}); "
                "check COINCAP_BASE_URL points at the v3 API"
            ) from None
        if not isinstance(body, dict) or "data" not in body:
            raise CoinCapResponseError(
                f"CoinCap sent an unexpected response to {where}: no `data` in the JSON; "
                "check COINCAP_BASE_URL points at the v3 API"
            )
        timestamp = check_timestamp(body.get("timestamp"), where)
        self.clock_skew_ms = timestamp - int(time.time() * 1000)
        body, replaced = _storable(body)
        if replaced:
            logger.warning(
                "CoinCap's answer to %s held %d text value(s) with NUL bytes or broken UTF-16; "
                "those characters are stored as U+FFFD (no warehouse can store them as sent)",
                where,
                replaced,
            )
        return body


def check_timestamp(timestamp: Any, where: str) -> int:
    """CoinCap's `timestamp` when it is plausible milliseconds: an integer within
    MAX_CLOCK_SKEW_MS of this machine's clock. Anything else fails the cycle before anything is
    loaded: a gap computed from it could ask for years of history."""
    host_ms = int(time.time() * 1000)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to {where}: `timestamp` is "
            f"{str(timestamp)[:40]!r}, not milliseconds since the epoch; nothing was loaded, "
            "the next cycle tries again"
        )
    if abs(timestamp - host_ms) > MAX_CLOCK_SKEW_MS:
        shown = str(timestamp) if len(str(timestamp)) <= 20 else f"{str(timestamp)[:20]}…"
        raise CoinCapResponseError(
            f"CoinCap's `timestamp` {shown} in its answer to {where} is "
            f"{_far(timestamp - host_ms)} this machine's clock "
            f"({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(host_ms / 1000))}), more than "
            f"the {MAX_CLOCK_SKEW_MS // 3_600_000} h allowed; nothing was loaded. If this "
            "machine's clock is wrong, fix it (NTP); otherwise the next cycle tries again"
        )
    return timestamp


def _far(delta_ms: int) -> str:
    days = abs(delta_ms) / 86_400_000
    amount = f"{days:.1f} days" if days < 36_500 else "centuries"
    return f"{amount} {'ahead of' if delta_ms > 0 else 'behind'}"


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> tuple[Any, int]:
    """`value` with NUL characters and lone UTF-16 surrogates (which PostgreSQL's text, UTF-8
    and so dlt's load files cannot hold) replaced by U+FFFD, and how many strings changed."""
    if isinstance(value, str):
        fixed = _UNSTORABLE.sub("\ufffd", value)
        return fixed, int(fixed != value)
    if isinstance(value, dict):
        out, total = {}, 0
        for key, item in value.items():
            fixed_key, n_key = _storable(key)
            out[fixed_key], n_item = _storable(item)
            total += n_key + n_item
        return out, total
    if isinstance(value, list):
        items = [_storable(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    return value, 0


def _reason(response: Response) -> str:
    """CoinCap's own error text (`{"error": "..."}`), shortened to keep the line readable."""
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return ""
    if error is None:
        return ""
    text = " ".join(_UNSTORABLE.sub("", str(error)).split())
    return f": {text[:120]}" if text else ""


def _path(response: Response) -> str:
    return response.request.path_url.split("?")[0] if response.request else "CoinCap"
