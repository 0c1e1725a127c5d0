"""`coincap-elt backup` and `coincap-elt restore`: one archive holds what a deployment needs to
come back.

An archive `coincap-<engine>-<YYYYmmddTHHMMSSZ>[-suffix].tar.gz` (UTC; the restore's safety
backup carries `-pre-restore`) in BACKUP_DIR holds:

- `manifest.json` first: the project's version, the engine, the time, the size, each member's
  size and SHA-256, per-table row counts and hashes and the content fingerprint over them;
- `warehouse/warehouse.duckdb` (a copy taken after a CHECKPOINT under the cycle lock) or
  `warehouse/warehouse.dump` (`pg_dump -Fc` of the schemas raw, staging, marts and ops, from a
  snapshot exported under the cycle lock) or, on Spark with a local lake (RAW_BUCKET_URL a
  file:// folder), `lake/raw/...` and `lake/ops/...`: dlt's files as they are, copied under the
  cycle lock (Spark's staging and marts are derived from them: a restore drops them and the next
  build makes them again). A lake in an object store (s3://, gs://, ...) is refused: the store's
  versioning protects it (docs/spark.md#backups);
- `dlt/pipelines/...`: dlt's pipelines directory (DLT_DATA_DIR/pipelines), whose state matches
  raw._dlt_pipeline_state in the same archive;
- `run/...`: the run directory's state (last_success, alert_state*, coincap_quota.json; not the
  lock);
- `metabase/metabase.dump` when METABASE_APP_DB_NAME is set: Metabase's application database.

The cycle lock is held only while the copy (DuckDB) or the snapshot (PostgreSQL) and the state
files are taken; compressing and hashing happen outside it. An archive is written under a hidden
temporary name in BACKUP_DIR, fsynced, then renamed: a complete name is always a complete archive.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.logs import first_line

if TYPE_CHECKING:
    from ingest.config import MetabaseAppDb, Settings

logger = logging.getLogger("coincap_elt")

ARCHIVE_PATTERN = re.compile(
    r"^coincap-(?P<engine>duckdb|postgres|spark)-(?P<stamp>\d{8}T\d{6}Z)(?P<suffix>-[a-z0-9-]+)?"
    r"\.tar\.gz$"
)
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
SAFETY_SUFFIX = "-pre-restore"
MANIFEST = "manifest.json"
FORMAT = 1
SCHEMAS = ("raw", "staging", "marts", "ops")
WAREHOUSE_MEMBER = {"duckdb": "warehouse/warehouse.duckdb", "postgres": "warehouse/warehouse.dump"}
METABASE_MEMBER = "metabase/metabase.dump"
LAKE_PREFIX = (
    "lake"  # spark: the lake's dataset folders (ingest/lake.py's DATASETS) as dlt wrote them
)
DLT_PREFIX = "dlt/pipelines"
RUN_PREFIX = "run"
# the run directory's state: the heartbeat, the alert states, CoinCap's quota (never the lock)
RUN_STATE = re.compile(r"^(last_success|coincap_quota\.json|alert_state(_[A-Za-z0-9_.-]+)?)$")
PG_CLIENT_HELP = (
    "install postgresql-client of the server's major version (15 for the compose warehouse; "
    "Debian: apt-get install postgresql-client-15)"
)
# pg_restore's list entries that are grants: restored apart, a missing role only warns
_ACL_ENTRY = re.compile(r"^\d+; \d+ \d+ (ACL|DEFAULT ACL) ")


class BackupError(Exception):
    """A backup or restore that cannot go on. Its message is one line that says what to do."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    created_at: datetime  # UTC, from the name
    size_bytes: int

    @property
    def engine(self) -> str:
        match = ARCHIVE_PATTERN.match(self.path.name)
        return match["engine"] if match else ""

    @property
    def safety(self) -> bool:
        """A restore's safety backup (`-pre-restore`), not one of the regular backups."""
        match = ARCHIVE_PATTERN.match(self.path.name)
        return bool(match and match["suffix"])


@dataclass
class RestoreReport:
    path: Path
    safety_backup: Path | None
    tables: int
    next_cycle: str
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ names
def archive_name(engine: str, created_at: datetime, suffix: str = "") -> str:
    return f"coincap-{engine}-{created_at.astimezone(UTC).strftime(STAMP_FORMAT)}{suffix}.tar.gz"


def parse_name(name: str) -> tuple[str, datetime, str] | None:
    """(engine, UTC time, suffix) of an archive's file name; None for any other name."""
    match = ARCHIVE_PATTERN.match(name)
    if not match:
        return None
    try:
        created = datetime.strptime(match["stamp"], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return match["engine"], created, match["suffix"] or ""


def list_backups(backup_dir: Path) -> list[BackupInfo]:
    """The archives in `backup_dir`, newest first, from their names alone (nothing is opened)."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for path in Path(backup_dir).iterdir():
            parsed = parse_name(path.name)
            if parsed is None or not path.is_file():
                continue
            found.append(BackupInfo(path, parsed[1], path.stat().st_size))
    return sorted(found, key=lambda b: (b.created_at, b.path.name), reverse=True)


def newest_backup(backup_dir: Path) -> BackupInfo | None:
    """The newest regular backup: a restore's safety backup (a copy of whatever was there,
    perhaps a broken warehouse) says nothing about whether backups are being made."""
    return next((b for b in list_backups(backup_dir) if not b.safety), None)


# ------------------------------------------------------------------ verification
def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest (the archive's first member). Raises BackupError (one line)."""
    try:
        with tarfile.open(path, "r|gz") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST or not member.isfile():
                raise BackupError(f"{path.name} has no {MANIFEST} first: not a coincap backup")
            handle = tar.extractfile(member)
            assert handle is not None
            manifest = json.loads(handle.read())
    except BackupError:
        raise
    except FileNotFoundError as exc:
        raise BackupError(f"{path} does not exist") from exc
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise BackupError(f"{path.name} is not a readable archive ({first_line(exc)})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path.name}: its manifest is not format {FORMAT}")
    return manifest


