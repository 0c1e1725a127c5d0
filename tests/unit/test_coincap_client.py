"""ingest/coincap/helpers.py in-process: credits per request, the answer checks of CoinCapClient
(status codes, size, JSON, `timestamp`), the quota wording of a 429 and the characters no
warehouse can store. Answers are `requests.Response` objects built here; nothing is sent."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from ingest.coincap.helpers import (
    CoinCapAuthError,
    CoinCapClient,
    CoinCapNotFoundError,
    CoinCapQuotaError,
    CoinCapResponseError,
    CoinCapUnavailableError,
    Meter,
    _reason,
    _retry_429,
    _says_quota,
    _storable,
    check_timestamp,
    credits_for,
)

BASE = "http://coincap.invalid/v3"  # never contacted: the answers are built in-process
HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def response(
    status: int,
    body: bytes | str | dict[str, Any] | list[Any],
    path: str = "/v3/assets?ids=bitcoin",
    content_type: str = "application/json",
) -> requests.Response:
    answer = requests.models.Response()
    answer.status_code = status
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    answer._content = body.encode() if isinstance(body, str) else body
    answer.headers["Content-Type"] = content_type
    answer.request = requests.Request("GET", f"http://coincap.invalid{path}").prepare()
    return answer


def parse(answer: requests.Response) -> dict[str, Any]:
    return CoinCapClient("the-key", BASE)._parse(answer)


# --------------------------------------------------------------------------- credits
@pytest.mark.parametrize(
    ("response_bytes", "cost"),
    [
        (None, 1),  # no answer arrived: the call is still counted
        (0, 1),
        (1, 2),  # any byte starts a credit: rounded up
        (2500, 2),
        (2501, 3),
        (5000, 3),
        (42_048, 18),  # a one-day m5 window
    ],
)
def test_credits_are_one_per_call_plus_one_per_started_2500_bytes(
    response_bytes: int | None, cost: int
) -> None:
    assert credits_for(response_bytes) == cost


def test_the_meter_counts_every_attempt_its_bytes_and_credits() -> None:
    meter = Meter()
    for size in (2501, None, 100):
        meter.count(size)
    assert (meter.requests, meter.response_bytes, meter.credits) == (3, 2601, 3 + 1 + 2)


# --------------------------------------------------------------------------- the timestamp
def test_a_timestamp_in_milliseconds_near_this_clock_is_accepted() -> None:
    now = now_ms()
    assert check_timestamp(now, "/assets") == now
    assert check_timestamp(now - 23 * HOUR_MS, "/assets") == now - 23 * HOUR_MS  # within a day


@pytest.mark.parametrize(
    ("timestamp", "says"),
    [
        (lambda now: now // 1000, "days behind this machine's clock"),  # seconds, not ms
        (lambda now: now + 2 * 24 * HOUR_MS, "2.0 days ahead of this machine's clock"),
        (lambda now: now - 25 * HOUR_MS, "1.0 days behind"),
        (lambda now: 2**64, "centuries ahead of"),  # beyond 64 bits
        (lambda now: 10**30, "`timestamp` 10000000000000000000… in its answer"),
    ],
)
def test_an_implausible_timestamp_fails_the_answer(timestamp: Any, says: str) -> None:
    with pytest.raises(CoinCapResponseError) as caught:
        check_timestamp(timestamp(now_ms()), "/assets")
    assert says in str(caught.value)
    assert "nothing was loaded" in str(caught.value)


@pytest.mark.parametrize("timestamp", [True, None, "1780000000000", 1.78e12, [1]])
def test_a_timestamp_that_is_not_an_integer_fails_the_answer(timestamp: Any) -> None:
    with pytest.raises(CoinCapResponseError, match="not milliseconds since the epoch"):
        check_timestamp(timestamp, "/assets")


# --------------------------------------------------------------------------- a 429's wording
@pytest.mark.parametrize(
    ("body", "quota"),
    [
        ('{"error": "Monthly credit limit exceeded"}', True),
        ('{"error": "Quota exhausted for this API key"}', True),
        ("You have used all your CREDITS", True),
        ('{"error": "Too many requests, slow down"}', False),
        ("", False),
        ("x" * 2000 + " quota", False),  # only the start of the body is read
    ],
)
def test_a_429_says_quota_only_when_its_text_says_so(body: str, quota: bool) -> None:
    answer = response(429, body)
    assert _says_quota(answer) is quota
    assert _retry_429(answer, None) is (not quota)  # a rate limit is retried, a quota is not


@pytest.mark.parametrize("status", [200, 500, 503])
def test_only_a_429_is_retried_by_the_429_rule(status: int) -> None:
    assert _retry_429(response(status, "rate limit"), None) is False
    assert _retry_429(None, ConnectionError()) is False


# --------------------------------------------------------------------------- CoinCap's reason
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"error": "asset not found"}', ": asset not found"),
        ('{"error": "two\\nlines\\u0000 here"}', ": two lines here"),
        ('{"error": "' + "e" * 200 + '"}', ": " + "e" * 120),
        ("<html>Bad Gateway</html>", ""),
        ('["a list"]', ""),
        ('{"error": ""}', ""),
    ],
)
def test_coincaps_error_text_is_one_short_line(body: str, reason: str) -> None:
    assert _reason(response(404, body)) == reason


@pytest.mark.parametrize("body", ["{}", '{"error": null}', '{"message": "Not Found"}'])
def test_an_answer_without_an_error_text_gives_no_reason(body: str) -> None:
    assert _reason(response(404, body)) == ""


# --------------------------------------------------------------------------- the answer checks
def test_a_good_answer_is_its_json_object() -> None:
    now = now_ms()
    body = {"data": [{"id": "bitcoin", "priceUsd": "1"}], "timestamp": now}
    assert parse(response(200, body)) == body


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_says_how_to_get_one(status: int) -> None:
    with pytest.raises(CoinCapAuthError) as caught:
        parse(response(status, {"error": "Invalid API key"}))
    assert str(caught.value) == (
        f"CoinCap refused the API key (HTTP {status}: Invalid API key); get a key at "
        "https://pro.coincap.io/dashboard and set COINCAP_API_KEY"
    )


def test_a_429_about_credits_is_the_quota() -> None:
    with pytest.raises(CoinCapQuotaError) as caught:
        parse(response(429, {"error": "monthly credits exhausted"}))
    assert caught.value.status == 429
    assert "CoinCap says the plan's credits are used up (HTTP 429: monthly credits exhausted)" in (
        str(caught.value)
    )


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_a_429_or_5xx_after_the_retries_is_unavailable(status: int) -> None:
    with pytest.raises(CoinCapUnavailableError) as caught:
        parse(response(status, {"error": "slow down"}))
    assert type(caught.value) is CoinCapUnavailableError
    assert caught.value.status == status
    assert f"CoinCap still answered HTTP {status}: slow down after 5 attempt(s)" in str(
        caught.value
    )


@pytest.mark.parametrize("status", [400, 404])
def test_a_400_or_404_names_the_path_and_keeps_coincaps_reason(status: int) -> None:
    with pytest.raises(CoinCapNotFoundError) as caught:
        parse(response(status, {"error": "unknown asset: polygon"}))
    assert caught.value.text == "unknown asset: polygon"
    assert str(caught.value) == (
        f"CoinCap answered HTTP {status}: unknown asset: polygon to /v3/assets; "
        "check COINCAP_BASE_URL and COINCAP_ASSET_IDS"
    )


def test_another_status_is_an_unexpected_answer() -> None:
    with pytest.raises(CoinCapResponseError) as caught:
        parse(response(302, ""))
    assert type(caught.value) is CoinCapResponseError
    assert str(caught.value).startswith("CoinCap answered HTTP 302 to /v3/assets;")


def test_an_answer_over_10_mb_is_not_loaded() -> None:
    with pytest.raises(CoinCapResponseError, match="more than 10 MB to /v3/assets"):
        parse(response(200, b" " * (10 * 1024 * 1024 + 1)))


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html>maintenance</html>", "text/html"), (b"\xff\xfe{}", "application/json")],
)
def test_a_body_that_is_not_json_says_what_came(body: bytes, content_type: str) -> None:
    with pytest.raises(CoinCapResponseError) as caught:
        parse(response(200, body, content_type=content_type))
    assert f"the body is not JSON (content-type {content_type})" in str(caught.value)


@pytest.mark.parametrize("body", [[{"id": "bitcoin"}], {"assets": []}, "1"])
def test_json_without_data_is_an_unexpected_answer(body: Any) -> None:
    with pytest.raises(CoinCapResponseError, match="no `data` in the JSON"):
        parse(response(200, body))


def test_an_answer_with_a_timestamp_in_seconds_is_refused() -> None:
    with pytest.raises(CoinCapResponseError, match="days behind this machine's clock"):
        parse(response(200, {"data": [], "timestamp": now_ms() // 1000}))


def test_unstorable_characters_are_replaced_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = '{"data": [{"id": "bit\\u0000coin", "name": "\\ud800x"}], "timestamp": %d}' % now_ms()
    parsed = parse(response(200, body, path="/v3/assets"))
    assert parsed["data"] == [{"id": "bit\ufffdcoin", "name": "\ufffdx"}]
    assert "CoinCap's answer to /v3/assets held 2 text value(s) with NUL bytes" in caplog.text


# --------------------------------------------------------------------------- _storable
@pytest.mark.parametrize(
    ("value", "fixed", "count"),
    [
        ("plain", "plain", 0),
        ("a\x00b\x00", "a\ufffdb\ufffd", 1),  # one string changed, however many characters
        ("\udfff", "\ufffd", 1),
        ({"k\x00": ["ok", "\ud800", 1, None]}, {"k\ufffd": ["ok", "\ufffd", 1, None]}, 2),
        (12, 12, 0),
        ([], [], 0),
    ],
)
def test_storable_replaces_nul_and_lone_surrogates_and_counts_the_strings(
    value: Any, fixed: Any, count: int
) -> None:
    assert _storable(value) == (fixed, count)
