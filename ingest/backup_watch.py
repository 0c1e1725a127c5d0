"""Backups watched: how old the newest backup is (`coincap-elt status`, every cycle) and the two
backup alerts, each sent once, never every 5 minutes.

- **A backup failed**: `coincap-elt backup` reports its outcome (`backup_finished`); a failure is
  one alert, further failures none, and the next backup that succeeds one "backups work again"
  message: a state change, as a cycle's `failed`/`recovered` (state in
  `$COINCAP_RUN_DIR/alert_state_backup`).
- **The newest backup is too old**: when backups are scheduled (BACKUP_SCHEDULE set: the compose
  stack always sets it), every cycle compares the newest backup's age with
  BACKUP_MAX_AGE_HOURS (`watch`) and alerts once per stale episode (`notify_once`, the episode
  being the newest backup's name: a new backup ends it). With no backup at all, the age counts
  from when cycles began watching (`$COINCAP_RUN_DIR/backup_watch_since`, written by the first
  cycle that finds backups scheduled), so a backup job that never ran is noticed too.

Without BACKUP_SCHEDULE nothing is watched: a laptop that never backs up, or backs up by hand now
and then, is not told every day and a half that its backups are old. `status` still shows the
newest backup there.

The decision is pure (`backup_age`); reading the backup directory is ingest/backup.py's
`newest_backup`. Nothing here ever fails a cycle or a backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.alerts import announce_change, notify_once

if TYPE_CHECKING:
    from ingest.config import Settings

WATCH_FILE = "backup_watch_since"
STATE_TOPIC = "backup"  # $COINCAP_RUN_DIR/alert_state_backup: ok or failed
AGE_TOPIC = "backup_age"  # $COINCAP_RUN_DIR/alert_state_backup_age: the episode announced

logger = logging.getLogger("run_pipeline")


@dataclass(frozen=True)
class BackupAge:
    """The newest backup and whether it is too old. `stale` only when backups are scheduled."""

    newest_path: Path | None
    newest_at: datetime | None
    age: timedelta | None  # of the newest backup; None when there is none
    scheduled: str  # BACKUP_SCHEDULE, empty when backups are not scheduled
    max_age_hours: int
    watching_since: datetime | None
    stale: bool
    episode: str | None  # what one alert is sent for: the newest backup's name, or "none since …"

    def warning(self) -> str | None:
        """The `warning:` text when stale, else None."""
        if not self.stale:
            return None
        limit = f"BACKUP_MAX_AGE_HOURS is {self.max_age_hours}"
        if self.newest_path is None or self.age is None:
            since = _iso(self.watching_since) or "?"
            return (
                f"no backup yet, and backups are scheduled ('{self.scheduled}') and watched "
                f"since {since}, more than {self.max_age_hours} h ago ({limit}); "
                "check `docker compose logs runpipeline` for the backup's error"
            )
        return (
            f"the newest backup, {self.newest_path.name}, is {_hours(self.age)} old ({limit}); "
            "check `docker compose logs runpipeline` for the backup's error"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "newest_path": str(self.newest_path) if self.newest_path else None,
            "newest_at": _iso(self.newest_at),
            "newest_age_s": int(self.age.total_seconds()) if self.age is not None else None,
            "schedule": self.scheduled or None,
            "max_age_hours": self.max_age_hours,
            "watching_since": _iso(self.watching_since),
            "stale": self.stale,
            "warning": self.warning(),
        }


def backup_age(
    now: datetime,
    newest_path: Path | None,
    newest_at: datetime | None,
    scheduled: str,
    max_age_hours: int,
    watching_since: datetime | None,
) -> BackupAge:
    """The decision, pure: stale when backups are scheduled and the newest backup (or, when there
    is none, the start of the watch) is more than `max_age_hours` old."""
    age = now - newest_at if newest_at is not None else None
    reference = newest_at if newest_at is not None else watching_since
    limit = timedelta(hours=max_age_hours)
    stale = bool(scheduled) and reference is not None and now - reference > limit
    episode = None
    if stale:
        episode = newest_path.name if newest_path is not None else f"none since {_iso(reference)}"
    return BackupAge(
        newest_path, newest_at, age, scheduled, max_age_hours, watching_since, stale, episode
    )


def current(settings: Settings, now: datetime) -> BackupAge:
    """The newest backup in BACKUP_DIR and its verdict (reads only: status uses it)."""
    from ingest.backup import newest_backup

    newest = newest_backup(settings.backup_dir) if settings.backup_dir.is_dir() else None
    return backup_age(
        now,
        newest.path if newest else None,
        newest.created_at if newest else None,
        settings.backup_schedule,
        settings.backup_max_age_hours,
        watching_since(settings.run_dir),
    )


def watch(settings: Settings, now: datetime | None = None) -> BackupAge | None:
    """What a cycle does at its end when backups are scheduled: the watch starts (once), and a
    stale newest backup is one `warning:` line each cycle and one alert per episode. Never
    raises: a problem here is a `warning:` line, the cycle's outcome stands."""
    if not settings.backup_schedule:
        return None
    now = now or datetime.now(UTC)
    try:
        path = settings.run_dir / WATCH_FILE
        if not path.exists():
            path.write_text(_iso(now) + "\n")
        verdict = current(settings, now)
        if verdict.stale and verdict.episode:
            text = verdict.warning() or ""
            logger.info("warning: %s", text)
            notify_once(settings, AGE_TOPIC, verdict.episode, f"backups are too old: {text}")
        return verdict
    except Exception as exc:  # noqa: BLE001 - never the cycle's failure
        logger.info(
            "warning: the backup age check failed (%s: %s); the cycle's outcome stands",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
        )
        return None


def backup_finished(settings: Settings, error: str | None, archive: Path | None = None) -> None:
    """What `coincap-elt backup` reports at its end: `error` (its one line) when it failed, else
    the archive written. One alert when backups start failing, one when they work again."""
    if error:
        announce_change(settings, STATE_TOPIC, "failed", f"a backup failed. {error}")
    else:
        made = f": {archive.name}" if archive is not None else ""
        announce_change(settings, STATE_TOPIC, "ok", f"backups work again{made}")


def watching_since(run_dir: Path) -> datetime | None:
    try:
        return datetime.fromisoformat((run_dir / WATCH_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hours(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours} h" if hours < 48 else f"{hours // 24} d {hours % 24} h"
