"""Failure drills (issue 5): the real cycle meets the faults an unattended 5-minute pipeline meets.

Real DuckDB and PostgreSQL, the real `scripts/run_pipeline.sh`, only CoinCap faked (HTTP). Every
drill counts rows of `marts.fct_asset_prices` against what the fake served (drillkit's ledger):
zero lost, zero doubled. Each drill writes its row of docs/reliability.md's results table.

The drills on the shared `installation` (one per engine) run in file order on the same warehouse,
dlt directory and lock, as one host meets one fault after another: five at once, CoinCap
failing, the dlt directory unwritable or full, and last the values that are not numbers
(last: rows that cannot be cast stay in raw, so a regression there would fail every later
cycle of the installation and hide what the other drills show).
Drill 1 (the warehouse goes down) has its own PostgreSQL cluster, which it stops and starts.
The kill -9 drills (2, 2b, 2c) are in test_kill_drills.py, on an installation of their own, so
`make test` can run the two files on its two workers side by side.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from drillkit import (
    Installation,
    anchor_time,
    assert_tally,
    check_clean_failure,
    failing_lines,
    ingest_errors,
    iso,
    marts_tables,
    new_fake,
    series_note,
    start_cycle,
    to_ms,
)
from helpers import Warehouse, run_cycle
from system_tools import missing

from devkit.fake_coincap import DEFAULT_ASSETS, Scripted

pytestmark = pytest.mark.drill


# =========================================================================== 6. five at once
def test_drill6_five_cycles_started_at_once(installation: Installation, drill_row):
    inst = installation
    with drill_row("6. five cycles started at once", inst.engine) as row:
        served = inst.next_tick()
        runs = [start_cycle(inst.env(), inst.tmp / f"five-{i}.log") for i in range(5)]
        results = [run.finish() for run in runs]
        ran = [r for r in results if r.lines_with("cycle started")]
        said_so = [r for r in results if re.search(r"another cycle is running", r.output)]
        inst.after(served, len(ran) == 1 and ran[0].returncode == 0, ran[0] if ran else None)
        row.trials = 5
        losers = [r for r in results if r not in ran]
        row.notes.append(
            f"the 4 others exited in {', '.join(f'{r.seconds:.1f}' for r in losers)} s, "
            f"the one cycle took {ran[0].seconds:.1f} s"
            if len(ran) == 1
            else f"{len(ran)} cycles ran"
        )
        assert len(ran) == 1, f"{len(ran)} cycles ran: " + " | ".join(r.output for r in ran)
        assert ran[0].returncode == 0, ran[0].describe()
        assert len(said_so) == 4, [r.output for r in results]
        for r in losers:
            assert r.returncode == 0, r.describe()
            assert r.seconds < 10, f"a locked-out cycle took {r.seconds:.1f} s"
            assert r.seconds < ran[0].seconds, "a locked-out cycle did not exit at once"
        assert len(inst.fake.requests_to("/assets")) == 1, "CoinCap was asked more than once"
        assert_tally(inst, row)


# =========================================================================== 4. CoinCap fails
def test_drill4a_coincap_5xx_beyond_the_retry_budget(installation: Installation, drill_row):
    inst = installation
    with drill_row("4a. CoinCap 503 beyond the retry budget", inst.engine) as row:
        before = inst.marts_state()
        inst.fake.fail_always(Scripted(503, {"error": "Service Unavailable"}))
        try:
            failed = inst.cycle()
            attempts = len(inst.fake.requests_to("/assets"))
        finally:
            inst.fake.fail_always(None)
        problems = check_clean_failure(failed, "503")
        row.notes.append(f"failed after {failed.seconds:.1f} s and {attempts} attempts")
        if inst.marts_state() != before:
            problems.append("the failed cycle changed the warehouse")
        recovered = inst.cycle()
        row.trials = 1
        row.notes.append(f"next healthy cycle exit {recovered.returncode}")
        if recovered.returncode != 0:
            problems.append(f"the next healthy cycle failed: {failing_lines(recovered)}")
        # 5 attempts, backoff 1 + 2 + 4 + 8 s: the retries' span, from the fake's own clock (the
        # cycle's wall time also holds start-up, which depends on the machine's load)
        span = retry_span(inst.fake.requests_to("/assets"))
        if span > 15 + 5:
            problems.append(f"retried for {span:.1f} s (bound 20 s: waits of 1 + 2 + 4 + 8 s)")
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        problems += tally.problems()
        problems += series_note(inst, row, strict=False)
        assert not problems, "; ".join(problems) + "\n" + failed.output[-2000:]


def retry_span(requests: list) -> float:
    """Seconds from the first to the last of `requests`, on the fake's clock."""
    return requests[-1].at - requests[0].at if requests else 0.0


