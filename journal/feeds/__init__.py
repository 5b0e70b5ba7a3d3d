"""Order books from exchange feeds: one builder per venue, and a capture importer.

Each builder applies its venue's own messages to a book, by that venue's sync rules,
and publishes the top 10 levels after every message it applies, only while the book
is synced; gaps and crossed books are counted and answered by a resync. docs/FEEDS.md
describes the rules and what the recorded captures contain.

    book = BinanceSpotBook("NKN-USDT")
    book.on_snapshot(rest_depth_response, received_ns)   # -> [TopOfBook, ...]
    book.on_message(depth_update, received_ns)           # -> [TopOfBook] or []
    book.stats                                           # books, gaps, resyncs, ...

    import_captures(["BINANCE.ws.1.0", "BINANCE.http.0.0"], "/dev/shm/books/captures")

``venue_sequence(exchange)`` says what a venue's journaled sequence is, and whether
consecutive books' differ by 1 (a larger step then is a gap) or only increase.
"""

from journal.feeds._binance import BinanceFuturesBook, BinanceSpotBook
from journal.feeds._book import TOP_LEVELS, BookBuilder, StreamStats, TopOfBook
from journal.feeds._bybit import BybitBook
from journal.feeds._capture import CaptureLine, LineKind, read_capture
from journal.feeds._errors import CaptureFormatError, FeedError, MessageError
from journal.feeds._import import import_captures
from journal.feeds._replay import CaptureReplay
from journal.feeds._report import ImportReport
from journal.feeds._sequences import (
    UNKNOWN_VENUE,
    VENUE_SEQUENCES,
    SequenceRule,
    VenueSequence,
    venue_sequence,
)
from journal.feeds._upbit import UpbitBook

__all__ = [
    "TOP_LEVELS",
    "UNKNOWN_VENUE",
    "VENUE_SEQUENCES",
    "BinanceFuturesBook",
    "BinanceSpotBook",
    "BookBuilder",
    "BybitBook",
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
