"""The benchmark command (`python -m devkit.bench`) runs end to end at its tiny size, so it
cannot rot.

No timing is asserted: the machine is shared and noisy. The test checks that one command writes
docs/benchmarks.md with the machine and the three tables, with a row for every scenario and numbers
that are there and above zero.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO


@pytest.mark.slow
def test_tiny_benchmark_writes_the_three_tables(postgres_server, tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text(
        "# Benchmarks\n\nNotes written by hand.\n\n<!-- bench:begin -->\nold\n"
        "<!-- bench:end -->\n\nMore notes.\n"
    )
    results_path = tmp_path / "results.json"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COINCAP_"))},
        **postgres_server,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "PYTHONPATH": str(REPO),  # devkit is not installed: run from any directory
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devkit.bench",
            "--tiny",
            "--out",
            str(out),
            "--json",
            str(results_path),
            "--workdir",
            str(tmp_path / "work"),
        ],
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    text = out.read_text()
    # what was written by hand around the generated block is kept
    assert text.startswith("# Benchmarks\n\nNotes written by hand.")
    assert text.rstrip().endswith("More notes.")
    assert "\nold\n" not in text
    for heading in (
        "### 1. Cycle cost vs history size",
        "### 2. Backfill throughput",
        "### 3. Analyst queries",
        "### 4. Backup and restore",
    ):
        assert heading in text
    for fact in (
        "| CPUs |",
        "| memory |",
        "| OS |",
        "| Python |",
        "| PostgreSQL |",
        "| DuckDB |",
        "load average",
    ):
        assert fact in text

    results = json.loads(results_path.read_text())

    def positive(value) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value) and value > 0

    # 1. one row per engine x history size, each with its medians
    cycles = results["cycles"]
    assert {(c["engine"], c["days"]) for c in cycles} == {
        ("postgres", 1),
        ("postgres", 2),
        ("duckdb", 1),
        ("duckdb", 2),
    }
    for c in cycles:
        assert c["raw_rows"] > 0
        for key in (
            "cycle_seconds",
            "cycle_peak_mb",
            "ingest_seconds",
            "build_seconds",
            "cron_seconds",
            "cron_peak_mb",
        ):
            assert positive(c[key]), (key, c)
    rows_1d = {c["engine"]: c["raw_rows"] for c in cycles if c["days"] == 1}
    for c in cycles:
        if c["days"] == 2:
            assert c["raw_rows"] > rows_1d[c["engine"]], "more history, more rows"
    section1 = text.split("### 1.", 1)[1].split("### 2.", 1)[0]
    table1 = re.findall(r"^\| (postgres|duckdb) \| \d+ \| \d+ \|.*$", section1, re.M)
    assert len(table1) == 4

    # 4. a backup and two restores per engine, with the seconds the cycle lock was held
    backups = {b["engine"]: b for b in results["backup"]}
    assert set(backups) == {"postgres", "duckdb"}
    for b in backups.values():
        assert b["rows"] > 0 and positive(b["archive_mb"]) and positive(b["backup_seconds"])
        assert b["lock_seconds"] is not None and 0 <= b["lock_seconds"] < b["backup_seconds"], b
        assert positive(b["restore_seconds"]) and positive(b["fresh_restore_seconds"]), b
    section4 = text.split("### 4. Backup and restore", 1)[1]
    assert len(re.findall(r"^\| (postgres|duckdb) \| 2 \| 2 \| [\d,]+ \|", section4, re.M)) == 2

    # 2. the pipeline loaded every point of the backfill, beside COPY and INSERT of those rows
    backfill = results["backfill"]
    assert backfill["rows"] == 2 * 2 * 288  # 2 assets x 2 days of 5-minute points
    for key in ("pipeline_rows_per_s", "copy_rows_per_s", "insert_rows_per_s", "pipeline_vs_copy"):
        assert positive(backfill[key]), (key, backfill)
    assert re.search(r"^\| project pipeline \(dlt\) \| [\d.]+ \| [\d,]+ \|", text, re.M)
    assert re.search(r"^\| plain `COPY` \|", text, re.M)

    # 3. every dashboard question, on the marts and on the baseline, with the same row counts
    queries = results["queries"]
    assert {q["query"] for q in queries} == {
        "Latest prices",
        "Share of total market cap",
        "Price history per asset",
        "Daily OHLC",
    }
    assert {q["warehouse"].split(",")[0] for q in queries} == {"postgres", "duckdb"}
    for q in queries:
        assert positive(q["marts_ms"]) and positive(q["baseline_ms"]), q
        assert q["marts_rows"] > 0 and q["marts_rows"] == q["baseline_rows"], q
