"""Fixtures of the failure drills, and the results table they write into docs/reliability.md.

Each drill records one row per engine (drill, engine, trials, rows lost, rows doubled, outcome,
seconds, notes). `make drills` runs them in full (DRILL_REPORT=1, ten kills per engine): at the
end of the session the rows replace those with the same (drill, engine) in the table between
the markers in docs/reliability.md; rows of drills not run this time stay. Inside `make test`
they run with fewer kills (DRILL_KILLS_PER_ENGINE=4, one or more per phase) and write nothing:
the table keeps the full drills' figures.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from drillkit import Installation, machine, new_fake
from helpers import ENGINES, REPO, make_installation

RELIABILITY = REPO / "docs" / "reliability.md"
BEGIN = "<!-- drill-results:begin (written by tests/drills; do not edit by hand) -->"
END = "<!-- drill-results:end -->"
COLUMNS = ["drill", "engine", "trials", "rows lost", "rows doubled", "outcome", "seconds", "notes"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "drill: a failure drill (tests/drills); writes docs/reliability.md's results"
    )


# --------------------------------------------------------------------------- results
@dataclass
class DrillRow:
    drill: str
    engine: str
    trials: int | str = 0
    lost: int | str = "n/a"
    doubled: int | str = "n/a"
    outcome: str = "?"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%MZ")
        notes = "; ".join([*self.notes, f"run {stamp} on {machine()}"])
        cells = [
            self.drill,
            self.engine,
            str(self.trials),
            str(self.lost),
            str(self.doubled),
            self.outcome,
            f"{self.seconds:.0f}",
            notes,
        ]
        return [re.sub(r"(?<!\\)\|", r"\\|", c.replace("\n", " ")) for c in cells]


ROWS: list[DrillRow] = []


@pytest.fixture
def drill_row(request: pytest.FixtureRequest) -> Iterator[contextlib.AbstractContextManager]:
    """`with drill_row("2. kill -9", engine) as row:` records the drill's row, outcome FAIL with
    the first line of the error when the block raises."""

    @contextlib.contextmanager
    def record(drill: str, engine: str) -> Iterator[DrillRow]:
        row = DrillRow(drill, engine)
        started = time.monotonic()
        try:
            yield row
            row.outcome = "pass" if row.outcome in ("?", "pass") else row.outcome
        except pytest.skip.Exception as exc:
            row.outcome = f"skipped: {str(exc)[:160]}"
            raise
        except BaseException as exc:
            text = str(exc).strip().splitlines()
            row.outcome = "FAIL: " + (text[0][:220] if text else type(exc).__name__)
            raise
        finally:
            row.seconds = time.monotonic() - started
            ROWS.append(row)

    yield record


def _number(drill: str) -> str:
    """A drill's number ("4b."): a row replaces its drill's older row even when renamed."""
    return drill.split(" ", 1)[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not ROWS or os.environ.get("DRILL_REPORT") != "1":
        return
    rows: dict[tuple[str, str], list[str]] = {}
    text = RELIABILITY.read_text() if RELIABILITY.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        table, tail = rest.split(END, 1)
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if len(cells) == len(COLUMNS) and cells[0] not in ("drill", "---"):
                rows[(_number(cells[0]), cells[1])] = cells
    else:
        head = text or "# Reliability\n\n"
        tail = "\n"
    for row in ROWS:
        rows[(_number(row.drill), row.engine)] = row.cells()
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
        *("| " + " | ".join(cells) + " |" for _, cells in sorted(rows.items())),
    ]
    RELIABILITY.write_text(f"{head}{BEGIN}\n" + "\n".join(lines) + f"\n{END}{tail}")


# --------------------------------------------------------------------------- installations
def _mount_tmpfs(path: Path, size: str) -> bool:
    """A small tmpfs for the dlt data directory, so a drill can make it read-only or full.
    False where mounting is not allowed (no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount") or os.geteuid() != 0:
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return proc.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def _new_installation(request: pytest.FixtureRequest, engine: str, name: str):
    # under the system temp dir, not pytest's private tmp_path: drills may run the cycle's
    # files through other users or mounts
    tmp = Path(tempfile.mkdtemp(prefix=f"coincap-drill-{name}-{engine}-"))
    dlt_dir = tmp / "dlt"
    mounted = _mount_tmpfs(dlt_dir, "32m")
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        if mounted:
            cleanup.callback(_umount, dlt_dir)
        inst = make_installation(
            request, engine, tmp, Installation, fake=new_fake(), name=f"{name}-{engine}"
        )
        cleanup.callback(inst.close)
        inst.overrides["DLT_DATA_DIR"] = str(dlt_dir)
        inst.dlt_mounted = mounted
        first = inst.cycle()
        assert first.returncode == 0, f"the installation's first cycle failed:\n{first.describe()}"
        yield inst


@pytest.fixture(scope="module", params=ENGINES)
def installation(request: pytest.FixtureRequest) -> Iterator[Installation]:
    """One installation per engine, shared by the drills in order (as one long-lived host meets
    one fault after another). Its dlt data directory is a 32 MB tmpfs when mounting is allowed."""
    with _new_installation(request, request.param, "shared") as inst:
        yield inst
