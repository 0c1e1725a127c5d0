"""The pipeline's configuration, read from the environment (and from `.env` when present).

The variable names are the public contract (docs/contract.md); README.md documents each one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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

WAREHOUSES = ("duckdb", "postgres")
DEFAULT_DUCKDB_PATH = "data/warehouse.duckdb"
# dlt keeps pipeline state and pending load packages under DLT_DATA_DIR. Its own default is
# ~/.dlt, shared by every checkout of the same user: two checkouts would share state (and dlt
# would even remember the other checkout's DuckDB file). So the default here is per project.
DEFAULT_DLT_DATA_DIR = "data/dlt"


class ConfigError(Exception):
    """A missing or invalid setting. Its message is one line that says what to do."""


@dataclass(frozen=True)
class Settings:
    api_key: str
    base_url: str
    asset_ids: tuple[str, ...]
    warehouse: str
    duckdb_path: Path
    postgres: dict[str, str]
    backfill_days: int
    pipelines_dir: Path
    request_timeout_s: float = REQUEST_TIMEOUT_S
    run_dir: Path = Path("data")
    max_history_requests: int = DEFAULT_MAX_HISTORY_REQUESTS
    monthly_credits: int | None = None

    @classmethod
    def from_env(cls, require_api_key: bool = True) -> Settings:
        """Reads the environment; values already set win over those in the env file.

        The env file is `.env` in the working directory (the repo root for
        scripts/run_pipeline.sh), or the file COINCAP_ENV_FILE names. `require_api_key=False`
        is for steps that only need the warehouse (the run log of a cycle that had no key).
        """
        load_dotenv(os.environ.get("COINCAP_ENV_FILE") or ".env", override=False)
        env = os.environ

        warehouse, duckdb_path, postgres = warehouse_from_env()

        api_key = env.get("COINCAP_API_KEY", "").strip()
        if not api_key and require_api_key:
            raise ConfigError(f"COINCAP_API_KEY is not set; {API_KEY_HELP}")

        asset_ids = tuple(
            dict.fromkeys(  # keep the order, drop repeats
                part.strip().lower()
                for part in env.get("COINCAP_ASSET_IDS", DEFAULT_ASSET_IDS).split(",")
                if part.strip()
            )
        )
        if not asset_ids:
            raise ConfigError("COINCAP_ASSET_IDS is empty; set comma-separated CoinCap asset ids")

        backfill_days = env.get("COINCAP_BACKFILL_DAYS", "").strip() or str(DEFAULT_BACKFILL_DAYS)
        if not backfill_days.isdigit():
            raise ConfigError(
                f"COINCAP_BACKFILL_DAYS is {backfill_days!r}; set it to a whole number of days"
            )

        timeout = env.get("COINCAP_REQUEST_TIMEOUT_S", "").strip() or str(REQUEST_TIMEOUT_S)
        try:
            request_timeout_s = float(timeout)
        except ValueError:
            request_timeout_s = 0.0
        if not 0 < request_timeout_s <= 120:
            raise ConfigError(
                f"COINCAP_REQUEST_TIMEOUT_S is {timeout!r}; "
                "set it to seconds, more than 0 and at most 120"
            )

        max_history = _whole_number(
            env, "COINCAP_MAX_HISTORY_REQUESTS", DEFAULT_MAX_HISTORY_REQUESTS, "requests per cycle"
        )
        monthly_credits = _whole_number(env, "COINCAP_MONTHLY_CREDITS", None, "credits a month")

        return cls(
            api_key=api_key,
            base_url=env.get("COINCAP_BASE_URL", "").strip() or DEFAULT_BASE_URL,
            asset_ids=asset_ids,
            warehouse=warehouse,
            duckdb_path=duckdb_path,
            postgres=postgres,
            backfill_days=int(backfill_days),
            pipelines_dir=pipelines_dir(),
            request_timeout_s=request_timeout_s,
            run_dir=Path(env.get("COINCAP_RUN_DIR", "").strip() or "data").resolve(),
            max_history_requests=max_history if max_history is not None else 0,
            monthly_credits=monthly_credits or None,
        )


def warehouse_from_env() -> tuple[str, Path, dict[str, str]]:
    """WAREHOUSE, DUCKDB_PATH and the POSTGRES_* settings, validated: the part of `from_env` that
    `coincap-elt doctor` needs to check the warehouse even while another variable is wrong."""
    env = os.environ
    warehouse = env.get("WAREHOUSE", "duckdb").strip().lower() or "duckdb"
    if warehouse not in WAREHOUSES:
        raise ConfigError(f"WAREHOUSE is {warehouse!r}; set it to duckdb or postgres")
    # absolute, because dlt reads a relative DuckDB path from its own data directory
    duckdb_path = Path(env.get("DUCKDB_PATH", "").strip() or DEFAULT_DUCKDB_PATH).resolve()
    postgres = {
        "host": env.get("POSTGRES_HOST", "localhost"),
        "port": env.get("POSTGRES_PORT", "5432"),
        "database": env.get("POSTGRES_DB", ""),
        "username": env.get("POSTGRES_USER", ""),
        "password": env.get("POSTGRES_PASSWORD", ""),
    }
    if warehouse == "postgres":
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
        if not postgres["port"].isdigit():
            raise ConfigError(f"POSTGRES_PORT is {postgres['port']!r}; set it to a number")

    return warehouse, duckdb_path, postgres


def pipelines_dir() -> Path:
    """Where dlt keeps its pipelines (state, pending load packages): DLT_DATA_DIR/pipelines."""
    data_dir = os.environ.get("DLT_DATA_DIR", "").strip() or DEFAULT_DLT_DATA_DIR
    return Path(data_dir).resolve() / "pipelines"


def _whole_number(env: os._Environ[str], name: str, default: int | None, unit: str) -> int | None:
    """A variable that holds a whole number (0 or more); `default` when unset or empty."""
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()):
        raise ConfigError(f"{name} is {value!r}; set it to a whole number of {unit}")
    return int(value)
