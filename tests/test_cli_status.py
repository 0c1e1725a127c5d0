"""`coincap-elt status`: the pipeline's state, read-only, on both engines.

One installation per engine (a real DuckDB file or PostgreSQL database, the fake CoinCap) runs
real cycles in order (`scripts/run_pipeline.sh`), and after each one the installed console
script `coincap-elt status` runs as a subprocess with an explicit environment, as an operator
would. Assertions compare what status says with what the warehouse and the run directory hold.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ENGINES, CycleResult, Installation, base_env, coincap_elt, make_installation

from devkit.fake_coincap import now_ms

# real cycles and dbt parses on both engines: `make test` runs them, the quick loop does not
pytestmark = pytest.mark.slow

WRONG_KEY = "not-the-key-5e1d"


def status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`coincap-elt status ARGS` as an operator runs it, from their home directory."""
    return coincap_elt(env, "status", *args)


def status_json(env: dict[str, str]) -> dict[str, Any]:
    result = status(env, "--json")
    assert result.returncode == 0, describe(result)
    return json.loads(result.stdout)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n"
        f"--- stderr ---\n{result.stderr}"
    )


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one `error:` line of a status that could not read the state (exit 1, nothing else)."""
    assert result.returncode == 1, describe(result)
    assert result.stdout == "", describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), describe(result)
    return lines[0]


class Install(Installation):
    """An installation (devkit.installation) of the default assets, with its run log."""

    def cycle(self, **overrides: str | None) -> CycleResult:
        """One cycle, with CoinCap's figures timed just now (a new, fresh observation)."""
        self.fake.now_ms = now_ms() - 3_000
        return super().cycle(**overrides)

    def runs(self) -> list[tuple]:
        """The run log's rows, newest first, from the table every cycle appends to."""
        return self.warehouse.query(
            "select status, failed_step, error, coincap_credits, started_at "
            "from ops.pipeline_runs order by started_at desc"
        )

    def credits_this_month(self, report: dict[str, Any]) -> int:
        """The sum of the run log's credits in the UTC month of the status `report`."""
        checked_at = datetime.fromisoformat(report["checked_at"])
        month_start = checked_at.replace(day=1, hour=0, minute=0, second=0)
        return self.warehouse.query(
            "select coalesce(sum(coincap_credits), 0) from ops.pipeline_runs where started_at >= ?",
            (month_start,),
        )[0][0]

    def block_warehouse(self) -> Any:
        """The warehouse out of reach for new connections; returns what unblocks it. DuckDB: this
        process holds the file open for writing (as a running cycle does). PostgreSQL: the
        database refuses new connections (as when it is down)."""
        if self.warehouse.engine == "duckdb":
            import duckdb

            writer = duckdb.connect(str(self.warehouse.duckdb_path))
            return writer.close
        name = self.warehouse.dbname
        self.warehouse.admin(f'alter database "{name}" with allow_connections false')
        return lambda: self.warehouse.admin(f'alter database "{name}" with allow_connections true')


@pytest.fixture(scope="module", params=ENGINES)
def install(request, tmp_path_factory):
    engine = request.param
    inst = make_installation(request, engine, tmp_path_factory.mktemp(f"status-{engine}"), Install)
    try:
        yield inst
    finally:
        inst.close()


# --------------------------------------------------------------------------- in cycle order
def test_status_before_the_first_cycle(install: Install):
    """No cycle yet. DuckDB: the file does not exist, so exit 1 saying to run a cycle, and status
    does not create it. PostgreSQL: the empty database is a state: exit 0, no cycle recorded."""
    env = install.env()
    result = status(env)
    if install.warehouse.engine == "duckdb":
        line = error_line(result)
        assert "does not exist yet" in line and "coincap-elt run" in line, line
        assert not install.warehouse.duckdb_path.exists(), "status created the warehouse"
    else:
        assert result.returncode == 0, describe(result)
        assert "none recorded yet" in result.stdout, describe(result)
        report = status_json(env)
        assert report["cycles"] == [] and report["run_log"] is None, report
        assert report["credits"]["used_this_month"] == 0, report
    assert not (install.tmp / "dlt").exists(), "status created dlt's data directory"


