"""A FlatBuffers verifier for the journal's schemas, in Python.

The official Python runtime has no verifier; this one makes the checks of the C++
``flatbuffers::Verifier`` (bounds, alignment relative to the size prefix, vtable
sanity, NUL-terminated strings, vector lengths) for a table described by its field
kinds. ``append(buf)`` runs it before writing, ``Reader(verify=True)`` and
``journal verify`` on every record. tests/test_verify.py checks it against the C++
Verifier once the radar library is built.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from journal import _orderbook_layout as OB
from journal._layout import (
    MIN_RECORD_SIZE,
    PAYLOAD_ID_SIZE,
    RECORD_PAYLOAD_ID_OFFSET,
    SIZE_PREFIX_SIZE,
)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_VTABLE_HEAD = struct.Struct("<HH")
_UOFFSET: Final = OB.UOFFSET_SIZE
_VTABLE_HEAD_SIZE: Final = OB.VTABLE_HEAD_SIZE
_VTABLE_ENTRY_SIZE: Final = OB.VTABLE_ENTRY_SIZE
_MAX_BUFFER_SIZE: Final = (1 << 31) - 1


@dataclass(frozen=True, slots=True)
class Field:
    """One table field: its vtable slot and how to verify it."""

    name: str
    slot: int
    kind: str  # "scalar", "string" or "struct_vector"
    size: int = 0  # scalar size, or struct element size
    alignment: int = 0  # struct element alignment
    format: str = ""  # a scalar's struct format: "q" long, "d" double, "?" bool


@dataclass(frozen=True, slots=True)
class TableSchema:
    name: str
    payload_id: bytes
    fields: tuple[Field, ...]
    time_field: str  # the record's time in ns, for readers that start at a time


ORDERBOOK_SCHEMA: Final = TableSchema(
    "OrderBookData.OrderBook",
    OB.PAYLOAD_ID,
    (
        Field("exchange_name", OB.FIELD_EXCHANGE_NAME, "string"),
        Field("symbol", OB.FIELD_SYMBOL, "string"),
        Field("timestamp", OB.FIELD_TIMESTAMP, "scalar", OB.VALUE_SIZE, format="q"),
        Field("sequence", OB.FIELD_SEQUENCE, "scalar", OB.VALUE_SIZE, format="q"),
        Field("bids", OB.FIELD_BIDS, "struct_vector", OB.LEVEL_SIZE, OB.LEVEL_ALIGNMENT),
        Field("asks", OB.FIELD_ASKS, "struct_vector", OB.LEVEL_SIZE, OB.LEVEL_ALIGNMENT),
        Field(
            "local_timestamp_ns", OB.FIELD_LOCAL_TIMESTAMP_NS, "scalar", OB.VALUE_SIZE, format="q"
        ),
    ),
    time_field="local_timestamp_ns",
)


def _radar_fields() -> tuple[Field, ...]:
    """schema/radar.fbs RadarResult, slot by slot in declaration order."""
    kinds = (
        ("timestamp_ns", "q"),
        ("base", "s"),
        ("krw_exchange", "s"),
        ("usdt_exchange", "s"),
        ("fx", "d"),
        ("kimchi_premium", "d"),
        ("buy_exchange", "s"),
        ("sell_exchange", "s"),
        ("edge_bps", "d"),
        ("fill_base_quantity", "d"),
        ("stale", "?"),
        ("source_local_timestamp_ns", "q"),
        ("notional_krw", "d"),
    )
    return tuple(
        Field(name, slot, "string")
        if kind == "s"
        else Field(name, slot, "scalar", struct.calcsize(kind), format=kind)
        for slot, (name, kind) in enumerate(kinds)
    )


RADAR_RESULT_SCHEMA: Final = TableSchema(
    "RadarData.RadarResult", b"RDR1", _radar_fields(), time_field="timestamp_ns"
)

SCHEMAS: Final = {schema.payload_id: schema for schema in (ORDERBOOK_SCHEMA, RADAR_RESULT_SCHEMA)}
"""Schemas by payload identifier: what a journal of each payload holds."""


class VerificationError(ValueError):
    """A buffer is not a valid FlatBuffer of the schema; ``offset`` is from the prefix."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (record offset={offset})")
        self.offset = offset


def verify_size_prefixed(
    data: bytes | memoryview, start: int, end: int, schema: TableSchema
) -> None:
    """Verify the size-prefixed FlatBuffer in ``data[start:end]``.

    ``end`` is the limit the buffer must fit in (the record's frame); offsets in
    errors are relative to ``start``, the size prefix. Raises VerificationError.
    """
    buffer = _Buffer(data, start, end - start)
    _check_size_prefix(buffer)
    _check_identifier(buffer, schema)
    table, table_size, vtable, vtable_size = _check_tables(buffer, schema)
    for field in schema.fields:
        _check_field(buffer, field, table, table_size, vtable, vtable_size)


