"""`coincap-elt doctor`: a good configuration passes on both engines without a single request to
CoinCap, and each check fails on its own problem with a FAIL line that names it, while the
other checks still report. The CLI runs as a subprocess with an explicit environment, against a
real DuckDB file or PostgreSQL database and the HTTP-level fake CoinCap."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import API_KEY, REPO, Warehouse, base_env, run_cycle

from devkit.fake_coincap import FakeCoinCap
from devkit.postgres_cluster import free_port

# dbt parses and real cycles on both engines: `make test` runs them, the quick loop does not
pytestmark = pytest.mark.slow

CHECKS = ["variables", "warehouse", "dlt data dir", "run dir", "dbt", "schedule", "key"]
LINE = re.compile(r"^(ok|FAIL)\s+([a-z ]+): (.+)$")
COINCAP_ELT = Path(sys.executable).parent / "coincap-elt"


@dataclass
class Doctor:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> dict[str, tuple[str, str]]:
        """check name -> (status, detail), after asserting one well-formed line per check."""
        out: dict[str, tuple[str, str]] = {}
        for line in self.stdout.splitlines():
            match = LINE.match(line)
            assert match, f"not an ok/FAIL line: {line!r}\n{self.describe()}"
            out[match[2]] = (match[1], match[3])
        assert list(out) == CHECKS, self.describe()
        return out

    def failed(self) -> list[str]:
        return [name for name, (status, _) in self.lines.items() if status == "FAIL"]

    def detail(self, check: str) -> str:
        return self.lines[check][1]

    def describe(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def doctor(env: dict[str, str], *args: str, repo: Path = REPO) -> Doctor:
    """`coincap-elt doctor` (the installed console script), or `python -m ingest.cli doctor`
    from another checkout `repo`, with exactly `env`."""
    if repo == REPO:
        argv = [str(COINCAP_ELT), "doctor", *args]
    else:
        argv = [sys.executable, "-m", "ingest.cli", "doctor", *args]
    proc = subprocess.run(argv, env=env, cwd=str(repo), capture_output=True, text=True, timeout=180)
    return Doctor(proc.returncode, proc.stdout, proc.stderr)


def config(warehouse: Warehouse, fake: FakeCoinCap, tmp_path: Path) -> dict[str, str]:
    return {
        **base_env(tmp_path),
        **warehouse.env,
        "COINCAP_API_KEY": API_KEY,
        "COINCAP_BASE_URL": fake.base_url,
    }


def assert_only_failed(result: Doctor, *checks: str) -> None:
    assert result.returncode == 1, result.describe()
    assert result.failed() == list(checks), result.describe()


def assert_no_secret(result: Doctor, env: dict[str, str]) -> None:
    for name in ("COINCAP_API_KEY", "POSTGRES_PASSWORD"):
        if env.get(name):
            assert env[name] not in result.stdout + result.stderr, name


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse("duckdb", tmp_path)


@pytest.fixture
def pg_warehouse(postgres_server, tmp_path: Path) -> Iterator[Warehouse]:
    wh = Warehouse("postgres", tmp_path, postgres_server)
    try:
        yield wh
    finally:
        wh.drop()


# --------------------------------------------------------------------------- good configuration
def test_a_good_configuration_passes_without_a_request(warehouse, fake_coincap, tmp_path):
    env = config(warehouse, fake_coincap, tmp_path)
    result = doctor(env)
    assert result.returncode == 0, result.describe()
    assert result.failed() == []
    # before the first cycle: no schema yet, and that is not a failure
    assert "created by the first cycle" in result.detail("warehouse")
    if warehouse.engine == "postgres":
        assert "reachable" in result.detail("warehouse")
        assert "profile target postgres connects" in result.detail("dbt")
    assert result.detail("key").startswith("set, not checked: --check-key spends one request")
    assert fake_coincap.requests == []
    assert_no_secret(result, env)
    # nothing was created for the cycle to find
    assert not warehouse.exists()
    assert not (tmp_path / "run").exists() and not (tmp_path / "dlt").exists()


def test_after_a_cycle_the_schemas_are_present_and_check_key_spends_one_request(
    warehouse, fake_coincap, tmp_path
):
    env = config(warehouse, fake_coincap, tmp_path)
    cycle = run_cycle(env)
    assert cycle.returncode == 0, cycle.describe()
    fake_coincap.reset_requests()

    result = doctor(env, "--check-key")
    assert result.returncode == 0, result.describe()
    assert result.failed() == []
    assert "schemas raw, staging, marts, ops present" in result.detail("warehouse")
    assert "created by the first cycle" not in result.stdout
    assert f"profile target {warehouse.engine} connects" in result.detail("dbt")
    assert len(fake_coincap.requests) == 1
    assert fake_coincap.requests[0].status == 200
    billed = fake_coincap.credits_billed()
    assert result.detail("key") == f"set, CoinCap accepted it (1 request, {billed} credits spent)"
    assert_no_secret(result, env)


# --------------------------------------------------------------------------- 1. variables
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "COINCAP_BACKFILL_DAYS",
            "a week",
            "COINCAP_BACKFILL_DAYS is 'a week'; set it to a whole number of days",
        ),
        (
            "COINCAP_MONTHLY_CREDITS",
            "lots",
            "COINCAP_MONTHLY_CREDITS is 'lots'; set it to a whole number of credits a month",
        ),
    ],
)
def test_a_bad_variable_fails_only_the_variables_check(
    duckdb_warehouse, fake_coincap, tmp_path, variable, value, message
):
    env = {**config(duckdb_warehouse, fake_coincap, tmp_path), variable: value}
    result = doctor(env)
    assert_only_failed(result, "variables")
    assert result.detail("variables") == message
    assert fake_coincap.requests == []


def test_a_missing_key_fails_variables_and_key(duckdb_warehouse, fake_coincap, tmp_path):
    env = config(duckdb_warehouse, fake_coincap, tmp_path)
    del env["COINCAP_API_KEY"]
    result = doctor(env, "--check-key")
    assert_only_failed(result, "variables", "key")
    assert result.detail("key").startswith("COINCAP_API_KEY is not set; get a key at")
    assert fake_coincap.requests == []


# --------------------------------------------------------------------------- 2. warehouse
def test_an_unreachable_postgres_fails_the_warehouse(pg_warehouse, fake_coincap, tmp_path):
    wh = pg_warehouse
    port = str(free_port())  # nothing listens there
    env = {**config(wh, fake_coincap, tmp_path), "POSTGRES_PORT": port}
    result = doctor(env)
    # dbt's profile reads the same variables: its connection fails too
    assert_only_failed(result, "warehouse", "dbt")
    warehouse = result.detail("warehouse")
    assert warehouse.startswith(f"PostgreSQL {wh.dbname}@127.0.0.1:{port} as ")
    assert "unreachable" in warehouse and "check POSTGRES_HOST, POSTGRES_PORT" in warehouse
    assert "Connection refused" in warehouse
    assert "profile target postgres does not connect" in result.detail("dbt")
    assert "Connection refused" in result.detail("dbt")
    assert_no_secret(result, env)


def test_a_wrong_postgres_password_fails_the_warehouse(pg_warehouse, fake_coincap, tmp_path):
    env = {**config(pg_warehouse, fake_coincap, tmp_path), "POSTGRES_PASSWORD": "not-the-password"}
    result = doctor(env)
    assert_only_failed(result, "warehouse", "dbt")
    assert "password authentication failed" in result.detail("warehouse")
    assert "password authentication failed" in result.detail("dbt")
    assert "not-the-password" not in result.stdout + result.stderr


def test_an_unopenable_duckdb_file_fails_the_warehouse(duckdb_warehouse, fake_coincap, tmp_path):
    duckdb_warehouse.duckdb_path.write_text("not a DuckDB file\n" * 1000)
    result = doctor(config(duckdb_warehouse, fake_coincap, tmp_path))
    # dbt's profile opens the same file
    assert_only_failed(result, "warehouse", "dbt")
    assert result.detail("warehouse").startswith(
        f"DuckDB {duckdb_warehouse.duckdb_path} does not open ("
    )
    assert "not a valid DuckDB database file" in result.detail("dbt")


# --------------------------------------------------------------------------- 3. directories
def _make_unwritable(path: Path) -> bool:
    """chmod a-w, and as root (whom modes do not stop) the immutable attribute too. False when
    the directory still takes files (no chattr, a filesystem without it)."""
    path.mkdir(parents=True)
    path.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    try:
        (path / "probe").touch()
    except OSError:
        return True
    (path / "probe").unlink()
    return False


@pytest.mark.parametrize(
    ("variable", "check"), [("DLT_DATA_DIR", "dlt data dir"), ("COINCAP_RUN_DIR", "run dir")]
)
def test_an_unwritable_directory_fails_its_check(
    duckdb_warehouse, fake_coincap, tmp_path, variable, check
):
    env = config(duckdb_warehouse, fake_coincap, tmp_path)
    locked = tmp_path / "locked"
    try:
        if not _make_unwritable(locked):
            pytest.skip("cannot make a directory unwritable here (root without chattr)")
        env[variable] = str(locked)
        result = doctor(env)
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
        locked.chmod(0o755)
    assert_only_failed(result, check)
    detail = result.detail(check)
    assert f"cannot create a file in {locked} (" in detail
    assert f"set {variable} to a directory this user can write" in detail
    assert list(locked.iterdir()) == []


# --------------------------------------------------------------------------- 4. dbt
def test_a_broken_dbt_project_fails_the_dbt_check(duckdb_warehouse, fake_coincap, tmp_path):
    """A copy of the checkout whose project refers to a model that does not exist."""
    repo = tmp_path / "checkout"
    for part in ("ingest", "dbt_project", "profiles", "docker"):
        shutil.copytree(
            REPO / part, repo / part, ignore=shutil.ignore_patterns("target", "logs", "__pycache__")
        )
    broken = repo / "dbt_project" / "models" / "broken_model.sql"
    broken.write_text("select * from {{ ref('no_such_model') }}\n")

    result = doctor(config(duckdb_warehouse, fake_coincap, tmp_path), repo=repo)
    assert_only_failed(result, "dbt")
    detail = result.detail("dbt")
    assert detail.startswith("the project does not parse: ")
    assert "broken_model" in detail and "no_such_model" in detail


# --------------------------------------------------------------------------- 5. schedule
@pytest.mark.parametrize("schedule", ["*/5 * * *", "61 * * * *", "@hourly"])
def test_an_invalid_schedule_fails_the_schedule_check(
    duckdb_warehouse, fake_coincap, tmp_path, schedule
):
    env = {**config(duckdb_warehouse, fake_coincap, tmp_path), "PIPELINE_SCHEDULE": schedule}
    result = doctor(env)
    assert_only_failed(result, "schedule")
    # word for word what docker/entrypoint.sh says before refusing to start
    assert result.detail("schedule") == (
        f"PIPELINE_SCHEDULE is '{schedule}'; set five cron fields such as '*/5 * * * *'"
    )


def test_a_valid_schedule_that_is_not_the_default(duckdb_warehouse, fake_coincap, tmp_path):
    env = {**config(duckdb_warehouse, fake_coincap, tmp_path), "PIPELINE_SCHEDULE": "0 * * * 1-5"}
    result = doctor(env)
    assert result.returncode == 0, result.describe()
    assert result.detail("schedule") == "PIPELINE_SCHEDULE '0 * * * 1-5': five cron fields"


# --------------------------------------------------------------------------- 6. --check-key
def test_check_key_with_a_wrong_key_fails_after_one_request(
    duckdb_warehouse, fake_coincap, tmp_path
):
    env = {**config(duckdb_warehouse, fake_coincap, tmp_path), "COINCAP_API_KEY": "wrong-key-123"}
    result = doctor(env, "--check-key")
    assert_only_failed(result, "key")
    assert len(fake_coincap.requests) == 1  # one attempt: a refused key is not retried
    status = fake_coincap.requests[0].status
    assert status in (401, 403)
    detail = result.detail("key")
    assert detail.startswith(f"CoinCap refused the API key (HTTP {status}")
    assert detail.endswith(f"(1 request, {fake_coincap.credits_billed()} credits spent)")
    assert "wrong-key-123" not in result.stdout + result.stderr


def test_help_describes_doctor_and_check_key():
    proc = subprocess.run(
        [str(COINCAP_ELT), "doctor", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "without spending CoinCap credits" in proc.stdout
    assert "--check-key" in proc.stdout
