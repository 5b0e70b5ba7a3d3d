"""The FlatBuffer the encoder lays by hand for one OrderBook record.

A valid FlatBuffer of ``schema/orderbook.fbs`` (the official reader, ``flatc`` and the
C++ Verifier accept it), written front to back in one ``struct.pack_into``. Offsets
are from the start of the size prefix, which sits on an 8-byte boundary, so every
double and long below is 8-aligned in the file too::

      0  u32  size prefix (bytes after this word, padding included)
      4  u32  root offset = TABLE - 4
      8  4s   file_identifier "OBK1"
     12  vtable: u16 VTABLE_SIZE, u16 TABLE_SIZE, then one u16 per field slot
     30  2 bytes zero
     32  TABLE: i32 soffset = TABLE - VTABLE
     36        u32 -> exchange_name string
     40        i64 timestamp
     48        i64 sequence
     56        i64 local_timestamp_ns
     64        u32 -> symbol string
     68        u32 -> bids vector
     72        u32 -> asks vector
     76  u32 len(bids), then len(bids) x {f64 price, f64 quantity} from 80
         4 bytes zero, u32 len(asks), then the asks pairs (8-aligned)
         u32 len(exchange_name), UTF-8 bytes, NUL, zero to a multiple of 4
         u32 len(symbol), UTF-8 bytes, NUL, zero to a multiple of 8 = end

Every position above has a name here (``..._POS``: from the size prefix), and so has
its place for the bulk readers (the archive's value planes, journal.analysis), which
view a record frame as little-endian u64 words, word ``w`` being bytes ``8w..8w+8``
(``word``, ``word_shift``)::

     word 0      size prefix          | root offset
     words 1-3   identifier, vtable, padding       FIXED_WORDS (alike in every record)
     word 4      table soffset        | -> exchange_name    EXCHANGE_NAME_POS
     words 5-7   timestamp, sequence, local_timestamp_ns    VALUE_WORDS
     word 8      -> symbol            | -> bids             SYMBOL_POS, BIDS_POS
     word 9      -> asks              | len(bids)           ASKS_POS, BIDS_VECTOR_POS
     words 10..  the bids (HEAD_WORDS of head before them), then 4 bytes zero |
                 len(asks) (asks_vector_pos), the asks, the names

Modules that read or write these records take every position from here, never a
literal index or offset.
"""

from __future__ import annotations

import struct
from typing import Final

PAYLOAD_ID: Final = b"OBK1"

# vtable slots in schema order: slot i is at VTABLE + vtable_entry(i).
FIELD_EXCHANGE_NAME: Final = 0
FIELD_SYMBOL: Final = 1
FIELD_TIMESTAMP: Final = 2
FIELD_SEQUENCE: Final = 3
FIELD_BIDS: Final = 4
FIELD_ASKS: Final = 5
FIELD_LOCAL_TIMESTAMP_NS: Final = 6
FIELD_COUNT: Final = 7

# -- FlatBuffers' own sizes, as every table of every schema uses them -------------------

VTABLE_HEAD_SIZE: Final = 4
"""A vtable starts with u16 vtable size and u16 table size, then one u16 per slot."""
VTABLE_ENTRY_SIZE: Final = 2
UOFFSET_SIZE: Final = 4
"""A u32 offset to a string or vector, and the u32 length that starts either."""


def vtable_entry(slot: int) -> int:
    """Where a field slot's u16 is, from the start of its vtable."""
    return VTABLE_HEAD_SIZE + VTABLE_ENTRY_SIZE * slot


# -- this layout ---------------------------------------------------------------------

ROOT_OFFSET_POS: Final = 4
VTABLE_POS: Final = 12
VTABLE_SIZE: Final = vtable_entry(FIELD_COUNT)
TABLE_POS: Final = 32

# Field positions inside the table (relative to TABLE_POS), as stored in the vtable.
EXCHANGE_NAME_FIELD: Final = 4
TIMESTAMP_FIELD: Final = 8
SEQUENCE_FIELD: Final = 16
LOCAL_TIMESTAMP_NS_FIELD: Final = 24
SYMBOL_FIELD: Final = 32
BIDS_FIELD: Final = 36
ASKS_FIELD: Final = 40
TABLE_SIZE: Final = 44

# The same fields from the size prefix.
EXCHANGE_NAME_POS: Final = TABLE_POS + EXCHANGE_NAME_FIELD
TIMESTAMP_POS: Final = TABLE_POS + TIMESTAMP_FIELD
SEQUENCE_POS: Final = TABLE_POS + SEQUENCE_FIELD
LOCAL_TIMESTAMP_NS_POS: Final = TABLE_POS + LOCAL_TIMESTAMP_NS_FIELD
"""Where the writer stamps the time of publishing into a laid-out record."""
SYMBOL_POS: Final = TABLE_POS + SYMBOL_FIELD
BIDS_POS: Final = TABLE_POS + BIDS_FIELD
ASKS_POS: Final = TABLE_POS + ASKS_FIELD
VALUE_SIZE: Final = 8
"""timestamp, sequence and local_timestamp_ns: each an i64."""

