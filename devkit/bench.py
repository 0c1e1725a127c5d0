"""Benchmarks of the CoinCap ELT stack (GitHub issue 6): one command, writes docs/benchmarks.md.

    .venv/bin/python -m devkit.bench            # the full run (about 30-40 minutes here)
    .venv/bin/python -m devkit.bench --tiny     # a tiny run (CI, tests/test_bench.py)

Against the fake CoinCap (devkit/fake_coincap.py) and a throwaway PostgreSQL (the server that the
POSTGRES_* variables name, as in the tests, else a cluster started here with
devkit/postgres_cluster.py), and an embedded DuckDB file where it applies, it measures (the
warehouses and the cycles' environment are devkit/installation.py's, as in the tests):

1. cycle cost vs history size: a steady-state cycle (ingest + `dbt build`, and the whole
   `scripts/run_pipeline.sh` as cron runs it) with 1, 30 and 365 days of 5-minute history in the
   warehouse: median wall time and peak memory (max RSS of the processes), and the ratio to 1 day;
2. backfill throughput: rows/s loading a year of history into `raw.asset_history` through the
   project's own pipeline (`python -m ingest` with COINCAP_BACKFILL_DAYS), beside a plain COPY
   and a batched INSERT (psycopg2 execute_values) of the same rows into an equivalent table;
3. analyst queries: the starter dashboard's questions (ingest/metabase/dashboard.py) on the
   marts, beside the same answers from one unkeyed, unindexed table of all snapshots;
4. backup and restore: `coincap-elt backup` of a warehouse of 10 assets x 365 days on each
   engine (wall time, archive size, how long the cycle lock was held), then `coincap-elt
   restore` over it (safety backup included) and into a fresh installation;
5. only with `--only spark`: DuckDB, PostgreSQL and a local Spark cluster (devkit/spark_cluster.py,
   started and stopped here) side by side: the cold cycle of a fresh installation, the steady
   cycle and two dashboard queries through the package's reader, into the page's own
   `bench:spark` block.

What is measured goes through the project's own code; what is only set-up is done directly: one
real cycle (which sets dlt's history mark), then the older history and snapshots are inserted
straight into `raw` with SQL, and one `dbt run` builds the marts from them.

docs/benchmarks.md keeps everything outside its generated blocks (between the `bench:begin` and
`bench:end` markers, and `bench:spark:begin` and `bench:spark:end` for 5): the notes and the
before/after records are written by hand.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")

from devkit.fake_coincap import DEFAULT_ASSETS, FakeCoinCap
from devkit.installation import REPO, Installation, Warehouse
from devkit.postgres_cluster import server
from ingest.coincap import split_windows
from ingest.metabase.dashboard import CARDS

REPORT = REPO / "docs" / "benchmarks.md"  # the report whose generated block a run rewrites
API_KEY = "bench-coincap-key"
FIVE_MIN_MS = 5 * 60 * 1000
DAY_MS = 24 * 60 * 60 * 1000
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DBT_ARGS = ["--project-dir", "dbt_project", "--profiles-dir", "profiles", "--no-use-colors"]
CYCLE_BUILD_ARGS = ["--exclude-resource-type", "unit_test"]


@dataclass(frozen=True)
class Size:
    name: str
    cycle_assets: tuple[int, ...]  # on PostgreSQL
    duckdb_assets: tuple[int, ...]
    days: tuple[int, ...]
    runs: int  # measured steady-state cycles (ingest + dbt build) per scenario
    cron_runs: int  # measured whole scripts/run_pipeline.sh cycles per scenario
    warmup: int
    backfill_assets: int
    backfill_days: int
    backfill_runs: int
    query_runs: int
    backup_assets: int = 10  # 4. backup and restore: one warehouse per engine of this size
    backup_days: int = 365


SIZES = {
    "full": Size("full", (10, 100), (10,), (1, 30, 365), 5, 5, 1, 10, 365, 3, 20),
    "tiny": Size("tiny", (2,), (2,), (1, 2), 1, 1, 0, 2, 2, 1, 2, backup_assets=2, backup_days=2),
}


# --------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} bench: {message}", file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_assets(n: int) -> list[dict[str, Any]]:
    """n assets in CoinCap's shape: the fake's eleven, then numbered copies of them."""
    out = []
    for i in range(n):
        base = DEFAULT_ASSETS[i % len(DEFAULT_ASSETS)]
        if i < len(DEFAULT_ASSETS):
            out.append(dict(base))
            continue
        copy = dict(base)
        copy["id"] = f"{base['id']}-{i:03d}"
        copy["symbol"] = f"{base['symbol']}{i:03d}"
        copy["name"] = f"{base['name']} {i:03d}"
        copy["rank"] = str(i + 1)
        out.append(copy)
    return out


class CachedFake(FakeCoinCap):
    """The fake CoinCap, with history answers kept once computed (warm them before timing), so
    the backfill measures the pipeline and not the fake's price arithmetic."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history_cache: dict[tuple, tuple[int, Any]] = {}

    def start(self) -> CachedFake:
        super().start()
        # headers and body go out in two writes: without TCP_NODELAY every answer waits ~40 ms
        # for the client's delayed ACK, a cost of this fake, not of the pipeline
        assert self._server is not None
        self._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        return self

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if not path.endswith("/history"):
            return super()._route(path, query)
        key = (path, tuple(sorted(query.items())), self.now_ms)
        if key not in self._history_cache:
            self._history_cache[key] = super()._route(path, query)
        return self._history_cache[key]

    def warm_history(self, asset_ids: list[str], days: int) -> None:
        now = self.now_ms
        for asset_id in asset_ids:
            for start, end in split_windows(now - days * DAY_MS, now):
                query = {"interval": "m5", "start": str(start), "end": str(end)}
                self._route(f"/assets/{asset_id}/history", query)


@dataclass
class Measured:
    returncode: int
    seconds: float
    peak_mb: float


def run_measured(cmd: list[str], env: dict[str, str], log_path: Path) -> Measured:
    """Runs cmd from the repo root; wall time and the peak RSS of it and its children (wait4)."""
    with open(log_path, "ab") as out:
        out.write(f"\n=== {' '.join(cmd)}\n".encode())
        out.flush()
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, seconds, usage.ru_maxrss / 1024)


def check(measured: Measured, what: str, log_path: Path) -> Measured:
    if measured.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"error: {what} failed (exit {measured.returncode}):\n" + "\n".join(tail))
    return measured


# SQL per engine for the directly inserted history: price at ms `t` for an asset row `r`.
def _price_sql(engine: str, t: str) -> str:
    # a triangle wave of +-3 % around the asset's base price with a 2-day period, like the fake's
    minutes = f"({t} / 60000 + r.shift)" if engine == "postgres" else f"({t} // 60000 + r.shift)"
    factor = f"(0.97 + 0.06 * abs(({minutes} % 2880) - 1440) / 1440.0)"
    if engine == "postgres":
        return f"cast(cast(r.base * {factor} as numeric(38,16)) as text)"
    return f"cast(cast(r.base * {factor} as decimal(38,16)) as varchar)"


