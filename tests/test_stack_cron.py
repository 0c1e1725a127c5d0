"""The crontab and the container's entrypoint, exercised on this machine the way the image runs them
(there is no Docker engine here).

- The crontab parses, runs every 5 minutes, as the unprivileged user `coincap`.
- docker/job-env.sh hands the configuration over in a 0600 file only that user can read.
- The crontab's exact commands succeed when run as cron runs them: an empty environment plus the
  crontab's own variables and what the entrypoint handed over, as the job user: a cycle, then
  `coincap-elt backup`, which writes a whole archive into BACKUP_DIR.
- (slow) docker/entrypoint.sh with a real Debian cron daemon and PIPELINE_SCHEDULE='* * * * *'
  installs a one-minute line and runs a cycle, and the cycle's log reaches the entrypoint's own
  stdout/stderr through the FIFO relays; stopped while idle, it stops at once.
- An invalid PIPELINE_SCHEDULE stops the entrypoint with one `error:` line naming it.

The job user runs a Python it can reach: a virtualenv built from Debian's python3 with
`pip install -c constraints.txt .`, the Dockerfile's recipe (the repo's .venv points into /root,
which other users cannot enter). It is built once per dependency set and version of ingest/ and
kept under /tmp.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from croniter import croniter
from helpers import API_KEY, ISO_UTC_LINE, REPO
from system_tools import missing, require_tool

from devkit.fake_coincap import FakeCoinCap

CRONTAB = REPO / "crontab"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
JOB_ENV = REPO / "docker" / "job-env.sh"
JOB_USER = "coincap"
SYSTEM_PYTHON = Path("/usr/bin/python3")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to the job user needs root")


# --------------------------------------------------------------------------- the crontab
def parse_crontab(text: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """(variables, [(schedule, user, command)]) of a system crontab (/etc/cron.d format)."""
    variables: dict[str, str] = {}
    jobs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment:
            variables[assignment[1]] = assignment[2].strip().strip("'\"")
            continue
        fields = line.split(None, 6)
        assert len(fields) == 7, f"not a system crontab line: {line!r}"
        jobs.append((" ".join(fields[:5]), fields[5], fields[6]))
    return variables, jobs


def test_crontab_parses_and_runs_the_cycle_every_five_minutes():
    variables, jobs = parse_crontab(CRONTAB.read_text())
    assert len(jobs) == 2  # the cycle, then the backup
    schedule, user, command = jobs[0]
    assert croniter.is_valid(schedule)
    start = datetime(2026, 1, 1, 0, 1)
    it = croniter(schedule, start)
    fires = [it.get_next(datetime) for _ in range(25)]
    assert fires[0] == datetime(2026, 1, 1, 0, 5)
    assert all(b - a == timedelta(minutes=5) for a, b in zip(fires, fires[1:], strict=False))
    assert user == JOB_USER
    assert "$COINCAP_HOME/scripts/run_pipeline.sh" in command
    assert "%" not in command  # cron would turn it into a newline
    assert variables["SHELL"] == "/bin/sh"
    # the image installs it where cron reads it, root-owned, not writable by others
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "COPY --chmod=0644 crontab /etc/cron.d/coincap" in dockerfile
    assert f"useradd --system --uid 10001 --gid {JOB_USER}" in dockerfile
    assert variables["COINCAP_HOME"] == "/app" and "WORKDIR /app" in dockerfile
    # the entrypoint's first cycle at start runs the very same command
    assert f"'{command}'" in ENTRYPOINT.read_text()


def test_crontab_makes_a_backup_daily_as_the_job_user_into_the_same_log():
    _, jobs = parse_crontab(CRONTAB.read_text())
    (_, _, cycle), (schedule, user, command) = jobs
    it = croniter(schedule, datetime(2026, 1, 1, 0, 0))
    fires = [it.get_next(datetime) for _ in range(3)]
    assert fires[0] == datetime(2026, 1, 1, 3, 32)
    # off the cycles' 5-minute ticks: a backup and a cycle never start in the same second
    assert all(fire.minute % 5 != 0 for fire in fires)
    assert all(b - a == timedelta(days=1) for a, b in zip(fires, fires[1:], strict=False))
    assert user == JOB_USER
    assert "-m ingest.cli backup" in command
    assert "%" not in command
    # the same environment file and the same relays to the container's stdout/stderr as a cycle
    prefix, redirect = (
        '. "$COINCAP_JOB_DIR/env" && ',
        '>"$COINCAP_JOB_DIR/stdout" 2>"$COINCAP_JOB_DIR/stderr"',
    )
    assert command.startswith(prefix) and cycle.startswith(prefix)
    assert command.endswith(redirect) and cycle.endswith(redirect)


# --------------------------------------------------------------------------- the job user
@pytest.fixture(scope="module")
def job_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("switching to the job user needs root")
    try:
        return pwd.getpwnam(JOB_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--create-home",
                "--home-dir",
                f"/home/{JOB_USER}",
                "--shell",
                "/usr/sbin/nologin",
                JOB_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(JOB_USER)


@pytest.fixture(scope="module")
def job_python() -> Path:
    """A Python with the project's pinned dependencies that the job user can run."""
    venv_ok = SYSTEM_PYTHON.exists() and (
        subprocess.run(
            [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv"], capture_output=True
        ).returncode
        == 0
    )
    if not venv_ok:
        missing("python3-venv not installed: sudo apt-get install -y python3-venv")
    digest = hashlib.sha256()
    for name in ("constraints.txt", "pyproject.toml"):
        digest.update((REPO / name).read_bytes())
    # the package is installed as the image installs it (a copy, not editable): a venv per
    # version of ingest/, or the job would run the code of whichever checkout built it first
    for path in sorted((REPO / "ingest").rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    venv = Path(tempfile.gettempdir()) / f"coincap-job-venv-{digest.hexdigest()[:12]}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    src = Path(tempfile.mkdtemp(prefix="coincap-src-"))
    try:
        # exactly what the Dockerfile copies before `pip install -c constraints.txt .`
        for name in ("pyproject.toml", "constraints.txt", "README.md"):
            shutil.copy(REPO / name, src / name)
        shutil.copytree(
            REPO / "ingest", src / "ingest", ignore=shutil.ignore_patterns("__pycache__")
        )
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "."],
            cwd=src,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        shutil.rmtree(src, ignore_errors=True)
    venv.chmod(0o755)
    (venv / ".complete").touch()
    return python


@pytest.fixture(scope="module")
def app_dir() -> Path:
    """The project as the image lays it out in /app (the Dockerfile's COPY lines), root-owned and
    readable by everyone: the job user cannot enter the checkout when it lies in a directory
    only root may enter (a clone under /root or in a `mktemp -d` folder)."""
    path = Path(tempfile.mkdtemp(prefix="coincap-app-"))
    path.chmod(0o755)
    for name in ("dbt_project", "profiles", "scripts", "docker"):
        shutil.copytree(
            REPO / name,
            path / name,
            ignore=shutil.ignore_patterns("__pycache__", "target", "logs", ".user.yml"),
        )
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def private_dir(owner: pwd.struct_passwd) -> Path:
    """A fresh directory under /tmp owned by the job user (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="coincap-job-"))
    os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def pipeline_env(workdir: Path, python: Path, coincap_url: str) -> dict[str, str]:
    """What the compose file and the Dockerfile put in the container's environment (DuckDB here,
    Postgres in the stack: the warehouse is covered by test_stack_warehouse.py)."""
    return {
        # the python image's PATH
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHON": str(python),
        "WAREHOUSE": "duckdb",
        "DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
        "COINCAP_API_KEY": API_KEY,
        "COINCAP_BASE_URL": coincap_url,
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "DBT_TARGET_PATH": str(workdir / "dbt-target"),
        "DBT_LOG_PATH": str(workdir / "dbt-target" / "logs"),
        "COINCAP_RUN_DIR": str(workdir / "run"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TZ": "UTC",
    }


def write_job_env(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(JOB_ENV), str(path), JOB_USER],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def as_job_user(user: pwd.struct_passwd, argv: list[str], **kwargs):
    return subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", *argv],
        **kwargs,
    )


@needs_root
def test_job_env_file_is_private_and_holds_only_the_pipeline_settings(job_user):
    workdir = private_dir(job_user)
    try:
        tricky = "k'e\"y $HOME `id` \\n; exit 1"
        env = {
            "PATH": "/usr/bin:/bin",
            "COINCAP_API_KEY": tricky,
            "WAREHOUSE": "postgres",
            "POSTGRES_PASSWORD": "pipeline-pw",
            "DESTINATION__POSTGRES__CREDENTIALS__CONNECT_TIMEOUT": "15",
            # the backup's settings, Metabase's application database included
            "BACKUP_SCHEDULE": "32 3 * * *",
            "METABASE_APP_DB_PASSWORD": "mb-app-pw",
            # other services' secrets and unrelated variables are not handed over
            "MB_ENCRYPTION_SECRET_KEY": "mb-secret",
            "METABASE_ADMIN_PASSWORD": "admin-secret",
            "HOSTNAME": "abc123",
        }
        target = workdir / "env"
        proc = write_job_env(target, env)
        assert proc.returncode == 0, proc.stderr
        info = target.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert (info.st_uid, info.st_gid) == (job_user.pw_uid, job_user.pw_gid)
        text = target.read_text()
        for absent in (
            "MB_ENCRYPTION_SECRET_KEY",
            "mb-secret",
            "METABASE_ADMIN_PASSWORD",
            "HOSTNAME",
        ):
            assert absent not in text
        # /bin/sh, as the job user, gets every value back exactly
        shown = as_job_user(
            job_user,
            [
                "env",
                "-i",
                "/bin/sh",
                "-c",
                f'. "{target}" && printf "%s|%s|%s|%s|%s|%s" "$COINCAP_API_KEY" "$WAREHOUSE" '
                '"$POSTGRES_PASSWORD" "$DESTINATION__POSTGRES__CREDENTIALS__CONNECT_TIMEOUT" '
                '"$BACKUP_SCHEDULE" "$METABASE_APP_DB_PASSWORD"',
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == f"{tricky}|postgres|pipeline-pw|15|32 3 * * *|mb-app-pw"
        # nobody else can read it
        other = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(target)],
            capture_output=True,
            text=True,
        )
        assert other.returncode != 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_as_cron(
    job_user: pwd.struct_passwd,
    variables: dict[str, str],
    user: str,
    command: str,
    app_dir: Path,
    job_dir: Path,
) -> subprocess.CompletedProcess[str]:
    """One crontab command as cron runs it: an empty environment, plus HOME/LOGNAME/SHELL of the
    user, plus the crontab's own variables (here pointing at this /app and this job directory)."""
    cron_env = {
        **variables,
        "HOME": job_user.pw_dir,
        "LOGNAME": user,
        "COINCAP_HOME": str(app_dir),
        "COINCAP_JOB_DIR": str(job_dir),
    }
    return as_job_user(
        pwd.getpwnam(user),
        ["env", "-i", *(f"{k}={v}" for k, v in cron_env.items()), cron_env["SHELL"], "-c", command],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=job_user.pw_dir,
    )


