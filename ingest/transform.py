"""The cycle's dbt steps, in the cycle's own process: `dbt build` (without unit tests), then
`dbt source freshness`, then, when DBT_DOCS_DIR is set, `dbt docs generate --static` copied to
DBT_DOCS_DIR/index.html.

Each step is the dbt command of the same name, run through dbt's documented programmatic entry
point (dbtRunner) with `--project-dir dbt_project --profiles-dir profiles`: dbt is imported and
the project parsed once per cycle. What dbt would print goes through this process's log (one line
per dbt event, each with its UTC timestamp); dbt's own debug log stays in DBT_LOG_PATH. The
results come back in memory (`DbtOutcome`) for the run log: no artifact file is read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.logs import first_line

if TYPE_CHECKING:
    from ingest.config import Settings
    from ingest.warehouse import Warehouse

logger = logging.getLogger("dbt")

PROJECT_ARGS = ["--project-dir", "dbt_project", "--profiles-dir", "profiles", "--no-use-colors"]
# dbt prints nothing itself: its info, warn and error events are logged by `_relay` instead; its
# debug log still goes to DBT_LOG_PATH (dbt.log). The results come back in memory, so the cycle's
# steps skip writing manifest.json and run_results.json (`dbt docs generate` still writes its own).
QUIET = ["--log-level", "none", "--log-level-file", "debug"]
NO_ARTIFACTS = ["--no-write-json"]


@dataclass
class DbtOutcome:
    built: bool = False  # `dbt build` passed
    build_error: str | None = None  # the failing nodes, one line, when it did not
    freshness: str = "not checked"  # pass | warn | error | not checked
    freshness_detail: str = ""  # what is stale, one line
    failing_nodes: list[str] = field(default_factory=list)


def project_args(warehouse: Warehouse, price_move_alert_pct: float | None = None) -> list[str]:
    """dbt's project, profile and target for this warehouse. profiles/profiles.yml reads the
    connection from the environment, so the warehouse's normalised variables are exported first:
    dbt connects to exactly the warehouse dlt loaded (and `WAREHOUSE=DuckDB` is duckdb). The
    ingest's constants dbt's tests share are passed as vars (dbt_vars)."""
    os.environ.update(warehouse.dbt_env())
    variables = json.dumps(dbt_vars(price_move_alert_pct))
    return [*PROJECT_ARGS, "--target", warehouse.engine, "--vars", variables]


def dbt_vars(price_move_alert_pct: float | None = None) -> dict[str, float]:
    """What the ingest hands dbt as vars (one `--vars`):

    - `max_clock_skew_minutes`, the one bound of a plausible time (MAX_CLOCK_SKEW_MS: the ingest
      accepts CoinCap's answers within it, the `not_in_future` tests accept observations within
      it); dbt_project.yml holds the same default for dbt run by hand (a unit test checks they
      agree);
    - `price_move_alert_pct` when PRICE_MOVE_ALERT_PCT is set (else dbt_project.yml's default
      stands: one definition of it).
    """
    from ingest.coincap.settings import MAX_CLOCK_SKEW_MS

    variables: dict[str, float] = {"max_clock_skew_minutes": MAX_CLOCK_SKEW_MS // 60_000}
    if price_move_alert_pct is not None:
        variables["price_move_alert_pct"] = price_move_alert_pct
    return variables


def run_dbt_steps(settings: Settings, select: list[str] | None = None) -> DbtOutcome:
    """Build, freshness and docs. What dbt reports (a failed build too) is returned, not raised."""
    from dbt.cli.main import dbtRunner  # imported here: `coincap-elt status` never needs dbt

    outcome = DbtOutcome()
    if settings.warehouse.engine == "spark":
        from ingest.lake import prepare_build
        from ingest.warehouse import WarehouseError

        try:  # Spark sees dlt's new files (and new columns) through these tables
            prepare_build(settings.warehouse, settings.run_dir)
        except WarehouseError as exc:
            logger.info("error: %s", exc)
            outcome.build_error = str(exc)
            return outcome
    args = project_args(settings.warehouse, settings.price_move_alert_pct)
    parsed = dbtRunner(callbacks=[_relay]).invoke(["parse", *NO_ARTIFACTS, *QUIET, *args])
    if not parsed.success:
        outcome.build_error = first_line(
            parsed.exception, "dbt could not parse the project (see the lines above)"
        )
        return outcome
    dbt = dbtRunner(manifest=parsed.result, callbacks=[_relay])  # the steps reuse this parse

    # Unit tests check the models' SQL against fixed rows, not the data: they run in the test
    # suite (tests/test_dbt_unit_tests.py), not every 5 minutes (dbt's docs advise the same).
    build = dbt.invoke(
        ["build", "--exclude-resource-type", "unit_test", *(select or []), *NO_ARTIFACTS]
        + [*QUIET, *args]
    )
    if not build.success:
        outcome.build_error, outcome.failing_nodes = _build_error(build)
        return outcome
    outcome.built = True

    fresh = dbt.invoke(["source", "freshness", *NO_ARTIFACTS, *QUIET, *args])
    outcome.freshness, outcome.freshness_detail = _freshness(fresh)

    if settings.docs_dir:
        _refresh_docs(dbt, args, settings.docs_dir, settings.dbt_target_path)
    return outcome


def serve_docs(settings: Settings, port: int) -> int:
    """`coincap-elt docs`: the dbt docs site of this warehouse on http://localhost:PORT until
    Ctrl-C. `dbt docs generate` reads the warehouse's catalogue under the cycle lock (it waits for
    a running cycle; a cron cycle starting meanwhile skips), then `dbt docs serve` serves it."""
    from dbt.cli.main import dbtRunner

    from ingest.cycle import cycle_lock

    if not settings.warehouse.exists():
        logger.info(
            "error: no warehouse at %s (DUCKDB_PATH) yet; run a cycle first (make run), "
            "then serve the docs",
            settings.warehouse.duckdb_path,
        )
        return 1
    args = project_args(settings.warehouse, settings.price_move_alert_pct)
    with cycle_lock(settings.run_dir, wait=True):
        generated = dbtRunner(callbacks=[_relay]).invoke(["docs", "generate", *QUIET, *args])
    if not generated.success:
        logger.info("error: dbt docs generate failed (see the lines above)")
        return 1
    logger.info("the docs site: http://localhost:%d (Ctrl-C stops it)", port)
    served = dbtRunner().invoke(["docs", "serve", "--port", str(port), "--no-browser", *args])
    return 0 if served.success else 1


def _relay(event: Any) -> None:
    """dbt's console lines, through this process's log (dbt's own stdout is off: QUIET)."""
    level, text = event.info.level, event.info.msg
    if level in ("info", "warn", "error") and text.strip():
        for line in text.splitlines():
            logger.info("%s", line)


def _build_error(build: Any) -> tuple[str, list[str]]:
    """The failing nodes of `dbt build`, in one line."""
    results = getattr(build.result, "results", None) or []
    failing = [r for r in results if str(r.status) in ("error", "fail", "runtime error")]
    if not failing:
        why = first_line(build.exception, "see the lines above")
        return f"dbt build failed before running any model or test ({why})", []
    first = failing[0]
    message = first_line(first.message, "")
    more = f" and {len(failing) - 1} more" if len(failing) > 1 else ""
    ids = [r.node.unique_id for r in failing]
    because = f": {message}" if message else " (see the lines above)"
    return f"dbt build failed: {ids[0]}{more}{because}"[:500], ids


def _freshness(fresh: Any) -> tuple[str, str]:
    """("pass" | "warn" | "error", what is stale) from `dbt source freshness`."""
    results = [
        r for r in getattr(fresh.result, "results", None) or [] if hasattr(r.node, "freshness")
    ]
    if not results and fresh.success:
        return "pass", ""
    if not results:
        why = first_line(fresh.exception, "see the cycle's log")
        return "error", f"dbt source freshness failed without results ({why})"
    rank = {"pass": 0, "warn": 1, "error": 2, "runtime error": 2}
    worst = max(results, key=lambda r: rank.get(str(r.status), 2))
    status = "error" if rank.get(str(worst.status), 2) == 2 else str(worst.status)
    if status == "pass":
        return status, ""
    source = worst.node.unique_id.removeprefix("source.coincap_elt.")
    age_min = float(getattr(worst, "age", 0) or 0) / 60
    limit = getattr(worst.node.freshness, f"{status}_after", None)
    after = f" ({status} after {limit.count} {limit.period}s)" if limit and limit.count else ""
    return status, (
        f"Source freshness {status}: the newest figures in {source} are {age_min:.0f} min old"
        f"{after}; check that CoinCap's timestamp moves and that cycles run."
    )


def _refresh_docs(dbt: Any, args: list[str], docs_dir: Path, target: Path) -> None:
    try:
        if not dbt.invoke(["docs", "generate", "--static", *QUIET, *args]).success:
            raise RuntimeError("dbt docs generate failed (see the lines above)")
        docs_dir.mkdir(parents=True, exist_ok=True)
        partial = docs_dir / ".index.html.tmp"
        shutil.copyfile(target / "static_index.html", partial)
        partial.replace(docs_dir / "index.html")  # atomic: the site never serves half a page
    except (OSError, RuntimeError) as exc:
        logger.warning(
            "warning: the docs site could not be refreshed (%s); it shows the previous build", exc
        )
        return
    logger.info("docs site refreshed in %s", docs_dir)
