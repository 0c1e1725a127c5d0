"""ingest/quota.py in-process: a rate limit is not an exhausted quota. The state machine is driven
with explicit `now_ms` values; the state file round trip uses a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.coincap.helpers import CoinCapQuotaError, CoinCapUnavailableError
from ingest.coincap.settings import MAX_ATTEMPTS
from ingest.quota import EXHAUSTED, OK, RATE_LIMITED, STATE_FILE, Quota

T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z
MINUTE = 60_000


def rate_limited() -> CoinCapUnavailableError:
    return CoinCapUnavailableError("CoinCap still answered HTTP 429 after 5 attempt(s)", 429)


def quota_said() -> CoinCapQuotaError:
    return CoinCapQuotaError("CoinCap says the plan's credits are used up", 429)


def test_a_fresh_quota_gives_the_normal_retries() -> None:
    quota = Quota()
    assert quota.state == OK
    assert quota.attempts(T0) == MAX_ATTEMPTS == 5


def test_one_cycle_ending_in_429_is_a_rate_limit_and_the_next_sends_one_probe() -> None:
    quota = Quota()
    assert quota.after(rate_limited(), T0) is None
    assert (quota.state, quota.since) == (RATE_LIMITED, "2026-05-28T20:26:40Z")
    assert quota.attempts(T0 + 5 * MINUTE) == 1


def test_a_429_through_two_cycles_is_an_exhausted_quota() -> None:
    quota = Quota()
    quota.after(rate_limited(), T0)
    line = quota.after(rate_limited(), T0 + 5 * MINUTE)
    assert quota.state == EXHAUSTED
    assert quota.since == "2026-05-28T20:26:40Z"  # the first 429, kept
    assert quota.pause_s == 15 * 60
    assert quota.next_probe_ms == T0 + 20 * MINUTE
    assert line == (
        "CoinCap has answered HTTP 429 since 2026-05-28T20:26:40Z, through a cycle's retries "
        "and into this one: taken as the monthly quota exhausted; cycles now send at most one "
        "probe request, the next at 2026-05-28T20:46:40Z (pauses double up to 6 h), until "
        "CoinCap answers again; check the plan at https://pro.coincap.io/dashboard"
    )


def test_a_429_that_says_the_credits_are_used_up_is_exhausted_at_once() -> None:
    quota = Quota()
    line = quota.after(quota_said(), T0)
    assert (quota.state, quota.pause_s, quota.next_probe_ms) == (EXHAUSTED, 900, T0 + 15 * MINUTE)
    assert line is not None
    assert line.startswith(
        "CoinCap says the plan's credits are used up: taken as the monthly quota exhausted;"
    )


def test_while_exhausted_no_request_goes_out_before_the_next_probe() -> None:
    quota = Quota()
    quota.after(quota_said(), T0)
    with pytest.raises(CoinCapQuotaError) as caught:
        quota.attempts(T0 + 15 * MINUTE - 1)
    assert caught.value.status == 429
    assert "the next probe is at 2026-05-28T20:41:40Z" in str(caught.value)
    assert "HTTP 429 since 2026-05-28T20:26:40Z" in str(caught.value)
    assert quota.attempts(T0 + 15 * MINUTE) == 1  # the probe: one attempt, no retries


def test_the_pause_between_probes_doubles_from_15_minutes_up_to_6_hours() -> None:
    quota, now, pauses = Quota(), T0, []
    for _ in range(8):
        quota.after(quota_said(), now)
        pauses.append(quota.pause_s)
        assert quota.next_probe_ms == now + quota.pause_s * 1000
        now = quota.next_probe_ms
    minutes = [p // 60 for p in pauses]
    assert minutes == [15, 30, 60, 120, 240, 360, 360, 360]


def test_any_answer_that_is_not_a_429_ends_the_exhausted_state() -> None:
    quota = Quota()
    quota.after(quota_said(), T0)
    quota.after(quota_said(), T0 + 15 * MINUTE)
    assert quota.after(None, T0 + 45 * MINUTE) is None
    assert quota == Quota()
    assert quota.attempts(T0 + 45 * MINUTE) == MAX_ATTEMPTS


def test_a_rate_limit_that_passes_goes_back_to_normal() -> None:
    quota = Quota()
    quota.after(rate_limited(), T0)
    quota.after(None, T0 + 5 * MINUTE)
    assert quota == Quota()


@pytest.mark.parametrize("status", [503, None])  # a 5xx, or CoinCap unreachable
def test_a_probe_that_meets_an_outage_keeps_the_pause_and_the_state(status: int | None) -> None:
    quota = Quota()
    quota.after(quota_said(), T0)
    quota.after(quota_said(), T0 + 15 * MINUTE)  # pause now 30 min
    outage = CoinCapUnavailableError("CoinCap could not be reached", status)
    assert quota.after(outage, T0 + 45 * MINUTE) is None
    assert (quota.state, quota.pause_s) == (EXHAUSTED, 30 * 60)
    assert quota.next_probe_ms == T0 + 75 * MINUTE
    assert quota.since == "2026-05-28T20:26:40Z"


def test_an_outage_while_rate_limited_is_not_taken_for_the_quota() -> None:
    quota = Quota()
    quota.after(rate_limited(), T0)
    quota.after(CoinCapUnavailableError("HTTP 503", 503), T0 + 5 * MINUTE)
    assert quota == Quota()


# --------------------------------------------------------------------------- the state file
def test_the_state_survives_a_save_and_a_load(tmp_path: Path) -> None:
    quota = Quota()
    quota.after(quota_said(), T0)
    quota.save(tmp_path / "run")
    assert Quota.load(tmp_path / "run") == quota
    assert json.loads((tmp_path / "run" / STATE_FILE).read_text()) == {
        "state": "exhausted",
        "since": "2026-05-28T20:26:40Z",
        "pause_s": 900,
        "next_probe_ms": T0 + 15 * MINUTE,
    }
    assert not list((tmp_path / "run").glob(".*.tmp"))


@pytest.mark.parametrize(
    "content",
    [
        None,  # no file
        "not json",
        '["exhausted"]',
        '{"state": "exhausted"}',  # fields missing
        '{"state": "banned", "since": "", "pause_s": 0, "next_probe_ms": 0}',
    ],
)
def test_a_missing_or_unreadable_state_file_means_ok(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / STATE_FILE).write_text(content)
    assert Quota.load(tmp_path) == Quota()


def test_a_state_that_cannot_be_saved_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    Quota(state=EXHAUSTED).save(blocker / "run")  # its parent is a file
    assert "the CoinCap quota state was not saved in" in caplog.text
