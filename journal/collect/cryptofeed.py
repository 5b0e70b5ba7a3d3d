"""Publish the books of a running cryptofeed FeedHandler into journals, one per venue.

A desk that already runs cryptofeed registers one callback on the ``L2_BOOK`` channel
of its feeds, and every book cryptofeed maintains goes into the journal of its venue
under ``root`` (``root/binance``, ``root/upbit``, ...), where the radar reads it::

    from cryptofeed import FeedHandler
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Binance, Upbit
    from journal.collect.cryptofeed import JournalBookCallback

    books = JournalBookCallback("/dev/shm/books", venues=["BINANCE", "UPBIT"])
    handler = FeedHandler()
    handler.add_feed(Binance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: books}))
    handler.add_feed(Upbit(symbols=["BTC-KRW"], channels=[L2_BOOK], callbacks={L2_BOOK: books}))
    handler.run()  # on shutdown cryptofeed awaits books.stop(): journals sealed and closed

Register the object itself, as cryptofeed's own backends are, not wrapped in
``cryptofeed.callback.BookCallback`` (which runs a callable object that is not a
coroutine function in a thread pool).

What a book becomes (one ``BookPublisher`` per venue does the writing):

- names: cryptofeed's exchange id and the kind of market its symbol names give the
  venue (``VENUES``: ``BINANCE`` ``BTC-USDT`` -> ``binance``, ``BINANCE_FUTURES``
  ``BTC-USDT-PERP`` -> ``binance-futures``, ``BYBIT`` ``BTC-USDT-PERP`` ->
  ``bybit-futures``); the symbol is cryptofeed's ``BASE-QUOTE`` (``-PERP`` dropped),
  normalised by journal.symbols like any collector's;
- the best ``depth`` levels of each side, as floats (cryptofeed keeps Decimals);
- ``timestamp``: the exchange's time in ms. A book cryptofeed gives without one (a
  Binance spot REST snapshot) is stamped with its receipt time, as cryptofeed's own
  backends do, and counted in ``stats.receipt_timed``;
- ``sequence``: ``book.sequence_number`` (Binance's update id), 0 where the venue has
  none (Upbit): the journal's "no sequence";
- ``local_timestamp_ns``: cryptofeed's receipt time (``time.time()`` when the message
  arrived, ~0.25 µs resolution as a float); where it is not a number, the writer's
  clock at the commit.

It never raises into cryptofeed's loop. A book it cannot journal is counted and
logged (the first few of each kind in full, then a summary line now and then): an
exchange or market the journal has no venue for, an object that is not a book (the
callback registered on another channel), a journal that cannot be opened (retried at
most every ``retry_s``), a book after ``stop``; and whatever the venue's
BookPublisher refuses (a crossed book, a full tmpfs...). ``stats`` has the counts.

Only the opening of a journal does I/O: for each venue in ``venues`` when the callback
is made (a journal that cannot be opened raises there), else at the venue's first
book, in cryptofeed's loop (a few ms, once).
"""

from __future__ import annotations

import enum
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

try:
    from cryptofeed.defines import (
        BINANCE,
        BINANCE_FUTURES,
        BITHUMB,
        BYBIT,
        PERPETUAL,
        SPOT,
        UPBIT,
    )
    from cryptofeed.symbols import Symbol
except ImportError as error:  # pragma: no cover - the test runs it in a subprocess
    raise ImportError(
        "journal.collect.cryptofeed needs cryptofeed (>= 2.4), which is an optional "
        f"extra: pip install 'orderbook-journal[cryptofeed]' ({error})"
    ) from error

from journal._encode import DEFAULT_MAX_LEVELS
from journal._errors import JournalError
from journal._writer import DEFAULT_SEGMENT_SIZE
from journal.collect._ratelog import RateLimitedLog
from journal.collector import BookPublisher, PublishStats
from journal.symbols import VENUES as JOURNAL_VENUES

log = logging.getLogger("journal.collect.cryptofeed")

