"""The binary layout of the metrics files: the one place Python writes their offsets.

docs/FORMAT.md ("Metrics files") is the specification; radar_reader's metrics.hpp
mirrors these names and tests/test_layout.py and tests/test_cpp_layout.py check
that the three agree. Every integer is little-endian; every counter is one aligned
u64 word, written by its one owner with a single 8-byte store (so a reader may see
an older set of counters, never half of one counter).

Writer metrics, ``<journal>/writer.metrics`` (``WRITER_METRICS_SIZE`` bytes)::

     0 | magic "OBJMETRW" (8)                                         |
     8 | metrics_version (u32)          | file_size (u32)             |
    16 | writer_pid (u32)               | latency_sample_period (u32) |
    24 | writer_started_ns (i64, CLOCK_REALTIME)                      |
    32 | writer_host (64 bytes, NUL padded)                           |
    96 | payload_id (4 ASCII)           | latency_buckets (u32)       |
   104 | reserved                                                     |
   128 | records_total | last_publish_ns |                               every commit
   144 | reserved                                                     |
   256 | segment_sequence | segment | bytes_base (i64) |                 segment changes
   280 | rolls_total | refused_invalid_total | refused_too_large_total | rare events
   304 | refused_journal_full_total | latency_sum_ns |                   sampled appends
   320 | reserved                                                     |
   384 | latency_counts: latency_buckets x u64                        |
  2560 | reserved up to WRITER_METRICS_SIZE                           |

Reader metrics, ``<journal>/readers/<name>-<pid>[-<n>].metrics`` (``READER_METRICS_SIZE``)::

     0 | magic "OBJMETRR" (8)                                         |
     8 | metrics_version (u32)          | file_size (u32)             |
    16 | reader_pid (u32)               | reserved (u32)              |
    24 | reader_started_ns (i64, CLOCK_REALTIME)                      |
    32 | reader_host (64 bytes, NUL padded)                           |
    96 | reader_name (32 bytes, NUL padded)                           |
   128 | segment | offset | records_total | last_record_ns |             every record
   160 | last_poll_ns                                                 |  empty polls
   168 | incarnations_total                                           |  journal recreated
   176 | reserved up to READER_METRICS_SIZE                           |

Bytes are not counted per record, they are derived from the log itself (as Aeron
derives positions): ``bytes_total = bytes_base + commit_offset`` of segment
``segment`` (its header; less the end marker if sealed). ``segment`` and
``bytes_base`` change together, inside a sequence lock: ``segment_sequence`` is odd
while the writer changes them.

Latency histogram (``latency_counts``): values in ns, HdrHistogram's scheme with 8
sub-buckets per power of two. ``latency_bucket(v)`` is ``v`` below 16; above, with
``shift = v.bit_length() - 4``, it is ``8 * shift + (v >> shift)``. So each counter
spans at most 1/8 of its values (12.5%); values above ``LATENCY_MAX_NS`` count in
the last counter.
"""

from __future__ import annotations

import struct
from typing import Final

METRICS_VERSION: Final = 1
WRITER_METRICS_MAGIC: Final = b"OBJMETRW"
READER_METRICS_MAGIC: Final = b"OBJMETRR"
WRITER_METRICS_NAME: Final = "writer.metrics"
READERS_DIRECTORY: Final = "readers"
METRICS_SUFFIX: Final = ".metrics"
METRICS_HOST_SIZE: Final = 64
READER_NAME_SIZE: Final = 32

# -- the header both files start with --------------------------------------------------
METRICS_MAGIC_OFFSET: Final = 0
METRICS_VERSION_OFFSET: Final = METRICS_MAGIC_OFFSET + 8
METRICS_FILE_SIZE_OFFSET: Final = METRICS_VERSION_OFFSET + 4
METRICS_PID_OFFSET: Final = METRICS_FILE_SIZE_OFFSET + 4
METRICS_STARTED_NS_OFFSET: Final = METRICS_PID_OFFSET + 8
METRICS_HOST_OFFSET: Final = METRICS_STARTED_NS_OFFSET + 8
METRICS_COUNTERS_OFFSET: Final = 128
"""The first counter: identity fields before it are written once, at creation."""

# -- writer.metrics ----------------------------------------------------------------------
WRITER_METRICS_SIZE: Final = 4096
LATENCY_SAMPLE_PERIOD_OFFSET: Final = METRICS_PID_OFFSET + 4
WRITER_PAYLOAD_ID_OFFSET: Final = METRICS_HOST_OFFSET + METRICS_HOST_SIZE
LATENCY_BUCKETS_OFFSET: Final = WRITER_PAYLOAD_ID_OFFSET + 4

