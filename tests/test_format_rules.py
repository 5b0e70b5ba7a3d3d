"""Rules of docs/FORMAT.md that every reader must check, checked by the Python ones:
the end-of-segment marker's second word and its offset in the header, string and
vector offsets that are never 0."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal import _orderbook_layout as L
from journal._encode import OrderBookEncoder
from journal._verify import ORDERBOOK_SCHEMA, VerificationError, verify_size_prefixed
from tests.conftest import ASKS, BIDS


def _sealed_journal(path: Path) -> int:
    """A journal whose segment 0 is sealed; the offset of its end marker."""
    with journal.Writer(path, segment_size=64 * 1024) as writer:
        seq = 0
        while writer.position[0] == 0:
            writer.append_orderbook("upbit", "BTC-KRW", 1, seq, BIDS, ASKS)
            seq += 1
    segment = (path / F.segment_name(0)).read_bytes()
    return struct.unpack_from("<Q", segment, F.END_MARKER_OFFSET_OFFSET)[0]


def _poke(path: Path, offset: int, data: bytes) -> None:
    with (path / F.segment_name(0)).open("r+b") as file:
        file.seek(offset)
        file.write(data)


def test_an_end_marker_whose_second_word_is_not_zero_is_damage(journal_dir: Path) -> None:
    marker = _sealed_journal(journal_dir)
    _poke(journal_dir, marker + F.SIZE_PREFIX_SIZE, struct.pack("<I", 7))
    with (
        journal.Reader(journal_dir, metrics=False) as reader,
        pytest.raises(journal.CorruptSegmentError, match="second word=7") as caught,
    ):
        list(reader.available())
    assert caught.value.offset == marker + F.SIZE_PREFIX_SIZE


def test_an_end_marker_the_header_does_not_point_at_is_damage(journal_dir: Path) -> None:
    marker = _sealed_journal(journal_dir)
    # The marker is committed where it was, but the header points 8 bytes before it.
    _poke(journal_dir, F.END_MARKER_OFFSET_OFFSET, struct.pack("<Q", marker - 8))
    with (
        journal.Reader(journal_dir, metrics=False) as reader,
        pytest.raises(journal.CorruptSegmentError, match="lies below") as caught,
    ):
        list(reader.available())
    assert str(journal_dir / F.segment_name(0)) in str(caught.value)
    assert caught.value.offset == F.END_MARKER_OFFSET_OFFSET


def test_a_string_or_vector_offset_of_zero_fails_verification() -> None:
    record = bytearray(OrderBookEncoder().encode("upbit", "BTC-KRW", 1, 2, BIDS, ASKS, 3))
    verify_size_prefixed(record, 0, len(record), ORDERBOOK_SCHEMA)  # as written: fine
    struct.pack_into("<I", record, L.TABLE_POS + L.BIDS_FIELD, 0)
    with pytest.raises(VerificationError, match="offset 0"):
        verify_size_prefixed(record, 0, len(record), ORDERBOOK_SCHEMA)