def verify(path: Path) -> str | None:
    """None when the archive is whole and every member matches its manifest (size and SHA-256);
    otherwise the one-line reason (truncated, altered, missing or extra member)."""
    path = Path(path)
    try:
        # gzip's own reader, drained to the end below: it checks the trailer (CRC and length),
        # so even a cut in the last bytes is found
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                return f"{path.name} has no {MANIFEST} first: not a coincap backup"
            handle = tar.extractfile(first)
            assert handle is not None
            manifest = json.loads(handle.read())
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                return f"{path.name}: its manifest is not format {FORMAT}"
            expected: dict[str, dict[str, Any]] = dict(manifest.get("members", {}))
            while (member := tar.next()) is not None:
                if member.isdir():
                    continue
                if not member.isfile():
                    return f"{path.name}: unexpected member {member.name} (not a regular file)"
                want = expected.pop(member.name, None)
                if want is None:
                    return f"{path.name}: member {member.name} is not in the manifest"
                handle = tar.extractfile(member)
                assert handle is not None
                digest, size = _sha256(handle)
                if size != want.get("bytes") or digest != want.get("sha256"):
                    return f"{path.name}: member {member.name} differs from its manifest (altered)"
            if expected:
                return f"{path.name}: {len(expected)} member(s) missing, e.g. {min(expected)}"
            while gz.read(1 << 20):
                pass
    except FileNotFoundError:
        return f"{path} does not exist"
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        return f"{path.name} is truncated or corrupt ({first_line(exc) or type(exc).__name__})"
    return None


def _sha256(handle: Any) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


# ------------------------------------------------------------------ retention
def plan_retention(
    backups: Sequence[BackupInfo], keep_daily: int, keep_weekly: int, last_good: Path | None
) -> set[Path]:
    """The archives to keep: the newest regular backup of each of the last `keep_daily` days that
    have one, the newest of each of the last `keep_weekly` ISO weeks that have one, and
    `last_good` (the newest archive that verifies), whatever the rules say. A restore's safety
    backups never take a regular backup's place: each is kept as long as the daily rule keeps
    the regular backups of its day or later (all of them while there is no regular one).
    `backups` are the matching files only."""
    keep: set[Path] = {last_good} if last_good is not None else set()
    days: list[date] = []
    weeks: list[tuple[int, int]] = []
    newest_first = sorted(backups, key=lambda b: (b.created_at, b.path.name), reverse=True)
    for backup in (b for b in newest_first if not b.safety):
        day = backup.created_at.date()
        week = tuple(backup.created_at.isocalendar())[:2]
        if day not in days and len(days) < keep_daily:
            days.append(day)
            keep.add(backup.path)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.append(week)  # type: ignore[arg-type]
            keep.add(backup.path)
    oldest_day = min(days) if days else None
    if oldest_day is not None or not any(not b.safety for b in backups):
        keep.update(
            b.path
            for b in newest_first
            if b.safety and (oldest_day is None or b.created_at.date() >= oldest_day)
        )
    return keep


def prune(settings: Settings, last_good: Path | None = None) -> list[Path]:
    """Applies BACKUP_KEEP_DAILY and BACKUP_KEEP_WEEKLY in BACKUP_DIR; returns what it deleted.
    Only files whose names match ARCHIVE_PATTERN are ever considered."""
    backups = list_backups(settings.backup_dir)
    if last_good is None:
        last_good = next((b.path for b in backups if verify(b.path) is None), None)
    keep = plan_retention(
        backups, settings.backup_keep_daily, settings.backup_keep_weekly, last_good
    )
    deleted = []
    for backup in backups:
        if backup.path not in keep:
            backup.path.unlink(missing_ok=True)
            deleted.append(backup.path)
            logger.info("deleted %s (retention)", backup.path.name)
    return deleted