VENUES: Final[Mapping[tuple[str, str], str]] = {
    (BINANCE, SPOT): "binance",
    (BINANCE_FUTURES, PERPETUAL): "binance-futures",
    (BYBIT, SPOT): "bybit",
    (BYBIT, PERPETUAL): "bybit-futures",
    (UPBIT, SPOT): "upbit",
    (BITHUMB, SPOT): "bithumb",
}
"""(cryptofeed exchange id, kind of market) -> the journal's venue. Only these: the
radar pairs venues by name, so ``BINANCE_US`` is not ``binance``, and a dated future
or a coin-margined contract (``BINANCE_DELIVERY``) is not the perpetual it trades next
to. Another exchange is refused until it is added here and to journal.symbols.VENUES."""

_EXCHANGE_IDS: Final = frozenset(exchange for exchange, _ in VENUES)


class CallbackRefusal(enum.StrEnum):
    """Why the callback journaled no book, before any BookPublisher saw it; keys of
    ``CallbackStats.refused`` next to journal.collector.Refusal's."""

    UNKNOWN_VENUE = "unknown_venue"
    """A cryptofeed exchange, or a kind of market of it, with no journal venue
    (``VENUES``), or a venue the callback was not given in ``venues``."""
    NOT_A_BOOK = "not_a_book"
    """Not an L2 OrderBook: registered on another channel (trades, ticker...)."""
    JOURNAL_UNAVAILABLE = "journal_unavailable"
    """The venue's journal could not be opened (locked by another writer, no room,
    no permission); tried again at most every ``retry_s``."""
    STOPPED = "stopped"
    """A book after ``stop``/``close``: the journals are closed."""
    UNEXPECTED = "unexpected_error"
    """A bug: logged with its traceback, counted, and cryptofeed's loop goes on."""


@dataclass(frozen=True, slots=True)
class CallbackStats:
    """What the callback did with the books cryptofeed gave it; ``JournalBookCallback.stats``."""

    books: int
    """Books cryptofeed handed to the callback."""
    published: int
    """Written and committed, over every venue."""
    refused: Mapping[str, int]
    """By reason: CallbackRefusal's and journal.collector.Refusal's (summed over the
    venues' publishers), only the reasons seen."""
    receipt_timed: int
    """Books without an exchange time, stamped with their receipt time."""
    venues: Mapping[str, PublishStats]
    """Each open venue's BookPublisher.stats."""
    last_refusal: str | None

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


@dataclass(frozen=True, slots=True)
class _Route:
    """Where the books of one (exchange, symbol) of cryptofeed go."""

    publish: Any  # the venue's BookPublisher.publish
    venue: str
    symbol: str  # as the venue spells it, so that journal.symbols reads it right


@dataclass(frozen=True, slots=True)
class _Refused:
    """A (exchange, symbol) whose books are refused, remembered with the reason."""

    reason: CallbackRefusal
    message: str
    retry_at: float = float("inf")  # JOURNAL_UNAVAILABLE: when to try opening again


