"""WAREHOUSE=spark: the tables Spark reads dlt's Parquet files through (docs/spark.md).

dlt's filesystem destination writes each table of a dataset (`raw`, `ops`) as a folder of Parquet
files, one or more per load: `<RAW_BUCKET_URL>/<dataset>/<table>/<load id>.<file id>.parquet`.
Spark sees them as tables of the same name (`raw.assets`, `ops.schema_changes`) registered here
over each folder: external tables, so dropping one never touches its files. Each is registered
again before each build, which makes Spark list the folder again (it caches the listing) and
take in columns dlt added since (Parquet's schema merge: older files read the new column as null).
dlt's own tables (`_dlt_loads`, `_dlt_version`, `_dlt_pipeline_state`) are JSON lines and stay
files only.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ingest.warehouse import Query, Warehouse, WarehouseError

logger = logging.getLogger(__name__)

DATASETS = ("raw", "ops")
# what dbt builds in Spark's own warehouse, all of it derived from the lake's files: dropped after
# a restore so the next build makes every mart again from the restored raw (docs/spark.md#backups)
DERIVED_DATABASES = ("staging", "marts")
# in COINCAP_RUN_DIR: a restore put older raw files back but could not drop those databases (Spark
# was unreachable); the next build drops them first
REBUILD_MARKER = "spark_rebuild_pending"
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def lake_tables(warehouse: Warehouse, dataset: str) -> list[str]:
    """The tables dlt has written Parquet files for under `dataset`, sorted."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(f"{warehouse.raw_bucket_url}/{dataset}")
    if not fs.exists(root):
        return []
    tables = []
    for entry in fs.ls(root, detail=True):
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry["type"] != "directory" or not _TABLE_NAME.match(name):
            continue  # dlt's own _dlt_* tables, its `init` marker
        if any(path.endswith(".parquet") for path in fs.ls(entry["name"], detail=False)):
            tables.append(name)
    return sorted(tables)


def register_tables(
    warehouse: Warehouse,
    query: Query | None = None,
    datasets: tuple[str, ...] = DATASETS,
    new_only: bool = False,
) -> list[str]:
    """(Re)registers every lake table of `datasets` in Spark's catalogue; returns
    `dataset.table` names. Raises WarehouseError when Spark is unreachable or refuses a table.
    Before each build: all of them. The ingest's own reads and writes of `ops` (the drift
    baseline, the run log) register `new_only` the tables Spark does not know yet: a new
    session lists a known table's files again, and ops' columns do not change."""
    if query is None:
        with warehouse.spark_session() as session:
            return register_tables(warehouse, session, datasets, new_only)
    registered = []
    for dataset in datasets:
        tables = lake_tables(warehouse, dataset)
        if new_only:
            known = warehouse.relations(query, (dataset,))
            tables = [table for table in tables if f"{dataset}.{table}" not in known]
        if not tables:
            continue
        query(f"create database if not exists {dataset}")
        for table in tables:
            location = f"{warehouse.spark_raw_location}/{dataset}/{table}"
            query(f"drop table if exists {dataset}.{table}")
            query(
                f"create table {dataset}.{table} using parquet "
                f"options (mergeSchema 'true') location '{location}'"
            )
            registered.append(f"{dataset}.{table}")
    log = logger.info if datasets == DATASETS else logger.debug  # the build's, once a cycle
    log("registered %d lake table(s) in Spark: %s", len(registered), ", ".join(registered) or "-")
    return registered


def mark_rebuild(run_dir: Path) -> None:
    """Records that staging and marts must be dropped before the next build (written before the
    restore tries to drop them: a restore killed meanwhile still leaves the mark)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".{REBUILD_MARKER}.tmp"
    tmp.write_text("staging and marts are older than the restored raw files: drop them\n")
    os.replace(tmp, run_dir / REBUILD_MARKER)


def rebuild_pending(run_dir: Path) -> bool:
    return (run_dir / REBUILD_MARKER).is_file()


def drop_derived(warehouse: Warehouse, run_dir: Path, query: Query | None = None) -> list[str]:
    """Drops Spark's staging and marts databases (their tables' files go with them; the lake's
    files are never touched), then the rebuild mark. Returns the databases dropped. Raises
    WarehouseError when Spark is unreachable (the mark stays)."""
    if query is None:
        with warehouse.spark_session() as session:
            return drop_derived(warehouse, run_dir, session)
    for database in DERIVED_DATABASES:
        query(f"drop database if exists {database} cascade")
    (run_dir / REBUILD_MARKER).unlink(missing_ok=True)
    logger.info(
        "dropped Spark's %s: the build makes them again from raw", ", ".join(DERIVED_DATABASES)
    )
    return list(DERIVED_DATABASES)


def prepare_build(warehouse: Warehouse, run_dir: Path) -> list[str]:
    """Before each build on Spark: staging and marts dropped when a restore left the mark, then
    every lake table registered again. Returns the registered `dataset.table` names. Raises
    WarehouseError when Spark is unreachable or refuses a statement."""
    with warehouse.spark_session() as query:
        if rebuild_pending(run_dir):
            logger.warning(
                "a restore put older raw files back while Spark was unreachable: dropping "
                "staging and marts, this build makes every mart again from raw"
            )
            drop_derived(warehouse, run_dir, query)
        return register_tables(warehouse, query)


__all__ = [
    "DATASETS",
    "DERIVED_DATABASES",
    "REBUILD_MARKER",
    "WarehouseError",
    "drop_derived",
    "lake_tables",
    "mark_rebuild",
    "prepare_build",
    "rebuild_pending",
    "register_tables",
]
