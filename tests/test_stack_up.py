"""The production stack, started for real: `docker-compose up -d --build` of the project's own
docker-compose.yml and Dockerfile, unchanged, driven through podman's Docker-compatible API.

Only three things are not the real ones: CoinCap (devkit/fake_coincap.py, served on this host and
reached from the containers as host.containers.internal), Metabase (devkit/fake_metabase.py, in the
Metabase stand-in image) and the registry images (python, postgres, nginx, metabase), stood in for
by images built from a debootstrapped Debian bookworm (tests/stack_images.py, tests/standins/).

The .env is made from .env.example with random secrets, plus the test's own settings: CoinCap's
address, one day of backfill, PIPELINE_SCHEDULE='* * * * *' (a cycle a minute), free ports.

Needs root, podman, buildah, runc, debootstrap, docker-compose, the CNI dnsname plugin and
chromium; without them it skips with the install command (fails under CI=true). Marked `stack` and
`slow`: the quick loop (-m 'not slow and not drill and not stack') leaves it out. Every container,
volume and network it made is removed at the end, failed or not (and buildah's working containers
that a failed build leaves); the podman API service too, when this test started it. Built images
are kept for the next run (tests/stack_images.py).

Podman runs no health checks by itself here (no systemd): a thread runs `podman healthcheck run`
for every container of the project every few seconds, as Docker's daemon would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stack_images
from helpers import CHROMIUM_ARGS, FCT_COLUMNS, REPO
from system_tools import in_ci, missing

from devkit.fake_coincap import FakeCoinCap

pytestmark = [pytest.mark.stack, pytest.mark.slow]

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
LONG_RUNNING = ["warehouse", "runpipeline", "metabase", "docs"]
DNSNAME_PLUGIN = Path("/usr/lib/cni/dnsname")
CHROMIUM = "/usr/bin/chromium"
LOCK = "/var/lib/coincap/run/run_pipeline.lock"
INIT_DONE = "coincap: roles, schemas and the Metabase database are in place"
ENABLE = (
    "apt-get install -y podman buildah runc debootstrap docker-compose "
    "golang-github-containernetworking-plugin-dnsname iproute2 chromium"
)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} stack test: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 2.0):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------- the fakes on the host
class RecordingCoinCap(FakeCoinCap):
    """The CoinCap fake, on every interface (containers reach it through the podman gateway),
    remembering the `timestamp` of every /assets snapshot it answered, and following the real
    clock (each snapshot is a new observation)."""

    def __init__(self, api_key: str):
        super().__init__(api_key=api_key, host="0.0.0.0", prices_follow_clock=True)
        self.served: list[int] = []
        self._ticking = threading.Event()

    def _route(self, path: str, query: dict[str, str]):
        status, body = super()._route(path, query)
        segments = [s for s in path.split("/") if s]
        if segments[:1] == ["v3"]:
            segments = segments[1:]
        if segments == ["assets"] and status == 200 and isinstance(body, dict):
            with self._lock:
                self.served.append(int(body["timestamp"]))
        return status, body

    def follow_clock(self) -> None:
        def tick() -> None:
            while not self._ticking.is_set():
                self.now_ms = int(time.time() * 1000) - 2_000
                time.sleep(0.5)

        threading.Thread(target=tick, daemon=True).start()

    def stop(self) -> None:
        self._ticking.set()
        super().stop()


# --------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    project: str
    env_file: Path
    env: dict[str, str]
    coincap: RecordingCoinCap
    timings: dict[str, float] = field(default_factory=dict)

    def compose(
        self, *args: str, env_file: Path | None = None, project: str | None = None, timeout=900
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "docker-compose",
                "--project-name",
                project or self.project,
                "--project-directory",
                str(REPO),
                "-f",
                str(COMPOSE_FILE),
                "--env-file",
                str(env_file or self.env_file),
                *args,
            ],
            # a clean environment: the shell's variables must not fill in for the .env file
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(self.env_file.parent),
                "DOCKER_HOST": f"unix://{stack_images.SOCKET}",
                "COMPOSE_HTTP_TIMEOUT": "900",
            },
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def checked(self, *args: str, timeout=900) -> str:
        proc = self.compose(*args, timeout=timeout)
        assert proc.returncode == 0, f"docker-compose {' '.join(args)}:\n{proc.stderr[-4000:]}"
        return proc.stdout

    def container(self, service: str) -> str:
        out = self.checked("ps", "-q", service).split()
        assert out, f"no container for {service}"
        return out[0]

    def logs(self, service: str) -> str:
        """The container's output, stdout and stderr together (`podman logs`: docker-compose
        1.29 through podman's API glues some lines together)."""
        return subprocess.run(
            ["podman", "logs", self.container(service)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ).stdout

    def ps(self) -> dict[str, str]:
        """{service: State column of `docker-compose ps`} (e.g. 'Up (healthy)', 'Exit 0')."""
        states = {}
        for line in self.checked("ps").splitlines():
            name = re.match(rf"^{re.escape(self.project)}_(\S+?)_\d+\s", line)
            state = re.search(
                r"\s(Up(?: \([^)]*\))?|Exit -?\d+|Restarting|Paused)(?:\s{2,}|\s*$)", line
            )
            if name and state:
                states[name[1]] = state[1]
        return states

    def inspect(self, service: str) -> dict:
        out = subprocess.run(
            ["podman", "inspect", self.container(service)], capture_output=True, text=True
        )
        return json.loads(out.stdout)[0]

    def connect(self, user: str, password: str, dbname: str = "coincap"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1",
            port=int(self.env["WAREHOUSE_PORT"]),
            user=user,
            password=password,
            dbname=dbname,
            connect_timeout=5,
        )

    def query(self, sql: str, user: str = "postgres", params=None) -> list[tuple]:
        password = {
            "postgres": self.env["WAREHOUSE_ADMIN_PASSWORD"],
            "pipeline": self.env["PIPELINE_DB_PASSWORD"],
            "metabase_reader": self.env["METABASE_READER_DB_PASSWORD"],
        }[user]
        conn = self.connect(user, password)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def runs(self) -> list[tuple]:
        """marts.pipeline_runs: (started_at, status, failed_step, pending_packages_loaded)."""
        try:
            return self.query(
                "select started_at, status, failed_step, pending_packages_loaded "
                "from marts.pipeline_runs order by started_at"
            )
        except Exception:  # noqa: BLE001 (not built yet, or the warehouse is down)
            return []

    def lock_held(self) -> bool:
        proc = subprocess.run(
            ["podman", "exec", self.container("runpipeline"), "flock", "--nonblock", LOCK, "true"],
            capture_output=True,
            text=True,
        )
        return proc.returncode == 1


class HealthChecks:
    """What Docker's daemon does and podman without systemd does not: run each container's health
    check, over and over."""

    def __init__(self, project: str):
        self.project = project
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            names = subprocess.run(
                [
                    "podman",
                    "ps",
                    "--filter",
                    f"label=com.docker.compose.project={self.project}",
                    "--format",
                    "{{.Names}}",
                ],
                capture_output=True,
                text=True,
            ).stdout.split()
            for name in names:
                subprocess.run(
                    ["podman", "healthcheck", "run", name], capture_output=True, timeout=60
                )
            self._stop.wait(3)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


def make_env_file(directory: Path, extra: dict[str, str], drop: str | None = None) -> Path:
    """.env.example with every `change-me` value replaced by a random one, plus `extra`."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and match[1] == drop:
            continue
        if match and "change-me" in match[2]:
            value = secrets.token_hex(24)
            if match[1] == "METABASE_ADMIN_PASSWORD":
                value = f"Mb-{value}"
            line = f"{match[1]}={value}"
        lines.append(line)
    lines += [f"{k}={v}" for k, v in extra.items()]
    path = directory / (f"env-without-{drop}" if drop else ".env")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2]
    return values


# --------------------------------------------------------------------------- fixtures
def missing_prerequisite() -> str | None:
    """What this machine lacks for the stack test (one line with the command that brings it)."""
    if os.geteuid() != 0:
        return f"the stack test runs rootful podman: run it as root after {ENABLE}"
    for tool in ("podman", "buildah", "runc", "debootstrap", "docker-compose", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed: sudo {ENABLE} (the whole stack under podman)"
    if not DNSNAME_PLUGIN.exists():
        return (
            "podman's CNI dnsname plugin (service names in compose networks) is not installed: "
            f"sudo {ENABLE}"
        )
    if not Path(CHROMIUM).exists():
        return f"chromium not installed: sudo {ENABLE}"
    return None


MISSING = missing_prerequisite()
if MISSING and not in_ci():
    # one line for the whole file; under CI=true every test fails instead (the fixture below)
    pytest.skip(MISSING, allow_module_level=True)


@pytest.fixture(scope="module")
def podman_api() -> Iterator[None]:
    if MISSING:
        missing(MISSING)
    problem = stack_images.write_containers_conf()
    if problem:
        missing(problem)
    service = None
    if not stack_images.podman_service_answers():
        stack_images.SOCKET.parent.mkdir(parents=True, exist_ok=True)
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{stack_images.SOCKET}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for("podman's API service", stack_images.podman_service_answers, 30, every=0.5)
    try:
        yield
    finally:
        if service is not None:
            service.terminate()
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()


def buildah_containers() -> set[str]:
    """Buildah's working containers (a build that fails leaves its own behind)."""
    proc = subprocess.run(["buildah", "containers", "-q"], capture_output=True, text=True)
    return set(proc.stdout.split())


def remove_project(project: str) -> None:
    """Every container, volume and network labelled with the compose project, whatever is left."""
    label = f"label=com.docker.compose.project={project}"
    for kind, list_cmd, rm_cmd in (
        ("container", ["ps", "-a", "-q"], ["rm", "-f", "-t", "5"]),
        ("volume", ["volume", "ls", "-q"], ["volume", "rm", "-f"]),
        ("network", ["network", "ls", "-q"], ["network", "rm", "-f"]),
    ):
        ids = subprocess.run(
            ["podman", *list_cmd, "--filter", label], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["podman", *rm_cmd, *ids], capture_output=True, text=True)
            log(f"removed {len(ids)} {kind}(s) of {project}")


@pytest.fixture(scope="module")
def stack(podman_api) -> Iterator[Stack]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    project = f"coincapstack{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="coincap-stack-"))
    wheels = coincap = health = None
    stack = None
    builds_before = buildah_containers()
    try:
        wheels = stack_images.WheelServer(
            stack_images.ensure_wheelhouse(str(REPO / ".venv" / "bin" / "python"))
            if (REPO / ".venv" / "bin" / "python").exists()
            else stack_images.ensure_wheelhouse("python3")
        )
        stack_images.ensure_images(log)
        timings["images"] = time.monotonic() - started
        api_key = secrets.token_hex(16)
        coincap = RecordingCoinCap(api_key).start()
        coincap.follow_clock()
        env_file = make_env_file(
            workdir,
            {
                "COINCAP_API_KEY": api_key,
                "COINCAP_BASE_URL": f"http://{stack_images.HOST_FROM_CONTAINERS}:{coincap.port}",
                "COINCAP_BACKFILL_DAYS": "1",
                "PIPELINE_SCHEDULE": "* * * * *",
                "WAREHOUSE_PORT": str(free_port()),
                "METABASE_PORT": str(free_port()),
                # podman did not answer on a port published on an explicit 0.0.0.0
                "METABASE_BIND_ADDRESS": "127.0.0.1",
                "DOCS_PORT": str(free_port()),
            },
        )
        # the example's own COINCAP_API_KEY line is replaced by the random one above
        text = re.sub(r"(?m)^COINCAP_API_KEY=\S+\n", "", env_file.read_text(), count=1)
        env_file.write_text(text)
        stack = Stack(project, env_file, read_env_file(env_file), coincap, timings)
        health = HealthChecks(project)
        log(f"docker-compose up -d --build (project {project})")
        up_started = time.monotonic()
        stack.checked("up", "-d", "--build", timeout=1200)
        timings["up"] = time.monotonic() - up_started
        yield stack
    finally:
        if stack is not None:
            for service in (*LONG_RUNNING, "metabase-provision"):
                out = stack.compose("logs", "--no-color", "--tail", "40", service)
                print(f"--- last lines of {service} ---\n{out.stdout}")
            down = stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "30")
            if down.returncode != 0:
                log(f"docker-compose down failed: {down.stderr[-2000:]}")
        if health is not None:
            health.stop()
        remove_project(project)
        left_by_builds = buildah_containers() - builds_before
        if left_by_builds:
            subprocess.run(["buildah", "rm", *left_by_builds], capture_output=True)
            log(f"removed {len(left_by_builds)} working container(s) of failed builds")
        if coincap is not None:
            coincap.stop()
        if wheels is not None:
            wheels.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        log(f"wall time of the stack test: {time.monotonic() - started:.0f} s ({timings})")


