"""Failure drills 2, 2b and 2c: the cycle killed with SIGKILL at random moments of each phase,
and in the two narrow windows of dlt's load (after the warehouse committed a job; between dlt's
completion marker and the package's move). Real DuckDB and PostgreSQL, the real
`scripts/run_pipeline.sh`, only CoinCap faked; each kill is followed by a normal cycle, and the
rows of `marts.fct_asset_prices` are counted against what the fake served: zero lost, zero
doubled. The drills share one `installation` per engine, in file order (test_drills.py has the
others, on an installation of their own).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from drillkit import (
    Installation,
    anchor_time,
    failing_lines,
    series_holes,
    series_note,
)

pytestmark = pytest.mark.drill


# =========================================================================== 2. kill -9
KILLS_PER_ENGINE = int(os.environ.get("DRILL_KILLS_PER_ENGINE", "10"))
SEED = 20261128
# how the kill moments are spread over the phases of a cycle, per engine (sums to 10)
PHASE_PLAN = {"before extract": 2, "extract": 2, "normalize+load": 3, "dbt build": 3}
ANCHORS = {  # phase -> what starts it
    "before extract": "start",
    "extract": "request",
    "normalize+load": "history:",
    "dbt build": "rows into",
}


def kill_plan(kills: int) -> list[str]:
    """`kills` phases to kill in, spread as PHASE_PLAN spreads ten: the phases taken in turn,
    each as often as its share, so 4 kills land once in every phase."""
    rounds = [[p for p, n in PHASE_PLAN.items() if n > k] for k in range(max(PHASE_PLAN.values()))]
    plan = [phase for one_round in rounds for phase in one_round]
    return (plan * (kills // len(plan) + 1))[:kills]


def _landed(run, inst: Installation, at: float) -> str:
    """The phase the cycle was in when it was killed (by what it had said and asked by then)."""
    landed = "before extract"
    for phase in ("extract", "normalize+load", "dbt build"):
        seen = anchor_time(run, inst, ANCHORS[phase])
        if seen is not None and seen <= at:
            landed = phase
    return landed


def test_drill2_kill_9_at_random_moments(installation: Installation, drill_row):
    inst = installation
    with drill_row("2. kill -9 of the cycle at random moments", inst.engine) as row:
        rng = random.Random(f"{SEED}-{inst.engine}")
        # a normal cycle, timed phase by phase: the windows the kill moments are drawn from
        served, run = inst.start()
        timed = run.finish()
        inst.after(served, timed.returncode == 0, timed)
        assert timed.returncode == 0, timed.describe()
        marks = {a: anchor_time(run, inst, a) for a in ANCHORS.values()}
        assert None not in marks.values(), f"a phase mark is missing: {marks}\n{timed.output}"
        end = run.lines[-1][0]
        order = list(ANCHORS.values()) + ["end"]
        marks["end"] = end
        windows = {
            phase: max(marks[order[i + 1]] - marks[anchor], 0.05)
            for i, (phase, anchor) in enumerate(ANCHORS.items())
        }
        row.notes.append(
            "phase windows of a normal cycle: "
            + ", ".join(f"{p} {w:.2f} s" for p, w in windows.items())
        )
        plan = kill_plan(KILLS_PER_ENGINE)
        rng.shuffle(plan)

        problems: list[str] = []
        landed_in: Counter = Counter()
        outcomes: Counter = Counter()
        follow_ups: list[float] = []
        for trial, phase in enumerate(plan, 1):
            offset = rng.uniform(0, windows[phase])
            served, run = inst.start()
            anchor = run.wait_for(
                lambda run=run, phase=phase: anchor_time(run, inst, ANCHORS[phase]), timeout=120
            )
            if anchor is not None:
                delay = anchor + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            kill_at = time.monotonic()
            killed = run.kill()
            result = run.finish()
            where = _landed(run, inst, kill_at) if killed else "ended before the kill"
            landed_in[where] += 1
            inst.after(served, not killed and result.returncode == 0, result)
            outcomes[served.outcome] += 1
            label = f"trial {trial} ({phase} +{offset:.2f} s, landed in {where}, {served.outcome})"
            survivors = run.survivors() if killed else []
            if survivors:
                problems.append(f"{label}: processes of the killed cycle survived: {survivors}")
            if not inst.lock_file.exists():
                problems.append(f"{label}: the lock file is gone")
            if not inst.lock_released():
                problems.append(f"{label}: the lock is still held after the kill")

            follow = inst.cycle()
            follow_ups.append(follow.seconds)
            if follow.returncode != 0:
                problems.append(f"{label}: the next cycle failed: {failing_lines(follow)}")
            if follow.lines_with("another cycle is running"):
                problems.append(f"{label}: the next cycle found the lock held")
            tally = inst.tally()
            problems += [f"{label}: {p}" for p in tally.problems()]
            found = series_holes(inst)
            if found is not None and found[0]:
                problems.append(
                    f"{label}: {len(found[0])} holes in the series, e.g. {found[0][:2]}"
                )

        row.trials = len(plan)
        tally = inst.tally()
        row.lost, row.doubled = tally.n_lost, tally.n_doubled
        series_note(inst, row, strict=False)
        row.notes.append(f"seed {SEED}-{inst.engine}; kills landed in {dict(landed_in)}")
        row.notes.append(f"killed snapshots: {dict(outcomes)}")
        row.notes.append(
            f"follow-up cycles {min(follow_ups):.1f}-{max(follow_ups):.1f} s, all exit 0"
            if not any("next cycle failed" in p for p in problems)
            else "some follow-up cycles failed"
        )
        assert not problems, f"{len(problems)} problems, first: {problems[0][:200]}\n" + "\n".join(
            problems
        )


# =========================================================================== 2b, 2c. narrow windows
def _last_loaded_package(inst: Installation) -> Path:
    loaded = inst.pipeline_dir / "load" / "loaded"
    return max(loaded.iterdir(), key=lambda p: float(p.name))


def _next_cycle_recovers(inst: Installation, row, must_say: str | None = None) -> None:
    """The cycle after a broken state must exit 0 (saying `must_say`), losing and doubling
    nothing; when it fails, one more cycle shows whether the pipeline is wedged."""
    follow = inst.cycle()
    row.trials = 1
    problems = []
    if follow.returncode != 0:
        problems.append(f"the next cycle failed: {failing_lines(follow, 3)}")
        again = inst.cycle()
        row.notes.append(f"the cycle after that: exit {again.returncode}")
    elif must_say and must_say not in follow.output:
        problems.append(f"the next cycle did not say {must_say!r}")
    tally = inst.tally()
    row.lost, row.doubled = tally.n_lost, tally.n_doubled
    problems += tally.problems()
    assert not problems, "; ".join(problems)


def test_drill2b_killed_between_dlt_completion_marker_and_package_move(
    installation: Installation, drill_row
):
    """The one moment of drill 2 that a random kill seldom hits, made deterministic. dlt finishes
    a load with `job_client.complete_load` (the `_dlt_loads` row), then writes the package's
    `package_completed.json` in `load/normalized/<id>`, then renames the package to
    `load/loaded/<id>` (dlt/common/storages/load_storage.py, complete_load_package). A kill
    between the last two leaves a completed package among the pending ones. This drill builds that
    state from the last cycle's package (moved back from `loaded/` to `normalized/`, its marker
    kept) and runs the next cycle: it must load the new snapshot and lose nothing. Until 0.3.0
    that state wedged the pipeline for good (docs/reliability.md, finding 2)."""
    inst = installation
    with drill_row(
        "2b. killed between dlt's completion marker and the package move", inst.engine
    ) as row:
        last = inst.cycle()
        assert last.returncode == 0, last.describe()
        newest = _last_loaded_package(inst)
        assert (newest / "package_completed.json").exists(), list(newest.iterdir())
        target = inst.pipeline_dir / "load" / "normalized" / newest.name
        newest.rename(target)
        row.notes.append(f"package {newest.name} moved back to load/normalized with its marker")
        _next_cycle_recovers(inst, row)


def test_drill2c_killed_after_the_warehouse_committed_a_job(installation: Installation, drill_row):
    """The other narrow window of a kill during the load: the warehouse committed the package's
    jobs, dlt had not yet filed them as done, nor written the `_dlt_loads` row. The next cycle
    runs the same jobs again. Built from the last cycle's package: back from `loaded/` to
    `normalized/`, its marker removed, its jobs moved from `completed_jobs/` to `new_jobs/`, its
    `_dlt_loads` row deleted. Until 0.3.0 PostgreSQL refused the re-run for good (a UNIQUE
    constraint on `_dlt_id`, docs/reliability.md finding 3); it must load, and double nothing."""
    inst = installation
    with drill_row(
        "2c. killed after the warehouse committed a job, before dlt filed it", inst.engine
    ) as row:
        last = inst.cycle()
        assert last.returncode == 0, last.describe()
        newest = _last_loaded_package(inst)
        target = inst.pipeline_dir / "load" / "normalized" / newest.name
        newest.rename(target)
        (target / "package_completed.json").unlink()
        jobs = list((target / "completed_jobs").iterdir())
        for job in jobs:
            job.rename(target / "new_jobs" / job.name)
        inst.warehouse.execute("delete from raw._dlt_loads where load_id = ?", [newest.name])
        row.notes.append(
            f"package {newest.name}: {len(jobs)} committed job(s) put back to run again, "
            "its _dlt_loads row deleted"
        )
        _next_cycle_recovers(inst, row, must_say="loaded pending load packages")