RECORDS_TOTAL_OFFSET: Final = METRICS_COUNTERS_OFFSET
LAST_PUBLISH_NS_OFFSET: Final = RECORDS_TOTAL_OFFSET + 8

SEGMENT_SEQUENCE_OFFSET: Final = 256
SEGMENT_OFFSET: Final = SEGMENT_SEQUENCE_OFFSET + 8
BYTES_BASE_OFFSET: Final = SEGMENT_OFFSET + 8
ROLLS_TOTAL_OFFSET: Final = BYTES_BASE_OFFSET + 8
REFUSED_INVALID_TOTAL_OFFSET: Final = ROLLS_TOTAL_OFFSET + 8
REFUSED_TOO_LARGE_TOTAL_OFFSET: Final = REFUSED_INVALID_TOTAL_OFFSET + 8
REFUSED_JOURNAL_FULL_TOTAL_OFFSET: Final = REFUSED_TOO_LARGE_TOTAL_OFFSET + 8
LATENCY_SUM_NS_OFFSET: Final = REFUSED_JOURNAL_FULL_TOTAL_OFFSET + 8

LATENCY_COUNTS_OFFSET: Final = 384
LATENCY_SUB_BUCKET_BITS: Final = 3
"""8 sub-buckets per power of two: a counter spans at most 1/8 of its values."""
LATENCY_MAX_BITS: Final = 36
LATENCY_MAX_NS: Final = (1 << LATENCY_MAX_BITS) - 1
"""About 68.7 s; a longer append counts in the last counter."""
LATENCY_BUCKETS: Final = (LATENCY_MAX_BITS - LATENCY_SUB_BUCKET_BITS + 1) << LATENCY_SUB_BUCKET_BITS
LATENCY_SAMPLE_PERIOD: Final = 16
"""One ``append_orderbook`` in this many is timed: two clock reads and two counter
updates, which on every append would cost about 14% of it (one in 16: about 1%)."""

# -- a reader's file -----------------------------------------------------------------
READER_METRICS_SIZE: Final = 256
READER_NAME_OFFSET: Final = METRICS_HOST_OFFSET + METRICS_HOST_SIZE
READER_SEGMENT_OFFSET: Final = METRICS_COUNTERS_OFFSET
READER_OFFSET_OFFSET: Final = READER_SEGMENT_OFFSET + 8
READER_RECORDS_TOTAL_OFFSET: Final = READER_OFFSET_OFFSET + 8
READER_LAST_RECORD_NS_OFFSET: Final = READER_RECORDS_TOTAL_OFFSET + 8
READER_LAST_POLL_NS_OFFSET: Final = READER_LAST_RECORD_NS_OFFSET + 8
READER_INCARNATIONS_TOTAL_OFFSET: Final = READER_LAST_POLL_NS_OFFSET + 8

# The identity fields, written once before the file gets its name (struct formats
# without padding: every field sits at the offset named above).
WRITER_HEADER_STRUCT: Final = struct.Struct("<8sIIIIq64s4sI")
READER_HEADER_STRUCT: Final = struct.Struct("<8sIIIIq64s32s")
assert WRITER_HEADER_STRUCT.size == LATENCY_BUCKETS_OFFSET + 4
assert READER_HEADER_STRUCT.size == READER_NAME_OFFSET + READER_NAME_SIZE


def latency_bucket(value_ns: int) -> int:
    """The counter that ``value_ns`` (>= 0) falls in; see the module docstring.
    (Comparisons rather than min/max: the writer calls it on its hot path.)"""
    if value_ns > LATENCY_MAX_NS:
        value_ns = LATENCY_MAX_NS
    shift = value_ns.bit_length() - LATENCY_SUB_BUCKET_BITS - 1
    if shift <= 0:
        return value_ns
    return (shift << LATENCY_SUB_BUCKET_BITS) + (value_ns >> shift)


def latency_bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value (ns) counted in counter ``index``."""
    sub_buckets = 1 << LATENCY_SUB_BUCKET_BITS
    if index < 2 * sub_buckets:
        return index, index
    shift = (index >> LATENCY_SUB_BUCKET_BITS) - 1
    low = (index - (shift << LATENCY_SUB_BUCKET_BITS)) << shift
    return low, low + (1 << shift) - 1
