"""Data-quality warnings on CoinCap's answers, checked in the warehouse after each good build.

Three checks, each per configured asset (COINCAP_ASSET_IDS), each a `warning:` line in the
cycle's log and one alert per episode (`notify_once`, the episode's start as its period: the
same episode never alerts twice, a new one alerts again). None fails the cycle.

- missing: the asset is in none of CoinCap's last MISSING_SNAPSHOTS answers (raw.assets, rows
  held back by staging count as answered). The episode starts at the first answer without it.
- frozen: every CoinCap figure of the asset (price, market cap, 24 h volume, supply, VWAP,
  24 h change) is identical across its snapshots of at least the last FROZEN_AFTER of CoinCap's
  clock (marts.fct_asset_prices). The episode starts at the first snapshot with those figures.
- price move: a 5-minute slot of marts.fct_asset_price_history flagged `is_large_price_move`
  (dbt computes the flag with PRICE_MOVE_ALERT_PCT; the row stays in the mart) within the newest
  MOVE_WINDOW of the series. The episode starts at the asset's first flagged slot in that window:
  a spike (up, then down) is one alert.

They read the warehouse, not the run directory: history across cycles is there, and it survives
a restart, a new container or a restore. Each is a few index look-ups per asset (PostgreSQL:
raw's (id, coincap_timestamp) and loaded-at indexes, the marts' keys), so the cost does not grow
with history (on Spark, without indexes, each reads the tables' Parquet files: the cost grows
with raw's files). `coincap-elt status` shows the same findings.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ingest.logs import first_line

if TYPE_CHECKING:
    from ingest.config import Settings
    from ingest.warehouse import Query

logger = logging.getLogger("ingest.quality")

MISSING_SNAPSHOTS = 3
FROZEN_AFTER = timedelta(minutes=60)
MOVE_WINDOW = timedelta(minutes=60)
# how far back (CoinCap's clock) the frozen check looks for an asset's latest snapshot
RECENT = timedelta(days=1)
# what the checks read; without one of them (before the first build) they find nothing
RELATIONS = ("raw.assets", "marts.fct_asset_prices", "marts.fct_asset_price_history")
FIGURES = (
    "price_usd",
    "market_cap_usd",
    "volume_usd_24h",
    "supply",
    "vwap_24h",
    "change_percent_24h",
)


@dataclass(frozen=True)
class Finding:
    check: str  # missing | frozen | price_move
    asset_id: str
    since: datetime  # the episode's start (UTC): the alert's period
    text: str  # one line, naming the asset

    @property
    def topic(self) -> str:
        """notify_once's topic: one per check and asset (a state file each in the run dir)."""
        return f"quality_{self.check}_{re.sub(r'[^a-z0-9-]', '_', self.asset_id.lower())}"

    @property
    def period(self) -> str:
        return self.since.isoformat()

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "asset_id": self.asset_id,
            "since": _iso(self.since),
            "text": self.text,
        }


# --------------------------------------------------------------------------- the decisions
def missing_finding(asset_id: str, last_seen: datetime | None, since: datetime) -> Finding:
    """The asset is in none of CoinCap's last MISSING_SNAPSHOTS answers: `since` is the first
    answer after its newest row (`last_seen`; the first answer of all when it never had one)."""
    since = _utc(since)
    if last_seen is None:  # the episode still starts at the first answer: a stable period
        when = "every CoinCap answer so far (never in the warehouse)"
    else:
        when = (
            f"CoinCap's answers since {_iso(since)} ({MISSING_SNAPSHOTS} snapshots in a row or "
            f"more; last seen {_iso(last_seen)})"
        )
    return Finding(
        "missing",
        asset_id,
        since,
        f"{asset_id} is missing from {when}; check COINCAP_ASSET_IDS "
        "against https://rest.coincap.io/v3/assets (ids change now and then)",
    )


