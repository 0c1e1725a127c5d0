"""ingest/lake.py and the warehouse's Spark helpers in-process: which folders dlt wrote become
tables (a temporary folder with the file names dlt's filesystem destination writes), the
statements that register them (a recording query: no Spark), and the portable table listing
(a real in-memory DuckDB; Spark's SHOW answers recorded); the rebuild mark a restore leaves when
it cannot drop staging and marts, and what the next build does with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ingest.config import warehouse_from
from ingest.lake import (
    DERIVED_DATABASES,
    REBUILD_MARKER,
    drop_derived,
    lake_tables,
    mark_rebuild,
    rebuild_pending,
    register_tables,
)
from ingest.warehouse import Warehouse, _spark_params, _spark_value


def spark(lake: Path) -> Warehouse:
    return warehouse_from({"WAREHOUSE": "spark", "RAW_BUCKET_URL": str(lake)})


def files(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"PAR1")


class Recorder:
    """A query that records each statement and answers SHOW statements from `answers`."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]] | None = None) -> None:
        self.statements: list[str] = []
        self.answers = answers or {}

    def __call__(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        self.statements.append(sql)
        return self.answers.get(sql, [])


# --------------------------------------------------------------------------- the folders
def test_only_folders_with_parquet_files_and_a_table_name_are_tables(tmp_path: Path) -> None:
    files(
        tmp_path,
        "raw/assets/1796458196.0604508.5a0954dddf.parquet",
        "raw/assets/1796458215.2051616.40b059485d.parquet",
        "raw/asset_history/1796458196.0604508.e811311839.parquet",
        "raw/asset_history_requests/1796458196.0604508.a5e8640ced.parquet",
        "raw/_dlt_loads/coincap__1796458196.0604508.jsonl",
        "raw/_dlt_version/coincap__1796458196.0604508__abc.jsonl",
        "raw/old_json/1796458196.0604508.0ce8884959.jsonl.gz",  # no Parquet: not Spark's
        "raw/Mixed-Case/1.parquet",  # not a name dlt gives a table
        "raw/init",
        "ops/pipeline_runs/1796458220.058937.4e73ac118d.parquet",
    )
    (tmp_path / "raw" / "empty").mkdir()
    lake = spark(tmp_path)
    assert lake_tables(lake, "raw") == ["asset_history", "asset_history_requests", "assets"]
    assert lake_tables(lake, "ops") == ["pipeline_runs"]


def test_a_dataset_dlt_never_wrote_has_no_tables(tmp_path: Path) -> None:
    assert lake_tables(spark(tmp_path / "not-yet"), "raw") == []


def test_each_table_is_dropped_and_created_again_over_its_folder(tmp_path: Path) -> None:
    files(tmp_path, "raw/assets/1.a.parquet", "ops/schema_baseline/1.b.parquet")
    query = Recorder()
    assert register_tables(spark(tmp_path), query) == ["raw.assets", "ops.schema_baseline"]
    location = tmp_path.resolve().as_uri()
    assert query.statements == [
        "create database if not exists raw",
        "drop table if exists raw.assets",
        "create table raw.assets using parquet options (mergeSchema 'true') "
        f"location '{location}/raw/assets'",
        "create database if not exists ops",
        "drop table if exists ops.schema_baseline",
        "create table ops.schema_baseline using parquet options (mergeSchema 'true') "
        f"location '{location}/ops/schema_baseline'",
    ]


def test_the_ingest_registers_only_the_dataset_it_reads(tmp_path: Path) -> None:
    files(tmp_path, "raw/assets/1.a.parquet", "ops/pipeline_runs/1.b.parquet")
    query = Recorder()
    assert register_tables(spark(tmp_path), query, datasets=("ops",)) == ["ops.pipeline_runs"]
    assert not any("raw" in statement for statement in query.statements)


def test_new_only_registers_the_tables_spark_does_not_know_yet(tmp_path: Path) -> None:
    files(tmp_path, "ops/pipeline_runs/1.a.parquet", "ops/schema_changes/2.b.parquet")
    query = Recorder(
        {"show databases": [("ops",)], "show tables in ops": [("ops", "pipeline_runs", False)]}
    )
    registered = register_tables(spark(tmp_path), query, datasets=("ops",), new_only=True)
    assert registered == ["ops.schema_changes"]
    assert "drop table if exists ops.pipeline_runs" not in query.statements


def test_nothing_is_registered_before_dlt_wrote_a_file(tmp_path: Path) -> None:
    query = Recorder()
    assert register_tables(spark(tmp_path), query) == []
    assert query.statements == []


def test_spark_reads_s3_files_through_s3a() -> None:
    lake = warehouse_from({"WAREHOUSE": "spark", "RAW_BUCKET_URL": "s3://bucket/lake"})
    assert lake.spark_raw_location == "s3a://bucket/lake"


# --------------------------------------------------------------------------- the listing
def test_relations_on_duckdb_are_the_schemas_tables_and_views(tmp_path: Path) -> None:
    conn = duckdb.connect()
    for sql in (
        "create schema raw",
        "create schema marts",
        "create schema staging",
        "create table raw.assets (id text)",
        "create view marts.pipeline_runs as select 1 as x",
        "create table staging.stg_assets (id text)",
    ):
        conn.execute(sql)
    warehouse = warehouse_from({"DUCKDB_PATH": str(tmp_path / "w.duckdb")})

    def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return conn.execute(sql, params).fetchall()

    assert warehouse.relations(query, ("raw", "marts", "ops")) == {
        "raw.assets",
        "marts.pipeline_runs",
    }


def test_relations_on_spark_come_from_show_statements(tmp_path: Path) -> None:
    query = Recorder(
        {
            "show databases": [("default",), ("raw",), ("marts",)],
            "show tables in raw": [("raw", "assets", False), ("", "scratch", True)],
            "show tables in marts": [("marts", "fct_asset_prices", False)],
        }
    )
    found = spark(tmp_path).relations(query, ("raw", "marts", "ops"))
    assert found == {"raw.assets", "marts.fct_asset_prices"}
    assert "show tables in ops" not in query.statements  # Spark would refuse it


# --------------------------------------------------------------------------- the values
def test_spark_parameters_are_spark_literals() -> None:
    in_paris = timezone(timedelta(hours=1))
    params = (
        "it's",
        7,
        None,
        Decimal("80399.570000000006984919"),
        datetime(2026, 12, 5, 9, 30, tzinfo=in_paris),
        datetime(2026, 12, 5, 8, 30),
    )
    assert _spark_params(params) == (
        "'it\\'s'",
        7,
        "NULL",
        "80399.570000000006984919",
        "'2026-12-05 08:30:00.000000'",
        "'2026-12-05 08:30:00.000000'",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 12, 5, 8, 30), datetime(2026, 12, 5, 8, 30, tzinfo=UTC)),
        (datetime(2026, 12, 5, 8, 30, tzinfo=UTC), datetime(2026, 12, 5, 8, 30, tzinfo=UTC)),
        ("text", "text"),
        (None, None),
    ],
)
def test_spark_timestamps_come_back_in_utc_like_the_other_engines(
    value: Any, expected: Any
) -> None:
    result = _spark_value(value)
    assert result == expected
    if isinstance(expected, datetime):
        assert result.tzinfo is not None


def test_the_mark_is_kept_until_the_drop_succeeds(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert not rebuild_pending(run_dir)
    mark_rebuild(run_dir)
    assert rebuild_pending(run_dir) and [p.name for p in run_dir.iterdir()] == [REBUILD_MARKER]
    warehouse = warehouse_from({"WAREHOUSE": "spark", "RAW_BUCKET_URL": str(tmp_path / "lake")})

    def failing(sql: str, *params: object) -> list:
        raise RuntimeError("Spark went away")

    try:
        drop_derived(warehouse, run_dir, failing)
    except RuntimeError:
        pass
    assert rebuild_pending(run_dir)  # still owed

    statements: list[str] = []
    dropped = drop_derived(warehouse, run_dir, lambda sql, *p: statements.append(sql) or [])
    assert dropped == list(DERIVED_DATABASES) == ["staging", "marts"]
    assert statements == [
        "drop database if exists staging cascade",
        "drop database if exists marts cascade",
    ]
    assert not rebuild_pending(run_dir)
