"""Constants of the CoinCap v3 source. Configuration that users set lives in ingest/config.py."""

DEFAULT_BASE_URL = "https://rest.coincap.io/v3"
DEFAULT_ASSET_IDS = (
    "bitcoin,ethereum,cosmos,solana,algorand,cardano,uniswap,dogecoin,litecoin,polkadot"
)
API_KEY_HELP = "get a key at https://pro.coincap.io/dashboard and set COINCAP_API_KEY"

# Retry budget for one request. 429, 5xx, timeouts and dropped connections are retried with
# exponential backoff (1, 2, 4, 8 s) or the server's Retry-After, capped at MAX_RETRY_DELAY_S.
# Worst case for one request: 5 x 15 s timeouts + 4 x 15 s waits = 135 s, well inside the
# 5-minute cron cadence, so a dead API can never make cycles pile up behind the lock.
# COINCAP_REQUEST_TIMEOUT_S overrides the timeout (bound: 5 x timeout + 60 s).
REQUEST_TIMEOUT_S = 15.0
MAX_ATTEMPTS = 5
BACKOFF_FACTOR = 1.0
MAX_RETRY_DELAY_S = 15.0

# Columns of raw.assets as CoinCap documents them. They are declared up front so that a field
# which is null in every row so far (maxSupply often is) still exists for dbt, and so that dlt
# never guesses a type: CoinCap sends numbers as strings and raw keeps them exactly as sent.
ASSET_TEXT_FIELDS = (
    "id",
    "rank",
    "symbol",
    "name",
    "supply",
    "maxSupply",
    "marketCapUsd",
    "volumeUsd24Hr",
    "priceUsd",
    "changePercent24Hr",
    "vwap24Hr",
    "explorer",
)
# The response's top-level `timestamp` (ms since epoch, UTC) is stored on every asset row.
TIMESTAMP_FIELD = "coincap_timestamp"

# History (`/assets/{id}/history`): the 5-minute series that backfills a new warehouse and fills
# the holes an outage leaves. CoinCap limits the range of one request by interval (about a day
# of m1; unconfirmed for m5), so windows are at most one day: 288 points, one request each.
HISTORY_INTERVAL = "m5"
HISTORY_INTERVAL_MS = 5 * 60 * 1000
HISTORY_WINDOW_MS = 24 * 60 * 60 * 1000
DEFAULT_BACKFILL_DAYS = 7
HISTORY_TEXT_FIELDS = ("priceUsd", "date", "circulatingSupply")
