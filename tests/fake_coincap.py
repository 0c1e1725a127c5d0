"""A local HTTP fake of the CoinCap v3 REST API, for the tests.

It speaks the shapes described in ../shared/COINCAP.md: every number is a string, some fields are
null, errors are JSON ``{"error": "..."}``, and every request must carry
``Authorization: Bearer <key>`` (or ``apiKey=<key>`` in the query string, which v3 also accepts)
or it is answered 401.

    with FakeCoinCap(api_key="test-key") as fake:
        fake.base_url                          # http://127.0.0.1:PORT  (use as COINCAP_BASE_URL)
        fake.set_snapshot(assets, timestamp_ms)
        fake.queue(Scripted(429, {"error": "rate limited"}, {"Retry-After": "1"}))
        fake.fail_always(Scripted(503, {"error": "Service Unavailable"}))
        fake.extra_fields = {"circulatingSupply": "1.0"}
        fake.delay = 0.5
        fake.requests               # every request seen: method, path, query, headers, at

Scripted responses are served first-in first-out, one per request (any path), before the normal
answer; ``fake.reset()`` drops them and the extra fields and delay.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIVE_MINUTES_MS = 5 * 60 * 1000
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

# The original pipeline's ten assets (DESIGN.md defaults) ...
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


class FakeCoinCap:
    def __init__(
        self,
        api_key: str = "test-coincap-key",
        assets: list[dict] | None = None,
        timestamp_ms: int | None = None,
    ):
        self.api_key = api_key
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
        self.delay: float = 0.0
        self.requests: list[RecordedRequest] = []
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

    def snapshot(self) -> list[dict]:
        """The assets as they are served now (with extra_fields), deep-copied."""
        with self._lock:
            return [self._decorate(a) for a in self._assets.values()]

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
            self.delay = 0.0

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == path]

    # ------------------------------------------------------------------ server
    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCoinCap:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                fake._handle(self)

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-coincap", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeCoinCap:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering
    def _decorate(self, asset: dict) -> dict:
        out = copy.deepcopy(asset)
        out.update(copy.deepcopy(self.extra_fields))
        return out

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(
                RecordedRequest(handler.command, parts.path, query, headers, time.monotonic())
            )
            scripted = self._queue.pop(0) if self._queue else self._always
            delay = self.delay
        if delay:
            time.sleep(delay)
        if scripted is not None:
            if scripted.delay:
                time.sleep(scripted.delay)
            self._send(handler, scripted.status, *scripted.encoded(), scripted.headers)
            return
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}" and query.get("apiKey") != self.api_key:
            self._json(handler, 401, {"error": "Unauthorized. Please provide a valid API key."})
            return
        status, body = self._route(parts.path.rstrip("/"), query)
        self._json(handler, status, body)

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        # tolerate a /v3 prefix, as in https://rest.coincap.io/v3
        if segments[:1] == ["v3"]:
            segments = segments[1:]
        with self._lock:
            ts = self._timestamp_ms
            assets = {k: self._decorate(v) for k, v in self._assets.items()}
        if segments == ["assets"]:
            if "ids" in query:
                wanted = [i.strip() for i in query["ids"].split(",") if i.strip()]
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
            return self._history(asset, query, ts)
        return 404, {"error": f"Not found: /{'/'.join(segments)}"}

    def _history(self, asset: dict, query: dict[str, str], ts: int) -> tuple[int, Any]:
        interval = query.get("interval")
        if interval not in INTERVALS_MS:
            return 400, {"error": "missing or invalid interval"}
        step = INTERVALS_MS[interval]
        if ("start" in query) != ("end" in query):
            return 400, {"error": "start and end must be given together"}
        if "start" in query:
            try:
                start, end = int(query["start"]), int(query["end"])
            except ValueError:
                return 400, {"error": "start and end must be milliseconds"}
        else:
            end, start = ts, ts - 86_400_000
        points = []
        first = -(-start // step) * step  # first multiple of step at or after start
        base = Decimal(asset["priceUsd"] or "1")
        for t in range(first, min(end, ts) + 1, step):
            # a deterministic wiggle of at most +-1% around the current price
            factor = Decimal(1) + Decimal((t // step) % 21 - 10) / Decimal(1000)
            price = (base * factor).quantize(Decimal("0.0000000000000001"))
            date = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t / 1000)) + ".000Z"
            points.append({"priceUsd": f"{price:f}", "time": t, "date": date})
        return 200, {"data": points, "timestamp": ts}

    @staticmethod
    def _json(handler, status: int, body: Any) -> None:
        FakeCoinCap._send(handler, status, json.dumps(body).encode(), "application/json", {})

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


if __name__ == "__main__":  # run it by hand: python tests/fake_coincap.py [API_KEY]
    import sys

    with FakeCoinCap(api_key=sys.argv[1] if len(sys.argv) > 1 else "test-coincap-key") as f:
        print(f"fake CoinCap on {f.base_url} (key {f.api_key!r}); Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
