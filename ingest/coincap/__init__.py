"""dlt source for the CoinCap v3 REST API (https://pro.coincap.io/api-docs)."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Any, Iterator, Sequence

import dlt
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from ingest.coincap.helpers import (
    CoinCapClient,
    CoinCapResponseError,
    CoinCapUnavailableError,
    parse_assets,
    parse_history,
)
from ingest.coincap.settings import (
    ASSET_TEXT_FIELDS,
    DEFAULT_BACKFILL_DAYS,
    HISTORY_INTERVAL,
    HISTORY_INTERVAL_MS,
    HISTORY_TEXT_FIELDS,
    HISTORY_WINDOW_MS,
    TIMESTAMP_FIELD,
)

logger = logging.getLogger("ingest")

DAY_MS = 24 * 60 * 60 * 1000
# what staging accepts (dbt_project/macros/coincap_validation.sql): a row with any other value
# is held back from the marts, so its 5-minute slot stays empty
DECIMAL = re.compile(r"-?0*[0-9]{1,22}(\.[0-9]+)?")
RANK = re.compile(r"0*[1-9][0-9]{0,8}")
OPTIONAL_DECIMALS = (
    "supply",
    "maxSupply",
    "marketCapUsd",
    "volumeUsd24Hr",
    "changePercent24Hr",
    "vwap24Hr",
)

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


# max_table_nesting=0 keeps nested values (`tokens`) as JSON in the row, exactly as sent,
# instead of unpacking them into child tables.
@dlt.source(name="coincap", max_table_nesting=0)
def coincap(
    client: CoinCapClient,
    asset_ids: Sequence[str],
    backfill_days: int = DEFAULT_BACKFILL_DAYS,
) -> tuple[DltResource, DltResource]:
    """CoinCap's current figures for `asset_ids` (one request for all of them) and the 5-minute
    history each asset lacks: `backfill_days` on the first run, the holes an outage left later.

    The caller builds the client from COINCAP_API_KEY and COINCAP_BASE_URL (ingest/config.py)
    and reads `client.requests_made` afterwards for the run log.
    """
    snapshot = assets(asset_ids, client)
    return snapshot, snapshot | asset_history(client, backfill_days)


@dlt.resource(
    name="assets",
    primary_key=("id", TIMESTAMP_FIELD),
    write_disposition="merge",
    columns=ASSET_COLUMNS,
)
def assets(asset_ids: Sequence[str], client: CoinCapClient) -> Iterator[list[dict[str, Any]]]:
    """Every field of each asset as CoinCap sent it, plus the response's `timestamp`.

    Keyed by (asset id, CoinCap timestamp) and merged, so serving the same snapshot twice never
    doubles a row. Fields CoinCap adds later become new columns: the raw schema evolves.
    """
    body = client.get("/assets", params={"ids": ",".join(asset_ids)})
    rows = parse_assets(body)
    returned = {row["id"] for row in rows}
    missing = [asset_id for asset_id in asset_ids if asset_id not in returned]
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
    logger.info(
        "fetched %d assets from CoinCap at %s (CoinCap timestamp %d)",
        len(rows),
        client.base_url,
        body["timestamp"],
    )
    yield [{**row, TIMESTAMP_FIELD: body["timestamp"]} for row in rows]


@dlt.transformer(
    name="asset_history",
    primary_key=("asset_id", "time"),
    write_disposition="merge",
    columns=HISTORY_COLUMNS,
)
def asset_history(
    snapshot: list[dict[str, Any]], client: CoinCapClient, backfill_days: int
) -> Iterator[list[dict[str, Any]]]:
    """The 5-minute points (`/assets/{id}/history?interval=m5`) each asset's series lacks.

    The resource state keeps, per asset, the CoinCap time up to which its series is complete.
    CoinCap's clock (the snapshot's `timestamp`) decides what is missing, never this machine's,
    so a skewed host clock neither invents nor hides a gap. A gap is a 5-minute slot of the UTC
    clock with no point between that mark and now: two missed cycles, or one cycle skipped while
    the clock crossed two slot boundaries. No gap: no request. A history
    request that fails after its retries leaves the asset's mark where it was, so the next
    cycle asks for the same hole again; the snapshot still loads. It also ends this cycle's
    history requests, so a failing CoinCap costs one retry budget per cycle, not one per asset.
    State is saved with the load, so a cycle killed mid-backfill leaves the mark unmoved and the
    next cycle fetches it again; the merge on (asset_id, time) keeps re-fetched points from
    doubling.
    """
    # create raw.asset_history even when a run loads no point, so dbt always finds the table
    yield dlt.mark.materialize_table_schema()
    complete_until: dict[str, int] = dlt.current.resource_state().setdefault("complete_until", {})
    requests_before = client.requests_made
    reasons: dict[str, list[str]] = {}
    failed: str | None = None  # the asset whose history request failed after its retries
    for asset in snapshot:
        asset_id, now = asset["id"], asset[TIMESTAMP_FIELD]
        mark = complete_until.get(asset_id)
        if mark is None:
            after, reason = now - backfill_days * DAY_MS, f"backfill of {backfill_days} d"
        elif _slot(now) - _slot(mark) > HISTORY_INTERVAL_MS:
            # a 5-minute slot between the last stored point and now has no point: fetch them
            after, reason = mark, f"gap of {(now - mark) / 3_600_000:.1f} h"
        else:
            if _accepted_by_staging(asset):
                complete_until[asset_id] = max(mark, now)
            # else dbt holds this snapshot back (marts.fct_rejected_asset_prices): its slot stays
            # empty, so the mark stays put and the next cycle fetches the slot from history
            continue
        if failed:
            # CoinCap is failing: asking for this asset's history too would cost another whole
            # retry budget (up to 90 s) and could run into the next cycle. The mark stays put.
            reasons.setdefault(f"not asked after {failed} failed", []).append(asset_id)
            continue
        try:
            for window_start, window_end in _windows(after, now):
                body = client.get(
                    f"/assets/{asset_id}/history",
                    params={"interval": HISTORY_INTERVAL, "start": window_start, "end": window_end},
                )
                yield [
                    {**point, "asset_id": asset_id, TIMESTAMP_FIELD: body["timestamp"]}
                    for point in parse_history(body, asset_id)
                ]
        except CoinCapUnavailableError as exc:
            logger.warning(
                "history for %s not fetched this cycle, nor for the assets after it that have a "
                "gap; the next cycle retries: %s",
                asset_id,
                exc,
            )
            failed = asset_id
            continue
        complete_until[asset_id] = now
        reasons.setdefault(reason, []).append(asset_id)
    why = "; ".join(f"{reason} for {', '.join(ids)}" for reason, ids in reasons.items())
    logger.info(
        "history: %d request(s) (%s)", client.requests_made - requests_before, why or "no gaps"
    )


def _accepted_by_staging(asset: dict[str, Any]) -> bool:
    """Whether dbt will let this snapshot into the marts (and so fill its 5-minute slot)."""

    def fits(value: Any, pattern: re.Pattern[str], required: bool = False) -> bool:
        if value is None or value == "":
            return not required
        return isinstance(value, str) and bool(pattern.fullmatch(value))

    price = asset.get("priceUsd")
    return (
        fits(price, DECIMAL, required=True)
        and Decimal(price) > 0
        and fits(asset.get("rank"), RANK)
        and all(fits(asset.get(field), DECIMAL) for field in OPTIONAL_DECIMALS)
    )


def _slot(ms: int) -> int:
    """The start of the 5-minute slot of the UTC clock that `ms` falls in."""
    return ms - ms % HISTORY_INTERVAL_MS


def _windows(after: int, until: int) -> Iterator[tuple[int, int]]:
    """(after, until] as inclusive (start, end) windows of at most HISTORY_WINDOW_MS each."""
    while after < until:
        end = min(after + HISTORY_WINDOW_MS, until)
        yield after + 1, end
        after = end
