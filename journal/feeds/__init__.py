"""Order books from exchange feeds: one builder per venue, and a capture importer.

Each builder applies its venue's own messages to a book, by that venue's sync rules,
and publishes the top ``depth`` levels (10 by default) after every message it
applies, only while the book is synced; gaps and crossed books are counted and
answered by a resync. docs/FEEDS.md describes the rules and what the recorded
captures contain.

    book = BinanceSpotBook("NKN-USDT", depth=10)
    book.on_snapshot(rest_depth_response, received_ns)   # -> [TopOfBook, ...]
    book.on_message(depth_update, received_ns)           # -> [TopOfBook] or []
    book.needs_resync                                    # fetch a snapshot now?
    book.reset()                                         # the connection was lost
    book.stats                                           # books, gaps, resyncs, ...

Builders: BinanceSpotBook, BinanceFuturesBook, BybitBook (v5; ``exchange="bybit"``
or ``"bybit-futures"``, or BybitSpotBook / BybitLinearBook), UpbitBook, BithumbBook;
BybitLegacyBook reads the retired v2 API for ``journal import-captures`` only. Each
venue module has ``route(message) -> Route`` (kind, venue symbol, body).

    import_captures(["BINANCE.ws.1.0", "BINANCE.http.0.0"], "/dev/shm/books/captures")

``venue_sequence(exchange)`` says what a venue's journaled sequence is, and whether
consecutive books' differ by 1 (a larger step then is a gap) or only increase.
"""

from journal.feeds._binance import BinanceFuturesBook, BinanceSpotBook
from journal.feeds._bithumb import BithumbBook
from journal.feeds._book import TOP_LEVELS, BookBuilder, StreamStats, TopOfBook
from journal.feeds._bybit import BybitBook, BybitLinearBook, BybitSpotBook
from journal.feeds._bybit_legacy import BybitLegacyBook
from journal.feeds._capture import CaptureLine, LineKind, read_capture
from journal.feeds._errors import CaptureFormatError, FeedError, MessageError
from journal.feeds._import import import_captures
from journal.feeds._replay import CaptureReplay
from journal.feeds._report import ImportReport
from journal.feeds._sequences import (
    NONE_SENT,
    UNKNOWN_VENUE,
    VENUE_SEQUENCES,
    SequenceRule,
    VenueSequence,
    venue_sequence,
)
from journal.feeds._upbit import UpbitBook

__all__ = [
    "NONE_SENT",
    "TOP_LEVELS",
    "UNKNOWN_VENUE",
    "VENUE_SEQUENCES",
    "BinanceFuturesBook",
    "BinanceSpotBook",
    "BithumbBook",
    "BookBuilder",
    "BybitBook",
    "BybitLegacyBook",
    "BybitLinearBook",
    "BybitSpotBook",
    "CaptureFormatError",
    "CaptureLine",
    "CaptureReplay",
    "FeedError",
    "ImportReport",
    "LineKind",
    "MessageError",
    "SequenceRule",
    "StreamStats",
    "TopOfBook",
    "UpbitBook",
    "VenueSequence",
    "import_captures",
    "read_capture",
    "venue_sequence",
]