def _iso_sql(engine: str, t: str) -> str:
    if engine == "postgres":
        return (
            f"to_char(to_timestamp({t} / 1000.0) at time zone 'UTC', "
            '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')'
        )
    return f"strftime(make_timestamp({t} * 1000), '%Y-%m-%dT%H:%M:%S.%g') || 'Z'"


def fill_history(
    wh: Warehouse, assets: list[dict], days: int, until_ms: int, history_until_ms: int
) -> int:
    """Inserts straight into raw what `days` of 5-minute operation leave before `until_ms`:
    a snapshot 7 s after every slot start in raw.assets and a history point on every slot in
    raw.asset_history (up to `history_until_ms`, where the real cycle's backfill starts)."""
    start = (until_ms - days * DAY_MS) // FIVE_MIN_MS * FIVE_MIN_MS + FIVE_MIN_MS
    snap_end = until_ms // FIVE_MIN_MS * FIVE_MIN_MS - FIVE_MIN_MS  # the real cycle has `until`
    text = "text" if wh.engine == "postgres" else "varchar"
    num = "numeric" if wh.engine == "postgres" else "decimal(38,16)"
    values = ",\n".join(
        "({id}, {symbol}, {name}, {rank}, cast({base} as {num}), {supply}, {max_supply}, "
        "{explorer}, {shift})".format(
            id=_lit(a["id"]),
            symbol=_lit(a["symbol"]),
            name=_lit(a["name"]),
            rank=_lit(a["rank"]),
            base=_lit(a["priceUsd"]),
            num=num,
            supply=_lit(a.get("supply")),
            max_supply=_lit(a.get("maxSupply")),
            explorer=_lit(a.get("explorer")),
            shift=sum(map(ord, a["id"])) * 37,
        )
        for a in assets
    )
    ref = (
        f"(values {values}) as r(id, symbol, name, rank, base, supply, max_supply, explorer, shift)"
    )
    rand_id = (
        "substr(md5(random()::text), 1, 14)"
        if wh.engine == "postgres"
        else ("substr(md5(cast(random() as varchar)), 1, 14)")
    )
    series = "generate_series"
    big = "bigint"
    # a load id like dlt's (the load's start, epoch seconds) half a minute after each slot, as
    # the cycles of those days would have left: the watermarks and test windows see real spreads
    div = "/" if wh.engine == "postgres" else "//"
    load_id_sql = f"cast((t.ms + 30000) {div} 1000 as {text}) || '.0000001'"
    snapshot_cols = set(wh.columns("raw", "assets"))
    snap = {
        "id": "r.id",
        "rank": "r.rank",
        "symbol": "r.symbol",
        "name": "r.name",
        "supply": "r.supply",
        "max_supply": "r.max_supply",
        "price_usd": _price_sql(wh.engine, "t.ms"),
        "market_cap_usd": f"cast(cast(cast({_price_sql(wh.engine, 't.ms')} as double precision)"
        f" * cast(r.supply as double precision) as decimal(38,4)) as {text})",
        "volume_usd24_hr": "'1234567.8900000000000000'",
        "change_percent24_hr": "'-1.2345678901234567'",
        "vwap24_hr": _price_sql(wh.engine, "t.ms"),
        "explorer": "r.explorer",
        "coincap_timestamp": "t.ms + 7000",
        "_dlt_load_id": load_id_sql,
        "_dlt_id": rand_id,
    }
    snap = {k: v for k, v in snap.items() if k in snapshot_cols}
    hist = {
        "asset_id": "r.id",
        "time": "t.ms",
        "price_usd": _price_sql(wh.engine, "t.ms"),
        "date": _iso_sql(wh.engine, "t.ms"),
        "circulating_supply": "r.supply",
        "coincap_timestamp": str(until_ms),
        "_dlt_load_id": load_id_sql,
        "_dlt_id": rand_id,
    }
    statements = [
        f"insert into raw.assets ({', '.join(snap)}) select {', '.join(snap.values())} "
        f"from {ref} cross join {series}(cast({start} as {big}), cast({snap_end} as {big}), "
        f"cast({FIVE_MIN_MS} as {big})) as t(ms)"
    ]
    if history_until_ms >= start:
        statements.append(
            f"insert into raw.asset_history ({', '.join(hist)}) select {', '.join(hist.values())} "
            f"from {ref} cross join {series}(cast({start} as {big}), "
            f"cast({history_until_ms} as {big}), cast({FIVE_MIN_MS} as {big})) as t(ms)"
        )
    wh.run_sql(*statements)
    return (
        wh.query("select count(*) from raw.assets")[0][0]
        + wh.query("select count(*) from raw.asset_history")[0][0]
    )


def _lit(value: Any) -> str:
    if value is None:
        return "null"
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------- environment
def bench_env(tmp: Path, fake: FakeCoinCap, asset_ids: list[str], wh: Warehouse) -> dict[str, str]:
    """The installation's environment (devkit.installation), in UTC, with this interpreter."""
    (tmp / "run").mkdir(parents=True, exist_ok=True)  # the ingest writes its run summary there
    settings = {"TZ": "UTC", "PYTHON": sys.executable}
    return Installation(wh, fake, tmp, asset_ids=asset_ids, settings=settings).env()


PY = sys.executable
DBT = str(Path(sys.executable).parent / "dbt")


