"""What `python -m ingest` hands to the cycle's run log (`python -m ingest.runlog`): filled while
the ingest runs, saved as $COINCAP_RUN_DIR/ingest_summary.json when it ends."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("ingest")

SUMMARY_FILE = "ingest_summary.json"


@dataclass
class IngestSummary:
    rows_loaded: int = 0
    coincap_requests: int = 0  # every attempt, retries included
    coincap_credits: int = 0  # what those attempts cost (ingest/coincap/helpers.py, credits_for)
    pending_packages_loaded: int = 0
    load_ids: list[str] = field(default_factory=list)
    error: str | None = None
    quota_exhausted: bool = False  # CoinCap's credits are used up (ingest/quota.py)
    meter: Any = field(default=None, repr=False)  # the client's Meter, read when saving

    def save(self) -> None:
        """Writes the summary to $COINCAP_RUN_DIR (set by scripts/run_pipeline.sh), if set."""
        run_dir = os.environ.get("COINCAP_RUN_DIR", "").strip()
        if not run_dir:
            return
        if self.meter is not None:
            self.coincap_requests, self.coincap_credits = self.meter.requests, self.meter.credits
        data = {
            "rows_loaded": self.rows_loaded,
            "coincap_requests": self.coincap_requests,
            "coincap_credits": self.coincap_credits,
            "pending_packages_loaded": self.pending_packages_loaded,
            "load_ids": self.load_ids,
            "error": self.error,
            "quota_exhausted": self.quota_exhausted,
        }
        try:
            path = Path(run_dir) / SUMMARY_FILE
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data) + "\n")
            tmp.replace(path)
        except OSError as exc:
            logger.warning("the ingest summary for the run log was not written: %s", exc)
