"""The backup and restore drill, on both engines (docs/operations.md, "Backups and restore").

One installation per engine (the drills' shared `installation` fixture: ten assets, CoinCap's
clock moving 5 minutes a cycle): a cycle, `coincap-elt backup` (with old archives and foreign
files in BACKUP_DIR, to see retention keep what it promises), a truncated and a corrupt archive
refused with nothing changed, more cycles, then the warehouse lost (DuckDB: garbage bytes over
the file; PostgreSQL: the schemas dropped), `coincap-elt restore PATH --yes`, and the next cycle
after a 30-minute outage: every 5-minute slot since the backup filled from CoinCap's history, no
row doubled, no hole in marts.fct_asset_price_gaps. Then the same archive restored into a fresh
installation (empty data directories, an empty warehouse), as on a new machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drillkit import GRID, Installation, series_holes
from helpers import Warehouse

from ingest.backup import ARCHIVE_PATTERN, SAFETY_SUFFIX, list_backups, read_manifest

STATE: dict[str, dict[str, Any]] = {}  # engine -> what the drill's steps hand on


def _pg_path(env: dict[str, str]) -> dict[str, str]:
    """pg_dump, pg_restore and psql of the test server's own version first on PATH."""
    with contextlib.suppress(Exception):
        from devkit.postgres_cluster import find_bindir

        bindir = find_bindir()
        if (bindir / "pg_dump").exists():
            return {"PATH": f"{bindir}{os.pathsep}{env['PATH']}"}
    return {}


def _counts(inst: Installation, tables: list[str]) -> dict[str, int]:
    return {t: inst.warehouse.count(t) for t in tables}


def _error_lines(proc: Any) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "error:" in ln]


def _no_doubles(inst: Installation) -> None:
    for table, key in (
        ("marts.fct_asset_price_history", "asset_id, price_at"),
        ("marts.fct_asset_prices", "asset_id, observed_at"),
        ("raw.assets", "id, coincap_timestamp"),
        ("raw.asset_history", "asset_id, time"),
    ):
        doubled = inst.warehouse.query(
            f"select count(*) from (select {key} from {table} group by {key} having count(*) > 1) d"
        )[0][0]
        assert doubled == 0, f"{doubled} key(s) doubled in {table}"


@pytest.fixture(scope="module")
def reader_role(installation: Installation) -> Iterator[str | None]:
    """PostgreSQL: a Metabase-like reader with SELECT on marts (now and by default privileges),
    as docker/warehouse-init grants it; the restore must leave it able to read the marts."""
    if installation.engine != "postgres":
        yield None
        return
    role = f"coincap_reader_{uuid.uuid4().hex[:8]}"
    wh = installation.warehouse
    wh.admin(f'create role "{role}" login')
    wh.run_sql(
        f'grant usage on schema marts to "{role}"',
        f'grant select on all tables in schema marts to "{role}"',
        f'alter default privileges in schema marts grant select on tables to "{role}"',
    )
    yield role
    with contextlib.suppress(Exception):
        wh.run_sql(f'drop owned by "{role}"')
    with contextlib.suppress(Exception):
        wh.admin(f'drop owned by "{role}"')
        wh.admin(f'drop role "{role}"')