def in_fresh_process(fn: Any, *args: Any) -> Any:
    """fn(*args) in a new interpreter. The set-up's memory (DuckDB's buffers after inserting a
    year of history) must stay out of this process: a child starts as a copy of it, and Linux
    counts that copy in the child's peak RSS, which is what the cycles are measured by."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


# --------------------------------------------------------------------------- 1. cycle cost
@dataclass
class CycleCost:
    engine: str
    assets: int
    days: int
    raw_rows: int
    setup_seconds: float
    cycle: list[Measured] = field(default_factory=list)  # ingest + dbt build
    ingest: list[Measured] = field(default_factory=list)
    build: list[Measured] = field(default_factory=list)
    cron: list[Measured] = field(default_factory=list)  # scripts/run_pipeline.sh
    before: list[Measured] = field(default_factory=list)  # --before checkout's, interleaved

    def summary(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "assets": self.assets,
            "days": self.days,
            "raw_rows": self.raw_rows,
            "setup_seconds": round(self.setup_seconds, 1),
            "runs": len(self.cycle),
            "cycle_seconds": median([m.seconds for m in self.cycle]),
            "cycle_peak_mb": median([m.peak_mb for m in self.cycle]),
            "ingest_seconds": median([m.seconds for m in self.ingest]),
            "build_seconds": median([m.seconds for m in self.build]),
            "cron_runs": len(self.cron),
            "cron_seconds": median([m.seconds for m in self.cron]),
            "cron_peak_mb": median([m.peak_mb for m in self.cron]),
            "all_cycle_seconds": [round(m.seconds, 2) for m in self.cycle],
            "all_cron_seconds": [round(m.seconds, 2) for m in self.cron],
            "before_seconds": median([m.seconds for m in self.before]) if self.before else None,
            "before_peak_mb": median([m.peak_mb for m in self.before]) if self.before else None,
        }


def cycle_scenario(
    engine: str,
    n_assets: int,
    days: int,
    size: Size,
    workdir: Path,
    pg_admin: dict[str, str] | None,
    keep: bool,
    before: Path | None = None,
) -> tuple[CycleCost, Warehouse]:
    name = f"{engine}_{n_assets}a_{days}d"
    tmp = workdir / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log_path = tmp / "bench.log"
    assets = bench_assets(n_assets)
    ids = [a["id"] for a in assets]
    cycles = 1 + size.warmup + size.runs + size.cron_runs * (2 if before else 1)
    # CoinCap's clock: 5 minutes a cycle, the last one at most at the real time now
    t_setup = (int(time.time() * 1000) // FIVE_MIN_MS - cycles) * FIVE_MIN_MS + 7_000
    wh = Warehouse(engine, workdir, pg_admin, name=f"bench_{name}")
    with CachedFake(
        api_key=API_KEY, assets=assets, timestamp_ms=t_setup, prices_follow_clock=True
    ) as fake:
        env = bench_env(tmp, fake, ids, wh)
        log(f"cycle {name}: set-up (one real ingest, {days} d inserted into raw, dbt run)")
        started = time.perf_counter()
        check(run_measured([PY, "-m", "ingest"], env, log_path), "set-up ingest", log_path)
        raw_rows = in_fresh_process(fill_history, wh, assets, days, t_setup, t_setup - DAY_MS)
        check(run_measured([DBT, "run", *DBT_ARGS], env, log_path), "set-up dbt run", log_path)
        if engine == "postgres":
            wh.run_sql("vacuum analyze", autocommit=True)
        setup_seconds = time.perf_counter() - started
        log(f"cycle {name}: {raw_rows} raw rows, set up in {setup_seconds:.0f} s")
        result = CycleCost(engine, n_assets, days, raw_rows, setup_seconds)

        for i in range(size.warmup + size.runs):
            fake.advance(FIVE_MIN_MS)
            ingest = check(run_measured([PY, "-m", "ingest"], env, log_path), "ingest", log_path)
            # the build as the cycle runs it (ingest/transform.py): unit tests are left to CI
            build = check(
                run_measured([DBT, "build", *CYCLE_BUILD_ARGS, *DBT_ARGS], env, log_path),
                "dbt build",
                log_path,
            )
            if i < size.warmup:
                continue
            result.ingest.append(ingest)
            result.build.append(build)
            result.cycle.append(
                Measured(0, ingest.seconds + build.seconds, max(ingest.peak_mb, build.peak_mb))
            )
            log(
                f"cycle {name}: ingest {ingest.seconds:.2f} s + dbt build {build.seconds:.2f} s, "
                f"peak {max(ingest.peak_mb, build.peak_mb):.0f} MB"
            )
        # the --before checkout's whole cycle on the same warehouse, taking turns with this one's
        # (its own dbt target directory: each keeps its partial parse)
        before_env = {**env, "DBT_TARGET_PATH": str(tmp / "dbt_target_before")}
        for _ in range(size.cron_runs):
            fake.advance(FIVE_MIN_MS)
            cron = check(
                run_measured(["bash", "scripts/run_pipeline.sh"], env, log_path),
                "scripts/run_pipeline.sh",
                log_path,
            )
            result.cron.append(cron)
            log(
                f"cycle {name}: scripts/run_pipeline.sh {cron.seconds:.2f} s, "
                f"peak {cron.peak_mb:.0f} MB"
            )
            if before:
                fake.advance(FIVE_MIN_MS)
                cmd = ["bash", str(before / "scripts" / "run_pipeline.sh")]
                old = check(run_measured(cmd, before_env, log_path), "--before cycle", log_path)
                result.before.append(old)
                log(f"cycle {name}: before {old.seconds:.2f} s, peak {old.peak_mb:.0f} MB")
    if not keep:
        wh.drop()
    return result, wh


# --------------------------------------------------------------------------- 4. backup
COINCAP_ELT = str(Path(sys.executable).parent / "coincap-elt")


def backup_scenario(
    engine: str, size: Size, workdir: Path, pg_admin: dict[str, str] | None
) -> dict[str, Any]:
    """`coincap-elt backup`, `restore --yes` over the same warehouse and `restore` into a fresh
    installation, on a warehouse of size.backup_assets x size.backup_days built as in 1."""
    import re

    n_assets, days = size.backup_assets, size.backup_days
    name = f"backup_{engine}_{n_assets}a_{days}d"
    tmp = workdir / name
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log_path = tmp / "bench.log"
    assets = bench_assets(n_assets)
    t_setup = (int(time.time() * 1000) // FIVE_MIN_MS - 2) * FIVE_MIN_MS + 7_000
    wh = Warehouse(engine, workdir, pg_admin, name=f"bench_{name}")
    fresh_wh = Warehouse(engine, tmp / "fresh", pg_admin, name=f"bench_{name}_fresh")
    try:
        with CachedFake(
            api_key=API_KEY, assets=assets, timestamp_ms=t_setup, prices_follow_clock=True
        ) as fake:
            env = bench_env(tmp, fake, [a["id"] for a in assets], wh)
            log(f"{name}: set-up (one real ingest, {days} d inserted into raw, dbt run)")
            check(run_measured([PY, "-m", "ingest"], env, log_path), "set-up ingest", log_path)
            in_fresh_process(fill_history, wh, assets, days, t_setup, t_setup - DAY_MS)
            check(run_measured([DBT, "run", *DBT_ARGS], env, log_path), "set-up dbt run", log_path)
            rows = sum(
                wh.count(f"{schema}.{table}")
                for schema, table in wh.query(
                    "select table_schema, table_name from information_schema.tables where "
                    "table_type = 'BASE TABLE' and table_schema in ('raw', 'marts', 'ops')"
                )
            )
            warehouse_bytes = (
                wh.duckdb_path.stat().st_size
                if engine == "duckdb"
                else wh.query("select pg_database_size(current_database())")[0][0]
            )

            def timed(*args: str, env: dict[str, str] = env) -> tuple[float, str]:
                started = time.perf_counter()
                proc = subprocess.run(
                    [COINCAP_ELT, *args], env=env, cwd=REPO, capture_output=True, text=True
                )
                seconds = time.perf_counter() - started
                with open(log_path, "a") as out:
                    out.write(f"\n=== coincap-elt {' '.join(args)}\n{proc.stdout}{proc.stderr}")
                if proc.returncode != 0:
                    raise SystemExit(f"error: coincap-elt {args[0]} failed: {proc.stderr[-2000:]}")
                return seconds, proc.stdout + proc.stderr

            backup_s, out = timed("backup")
            archive = sorted((tmp / "backups").glob("coincap-*.tar.gz"))[-1]
            held = re.search(r"held the cycle lock for ([0-9.]+) s", out)
            restore_s, _ = timed("restore", str(archive), "--yes")
            fresh_env = {
                **bench_env(tmp / "fresh", fake, [a["id"] for a in assets], fresh_wh),
                "TZ": "UTC",
            }
            fresh_s, _ = timed("restore", str(archive), env=fresh_env)
    finally:
        wh.drop()
        fresh_wh.drop()
    result = {
        "engine": engine,
        "assets": n_assets,
        "days": days,
        "rows": rows,
        "warehouse_mb": warehouse_bytes / 1e6,
        "backup_seconds": backup_s,
        "archive_mb": archive.stat().st_size / 1e6,
        "lock_seconds": float(held.group(1)) if held else None,
        "restore_seconds": restore_s,
        "fresh_restore_seconds": fresh_s,
    }
    log(f"{name}: {result}")
    return result


# --------------------------------------------------------------------------- 5. spark
SPARK_BEGIN, SPARK_END = "<!-- bench:spark:begin -->", "<!-- bench:spark:end -->"
# An analyst's dashboard, in SQL every engine takes: one asset's last 24 hours of the
# continuous 5-minute series, and the assets' latest figures (dim_assets: a row per asset)
SPARK_QUERIES = {
    "price history, 1 asset, 24 h": (
        "select price_at, price_usd, source from marts.fct_asset_price_history "
        "where asset_id = %s and price_at >= %s order by price_at",
        "bitcoin",
    ),
    "latest per asset (dim_assets)": (
        "select asset_id, symbol, name, rank, latest_price_usd, latest_market_cap_usd, "
        "last_observed_at from marts.dim_assets order by latest_market_cap_usd desc, asset_id",
        None,
    ),
}


def _peak_rss_mb(pid: int) -> float | None:
    """The peak resident set (VmHWM) of a process and the processes of its group, in MB."""
    try:
        group = subprocess.run(
            ["ps", "-o", "pid=", "-g", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    except OSError:
        return None
    total_kb = 0
    for member in {int(p) for p in group} | {pid}:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024 if total_kb else None


def spark_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("pyspark", "dbt-spark", "dbt-core", "duckdb", "dlt"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    from devkit.spark_cluster import java_home

    java = subprocess.run(
        [str(Path(java_home() or "/usr") / "bin" / "java"), "-version"],
        capture_output=True,
        text=True,
        check=False,
    )
    out["java"] = (java.stderr.splitlines() or ["unknown"])[0]
    return out


def spark_beside(size: Size, workdir: Path, pg_admin: dict[str, str]) -> dict[str, Any]:
    """DuckDB, PostgreSQL and Spark (a local cluster started here) in one run: the cold cycle
    (the first `scripts/run_pipeline.sh` of a fresh installation: the package's 10 default
    assets, COINCAP_BACKFILL_DAYS=1), the steady cycle (size.runs following cycles, CoinCap's
    clock 5 minutes on each time) and an analyst's dashboard queries through the package's
    reader (median of size.runs after a warm-up run)."""
    from devkit import spark_cluster

    reason = spark_cluster.missing()
    if reason:
        raise SystemExit(f"error: --only spark: {reason}")
    out: dict[str, Any] = {"engines": [], "versions": spark_versions(), "cluster": {}}
    cluster = spark_cluster.SparkCluster(workdir / "spark-cluster")
    try:
        log("spark: starting a local cluster (master, worker, Thrift Server)")
        started = time.perf_counter()
        cluster.start()
        out["cluster"]["start_seconds"] = time.perf_counter() - started
        log(f"spark: cluster up in {out['cluster']['start_seconds']:.1f} s")
        servers = {"duckdb": None, "postgres": pg_admin, "spark": cluster.env()}
        for engine, server_env in servers.items():
            tmp = workdir / f"spark_beside_{engine}"
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "run").mkdir(parents=True)
            log_path = tmp / "bench.log"
            now_ms = (int(time.time() * 1000) // FIVE_MIN_MS - size.runs - 1) * FIVE_MIN_MS + 7_000
            fake = CachedFake(api_key=API_KEY, timestamp_ms=now_ms, prices_follow_clock=True)
            settings = {"TZ": "UTC", "PYTHON": sys.executable, "COINCAP_BACKFILL_DAYS": "1"}
            with Installation.create(engine, tmp, server_env, fake=fake, settings=settings) as inst:
                env = inst.env()
                cycle = ["bash", "scripts/run_pipeline.sh"]
                cold = check(run_measured(cycle, env, log_path), f"{engine} cold cycle", log_path)
                log(f"spark: {engine} cold cycle {cold.seconds:.1f} s, peak {cold.peak_mb:.0f} MB")
                steady = []
                for _ in range(size.runs):
                    fake.advance(FIVE_MIN_MS)
                    steady.append(
                        check(run_measured(cycle, env, log_path), f"{engine} cycle", log_path)
                    )
                    log(f"spark: {engine} cycle {steady[-1].seconds:.1f} s")
                since = datetime.fromtimestamp(fake.now_ms / 1000 - DAY_MS / 1000, UTC)
                queries = {}
                with inst.warehouse.product.reader("bench") as query:
                    for name, (sql, asset) in SPARK_QUERIES.items():
                        params = (asset, since) if asset else ()
                        times, rows = [], 0
                        for _ in range(size.runs + 1):  # the first run warms up
                            began = time.perf_counter()
                            rows = len(query(sql, *params))
                            times.append((time.perf_counter() - began) * 1000)
                        queries[name] = {"ms": median(times[1:]), "rows": rows}
                        log(f"spark: {engine} {name}: {median(times[1:]):.1f} ms, {rows} rows")
            out["engines"].append(
                {
                    "engine": engine,
                    "cold_seconds": cold.seconds,
                    "cold_peak_mb": cold.peak_mb,
                    "steady_seconds": [m.seconds for m in steady],
                    "steady_median": median([m.seconds for m in steady]),
                    "steady_max": max(m.seconds for m in steady),
                    "steady_peak_mb": max(m.peak_mb for m in steady),
                    "queries": queries,
                }
            )
        out["cluster"]["jvm_peak_mb"] = {
            name: _peak_rss_mb(pid) for name, pid in cluster.state.get("pids", {}).items()
        }
    finally:
        cluster.stop()
    return out


def render_spark(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["spark"]
    v, c = s["versions"], s["cluster"]
    load = ", ".join(f"{x:.2f}" for x in results["loadavg_start"])
    load_end = ", ".join(f"{x:.2f}" for x in results["loadavg_end"])
    names = list(SPARK_QUERIES)
    lines = [
        SPARK_BEGIN,
        "<!-- written by python -m devkit.bench --only spark; edit outside these markers -->",
        "",
        f"Run of {results['started_at']}, {results['seconds'] / 60:.1f} minutes: "
        f"{m['cpus']} × {m['cpu_model']}, {m['memory_gib']} GiB, kernel {m['kernel']}; "
        f"load average (1, 5, 15 min) {load} at the start, {load_end} at the end. "
        f"Spark {v['pyspark']} (pyspark), dbt-spark {v['dbt-spark']}, dbt-core {v['dbt-core']}, "
        f"{v['java']}; PostgreSQL {m['postgres']}, DuckDB {v['duckdb']}, dlt {v['dlt']}.",
        "",
        "| engine | cold cycle s | peak MB | steady cycle s, median | max | peak MB "
        f"| {names[0]} ms | rows | {names[1]} ms | rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in s["engines"]:
        q0, q1 = e["queries"][names[0]], e["queries"][names[1]]
        lines.append(
            f"| {e['engine']} | {e['cold_seconds']:.1f} | {e['cold_peak_mb']:.0f} | "
            f"{e['steady_median']:.1f} | {e['steady_max']:.1f} | {e['steady_peak_mb']:.0f} | "
            f"{q0['ms']:.1f} | {q0['rows']:,} | {q1['ms']:.1f} | {q1['rows']:,} |"
        )
    jvms = c.get("jvm_peak_mb") or {}
    lines += [
        "",
        "Steady cycles (s, in order): "
        + "; ".join(
            f"{e['engine']} " + ", ".join(f"{x:.1f}" for x in e["steady_seconds"])
            for e in s["engines"]
        )
        + ".",
        f"The local Spark cluster started in {c['start_seconds']:.1f} s; its JVMs' peak resident "
        "memory (VmHWM) over the run: "
        + ", ".join(f"{k} {v_:.0f} MB" for k, v_ in jvms.items() if v_)
        + (f" ({sum(v_ for v_ in jvms.values() if v_):,.0f} MB together)." if jvms else "."),
        "",
        SPARK_END,
    ]
    return "\n".join(lines)


def write_spark_report(out: Path, results: dict[str, Any]) -> None:
    block = render_spark(results)
    text = out.read_text() if out.exists() else HEADER
    if SPARK_BEGIN in text and SPARK_END in text:
        before, rest = text.split(SPARK_BEGIN, 1)
        text = before + block + rest.split(SPARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Spark beside DuckDB and PostgreSQL\n\n" + block + "\n"
    out.write_text(text)


# --------------------------------------------------------------------------- 2. backfill
def backfill(size: Size, workdir: Path, pg_admin: dict[str, str]) -> dict[str, Any]:
    import psycopg2.extras

    assets = bench_assets(size.backfill_assets)
    ids = [a["id"] for a in assets]
    out: dict[str, Any] = {"assets": size.backfill_assets, "days": size.backfill_days}
    pipeline_runs: list[dict[str, Any]] = []
    wh = None
    now = (int(time.time() * 1000) // FIVE_MIN_MS - 1) * FIVE_MIN_MS + 7_000
    with CachedFake(
        api_key=API_KEY, assets=assets, timestamp_ms=now, prices_follow_clock=True
    ) as fake:
        log(
            f"backfill: preparing the fake's answers ({size.backfill_assets} assets x "
            f"{size.backfill_days} d)"
        )
        fake.warm_history(ids, size.backfill_days)
        for run in range(size.backfill_runs):
            if wh is not None:
                wh.drop()
            tmp = workdir / f"backfill_{run}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            wh = Warehouse("postgres", workdir, pg_admin, name=f"bench_backfill_{run}")
            env = bench_env(tmp, fake, ids, wh)
            env["COINCAP_BACKFILL_DAYS"] = str(size.backfill_days)
            log_path = tmp / "bench.log"
            m = check(run_measured([PY, "-m", "ingest"], env, log_path), "backfill", log_path)
            rows = wh.query("select count(*) from raw.asset_history")[0][0]
            steps = _trace_steps(tmp / "dlt" / "pipelines")
            pipeline_runs.append(
                {"seconds": m.seconds, "rows": rows, "peak_mb": m.peak_mb, "steps": steps}
            )
            log(
                f"backfill: pipeline {rows} rows in {m.seconds:.1f} s "
                f"({rows / m.seconds:,.0f} rows/s; {steps}), peak {m.peak_mb:.0f} MB"
            )

        # the same rows, by COPY and by batched INSERT into an equivalent table
        assert wh is not None
        cols = wh.columns("raw", "asset_history")
        col_list = ", ".join(f'"{c}"' for c in cols)
        conn = wh.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("create schema bench_compare")
                buf = io.BytesIO()
                cur.copy_expert(
                    f"copy (select {col_list} from raw.asset_history) to stdout with (format csv)",
                    buf,
                )
                cur.execute(f"select {col_list} from raw.asset_history")
                tuples = cur.fetchall()
            conn.commit()
            copy_runs, insert_runs = [], []
            for _ in range(size.backfill_runs):
                with conn.cursor() as cur:
                    cur.execute("drop table if exists bench_compare.by_copy")
                    cur.execute("create table bench_compare.by_copy (like raw.asset_history)")
                conn.commit()
                buf.seek(0)
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cur.copy_expert(
                        f"copy bench_compare.by_copy ({col_list}) from stdin with (format csv)",
                        buf,
                    )
                conn.commit()
                copy_runs.append(time.perf_counter() - started)
                with conn.cursor() as cur:
                    cur.execute("drop table if exists bench_compare.by_insert")
                    cur.execute("create table bench_compare.by_insert (like raw.asset_history)")
                conn.commit()
                started = time.perf_counter()
                with conn.cursor() as cur:
                    psycopg2.extras.execute_values(
                        cur, f"insert into bench_compare.by_insert ({col_list}) values %s", tuples
                    )
                conn.commit()
                insert_runs.append(time.perf_counter() - started)
                log(f"backfill: COPY {copy_runs[-1]:.1f} s, execute_values {insert_runs[-1]:.1f} s")
        finally:
            conn.close()
        wh.drop()
    rows = pipeline_runs[-1]["rows"]
    out.update(
        rows=rows,
        pipeline_seconds=median([r["seconds"] for r in pipeline_runs]),
        pipeline_peak_mb=median([r["peak_mb"] for r in pipeline_runs]),
        pipeline_steps=pipeline_runs[-1]["steps"],
        copy_seconds=median(copy_runs),
        insert_seconds=median(insert_runs),
        runs=size.backfill_runs,
    )
    for method in ("pipeline", "copy", "insert"):
        out[f"{method}_rows_per_s"] = rows / out[f"{method}_seconds"]
    out["pipeline_vs_copy"] = out["pipeline_rows_per_s"] / out["copy_rows_per_s"]
    return out


def _trace_steps(pipelines_dir: Path) -> dict[str, float]:
    """Seconds per dlt step (extract, normalize, load) of the last run, from dlt's saved trace."""
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name="coincap_postgres", pipelines_dir=str(pipelines_dir))
        trace = pipeline.last_trace
    except Exception:  # noqa: BLE001 - the breakdown is a nicety, never a failure
        return {}
    steps: dict[str, float] = {}
    for step in trace.steps if trace else []:
        if step.step in ("extract", "normalize", "load") and step.finished_at:
            steps[step.step] = round((step.finished_at - step.started_at).total_seconds(), 2)
    return steps


