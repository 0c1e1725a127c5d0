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
with history. `coincap-elt status` shows the same findings.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
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
def missing_finding(
    asset_id: str, last_seen: datetime | None, answers_after: list[datetime]
) -> Finding | None:
    """`answers_after`: the first CoinCap answers (oldest first, up to MISSING_SNAPSHOTS) after
    the asset's newest row, all answers when it never had one."""
    if len(answers_after) < MISSING_SNAPSHOTS:
        return None
    since = _utc(answers_after[0])
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
def find(query: Query, asset_ids: tuple[str, ...]) -> list[Finding]:
    """Every current finding for the configured assets, by check then asset."""
    if not _relations_exist(query):
        return []
    findings: list[Finding] = []
    for asset_id in asset_ids:
        last_ms = query("select max(coincap_timestamp) from raw.assets where id = %s", asset_id)
        last_ms = last_ms[0][0] if last_ms else None
        # by the loaded-at expression: PostgreSQL reads its index (macros/indexes.sql) in order
        answers = query(
            "select distinct to_timestamp(coincap_timestamp / 1000.0) as answered_at "
            "from raw.assets where to_timestamp(coincap_timestamp / 1000.0) "
            "> to_timestamp(%s / 1000.0) "
            f"order by answered_at limit {MISSING_SNAPSHOTS}",
            -1 if last_ms is None else int(last_ms),
        )
        last_seen = None if last_ms is None else datetime.fromtimestamp(last_ms / 1000, UTC)
        findings.append(missing_finding(asset_id, last_seen, [row[0] for row in answers]))
    for asset_id in asset_ids:
        findings.append(_frozen(query, asset_id))
    for asset_id in asset_ids:
        rows = query(
            "select price_at, price_change_pct_5m from marts.fct_asset_price_history "
            "where asset_id = %s and is_large_price_move "
            "and price_at > (select max(price_at) from marts.fct_asset_price_history) - "
            f"interval '{int(MOVE_WINDOW.total_seconds() // 60)} minutes' order by price_at",
            asset_id,
        )
        findings.append(move_finding(asset_id, [(row[0], row[1]) for row in rows]))
    order = {"missing": 0, "frozen": 1, "price_move": 2}
    found = [finding for finding in findings if finding is not None]
    return sorted(found, key=lambda f: order[f.check])


def _frozen(query: Query, asset_id: str) -> Finding | None:
    figures = ", ".join(FIGURES)
    different = " or ".join(f"earlier.{name} is distinct from latest.{name}" for name in FIGURES)
    rows = query(
        f"with latest as (select asset_id, observed_at, {figures} from marts.fct_asset_prices "
        "where asset_id = %s order by observed_at desc limit 1) "
        "select latest.observed_at, (select max(earlier.observed_at) "
        "from marts.fct_asset_prices as earlier where earlier.asset_id = latest.asset_id "
        f"and earlier.observed_at < latest.observed_at and ({different})) from latest",
        asset_id,
    )
    if not rows:
        return None
    latest, changed_at = rows[0]
    after = "" if changed_at is None else "and observed_at > %s"
    since = query(
        f"select min(observed_at) from marts.fct_asset_prices where asset_id = %s {after}",
        *((asset_id,) if changed_at is None else (asset_id, changed_at)),
    )[0][0]
    return frozen_finding(asset_id, latest, since)


def _relations_exist(query: Query) -> bool:
    rows = query(
        "select table_schema, table_name from information_schema.tables "
        "where table_schema in ('raw', 'marts')"
    )
    return set(RELATIONS) <= {f"{schema}.{name}" for schema, name in rows}


# --------------------------------------------------------------------------- the cycle's step
def check_after_build(settings: Settings) -> list[Finding]:
    """The cycle's step after a good build: each finding a `warning:` line, and its alert once
    per episode. Never raises: a check that cannot run is one warning, the cycle goes on."""
    from ingest.alerts import notify_once

    try:
        with _cycle_reader(settings) as query:
            findings = find(query, settings.asset_ids)
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


@contextmanager
def _cycle_reader(settings: Settings) -> Iterator[Query]:
    """The warehouse reader, in the cycle's process. DuckDB refuses a read-only connection to a
    file this process (dbt, dlt) holds open read-write: there it is an ordinary connection, which
    only reads."""
    warehouse = settings.warehouse
    if warehouse.engine != "duckdb":
        with warehouse.reader("coincap-elt quality") as query:
            yield query
        return
    import duckdb

    conn = duckdb.connect(str(warehouse.duckdb_path))
    try:
        yield lambda sql, *params: conn.execute(sql.replace("%s", "?"), params).fetchall()
    finally:
        conn.close()


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def _iso(when: datetime | Any) -> str:
    return _utc(when).isoformat(timespec="seconds").replace("+00:00", "Z")
