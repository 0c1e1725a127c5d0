"""CoinCap as it really is: credits, recorded-style numbers, quotas and hostile answers.

Every cycle is the real `scripts/run_pipeline.sh` against a real DuckDB file or PostgreSQL
database; CoinCap is the HTTP fake (devkit/fake_coincap.py) serving recorded-style bodies
(18-decimal float strings, shortest-form vwap, byte counts so credits can be checked). One
installation per engine runs the scenarios in order: every hostile answer is followed by a
normal cycle, which must exit 0 and grow the marts. Scenarios decided before anything reaches the
warehouse (retries, odd timestamps, ids, a huge body, the history bound, the quota) are marked
`one_engine` and run on DuckDB only; those whose outcome the warehouse decides (stored text,
history points through dbt, the run log's credit sums, the held-back snapshot) run on both.
Assertions are on what a user sees: exit statuses, `error:`/`warning:` lines, rows in raw and
the marts, the run log, the fake's counts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import API_KEY, ENGINES, CycleResult, Installation, Warehouse, make_installation

from devkit.fake_coincap import (
    ALL_DEFAULT_IDS,
    DEFAULT_ASSETS,
    QUOTA_EXHAUSTED_BODY,
    FakeCoinCap,
    Scripted,
    credits_for_bytes,
)

# dozens of real cycles on both engines: `make test` runs them, the quick loop does not
pytestmark = pytest.mark.slow

DAY_MS = 24 * 3_600_000
FIVE_MIN = 5 * 60_000


class Install(Installation):
    """An installation (devkit.installation) of every default asset."""

    def __init__(self, warehouse: Warehouse, fake: FakeCoinCap, tmp: Path):
        super().__init__(warehouse, fake, tmp, asset_ids=ALL_DEFAULT_IDS)

    def cycle(self, advance: bool = True, **overrides: str | None) -> CycleResult:
        """One cycle, CoinCap's clock first moved 5 minutes on (a new observation)."""
        if advance:
            self.fake.advance(FIVE_MIN)
        return super().cycle(**overrides)

    def normal_cycle_grows_the_marts(self) -> CycleResult:
        """The fake back to normal answers; the next cycle must exit 0 and add observations."""
        self.fake.reset()
        before = self.count("marts.fct_asset_prices")
        result = self.cycle()
        assert result.returncode == 0, result.describe()
        assert self.count("marts.fct_asset_prices") > before, "the marts did not grow"
        return result

    def count(self, table: str, where: str = "true") -> int:
        return self.warehouse.count(table, where)


@pytest.fixture(scope="module", params=ENGINES)
def install(request, tmp_path_factory):
    engine = request.param
    fake = FakeCoinCap(api_key=API_KEY, recorded_style=True)
    # CoinCap's clock 20 hours behind: room to move it on (about 15 hours in all) without ever
    # passing the machine's clock, and within the 24 hours the ingest allows
    fake.now_ms = fake.now_ms - 20 * 3_600_000
    tmp = tmp_path_factory.mktemp(f"reality-{engine}")
    inst = make_installation(request, engine, tmp, Install, fake=fake)
    try:
        yield inst
    finally:
        inst.close()


def credits_logged(result: CycleResult) -> tuple[int, int]:
    """(requests, credits) from the ingest's `loaded …; N CoinCap request(s), M credit(s)` line."""
    lines = result.lines_with("CoinCap request(s)", "credit(s)", "loaded")
    assert lines, f"no line with requests and credits:\n{result.describe()}"
    found = re.search(r"(\d+) CoinCap request\(s\), (\d+) credit\(s\)", lines[-1])
    assert found, lines[-1]
    return int(found.group(1)), int(found.group(2))


def last_run(install: Install) -> tuple:
    return install.warehouse.query(
        "select status, coincap_requests, coincap_credits, error from marts.pipeline_runs "
        "order by started_at desc limit 1"
    )[0]