def healthy_services(stack: Stack) -> bool:
    states = stack.ps()
    return all(states.get(s) == "Up (healthy)" for s in LONG_RUNNING)


# --------------------------------------------------------------------------- the assertions
def test_a_missing_secret_stops_compose_naming_it(stack, tmp_path):
    env_file = make_env_file(tmp_path, {}, drop="PIPELINE_DB_PASSWORD")
    other = f"{stack.project}x"
    proc = stack.compose("up", "-d", env_file=env_file, project=other, timeout=120)
    try:
        assert proc.returncode != 0
        assert "PIPELINE_DB_PASSWORD is required" in proc.stderr, proc.stderr
        assert "copy .env.example to .env" in proc.stderr
        created = subprocess.run(
            ["podman", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={other}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert created == []
    finally:
        remove_project(other)


def test_every_long_running_service_becomes_healthy(stack):
    # runpipeline turns healthy after its first cycle (the heartbeat)
    wait_for("every long-running service healthy in `ps`", lambda: healthy_services(stack), 300)
    log(f"healthy: {stack.ps()}")


def test_the_warehouse_created_its_roles_and_schemas(stack):
    roles = dict(
        stack.query(
            "select rolname, rolsuper from pg_roles "
            "where rolname in ('pipeline', 'metabase_reader', 'metabase_app')"
        )
    )
    assert roles == {"pipeline": False, "metabase_reader": False, "metabase_app": False}
    owners = dict(
        stack.query(
            "select nspname, pg_get_userbyid(nspowner) from pg_namespace "
            "where nspname in ('raw', 'staging', 'marts')"
        )
    )
    assert owners == {"raw": "pipeline", "staging": "pipeline", "marts": "pipeline"}
    assert stack.query(
        "select pg_get_userbyid(datdba) from pg_database where datname = 'metabase'"
    ) == [("metabase_app",)]
    assert stack.logs("warehouse").count(INIT_DONE) == 1


def test_metabase_reader_reads_marts_and_is_denied_raw(stack):
    import psycopg2

    wait_for("rows in marts", lambda: stack.runs(), 240)
    assert (
        stack.query("select count(*) from marts.fct_asset_prices", user="metabase_reader")[0][0] > 0
    )
    for table in ("raw.assets", "staging.stg_coincap__assets"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            stack.query(f"select count(*) from {table}", user="metabase_reader")


def test_metabase_provision_exits_0_and_a_second_run_changes_nothing(stack):
    # it waits for the first cycle's marts (Metabase syncs them), then pushes dbt's metadata
    wait_for(
        "metabase-provision to exit",
        lambda: stack.ps().get("metabase-provision", "").startswith("Exit"),
        480,
    )
    assert stack.ps()["metabase-provision"] == "Exit 0", stack.logs("metabase-provision")
    info = stack.inspect("metabase-provision")
    # no health check of its own: it never sits in "starting"
    assert info["Config"].get("Healthcheck") in (None, {}) or info["Config"]["Healthcheck"][
        "Test"
    ] == ["NONE"], info["Config"].get("Healthcheck")
    assert not (info["State"].get("Health") or {}).get("Status"), info["State"].get("Health")
    first = stack.logs("metabase-provision")
    assert "metabase: done:" in first
    assert "laid out 10 cards and 2 filters" in first, first
    assert "updated the metadata of" in first, first  # dbt's descriptions and keys, in Metabase
    changes = stack.logs("metabase").count("fake-metabase: changed:")
    assert changes > 0

    # the second run: `up` again starts the one-shot again
    stack.checked("up", "-d", "metabase-provision")
    wait_for(
        "the second provisioning run",
        lambda: (
            stack.logs("metabase-provision").count("metabase: done:") == 2
            and stack.ps().get("metabase-provision", "").startswith("Exit")
        ),
        180,
    )
    assert stack.ps()["metabase-provision"] == "Exit 0"
    second = stack.logs("metabase-provision")[len(first) :]
    assert "in place" in second and " created " not in second, second
    assert stack.logs("metabase").count("fake-metabase: changed:") == changes


def test_the_docs_service_serves_the_dbt_docs_site(stack):
    sync_api = pytest.importorskip("playwright.sync_api")
    # the site replaces the placeholder after the first good cycle
    wait_for("a succeeded cycle", lambda: any(r[1] == "succeeded" for r in stack.runs()), 240)
    url = f"http://127.0.0.1:{stack.env['DOCS_PORT']}"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/#!/model/model.coincap_elt.fct_asset_prices", timeout=60_000)
            page.get_by_text("observed_at", exact=True).first.wait_for(timeout=60_000)
            text = page.inner_text("body")
        finally:
            browser.close()
    assert "fct_asset_prices" in text
    assert not [col for col in FCT_COLUMNS if col not in text]


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return [a for a in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out) if not a.startswith("127.")]


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def test_the_warehouse_port_answers_on_127_0_0_1_only(stack):
    port = int(stack.env["WAREHOUSE_PORT"])
    assert answers("127.0.0.1", port)
    assert stack.query("select 1") == [(1,)]
    others = host_addresses()
    assert others, "no other address on this host to try"
    assert [a for a in others if answers(a, port)] == []
    bindings = stack.inspect("warehouse")["HostConfig"]["PortBindings"]["5432/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]


def test_a_first_cycle_then_cron_cycles_every_minute(stack):
    def succeeded():
        rows = [r for r in stack.runs() if r[1] == "succeeded"]
        return rows if len(rows) >= 3 else None

    rows = wait_for("three succeeded cycles in marts.pipeline_runs", succeeded, 300)
    logs = stack.logs("runpipeline")
    assert "starting a first cycle now; then on the schedule '* * * * *' (cron)" in logs
    # cron's cycles start on the minute; one a minute
    cron_starts = [r[0] for r in rows[1:]]
    assert all(t.second < 15 for t in cron_starts), cron_starts
    assert all(
        50 <= (b - a).total_seconds() < 125
        for a, b in zip(cron_starts, cron_starts[1:], strict=False)
    ), cron_starts


def test_backups_are_scheduled_and_include_metabases_database(stack):
    container = stack.container("runpipeline")

    def run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", "exec", container, *argv], capture_output=True, text=True, timeout=timeout
        )

    # the crontab the entrypoint installed: the backup's line, on the default daily schedule
    crontab = run("cat", "/etc/cron.d/coincap").stdout
    backup_lines = [
        line for line in crontab.splitlines() if "ingest.cli backup" in line and line[:1] != "#"
    ]
    assert len(backup_lines) == 1, crontab
    assert backup_lines[0].startswith("32 3 * * * coincap . "), crontab
    assert "backups '32 3 * * *'" in stack.logs("runpipeline")
    # a backup now, as docs/operations.md says, as the job user, into the volume
    made = run("/app/docker/entrypoint.sh", "coincap-elt", "backup", timeout=600)
    assert made.returncode == 0, made.stdout + made.stderr
    path = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"/var/lib/coincap/backups/coincap-postgres-\d{8}T\d{6}Z\.tar\.gz", path)
    assert run("stat", "-c", "%U", path).stdout.strip() == "coincap"
    members = run("tar", "-tzf", path).stdout.split()
    assert members[0] == "manifest.json", members
    assert {"warehouse/warehouse.dump", "metabase/metabase.dump"} <= set(members), members
    check = run(
        "/app/docker/entrypoint.sh",
        "python",
        "-c",
        f"from ingest.backup import verify; print(verify({path!r}))",
    )
    assert check.stdout.strip() == "None", check.stdout + check.stderr
    mounts = {m["Destination"]: m for m in stack.inspect("runpipeline")["Mounts"]}
    assert mounts["/var/lib/coincap/backups"]["Type"] == "volume"
    # status shows it
    status = run("/app/docker/entrypoint.sh", "coincap-elt", "status")
    assert status.returncode == 0, status.stderr
    assert f"Newest backup: {path}, made " in status.stdout, status.stdout
    assert "scheduled '32 3 * * *' UTC, at most 36 h old" in status.stdout


def test_warehouse_down_for_two_cycles_then_nothing_lost_or_doubled(stack):
    before = len(stack.runs())
    failed_lines = stack.logs("runpipeline").count("run_pipeline: error:")
    stack.checked("stop", "warehouse")
    stopped_at = time.monotonic()
    wait_for(
        "two cycles failing while the warehouse is down",
        lambda: stack.logs("runpipeline").count("run_pipeline: error:") >= failed_lines + 2,
        200,
    )
    down_for = time.monotonic() - stopped_at
    stack.checked("start", "warehouse")
    wait_for(
        "the warehouse healthy again", lambda: stack.ps().get("warehouse") == "Up (healthy)", 120
    )

    def recovered():
        rows = stack.runs()
        new = rows[before:]
        failed = [r for r in new if r[1] == "failed"]
        good = [r for r in new if r[1] == "succeeded"]
        return (new, failed, good) if len(failed) >= 2 and good else None

    new, failed, good = wait_for("the failed cycles' rows and a good cycle", recovered, 240)
    log(f"warehouse down {down_for:.0f} s; cycles since: {new}")
    assert all(r[2] == "ingest" for r in failed), failed
    # (their run-log rows waited in dlt's pending packages while the warehouse was down)

    # every snapshot CoinCap answered is in the marts exactly once, per asset
    served = sorted(set(stack.coincap.served))
    observed = stack.query(
        "select (extract(epoch from observed_at) * 1000)::bigint, count(*) "
        "from marts.fct_asset_prices where asset_id = 'bitcoin' group by 1"
    )
    counts = dict(observed)
    # a snapshot answered in the last seconds may still be loading
    settled = [t for t in served if t < served[-1]]
    assert [t for t in settled if t not in counts] == [], "lost snapshots"
    assert [t for t, n in counts.items() if n != 1] == [], "doubled snapshots"
    doubled_raw = stack.query(
        "select id, coincap_timestamp, count(*) from raw.assets group by 1, 2 having count(*) > 1"
    )
    assert doubled_raw == []
    doubled_runs = stack.query(
        "select started_at, count(*) from marts.pipeline_runs group by 1 having count(*) > 1"
    )
    assert doubled_runs == []
    # the 5-minute series has no hole across the outage (the history filled it)
    holes = stack.query(
        "select count(*) from (select price_at - lag(price_at) over (partition by asset_id "
        "order by price_at) as step from marts.fct_asset_price_history) s "
        "where step > interval '5 minutes'"
    )
    assert holes == [(0,)]


def stop_tail(stack: Stack) -> str:
    """runpipeline's output since its last `stopping` line."""
    logs = stack.logs("runpipeline")
    return logs[logs.rfind("entrypoint: stopping: no new cycles") :]


def test_stop_while_idle_does_not_wait(stack):
    def idle():
        logs = stack.logs("runpipeline")
        return (
            logs.rfind("cycle finished") > logs.rfind("cycle started")
            and time.gmtime().tm_sec < 40  # cron's next tick is 20 s or more away
            and not stack.lock_held()
        )

    wait_for("runpipeline idle between two cycles", idle, 180, every=1)
    t0 = time.monotonic()
    stack.checked("stop", "runpipeline")
    took = time.monotonic() - t0
    tail = stop_tail(stack)
    assert "entrypoint: stopped" in tail
    assert "waiting up to" not in tail, tail
    assert stack.inspect("runpipeline")["State"]["ExitCode"] == 0
    log(f"stop while idle took {took:.1f} s")
    assert took < 15, took


def test_stop_during_a_cycle_waits_for_it(stack):
    # `start` runs a cycle at once (COINCAP_RUN_ON_START); CoinCap answering slowly makes it last
    # long enough to be caught (each answer within the 15 s request timeout)
    stack.coincap.delay = 8.0
    try:
        stack.checked("start", "runpipeline")
        wait_for("a cycle holding the lock", stack.lock_held, 120, every=0.5)
        t0 = time.monotonic()
        stack.checked("stop", "runpipeline", timeout=700)
        took = time.monotonic() - t0
    finally:
        stack.coincap.delay = 0.0
    tail = stop_tail(stack)
    assert "waiting up to 540 s for a running cycle to finish" in tail, tail
    assert tail.find("cycle finished") > tail.find("waiting up to"), tail
    assert "entrypoint: stopped" in tail
    assert stack.inspect("runpipeline")["State"]["ExitCode"] == 0
    log(f"stop during a cycle took {took:.1f} s")
    assert took > 2
    stack.checked("start", "runpipeline")


def test_down_then_up_keeps_the_data_and_does_not_init_again(stack):
    counts_sql = (
        "select (select count(*) from raw.assets), (select count(*) from marts.fct_asset_prices)"
    )
    before = stack.query(counts_sql)[0]
    assert before[0] > 0 and before[1] > 0
    stack.checked("down")  # each service's own stop_grace_period
    assert stack.ps() == {}
    stack.checked("up", "-d")
    wait_for("the stack healthy again", lambda: healthy_services(stack), 300)
    after = stack.query(counts_sql)[0]
    assert after[0] >= before[0] and after[1] >= before[1], (before, after)
    warehouse_log = stack.logs("warehouse")
    assert INIT_DONE not in warehouse_log
    assert "initdb" not in warehouse_log.lower() and "init process" not in warehouse_log
    # the roles the first start made still log in
    assert stack.query("select current_user", user="pipeline") == [("pipeline",)]