def test_status_after_the_first_cycle_shows_it(install: Install):
    """The first cycle's row is in ops.pipeline_runs; the view shows it only from the next
    build, so status reads the table: the cycle, its credits, the newest observation."""
    result = install.cycle()
    assert result.returncode == 0, result.describe()
    install.fake.reset_requests()

    shown = status(install.env())
    assert shown.returncode == 0, describe(shown)
    assert shown.stderr == "", describe(shown)
    assert "Last 1 cycle(s)" in shown.stdout and "succeeded" in shown.stdout, describe(shown)

    report = status_json(install.env())
    assert report["run_log"] == "ops.pipeline_runs", report["run_log"]
    [cycle] = report["cycles"]
    assert cycle["status"] == "succeeded" and cycle["failed_step"] is None, cycle
    spent = install.credits_this_month(report)
    assert spent > 0
    assert report["credits"]["used_this_month"] == cycle["coincap_credits"] == spent, report
    newest = install.warehouse.query("select max(observed_at) from marts.fct_asset_prices")[0][0]
    assert report["freshness"]["newest_observation_at"] == _iso(newest), report["freshness"]
    assert 0 <= report["freshness"]["newest_observation_age_s"] < 600, report["freshness"]
    heartbeat = (install.run_dir / "last_success").read_text().strip()
    assert report["freshness"]["last_success_at"] == heartbeat, report["freshness"]
    assert report["alert"]["state"] == "ok" and report["quota"]["state"] == "ok", report
    assert install.fake.requests == [], "status called CoinCap"


def test_status_after_a_second_cycle_reads_the_view_and_projects_credits(install: Install):
    result = install.cycle()
    assert result.returncode == 0, result.describe()

    report = status_json(install.env(COINCAP_MONTHLY_CREDITS="4000"))
    assert report["run_log"] == "marts.pipeline_runs", report["run_log"]
    cycles = report["cycles"]
    assert [c["status"] for c in cycles] == ["succeeded", "succeeded"], cycles
    assert cycles[0]["started_at"] > cycles[1]["started_at"], "not newest first"
    assert cycles[0]["source_freshness"] == report["freshness"]["source_freshness"] == "pass"
    spend = report["credits"]
    assert spend["used_this_month"] == install.credits_this_month(report), spend
    # two cycles: a pace (the projection adds nothing only in the month's last seconds)
    assert spend["has_pace"] and spend["projected_month_end"] >= spend["used_this_month"], spend
    assert spend["monthly_allowance"] == 4000, spend
    assert report["pending_packages"] == {
        f"coincap_{install.warehouse.engine}": [],
        f"coincap_runlog_{install.warehouse.engine}": [],
    }, report["pending_packages"]

    gaps = install.warehouse.query(
        "select asset_id, count(*) from marts.fct_asset_price_gaps group by asset_id"
    )
    assert report["gaps"]["slots"] == sum(n for _, n in gaps), report["gaps"]
    assert {a: sum(c.values()) for a, c in report["gaps"]["per_asset"].items()} == dict(gaps)

    text = status(install.env(COINCAP_MONTHLY_CREDITS="4000")).stdout
    assert f"{spend['used_this_month']:,} this month" in text, text
    assert "plan allows 4,000" in text, text


def test_status_never_imports_dbt_and_never_writes(install: Install):
    """Read-only and light: no dbt in the process, no CoinCap request, the DuckDB file unchanged."""
    probe = (
        "import sys; from ingest.cli import main; rc = main(['status', '--json']); "
        "print(sorted(m for m in sys.modules if m == 'dbt' or m.startswith('dbt.')), "
        "file=sys.stderr); sys.exit(rc)"
    )
    before = _fingerprint(install)
    install.fake.reset_requests()
    env = install.env()
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=env["HOME"], capture_output=True, text=True
    )
    assert result.returncode == 0, describe(result)
    assert result.stderr.strip() == "[]", f"status imported dbt: {result.stderr[:500]}"
    assert json.loads(result.stdout)["cycles"], result.stdout
    assert install.fake.requests == [], "status called CoinCap"
    assert _fingerprint(install) == before, "status changed the warehouse"


def test_status_after_a_failed_cycle_shows_it_and_its_error(install: Install):
    result = install.cycle(COINCAP_API_KEY=WRONG_KEY)
    assert result.returncode == 1, result.describe()
    stored = install.runs()[0]
    assert stored[0] == "failed", stored

    env = install.env(COINCAP_API_KEY=WRONG_KEY)
    report = status_json(env)
    last = report["cycles"][0]
    assert (last["status"], last["failed_step"]) == ("failed", "ingest"), last
    assert "401" in last["error"] and "API key" in last["error"], last
    assert last["error"] == stored[2], (last, stored)
    assert report["alert"]["state"] == "failed", report["alert"]

    shown = status(env)
    assert shown.returncode == 0, describe(shown)
    assert WRONG_KEY not in shown.stdout + shown.stderr
    [row] = [
        line for line in shown.stdout.splitlines() if line.startswith(f"  {last['started_at']}")
    ]
    assert row.split()[3:5] == ["failed", "ingest"], row  # after the time and "N s"
    assert f"      error: {stored[2]}" in shown.stdout, describe(shown)
    assert [c["status"] for c in report["cycles"][1:]] == ["succeeded", "succeeded"]


