"""What every venue's builder shares: the book it keeps, its counters, what it publishes.

A builder publishes a book only while it is **synced**: it holds a book it can prove
equal to the exchange's (a snapshot plus every update since, without a gap). Each
applied message publishes the top ``depth`` levels, unless the book is then crossed
(best bid >= best ask): no exchange shows that, so a message was lost or misapplied;
the crossing is counted and the book dropped until the venue's resync, exactly as for
a sequence gap. The counters say what happened to every order-book message:

    messages = applied + stale + unsynced,      applied = books + crossed

The connector drives a builder through four calls (docs/FEEDS.md):

    builder.on_message(message, received_ns) -> list[TopOfBook]
    builder.needs_resync     # True: take the venue's resync action now (a REST
                             # snapshot for Binance, a resubscription for Bybit);
                             # stays True until the snapshot it asks for arrives
    builder.reset()          # the connection was lost: drop the book and the pending
    builder.stats            # StreamStats

A message without a field its venue documents, or with an impossible value (a level
without a size, a negative size), raises MessageError, after the builder has dropped
its book (counted as a gap) and asked for a resync: what it held is no longer the
exchange's book. The connector logs and counts the error, and goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from journal._encode import DEFAULT_MAX_LEVELS
from journal.feeds._errors import MessageError

TOP_LEVELS: Final = DEFAULT_MAX_LEVELS  # what the journal's writer takes per side by default

Level = tuple[float, float]  # (price, quantity)


@dataclass(frozen=True, slots=True)
class TopOfBook:
    """One published book: the best ``TOP_LEVELS`` of each side, best first."""

    exchange: str
    symbol: str
    timestamp_ms: int  # the exchange's event time
    sequence: int  # the venue's update id (see each builder)
    bids: list[Level]
    asks: list[Level]
    local_timestamp_ns: int  # when the collector received what made the book known


@dataclass(slots=True)
class StreamStats:
    """What one stream's builder did with the messages it was given."""

    exchange: str
    symbol: str
    messages: int = 0  # order-book messages of the stream
    applied: int = 0  # applied to a synced book
    stale: int = 0  # older than the snapshot in hand: dropped by the venue's rules
    books: int = 0  # published
    snapshots: int = 0  # whole books received (REST snapshots, snapshot messages)
    gaps: int = 0  # sequence gaps (and updates that do not fit the book)
    crossed: int = 0  # books crossed after a message: dropped and resynced
    resyncs: int = 0  # books re-established after being lost (gap, crossing, reset)
    stale_snapshots: int = 0  # snapshots older than the stream could bridge: refetched
    synced: bool = False  # at the last message

    @property
    def unsynced(self) -> int:
        """Messages received while the stream had no synced book, never applied."""
        return self.messages - self.applied - self.stale


