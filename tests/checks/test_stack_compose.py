"""docker-compose.yml, checked offline with Debian's docker-compose (1.29): there is no Docker
engine on these machines, so the images are never built or started here. What the services run (the
entrypoint, the crontab, the init SQL, provisioning) is exercised directly by the other
test_stack_*.py files.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from system_tools import require_tool

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
# every secret: no default anywhere, required through ${VAR:?message}
SECRETS = [
    "COINCAP_API_KEY",
    "WAREHOUSE_ADMIN_PASSWORD",
    "PIPELINE_DB_PASSWORD",
    "METABASE_READER_DB_PASSWORD",
    "METABASE_APP_DB_PASSWORD",
    "MB_ENCRYPTION_SECRET_KEY",
    "METABASE_ADMIN_EMAIL",
    "METABASE_ADMIN_PASSWORD",
]


def compose(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("docker-compose")
    # a clean environment: variables of the shell running the tests must not fill in for the file
    return subprocess.run(
        [
            exe,
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            *args,
        ],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match[1]] = match[2]
    return values


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    proc = compose(ENV_EXAMPLE, "config")
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_config_is_valid_with_the_example_env_file():
    proc = compose(ENV_EXAMPLE, "config", "-q")
    assert proc.returncode == 0, proc.stderr


def test_every_required_secret_is_in_the_example_and_only_there():
    values = example_values()
    assert set(SECRETS) <= set(values), set(SECRETS) - set(values)
    text = COMPOSE_FILE.read_text()
    for name in SECRETS:
        assert re.search(r"\$\{" + name + r":\?" + name + " is required", text), name
        assert values[name] not in text  # no example value leaks into the compose file


@pytest.mark.parametrize("missing", SECRETS)
def test_a_missing_secret_stops_compose_and_names_it(missing, tmp_path):
    lines = [
        line for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith(f"{missing}=")
    ]
    env_file = tmp_path / "env"
    env_file.write_text("\n".join(lines) + "\n")
    proc = compose(env_file, "config", "-q")
    assert proc.returncode != 0
    assert f"{missing} is required" in proc.stderr, proc.stderr
    assert "copy .env.example to .env" in proc.stderr


def test_services_images_and_ports(config):
    services = config["services"]
    assert set(services) == {"warehouse", "runpipeline", "metabase", "metabase-provision", "docs"}
    # every image pinned to an exact version
    assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", services["warehouse"]["image"])
    assert re.fullmatch(r"metabase/metabase:v\d+\.\d+\.\d+", services["metabase"]["image"])
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+-alpine", services["docs"]["image"])
    assert services["runpipeline"]["image"] == services["metabase-provision"]["image"]
    assert services["runpipeline"]["build"] and services["metabase-provision"]["build"]

    # the warehouse is reachable from this host only
    for port in services["warehouse"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    assert any(str(p).endswith(":3000/tcp") for p in services["metabase"]["ports"])
    assert any(str(p).startswith("127.0.0.1:8080:8080") for p in services["docs"]["ports"])
    assert "ports" not in services["runpipeline"]


def test_health_order_volumes_and_grace(config):
    services = config["services"]
    for name in ("warehouse", "metabase", "docs"):
        assert services[name]["healthcheck"]["test"], name
    assert "pg_isready -h 127.0.0.1" in " ".join(services["warehouse"]["healthcheck"]["test"])
    assert "/api/health" in " ".join(services["metabase"]["healthcheck"]["test"])
    # runpipeline's health check is the image's HEALTHCHECK (the heartbeat)
    assert "HEALTHCHECK" in (REPO / "Dockerfile").read_text()

    deps = services["runpipeline"]["depends_on"]
    assert deps["warehouse"]["condition"] == "service_healthy"
    assert services["metabase"]["depends_on"]["warehouse"]["condition"] == "service_healthy"
    assert services["metabase-provision"]["depends_on"]["metabase"]["condition"] == (
        "service_healthy"
    )
    assert services["metabase-provision"]["command"] == ["coincap-elt", "metabase"]

    named = set(config["volumes"])
    assert {"warehouse-data", "dlt-data", "dbt-target", "dbt-docs"} <= named
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["runpipeline"]["volumes"]}
    env = services["runpipeline"]["environment"]
    assert mounts["dlt-data"] == "/var/lib/coincap/dlt"
    assert mounts["dbt-target"] == "/var/lib/coincap/dbt-target"
    assert mounts["dbt-docs"] == "/var/lib/coincap/docs"
    assert any(v.startswith("warehouse-data:") for v in services["warehouse"]["volumes"])
    assert any(v.startswith("dbt-docs:") and v.endswith(":ro") for v in services["docs"]["volumes"])
    dockerfile = (REPO / "Dockerfile").read_text()
    for var, path in (
        ("DLT_DATA_DIR", "/var/lib/coincap/dlt"),
        ("DBT_TARGET_PATH", "/var/lib/coincap/dbt-target"),
        ("DBT_DOCS_DIR", "/var/lib/coincap/docs"),
        ("COINCAP_RUN_DIR", "/var/lib/coincap/run"),
    ):
        assert f"{var}={path}" in dockerfile, var
    assert env["WAREHOUSE"] == "postgres"

    grace = services["runpipeline"]["stop_grace_period"]
    assert re.fullmatch(r"\d+m|\d+s", grace)
    seconds = int(grace[:-1]) * (60 if grace.endswith("m") else 1)
    assert seconds >= 300


def test_least_privilege_between_services(config):
    """Each service gets only its own secrets; the pipeline never sees Metabase's admin or its
    encryption key (only the application database's password: the backups include it)."""
    services = config["services"]
    values = example_values()

    def secrets_of(service: str) -> set[str]:
        env = services[service].get("environment", {})
        return {name for name in SECRETS if values[name] in env.values()}

    assert secrets_of("runpipeline") == {
        "COINCAP_API_KEY",
        "PIPELINE_DB_PASSWORD",
        "METABASE_APP_DB_PASSWORD",
    }
    assert secrets_of("metabase") == {"METABASE_APP_DB_PASSWORD", "MB_ENCRYPTION_SECRET_KEY"}
    assert secrets_of("metabase-provision") == {
        "METABASE_ADMIN_EMAIL",
        "METABASE_ADMIN_PASSWORD",
        "METABASE_READER_DB_PASSWORD",
    }
    assert secrets_of("docs") == set()
    assert services["runpipeline"]["environment"]["POSTGRES_USER"] == "pipeline"
    assert services["metabase-provision"]["environment"]["METABASE_WAREHOUSE_USER"] == (
        "metabase_reader"
    )
    mb_env = services["metabase"]["environment"]
    assert mb_env["MB_DB_DBNAME"] != services["warehouse"]["environment"]["POSTGRES_DB"]
    assert mb_env["MB_DB_USER"] == "metabase_app"


def test_nothing_secret_goes_into_the_image():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert ignore[0] != "" and "*" in ignore  # everything excluded unless listed
    assert "**/.env" in ignore
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", dockerfile, re.M)
    assert "-c constraints.txt" in dockerfile
    for name in SECRETS:
        assert name not in dockerfile, name


def test_schedule_and_one_shot_health(config):
    services = config["services"]
    # the container's cron schedule, default every 5 minutes (the entrypoint checks it)
    assert services["runpipeline"]["environment"]["PIPELINE_SCHEDULE"] == "*/5 * * * *"
    assert "#PIPELINE_SCHEDULE=*/5 * * * *" in ENV_EXAMPLE.read_text()
    # the one-shot does not inherit the image's cron-heartbeat HEALTHCHECK
    assert services["metabase-provision"]["healthcheck"]["test"] == ["NONE"]


def test_scheduled_backups_into_a_named_volume_with_metabases_database(config):
    services = config["services"]
    env = services["runpipeline"]["environment"]
    # daily at 03:32 UTC by default, the entrypoint's default too; kept in the volume `backups`
    assert env["BACKUP_SCHEDULE"] == "32 3 * * *"
    assert "BACKUP_SCHEDULE:-32 3 * * *" in (REPO / "docker" / "entrypoint.sh").read_text()
    assert env["BACKUP_DIR"] == "/var/lib/coincap/backups"
    assert (env["BACKUP_KEEP_DAILY"], env["BACKUP_KEEP_WEEKLY"]) == ("7", "4")
    assert env["BACKUP_MAX_AGE_HOURS"] == "36"
    assert "backups" in config["volumes"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in services["runpipeline"]["volumes"]}
    assert mounts["backups"] == env["BACKUP_DIR"]
    # the image creates the directory for the job user (an empty named volume copies it) and
    # points BACKUP_DIR there when run without compose
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "BACKUP_DIR=/var/lib/coincap/backups" in dockerfile
    assert re.search(
        r"install -d -o coincap -g coincap -m 0750[^&]*/var/lib/coincap/backups", dockerfile
    )
    # pg_dump of the warehouse's major version (pg_dump refuses a newer server)
    warehouse_major = re.fullmatch(r"postgres:(\d+)\..*", services["warehouse"]["image"])[1]
    assert "postgresql-client" in dockerfile and warehouse_major == "15"
    assert "pg_dump --version | grep -q ' 15\\.'" in dockerfile
    # Metabase's application database, as Metabase itself reaches it
    mb = services["metabase"]["environment"]
    assert env["METABASE_APP_DB_HOST"] == mb["MB_DB_HOST"] == "warehouse"
    assert env["METABASE_APP_DB_PORT"] == mb["MB_DB_PORT"] == "5432"
    assert env["METABASE_APP_DB_NAME"] == mb["MB_DB_DBNAME"] == "metabase"
    assert env["METABASE_APP_DB_USER"] == mb["MB_DB_USER"] == "metabase_app"
    assert (
        env["METABASE_APP_DB_PASSWORD"]
        == mb["MB_DB_PASS"]
        == example_values()["METABASE_APP_DB_PASSWORD"]
    )
    # the cron job gets them: docker/job-env.sh's allowlist hands BACKUP_* and METABASE_APP_DB_*
    job_env = (REPO / "docker" / "job-env.sh").read_text()
    assert "BACKUP_[A-Z0-9_]+|METABASE_APP_DB_[A-Z0-9_]+" in job_env
    example = ENV_EXAMPLE.read_text()
    for line in (
        "#BACKUP_SCHEDULE=32 3 * * *",
        "#BACKUP_KEEP_DAILY=7",
        "#BACKUP_KEEP_WEEKLY=4",
        "#BACKUP_MAX_AGE_HOURS=36",
    ):
        assert line in example, line
