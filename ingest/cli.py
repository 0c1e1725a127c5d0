"""`coincap-elt`: the operator's command line (also `python -m ingest.cli`).

coincap-elt run                        one cycle (what cron runs, via scripts/run_pipeline.sh)
coincap-elt backfill --days N          extend the 5-minute history further back
coincap-elt status [--json]            the last cycles, freshness, holes, credits
coincap-elt doctor [--check-key]       check the configuration without spending credits
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="coincap-elt",
        description="CoinCap ELT: CoinCap v3 -> dlt -> raw -> dbt -> marts (DuckDB or PostgreSQL)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run",
        help="one cycle: ingest, dbt build, freshness, run log",
        description="One cycle: the ingest, `dbt build` and `dbt source freshness` (and the "
        "docs site when DBT_DOCS_DIR is set), then the cycle's row in the run log and an alert "
        "when the state changed. Exit 0 when the ingest and the build succeeded; 1 otherwise. "
        "Exits 0 at once when another cycle holds the lock.",
    )
    status = commands.add_parser(
        "status",
        help="the last cycles, freshness, pending loads, holes, credits (read-only)",
        description="The pipeline's state: the last cycles from the run log, the newest "
        "observation and the heartbeat, the alert and CoinCap quota states, dlt's pending load "
        "packages, the known holes of the 5-minute series and this month's CoinCap credits. "
        "Read-only: no dbt, no CoinCap request, no write to the warehouse. Exit 0 when the "
        "state could be read (whatever it is); 1 with one `error:` line when it could not "
        "(bad settings, warehouse missing, busy with a cycle, or unreachable).",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    args = parser.parse_args(argv)
    if args.command == "run":
        from ingest.cycle import run_cycle
        from ingest.logs import configure_logging

        configure_logging()
        return run_cycle()
    if args.command == "status":
        from ingest.status import main as status_main

        return status_main(as_json=args.json)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