BIDS_VECTOR_POS: Final = TABLE_POS + TABLE_SIZE
"""len(bids), right after the table."""
BIDS_LEVELS_POS: Final = BIDS_VECTOR_POS + UOFFSET_SIZE
"""The first bid level: 8-aligned, after len(bids)."""
LEVEL_SIZE: Final = 16
"""One PriceLevel struct: f64 price then f64 quantity."""
LEVEL_ALIGNMENT: Final = 8
"""A PriceLevel's alignment: that of its doubles."""
ASKS_PADDING: Final = 4
"""Zero bytes after the bids' levels, so that the asks' levels are 8-aligned too."""


def asks_vector_pos(n_bids: int) -> int:
    """Where len(asks) is in a record of ``n_bids`` bid levels (its levels follow)."""
    return BIDS_LEVELS_POS + LEVEL_SIZE * n_bids + ASKS_PADDING


VTABLE_FIELDS: Final = (
    EXCHANGE_NAME_FIELD,
    SYMBOL_FIELD,
    TIMESTAMP_FIELD,
    SEQUENCE_FIELD,
    BIDS_FIELD,
    ASKS_FIELD,
    LOCAL_TIMESTAMP_NS_FIELD,
)

FIXED_HEAD_FORMAT: Final = f"I4sHH{FIELD_COUNT}H2xi"
"""Root offset, identifier, vtable (size, table size, the slots), padding, soffset."""
FIXED_HEAD: Final = struct.pack(
    "<" + FIXED_HEAD_FORMAT,
    TABLE_POS - ROOT_OFFSET_POS,
    PAYLOAD_ID,
    VTABLE_SIZE,
    TABLE_SIZE,
    *VTABLE_FIELDS,
    TABLE_POS - VTABLE_POS,
)
"""Bytes 4..36 of every record laid out this way: root offset, identifier, vtable,
padding and the table's soffset. Only the size prefix before and the offsets after
depend on the book."""
FIXED_HEAD_END: Final = ROOT_OFFSET_POS + len(FIXED_HEAD)

HEAD_STRUCT: Final = struct.Struct(f"<I{FIXED_HEAD_FORMAT}IqqqIIII")
"""The record up to its first bid level, field by field: size prefix, the fixed head,
-> exchange_name, timestamp, sequence, local_timestamp_ns, -> symbol, -> bids,
-> asks, len(bids)."""
HEAD_SIZE: Final = HEAD_STRUCT.size

# The struct and the positions above are one layout: each field where it is named.
assert FIXED_HEAD_END == EXCHANGE_NAME_POS == struct.calcsize(f"<I{FIXED_HEAD_FORMAT}")
assert tuple(EXCHANGE_NAME_POS + UOFFSET_SIZE + VALUE_SIZE * i for i in range(4)) == (
    TIMESTAMP_POS,
    SEQUENCE_POS,
    LOCAL_TIMESTAMP_NS_POS,
    SYMBOL_POS,
)
assert tuple(SYMBOL_POS + UOFFSET_SIZE * i for i in range(1, 4)) == (
    BIDS_POS,
    ASKS_POS,
    BIDS_VECTOR_POS,
)
assert HEAD_SIZE == BIDS_LEVELS_POS

# -- the record as u64 words (bulk readers) --------------------------------------------

WORD_SIZE: Final = 8
"""Record frames start 8-aligned: bulk readers view them as little-endian u64 words."""


def word(pos: int) -> int:
    """The word holding byte ``pos`` of a record frame."""
    return pos // WORD_SIZE


def word_shift(pos: int) -> int:
    """Bits to shift the word holding ``pos`` right to bring the byte at ``pos`` down."""
    return 8 * (pos % WORD_SIZE)


VALUE_WORDS: Final = (word(TIMESTAMP_POS), word(SEQUENCE_POS), word(LOCAL_TIMESTAMP_NS_POS))
"""timestamp, sequence and local_timestamp_ns, in this order: three consecutive whole
words, the values that change with every book (the archive moves them to its value
planes; journal.analysis reads them as one slice)."""
VALUES_POS: Final = TIMESTAMP_POS
VALUES_END: Final = LOCAL_TIMESTAMP_NS_POS + VALUE_SIZE
assert VALUES_POS % WORD_SIZE == 0 and VALUE_SIZE == WORD_SIZE
assert tuple(range(word(VALUES_POS), word(VALUES_END))) == VALUE_WORDS

HEAD_WORDS: Final = word(HEAD_SIZE)
"""Words before the first bid level: the head (HEAD_STRUCT)."""
assert HEAD_SIZE % WORD_SIZE == 0
FIXED_WORDS: Final = range(-(-ROOT_OFFSET_POS // WORD_SIZE), word(FIXED_HEAD_END))
"""The words wholly inside FIXED_HEAD: the same in every record of this layout."""
FIXED_WORDS_BYTES: Final = FIXED_HEAD[
    WORD_SIZE * FIXED_WORDS.start - ROOT_OFFSET_POS : WORD_SIZE * FIXED_WORDS.stop - ROOT_OFFSET_POS
]
"""What those words hold, as little-endian bytes."""
LEVEL_WORDS: Final = LEVEL_SIZE // WORD_SIZE
