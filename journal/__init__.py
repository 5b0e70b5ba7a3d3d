"""Order-book journal: FlatBuffers order books in memory-mapped tmpfs segments.

One writer per journal directory appends size-prefixed FlatBuffers and publishes
each with a release store of the segment's commit offset; any number of readers
(Python here, C++ in radar_reader) tail the same pages without copying.
docs/FORMAT.md is the byte-level contract.

    with journal.Writer("/dev/shm/books/upbit") as writer:
        writer.append_orderbook("upbit", "BTC-KRW", ts_ms, seq, bids, asks)

    for book in journal.Reader("/dev/shm/books/upbit", start="end"):
        ...
"""

from journal._decode import OrderBookRecord, Position
from journal._encode import EncoderLimits, OrderBookEncoder
from journal._errors import (
    ArchiveFullError,
    CorruptArchiveError,
    CorruptSegmentError,
    InvalidRecordError,
    JournalError,
    JournalFullError,
    JournalGoneError,
    RecordTooLargeError,
    UnsupportedPlatformError,
    WriterLockedError,
)
from journal._layout import FORMAT_VERSION, MAGIC
from journal._names import stream_path
from journal._native import NATIVE
from journal._orderbook_layout import PAYLOAD_ID as ORDERBOOK_PAYLOAD_ID
from journal._reader import Reader
from journal._writer import DEFAULT_SEGMENT_SIZE, RecoveryReport, Writer

# Registers the archive's narrow interface for Reader(archive=...) (journal._archived).
import journal.archive  # noqa: F401  isort: skip

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT_VERSION",
    "MAGIC",
    "NATIVE",
    "ORDERBOOK_PAYLOAD_ID",
    "ArchiveFullError",
    "CorruptArchiveError",
    "CorruptSegmentError",
    "EncoderLimits",
    "InvalidRecordError",
    "JournalError",
    "JournalFullError",
    "JournalGoneError",
    "OrderBookEncoder",
    "OrderBookRecord",
    "Position",
    "Reader",
    "RecordTooLargeError",
    "RecoveryReport",
    "UnsupportedPlatformError",
    "Writer",
    "WriterLockedError",
    "stream_path",
]
