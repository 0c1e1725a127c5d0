"""The pipeline's configuration: the one place that reads the environment.

`load_environment()` prepares the process (UTC, no telemetry, the project root as the working
directory, the `.env` file) and `Settings.from_env()` reads every variable once, normalised or
refused with one `ConfigError` line that says what to do. The command line (ingest/cli.py) does
both and hands the `Settings` (with its `Warehouse`) to the step it runs; no other module reads
the environment. The variable names are the public contract (docs/contract.md); the README's
configuration table documents each one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import load_dotenv

from ingest.coincap.settings import (
    API_KEY_HELP,
    DEFAULT_ASSET_IDS,
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_HISTORY_REQUESTS,
    REQUEST_TIMEOUT_S,
)
from ingest.warehouse import ENGINES, Warehouse

DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
DEFAULT_RAW_BUCKET_URL = "data/lake"  # WAREHOUSE=spark: raw's Parquet files (a local folder)
DEFAULT_SPARK_PORT = "10000"  # the Spark Thrift Server's (HiveServer2's) port
# dlt keeps pipeline state and pending load packages under DLT_DATA_DIR. Its own default is
# ~/.dlt, shared by every checkout of the same user: two checkouts would share state (and dlt
# would even remember the other checkout's DuckDB file). So the default here is per project.
DEFAULT_DLT_DATA_DIR = "data/dlt"
DEFAULT_BACKUP_DIR = "data/backups"
DEFAULT_BACKUP_KEEP_DAILY = 7
DEFAULT_BACKUP_KEEP_WEEKLY = 4
DEFAULT_SCHEMA_DRIFT_SNAPSHOTS = 3  # snapshots without a field before it counts as removed
DEFAULT_SCHEDULE = "*/5 * * * *"  # docker/entrypoint.sh's default for PIPELINE_SCHEDULE
# docker/entrypoint.sh's default for BACKUP_SCHEDULE (daily, 03:32 UTC); unset outside the image
DEFAULT_BACKUP_SCHEDULE = "32 3 * * *"
DEFAULT_BACKUP_MAX_AGE_HOURS = 36
# Where dbt_project/ and profiles/ are when COINCAP_HOME is not set: the checkout this package was
# imported from (`make install` installs it in editable mode). The image sets COINCAP_HOME=/app.
_CHECKOUT = Path(__file__).resolve().parent.parent

# the settings whose values must never leave the machine in a message or the run log
SECRET_VARIABLES = (
    "COINCAP_API_KEY",
    "POSTGRES_PASSWORD",
    "ALERT_WEBHOOK_URL",
    "PIPELINE_DB_PASSWORD",
    "METABASE_READER_DB_PASSWORD",
    "METABASE_APP_DB_PASSWORD",
    "METABASE_ADMIN_PASSWORD",
    "MB_ENCRYPTION_SECRET_KEY",
)


MISSING_KEY = f"COINCAP_API_KEY is not set; {API_KEY_HELP}"


class ConfigError(Exception):
    """A missing or invalid setting. Its message is one line that says what to do."""


@dataclass(frozen=True)
class MetabaseAppDb:
    """Metabase's application database (METABASE_APP_DB_*), which `coincap-elt backup` dumps
    beside the warehouse when METABASE_APP_DB_NAME is set."""

    host: str
    port: str
    database: str
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Settings:
    api_key: str  # empty when unset: `require_api_key()` refuses then (the run log still runs)
    base_url: str
    asset_ids: tuple[str, ...]
    warehouse: Warehouse
    backfill_days: int
    pipelines_dir: Path
    request_timeout_s: float = REQUEST_TIMEOUT_S
    run_dir: Path = Path("data")
    max_history_requests: int = DEFAULT_MAX_HISTORY_REQUESTS
    monthly_credits: int | None = None
    alert_webhook_url: str = ""
    docs_dir: Path | None = None  # DBT_DOCS_DIR: the static docs site, refreshed by each cycle
    dbt_target_path: Path = Path("dbt_project/target")
    backup_dir: Path = Path(DEFAULT_BACKUP_DIR)  # BACKUP_DIR: `coincap-elt backup` writes here
    backup_keep_daily: int = DEFAULT_BACKUP_KEEP_DAILY
    backup_keep_weekly: int = DEFAULT_BACKUP_KEEP_WEEKLY
    metabase_app_db: MetabaseAppDb | None = None  # backed up too when METABASE_APP_DB_NAME is set
    backup_schedule: str = ""  # BACKUP_SCHEDULE: empty when backups are not scheduled
    backup_max_age_hours: int = DEFAULT_BACKUP_MAX_AGE_HOURS
    schema_drift_snapshots: int = DEFAULT_SCHEMA_DRIFT_SNAPSHOTS
    # PRICE_MOVE_ALERT_PCT; None: dbt_project.yml's default (var price_move_alert_pct, 50)
    price_move_alert_pct: float | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting from `env` (default: the process environment, after
        `load_environment()`), or a ConfigError naming the first variable that is wrong."""
        env = os.environ if env is None else env
        return cls(
            api_key=api_key_from(env),
            base_url=env.get("COINCAP_BASE_URL", "").strip() or DEFAULT_BASE_URL,
            asset_ids=asset_ids_from(env),
            warehouse=warehouse_from(env),
            backfill_days=_whole_number(
                env, "COINCAP_BACKFILL_DAYS", DEFAULT_BACKFILL_DAYS, "days"
            ),
            pipelines_dir=pipelines_dir_from(env),
            request_timeout_s=_timeout(env),
            run_dir=run_dir_from(env),
            max_history_requests=_whole_number(
                env,
                "COINCAP_MAX_HISTORY_REQUESTS",
                DEFAULT_MAX_HISTORY_REQUESTS,
                "requests per cycle",
            ),
            monthly_credits=_whole_number(env, "COINCAP_MONTHLY_CREDITS", 0, "credits a month")
            or None,
            alert_webhook_url=alert_url_from(env),
            docs_dir=_path_or_none(env, "DBT_DOCS_DIR"),
            dbt_target_path=_path_or_none(env, "DBT_TARGET_PATH")
            or home_from(env) / "dbt_project" / "target",
            backup_dir=backup_dir_from(env),
            backup_keep_daily=_whole_number(
                env, "BACKUP_KEEP_DAILY", DEFAULT_BACKUP_KEEP_DAILY, "daily backups to keep"
            ),
            backup_keep_weekly=_whole_number(
                env, "BACKUP_KEEP_WEEKLY", DEFAULT_BACKUP_KEEP_WEEKLY, "weekly backups to keep"
            ),
            metabase_app_db=metabase_app_db_from(env),
            backup_schedule=backup_schedule_from(env),
            backup_max_age_hours=backup_max_age_hours_from(env),
            schema_drift_snapshots=schema_drift_snapshots_from(env),
            price_move_alert_pct=price_move_alert_pct_from(env),
            secrets=secrets_from(env),
        )

    def require_api_key(self) -> str:
        """The key, or the one-line error that says how to get one."""
        if not self.api_key:
            raise ConfigError(MISSING_KEY)
        return self.api_key