# --------------------------------------------------------------------------- credits
def test_first_cycle_counts_credits_from_the_bytes_received(install: Install):
    """A first cycle with a one-day backfill of 11 assets: the credits in the log and the run log
    are exactly what the fake's bytes cost (1 per request plus 1 per 2,500 bytes), and the
    estimate logged before the backfill is within 25 % of what the history cost."""
    result = install.cycle(advance=False)
    assert result.returncode == 0, result.describe()
    requests, spent = credits_logged(result)
    billed = install.fake.credits_billed()
    assert requests == len(install.fake.requests) == 1 + len(ALL_DEFAULT_IDS)
    assert spent == billed, (spent, billed)
    # the estimate logged before the backfill: within 25 % of what the history cost
    history = sum(
        credits_for_bytes(r.response_bytes) for r in install.fake.requests if r.history_asset
    )
    estimate = result.lines_with("history to fetch", "credit(s)")
    assert estimate, result.describe()
    estimated = int(re.search(r"about (\d+) credit", estimate[0]).group(1))
    assert abs(estimated - history) <= 0.25 * history, (estimated, history)
    # the run log (written after the build) holds the cycle with its credits
    second = install.cycle()
    assert second.returncode == 0, second.describe()
    rows = install.warehouse.query(
        "select coincap_requests, coincap_credits from marts.pipeline_runs order by started_at"
    )
    assert rows[0] == (1 + len(ALL_DEFAULT_IDS), billed), rows
    assert rows[1] == (1, install.fake.credits_billed()), rows
    assert second.lines_with("credits:", "this month"), second.describe()


@pytest.mark.one_engine
def test_retries_are_counted_as_requests_and_credits(install: Install):
    """Two 503s, then an answer: three requests and the credits of all three in the run log."""
    install.fake.queue(
        Scripted(503, {"error": "Service Unavailable"}, {"Retry-After": "0"}),
        Scripted(503, {"error": "Service Unavailable"}, {"Retry-After": "0"}),
    )
    result = install.cycle()
    assert result.returncode == 0, result.describe()
    assert credits_logged(result) == (3, install.fake.credits_billed())
    install.cycle()  # its build shows the previous cycle's row
    runs = install.warehouse.query(
        "select coincap_requests, coincap_credits from marts.pipeline_runs "
        "order by started_at desc limit 2"
    )
    assert runs[1][0] == 3 and runs[1][1] >= 3, runs


# --------------------------------------------------------------------------- hostile answers
def _body(install: Install, **changes) -> dict:
    """A normal /assets answer with top-level fields changed."""
    return {"data": install.fake.snapshot(), "timestamp": install.fake.now_ms, **changes}


HOSTILE_TIMESTAMPS = {
    "in seconds": lambda t: t // 1000,
    "a year ahead": lambda t: t + 365 * DAY_MS,
    # the host clock two days off looks the same: one of the clocks is wrong, so say so loudly
    "two days behind": lambda t: t - 2 * DAY_MS,
    "beyond 64 bits": lambda t: 2**70,
    "a float": lambda t: float(t),
    "a string": lambda t: str(t),
}


@pytest.mark.one_engine
@pytest.mark.parametrize("kind", list(HOSTILE_TIMESTAMPS))
def test_an_implausible_timestamp_fails_its_cycle_only(install: Install, kind: str):
    """A `timestamp` that is not plausible milliseconds: one `error:` line naming it, exit 1,
    nothing loaded, no history asked; the next normal cycle exits 0 and the marts grow."""
    install.fake.advance(FIVE_MIN)
    raw_before = install.count("raw.assets")
    body = _body(install, timestamp=HOSTILE_TIMESTAMPS[kind](install.fake.now_ms))
    install.fake.queue(Scripted(200, json.dumps(body), {"Content-Type": "application/json"}))
    result = install.cycle(advance=False)
    assert result.returncode == 1, result.describe()
    errors = result.lines_with("error:", "timestamp")
    assert errors, result.describe()
    assert install.fake.history_requests() == []
    assert install.count("raw.assets") == raw_before
    install.normal_cycle_grows_the_marts()


@pytest.mark.one_engine
def test_ids_not_asked_for_and_repeated_ids_are_ignored_with_a_warning(install: Install):
    stranger = dict(DEFAULT_ASSETS[0], id="evilcoin", symbol="EVIL", name="Evil")
    data = install.fake.snapshot()
    install.fake.advance(FIVE_MIN)
    body = {"data": [*data, stranger, data[1]], "timestamp": install.fake.now_ms}
    install.fake.queue(Scripted(200, body))
    result = install.cycle(advance=False)
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "evilcoin", "not asked for"), result.describe()
    assert result.lines_with("warning:", "more than once"), result.describe()
    assert install.count("raw.assets", "id = 'evilcoin'") == 0
    assert not [r for r in install.fake.history_requests() if r.asset_id == "evilcoin"]
    ts = install.fake.now_ms
    assert install.count("raw.assets", f"coincap_timestamp = {ts}") == len(ALL_DEFAULT_IDS)
    install.normal_cycle_grows_the_marts()


