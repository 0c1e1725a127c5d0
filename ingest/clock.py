"""CoinCap's clock against this machine's: a difference is a warning, not a failed cycle.

CoinCap's `timestamp` decides the observation times and the gaps, so a host clock that is off
neither invents nor hides a gap. What a cycle accepts is one definition (MAX_CLOCK_SKEW_MS in
ingest/coincap/settings.py, 24 hours, which dbt's `not_in_future` tests get too); beyond it the
answer fails the cycle. Within it, CoinCap's clock more than CLOCK_SKEW_WARNING_MS (2 minutes)
ahead of this machine's is one `warning:` line per cycle and one alert per episode (an episode
lasts until a cycle finds the clocks within the bound again; its start is kept in
$COINCAP_RUN_DIR/clock_skew). Only ahead: a figure cannot come from the future, so only a clock
can put it there, while a `timestamp` behind is also what stale figures look like, which
`dbt source freshness` reports (the `stale` alert).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ingest.alerts import notify_once
from ingest.coincap.settings import CLOCK_SKEW_WARNING_MS, MAX_CLOCK_SKEW_MS

if TYPE_CHECKING:
    from ingest.config import Settings

logger = logging.getLogger("ingest")

EPISODE_FILE = "clock_skew"
TOPIC = "clock_skew"


def skew_warning(skew_ms: int | None, host_ms: int) -> str | None:
    """The warning for CoinCap's clock `skew_ms` ahead of this machine's (negative: behind), or
    None when there is nothing to say."""
    if skew_ms is None or skew_ms <= CLOCK_SKEW_WARNING_MS:
        return None
    return (
        f"CoinCap's clock is {skew_ms / 60_000:.1f} min ahead of this machine's "
        f"(CoinCap {_iso(host_ms + skew_ms)}, this machine {_iso(host_ms)}): this machine's "
        "clock is most likely behind. Fix it (NTP: `timedatectl set-ntp true`, chrony or ntpd). "
        "Cycles go on meanwhile: CoinCap's clock decides observation times and gaps, and "
        f"answers up to {MAX_CLOCK_SKEW_MS // 3_600_000} h apart are accepted"
    )


def report_clock_skew(settings: Settings, skew_ms: int | None) -> None:
    """After the cycle's requests: the warning line, and one alert per episode."""
    host_ms = int(time.time() * 1000)
    text = skew_warning(skew_ms, host_ms)
    path = settings.run_dir / EPISODE_FILE
    try:
        if text is None:
            if skew_ms is not None and path.exists():
                path.unlink()
                logger.info("CoinCap's clock and this machine's agree again")
            return
        logger.warning("%s", text)
        if not path.exists():
            path.write_text(_iso(host_ms) + "\n")
        episode = path.read_text().strip()
    except OSError as exc:  # the run directory is checked elsewhere; the warning was printed
        logger.info("the clock episode could not be recorded in %s (%s)", path, exc)
        return
    notify_once(settings, TOPIC, episode, f"{text} (since {episode}).")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