# ------------------------------------------------------------------ the parts, one rule each
# `coincap-elt doctor` checks each part on its own, so one wrong variable never hides another.
def alert_url_from(env: Mapping[str, str]) -> str:
    """ALERT_WEBHOOK_URL, empty when unset (no alerts)."""
    return env.get("ALERT_WEBHOOK_URL", "").strip()


def price_move_alert_pct_from(env: Mapping[str, str]) -> float | None:
    """PRICE_MOVE_ALERT_PCT: a 5-minute price move (percent, up or down) above which the slot is
    flagged and a warning sent; None when unset (dbt_project.yml holds the default)."""
    text = env.get("PRICE_MOVE_ALERT_PCT", "").strip()
    if not text:
        return None
    try:
        pct = float(text)
    except ValueError:
        pct = 0.0
    if not 0 < pct <= 1_000_000:
        raise ConfigError(
            f"PRICE_MOVE_ALERT_PCT is {text!r}; set it to a percentage above 0 (e.g. 50: a move "
            "of more than 50 % in 5 minutes, up or down, is flagged)"
        )
    return pct


def api_key_from(env: Mapping[str, str]) -> str:
    """COINCAP_API_KEY, empty when unset."""
    return env.get("COINCAP_API_KEY", "").strip()


def warehouse_from(env: Mapping[str, str]) -> Warehouse:
    """WAREHOUSE (any case: `DuckDB` is duckdb), DUCKDB_PATH, the POSTGRES_* settings and
    Spark's (RAW_BUCKET_URL, SPARK_HOST, SPARK_PORT, SPARK_USER)."""
    engine = env.get("WAREHOUSE", "").strip().lower() or "duckdb"
    if engine not in ENGINES:
        raise ConfigError(
            f"WAREHOUSE is {env.get('WAREHOUSE', '').strip()!r}; "
            "set it to duckdb, postgres or spark"
        )
    # absolute, because dlt reads a relative DuckDB path from its own data directory
    duckdb_path = Path(env.get("DUCKDB_PATH", "").strip() or DEFAULT_DUCKDB_PATH).resolve()
    postgres = {
        "host": env.get("POSTGRES_HOST", "").strip() or "localhost",
        "port": env.get("POSTGRES_PORT", "").strip() or "5432",
        "database": env.get("POSTGRES_DB", "").strip(),
        "username": env.get("POSTGRES_USER", "").strip(),
        "password": env.get("POSTGRES_PASSWORD", ""),
    }
    if engine == "postgres":
        unset = [
            name
            for name, key in (
                ("POSTGRES_DB", "database"),
                ("POSTGRES_USER", "username"),
                ("POSTGRES_PASSWORD", "password"),
            )
            if not postgres[key]
        ]
        if unset:
            raise ConfigError(
                f"WAREHOUSE=postgres but {', '.join(unset)} not set; "
                "set the POSTGRES_* variables (see .env.example)"
            )
        if not (postgres["port"].isascii() and postgres["port"].isdigit()):
            raise ConfigError(f"POSTGRES_PORT is {postgres['port']!r}; set it to a number")
    spark = {
        "host": env.get("SPARK_HOST", "").strip() or "localhost",
        "port": env.get("SPARK_PORT", "").strip() or DEFAULT_SPARK_PORT,
        "user": env.get("SPARK_USER", "").strip() or "coincap",
    }
    if engine == "spark" and not (spark["port"].isascii() and spark["port"].isdigit()):
        raise ConfigError(f"SPARK_PORT is {spark['port']!r}; set it to a number")
    return Warehouse(engine, duckdb_path, postgres, spark, raw_bucket_url_from(env))


