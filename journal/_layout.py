"""The binary layout of a journal segment: the one place Python writes an offset.

docs/FORMAT.md is the specification; radar_reader's layout.hpp mirrors these names
and tests/test_layout.py checks that both agree. Every integer is little-endian.

Segment file ``NNNNNNNN.journal`` (``SEGMENT_SIZE`` bytes, preallocated)::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +---------------------------------------------------------------+
   0 |                      magic "OBJOURNL" (8)                     |
     +---------------------------------------------------------------+
   8 |          format_version (u32)  |       header_size (u32)      |
     +---------------------------------------------------------------+
  16 |                      segment_size (u64)                       |
  24 |                      segment_index (u64)                      |
     +---------------------------------------------------------------+
  32 |      payload_id (4 ASCII)      |       max_record_size (u32)  |
     +---------------------------------------------------------------+
  40 |                 created_ns (i64, CLOCK_REALTIME)              |
  48 |        writer_pid (u32)        |          reserved (u32)      |
  56 |                writer_started_ns (i64, CLOCK_REALTIME)        |
  64 |                 writer_host (64 bytes, NUL padded)            |
 128 |   end_marker_offset (u64): 0 while open; where the end marker   |
     |   is, stored before the commit that publishes the marker      |
 136 |   incarnation_ns (i64): created_ns of this incarnation's first  |
     |   segment, the same in every segment of it (0: unknown)       |
 144 |                          reserved                             |
     +---------------------------------------------------------------+
 256 |       commit_offset (u64) -- written by the writer only,      |
     |       alone on its cache line pair (256..383)                 |
     +---------------------------------------------------------------+
 384 |  futex_sleepers (u32) -- written by readers about to sleep,   |
     |  cleared by the writer when it wakes them (384..511)          |
     +---------------------------------------------------------------+
 512 |                  reserved (zero) up to HEADER_SIZE            |
     +---------------------------------------------------------------+
4096 | record | pad | record | pad | ... | end marker | zero ...     |
     +---------------------------------------------------------------+

Record frame at an 8-aligned offset ``p`` (a size-prefixed FlatBuffer)::

     p      : u32 size              bytes of FlatBuffer that follow
     p + 4  : FlatBuffer            root offset, then payload_id at p + 8
     p + 4 + size : zero padding to the next multiple of 8 = next record

End-of-segment marker at an 8-aligned offset: u32 ``END_OF_SEGMENT`` then u32 zero.
It is committed only once segment ``segment_index + 1`` exists in full. The writer
may create that next segment early (empty, commit at HEADER_SIZE), so a reader
never takes the existence of a next segment as a sign that this one is sealed:
``end_marker_offset`` says so.
"""

from __future__ import annotations

import struct
from typing import Final

MAGIC: Final = b"OBJOURNL"
FORMAT_VERSION: Final = 1
HEADER_SIZE: Final = 4096

MAGIC_OFFSET: Final = 0
FORMAT_VERSION_OFFSET: Final = MAGIC_OFFSET + 8
HEADER_SIZE_OFFSET: Final = FORMAT_VERSION_OFFSET + 4
SEGMENT_SIZE_OFFSET: Final = HEADER_SIZE_OFFSET + 4
SEGMENT_INDEX_OFFSET: Final = SEGMENT_SIZE_OFFSET + 8
PAYLOAD_ID_OFFSET: Final = SEGMENT_INDEX_OFFSET + 8
MAX_RECORD_SIZE_OFFSET: Final = PAYLOAD_ID_OFFSET + 4
CREATED_NS_OFFSET: Final = MAX_RECORD_SIZE_OFFSET + 4
WRITER_PID_OFFSET: Final = CREATED_NS_OFFSET + 8
WRITER_STARTED_NS_OFFSET: Final = WRITER_PID_OFFSET + 8
WRITER_HOST_OFFSET: Final = WRITER_STARTED_NS_OFFSET + 8
WRITER_HOST_SIZE: Final = 64
END_MARKER_OFFSET_OFFSET: Final = WRITER_HOST_OFFSET + WRITER_HOST_SIZE
INCARNATION_NS_OFFSET: Final = END_MARKER_OFFSET_OFFSET + 8
"""Tells incarnations of one journal directory apart (FORMAT.md, "Incarnations"):
written once, before the segment gets its name, like every field before it."""

CACHE_LINE_PAIR: Final = 128
"""Two 64-byte lines: the adjacent-line prefetcher pulls lines in pairs."""
COMMIT_OFFSET_OFFSET: Final = 2 * CACHE_LINE_PAIR
FUTEX_SLEEPERS_OFFSET: Final = COMMIT_OFFSET_OFFSET + CACHE_LINE_PAIR

PAYLOAD_ID_SIZE: Final = 4
SIZE_PREFIX_SIZE: Final = 4
RECORD_PAYLOAD_ID_OFFSET: Final = SIZE_PREFIX_SIZE + 4
"""A record's file_identifier: after its size prefix and the FlatBuffer's root offset."""
RECORD_ALIGNMENT: Final = 8
END_OF_SEGMENT: Final = 0xFFFF_FFFF
END_MARKER_SIZE: Final = 8
MIN_RECORD_SIZE: Final = 8
"""The smallest FlatBuffer after the prefix: root offset (4) and payload_id (4)."""

MIN_SEGMENT_SIZE: Final = 64 * 1024
MAX_SEGMENT_SIZE: Final = 1 << 32
"""Offsets must fit the u32 low half of the commit word that futex waits on."""
PAGE_SIZE: Final = 4096

SEGMENT_SUFFIX: Final = ".journal"
SEGMENT_NAME_DIGITS: Final = 8
LOCK_FILE_NAME: Final = "writer.lock"

# The fixed fields up to writer_host, in order, as one struct (commit and sleepers
# are accessed on their own, with the ordering rules of journal._publish).
HEADER_STRUCT: Final = struct.Struct("<8sIIQQ4sIqIIq64s")
assert HEADER_STRUCT.size == WRITER_HOST_OFFSET + WRITER_HOST_SIZE


def align_record(offset: int) -> int:
    """Round ``offset`` up to the next record boundary (a multiple of 8)."""
    return (offset + RECORD_ALIGNMENT - 1) & ~(RECORD_ALIGNMENT - 1)


def max_record_size(segment_size: int) -> int:
    """Largest size prefix a segment of ``segment_size`` can hold with its end marker."""
    return segment_size - HEADER_SIZE - END_MARKER_SIZE - SIZE_PREFIX_SIZE


def segment_name(index: int) -> str:
    return f"{index:0{SEGMENT_NAME_DIGITS}d}{SEGMENT_SUFFIX}"
