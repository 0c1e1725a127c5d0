"""The backup alerts end to end, through a local Slack-compatible webhook (devkit/webhook.py):
real cycles (`scripts/run_pipeline.sh`) on a real DuckDB warehouse, CoinCap faked.

- Without BACKUP_SCHEDULE an old backup is nobody's alarm: no warning, no alert.
- With it, a newest backup older than BACKUP_MAX_AGE_HOURS is a `warning:` line in every cycle
  and ONE alert over two cycles; the cycles exit 0; `coincap-elt status` shows the same warning.
- `coincap-elt backup` failing twice is one alert; the next one that works is one "backups work
  again", and the cycle after it finds the backups fresh: no warning, no alert.

The stale backup is an archive name 40 hours old in BACKUP_DIR: the age of a backup is read from
its name (ingest/backup.py's `list_backups` opens nothing), so its content does not matter here.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import Installation

from devkit.webhook import HOOK_SECRET, WebhookReceiver


def test_a_stale_backup_is_one_alert_over_two_cycles(tmp_path: Path) -> None:
    with (
        WebhookReceiver() as hook,
        Installation.create(
            "duckdb",
            tmp_path,
            asset_ids=["bitcoin"],
            settings={
                "ALERT_WEBHOOK_URL": hook.url,
                "BACKUP_SCHEDULE": "32 3 * * *",
                "BACKUP_MAX_AGE_HOURS": "36",
            },
        ) as inst,
    ):
        backups = Path(inst.env()["BACKUP_DIR"])
        backups.mkdir()
        made = datetime.now(UTC) - timedelta(hours=40)
        name = f"coincap-duckdb-{made:%Y%m%dT%H%M%SZ}.tar.gz"
        (backups / name).write_bytes(b"an archive 40 hours old")

        # not scheduled (a laptop): nothing said, nothing sent
        quiet = inst.good_cycle(BACKUP_SCHEDULE=None)
        assert not quiet.lines_with("run_pipeline:", "backup"), quiet.describe()
        assert hook.posts == []

        # scheduled: a warning each cycle, one alert over two cycles, both cycles exit 0
        first = inst.good_cycle()
        second = inst.good_cycle()
        warning = (
            f"warning: the newest backup, {name}, is 40 h old (BACKUP_MAX_AGE_HOURS is 36); "
            "check `docker compose logs runpipeline` for the backup's error"
        )
        for cycle in (first, second):
            assert [
                line.split(" ", 2)[2] for line in cycle.lines_with("run_pipeline:", "backup")
            ] == [warning], cycle.describe()
        (alert,) = hook.delivered()
        assert alert.startswith(":warning: CoinCap ELT (duckdb on ")
        assert alert.endswith(f": backups are too old: {warning.removeprefix('warning: ')}")
        for cycle in (quiet, first, second):
            assert HOOK_SECRET not in cycle.output

        # status shows the newest backup and the same warning, and exits 0
        status = inst.command("status")
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        newest = [line for line in lines if line.startswith("Newest backup: ")]
        assert len(newest) == 1, status.stdout
        assert re.fullmatch(
            re.escape(f"Newest backup: {backups / name}, made {made:%Y-%m-%dT%H:%M:%SZ} (")
            + r"40 h \d min ago\); scheduled '32 3 \* \* \*' UTC, at most 36 h old",
            newest[0],
        ), newest[0]
        assert lines[lines.index(newest[0]) + 1] == warning
        report = json.loads(inst.command("status", "--json").stdout)["backup"]
        assert report["stale"] is True and report["newest_path"] == str(backups / name)
        assert 40 * 3600 <= report["newest_age_s"] < 40 * 3600 + 300

        # a backup that fails (BACKUP_DIR under a file), twice: one alert
        blocked = tmp_path / "not-a-directory"
        blocked.write_text("")
        for _ in range(2):
            failed = inst.command("backup", BACKUP_DIR=str(blocked / "backups"))
            assert failed.returncode == 1, failed.stdout + failed.stderr
            assert failed.stderr.splitlines()[-1].startswith("error: BACKUP_DIR "), failed.stderr
        assert len(hook.delivered()) == 2, hook.delivered()
        assert hook.delivered()[1].startswith(":red_circle: CoinCap ELT (duckdb on ")
        assert ": a backup failed. BACKUP_DIR " in hook.delivered()[1]
        assert "cannot be created (Not a directory)" in hook.delivered()[1]

        # the next backup that works: one "backups work again"; the next cycle finds it fresh
        good = inst.command("backup", timeout=300)
        assert good.returncode == 0, good.stdout + good.stderr
        archive = Path(good.stdout.strip().splitlines()[-1])
        assert archive.parent == backups and archive.name != name
        assert len(hook.delivered()) == 3, hook.delivered()
        assert hook.delivered()[2].startswith(":large_green_circle: CoinCap ELT (duckdb on ")
        assert f": backups work again: {archive.name} (was failed since " in hook.delivered()[2]
        fresh = inst.good_cycle()
        assert not fresh.lines_with("run_pipeline:", "backup"), fresh.describe()
        assert len(hook.delivered()) == 3, hook.delivered()
