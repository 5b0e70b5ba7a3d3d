"""The Python FlatBuffers verifier, the decoder on hostile bytes, and corrupt segments.

Offsets in VerificationError are from the record's size prefix; CorruptSegmentError
names the segment file and the absolute offset in it.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import journal
from journal import _decode, _inspect
from journal import _layout as F
from journal import _orderbook_layout as OB
from journal._inspect import verify
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._verify import ORDERBOOK_SCHEMA, VerificationError, verify_size_prefixed
from tests._books import (
    EDGE_BOOKS,
    FIELDS,
    Book,
    books,
    build_official,
    journal_values,
    official_values,
)
from tests._procs import Children
from tests.conftest import ASKS, BIDS
from tests.test_file_safety import wait_for

SEGMENT_SIZE = 64 * 1024
GOOD_ARGS = ("upbit", "BTC-KRW", 1_700_000_000_000, 42, BIDS, ASKS, 1_700_000_000_000_000_123)
GOOD = journal.OrderBookEncoder().encode(*GOOD_ARGS)

SLOTS = {
    "exchange_name": OB.FIELD_EXCHANGE_NAME,
    "symbol": OB.FIELD_SYMBOL,
    "timestamp": OB.FIELD_TIMESTAMP,
    "sequence": OB.FIELD_SEQUENCE,
    "bids": OB.FIELD_BIDS,
    "asks": OB.FIELD_ASKS,
    "local_timestamp_ns": OB.FIELD_LOCAL_TIMESTAMP_NS,
}


# -- finding things in a valid record ------------------------------------------------


def u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def table_of(buf: bytes) -> int:
    return 4 + u32(buf, 4)


def vtable_of(buf: bytes) -> int:
    table = table_of(buf)
    return table - struct.unpack_from("<i", buf, table)[0]


def entry_of(buf: bytes, name: str) -> int:
    """Offset (from the prefix) of the vtable entry of field ``name``."""
    return vtable_of(buf) + 4 + 2 * SLOTS[name]


def field_of(buf: bytes, name: str) -> int:
    """Offset of field ``name`` in the table."""
    return table_of(buf) + struct.unpack_from("<H", buf, entry_of(buf, name))[0]


def target_of(buf: bytes, name: str) -> int:
    """Offset of the length word of string or vector ``name``."""
    at = field_of(buf, name)
    return at + u32(buf, at)


def patched(buf: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(buf)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def test_locators_agree_with_the_layout() -> None:
    assert table_of(GOOD) == OB.TABLE_POS
    assert vtable_of(GOOD) == OB.VTABLE_POS
    assert field_of(GOOD, "timestamp") == OB.TABLE_POS + OB.TIMESTAMP_FIELD
    assert target_of(GOOD, "bids") == OB.BIDS_VECTOR_POS
    assert u32(GOOD, target_of(GOOD, "bids")) == 10
    assert u32(GOOD, target_of(GOOD, "exchange_name")) == len("upbit")


# -- valid buffers pass ---------------------------------------------------------------


VALID = {
    "encoder": GOOD,
    **{f"edge-{i}": book.encode() for i, book in enumerate(EDGE_BOOKS)},
    "builder-all": build_official(EDGE_BOOKS[1]),
    "builder-reversed": build_official(EDGE_BOOKS[1], order=tuple(reversed(FIELDS))),
    "builder-defaults": build_official(EDGE_BOOKS[0], force_defaults=True),
    "builder-strings-only": build_official(EDGE_BOOKS[2], {"exchange_name", "symbol"}),
    "builder-empty": build_official(EDGE_BOOKS[0], set()),
}


@pytest.mark.parametrize("buf", VALID.values(), ids=VALID.keys())
def test_valid_buffers_pass(buf: bytes) -> None:
    verify_size_prefixed(buf, 0, len(buf), ORDERBOOK_SCHEMA)
    verify_size_prefixed(memoryview(buf), 0, len(buf), ORDERBOOK_SCHEMA)
    # Inside a larger buffer, at an 8-aligned start, with room to spare after it.
    framed = bytes(16) + buf + bytes(24)
    verify_size_prefixed(framed, 16, len(framed), ORDERBOOK_SCHEMA)
    verify_size_prefixed(bytearray(framed), 16, 16 + len(buf), ORDERBOOK_SCHEMA)


def test_error_offsets_are_relative_to_the_start() -> None:
    bad = patched(GOOD, OB.VTABLE_POS, "<H", 17)
    for start in (0, 8, 4096):
        data = bytes(start) + bad
        with pytest.raises(VerificationError) as caught:
            verify_size_prefixed(data, start, len(data), ORDERBOOK_SCHEMA)
        assert caught.value.offset == OB.VTABLE_POS
        assert f"record offset={OB.VTABLE_POS}" in str(caught.value)


# -- each kind of damage is reported, with where --------------------------------------

LENGTH = len(GOOD)
TABLE = OB.TABLE_POS
VTABLE = OB.VTABLE_POS
EXCHANGE = target_of(GOOD, "exchange_name")
SYMBOL = target_of(GOOD, "symbol")
BIDS_AT = target_of(GOOD, "bids")
ASKS_AT = target_of(GOOD, "asks")

Case = tuple[str, Callable[[bytes], tuple[bytes, int]], int, str]
"""(id, damage(buf) -> (bytes, end), expected offset, message fragment)."""

DAMAGE: list[Case] = [
    # truncated: the size prefix promises more than the frame holds
    ("truncated-by-1", lambda b: (b[:-1], len(b) - 1), 0, f"size prefix={LENGTH - 4} runs past"),
    ("truncated-by-8", lambda b: (b[:-8], len(b) - 8), 0, "runs past the buffer of"),
    ("truncated-to-12", lambda b: (b[:12], 12), 0, "runs past the buffer of 12 bytes"),
    ("truncated-to-11", lambda b: (b[:11], 11), 0, "shorter than a size prefix and a root"),
    ("truncated-to-0", lambda b: (b"", 0), 0, "buffer of 0 bytes is shorter"),
    ("frame-shorter", lambda b: (b, len(b) - 8), 0, "runs past"),
    # size prefix
    ("prefix-one-too-large", lambda b: (patched(b, 0, "<I", len(b) - 3), len(b)), 0, "runs past"),
    ("prefix-max", lambda b: (patched(b, 0, "<I", 0xFFFFFFFF), len(b)), 0, "4294967295"),
    ("prefix-below-min", lambda b: (patched(b, 0, "<I", 4), len(b)), 0, "smaller than a root"),
    # a size prefix that cuts the record bounds it, whatever the frame holds
    (
        "prefix-cuts-symbol",
        lambda b: (patched(b, 0, "<I", len(b) - 12), len(b)),
        SYMBOL,  # the string starts past the cut: the error points at its length word
        "symbol: 8 bytes",
    ),
    ("prefix-cuts-table", lambda b: (patched(b, 0, "<I", 40), len(b)), TABLE, "table: 44 bytes"),
    # identifier
    ("identifier", lambda b: (b[:8] + b"OBK2" + b[12:], len(b)), 8, "file_identifier=b'OBK2'"),
    # root offset
    (
        "root-out-of-range",
        lambda b: (patched(b, 4, "<I", len(b)), len(b)),
        4,  # out of the record: the error points at the root offset word
        "root table: 4 bytes at",
    ),
    ("root-huge", lambda b: (patched(b, 4, "<I", 0xFFFFFFF0), len(b)), 4, "root table"),
    ("root-misaligned", lambda b: (patched(b, 4, "<I", TABLE - 4 + 2), len(b)), TABLE + 2, "align"),
    # vtable position
    (
        "vtable-before-buffer",
        lambda b: (patched(b, TABLE, "<i", TABLE + 8), len(b)),
        TABLE,  # out of the record: the error points at the table's soffset
        "vtable: 4 bytes at -8",
    ),
    (
        "vtable-past-end",
        lambda b: (patched(b, TABLE, "<i", TABLE - len(b)), len(b)),
        TABLE,
        "vtable: 4 bytes at",
    ),
    ("vtable-misaligned", lambda b: (patched(b, TABLE, "<i", TABLE - 13), len(b)), 13, "align"),
    # vtable size
    ("vtable-size-odd", lambda b: (patched(b, VTABLE, "<H", 17), len(b)), VTABLE, "size=17 is odd"),
    ("vtable-size-2", lambda b: (patched(b, VTABLE, "<H", 2), len(b)), VTABLE, "below 4"),
    ("vtable-size-0", lambda b: (patched(b, VTABLE, "<H", 0), len(b)), VTABLE, "size=0"),
    (
        "vtable-size-past-end",
        lambda b: (patched(b, VTABLE, "<H", 1000), len(b)),
        VTABLE,
        "vtable: 1000 bytes at 12 outside",
    ),
    # table size and fields past it
    (
        "table-size-past-end",
        lambda b: (patched(b, VTABLE + 2, "<H", 1000), len(b)),
        TABLE,
        "table: 1000 bytes at 32 outside",
    ),
    (
        "field-past-table-size",
        lambda b: (patched(b, VTABLE + 2, "<H", OB.ASKS_FIELD), len(b)),
        TABLE + OB.ASKS_FIELD,
        "asks: field at table+40 past table size=40",
    ),
    (
        "scalar-past-table-size",
        lambda b: (patched(b, entry_of(b, "sequence"), "<H", OB.TABLE_SIZE - 4), len(b)),
        TABLE + OB.TABLE_SIZE - 4,
        "sequence: field at table+40",
    ),
    # strings
    (
        "exchange-no-nul",
        lambda b: (patched(b, EXCHANGE + 4 + 5, "<B", ord("x")), len(b)),
        EXCHANGE,
        "exchange_name: string of length 5 is not NUL-terminated",
    ),
    (
        "symbol-no-nul",
        lambda b: (patched(b, SYMBOL + 4 + 7, "<B", 1), len(b)),
        SYMBOL,
        "symbol: string of length 7 is not NUL-terminated",
    ),
    (
        "exchange-length-huge",
        lambda b: (patched(b, EXCHANGE, "<I", 0xFFFFFF), len(b)),
        EXCHANGE + 4,
        "exchange_name: 16777216 bytes",
    ),
    (
        "symbol-length-past-end",
        lambda b: (patched(b, SYMBOL, "<I", 8), len(b)),
        SYMBOL + 4,
        "symbol: 9 bytes at",
    ),
    (
        "string-offset-out",
        lambda b: (patched(b, field_of(b, "symbol"), "<I", len(b)), len(b)),
        field_of(GOOD, "symbol"),  # out of the record: the offset field itself
        "symbol length: 4 bytes",
    ),
    # vectors
    (
        "bids-length-huge",
        lambda b: (patched(b, BIDS_AT, "<I", 1 << 20), len(b)),
        BIDS_AT + 4,
        "bids: 16777216 bytes at 80 outside",
    ),
    (
        "asks-length-max",
        lambda b: (patched(b, ASKS_AT, "<I", 0xFFFFFFFF), len(b)),
        ASKS_AT + 4,
        "asks:",
    ),
    (
        "asks-length-one-too-many",
        lambda b: (patched(b, ASKS_AT, "<I", (len(b) - ASKS_AT - 4) // 16 + 1), len(b)),
        ASKS_AT + 4,
        "asks:",
    ),
    (
        "vector-offset-out",
        lambda b: (patched(b, field_of(b, "bids"), "<I", 0x7FFFFFFF), len(b)),
        field_of(GOOD, "bids"),
        "bids length",
    ),
    # misaligned fields
    (
        "scalar-misaligned",
        lambda b: (patched(b, entry_of(b, "timestamp"), "<H", 12), len(b)),
        TABLE + 12,
        "timestamp: offset 44 not aligned to 8",
    ),
    (
        "offset-field-misaligned",
        lambda b: (patched(b, entry_of(b, "exchange_name"), "<H", 6), len(b)),
        TABLE + 6,
        "exchange_name: offset 38 not aligned to 4",
    ),
    (
        "string-misaligned",
        lambda b: (patched(b, field_of(b, "exchange_name"), "<I", EXCHANGE - 36 + 2), len(b)),
        EXCHANGE + 2,
        "exchange_name length: offset",
    ),
    (
        "vector-elements-misaligned",
        # len(bids) read from the low half of bids[0].price (100.0: zero), elements at 84
        lambda b: (patched(b, field_of(b, "bids"), "<I", BIDS_AT + 4 - 68), len(b)),
        BIDS_AT + 8,
        "bids: offset 84 not aligned to 8",
    ),
]


@pytest.mark.parametrize(
    ("damage", "offset", "fragment"),
    [case[1:] for case in DAMAGE],
    ids=[case[0] for case in DAMAGE],
)
def test_damage_is_reported_with_its_offset(
    damage: Callable[[bytes], tuple[bytes, int]], offset: int, fragment: str
) -> None:
    data, end = damage(GOOD)
    with pytest.raises(VerificationError) as caught:
        verify_size_prefixed(data, 0, end, ORDERBOOK_SCHEMA)
    error = caught.value
    assert isinstance(error, ValueError)
    assert fragment in str(error)
    assert error.offset == offset, str(error)
    assert str(error).endswith(f"(record offset={offset})")
    # The reader's entry point refuses it too, with nothing but VerificationError.
    if end >= 4 and u32(data, 0) + 4 == end:
        with pytest.raises(VerificationError):
            _decode.read_orderbook(data, 0, end, (0, 0), True)


def test_builder_buffers_are_checked_the_same_way() -> None:
    buf = build_official(EDGE_BOOKS[1], order=tuple(reversed(FIELDS)))
    no_nul = bytearray(buf)
    target = target_of(buf, "symbol")
    no_nul[target + 4 + u32(buf, target)] = ord("!")
    with pytest.raises(VerificationError, match="symbol: string of length") as caught:
        verify_size_prefixed(bytes(no_nul), 0, len(no_nul), ORDERBOOK_SCHEMA)
    assert caught.value.offset == target
    vector = target_of(buf, "asks")
    long_vector = patched(buf, vector, "<I", 3)
    with pytest.raises(VerificationError, match="asks") as caught:
        verify_size_prefixed(long_vector, 0, len(long_vector), ORDERBOOK_SCHEMA)
    assert caught.value.offset == vector + 4


def test_decoder_refuses_what_the_verifier_refuses_size_prefix() -> None:
    """read_orderbook(verify=True) must not accept a record verify_size_prefixed refuses:
    its fast path for the encoder's layout never compares the size prefix with ``end``."""
    for prefix in (8, 40, len(GOOD) - 12, len(GOOD) + 100, 0xFFFFFFFF):
        data = patched(GOOD, 0, "<I", prefix)
        with pytest.raises(VerificationError):
            verify_size_prefixed(data, 0, len(data), ORDERBOOK_SCHEMA)
        with pytest.raises(VerificationError):
            record = _decode.read_orderbook(data, 0, len(data), (0, 0), True)
            pytest.fail(f"prefix={prefix}: accepted, record.size={record.size} of {len(data)}")


