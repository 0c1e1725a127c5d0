"""ingest/transform.py in-process: the one-line verdicts the cycle takes from dbt's results (the
build's failing nodes, the sources' freshness), with small stand-ins shaped like dbtRunner's
results (`.success`, `.exception`, `.result.results[i].status/.node/.message/.age`). dbt is not
invoked."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import pytest

from ingest.logs import first_line
from ingest.transform import _build_error, _freshness

SOURCE = "source.coincap_elt.raw.assets"


def run(results: list[Any] | None, success: bool = True, exception: Any = None) -> NS:
    """What dbtRunner.invoke returns."""
    return NS(success=success, exception=exception, result=NS(results=results))


def node_result(status: str, unique_id: str, message: str = "") -> NS:
    return NS(status=status, message=message, node=NS(unique_id=unique_id))


def freshness_result(
    status: str,
    age_s: float = 0.0,
    unique_id: str = SOURCE,
    warn: tuple[int | None, str] = (30, "minute"),
    error: tuple[int | None, str] = (2, "hour"),
) -> NS:
    limits = NS(
        warn_after=NS(count=warn[0], period=warn[1]),
        error_after=NS(count=error[0], period=error[1]),
    )
    return NS(status=status, age=age_s, node=NS(unique_id=unique_id, freshness=limits))


# --------------------------------------------------------------------------- build
def test_a_failed_build_names_the_first_failing_node_and_counts_the_others() -> None:
    build = run(
        [
            node_result("success", "model.coincap_elt.stg_assets"),
            node_result(
                "error", "model.coincap_elt.fct_asset_prices", "Database Error\n  column x"
            ),
            node_result("pass", "test.coincap_elt.not_null"),
            node_result("fail", "test.coincap_elt.unique_asset_slot", "Got 3 results"),
            node_result("runtime error", "snapshot.coincap_elt.s", "boom"),
        ],
        success=False,
    )
    assert _build_error(build) == (
        "dbt build failed: model.coincap_elt.fct_asset_prices and 2 more: Database Error",
        [
            "model.coincap_elt.fct_asset_prices",
            "test.coincap_elt.unique_asset_slot",
            "snapshot.coincap_elt.s",
        ],
    )


def test_a_single_failing_node_is_named_alone() -> None:
    build = run([node_result("fail", "test.coincap_elt.t", "Got 1 result")], success=False)
    assert _build_error(build) == (
        "dbt build failed: test.coincap_elt.t: Got 1 result",
        ["test.coincap_elt.t"],
    )


@pytest.mark.parametrize("results", [None, [], [node_result("skipped", "model.x")]])
def test_a_build_that_failed_before_any_node_says_why(results: list[Any] | None) -> None:
    build = run(results, success=False, exception="Compilation Error\n  in model x")
    assert _build_error(build) == (
        "dbt build failed before running any model or test (Compilation Error)",
        [],
    )
    no_reason = run(results, success=False)
    assert _build_error(no_reason)[0] == (
        "dbt build failed before running any model or test (see the lines above)"
    )


def test_a_build_error_line_is_at_most_500_characters() -> None:
    build = run([node_result("error", "model.coincap_elt.m", "e" * 1000)], success=False)
    line, _ = _build_error(build)
    # the message itself stops at 300 characters, the line at 500
    assert line == "dbt build failed: model.coincap_elt.m: " + "e" * 300


def test_a_build_result_without_a_message_still_names_the_node() -> None:
    build = run([node_result("error", "model.coincap_elt.m", "")], success=False)
    line, ids = _build_error(build)
    assert line == "dbt build failed: model.coincap_elt.m (see the lines above)"
    assert ids == ["model.coincap_elt.m"]


# --------------------------------------------------------------------------- freshness
def test_fresh_sources_pass() -> None:
    fresh = run([freshness_result("pass", 60), freshness_result("pass", 90)])
    assert _freshness(fresh) == ("pass", "")


def test_no_sources_with_freshness_and_success_pass() -> None:
    assert _freshness(run([])) == ("pass", "")
    assert _freshness(run(None)) == ("pass", "")


def test_freshness_that_failed_without_results_is_an_error_saying_why() -> None:
    fresh = run(None, success=False, exception="Runtime Error\nconnection refused")
    assert _freshness(fresh) == (
        "error",
        "dbt source freshness failed without results (Runtime Error)",
    )
    assert _freshness(run([], success=False))[1] == (
        "dbt source freshness failed without results (see the cycle's log)"
    )


def test_a_stale_source_is_named_with_its_age_and_limit() -> None:
    fresh = run([freshness_result("pass", 60), freshness_result("warn", 2400)])
    assert _freshness(fresh) == (
        "warn",
        "Source freshness warn: the newest figures in raw.assets are 40 min old (warn after "
        "30 minutes); check that CoinCap's timestamp moves and that cycles run.",
    )


def test_the_worst_source_decides_and_a_runtime_error_counts_as_error() -> None:
    fresh = run(
        [
            freshness_result("warn", 2400, "source.coincap_elt.raw.asset_history"),
            freshness_result("runtime error", 0, "source.coincap_elt.raw.assets"),
        ]
    )
    status, detail = _freshness(fresh)
    assert status == "error"
    assert detail.startswith("Source freshness error: the newest figures in raw.assets are 0 min")
    assert "(error after 2 hours)" in detail


def test_an_unknown_status_is_taken_as_an_error() -> None:
    assert _freshness(run([freshness_result("exploded", 7200)]))[0] == "error"


def test_a_source_without_a_limit_for_its_status_shows_none() -> None:
    fresh = run([freshness_result("warn", 5400, warn=(None, "minute"))])
    assert _freshness(fresh)[1] == (
        "Source freshness warn: the newest figures in raw.assets are 90 min old; check that "
        "CoinCap's timestamp moves and that cycles run."
    )


def test_results_of_nodes_without_freshness_are_ignored() -> None:
    fresh = run([node_result("error", "model.coincap_elt.m"), freshness_result("pass", 1)])
    assert _freshness(fresh) == ("pass", "")


# --------------------------------------------------------------------------- first_line
@pytest.mark.parametrize(
    ("value", "line"),
    [
        (None, "the default"),
        ("", "the default"),
        ("   \n  ", "the default"),
        ("  first\nsecond", "first"),
        (ValueError("bad value\ntraceback"), "bad value"),
        ("x" * 400, "x" * 300),
    ],
)
def test_first_line_is_the_first_line_of_the_text_or_the_default(value: Any, line: str) -> None:
    assert first_line(value, "the default") == line


def test_first_line_of_an_error_without_text_is_its_type() -> None:
    assert first_line(ConnectionRefusedError()) == "ConnectionRefusedError"
    assert first_line("") == ""
