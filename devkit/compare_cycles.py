"""Steady-state cycles of two checkouts of this project, interleaved in one run: wall time and peak
memory of `scripts/run_pipeline.sh` on both engines, so a change's cost is a ratio measured on
the same machine at the same moment (docs/benchmarks.md, "before and after").

    .venv/bin/python -m devkit.compare_cycles --before ../old-checkout [--runs 7]

Each checkout gets its own warehouse per engine (a throwaway PostgreSQL cluster unless the
POSTGRES_* variables name one), a first cycle with a one-day backfill of the ten default assets,
then `--runs` measured cycles, alternating between the checkouts, CoinCap's clock 5 minutes on
each time. CoinCap is the test fake serving recorded-style answers; the installations are
devkit/installation.py's, as in the tests. Both run with this checkout's Python environment (the
same pinned dependencies).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from devkit.fake_coincap import DEFAULT_ASSET_IDS, FakeCoinCap
from devkit.installation import API_KEY, REPO, Installation
from devkit.postgres_cluster import server


def measure(checkout: Path, env: dict[str, str]) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak RSS in MB of the cycle and its children)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", str(checkout / "scripts" / "run_pipeline.sh")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--engines", default="duckdb,postgres")
    args = parser.parse_args()
    checkouts = {"before": args.before.resolve(), "after": REPO}
    work = Path(tempfile.mkdtemp(prefix="coincap-compare-"))
    with ExitStack() as stack:
        pg = None
        if "postgres" in args.engines:
            pg = stack.enter_context(server("coincap-compare-pg-"))
        for engine in args.engines.split(","):
            installs = {}
            for name, checkout in checkouts.items():
                fake = FakeCoinCap(api_key=API_KEY, recorded_style=True)
                fake.now_ms = fake.now_ms - 2 * 3_600_000
                inst = Installation.create(
                    engine,
                    work / f"{engine}-{name}",
                    pg,
                    fake=fake,
                    asset_ids=DEFAULT_ASSET_IDS,
                    settings={"PYTHON": sys.executable},
                )
                stack.callback(inst.close)
                env = inst.env()
                first = measure(checkout, env)
                assert first[0] == 0, f"{name}: the first cycle failed"
                installs[name] = (env, inst.fake, [])
            for _ in range(args.runs):
                for name, (env, fake, results) in installs.items():
                    fake.advance(5 * 60_000)
                    results.append(measure(checkouts[name], env))
            for name, (_, fake, results) in installs.items():
                fake.stop()
                failed = [r for r in results if r[0] != 0]
                wall = statistics.median(r[1] for r in results)
                peak = statistics.median(r[2] for r in results)
                print(
                    f"{engine:8} {name:6} median wall {wall:5.2f} s, median peak {peak:5.0f} MB"
                    f" ({len(results)} cycles, {len(failed)} failed)"
                )
            before, after = (installs[n][2] for n in ("before", "after"))
            wall_ratio = statistics.median(r[1] for r in after) / statistics.median(
                r[1] for r in before
            )
            peak_ratio = statistics.median(r[2] for r in after) / statistics.median(
                r[2] for r in before
            )
            print(f"{engine:8} after/before: wall {wall_ratio:.3f}, peak {peak_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
