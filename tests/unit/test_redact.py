"""ingest/alerts.py in-process: what `redact` takes out of every message, the alert texts, and the
last announced state read back from its file. No webhook is posted to."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.alerts import STATE_FILE, _message, _read_state, hide, last_state, redact


@pytest.fixture(autouse=True)
def no_secrets_after() -> Iterator[None]:
    """`hide` sets a module-wide list: each test starts and ends without secrets."""
    hide(())
    yield
    hide(())


# --------------------------------------------------------------------------- redact
def test_hidden_secret_values_are_replaced_wherever_they_appear() -> None:
    hide(("key-7f3a9c", "pg-pass-2024"))
    text = "auth with key-7f3a9c failed; dsn pipeline:pg-pass-2024@db; key-7f3a9c again"
    assert redact(text) == "auth with *** failed; dsn pipeline:***@db; *** again"


def test_without_hidden_secrets_ordinary_text_is_unchanged() -> None:
    text = "dbt build failed: model.coincap_elt.stg_assets: Database Error"
    assert redact(text) == text


def test_hide_replaces_the_previous_secrets() -> None:
    hide(("first-secret",))
    hide(("second-secret",))
    assert redact("first-secret second-secret") == "first-secret ***"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "could not connect to postgresql://pipeline:s3cret@db:5432/coincap",
            "could not connect to postgresql://***@db:5432/coincap",
        ),
        ("GET https://user@example.com/x", "GET https://***@example.com/x"),
        ("see https://example.com/a@b", "see https://example.com/a@b"),  # @ after the host
        (
            "GET /v3/assets?ids=bitcoin&api_key=abc123&x=1",
            "GET /v3/assets?ids=bitcoin&api_key=***&x=1",
        ),
        ("apikey=abc123 token=t0k3n", "apikey=*** token=***"),
        ("PASSWORD=hunter2, Secret=xyz", "PASSWORD=*** Secret=***"),
        ("Authorization: Bearer eyJhbGciOi.x.y done", "Authorization: Bearer *** done"),
        ("authorization: bearer abc", "authorization: Bearer ***"),
    ],
)
def test_url_credentials_key_parameters_and_bearer_tokens_are_taken_out(
    text: str, redacted: str
) -> None:
    assert redact(text) == redacted


def test_a_message_is_one_line() -> None:
    assert redact("first\n  second\r\n\tthird  ") == "first second third"


def test_a_long_message_is_cut_with_an_ellipsis_at_the_limit() -> None:
    cut = redact("x" * 600)
    assert len(cut) == 500
    assert cut == "x" * 499 + "…"
    assert redact("y" * 50, limit=20) == "y" * 19 + "…"


def test_a_message_at_the_limit_is_not_cut() -> None:
    assert redact("z" * 500) == "z" * 500


def test_secrets_are_taken_out_before_the_message_is_cut() -> None:
    hide(("abcdefghij",))
    assert redact("a" * 10 + " abcdefghij", limit=15) == "a" * 10 + " ***"


# --------------------------------------------------------------------------- the alert texts
WHERE = f"CoinCap ELT (postgres on {socket.gethostname()})"


@pytest.mark.parametrize(
    ("state", "text"),
    [
        ("failed", f":red_circle: {WHERE}: a cycle failed. the ingest step failed"),
        ("stale", f":warning: {WHERE}: CoinCap data is stale. the ingest step failed"),
        ("quota", f":no_entry: {WHERE}: CoinCap's credits are used up. the ingest step failed"),
    ],
)
def test_an_alert_says_what_happened_where(state: str, text: str) -> None:
    previous = {"state": "ok", "since": ""}
    assert _message(state, previous, "the ingest step failed", "postgres") == text


def test_a_recovery_says_what_it_recovered_from_and_since_when() -> None:
    previous = {"state": "failed", "since": "2026-05-28T20:26:40+00:00"}
    assert _message("ok", previous, "", "postgres") == (
        f":large_green_circle: {WHERE}: recovered; the last cycle succeeded and the data is "
        "fresh (was failed since 2026-05-28T20:26:40+00:00)."
    )
    assert _message("ok", {"state": "stale", "since": ""}, "", "postgres").endswith("(was stale).")


def test_an_alert_never_carries_a_secret() -> None:
    hide(("key-7f3a9c",))
    detail = "CoinCap refused key-7f3a9c at https://u:p@rest.coincap.io/v3\nsecond line"
    text = _message("failed", {"state": "ok", "since": ""}, detail, "duckdb")
    assert "key-7f3a9c" not in text and "u:p@" not in text
    assert text.endswith("CoinCap refused *** at https://***@rest.coincap.io/v3 second line")


def test_an_alert_is_cut_at_600_characters() -> None:
    text = _message("failed", {"state": "ok", "since": ""}, "e" * 1000, "duckdb")
    assert len(text) == 600 and text.endswith("e…")


# --------------------------------------------------------------------------- the state file
def test_no_state_file_means_ok_since_never(tmp_path: Path) -> None:
    assert last_state(tmp_path) == {"state": "ok", "since": ""}


@pytest.mark.parametrize("state", ["ok", "failed", "stale", "quota"])
def test_the_last_announced_state_is_read_back(tmp_path: Path, state: str) -> None:
    written = {"state": state, "since": "2026-05-28T22:26:40+02:00"}
    (tmp_path / STATE_FILE).write_text(json.dumps(written) + "\n")
    assert last_state(tmp_path) == written


@pytest.mark.parametrize(
    "content",
    ['{"state": "exploded", "since": ""}', "not json", '["failed"]', '"failed"', ""],
)
def test_an_unreadable_state_file_means_ok(tmp_path: Path, content: str) -> None:
    path = tmp_path / STATE_FILE
    path.write_text(content)
    assert _read_state(path) == {"state": "ok", "since": ""}


def test_a_state_path_that_is_a_directory_means_ok(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).mkdir()
    assert last_state(tmp_path) == {"state": "ok", "since": ""}