# The drill's request timeout (COINCAP_REQUEST_TIMEOUT_S; 15 s in production, where the same
# bound is 5 x 15 + 15 = 90 s). Every answer comes 1 s after it.
DRILL_TIMEOUT_S = int(os.environ.get("DRILL_REQUEST_TIMEOUT_S", "2"))


def test_drill4b_coincap_slower_than_the_timeout(installation: Installation, drill_row):
    inst = installation
    title = f"4b. CoinCap slower than the request timeout ({DRILL_TIMEOUT_S} s here)"
    with drill_row(title, inst.engine) as row:
        before = inst.marts_state()
        inst.fake.delay = DRILL_TIMEOUT_S + 1.0
        inst.overrides["COINCAP_REQUEST_TIMEOUT_S"] = str(DRILL_TIMEOUT_S)
        try:
            failed = inst.cycle(timeout=400)
            attempts = len(inst.fake.requests_to("/assets"))
        finally:
            inst.fake.delay = 0.0
            del inst.overrides["COINCAP_REQUEST_TIMEOUT_S"]
        problems = check_clean_failure(failed, "could not be reached")
        row.notes.append(f"failed after {failed.seconds:.1f} s and {attempts} attempts")
        if inst.marts_state() != before:
            problems.append("the failed cycle changed the warehouse")
        # bound: 5 timeouts + waits of 1 + 2 + 4 + 8 s (5 s of slack), from the first request to
        # the last one's timeout, on the fake's clock (the cycle's start-up depends on the load)
        span = retry_span(inst.fake.requests_to("/assets")) + DRILL_TIMEOUT_S
        bound = 5 * DRILL_TIMEOUT_S + 15 + 5
        if span > bound:
            problems.append(f"retried for {span:.1f} s (bound {bound} s)")
        recovered = inst.cycle()
        row.trials = 1
        if recovered.returncode != 0:
            problems.append(f"the next healthy cycle failed: {failing_lines(recovered)}")
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        problems += tally.problems()
        problems += series_note(inst, row, strict=False)
        assert not problems, "; ".join(problems) + "\n" + failed.output[-2000:]