def test_status_with_the_warehouse_out_of_reach_then_its_pending_packages(install: Install):
    """While the warehouse is out of reach (DuckDB held by a writer, PostgreSQL refusing
    connections) status exits 1 with one `error:` line; a cycle then leaves its snapshot and its
    run-log row in dlt's pending packages, which status lists once the warehouse is back, and
    which the next cycle loads."""
    unblock = install.block_warehouse()
    try:
        refused = status(install.env())
        blocked = install.cycle()
    finally:
        unblock()
    line = error_line(refused)
    if install.warehouse.engine == "duckdb":
        assert "busy" in line and "try again in a minute" in line, line
    else:
        assert "unreachable" in line and "POSTGRES_" in line, line
        assert install.env()["POSTGRES_PASSWORD"] not in refused.stderr
    assert blocked.returncode == 1, blocked.describe()

    # the failed cycle's run-log row waits in dlt's pending package (its ingest stopped at
    # dlt's state sync, before extracting anything)
    runlog = f"coincap_runlog_{install.warehouse.engine}"
    report = status_json(install.env())
    [load_id] = report["pending_packages"][runlog]
    normalized = install.tmp / "dlt" / "pipelines" / runlog / "load" / "normalized"
    assert [p.name for p in normalized.iterdir()] == [load_id]
    assert report["cycles"][0]["status"] == "failed", "the blocked cycle's row is still pending"
    assert len(report["cycles"]) == len(install.results) - 1, report["cycles"]
    text = status(install.env()).stdout
    assert f"{runlog}: 1 ({load_id})" in text, text

    recovered = install.cycle()
    assert recovered.returncode == 0, recovered.describe()
    report = status_json(install.env())
    assert not any(report["pending_packages"].values()), report["pending_packages"]
    assert "Pending load packages: none" in status(install.env()).stdout
    cycles = report["cycles"]
    assert len(cycles) == len(install.results), cycles
    assert [c["status"] for c in cycles[:2]] == ["succeeded", "failed"], cycles
    assert "warehouse" in cycles[1]["error"], cycles[1]
    assert report["credits"]["used_this_month"] == install.credits_this_month(report)


# --------------------------------------------------------------------------- no installation
def test_status_on_duckdb_waits_its_turn_behind_a_cycle(install: Install):
    """DuckDB lets one process open the file while another writes: status takes the cycle lock
    for its read, so a cycle never fails because status was reading (a cycle that starts then
    skips, as behind any running cycle), and a running cycle makes status say it is busy."""
    if install.warehouse.engine != "duckdb":
        pytest.skip("PostgreSQL readers and writers do not exclude each other")
    run_dir = Path(install.env()["COINCAP_RUN_DIR"])
    with open(run_dir / "run_pipeline.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running cycle holds it
        busy = status(install.env())
        fcntl.flock(lock, fcntl.LOCK_UN)
    line = error_line(busy)
    assert "busy" in line and "run_pipeline.lock" in line and "try again in a minute" in line
    shown = status(install.env())
    assert shown.returncode == 0, describe(shown)


def test_an_unreachable_postgresql_is_one_error_line(tmp_path: Path, postgres_server):
    """Nothing listens on the port (or the database does not exist): exit 1, one `error:` line
    that says what to check, never the password."""
    port = _free_port()
    env = {
        **base_env(tmp_path),
        **postgres_server,
        "WAREHOUSE": "postgres",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(port),
        "POSTGRES_PASSWORD": "s3cret-password-9",
    }
    line = error_line(status(env))
    assert "unreachable" in line and "POSTGRES_*" in line and f":{port}/" in line, line
    assert "s3cret-password-9" not in line

    missing = {**base_env(tmp_path), **postgres_server, "WAREHOUSE": "postgres"}
    missing["POSTGRES_DB"] = "coincap_no_such_database"
    line = error_line(status(missing))
    assert "coincap_no_such_database" in line and "does not exist" in line, line


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"WAREHOUSE": "oracle"}, "set it to duckdb, postgres or spark"),
        ({"WAREHOUSE": "postgres", "POSTGRES_DB": "x", "POSTGRES_USER": "u"}, "POSTGRES_PASSWORD"),
    ],
)
def test_bad_settings_are_one_error_line(tmp_path: Path, overrides: dict, expected: str):
    line = error_line(status({**base_env(tmp_path), **overrides}))
    assert expected in line, line


# --------------------------------------------------------------------------- helpers
def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _fingerprint(install: Install) -> Any:
    """What a write would change: the DuckDB file's bytes; on PostgreSQL the relations and the
    rows of the tables a cycle writes."""
    if install.warehouse.engine == "duckdb":
        return hashlib.sha256(install.warehouse.duckdb_path.read_bytes()).hexdigest()
    return install.warehouse.query(
        "select (select count(*) from information_schema.tables), "
        "(select count(*) from ops.pipeline_runs), (select count(*) from raw._dlt_loads), "
        "(select count(*) from ops._dlt_loads)"
    )


def _free_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
