#!/usr/bin/env bash
# Entrypoint of the runpipeline image.
#
# Without arguments: run cron in the foreground, supervised, so that the container lives exactly as
# long as cron does. Before cron starts it
#   1. hands the configuration to the job: docker/job-env.sh writes $COINCAP_JOB_DIR/env, mode 0600,
#      owned by the job user (cron gives jobs an empty environment);
#   2. gives the job a way to the container's stdout/stderr: two FIFOs in $COINCAP_JOB_DIR, owned by
#      the job user, relayed by `cat` processes of this script. (A non-root job cannot open
#      /proc/1/fd/1: /proc/<pid>/fd of a root process is not accessible to other users.)
#   3. installs the job lines with their schedules: the cycle's (the line running run_pipeline.sh)
#      on PIPELINE_SCHEDULE (default '*/5 * * * *'), the backup's (the line running
#      `coincap-elt backup`) on BACKUP_SCHEDULE (default '32 3 * * *', daily at 03:32 UTC). Both
#      are five cron fields, checked by docker/valid-schedule.sh, which `coincap-elt doctor` runs
#      too; anything else stops the container with one `error:` line naming the variable. Only the
#      schedule fields of the lines in $COINCAP_CRONTAB are rewritten, the commands stay the
#      repo's. BACKUP_SCHEDULE is handed to the jobs with its default filled in: a cycle then
#      knows backups are scheduled and alerts when the newest is too old;
#   4. optionally starts one cycle at once (COINCAP_RUN_ON_START, default true), so the warehouse
#      and the health check do not wait for the first tick.
# If cron or a relay dies, the container stops (non-zero) and its restart policy brings it back.
# On SIGTERM/SIGINT it stops cron, lets a running cycle finish (up to COINCAP_STOP_TIMEOUT seconds;
# compose's stop_grace_period is longer), then exits 0.
#
# With arguments: run them as the job user (e.g. `coincap-elt metabase`).
set -euo pipefail

JOB_USER="${COINCAP_JOB_USER:-coincap}"
JOB_DIR="${COINCAP_JOB_DIR:-/run/coincap}"
APP_DIR="${COINCAP_HOME:-/app}"
CRONTAB_FILE="${COINCAP_CRONTAB:-/etc/cron.d/coincap}"
RUN_DIR="${COINCAP_RUN_DIR:-$APP_DIR/data}"
STOP_TIMEOUT="${COINCAP_STOP_TIMEOUT:-540}"
SCHEDULE="${PIPELINE_SCHEDULE:-*/5 * * * *}"
export BACKUP_SCHEDULE="${BACKUP_SCHEDULE:-32 3 * * *}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '%(%Y-%m-%dT%H:%M:%SZ)T entrypoint: %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_job_user() {
  local home
  home="$(getent passwd "$JOB_USER" | cut -d: -f6)"
  HOME="$home" USER="$JOB_USER" LOGNAME="$JOB_USER" \
    setpriv --reuid="$JOB_USER" --regid="$JOB_USER" --init-groups -- "$@"
}

