"""Read an OrderBook record in place: scalars decoded, levels as zero-copy numpy views.

Works on any valid OrderBook FlatBuffer (the hand-laid ones and those of the
official builder alike) by following the vtable. Callers verify first
(journal._verify) when the bytes are not trusted.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np

from journal import _orderbook_layout as OB
from journal._layout import SIZE_PREFIX_SIZE

_ROOT = struct.Struct("<I")
_SOFFSET = struct.Struct("<i")
_VTABLE_HEAD = struct.Struct("<H")
_FULL_VTABLE = struct.Struct(f"<HH{OB.FIELD_COUNT}H")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_LEVEL_DTYPE: Final = np.dtype("<f8")
_NO_LEVELS: Final = np.zeros((0, 2), dtype=_LEVEL_DTYPE)
_NO_LEVELS.flags.writeable = False

Position = tuple[int, int]


class OrderBookRecord:
    """One order book as read from a journal; ``bids``/``asks`` are (n, 2) views.

    The views point into the mapped segment (read-only, no copy) and stay valid as
    long as they are referenced, even after the reader moves on or closes.
    ``position`` is ``(segment, offset)`` of the record's size prefix.
    """

    __slots__ = (
        "asks",
        "bids",
        "exchange_name",
        "local_timestamp_ns",
        "position",
        "sequence",
        "size",
        "symbol",
        "timestamp",
    )

    exchange_name: str
    symbol: str
    timestamp: int
    sequence: int
    local_timestamp_ns: int
    bids: np.ndarray
    asks: np.ndarray
    position: Position
    size: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as ``journal dump`` prints them."""
        return {
            "position": list(self.position),
            "exchange_name": self.exchange_name,
            "symbol": self.symbol,
            "timestamp": self.timestamp,
            "sequence": self.sequence,
            "local_timestamp_ns": self.local_timestamp_ns,
            "bids": self.bids.tolist(),
            "asks": self.asks.tolist(),
        }

    def __repr__(self) -> str:
        return (
            f"OrderBookRecord({self.exchange_name} {self.symbol} ts={self.timestamp} "
            f"seq={self.sequence} bids={len(self.bids)} asks={len(self.asks)} "
            f"position={self.position})"
        )


def decode_orderbook(data: Any, offset: int, position: Position) -> OrderBookRecord:
    """Decode the record whose size prefix is at ``data[offset]`` (already verified)."""
    base = offset + SIZE_PREFIX_SIZE
    table = base + _ROOT.unpack_from(data, base)[0]
    vtable = table - _SOFFSET.unpack_from(data, table)[0]
    vtable_size = _VTABLE_HEAD.unpack_from(data, vtable)[0]
    if vtable_size >= _FULL_VTABLE.size:
        slots = _FULL_VTABLE.unpack_from(data, vtable)[2:]
    else:
        present = (vtable_size - 4) // 2
        slots = struct.unpack_from(f"<{present}H", data, vtable + 4) + (0,) * (
            OB.FIELD_COUNT - present
        )
    record = OrderBookRecord()
    record.exchange_name = _string(data, table, slots[OB.FIELD_EXCHANGE_NAME])
    record.symbol = _string(data, table, slots[OB.FIELD_SYMBOL])
    record.timestamp = _long(data, table, slots[OB.FIELD_TIMESTAMP])
    record.sequence = _long(data, table, slots[OB.FIELD_SEQUENCE])
    record.local_timestamp_ns = _long(data, table, slots[OB.FIELD_LOCAL_TIMESTAMP_NS])
    record.bids = _levels(data, table, slots[OB.FIELD_BIDS])
    record.asks = _levels(data, table, slots[OB.FIELD_ASKS])
    record.position = position
    record.size = _ROOT.unpack_from(data, offset)[0] + SIZE_PREFIX_SIZE
    return record


def local_timestamp_ns(data: Any, offset: int) -> int:
    """Only the collector timestamp of the record at ``offset`` (for seeking by time)."""
    base = offset + SIZE_PREFIX_SIZE
    table = base + _ROOT.unpack_from(data, base)[0]
    vtable = table - _SOFFSET.unpack_from(data, table)[0]
    entry = 4 + 2 * OB.FIELD_LOCAL_TIMESTAMP_NS
    if _VTABLE_HEAD.unpack_from(data, vtable)[0] <= entry:
        return 0
    return _long(data, table, _VTABLE_HEAD.unpack_from(data, vtable + entry)[0])


def _long(data: Any, table: int, field: int) -> int:
    return _I64.unpack_from(data, table + field)[0] if field else 0


def _string(data: Any, table: int, field: int) -> str:
    if not field:
        return ""
    at = table + field
    at += _U32.unpack_from(data, at)[0]
    length = _U32.unpack_from(data, at)[0]
    return bytes(data[at + 4 : at + 4 + length]).decode("utf-8")


def _levels(data: Any, table: int, field: int) -> np.ndarray:
    if not field:
        return _NO_LEVELS
    at = table + field
    at += _U32.unpack_from(data, at)[0]
    count = _U32.unpack_from(data, at)[0]
    if not count:
        return _NO_LEVELS
    return np.frombuffer(data, _LEVEL_DTYPE, 2 * count, at + 4).reshape(count, 2)
