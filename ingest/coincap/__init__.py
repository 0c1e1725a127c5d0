"""dlt source for the CoinCap v3 REST API (https://pro.coincap.io/api-docs)."""

from __future__ import annotations

import logging
from typing import Any, Iterator, Sequence

import dlt
from dlt.common.schema.typing import TTableSchemaColumns
from dlt.sources import DltResource

from ingest.coincap.helpers import CoinCapClient, CoinCapResponseError, parse_assets
from ingest.coincap.settings import ASSET_TEXT_FIELDS, TIMESTAMP_FIELD

logger = logging.getLogger("ingest")

ASSET_COLUMNS: TTableSchemaColumns = {
    **{field: {"data_type": "text", "nullable": True} for field in ASSET_TEXT_FIELDS},
    "id": {"data_type": "text", "nullable": False},
    TIMESTAMP_FIELD: {"data_type": "bigint", "nullable": False},
}


# max_table_nesting=0 keeps nested values (`tokens`) as JSON in the row, exactly as sent,
# instead of unpacking them into child tables.
@dlt.source(name="coincap", max_table_nesting=0)
def coincap(client: CoinCapClient, asset_ids: Sequence[str]) -> DltResource:
    """CoinCap's current figures for `asset_ids`, one request per run for all of them.

    The caller builds the client from COINCAP_API_KEY and COINCAP_BASE_URL (ingest/config.py)
    and reads `client.requests_made` afterwards for the run log.
    """
    return assets(asset_ids, client)


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