# --------------------------------------------------------------------------- 3. queries
def dashboard_cards() -> list[tuple[str, str]]:
    """The dashboard's questions that have a plain-table baseline below, as the dashboard runs
    them when it opens: every asset, the default dates (the last 30 days and today)."""
    cards = []
    for card in CARDS:
        if card.name in BASELINE_SQL:
            dates = f"marts.{card.table}.{card.filter_columns['date_range']} >= {WINDOW_START}"
            sql = card.sql.replace("{{asset}}", "1 = 1").replace("{{date_range}}", dates)
            cards.append((card.name, sql))
    return cards


# The same answers from one unkeyed, unindexed table of every snapshot, as the replaced
# pipeline kept them (CoinCap's fields, one row per asset per cycle, no key and no index).
BASELINE_TABLE = "bench_baseline.asset_snapshots"
WINDOW_START = "current_date - 30"  # the dashboard's default dates
QUERY_BUDGET_MS = 10_000  # per question and side: enough runs for a median, not minutes of them
BASELINE_SQL = {
    "Latest prices": (
        "select asset_id, symbol, name, rank, price_usd, change_percent_24h, market_cap_usd,\n"
        "       volume_usd_24h, observed_at\n"
        "from (select distinct on (asset_id) * from bench_baseline.asset_snapshots\n"
        f"      where observed_at >= {WINDOW_START}\n"
        "      order by asset_id, observed_at desc) as latest\n"
        "order by market_cap_usd desc nulls last, asset_id"
    ),
    "Share of total market cap": (
        "with latest as (\n"
        "    select distinct on (asset_id) asset_id, market_cap_usd,\n"
        "        cast(observed_at at time zone 'UTC' as date) as price_date\n"
        "    from bench_baseline.asset_snapshots\n"
        f"    where market_cap_usd is not null and observed_at >= {WINDOW_START}\n"
        "    order by asset_id, observed_at desc\n"
        ")\n"
        "select asset_id, market_cap_usd / sum(market_cap_usd) over () as market_share,\n"
        "    price_date\n"
        "from latest order by market_share desc"
    ),
    "Price history per asset": (
        "with prices as (\n"
        "    select asset_id, observed_at, price_usd from bench_baseline.asset_snapshots\n"
        f"    where observed_at >= {WINDOW_START}\n"
        "), bounds as (\n"
        "    select max(observed_at) as last_at, 300 * greatest(1,\n"
        "        ceil(extract(epoch from max(observed_at) - min(observed_at)) / 300 / 200))\n"
        "        as slice_seconds from prices\n"
        "), sliced as (\n"
        "    select distinct on (prices.asset_id, slice_number) prices.observed_at,\n"
        "        prices.asset_id, prices.price_usd,\n"
        "        floor(extract(epoch from bounds.last_at - prices.observed_at)\n"
        "            / bounds.slice_seconds) as slice_number\n"
        "    from prices cross join bounds\n"
        "    order by prices.asset_id, slice_number, prices.observed_at desc\n"
        ")\n"
        "select observed_at, asset_id, price_usd from sliced order by observed_at, asset_id"
    ),
    "Daily OHLC": (
        "with days as (\n"
        "    select asset_id, price_usd, observed_at,\n"
        "           cast(observed_at at time zone 'UTC' as date) as price_date\n"
        "    from bench_baseline.asset_snapshots\n"
        f"    where observed_at >= {WINDOW_START}\n"
        "), ranked as (\n"
        "    select *,\n"
        "        row_number() over (partition by asset_id, price_date order by observed_at)\n"
        "            as from_open,\n"
        "        row_number() over (partition by asset_id, price_date order by observed_at desc)\n"
        "            as from_close\n"
        "    from days\n"
        ")\n"
        "select price_date, asset_id,\n"
        "    max(case when from_open = 1 then price_usd end) as open_price_usd,\n"
        "    max(price_usd) as high_price_usd, min(price_usd) as low_price_usd,\n"
        "    max(case when from_close = 1 then price_usd end) as close_price_usd,\n"
        "    count(*) as observation_count\n"
        "from ranked\n"
        "group by asset_id, price_date\n"
        "order by price_date desc, asset_id"
    ),
}