# ------------------------------------------------------------------ backup
def create_backup(
    settings: Settings, suffix: str = "", locked: bool = False, retention: bool = True
) -> Path:
    """One archive of the warehouse, dlt's state and the run state in BACKUP_DIR; returns its
    path. `locked`: the caller already holds the cycle lock (the restore's safety backup).
    Raises BackupError (one line); a failed backup leaves no file behind."""
    backup_dir = settings.backup_dir
    engine = settings.warehouse.engine
    if engine == "spark":
        local_lake(settings.warehouse.raw_bucket_url, "backup")  # refuses an object store
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"BACKUP_DIR {backup_dir} cannot be created ({exc.strerror})") from exc
    _remove_leftovers(backup_dir)
    staging = Path(tempfile.mkdtemp(prefix=".coincap-backup-", dir=backup_dir))
    try:
        created_at, tables, held, snapshot_note = _take_snapshot(settings, staging, locked)
        if settings.metabase_app_db is not None:
            _pg_dump_metabase(settings.metabase_app_db, staging / METABASE_MEMBER)
        manifest = _manifest(settings, staging, created_at, tables, held)
        manifest.update(snapshot_note)
        name = archive_name(engine, created_at, suffix)
        while (backup_dir / name).exists():  # two backups in the same second
            created_at += timedelta(seconds=1)
            name = archive_name(engine, created_at, suffix)
        path = _write_archive(staging, manifest, backup_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    problem = verify(path)
    if problem:
        path.unlink(missing_ok=True)
        raise BackupError(f"the archive just written does not verify ({problem}); nothing kept")
    logger.info(
        "backup %s: %s, %d table(s), %s rows",
        path.name,
        _human_size(path.stat().st_size),
        len(tables),
        f"{sum(t['rows'] for t in tables.values()):,}",
    )
    if retention:
        prune(settings, last_good=path)
    return path


# what a backup or restore killed mid-way leaves (hidden names, never an archive's name)
_LEFTOVER = re.compile(r"^\.coincap-(backup|restore)-\w+$|^\.coincap-.+\.tar\.gz\.partial$")
LEFTOVER_AGE_S = 6 * 3600


def _remove_leftovers(backup_dir: Path, now: float | None = None) -> list[Path]:
    """Temporary files and directories of a backup or restore that was killed, once they are
    older than LEFTOVER_AGE_S (a younger one may belong to a backup still running)."""
    now = time.time() if now is None else now
    removed = []
    for path in backup_dir.iterdir():
        if not _LEFTOVER.match(path.name):
            continue
        with contextlib.suppress(OSError):
            if now - path.lstat().st_mtime < LEFTOVER_AGE_S:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
            logger.info("removed %s, left by a backup or restore that was stopped", path.name)
    return removed


def _take_snapshot(
    settings: Settings, staging: Path, locked: bool
) -> tuple[datetime, dict[str, dict[str, Any]], float, dict[str, Any]]:
    """The consistent part, under the cycle lock: the warehouse's copy (DuckDB) or snapshot
    (PostgreSQL), dlt's pipelines and the run state. Returns the time, the tables' counts and
    hashes, the seconds the lock was held and what goes into the manifest besides."""
    from ingest.cycle import cycle_lock

    if settings.warehouse.engine == "spark":
        lake = local_lake(settings.warehouse.raw_bucket_url, "backup")
        with _held_lock(settings, locked, cycle_lock) as clock:
            created_at = datetime.now(UTC).replace(microsecond=0)
            copied = copy_lake(lake, staging / LAKE_PREFIX)
            _copy_state(settings, staging)
            held = clock()
        _log_held(held, locked)
        if not copied:
            raise BackupError(
                f"the lake {lake} (RAW_BUCKET_URL) has no raw files yet; run a cycle first "
                "(coincap-elt run) or point RAW_BUCKET_URL at the lake"
            )
        tables = lake_file_tables(staging / LAKE_PREFIX)
        return created_at, tables, held, {"lake": settings.warehouse.raw_bucket_url}
    if settings.warehouse.engine == "duckdb":
        target = staging / WAREHOUSE_MEMBER["duckdb"]
        with _held_lock(settings, locked, cycle_lock) as clock:
            created_at = datetime.now(UTC).replace(microsecond=0)
            _copy_duckdb(settings, target)
            _copy_state(settings, staging)
            held = clock()
        _log_held(held, locked)
        return created_at, duckdb_tables(target), held, {}
    pg_dump = _check_pg_dump_version(_warehouse_pg_env(settings), "warehouse")  # before the lock
    conn = _pg_connect(settings)
    try:
        with _held_lock(settings, locked, cycle_lock) as clock:
            created_at = datetime.now(UTC).replace(microsecond=0)
            snapshot, schemas = _pg_export_snapshot(conn, settings)
            _copy_state(settings, staging)
            held = clock()
        _log_held(held, locked)
        _pg_dump_warehouse(
            settings, pg_dump, snapshot, schemas, staging / WAREHOUSE_MEMBER["postgres"]
        )
        with conn.cursor() as cursor:
            tables = postgres_tables(cursor)
        return created_at, tables, held, {"schemas": schemas}
    finally:
        conn.close()


def _log_held(seconds: float, locked: bool) -> None:
    if locked:  # the restore's safety backup: the restore holds the lock for its whole run
        logger.info("took the consistent copy in %.2f s (under the restore's cycle lock)", seconds)
    else:
        logger.info("held the cycle lock for %.2f s", seconds)


@contextlib.contextmanager
def _held_lock(settings: Settings, locked: bool, cycle_lock: Any) -> Iterator[Any]:
    """The cycle lock (waiting for a running cycle), yielding a clock of the seconds held."""
    if locked:
        started = time.monotonic()
        yield lambda: time.monotonic() - started
        return
    with cycle_lock(settings.run_dir) as free:
        if free:
            started = time.monotonic()
            yield lambda: time.monotonic() - started
            return
    logger.info("a cycle is running; waiting for it to finish")
    with cycle_lock(settings.run_dir, wait=True):
        started = time.monotonic()
        yield lambda: time.monotonic() - started


def _copy_duckdb(settings: Settings, target: Path) -> None:
    import duckdb

    path = settings.warehouse.duckdb_path
    if not path.exists():
        raise BackupError(
            f"the warehouse {path} (DUCKDB_PATH) does not exist; run a cycle first "
            "(coincap-elt run) or point DUCKDB_PATH at the warehouse file"
        )
    try:
        conn = duckdb.connect(str(path))
        try:
            conn.execute("CHECKPOINT")
        finally:
            conn.close()
    except duckdb.Error as exc:
        raise BackupError(
            f"the warehouse {path} could not be opened ({first_line(exc)}); nothing was backed up"
        ) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)


def _copy_state(settings: Settings, staging: Path) -> None:
    """dlt's pipelines directory and the run directory's state files, as they are now."""
    pipelines = settings.pipelines_dir
    if pipelines.is_dir():
        shutil.copytree(pipelines, staging / DLT_PREFIX, symlinks=False)
    run = staging / RUN_PREFIX
    run.mkdir(parents=True, exist_ok=True)
    for path in run_state_files(settings.run_dir):
        shutil.copyfile(path, run / path.name)


def run_state_files(run_dir: Path) -> list[Path]:
    with contextlib.suppress(FileNotFoundError):
        return sorted(p for p in run_dir.iterdir() if RUN_STATE.match(p.name) and p.is_file())
    return []