# -- fuzz: damaged records never raise anything unexpected ---------------------------

flips = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.one_of(st.sampled_from([0, 1, 2, 4, 7, 8, 0x7F, 0x80, 0xFE, 0xFF]), st.integers(0, 255)),
    ),
    max_size=6,
)
head_flips = st.lists(st.tuples(st.integers(0, 95), st.integers(0, 255)), max_size=4)


def damaged(
    buf: bytes, anywhere: list[tuple[int, int]], head: list[tuple[int, int]], cut: int | None
) -> bytes:
    out = bytearray(buf)
    for at, value in [*anywhere, *head]:
        if out:
            out[at % len(out)] = value
    if cut is not None:
        del out[cut % (len(out) + 1) :]
    return bytes(out)


def read_everything(data: bytes) -> None:
    """Verify, then decode every way; only VerificationError (before decoding) and
    UnicodeDecodeError (names that are not UTF-8) may come out."""
    try:
        verify_size_prefixed(data, 0, len(data), ORDERBOOK_SCHEMA)
        verified = True
    except VerificationError as error:
        assert isinstance(error.offset, int)
        verified = False
    consistent_prefix = len(data) >= 4 and u32(data, 0) + 4 == len(data)
    try:
        fast = _decode.read_orderbook(data, 0, len(data), (0, 0), True)
    except VerificationError:
        assert not verified
        fast = None
    except UnicodeDecodeError:
        fast = None
    else:
        if consistent_prefix:
            # Accepted by the reader's entry point: a valid FlatBuffer.
            assert verified
    if not verified:
        return
    try:
        generic = _decode._decode_any_layout(data, 0, None)
    except UnicodeDecodeError:
        return
    values = journal_values(generic)
    assert values == official_values(data, exact_prefix=False)
    if fast is not None:
        assert journal_values(fast) == values


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    books(max_levels=3),
    flips,
    head_flips,
    st.one_of(st.none(), st.integers(0, 1 << 16)),
    st.booleans(),
)
def test_fuzzed_records_raise_only_verification_errors(
    book: Book,
    anywhere: list[tuple[int, int]],
    head: list[tuple[int, int]],
    cut: int | None,
    fix_prefix: bool,
) -> None:
    data = bytearray(damaged(book.encode(), anywhere, head, cut))
    if fix_prefix and len(data) >= 4:
        struct.pack_into("<I", data, 0, len(data) - 4)
    read_everything(bytes(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    books(max_levels=3),
    st.sets(st.sampled_from(FIELDS)),
    st.permutations(FIELDS),
    flips,
    head_flips,
    st.one_of(st.none(), st.integers(0, 1 << 16)),
)
def test_fuzzed_builder_records_raise_only_verification_errors(
    book: Book,
    present: set[str],
    order: list[str],
    anywhere: list[tuple[int, int]],
    head: list[tuple[int, int]],
    cut: int | None,
) -> None:
    data = damaged(build_official(book, present, tuple(order)), anywhere, head, cut)
    read_everything(data)


@settings(max_examples=100, deadline=None)
@given(books(max_levels=2), st.integers(4, 95), st.sampled_from(["<H", "<I", "<i"]), st.data())
def test_fuzzed_header_words(book: Book, at: int, fmt: str, data: st.DataObject) -> None:
    """Whole offsets rewritten in the root, vtable and table: the fields that steer."""
    buf = book.encode()
    size = struct.calcsize(fmt)
    assume(at + size <= len(buf))
    low, high = {"<H": (0, 0xFFFF), "<I": (0, 0xFFFFFFFF), "<i": (-(1 << 31), (1 << 31) - 1)}[fmt]
    value = data.draw(
        st.one_of(st.integers(-64, 512), st.integers(low, high)).filter(lambda v: low <= v <= high)
    )
    read_everything(patched(buf, at, fmt, value))


def test_invalid_utf8_passes_verification_and_fails_decoding() -> None:
    """The verifier (like the C++ one) does not check UTF-8; decoding raises
    UnicodeDecodeError, which the reader reports as corruption."""
    data = patched(GOOD, EXCHANGE + 4, "<B", 0xFF)
    verify_size_prefixed(data, 0, len(data), ORDERBOOK_SCHEMA)
    with pytest.raises(UnicodeDecodeError):
        _decode.read_orderbook(data, 0, len(data), (0, 0), True)


# -- corrupt segments: the reader names the file and the offset ------------------------


def write_journal(path: Path, count: int = 3) -> list[tuple[int, int]]:
    with journal.Writer(path, segment_size=SEGMENT_SIZE) as writer:
        return [writer.append_orderbook(*GOOD_ARGS) for _ in range(count)]


def poke(path: Path, at: int, value: bytes) -> None:
    with open(segment_path(path, 0), "r+b") as segment:
        segment.seek(at)
        segment.write(value)


SEGMENT_DAMAGE = [
    # (id, offset in the record, bytes written there, expected offset of the error in
    # the record or None when not pinned here, message fragment, caught without
    # verification too)
    ("vtable-size-odd", VTABLE, struct.pack("<H", 17), VTABLE, "verification", False),
    ("vtable-size-1", VTABLE, struct.pack("<H", 1), VTABLE, "verification", False),
    ("exchange-no-nul", EXCHANGE + 9, b"x", EXCHANGE, "not NUL-terminated", False),
    ("bids-length-huge", BIDS_AT, struct.pack("<I", 1 << 20), BIDS_AT + 4, "bids", False),
    ("asks-length-max", ASKS_AT, b"\xff\xff\xff\xff", ASKS_AT + 4, "asks", False),
    ("symbol-length", SYMBOL, struct.pack("<I", 1 << 30), SYMBOL + 4, "symbol", False),
    ("root-out-of-range", 4, struct.pack("<I", 1 << 20), None, "root table", False),
    ("vtable-before", TABLE, struct.pack("<i", 1 << 20), None, "vtable", False),
    ("vtable-after", TABLE, struct.pack("<i", -(1 << 20)), None, "vtable", False),
    ("prefix-huge", 0, struct.pack("<I", 1 << 20), 0, "does not fit", True),
    ("prefix-max", 0, b"\xff\xff\xff\xfe", 0, "does not fit", True),
    ("prefix-below-min", 0, struct.pack("<I", 4), 0, "size prefix=4", True),
    ("prefix-cuts-table", 0, struct.pack("<I", 40), TABLE, "verification", False),
    ("identifier", 8, b"XXXX", 0, "file_identifier=b'XXXX'", True),
    ("utf8", EXCHANGE + 4, b"\xff", 0, "cannot be decoded", True),
]


@pytest.mark.parametrize(
    ("at", "value", "offset", "fragment", "always"),
    [case[1:] for case in SEGMENT_DAMAGE],
    ids=[case[0] for case in SEGMENT_DAMAGE],
)
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_corrupt_record_in_a_segment(
    at: int,
    value: bytes,
    offset: int | None,
    fragment: str,
    always: bool,
    verify: bool,
    journal_dir: Path,
) -> None:
    positions = write_journal(journal_dir)
    record = positions[1][1]
    poke(journal_dir, record + at, value)
    segment = segment_path(journal_dir, 0)
    with journal.Reader(journal_dir, verify=verify) as reader:
        first = reader.try_next()
        assert first is not None and first.position == positions[0]
        assert journal_values(first)["exchange_name"] == "upbit"
        if not (verify or always):
            # verify=False is for trusted replay: what breaks only the verifier's rules
            # may go unnoticed, but every failure to decode must still come out as
            # CorruptSegmentError (the reader converts struct.error, IndexError and
            # UnicodeDecodeError), never as another exception.
            try:
                record_read = reader.try_next()
            except journal.CorruptSegmentError as error:
                assert segment.name in str(error)
            else:
                assert record_read is not None
                journal_values(record_read)
            return
        with pytest.raises(journal.CorruptSegmentError) as caught:
            reader.try_next()
    error = caught.value
    message = str(error)
    assert fragment in message
    assert error.path == str(segment)
    assert segment.name in message
    assert isinstance(error.offset, int)
    assert f"offset={error.offset})" in message
    if offset is not None:
        assert error.offset == record + offset


@pytest.mark.parametrize(
    ("at", "value"),
    [
        (4, struct.pack("<I", 1 << 20)),
        (TABLE, struct.pack("<i", 1 << 20)),
    ],
    ids=["root-past-the-file", "vtable-before-the-file"],
)
def test_corrupt_segment_offsets_point_into_the_file(
    at: int, value: bytes, journal_dir: Path
) -> None:
    """The offset in CorruptSegmentError is where to look in the file: for a reference
    that points out of the record, the word holding it, not the place it points to
    (which may lie before the file or past its end)."""
    positions = write_journal(journal_dir)
    record = positions[1][1]
    poke(journal_dir, record + at, value)
    with journal.Reader(journal_dir) as reader:
        reader.try_next()
        with pytest.raises(journal.CorruptSegmentError) as caught:
            reader.try_next()
    assert record <= caught.value.offset < positions[2][1], str(caught.value)


def test_corruption_after_good_records_keeps_them_readable(journal_dir: Path) -> None:
    positions = write_journal(journal_dir, count=5)
    poke(journal_dir, positions[3][1] + VTABLE, struct.pack("<H", 3))
    with journal.Reader(journal_dir) as reader:
        seen = [reader.try_next().position for _ in range(3)]
        with pytest.raises(journal.CorruptSegmentError, match=r"offset=\d+"):
            reader.try_next()
    assert seen == positions[:3]


# -- the segment chain: seals, commits and what follows them --------------------------


def set_header_word(directory: Path, index: int, at: int, value: int) -> Path:
    """Overwrite the 8-byte little-endian header word at ``at`` of segment ``index``,
    as a bit flip or another process would; returns the segment's path."""
    path = segment_path(directory, index)
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, value.to_bytes(8, "little"), at)
    finally:
        os.close(fd)
    return path