def analyst_queries(wh: Warehouse, size: Size, label: str) -> list[dict[str, Any]]:
    schema = "create schema if not exists bench_baseline"
    wh.run_sql(
        schema,
        f"drop table if exists {BASELINE_TABLE}",
        f"create table {BASELINE_TABLE} as select asset_id, rank, symbol, name, supply, "
        "max_supply, market_cap_usd, volume_usd_24h, price_usd, change_percent_24h, vwap_24h, "
        "explorer, observed_at from staging.stg_coincap__assets where rejected_fields is null",
    )
    if wh.engine == "postgres":
        wh.run_sql(f"analyze {BASELINE_TABLE}", "analyze", autocommit=True)
    snapshots = wh.query(f"select count(*) from {BASELINE_TABLE}")[0][0]
    results = []
    conn = wh.connect()
    try:
        for name, marts_sql in dashboard_cards():
            baseline_sql = BASELINE_SQL[name]
            row = {"warehouse": label, "query": name, "snapshots": snapshots}
            for side, sql in (("marts", marts_sql), ("baseline", baseline_sql)):
                times, rows = [], 0
                # the first run warms the cache; slow baselines stop after 3 measured runs
                for _ in range(size.query_runs + 1):
                    if len(times) > 3 and sum(times[1:]) > QUERY_BUDGET_MS:
                        break
                    started = time.perf_counter()
                    if wh.engine == "postgres":
                        with conn.cursor() as cur:
                            cur.execute(sql)
                            rows = len(cur.fetchall())
                        conn.rollback()
                    else:
                        rows = len(conn.execute(sql).fetchall())
                    times.append((time.perf_counter() - started) * 1000)
                row[f"{side}_ms"] = median(times[1:])
                row[f"{side}_runs"] = len(times) - 1
                row[f"{side}_rows"] = rows
            row["speedup"] = row["baseline_ms"] / row["marts_ms"]
            results.append(row)
            log(
                f"queries {label}: {name}: marts {row['marts_ms']:.1f} ms "
                f"({row['marts_rows']} rows), baseline {row['baseline_ms']:.1f} ms "
                f"({row['baseline_rows']} rows)"
            )
    finally:
        conn.close()
    return results


