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

import uuid
from collections.abc import Sequence
from typing import Any

import orjson

from journal.collect._protocol import Incoming, Kind, Protocol, join_path

PATH = "/websocket/v1"


class UpbitProtocol(Protocol):
    ping_interval_s = 20.0
    acknowledges = False

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
        if type(message) is not dict:
            return Incoming(Kind.OTHER, None, message)
        kind = message.get("type", message.get("ty"))
        if kind == "orderbook":
            return Incoming(Kind.BOOK, message.get("code", message.get("cd")), message)
        if "status" in message:
            return Incoming(Kind.PONG, None, message)
        if "error" in message:
            return Incoming(Kind.REFUSED, None, orjson.dumps(message).decode())
        return Incoming(Kind.OTHER, None, message)
