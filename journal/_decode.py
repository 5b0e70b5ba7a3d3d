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
from journal._verify import ORDERBOOK_SCHEMA, TableSchema, verify_size_prefixed

_ROOT = struct.Struct("<I")
_SOFFSET = struct.Struct("<i")
_VTABLE_HEAD = struct.Struct("<H")
_FULL_VTABLE = struct.Struct(f"<HH{OB.FIELD_COUNT}H")
_VTABLE_HEAD_ITEMS = OB.VTABLE_HEAD_SIZE // OB.VTABLE_ENTRY_SIZE
"""The u16 items before the slots: the vtable's size and the table's."""
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")
_LEVEL_DTYPE: Final = np.dtype("<f8")
_LEVEL_FIELDS: Final = OB.LEVEL_SIZE // _LEVEL_DTYPE.itemsize
"""A PriceLevel's price and quantity: the columns of a level view."""
_NO_LEVELS: Final = np.zeros((0, 2), dtype=_LEVEL_DTYPE)
_NO_LEVELS.flags.writeable = False

# The encoder's own layout (journal._orderbook_layout): the record's head (up to its
# first bid level) unpacked at once, and the fixed part it must match.
_CANONICAL = OB.HEAD_STRUCT
_CANONICAL_FIXED = (
    OB.TABLE_POS - OB.ROOT_OFFSET_POS,
    OB.PAYLOAD_ID,
    OB.VTABLE_SIZE,
    OB.TABLE_SIZE,
    *OB.VTABLE_FIELDS,
    OB.TABLE_POS - OB.VTABLE_POS,
)
# Items of the unpacked head, in HEAD_STRUCT's order: the size prefix, the fixed part,
# then the offsets and values that depend on the book.
_SIZE_PREFIX = 0
_CANONICAL_FIXED_ITEMS = slice(_SIZE_PREFIX + 1, _SIZE_PREFIX + 1 + len(_CANONICAL_FIXED))
(
    _EXCHANGE_OFFSET,
    _TIMESTAMP,
    _SEQUENCE,
    _LOCAL_TIMESTAMP_NS,
    _SYMBOL_OFFSET,
    _BIDS_OFFSET,
    _ASKS_OFFSET,
    _N_BIDS,
) = range(_CANONICAL_FIXED_ITEMS.stop, len(_CANONICAL.unpack(bytes(_CANONICAL.size))))
_CANONICAL_BIDS_OFFSET = OB.BIDS_VECTOR_POS - OB.BIDS_POS
_CANONICAL_ASKS = OB.asks_vector_pos(0)
"""Offset of len(asks) when there are no bids: after len(bids) and the padding."""
_LENGTH = OB.UOFFSET_SIZE
"""The u32 length before a string's bytes or a vector's items."""

Position = tuple[int, int]


