"""The binary layout of ``<journal>/collector.metrics``: the one place Python writes its offsets.

docs/FORMAT.md ("Collector metrics") is the specification; tests/test_feed_metrics_layout.py
checks that its tables and these constants agree. The file shares the first 32
bytes (magic, version, size, pid, start time) and the host field with the other
metrics files (journal._metrics_layout), then names its venue and how many streams
(symbols) it has; a fixed-size slot per stream follows. The file's size is
computed from the count (``collector_metrics_size``), so a collector of the whole
Binance list needs no other file and one of four symbols no 256-slot one.

``collector.metrics`` (``collector_metrics_size(stream_count)`` bytes)::

     0 | magic "OBJMETRC" (8)                                          |
     8 | metrics_version (u32)           | file_size (u32)             |
    16 | collector_pid (u32)             | stream_count (u32)          |
    24 | collector_started_ns (i64, CLOCK_REALTIME)                    |
    32 | collector_host (64 bytes, NUL padded)                         |
    96 | venue (32 bytes, NUL padded)                                  |
   128 | stream slot 0 (STREAM_SLOT_SIZE bytes)                        |
   384 | stream slot 1 ...                                             |

A stream slot (offsets from the slot's start, ``STREAMS_OFFSET + i * STREAM_SLOT_SIZE``)::

     0 | state (u64, FeedState)  | state_changed_ns (i64)              |  state changes
    16 | last_message_ns (i64)   | last_delay_ns (i64)                 |  every message
    32 | counters: one u64 per FeedCounter, in its order               |  MESSAGES: every message
   112 | reserved                                                      |
   224 | symbol (32 bytes, NUL padded; written once, as the header)    |

Everything in a slot before ``symbol`` is an aligned little-endian 64-bit word,
written only by the collector with one 8-byte store, so a reader may see an older
*set* of words but never half of one. The words ``message()`` stores on every
exchange message (``last_message_ns``, ``last_delay_ns``, ``messages_total``) share
the slot's first cache line, and a reserved counter can become a new one without
moving any other. ``last_delay_ns`` is ``NO_DELAY`` until a message with an exchange
time arrives.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

COLLECTOR_METRICS_MAGIC: Final = b"OBJMETRC"
COLLECTOR_METRICS_VERSION: Final = 1
COLLECTOR_METRICS_NAME: Final = "collector.metrics"
VENUE_SIZE: Final = 32
SYMBOL_SIZE: Final = 32
HOST_SIZE: Final = 64
MAX_STREAMS: Final = 16_384
"""A sanity bound (4 MiB of slots): more symbols than any venue lists."""
NO_DELAY: Final = -(1 << 63)
"""``last_delay_ns`` before any message carried an exchange time (i64 minimum)."""


class FeedState(enum.IntEnum):
    """A stream's connection state, the ``state`` word. 0 (a zeroed slot) is STOPPED."""

    STOPPED = 0
    CONNECTING = 1
    SUBSCRIBING = 2
    SYNCING = 3
    LIVE = 4
    BACKOFF = 5


class FeedCounter(enum.IntEnum):
    """A stream's counters: the value is the counter's index in the slot's
    ``counters``, so the word is ``COUNTERS_OFFSET + 8 * counter`` into the slot."""

    MESSAGES = 0
    BOOKS = 1
    RECONNECTS = 2
    GAPS = 3
    RESYNCS = 4
    CROSSED = 5
    STALE = 6
    SNAPSHOTS = 7
    ERRORS = 8
    REFUSED = 9


# -- the header ----------------------------------------------------------------------
MAGIC_OFFSET: Final = 0
VERSION_OFFSET: Final = MAGIC_OFFSET + 8
FILE_SIZE_OFFSET: Final = VERSION_OFFSET + 4
PID_OFFSET: Final = FILE_SIZE_OFFSET + 4
STREAM_COUNT_OFFSET: Final = PID_OFFSET + 4
STARTED_NS_OFFSET: Final = STREAM_COUNT_OFFSET + 4
HOST_OFFSET: Final = STARTED_NS_OFFSET + 8
VENUE_OFFSET: Final = HOST_OFFSET + HOST_SIZE
STREAMS_OFFSET: Final = VENUE_OFFSET + VENUE_SIZE
"""Slot 0; slot ``i`` is at ``STREAMS_OFFSET + i * STREAM_SLOT_SIZE``."""

# -- a stream slot (offsets from the slot's start) ------------------------------------
STATE_OFFSET: Final = 0
STATE_CHANGED_NS_OFFSET: Final = STATE_OFFSET + 8
LAST_MESSAGE_NS_OFFSET: Final = STATE_CHANGED_NS_OFFSET + 8
LAST_DELAY_NS_OFFSET: Final = LAST_MESSAGE_NS_OFFSET + 8
COUNTERS_OFFSET: Final = LAST_DELAY_NS_OFFSET + 8
COUNTERS_END: Final = COUNTERS_OFFSET + 8 * len(FeedCounter)
SYMBOL_OFFSET: Final = 224
STREAM_SLOT_SIZE: Final = 256
"""Four cache lines: room for 14 more counters before ``symbol``."""

COUNTER_NAMES: Final = tuple(f"{counter.name.lower()}_total" for counter in FeedCounter)
"""The counters' field names in docs/FORMAT.md (and their Prometheus stems)."""

# Written once, before the file has its name (no padding: each field at its offset).
HEADER_STRUCT: Final = struct.Struct("<8sIIIIq64s32s")
assert HEADER_STRUCT.size == STREAMS_OFFSET
assert STREAMS_OFFSET % 64 == 0 and STREAM_SLOT_SIZE % 64 == 0, "slots on cache lines"
assert COUNTERS_END <= SYMBOL_OFFSET and SYMBOL_OFFSET + SYMBOL_SIZE == STREAM_SLOT_SIZE
assert LAST_MESSAGE_NS_OFFSET // 64 == (COUNTERS_OFFSET + 8 * FeedCounter.MESSAGES) // 64


def collector_metrics_size(stream_count: int) -> int:
    """The file's size for ``stream_count`` streams (its ``file_size`` field)."""
    return STREAMS_OFFSET + stream_count * STREAM_SLOT_SIZE


def slot_offset(stream: int) -> int:
    """Where stream ``stream``'s slot starts in the file."""
    return STREAMS_OFFSET + stream * STREAM_SLOT_SIZE
