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
    doctor = commands.add_parser(
        "doctor",
        help="check the configuration without spending CoinCap credits",
        description="Checks the configuration without spending CoinCap credits, one line per "
        "check (ok / FAIL, with what to do): the variables, the warehouse (reachable; which of "
        "the schemas raw, staging, marts, ops exist), the dlt data directory and the run "
        "directory (writable), the dbt project (parses; the profile connects), "
        "PIPELINE_SCHEDULE (five cron fields, as the container checks it) and whether "
        "COINCAP_API_KEY is set. Exit 0 when every check passed; 1 otherwise.",
    )
    doctor.add_argument(
        "--check-key",
        action="store_true",
        help="also send ONE small request to CoinCap (/assets?ids=bitcoin, about 2 credits) to "
        "confirm the key works, and print what it cost",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        from ingest.cycle import run_cycle
        from ingest.logs import configure_logging

        configure_logging()
        return run_cycle()
    if args.command == "doctor":
        from ingest.doctor import run_doctor

        return run_doctor(check_key=args.check_key)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
