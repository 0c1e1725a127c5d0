"""`coincap-elt`: the operator's command line (also `python -m ingest.cli`).

coincap-elt run                        one cycle (what cron runs, via scripts/run_pipeline.sh)
coincap-elt backfill --days N          extend the 5-minute history further back
coincap-elt status [--json]            the last cycles, freshness, holes, credits
coincap-elt doctor [--check-key]       check the configuration without spending credits
coincap-elt metabase                   set up Metabase: warehouse, dashboard, dbt's docs
coincap-elt docs [--port 8080]         the dbt docs site of this warehouse, on localhost
coincap-elt backup [--list]            one archive of the warehouse and the state, in BACKUP_DIR
coincap-elt restore PATH [--yes]       put a backup back (asks first; a safety backup before)
coincap-elt drift [--acknowledge ID]   CoinCap's schema changes; acknowledge them
"""

from __future__ import annotations

import argparse
import os
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
    backfill = commands.add_parser(
        "backfill",
        help="extend the 5-minute history further back than what is stored",
        description="Ask CoinCap for the 5-minute history between DAYS days ago and the oldest "
        "point stored for each asset, load it through the cycle's merge and build the marts. "
        "Prints the estimated credits first and asks to go on (without a terminal, --yes is "
        "required). Runs beside cron: each batch takes the cycle lock. Killed, it resumes "
        "where it stopped. Exit 0 done, 1 stopped by an error, 2 not confirmed or bad arguments.",
    )
    backfill.add_argument("--days", type=_days, required=True, help="how far back, in days")
    backfill.add_argument(
        "--assets", help="comma-separated asset ids (default: all of COINCAP_ASSET_IDS)"
    )
    backfill.add_argument(
        "--yes", action="store_true", help="go on without asking (required without a terminal)"
    )
    doctor = commands.add_parser(
        "doctor",
        help="check the configuration without spending CoinCap credits",
        description="Checks the configuration without spending CoinCap credits, one line per "
        "check (ok / FAIL, with what to do): the variables, the warehouse (reachable; which of "
        "the schemas raw, staging, marts, ops exist), the dlt data directory and the run "
        "directory (writable), the dbt project (parses; the profile connects), "
        "PIPELINE_SCHEDULE and, when set, BACKUP_SCHEDULE (five cron fields, as the container "
        "checks them) and whether "
        "COINCAP_API_KEY is set. Exit 0 when every check passed; 1 otherwise.",
    )
    doctor.add_argument(
        "--check-key",
        action="store_true",
        help="also send ONE small request to CoinCap (/assets?ids=bitcoin, about 2 credits) to "
        "confirm the key works, and print what it cost",
    )
    status = commands.add_parser(
        "status",
        help="the last cycles, freshness, pending loads, holes, credits (read-only)",
        description="The pipeline's state: the last cycles from the run log, the newest "
        "observation and the heartbeat, the alert and CoinCap quota states, dlt's pending load "
        "packages, the known holes of the 5-minute series, the newest backup and its age (a "
        "warning when backups are scheduled and it is older than BACKUP_MAX_AGE_HOURS) and this "
        "month's CoinCap credits. "
        "Read-only: no dbt, no CoinCap request, no write to the warehouse. Exit 0 when the "
        "state could be read (whatever it is); 1 with one `error:` line when it could not "
        "(bad settings, warehouse missing, busy with a cycle, or unreachable).",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    commands.add_parser(
        "metabase",
        help="set up Metabase: the warehouse, the dashboard and dbt's docs (idempotent)",
        description="Metabase as code, through its REST API: waits until Metabase is healthy "
        "(METABASE_WAIT_SECONDS), does the first-time setup (the first admin, "
        "METABASE_ADMIN_EMAIL/PASSWORD) when it has none, registers the warehouse as the "
        "read-only role METABASE_WAREHOUSE_USER with only the marts schema visible, waits until "
        "Metabase has synced the marts (METABASE_MARTS_WAIT_SECONDS; they exist after the "
        "pipeline's first cycle), pushes dbt's descriptions, keys and semantic types into "
        "Metabase's metadata, then creates the collection and the dashboard 'CoinCap market "
        "overview' with its questions and two filters (Asset, Date range). Idempotent: "
        "everything is found by name, a second run changes nothing, and what drifted from the "
        "definition is put back. The compose service metabase-provision runs it on every `up`. "
        "Exit 0 when everything is in place; 1 on a failure, 2 on a missing or invalid setting "
        "(one `error:` line on stderr saying what to do).",
    )
    docs = commands.add_parser(
        "docs",
        help="build the dbt docs site of this warehouse and serve it on localhost",
        description="`dbt docs generate` for the configured warehouse (under the cycle lock: it "
        "waits for a running cycle), then `dbt docs serve` on http://localhost:PORT until "
        "Ctrl-C. The warehouse must exist: run a cycle first. Exit 1 when it does not.",
    )
    docs.add_argument("--port", type=int, default=8080, help="the local port (default 8080)")
    backup = commands.add_parser(
        "backup",
        help="one consistent archive of the warehouse, dlt's state and the run state",
        description="Writes coincap-<engine>-<UTC time>.tar.gz into BACKUP_DIR: the warehouse "
        "(DuckDB: a copy; PostgreSQL: pg_dump of raw, staging, marts and ops; Spark: the local "
        "lake's raw and ops files, an object-store lake is refused), dlt's pipelines "
        "directory, the run directory's state and, when METABASE_APP_DB_NAME is set, Metabase's "
        "application database, with a manifest (version, engine, time, size, row counts, "
        "fingerprint). Holds the cycle lock only while it copies. Then deletes the archives "
        "BACKUP_KEEP_DAILY and BACKUP_KEEP_WEEKLY do not keep (never the newest that verifies). "
        "Prints the archive's path last. Exit 0 done; 1 with one `error:` line.",
    )
    backup.add_argument(
        "--list",
        action="store_true",
        help="list the archives in BACKUP_DIR: time, age, size, whether the manifest verifies",
    )
    restore = commands.add_parser(
        "restore",
        help="put a backup back: warehouse, dlt's state, run state (and Metabase's database)",
        description="Verifies the archive first (a truncated or altered one is refused, nothing "
        "changed), then under the cycle lock: asks before replacing a warehouse that has data "
        "(without a terminal, --yes is required), takes a safety backup of the current state "
        "(name ending -pre-restore), restores the warehouse (Spark: the lake's files, then "
        "staging and marts dropped for the next build to make again), dlt's state, the run "
        "state and Metabase's application database when the archive holds it (stop the metabase "
        "service first), and checks row counts and fingerprint against the manifest. The next "
        "cycle fills the gap since the backup from CoinCap's history. Exit 0 done; 1 with one "
        "`error:` line.",
    )
    restore.add_argument("path", help="the archive (coincap-<engine>-<time>.tar.gz)")
    restore.add_argument(
        "--yes", action="store_true", help="go on without asking (required without a terminal)"
    )
    drift = commands.add_parser(
        "drift",
        help="CoinCap's schema changes (fields added, removed, retyped); acknowledge them",
        description="Lists the changes in what CoinCap sends that cycles recorded in "
        "ops.schema_changes, newest first: a field added, a field no longer sent "
        "(SCHEMA_DRIFT_SNAPSHOTS snapshots in a row), a field whose type changed. "
        "--acknowledge ID (or all) marks them dealt with: `coincap-elt status` stops listing "
        "them, a retyped field's type becomes the one last sent and a removed field is "
        "forgotten. Exit 0; 1 with one `error:` line when the warehouse cannot be read or ID "
        "names no change waiting to be acknowledged.",
    )
    drift.add_argument(
        "--acknowledge", metavar="ID|all", help="acknowledge this change (or all of them)"
    )
    drift.add_argument("--json", action="store_true", help="the list as JSON, for scripts")
    args = parser.parse_args(argv)
    return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """Reads the configuration once (the environment and `.env`) and hands it to the command."""
    import logging

    from ingest.alerts import announce, hide
    from ingest.config import (
        ConfigError,
        Settings,
        alert_url_from,
        home_from,
        load_environment,
        secrets_from,
    )
    from ingest.logs import configure_logging

    configure_logging()
    run_dir = load_environment(create_run_dir=args.command not in ("doctor", "metabase"))
    env = dict(os.environ)  # the environment, `.env` included: read here, once
    hide(secrets_from(env))
    if args.command == "metabase":  # Metabase's own settings (METABASE_*), nothing of the cycle's
        from ingest.metabase import main as metabase_main

        return metabase_main(env, project_root=home_from(env))
    if args.command == "doctor":  # checks each part on its own: one wrong value hides no other
        from ingest.doctor import run_doctor

        return run_doctor(env, run_dir, check_key=args.check_key)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        if args.command not in ("run", "backfill", "docs"):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        logging.getLogger("run_pipeline").info("error: %s; nothing was run", exc)
        if args.command == "run":  # a failed cycle to the operator: the alert, as for any other
            announce(run_dir, alert_url_from(env), "settings unread", "failed", f"Settings: {exc}")
        return 1
    if args.command == "run":
        from ingest.cycle import run_cycle

        return run_cycle(settings)
    if args.command == "backfill":
        from ingest import backfill

        return backfill.main(settings, args.days, args.assets, args.yes)
    if args.command == "status":
        from ingest.status import main as status_main

        return status_main(settings, as_json=args.json)
    if args.command in ("backup", "restore"):
        from ingest.backup import main as backup_main

        return backup_main(settings, args)
    if args.command == "drift":
        from ingest.drift import main as drift_main

        return drift_main(settings, acknowledge=args.acknowledge, as_json=args.json)
    if args.command == "docs":
        from ingest.transform import serve_docs

        return serve_docs(settings, port=args.port)
    raise AssertionError(f"unknown command {args.command}")


def _days(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 3650:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days from 1 to 3650")
    return int(value)


if __name__ == "__main__":
    sys.exit(main())
