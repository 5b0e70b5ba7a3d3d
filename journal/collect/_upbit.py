"""Upbit's and Bithumb's websocket (Bithumb's public v1 is Upbit's protocol): whole
order books, no sequence, no REST snapshot needed (journal.feeds reads the books).

    wss://api.upbit.com/websocket/v1             wss://ws-api.bithumb.com/websocket/v1
    [{"ticket": "journal-..."}, {"type": "orderbook", "codes": ["KRW-BTC", ...]},
     {"format": "DEFAULT"}]
    "PING" -> {"status": "UP"}          errors: {"error": {"name": ..., "message": ...}}

A subscription is not acknowledged: the first book is the sign it was taken. The
connection is closed by the venue after 120 s without a message either way, and a
quiet market can be silent that long, so a "PING" goes out every 20 s. Books come in
binary frames; the DEFAULT format is the documented one every gateway serves (the
builders read SIMPLE too).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any, Final

import orjson

from journal.collect._protocol import Incoming, Kind, Protocol, incoming, join_path
from journal.feeds._upbit import BOOK_TYPE, route_full_books

PATH = "/websocket/v1"
_KINDS: Final = {BOOK_TYPE: Kind.BOOK, "status": Kind.PONG, "error": Kind.REFUSED}


class UpbitProtocol(Protocol):
    ping_interval_s = 20.0
    acknowledges = False

    def __init__(self, venue: str = "upbit") -> None:
        super().__init__()
        self._route = functools.partial(route_full_books, venue)

    def stream_url(self, base: str, symbols: Sequence[str]) -> str:
        return join_path(base, PATH)

    def subscribe(self, symbols: Sequence[str], depth: int) -> list[tuple[int | None, str]]:
        request = [
            {"ticket": f"journal-{uuid.uuid4()}"},
            {"type": "orderbook", "codes": list(symbols)},
            {"format": "DEFAULT"},
        ]
        return [(None, orjson.dumps(request).decode())]

    def ping(self) -> str | None:
        return "PING"

    def classify(self, message: Any) -> Incoming:
        return incoming(self._route, _KINDS, message)