def duckdb_tables(path: Path) -> dict[str, dict[str, Any]]:
    """Per base table of the four schemas: its row count and an order-free hash of its rows."""
    import duckdb

    conn = duckdb.connect(str(path), read_only=True)
    try:
        names = conn.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_type = 'BASE TABLE' and table_schema in ('raw', 'staging', 'marts', "
            "'ops') order by 1, 2"
        ).fetchall()
        tables = {}
        for schema, table in names:
            rows, digest = conn.execute(
                f'select count(*), coalesce(bit_xor(hash(t)), 0) from "{schema}"."{table}" t'
            ).fetchone()
            tables[f"{schema}.{table}"] = {"rows": int(rows), "hash": f"{int(digest):016x}"}
        return tables
    finally:
        conn.close()


def postgres_tables(cursor: Any) -> dict[str, dict[str, Any]]:
    cursor.execute(
        "select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where c.relkind in ('r', 'p') and n.nspname in ('raw', 'staging', 'marts', 'ops') "
        "order by 1, 2"
    )
    tables = {}
    for schema, table in cursor.fetchall():
        cursor.execute(
            "select count(*), coalesce(bit_xor(('x' || left(md5(t::text), 16))::bit(64)::bigint),"
            f' 0) from "{schema}"."{table}" t'
        )
        rows, digest = cursor.fetchone()
        tables[f"{schema}.{table}"] = {
            "rows": int(rows),
            "hash": f"{int(digest) & (2**64 - 1):016x}",
        }
    return tables


