"""`coincap-elt doctor`: checks the configuration before a cycle would fail on it, without
spending CoinCap credits (unless `--check-key`).

One line per check, `ok    <check>: <what was found>` or `FAIL  <check>: <what is wrong>; <what to
do>`; exit 0 when every check passed, 1 otherwise. Each check runs whatever the others found, so
one run lists every problem. Nothing secret is printed (`ingest.alerts.redact`; the key only as
"set"). Doctor creates nothing that a cycle would later find: probes of directories are temporary
files, deleted at once, and a warehouse that does not exist yet is not created.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.alerts import redact
from ingest.config import (
    DEFAULT_BACKUP_SCHEDULE,
    DEFAULT_SCHEDULE,
    MISSING_KEY,
    ConfigError,
    Settings,
    api_key_from,
    backup_schedule_from,
    home_from,
    pipelines_dir_from,
    schedule_from,
    warehouse_from,
)
from ingest.warehouse import Warehouse

# the schemas of the warehouse layout (docs/contract.md), and the run log's
SCHEMAS = ("raw", "staging", "marts", "ops")
POSTGRES_CONNECT_TIMEOUT_S = 5
# --check-key: the smallest answer that needs a valid key (one asset, about 500 bytes)
KEY_PROBE = ("assets", {"ids": "bitcoin"})
KEY_PROBE_CREDITS = "about 2 credits"


@dataclass(frozen=True)
class Result:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<6}{self.name}: {redact(self.detail, limit=1000)}"


def run_doctor(env: Mapping[str, str], run_dir: Path, check_key: bool = False) -> int:
    """Runs every check on the configuration in `env` (the environment after the `.env` file,
    handed down by the command line: doctor checks each part on its own, so one wrong variable
    never hides another), prints one line each, returns the exit status (0: all passed)."""
    pipelines = pipelines_dir_from(env)
    checks: list[tuple[str, Callable[[], Result]]] = [
        ("variables", lambda: check_variables(env)),
        ("warehouse", lambda: check_warehouse(env)),
        ("dlt data dir", lambda: check_directory("dlt data dir", pipelines, "DLT_DATA_DIR")),
        ("run dir", lambda: check_directory("run dir", run_dir, "COINCAP_RUN_DIR")),
        ("dbt", lambda: check_dbt(env)),
        ("schedule", lambda: check_schedule(env)),
        ("key", lambda: check_api_key(env, check_key)),
    ]
    failed = 0
    for name, check in checks:
        result = _guarded(name, check)
        print(result.line(), flush=True)
        failed += not result.ok
    return 1 if failed else 0


def _guarded(name: str, check: Callable[[], Result]) -> Result:
    """A check that breaks is that check's FAIL line, never the end of the others."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - reported, one line, and the next check runs
        return Result(name, False, f"the check itself failed: {_one_line(exc)}")


# --------------------------------------------------------------------------- 1. variables
def check_variables(env: Mapping[str, str]) -> Result:
    """Everything `Settings.from_env` validates, with its own messages."""
    try:
        settings = Settings.from_env(env)
        settings.require_api_key()
    except ConfigError as exc:
        return Result("variables", False, str(exc))
    budget = (
        f"{settings.monthly_credits} credits a month"
        if settings.monthly_credits
        else "no monthly credit budget"
    )
    return Result(
        "variables",
        True,
        f"WAREHOUSE={settings.warehouse.engine}, {len(settings.asset_ids)} assets, "
        f"backfill {settings.backfill_days} day(s), at most {settings.max_history_requests} "
        f"history requests a cycle, {budget}, COINCAP_API_KEY set",
    )


# --------------------------------------------------------------------------- 2. warehouse
def check_warehouse(env: Mapping[str, str]) -> Result:
    try:
        warehouse = warehouse_from(env)
    except ConfigError as exc:
        return Result("warehouse", False, f"not checked: {exc}")
    if warehouse.engine == "duckdb":
        return _check_duckdb(warehouse.duckdb_path)
    if warehouse.engine == "spark":
        return _check_spark(warehouse)
    return _check_postgres(warehouse)


def _check_duckdb(path: Path) -> Result:
    """The file's directory must take new files (DuckDB writes a WAL beside it); an existing file
    must open. A file that does not exist yet is fine: the first cycle creates it."""
    problem = _unwritable(path.parent)
    if problem:
        return Result(
            "warehouse",
            False,
            f"DuckDB {path}: {problem}; make that directory writable or set DUCKDB_PATH elsewhere",
        )
    if not path.exists():
        return Result(
            "warehouse",
            True,
            f"DuckDB {path} not created yet (created by the first cycle; its directory writable)",
        )
    import duckdb

    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        return Result(
            "warehouse",
            False,
            f"DuckDB {path} does not open ({_one_line(exc)}); if a cycle is running, run doctor "
            "again after it, otherwise check that DUCKDB_PATH is a DuckDB file",
        )
    try:
        rows = conn.execute(
            "select schema_name from information_schema.schemata "
            "where catalog_name = current_database()"
        ).fetchall()
    finally:
        conn.close()
    return Result("warehouse", True, f"DuckDB {path} opens, {_schemas({r[0] for r in rows})}")