@pytest.mark.one_engine
@pytest.mark.parametrize("status", ["404", "400"])
def test_an_unknown_id_refused_by_the_whole_request_leaves_the_others_loading(
    install: Install, status: str
):
    install.fake.unknown_ids = status
    result = install.cycle(COINCAP_ASSET_IDS=",".join([*ALL_DEFAULT_IDS, "polygon"]))
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "polygon"), result.describe()
    assert len(install.fake.requests_to("/assets")) == 2  # once more without it, no more
    ts = install.fake.now_ms
    assert install.count("raw.assets", f"coincap_timestamp = {ts}") == len(ALL_DEFAULT_IDS)
    install.normal_cycle_grows_the_marts()


def test_nul_bytes_and_lone_surrogates_are_stored_as_replacement_characters(install: Install):
    data = install.fake.snapshot()
    install.fake.advance(FIVE_MIN)
    data[0]["name"] = "Bit\u0000coin"
    data[1]["symbol"] = "ETH\ud800"
    body = json.dumps({"data": data, "timestamp": install.fake.now_ms})  # \u0000, \ud800 escapes
    install.fake.queue(Scripted(200, body, {"Content-Type": "application/json"}))
    result = install.cycle(advance=False)
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "U+FFFD"), result.describe()
    ts = install.fake.now_ms
    names = dict(
        install.warehouse.query(
            f"select id, name || '|' || symbol from raw.assets where coincap_timestamp = {ts}"
        )
    )
    assert names[data[0]["id"]].startswith("Bit\ufffdcoin|"), names
    assert names[data[1]["id"]].endswith("|ETH\ufffd"), names
    install.normal_cycle_grows_the_marts()


@pytest.mark.one_engine
def test_a_huge_body_is_not_loaded(install: Install):
    install.fake.advance(FIVE_MIN)
    huge = json.dumps(_body(install, padding="x" * (11 * 1024 * 1024)))
    install.fake.queue(Scripted(200, huge, {"Content-Type": "application/json"}))
    raw_before = install.count("raw.assets")
    result = install.cycle(advance=False)
    assert result.returncode == 1, result.describe()
    assert result.lines_with("error:", "more than 10 MB"), result.describe()
    assert install.count("raw.assets") == raw_before
    install.normal_cycle_grows_the_marts()


# --------------------------------------------------------------------------- history
def test_history_404_for_one_asset_is_that_assets_warning_and_never_asked_again(install: Install):
    """An hour without cycles, and CoinCap's history does not know solana: the cycle succeeds
    with a warning naming it, the other assets fill the hour, and solana is not asked again."""
    install.fake.advance(12 * FIVE_MIN)
    install.fake.fail_history_always(Scripted(404, {"error": "solana not found"}), "solana")
    result = install.cycle()
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "solana", "no history"), result.describe()
    asked = {r.asset_id for r in install.fake.history_requests()}
    assert asked == set(ALL_DEFAULT_IDS), asked
    again = install.cycle()
    assert again.returncode == 0, again.describe()
    assert install.fake.history_requests() == [], "history asked again after a 404"
    install.normal_cycle_grows_the_marts()


def test_hostile_history_points_never_fail_a_build(install: Install):
    """After an outage, CoinCap's history holds a point that is not a number, one in exponent
    form, one with `time` in seconds and circulatingSupply as a JSON number: the cycle exits 0,
    the good points fill the series, and the next cycles ask for nothing again."""
    install.fake.advance(12 * FIVE_MIN)
    install.fake.history_supply_as_number = True

    def poison(asset_id: str, points: list[dict]) -> list[dict]:
        if asset_id == "bitcoin" and len(points) >= 4:
            points[0]["priceUsd"] = "NaN"
            points[1]["priceUsd"] = "9.5e4"
            points[2]["time"] = points[2]["time"] // 1000
        return points

    install.fake.history_hook = poison
    result = install.cycle()
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "bitcoin", "left out"), result.describe()
    supplies = install.warehouse.query(
        "select circulating_supply from raw.asset_history where asset_id = 'ethereum' "
        "and circulating_supply is not null order by time desc limit 1"
    )
    assert supplies and re.fullmatch(r"[0-9.e+]+", supplies[0][0]), supplies
    install.fake.history_hook = None
    install.normal_cycle_grows_the_marts()
    assert install.fake.history_requests() == [], "a held-back point was asked for again"