@needs_root
def test_crontab_command_succeeds_as_cron_runs_it(job_user, job_python, app_dir):
    """The cycle's line, then the backup's line, each as cron runs it."""
    variables, jobs = parse_crontab(CRONTAB.read_text())
    (_, user, command), (_, _, backup_command) = jobs
    workdir = private_dir(job_user)
    job_dir = workdir / "job"
    try:
        with FakeCoinCap(api_key=API_KEY) as fake:
            env = {
                **pipeline_env(workdir, job_python, fake.base_url),
                # what the compose file sets and the entrypoint hands the jobs
                "BACKUP_DIR": str(workdir / "backups"),
                "BACKUP_SCHEDULE": "32 3 * * *",
            }
            # what the entrypoint does as root before cron starts
            job_dir.mkdir(mode=0o700)
            os.chown(job_dir, job_user.pw_uid, job_user.pw_gid)
            assert write_job_env(job_dir / "env", env).returncode == 0
            proc = run_as_cron(job_user, variables, user, command, app_dir, job_dir)
        stdout = (job_dir / "stdout").read_text()
        stderr = (job_dir / "stderr").read_text()
        log = stdout + stderr
        assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\n--- job log ---\n{log}"
        assert proc.stdout == proc.stderr == ""  # everything went to the job's log files
        assert "cycle finished" in stderr, log
        assert all(ISO_UTC_LINE.match(line) for line in log.splitlines() if line.strip()), log
        heartbeat = workdir / "run" / "last_success"
        assert heartbeat.exists() and heartbeat.stat().st_uid == job_user.pw_uid
        # backups are scheduled: the cycle started watching their age (none yet, no warning)
        assert (workdir / "run" / "backup_watch_since").exists()
        assert "backup" not in log
        import duckdb

        conn = duckdb.connect(env["DUCKDB_PATH"], read_only=True)
        try:
            assert conn.execute("select count(*) from marts.fct_asset_prices").fetchone()[0] > 0
        finally:
            conn.close()

        # the backup's line: `coincap-elt backup` writes an archive into BACKUP_DIR
        from ingest.backup import ARCHIVE_PATTERN, list_backups, verify

        backup = run_as_cron(job_user, variables, user, backup_command, app_dir, job_dir)
        stdout = (job_dir / "stdout").read_text()
        stderr = (job_dir / "stderr").read_text()
        assert backup.returncode == 0, f"{backup.stdout}{backup.stderr}\n{stdout}{stderr}"
        assert backup.stdout == backup.stderr == ""
        (archive,) = list_backups(workdir / "backups")
        assert ARCHIVE_PATTERN.match(archive.path.name)["engine"] == "duckdb"
        assert stdout.strip() == str(archive.path)  # what `coincap-elt backup` prints
        assert "error" not in stderr, stderr
        assert verify(archive.path) is None
        assert archive.path.stat().st_uid == job_user.pw_uid
        assert stat.S_IMODE(archive.path.stat().st_mode) & 0o077 == 0, "others may read it"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- a real cron daemon