class _Buffer:
    """The bytes being verified, ``data[start:start + limit]``: every offset here is
    from ``start`` (the size prefix), and every read is checked against ``limit``."""

    __slots__ = ("data", "limit", "start")

    def __init__(self, data: bytes | memoryview, start: int, limit: int) -> None:
        self.data = data
        self.start = start
        self.limit = limit

    def u32(self, at: int) -> int:
        value: int = _U32.unpack_from(self.data, self.start + at)[0]
        return value

    def place(self, at: int, source: int) -> int:
        """Where to look: ``at`` if it is in the buffer, else ``source``, the word
        that points there (so an offset in an error is always inside the record)."""
        return at if 0 <= at < self.limit else source

    def check(self, at: int, size: int, alignment: int, what: str, source: int) -> None:
        """``size`` bytes at ``at`` (pointed to from ``source``) are inside the buffer
        and aligned to ``alignment``."""
        if at < 0 or at + size > self.limit:
            raise VerificationError(
                f"{what}: {size} bytes at {at} outside the buffer of {self.limit} bytes",
                self.place(at, source),
            )
        if at & (alignment - 1):
            raise VerificationError(
                f"{what}: offset {at} not aligned to {alignment}", self.place(at, source)
            )


def _check_size_prefix(buffer: _Buffer) -> None:
    """The size prefix fits the frame and holds a root and identifier; from then on
    the buffer is what the prefix says (``buffer.limit``)."""
    limit = buffer.limit
    if limit < SIZE_PREFIX_SIZE + MIN_RECORD_SIZE:
        raise VerificationError(
            f"buffer of {limit} bytes is shorter than a size prefix and a root", 0
        )
    size = buffer.u32(0)
    if size + SIZE_PREFIX_SIZE > limit or size > _MAX_BUFFER_SIZE:
        raise VerificationError(f"size prefix={size} runs past the buffer of {limit} bytes", 0)
    if size < MIN_RECORD_SIZE:
        raise VerificationError(
            f"size prefix={size} is smaller than a root offset and identifier", 0
        )
    buffer.limit = size + SIZE_PREFIX_SIZE


def _check_identifier(buffer: _Buffer, schema: TableSchema) -> None:
    at = buffer.start + RECORD_PAYLOAD_ID_OFFSET
    identifier = bytes(buffer.data[at : at + PAYLOAD_ID_SIZE])
    if identifier != schema.payload_id:
        raise VerificationError(
            f"file_identifier={identifier!r}, expected {schema.payload_id!r}",
            RECORD_PAYLOAD_ID_OFFSET,
        )


def _check_tables(buffer: _Buffer, schema: TableSchema) -> tuple[int, int, int, int]:
    """The root table and its vtable inside the buffer, aligned, of sound sizes:
    ``(table, table_size, vtable, vtable_size)``."""
    table = SIZE_PREFIX_SIZE + buffer.u32(SIZE_PREFIX_SIZE)
    buffer.check(table, _I32.size, _I32.size, f"{schema.name} root table", SIZE_PREFIX_SIZE)
    vtable = table - _I32.unpack_from(buffer.data, buffer.start + table)[0]
    buffer.check(vtable, _VTABLE_HEAD_SIZE, _U16.size, f"{schema.name} vtable", table)
    vtable_size, table_size = _VTABLE_HEAD.unpack_from(buffer.data, buffer.start + vtable)
    if vtable_size % _VTABLE_ENTRY_SIZE or vtable_size < _VTABLE_HEAD_SIZE:
        raise VerificationError(
            f"{schema.name} vtable size={vtable_size} is odd or below {_VTABLE_HEAD_SIZE}",
            vtable,
        )
    buffer.check(vtable, vtable_size, _U16.size, f"{schema.name} vtable", vtable)
    table_size_at = vtable + _U16.size
    buffer.check(table, table_size, _I32.size, f"{schema.name} table", table_size_at)
    return table, table_size, vtable, vtable_size


def _check_field(
    buffer: _Buffer, field: Field, table: int, table_size: int, vtable: int, vtable_size: int
) -> None:
    """A field present in the vtable lies inside the table, aligned; a string or
    vector it points to, inside the buffer (_check_reference)."""
    entry = _VTABLE_HEAD_SIZE + _VTABLE_ENTRY_SIZE * field.slot  # OB.vtable_entry
    if entry >= vtable_size:
        return
    offset = _U16.unpack_from(buffer.data, buffer.start + vtable + entry)[0]
    if offset == 0:
        return
    at = table + offset
    slot = vtable + entry
    if offset + (field.size if field.kind == "scalar" else _UOFFSET) > table_size:
        raise VerificationError(
            f"{field.name}: field at table+{offset} past table size={table_size}",
            buffer.place(at, slot),
        )
    if field.kind == "scalar":
        buffer.check(at, field.size, field.size, field.name, slot)
    else:
        _check_reference(buffer, field, at, slot)


def _check_reference(buffer: _Buffer, field: Field, at: int, slot: int) -> None:
    """The string or vector of structs the offset at ``at`` points to: its length
    and its bytes inside the buffer, a string NUL-terminated."""
    buffer.check(at, _UOFFSET, _UOFFSET, field.name, slot)
    if not buffer.u32(at):
        raise VerificationError(
            f"{field.name}: offset 0 (a string or vector cannot be at its own offset)", at
        )
    target = at + buffer.u32(at)
    buffer.check(target, _UOFFSET, _UOFFSET, f"{field.name} length", at)
    count = buffer.u32(target)
    items = target + _UOFFSET
    if field.kind == "string":
        buffer.check(items, count + 1, 1, field.name, target)
        if buffer.data[buffer.start + items + count] != 0:
            raise VerificationError(
                f"{field.name}: string of length {count} is not NUL-terminated", target
            )
    else:
        buffer.check(items, count * field.size, field.alignment, field.name, target)