# ------------------------------------------------------------------ Spark's lake
def local_lake(url: str, command: str) -> Path:
    """The lake's folder when RAW_BUCKET_URL is a local one (file://); else BackupError: a lake
    in an object store is protected by the store, not by an archive on one disk."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    where = f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else url
    raise BackupError(
        f"RAW_BUCKET_URL is in an object store ({where}/...): coincap-elt {command} handles a "
        "local lake only; the store protects the lake (versioning, object lock, replication: "
        "docs/spark.md#backups) and Spark's marts are rebuilt from it"
    )


def copy_lake(lake: Path, target: Path) -> list[str]:
    """The lake's dataset folders (raw, ops), every file as dlt wrote it; returns those copied.
    Hard links where `target` is on the lake's file system (a quarter of a copy's time under the
    cycle lock: dlt writes new files and deletes old ones, and a link keeps a deleted file's
    content; a file rewritten in place later, by a retried load job, would make the archive fail
    its own verification, never hold a wrong file), copies elsewhere."""
    from ingest.lake import DATASETS

    copied = []
    for dataset in DATASETS:
        if (lake / dataset).is_dir():
            shutil.copytree(
                lake / dataset, target / dataset, symlinks=False, copy_function=_link_or_copy
            )
            copied.append(dataset)
    return copied


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed there
        shutil.copy2(source, target)


def lake_file_tables(root: Path) -> dict[str, dict[str, Any]]:
    """Per table folder of the lake's datasets (dlt's own `_dlt_*` ones included): its row count,
    read from the files (Parquet's footer, JSON lines counted), and a hash over its files' names
    and contents. Raises BackupError for a file that is not what its name says."""
    from ingest.lake import DATASETS

    tables = {}
    for dataset in DATASETS:
        folder = root / dataset
        if not folder.is_dir():
            continue
        for table in sorted(p for p in folder.iterdir() if p.is_dir()):
            rows, digest = 0, hashlib.sha256()
            for path in sorted(p for p in table.rglob("*") if p.is_file()):
                rows += _file_rows(path)
                with open(path, "rb") as handle:
                    content, _ = _sha256(handle)
                digest.update(f"{path.relative_to(table).as_posix()}\t{content}\n".encode())
            tables[f"{dataset}.{table.name}"] = {"rows": rows, "hash": digest.hexdigest()[:16]}
    return tables


def _file_rows(path: Path) -> int:
    """The rows of one of dlt's files: Parquet's footer says it; JSON lines are counted."""
    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return int(pq.read_metadata(path).num_rows)
        if path.name.endswith(".jsonl.gz"):
            with gzip.open(path, "rb") as handle:
                return sum(1 for line in handle if line.strip())
        if path.name.endswith(".jsonl"):
            with open(path, "rb") as handle:
                return sum(1 for line in handle if line.strip())
    except Exception as exc:  # noqa: BLE001 - pyarrow's and gzip's errors alike
        raise BackupError(
            f"the lake file {path} cannot be read ({type(exc).__name__}: {first_line(exc)})"
        ) from exc
    return 0


def fingerprint(tables: dict[str, dict[str, Any]]) -> str:
    """The content fingerprint: SHA-256 over every table's name, row count and hash."""
    text = "".join(f"{name}\t{t['rows']}\t{t['hash']}\n" for name, t in sorted(tables.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _manifest(
    settings: Settings,
    staging: Path,
    created_at: datetime,
    tables: dict[str, dict[str, Any]],
    held: float | None,
    partial: str | None = None,
) -> dict[str, Any]:
    members = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            digest, size = _sha256(handle)
        members[path.relative_to(staging).as_posix()] = {"bytes": size, "sha256": digest}
    mb = settings.metabase_app_db
    return {
        "format": FORMAT,
        "project": "coincap-elt",
        "project_version": _project_version(),
        "engine": settings.warehouse.engine,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "warehouse": settings.warehouse.location,
        "size_bytes": sum(m["bytes"] for m in members.values()),
        "lock_held_s": None if held is None else round(held, 3),
        "tables": tables,
        "rows": sum(t["rows"] for t in tables.values()),
        "fingerprint": fingerprint(tables) if tables else None,
        "metabase_app_db": (
            {"database": mb.database, "member": METABASE_MEMBER}
            if mb is not None and METABASE_MEMBER in members
            else None
        ),
        "partial": partial,
        "members": members,
        "directories": sorted(
            p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_dir()
        ),
    }


def _project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coincap-elt")
    except PackageNotFoundError:
        return "unknown"


def _write_archive(staging: Path, manifest: dict[str, Any], path: Path) -> Path:
    """manifest.json first, then every member; under a hidden temporary name, fsynced, renamed."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
            # directories too: dlt expects its empty ones (load/normalized, ...) to be there
            for name in manifest["directories"]:
                tar.add(staging / name, arcname=name, recursive=False)
            for name in manifest["members"]:
                tar.add(staging / name, arcname=name, recursive=False)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ PostgreSQL
def _pg_connect(settings: Settings) -> Any:
    import psycopg2

    try:
        return settings.warehouse.connect_postgres("coincap-elt backup")
    except psycopg2.Error as exc:
        raise BackupError(
            f"the warehouse ({settings.warehouse}) is unreachable: {first_line(exc)}; check "
            "that it runs and the POSTGRES_* settings"
        ) from exc


def _pg_export_snapshot(conn: Any, settings: Settings) -> tuple[str, list[str]]:
    """Opens a repeatable-read transaction on `conn` and exports its snapshot: pg_dump and the
    row counts then see exactly this moment, however long they take after the lock is let go."""
    import psycopg2.extensions

    conn.set_session(
        isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True
    )
    with conn.cursor() as cursor:
        cursor.execute("select pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        cursor.execute(
            "select nspname from pg_namespace where nspname in ('raw', 'staging', 'marts', 'ops') "
            "order by 1"
        )
        schemas = [row[0] for row in cursor.fetchall()]
    if not schemas:
        raise BackupError(
            f"the warehouse ({settings.warehouse}) has none of the schemas raw, staging, marts, "
            "ops yet; run a cycle first (coincap-elt run)"
        )
    return snapshot, schemas


def pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not on PATH; {PG_CLIENT_HELP}")
    return path


def _pg_env(host: str, port: str, database: str, user: str, password: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PGHOST=host,
        PGPORT=str(port),
        PGDATABASE=database,
        PGUSER=user,
        PGPASSWORD=password,
        PGCONNECT_TIMEOUT="10",
        PGAPPNAME="coincap-elt backup",
    )
    return env


def _warehouse_pg_env(settings: Settings) -> dict[str, str]:
    pg = settings.warehouse.postgres
    return _pg_env(pg["host"], pg["port"], pg["database"], pg["username"], pg["password"])


def _app_pg_env(app: MetabaseAppDb) -> dict[str, str]:
    return _pg_env(app.host, app.port, app.database, app.username, app.password)


def _check_pg_dump_version(env: dict[str, str], what: str) -> str:
    pg_dump = pg_tool("pg_dump")
    out = subprocess.run([pg_dump, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"(\d+)(?:\.\d+)?", out.stdout)
    client = int(found.group(1)) if found else 0
    server = _pg_server_major(env)
    if server and client < server:
        raise BackupError(
            f"pg_dump {client} is older than the {what} server ({server}); {PG_CLIENT_HELP}"
        )
    return pg_dump


def _pg_server_major(env: dict[str, str]) -> int:
    import psycopg2

    try:
        conn = psycopg2.connect(
            host=env["PGHOST"],
            port=int(env["PGPORT"]),
            dbname=env["PGDATABASE"],
            user=env["PGUSER"],
            password=env["PGPASSWORD"],
            connect_timeout=10,
        )
    except psycopg2.Error as exc:
        raise BackupError(
            f"PostgreSQL {env['PGUSER']}@{env['PGHOST']}:{env['PGPORT']}/{env['PGDATABASE']} is "
            f"unreachable: {first_line(exc)}"
        ) from exc
    try:
        return int(conn.server_version) // 10000
    finally:
        conn.close()


def _run_pg(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = first_line(_pg_errors(result.stderr)[0] if _pg_errors(result.stderr) else "")
        raise BackupError(f"{what} failed: {detail or result.stderr.strip()[:200]}")
    return result


def _pg_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line or "error" in line]


def _pg_dump_warehouse(
    settings: Settings, pg_dump: str, snapshot: str, schemas: list[str], target: Path
) -> None:
    env = _warehouse_pg_env(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    args = [pg_dump, "--format=custom", "--compress=0", f"--snapshot={snapshot}", "-f", str(target)]
    for schema in schemas:
        args += ["--schema", schema]
    _run_pg(args, env, "pg_dump of the warehouse")


def _pg_dump_metabase(app: MetabaseAppDb, target: Path) -> None:
    env = _app_pg_env(app)
    pg_dump = _check_pg_dump_version(env, "Metabase application database")
    target.parent.mkdir(parents=True, exist_ok=True)
    _run_pg(
        [pg_dump, "--format=custom", "--compress=0", "-f", str(target)],
        env,
        f"pg_dump of Metabase's application database {app.database}",
    )


# ------------------------------------------------------------------ listing
def list_lines(settings: Settings, now: datetime | None = None) -> list[str]:
    """`coincap-elt backup --list`: one line per archive, newest first."""
    now = now or datetime.now(UTC)
    lines = []
    for backup in list_backups(settings.backup_dir):
        problem = verify(backup.path)
        lines.append(
            f"{backup.created_at:%Y-%m-%d %H:%M:%SZ}  {_human_age(now - backup.created_at):>9}  "
            f"{_human_size(backup.size_bytes):>9}  {'ok' if problem is None else 'FAILS'}  "
            f"{backup.path}" + (f"  ({problem})" if problem else "")
        )
    return lines


def _human_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


# ------------------------------------------------------------------ restore
def restore_backup(settings: Settings, path: Path, yes: bool) -> RestoreReport:
    """Verifies `path`, then, under the cycle lock for the whole restore: asks before replacing
    a warehouse that has data, takes a safety backup of the current state, restores the
    warehouse, dlt's state and the run state (and Metabase's database when the archive has it),
    and checks the row counts and fingerprint against the manifest. Raises BackupError (one
    line); until the warehouse is replaced, nothing is changed."""
    from ingest.cycle import cycle_lock

    path = Path(path).resolve()
    if settings.warehouse.engine == "spark":
        local_lake(settings.warehouse.raw_bucket_url, "restore")  # refuses an object store
    problem = verify(path)
    if problem:
        raise BackupError(f"{problem}; nothing was restored")
    manifest = read_manifest(path)
    engine = settings.warehouse.engine
    if manifest.get("partial"):
        raise BackupError(
            f"{path.name} is a partial safety copy ({manifest['partial']}), not a restorable "
            "backup; its files can be taken out with tar by hand"
        )
    if manifest.get("engine") != engine:
        raise BackupError(
            f"{path.name} is a {manifest.get('engine')} backup but WAREHOUSE is {engine}; "
            "restore it into a warehouse of the same engine"
        )
    if engine == "postgres":
        pg_tool("pg_restore")
        pg_tool("psql")
    warnings: list[str] = []
    try:
        settings.backup_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupError(f"BACKUP_DIR {settings.backup_dir} cannot be created ({exc})") from exc
    with _held_lock(settings, False, cycle_lock):
        has_data = _warehouse_has_data(settings)
        if has_data and not _confirmed(settings, yes):
            raise BackupError(
                f"the warehouse ({_replaced(settings)}) has data and the restore would "
                "replace it; run again with --yes (a safety backup is taken first)"
            )
        safety, note = _safety_backup(settings)
        if safety is None and has_data:
            warnings.append(f"no safety backup could be taken ({note})")
            if not yes:
                raise BackupError(
                    f"no safety backup of the current state could be taken ({note}); run again "
                    "with --yes to restore anyway"
                )
        elif safety is None:
            logger.info("no safety backup: nothing to keep (a fresh installation)")
        elif note:
            warnings.append(note)
        staging = Path(tempfile.mkdtemp(prefix=".coincap-restore-", dir=settings.backup_dir))
        try:
            with tarfile.open(path, "r:gz") as tar:
                tar.extractall(staging, filter="data")
            if engine == "duckdb":
                _restore_duckdb(settings, staging / WAREHOUSE_MEMBER["duckdb"])
            elif engine == "spark":
                _restore_lake(settings, staging / LAKE_PREFIX)
            else:
                warnings += _restore_postgres(settings, staging / WAREHOUSE_MEMBER["postgres"])
            _restore_state(settings, staging)
            warnings += _restore_metabase(settings, staging, manifest)
            got = _current_tables(settings)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _compare(manifest["tables"], got, safety)
        if engine == "spark":
            warnings += _drop_spark_marts(settings)
        next_cycle = _next_cycle(settings, manifest)
    logger.info("restored %s", path.name)
    return RestoreReport(path, safety, len(got), next_cycle, warnings)


def _confirmed(settings: Settings, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        return False
    answer = input(
        f"Replace the warehouse {_replaced(settings)}, dlt's state and the run state "
        "with the backup? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def _replaced(settings: Settings) -> str:
    """What a restore replaces, for the question and the refusal: on Spark, the lake's folder."""
    if settings.warehouse.engine == "spark":
        lake = local_lake(settings.warehouse.raw_bucket_url, "restore")
        return f"the lake {lake} and Spark's staging and marts on {settings.warehouse.location}"
    return settings.warehouse.location


def _warehouse_has_data(settings: Settings) -> bool:
    """Whether the restore would replace something: a DuckDB file that is not empty (readable
    or not), or any table in the four schemas."""
    if settings.warehouse.engine == "duckdb":
        path = settings.warehouse.duckdb_path
        return path.exists() and path.stat().st_size > 0
    if settings.warehouse.engine == "spark":
        from ingest.lake import DATASETS

        lake = local_lake(settings.warehouse.raw_bucket_url, "restore")
        return any(p.is_file() for d in DATASETS for p in (lake / d).rglob("*"))
    conn = _pg_connect(settings)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where c.relkind in ('r', 'p', 'v') and n.nspname in ('raw', 'staging', "
                "'marts', 'ops')"
            )
            return cursor.fetchone()[0] > 0
    finally:
        conn.close()


def _safety_backup(settings: Settings) -> tuple[Path | None, str]:
    """A backup of the current state before it is replaced, under the lock the restore holds.
    When the warehouse cannot be read (corrupt, half gone), the files that exist are copied as
    they are into a partial archive. Returns (path or None, what to tell the operator)."""
    try:
        path = create_backup(settings, suffix=SAFETY_SUFFIX, locked=True, retention=False)
        return path, ""
    except BackupError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever broke, the files are what is left
        reason = f"{type(exc).__name__}: {first_line(exc)}"
    staging = Path(tempfile.mkdtemp(prefix=".coincap-backup-", dir=settings.backup_dir))
    try:
        duckdb_path = settings.warehouse.duckdb_path
        if settings.warehouse.engine == "duckdb" and duckdb_path.is_file():
            target = staging / WAREHOUSE_MEMBER["duckdb"]
            target.parent.mkdir(parents=True)
            shutil.copyfile(duckdb_path, target)
            wal = duckdb_path.with_name(duckdb_path.name + ".wal")
            if wal.is_file():
                shutil.copyfile(wal, target.with_name(target.name + ".wal"))
        if settings.warehouse.engine == "spark":
            copy_lake(
                local_lake(settings.warehouse.raw_bucket_url, "restore"), staging / LAKE_PREFIX
            )
        _copy_state(settings, staging)
        if not any(p.is_file() for p in staging.rglob("*")):
            return None, f"the current warehouse could not be backed up: {reason}"
        created_at = datetime.now(UTC).replace(microsecond=0)
        manifest = _manifest(settings, staging, created_at, {}, None, partial=reason)
        name = archive_name(settings.warehouse.engine, created_at, SAFETY_SUFFIX)
        path = _write_archive(staging, manifest, settings.backup_dir / name)
    except OSError as exc:
        return None, f"{reason}; and its files could not be copied: {exc}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path, (
        f"the current warehouse could not be backed up ({reason}); {path} holds its files "
        "as they were (a partial safety copy, not restorable as such)"
    )


def _restore_duckdb(settings: Settings, source: Path) -> None:
    """The file put in place atomically: copied beside the target, fsynced, renamed over it
    (the old write-ahead log removed first: DuckDB would replay it onto the restored file)."""
    target = settings.warehouse.duckdb_path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.restoring")
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        target.with_name(target.name + ".wal").unlink(missing_ok=True)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _restore_lake(settings: Settings, source: Path) -> None:
    """Each dataset folder of the lake replaced by the archive's: copied beside it first (the
    same file system), then swapped in by two renames; a dataset the archive lacks is removed."""
    from ingest.lake import DATASETS

    lake = local_lake(settings.warehouse.raw_bucket_url, "restore")
    lake.mkdir(parents=True, exist_ok=True)
    for dataset in DATASETS:
        current, incoming = lake / dataset, lake / f".{dataset}.restoring"
        old = lake / f".{dataset}.pre-restore"
        shutil.rmtree(incoming, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        if (source / dataset).is_dir():
            shutil.copytree(source / dataset, incoming)
        if current.exists():
            current.rename(old)
        if incoming.exists():
            incoming.rename(current)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(lake)


def _drop_spark_marts(settings: Settings) -> list[str]:
    """Spark's staging and marts dropped (derived from raw, which is older now): the next build
    makes every mart again from the restored raw. The mark is written first, so when Spark is
    unreachable (or the restore is killed here) the next cycle's build drops them instead."""
    from ingest.lake import DERIVED_DATABASES, drop_derived, mark_rebuild
    from ingest.warehouse import WarehouseError

    mark_rebuild(settings.run_dir)
    try:
        drop_derived(settings.warehouse, settings.run_dir)
    except WarehouseError as exc:
        return [
            f"Spark's {' and '.join(DERIVED_DATABASES)} could not be dropped now ({exc}); the "
            "next cycle drops them before its build and makes every mart again from the "
            "restored raw"
        ]
    return []


def _restore_postgres(settings: Settings, dump: Path) -> list[str]:
    """The four schemas (and dlt's raw_staging) dropped and restored from the dump in ONE
    transaction (psql -1: a failure leaves the warehouse as it was), owned by the configured
    role; then the grants the dump holds (Metabase's reader on marts), each on its own: a role
    missing here is a warning."""
    env = _warehouse_pg_env(settings)
    pg_restore, psql = pg_tool("pg_restore"), pg_tool("psql")
    listing = _run_pg([pg_restore, "--list", str(dump)], env, "pg_restore --list").stdout
    entries = [ln for ln in listing.splitlines() if ln.strip() and not ln.startswith(";")]
    grants = [ln for ln in entries if _ACL_ENTRY.match(ln)]
    objects = [ln for ln in entries if not _ACL_ENTRY.match(ln)]
    # and dlt's scratch schema for merges: a fresh one matches the restored state
    drop = "drop schema if exists " + ", ".join([*SCHEMAS, "raw_staging"]) + " cascade"
    _pipe_restore(
        [pg_restore, "--no-owner", "--use-list", _list_file(dump, "objects", objects), "-f", "-"],
        [psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-c", drop, "-f", "-"],
        dump,
        env,
        "restoring the warehouse",
    )
    if not grants:
        return []
    errors = _pipe_restore(
        [pg_restore, "--no-owner", "--use-list", _list_file(dump, "grants", grants), "-f", "-"],
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-f", "-"],
        dump,
        env,
        "restoring the grants",
        tolerate=True,
    )
    counts: dict[str, int] = {}
    for error in errors:  # one line per cause (a missing role fails each of its grants)
        counts[error] = counts.get(error, 0) + 1
    return [
        f"{n} grant(s) of the backup not restored ({error}); create the role and grant them "
        "again (docker/warehouse-init does it for the compose warehouse)"
        for error, n in counts.items()
    ]


def _list_file(dump: Path, kind: str, lines: list[str]) -> str:
    path = dump.with_name(f"{dump.name}.{kind}.list")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _pipe_restore(
    producer: list[str],
    consumer: list[str],
    dump: Path,
    env: dict[str, str],
    what: str,
    tolerate: bool = False,
) -> list[str]:
    """`pg_restore ... DUMP | psql ...`; raises BackupError unless `tolerate` (then returns the
    ERROR lines psql printed)."""
    with subprocess.Popen(
        [*producer, str(dump)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as source:
        result = subprocess.run(
            consumer, env=env, stdin=source.stdout, capture_output=True, text=True, check=False
        )
        assert source.stdout is not None
        source.stdout.close()
        source_err = source.stderr.read().decode(errors="replace") if source.stderr else ""
        source.wait()
    errors = [
        line.split("ERROR:", 1)[1].strip()
        for line in result.stderr.splitlines()
        if "ERROR:" in line
    ]
    if tolerate:
        return errors
    if source.returncode != 0 or result.returncode != 0:
        detail = errors[0] if errors else first_line(source_err or result.stderr)
        raise BackupError(f"{what} failed: {detail}; the warehouse is as it was before")
    return []


def _restore_state(settings: Settings, staging: Path) -> None:
    """dlt's pipelines directory and the run state replaced by the archive's."""
    pipelines = settings.pipelines_dir
    pipelines.parent.mkdir(parents=True, exist_ok=True)
    old = pipelines.with_name(f".{pipelines.name}.pre-restore")
    shutil.rmtree(old, ignore_errors=True)
    if pipelines.exists():
        pipelines.rename(old)
    source = staging / DLT_PREFIX
    if source.is_dir():
        shutil.copytree(source, pipelines)
    else:
        pipelines.mkdir()
    shutil.rmtree(old, ignore_errors=True)
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    for path in run_state_files(run_dir):
        path.unlink()
    for path in sorted((staging / RUN_PREFIX).glob("*")):
        if path.is_file() and RUN_STATE.match(path.name):
            tmp = run_dir / f".{path.name}.restoring"
            shutil.copyfile(path, tmp)
            os.replace(tmp, run_dir / path.name)


def _restore_metabase(settings: Settings, staging: Path, manifest: dict[str, Any]) -> list[str]:
    """Metabase's application database from the archive, when it holds one (stop the metabase
    service first: Metabase keeps its own state in memory)."""
    info = manifest.get("metabase_app_db")
    if not info:
        return []
    app = settings.metabase_app_db
    if app is None:
        return [
            f"the backup holds Metabase's application database ({info['database']}) but "
            "METABASE_APP_DB_NAME is not set: it was not restored"
        ]
    env = _app_pg_env(app)
    _pipe_restore(
        [pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl", "-f", "-"],
        [pg_tool("psql"), "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        staging / METABASE_MEMBER,
        env,
        f"restoring Metabase's application database {app.database}",
    )
    logger.info("restored Metabase's application database %s", app.database)
    return []


def _current_tables(settings: Settings) -> dict[str, dict[str, Any]]:
    if settings.warehouse.engine == "duckdb":
        return duckdb_tables(settings.warehouse.duckdb_path)
    if settings.warehouse.engine == "spark":
        return lake_file_tables(local_lake(settings.warehouse.raw_bucket_url, "restore"))
    conn = _pg_connect(settings)
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cursor:
            return postgres_tables(cursor)
    finally:
        conn.close()


def _compare(
    expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]], safety: Path | None
) -> None:
    if fingerprint(expected) == fingerprint(got):
        return
    before = f"; the state before the restore is in {safety}" if safety else ""
    for name in sorted(set(expected) | set(got)):
        want, have = expected.get(name), got.get(name)
        if want != have:
            raise BackupError(
                f"the restored warehouse does not match the manifest: {name} has "
                f"{have['rows'] if have else 'no'} rows (hash {have['hash'] if have else '-'}), "
                f"the backup {want['rows'] if want else 'no'} (hash "
                f"{want['hash'] if want else '-'}){before}"
            )


def _next_cycle(settings: Settings, manifest: dict[str, Any]) -> str:
    """What the next cycle does: it asks CoinCap's history for the slots since the series'
    newest point (the ingest's history planning, from dlt's marks and the mart)."""
    if settings.warehouse.engine == "spark":
        return (
            "next cycle: it builds staging and every mart again from the restored raw files, "
            "and asks CoinCap's 5-minute history for the slots since the "
            f"backup ({manifest['created_at']}) where CoinCap still has them; at most "
            f"COINCAP_MAX_HISTORY_REQUESTS={settings.max_history_requests} requests a cycle, the "
            "rest in the following cycles; slots CoinCap no longer has become known holes "
            "(marts.fct_asset_price_gaps)"
        )
    newest = None
    with contextlib.suppress(Exception):
        with settings.warehouse.reader("coincap-elt restore") as query:
            rows = query(
                "select asset_id, max(price_at) from marts.fct_asset_price_history group by 1"
            )
        ends = [end for _, end in rows if end is not None]
        newest = min(ends) if ends else None
    since = (
        f"{newest:%Y-%m-%d %H:%M} UTC" if isinstance(newest, datetime) else manifest["created_at"]
    )
    return (
        f"next cycle: it asks CoinCap's 5-minute history for the slots since {since} (the "
        "restored series' newest slot) and fills them where CoinCap still has them; at most "
        f"COINCAP_MAX_HISTORY_REQUESTS={settings.max_history_requests} requests a cycle, the rest "
        "in the following cycles; slots CoinCap no longer has become known holes "
        "(marts.fct_asset_price_gaps)"
    )


# ------------------------------------------------------------------ the commands
def main(settings: Settings, args: Any) -> int:
    """`coincap-elt backup [--list]` and `coincap-elt restore PATH [--yes]`: exit 0 or 1."""
    try:
        if args.command == "backup" and args.list:
            lines = list_lines(settings)
            for line in lines:
                print(line)
            if not lines:
                print(f"no backups in {settings.backup_dir}")
            return 0
        if args.command == "backup":
            from ingest.backup_watch import backup_finished

            started = time.monotonic()
            try:
                path = create_backup(settings)
            except Exception as exc:  # the backup alert (once), then as before
                error = exc if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
                backup_finished(settings, first_line(error))
                raise
            backup_finished(settings, None, path)
            logger.info("backup written in %.1f s", time.monotonic() - started)
            print(path)
            return 0
        report = restore_backup(settings, Path(args.path), args.yes)
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"restored {report.path.name}: {report.tables} table(s) match the manifest "
        "(row counts and fingerprint)"
    )
    if report.safety_backup:
        print(f"the state before the restore is in {report.safety_backup}")
    print(report.next_cycle)
    return 0
