"""What of CoinCap's answers becomes raw rows, in-process: the assets asked for (_asset_rows), the
history points inside the window asked for (_history_rows), one history fetch's outcomes per
window (fetch_history) and the /assets request that drops ids CoinCap refuses (_get_assets), with
a stand-in client that answers from a list, not over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from ingest.coincap import (
    HistoryWindow,
    _asset_rows,
    _get_assets,
    _history_rows,
    fetch_history,
)
from ingest.coincap.helpers import (
    CoinCapAuthError,
    CoinCapNotFoundError,
    CoinCapResponseError,
    CoinCapUnavailableError,
    Meter,
)

TS = 1_780_000_000_000
SLOT = 5 * 60 * 1000


def asset(asset_id: Any, **fields: Any) -> dict[str, Any]:
    return {"id": asset_id, "priceUsd": "1.5", **fields}


# --------------------------------------------------------------------------- _asset_rows
def test_the_assets_asked_for_are_kept_once_each_in_the_answers_order() -> None:
    body = {"data": [asset("ethereum"), asset("bitcoin")], "timestamp": TS}
    rows = _asset_rows(body, ("bitcoin", "ethereum"))
    assert [row["id"] for row in rows] == ["ethereum", "bitcoin"]


def test_ids_not_asked_for_are_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    body = {"data": [asset("bitcoin"), asset("shiba-inu"), asset("pepe")], "timestamp": TS}
    rows = _asset_rows(body, ("bitcoin",))
    assert [row["id"] for row in rows] == ["bitcoin"]
    assert (
        "CoinCap sent figures for pepe, shiba-inu, not asked for (check COINCAP_ASSET_IDS); "
        "ignored" in caplog.text
    )


def test_a_repeated_id_keeps_the_first(caplog: pytest.LogCaptureFixture) -> None:
    body = {
        "data": [asset("bitcoin", priceUsd="1"), asset("bitcoin", priceUsd="2")],
        "timestamp": TS,
    }
    rows = _asset_rows(body, ("bitcoin",))
    assert rows == [{"id": "bitcoin", "priceUsd": "1"}]
    assert "CoinCap sent bitcoin more than once in one answer; the first is kept" in caplog.text


@pytest.mark.parametrize("odd", [asset(None), asset(""), asset(42), {"priceUsd": "1"}, "bitcoin"])
def test_entries_without_a_usable_id_are_left_out(
    odd: Any, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"data": [odd, asset("bitcoin")], "timestamp": TS}
    assert [row["id"] for row in _asset_rows(body, ("bitcoin",))] == ["bitcoin"]
    assert "CoinCap sent 1 asset(s) without an id; left out" in caplog.text


def test_none_of_the_configured_assets_fails_the_answer() -> None:
    body = {"data": [asset("shiba-inu")], "timestamp": TS}
    with pytest.raises(CoinCapResponseError) as caught:
        _asset_rows(body, ("bitcoin", "polygon"))
    assert str(caught.value) == (
        "CoinCap returned none of the configured assets (bitcoin, polygon); check "
        "COINCAP_ASSET_IDS against https://rest.coincap.io/v3/assets"
    )


def test_an_empty_answer_fails_too() -> None:
    with pytest.raises(CoinCapResponseError):
        _asset_rows({"data": [], "timestamp": TS}, ("bitcoin",))


def test_missing_assets_are_warned_and_the_others_still_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"data": [asset("bitcoin")], "timestamp": TS}
    rows = _asset_rows(body, ("bitcoin", "polygon", "fantom"))
    assert [row["id"] for row in rows] == ["bitcoin"]
    assert "CoinCap returned no figures for polygon, fantom; the other assets still load" in (
        caplog.text
    )


@pytest.mark.parametrize("data", [{"bitcoin": {}}, "bitcoin", None])
def test_data_that_is_not_a_list_fails_the_answer(data: Any) -> None:
    with pytest.raises(CoinCapResponseError, match="`data` is not a list of assets"):
        _asset_rows({"data": data, "timestamp": TS}, ("bitcoin",))


def test_asset_fields_keep_what_coincap_sent_as_text() -> None:
    body = {
        "data": [
            {
                "id": "bitcoin",
                "rank": 1,
                "priceUsd": "80399.570000000006984919",
                "maxSupply": None,
                "explorer": {"url": "https://x"},
                "tokens": {"eth": ["0xabc"]},
                "isActive": True,
                "newField": "kept",
            }
        ],
        "timestamp": TS,
    }
    (row,) = _asset_rows(body, ("bitcoin",))
    assert row == {
        "id": "bitcoin",
        "rank": "1",
        "priceUsd": "80399.570000000006984919",
        "maxSupply": None,
        "explorer": '{"url": "https://x"}',  # a declared text column: JSON text
        "tokens": {"eth": ["0xabc"]},  # not declared: stays JSON for dlt to keep as is
        "isActive": "true",
        "newField": "kept",
    }


# --------------------------------------------------------------------------- _history_rows
def point(at: Any, price: str = "100.5") -> dict[str, Any]:
    return {"priceUsd": price, "time": at, "date": "2026-05-28T20:25:00.000Z"}


def test_history_points_inside_the_window_become_rows() -> None:
    start, end = 10 * SLOT + 1, 12 * SLOT
    body = {"data": [point(11 * SLOT), point(12 * SLOT, "101")], "timestamp": TS}
    assert _history_rows(body, "bitcoin", start, end) == [
        {
            "priceUsd": "100.5",
            "time": 11 * SLOT,
            "date": "2026-05-28T20:25:00.000Z",
            "asset_id": "bitcoin",
            "coincap_timestamp": TS,
        },
        {
            "priceUsd": "101",
            "time": 12 * SLOT,
            "date": "2026-05-28T20:25:00.000Z",
            "asset_id": "bitcoin",
            "coincap_timestamp": TS,
        },
    ]


@pytest.mark.parametrize(
    "odd",
    [
        point(10 * SLOT),  # the window's start is after the mark: outside
        point(13 * SLOT),  # after the window's end
        point("3300000"),  # text, not an integer
        point("3.3e6"),  # a JSON float, read as its text
        point(True),  # a boolean is not milliseconds
        point(None),
        {"priceUsd": "1"},  # no time
        [11 * SLOT, "1"],  # not an object
    ],
)
def test_history_points_without_a_millisecond_time_inside_the_window_are_left_out(
    odd: Any, caplog: pytest.LogCaptureFixture
) -> None:
    start, end = 10 * SLOT + 1, 12 * SLOT
    body = {"data": [point(11 * SLOT), odd], "timestamp": TS}
    rows = _history_rows(body, "bitcoin", start, end)
    assert [row["time"] for row in rows] == [11 * SLOT]
    assert "CoinCap's history for bitcoin held 1 point(s) without a millisecond `time`" in (
        caplog.text
    )


def test_a_repeated_history_point_keeps_the_first(caplog: pytest.LogCaptureFixture) -> None:
    body = {"data": [point(SLOT, "1"), point(SLOT, "2"), point(2 * SLOT, "3")], "timestamp": TS}
    rows = _history_rows(body, "bitcoin", 1, 2 * SLOT)
    assert [(row["time"], row["priceUsd"]) for row in rows] == [(SLOT, "1"), (2 * SLOT, "3")]
    assert "held 1 point(s)" in caplog.text


def test_a_clean_history_answer_warns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    _history_rows({"data": [point(SLOT)], "timestamp": TS}, "bitcoin", 1, SLOT)
    assert caplog.text == ""


def test_history_data_that_is_not_a_list_fails_the_answer() -> None:
    with pytest.raises(CoinCapResponseError, match="/assets/bitcoin/history: `data` is not a list"):
        _history_rows({"data": {}, "timestamp": TS}, "bitcoin", 1, SLOT)


# --------------------------------------------------------------------------- fetch_history
class StandInClient:
    """Answers each get() with the next of `answers` (a body, or an exception to raise) and
    counts `credits` per request in a real Meter: no HTTP."""

    def __init__(self, *answers: Any, cost: int = 18) -> None:
        self.answers, self.cost = list(answers), cost
        self.meter = Meter()
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        self.asked.append((path, params))
        self.meter.requests += 1
        self.meter.credits += self.cost
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def windows(*assets: str) -> list[HistoryWindow]:
    return [HistoryWindow(a, i * SLOT + 1, (i + 1) * SLOT) for i, a in enumerate(assets)]


def outcomes(results: list[Any]) -> list[tuple[str, str, int | None]]:
    return [(r.window.asset_id, r.outcome, r.credits) for r in results]


def test_each_window_is_one_request_for_its_m5_points() -> None:
    ws = windows("bitcoin", "ethereum")
    client = StandInClient(
        {"data": [point(SLOT)], "timestamp": TS}, {"data": [point(2 * SLOT)], "timestamp": TS}
    )
    results = list(fetch_history(client, ws, max_requests=10))
    assert outcomes(results) == [("bitcoin", "fetched", 18), ("ethereum", "fetched", 18)]
    assert client.asked == [
        ("/assets/bitcoin/history", {"interval": "m5", "start": 1, "end": SLOT}),
        ("/assets/ethereum/history", {"interval": "m5", "start": SLOT + 1, "end": 2 * SLOT}),
    ]
    assert [len(r.points) for r in results] == [1, 1]


def test_windows_over_the_request_budget_are_deferred() -> None:
    empty = {"data": [], "timestamp": TS}
    client = StandInClient(empty, empty)
    results = list(fetch_history(client, windows("a", "b", "c", "d"), max_requests=2))
    assert outcomes(results) == [
        ("a", "fetched", 18),
        ("b", "fetched", 18),
        ("c", "deferred", None),
        ("d", "deferred", None),
    ]
    assert client.meter.requests == 2


def test_after_a_400_or_404_an_assets_later_windows_are_not_asked() -> None:
    empty = {"data": [], "timestamp": TS}
    refused = CoinCapNotFoundError("HTTP 404", "asset not found")
    client = StandInClient(refused, empty)
    results = list(fetch_history(client, windows("gone", "gone", "bitcoin"), max_requests=10))
    assert outcomes(results) == [
        ("gone", "not_found", 18),
        ("gone", "not_found", None),
        ("bitcoin", "fetched", 18),
    ]
    assert [r.detail for r in results[:2]] == ["asset not found", "no history at CoinCap"]


def test_a_request_that_fails_its_retries_ends_the_runs_requests() -> None:
    down = CoinCapUnavailableError("CoinCap still answered HTTP 503 after 5 attempt(s)", 503)
    client = StandInClient(down)
    results = list(fetch_history(client, windows("a", "b", "c"), max_requests=10))
    assert outcomes(results) == [
        ("a", "failed", 18),
        ("b", "deferred", None),
        ("c", "deferred", None),
    ]
    assert results[0].detail == "CoinCap still answered HTTP 503 after 5 attempt(s)"
    assert client.meter.requests == 1


def test_an_answer_that_makes_no_sense_fails_like_an_outage() -> None:
    client = StandInClient({"data": "nonsense", "timestamp": TS})
    results = list(fetch_history(client, windows("a", "b"), max_requests=10))
    assert outcomes(results) == [("a", "failed", 18), ("b", "deferred", None)]


def test_a_refused_key_is_raised_not_recorded() -> None:
    client = StandInClient(CoinCapAuthError("CoinCap refused the API key (HTTP 401)"))
    with pytest.raises(CoinCapAuthError):
        list(fetch_history(client, windows("a"), max_requests=10))


# --------------------------------------------------------------------------- _get_assets
def test_assets_are_asked_for_in_one_request() -> None:
    body = {"data": [asset("bitcoin")], "timestamp": TS}
    client = StandInClient(body, cost=2)
    assert _get_assets(client, ("bitcoin", "ethereum")) == body
    assert client.asked == [("/assets", {"ids": "bitcoin,ethereum"})]


def test_ids_coincap_refuses_by_name_are_dropped_and_the_rest_asked_once_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = {"data": [asset("bitcoin")], "timestamp": TS}
    refused = CoinCapNotFoundError("HTTP 400", "unknown asset ids: polygon, fantom")
    client = StandInClient(refused, body)
    assert _get_assets(client, ("bitcoin", "polygon", "fantom", "polygon-ecosystem-token")) == body
    assert client.asked[1] == ("/assets", {"ids": "bitcoin,polygon-ecosystem-token"})
    assert (
        "CoinCap refused the request because of polygon, fantom (unknown asset ids: polygon, "
        "fantom); asking once more for the others" in caplog.text
    )


def test_an_id_is_only_named_as_a_whole_word() -> None:
    # "polygon-ecosystem-token" in CoinCap's text does not name "polygon"
    refused = CoinCapNotFoundError("HTTP 404", "unknown asset: polygon-ecosystem-token")
    client = StandInClient(refused, {"data": [], "timestamp": TS})
    _get_assets(client, ("polygon", "polygon-ecosystem-token"))
    assert client.asked[1] == ("/assets", {"ids": "polygon"})


@pytest.mark.parametrize(
    "text",
    ["", "bad request", "unknown asset ids: bitcoin, ethereum"],  # none named, or all of them
)
def test_a_refusal_naming_none_or_all_of_the_ids_is_raised(text: str) -> None:
    client = StandInClient(CoinCapNotFoundError("HTTP 400", text))
    with pytest.raises(CoinCapNotFoundError):
        _get_assets(client, ("bitcoin", "ethereum"))
    assert len(client.asked) == 1


# --------------------------------------------------------------------------- the tables' hints
@pytest.mark.parametrize("disposition", ["merge", "append"])
def test_the_keyed_tables_take_the_warehouses_write_disposition(
    tmp_path: Any, disposition: str
) -> None:
    """Merge by their keys, or (Spark's plain Parquet, which has no merge) append; the request
    log is appended everywhere."""
    import dlt

    from ingest.coincap import coincap

    client = StandInClient({"data": [{"id": "bitcoin", "priceUsd": "1.5"}], "timestamp": TS})
    client.base_url = "http://stand-in"  # type: ignore[attr-defined]
    source = coincap(client, ["bitcoin"], backfill_days=0, write_disposition=disposition)
    pipeline = dlt.pipeline("hints", pipelines_dir=str(tmp_path), dataset_name="raw")
    pipeline.extract(source)
    tables = pipeline.default_schema.tables
    assert tables["assets"]["write_disposition"] == disposition
    assert tables["asset_history"]["write_disposition"] == disposition
    assert tables["asset_history_requests"]["write_disposition"] == "append"
