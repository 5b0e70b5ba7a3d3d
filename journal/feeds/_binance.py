"""Binance spot and USDT-M futures books: ``depthUpdate`` diffs on a REST snapshot.

The sync rules, as Binance documents them today ("How to manage a local order book
correctly": spot in the Spot API's WebSocket Streams, futures in the USDⓈ-M Futures
docs), with ``lastUpdateId`` from the REST depth snapshot and the **book id** the
``u`` of the last diff applied (the snapshot's ``lastUpdateId`` before the first):

    spot     diffs are buffered until a snapshot; those with u <= lastUpdateId are
             dropped (stale); the first one left must bridge, U <= lastUpdateId + 1,
             else the snapshot is older than the stream can bridge and a new one
             is needed. Then, per diff:
                 u <= book id        stale (a replay or a duplicate): ignored
                 U > book id + 1     a gap: the book is dropped, a new snapshot needed
                 otherwise           applied; book id = u
    futures  diffs with u < lastUpdateId are dropped; the first applied has
             U <= lastUpdateId <= u (else the snapshot is too old); then, per diff:
                 u <= book id        stale: ignored
                 pu != book id       a gap
                 otherwise           applied; book id = u

A stale diff is counted in ``stale`` and is never a gap. A gap drops the book at once
(``needs_resync`` becomes True: the connector fetches a fresh snapshot now, not at
the end of the stream), and the diffs from the gap on wait for that snapshot. The
Spot doc's step "if lastUpdateId < the U of the first event, fetch the snapshot
again" is applied as the bridge condition above: a snapshot with lastUpdateId == U - 1
is exactly the book before that event, which its own update procedure then applies
(U is not > book id + 1), so it is used rather than refetched.

Diffs received before a snapshot wait for it (the REST call is made after
subscribing), and those it does not make stale are applied when it arrives; their
books are stamped with the snapshot's receive time, the moment the collector could
know them. A snapshot received while the book is synced is counted and not used.
``needs_resync`` is True from the start (no book without a snapshot), after a gap,
a crossed book, a malformed diff, a stale snapshot and ``reset()``.

Each applied diff publishes a book stamped with its ``E`` (event time, ms) and its
``u`` (last update id) as the sequence. The snapshot alone publishes nothing: a spot
snapshot carries no event time to stamp it with.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from journal.feeds._book import (
    TOP_LEVELS,
    BookBuilder,
    Level,
    PriceLevels,
    TopOfBook,
    message_fields,
    read_levels,
)
from journal.feeds._errors import MessageError
from journal.feeds._route import Route

# Diffs kept while waiting for a snapshot: the oldest go first (they are the ones a
# snapshot makes stale). 100 ms diffs: two minutes of a stream.
PENDING_DIFFS: Final = 1200

# Diff-depth channels of a combined stream (``nknusdt@depth@100ms``); partial-depth
# channels (``depth10``) carry whole top-N books, not diffs, and are not this.
_DIFF_CHANNEL = re.compile(r"depth(@\d+ms)?")


@dataclass(frozen=True, slots=True)
class DepthDiff:
    first_id: int  # U
    last_id: int  # u
    previous_id: int | None  # pu: futures only
    event_ms: int  # E
    bids: list[Level]
    asks: list[Level]


def route(message: Any) -> Route:
    """A combined-stream message (``{"stream", "data"}``), a raw-stream ``depthUpdate``
    event, or a request's response (``{"result": null, "id": 1}``) or error
    (``{"code": ..., "msg": ...}``, or ``{"error": {...}, "id": 1}`` for a refused
    request; kind ``error``). Read for every message of a live collector: plain dict
    lookups, no context manager."""
    if isinstance(message, dict):
        if "stream" in message and "data" in message:
            channel = str(message["stream"]).partition("@")[2]
            if _DIFF_CHANNEL.fullmatch(channel):
                return Route(
                    "depthUpdate", _symbol(message["data"], message["stream"]), message["data"]
                )
            return Route(channel, None, message["data"])
        if message.get("e") == "depthUpdate":
            return Route("depthUpdate", _symbol(message, "depthUpdate"), message)
        if "result" in message and "id" in message:
            return Route("response", None, message)
        if "error" in message or ("code" in message and "msg" in message):
            return Route("error", None, message)
    raise MessageError(
        "binance: expected a combined-stream message {'stream': ..., 'data': ...}, "
        "a depthUpdate event, a response {'result': ..., 'id': ...} or an error "
        f"{{'code': ..., 'msg': ...}}; got {str(message)[:120]}"
    )


def _symbol(event: Any, what: str) -> str:
    """The event's ``s`` (the symbol); MessageError as message_fields words it."""
    try:
        return str(event["s"])
    except KeyError as error:
        raise MessageError(f"binance {what}: no field {error}") from None
    except TypeError as error:
        raise MessageError(f"binance {what}: bad value ({error})") from None


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
    """Diffs applied on a REST snapshot; spot and futures differ only in
    ``_is_stale``, ``_bridges`` and ``_follows``."""

    RESYNC_ACTION = True

    def __init__(self, symbol: str, depth: int = TOP_LEVELS) -> None:
        super().__init__(symbol, depth)
        self._pending: deque[DepthDiff] = deque(maxlen=PENDING_DIFFS)
        # A snapshot received while unsynced, waiting for the diff that bridges it.
        self._snapshot: PriceLevels | None = None
        self._snapshot_id = 0  # its lastUpdateId
        self._last_id = 0  # the book id: u of the last applied diff
        self._needs_resync = True  # no book without a snapshot

    def on_snapshot(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """A REST depth snapshot; the books of the waiting diffs it lets us apply."""
        self.stats.snapshots += 1
        if self._book is not None:
            return []
        with message_fields(f"{self.exchange} {self.symbol} depth snapshot"):
            snapshot_id = int(message["lastUpdateId"])
            what = f"{self.exchange} {self.symbol} depth snapshot"
            book = PriceLevels(
                read_levels(message["bids"], what), read_levels(message["asks"], what)
            )
        if self._snapshot is not None and snapshot_id < self._snapshot_id:
            return []  # an older request answered late: the newer snapshot stays
        self._snapshot, self._snapshot_id = book, snapshot_id
        self._needs_resync = False
        waiting = list(self._pending)
        self._pending.clear()
        books = (self._take(diff, received_ns) for diff in waiting)
        return [book for book in books if book is not None]

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """A ``depthUpdate`` event (the ``data`` of the combined stream)."""
        self.stats.messages += 1
        try:
            with message_fields(f"{self.exchange} {self.symbol} depthUpdate"):
                diff = self._read(message)
        except MessageError:
            # Its updates are lost: a synced book is no longer the exchange's. Unsynced,
            # the loss shows by the rules themselves (the next diff does not follow).
            if self._book is not None:
                self._gap()
            raise
        book = self._take(diff, received_ns)
        return [] if book is None else [book]

    def reset(self) -> None:
        super().reset()
        self._pending.clear()
        self._snapshot = None

    def _read(self, message: Any) -> DepthDiff:
        what = f"{self.exchange} {self.symbol} depthUpdate"
        return DepthDiff(
            int(message["U"]),
            int(message["u"]),
            None,
            int(message["E"]),
            read_levels(message["b"], what),
            read_levels(message["a"], what),
        )

    def _take(self, diff: DepthDiff, received_ns: int) -> TopOfBook | None:
        """One diff, in the state the stream is in: synced, waiting for a bridge on a
        snapshot, or waiting for a snapshot."""
        if self._book is not None:
            if diff.last_id <= self._last_id:
                self.stats.stale += 1  # a replay or a duplicate: never a gap
                return None
            if not self._follows(diff, self._last_id):
                self._gap()
                self._pending.append(diff)
                return None
            return self._apply(diff, received_ns)
        if self._snapshot is None:
            self._pending.append(diff)
            return None
        if self._is_stale(diff):
            self.stats.stale += 1
            return None
        if not self._bridges(diff):
            # The snapshot predates what the stream can bridge: a newer one is needed.
            self.stats.stale_snapshots += 1
            self._snapshot = None
            self._needs_resync = True
            self._pending.append(diff)
            return None
        self._sync(self._snapshot)
        self._snapshot = None
        return self._apply(diff, received_ns)

    def _apply(self, diff: DepthDiff, received_ns: int) -> TopOfBook | None:
        assert self._book is not None
        self._book.update(diff.bids, diff.asks)
        self._last_id = diff.last_id
        return self._publish(diff.event_ms, diff.last_id, received_ns)

    @abstractmethod
    def _is_stale(self, diff: DepthDiff) -> bool:
        """Older than the snapshot: dropped before the first diff is applied."""

    @abstractmethod
    def _bridges(self, diff: DepthDiff) -> bool:
        """The first diff applied on the snapshot (not stale): it spans the snapshot's id."""

    @abstractmethod
    def _follows(self, diff: DepthDiff, book_id: int) -> bool:
        """A diff newer than the book (u > book id) continues it without a gap."""


class BinanceSpotBook(BinanceDiffBook):
    """Binance spot: no diff may start beyond the book id + 1."""

    EXCHANGE = "binance"

    def _is_stale(self, diff: DepthDiff) -> bool:
        return diff.last_id <= self._snapshot_id

    def _bridges(self, diff: DepthDiff) -> bool:
        return diff.first_id <= self._snapshot_id + 1

    def _follows(self, diff: DepthDiff, book_id: int) -> bool:
        return diff.first_id <= book_id + 1


class BinanceFuturesBook(BinanceDiffBook):
    """Binance USDT-M futures: each diff's ``pu`` must be the previous ``u``."""

    EXCHANGE = "binance-futures"

    def _read(self, message: Any) -> DepthDiff:
        diff = super()._read(message)
        return DepthDiff(
            diff.first_id,
            diff.last_id,
            int(message["pu"]),
            diff.event_ms,
            diff.bids,
            diff.asks,
        )

    def _is_stale(self, diff: DepthDiff) -> bool:
        return diff.last_id < self._snapshot_id

    def _bridges(self, diff: DepthDiff) -> bool:
        return diff.first_id <= self._snapshot_id <= diff.last_id

    def _follows(self, diff: DepthDiff, book_id: int) -> bool:
        return diff.previous_id == book_id
