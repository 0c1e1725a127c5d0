"""`coincap-elt backfill --days N`: the history extended further back than the first cycle's
backfill, through the cycle's merge, on a real DuckDB file and a real PostgreSQL database.

CoinCap is the HTTP fake; the command runs as a subprocess with an explicit environment, as an
operator would run it. Assertions are on what the operator sees: exit statuses, the cost line
before any request, rows in the marts (no hole, no double), the fake's request counts and the
run log's credits.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import API_KEY, REPO, Warehouse, base_env, run_cycle

from devkit.fake_coincap import QUOTA_EXHAUSTED_BODY, FakeCoinCap, Scripted

pytestmark = pytest.mark.slow

ASSETS = "bitcoin,ethereum"
FIVE_MIN_S = 300


def env_for(warehouse: Warehouse, fake: FakeCoinCap, tmp: Path) -> dict[str, str]:
    return {
        **base_env(tmp),
        **warehouse.env,
        "COINCAP_API_KEY": API_KEY,
        "COINCAP_BASE_URL": fake.base_url,
        "COINCAP_ASSET_IDS": ASSETS,
        "COINCAP_BACKFILL_DAYS": "1",
    }


def backfill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest.cli", "backfill", *args],
        env=env,
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,  # no terminal: as in cron or a script
        capture_output=True,
        text=True,
        timeout=600,
    )


def series(warehouse: Warehouse) -> dict[str, tuple[int, int, float, float]]:
    """Per asset: points, distinct slots, first and last slot (epoch seconds)."""
    rows = warehouse.query(
        "select asset_id, count(*), count(distinct price_at), "
        "min(extract(epoch from price_at)), max(extract(epoch from price_at)) "
        "from marts.fct_asset_price_history group by asset_id"
    )
    return {r[0]: (int(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows}


def assert_no_hole_no_double(warehouse: Warehouse) -> None:
    for asset_id, (points, slots, first, last) in series(warehouse).items():
        assert points == slots, f"{asset_id}: {points} points in {slots} slots (a double)"
        expected = int((last - first) / FIVE_MIN_S) + 1
        assert points == expected, f"{asset_id}: {points} points, {expected} slots (a hole)"


def test_backfill_extends_the_series_with_no_hole_and_no_double(
    warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path
):
    env = env_for(warehouse, fake_coincap, tmp_path)
    first = run_cycle(env)
    assert first.returncode == 0, first.describe()
    before = series(warehouse)
    assert {a: v[0] for a, v in before.items()} == {"bitcoin": 288, "ethereum": 288}

    # without a terminal and without --yes: the cost, then a refusal; nothing asked
    fake_coincap.reset_requests()
    refused = backfill(env, "--days", "3")
    assert refused.returncode == 2, refused.stderr
    assert "4 request(s), about" in refused.stderr, refused.stderr
    assert "run again with --yes" in refused.stderr, refused.stderr
    assert fake_coincap.requests == []

    done = backfill(env, "--days", "3", "--yes")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    estimate = next(i for i, ln in enumerate(lines) if "4 request(s), about" in ln)
    assert estimate < next(i for i, ln in enumerate(lines) if "window(s)" in ln), done.stderr
    # its run-log row is a run, not a cycle (the log says which)
    output = done.stdout + done.stderr
    assert "run log: succeeded run recorded" in output and "cycle recorded" not in output
    history = fake_coincap.history_requests()
    assert len(history) == 4, history  # two more days, two assets, one request a day each
    after = series(warehouse)
    for asset_id in ("bitcoin", "ethereum"):
        assert after[asset_id][2] <= before[asset_id][2] - 2 * 86400 + FIVE_MIN_S, after
        assert after[asset_id][3] == before[asset_id][3], "the newest slot moved"
    assert_no_hole_no_double(warehouse)
    spent = warehouse.query(
        "select coincap_requests, coincap_credits from marts.pipeline_runs "
        "order by started_at desc limit 1"
    )[0]
    assert tuple(spent) == (4, fake_coincap.credits_billed()), spent

    # a second run asks nothing: the stored history already reaches back
    fake_coincap.reset_requests()
    again = backfill(env, "--days", "3", "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to ask" in again.stderr, again.stderr
    assert fake_coincap.requests == []

    # and the next cycle builds on it (its continuity test covers the joined series)
    fake_coincap.advance(FIVE_MIN_S * 1000)
    nxt = run_cycle(env)
    assert nxt.returncode == 0, nxt.describe()
    assert_no_hole_no_double(warehouse)


def test_a_stopped_backfill_resumes_where_it_stopped(
    warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path
):
    env = env_for(warehouse, fake_coincap, tmp_path)
    assert run_cycle(env).returncode == 0

    raw_before = warehouse.query("select count(*) from raw.asset_history")[0][0]
    # CoinCap says the credits are used up when the backfill reaches the second day back
    fake_coincap.reset_requests()
    fake_coincap.fail_history(3, Scripted(429, QUOTA_EXHAUSTED_BODY))
    stopped = backfill(env, "--days", "3", "--yes")
    assert stopped.returncode == 1, stopped.stderr
    assert [ln for ln in stopped.stderr.splitlines() if "error: backfill stopped" in ln]
    assert len(fake_coincap.history_requests()) == 3  # stopped at once, no retry loop
    # the two windows fetched before the stop are in raw; the rest is asked on the next run
    raw_after = warehouse.query("select count(*) from raw.asset_history")[0][0]
    assert 2 * 287 <= raw_after - raw_before <= 2 * 289, (raw_before, raw_after)

    # the plan renewed: the quota pause is over, the backfill asks only what is left
    (tmp_path / "run" / "coincap_quota.json").unlink()
    fake_coincap.reset()
    fake_coincap.reset_requests()
    resumed = backfill(env, "--days", "3", "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert len(fake_coincap.history_requests()) == 2, fake_coincap.history_requests()
    assert_no_hole_no_double(warehouse)
    assert all(v[0] >= 3 * 288 - 1 for v in series(warehouse).values()), series(warehouse)


def test_backfill_waits_for_a_running_cycle(
    warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path
):
    env = env_for(warehouse, fake_coincap, tmp_path)
    assert run_cycle(env).returncode == 0
    fake_coincap.reset_requests()
    with open(tmp_path / "run" / "run_pipeline.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a cycle is running
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cli", "backfill", "--days", "2", "--yes"],
            env=env,
            cwd=env["HOME"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(8)
        assert proc.poll() is None, "the backfill did not wait for the cycle lock"
        assert fake_coincap.history_requests() == [], "history asked while a cycle ran"
        fcntl.flock(lock, fcntl.LOCK_UN)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert len(fake_coincap.history_requests()) == 2


def test_backfill_of_an_asset_not_configured_is_refused(tmp_path: Path):
    env = {
        **base_env(tmp_path),
        "COINCAP_API_KEY": API_KEY,
        "COINCAP_ASSET_IDS": ASSETS,
        "DUCKDB_PATH": str(tmp_path / "w.duckdb"),
    }
    result = backfill(env, "--days", "2", "--assets", "bitcoin,dogecoin", "--yes")
    assert result.returncode == 2, result.stderr
    assert "dogecoin" in result.stderr and "COINCAP_ASSET_IDS" in result.stderr, result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_the_console_script_lists_the_commands_and_backfill_says_what_it_costs():
    """`coincap-elt`, as `make install` puts it beside the interpreter."""
    script = str(Path(sys.executable).parent / "coincap-elt")
    top = subprocess.run([script, "--help"], capture_output=True, text=True, cwd=REPO)
    assert top.returncode == 0, top.stderr
    for command in ("run", "backfill", "status", "doctor"):
        assert command in top.stdout, top.stdout
    result = subprocess.run([script, "backfill", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--days" in result.stdout and "--yes" in result.stdout and "credits" in result.stdout
