"""The failure drills' toolkit: an installation that meets faults, a ledger of what CoinCap served,
and the counts that decide a drill (rows lost, rows doubled).

Nothing is mocked but CoinCap (devkit/fake_coincap.py, at the HTTP level): an installation is a
real DuckDB file or PostgreSQL database, its own dlt data directory, run directory (the lock) and
dbt target directory (reused across cycles, so dbt's partial parse works as it does in
production), and every cycle is the real `scripts/run_pipeline.sh`.

The ledger. CoinCap's clock (`fake.now_ms`) moves 5 minutes before every cycle, as cron's ticks
do, so every cycle is served its own snapshot, timestamp T. After each cycle, whatever happened to
it, the ledger decides whether T was *extracted*: a completed cycle, or T is in `raw.assets`, or T
is in a committed local dlt package (`normalize/extracted`, `load/new`, `load/normalized` under the
pipeline's directory: what `pipeline.has_pending_data` sees; dlt's uncommitted `normalize/<id>`
folders of a killed extract are not extracted). Every extracted T must end up in
`marts.fct_asset_prices` exactly once per asset CoinCap sent (minus assets held back as rejects).

    lost     = expected (asset, T) pairs missing from the mart
    doubled  = rows beyond the first per (asset, observed_at)
    phantom  = rows whose (asset, T) CoinCap never served with that T (also counted as doubled)
"""

from __future__ import annotations

import fcntl
import gzip
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from helpers import API_KEY, REPO, RUN_PIPELINE, CycleResult, Warehouse, run_cycle

import devkit.installation
from devkit.fake_coincap import DEFAULT_ASSET_IDS, FIVE_MINUTES_MS, FakeCoinCap, now_ms

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GRID = FIVE_MINUTES_MS
ASSETS = list(DEFAULT_ASSET_IDS)
# CoinCap's clock starts this far behind the machine's, off the 5-minute grid; cycles then move
# it 5 minutes each, so ~250 cycles fit before it would reach the machine's clock
START_BEHIND_MS = 22 * 3_600_000
OFF_GRID_MS = 2 * 60_000 + 3_457
# committed dlt packages (see the module docstring)
PENDING_DIRS = ("normalize/extracted", "load/new", "load/normalized")


def floor_grid(t_ms: int) -> int:
    return t_ms - t_ms % GRID


def to_ms(value: datetime) -> int:
    assert value.tzinfo is not None, f"{value!r} is not time-zone aware"
    return (value - EPOCH) // timedelta(milliseconds=1)


def iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# --------------------------------------------------------------------------- a streamed cycle
@dataclass
class RunningCycle:
    """A cycle started in its own session (process group), its merged output read line by line
    with the time each line arrived, so a drill can act on what the cycle says."""

    proc: subprocess.Popen
    started: float
    log_path: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    ended: float | None = None  # when its output closed (the whole group exited)
    _reader: threading.Thread | None = None

    def seen(self, fragment: str) -> float | None:
        """When the first line containing `fragment` arrived (monotonic), or None."""
        for at, line in list(self.lines):
            if fragment in line:
                return at
        return None

    def wait_for(self, predicate, timeout: float) -> float | None:
        """Poll `predicate()` (a time or None) until it gives a time, the cycle ends, or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = predicate()
            if at is not None:
                return at
            if self.proc.poll() is not None:
                return predicate()
            time.sleep(0.005)
        return None

    def kill(self) -> bool:
        """SIGKILL the whole process group (bash, python, dbt), as an OOM kill or a power cut
        would. False when the cycle had already ended by itself."""
        if self.proc.poll() is not None:
            return False
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self.proc.wait(timeout=60)
        return True

    def finish(self, timeout: float = 300) -> CycleResult:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        finally:
            if self._reader is not None:
                self._reader.join(timeout=10)
        text = "\n".join(line for _, line in self.lines)
        ended = self.ended or time.monotonic()
        return CycleResult(self.proc.returncode, text, "", ended - self.started)

    def survivors(self, timeout: float = 5) -> list[str]:
        """Processes of the cycle's group that still run (zombies waiting for a reaper do not
        count: they hold no file, lock or connection), after up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            alive = []
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    text = stat.read_text()
                except OSError:
                    continue
                fields = text.rsplit(")", 1)[-1].split()
                if len(fields) > 2 and fields[2] == str(self.proc.pid) and fields[0] != "Z":
                    alive.append(text.split(")", 1)[0] + ")")
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)


