#!/usr/bin/env bash
# valid-schedule.sh SCHEDULE: exit 0 when SCHEDULE is five valid cron fields (minute, hour, day of
# month, month, day of week), 1 otherwise; silent either way. The one definition of a valid
# PIPELINE_SCHEDULE: docker/entrypoint.sh refuses to start with anything else, and
# `coincap-elt doctor` runs this script, so the two can never disagree.
set -euo pipefail

# One cron field: items separated by commas, each `*`, N, N-M or a three-letter name (months,
# days), optionally `/STEP`; numbers within [lo, hi].
valid_cron_field() { # field lo hi
  local item base step start end
  local -a items
  IFS=, read -r -a items <<<"$1"
  [[ "$1" != *, && "$1" != ,* && "$1" != *,,* && ${#items[@]} -gt 0 ]] || return 1
  for item in "${items[@]}"; do
    [[ "$item" =~ ^(\*|[0-9]+(-[0-9]+)?|[A-Za-z]{3}(-[A-Za-z]{3})?)(/([0-9]+))?$ ]] || return 1
    base="${BASH_REMATCH[1]}" step="${BASH_REMATCH[5]}"
    if [[ -n "$step" ]] && ((10#$step < 1)); then return 1; fi
    if [[ "$base" =~ ^([0-9]+)(-([0-9]+))?$ ]]; then
      start=$((10#${BASH_REMATCH[1]})) end=$((10#${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}))
      ((start >= $2 && end <= $3 && start <= end)) || return 1
    fi
  done
}

valid_schedule() {
  local -a fields
  read -r -a fields <<<"$1"
  ((${#fields[@]} == 5)) || return 1
  valid_cron_field "${fields[0]}" 0 59 && valid_cron_field "${fields[1]}" 0 23 \
    && valid_cron_field "${fields[2]}" 1 31 && valid_cron_field "${fields[3]}" 1 12 \
    && valid_cron_field "${fields[4]}" 0 7
}

(($# == 1)) || { echo "usage: $0 'SCHEDULE'" >&2; exit 2; }
valid_schedule "$1"
