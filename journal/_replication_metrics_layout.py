"""The binary layout of ``replicate.metrics`` and ``mirror.metrics``: the one place
Python writes their offsets.

docs/FORMAT.md ("Replication metrics") is the specification;
tests/test_replication_metrics.py checks that its tables and these constants agree.
One layout for both sides of a replicated journal: ``journal replicate`` keeps its
figures in the *source* journal's directory (``replicate.metrics``), ``journal
mirror`` in the *mirror* journal's (``mirror.metrics``); ``role`` says which. The
first 32 bytes and the host field are laid out as in the other metrics files.

``replicate.metrics`` / ``mirror.metrics`` (512 bytes)::

     0 | magic "OBJMETRN" (8)                                          |
     8 | metrics_version (u32)           | file_size (u32)             |
    16 | pid (u32)                       | role (u32: 1 replicate, 2 mirror)
    24 | started_ns (i64, CLOCK_REALTIME)                              |
    32 | host (64 bytes, NUL padded)                                   |
    96 | stream (64 bytes, NUL padded: the JetStream stream)           |
   160 | nats_state | reconnects_total | errors_total | pending_messages |  NATS
   192 | records_total | messages_total | bytes_total | stream_sequence |  per message
   224 | incarnation_ns | segment | offset | last_record_ns          |  per message
   256 | last_message_ns | latency_ns | retries_total | resyncs_total   |
   288 | duplicates_total | gaps_total | rewinds_total | redeliveries_total |  mirror
   320 | skipped_records_total | lag_checked_ns | lag_records | lag_ns   |  mirror
   352 | reserved                                                      |

Every word from 160 on is an aligned little-endian 64-bit word written only by the
file's owner with one 8-byte store (a reader may see an older *set* of words, never
half of one).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

REPLICATION_METRICS_MAGIC: Final = b"OBJMETRN"
REPLICATION_METRICS_VERSION: Final = 2
REPLICATION_METRICS_SIZE: Final = 512
REPLICATE_METRICS_NAME: Final = "replicate.metrics"
MIRROR_METRICS_NAME: Final = "mirror.metrics"
HOST_SIZE: Final = 64
STREAM_SIZE: Final = 64


class Role(enum.IntEnum):
    """Which side of the replication owns the file (the ``role`` field)."""

    REPLICATE = 1
    MIRROR = 2


class NatsState(enum.IntEnum):
    """The owner's NATS connection (the ``nats_state`` word)."""

    CONNECTING = 0
    CONNECTED = 1
    DISCONNECTED = 2
    CLOSED = 3


# -- the header (written once, before the file has its name) ----------------------------
MAGIC_OFFSET: Final = 0
VERSION_OFFSET: Final = MAGIC_OFFSET + 8
FILE_SIZE_OFFSET: Final = VERSION_OFFSET + 4
PID_OFFSET: Final = FILE_SIZE_OFFSET + 4
ROLE_OFFSET: Final = PID_OFFSET + 4
STARTED_NS_OFFSET: Final = ROLE_OFFSET + 4
HOST_OFFSET: Final = STARTED_NS_OFFSET + 8
STREAM_OFFSET: Final = HOST_OFFSET + HOST_SIZE
COUNTERS_OFFSET: Final = STREAM_OFFSET + STREAM_SIZE


class Word(enum.IntEnum):
    """The 64-bit words from COUNTERS_OFFSET on: the value is the word's index there,
    so its offset is ``COUNTERS_OFFSET + 8 * word`` (``word_offset``)."""

    NATS_STATE = 0
    RECONNECTS_TOTAL = 1
    ERRORS_TOTAL = 2
    PENDING_MESSAGES = 3
    """mirror: messages the stream holds for its consumer not yet delivered."""
    RECORDS_TOTAL = 4
    """replicate: records JetStream acknowledged; mirror: records appended."""
    MESSAGES_TOTAL = 5
    BYTES_TOTAL = 6
    STREAM_SEQUENCE = 7
    """Of the last message acknowledged (replicate) or appended (mirror)."""
    INCARNATION_NS = 8
    """The source incarnation of that message."""
    SEGMENT = 9
    OFFSET = 10
    """Where that message ended in its source (and mirror) journal."""
    LAST_RECORD_NS = 11
    """The time field of its last record (the source writer's clock)."""
    LAST_MESSAGE_NS = 12
    """CLOCK_REALTIME when it was acknowledged (replicate) or committed (mirror)."""
    LATENCY_NS = 13
    """replicate: its publish round trip; mirror: its commit less LAST_RECORD_NS."""
    RETRIES_TOTAL = 14
    RESYNCS_TOTAL = 15
    DUPLICATES_TOTAL = 16
    GAPS_TOTAL = 17
    REWINDS_TOTAL = 18
    REDELIVERIES_TOTAL = 19
    SKIPPED_RECORDS_TOTAL = 20
    """mirror: records the stream held that a new copy could not start with (before
    the first segment start the stream holds), never copied."""
    LAG_CHECKED_NS = 21
    """mirror: CLOCK_REALTIME when the journal's last message in the stream was last
    read (0: never; LAG_RECORDS and LAG_NS are of that moment)."""
    LAG_RECORDS = 22
    """mirror: records of the journal the stream held beyond the copy then."""
    LAG_NS = 23
    """mirror: the time field of the stream's last record of the journal less the
    copy's last (0: caught up)."""


def word_offset(word: Word) -> int:
    return COUNTERS_OFFSET + 8 * word


WORD_NAMES: Final = tuple(word.name.lower() for word in Word)
"""The words' field names in docs/FORMAT.md."""

HEADER_STRUCT: Final = struct.Struct("<8sIIIIq64s64s")
assert HEADER_STRUCT.size == COUNTERS_OFFSET == 160
assert word_offset(max(Word)) + 8 <= REPLICATION_METRICS_SIZE
