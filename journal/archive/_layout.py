"""The binary layout of an archive file: the one place Python writes its offsets.

docs/FORMAT.md ("Archive files") is the specification; tests/test_archive.py checks
its tables against the names here, as tests/test_layout.py checks the segment
header against journal/_layout.py. All integers are little-endian::

    offset
         0  header (ARCHIVE_HEADER_SIZE): magic, version, the segment header's
            fields, its commit and end marker offsets
       256  zstd frame 0, zstd frame 1, ... (contiguous): segment bytes from 4096 on,
            whole record frames, then (version 2) the value planes of their records
     index_offset   index: one entry of INDEX_ENTRY_SIZE per zstd frame
     size - 64      trailer (TRAILER_SIZE): where the index is, totals, CRC-32s,
                    end magic

Value planes: in every record frame of MIN_VALUE_FRAME bytes or more, the words
VALUE_WORDS (bytes ``OB.VALUES_POS .. OB.VALUES_END``: in the writer's OrderBook
layout timestamp, sequence and local_timestamp_ns, journal/_orderbook_layout.py) are
zero in the frame's records and their values follow, VALUE_BYTES per record.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

from journal import _layout as F
from journal import _orderbook_layout as OB

ARCHIVE_MAGIC: Final = b"OBJARCHV"
ARCHIVE_END_MAGIC: Final = b"OBJAREND"
ARCHIVE_VERSION: Final = 2
"""Written by this compactor. Version 1 (frames of plain segment bytes, no value
planes) is still read; any other version is refused."""
READABLE_VERSIONS: Final = (1, 2)
ARCHIVE_SUFFIX: Final = ".jzst"
TEMPORARY_SUFFIX: Final = ".tmp"
"""A file being written is ``.<final name>.tmp``: hidden, never an archive."""

# -- the header (256 bytes) -------------------------------------------------------------

ARCHIVE_HEADER_SIZE: Final = 256
"""The first zstd frame starts here."""
MAGIC_OFFSET: Final = 0
ARCHIVE_VERSION_OFFSET: Final = MAGIC_OFFSET + len(ARCHIVE_MAGIC)
HEADER_SIZE_OFFSET: Final = ARCHIVE_VERSION_OFFSET + 4
PAYLOAD_ID_OFFSET: Final = HEADER_SIZE_OFFSET + 4
SEGMENT_FORMAT_VERSION_OFFSET: Final = PAYLOAD_ID_OFFSET + F.PAYLOAD_ID_SIZE
SEGMENT_INDEX_OFFSET: Final = SEGMENT_FORMAT_VERSION_OFFSET + 4
SEGMENT_SIZE_OFFSET: Final = SEGMENT_INDEX_OFFSET + 8
CREATED_NS_OFFSET: Final = SEGMENT_SIZE_OFFSET + 8
WRITER_PID_OFFSET: Final = CREATED_NS_OFFSET + 8
HEADER_RESERVED_OFFSET: Final = WRITER_PID_OFFSET + 4
"""A u32 that must be zero, as every byte after INCARNATION_NS_OFFSET's field."""
WRITER_STARTED_NS_OFFSET: Final = HEADER_RESERVED_OFFSET + 4
WRITER_HOST_OFFSET: Final = WRITER_STARTED_NS_OFFSET + 8
COMMIT_OFFSET_OFFSET: Final = WRITER_HOST_OFFSET + F.WRITER_HOST_SIZE
END_MARKER_OFFSET_OFFSET: Final = COMMIT_OFFSET_OFFSET + 8
FRAME_SIZE_OFFSET: Final = END_MARKER_OFFSET_OFFSET + 8
ZSTD_LEVEL_OFFSET: Final = FRAME_SIZE_OFFSET + 4
INCARNATION_NS_OFFSET: Final = ZSTD_LEVEL_OFFSET + 4
"""The segment's incarnation_ns (FORMAT.md, "Incarnations"): bytes that were reserved,
so archives written before it read as 0 (unknown), as segments of that time do."""
HEADER_FIELDS: Final = (
    ("magic", MAGIC_OFFSET, len(ARCHIVE_MAGIC)),
    ("archive_version", ARCHIVE_VERSION_OFFSET, 4),
    ("header_size", HEADER_SIZE_OFFSET, 4),
    ("payload_id", PAYLOAD_ID_OFFSET, F.PAYLOAD_ID_SIZE),
    ("segment_format_version", SEGMENT_FORMAT_VERSION_OFFSET, 4),
    ("segment_index", SEGMENT_INDEX_OFFSET, 8),
    ("segment_size", SEGMENT_SIZE_OFFSET, 8),
    ("created_ns", CREATED_NS_OFFSET, 8),
    ("writer_pid", WRITER_PID_OFFSET, 4),
    ("writer_started_ns", WRITER_STARTED_NS_OFFSET, 8),
    ("writer_host", WRITER_HOST_OFFSET, F.WRITER_HOST_SIZE),
    ("commit_offset", COMMIT_OFFSET_OFFSET, 8),
    ("end_marker_offset", END_MARKER_OFFSET_OFFSET, 8),
    ("frame_size", FRAME_SIZE_OFFSET, 4),
    ("zstd_level", ZSTD_LEVEL_OFFSET, 4),
    ("incarnation_ns", INCARNATION_NS_OFFSET, 8),
)
"""(name in FORMAT.md, offset, size) of every header field but the reserved ones."""
HEADER_STRUCT: Final = struct.Struct("<8sII4sIQQqIIq64sQQIiq")
"""The header fields in order (with the reserved u32 at HEADER_RESERVED_OFFSET);
reserved zero after."""
HEADER_STRUCT_END: Final = INCARNATION_NS_OFFSET + 8
assert HEADER_STRUCT.size == HEADER_STRUCT_END <= ARCHIVE_HEADER_SIZE