def test_drill4c_coincap_history_failing_after_an_outage(installation: Installation, drill_row):
    """CoinCap answers /assets but every history request 503s, after an outage of an hour (so
    each asset has a gap to fill). The first failing history request must end the cycle's
    history requests: one retry budget per cycle, not one per asset (10 x 17 s here, 10 x 90 s
    for a hanging API in production). The snapshot loads; `dbt build` then fails its
    no-gaps test, since the hour is still missing; the next healthy cycle fills it."""
    inst = installation
    with drill_row("4c. CoinCap history 503 beyond the retry budget", inst.engine) as row:
        inst.fake.advance(60 * 60 * 1000)  # an hour without a cycle: every asset has a gap
        inst.fake.fail_history_always(Scripted(503, {"error": "Service Unavailable"}))
        try:
            failed = inst.cycle()
            history = inst.fake.history_requests()
        finally:
            inst.fake.fail_history_always(None)
        asked = sorted({h.asset_id for h in history})
        row.notes.append(
            f"cycle exit {failed.returncode} after {failed.seconds:.1f} s, {len(history)} history "
            f"request(s) for {asked}"
        )
        problems = []
        if len(asked) != 1 or len(history) > 5:
            problems.append(f"history asked for {asked} in {len(history)} requests, not 1 asset")
        if not failed.lines_with("history for", "not fetched this cycle"):
            problems.append("no warning says the history was not fetched")
        # one retry budget (waits of 1 + 2 + 4 + 8 s), not one per asset (10 x 15 s)
        span = retry_span(history)
        if span > 15 + 5:
            problems.append(f"history retried for {span:.1f} s (bound 20 s: one retry budget)")
        recovered = inst.cycle()
        row.trials = 1
        row.notes.append(f"next healthy cycle exit {recovered.returncode}")
        if recovered.returncode != 0:
            problems.append(f"the next healthy cycle failed: {failing_lines(recovered)}")
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        problems += tally.problems()
        problems += series_note(inst, row, strict=True)
        assert not problems, "; ".join(problems) + "\n" + failed.output[-2000:]


# =========================================================================== 3. dlt dir
def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True, capture_output=True)


def _fill(path: Path) -> Path:
    """Fill the filesystem of `path` to the last byte with one file; returns it."""
    filler = path / "filler.bin"
    with open(filler, "wb", buffering=0) as out:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    out.write(chunk)
            except OSError:
                pass
    return filler


def _dlt_dir_drill(inst: Installation, row, how: str) -> None:
    before = inst.marts_state()
    problems: list[str] = []
    fragments: tuple[str, ...] = ()
    if how == "read-only":
        if inst.dlt_mounted:
            _remount(inst.dlt_dir, "ro")
            row.notes.append("DLT_DATA_DIR on a tmpfs remounted read-only")
            fragments = ("read-only",)
            try:
                failed = inst.cycle()
            finally:
                _remount(inst.dlt_dir, "rw")
        else:
            # no mount allowed: a path below a regular file cannot be created, even by root
            blocker = inst.tmp / "not-a-directory"
            blocker.write_text("")
            row.notes.append("mount not allowed: DLT_DATA_DIR below a regular file")
            saved = inst.overrides["DLT_DATA_DIR"]
            inst.overrides["DLT_DATA_DIR"] = str(blocker / "dlt")
            try:
                failed = inst.cycle()
            finally:
                inst.overrides["DLT_DATA_DIR"] = saved
    else:
        if not inst.dlt_mounted:
            # CI runs as root, where a tmpfs can be mounted: there this drill must run
            missing("mount not allowed (needs root): no small filesystem to fill; run as root")
        filler = _fill(inst.dlt_dir)
        free = shutil.disk_usage(inst.dlt_dir).free
        row.notes.append(f"32 MB tmpfs filled ({free} bytes free)")
        fragments = ("space",)
        try:
            failed = inst.cycle()
        finally:
            filler.unlink()
    row.notes.append(f"failing cycle: exit {failed.returncode} in {failed.seconds:.1f} s")
    shown = ingest_errors(failed)
    row.notes.append(f"its line: {shown[0][21:200] if shown else 'none'}")
    problems += check_clean_failure(failed, *fragments)
    if shown and not ("DLT_DATA_DIR" in shown[0] or str(inst.dlt_dir) in shown[0]):
        problems.append("the error line names neither DLT_DATA_DIR nor the directory")
    if shown and "warehouse is reachable" in shown[0]:
        problems.append("the error line sends the operator to the warehouse, not the disk")
    if inst.marts_state() != before:
        problems.append("the failed cycle changed the marts or raw")
    recovered = inst.cycle()
    row.trials = 1
    if recovered.returncode != 0:
        problems.append(f"the next cycle failed: {failing_lines(recovered)}")
    tally = inst.tally()
    row.lost, row.doubled = tally.n_lost, tally.n_doubled
    problems += tally.problems()
    problems += series_note(inst, row, strict=False)
    assert not problems, "; ".join(problems) + "\n--- failing cycle ---\n" + failed.output[-3000:]