def frozen_finding(asset_id: str, latest: datetime, unchanged_since: datetime) -> Finding | None:
    """`unchanged_since`: the first snapshot with the same figures as the `latest` one, with no
    other figures between them."""
    latest, since = _utc(latest), _utc(unchanged_since)
    if latest - since < FROZEN_AFTER:
        return None
    minutes = int((latest - since).total_seconds() // 60)
    return Finding(
        "frozen",
        asset_id,
        since,
        f"{asset_id}'s CoinCap figures (price, market cap, volume, supply, VWAP, change %) have "
        f"not changed since {_iso(since)} ({minutes} min of CoinCap's time, to {_iso(latest)}); "
        "CoinCap may have stopped updating it: compare with another source",
    )


def move_finding(asset_id: str, moves: list[tuple[datetime, Decimal | None]]) -> Finding | None:
    """`moves`: the asset's flagged slots in the window, (price_at, percent), oldest first."""
    if not moves:
        return None
    since = _utc(moves[0][0])
    pct = max(moves, key=lambda move: abs(move[1] or 0))[1]
    size = f"{float(pct):+.1f} %" if pct is not None else "a large move"
    more = f", {len(moves)} flagged slots" if len(moves) > 1 else ""
    return Finding(
        "price_move",
        asset_id,
        since,
        f"{asset_id}'s price moved {size} in 5 minutes at {_iso(since)}{more} (more than "
        "PRICE_MOVE_ALERT_PCT); the rows stay in marts.fct_asset_price_history with "
        "is_large_price_move = true: check them against another source",
    )


# --------------------------------------------------------------------------- the warehouse
# Each query names its time both ways: the plain column lets DuckDB skip old row groups (their
# min/max), the loaded-at expression lets PostgreSQL use its index (macros/indexes.sql). So the
# cost stays flat as history grows; only an asset already found missing or frozen costs a look
# further back, to find where its episode started.
ANSWERED_AT = "to_timestamp(coincap_timestamp / 1000.0)"


def find(query: Query, asset_ids: tuple[str, ...], existing: set[str]) -> list[Finding]:
    """Every current finding for the configured assets, by check then asset. `existing`: the
    relations of the warehouse (Warehouse.relations), which must hold RELATIONS."""
    if not set(RELATIONS) <= existing:
        return []
    findings: list[Finding | None] = []
    newest = [
        row[0]
        for row in query(
            f"select distinct {ANSWERED_AT} as answered_at from raw.assets "
            f"order by answered_at desc limit {MISSING_SNAPSHOTS}"
        )
    ]
    for asset_id in asset_ids:
        findings.append(_missing(query, asset_id, newest))
    newest_observed = query("select max(observed_at) from marts.fct_asset_prices")[0][0]
    if newest_observed is not None:
        for asset_id in asset_ids:
            findings.append(_frozen(query, asset_id, newest_observed - RECENT))
    newest_slot = query("select max(price_at) from marts.fct_asset_price_history")[0][0]
    if newest_slot is not None:
        for asset_id in asset_ids:
            rows = query(
                "select price_at, price_change_pct_5m from marts.fct_asset_price_history "
                "where asset_id = %s and price_at > %s and is_large_price_move order by price_at",
                asset_id,
                newest_slot - MOVE_WINDOW,
            )
            findings.append(move_finding(asset_id, [(row[0], row[1]) for row in rows]))
    order = {"missing": 0, "frozen": 1, "price_move": 2}
    found = [finding for finding in findings if finding is not None]
    return sorted(found, key=lambda f: order[f.check])


def _missing(query: Query, asset_id: str, newest: list[datetime]) -> Finding | None:
    if len(newest) < MISSING_SNAPSHOTS:
        return None
    oldest_ms = _ms(newest[-1])
    in_newest = query(
        "select 1 from raw.assets where id = %s and coincap_timestamp >= %s limit 1",
        asset_id,
        oldest_ms,
    )
    if in_newest:
        return None
    last_ms = query("select max(coincap_timestamp) from raw.assets where id = %s", asset_id)[0][0]
    after = -1 if last_ms is None else int(last_ms)
    since = query(
        f"select min({ANSWERED_AT}) from raw.assets where coincap_timestamp > %s "
        f"and {ANSWERED_AT} > to_timestamp(%s / 1000.0)",
        after,
        after,
    )[0][0]
    last_seen = None if last_ms is None else datetime.fromtimestamp(int(last_ms) / 1000, UTC)
    return missing_finding(asset_id, last_seen, since)


def _frozen(query: Query, asset_id: str, recent_from: datetime) -> Finding | None:
    """Only assets with a snapshot in the last RECENT of CoinCap's clock (a missing one is the
    other check's)."""
    figures = ", ".join(FIGURES)
    latest = query(
        "select max(observed_at) from marts.fct_asset_prices "
        "where asset_id = %s and observed_at >= %s",
        asset_id,
        recent_from,
    )[0][0]
    if latest is None:
        return None
    # the newest snapshot at least FROZEN_AFTER before the latest: frozen when it and every
    # snapshot after it have the latest's figures
    anchor = query(
        "select max(observed_at) from marts.fct_asset_prices "
        "where asset_id = %s and observed_at >= %s and observed_at <= %s",
        asset_id,
        recent_from,
        latest - FROZEN_AFTER,
    )[0][0]
    if anchor is None:
        return None
    rows = query(
        f"select {figures} from marts.fct_asset_prices "
        "where asset_id = %s and observed_at >= %s and observed_at <= %s",
        asset_id,
        anchor,
        latest,
    )
    if not unchanged(rows):
        return None
    # where the episode started: the first snapshot after the last one with other figures
    different = " or ".join(f"{name} is distinct from %s" for name in FIGURES)
    changed_at = query(
        "select max(observed_at) from marts.fct_asset_prices "
        f"where asset_id = %s and observed_at < %s and ({different})",
        asset_id,
        anchor,
        *rows[-1],
    )[0][0]
    since = query(
        "select min(observed_at) from marts.fct_asset_prices where asset_id = %s "
        + ("" if changed_at is None else "and observed_at > %s"),
        *((asset_id,) if changed_at is None else (asset_id, changed_at)),
    )[0][0]
    return frozen_finding(asset_id, latest, since)


def unchanged(rows: list[tuple[Any, ...]]) -> bool:
    """Whether the snapshots' figures (rows of FIGURES) are all the same, and there are two."""
    return len(rows) >= 2 and len(set(rows)) == 1


# --------------------------------------------------------------------------- the cycle's step
def check_after_build(settings: Settings) -> list[Finding]:
    """The cycle's step after a good build: each finding a `warning:` line, and its alert once
    per episode. Never raises: a check that cannot run is one warning, the cycle goes on."""
    from ingest.alerts import notify_once

    warehouse = settings.warehouse
    try:
        with warehouse.cycle_reader("coincap-elt quality") as query:
            existing = warehouse.relations(query, ("raw", "marts"))
            findings = find(query, settings.asset_ids, existing)
    except Exception as exc:  # noqa: BLE001 - the data-quality checks never fail a cycle
        logger.warning(
            "the data-quality checks could not run (%s: %s); the cycle's outcome stands",
            type(exc).__name__,
            first_line(exc)[:200],
        )
        return []
    for finding in findings:
        logger.warning("data quality: %s", finding.text)
        notify_once(settings, finding.topic, finding.period, f"data quality: {finding.text}")
    return findings


def _ms(when: datetime) -> int:
    return round(_utc(when).timestamp() * 1000)


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _iso(when: datetime | Any) -> str:
    return _utc(when).isoformat(timespec="seconds").replace("+00:00", "Z")