class JournalBookCallback:
    """cryptofeed ``L2_BOOK`` callback: each book into the journal of its venue.

    ``root``: the directory of the journals, one per venue (``root/<venue>``), made if
    missing. ``depth``: levels per side journaled (the best ones). ``venues``: the
    cryptofeed exchange ids (``"BINANCE"``) or journal venues (``"binance-futures"``)
    expected; their journals are opened now and an unknown one is a ValueError; the
    books of any other venue are then refused. None: any venue of ``VENUES``, each
    journal opened at its first book. ``segment_size`` and ``mode`` go to each
    journal's Writer; ``log_first`` and ``summary_interval_s`` to the publishers and
    to the callback's own log of refusals; ``retry_s``: how long a journal that could
    not be opened is left before trying again. ``seal_on_stop``: ``stop`` (which
    cryptofeed awaits at shutdown) seals the segments for the compactor, as ``journal
    collect`` does on SIGINT.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        depth: int = DEFAULT_MAX_LEVELS,
        venues: Iterable[str] | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        mode: int = 0o600,
        log_first: int = 5,
        summary_interval_s: float = 60.0,
        retry_s: float = 1.0,
        seal_on_stop: bool = True,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth={depth!r}: expected the number of levels per side, >= 1")
        if retry_s < 0:
            raise ValueError(f"retry_s={retry_s}: must not be negative")
        self.root = Path(root)
        self.depth = depth
        self.retry_s = retry_s
        self.seal_on_stop = seal_on_stop
        self._options: dict[str, Any] = {
            "segment_size": segment_size,
            "mode": mode,
            "max_levels": max(depth, DEFAULT_MAX_LEVELS),
            "log_first": log_first,
            "summary_interval_s": summary_interval_s,
        }
        self._lines = RateLimitedLog(log, first=log_first, interval_s=summary_interval_s)
        self._publishers: dict[str, BookPublisher] = {}
        self._routes: dict[tuple[Any, Any], _Route | _Refused] = {}
        self._books = 0
        self._receipt_timed = 0
        self._refused: Counter[CallbackRefusal] = Counter()
        self._last_refusal: str | None = None
        self._stopped = False
        self._venues: frozenset[str] | None = None
        if venues is not None:
            self._venues = frozenset(venue for name in venues for venue in _venues_named(name))
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                for venue in sorted(self._venues):
                    self._open(venue)
            except BaseException:
                self.close()
                raise

    # -- the hot path --------------------------------------------------------------

    async def __call__(self, book: Any, receipt_timestamp: Any) -> None:
        """What cryptofeed awaits for every book (``Feed.callback``): ``publish``."""
        self.publish(book, receipt_timestamp)

    def publish(self, book: Any, receipt_timestamp: Any) -> bool:
        """Journal one cryptofeed ``OrderBook`` received at ``receipt_timestamp`` (s since
        the epoch); True if it was written. Never raises (but BaseException)."""
        self._books += 1
        try:
            route = self._routes.get((book.exchange, book.symbol))
            if type(route) is not _Route:
                route = self._route(book, route)
                if route is None:
                    return False
            sides = book.book
            depth = self.depth
            bids = sides.bids
            asks = sides.asks
            timestamp = book.timestamp
            if type(timestamp) is float and timestamp:
                timestamp_ms: int | None = round(timestamp * 1000)
            else:  # None: a book without the exchange's time
                timestamp_ms = self._untimed(timestamp, receipt_timestamp)
            if type(receipt_timestamp) is float:
                local_ns: int | None = int(receipt_timestamp * 1e9)
            else:
                local_ns = _seconds_to_ns(receipt_timestamp)
            return (
                route.publish(
                    {
                        "exchangename": route.venue,
                        "symbol": route.symbol,
                        "timestamp": timestamp_ms,
                        "sequence": book.sequence_number or 0,
                        "bids": [(float(p), float(bids[p])) for p in bids.keys()[:depth]],
                        "asks": [(float(p), float(asks[p])) for p in asks.keys()[:depth]],
                        "local_timestamp_ns": local_ns,
                    }
                )
                is not None
            )
        except AttributeError as error:
            if not _is_book(book):
                self._refuse(
                    (type(book).__name__,),
                    CallbackRefusal.NOT_A_BOOK,
                    f"a {type(book).__name__} instead of a cryptofeed OrderBook: register "
                    "the callback on the L2_BOOK channel only",
                )
                return False
            self._unexpected(book, error)
        except Exception as error:  # never into cryptofeed's loop
            self._unexpected(book, error)
        return False

    # -- counts and lifetime -------------------------------------------------------

    @property
    def stats(self) -> CallbackStats:
        """A snapshot of the counts."""
        refused: Counter[str] = Counter({str(k): n for k, n in self._refused.items() if n})
        venues = {venue: publisher.stats for venue, publisher in self._publishers.items()}
        last = self._last_refusal
        for stats in venues.values():
            refused.update({str(k): n for k, n in stats.refused.items() if n})
            last = stats.last_refusal or last
        return CallbackStats(
            self._books,
            sum(stats.published for stats in venues.values()),
            dict(refused),
            self._receipt_timed,
            venues,
            last,
        )

    def publisher(self, venue: str) -> BookPublisher:
        """The BookPublisher of a journal venue (``"binance"``), closed after ``stop``;
        KeyError if the venue was never opened."""
        return self._publishers[venue]

    async def stop(self) -> None:
        """Close every journal, sealing it if ``seal_on_stop``; cryptofeed's
        ``Feed.shutdown`` awaits this (once per feed the callback serves: the first
        closes, the others find nothing left). Later books are refused, not raised."""
        self.close(seal=self.seal_on_stop)

    def close(self, *, seal: bool = False) -> None:
        """Close every venue's publisher (``BookPublisher.close(seal=seal)``); every
        journal is tried, the first error is raised after."""
        self._stopped = True
        self._routes.clear()
        failed: BaseException | None = None
        for publisher in self._publishers.values():  # kept: their stats stay readable
            try:
                publisher.close(seal=seal)
            except (JournalError, OSError) as error:
                failed = failed or error
        self._lines.flush()
        if failed is not None:
            raise failed

    def __enter__(self) -> JournalBookCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"JournalBookCallback({str(self.root)!r}, depth={self.depth}, "
            f"venues={sorted(self._publishers)}, books={self._books})"
        )

    # -- the slow paths ------------------------------------------------------------

    def _route(self, book: Any, known: _Refused | None) -> _Route | None:
        """The route of an (exchange, symbol) not routed yet, or None (refused, counted)."""
        key = (book.exchange, book.symbol)
        if known is not None and time.monotonic() < known.retry_at:
            self._refuse(key, known.reason, known.message)
            return None
        if self._stopped:
            self._refuse(key, CallbackRefusal.STOPPED, "the callback is stopped")
            return None
        found = _venue_of(*key)
        if isinstance(found, str):
            self._routes[key] = refused = _Refused(CallbackRefusal.UNKNOWN_VENUE, found)
            self._refuse(key, refused.reason, refused.message)
            return None
        venue, base, quote = found
        if self._venues is not None and venue not in self._venues:
            message = (
                f"cryptofeed {key[0]} {key[1]}: venue {venue!r} is not one of the venues "
                f"given ({', '.join(sorted(self._venues))})"
            )
            self._routes[key] = _Refused(CallbackRefusal.UNKNOWN_VENUE, message)
            self._refuse(key, CallbackRefusal.UNKNOWN_VENUE, message)
            return None
        publisher = self._publishers.get(venue)
        if publisher is None:
            try:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                publisher = self._open(venue)
            except (JournalError, OSError) as error:
                message = (
                    f"cryptofeed {key[0]} {key[1]}: the journal {self.root / venue} cannot "
                    f"be opened: {error}; tried again in {self.retry_s:g} s"
                )
                self._routes[key] = _Refused(
                    CallbackRefusal.JOURNAL_UNAVAILABLE, message, time.monotonic() + self.retry_s
                )
                self._refuse(key, CallbackRefusal.JOURNAL_UNAVAILABLE, message)
                return None
        route = _Route(publisher.publish, venue, _venue_spelling(venue, base, quote))
        self._routes[key] = route
        return route

    def _open(self, venue: str) -> BookPublisher:
        publisher = BookPublisher(self.root / venue, **self._options)
        self._publishers[venue] = publisher
        log.info("%s: journaling cryptofeed's %s books", publisher.path, venue)
        return publisher

    def _untimed(self, timestamp: Any, receipt_timestamp: Any) -> int | None:
        """The ms of a book whose exchange time is not a float: its receipt time when it
        has none (as cryptofeed's backends do), counted; None (refused by the
        publisher, wrong_type) when neither is a number."""
        if not timestamp:
            self._receipt_timed += 1
            timestamp = receipt_timestamp
        try:
            return round(float(timestamp) * 1000)
        except (TypeError, ValueError, OverflowError):
            return None

    def _refuse(self, key: tuple[Any, ...], reason: CallbackRefusal, message: str) -> None:
        self._refused[reason] += 1
        self._last_refusal = message
        self._lines.log((reason, *key), logging.WARNING, f"{self.root}: book refused: {message}")

    def _unexpected(self, book: Any, error: Exception) -> None:
        """A bug, not a book's fault: logged with its traceback (rate-limited), counted."""
        self._refused[CallbackRefusal.UNEXPECTED] += 1
        what = f"{getattr(book, 'exchange', '?')} {getattr(book, 'symbol', '?')}"
        self._last_refusal = f"cryptofeed {what}: {type(error).__name__}: {error}"
        if self._refused[CallbackRefusal.UNEXPECTED] <= self._lines.first:
            log.exception("%s: unexpected error journaling cryptofeed's %s", self.root, what)
        else:
            self._lines.log(
                (CallbackRefusal.UNEXPECTED,), logging.ERROR, f"{self.root}: {self._last_refusal}"
            )


