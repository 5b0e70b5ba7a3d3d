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
from journal._layout import MIN_RECORD_SIZE, SIZE_PREFIX_SIZE

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
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
        Field("timestamp", OB.FIELD_TIMESTAMP, "scalar", 8, format="q"),
        Field("sequence", OB.FIELD_SEQUENCE, "scalar", 8, format="q"),
        Field("bids", OB.FIELD_BIDS, "struct_vector", OB.LEVEL_SIZE, 8),
        Field("asks", OB.FIELD_ASKS, "struct_vector", OB.LEVEL_SIZE, 8),
        Field("local_timestamp_ns", OB.FIELD_LOCAL_TIMESTAMP_NS, "scalar", 8, format="q"),
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
    limit = end - start

    def fail(message: str, at: int) -> None:
        raise VerificationError(message, at)

    def place(at: int, source: int) -> int:
        """Where to look: ``at`` if it is in the buffer, else ``source``, the word
        that points there (so an offset in an error is always inside the record)."""
        return at if 0 <= at < limit else source

    def check(at: int, size: int, alignment: int, what: str, source: int) -> None:
        if at < 0 or at + size > limit:
            fail(
                f"{what}: {size} bytes at {at} outside the buffer of {limit} bytes",
                place(at, source),
            )
        if at & (alignment - 1):
            fail(f"{what}: offset {at} not aligned to {alignment}", place(at, source))

    def u32(at: int) -> int:
        return _U32.unpack_from(data, start + at)[0]

    if limit < SIZE_PREFIX_SIZE + MIN_RECORD_SIZE:
        fail(f"buffer of {limit} bytes is shorter than a size prefix and a root", 0)
    size = u32(0)
    if size + SIZE_PREFIX_SIZE > limit or size > _MAX_BUFFER_SIZE:
        fail(f"size prefix={size} runs past the buffer of {limit} bytes", 0)
    if size < MIN_RECORD_SIZE:
        fail(f"size prefix={size} is smaller than a root offset and identifier", 0)
    limit = size + SIZE_PREFIX_SIZE
    identifier = bytes(data[start + 8 : start + 12])
    if identifier != schema.payload_id:
        fail(f"file_identifier={identifier!r}, expected {schema.payload_id!r}", 8)
    table = SIZE_PREFIX_SIZE + u32(SIZE_PREFIX_SIZE)
    check(table, 4, 4, f"{schema.name} root table", SIZE_PREFIX_SIZE)
    vtable = table - _I32.unpack_from(data, start + table)[0]
    check(vtable, 4, 2, f"{schema.name} vtable", table)
    vtable_size, table_size = struct.unpack_from("<HH", data, start + vtable)
    if vtable_size & 1 or vtable_size < 4:
        fail(f"{schema.name} vtable size={vtable_size} is odd or below 4", vtable)
    check(vtable, vtable_size, 2, f"{schema.name} vtable", vtable)
    check(table, table_size, 4, f"{schema.name} table", vtable + 2)
    for field in schema.fields:
        entry = 4 + 2 * field.slot
        if entry >= vtable_size:
            continue
        offset = _U16.unpack_from(data, start + vtable + entry)[0]
        if offset == 0:
            continue
        at = table + offset
        slot = vtable + entry
        if offset + (field.size if field.kind == "scalar" else 4) > table_size:
            fail(
                f"{field.name}: field at table+{offset} past table size={table_size}",
                place(at, slot),
            )
        if field.kind == "scalar":
            check(at, field.size, field.size, field.name, slot)
            continue
        check(at, 4, 4, field.name, slot)
        if not u32(at):
            fail(f"{field.name}: offset 0 (a string or vector cannot be at its own offset)", at)
        target = at + u32(at)
        check(target, 4, 4, f"{field.name} length", at)
        count = u32(target)
        if field.kind == "string":
            check(target + 4, count + 1, 1, field.name, target)
            if data[start + target + 4 + count] != 0:
                fail(f"{field.name}: string of length {count} is not NUL-terminated", target)
        else:
            check(target + 4, count * field.size, field.alignment, field.name, target)