def test_drill3a_pipelines_directory_unwritable(installation: Installation, drill_row):
    with drill_row("3a. pipelines directory unwritable", installation.engine) as row:
        _dlt_dir_drill(installation, row, "read-only")


def test_drill3b_pipelines_directory_full(installation: Installation, drill_row):
    with drill_row("3b. pipelines directory full", installation.engine) as row:
        _dlt_dir_drill(installation, row, "full")


# ====================================================================== 5. not numbers (helpers)
BAD_PRICES = {"bitcoin": "NaN", "ethereum": "", "cosmos": "abc", "solana": "1e400"}


def _rejects_table(inst: Installation) -> str | None:
    """The mart of held-back snapshots (not the one of history points: this drill's bad values
    are in /assets answers)."""
    names = [t for t in marts_tables(inst.warehouse) if "reject" in t and "history" not in t]
    return names[0] if names else None


def _rejects(inst: Installation, table: str) -> list[tuple[str, int, str]]:
    cols = inst.warehouse.columns("marts", table)
    when = next((c for c in ("observed_at", "coincap_timestamp", "price_at") if c in cols), None)
    reason = next((c for c in cols if "reason" in c), None)
    assert "asset_id" in cols and when and reason, f"marts.{table} columns: {list(cols)}"
    out = []
    for asset_id, at, why in inst.warehouse.query(
        f"select asset_id, {when}, {reason} from marts.{table}"
    ):
        out.append((asset_id, to_ms(at) if hasattr(at, "tzinfo") else int(at), str(why or "")))
    return out


# =========================================================================== 5. not numbers
def test_drill5_values_that_cannot_be_numbers(installation: Installation, drill_row):
    inst = installation
    fake = inst.fake
    with drill_row("5. values that cannot be numbers", inst.engine) as row:
        bad = copy.deepcopy(DEFAULT_ASSETS)
        for asset in bad:
            if asset["id"] in BAD_PRICES:
                asset["priceUsd"] = BAD_PRICES[asset["id"]]
        fake.prices_follow_clock = False  # serve the strings as they are
        fake.set_snapshot(bad)
        try:
            first = inst.cycle(rejects=set(BAD_PRICES))
        finally:
            fake.set_snapshot(DEFAULT_ASSETS)
            fake.prices_follow_clock = True
        t_bad = inst.ledger[-1].t
        later = [inst.cycle(), inst.cycle()]
        row.trials = len(BAD_PRICES)
        problems = []
        if first.returncode != 0:
            problems.append(f"the cycle with bad values failed: {failing_lines(first)}")
        for n, r in enumerate(later, 1):
            if r.returncode != 0:
                problems.append(f"later cycle {n} failed: {failing_lines(r)}")
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        problems += tally.problems()
        table = _rejects_table(inst)
        if table is None:
            problems.append("no rejects table in marts (nothing named *reject*)")
        else:
            rejects = _rejects(inst, table)
            at_bad = Counter(a for a, t, _ in rejects if t == t_bad)
            row.notes.append(f"held back in marts.{table}: {dict(at_bad)}")
            if dict(at_bad) != {a: 1 for a in BAD_PRICES}:
                problems.append(f"marts.{table} holds {dict(at_bad)} at {iso(t_bad)}")
            blank = [r for r in rejects if not r[2].strip()]
            if blank:
                problems.append(f"rejects without a reason: {blank}")
            others = [r for r in rejects if r[1] != t_bad]
            if others:
                problems.append(f"later cycles rejected rows too: {others[:5]}")
        problems += series_note(inst, row, strict=False)
        assert not problems, "; ".join(problems)


