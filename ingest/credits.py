"""CoinCap credits over a UTC month, from the run log's rows: what was used and where the month
ends at the recent pace. One definition for the cycle's `credits:` line (ingest/runlog.py) and
`coincap-elt status` (ingest/status.py), so the two never disagree.

The caller reads the rows (RUNS_SQL, with `since(now)`) through whatever connection it has;
`month_credits` only computes, so it needs no warehouse to be checked.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# the run log's rows the computation needs, oldest first; `{table}` is the run log, %s `since`
RUNS_SQL = (
    "select started_at, coincap_credits from {table} where started_at >= %s order by started_at"
)
PACE_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class MonthCredits:
    month: str  # the UTC month, "2026-05"
    used: int  # credits recorded by this month's cycles
    projected: int  # at month end, at the last 24 hours' pace (= used without a pace)
    has_pace: bool  # the last 24 hours hold cycles with credits at two different times: a pace


def since(now: datetime) -> datetime:
    """The oldest `started_at` that `month_credits` needs: the month's start, or a day ago early
    in a month (the pace looks back 24 hours, across the month boundary)."""
    return min(_month_start(now), now - PACE_WINDOW)


def month_credits(now: datetime, runs: Iterable[tuple[datetime, int | None]]) -> MonthCredits:
    """Credits used this UTC month, and the month-end projection: the month so far plus, for the
    hours left, the pace of the last 24 hours' cycles (their median credits per cycle times their
    cycles per hour). A one-off backfill therefore counts once, not as the pace of the month.

    `runs` are (started_at, coincap_credits) rows since `since(now)`; credits are null for
    cycles recorded before credits were counted.
    """
    runs = list(runs)
    month_start = _month_start(now)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    used = sum(int(spent or 0) for started, spent in runs if started >= month_start)
    recent = sorted(
        (started, int(spent))
        for started, spent in runs
        if started >= now - PACE_WINDOW and spent is not None
    )
    projected = used
    span_h = (recent[-1][0] - recent[0][0]).total_seconds() / 3600 if len(recent) >= 2 else 0
    if span_h > 0:
        per_cycle = statistics.median(spent for _, spent in recent)
        cycles_per_hour = (len(recent) - 1) / span_h
        hours_left = (next_month - now).total_seconds() / 3600
        # rounded, not truncated: float error must not lose a credit (12,099.999 is 12,100)
        projected = round(used + per_cycle * cycles_per_hour * hours_left)
    return MonthCredits(now.strftime("%Y-%m"), used, projected, span_h > 0)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
