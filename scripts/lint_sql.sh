#!/usr/bin/env bash
# SQL lint of the dbt project (`make lint`): sqlfluff with the dbt templater and the rules in
# .sqlfluff, once per warehouse, as the models compile differently on each.
#   scripts/lint_sql.sh [PATH ...]     default: dbt_project; SQL_LINT_WAREHOUSES="duckdb postgres"
# The dbt templater asks the warehouse whether an incremental model's table exists, so it needs
# one: DuckDB in memory; PostgreSQL named by the POSTGRES_* variables when POSTGRES_HOST is set,
# else a throwaway cluster (devkit/postgres_cluster.py), stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-.venv/bin/python}"
if [[ $# -eq 0 ]]; then
  set -- dbt_project
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/coincap-sql-lint.XXXXXX")"
pg_dir=""
trap 'if [[ -n "$pg_dir" ]]; then "$python" -m devkit.postgres_cluster destroy "$pg_dir" || true; fi
      rm -rf "$work"' EXIT

export DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_TARGET_PATH="$work/target" DBT_LOG_PATH="$work/logs"

status=0
for warehouse in ${SQL_LINT_WAREHOUSES:-duckdb postgres}; do
  case "$warehouse" in
    duckdb)
      export DUCKDB_PATH=":memory:"
      ;;
    postgres)
      if [[ -z "${POSTGRES_HOST:-}" ]]; then
        pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/coincap-sql-lint-pg.XXXXXX")"
        chmod 755 "$pg_dir"
        eval "$("$python" -m devkit.postgres_cluster start "$pg_dir")"
      fi
      ;;
    *)
      echo "lint_sql: error: unknown warehouse '$warehouse' (duckdb or postgres)" >&2
      exit 2
      ;;
  esac
  echo "== sqlfluff, $warehouse dialect: $*" >&2
  if ! WAREHOUSE="$warehouse" "$python" -m sqlfluff lint --dialect "$warehouse" "$@"; then
    echo "lint_sql: error: sqlfluff found problems on $warehouse (see above)" >&2
    status=1
  fi
done
exit "$status"