# --------------------------------------------------------------------------- machine
def machine(pg_admin: dict[str, str] | None) -> dict[str, Any]:
    import dbt.version
    import dlt
    import duckdb

    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
        except OSError:
            pass
        return "unknown"

    mem_kb = first("/proc/meminfo", "MemTotal").split()[0]
    pg_version = "not used"
    if pg_admin:
        import psycopg2

        conn = psycopg2.connect(
            host=pg_admin["POSTGRES_HOST"],
            port=int(pg_admin["POSTGRES_PORT"]),
            user=pg_admin["POSTGRES_USER"],
            password=pg_admin["POSTGRES_PASSWORD"],
            dbname=pg_admin["POSTGRES_DB"],
        )
        with conn.cursor() as cur:
            cur.execute("show server_version")
            pg_version = cur.fetchone()[0]
        conn.close()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": first("/proc/cpuinfo", "model name"),
        "memory_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else None,
        "os": first("/etc/os-release", "PRETTY_NAME=").strip('"'),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "duckdb": duckdb.__version__,
        "dlt": dlt.__version__,
        "dbt": dbt.version.__version__,
    }


# --------------------------------------------------------------------------- report
def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    size = results["size"]
    lines = [
        BEGIN,
        f"<!-- written by python -m devkit.bench{' --tiny' if size.startswith('tiny') else ''}; "
        "edit outside these markers -->",
        "",
        f"Run of {results['started_at']} (size `{size}`), {results['seconds'] / 60:.1f} minutes.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPUs | {m['cpus']} × {m['cpu_model']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS | {m['os']} (kernel {m['kernel']}) |",
        f"| Python | {m['python']} |",
        f"| PostgreSQL | {m['postgres']} |",
        f"| DuckDB | {m['duckdb']} |",
        f"| dlt, dbt-core | {m['dlt']}, {m['dbt']} |",
        "| load average (1, 5, 15 min) at start | "
        + ", ".join(f"{x:.2f}" for x in results["loadavg_start"])
        + " |",
        "| load average at end | " + ", ".join(f"{x:.2f}" for x in results["loadavg_end"]) + " |",
        "",
        "### 1. Cycle cost vs history size",
        "",
        "A steady-state cycle, median of the runs: the **whole `scripts/run_pipeline.sh`** as",
        "cron runs it (one process: ingest, `dbt build`, `dbt source freshness`, run log), and",
        "its parts run alone (`python -m ingest`, then `dbt build` without unit tests in a",
        "process of its own). Peak memory: the largest resident set of any process of the cycle.",
        "Ratio: the wall time against the same engine and asset count with 1 day of history.",
        "Targets: whole cycle ≤ 4.5 s with 10 assets, ratio ≤ 1.2, peak ≤ 200 MB (PostgreSQL),",
        "250 MB (DuckDB).",
        "",
        "| engine | assets | days | raw rows | runs | ingest s | dbt build s | ingest + build s "
        "| ratio | peak MB | whole cycle s | ratio | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cycles = results["cycles"]
    base = {
        (c["engine"], c["assets"]): c
        for c in cycles
        if c["days"]
        == min(
            d["days"] for d in cycles if (d["engine"], d["assets"]) == (c["engine"], c["assets"])
        )
    }
    for c in cycles:
        b = base[(c["engine"], c["assets"])]
        lines.append(
            f"| {c['engine']} | {c['assets']} | {c['days']} | {c['raw_rows']:,} | {c['runs']} | "
            f"{c['ingest_seconds']:.2f} | {c['build_seconds']:.2f} | {c['cycle_seconds']:.2f} | "
            f"{c['cycle_seconds'] / b['cycle_seconds']:.2f} | {c['cycle_peak_mb']:.0f} | "
            f"{c['cron_seconds']:.2f} | {c['cron_seconds'] / b['cron_seconds']:.2f} | "
            f"{c['cron_peak_mb']:.0f} |"
        )
    lines += render_before(cycles)
    bf = results["backfill"]
    steps = bf.get("pipeline_steps") or {}
    lines += [
        "",
        "### 2. Backfill throughput (PostgreSQL)",
        "",
        f"{bf['assets']} assets × {bf['days']} days of 5-minute history = {bf['rows']:,} rows into",
        "`raw.asset_history`, median of "
        f"{bf['runs']} run(s). The pipeline row is `python -m ingest` with",
        f"`COINCAP_BACKFILL_DAYS={bf['days']}` against the fake CoinCap (answers prepared before "
        "timing), process start",
        "to exit; COPY and `execute_values` (psycopg2's default page size, 100 rows a statement) "
        "load the same",
        "rows into a table like `raw.asset_history` (same columns, no index). Target: pipeline ≥ "
        "0.5 × COPY.",
        "",
        "| method | seconds | rows/s | × COPY |",
        "|---|---:|---:|---:|",
        f"| project pipeline (dlt) | {bf['pipeline_seconds']:.1f} | "
        f"{bf['pipeline_rows_per_s']:,.0f} | {bf['pipeline_vs_copy']:.2f} |",
        f"| plain `COPY` | {bf['copy_seconds']:.1f} | {bf['copy_rows_per_s']:,.0f} | 1.00 |",
        f"| batched `INSERT` (`execute_values`) | {bf['insert_seconds']:.1f} | "
        f"{bf['insert_rows_per_s']:,.0f} | {bf['insert_rows_per_s'] / bf['copy_rows_per_s']:.2f} |",
        "",
        "Pipeline steps (dlt's trace, seconds): "
        + (", ".join(f"{k} {v}" for k, v in steps.items()) or "not available")
        + f"; peak memory {bf['pipeline_peak_mb']:.0f} MB.",
        "",
        "### 3. Analyst queries",
        "",
        "The starter dashboard's questions (the SQL of `ingest/metabase/dashboard.py`) on the",
        "marts, beside the same answers from one unkeyed, unindexed table of every snapshot",
        "(`bench_baseline.asset_snapshots`, typed columns, as the replaced pipeline kept them).",
        "Median milliseconds over the runs after a warm-up run (up to "
        f"{results['query_runs']}; at least 3 when a side",
        "takes over 10 s in all), rows fetched included.",
        "Target: marts ≥ 20× faster and under 50 ms.",
        "",
        "| warehouse | question | snapshots | marts ms | rows | baseline ms | rows | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for q in results["queries"]:
        lines.append(
            f"| {q['warehouse']} | {q['query']} | {q['snapshots']:,} | {q['marts_ms']:.1f} | "
            f"{q['marts_rows']:,} | {q['baseline_ms']:.1f} | {q['baseline_rows']:,} | "
            f"{q['speedup']:.1f}× |"
        )
    lines += render_backup(results.get("backup") or [])
    lines += ["", END]
    return "\n".join(lines)


def render_backup(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "### 4. Backup and restore",
        "",
        "`coincap-elt backup` of a warehouse built as in 1 (wall time, archive size, the seconds",
        "it held the cycle lock), `coincap-elt restore --yes` over it (its safety backup",
        "included) and `coincap-elt restore` into a fresh installation.",
        "",
        "| engine | assets | days | rows | warehouse MB | backup s | archive MB | lock held s "
        "| restore s | fresh restore s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b in rows:
        lines.append(
            f"| {b['engine']} | {b['assets']} | {b['days']} | {b['rows']:,} | "
            f"{b['warehouse_mb']:.0f} | {b['backup_seconds']:.1f} | {b['archive_mb']:.1f} | "
            f"{b['lock_seconds']:.2f} | {b['restore_seconds']:.1f} | "
            f"{b['fresh_restore_seconds']:.1f} |"
        )
    return lines


def render_before(cycles: list[dict[str, Any]]) -> list[str]:
    """The --before checkout's whole cycle beside this one's, measured in turns in one run."""
    rows = [c for c in cycles if c.get("before_seconds")]
    if not rows:
        return []
    lines = [
        "",
        "Before and after (`--before`): the other checkout's whole cycle, in turns with this",
        "one's on the same warehouse.",
        "",
        "| engine | assets | days | before s | after s | after/before | before MB | after MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        lines.append(
            f"| {c['engine']} | {c['assets']} | {c['days']} | {c['before_seconds']:.2f} | "
            f"{c['cron_seconds']:.2f} | {c['cron_seconds'] / c['before_seconds']:.2f} | "
            f"{c['before_peak_mb']:.0f} | {c['cron_peak_mb']:.0f} |"
        )
    return lines


HEADER = """# Benchmarks

How the pipeline's cost grows with history, how fast a backfill loads, and how quickly the
dashboard's questions are answered. Reproduce with one command (`make bench`):

```bash
.venv/bin/python -m devkit.bench          # full size; --tiny for a quick check
```

"""


def write_report(out: Path, results: dict[str, Any]) -> None:
    block = render(results)
    text = out.read_text() if out.exists() else ""
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + block + after
    else:
        text = HEADER + "## Results\n\n" + block + "\n"
    out.write_text(text)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a quick run at a tiny size (CI)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPORT,
        help=f"the report to write (default: {REPORT.relative_to(REPO)})",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--only",
        choices=["cycles", "backfill", "queries", "backup", "spark"],
        action="append",
        help="run only these parts (repeatable; queries need cycles; spark, only on request: "
        "the cold and steady cycle and dashboard queries on DuckDB, PostgreSQL and a local "
        "Spark cluster, into the page's Spark section)",
    )
    parser.add_argument(
        "--engines",
        default="postgres,duckdb",
        help="comma-separated engines for the cycles and queries",
    )
    parser.add_argument("--assets", help="override: comma-separated asset counts (PostgreSQL)")
    parser.add_argument("--days", help="override: comma-separated days of history")
    parser.add_argument("--runs", type=int, help="override: measured cycles per scenario")
    parser.add_argument("--cron-runs", type=int, help="override: whole cycles per scenario")
    parser.add_argument("--backfill-runs", type=int, help="override: backfill runs")
    parser.add_argument("--backfill-days", type=int, help="override: days of the backfill")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. a git worktree of the previous release) whose whole cycle "
        "runs in turns with this one's on the same warehouses: before/after in one run",
    )
    args = parser.parse_args(argv)
    size = SIZES["tiny" if args.tiny else "full"]
    overrides: dict[str, Any] = {}
    if args.assets:
        overrides["cycle_assets"] = tuple(int(x) for x in args.assets.split(","))
    if args.days:
        overrides["days"] = tuple(int(x) for x in args.days.split(","))
    for name in ("runs", "cron_runs", "backfill_runs", "backfill_days"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if overrides:
        size = replace(size, name=f"{size.name} (custom)", **overrides)
    parts = set(args.only or ["cycles", "backfill", "queries", "backup"])
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    results: dict[str, Any] = {
        "size": size.name,
        "started_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "loadavg_start": list(os.getloadavg()),
        "cycles": [],
        "backfill": None,
        "queries": [],
        "query_runs": size.query_runs,
        "backup": [],
        "spark": None,
    }
    started = time.perf_counter()
    with ExitStack() as stack:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="coincap-bench-"))
        workdir.mkdir(parents=True, exist_ok=True)
        if args.workdir is None:
            stack.callback(shutil.rmtree, workdir, True)
        pg_admin = stack.enter_context(server("coincap-bench-pg-"))
        results["machine"] = machine(pg_admin)

        if "cycles" in parts or "queries" in parts:
            plan = [("postgres", n) for n in size.cycle_assets if "postgres" in engines]
            plan += [("duckdb", n) for n in size.duckdb_assets if "duckdb" in engines]
            for engine, n_assets in plan:
                for days in size.days:
                    last = days == max(size.days)
                    result, wh = cycle_scenario(
                        engine, n_assets, days, size, workdir, pg_admin, last, args.before
                    )
                    results["cycles"].append(result.summary())
                    if last:
                        if "queries" in parts:
                            label = f"{engine}, {n_assets} assets, {days} d"
                            results["queries"] += analyst_queries(wh, size, label)
                        wh.drop()
        if "backfill" in parts:
            results["backfill"] = backfill(size, workdir, pg_admin)
        if "backup" in parts:
            for engine in engines:
                results["backup"].append(backup_scenario(engine, size, workdir, pg_admin))
        if "spark" in parts:
            results["spark"] = spark_beside(size, workdir, pg_admin)
    results["loadavg_end"] = list(os.getloadavg())
    results["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if results["spark"]:
        write_spark_report(args.out, results)
        log(f"wrote the Spark section of {args.out} in {results['seconds'] / 60:.1f} minutes")
    if results["cycles"] and results["backfill"] and results["queries"]:
        write_report(args.out, results)
        log(f"wrote {args.out} in {results['seconds'] / 60:.1f} minutes")
    elif not results["spark"]:
        log("partial run: report not written (use --json to keep the results)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
