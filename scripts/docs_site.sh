#!/usr/bin/env bash
# `make docs`: the dbt docs site of the local warehouse, on http://localhost:8080.
# `dbt docs generate` reads the warehouse's catalogue (the column types it reports), then
# `dbt docs serve` serves dbt_project/target until Ctrl-C. The same settings as a cycle: the
# environment, then `.env` (or the file COINCAP_ENV_FILE names) for what it does not set;
# WAREHOUSE picks the profile's target (duckdb by default, profiles/profiles.yml).
#
# A warehouse must exist: on DuckDB `make run` first (dbt would otherwise create an empty file
# where the cycle's warehouse belongs). The catalogue is read under the cycle lock: it waits for a
# running cycle, and a cron cycle that starts meanwhile skips, as behind a long cycle.
#   DBT   the dbt executable (default: .venv/bin/dbt)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DBT="${DBT:-$ROOT/.venv/bin/dbt}"
env_file="${COINCAP_ENV_FILE:-.env}"
if [[ -z "${DOCS_SITE_ENV_READ:-}" && -f "$env_file" ]]; then
  # values already in the environment win, as in a cycle (python-dotenv, like ingest/config.py)
  DOCS_SITE_ENV_READ=1 exec "$(dirname "$DBT")/dotenv" -f "$env_file" run --no-override -- "$ROOT/scripts/docs_site.sh" "$@"
fi

fail() {
  echo "error: $*" >&2
  exit 1
}

[[ -x "$DBT" ]] || fail "no dbt at $DBT; run 'make install'"
warehouse="${WAREHOUSE:-duckdb}"
warehouse="${warehouse,,}"
case "$warehouse" in
  duckdb)
    duckdb_path="${DUCKDB_PATH:-data/warehouse.duckdb}"
    [[ -f "$duckdb_path" ]] ||
      fail "no warehouse at $duckdb_path (DUCKDB_PATH) yet; run 'make run' first, then 'make docs'"
    ;;
  postgres) ;;
  *) fail "WAREHOUSE is '$warehouse'; set it to duckdb or postgres" ;;
esac

run_dir="${COINCAP_RUN_DIR:-data}"
mkdir -p "$run_dir"
dbt_args=(--project-dir dbt_project --profiles-dir profiles --target "$warehouse")
flock "$run_dir/run_pipeline.lock" "$DBT" docs generate "${dbt_args[@]}"
echo "the docs site: http://localhost:8080 (Ctrl-C stops it)"
exec "$DBT" docs serve "${dbt_args[@]}" --port 8080 --no-browser