def raw_bucket_url_from(env: Mapping[str, str]) -> str:
    """RAW_BUCKET_URL: a URL dlt's filesystem destination takes (s3://bucket/path, gs://...,
    file:///...); a plain path is a local folder, made absolute as a file:// URL."""
    url = env.get("RAW_BUCKET_URL", "").strip() or DEFAULT_RAW_BUCKET_URL
    if "://" in url:
        return url.rstrip("/")
    return Path(url).resolve().as_uri()


def asset_ids_from(env: Mapping[str, str]) -> tuple[str, ...]:
    """COINCAP_ASSET_IDS: lower-cased, in order, without repeats."""
    asset_ids = tuple(
        dict.fromkeys(
            part.strip().lower()
            for part in env.get("COINCAP_ASSET_IDS", DEFAULT_ASSET_IDS).split(",")
            if part.strip()
        )
    )
    if not asset_ids:
        raise ConfigError("COINCAP_ASSET_IDS is empty; set comma-separated CoinCap asset ids")
    return asset_ids


def pipelines_dir_from(env: Mapping[str, str]) -> Path:
    """Where dlt keeps its pipelines (state, pending load packages): DLT_DATA_DIR/pipelines."""
    data_dir = env.get("DLT_DATA_DIR", "").strip() or DEFAULT_DLT_DATA_DIR
    return Path(data_dir).resolve() / "pipelines"


def run_dir_from(env: Mapping[str, str]) -> Path:
    """COINCAP_RUN_DIR: the cycle lock, the heartbeat, the alert and quota states."""
    return Path(env.get("COINCAP_RUN_DIR", "").strip() or "data").resolve()


def backup_dir_from(env: Mapping[str, str]) -> Path:
    """BACKUP_DIR: where `coincap-elt backup` writes its archives (relative to COINCAP_HOME)."""
    value = Path(env.get("BACKUP_DIR", "").strip() or DEFAULT_BACKUP_DIR)
    return (value if value.is_absolute() else home_from(env) / value).resolve()


def metabase_app_db_from(env: Mapping[str, str]) -> MetabaseAppDb | None:
    """Metabase's application database, when METABASE_APP_DB_NAME is set: its user
    (METABASE_APP_DB_USER, default metabase_app, as docker/warehouse-init creates it), password,
    host and port (METABASE_APP_DB_HOST/PORT, default POSTGRES_HOST/PORT)."""
    name = env.get("METABASE_APP_DB_NAME", "").strip()
    if not name:
        return None
    password = env.get("METABASE_APP_DB_PASSWORD", "")
    if not password:
        raise ConfigError(
            "METABASE_APP_DB_NAME is set but METABASE_APP_DB_PASSWORD is not; set it (the "
            "password of Metabase's application database) or unset METABASE_APP_DB_NAME"
        )
    port = (
        env.get("METABASE_APP_DB_PORT", "").strip()
        or env.get("POSTGRES_PORT", "").strip()
        or "5432"
    )
    if not (port.isascii() and port.isdigit()):
        raise ConfigError(f"METABASE_APP_DB_PORT is {port!r}; set it to a number")
    return MetabaseAppDb(
        host=env.get("METABASE_APP_DB_HOST", "").strip()
        or env.get("POSTGRES_HOST", "").strip()
        or "localhost",
        port=port,
        database=name,
        username=env.get("METABASE_APP_DB_USER", "").strip() or "metabase_app",
        password=password,
    )


