"""The binary layout of ``radar.metrics``: the one place Python writes its offsets.

docs/FORMAT.md ("Radar metrics") is the specification, radar_reader's
radar_metrics.hpp the C++ copy (the radar writes the file); tests/test_radar_metrics_layout.py
checks that the three agree. The first 96 bytes are laid out as the other metrics
files' (journal._metrics_layout); then the radar's name, its capacities, its
totals and its observe-latency histogram (the writer's bucket scheme); a slot per
stream (venue, symbol) and per pair (base, KRW venue, USDT venue) follows. The
capacities are in the header: the file's size and where the pair slots start are
computed from them (``radar_metrics_size``, ``pair_slot_offset``).

``radar.metrics`` (``radar_metrics_size(stream_capacity, pair_capacity)`` bytes)::

      0 | magic "OBJMETRD" (8)                                               |
      8 | metrics_version (u32)            | file_size (u32)                   |
     16 | radar_pid (u32)                  | latency_sample_period (u32)       |
     24 | radar_started_ns (i64, CLOCK_REALTIME)                               |
     32 | radar_host (64 bytes, NUL padded)                                    |
     96 | radar_name (32 bytes, NUL padded)                                    |
    128 | stream_capacity | pair_capacity | latency_buckets | reserved         |  written once
    192 | books_total | results_total | stream_count | pair_count            |
    224 | streams_without_slot_total | pairs_without_slot_total              |
    240 | latency_sum_ns | reserved                                          |
    256 | latency_counts: latency_buckets x u64                                |
   2432 | reserved up to STREAMS_OFFSET                                        |
   4096 | stream slots: stream_capacity x STREAM_SLOT_SIZE                     |
        | pair slots:   pair_capacity x PAIR_SLOT_SIZE                         |

A stream slot::

      0 | updates_total | last_local_ns (i64) | last_exchange_ms (i64) | reserved |
     64 | venue (32 bytes, NUL padded)  | symbol (32 bytes, NUL padded)          |

A pair slot (its first cache line under a sequence lock)::

      0 | sequence | kimchi_premium (f64) | edge_bps (f64) | fx (f64)            |
     32 | fill_base_quantity (f64) | stale (0/1) | updated_ns (i64) | updates_total |
     64 | base (32) | krw_exchange (32) | usdt_exchange (32) | reserved (32)     |

Every word from 128 on is an aligned little-endian 64-bit word stored by the radar
with one 8-byte store; doubles are stored as their IEEE-754 bits. Slot names are
written before the count that covers them (``stream_count``, ``pair_count``) is
published.
"""

from __future__ import annotations

import struct
from typing import Final

from journal import _metrics_layout as M

RADAR_METRICS_MAGIC: Final = b"OBJMETRD"
RADAR_METRICS_VERSION: Final = 1
RADAR_METRICS_NAME: Final = "radar.metrics"
HOST_SIZE: Final = M.METRICS_HOST_SIZE
RADAR_NAME_SIZE: Final = 32
VENUE_SIZE: Final = 32
SYMBOL_SIZE: Final = 32
BASE_SIZE: Final = 32
LATENCY_SAMPLE_PERIOD: Final = 1
"""The radar counts every live book in its histogram."""
LATENCY_BUCKETS: Final = M.LATENCY_BUCKETS
"""The writer's scheme: ``journal._metrics_layout.latency_bucket`` and ``latency_bucket_bounds``."""
DEFAULT_STREAM_CAPACITY: Final = 1024
DEFAULT_PAIR_CAPACITY: Final = 4096
MAX_CAPACITY: Final = 65_536
"""A sanity bound: a header claiming more is not a radar's."""

# -- the header ----------------------------------------------------------------------
MAGIC_OFFSET: Final = M.METRICS_MAGIC_OFFSET
VERSION_OFFSET: Final = M.METRICS_VERSION_OFFSET
FILE_SIZE_OFFSET: Final = M.METRICS_FILE_SIZE_OFFSET
PID_OFFSET: Final = M.METRICS_PID_OFFSET
LATENCY_SAMPLE_PERIOD_OFFSET: Final = PID_OFFSET + 4
STARTED_NS_OFFSET: Final = M.METRICS_STARTED_NS_OFFSET
HOST_OFFSET: Final = M.METRICS_HOST_OFFSET
NAME_OFFSET: Final = HOST_OFFSET + HOST_SIZE
STREAM_CAPACITY_OFFSET: Final = M.METRICS_COUNTERS_OFFSET
PAIR_CAPACITY_OFFSET: Final = STREAM_CAPACITY_OFFSET + 8
LATENCY_BUCKETS_OFFSET: Final = PAIR_CAPACITY_OFFSET + 8
BOOKS_TOTAL_OFFSET: Final = 192
RESULTS_TOTAL_OFFSET: Final = BOOKS_TOTAL_OFFSET + 8
STREAM_COUNT_OFFSET: Final = RESULTS_TOTAL_OFFSET + 8
PAIR_COUNT_OFFSET: Final = STREAM_COUNT_OFFSET + 8
STREAMS_WITHOUT_SLOT_TOTAL_OFFSET: Final = PAIR_COUNT_OFFSET + 8
PAIRS_WITHOUT_SLOT_TOTAL_OFFSET: Final = STREAMS_WITHOUT_SLOT_TOTAL_OFFSET + 8
LATENCY_SUM_NS_OFFSET: Final = PAIRS_WITHOUT_SLOT_TOTAL_OFFSET + 8
LATENCY_COUNTS_OFFSET: Final = 256
STREAMS_OFFSET: Final = 4096
"""Stream slot 0; everything before it is the header."""