@pytest.mark.one_engine
def test_no_cycle_asks_for_more_history_than_its_bound(install: Install):
    """Ten hours without cycles with COINCAP_MAX_HISTORY_REQUESTS=4: every cycle asks at most 4
    history windows (the log says how many wait), each build passes, and after enough cycles
    the whole gap is filled: no window asked twice."""
    install.fake.advance(10 * 3_600_000)
    asked: list[tuple[str, int]] = []
    for _ in range(8):
        result = install.cycle(COINCAP_MAX_HISTORY_REQUESTS="4")
        assert result.returncode == 0, result.describe()
        history = install.fake.history_requests()
        assert len(history) <= 4, len(history)
        asked += [(r.asset_id, r.start) for r in history]
        if not history:
            break
    assert len(asked) == len(set(asked)), "a window was asked twice"
    assert {a for a, _ in asked} == set(ALL_DEFAULT_IDS)
    assert not install.fake.history_requests(), "the gap was not filled within 8 cycles"


# --------------------------------------------------------------------------- quota
@pytest.mark.one_engine
def test_quota_used_up_backs_off_to_one_probe_and_recovers(install: Install):
    """A 429 that says the credits are used up: one `error:` line naming the plan, no retries;
    the next cycle sends nothing (the pause runs); once the pause is over, exactly one probe;
    when CoinCap answers again, the cycle loads."""
    install.fake.fail_always(Scripted(429, QUOTA_EXHAUSTED_BODY))
    first = install.cycle()
    assert first.returncode == 1, first.describe()
    assert first.lines_with("error:", "credits are used up"), first.describe()
    assert len(install.fake.requests) == 1, "a used-up quota was retried"
    skipped = install.cycle()
    assert skipped.returncode == 1 and len(install.fake.requests) == 0, skipped.describe()
    assert skipped.lines_with("error:", "next probe"), skipped.describe()
    # the pause (15 minutes) is over: one probe, refused again
    _end_pause(install)
    probe = install.cycle()
    assert probe.returncode == 1 and len(install.fake.requests) == 1, probe.describe()
    state = json.loads((install.run_dir / "coincap_quota.json").read_text())
    assert state["pause_s"] == 30 * 60, state  # doubled
    _end_pause(install)
    install.fake.fail_always(None)
    recovered = install.normal_cycle_grows_the_marts()
    assert recovered.lines_with("answers again"), recovered.describe()


@pytest.mark.one_engine
def test_a_429_that_lasts_into_the_next_cycle_is_taken_as_quota(install: Install):
    install.fake.fail_always(Scripted(429, {"error": "Too many requests"}, {"Retry-After": "0"}))
    first = install.cycle()
    assert first.returncode == 1 and len(install.fake.requests) == 5, first.describe()
    second = install.cycle()
    assert second.returncode == 1 and len(install.fake.requests) == 1, second.describe()
    assert second.lines_with("error:", "quota"), second.describe()
    _end_pause(install)
    install.normal_cycle_grows_the_marts()


def _end_pause(install: Install) -> None:
    path = install.run_dir / "coincap_quota.json"
    state = json.loads(path.read_text())
    state["next_probe_ms"] = 0
    path.write_text(json.dumps(state))


def test_monthly_budget_warns_when_the_projection_exceeds_it(install: Install):
    result = install.cycle(COINCAP_MONTHLY_CREDITS="10")
    assert result.returncode == 0, result.describe()
    assert result.lines_with("warning:", "COINCAP_MONTHLY_CREDITS"), result.describe()
    quiet = install.cycle(COINCAP_MONTHLY_CREDITS="100000000")
    assert not quiet.lines_with("warning:", "COINCAP_MONTHLY_CREDITS"), quiet.describe()


# --------------------------------------------------------------------------- a first cycle
def test_an_asset_whose_only_snapshot_is_held_back_still_has_its_dimension(
    warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path
):
    """The very first cycle: bitcoin's snapshot is held back (price "NaN") while its history is
    backfilled. The build passes (the series' relationship to dim_assets holds: bitcoin gets a
    row with no attributes), and once a good snapshot arrives its attributes fill in."""
    install = Install(warehouse, fake_coincap, tmp_path)
    fake_coincap.snapshot_overrides = {"bitcoin": {"priceUsd": "NaN"}}
    first = install.cycle(advance=False)
    assert first.returncode == 0, first.describe()
    assert install.count("marts.fct_asset_price_history", "asset_id = 'bitcoin'") > 0
    dim = "select observation_count, symbol from marts.dim_assets where asset_id = 'bitcoin'"
    assert warehouse.query(dim) == [(0, None)]
    assert install.count("marts.fct_rejected_asset_prices", "asset_id = 'bitcoin'") == 1
    install.normal_cycle_grows_the_marts()
    assert warehouse.query(dim) == [(1, "BTC")]