def cron_running() -> bool:
    pidfile = Path("/var/run/crond.pid")
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().split()[0]), 0)
        return True
    except (ValueError, ProcessLookupError, IndexError):
        return False


@pytest.fixture(scope="module")
def cron_daemon() -> str:
    """Debian's cron (checked before the job's venv is built: that takes a minute)."""
    return require_tool("cron")


@pytest.mark.slow
@needs_root
def test_entrypoint_and_real_cron_daemon_run_a_cycle(cron_daemon, job_user, job_python, app_dir):
    if cron_running():
        pytest.skip("a cron daemon is already running on this machine; the test starts its own")
    variables, jobs = parse_crontab(CRONTAB.read_text())
    (schedule, user, command), (backup_schedule, _, backup_command) = jobs
    workdir = private_dir(job_user)
    job_dir = workdir / "job"
    name = f"coincap-stack-test-{uuid.uuid4().hex[:8]}"
    cron_file = Path("/etc/cron.d") / name
    out_path, err_path = workdir / "entrypoint.out", workdir / "entrypoint.err"
    proc = None
    try:
        with FakeCoinCap(api_key=API_KEY) as fake:
            # the repo's crontab (its default schedule), pointed at this checkout; the entrypoint
            # rewrites the schedule from PIPELINE_SCHEDULE
            lines = [
                f"{k}={v}"
                for k, v in {
                    **variables,
                    "COINCAP_HOME": str(app_dir),
                    "COINCAP_JOB_DIR": str(job_dir),
                }.items()
            ]
            cron_file.write_text(
                "\n".join(
                    [
                        *lines,
                        f"{schedule} {user} {command}",
                        f"{backup_schedule} {user} {backup_command}",
                        "",
                    ]
                )
            )
            cron_file.chmod(0o644)
            env = {
                **pipeline_env(workdir, job_python, fake.base_url),
                "COINCAP_JOB_USER": user,
                "COINCAP_JOB_DIR": str(job_dir),
                "COINCAP_HOME": str(app_dir),
                "COINCAP_CRONTAB": str(cron_file),
                "COINCAP_RUN_ON_START": "false",  # the cycle must come from cron
                "COINCAP_STOP_TIMEOUT": "120",
                "PIPELINE_SCHEDULE": "* * * * *",
                "BACKUP_SCHEDULE": "15 4 * * 0",
                # never handed to the job
                "MB_ENCRYPTION_SECRET_KEY": "mb-secret",
            }
            with open(out_path, "w") as out, open(err_path, "w") as err:
                proc = subprocess.Popen(
                    ["bash", str(ENTRYPOINT)],
                    env=env,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            heartbeat = workdir / "run" / "last_success"
            # the schedule is installed before cron starts: same command, root's, 0644
            until = time.monotonic() + 30
            while "cron started" not in err_path.read_text() and time.monotonic() < until:
                assert proc.poll() is None, err_path.read_text()
                time.sleep(0.5)
            installed_vars, installed = parse_crontab(cron_file.read_text())
            assert installed == [
                ("* * * * *", user, command),
                ("15 4 * * 0", user, backup_command),
            ], installed
            assert installed_vars == parse_crontab(CRONTAB.read_text())[0] | {
                "COINCAP_HOME": str(app_dir),
                "COINCAP_JOB_DIR": str(job_dir),
            }
            info = cron_file.stat()
            assert info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o644
            assert "schedule '* * * * *', backups '15 4 * * 0'" in err_path.read_text()
            deadline = time.monotonic() + 200  # the next minute tick, plus one cycle
            while time.monotonic() < deadline and not heartbeat.exists():
                assert proc.poll() is None, err_path.read_text()
                time.sleep(2)
            assert heartbeat.exists(), (
                f"no cycle within 200 s\n--- stdout ---\n{out_path.read_text()}\n"
                f"--- stderr ---\n{err_path.read_text()}"
            )
            # after the heartbeat the cycle still checks freshness and writes its run-log row
            until = time.monotonic() + 90
            while "cycle finished" not in err_path.read_text() and time.monotonic() < until:
                assert proc.poll() is None, err_path.read_text()
                time.sleep(1)
            time.sleep(1)
            # the job's log reached the entrypoint's own stdout/stderr (the container's)
            stdout, stderr = out_path.read_text(), err_path.read_text()
            assert "cycle finished" in stderr, stderr
            # dbt's output (stdout of the cycle) came through the stdout relay
            assert "Running with dbt=" in stdout, stdout
            assert "cron started" in stderr
            assert "mb-secret" not in (job_dir / "env").read_text()
            assert stat.S_IMODE((job_dir / "env").stat().st_mode) == 0o600
            assert stat.S_ISFIFO((job_dir / "stdout").stat().st_mode)
            # docker stop while no cycle runs (the lock file exists, nobody holds it): SIGTERM to
            # the entrypoint; it stops cron and exits 0 at once, without waiting for a cycle
            lock = workdir / "run" / "run_pipeline.lock"
            assert lock.exists()
            # idle: no cycle holds the lock, and cron's next tick is more than 15 s away
            until = time.monotonic() + 150
            while time.monotonic() < until and not (
                datetime.now().second < 45
                and subprocess.run(["flock", "--nonblock", str(lock), "true"]).returncode == 0
            ):
                time.sleep(1)
            stop_started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=150) == 0, err_path.read_text()
            assert time.monotonic() - stop_started < 10
            assert "stopped" in err_path.read_text()
            assert "waiting up to" not in err_path.read_text()
            assert not cron_running()
    finally:
        cron_file.unlink(missing_ok=True)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the process group this test started
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@needs_root
def test_entrypoint_with_arguments_runs_them_as_the_job_user(job_user):
    proc = subprocess.run(
        ["bash", str(ENTRYPOINT), "id", "-un"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "COINCAP_JOB_USER": JOB_USER},
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == JOB_USER
    assert grp.getgrgid(job_user.pw_gid)


@needs_root
@pytest.mark.parametrize(
    ("variable", "schedule", "example"),
    [
        *(
            ("PIPELINE_SCHEDULE", schedule, "*/5 * * * *")
            for schedule in ("*/5 * * *", "61 * * * *", "*/0 * * * *", "@hourly", "every 5 minutes")
        ),
        *(
            ("BACKUP_SCHEDULE", schedule, "32 3 * * *")
            for schedule in ("30 3 * *", "30 24 * * *", "@daily", "daily")
        ),
    ],
)
def test_entrypoint_refuses_an_invalid_schedule(job_user, tmp_path, variable, schedule, example):
    cron_file = tmp_path / "coincap"
    shutil.copy(CRONTAB, cron_file)
    before = cron_file.read_text()
    proc = subprocess.run(
        ["bash", str(ENTRYPOINT)],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "COINCAP_JOB_USER": JOB_USER,
            "COINCAP_CRONTAB": str(cron_file),
            "COINCAP_JOB_DIR": str(tmp_path / "job"),
            variable: schedule,
        },
        timeout=30,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].endswith(
        f"entrypoint: error: {variable} is '{schedule}'; set five cron fields such as '{example}'"
    ), proc.stderr
    assert ISO_UTC_LINE.match(lines[0])
    # nothing was started or installed
    assert cron_file.read_text() == before
    assert not (tmp_path / "job").exists()
