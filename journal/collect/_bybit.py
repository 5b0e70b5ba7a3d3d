"""Bybit v5 public streams, spot and linear: ``orderbook.<depth>.<symbol>`` snapshot and
deltas (journal.feeds has the sync rules).

    wss://stream.bybit.com/v5/public/spot      (linear: /v5/public/linear)
    {"op": "subscribe", "args": ["orderbook.50.BTCUSDT", ...], "req_id": "3"}
      -> {"success": true, "ret_msg": "subscribe", "op": "subscribe", "req_id": "3", ...}
    {"op": "ping", "req_id": "4"}  -> {"success": true, "ret_msg": "pong", "op": "ping"}
                                      (linear: {"op": "pong", "args": [...], ...})
    {"topic": "orderbook.50.BTCUSDT", "type": "snapshot" | "delta", "ts": ..., "data": {...}}

Bybit asks for a ping every 20 s and closes a connection that stays silent; spot takes
at most 10 topics per subscribe request. A gap is answered by unsubscribing and
subscribing the topic again: the venue then sends a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from journal.collect._protocol import Incoming, Kind, Protocol, incoming, join_path
from journal.feeds._bybit import BOOK_TOPIC, route

TOPIC_DEPTHS: Final = (1, 50, 200, 1000)
"""The depths Bybit v5 offers for spot and linear order books."""
TOPICS_PER_REQUEST: Final = 10
_KINDS: Final = {
    BOOK_TOPIC: Kind.BOOK,
    "subscribe": Kind.ACK,
    "unsubscribe": Kind.ACK,
    "pong": Kind.PONG,
    "ping": Kind.PONG,
    "error": Kind.REFUSED,
}


def topic_depth(depth: int) -> int:
    """The smallest offered depth that holds ``depth`` levels; 50 rather than 1 for a
    top of book, since level 1 is resent whole every few seconds."""
    return next((d for d in TOPIC_DEPTHS[1:] if d >= depth), TOPIC_DEPTHS[-1])


class BybitProtocol(Protocol):
    ping_interval_s = 20.0

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path  # /v5/public/spot or /v5/public/linear

    def stream_url(self, base: str, symbols: Sequence[str]) -> str:
        return join_path(base, self.path)

    def _request(self, op: str, topics: list[str]) -> tuple[int | None, str]:
        request_id = self.next_id()
        text = orjson.dumps({"op": op, "args": topics, "req_id": str(request_id)})
        return request_id, text.decode()

    def subscribe(self, symbols: Sequence[str], depth: int) -> list[tuple[int | None, str]]:
        topics = [f"orderbook.{topic_depth(depth)}.{symbol}" for symbol in symbols]
        return [
            self._request("subscribe", topics[start : start + TOPICS_PER_REQUEST])
            for start in range(0, len(topics), TOPICS_PER_REQUEST)
        ]

    def resubscribe(self, symbol: str, depth: int) -> list[tuple[int | None, str]]:
        topic = [f"orderbook.{topic_depth(depth)}.{symbol}"]
        return [self._request("unsubscribe", topic), self._request("subscribe", topic)]

    def ping(self) -> str | None:
        return orjson.dumps({"op": "ping", "req_id": str(self.next_id())}).decode()

    def classify(self, message: Any) -> Incoming:
        return incoming(route, _KINDS, message)
