"""CoinCap's quota: rate limited is not the same as used up.

A 429 whose text says the plan's credits are used up, or a 429 that lasts through one cycle's
retries and into the next cycle's first request, means the monthly quota is exhausted: retrying
would only burn calls. Then every cycle sends at most one probe request, and only when the pause
since the last probe has passed: 15 minutes, doubling up to 6 hours. The first answer that is not
a 429 ends it. The state lives in $COINCAP_RUN_DIR/coincap_quota.json (beside the alert state).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.coincap.helpers import CoinCapError, CoinCapQuotaError, CoinCapUnavailableError
from ingest.coincap.settings import MAX_ATTEMPTS, QUOTA_FIRST_PAUSE_S, QUOTA_MAX_PAUSE_S

logger = logging.getLogger("ingest")

STATE_FILE = "coincap_quota.json"
OK, RATE_LIMITED, EXHAUSTED = "ok", "rate_limited", "exhausted"


@dataclass
class Quota:
    state: str = OK
    since: str = ""  # when CoinCap first answered 429 (ISO-8601 UTC)
    pause_s: int = 0  # the current pause between probes while exhausted
    next_probe_ms: int = 0  # no request before this time (ms since the epoch, this machine's clock)

    @classmethod
    def load(cls, run_dir: Path) -> Quota:
        try:
            data = json.loads((run_dir / STATE_FILE).read_text())
            quota = cls(**{k: data[k] for k in ("state", "since", "pause_s", "next_probe_ms")})
        except (OSError, ValueError, KeyError, TypeError):
            return cls()
        return quota if quota.state in (OK, RATE_LIMITED, EXHAUSTED) else cls()

    def save(self, run_dir: Path) -> None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            tmp = run_dir / f".{STATE_FILE}.tmp"
            tmp.write_text(json.dumps(asdict(self)) + "\n")
            tmp.replace(run_dir / STATE_FILE)
        except OSError as exc:
            logger.warning("the CoinCap quota state was not saved in %s: %s", run_dir, exc)

    def attempts(self, now_ms: int | None = None) -> int:
        """How many attempts this cycle's requests get: one probe after a 429 that persisted,
        the normal retries otherwise. Raises CoinCapQuotaError when no request may be sent."""
        now_ms = now_ms if now_ms is not None else _now_ms()
        if self.state == EXHAUSTED and now_ms < self.next_probe_ms:
            raise CoinCapQuotaError(
                f"CoinCap's credits are used up (HTTP 429 since {self.since}); this cycle sends "
                f"no request, the next probe is at {_iso(self.next_probe_ms)} (pauses double up "
                "to 6 h); new figures wait until the plan renews or is upgraded at "
                "https://pro.coincap.io/dashboard, nothing else is lost",
                429,
            )
        return 1 if self.state in (RATE_LIMITED, EXHAUSTED) else MAX_ATTEMPTS

    def after(self, error: CoinCapError | None, now_ms: int | None = None) -> str | None:
        """The state after a cycle that ended with `error` (the last 429/5xx/unreachable of the
        cycle, or None when CoinCap answered). Returns the error line when the quota is now
        taken as exhausted, else None."""
        now_ms = now_ms if now_ms is not None else _now_ms()
        status = getattr(error, "status", None)
        said_quota = isinstance(error, CoinCapQuotaError)
        if status != 429:
            if isinstance(error, CoinCapUnavailableError) and self.state == EXHAUSTED:
                # a probe that met an outage, not an answer: the pause stays as it is
                self.next_probe_ms = now_ms + self.pause_s * 1000
                return None
            if self.state == EXHAUSTED:
                logger.info("CoinCap answers again; its quota was used up since %s", self.since)
            self.__init__()  # type: ignore[misc]
            return None
        if not said_quota and self.state == OK:
            self.state, self.since = RATE_LIMITED, _iso(now_ms)
            return None
        first = self.state != EXHAUSTED
        self.pause_s = QUOTA_FIRST_PAUSE_S if first else min(2 * self.pause_s, QUOTA_MAX_PAUSE_S)
        self.since = self.since or _iso(now_ms)
        self.state, self.next_probe_ms = EXHAUSTED, now_ms + self.pause_s * 1000
        why = (
            "says the plan's credits are used up"
            if said_quota
            else (
                f"has answered HTTP 429 since {self.since}, through a cycle's retries and into "
                "this one"
            )
        )
        return (
            f"CoinCap {why}: taken as the monthly quota exhausted; cycles now send at most one "
            f"probe request, the next at {_iso(self.next_probe_ms)} (pauses double up to 6 h), "
            "until CoinCap answers again; check the plan at https://pro.coincap.io/dashboard"
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