class PriceLevels:
    """Both sides of a book as ``price -> quantity``; a quantity of 0 removes a level.

    Each side keeps its prices sorted beside the dict (``bisect``: a new or removed
    level is a binary search and one ``memmove`` in C), so the top of the book is a
    slice, whatever the depth of the book. Taking the top with heaps over the whole
    dict instead cost 35 us a message on a 1000-level Binance book (profiled:
    ``benchmarks/bench_feeds.py``); with the sorted prices it is a few us.
    """

    __slots__ = ("_ask_prices", "_bid_prices", "asks", "bids")

    def __init__(self, bids: Iterable[Level] = (), asks: Iterable[Level] = ()) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, quantity in levels:
                if quantity:
                    side[price] = quantity
                else:
                    side.pop(price, None)
        self._bid_prices = sorted(self.bids)  # ascending: the best bid is last
        self._ask_prices = sorted(self.asks)  # ascending: the best ask is first

    def update(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set each level's quantity, in order; 0 removes the level."""
        for side, prices, levels in (
            (self.bids, self._bid_prices, bids),
            (self.asks, self._ask_prices, asks),
        ):
            for price, quantity in levels:
                if quantity:
                    if price not in side:
                        insort(prices, price)
                    side[price] = quantity
                elif side.pop(price, None) is not None:
                    del prices[bisect_left(prices, price)]

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """The best ``depth`` levels: bids descending, asks ascending."""
        bids, asks = self.bids, self.asks
        return (
            [(price, bids[price]) for price in self._bid_prices[: -depth - 1 : -1]],
            [(price, asks[price]) for price in self._ask_prices[:depth]],
        )


_INFINITY: Final = float("inf")


def read_levels(pairs: Iterable[Any], what: str) -> list[Level]:
    """``[["0.3513", "6195.0"], ...]`` (decimal strings or numbers) as float pairs;
    MessageError naming ``what`` for a level that is not a (price, size) pair, a
    price that is not positive and finite, or a size that is negative or infinite:
    no exchange sends those, so the message cannot be applied to a book."""
    try:
        levels = [(float(price), float(size)) for price, size in pairs]
    except (TypeError, ValueError) as error:
        raise MessageError(
            f"{what}: a level that is not a [price, size] pair of numbers ({error}) in "
            f"{str(pairs)[:120]}"
        ) from None
    for price, size in levels:
        if not (0.0 < price < _INFINITY and 0.0 <= size < _INFINITY):
            raise MessageError(
                f"{what}: impossible level price={price!r} size={size!r} "
                "(a price must be positive and finite, a size >= 0 and finite)"
            )
    return levels


@contextmanager
def message_fields(what: str) -> Iterator[None]:
    """Turns a missing field or a value of the wrong type, met while reading a message,
    into one MessageError that names the message (``what``) and the field."""
    try:
        yield
    except MessageError:
        raise
    except KeyError as error:
        raise MessageError(f"{what}: no field {error}") from None
    except (TypeError, ValueError) as error:
        raise MessageError(f"{what}: bad value ({error})") from None


def check_depth(depth: int) -> int:
    """``depth`` as given, or ValueError saying what a depth must be."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(
            f"depth={depth!r}: expected the number of levels per side to publish, an int >= 1 "
            f"(the journal's writer takes {TOP_LEVELS} by default)"
        )
    return depth


class BookBuilder(ABC):
    """The book of one stream, its counters, and the top of book it publishes.

    Subclasses read their venue's messages and call ``_sync`` with a whole book,
    ``_gap`` on a gap, and ``_publish`` after applying a message. ``RESYNC_ACTION``
    says whether the venue needs the connector to act to get a whole book again
    (Binance, Bybit); where every message is a whole book (Upbit, Bithumb) it is
    False and ``needs_resync`` never becomes True.
    """

    EXCHANGE: ClassVar[str]
    RESYNC_ACTION: ClassVar[bool] = False

    def __init__(
        self, symbol: str, depth: int = TOP_LEVELS, *, exchange: str | None = None
    ) -> None:
        self.depth = check_depth(depth)
        self.stats = StreamStats(exchange or self.EXCHANGE, symbol)
        self._book: PriceLevels | None = None
        self._lost_sync = False
        self._needs_resync = False

    @abstractmethod
    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """One order-book message of the stream, received at ``received_ns`` (ns since
        the epoch, the collector's clock); returns the books it publishes."""

    @property
    def exchange(self) -> str:
        """The exchange as journaled (``bybit-futures``)."""
        return self.stats.exchange

    @property
    def symbol(self) -> str:
        """The stream's ``BASE-QUOTE`` symbol."""
        return self.stats.symbol

    @property
    def synced(self) -> bool:
        return self._book is not None

    @property
    def needs_resync(self) -> bool:
        """True when the venue's resync action must be taken now: the builder holds no
        book, and nothing it will receive without that action can give it one. It
        stays True until the whole book the action brings arrives: keep one such
        action in flight per stream, not one per message."""
        return self._needs_resync

    def reset(self) -> None:
        """The connection was lost: the book and anything pending are dropped;
        ``needs_resync`` becomes True where the venue needs an action to resync."""
        if self._book is not None:
            self._lost_sync = True
        self._book = None
        self.stats.synced = False
        self._needs_resync = self.RESYNC_ACTION

    def _sync(self, book: PriceLevels) -> None:
        if self._lost_sync:
            self.stats.resyncs += 1
            self._lost_sync = False
        self._book = book
        self.stats.synced = True
        self._needs_resync = False

    def _lose_sync(self) -> None:
        self._book = None
        self._lost_sync = True
        self.stats.synced = False
        self._needs_resync = self.RESYNC_ACTION

    def _gap(self) -> None:
        self.stats.gaps += 1
        self._lose_sync()

    def _publish(self, timestamp_ms: int, sequence: int, received_ns: int) -> TopOfBook | None:
        """The top of the book just updated by one message, or None if it is crossed."""
        assert self._book is not None, "published while unsynced"
        self.stats.applied += 1
        bids, asks = self._book.top(self.depth)
        if bids and asks and bids[0][0] >= asks[0][0]:
            self.stats.crossed += 1
            self._lose_sync()
            return None
        self.stats.books += 1
        return TopOfBook(
            self.stats.exchange,
            self.stats.symbol,
            timestamp_ms,
            sequence,
            bids,
            asks,
            received_ns,
        )
