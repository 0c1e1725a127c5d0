"""HTTP client for the CoinCap v3 REST API: authentication, retries and response checks."""

from __future__ import annotations

from typing import Any

from dlt.sources.helpers.requests import Client
from requests import RequestException, Response

from ingest.coincap.settings import (
    API_KEY_HELP,
    BACKOFF_FACTOR,
    MAX_ATTEMPTS,
    MAX_RETRY_DELAY_S,
    REQUEST_TIMEOUT_S,
)


class CoinCapError(Exception):
    """A failure talking to CoinCap. Its message is one line that says what to do."""


class CoinCapAuthError(CoinCapError):
    pass


class CoinCapUnavailableError(CoinCapError):
    pass


class CoinCapResponseError(CoinCapError):
    pass


class CoinCapClient:
    """GETs CoinCap endpoints with `Authorization: Bearer`, retrying through dlt's requests helper.

    dlt's `Client` retries 429, 5xx, timeouts and dropped connections with exponential backoff and
    honours `Retry-After`; this class only maps what is left after the retries to clear errors.
    """

    def __init__(self, api_key: str, base_url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.requests_made = 0
        self._client = Client(
            request_timeout=timeout_s,
            raise_for_status=False,
            request_max_attempts=MAX_ATTEMPTS,
            request_backoff_factor=BACKOFF_FACTOR,
            request_max_retry_delay=MAX_RETRY_DELAY_S,
            respect_retry_after_header=True,
            session_attrs={"headers": {"Authorization": f"Bearer {api_key}"}},
        )

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Returns the JSON object of a successful answer, or raises a CoinCapError."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        self.requests_made += 1
        try:
            response = self._client.get(url, params=params)
        except RequestException as exc:
            raise CoinCapUnavailableError(
                f"CoinCap could not be reached at {self.base_url} after {MAX_ATTEMPTS} attempts "
                f"({type(exc).__name__}); check COINCAP_BASE_URL and the network, "
                "the next cycle will try again"
            ) from None
        return _parse(response)


def _parse(response: Response) -> dict[str, Any]:
    status = response.status_code
    if status in (401, 403):
        raise CoinCapAuthError(
            f"CoinCap refused the API key (HTTP {status}{_reason(response)}); {API_KEY_HELP}"
        )
    if status == 429 or status >= 500:
        raise CoinCapUnavailableError(
            f"CoinCap still answered HTTP {status}{_reason(response)} after {MAX_ATTEMPTS} "
            "attempts; if it persists check the key's credits, the next cycle will try again"
        )
    if status != 200:
        raise CoinCapResponseError(
            f"CoinCap answered HTTP {status}{_reason(response)} to {_path(response)}; "
            "check COINCAP_BASE_URL and COINCAP_ASSET_IDS"
        )
    try:
        body = response.json()
    except ValueError:
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to {_path(response)}: the body is not JSON "
            f"(content-type {response.headers.get('Content-Type', 'unknown')}); "
            "check COINCAP_BASE_URL points at the v3 API"
        ) from None
    if not isinstance(body, dict) or "data" not in body:
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to {_path(response)}: no `data` in the JSON; "
            "check COINCAP_BASE_URL points at the v3 API"
        )
    timestamp = body.get("timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to {_path(response)}: `timestamp` is "
            f"{timestamp!r}, not milliseconds since the epoch"
        )
    return body


def parse_assets(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The asset objects of an `/assets` answer; each must be an object with a string `id`."""
    data = body["data"]
    if not isinstance(data, list) or not all(
        isinstance(asset, dict) and isinstance(asset.get("id"), str) and asset["id"]
        for asset in data
    ):
        raise CoinCapResponseError(
            "CoinCap sent an unexpected response to /assets: `data` is not a list of assets "
            "with an `id`; check COINCAP_BASE_URL points at the v3 API"
        )
    return data


def _reason(response: Response) -> str:
    """CoinCap's own error text (`{"error": "..."}`), shortened to keep the line readable."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {str(error)[:120]}" if error else ""


def _path(response: Response) -> str:
    return response.request.path_url.split("?")[0] if response.request else "CoinCap"


def parse_history(body: dict[str, Any], asset_id: str) -> list[dict[str, Any]]:
    """The points of an `/assets/{id}/history` answer; each must carry an integer `time` (ms)."""
    data = body["data"]
    if not isinstance(data, list) or not all(
        isinstance(point, dict) and isinstance(point.get("time"), int) for point in data
    ):
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to /assets/{asset_id}/history: `data` is not a "
            "list of points with a `time`; check COINCAP_BASE_URL points at the v3 API"
        )
    return data