# =========================================================================== 1. warehouse down
@pytest.fixture
def pg_down_installation(own_postgres_cluster, request):
    tmp = Path(tempfile.mkdtemp(prefix="coincap-drill-pgdown-"))
    wh = Warehouse("postgres", tmp, own_postgres_cluster.env())
    fake = new_fake()
    inst = Installation(wh, fake, tmp, "pg-down")
    try:
        yield inst
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_drill1_warehouse_down_during_a_cycle(
    pg_down_installation, own_postgres_cluster, drill_row
):
    inst, cluster = pg_down_installation, own_postgres_cluster
    with drill_row("1. warehouse down during a cycle", "postgres") as row:
        first = inst.cycle()
        assert first.returncode == 0, first.describe()
        problems: list[str] = []

        # (a) Postgres stops while CoinCap is answering /assets: extracted, not loaded
        inst.fake.delay = 3.0
        served, run = inst.start()
        arrived = run.wait_for(lambda: anchor_time(run, inst, "request"), timeout=120)
        assert arrived is not None, f"no /assets request:\n{run.finish().output}"
        cluster.stop(mode="fast")
        stopped = time.monotonic()
        inst.fake.delay = 0.0
        failed = run.finish()
        inst.after(served, failed.returncode == 0, failed)
        row.notes.append(
            f"stopped {stopped - arrived:.1f} s after the request arrived; the cycle failed "
            f"{time.monotonic() - stopped:.1f} s later, exit {failed.returncode}"
        )
        problems += check_clean_failure(failed, "warehouse")
        shown = ingest_errors(failed)
        row.notes.append(f"its line: {shown[0][21:230] if shown else 'none'}")
        if served.outcome != "pending":
            problems.append(f"the snapshot is {served.outcome!r}, not a pending package")
        cluster.start()
        recovered = inst.cycle()
        if recovered.returncode != 0:
            problems.append(f"the next cycle failed: {failing_lines(recovered)}")
        said = recovered.lines_with("loading pending load packages left by an earlier cycle")
        loaded = recovered.lines_with("loaded pending load packages")
        if not said or not loaded:
            problems.append("the next cycle's log does not say it loaded the pending package")
        if "pipeline_runs" in marts_tables(inst.warehouse):
            # the run log (issue 5) says that a pending package was loaded
            cols = list(inst.warehouse.columns("marts", "pipeline_runs"))
            flag = [c for c in cols if "pending" in c]
            if not flag:
                problems.append(f"marts.pipeline_runs has no column about pending packages: {cols}")
            else:
                values = [
                    r[0] for r in inst.warehouse.query(f"select {flag[0]} from marts.pipeline_runs")
                ]
                said = [v for v in values if v not in (None, 0, "", "[]", "{}", False, [])]
                row.notes.append(f"marts.pipeline_runs.{flag[0]}: {said[:2]}")
                if not said:
                    problems.append(f"marts.pipeline_runs.{flag[0]} is empty in every run")
        else:
            row.notes.append("marts.pipeline_runs absent: run log not checked")

        # (b) Postgres already down when the cycle starts
        cluster.stop(mode="fast")
        served = inst.next_tick()
        down = run_cycle(inst.env())
        inst.after(served, down.returncode == 0, down)
        row.notes.append(
            f"cycle started with the warehouse down: exit {down.returncode} in "
            f"{down.seconds:.1f} s, snapshot {served.outcome}"
        )
        problems += [
            f"warehouse down at start: {p}" for p in check_clean_failure(down, "warehouse")
        ]
        cluster.start()
        again = inst.cycle()
        if again.returncode != 0:
            problems.append(f"the cycle after (b) failed: {failing_lines(again)}")
        row.trials = 2
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        problems += tally.problems()
        problems += series_note(inst, row, strict=False)
        dup = inst.warehouse.query(
            "select id, coincap_timestamp, count(*) from raw.assets "
            "group by id, coincap_timestamp having count(*) > 1"
        )
        if dup:
            problems.append(f"raw.assets doubled: {dup[:5]}")
        assert not problems, "; ".join(problems) + "\n--- failed ---\n" + failed.output[-2500:]