# -- a stream slot (offsets from its start) ----------------------------------------
STREAM_SLOT_SIZE: Final = 128
STREAM_UPDATES_TOTAL_OFFSET: Final = 0
STREAM_LAST_LOCAL_NS_OFFSET: Final = STREAM_UPDATES_TOTAL_OFFSET + 8
STREAM_LAST_EXCHANGE_MS_OFFSET: Final = STREAM_LAST_LOCAL_NS_OFFSET + 8
STREAM_VENUE_OFFSET: Final = 64
STREAM_SYMBOL_OFFSET: Final = STREAM_VENUE_OFFSET + VENUE_SIZE

# -- a pair slot (offsets from its start) ------------------------------------------
PAIR_SLOT_SIZE: Final = 192
PAIR_SEQUENCE_OFFSET: Final = 0
PAIR_KIMCHI_PREMIUM_OFFSET: Final = PAIR_SEQUENCE_OFFSET + 8
PAIR_EDGE_BPS_OFFSET: Final = PAIR_KIMCHI_PREMIUM_OFFSET + 8
PAIR_FX_OFFSET: Final = PAIR_EDGE_BPS_OFFSET + 8
PAIR_FILL_BASE_QUANTITY_OFFSET: Final = PAIR_FX_OFFSET + 8
PAIR_STALE_OFFSET: Final = PAIR_FILL_BASE_QUANTITY_OFFSET + 8
PAIR_UPDATED_NS_OFFSET: Final = PAIR_STALE_OFFSET + 8
PAIR_UPDATES_TOTAL_OFFSET: Final = PAIR_UPDATED_NS_OFFSET + 8
PAIR_BASE_OFFSET: Final = 64
PAIR_KRW_EXCHANGE_OFFSET: Final = PAIR_BASE_OFFSET + BASE_SIZE
PAIR_USDT_EXCHANGE_OFFSET: Final = PAIR_KRW_EXCHANGE_OFFSET + VENUE_SIZE

# The identity fields, up to the capacities (no padding: each at its offset).
HEADER_STRUCT: Final = struct.Struct("<8sIIIIq64s32sQQQ")
assert HEADER_STRUCT.size == LATENCY_BUCKETS_OFFSET + 8
assert LATENCY_COUNTS_OFFSET + 8 * LATENCY_BUCKETS <= STREAMS_OFFSET
assert STREAMS_OFFSET % 64 == 0 and STREAM_SLOT_SIZE % 64 == 0 and PAIR_SLOT_SIZE % 64 == 0
assert PAIR_UPDATES_TOTAL_OFFSET + 8 <= PAIR_BASE_OFFSET, "a pair's words on one cache line"


def pairs_offset(stream_capacity: int) -> int:
    """Where pair slot 0 starts, for a file of ``stream_capacity`` stream slots."""
    return STREAMS_OFFSET + stream_capacity * STREAM_SLOT_SIZE


def radar_metrics_size(stream_capacity: int, pair_capacity: int) -> int:
    """The file's size (its ``file_size`` field) for these capacities."""
    return pairs_offset(stream_capacity) + pair_capacity * PAIR_SLOT_SIZE


def stream_slot_offset(index: int) -> int:
    """Where stream slot ``index`` starts in the file."""
    return STREAMS_OFFSET + index * STREAM_SLOT_SIZE


def pair_slot_offset(stream_capacity: int, index: int) -> int:
    """Where pair slot ``index`` starts in a file of ``stream_capacity`` stream slots."""
    return pairs_offset(stream_capacity) + index * PAIR_SLOT_SIZE


DEFAULT_PAIRS_OFFSET: Final = pairs_offset(DEFAULT_STREAM_CAPACITY)
DEFAULT_FILE_SIZE: Final = radar_metrics_size(DEFAULT_STREAM_CAPACITY, DEFAULT_PAIR_CAPACITY)
"""About 900 KiB: what the radar creates (its capacities are the defaults)."""
