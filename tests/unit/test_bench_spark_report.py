"""devkit/bench.py's Spark section (`--only spark`): its table is written between its own
markers, the text around it is kept, and a page without the section gets it appended."""

from __future__ import annotations

from pathlib import Path

from devkit.bench import SPARK_BEGIN, SPARK_END, SPARK_QUERIES, write_spark_report


def results() -> dict:
    queries = {name: {"ms": 12.5, "rows": 288} for name in SPARK_QUERIES}
    engine = {
        "cold_seconds": 11.9,
        "cold_peak_mb": 290.0,
        "steady_seconds": [7.1, 7.3, 6.9, 7.0, 8.2],
        "steady_median": 7.1,
        "steady_max": 8.2,
        "steady_peak_mb": 280.0,
        "queries": queries,
    }
    return {
        "started_at": "2026-12-05 08:41 UTC",
        "seconds": 600.0,
        "loadavg_start": [4.45, 5.96, 6.34],
        "loadavg_end": [3.0, 4.0, 5.0],
        "machine": {
            "cpus": 2,
            "cpu_model": "AMD EPYC",
            "memory_gib": 23.5,
            "kernel": "6.18",
            "postgres": "15.18",
        },
        "spark": {
            "versions": {
                "pyspark": "4.3.0",
                "dbt-spark": "1.11.0",
                "dbt-core": "1.11.16",
                "duckdb": "2.0.1",
                "dlt": "1.31.0",
                "java": 'openjdk version "17.0.15"',
            },
            "cluster": {"start_seconds": 36.2, "jvm_peak_mb": {"master": 300.0, "thrift": None}},
            "engines": [
                {**engine, "engine": "duckdb"},
                {**engine, "engine": "spark", "cold_seconds": 95.25},
            ],
        },
    }


def test_the_section_replaces_only_its_block(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text(
        f"# Benchmarks\n\nby hand before\n\n{SPARK_BEGIN}\nold figures\n{SPARK_END}\n\n"
        "by hand after\n"
    )
    write_spark_report(page, results())
    text = page.read_text()
    assert "old figures" not in text
    assert text.startswith("# Benchmarks\n\nby hand before\n\n" + SPARK_BEGIN)
    assert text.endswith(SPARK_END + "\n\nby hand after\n")
    rows = [line for line in text.splitlines() if line.startswith(("| duckdb ", "| spark "))]
    assert rows == [
        "| duckdb | 11.9 | 290 | 7.1 | 8.2 | 280 | 12.5 | 288 | 12.5 | 288 |",
        "| spark | 95.2 | 290 | 7.1 | 8.2 | 280 | 12.5 | 288 | 12.5 | 288 |",
    ]
    assert "load average (1, 5, 15 min) 4.45, 5.96, 6.34 at the start" in text
    assert "Spark 4.3.0 (pyspark), dbt-spark 1.11.0" in text
    assert "started in 36.2 s" in text and "master 300 MB" in text


def test_a_page_without_the_section_gets_it_appended(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nnotes\n")
    write_spark_report(page, results())
    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nnotes\n\n## Spark beside DuckDB and PostgreSQL\n\n")
    assert text.count(SPARK_BEGIN) == 1 and text.rstrip().endswith(SPARK_END)
