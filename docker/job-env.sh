#!/usr/bin/env bash
# Writes the configuration the cron job needs into FILE, as `export NAME='value'` lines that
# /bin/sh can source, readable only by USER (mode 0600, owned by USER). Usage: job-env.sh FILE USER
#
# Only the pipeline's own settings are handed over (an allowlist of names and prefixes), never the
# whole environment: cron's job gets what run_pipeline.sh reads and nothing else. This replaces the
# original's `printenv > /etc/environment`, which left every secret in a world-readable file.
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 FILE USER" >&2
  exit 2
fi
file="$1"
user="$2"
group="$(id -gn "$user")" || { echo "error: no such user: $user" >&2; exit 1; }

# the pipeline's variables (docs/contract.md and scripts/run_pipeline.sh), the backup's (BACKUP_*,
# and METABASE_APP_DB_*: Metabase's application database is in every backup), and dlt's
# SECTION__KEY settings
allowed='^(COINCAP_[A-Z0-9_]+|POSTGRES_[A-Z0-9_]+|DBT_[A-Z0-9_]+|DLT_[A-Z0-9_]+|BACKUP_[A-Z0-9_]+|METABASE_APP_DB_[A-Z0-9_]+|[A-Z][A-Z0-9_]*__[A-Z0-9_]+|WAREHOUSE|DUCKDB_PATH|ALERT_WEBHOOK_URL|SCHEMA_DRIFT_SNAPSHOTS|PRICE_MOVE_ALERT_PCT|PYTHON|PATH|TZ|LANG|LC_ALL|PYTHONUNBUFFERED|PYTHONDONTWRITEBYTECODE)$'

# 'value' with every ' written as '\'' : safe for /bin/sh whatever the value holds
quote() { local q="'\\''"; printf "'%s'" "${1//\'/$q}"; }

umask 077
dir="$(dirname "$file")"
tmp="$(mktemp "$dir/.env.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
{
  echo "# written by docker/job-env.sh at container start; the cron job sources it"
  while IFS= read -r name; do
    [[ "$name" =~ $allowed ]] || continue
    printf 'export %s=%s\n' "$name" "$(quote "${!name}")"
  done < <(compgen -e | LC_ALL=C sort)
} >"$tmp"
chown "$user:$group" "$tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$file"
trap - EXIT