# -- an index entry (56 bytes), one per zstd frame ------------------------------------------

INDEX_ENTRY_SIZE: Final = 56
ENTRY_FILE_OFFSET_OFFSET: Final = 0
ENTRY_COMPRESSED_SIZE_OFFSET: Final = ENTRY_FILE_OFFSET_OFFSET + 8
ENTRY_SEGMENT_OFFSET_OFFSET: Final = ENTRY_COMPRESSED_SIZE_OFFSET + 8
ENTRY_RAW_SIZE_OFFSET: Final = ENTRY_SEGMENT_OFFSET_OFFSET + 8
ENTRY_RECORD_COUNT_OFFSET: Final = ENTRY_RAW_SIZE_OFFSET + 8
ENTRY_VALUE_COUNT_OFFSET: Final = ENTRY_RECORD_COUNT_OFFSET + 4
ENTRY_MIN_TIME_NS_OFFSET: Final = ENTRY_VALUE_COUNT_OFFSET + 4
ENTRY_MAX_TIME_NS_OFFSET: Final = ENTRY_MIN_TIME_NS_OFFSET + 8
INDEX_ENTRY_FIELDS: Final = (
    ("file_offset", ENTRY_FILE_OFFSET_OFFSET, 8),
    ("compressed_size", ENTRY_COMPRESSED_SIZE_OFFSET, 8),
    ("segment_offset", ENTRY_SEGMENT_OFFSET_OFFSET, 8),
    ("raw_size", ENTRY_RAW_SIZE_OFFSET, 8),
    ("record_count", ENTRY_RECORD_COUNT_OFFSET, 4),
    ("value_count", ENTRY_VALUE_COUNT_OFFSET, 4),
    ("min_time_ns", ENTRY_MIN_TIME_NS_OFFSET, 8),
    ("max_time_ns", ENTRY_MAX_TIME_NS_OFFSET, 8),
)
INDEX_ENTRY_STRUCT: Final = struct.Struct("<QQQQIIqq")
assert INDEX_ENTRY_STRUCT.size == INDEX_ENTRY_SIZE == ENTRY_MAX_TIME_NS_OFFSET + 8

