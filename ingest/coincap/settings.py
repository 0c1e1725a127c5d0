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

# Credits. CoinCap v3 bills by size: 1 credit per call plus 1 per 2,500 bytes of response (two
# public summaries of the v3 docs agree, and one open-source pipeline budgets by payload size; see
# docs/coincap-api.md). helpers.credits_for() is the one place this formula is applied.
CREDITS_PER_CALL = 1
BYTES_PER_CREDIT = 2500
# Measured: a one-day m5 history window is about 42 KB (288 points, ~146 bytes each), about 18
# credits. Used only to estimate a backfill's cost before it starts.
HISTORY_POINT_BYTES = 146

# An answer larger than this is not read further and not loaded: real answers are far smaller
# (an /assets answer for 100 assets is ~50 KB, a one-day m5 window ~42 KB).
MAX_RESPONSE_BYTES = 10 * 1024 * 1024

# CoinCap's `timestamp` is its clock for the figures and decides what history is missing. An
# answer whose timestamp is further than this from this machine's clock (seconds instead of
# milliseconds, a year ahead, beyond 64 bits) fails the cycle and loads nothing: a gap computed
# from it would ask for years of history. Within the bound, CoinCap's clock still decides gaps.
# The one definition of a plausible time: dbt's `not_in_future` tests get the same bound (the
# var `max_clock_skew_minutes`, passed by ingest/transform.py; dbt_project.yml has the same
# default for dbt run by hand), so what the ingest accepts, dbt accepts too.
MAX_CLOCK_SKEW_MS = 24 * 60 * 60 * 1000
# CoinCap's clock further ahead of this machine's than this is a `warning:` each cycle and one
# alert per episode (ingest/clock.py), not a failure. CoinCap's `timestamp` is the moment it
# answered: on a machine kept by NTP it is within a request's round trip (seconds) of the host's
# clock, so 2 minutes is far beyond any honest difference, and still well inside the 5-minute
# slot, so it warns before observations land a whole slot in the machine's future.
CLOCK_SKEW_WARNING_MS = 2 * 60 * 1000

# At most this many history requests in one cycle (COINCAP_MAX_HISTORY_REQUESTS overrides it):
# a longer backfill or gap is spread over the next cycles, oldest windows first. 100 one-day
# windows cost about 1,800 credits.
DEFAULT_MAX_HISTORY_REQUESTS = 100

# A 429 whose text says the plan's credits are used up is an exhausted quota, not a rate limit
# (CoinCap's exact wording is unconfirmed: these words cover the reported variants). So is a 429
# that lasts through one cycle's retries and into the next cycle's first request. Then each cycle
# sends at most one probe, spaced out from 15 minutes, doubling, to 6 hours.
QUOTA_WORDS = ("quota", "credit", "exhaust", "monthly")
QUOTA_FIRST_PAUSE_S = 15 * 60
QUOTA_MAX_PAUSE_S = 6 * 60 * 60
