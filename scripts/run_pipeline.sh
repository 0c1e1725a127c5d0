#!/usr/bin/env bash
# One CoinCap ELT cycle: `coincap-elt run` (ingest/cycle.py), in one Python process: the lock,
# the ingest (dlt), then `dbt build` and `dbt source freshness` (ingest/transform.py); at the end,
# failed or not, the cycle's row in the run log (ops.pipeline_runs, the view
# marts.pipeline_runs) and, when the pipeline's state changed, an alert to ALERT_WEBHOOK_URL
# (ingest/runlog.py). Cron runs exactly this script.
#
# Exit 0 only when the ingest and `dbt build` succeeded (stale data is an alert and a warning, not a
# failure). A cycle started while another one runs exits 0 at once and says so. Every line it
# prints starts with an ISO-8601 UTC timestamp.
#
# Settings come from the environment (README.md, "Configuration"); a `.env` file in the repo
# root (or the file COINCAP_ENV_FILE names) fills in what the environment does not set.
# Besides the public variables it reads:
#   PYTHON           the interpreter with the project installed (default: .venv/bin/python,
#                    else python3 on PATH)
#   COINCAP_RUN_DIR  where the lock, the heartbeat `last_success`, the last alert state and
#                    CoinCap's quota state live (default: data/)
#   DBT_DOCS_DIR     when set, the static docs site is regenerated there after each good build
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON="$(command -v python3 || true)"; fi
fi
if [[ -z "$PYTHON" ]] || ! "$PYTHON" -c 'import ingest.cli' 2>/dev/null; then
  printf '%(%Y-%m-%dT%H:%M:%SZ)T run_pipeline: %s\n' -1 \
    "error: no Python with the project installed (${PYTHON:-none found}); run 'make install' or set PYTHON" >&2
  exit 1
fi
exec "$PYTHON" -m ingest.cli run
