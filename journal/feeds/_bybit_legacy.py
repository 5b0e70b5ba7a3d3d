"""Legacy: Bybit inverse (v2 API, retired) books, for ``journal import-captures`` only:
``orderBookL2_25`` snapshot, then deltas by level id. Live Bybit books are v5
(journal.feeds._bybit).

A ``snapshot`` message is the whole book (25 levels per side, each with an ``id``); a
``delta`` deletes, updates and inserts levels by ``id``, in that order. Bybit
documents no contiguous sequence for this topic: ``cross_seq`` is the matching
engine's and skips numbers, so it can only be checked to increase. The gaps detected
are therefore a ``cross_seq`` that does not increase, and a delta that does not fit
the book (deleting or updating an id the book lacks, inserting one it has): only a
lost message explains those. A lost delta that fits the book cannot be detected from
this feed. After a gap the book is dropped until the next ``snapshot`` (a client
resubscribes to get one).

Books are stamped with ``timestamp_e6 // 1000`` (the message's time, µs, in ms) and
``cross_seq`` as the sequence.

Only the inverse perpetuals (``BTCUSD``: quoted in USD, quantities in USD contracts)
are read. They are journaled as ``bybit``, whose other books are v5 spot, so the
quote is what tells them apart (journal.analysis.VENUE_MARKETS: ``bybit`` ``BASE-USD``
is ``inverse_perpetual``). A v2 USDT perpetual or dated future journaled as ``bybit``
would read as spot, a quantity in another unit: refused, with the stream named.
"""

from __future__ import annotations

from typing import Any

from journal.feeds._book import (
    TOP_LEVELS,
    BookBuilder,
    Level,
    PriceLevels,
    TopOfBook,
    message_fields,
)
from journal.feeds._errors import MessageError
from journal.feeds._route import Route

BOOK_TOPIC = "orderBookL2_25"
_IS_BID = {"Buy": True, "Sell": False}


def route(message: Any) -> Route:
    """By topic (``orderBookL2_25.BTCUSD``); subscription responses are ``response``."""
    if isinstance(message, dict) and "topic" in message:
        channel, _, symbol = str(message["topic"]).partition(".")
        return Route(channel, symbol if channel == BOOK_TOPIC else None, message)
    if isinstance(message, dict) and "success" in message and "request" in message:
        return Route("response", None, message)
    raise MessageError(
        "bybit: expected a message with a 'topic' or a response with 'success' and 'request'"
    )


class BybitLegacyBook(BookBuilder):
    """One ``orderBookL2_25`` topic of the retired v2 API; ``cross_seq`` must increase.
    Journaled as ``bybit`` (the captures' exchange), as it always was."""

    EXCHANGE = "bybit"

    def __init__(self, symbol: str, depth: int = TOP_LEVELS) -> None:
        if not symbol.endswith("-USD"):
            raise MessageError(
                f"bybit {BOOK_TOPIC} {symbol}: not an inverse perpetual (BASE-USD); the v2 "
                "import reads those only, as a USDT perpetual or a dated future journaled "
                "as bybit would read as spot: leave this capture out"
            )
        super().__init__(symbol, depth)
        self._place_of_id: dict[int, tuple[bool, float]] = {}  # id -> (is bid, price)
        self._cross_seq = 0

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        self.stats.messages += 1
        try:
            return self._on_message(message, received_ns)
        except MessageError:
            # A bad entry may come after others were applied: the book is no longer
            # the exchange's, so it waits for the next snapshot like after a gap.
            if self._book is not None:
                self._gap()
            raise

    def _on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        with message_fields(f"bybit {BOOK_TOPIC}"):
            kind = message["type"]
            cross_seq = int(message["cross_seq"])
            timestamp_ms = int(message["timestamp_e6"]) // 1000
            if kind == "snapshot":
                self.stats.snapshots += 1
                self._take_snapshot(message["data"])
            elif kind != "delta":
                raise MessageError(
                    f"bybit {BOOK_TOPIC}: type {kind!r}, expected 'snapshot' or 'delta'"
                )
            elif self._book is None:
                return []
            elif cross_seq <= self._cross_seq or not self._apply_delta(message["data"]):
                self._gap()
                return []
        self._cross_seq = cross_seq
        published = self._publish(timestamp_ms, cross_seq, received_ns)
        return [] if published is None else [published]

    def _take_snapshot(self, entries: Any) -> None:
        self._place_of_id = {}
        changes: dict[bool, list[Level]] = {True: [], False: []}
        for entry in entries:
            self._insert(entry, changes)
        self._sync(PriceLevels(changes[True], changes[False]))

    def _apply_delta(self, data: Any) -> bool:
        """Apply one delta; False if it does not fit the book (the book is then dropped)."""
        assert self._book is not None
        changes: dict[bool, list[Level]] = {True: [], False: []}
        for entry in data["delete"]:
            place = self._place_of_id.pop(int(entry["id"]), None)
            if place is None:
                return False
            changes[place[0]].append((place[1], 0.0))
        for entry in data["update"]:
            place = self._place_of_id.get(int(entry["id"]))
            if place is None:
                return False
            changes[place[0]].append((place[1], float(entry["size"])))
        for entry in data["insert"]:
            if int(entry["id"]) in self._place_of_id:
                return False
            self._insert(entry, changes)
        self._book.update(changes[True], changes[False])
        return True

    def _insert(self, entry: Any, changes: dict[bool, list[Level]]) -> None:
        is_bid, price = _IS_BID.get(entry["side"]), float(entry["price"])
        if is_bid is None:
            raise MessageError(f"bybit {BOOK_TOPIC}: side {entry['side']!r}, expected Buy or Sell")
        self._place_of_id[int(entry["id"])] = (is_bid, price)
        changes[is_bid].append((price, float(entry["size"])))