def _is_book(book: Any) -> bool:
    sides = getattr(book, "book", None)
    return (
        all(hasattr(book, name) for name in ("exchange", "symbol", "timestamp"))
        and hasattr(sides, "bids")
        and hasattr(sides, "asks")
    )


def _seconds_to_ns(seconds: Any) -> int | None:
    """A receipt time given as something else than a float (an int, the string of
    cryptofeed's capture playback) in ns; None when it is no number."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return None
    return int(value * 1e9) if value > 0 else None


def _venues_named(name: str) -> set[str]:
    """The journal venues given by a cryptofeed exchange id (``BYBIT``: spot and
    perpetuals) or by a venue's own name (``bybit-futures``)."""
    if name in VENUES.values():
        found = {name}
    else:
        found = {venue for (exchange, _), venue in VENUES.items() if exchange == name}
    if not found:
        raise ValueError(
            f"venues: {name!r} is neither a journal venue this callback journals "
            f"({', '.join(sorted(set(VENUES.values())))}) nor cryptofeed's exchange id of "
            f"one ({', '.join(sorted(_EXCHANGE_IDS))})"
        )
    unknown = sorted(found - JOURNAL_VENUES.keys())
    if unknown:
        raise ValueError(
            f"venues: {name!r} is the venue {', '.join(unknown)}, which journal.symbols "
            "does not know yet"
        )
    return found


