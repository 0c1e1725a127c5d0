"""dlt source for the CoinCap v3 REST API (https://pro.coincap.io/api-docs)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import dlt
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from ingest.coincap.helpers import (
    CoinCapClient,
    CoinCapError,
    CoinCapNotFoundError,
    CoinCapResponseError,
    CoinCapUnavailableError,
    credits_for,
)
from ingest.coincap.settings import (
    ASSET_TEXT_FIELDS,
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_MAX_HISTORY_REQUESTS,
    HISTORY_INTERVAL,
    HISTORY_INTERVAL_MS,
    HISTORY_POINT_BYTES,
    HISTORY_TEXT_FIELDS,
    HISTORY_WINDOW_MS,
    TIMESTAMP_FIELD,
)

logger = logging.getLogger("ingest")

DAY_MS = 24 * 60 * 60 * 1000
REQUESTS_TABLE = "asset_history_requests"

ASSET_COLUMNS: TTableSchemaColumns = {
    **{field: {"data_type": "text", "nullable": True} for field in ASSET_TEXT_FIELDS},
    "id": {"data_type": "text", "nullable": False},
    TIMESTAMP_FIELD: {"data_type": "bigint", "nullable": False},
}
HISTORY_COLUMNS: TTableSchemaColumns = {
    "asset_id": {"data_type": "text", "nullable": False},
    "time": {"data_type": "bigint", "nullable": False},
    **{field: {"data_type": "text", "nullable": True} for field in HISTORY_TEXT_FIELDS},
    TIMESTAMP_FIELD: {"data_type": "bigint", "nullable": False},
}
# One row per history window the ingest decided on (dbt: known and pending holes in the series).
# outcome: fetched | not_found (CoinCap answered 400/404 for the asset: asked once, never again)
#          | failed (no usable answer: asked again next cycle) | deferred (over this cycle's
#          request budget, or not asked after a failure: asked in a later cycle)
REQUEST_COLUMNS: TTableSchemaColumns = {
    "asset_id": {"data_type": "text", "nullable": False},
    "window_start": {"data_type": "bigint", "nullable": False},
    "window_end": {"data_type": "bigint", "nullable": False},
    "outcome": {"data_type": "text", "nullable": False},
    "points": {"data_type": "bigint", "nullable": True},
    "coincap_credits": {"data_type": "bigint", "nullable": True},
    TIMESTAMP_FIELD: {"data_type": "bigint", "nullable": False},
}
# The history transformer writes two tables, so each gets its own hints (dlt "table variants"):
# hints on the decorator would be copied into both.
HISTORY_HINTS = dlt.mark.make_hints(
    table_name="asset_history",
    primary_key=("asset_id", "time"),
    write_disposition="merge",
    columns=HISTORY_COLUMNS,
)
REQUEST_HINTS = dlt.mark.make_hints(
    table_name=REQUESTS_TABLE, write_disposition="append", columns=REQUEST_COLUMNS
)


def history_hints(write_disposition: str = "merge") -> Any:
    """HISTORY_HINTS with the write disposition of the warehouse (Warehouse.raw_write_disposition:
    append where there is no merge, on Spark's plain Parquet)."""
    return (
        HISTORY_HINTS
        if write_disposition == "merge"
        else {
            **HISTORY_HINTS,
            "write_disposition": write_disposition,
        }
    )


# max_table_nesting=0 keeps nested values (`tokens`) as JSON in the row, exactly as sent,
# instead of unpacking them into child tables.
@dlt.source(name="coincap", max_table_nesting=0)
def coincap(
    client: CoinCapClient,
    asset_ids: Sequence[str],
    backfill_days: int = DEFAULT_BACKFILL_DAYS,
    series_ends: Mapping[str, int] | None = None,
    max_history_requests: int = DEFAULT_MAX_HISTORY_REQUESTS,
    write_disposition: str = "merge",
) -> tuple[DltResource, DltResource]:
    """CoinCap's current figures for `asset_ids` (one request for all of them) and the 5-minute
    history each asset lacks: `backfill_days` on the first run, the holes an outage left later,
    at most `max_history_requests` history requests per cycle.

    `series_ends` is, per asset, the end (ms) of the newest 5-minute slot that
    marts.fct_asset_price_history holds: dbt's own verdict on which figures were accepted. The
    caller builds the client from COINCAP_API_KEY and COINCAP_BASE_URL (ingest/config.py) and
    reads `client.meter` afterwards for the run log.

    `write_disposition` is the keyed tables' (raw.assets, raw.asset_history): merge, or append
    on a warehouse without merge (Spark), where staging keeps one row per key.
    """
    snapshot = assets(asset_ids, client)
    if write_disposition != "merge":
        snapshot.apply_hints(write_disposition=write_disposition)  # type: ignore[arg-type]
    history = asset_history(
        client,
        backfill_days,
        dict(series_ends or {}),
        max_history_requests,
        write_disposition,
    )
    return snapshot, snapshot | history


@dlt.resource(
    name="assets",
    primary_key=("id", TIMESTAMP_FIELD),
    write_disposition="merge",
    columns=ASSET_COLUMNS,
)
def assets(asset_ids: Sequence[str], client: CoinCapClient) -> Iterator[list[dict[str, Any]]]:
    """Every field of each asset as CoinCap sent it, plus the response's `timestamp`.

    Keyed by (asset id, CoinCap timestamp) and merged, so serving the same snapshot twice never
    doubles a row. Fields CoinCap adds later become new columns: the raw schema evolves. Numbers
    are kept as their text (CoinCap sends strings; a JSON number keeps the digits it was sent with).
    """
    body = _get_assets(client, asset_ids)
    rows = _asset_rows(body, asset_ids)
    logger.info(
        "fetched %d assets from CoinCap at %s (CoinCap timestamp %d)",
        len(rows),
        client.base_url,
        body["timestamp"],
    )
    yield [{**row, TIMESTAMP_FIELD: body["timestamp"]} for row in rows]


def _get_assets(client: CoinCapClient, asset_ids: Sequence[str]) -> dict[str, Any]:
    """The /assets answer for `asset_ids`. When CoinCap refuses the whole request (400/404) naming
    ids it does not know, asks once more without them (a `warning:` names them)."""
    try:
        return client.get("/assets", params={"ids": ",".join(asset_ids)})
    except CoinCapNotFoundError as exc:
        named = [i for i in asset_ids if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", exc.text)]
        if not named or len(named) == len(asset_ids):
            raise
        logger.warning(
            "CoinCap refused the request because of %s (%s); asking once more for the others",
            ", ".join(named),
            exc.text or "no reason given",
        )
        rest = [i for i in asset_ids if i not in named]
        return client.get("/assets", params={"ids": ",".join(rest)})


def _asset_rows(body: dict[str, Any], asset_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The answer's assets that were asked for, once each, with numbers kept as their text.
    Entries without an id, ids nobody asked for and repeated ids are left out with a warning."""
    data = body["data"]
    if not isinstance(data, list):
        raise CoinCapResponseError(
            "CoinCap sent an unexpected response to /assets: `data` is not a list of assets; "
            "check COINCAP_BASE_URL points at the v3 API"
        )
    asked, rows = set(asset_ids), {}
    no_id, unasked, repeated = 0, [], []
    for asset in data:
        asset_id = asset.get("id") if isinstance(asset, dict) else None
        if not isinstance(asset_id, str) or not asset_id:
            no_id += 1
        elif asset_id not in asked:
            unasked.append(asset_id)
        elif asset_id in rows:
            repeated.append(asset_id)
        else:
            rows[asset_id] = _with_text_values(asset, ASSET_TEXT_FIELDS)
    if no_id:
        logger.warning("CoinCap sent %d asset(s) without an id; left out", no_id)
    if unasked:
        logger.warning(
            "CoinCap sent figures for %s, not asked for (check COINCAP_ASSET_IDS); ignored",
            ", ".join(sorted(set(unasked))[:10]),
        )
    if repeated:
        logger.warning(
            "CoinCap sent %s more than once in one answer; the first is kept",
            ", ".join(sorted(set(repeated))),
        )
    missing = [asset_id for asset_id in asset_ids if asset_id not in rows]
    if missing and len(missing) == len(asset_ids):
        raise CoinCapResponseError(
            f"CoinCap returned none of the configured assets ({', '.join(missing)}); "
            "check COINCAP_ASSET_IDS against https://rest.coincap.io/v3/assets"
        )
    if missing:
        logger.warning(
            "CoinCap returned no figures for %s; the other assets still load. "
            "Ids change now and then (polygon became polygon-ecosystem-token): "
            "check COINCAP_ASSET_IDS",
            ", ".join(missing),
        )
    return list(rows.values())


def _with_text_values(item: dict[str, Any], text_fields: Sequence[str]) -> dict[str, Any]:
    """`item` with every number and boolean as its JSON text, and objects in `text_fields` too:
    raw keeps each value as sent, and a field whose type changes never splits into two columns."""
    out = {}
    for key, value in item.items():
        nested = isinstance(value, (dict, list))
        if isinstance(value, (bool, int)) or (key in text_fields and nested):
            value = json.dumps(value)
        out[key] = value
    return out


@dlt.transformer(name="asset_history")
def asset_history(
    snapshot: list[dict[str, Any]],
    client: CoinCapClient,
    backfill_days: int,
    series_ends: dict[str, int],
    max_requests: int,
    write_disposition: str = "merge",
) -> Iterator[Any]:
    """The 5-minute points (`/assets/{id}/history?interval=m5`) each asset's series lacks.

    What is missing is decided on CoinCap's clock (the snapshot's `timestamp`), never this
    machine's, from two marks per asset in the resource state and one from the warehouse:
    `asked_until` (history asked up to here: whatever CoinCap sent for those slots, they are
    never asked again), `seen_until` (the newest snapshot), and the end of the newest slot of
    marts.fct_asset_price_history (`series_ends`: what dbt accepted). A snapshot dbt held back
    leaves its slot empty in the mart, so the next cycle asks history for it, once. A gap is a
    5-minute slot of the UTC clock with no point between the mark and now.

    At most `max_requests` history requests per cycle, oldest windows first; the rest are
    recorded as deferred and asked in the next cycles: a third mark, `owed_from`, keeps per asset
    the start of the oldest window recorded as deferred or failed and not fetched since, and the
    next plan starts there (history_start), even before its own backfill horizon. The first
    request that fails after its retries ends this cycle's history requests (one retry budget
    per cycle, not one per asset). Every window decided on is recorded in
    raw.asset_history_requests, so dbt can tell a hole CoinCap was asked about (known or
    pending) from one nobody asked about (a fault).
    """
    hints = history_hints(write_disposition)
    # create both tables even when a run loads no row, so dbt always finds them
    for table_hints in (hints, REQUEST_HINTS):
        yield dlt.mark.with_hints(
            dlt.mark.materialize_table_schema(), table_hints, create_table_variant=True
        )
    state = dlt.current.resource_state()
    legacy = state.pop("complete_until", {})  # state of versions before 0.4.0
    seen: dict[str, int] = state.setdefault("seen_until", dict(legacy))
    asked: dict[str, int] = state.setdefault("asked_until", dict(legacy))
    # per asset, the start of the oldest window recorded as deferred or failed and not fetched
    # since: owed, so the next cycles plan from there (windows are fetched oldest first, so what
    # an asset still owes is everything from there on)
    owed: dict[str, int] = state.setdefault("owed_from", {})

    plans: list[tuple[str, int, list[tuple[int, int]], str]] = []
    for asset in snapshot:
        asset_id, now = asset["id"], asset[TIMESTAMP_FIELD]
        mark = _mark(seen.get(asset_id), asked.get(asset_id), series_ends.get(asset_id))
        start = history_start(now, mark, owed.get(asset_id), backfill_days)
        if start is None:
            seen[asset_id] = max(seen.get(asset_id, now), now)
            continue
        after, reason = start
        windows = list(split_windows(after, now))
        if windows:
            plans.append((asset_id, now, windows, reason))
        else:  # COINCAP_BACKFILL_DAYS=0: nothing to fetch
            seen[asset_id] = asked[asset_id] = now
    _log_estimate(plans, max_requests)

    meter_before = (client.meter.requests, client.meter.credits)
    windows = [
        HistoryWindow(asset_id, start, end) for asset_id, _, ws, _ in plans for start, end in ws
    ]
    nows = {asset_id: now for asset_id, now, _, _ in plans}
    reasons_by_asset = {asset_id: reason for asset_id, _, _, reason in plans}
    records: list[dict[str, Any]] = []
    left_for_later: dict[str, str] = {}  # why part of an asset's windows waits for a later cycle
    results: list[HistoryResult] = []
    for result in fetch_history(client, windows, max_requests):
        window, asset_id = result.window, result.window.asset_id
        results.append(result)
        records.append(result.record())
        if result.outcome == "deferred":
            left_for_later.setdefault(asset_id, "deferred to the next cycles")
        elif result.outcome == "not_found":
            if result.asked:
                logger.warning(
                    "CoinCap has no history for %s (%s); its snapshots still load, and these "
                    "slots are known holes (marts.fct_asset_price_gaps), never asked again",
                    asset_id,
                    result.detail,
                )
            seen[asset_id] = asked[asset_id] = nows[asset_id]
            reasons_by_asset[asset_id] = "no history at CoinCap"
        elif result.outcome == "failed":
            # CoinCap is failing: asking more would cost another whole retry budget (up to
            # 90 s each) and could run into the next cycle. This window's marks stay put.
            logger.warning(
                "history for %s not fetched this cycle, nor for the assets after it that "
                "have a gap; the next cycle retries: %s",
                asset_id,
                result.detail,
            )
            left_for_later[asset_id] = "failed, asked again next cycle"
        else:
            yield dlt.mark.with_hints(result.points, hints, create_table_variant=True)
            seen[asset_id] = asked[asset_id] = window.end
    reasons: dict[str, list[str]] = {}
    for asset_id, _, _, _ in plans:
        reason = left_for_later.get(asset_id) or reasons_by_asset[asset_id]
        reasons.setdefault(reason, []).append(asset_id)
        still_owed = owed_start([r for r in results if r.window.asset_id == asset_id])
        if still_owed is None:
            owed.pop(asset_id, None)
        else:
            owed[asset_id] = still_owed

    if records:
        timestamp = snapshot[0][TIMESTAMP_FIELD] if snapshot else 0
        yield dlt.mark.with_hints(
            [{**r, TIMESTAMP_FIELD: timestamp} for r in records],
            REQUEST_HINTS,
            create_table_variant=True,
        )
    why = "; ".join(f"{reason} for {', '.join(ids)}" for reason, ids in reasons.items())
    logger.info(
        "history: %d request(s), %d credit(s) (%s)",
        client.meter.requests - meter_before[0],
        client.meter.credits - meter_before[1],
        why or "no gaps",
    )


@dataclass(frozen=True)
class HistoryWindow:
    """One history request: an asset's 5-minute points from `start` to `end` (ms, inclusive)."""

    asset_id: str
    start: int
    end: int


@dataclass
class HistoryResult:
    """What became of one window. outcome: fetched | not_found (CoinCap answered 400/404: a
    known hole, never asked again) | failed (no usable answer after the retries) | deferred (over
    the request budget, or not asked after a failure)."""

    window: HistoryWindow
    outcome: str
    points: list[dict[str, Any]] = field(default_factory=list)
    credits: int | None = None  # what its request cost; None when none was sent
    detail: str = ""  # why it was not fetched, one line

    @property
    def asked(self) -> bool:
        return self.credits is not None

    def record(self) -> dict[str, Any]:
        """Its row of raw.asset_history_requests (without the timestamp)."""
        window = self.window
        row: dict[str, Any] = {
            "asset_id": window.asset_id,
            "window_start": window.start,
            "window_end": window.end,
            "outcome": self.outcome,
        }
        if self.outcome == "fetched":
            row["points"] = len(self.points)
        if self.asked:
            row["coincap_credits"] = self.credits
        return row


def fetch_history(
    client: CoinCapClient, windows: Sequence[HistoryWindow], max_requests: int
) -> Iterator[HistoryResult]:
    """The one history fetch, the cycle's and the backfill's: each window in the order given, one
    request each, at most `max_requests` requests. After a 400/404 for an asset its later windows
    are not asked (`not_found`); after a request that fails its retries, nothing more is asked
    (`deferred`: one retry budget per run, not one per asset). Other CoinCap errors (a refused
    key, an exhausted quota) are raised."""
    budget, stopped, no_history = max_requests, False, set()
    for window in windows:
        if window.asset_id in no_history:
            yield HistoryResult(window, "not_found", detail="no history at CoinCap")
            continue
        if stopped or budget <= 0:
            yield HistoryResult(window, "deferred")
            continue
        budget -= 1
        credits_before = client.meter.credits
        try:
            body = client.get(
                f"/assets/{window.asset_id}/history",
                params={"interval": HISTORY_INTERVAL, "start": window.start, "end": window.end},
            )
            points = _history_rows(body, window.asset_id, window.start, window.end)
        except CoinCapNotFoundError as exc:
            no_history.add(window.asset_id)
            spent = client.meter.credits - credits_before
            yield HistoryResult(window, "not_found", [], spent, exc.text or "HTTP 400/404")
            continue
        except (CoinCapUnavailableError, CoinCapResponseError) as exc:
            stopped = True
            yield HistoryResult(
                window, "failed", [], client.meter.credits - credits_before, str(exc)
            )
            continue
        yield HistoryResult(window, "fetched", points, client.meter.credits - credits_before)


def history_start(
    now: int, mark: int | None, owed: int | None, backfill_days: int
) -> tuple[int, str] | None:
    """Where an asset's history plan starts (its windows are (after, now]) and why, or None when
    it needs nothing. `mark`: what _mark says; `owed`: the start of the oldest window an earlier
    cycle recorded as deferred or failed and no cycle fetched since. An owed window is always
    asked again, whatever the clock or COINCAP_BACKFILL_DAYS says now, so a slot recorded as
    pending never stays pending: it is fetched, or becomes a known hole once CoinCap answered."""
    if mark is None:
        after, reason = now - backfill_days * DAY_MS, f"backfill of {backfill_days} d"
    elif _slot(now) - _slot(mark) > HISTORY_INTERVAL_MS:
        after, reason = mark, f"gap of {(now - mark) / 3_600_000:.1f} h"
    elif owed is None:
        return None
    else:
        after, reason = mark, "windows owed by earlier cycles"
    if owed is not None and owed - 1 < after:
        after, reason = owed - 1, "windows owed by earlier cycles"
    return after, reason


def owed_start(results: Sequence[HistoryResult]) -> int | None:
    """What one asset still owes after this cycle's results for it (oldest window first): the
    start of its first window deferred or failed, or None (all fetched, or CoinCap has no
    history for it: a known hole, never asked again)."""
    if any(r.outcome == "not_found" for r in results):
        return None
    return next((r.window.start for r in results if r.outcome in ("deferred", "failed")), None)


def _mark(seen: int | None, asked: int | None, series_end: int | None) -> int | None:
    """The CoinCap time up to which an asset's series needs nothing from history: the newest
    snapshot, unless the mart shows dbt accepted less (then history is asked for the rest, but
    never again for what history was already asked for). None: nothing known, backfill."""
    if seen is None:
        return asked
    if series_end is None:  # no mart yet, or the warehouse could not be read
        return max(seen, asked or seen)
    return max(asked or series_end, min(seen, series_end))


def _history_rows(
    body: dict[str, Any], asset_id: str, start: int, end: int
) -> list[dict[str, Any]]:
    """The points of a history answer that can be keyed: objects whose `time` is whole
    milliseconds inside the window asked for, once each. Others are left out with a warning
    (their slots become known holes); every kept value is stored as sent."""
    data = body["data"]
    if not isinstance(data, list):
        raise CoinCapResponseError(
            f"CoinCap sent an unexpected response to /assets/{asset_id}/history: `data` is not a "
            "list of points; check COINCAP_BASE_URL points at the v3 API"
        )
    rows: dict[int, dict[str, Any]] = {}
    for point in data:
        at = point.get("time") if isinstance(point, dict) else None
        if isinstance(at, int) and not isinstance(at, bool) and start <= at <= end:
            rows.setdefault(at, _with_text_values(point, HISTORY_TEXT_FIELDS))
    if len(rows) < len(data):
        logger.warning(
            "CoinCap's history for %s held %d point(s) without a millisecond `time` inside the "
            "window asked for, or repeated; left out",
            asset_id,
            len(data) - len(rows),
        )
    return [
        {**row, "time": at, "asset_id": asset_id, TIMESTAMP_FIELD: body["timestamp"]}
        for at, row in rows.items()
    ]


def _log_estimate(plans: list[tuple[str, int, list[tuple[int, int]], str]], limit: int) -> None:
    """Before history is fetched: how many requests, and what they will cost in credits."""
    windows = [window for _, _, ws, _ in plans for window in ws]
    if not windows:
        return
    estimate = estimate_history_credits(windows)
    later = f"; {len(windows) - limit} deferred to the next cycles" if len(windows) > limit else ""
    logger.info(
        "history to fetch for %d asset(s): %d request(s), about %d credit(s)%s",
        len(plans),
        len(windows),
        estimate,
        later,
    )


def estimate_history_credits(windows: Sequence[tuple[int, int]]) -> int:
    """What history requests for these (start, end) windows will cost, before they are sent."""
    return sum(
        credits_for((end - start) // HISTORY_INTERVAL_MS * HISTORY_POINT_BYTES)
        for start, end in windows
    )


def _slot(ms: int) -> int:
    """The start of the 5-minute slot of the UTC clock that `ms` falls in."""
    return ms - ms % HISTORY_INTERVAL_MS


def split_windows(after: int, until: int) -> Iterator[tuple[int, int]]:
    """(after, until] as inclusive (start, end) windows of at most HISTORY_WINDOW_MS each."""
    while after < until:
        end = min(after + HISTORY_WINDOW_MS, until)
        yield after + 1, end
        after = end


__all__ = [
    "coincap",
    "fetch_history",
    "history_start",
    "owed_start",
    "split_windows",
    "estimate_history_credits",
    "HistoryWindow",
    "HistoryResult",
    "CoinCapClient",
    "CoinCapError",
]
