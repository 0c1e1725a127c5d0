"""CoinCap's numbers reach raw exactly as sent, in-process: the client reads JSON numbers as their
text (parse_float=str), and `_with_text_values` writes integers, booleans and the declared
objects as JSON text, so no digit is lost and a field whose type changes keeps one column. (What
the marts make of these texts is dbt's, tested end to end in tests/test_numbers.py.)"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from ingest.coincap import _asset_rows, _history_rows, _with_text_values
from ingest.coincap.helpers import CoinCapClient
from ingest.coincap.settings import ASSET_TEXT_FIELDS, HISTORY_TEXT_FIELDS


def answer_of(json_text: str) -> dict[str, Any]:
    """CoinCapClient's reading of an HTTP 200 answer with this body (no request is sent)."""
    response = requests.models.Response()
    response.status_code = 200
    response._content = json_text.encode()
    response.request = requests.Request("GET", "http://coincap.invalid/v3/assets").prepare()
    return CoinCapClient("the-key", "http://coincap.invalid/v3")._parse(response)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ('"80399.570000000006984919"', "80399.570000000006984919"),  # CoinCap's usual string
        ("80399.570000000006984919", "80399.570000000006984919"),  # a JSON number: no float
        ("1.58e-05", "1.58e-05"),  # exponent form, as sent
        ("1E+7", "1E+7"),
        ("-0.0", "-0.0"),
        ("1e400", "1e400"),  # beyond a double: still its text
        ("123456789012345678901234567890", "123456789012345678901234567890"),  # a big integer
        ("42", "42"),
        ("NaN", "NaN"),  # JSON's non-standard constants, as their text too
        ("Infinity", "Infinity"),
        ('"1.5 "', "1.5 "),  # a string is never touched (dbt holds back what is not a number)
        ("true", "true"),
        ("null", None),
    ],
)
def test_an_asset_value_reaches_raw_as_the_text_coincap_sent(sent: str, stored: Any) -> None:
    now = int(time.time() * 1000)
    body = answer_of(f'{{"data": [{{"id": "bitcoin", "priceUsd": {sent}}}], "timestamp": {now}}}')
    (row,) = _asset_rows(body, ("bitcoin",))
    assert row["priceUsd"] == stored


def test_a_history_point_keeps_its_values_as_text_and_its_time_as_an_integer() -> None:
    now = int(time.time() * 1000)
    body = answer_of(
        f'{{"data": [{{"priceUsd": 0.000015800000000001, "time": 300000, '
        f'"circulatingSupply": 21000000, "date": "1970-01-01T00:05:00.000Z"}}], '
        f'"timestamp": {now}}}'
    )
    (row,) = _history_rows(body, "dogecoin", 1, 300_000)
    assert row == {
        "priceUsd": "0.000015800000000001",
        "time": 300_000,
        "circulatingSupply": "21000000",
        "date": "1970-01-01T00:05:00.000Z",
        "asset_id": "dogecoin",
        "coincap_timestamp": now,
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (7, "7"),
        (10**30, "1000000000000000000000000000000"),
        (-3, "-3"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_integers_and_booleans_become_their_json_text(value: Any, text: str) -> None:
    assert _with_text_values({"supply": value}, ASSET_TEXT_FIELDS) == {"supply": text}


def test_strings_and_nulls_are_kept_as_they_are() -> None:
    item = {"priceUsd": "0.1", "maxSupply": None, "name": ""}
    assert _with_text_values(item, ASSET_TEXT_FIELDS) == item


def test_objects_become_text_only_in_declared_text_fields() -> None:
    item = {"explorer": ["https://a", "https://b"], "tokens": {"eth": "0x1"}}
    assert _with_text_values(item, ASSET_TEXT_FIELDS) == {
        "explorer": '["https://a", "https://b"]',
        "tokens": {"eth": "0x1"},
    }
    point = {"priceUsd": {"usd": "1"}, "extra": [1, 2]}
    assert _with_text_values(point, HISTORY_TEXT_FIELDS) == {
        "priceUsd": '{"usd": "1"}',
        "extra": [1, 2],
    }


def test_with_text_values_leaves_the_item_it_was_given_unchanged() -> None:
    item = {"rank": 1}
    _with_text_values(item, ASSET_TEXT_FIELDS)
    assert item == {"rank": 1}
