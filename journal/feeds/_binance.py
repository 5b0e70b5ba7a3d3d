"""Binance spot and USDT-M futures books: ``depthUpdate`` diffs on a REST snapshot.

The sync rules, as Binance documents them ("How to manage a local order book
correctly"), with ``lastUpdateId`` from the REST depth snapshot:

    spot     drop a diff with u <= lastUpdateId; the first one applied has
             U <= lastUpdateId + 1 <= u; every next one has U == previous u + 1
    futures  drop a diff with u < lastUpdateId; the first one applied has
             U <= lastUpdateId <= u; every next one has pu == previous u

Anything else is a gap: the book is discarded, and the diffs from the gap on wait
for the next REST snapshot (received after the gap) to sync again. Diffs received
before a snapshot wait for it too (the REST call is made after subscribing), and
those it does not make stale are applied when it arrives; their books are stamped
with the snapshot's receive time, the moment the collector could know them. A
snapshot received while the book is synced is not needed and is left unused.

Each applied diff publishes a book stamped with its ``E`` (event time, ms) and its
``u`` (last update id) as the sequence. The snapshot alone publishes nothing: a spot
snapshot carries no event time to stamp it with.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from journal.feeds._book import BookBuilder, Level, PriceLevels, TopOfBook, message_fields
from journal.feeds._errors import MessageError
from journal.feeds._route import Route

# Diffs kept while waiting for a snapshot: the oldest go first (they are the ones a
# snapshot makes stale). 100 ms diffs: two minutes of a stream.
PENDING_DIFFS: Final = 1200

# Diff-depth channels of a combined stream (``nknusdt@depth@100ms``); partial-depth
# channels (``depth10``) carry whole top-N books, not diffs, and are not this.
_DIFF_CHANNEL = re.compile(r"depth(@\d+ms)?")


def levels(pairs: Iterable[Iterable[str]]) -> list[Level]:
    """``[["0.3513", "6195.0"], ...]`` as float pairs: Binance sends decimal strings."""
    return [(float(price), float(quantity)) for price, quantity in pairs]


@dataclass(frozen=True, slots=True)
class DepthDiff:
    first_id: int  # U
    last_id: int  # u
    previous_id: int | None  # pu: futures only
    event_ms: int  # E
    bids: list[Level]
    asks: list[Level]


def route(message: Any) -> Route:
    """A combined-stream message (``{"stream", "data"}``) or a request's response."""
    if isinstance(message, dict) and "stream" in message and "data" in message:
        channel = str(message["stream"]).partition("@")[2]
        if _DIFF_CHANNEL.fullmatch(channel):
            with message_fields(f"binance {message['stream']}"):
                return Route("depthUpdate", str(message["data"]["s"]), message["data"])
        return Route(channel, None, message["data"])
    if isinstance(message, dict) and "result" in message and "id" in message:
        return Route("response", None, message)
    raise MessageError(
        "binance: expected a combined-stream message {'stream': ..., 'data': ...} "
        "or a response {'result': ..., 'id': ...}"
    )


def route_rest(url: str, body: Any) -> Route:
    """A REST response: a depth snapshot of the ``symbol=`` it asked for
    (``.../depth?symbol=NKNUSDT&limit=1000``), or another endpoint's answer."""
    request = urlsplit(url)
    endpoint = request.path.rpartition("/")[2]
    if endpoint != "depth":
        return Route(f"REST {endpoint}", None, body)
    symbols = parse_qs(request.query).get("symbol")
    if not symbols:
        raise MessageError(f"{url}: a depth request without a symbol= parameter")
    return Route("depth", symbols[0], body)


class BinanceDiffBook(BookBuilder):
    """Diffs applied on a REST snapshot; the spot and futures rules differ only in
    ``_is_stale``, ``_bridges`` and ``_follows``."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self._pending: deque[DepthDiff] = deque(maxlen=PENDING_DIFFS)
        self._snapshot_id = 0  # lastUpdateId of the snapshot in hand
        self._last_id: int | None = None  # u of the last applied diff; None: none yet

    def on_snapshot(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """A REST depth snapshot; the books of the waiting diffs it lets us apply."""
        self.stats.snapshots += 1
        if self.synced:
            return []
        with message_fields(f"{self.EXCHANGE} depth snapshot"):
            snapshot_id = int(message["lastUpdateId"])
            book = PriceLevels(levels(message["bids"]), levels(message["asks"]))
        self._sync(book)
        self._snapshot_id = snapshot_id
        self._last_id = None
        waiting = list(self._pending)
        self._pending.clear()
        books = (self._apply(diff, received_ns) for diff in waiting)
        return [book for book in books if book is not None]

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """A ``depthUpdate`` event (the ``data`` of the combined stream)."""
        self.stats.messages += 1
        with message_fields(f"{self.EXCHANGE} depthUpdate"):
            diff = self._read(message)
        book = self._apply(diff, received_ns)
        return [] if book is None else [book]

    def _read(self, message: Any) -> DepthDiff:
        return DepthDiff(
            int(message["U"]),
            int(message["u"]),
            None,
            int(message["E"]),
            levels(message["b"]),
            levels(message["a"]),
        )

    def _apply(self, diff: DepthDiff, received_ns: int) -> TopOfBook | None:
        if self._book is None:
            self._pending.append(diff)
            return None
        if self._last_id is None:
            if self._is_stale(diff):
                self.stats.stale += 1
                return None
            in_sequence = self._bridges(diff)
        else:
            in_sequence = self._follows(diff, self._last_id)
        if not in_sequence:
            self._gap()
            self._pending.append(diff)
            return None
        self._book.update(diff.bids, diff.asks)
        self._last_id = diff.last_id
        return self._publish(diff.event_ms, diff.last_id, received_ns)

    @abstractmethod
    def _is_stale(self, diff: DepthDiff) -> bool:
        """Older than the snapshot: dropped before the first diff is applied."""

    @abstractmethod
    def _bridges(self, diff: DepthDiff) -> bool:
        """The first diff applied on the snapshot: it spans the snapshot's id."""

    @abstractmethod
    def _follows(self, diff: DepthDiff, last_id: int) -> bool:
        """The next diff after the one with ``u == last_id``."""


class BinanceSpotBook(BinanceDiffBook):
    """Binance spot: ``U`` must follow the previous ``u`` by one."""

    EXCHANGE = "binance"

    def _is_stale(self, diff: DepthDiff) -> bool:
        return diff.last_id <= self._snapshot_id

    def _bridges(self, diff: DepthDiff) -> bool:
        return diff.first_id <= self._snapshot_id + 1 <= diff.last_id

    def _follows(self, diff: DepthDiff, last_id: int) -> bool:
        return diff.first_id == last_id + 1


class BinanceFuturesBook(BinanceDiffBook):
    """Binance USDT-M futures: each diff's ``pu`` must be the previous ``u``."""

    EXCHANGE = "binance-futures"

    def _read(self, message: Any) -> DepthDiff:
        return replace(super()._read(message), previous_id=int(message["pu"]))

    def _is_stale(self, diff: DepthDiff) -> bool:
        return diff.last_id < self._snapshot_id

    def _bridges(self, diff: DepthDiff) -> bool:
        return diff.first_id <= self._snapshot_id <= diff.last_id

    def _follows(self, diff: DepthDiff, last_id: int) -> bool:
        return diff.previous_id == last_id
