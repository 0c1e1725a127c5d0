"""What `coincap-elt metabase` needs to know, from a mapping of environment variables.

    METABASE_URL                    default http://metabase:3000
    METABASE_ADMIN_EMAIL            required
    METABASE_ADMIN_PASSWORD         required
    METABASE_ADMIN_FIRST_NAME       default CoinCap
    METABASE_ADMIN_LAST_NAME        default Admin
    METABASE_SITE_NAME              default CoinCap ELT
    METABASE_WAREHOUSE_NAME         default CoinCap warehouse
    METABASE_WAREHOUSE_HOST/PORT/DB default warehouse / 5432 / coincap
    METABASE_WAREHOUSE_USER         default metabase_reader
    METABASE_WAREHOUSE_PASSWORD     required
    METABASE_WAIT_SECONDS           how long to wait for Metabase to come up (default 600)
    METABASE_MARTS_WAIT_SECONDS     how long to wait for the marts to be in Metabase (default 1800)

A variable set to an empty value counts as unset. `read_config` is pure: the caller passes the
mapping (the command passes the process environment once `.env` is loaded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ingest.config import ConfigError

REQUIRED = ("METABASE_ADMIN_EMAIL", "METABASE_ADMIN_PASSWORD", "METABASE_WAREHOUSE_PASSWORD")


@dataclass(frozen=True)
class MetabaseConfig:
    """Where Metabase is, its first admin, and the warehouse it reads (as the read-only role).
    The passwords stay out of the repr."""

    url: str
    admin_email: str
    admin_password: str = field(repr=False)
    warehouse_password: str = field(repr=False)
    admin_first_name: str = "CoinCap"
    admin_last_name: str = "Admin"
    site_name: str = "CoinCap ELT"
    warehouse_name: str = "CoinCap warehouse"
    warehouse_host: str = "warehouse"
    warehouse_port: int = 5432
    warehouse_db: str = "coincap"
    warehouse_user: str = "metabase_reader"
    wait_seconds: float = 600.0
    marts_wait_seconds: float = 1800.0


def read_config(env: Mapping[str, str]) -> MetabaseConfig:
    """The configuration in `env`; ConfigError (one line naming the variable) when a required one
    is missing or a number is not one."""
    missing = [name for name in REQUIRED if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set; set {'it' if len(missing) == 1 else 'them'} in .env "
            "(see .env.example)"
        )

    def text(name: str, default: str) -> str:
        return env.get(name, "").strip() or default

    return MetabaseConfig(
        url=text("METABASE_URL", "http://metabase:3000"),
        admin_email=env["METABASE_ADMIN_EMAIL"].strip(),
        admin_password=env["METABASE_ADMIN_PASSWORD"],
        warehouse_password=env["METABASE_WAREHOUSE_PASSWORD"],
        admin_first_name=text("METABASE_ADMIN_FIRST_NAME", "CoinCap"),
        admin_last_name=text("METABASE_ADMIN_LAST_NAME", "Admin"),
        site_name=text("METABASE_SITE_NAME", "CoinCap ELT"),
        warehouse_name=text("METABASE_WAREHOUSE_NAME", "CoinCap warehouse"),
        warehouse_host=text("METABASE_WAREHOUSE_HOST", "warehouse"),
        warehouse_port=_port(env, "METABASE_WAREHOUSE_PORT", 5432),
        warehouse_db=text("METABASE_WAREHOUSE_DB", "coincap"),
        warehouse_user=text("METABASE_WAREHOUSE_USER", "metabase_reader"),
        wait_seconds=_seconds(env, "METABASE_WAIT_SECONDS", 600.0),
        marts_wait_seconds=_seconds(env, "METABASE_MARTS_WAIT_SECONDS", 1800.0),
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ConfigError(f"{name} is {value!r}, not a port number (1 to 65535)")
    return int(value)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name} is {value!r}, not a number of seconds (0 or more)")
    return seconds