def test_backup_with_retention_and_refusals(installation: Installation, reader_role: Any) -> None:
    inst = installation
    inst.overrides.update(_pg_path(inst.env()))
    assert inst.cycle().returncode == 0
    backups = Path(inst.env()["BACKUP_DIR"])
    backups.mkdir(parents=True, exist_ok=True)
    old = {
        name: backups / name
        for name in (
            f"coincap-{inst.engine}-20200101T080000Z.tar.gz",  # day 1, older: goes
            f"coincap-{inst.engine}-20200101T090000Z.tar.gz",  # day 1, newest: goes (daily=2)
            f"coincap-{inst.engine}-20200108T090000Z.tar.gz",  # ISO week 2: goes
            f"coincap-{inst.engine}-20200120T090000Z.tar.gz",  # newest old day and week: kept
        )
    }
    foreign = [backups / "notes.txt", backups / f"coincap-{inst.engine}-latest.tar.gz"]
    for path in [*old.values(), *foreign]:
        path.write_bytes(b"not an archive")

    proc = inst.command("backup", BACKUP_KEEP_DAILY="2", BACKUP_KEEP_WEEKLY="2", timeout=300)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert path.parent == backups and ARCHIVE_PATTERN.match(path.name), proc.stdout
    assert [ln for ln in proc.stderr.splitlines() if "held the cycle lock for" in ln], proc.stderr
    assert not [p for p in backups.iterdir() if p.name.startswith(".")], "temporary files left"
    kept = sorted(p.name for p in backups.iterdir())
    assert kept == sorted(
        [path.name, f"coincap-{inst.engine}-20200120T090000Z.tar.gz", *(p.name for p in foreign)]
    ), kept

    manifest = read_manifest(path)
    assert manifest["engine"] == inst.engine and manifest["fingerprint"]
    tables = sorted(manifest["tables"])
    assert "raw._dlt_pipeline_state" in tables and "marts.fct_asset_price_history" in tables
    counts = _counts(inst, tables)
    assert counts == {t: manifest["tables"][t]["rows"] for t in tables}
    assert counts["marts.fct_asset_prices"] > 0

    listing = inst.command("backup", "--list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert len(lines) == 2 and path.name in lines[0] and "  ok  " in lines[0], lines
    assert "FAILS" in lines[1], lines  # the planted old file is no archive

    # a truncated and a corrupt archive: refused with one error line, nothing changed
    data = path.read_bytes()
    bad = Path(tempfile.mkdtemp(prefix="coincap-bad-archives-"))
    truncated = bad / path.name
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = bad / path.name.replace(".tar.gz", "-x.tar.gz")
    middle = len(data) // 2
    corrupt.write_bytes(
        data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]
    )
    try:
        for archive in (truncated, corrupt):
            proc = inst.command("restore", str(archive), "--yes", timeout=300)
            assert proc.returncode == 1, proc.stdout + proc.stderr
            errors = _error_lines(proc)
            assert len(errors) == 1 and errors[0].startswith("error: "), errors
            assert "nothing was restored" in errors[0], errors
            assert _counts(inst, tables) == counts
    finally:
        shutil.rmtree(bad, ignore_errors=True)
    assert not list(backups.glob(f"*{SAFETY_SUFFIX}*")), "a refused restore took a safety backup"
    STATE[inst.engine] = {"path": path, "manifest": manifest, "tables": tables}


