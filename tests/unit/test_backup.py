"""ingest/backup.py's pure parts: archive names, retention decisions, manifest verification of a
whole, an altered and a truncated archive; and the backup settings in ingest/config.py."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.backup import (
    ARCHIVE_PATTERN,
    BackupError,
    BackupInfo,
    _manifest,
    _write_archive,
    archive_name,
    create_backup,
    list_backups,
    newest_backup,
    parse_name,
    pg_tool,
    plan_retention,
    prune,
    verify,
)
from ingest.config import ConfigError, Settings


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "DUCKDB_PATH": str(tmp_path / "wh.duckdb"),
            "BACKUP_DIR": str(tmp_path / "backups"),
            "COINCAP_RUN_DIR": str(tmp_path / "run"),
            **env,
        }
    )


# ------------------------------------------------------------------ names
def test_names_round_trip() -> None:
    when = datetime(2026, 12, 5, 4, 50, 7, tzinfo=UTC)
    name = archive_name("duckdb", when)
    assert name == "coincap-duckdb-20261205T045007Z.tar.gz"
    assert parse_name(name) == ("duckdb", when, "")
    safety = archive_name("postgres", when, "-pre-restore")
    assert safety == "coincap-postgres-20261205T045007Z-pre-restore.tar.gz"
    assert parse_name(safety) == ("postgres", when, "-pre-restore")


@pytest.mark.parametrize(
    "name",
    [
        "coincap-duckdb-latest.tar.gz",
        "coincap-mysql-20261205T045007Z.tar.gz",
        "coincap-duckdb-20261205T045007Z.tar.gz.partial",
        ".coincap-duckdb-20261205T045007Z.tar.gz.partial",
        "coincap-duckdb-20261305T045007Z.tar.gz",  # month 13
        "coincap-duckdb-20261205T045007.tar.gz",  # no Z: not UTC
        "backup.tar.gz",
    ],
)
def test_other_names_are_not_archives(name: str) -> None:
    assert parse_name(name) is None


def test_list_backups_newest_first_names_only(tmp_path: Path) -> None:
    for name in (
        "coincap-duckdb-20261201T000000Z.tar.gz",
        "coincap-duckdb-20261203T000000Z.tar.gz",
        "coincap-duckdb-20261202T120000Z-pre-restore.tar.gz",
        "notes.txt",
    ):
        (tmp_path / name).write_bytes(b"x" * 3)
    (tmp_path / "coincap-duckdb-20261204T000000Z.tar.gz").mkdir()  # a directory: not listed
    found = list_backups(tmp_path)
    assert [b.path.name for b in found] == [
        "coincap-duckdb-20261203T000000Z.tar.gz",
        "coincap-duckdb-20261202T120000Z-pre-restore.tar.gz",
        "coincap-duckdb-20261201T000000Z.tar.gz",
    ]
    assert found[0].created_at == datetime(2026, 12, 3, tzinfo=UTC) and found[0].size_bytes == 3
    assert newest_backup(tmp_path) == found[0]
    # a restore's safety backup is no sign that backups are being made
    (tmp_path / "coincap-duckdb-20261205T000000Z-pre-restore.tar.gz").write_bytes(b"x")
    assert list_backups(tmp_path)[0].safety and newest_backup(tmp_path) == found[0]
    assert list_backups(tmp_path / "missing") == [] and newest_backup(tmp_path / "missing") is None


# ------------------------------------------------------------------ retention
def _infos(*stamps: str) -> list[BackupInfo]:
    out = []
    for stamp in stamps:
        when = datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        out.append(BackupInfo(Path(archive_name("duckdb", when)), when, 1))
    return out


def _kept(backups: list[BackupInfo], keep: set[Path]) -> list[str]:
    return sorted(f"{b.created_at:%Y-%m-%d %H:%M}" for b in backups if b.path in keep)


def test_retention_keeps_the_newest_of_each_recent_day() -> None:
    # two backups a day for ten days (2026-11-23 .. 2026-12-02)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    stamps = []
    for day in range(10):
        for hour in (3, 15):
            stamps.append(f"{start + timedelta(days=day, hours=hour):%Y-%m-%d %H:%M}")
    backups = _infos(*stamps)
    keep = plan_retention(backups, keep_daily=7, keep_weekly=0, last_good=None)
    assert _kept(backups, keep) == [
        f"2026-{d} 15:00" for d in ("11-26", "11-27", "11-28", "11-29", "11-30", "12-01", "12-02")
    ]


def test_retention_days_without_backups_do_not_count() -> None:
    # "the last 7 days that have one": a two-week pause does not empty the daily set
    backups = _infos("2026-12-01 10:00", "2026-11-10 10:00", "2026-11-09 10:00")
    keep = plan_retention(backups, keep_daily=3, keep_weekly=0, last_good=None)
    assert _kept(backups, keep) == ["2026-11-09 10:00", "2026-11-10 10:00", "2026-12-01 10:00"]


def test_retention_keeps_the_newest_of_each_recent_iso_week() -> None:
    backups = _infos(
        "2026-11-30 09:00",  # Monday, ISO week 49
        "2026-11-29 23:00",  # Sunday, week 48: its newest
        "2026-11-23 09:00",  # Monday, week 48: older in the week
        "2026-11-22 09:00",  # Sunday, week 47
        "2026-11-10 09:00",  # week 46: beyond 3 weeks
    )
    keep = plan_retention(backups, keep_daily=0, keep_weekly=3, last_good=None)
    assert _kept(backups, keep) == ["2026-11-22 09:00", "2026-11-29 23:00", "2026-11-30 09:00"]


def test_retention_daily_and_weekly_together() -> None:
    backups = _infos("2026-12-02 10:00", "2026-12-02 08:00", "2026-12-01 10:00", "2026-11-20 10:00")
    keep = plan_retention(backups, keep_daily=1, keep_weekly=2, last_good=None)
    # daily: 12-02 10:00; weekly: week 49 (12-02 10:00) and week 47 (11-20)
    assert _kept(backups, keep) == ["2026-11-20 10:00", "2026-12-02 10:00"]


def test_retention_never_drops_the_last_good_backup() -> None:
    backups = _infos("2026-12-02 10:00", "2026-12-01 10:00", "2026-11-01 10:00")
    good = backups[2].path  # the two newer ones do not verify
    keep = plan_retention(backups, keep_daily=1, keep_weekly=1, last_good=good)
    assert good in keep and backups[0].path in keep and backups[1].path not in keep
    assert plan_retention(backups, 0, 0, last_good=good) == {good}


def test_retention_never_lets_a_safety_backup_take_a_regular_ones_place() -> None:
    regular = _infos("2026-12-03 03:32", "2026-12-02 03:32", "2026-12-01 03:32")
    safety = [
        BackupInfo(Path(archive_name("duckdb", when, "-pre-restore")), when, 1)
        for when in (
            datetime(2026, 12, 2, 10, 0, tzinfo=UTC),  # newer than 12-02's backup, same day
            datetime(2026, 11, 20, 10, 0, tzinfo=UTC),  # older than every kept day
        )
    ]
    keep = plan_retention([*regular, *safety], keep_daily=2, keep_weekly=0, last_good=None)
    # the two newest days' regular backups, and the safety backup of a kept day beside them
    assert keep == {regular[0].path, regular[1].path, safety[0].path}
    # with no regular backup at all, the safety backups stay
    assert plan_retention(safety, keep_daily=2, keep_weekly=0, last_good=None) == {
        b.path for b in safety
    }


def test_prune_deletes_only_its_own_names(tmp_path: Path) -> None:
    settings = _settings(tmp_path, BACKUP_KEEP_DAILY="1", BACKUP_KEEP_WEEKLY="0")
    backups = settings.backup_dir
    backups.mkdir()
    names = [
        "coincap-duckdb-20261202T100000Z.tar.gz",
        "coincap-duckdb-20261201T100000Z.tar.gz",
        "coincap-duckdb-20261130T100000Z-pre-restore.tar.gz",
    ]
    foreign = ["notes.txt", "coincap-duckdb-latest.tar.gz", "mine.tar.gz"]
    for name in [*names, *foreign]:
        (backups / name).write_bytes(b"not an archive")
    deleted = prune(settings, last_good=backups / names[2])
    assert sorted(p.name for p in deleted) == [names[1]]
    assert sorted(p.name for p in backups.iterdir()) == sorted([names[0], names[2], *foreign])


def test_prune_finds_the_last_good_backup_itself(tmp_path: Path) -> None:
    """Without a known good one, prune verifies newest first: the newest that verifies stays,
    even when the daily and weekly rules would drop it."""
    settings = _settings(tmp_path, BACKUP_KEEP_DAILY="1", BACKUP_KEEP_WEEKLY="0")
    good = _archive(tmp_path, settings, archive_name("duckdb", datetime(2026, 11, 1, tzinfo=UTC)))
    broken = settings.backup_dir / archive_name("duckdb", datetime(2026, 12, 1, tzinfo=UTC))
    broken.write_bytes(b"garbage")
    prune(settings)
    assert sorted(p.name for p in settings.backup_dir.iterdir()) == sorted([good.name, broken.name])


# ------------------------------------------------------------------ verification
def _archive(tmp_path: Path, settings: Settings, name: str) -> Path:
    staging = tmp_path / f"staging-{name}"
    (staging / "run").mkdir(parents=True)
    (staging / "run" / "last_success").write_text("2026-12-05T04:50:00Z\n")
    (staging / "warehouse").mkdir()
    (staging / "warehouse" / "warehouse.duckdb").write_bytes(bytes(range(256)) * 400)
    tables = {"raw.assets": {"rows": 3, "hash": "00000000000000ff"}}
    manifest = _manifest(settings, staging, datetime.now(UTC), tables, 0.1)
    settings.backup_dir.mkdir(parents=True, exist_ok=True)
    return _write_archive(staging, manifest, settings.backup_dir / name)


def test_a_whole_archive_verifies(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    path = _archive(tmp_path, settings, "coincap-duckdb-20261205T045000Z.tar.gz")
    assert verify(path) is None
    assert ARCHIVE_PATTERN.match(path.name)
    assert [p.name for p in settings.backup_dir.iterdir()] == [path.name]  # no temporary left
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert tar.getnames()[0] == "manifest.json"
    assert manifest["engine"] == "duckdb" and manifest["rows"] == 3
    assert manifest["project_version"] and manifest["fingerprint"]
    assert manifest["size_bytes"] == 256 * 400 + len("2026-12-05T04:50:00Z\n")


def test_a_truncated_archive_does_not_verify(tmp_path: Path) -> None:
    path = _archive(tmp_path, _settings(tmp_path), "coincap-duckdb-20261205T045000Z.tar.gz")
    data = path.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 30):
        path.write_bytes(data[:cut])
        reason = verify(path)
        assert reason and "truncated or corrupt" in reason, (cut, reason)
        assert "\n" not in reason


def _repack(path: Path, change) -> None:
    """Rewrites a valid .tar.gz with `change(name, bytes) -> bytes | None` applied per member."""
    members = []
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            data = tar.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            members.append((info, data))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is None:
                tar.addfile(info)
                continue
            data = change(info.name, data)
            if data is None:
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()))


def test_an_altered_member_does_not_verify(tmp_path: Path) -> None:
    path = _archive(tmp_path, _settings(tmp_path), "coincap-duckdb-20261205T045000Z.tar.gz")

    def flip(name: str, data: bytes) -> bytes:
        if name == "warehouse/warehouse.duckdb":
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data

    _repack(path, flip)
    assert verify(path) == (
        f"{path.name}: member warehouse/warehouse.duckdb differs from its manifest (altered)"
    )


def test_a_missing_member_does_not_verify(tmp_path: Path) -> None:
    path = _archive(tmp_path, _settings(tmp_path), "coincap-duckdb-20261205T045000Z.tar.gz")
    _repack(path, lambda name, data: None if name == "run/last_success" else data)
    assert verify(path) == f"{path.name}: 1 member(s) missing, e.g. run/last_success"


def test_garbage_and_foreign_archives_do_not_verify(tmp_path: Path) -> None:
    garbage = tmp_path / "coincap-duckdb-20261205T045000Z.tar.gz"
    garbage.write_bytes(b"\x1f\x8b" + b"garbage" * 50)
    assert "truncated or corrupt" in (verify(garbage) or "")
    foreign = tmp_path / "coincap-duckdb-20261205T045001Z.tar.gz"
    with tarfile.open(foreign, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("hello.txt"))
    assert "no manifest.json first" in (verify(foreign) or "")
    assert "does not exist" in (verify(tmp_path / "nope.tar.gz") or "")


# ------------------------------------------------------------------ settings
def test_backup_settings_defaults_and_errors(tmp_path: Path) -> None:
    settings = Settings.from_env({"COINCAP_HOME": str(tmp_path)})
    assert settings.backup_dir == tmp_path / "data" / "backups"
    assert (settings.backup_keep_daily, settings.backup_keep_weekly) == (7, 4)
    assert settings.metabase_app_db is None
    for name in ("BACKUP_KEEP_DAILY", "BACKUP_KEEP_WEEKLY"):
        with pytest.raises(ConfigError, match=f"^{name} is '-1'; set it to a whole number"):
            Settings.from_env({name: "-1"})


def test_metabase_app_db_settings() -> None:
    env = {"POSTGRES_HOST": "warehouse", "POSTGRES_PORT": "5433", "METABASE_APP_DB_NAME": "mb"}
    with pytest.raises(ConfigError, match="METABASE_APP_DB_PASSWORD"):
        Settings.from_env(env)
    app = Settings.from_env({**env, "METABASE_APP_DB_PASSWORD": "s3cret-pw"}).metabase_app_db
    assert app is not None
    assert (app.host, app.port, app.database, app.username) == (
        "warehouse",
        "5433",
        "mb",
        "metabase_app",
    )
    assert "s3cret-pw" not in repr(app)
    other = Settings.from_env(
        {
            **env,
            "METABASE_APP_DB_PASSWORD": "x",
            "METABASE_APP_DB_HOST": "mbdb",
            "METABASE_APP_DB_PORT": "6543",
            "METABASE_APP_DB_USER": "mbuser",
        }
    ).metabase_app_db
    assert other is not None and (other.host, other.port, other.username) == (
        "mbdb",
        "6543",
        "mbuser",
    )
    with pytest.raises(ConfigError, match="^METABASE_APP_DB_PORT is 'abc'"):
        Settings.from_env({**env, "METABASE_APP_DB_PASSWORD": "x", "METABASE_APP_DB_PORT": "abc"})


# ------------------------------------------------------------------ failures leave nothing
def test_a_failed_backup_leaves_no_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path)  # DUCKDB_PATH names a file that does not exist
    settings.run_dir.mkdir()
    with pytest.raises(BackupError, match="does not exist; run a cycle first"):
        create_backup(settings)
    assert list(settings.backup_dir.iterdir()) == []
    (tmp_path / "wh.duckdb").write_bytes(b"garbage, not a DuckDB file" * 100)
    with pytest.raises(BackupError, match="could not be opened"):
        create_backup(settings)
    assert list(settings.backup_dir.iterdir()) == []


def test_missing_postgres_client_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackupError) as raised:
        pg_tool("pg_dump")
    assert str(raised.value).startswith("pg_dump is not on PATH; install postgresql-client")
    assert "\n" not in str(raised.value)


def test_leftovers_of_a_killed_backup_are_removed_once_old(tmp_path: Path) -> None:
    import os

    from ingest.backup import LEFTOVER_AGE_S, _remove_leftovers

    old_partial = tmp_path / ".coincap-duckdb-20261201T000000Z.tar.gz.partial"
    old_staging = tmp_path / ".coincap-backup-abc123"
    young_partial = tmp_path / ".coincap-duckdb-20261205T000000Z.tar.gz.partial"
    archive = tmp_path / "coincap-duckdb-20261101T000000Z.tar.gz"
    other = tmp_path / ".coincap-notes"
    for path in (old_partial, young_partial, archive, other):
        path.write_bytes(b"x")
    old_staging.mkdir()
    (old_staging / "warehouse.duckdb").write_bytes(b"x")
    now = 2_000_000_000.0
    for path in (old_partial, old_staging, archive, other):
        os.utime(path, (now - LEFTOVER_AGE_S - 10, now - LEFTOVER_AGE_S - 10))
    os.utime(young_partial, (now - 60, now - 60))
    removed = _remove_leftovers(tmp_path, now=now)
    assert sorted(p.name for p in removed) == sorted([old_partial.name, old_staging.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [young_partial.name, archive.name, other.name]
    )


@pytest.mark.parametrize(
    ("tty", "answer", "yes", "expected"),
    [
        (False, "", True, True),  # --yes
        (False, "y", False, False),  # no terminal: never asks, refuses
        (True, "y", False, True),
        (True, "YES", False, True),
        (True, "", False, False),  # the default is No
        (True, "n", False, False),
    ],
)
def test_confirmation(tmp_path: Path, monkeypatch, tty: bool, answer: str, yes: bool, expected):
    import builtins

    from ingest import backup

    asked: list[str] = []

    class Stdin:
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(backup.sys, "stdin", Stdin())
    monkeypatch.setattr(builtins, "input", lambda prompt: asked.append(prompt) or answer)
    assert backup._confirmed(_settings(tmp_path), yes) is expected
    assert bool(asked) == (tty and not yes)
    if asked:
        assert asked[0].endswith("[y/N] ")


# ------------------------------------------------------------------ Spark's lake (no Spark needed)
def _write_lake(lake: Path) -> None:
    """A lake as dlt's filesystem destination leaves it: Parquet per table and load, its own
    tables as JSON lines, an `init` marker beside them."""
    import gzip as gz

    import pyarrow as pa
    import pyarrow.parquet as pq

    assets = lake / "raw" / "assets"
    assets.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["bitcoin", "ethereum", "cosmos"]}), assets / "1.0a.parquet")
    pq.write_table(pa.table({"id": ["bitcoin", "ethereum"]}), assets / "2.0b.parquet")
    (lake / "raw" / "init").write_text("")
    loads = lake / "raw" / "_dlt_loads"
    loads.mkdir()
    (loads / "coincap__1.jsonl").write_text('{"load_id": "1"}\n{"load_id": "2"}\n')
    baseline = lake / "ops" / "schema_baseline"
    baseline.mkdir(parents=True)
    with gz.open(baseline / "1.0c.jsonl.gz", "wt") as handle:
        handle.write('{"field": "priceUsd"}\n')


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAEXAMPLE:s3cr3t@coincap-lake/raw",
        "gs://coincap-lake",
        "az://container/lake",
        "abfss://lake@account.dfs.core.windows.net/coincap",
    ],
)
def test_an_object_store_lake_is_refused_in_one_line(url: str) -> None:
    from ingest.backup import local_lake

    with pytest.raises(BackupError) as raised:
        local_lake(url, "backup")
    message = str(raised.value)
    assert message.startswith("RAW_BUCKET_URL is in an object store (")
    assert "docs/spark.md#backups" in message and "\n" not in message
    assert "s3cr3t" not in message and "AKIAEXAMPLE" not in message


def test_a_local_lake_is_its_folder(tmp_path: Path) -> None:
    from ingest.backup import local_lake

    settings = _settings(tmp_path, WAREHOUSE="spark", RAW_BUCKET_URL=str(tmp_path / "my lake"))
    assert local_lake(settings.warehouse.raw_bucket_url, "backup") == tmp_path / "my lake"
    assert local_lake("file:///srv/lake", "backup") == Path("/srv/lake")


def test_lake_tables_count_rows_from_the_files_footers(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ingest.backup import lake_file_tables

    _write_lake(tmp_path)
    tables = lake_file_tables(tmp_path)
    assert {name: t["rows"] for name, t in tables.items()} == {
        "raw.assets": 5,
        "raw._dlt_loads": 2,
        "ops.schema_baseline": 1,
    }
    # the hash follows the files: same rows in another file is another hash
    before = tables["raw.assets"]["hash"]
    pq.write_table(pa.table({"id": ["bitcoin", "ethereum"]}), tmp_path / "raw/assets/2.0b.parquet")
    assert lake_file_tables(tmp_path)["raw.assets"]["hash"] == before  # the same bytes again
    (tmp_path / "raw/assets/2.0b.parquet").rename(tmp_path / "raw/assets/3.0b.parquet")
    assert lake_file_tables(tmp_path)["raw.assets"]["hash"] != before
    (tmp_path / "raw/assets/3.0b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(BackupError, match=r"the lake file .*3\.0b\.parquet cannot be read"):
        lake_file_tables(tmp_path)


def test_spark_backup_refuses_an_object_store_and_writes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, WAREHOUSE="spark", RAW_BUCKET_URL="s3://coincap-lake/prod")
    with pytest.raises(BackupError, match="coincap-elt backup handles a local lake only"):
        create_backup(settings)
    assert not settings.backup_dir.exists()


def test_spark_backup_of_a_local_lake_needs_no_spark(tmp_path: Path) -> None:
    """The archive is the lake's files and the state: Spark is never asked (SPARK_PORT is
    closed here), the row counts come from the files themselves."""
    lake = tmp_path / "lake"
    settings = _settings(
        tmp_path,
        WAREHOUSE="spark",
        RAW_BUCKET_URL=str(lake),
        SPARK_HOST="127.0.0.1",
        SPARK_PORT="9",
    )
    settings.run_dir.mkdir()
    with pytest.raises(BackupError, match="has no raw files yet; run a cycle first"):
        create_backup(settings)
    assert list(settings.backup_dir.iterdir()) == []
    _write_lake(lake)
    path = create_backup(settings)
    assert path.name.startswith("coincap-spark-") and verify(path) is None
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["engine"] == "spark" and manifest["lake"] == lake.as_uri()
    assert manifest["tables"]["raw.assets"]["rows"] == 5 and manifest["rows"] == 8
    assert {
        "lake/raw/assets/1.0a.parquet",
        "lake/raw/init",
        "lake/raw/_dlt_loads/coincap__1.jsonl",
        "lake/ops/schema_baseline/1.0c.jsonl.gz",
    } <= set(manifest["members"])


def test_a_lake_that_cannot_be_read_still_gets_a_partial_safety_copy(tmp_path: Path) -> None:
    """Before a restore replaces a damaged lake, its files are kept as they are."""
    from ingest.backup import _safety_backup, read_manifest

    lake = tmp_path / "lake"
    settings = _settings(tmp_path, WAREHOUSE="spark", RAW_BUCKET_URL=str(lake))
    _write_lake(lake)
    (lake / "raw/assets/2.0b.parquet").write_bytes(b"PAR1 cut short")
    settings.backup_dir.mkdir()
    path, note = _safety_backup(settings)
    assert path is not None and path.name.endswith("-pre-restore.tar.gz"), note
    assert "could not be backed up" in note and "partial safety copy" in note
    manifest = read_manifest(path)
    assert manifest["partial"] and "2.0b.parquet cannot be read" in manifest["partial"]
    assert "lake/raw/assets/2.0b.parquet" in manifest["members"]
