"""Bybit v5 books, spot (``bybit``) and USDT linear perpetuals (``bybit-futures``):
the public ``orderbook.<depth>.<symbol>`` topic, a ``snapshot`` then ``delta``s.

The rules, as Bybit documents them (v5 WebSocket, Public, "Orderbook"):

- A ``snapshot`` is the whole book (at the topic's depth): the local book is reset
  to it, whatever it held. Bybit sends one on subscribing, and again whenever its
  side had a problem ("guaranteed to contain the latest data").
- A ``delta`` sets each level it lists: size ``"0"`` deletes the price, any other
  size inserts or replaces it.
- ``u``, the update id, is contiguous on a topic: a delta must have
  u == previous u + 1. One with u <= previous u is a replay or a duplicate: ignored,
  counted ``stale``, never a gap. One with u > previous u + 1 is a gap: the book is
  dropped, ``needs_resync`` becomes True and the connector resubscribes the topic
  (a new subscription starts with a snapshot).
- ``u == 1``: "occasionally ... a snapshot due to the restart of the service: please
  overwrite the local orderbook". A message with u == 1 is taken as a snapshot,
  also when it says ``delta``.
- A delta before any snapshot (or after a gap, before the next) is not applied
  (``unsynced``) and asks for a resync. A delta that cannot be applied (a level
  without a size, a size that is not a number, a negative size) drops the book the
  same way and raises MessageError.

Journaled: ``sequence`` = ``u`` (the id the rules run on, contiguous per topic; it
restarts at 1 when Bybit's service does, so ``journal analyze`` treats it as only
increasing: see journal.feeds._sequences); ``timestamp`` = ``ts``, the time Bybit's
system generated the message (ms), which is what the book is as of, like Binance's
event time ``E``; ``cts``, the matching engine's time of the last change, is not
stamped (it is older than ``ts`` by the time the book took to be published and is
not the moment the book was seen).
"""

from __future__ import annotations

from typing import Any, Final

from journal.feeds._book import (
    TOP_LEVELS,
    BookBuilder,
    PriceLevels,
    TopOfBook,
    message_fields,
    read_levels,
)
from journal.feeds._errors import MessageError
from journal.feeds._route import Route

BOOK_TOPIC: Final = "orderbook"
RESTART_UPDATE_ID: Final = 1  # u == 1: Bybit's service restarted, the message is a snapshot
EXCHANGES: Final = ("bybit", "bybit-futures")


def route(message: Any) -> Route:
    """By ``topic`` (``orderbook.50.BTCUSDT``: kind ``orderbook``, symbol ``BTCUSDT``);
    operation answers by ``op``: ``pong`` (either form Bybit uses), ``subscribe``
    (``success`` true), ``error`` (``success`` false: ``ret_msg`` says why)."""
    if isinstance(message, dict) and "topic" in message:
        parts = str(message["topic"]).split(".")
        if parts[0] == BOOK_TOPIC and len(parts) == 3:
            return Route(BOOK_TOPIC, parts[2], message)
        return Route(parts[0], None, message)
    if isinstance(message, dict) and "op" in message:
        if message.get("success") is False:
            return Route("error", None, message)
        if message["op"] == "pong" or message.get("ret_msg") == "pong":
            return Route("pong", None, message)
        return Route(str(message["op"]), None, message)
    raise MessageError(
        "bybit: expected a message with a 'topic' or an operation's answer with 'op'; "
        f"got {str(message)[:120]}"
    )


class BybitBook(BookBuilder):
    """One ``orderbook.<depth>.<symbol>`` topic of Bybit v5, spot or linear.

    ``exchange`` is the journal's name of the market the topic is from: ``bybit``
    (spot, ``/v5/public/spot``) or ``bybit-futures`` (USDT perpetuals,
    ``/v5/public/linear``); BybitSpotBook and BybitLinearBook fix it.
    """

    EXCHANGE = "bybit"
    RESYNC_ACTION = True

    def __init__(
        self, symbol: str, depth: int = TOP_LEVELS, *, exchange: str | None = None
    ) -> None:
        exchange = exchange or self.EXCHANGE
        if exchange not in EXCHANGES:
            raise ValueError(
                f"exchange={exchange!r}: a Bybit v5 book is 'bybit' (spot) or "
                "'bybit-futures' (linear perpetuals)"
            )
        super().__init__(symbol, depth, exchange=exchange)
        self._update_id = 0  # u of the book

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """One ``orderbook`` message (the whole message: topic, type, ts, data)."""
        self.stats.messages += 1
        what = f"{self.exchange} {self.symbol} orderbook"
        try:
            with message_fields(what):
                kind = message["type"]
                timestamp_ms = int(message["ts"])
                data = message["data"]
                update_id = int(data["u"])
                bids = read_levels(data["b"], what)
                asks = read_levels(data["a"], what)
                if kind not in ("snapshot", "delta"):
                    raise MessageError(f"{what}: type {kind!r}, expected 'snapshot' or 'delta'")
        except MessageError:
            if self._book is not None:
                self._gap()
            self._needs_resync = True
            raise
        if kind == "snapshot" or update_id == RESTART_UPDATE_ID:
            self.stats.snapshots += 1
            self._sync(PriceLevels(bids, asks))
        elif self._book is None:
            self._needs_resync = True  # deltas without a book: only a snapshot helps
            return []
        elif update_id <= self._update_id:
            self.stats.stale += 1  # a replay or a duplicate: never a gap
            return []
        elif update_id != self._update_id + 1:
            self._gap()
            return []
        else:
            self._book.update(bids, asks)
        self._update_id = update_id
        published = self._publish(timestamp_ms, update_id, received_ns)
        return [] if published is None else [published]


class BybitSpotBook(BybitBook):
    """Bybit v5 spot: ``/v5/public/spot``, journaled as ``bybit``."""

    EXCHANGE = "bybit"


class BybitLinearBook(BybitBook):
    """Bybit v5 USDT linear perpetuals: ``/v5/public/linear``, journaled as
    ``bybit-futures``."""

    EXCHANGE = "bybit-futures"
