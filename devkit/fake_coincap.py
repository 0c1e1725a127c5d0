"""A local HTTP fake of the CoinCap v3 REST API, for the tests.

It speaks the shapes described in docs/coincap-api.md: every number is a string, some fields are
null, errors are JSON ``{"error": "..."}``, and every request must carry
``Authorization: Bearer <key>`` (or ``apiKey=<key>`` in the query string, which v3 also accepts)
or it is answered 401.

    with FakeCoinCap(api_key="test-key") as fake:
        fake.base_url                          # http://127.0.0.1:PORT  (use as COINCAP_BASE_URL)
        fake.set_snapshot(assets, timestamp_ms)
        fake.queue(Scripted(429, {"error": "rate limited"}, {"Retry-After": "1"}))
        fake.fail_always(Scripted(503, {"error": "Service Unavailable"}))
        fake.extra_fields = {"circulatingSupply": "1.0"}
        fake.snapshot_overrides = {"bitcoin": {"priceUsd": "NaN"}}  # /assets only, not history
        fake.delay = 0.5
        fake.requests               # every request seen: method, path, query, headers, at, status

Recorded reality (docs/coincap-api.md), for the tests of credits and odd answers:

    fake = FakeCoinCap(api_key=..., recorded_style=True)
        # numbers as recorded v3 answers print them: "80399.570000000006984919" (18 decimals of
        # a float) and shortest-form vwap/changePercent ("1.58e-05" below 1e-4)
    fake.unknown_ids = "404"              # or "400": refuse a whole ids= request naming them
    fake.history_supply_as_number = True  # circulatingSupply as a JSON number
    fake.history_hook = f                 # f(asset_id, points) -> points: hostile history
    Scripted(429, QUOTA_EXHAUSTED_BODY)   # a 429 that says the plan's credits are used up
    fake.credits_billed()                 # 1 credit per answered request + 1 per 2,500 bytes
    fake.requests[i].response_bytes       # each answer's size as sent

Scripted responses are served first-in first-out, one per request (any path), before the normal
answer; ``fake.reset()`` drops them and the extra fields and delay.

CoinCap's clock. ``fake.now_ms`` is CoinCap's time: the ``timestamp`` of every answer and the upper
limit of every history answer (no point after it). Tests move it (``fake.now_ms = t``,
``fake.advance(ms)``) without touching the machine's clock; keep it at or before the real time
(the marts test that nothing is observed in the future).

    fake = FakeCoinCap(api_key=..., prices_follow_clock=True, timestamp_ms=t0)
        # priceUsd (and marketCapUsd) of /assets become a deterministic function of asset and
        # CoinCap time: fake.price_usd(asset_id, t_ms); history points use the same function
    fake.advance(5 * 60_000)

History (``/assets/{id}/history?interval=m5&start=S&end=E``): one point per interval ON the UTC
grid (time % interval == 0) within [start, end] and <= now_ms, each
``{"priceUsd", "time", "date", "circulatingSupply"}``. 400 for an unknown interval, for start
without end (or the reverse), for start > end, and for a range longer than
``fake.history_max_range_ms`` (default one day: the ingest pages a backfill into windows).

    fake.history_requests()        # [HistoryRequest(asset_id, interval, start, end, status, at)]
    fake.fail_history(5, Scripted(429, {"error": "rate limited"}, {"Retry-After": "1"}))
        # the 5th history request (counted since reset_requests()) gets that answer, once
    fake.fail_history_always(Scripted(503, {"error": "down"}), asset_id="bitcoin")  # None: stop
    fake.hold_history(after=3)              # history requests after the 3rd hang until release()
    fake.wait_for_history_requests(4, timeout=60)
    fake.release()
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIVE_MINUTES_MS = 5 * 60 * 1000
DAY_MS = 24 * 60 * 60 * 1000
INTERVALS_MS = {
    "m1": 60_000,
    "m5": 300_000,
    "m15": 900_000,
    "m30": 1_800_000,
    "h1": 3_600_000,
    "h2": 7_200_000,
    "h6": 21_600_000,
    "h12": 43_200_000,
    "d1": 86_400_000,
}

# The original pipeline's ten assets (COINCAP_ASSET_IDS' default) ...
DEFAULT_ASSET_IDS = [
    "bitcoin",
    "ethereum",
    "cosmos",
    "solana",
    "algorand",
    "cardano",
    "uniswap",
    "dogecoin",
    "litecoin",
    "polkadot",
]


def _asset(
    id_, rank, symbol, name, supply, max_supply, market_cap, volume, price, change, vwap, explorer
):
    return {
        "id": id_,
        "rank": rank,
        "symbol": symbol,
        "name": name,
        "supply": supply,
        "maxSupply": max_supply,
        "marketCapUsd": market_cap,
        "volumeUsd24Hr": volume,
        "priceUsd": price,
        "changePercent24Hr": change,
        "vwap24Hr": vwap,
        "explorer": explorer,
        "tokens": {},
    }


# ... plus shiba-inu for the extremes: a price below 0.0001 and a 15-digit supply.
# Values in the style of real v3 answers: strings with (up to) 16 decimals; some nulls.
# Arguments: id, rank, symbol, name, supply, maxSupply, marketCapUsd, volumeUsd24Hr, priceUsd,
# changePercent24Hr, vwap24Hr, explorer.
# fmt: off
DEFAULT_ASSETS: list[dict[str, Any]] = [
    _asset("bitcoin", "1", "BTC", "Bitcoin", "19813906.0000000000000000",
           "21000000.0000000000000000", "1906840891853.6520523461829954",
           "30128577117.2049868938279640", "96239.8456418046889309", "1.2412461069938700",
           "95483.8521049556399924", "https://blockchain.info/"),
    _asset("ethereum", "2", "ETH", "Ethereum", "120598311.5300000000000000", None,
           "325113450381.4837036545285946", "15046216404.9213394651052640",
           "2695.8633371843617474", "-2.1733196018473900", "2731.0574329658236541",
           "https://etherscan.io/"),
    _asset("solana", "5", "SOL", "Solana", "488395853.5626066000000000", None,
           "99418373364.0290386131640592", "3015289811.4467012474366017",
           "203.5604733093339813", "-0.5291409914412600", "205.2391032151011434",
           "https://explorer.solana.com/"),
    _asset("dogecoin", "8", "DOGE", "Dogecoin", "148021396383.7052498300000000", None,
           "39720339826.4806226869104451", "1404118813.6524116958016395",
           "0.2683431779451340", "3.8853103700101700", "0.2629061488829131",
           "http://dogechain.info/chain/Dogecoin"),
    _asset("cardano", "9", "ADA", "Cardano", "35226037640.0950000000000000",
           "45000000000.0000000000000000", "27433925003.7632520395419940",
           "630329458.2713584962419180", "0.7787975063463018", "2.4046002290404100",
           "0.7693185380617221", "https://cardanoexplorer.com/"),
    _asset("litecoin", "20", "LTC", "Litecoin", "75505552.5158244200000000",
           "84000000.0000000000000000", "9372585302.4707389014588016",
           "785305232.0218040404312350", "124.1316484372452104", "6.7346590431567800",
           "122.4427716218013207", "http://explorer.litecoin.net/chain/Litecoin"),
    _asset("polkadot", "22", "DOT", "Polkadot", "1538410617.2637367000000000", None,
           "7388016045.5591624386497394", "193412283.8932120843466372",
           "4.8023415810089624", "-1.0384121990110300", "4.8476046917001651",
           "https://polkascan.io/polkadot"),
    _asset("uniswap", "27", "UNI", "Uniswap", "600483073.7100000000000000",
           "1000000000.0000000000000000", "5783452398.8102318620773430",
           "196436262.5606302212467262", "9.6313738839154637", "0.3542209373716500",
           None, "https://etherscan.io/token/0x1f9840a85d5af5bf1d1762f925bdaddc4201f984"),
    _asset("algorand", "41", "ALGO", "Algorand", "8588716012.5467410000000000",
           "10000000000.0000000000000000", "2762346104.1633049520883690",
           "89532893.7183094048364730", "0.3216246612543711", "-4.6624186484958800",
           None, None),
    _asset("cosmos", "45", "ATOM", "Cosmos", "390934204.0560550000000000", None,
           "1908337104.2283426024428110", "79880736.4183460853120270",
           "4.8814780262011406", "0.0000000000000000", "4.8971130485730322",
           "https://www.mintscan.io/cosmos"),
    _asset("shiba-inu", "17", "SHIB", "Shiba Inu", "589247837171287.3220000000000000", None,
           "9254127853.2174418702219834", "204931126.3845601299485600",
           "0.0000157050460924", "-3.2085125542389800", "0.0000158340076117",
           "https://etherscan.io/token/0x95ad61b0a150d79219dcf64e1e6cc01f0b64c4ce"),
]
# fmt: on

ALL_DEFAULT_IDS = [a["id"] for a in DEFAULT_ASSETS]

# What recorded v3 answers look like (docs/coincap-api.md): numbers printed from 64-bit floats,
# these fields with 18 decimal places ("80399.570000000006984919" is exactly a float) ...
FLOAT_18_FIELDS = ("supply", "maxSupply", "marketCapUsd", "volumeUsd24Hr", "priceUsd")
# ... and these in the shortest form that reads back as the same float ("88305.90262468117",
# "1.58e-05" below 1e-4).
FLOAT_SHORT_FIELDS = ("changePercent24Hr", "vwap24Hr")

# A 429 that says the plan's credits are used up. CoinCap's exact wording is unconfirmed; this is
# the shape public reports give (an `error` text naming the monthly credits).
QUOTA_EXHAUSTED_BODY = {
    "error": "You have used all of your monthly API credits. Upgrade your plan to continue."
}


def recorded_style(asset: dict) -> dict:
    """`asset` with its numbers printed the way recorded v3 answers print them."""
    out = dict(asset)
    for name in FLOAT_18_FIELDS:
        if isinstance(out.get(name), str) and out[name]:
            out[name] = f"{float(out[name]):.18f}"
    for name in FLOAT_SHORT_FIELDS:
        if isinstance(out.get(name), str) and out[name]:
            out[name] = repr(float(out[name]))
    return out


def credits_for_bytes(n_bytes: int | None) -> int:
    """CoinCap's reported bill for one request: 1 credit plus 1 per 2,500 bytes of answer."""
    return 1 + -(-(n_bytes or 0) // 2500)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Scripted:
    """A canned answer. ``body`` may be a dict/list (sent as JSON), str or bytes (sent as is)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("Content-Type", "text/html")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/html")
        return json.dumps(self.body).encode(), "application/json"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic()
    status: int | None = None  # what the fake answered (None: not answered yet, or held)
    response_bytes: int | None = None  # the body's size as sent (None: not answered)

    @property
    def history_asset(self) -> str | None:
        """The asset id when this is an /assets/{id}/history request, else None."""
        segments = [s for s in self.path.split("/") if s]
        if segments[:1] == ["v3"]:
            segments = segments[1:]
        if len(segments) == 3 and segments[0] == "assets" and segments[2] == "history":
            return segments[1]
        return None


@dataclass(frozen=True)
class HistoryRequest:
    """One /assets/{id}/history request as the fake saw it (start/end None when not sent)."""

    asset_id: str
    interval: str | None
    start: int | None
    end: int | None
    status: int | None
    at: float


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def utc_iso_ms(t_ms: int) -> str:
    """CoinCap's `date` format: 2018-07-01T00:00:00.000Z."""
    seconds, millis = divmod(int(t_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


Q16 = Decimal("0.0000000000000001")


def price_usd(asset: dict, t_ms: int) -> str:
    """A deterministic price of `asset` at CoinCap time `t_ms`: its base priceUsd times a factor
    between 0.97 and 1.03 that moves with time (a triangle wave with a 2-day period, shifted per
    asset) plus a sub-minute wiggle, so snapshots a few minutes apart differ. 16 decimals."""
    base = Decimal(asset.get("priceUsd") or "1")
    shift = sum(map(ord, asset["id"])) * 37
    minutes = int(t_ms) // 60_000 + shift
    triangle = Decimal(abs(minutes % 2880 - 1440)) / Decimal(1440)  # 0 .. 1
    wiggle = Decimal(int(t_ms) % 60_000) / Decimal(60_000_000_000)  # < 0.000001
    with localcontext(prec=60):
        factor = Decimal("0.97") + Decimal("0.06") * triangle + wiggle
        return f"{(base * factor).quantize(Q16):f}"


class _QuietServer(ThreadingHTTPServer):
    """Clients that die mid-request (a killed cycle) are normal here, not a traceback."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeCoinCap:
    def __init__(
        self,
        api_key: str = "test-coincap-key",
        assets: list[dict] | None = None,
        timestamp_ms: int | None = None,
        prices_follow_clock: bool = False,
        recorded_style: bool = False,
        host: str = "127.0.0.1",
    ):
        self.api_key = api_key
        # "0.0.0.0" when containers must reach it (the stack test); base_url still names 127.0.0.1
        self.host = host
        self.prices_follow_clock = prices_follow_clock
        # numbers as recorded v3 answers print them (18-decimal and shortest float strings)
        self.recorded_style = recorded_style
        # how /assets?ids= answers ids it does not know: "omit" them, or refuse the whole
        # request with 404 or 400 naming them (both are reported; v3's choice is unconfirmed)
        self.unknown_ids = "omit"
        # history's circulatingSupply as a JSON number (one v3 schema types it so)
        self.history_supply_as_number = False
        # a function (asset_id, points) -> points that rewrites history answers (hostile points)
        self.history_hook: Any = None
        self.history_max_range_ms = DAY_MS
        self._lock = threading.Lock()
        self._assets: dict[str, dict] = {}
        self._timestamp_ms = 0
        self.set_snapshot(
            assets if assets is not None else DEFAULT_ASSETS,
            timestamp_ms if timestamp_ms is not None else now_ms() - 3_000,
        )
        self._queue: list[Scripted] = []
        self._always: Scripted | None = None
        self.extra_fields: dict[str, Any] = {}
        # per asset id, fields replaced in /assets answers only (history keeps the snapshot's)
        self.snapshot_overrides: dict[str, dict[str, Any]] = {}
        self.delay: float = 0.0
        self.requests: list[RecordedRequest] = []
        self._history_failures: dict[int, Scripted] = {}
        self._history_always: dict[str | None, Scripted] = {}
        self._hold_after: int | None = None
        self._gate = threading.Event()
        self._gate.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ programming it
    def set_snapshot(self, assets: list[dict] | None = None, timestamp_ms: int | None = None):
        """Replace the figures served (assets keep their order) and/or CoinCap's timestamp."""
        with self._lock:
            if assets is not None:
                self._assets = {a["id"]: copy.deepcopy(a) for a in assets}
            if timestamp_ms is not None:
                self._timestamp_ms = int(timestamp_ms)

    @property
    def timestamp_ms(self) -> int:
        return self._timestamp_ms

    # CoinCap's clock: the answers' `timestamp` and the upper limit of history answers
    @property
    def now_ms(self) -> int:
        return self._timestamp_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        with self._lock:
            self._timestamp_ms = int(value)

    def advance(self, ms: int) -> int:
        """Move CoinCap's clock forward by `ms`; returns the new time."""
        with self._lock:
            self._timestamp_ms += int(ms)
            return self._timestamp_ms

    def price_usd(self, asset_id: str, t_ms: int) -> str:
        """The priceUsd this fake serves for `asset_id` at CoinCap time `t_ms` (history points
        always; /assets too when prices_follow_clock)."""
        with self._lock:
            asset = self._assets[asset_id]
        return price_usd(asset, t_ms)

    def fail_history(self, nth: int, response: Scripted) -> None:
        """Answer the `nth` history request (1-based, counted since reset_requests()) with
        `response`, once; other paths and other history requests are answered normally."""
        with self._lock:
            self._history_failures[int(nth)] = response

    def fail_history_always(self, response: Scripted | None, asset_id: str | None = None) -> None:
        """Answer every history request (of `asset_id` only, when given) with `response`, until
        called again with None (for that asset) or reset(). Other paths are answered normally."""
        with self._lock:
            if response is None:
                self._history_always.pop(asset_id, None)
            else:
                self._history_always[asset_id] = response

    def hold_history(self, after: int) -> None:
        """History requests after the first `after` ones (counted since reset_requests()) hang
        until release() (for killing a cycle in the middle of a backfill)."""
        with self._lock:
            self._hold_after = int(after)
            self._gate.clear()

    def release(self) -> None:
        """Let held history requests go on (they are then answered normally) and hold no more."""
        with self._lock:
            self._hold_after = None
            self._gate.set()

    def history_requests(self, asset_id: str | None = None) -> list[HistoryRequest]:
        """Every /assets/{id}/history request seen (since reset_requests()), in order."""
        with self._lock:
            recorded = list(self.requests)
        out = []
        for r in recorded:
            asset = r.history_asset
            if asset is None or (asset_id is not None and asset != asset_id):
                continue
            out.append(
                HistoryRequest(
                    asset,
                    r.query.get("interval"),
                    _int_or_none(r.query.get("start")),
                    _int_or_none(r.query.get("end")),
                    r.status,
                    r.at,
                )
            )
        return out

    def wait_for_history_requests(self, n: int, timeout: float = 60.0) -> bool:
        """Wait until at least `n` history requests arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.history_requests()) >= n:
                return True
            time.sleep(0.02)
        return False

    def snapshot(self) -> list[dict]:
        """The assets as they are served now (with extra_fields), deep-copied."""
        with self._lock:
            return [self._decorate(a, self._timestamp_ms) for a in self._assets.values()]

    def queue(self, *responses: Scripted) -> None:
        with self._lock:
            self._queue.extend(responses)

    def fail_always(self, response: Scripted | None) -> None:
        """Answer every request with ``response`` (None: back to normal)."""
        with self._lock:
            self._always = response

    def reset(self) -> None:
        """Back to normal answers: no scripted responses, no extra fields, no delay."""
        with self._lock:
            self._queue.clear()
            self._always = None
            self.extra_fields = {}
            self.snapshot_overrides = {}
            self.delay = 0.0
            self.unknown_ids = "omit"
            self.history_supply_as_number = False
            self.history_hook = None
            self._history_failures.clear()
            self._history_always.clear()
        self.release()

    def reset_requests(self) -> None:
        """Forget the requests seen; history requests are counted from here again."""
        with self._lock:
            self.requests.clear()

    def credits_billed(self) -> int:
        """What CoinCap would bill for the requests seen (since reset_requests()): 1 credit per
        answered request plus 1 per 2,500 bytes of its answer (docs/coincap-api.md)."""
        with self._lock:
            return sum(credits_for_bytes(r.response_bytes) for r in self.requests if r.status)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == path]

    # ------------------------------------------------------------------ server
    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    def start(self) -> FakeCoinCap:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = _QuietServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-coincap", daemon=True
        )
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeCoinCap:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering
    def _decorate(self, asset: dict, at_ms: int | None = None) -> dict:
        out = copy.deepcopy(asset)
        if self.prices_follow_clock and at_ms is not None and asset.get("priceUsd"):
            out["priceUsd"] = price_usd(asset, at_ms)
            if asset.get("supply"):
                with localcontext(prec=60):
                    cap = Decimal(out["priceUsd"]) * Decimal(asset["supply"])
                    out["marketCapUsd"] = f"{cap.quantize(Q16):f}"
        if self.recorded_style:
            out = recorded_style(out)
        out.update(copy.deepcopy(self.extra_fields))
        out.update(copy.deepcopy(self.snapshot_overrides.get(asset["id"], {})))
        return out

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        record = RecordedRequest(handler.command, parts.path, query, headers, time.monotonic())
        hold = False
        with self._lock:
            self.requests.append(record)
            scripted = self._queue.pop(0) if self._queue else self._always
            if record.history_asset is not None:
                nth = sum(1 for r in self.requests if r.history_asset is not None)
                if scripted is None:
                    scripted = self._history_failures.pop(nth, None)
                if scripted is None:
                    scripted = self._history_always.get(
                        record.history_asset, self._history_always.get(None)
                    )
                hold = self._hold_after is not None and nth > self._hold_after
            delay = self.delay
        if hold:
            self._gate.wait()
        if delay:
            time.sleep(delay)
        if scripted is not None:
            if scripted.delay:
                time.sleep(scripted.delay)
            record.status = scripted.status
            payload, content_type = scripted.encoded()
            record.response_bytes = len(payload)
            self._send(handler, scripted.status, payload, content_type, scripted.headers)
            return
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}" and query.get("apiKey") != self.api_key:
            record.status = 401
            record.response_bytes = self._json(
                handler, 401, {"error": "Unauthorized. Please provide a valid API key."}
            )
            return
        status, body = self._route(parts.path.rstrip("/"), query)
        record.status = status
        record.response_bytes = self._json(handler, status, body)

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        # tolerate a /v3 prefix, as in https://rest.coincap.io/v3
        if segments[:1] == ["v3"]:
            segments = segments[1:]
        with self._lock:
            ts = self._timestamp_ms
            assets = {k: self._decorate(v, ts) for k, v in self._assets.items()}
            originals = {k: copy.deepcopy(v) for k, v in self._assets.items()}
        if segments == ["assets"]:
            if "ids" in query:
                wanted = [i.strip() for i in query["ids"].split(",") if i.strip()]
                unknown = [i for i in wanted if i not in assets]
                if unknown and self.unknown_ids in ("404", "400"):
                    return int(self.unknown_ids), {"error": f"{','.join(unknown)} not found"}
                data = [assets[i] for i in wanted if i in assets]
            else:
                data = list(assets.values())
            offset = int(query.get("offset", 0) or 0)
            limit = int(query.get("limit", 100) or 100)
            if limit > 2000:
                return 400, {"error": "limit must be at most 2000"}
            return 200, {"data": data[offset : offset + limit], "timestamp": ts}
        if len(segments) == 2 and segments[0] == "assets":
            asset = assets.get(segments[1])
            if asset is None:
                return 404, {"error": f"{segments[1]} not found"}
            return 200, {"data": asset, "timestamp": ts}
        if len(segments) == 3 and segments[0] == "assets" and segments[2] == "history":
            asset = assets.get(segments[1])
            if asset is None:
                return 404, {"error": f"{segments[1]} not found"}
            return self._history(originals[segments[1]], query, ts)
        return 404, {"error": f"Not found: /{'/'.join(segments)}"}

    def _history(self, asset: dict, query: dict[str, str], ts: int) -> tuple[int, Any]:
        interval = query.get("interval")
        if interval not in INTERVALS_MS:
            return 400, {"error": f"invalid interval {interval!r}: use one of {list(INTERVALS_MS)}"}
        step = INTERVALS_MS[interval]
        if ("start" in query) != ("end" in query):
            return 400, {"error": "start and end must be given together"}
        if "start" in query:
            try:
                start, end = int(query["start"]), int(query["end"])
            except ValueError:
                return 400, {"error": "start and end must be milliseconds"}
            if start > end:
                return 400, {"error": "start must not be after end"}
            if end - start > self.history_max_range_ms:
                return 400, {
                    "error": f"range too long: at most {self.history_max_range_ms} ms "
                    f"per request for interval {interval}"
                }
        else:
            end, start = ts, ts - min(DAY_MS, self.history_max_range_ms)
        first = -(-start // step) * step  # first point of the grid at or after start
        supply: Any = asset.get("supply")
        if supply and self.history_supply_as_number:
            supply = float(supply)
        points = [
            {
                "priceUsd": price_usd(asset, t),
                "time": t,
                "date": utc_iso_ms(t),
                "circulatingSupply": supply,
            }
            for t in range(first, min(end, ts) + 1, step)
        ]
        if self.recorded_style:
            for point in points:
                point["priceUsd"] = f"{float(point['priceUsd']):.18f}"
        if self.history_hook is not None:
            points = self.history_hook(asset["id"], points)
        return 200, {"data": points, "timestamp": ts}

    @staticmethod
    def _json(handler, status: int, body: Any) -> int:
        payload = json.dumps(body).encode()
        FakeCoinCap._send(handler, status, payload, "application/json", {})
        return len(payload)

    @staticmethod
    def _send(
        handler, status: int, payload: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            for key, value in headers.items():
                if key.lower() != "content-type":
                    handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout); nothing to answer


if __name__ == "__main__":  # run it by hand: python devkit/fake_coincap.py [API_KEY]
    import sys

    with FakeCoinCap(api_key=sys.argv[1] if len(sys.argv) > 1 else "test-coincap-key") as f:
        print(f"fake CoinCap on {f.base_url} (key {f.api_key!r}); Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
