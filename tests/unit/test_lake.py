"""ingest/lake.py's rebuild mark: what a restore on Spark leaves when it cannot drop staging and
marts, and what the next build does with it (statements recorded, no Spark)."""

from __future__ import annotations

from pathlib import Path

from ingest.config import warehouse_from
from ingest.lake import (
    DERIVED_DATABASES,
    REBUILD_MARKER,
    drop_derived,
    mark_rebuild,
    rebuild_pending,
)


def test_the_mark_is_kept_until_the_drop_succeeds(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert not rebuild_pending(run_dir)
    mark_rebuild(run_dir)
    assert rebuild_pending(run_dir) and [p.name for p in run_dir.iterdir()] == [REBUILD_MARKER]
    warehouse = warehouse_from({"WAREHOUSE": "spark", "RAW_BUCKET_URL": str(tmp_path / "lake")})

    def failing(sql: str, *params: object) -> list:
        raise RuntimeError("Spark went away")

    try:
        drop_derived(warehouse, run_dir, failing)
    except RuntimeError:
        pass
    assert rebuild_pending(run_dir)  # still owed

    statements: list[str] = []
    dropped = drop_derived(warehouse, run_dir, lambda sql, *p: statements.append(sql) or [])
    assert dropped == list(DERIVED_DATABASES) == ["staging", "marts"]
    assert statements == [
        "drop database if exists staging cascade",
        "drop database if exists marts cascade",
    ]
    assert not rebuild_pending(run_dir)