def test_restore_after_losing_the_warehouse(installation: Installation, reader_role: Any) -> None:
    inst = installation
    state = STATE.get(inst.engine)
    if state is None:
        pytest.skip("the backup step failed")
    path, manifest = state["path"], state["manifest"]
    for _ in range(2):
        assert inst.cycle().returncode == 0
    after_backup = inst.warehouse.count("marts.fct_asset_prices")
    assert after_backup > manifest["tables"]["marts.fct_asset_prices"]["rows"]

    if inst.engine == "duckdb":  # garbage over the file: DuckDB cannot open it any more
        wh_path = inst.warehouse.duckdb_path
        wh_path.write_bytes(os.urandom(4096) + wh_path.read_bytes()[4096:])
    else:
        inst.warehouse.run_sql("drop schema raw, staging, marts, ops cascade")

    proc = inst.command("restore", str(path), "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not _error_lines(proc), proc.stderr
    assert "match the manifest" in proc.stdout and "next cycle:" in proc.stdout, proc.stdout
    counts = _counts(inst, state["tables"])
    assert counts == {t: manifest["tables"][t]["rows"] for t in state["tables"]}
    safety = [b for b in list_backups(path.parent) if SAFETY_SUFFIX in b.path.name]
    assert len(safety) == 1, list(path.parent.iterdir())
    if inst.engine == "duckdb":  # the corrupt file could not be read: its bytes were kept
        assert read_manifest(safety[0].path)["partial"], "the safety copy claims to be whole"
    if reader_role:
        granted = inst.warehouse.query(
            "select has_schema_privilege(?, 'marts', 'usage'), "
            "has_table_privilege(?, 'marts.fct_asset_prices', 'select')",
            (reader_role, reader_role),
        )[0]
        assert granted == (True, True), f"{reader_role} lost its grants on marts: {granted}"

    # an outage of 30 minutes after the restore: the next cycle fills every slot since the backup
    inst.fake.advance(6 * GRID)
    result = inst.cycle()
    assert result.returncode == 0, result.describe()
    assert inst.fake.history_requests(), "the next cycle asked CoinCap for no history"
    _check_series(inst)


def _check_series(inst: Installation) -> None:
    holes, rows = series_holes(inst) or ([], 0)
    assert rows > 0 and holes == [], holes[:10]
    _no_doubles(inst)
    gaps = inst.warehouse.count("marts.fct_asset_price_gaps")
    assert gaps == 0, inst.warehouse.query("select * from marts.fct_asset_price_gaps limit 5")


def test_restore_into_a_fresh_installation(request: pytest.FixtureRequest, installation) -> None:
    inst = installation
    state = STATE.get(inst.engine)
    if state is None:
        pytest.skip("the backup step failed")
    tmp = Path(tempfile.mkdtemp(prefix=f"coincap-drill-fresh-{inst.engine}-"))
    pg = request.getfixturevalue("postgres_server") if inst.engine == "postgres" else None
    wh = Warehouse(inst.engine, tmp, pg)
    try:
        fresh = Installation(wh, inst.fake, tmp, name=f"fresh-{inst.engine}")
        fresh.overrides.update({k: v for k, v in inst.overrides.items() if k == "PATH"})
        # no terminal and no --yes: a warehouse with nothing in it needs no confirmation
        proc = fresh.command("restore", str(state["path"]), timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        manifest = state["manifest"]
        counts = _counts(fresh, state["tables"])
        assert counts == {t: manifest["tables"][t]["rows"] for t in state["tables"]}
        assert (fresh.dlt_dir / "pipelines" / f"coincap_{inst.engine}").is_dir()
        fresh.ledger = list(inst.ledger)
        result = fresh.cycle()
        assert result.returncode == 0, result.describe()
        _check_series(fresh)
        # a second restore now needs the confirmation: the warehouse has data
        proc = fresh.command("restore", str(state["path"]), timeout=300)
        assert proc.returncode == 1 and "--yes" in _error_lines(proc)[0], proc.stderr
    finally:
        wh.drop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_metabase_application_database(installation: Installation) -> None:
    """METABASE_APP_DB_NAME set: the backup holds Metabase's application database (a second
    database on the same server) as its own member, and the restore puts it back."""
    inst = installation
    if inst.engine != "postgres":
        pytest.skip("Metabase's application database is a PostgreSQL database")
    server = inst.warehouse.server
    assert server is not None
    app_db = f"coincap_mbapp_{uuid.uuid4().hex[:8]}"
    inst.warehouse.admin(f'create database "{app_db}"')
    app = Warehouse("postgres", inst.tmp, server)  # only for its connection helper
    app.admin(f'drop database "{app.dbname}"')
    app.dbname = app_db
    try:
        app.run_sql(
            "create table report_card (id serial primary key, name text not null)",
            "insert into report_card (name) values ('Prices'), ('Market share'), ('Gaps')",
        )
        settings = {
            "METABASE_APP_DB_NAME": app_db,
            "METABASE_APP_DB_USER": server["POSTGRES_USER"],
            "METABASE_APP_DB_PASSWORD": server["POSTGRES_PASSWORD"],
        }
        proc = inst.command("backup", timeout=300, **settings)
        assert proc.returncode == 0, proc.stderr
        path = Path(proc.stdout.strip().splitlines()[-1])
        manifest = read_manifest(path)
        assert manifest["metabase_app_db"] == {
            "database": app_db,
            "member": "metabase/metabase.dump",
        }
        assert "metabase/metabase.dump" in manifest["members"]

        app.run_sql("delete from report_card where name <> 'Gaps'", "create table junk (x int)")
        proc = inst.command("restore", str(path), "--yes", timeout=300, **settings)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        conn = app.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("select name from report_card order by id")
                names = [r[0] for r in cur.fetchall()]
        finally:
            conn.close()
        assert names == ["Prices", "Market share", "Gaps"]

        # restored where METABASE_APP_DB_NAME is not set: said, not silently skipped
        proc = inst.command("restore", str(path), "--yes", timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")] == [
            f"warning: the backup holds Metabase's application database ({app_db}) but "
            "METABASE_APP_DB_NAME is not set: it was not restored"
        ], proc.stderr
    finally:
        inst.warehouse.admin(f'drop database if exists "{app_db}" with (force)')


def test_a_missing_role_is_a_warning(installation: Installation, reader_role: Any) -> None:
    """PostgreSQL: restored where a role the backup granted to does not exist (a fresh server
    without Metabase's reader), the grant is a warning line and the rest is restored."""
    inst = installation
    state = STATE.get(inst.engine)
    if inst.engine != "postgres" or state is None or reader_role is None:
        pytest.skip("PostgreSQL only, after the backup step")
    proc = inst.command("backup", timeout=300)
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    manifest = read_manifest(path)
    inst.warehouse.run_sql(f'drop owned by "{reader_role}"')
    inst.warehouse.admin(f'drop role "{reader_role}"')
    proc = inst.command("restore", str(path), "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and all(
        f'role "{reader_role}" does not exist' in ln and "grant(s)" in ln for ln in warnings
    ), proc.stderr
    tables = sorted(manifest["tables"])
    assert _counts(inst, tables) == {t: manifest["tables"][t]["rows"] for t in tables}