def home_from(env: Mapping[str, str]) -> Path:
    """COINCAP_HOME: where dbt_project/ and profiles/ are (the image sets /app)."""
    home = env.get("COINCAP_HOME", "").strip()
    return Path(home).resolve() if home else _CHECKOUT


def schedule_from(env: Mapping[str, str]) -> str:
    """PIPELINE_SCHEDULE as given (the container's entrypoint and `doctor` check its fields)."""
    return env.get("PIPELINE_SCHEDULE", "").strip() or DEFAULT_SCHEDULE


def backup_schedule_from(env: Mapping[str, str]) -> str:
    """BACKUP_SCHEDULE as given, empty when unset: backups are not scheduled (on a laptop; the
    image's entrypoint sets its default, so in the container it is always set). Its five fields
    are checked like PIPELINE_SCHEDULE's, by docker/valid-schedule.sh (entrypoint and doctor)."""
    return env.get("BACKUP_SCHEDULE", "").strip()


def backup_max_age_hours_from(env: Mapping[str, str]) -> int:
    """BACKUP_MAX_AGE_HOURS: how old the newest backup may be before status warns and a cycle
    alerts (default 36: a daily backup may miss once by a few hours)."""
    return _whole_number(
        env, "BACKUP_MAX_AGE_HOURS", DEFAULT_BACKUP_MAX_AGE_HOURS, "hours", minimum=1
    )


def schema_drift_snapshots_from(env: Mapping[str, str]) -> int:
    """SCHEMA_DRIFT_SNAPSHOTS: snapshots in a row without a field before it is reported
    removed (ingest/drift.py); 1 or more."""
    return _whole_number(
        env, "SCHEMA_DRIFT_SNAPSHOTS", DEFAULT_SCHEMA_DRIFT_SNAPSHOTS, "snapshots", minimum=1
    )


def secrets_from(env: Mapping[str, str]) -> tuple[str, ...]:
    """The values of SECRET_VARIABLES that are set: what `redact` takes out of every message."""
    values = (env.get(name, "").strip() for name in SECRET_VARIABLES)
    return tuple(value for value in values if len(value) >= 4)


def _timeout(env: Mapping[str, str]) -> float:
    text = env.get("COINCAP_REQUEST_TIMEOUT_S", "").strip() or str(REQUEST_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 120:
        raise ConfigError(
            f"COINCAP_REQUEST_TIMEOUT_S is {text!r}; set it to seconds, more than 0 and at most 120"
        )
    return seconds


def _whole_number(
    env: Mapping[str, str], name: str, default: int, unit: str, minimum: int = 0
) -> int:
    """A variable that holds a whole number, `minimum` or more; `default` when unset or empty."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        more = f", {minimum} or more" if minimum else ""
        raise ConfigError(f"{name} is {value!r}; set it to a whole number of {unit}{more}")
    return int(value)


def _path_or_none(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    return Path(value).resolve() if value else None


# ------------------------------------------------------------------ the process
def load_environment(create_run_dir: bool = True) -> Path:
    """What every command does first: UTC, no telemetry (dlt and dbt read these from the
    environment), the project root as the working directory (relative paths mean the same for
    dlt and dbt), then the `.env` file (COINCAP_ENV_FILE, default the root's `.env`): values
    already in the environment win. Returns the run directory, created unless `create_run_dir`
    is False (`coincap-elt doctor` reports an unwritable one instead of stopping on it)."""
    os.environ["TZ"] = "UTC"
    time.tzset()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    home = home_from(os.environ)
    os.chdir(home)
    env_file = os.environ.get("COINCAP_ENV_FILE", "").strip() or str(home / ".env")
    os.environ["COINCAP_ENV_FILE"] = env_file
    load_dotenv(env_file, override=False)
    run_dir = run_dir_from(os.environ)
    if create_run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
    os.environ["COINCAP_RUN_DIR"] = str(run_dir)
    return run_dir
