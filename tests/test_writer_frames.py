"""Writer.append_frames, roll, incarnation_ns and first_segment; Reader.record_bytes.

What a copy of a journal (journal mirror) is built on: records taken from one journal
as bytes and appended to another unchanged, at the same positions, in segments that
carry the source's incarnation. The compiled append_frames and the pure-Python one
(``_append_frames_python``, the reference) must accept and refuse alike.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal import _orderbook_layout as OB
from tests.conftest import ASKS, BIDS

SEGMENT = 1 << 16


def write_source(path: Path, books: int) -> int:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        for i in range(books):
            writer.append_orderbook("upbit", f"S{i % 7}-KRW", 1000 + i, i, BIDS, ASKS)
        return writer.incarnation_ns


def frames_of(path: Path) -> list[tuple[tuple[int, int], bytes]]:
    with journal.Reader(path, metrics=False) as reader:
        return [(record.position, reader.record_bytes(record)) for record in reader.available()]


def framed(record: bytes) -> bytes:
    return record + bytes(F.align_record(len(record)) - len(record))


def copy(source: Path, target: Path) -> journal.Writer:
    """The mirror's loop in small: per source segment, its frames in one call."""
    records = frames_of(source)
    incarnation = journal.Reader(source, metrics=False)
    incarnation.try_next()
    writer = journal.Writer(target, segment_size=SEGMENT, incarnation_ns=incarnation.incarnation_ns)
    incarnation.close()
    run = bytearray()
    for (segment, offset), record in records:
        if segment != writer.position[0]:
            writer.append_frames(run)
            run.clear()
            writer.roll()
        assert (segment, offset) == (writer.position[0], writer.position[1] + len(run))
        run += framed(record)
    writer.append_frames(run)
    return writer


def segment_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("*.journal"))}


def test_a_copy_holds_the_same_bytes_at_the_same_positions(shm_dir: Path) -> None:
    incarnation = write_source(shm_dir / "source", 400)
    with copy(shm_dir / "source", shm_dir / "copy") as writer:
        assert writer.incarnation_ns == incarnation
    source, target = segment_files(shm_dir / "source"), segment_files(shm_dir / "copy")
    assert len(source) >= 3 and source.keys() == target.keys()
    for name in source:
        # Everything after the header, and the incarnation stamp in it, are the source's.
        assert target[name][F.HEADER_SIZE :] == source[name][F.HEADER_SIZE :], name
        stamp = slice(F.INCARNATION_NS_OFFSET, F.INCARNATION_NS_OFFSET + 8)
        assert target[name][stamp] == source[name][stamp]
    assert frames_of(shm_dir / "copy") == frames_of(shm_dir / "source")


def test_a_new_journal_can_start_at_a_later_segment(shm_dir: Path) -> None:
    with journal.Writer(shm_dir / "j", segment_size=SEGMENT, first_segment=5) as writer:
        assert writer.position == (5, F.HEADER_SIZE)
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
        assert writer.roll() == (6, F.HEADER_SIZE)
    [book] = journal.Reader(shm_dir / "j", metrics=False).available()
    assert book.position == (5, F.HEADER_SIZE)
    # Given to an existing journal, they change nothing: it keeps its own.
    with journal.Writer(shm_dir / "j", incarnation_ns=123, first_segment=9) as writer:
        assert writer.position == (6, F.HEADER_SIZE) and writer.incarnation_ns != 123


@pytest.mark.parametrize("bad", [0, -1, 1 << 63])
def test_an_incarnation_stamp_must_be_a_positive_int64(shm_dir: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="incarnation_ns"):
        journal.Writer(shm_dir / "j", incarnation_ns=bad)


def record(bids: list[list[float]] = BIDS, asks: list[list[float]] = ASKS) -> bytearray:
    """One record as journal.Writer lays it out (the copy's usual input)."""
    encoder = journal.OrderBookEncoder()
    return bytearray(encoder.encode("upbit", "BTC-KRW", 1, 2, bids, asks, 3))


def poke_level(data: bytearray, level: int, value: float) -> bytearray:
    struct.pack_into("<d", data, OB.BIDS_LEVELS_POS + OB.LEVEL_SIZE * level, value)
    return data


def shorten(data: bytearray, by: int) -> bytearray:
    """The size prefix ``by`` bytes short: the record's last bytes become padding."""
    struct.pack_into("<I", data, 0, len(data) - F.SIZE_PREFIX_SIZE - by)
    return data


BAD_RUNS = {
    "identifier": (lambda r: r[:8] + b"XXXX" + r[12:], "file_identifier"),
    "padding": (lambda r: shorten(r, 4)[:-1] + b"\x01", "padding"),
    "cut": (lambda r: r[:-9], "runs past the end"),
    "nan price": (lambda r: poke_level(r, 0, math.nan), "bids"),
    "unsorted": (lambda r: poke_level(r, 1, 1e9), "bids"),
    "too short": (lambda r: b"\x01\x00", "no size prefix"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_a_bad_record_is_refused_by_index_and_nothing_is_written(shm_dir: Path, case: str) -> None:
    spoil, message = BAD_RUNS[case]
    good = framed(bytes(record()))
    run = good + bytes(spoil(bytearray(good)))
    with journal.Writer(shm_dir / "j") as writer:
        for append in (writer.append_frames, writer._append_frames_python):
            with pytest.raises(journal.InvalidRecordError, match=message) as refused:
                append(run)
            assert "frames[1] at offset" in str(refused.value)
            assert writer.position == (0, F.HEADER_SIZE)


def test_too_many_levels_and_long_names_follow_the_writers_limits(shm_dir: Path) -> None:
    run = framed(bytes(record()))
    for limits in ({"max_levels": 5}, {"max_name_bytes": 4}):
        writer = journal.Writer(shm_dir / str(limits), **limits)
        with writer, pytest.raises(journal.InvalidRecordError, match="frames\\[0\\]"):
            writer.append_frames(run)


def test_compiled_and_reference_paths_write_the_same_bytes(shm_dir: Path) -> None:
    run = b"".join(framed(bytes(record())) for _ in range(50))
    with journal.Writer(shm_dir / "a") as a, journal.Writer(shm_dir / "b") as b:
        assert a.append_frames(run) == b._append_frames_python(run) == 50
        assert a.position == b.position
    assert (
        segment_files(shm_dir / "a")["00000000.journal"][F.HEADER_SIZE :]
        == (segment_files(shm_dir / "b")["00000000.journal"][F.HEADER_SIZE :])
    )


def test_a_run_that_does_not_fit_rolls_as_append_many_does(shm_dir: Path) -> None:
    run = b"".join(framed(bytes(record())) for _ in range(400))  # > one 64 KiB segment
    with journal.Writer(shm_dir / "j", segment_size=SEGMENT) as writer:
        assert writer.append_frames(run) == 400
        assert writer.position[0] >= 2
    assert len(list(journal.Reader(shm_dir / "j", metrics=False).available())) == 400


def test_record_bytes_names_a_record_of_another_segment(shm_dir: Path) -> None:
    write_source(shm_dir / "j", 400)
    with journal.Reader(shm_dir / "j", metrics=False) as reader:
        first = reader.try_next()
        assert first is not None
        records = list(reader.available())
        assert reader.record_bytes(records[-1])[: F.SIZE_PREFIX_SIZE] == struct.pack(
            "<I", records[-1].size - F.SIZE_PREFIX_SIZE
        )
        with pytest.raises(journal.JournalError, match="not in segment"):
            reader.record_bytes(first)
