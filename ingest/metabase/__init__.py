"""Metabase as code (`coincap-elt metabase`): the first-time setup of Metabase, the warehouse
connection as the read-only role (only `marts` visible), dbt's descriptions, keys and semantic
types in Metabase's metadata, and the "CoinCap market overview" dashboard with its questions and
two filters, all through Metabase's REST API and idempotent. `config` reads the settings from a
mapping of environment variables, `client` talks to Metabase, `dashboard` is the dashboard's
definition (pure data and the API shapes built from it), `provision` makes Metabase match it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from ingest.config import ConfigError
from ingest.metabase.config import MetabaseConfig, read_config
from ingest.metabase.provision import run_provisioning

__all__ = ["ConfigError", "MetabaseConfig", "main", "read_config", "run_provisioning"]


def main(env: Mapping[str, str], project_root: Path) -> int:
    """The command: the configuration from ``env``, then every provisioning step. Exit status 0
    when everything is in place; 1 on a failure, 2 on a missing or invalid setting (each after
    one `metabase: error:` line on stderr)."""
    try:
        config = read_config(env)
    except ConfigError as exc:
        print(f"metabase: error: {exc}", file=sys.stderr)
        return 2
    return run_provisioning(config, project_root)