# -- the trailer (the file's last 64 bytes) --------------------------------------------------

TRAILER_SIZE: Final = 64
TRAILER_INDEX_OFFSET_OFFSET: Final = 0
TRAILER_FRAME_COUNT_OFFSET: Final = TRAILER_INDEX_OFFSET_OFFSET + 8
TRAILER_RECORD_COUNT_OFFSET: Final = TRAILER_FRAME_COUNT_OFFSET + 8
TRAILER_MIN_TIME_NS_OFFSET: Final = TRAILER_RECORD_COUNT_OFFSET + 8
TRAILER_MAX_TIME_NS_OFFSET: Final = TRAILER_MIN_TIME_NS_OFFSET + 8
TRAILER_HEADER_CRC32_OFFSET: Final = TRAILER_MAX_TIME_NS_OFFSET + 8
TRAILER_INDEX_CRC32_OFFSET: Final = TRAILER_HEADER_CRC32_OFFSET + 4
TRAILER_RESERVED_OFFSET: Final = TRAILER_INDEX_CRC32_OFFSET + 4
TRAILER_CRC32_OFFSET: Final = TRAILER_RESERVED_OFFSET + 4
TRAILER_END_MAGIC_OFFSET: Final = TRAILER_CRC32_OFFSET + 4
TRAILER_FIELDS: Final = (
    ("index_offset", TRAILER_INDEX_OFFSET_OFFSET, 8),
    ("frame_count", TRAILER_FRAME_COUNT_OFFSET, 8),
    ("record_count", TRAILER_RECORD_COUNT_OFFSET, 8),
    ("min_time_ns", TRAILER_MIN_TIME_NS_OFFSET, 8),
    ("max_time_ns", TRAILER_MAX_TIME_NS_OFFSET, 8),
    ("header_crc32", TRAILER_HEADER_CRC32_OFFSET, 4),
    ("index_crc32", TRAILER_INDEX_CRC32_OFFSET, 4),
    ("trailer_crc32", TRAILER_CRC32_OFFSET, 4),
    ("end_magic", TRAILER_END_MAGIC_OFFSET, len(ARCHIVE_END_MAGIC)),
)
TRAILER_STRUCT: Final = struct.Struct("<QQQqqIIII8s")
TRAILER_CRC_COVERS: Final = TRAILER_CRC32_OFFSET
"""trailer_crc32 is the CRC-32 of the trailer's first 52 bytes."""
assert TRAILER_STRUCT.size == TRAILER_SIZE == TRAILER_END_MAGIC_OFFSET + len(ARCHIVE_END_MAGIC)

NO_TIME_MIN: Final = (1 << 63) - 1
NO_TIME_MAX: Final = -(1 << 63)
"""min/max_time_ns of a frame (or archive) without records: an empty range."""

# -- value planes (version 2) ----------------------------------------------------------------

VALUE_WORDS: Final = np.array(OB.VALUE_WORDS)
"""The u64 words of a record frame whose values move to the planes: in the writer's
OrderBook layout its timestamp, sequence and local_timestamp_ns, the three int64 that
change with every book. Moved out, the rest of a book repeats the previous book of
its market for longer stretches, and zstd finds longer matches."""
VALUE_SIZE: Final = OB.WORD_SIZE
"""Bytes of one value: a plane per byte, least significant first."""
VALUE_BYTES: Final = VALUE_SIZE * len(VALUE_WORDS)
"""Plane bytes per record whose values moved."""
MIN_VALUE_FRAME: Final = OB.VALUES_END
"""Record frames (size prefix, FlatBuffer, padding) of at least this many bytes (those
that hold the value words whole) have their values moved; smaller ones stay as they
are."""
