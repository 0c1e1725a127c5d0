#!/usr/bin/env bash
# Docker HEALTHCHECK of the runpipeline container: healthy while the last successful cycle is recent.
# scripts/run_pipeline.sh touches $COINCAP_RUN_DIR/last_success after every cycle that succeeded.
set -euo pipefail

heartbeat="${COINCAP_RUN_DIR:-/var/lib/coincap/run}/last_success"
max_age_minutes="${COINCAP_HEALTH_MAX_AGE_MINUTES:-15}"

if [[ ! -f "$heartbeat" ]]; then
  echo "unhealthy: no cycle has succeeded yet ($heartbeat does not exist)"
  exit 1
fi
age=$(($(date +%s) - $(stat -c %Y "$heartbeat")))
if ((age > max_age_minutes * 60)); then
  echo "unhealthy: the last successful cycle ended ${age} s ago (limit ${max_age_minutes} min); see docker compose logs runpipeline"
  exit 1
fi
echo "healthy: the last successful cycle ended ${age} s ago"
