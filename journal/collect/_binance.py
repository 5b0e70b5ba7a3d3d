"""Binance spot and USDⓈ-M futures market streams: diff depth on a combined stream,
REST depth snapshots to sync (journal.feeds._binance has the sync rules).

    wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms
    {"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms", ...], "id": 1}
      -> {"result": null, "id": 1}        refused: {"error": {"code": 2, "msg": ...}, "id": 1}
    {"stream": "btcusdt@depth@100ms", "data": {"e": "depthUpdate", "s": "BTCUSDT", ...}}
    GET https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000

The streams are named in the URL and subscribed again by SUBSCRIBE: the reply is the
proof that the venue took them (a URL's streams are not acknowledged), and a gateway
that only implements one of the two still serves them (a stream subscribed twice is
sent once by Binance; sent twice, the copy is a stale diff to the builder). A base
URL ending in ``/ws`` is the raw endpoint: events come unwrapped (``{"e":
"depthUpdate", ...}``) and only SUBSCRIBE names them; a gateway that answers 404 to
``/stream`` is tried at ``/ws``, then (one symbol) at ``/ws/<stream>``.

Binance pings with websocket ping frames (every 20 s on spot, 3 min on futures);
the transport answers them, no application ping is needed.
USDⓈ-M futures route high-frequency streams such as depth under ``/public``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson

from journal.collect._protocol import Incoming, Kind, Protocol, incoming, join_path
from journal.feeds._binance import route

DIFF_SPEED: Final = "@depth@100ms"
"""Diff depth every 100 ms, the fastest both spot and futures offer."""
_KINDS: Final = {"depthUpdate": Kind.BOOK, "response": Kind.ACK, "error": Kind.REFUSED}
SNAPSHOT_LIMIT: Final = 1000
"""Levels of the REST snapshot: deep enough that diffs rarely reach past it (weight
50 on spot, 20 on futures, of 6000 and 2400 a minute: journal.collect._venues)."""


class BinanceProtocol(Protocol):
    def __init__(self, snapshot_path: str) -> None:
        super().__init__()
        self.snapshot_path = snapshot_path  # /api/v3/depth or /fapi/v1/depth

    @staticmethod
    def stream_name(symbol: str) -> str:
        return symbol.lower() + DIFF_SPEED

    def stream_url(self, base: str, symbols: Sequence[str]) -> str:
        parts = urlsplit(base)
        path = parts.path.rstrip("/")
        if path.endswith("/ws"):
            return base
        if not path.endswith("/stream"):
            path += "/stream"
        query = "streams=" + "/".join(self.stream_name(symbol) for symbol in symbols)
        return urlunsplit((parts.scheme, parts.netloc, path, query, ""))

    def alternative_url(self, failed: str, symbols: Sequence[str]) -> str | None:
        """Binance documents three forms; a gateway may serve only one. After the
        combined ``/stream?streams=`` comes the raw ``/ws`` (streams named by SUBSCRIBE
        alone), then for a single stream ``/ws/<stream>``."""
        parts = urlsplit(failed)
        path = parts.path.rstrip("/")
        if path.endswith("/stream"):
            raw = path[: -len("/stream")] + "/ws"
            return urlunsplit((parts.scheme, parts.netloc, raw, "", ""))
        if path.endswith("/ws") and len(symbols) == 1:
            single = f"{path}/{self.stream_name(symbols[0])}"
            return urlunsplit((parts.scheme, parts.netloc, single, "", ""))
        return None

    def subscribe(self, symbols: Sequence[str], depth: int) -> list[tuple[int | None, str]]:
        request_id = self.next_id()
        params = [self.stream_name(symbol) for symbol in symbols]
        text = orjson.dumps({"method": "SUBSCRIBE", "params": params, "id": request_id})
        return [(request_id, text.decode())]

    def classify(self, message: Any) -> Incoming:
        return incoming(route, _KINDS, message)

    def snapshot_url(self, base: str, symbol: str) -> str | None:
        return f"{join_path(base, self.snapshot_path)}?symbol={symbol}&limit={SNAPSHOT_LIMIT}"
