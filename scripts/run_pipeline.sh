#!/usr/bin/env bash
# One CoinCap ELT cycle: ingest (dlt, `python -m ingest`), then `dbt build`, then
# `dbt source freshness` (both in scripts/dbt_steps.py); at the end, failed or not, the cycle's row in the run log
# (ops.pipeline_runs, the view marts.pipeline_runs) and, when the pipeline's state changed, an
# alert to ALERT_WEBHOOK_URL (`python -m ingest.runlog`). Cron runs exactly this.
#
# Exit 0 only when the ingest and `dbt build` succeeded (stale data is an alert and a warning, not a
# failure). A cycle started while another one runs exits 0 at once and says so. Every line it
# prints starts with an ISO-8601 UTC timestamp.
#
# Settings come from the environment (README.md, "Configuration"); a `.env` file in the repo
# root (or the file COINCAP_ENV_FILE names) fills in what the environment does not set.
# Besides the public variables it reads:
#   PYTHON           the interpreter with the project installed (default: .venv/bin/python,
#                    else python3 on PATH); it runs dbt too (scripts/dbt_steps.py)
#   COINCAP_RUN_DIR  where the lock, the heartbeat `last_success`, the ingest's summary for the
#                    run log and the last alert state live (default: data/)
#   DBT_DOCS_DIR     when set, the static docs site is regenerated there after each good build
set -euo pipefail

export TZ=UTC
export RUNTIME__DLTHUB_TELEMETRY="${RUNTIME__DLTHUB_TELEMETRY:-false}"
export DBT_SEND_ANONYMOUS_USAGE_STATS="${DBT_SEND_ANONYMOUS_USAGE_STATS:-false}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Relative paths (DUCKDB_PATH, data/) mean the same for ingest and dbt: the repo root.
cd "$ROOT"

log() { printf '%(%Y-%m-%dT%H:%M:%SZ)T run_pipeline: %s\n' -1 "$*" >&2; }
stamp() { while IFS= read -r line; do printf '%(%Y-%m-%dT%H:%M:%SZ)T %s\n' -1 "$line"; done; }

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c 'import ingest, dbt' 2>/dev/null; then
  log "error: no Python with the project installed (${PYTHON:-none found}); run 'make install' or set PYTHON"
  exit 1
fi

# dbt reads settings only from the environment; give it the same .env the ingest step reads.
export COINCAP_ENV_FILE="${COINCAP_ENV_FILE:-$ROOT/.env}"
WITH_ENV=()
if [[ -f "$COINCAP_ENV_FILE" ]]; then
  WITH_ENV=("$PYTHON" -m dotenv -f "$COINCAP_ENV_FILE" run --no-override --)
fi
DBT_ARGS=(--project-dir dbt_project --profiles-dir profiles --no-use-colors)

RUN_DIR="${COINCAP_RUN_DIR:-$ROOT/data}"
mkdir -p "$RUN_DIR"
LOCK="$RUN_DIR/run_pipeline.lock"
exec 9>"$LOCK"
if ! flock --nonblock 9; then
  log "another cycle is running (it holds $LOCK); this one exits without doing anything"
  exit 0
fi

started=$SECONDS
started_at="$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
log "cycle started: warehouse ${WAREHOUSE:-duckdb}"
# the ingest writes its numbers (rows, requests, error) here for the run log
export COINCAP_RUN_DIR="$RUN_DIR"
rm -f "$RUN_DIR/ingest_summary.json"

# The cycle's row in the run log, and an alert if the pipeline's state changed. Never fails the
# cycle: a warehouse that is down keeps the row in dlt's pending package for the next cycle.
record_run() { # status [failed step] [freshness]
  local args=(--started-at "$started_at" --status "$1")
  if [[ -n "${2:-}" ]]; then args+=(--failed-step "$2"); fi
  if [[ -n "${3:-}" ]]; then args+=(--freshness "$3"); fi
  if ! "$PYTHON" -m ingest.runlog "${args[@]}"; then
    log "warning: the run log step failed (see the lines above); the cycle's outcome stands"
  fi
}

if ! "$PYTHON" -m ingest; then
  log "error: the ingest step failed (see the line above); dbt build skipped, the marts are unchanged"
  record_run failed ingest
  exit 1
fi

# `dbt build`, then `dbt source freshness` (is CoinCap's newest observation recent? see
# _coincap__sources.yml), then the docs site when DBT_DOCS_DIR is set: one dbt process
# (scripts/dbt_steps.py), so dbt starts and parses the project once. Exit 1: the build failed;
# 3: built, but the data is stale, which does not fail the cycle but is a state of its own in the
# run log and the alerts.
dbt_status=0
"${WITH_ENV[@]}" "$PYTHON" "$ROOT/scripts/dbt_steps.py" "${DBT_ARGS[@]}" 2>&1 | stamp || dbt_status=$?
if [[ $dbt_status -ne 0 && $dbt_status -ne 3 ]]; then
  log "error: dbt build failed (see the lines above); raw holds the new snapshot, the next cycle builds it"
  record_run failed "dbt build"
  exit 1
fi

date -u +%Y-%m-%dT%H:%M:%SZ >"$RUN_DIR/last_success"

freshness=passed
if [[ $dbt_status -eq 3 ]]; then
  freshness=failed
  log "warning: source freshness failed (see the lines above): CoinCap's newest figures are too old"
fi

record_run succeeded "" "$freshness"
log "cycle finished in $((SECONDS - started)) s"