def _venue_of(exchange: Any, symbol: Any) -> tuple[str, str, str] | str:
    """``(venue, base, quote)`` of a cryptofeed book, or why there is none."""
    if not isinstance(exchange, str) or not isinstance(symbol, str):
        return f"exchange={exchange!r}, symbol={symbol!r}: expected cryptofeed's names (str)"
    parts = symbol.split(Symbol.symbol_sep)
    if len(parts) == 2:
        kind = SPOT
    elif len(parts) == 3 and parts[2] == "PERP":
        kind = PERPETUAL
    else:
        return (
            f"cryptofeed {exchange} {symbol}: not a spot or perpetual market (a dated "
            "future, an option?); the journal's venues are spot and perpetual books"
        )
    venue = VENUES.get((exchange, kind))
    if venue is None:
        known = ", ".join(f"{e} {k}" for e, k in VENUES)
        return (
            f"cryptofeed {exchange} {symbol}: no journal venue for {exchange}'s {kind} "
            f"markets (journaled: {known}); add it to journal.collect.cryptofeed.VENUES and "
            "to journal.symbols.VENUES"
        )
    if venue not in JOURNAL_VENUES:
        return (
            f"cryptofeed {exchange} {symbol}: journal.symbols does not know the venue {venue!r} yet"
        )
    return venue, parts[0], parts[1]


def _venue_spelling(venue: str, base: str, quote: str) -> str:
    """The market as the venue writes it (``KRW-BTC`` on upbit, ``BTC_KRW`` on
    bithumb), which journal.symbols reads without guessing: cryptofeed's ``ETH-BTC``
    on Upbit read as an Upbit code would be BTC quoted in ETH."""
    style = JOURNAL_VENUES[venue].style
    if style == "quote-base":
        return f"{quote}-{base}"
    if style == "base_quote":
        return f"{base}_{quote}"
    return f"{base}-{quote}"
