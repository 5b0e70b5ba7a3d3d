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
"""

from __future__ import annotations

import struct
from typing import Final

PAYLOAD_ID: Final = b"OBK1"

# vtable slots in schema order: slot i is at VTABLE + 4 + 2*i.
FIELD_EXCHANGE_NAME: Final = 0
FIELD_SYMBOL: Final = 1
FIELD_TIMESTAMP: Final = 2
FIELD_SEQUENCE: Final = 3
FIELD_BIDS: Final = 4
FIELD_ASKS: Final = 5
FIELD_LOCAL_TIMESTAMP_NS: Final = 6
FIELD_COUNT: Final = 7

ROOT_OFFSET_POS: Final = 4
VTABLE_POS: Final = 12
VTABLE_SIZE: Final = 4 + 2 * FIELD_COUNT
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

LOCAL_TIMESTAMP_NS_POS: Final = TABLE_POS + LOCAL_TIMESTAMP_NS_FIELD
"""Where the writer stamps the time of publishing into a laid-out record."""
BIDS_VECTOR_POS: Final = TABLE_POS + TABLE_SIZE
LEVEL_SIZE: Final = 16
"""One PriceLevel struct: f64 price then f64 quantity."""

VTABLE_FIELDS: Final = (
    EXCHANGE_NAME_FIELD,
    SYMBOL_FIELD,
    TIMESTAMP_FIELD,
    SEQUENCE_FIELD,
    BIDS_FIELD,
    ASKS_FIELD,
    LOCAL_TIMESTAMP_NS_FIELD,
)

FIXED_HEAD: Final = struct.pack(
    f"<I4sHH{FIELD_COUNT}H2xi",
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
