"""What the ingest hands to the cycle's run log (ingest/runlog.py), in memory: filled while the
ingest runs, closed when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IngestSummary:
    rows_loaded: int = 0
    coincap_requests: int = 0  # every attempt, retries included
    coincap_credits: int = 0  # what those attempts cost (ingest/coincap/helpers.py, credits_for)
    pending_packages_loaded: int = 0
    load_ids: list[str] = field(default_factory=list)
    error: str | None = None
    quota_exhausted: bool = False  # CoinCap's credits are used up (ingest/quota.py)
    meter: Any = field(default=None, repr=False)  # the client's Meter, read when closing

    def close(self) -> None:
        """Takes the request and credit counts from the client's meter, once the ingest ended."""
        if self.meter is not None:
            self.coincap_requests, self.coincap_credits = self.meter.requests, self.meter.credits