class OrderBookRecord:
    """One order book as read from a journal; ``bids``/``asks`` are (n, 2) views.

    The views point into the mapped segment (read-only, no copy) and stay valid as
    long as they are referenced, even after the reader moves on or closes.
    ``position`` is ``(segment, offset)`` of the record's size prefix.

    The compiled reader (journal._creader) returns a subclass whose level views are
    made when first read (a record it returns holds the mapping until then).
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


def read_orderbook(
    data: Any,
    offset: int,
    end: int,
    position: Position,
    verify: bool = True,
    pinned: np.ndarray | None = None,
) -> OrderBookRecord:
    """Check and decode the record whose size prefix is at ``data[offset]``, ending at ``end``.

    Records in the encoder's own layout (every record a journal.Writer lays out) take
    a fast path whose offset arithmetic checks every bound on the way, so they are
    verified at no extra cost. Other valid layouts (the official builder's, via
    ``Writer.append``) are verified by journal._verify when ``verify`` is set, then
    decoded through their vtable. Raises VerificationError or UnicodeDecodeError.

    ``pinned``: a numpy view of all of ``data`` (``np.frombuffer``) that the level
    views are cut from; it holds the buffer export, so a mapping cannot be unmapped
    under a record's arrays. Without it, each level view takes its own export.
    """
    record = _read_own_layout(data, offset, end, pinned)
    if record is None:
        if verify:
            verify_size_prefixed(data, offset, end, ORDERBOOK_SCHEMA)
        record = _decode_any_layout(data, offset, pinned)
    record.position = position
    return record


def _read_own_layout(
    data: Any, offset: int, end: int, pinned: np.ndarray | None
) -> OrderBookRecord | None:
    """Decode a record in journal._orderbook_layout, or None if it is not one.

    Every offset is derived from the depths and string lengths and checked against
    the record's size before anything is read there.
    """
    if end - offset < _CANONICAL.size:
        return None
    head = _CANONICAL.unpack_from(data, offset)
    if (
        head[_CANONICAL_FIXED_ITEMS] != _CANONICAL_FIXED
        or head[_BIDS_OFFSET] != _CANONICAL_BIDS_OFFSET
    ):
        return None
    size = head[_SIZE_PREFIX] + SIZE_PREFIX_SIZE
    n_bids = head[_N_BIDS]
    asks_at = _CANONICAL_ASKS + OB.LEVEL_SIZE * n_bids
    if size > end - offset or asks_at + _LENGTH > size:
        return None
    n_asks = _U32.unpack_from(data, offset + asks_at)[0]
    exchange_at = asks_at + _LENGTH + OB.LEVEL_SIZE * n_asks
    if (
        head[_ASKS_OFFSET] != asks_at - OB.ASKS_POS
        or head[_EXCHANGE_OFFSET] != exchange_at - OB.EXCHANGE_NAME_POS
        or exchange_at + _LENGTH > size
    ):
        return None
    exchange_end = exchange_at + _LENGTH + _U32.unpack_from(data, offset + exchange_at)[0]
    symbol_at = OB.SYMBOL_POS + head[_SYMBOL_OFFSET]
    if symbol_at <= exchange_end or symbol_at % _LENGTH or symbol_at + _LENGTH > size:
        return None
    symbol_end = symbol_at + _LENGTH + _U32.unpack_from(data, offset + symbol_at)[0]
    if symbol_end >= size or data[offset + exchange_end] or data[offset + symbol_end]:
        return None
    record = OrderBookRecord()
    record.exchange_name = str(
        data[offset + exchange_at + _LENGTH : offset + exchange_end], "utf-8"
    )
    record.symbol = str(data[offset + symbol_at + _LENGTH : offset + symbol_end], "utf-8")
    record.timestamp = head[_TIMESTAMP]
    record.sequence = head[_SEQUENCE]
    record.local_timestamp_ns = head[_LOCAL_TIMESTAMP_NS]
    record.bids = _level_view(data, pinned, offset + OB.BIDS_LEVELS_POS, n_bids)
    record.asks = _level_view(data, pinned, offset + asks_at + _LENGTH, n_asks)
    record.size = size
    return record


def _decode_any_layout(data: Any, offset: int, pinned: np.ndarray | None) -> OrderBookRecord:
    """Decode a verified OrderBook of any valid layout by following its vtable."""
    base = offset + SIZE_PREFIX_SIZE
    table = base + _ROOT.unpack_from(data, base)[0]
    vtable = table - _SOFFSET.unpack_from(data, table)[0]
    vtable_size = _VTABLE_HEAD.unpack_from(data, vtable)[0]
    if vtable_size >= _FULL_VTABLE.size:
        slots = _FULL_VTABLE.unpack_from(data, vtable)[_VTABLE_HEAD_ITEMS:]
    else:
        present = (vtable_size - OB.VTABLE_HEAD_SIZE) // OB.VTABLE_ENTRY_SIZE
        slots = struct.unpack_from(f"<{present}H", data, vtable + OB.VTABLE_HEAD_SIZE) + (0,) * (
            OB.FIELD_COUNT - present
        )
    record = OrderBookRecord()
    record.exchange_name = _string(data, table, slots[OB.FIELD_EXCHANGE_NAME])
    record.symbol = _string(data, table, slots[OB.FIELD_SYMBOL])
    record.timestamp = _long(data, table, slots[OB.FIELD_TIMESTAMP])
    record.sequence = _long(data, table, slots[OB.FIELD_SEQUENCE])
    record.local_timestamp_ns = _long(data, table, slots[OB.FIELD_LOCAL_TIMESTAMP_NS])
    record.bids = _levels(data, pinned, table, slots[OB.FIELD_BIDS])
    record.asks = _levels(data, pinned, table, slots[OB.FIELD_ASKS])
    record.size = _ROOT.unpack_from(data, offset)[0] + SIZE_PREFIX_SIZE
    return record


def _long(data: Any, table: int, field: int) -> int:
    return _I64.unpack_from(data, table + field)[0] if field else 0


def _string(data: Any, table: int, field: int) -> str:
    if not field:
        return ""
    at = table + field
    at += _U32.unpack_from(data, at)[0]
    length = _U32.unpack_from(data, at)[0]
    return str(data[at + _LENGTH : at + _LENGTH + length], "utf-8")


def _levels(data: Any, pinned: np.ndarray | None, table: int, field: int) -> np.ndarray:
    if not field:
        return _NO_LEVELS
    at = table + field
    at += _U32.unpack_from(data, at)[0]
    return _level_view(data, pinned, at + _LENGTH, _U32.unpack_from(data, at)[0])


def _level_view(data: Any, pinned: np.ndarray | None, at: int, count: int) -> np.ndarray:
    """(count, 2) float64 view of the PriceLevel structs at ``at``; no copy."""
    if not count:
        return _NO_LEVELS
    if pinned is not None:
        return np.ndarray((count, _LEVEL_FIELDS), _LEVEL_DTYPE, pinned, at)
    return np.frombuffer(data, _LEVEL_DTYPE, _LEVEL_FIELDS * count, at).reshape(
        count, _LEVEL_FIELDS
    )


class TableRecord:
    """A record of a schema read generically (radar results): fields by name.

    ``record.edge_bps`` or ``record.fields["edge_bps"]``; absent fields read as their
    FlatBuffers default (0, 0.0, False) or "" for a string.
    """

    __slots__ = ("fields", "position", "size")

    fields: dict[str, Any]
    position: Position
    size: int

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return {"position": list(self.position), **self.fields}

    def __repr__(self) -> str:
        return f"TableRecord({self.fields!r}, position={self.position})"


_DEFAULTS: Final = {"q": 0, "d": 0.0, "?": False}


def read_table(
    data: Any, offset: int, end: int, position: Position, schema: TableSchema, verify: bool
) -> TableRecord:
    """Verify (if asked) and decode any table of ``schema`` by following its vtable."""
    if verify:
        verify_size_prefixed(data, offset, end, schema)
    base = offset + SIZE_PREFIX_SIZE
    table = base + _ROOT.unpack_from(data, base)[0]
    vtable = table - _SOFFSET.unpack_from(data, table)[0]
    vtable_size = _VTABLE_HEAD.unpack_from(data, vtable)[0]
    fields: dict[str, Any] = {}
    for field in schema.fields:
        entry = OB.vtable_entry(field.slot)
        at = _VTABLE_HEAD.unpack_from(data, vtable + entry)[0] if entry < vtable_size else 0
        if field.kind == "string":
            fields[field.name] = _string(data, table, at)
        elif at:
            fields[field.name] = struct.unpack_from("<" + field.format, data, table + at)[0]
        else:
            fields[field.name] = _DEFAULTS[field.format]
    record = TableRecord()
    record.fields = fields
    record.position = position
    record.size = _ROOT.unpack_from(data, offset)[0] + SIZE_PREFIX_SIZE
    return record


Record = OrderBookRecord | TableRecord


def read_record(
    data: Any,
    offset: int,
    end: int,
    position: Position,
    schema: TableSchema,
    verify: bool = True,
    pinned: np.ndarray | None = None,
) -> Record:
    """The record at ``offset`` of a journal of ``schema``: order books get their own
    fast reader, other payloads the generic one."""
    if schema is ORDERBOOK_SCHEMA:
        return read_orderbook(data, offset, end, position, verify, pinned)
    return read_table(data, offset, end, position, schema, verify)


def record_time_ns(data: Any, offset: int, end: int, schema: TableSchema) -> int:
    """The schema's time field of a verified record, for seeking by time."""
    record = read_record(data, offset, end, (0, offset), schema, verify=False)
    time_ns: int = getattr(record, schema.time_field)
    return time_ns