def header_word(directory: Path, index: int, at: int) -> int:
    with open(segment_path(directory, index), "rb") as segment:
        segment.seek(at)
        return int.from_bytes(segment.read(8), "little")


def open_at(directory: Path, index: int, commit: int) -> None:
    """Segment ``index`` made open (end_marker_offset 0) with its commit at ``commit``."""
    set_header_word(directory, index, F.END_MARKER_OFFSET_OFFSET, 0)
    set_header_word(directory, index, F.COMMIT_OFFSET_OFFSET, commit)


def first_in(positions: list[tuple[int, int]], segment: int) -> int:
    """Which of ``positions`` is the first record of ``segment``."""
    return next(i for i, (index, _) in enumerate(positions) if index == segment)


def cut_short(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    # The commit of sealed segment 0 lowered to cover its first 50 records only.
    set_header_word(directory, 0, F.COMMIT_OFFSET_OFFSET, positions[50][1])
    return 0, F.COMMIT_OFFSET_OFFSET


def marker_cleared(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    marker = header_word(directory, 0, F.END_MARKER_OFFSET_OFFSET)
    set_header_word(directory, 0, F.END_MARKER_OFFSET_OFFSET, 0)
    return 0, marker  # the committed end marker the header no longer points at


def marker_below_commit(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    set_header_word(directory, 0, F.END_MARKER_OFFSET_OFFSET, positions[50][1])
    return 0, F.END_MARKER_OFFSET_OFFSET


def marker_inside_a_record(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    # A header that says sealed, with a commit 8 bytes past its marker offset, but the
    # last record runs over that offset: there is no end marker there.
    marker = header_word(directory, 0, F.END_MARKER_OFFSET_OFFSET)
    set_header_word(directory, 0, F.END_MARKER_OFFSET_OFFSET, marker - F.END_MARKER_SIZE)
    set_header_word(directory, 0, F.COMMIT_OFFSET_OFFSET, marker)
    return 0, marker - F.END_MARKER_SIZE


def open_before_records(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    # Segment 0 open at its 50th record while segment 1 holds records.
    open_at(directory, 0, positions[50][1])
    return 0, F.COMMIT_OFFSET_OFFSET


def open_before_two_empty(directory: Path, positions: list[tuple[int, int]]) -> tuple[int, int]:
    # Segment 2 open, 3 and 4 (the newest) empty: a writer prepares one segment ahead,
    # never two, so 3 is not a roll under way but segment 2's records cut short.
    open_at(directory, 2, positions[first_in(positions, 2) + 10][1])
    open_at(directory, 3, F.HEADER_SIZE)
    set_header_word(directory, 4, F.COMMIT_OFFSET_OFFSET, F.HEADER_SIZE)
    return 2, F.COMMIT_OFFSET_OFFSET


CHAIN_DAMAGE: list[tuple[str, Callable[[Path, list[tuple[int, int]]], tuple[int, int]], str]] = [
    # (id, damage(journal, positions) -> (segment, offset of the error), message fragment)
    ("commit-cut-short", cut_short, "past commit_offset"),
    ("end-marker-offset-cleared", marker_cleared, "end_marker_offset=0"),
    ("end-marker-offset-below-commit", marker_below_commit, "below commit_offset"),
    ("end-marker-offset-inside-a-record", marker_inside_a_record, "no end-of-segment marker there"),
    ("open-segment-before-records", open_before_records, "holds records"),
    ("open-segment-before-two-empty", open_before_two_empty, "prepares one segment ahead"),
]


def write_chain(path: Path) -> list[tuple[int, int]]:
    """600 books in 5 segments of 64 KiB: 0 to 3 sealed, 4 open."""
    positions = write_journal(path, 600)
    assert positions[-1][0] == 4 and first_in(positions, 1) > 60
    return positions


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [case[1:] for case in CHAIN_DAMAGE],
    ids=[case[0] for case in CHAIN_DAMAGE],
)
def test_verify_reports_a_broken_chain(
    damage: Callable[[Path, list[tuple[int, int]]], tuple[int, int]],
    fragment: str,
    journal_dir: Path,
) -> None:
    segment, offset = damage(journal_dir, write_chain(journal_dir))
    report = verify(journal_dir)
    assert report.first_error is not None
    assert fragment in report.first_error
    assert f"file={segment_path(journal_dir, segment)} offset={offset})" in report.first_error


def test_segments_removed_after_the_listing(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compactor removes sealed segments, the oldest first, while a journal is
    read: gone before it was opened, the oldest is left out (as if the read began
    later); one gone after a later one was opened would leave a hole, so it is an
    error that says to read again, not a silent gap."""
    write_chain(journal_dir)
    listing = segment_indices(journal_dir)
    monkeypatch.setattr(_inspect, "segment_indices", lambda directory: listing)
    segment_path(journal_dir, 0).unlink()
    report = verify(journal_dir)
    assert (report.first_error, report.segments) == (None, 4)
    segment_path(journal_dir, 2).unlink()
    with pytest.raises(journal.JournalError, match=r"00000002\.journal was removed while"):
        verify(journal_dir)


def test_segments_of_another_incarnation(journal_dir: Path, shm_dir: Path) -> None:
    """A journal removed and created again while it is read: its listing can mix the
    two incarnations' segments. Not a chain to check, but a journal to read again."""
    write_chain(journal_dir)
    recreated = shm_dir / "recreated"
    write_chain(recreated)
    os.replace(segment_path(recreated, 4), segment_path(journal_dir, 5))
    set_header_word(journal_dir, 5, F.SEGMENT_INDEX_OFFSET, 5)
    with pytest.raises(journal.JournalError, match="removed and created again"):
        verify(journal_dir)


def roll_between_header_loads(
    journal_dir: Path, children: Children, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, object]]:
    """A writer process with books in segment 0 and segment 1 prepared (empty), made
    to roll into segment 1 just after the first segment header a reader of the whole
    journal loads (journal._inspect._load_state): the window in which, had it loaded
    segment 0 first, 0 would look open and 1 hold a record. Returns the writer's
    reply to the roll, once it happened."""
    writer = children.spawn("serve", journal_dir, SEGMENT_SIZE, stdin=True)
    writer.read_json(30)
    writer.send(op="publish", count=5)
    writer.read_json(30)
    wait_for(segment_path(journal_dir, 1))
    load_state = _inspect._load_state
    rolled: list[dict[str, object]] = []

    def load_then_roll(segment: MappedSegment) -> _inspect.SegmentState:
        state = load_state(segment)
        if not rolled:
            writer.send(op="fill")
            writer.read_json(30)
            writer.send(op="publish", count=1)
            rolled.append(writer.read_json(30))
        return state

    monkeypatch.setattr(_inspect, "_load_state", load_then_roll)
    return rolled


def test_verify_across_a_roll_between_two_header_loads(
    journal_dir: Path, children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    rolled = roll_between_header_loads(journal_dir, children, monkeypatch)
    report = verify(journal_dir)
    assert rolled and rolled[0]["positions"] == [[1, F.HEADER_SIZE]]  # it did roll
    assert report.first_error is None, report.first_error
    assert report.records == rolled[0]["first"]  # segment 0 in full: sealed by then


@pytest.mark.slow
def test_verify_while_a_writer_rolls_reports_no_damage(
    journal_dir: Path, shm_dir: Path, children: Children
) -> None:
    """A live writer rolls hundreds of times a second, between verify's loads of one
    segment's header and the next's, and its next segment is prepared (empty) most of
    the time: never damage. Nor is anything SIGKILL leaves."""
    writer = children.spawn("torture", journal_dir, shm_dir / "acks", 0, SEGMENT_SIZE, 7)
    writer.read_json(30)
    wait_for(segment_path(journal_dir, 2))  # it rolled into segment 1
    checks = 0
    started = time.monotonic()
    while checks < 2 or time.monotonic() - started < 1.0:
        report = verify(journal_dir)
        assert report.first_error is None, report.first_error
        assert report.records > 0
        checks += 1
    writer.kill()
    report = verify(journal_dir)
    assert report.first_error is None, report.first_error