def start_cycle(env: dict[str, str], log_path: Path) -> RunningCycle:
    proc = subprocess.Popen(
        ["bash", str(RUN_PIPELINE)],
        env=env,
        cwd=env.get("HOME", str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    running = RunningCycle(proc, time.monotonic(), log_path)

    def read() -> None:
        with open(log_path, "a") as log:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                running.lines.append((time.monotonic(), line))
                log.write(line + "\n")
        running.ended = time.monotonic()

    running._reader = threading.Thread(target=read, daemon=True)
    running._reader.start()
    return running


# --------------------------------------------------------------------------- an installation
@dataclass
class Served:
    """One snapshot CoinCap served (or was asked for), and what became of it."""

    t: int
    assets: list[str]  # ids CoinCap sent with this timestamp
    rejects: set[str] = field(default_factory=set)  # ids whose row must be held back
    outcome: str = "?"  # completed | pending | in raw | not extracted | not requested
    cycle: str = ""


class Installation(devkit.installation.Installation):
    """One long-lived installation (devkit.installation) of the ten default assets, and the
    ledger of what its CoinCap served. `overrides` are the variables every cycle gets on top."""

    def __init__(self, warehouse: Warehouse, fake: FakeCoinCap, tmp: Path, name: str):
        super().__init__(warehouse, fake, tmp, asset_ids=ASSETS)
        self.name = name
        self.ledger: list[Served] = []
        self.cycle_no = 0
        self.dlt_mounted = False  # DLT_DATA_DIR is a tmpfs the drills may make read-only or full

    @property
    def overrides(self) -> dict[str, str]:
        return self.settings

    @property
    def pipeline_dir(self) -> Path:
        return self.dlt_dir / "pipelines" / f"coincap_{self.engine}"

    # ---- cycles
    def next_tick(self, rejects: set[str] | None = None) -> Served:
        """Cron's next tick: CoinCap's clock moves 5 minutes; the snapshot it will serve."""
        t = self.fake.advance(GRID)
        self.cycle_no += 1
        served = Served(t, list(ASSETS), set(rejects or ()), cycle=f"#{self.cycle_no}")
        self.ledger.append(served)
        self.fake.reset_requests()
        return served

    def cycle(self, rejects: set[str] | None = None, timeout: float = 300) -> CycleResult:
        served = self.next_tick(rejects)
        result = run_cycle(self.env(), timeout=timeout)
        self.after(served, result.returncode == 0, result)
        return result

    def start(self, rejects: set[str] | None = None) -> tuple[Served, RunningCycle]:
        served = self.next_tick(rejects)
        log = self.tmp / f"cycle-{self.cycle_no:03d}.log"
        return served, start_cycle(self.env(), log)

    def after(self, served: Served, completed: bool, result: CycleResult | None = None) -> None:
        """Decide what became of the tick's snapshot (see the module docstring)."""
        if result is not None:
            self.results.append(result)
            assert API_KEY not in result.output, "the API key appears in the log"
        answered = [r for r in self.fake.requests_to("/assets") if r.status == 200]
        if completed:
            served.outcome = "completed" if answered else "not requested"
        elif not self.fake.requests_to("/assets"):
            served.outcome = "not requested"
        elif served.t in self.pending_timestamps():
            served.outcome = "pending"
        else:
            try:
                in_raw = served.t in self.raw_timestamps()
            except Exception:  # noqa: BLE001 - e.g. a DuckDB file a kill left mid-write
                in_raw = False  # settled by tally(), after the next cycle opened it
            served.outcome = "in raw" if in_raw else "not extracted"
        if served.outcome == "not requested":
            served.assets = []

    # ---- what is where
    def pending_timestamps(self) -> set[int]:
        """CoinCap timestamps held in committed, not yet loaded dlt packages."""
        found: set[int] = set()
        wanted = {s.t for s in self.ledger}
        for sub in PENDING_DIRS:
            root = self.pipeline_dir / sub
            if not root.exists():
                continue
            for path in root.rglob("*"):
                if not path.is_file() or path.name.endswith(".json"):
                    continue
                data = path.read_bytes()
                if data[:2] == b"\x1f\x8b":
                    try:
                        data = gzip.decompress(data)
                    except (OSError, EOFError):
                        continue
                text = data.decode("utf-8", "replace")
                found |= {t for t in wanted if str(t) in text}
        return found

    def raw_timestamps(self) -> set[int]:
        if "assets" not in {
            r[0]
            for r in self.warehouse.query(
                "select table_name from information_schema.tables where table_schema = 'raw'"
            )
        }:
            return set()
        rows = self.warehouse.query("select distinct coincap_timestamp from raw.assets")
        return {int(r[0]) for r in rows}

    def expected(self) -> dict[tuple[str, int], int]:
        """(asset, T) -> 1 for every observation that must be in fct_asset_prices."""
        out = {}
        for s in self.ledger:
            if s.outcome in ("completed", "pending", "in raw"):
                for asset in s.assets:
                    if asset not in s.rejects:
                        out[(asset, s.t)] = 1
        return out

    def fct_counts(self) -> Counter:
        rows = self.warehouse.query(
            "select asset_id, observed_at, count(*) from marts.fct_asset_prices "
            "group by asset_id, observed_at"
        )
        return Counter({(a, to_ms(t)): int(n) for a, t, n in rows})

    def tally(self) -> Tally:
        """Lost, doubled and phantom rows of fct_asset_prices against the ledger, over the
        timestamps this installation's ledger knows (earlier drills' rows included)."""
        # A snapshot judged "not extracted" that raw holds now was in raw after all (raw could
        # not be read right after a kill): the next cycle cannot have fetched it again, since
        # CoinCap serves each timestamp once. It counts as extracted.
        in_raw = self.raw_timestamps()
        for s in self.ledger:
            if s.outcome == "not extracted" and s.t in in_raw:
                s.outcome = "in raw"
        got = self.fct_counts()
        expected = self.expected()
        served = {(a, s.t) for s in self.ledger for a in s.assets}
        lost = sorted(k for k in expected if got.get(k, 0) == 0)
        doubled = {k: n - 1 for k, n in got.items() if n > 1}
        phantom = sorted(k for k in got if k not in served)
        leaked = sorted(k for k in got if k in served and k not in expected)
        return Tally(lost, doubled, phantom, leaked, sum(got.values()), len(expected))

    def marts_state(self) -> dict[str, Any]:
        """Every row of every mart (and raw's row count): what a failed cycle must leave as is."""
        out: dict[str, Any] = {}
        for table in marts_tables(self.warehouse):
            if table == "pipeline_runs":  # the run log records the failure itself
                continue
            cols = list(self.warehouse.columns("marts", table))
            order = ", ".join(str(i + 1) for i in range(len(cols)))
            out[table] = self.warehouse.query(
                f"select {', '.join(cols)} from marts.{table} order by {order}"
            )
        out["raw.assets rows"] = self.warehouse.count("raw.assets")
        return out

    def lock_released(self, timeout: float = 10) -> bool:
        """The lock file is still there after a kill, but flock is free (nothing holds it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.lock_file, "a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    time.sleep(0.05)
                    continue
                fcntl.flock(handle, fcntl.LOCK_UN)
                return True
        return False


@dataclass
class Tally:
    lost: list[tuple[str, int]]
    doubled: dict[tuple[str, int], int]
    phantom: list[tuple[str, int]]
    leaked: list[tuple[str, int]]  # rows that should have been held back
    rows: int
    expected: int

    @property
    def n_lost(self) -> int:
        return len(self.lost)

    @property
    def n_doubled(self) -> int:
        return sum(self.doubled.values()) + len(self.phantom)

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} lost, e.g. {[(a, iso(t)) for a, t in self.lost[:5]]}")
        if self.doubled:
            out.append(
                f"{sum(self.doubled.values())} doubled, e.g. "
                f"{[(a, iso(t), n) for (a, t), n in list(self.doubled.items())[:5]]}"
            )
        if self.phantom:
            out.append(f"{len(self.phantom)} rows CoinCap never sent: {self.phantom[:5]}")
        if self.leaked:
            out.append(
                f"{len(self.leaked)} rows that must be held back reached the mart: "
                f"{[(a, iso(t)) for a, t in self.leaked[:5]]}"
            )
        return out


def marts_tables(wh: Warehouse) -> list[str]:
    rows = wh.query(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "order by table_name"
    )
    return [r[0] for r in rows]


# --------------------------------------------------------------------------- the 5-minute series
HISTORY_MART = "fct_asset_price_history"


def series_holes(inst: Installation) -> tuple[list[str], int] | None:
    """Holes and repeats in marts.fct_asset_price_history per asset, from each asset's first
    point to the newest completed tick's slot; None when the mart does not exist (yet)."""
    if HISTORY_MART not in marts_tables(inst.warehouse):
        return None
    rows = inst.warehouse.query(
        f"select asset_id, price_at from marts.{HISTORY_MART} order by asset_id, price_at"
    )
    by_asset: dict[str, list[int]] = defaultdict(list)
    for asset_id, price_at in rows:
        by_asset[asset_id].append(to_ms(price_at))
    newest = max((s.t for s in inst.ledger if s.outcome == "completed"), default=None)
    holes: list[str] = []
    for asset_id in ASSETS:
        points = by_asset.get(asset_id, [])
        if not points:
            holes.append(f"{asset_id}: no series")
            continue
        for a, b in zip(points, points[1:], strict=False):
            if b - a != GRID:
                kind = "repeat" if b == a else f"hole of {(b - a) // GRID - 1} slot(s)"
                holes.append(f"{asset_id}: {kind} {iso(a)} -> {iso(b)}")
        if newest is not None and points[-1] < floor_grid(newest):
            holes.append(f"{asset_id}: series ends {iso(points[-1])}, newest tick {iso(newest)}")
    return holes, len(rows)


def coincap_start() -> int:
    return floor_grid(now_ms() - START_BEHIND_MS) - GRID + OFF_GRID_MS


def new_fake() -> FakeCoinCap:
    return FakeCoinCap(
        api_key=API_KEY, timestamp_ms=coincap_start(), prices_follow_clock=True
    ).start()


def error_lines(result: CycleResult) -> list[str]:
    return [ln for ln in result.lines if re.search(r"\berror:", ln)]


def machine() -> str:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs (nproc), {mem} memory"


# --------------------------------------------------------------------------- shared checks
def anchor_time(run, inst: Installation, anchor: str) -> float | None:
    """When a running cycle reached `anchor`: its start, CoinCap's first /assets request, or the
    first log line containing the text."""
    if anchor == "start":
        return run.started
    if anchor == "request":
        requests = inst.fake.requests_to("/assets")
        return requests[0].at if requests else None
    return run.seen(anchor)


TRACEBACK = "Traceback (most recent call last)"


def ingest_errors(result: CycleResult) -> list[str]:
    """The ingest step's own `error:` lines (the script adds one saying the step failed)."""
    return [ln for ln in error_lines(result) if "run_pipeline:" not in ln]


def check_clean_failure(result: CycleResult, *fragments: str) -> list[str]:
    """A failed cycle: non-zero exit, exactly one error line of the ingest step that contains
    every fragment (case-insensitive), no traceback. Returns the problems found."""
    problems = []
    if result.returncode == 0:
        problems.append("the cycle exited 0")
    lines = ingest_errors(result)
    if len(lines) != 1:
        problems.append(f"{len(lines)} ingest error lines, not one: {lines[:5]}")
    elif not all(f.lower() in lines[0].lower() for f in fragments):
        problems.append(f"the error line does not say {fragments}: {lines[0]}")
    if TRACEBACK in result.output:
        problems.append("a Python traceback instead of one clear line")
    return problems


def assert_tally(inst: Installation, row) -> None:
    tally = inst.tally()
    row.lost, row.doubled = tally.n_lost, tally.n_doubled
    assert not tally.problems(), "; ".join(tally.problems())


def series_note(inst: Installation, row, strict: bool = True) -> list[str]:
    """Holes in the continuous series; a problem when strict, else only a note."""
    found = series_holes(inst)
    if found is None:
        row.notes.append(f"{'marts.fct_asset_price_history'} absent: series not checked")
        return []
    holes, n = found
    if not holes:
        row.notes.append(f"5-minute series checked ({n} points), no hole")
        return []
    text = f"{len(holes)} holes in the 5-minute series, e.g. {holes[:3]}"
    if strict:
        return [text]
    row.notes.append(text)
    return []


def failing_lines(result: CycleResult, limit: int = 6) -> list[str]:
    pat = re.compile(r"\berror:|\bERROR\b|\bFAIL\b|Failure in|Traceback|Error:", re.I)
    return [ln[:240] for ln in result.lines if pat.search(ln)][:limit]
