"""ingest/backup_watch.py's decisions in-process: when the newest backup is too old (only when
backups are scheduled; with none, counted from the start of the watch), which episode one alert is
for, and the backup's own failed/ok alert as a state change (a local webhook receiver)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devkit.webhook import WebhookReceiver
from ingest.alerts import hide
from ingest.backup_watch import STATE_TOPIC, backup_age, backup_finished
from ingest.config import Settings

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
ARCHIVE = Path("/var/lib/coincap/backups/coincap-postgres-20261204T033000Z.tar.gz")
MADE = datetime(2026, 12, 4, 3, 30, tzinfo=UTC)  # 32 h 30 min before NOW
DAILY = "32 3 * * *"


def verdict(newest_at, scheduled=DAILY, max_age=36, since=None, path=ARCHIVE):
    return backup_age(NOW, path if newest_at else None, newest_at, scheduled, max_age, since)


# --------------------------------------------------------------------------- the age decision
def test_a_backup_within_the_limit_is_fresh() -> None:
    fresh = verdict(MADE)
    assert not fresh.stale and fresh.episode is None and fresh.warning() is None
    assert fresh.age == timedelta(hours=32, minutes=30)
    assert fresh.as_json() == {
        "newest_path": str(ARCHIVE),
        "newest_at": "2026-12-04T03:30:00Z",
        "newest_age_s": 117000,
        "schedule": DAILY,
        "max_age_hours": 36,
        "watching_since": None,
        "stale": False,
        "warning": None,
    }


def test_a_backup_older_than_the_limit_is_stale_and_its_name_is_the_episode() -> None:
    stale = verdict(MADE, max_age=30)
    assert stale.stale and stale.episode == ARCHIVE.name
    assert stale.warning() == (
        f"the newest backup, {ARCHIVE.name}, is 32 h old (BACKUP_MAX_AGE_HOURS is 30); "
        "check `docker compose logs runpipeline` for the backup's error"
    )
    # exactly at the limit is still fresh; a second over it is not
    assert not backup_age(NOW, ARCHIVE, NOW - timedelta(hours=36), DAILY, 36, None).stale
    assert backup_age(NOW, ARCHIVE, NOW - timedelta(hours=36, seconds=1), DAILY, 36, None).stale


def test_the_same_old_backup_is_one_episode_and_a_newer_one_ends_it() -> None:
    day_later = backup_age(NOW + timedelta(days=1), ARCHIVE, MADE, DAILY, 30, None)
    assert day_later.episode == verdict(MADE, max_age=30).episode  # no second alert
    newer = ARCHIVE.with_name("coincap-postgres-20261205T033000Z.tar.gz")
    assert not backup_age(NOW, newer, NOW - timedelta(hours=8), DAILY, 30, None).stale


def test_without_a_schedule_nothing_is_ever_stale() -> None:
    ancient = verdict(MADE - timedelta(days=300), scheduled="")
    assert not ancient.stale and ancient.warning() is None
    assert ancient.as_json()["schedule"] is None
    assert not verdict(None, scheduled="", since=NOW - timedelta(days=30)).stale


def test_with_no_backup_the_age_counts_from_the_start_of_the_watch() -> None:
    assert not verdict(None, since=None).stale  # the first cycle starts the watch
    assert not verdict(None, since=NOW - timedelta(hours=20)).stale
    since = NOW - timedelta(hours=40)
    none = verdict(None, since=since)
    assert none.stale and none.episode == "none since 2026-12-03T20:00:00Z"
    assert none.age is None and none.as_json()["newest_path"] is None
    assert none.warning() == (
        "no backup yet, and backups are scheduled ('32 3 * * *') and watched since "
        "2026-12-03T20:00:00Z, more than 36 h ago (BACKUP_MAX_AGE_HOURS is 36); "
        "check `docker compose logs runpipeline` for the backup's error"
    )


# --------------------------------------------------------------------------- failed / ok
@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def settings_for(run_dir: Path, url: str) -> Settings:
    return Settings.from_env({"COINCAP_RUN_DIR": str(run_dir), "ALERT_WEBHOOK_URL": url})


def test_failed_backups_alert_once_and_the_next_good_one_says_so(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    hide(("pg-secret-99",))
    try:
        settings = settings_for(tmp_path, webhook.url)
        backup_finished(settings, None, ARCHIVE)  # ok after ok: nothing to say
        assert webhook.posts == []
        backup_finished(settings, "pg_dump: connection refused (password pg-secret-99)")
        backup_finished(settings, "pg_dump: connection refused again")
        (failed,) = webhook.delivered()
        assert failed.startswith(":red_circle: CoinCap ELT (duckdb on ")
        assert failed.endswith(": a backup failed. pg_dump: connection refused (password ***)")
        state = json.loads((tmp_path / f"alert_state_{STATE_TOPIC}").read_text())
        assert state["state"] == "failed"
        backup_finished(settings, None, ARCHIVE)
        backup_finished(settings, None, ARCHIVE)
        assert len(webhook.delivered()) == 2
        recovered = webhook.delivered()[1]
        assert f": backups work again: {ARCHIVE.name} (was failed since " in recovered
        assert recovered.startswith(":large_green_circle: ")
    finally:
        hide(())


def test_an_undelivered_backup_alert_is_tried_again_next_time(
    tmp_path: Path, webhook: WebhookReceiver
) -> None:
    settings = settings_for(tmp_path, webhook.url)
    webhook.status = 500
    backup_finished(settings, "disk full")
    assert len(webhook.posts) == 1 and webhook.delivered() == []
    assert not (tmp_path / f"alert_state_{STATE_TOPIC}").exists()
    webhook.status = 200
    backup_finished(settings, "disk full")
    assert webhook.delivered() == [webhook.delivered()[0]] and "disk full" in webhook.delivered()[0]


def test_without_a_webhook_the_backup_state_is_only_remembered(tmp_path: Path) -> None:
    backup_finished(settings_for(tmp_path, ""), "disk full")
    assert json.loads((tmp_path / "alert_state_backup").read_text())["state"] == "failed"
