"""`coincap-elt backup` and `restore` with WAREHOUSE=spark (docs/spark.md#backups), end to end.

raw is loaded by the ingest step alone (`python -m ingest`, dlt writing Parquet into a local
lake, CoinCap faked), so these tests need no dbt build on Spark: the backup and the restore's
files need no Spark at all, only the restore's last step (Spark's staging and marts dropped) and
the next build's (ingest/lake.py's prepare_build) do. Those tests use the session's standalone
cluster from the pyspark wheel (the `spark_cluster` fixture, devkit/spark_cluster.py); without
Java or pyspark they skip with the install line, and under CI=true they fail instead.

- the archive holds the lake's files; the lake lost, `restore --yes` with Spark unreachable puts
  every file back as it was, says in a `warning:` line that staging and marts are dropped by the
  next cycle, and leaves the mark that makes the next build do it;
- with Spark up, the restore drops staging and marts itself, and Spark reads the restored raw
  (as many rows as the manifest counted);
- a lake in an object store: backup and restore refuse it in one `error:` line, exit 1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.fake_coincap import FakeCoinCap
from devkit.installation import API_KEY, base_env, coincap_elt
from ingest.backup import lake_file_tables, read_manifest
from ingest.config import warehouse_from
from ingest.lake import DERIVED_DATABASES, REBUILD_MARKER, prepare_build, rebuild_pending

CLOSED_PORT = "9"  # discard: nothing listens there on a test machine


class Lake:
    """One installation on Spark: a fake CoinCap, a local lake and the working directories."""

    def __init__(self, tmp: Path, fake: FakeCoinCap) -> None:
        self.tmp, self.fake = tmp, fake
        self.path = tmp / "lake"
        self.env = {
            **base_env(tmp),
            "WAREHOUSE": "spark",
            "RAW_BUCKET_URL": str(self.path),
            "SPARK_HOST": "127.0.0.1",
            "SPARK_PORT": CLOSED_PORT,
            "COINCAP_API_KEY": fake.api_key,
            "COINCAP_BASE_URL": fake.base_url,
            "COINCAP_ASSET_IDS": "bitcoin,ethereum,cosmos",
        }

    def ingest(self) -> None:
        """The ingest step alone, then CoinCap's clock 5 minutes on."""
        proc = subprocess.run(
            [sys.executable, "-m", "ingest"],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        self.fake.advance(5 * 60_000)

    def command(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return coincap_elt({**self.env, **env}, *args, timeout=300)

    def files(self) -> dict[str, bytes]:
        return {
            p.relative_to(self.path).as_posix(): p.read_bytes()
            for p in sorted(self.path.rglob("*"))
            if p.is_file()
        }

    @property
    def run_dir(self) -> Path:
        return Path(self.env["COINCAP_RUN_DIR"])


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    with FakeCoinCap(api_key=API_KEY) as fake:
        yield Lake(tmp_path, fake)


def _backup(lake: Lake) -> Path:
    proc = lake.command("backup")
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _errors(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error:" in ln]


def test_restore_without_spark_puts_the_files_back_and_leaves_the_rebuild_to_the_next_build(
    lake: Lake,
) -> None:
    lake.ingest()
    lake.ingest()
    backed_up = lake.files()
    archive = _backup(lake)
    manifest = read_manifest(archive)
    assert manifest["engine"] == "spark" and manifest["tables"]["raw.assets"]["rows"] == 6
    assert lake_file_tables(lake.path) == manifest["tables"]

    lake.ingest()  # after the backup: lost below, the restore's safety backup keeps it
    after = lake_file_tables(lake.path)
    assert after["raw.assets"]["rows"] == 9
    for path in (lake.path / "raw" / "assets").iterdir():
        path.unlink()  # the lake loses a table's files

    proc = lake.command("restore", str(archive), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lake.files() == backed_up  # every file back, none of the later ones
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "could not be dropped now" in warnings[0], proc.stderr
    assert "the next cycle drops them before its build" in warnings[0]
    lines = proc.stdout.strip().splitlines()
    tables = len(manifest["tables"])
    assert lines[0].startswith(f"restored {archive.name}: {tables} table(s) match the"), lines
    assert lines[-1].startswith("next cycle: it builds staging and every mart again from the")
    assert rebuild_pending(lake.run_dir)
    safety = Path(lines[1].rsplit(" ", 1)[1])
    assert safety.name.endswith("-pre-restore.tar.gz")
    kept = read_manifest(safety)["tables"]  # the state the restore replaced
    assert kept["raw.assets"]["rows"] == 0 and kept["raw._dlt_loads"]["rows"] == 3

    lake.ingest()  # dlt goes on from the restored state: its files beside the restored ones
    assert lake_file_tables(lake.path)["raw.assets"]["rows"] == 9


def test_an_object_store_lake_is_refused(lake: Lake) -> None:
    for args in (("backup",), ("restore", str(lake.tmp / "coincap-spark-20261205T000000Z.tar.gz"))):
        proc = lake.command(*args, RAW_BUCKET_URL="s3://coincap-lake/prod")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        errors = _errors(proc)
        assert len(errors) == 1 and errors[0].startswith("error: RAW_BUCKET_URL is in an object")
        assert "docs/spark.md#backups" in errors[0]
    assert not Path(lake.env["BACKUP_DIR"]).exists()


def test_restore_drops_sparks_staging_and_marts(lake: Lake, spark_cluster: dict[str, str]) -> None:
    lake.env.update(spark_cluster)
    warehouse = warehouse_from(lake.env)
    lake.ingest()
    archive = _backup(lake)
    lake.ingest()
    with warehouse.spark_session() as query:  # what a build made since the backup
        for database in DERIVED_DATABASES:
            query(f"create database if not exists {database}")
            query(f"create table {database}.made_after_the_backup using parquet as select 1 as x")

    proc = lake.command("restore", str(archive), "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")], proc.stderr
    assert not (lake.run_dir / REBUILD_MARKER).exists()
    with warehouse.spark_session() as query:
        databases = {row[0] for row in query("show databases")}
    assert not databases & set(DERIVED_DATABASES), databases

    # the next build's first step: Spark reads the restored raw, as the manifest counted it
    registered = prepare_build(warehouse, lake.run_dir)
    assert {"raw.assets", "raw.asset_history"} <= set(registered), registered
    rows = read_manifest(archive)["tables"]
    with warehouse.spark_session() as query:
        for table in ("raw.assets", "raw.asset_history"):
            assert query(f"select count(*) from {table}")[0][0] == rows[table]["rows"], table


def test_the_next_build_drops_what_a_restore_could_not(
    lake: Lake, spark_cluster: dict[str, str]
) -> None:
    lake.ingest()
    archive = _backup(lake)
    proc = lake.command("restore", str(archive), "--yes")  # Spark unreachable: the mark stays
    assert proc.returncode == 0 and rebuild_pending(lake.run_dir), proc.stderr
    lake.env.update(spark_cluster)
    warehouse = warehouse_from(lake.env)
    with warehouse.spark_session() as query:
        query("create database if not exists marts")
        query("create table marts.older_than_raw using parquet as select 1 as x")
    prepare_build(warehouse, lake.run_dir)
    assert not rebuild_pending(lake.run_dir)
    with warehouse.spark_session() as query:
        databases = {row[0] for row in query("show databases")}
        assert "marts" not in databases and "raw" in databases, databases