def _check_postgres(warehouse: Warehouse) -> Result:
    import psycopg2

    postgres = warehouse.postgres
    where = (
        f"PostgreSQL {postgres['database']}@{postgres['host']}:{postgres['port']} "
        f"as {postgres['username']}"
    )
    try:
        conn = warehouse.connect_postgres("coincap-elt doctor", POSTGRES_CONNECT_TIMEOUT_S)
    except psycopg2.Error as exc:
        return Result(
            "warehouse",
            False,
            f"{where} unreachable: {_one_line(exc)}; check POSTGRES_HOST, POSTGRES_PORT, "
            "POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD and that the server runs",
        )
    try:
        with conn.cursor() as cur:
            cur.execute("select schema_name from information_schema.schemata")
            found = {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
    return Result("warehouse", True, f"{where} reachable, {_schemas(found)}")


def _check_spark(warehouse: Warehouse) -> Result:
    """RAW_BUCKET_URL takes dlt's files (a local folder: writable; another URL: a file system
    this install can open), and the Spark Thrift Server answers. PyHive only: no pyspark."""
    from ingest.warehouse import WarehouseError

    bucket = _check_bucket(warehouse.raw_bucket_url)
    if bucket.startswith("FAIL "):
        return Result("warehouse", False, bucket.removeprefix("FAIL "))
    where = f"Spark Thrift Server {warehouse.location}"
    try:
        with warehouse.spark_session() as query:
            found = {row[0] for row in query("show databases")}
    except WarehouseError as exc:
        cause = exc.__cause__
        if cause is None or isinstance(cause, ImportError):  # PyHive missing: its own line
            return Result("warehouse", False, str(exc))
        return Result(
            "warehouse",
            False,
            f"{where} does not answer ({_one_line(cause)}); check SPARK_HOST/SPARK_PORT, is the "
            "Thrift Server running",
        )
    return Result("warehouse", True, f"{where} answers, {_schemas(found)}; {bucket}")


def _check_bucket(url: str) -> str:
    """What the raw files' place is, or `FAIL <what is wrong; what to do>`."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.scheme == "file":
        from urllib.request import url2pathname

        folder = Path(url2pathname(parsed.path))
        problem = _unwritable(folder)
        if problem:
            return (
                f"FAIL RAW_BUCKET_URL {folder}: {problem}; make it writable or set "
                "RAW_BUCKET_URL elsewhere"
            )
        later = "" if folder.is_dir() else " (created by the first cycle)"
        return f"raw files in {folder}, writable{later}"
    import fsspec

    try:
        fsspec.get_filesystem_class(parsed.scheme)
    except (ImportError, ValueError) as exc:
        return (
            f"FAIL RAW_BUCKET_URL {url}: this install cannot open {parsed.scheme or 'it'} "
            f"({_one_line(exc)}); install dlt's extra for it (e.g. `pip install 'dlt[s3]'`) "
            "or set RAW_BUCKET_URL to a local folder or another URL"
        )
    return f"raw files in {url} (not probed: credentials come from dlt's configuration)"


def _schemas(found: set[str]) -> str:
    present = [s for s in SCHEMAS if s in found]
    missing = [s for s in SCHEMAS if s not in found]
    text = f"schemas {', '.join(present)} present" if present else "no schemas yet"
    if missing:
        text += f"; {', '.join(missing)} created by the first cycle"
    return text


# --------------------------------------------------------------------------- 3. directories
def check_directory(name: str, path: Path, variable: str) -> Result:
    """The directory (or, while it does not exist, the directory it would be created in) takes
    a new file: a temporary file, created and deleted."""
    problem = _unwritable(path)
    if problem:
        return Result(
            name,
            False,
            f"{path}: {problem}; set {variable} to a directory this user can write, "
            "or give this user write access to it",
        )
    later = "" if path.is_dir() else " (created by the first cycle)"
    return Result(name, True, f"{path} writable{later}")


def _unwritable(path: Path) -> str | None:
    """Why a file cannot be created in `path` or, while it does not exist, in its nearest
    existing parent (where a cycle would create it); None when one can."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".coincap-doctor-"):
            pass
    except OSError as exc:
        return f"cannot create a file in {existing} ({exc.strerror or type(exc).__name__})"
    return None


# --------------------------------------------------------------------------- 4. dbt
def check_dbt(env: Mapping[str, str]) -> Result:
    """`dbt parse` as the cycle runs it (same project, profile and flags), then `dbt debug
    --connection` with the profile's target. On DuckDB the connection is tried only once the file
    exists: dbt would create it."""
    from dbt.cli.main import dbtRunner

    from ingest.transform import NO_ARTIFACTS, QUIET, project_args

    try:
        warehouse = warehouse_from(env)
    except ConfigError as exc:
        return Result("dbt", False, f"not checked: {exc}")
    args = project_args(warehouse)
    errors: list[str] = []
    collect = _dbt_errors(errors)
    parsed = dbtRunner(callbacks=[collect]).invoke(["parse", *NO_ARTIFACTS, *QUIET, *args])
    if not parsed.success:
        why = errors[0] if errors else _one_line(parsed.exception or "no reason given")
        return Result(
            "dbt",
            False,
            f"the project does not parse: {why}; fix dbt_project/ or profiles/profiles.yml "
            "(`dbt parse --project-dir dbt_project --profiles-dir profiles` shows the details)",
        )
    nodes = parsed.result.nodes.values()
    models = sum(1 for node in nodes if node.resource_type == "model")
    target = warehouse.engine
    if not warehouse.exists():
        return Result(
            "dbt", True, f"project parses ({models} models); profile target duckdb (no file yet)"
        )
    errors.clear()
    debug = dbtRunner(callbacks=[collect]).invoke(["debug", "--connection", *QUIET, *args])
    if not (debug.success and debug.result):
        why = errors[0] if errors else "see dbt.log in DBT_LOG_PATH"
        return Result(
            "dbt",
            False,
            f"project parses ({models} models), but profile target {target} does not connect: "
            f"{why}; check the warehouse variables (profiles/profiles.yml reads them)",
        )
    return Result(
        "dbt", True, f"project parses ({models} models); profile target {target} connects"
    )


def _dbt_errors(errors: list[str]) -> Callable[[Any], None]:
    """A dbt callback that keeps its error events' text, one line each (dbt itself prints
    nothing: QUIET)."""

    def collect(event: Any) -> None:
        # `dbt debug` reports a failed connection test as an info event, DebugCmdResult
        failed_check = event.info.name == "DebugCmdResult" and not event.info.msg.endswith(":")
        if (event.info.level == "error" or failed_check) and event.info.msg.strip():
            text = " ".join(event.info.msg.removeprefix("Encountered an error:").split())
            text = text.split(" Check your database credentials")[0]
            errors.append(text.split("the following error: >")[-1])

    return collect


# --------------------------------------------------------------------------- 5. schedule
def check_schedule(env: Mapping[str, str]) -> Result:
    """PIPELINE_SCHEDULE, and BACKUP_SCHEDULE when set, checked by the very script the container's
    entrypoint runs."""
    script = home_from(env) / "docker" / "valid-schedule.sh"
    wanted = [("PIPELINE_SCHEDULE", schedule_from(env), DEFAULT_SCHEDULE)]
    if backup_schedule_from(env):
        wanted.append(("BACKUP_SCHEDULE", backup_schedule_from(env), DEFAULT_BACKUP_SCHEDULE))
    found, wrong = [], []
    for name, schedule, default in wanted:
        proc = subprocess.run(
            ["bash", str(script), schedule], capture_output=True, text=True, timeout=30
        )
        if proc.returncode == 1:
            wrong.append(f"{name} is '{schedule}'; set five cron fields such as '{default}'")
        elif proc.returncode != 0:
            return Result("schedule", False, f"{script} failed: {proc.stderr.strip()}")
        else:
            note = " (the default)" if schedule == default else ""
            found.append(f"{name} '{schedule}'{note}: five cron fields")
    if wrong:
        return Result("schedule", False, "; ".join(wrong))
    return Result("schedule", True, "; ".join(found))


# --------------------------------------------------------------------------- 6. the key
def check_api_key(env: Mapping[str, str], spend: bool) -> Result:
    """Without `spend`, only whether the key is set. With it, one request through the pipeline's
    own client (one attempt, no retries), whose meter says what it cost."""
    if not api_key_from(env):
        return Result("key", False, MISSING_KEY)
    if not spend:
        return Result(
            "key",
            True,
            f"set, not checked: --check-key spends one request ({KEY_PROBE_CREDITS})",
        )
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return Result("key", False, f"not checked: {exc}")
    from ingest.coincap.helpers import CoinCapClient, CoinCapError

    client = CoinCapClient(
        settings.api_key, settings.base_url, settings.request_timeout_s, max_attempts=1
    )
    path, params = KEY_PROBE
    try:
        client.get(path, params)
    except CoinCapError as exc:
        return Result("key", False, f"{exc} ({_spent(client)})")
    return Result("key", True, f"set, CoinCap accepted it ({_spent(client)})")


def _spent(client: Any) -> str:
    meter = client.meter
    plural = "" if meter.requests == 1 else "s"
    return f"{meter.requests} request{plural}, {meter.credits} credits spent"


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