# The job lines of the crontab with their five schedule fields replaced (the cycle's with SCHEDULE,
# the backup's with BACKUP_SCHEDULE); the commands, the user and every variable line stay as the
# repo's crontab has them. Root-owned, 0644, replaced atomically.
install_schedule() {
  local line cycles=0 backups=0 tmp when
  local -a fields lines out=()
  mapfile -t lines <"$CRONTAB_FILE"
  for line in "${lines[@]}"; do
    if [[ "$line" =~ ^[[:space:]]*(#|$) || "$line" =~ ^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]*= ]]; then
      out+=("$line")
      continue
    fi
    read -r -a fields <<<"$line"
    ((${#fields[@]} >= 7)) || die "$CRONTAB_FILE: not a cron job line: $line"
    if [[ "$line" == *run_pipeline.sh* ]]; then
      when="$SCHEDULE" cycles=$((cycles + 1))
    elif [[ "$line" == *" ingest.cli backup"* ]]; then
      when="$BACKUP_SCHEDULE" backups=$((backups + 1))
    else
      die "$CRONTAB_FILE: a job line that is neither the cycle nor the backup: $line"
    fi
    # the command exactly as written: only the first five fields of the line's text are replaced
    out+=("$when $(sed -E 's/^[[:space:]]*([^[:space:]]+[[:space:]]+){5}//' <<<"$line")")
  done
  ((cycles == 1 && backups == 1)) ||
    die "$CRONTAB_FILE must hold exactly one cycle line and one backup line (found $cycles and $backups)"
  tmp="$(mktemp "$(dirname "$CRONTAB_FILE")/.coincap-schedule.XXXXXX")"
  printf '%s\n' "${out[@]}" >"$tmp"
  chown 0:0 "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$CRONTAB_FILE"
}

if (($# > 0)); then
  if ((EUID == 0)); then
    exec env HOME="$(getent passwd "$JOB_USER" | cut -d: -f6)" USER="$JOB_USER" LOGNAME="$JOB_USER" \
      setpriv --reuid="$JOB_USER" --regid="$JOB_USER" --init-groups -- "$@"
  fi
  exec "$@"
fi

# the one definition of a valid schedule, shared with `coincap-elt doctor`
if ! "$HERE/valid-schedule.sh" "$SCHEDULE"; then
  die "PIPELINE_SCHEDULE is '$SCHEDULE'; set five cron fields such as '*/5 * * * *'"
fi
if ! "$HERE/valid-schedule.sh" "$BACKUP_SCHEDULE"; then
  die "BACKUP_SCHEDULE is '$BACKUP_SCHEDULE'; set five cron fields such as '32 3 * * *'"
fi
((EUID == 0)) || die "start this container as root: cron needs it to run the job as $JOB_USER"
getent passwd "$JOB_USER" >/dev/null || die "the job user $JOB_USER does not exist"
[[ -f "$CRONTAB_FILE" ]] || die "$CRONTAB_FILE is missing: the image installs the repo's crontab there"
# cron silently ignores a crontab that is not root's or that others may write: say it instead
if [[ "$(stat -c %u "$CRONTAB_FILE")" != 0 ]] || (("0$(stat -c %a "$CRONTAB_FILE")" & 022)); then
  die "$CRONTAB_FILE must be owned by root and not group/world-writable, or cron ignores it"
fi

install_schedule

install -d -m 0700 -o "$JOB_USER" -g "$(id -gn "$JOB_USER")" "$JOB_DIR"
"$HERE/job-env.sh" "$JOB_DIR/env" "$JOB_USER"

relays=()
for stream in stdout stderr; do
  rm -f "$JOB_DIR/$stream"
  mkfifo -m 0600 "$JOB_DIR/$stream"
  chown "$JOB_USER:" "$JOB_DIR/$stream"
done
# Opened read-write, a FIFO always has a writer: `cat` never sees end-of-file between cycles.
cat 0<>"$JOB_DIR/stdout" &
relays+=($!)
cat 0<>"$JOB_DIR/stderr" >&2 &
relays+=($!)

if [[ "${COINCAP_RUN_ON_START:-true}" == "true" ]]; then
  log "starting a first cycle now; then on the schedule '$SCHEDULE' (cron)"
  # the same command as the crontab's, in the same empty environment (expanded by that shell)
  # shellcheck disable=SC2016
  as_job_user env -i PATH=/usr/bin:/bin SHELL=/bin/sh LOGNAME="$JOB_USER" \
    HOME="$(getent passwd "$JOB_USER" | cut -d: -f6)" \
    COINCAP_HOME="$APP_DIR" COINCAP_JOB_DIR="$JOB_DIR" \
    /bin/sh -c '. "$COINCAP_JOB_DIR/env" && exec "$COINCAP_HOME/scripts/run_pipeline.sh" >"$COINCAP_JOB_DIR/stdout" 2>"$COINCAP_JOB_DIR/stderr"' &
fi

stopping=0
trap 'stopping=1' TERM INT

/usr/sbin/cron -f &
cron_pid=$!
log "cron started (pid $cron_pid) with $CRONTAB_FILE, schedule '$SCHEDULE', backups '$BACKUP_SCHEDULE'; job user $JOB_USER"

shutdown() {
  kill -TERM "$cron_pid" 2>/dev/null || true
  wait "$cron_pid" 2>/dev/null || true
  # the lock file stays after every cycle: only a cycle that holds the lock is worth waiting for
  # (never create it here: it must stay the job user's)
  if [[ -e "$RUN_DIR/run_pipeline.lock" ]] && ! flock --nonblock "$RUN_DIR/run_pipeline.lock" true; then
    log "cron stopped; waiting up to ${STOP_TIMEOUT} s for a running cycle to finish"
    if ! flock --wait "$STOP_TIMEOUT" "$RUN_DIR/run_pipeline.lock" true; then
      log "warning: a cycle was still running after ${STOP_TIMEOUT} s; it is cut short (its load is resumed next start)"
    fi
  fi
  sleep 1 # let the relays pass on the last lines
  kill -TERM "${relays[@]}" 2>/dev/null || true
}

while ((!stopping)); do
  wait -n "$cron_pid" "${relays[@]}" || true
  ((stopping)) && break
  if ! kill -0 "$cron_pid" 2>/dev/null; then
    log "error: cron exited; stopping the container so that its restart policy starts a new one"
  else
    log "error: a log relay exited; stopping the container so that its restart policy starts a new one"
  fi
  shutdown
  exit 1
done

log "stopping: no new cycles"
shutdown
log "stopped"
