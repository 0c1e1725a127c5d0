"""The warehouse as dlt sees it: the destination for WAREHOUSE (duckdb or postgres)."""

from __future__ import annotations

import os
from typing import Any

# No network for telemetry here or in production containers; must be set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
from dlt.common.destination import Destination  # noqa: E402

from ingest.config import Settings  # noqa: E402


def destination(settings: Settings) -> Destination:
    if settings.warehouse == "duckdb":
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
        return dlt.destinations.duckdb(credentials=str(settings.duckdb_path))
    return dlt.destinations.postgres(
        credentials=dict(settings.postgres, port=int(settings.postgres["port"])),
        # No UNIQUE constraint on `_dlt_id`: a cycle killed after a job committed but before dlt
        # marked it done re-runs the job, and that constraint would refuse the rows in every
        # later cycle (docs/reliability.md). The merges dedup by their keys; marts are keyed by dbt.
        create_indexes=False,
    )


def connect_postgres(postgres: dict[str, str], timeout_s: float, application_name: str) -> Any:
    """A psycopg2 connection with the warehouse settings (Settings.postgres), for the commands
    that read the warehouse without dlt (`coincap-elt status`, `coincap-elt doctor`)."""
    import psycopg2

    return psycopg2.connect(
        host=postgres["host"],
        port=int(postgres["port"]),
        dbname=postgres["database"],
        user=postgres["username"],
        password=postgres["password"],
        connect_timeout=timeout_s,
        application_name=application_name,
    )
