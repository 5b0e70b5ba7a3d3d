"""``Writer.close(seal=True)``: a stopping collector hands its last segment to the compactor."""

from __future__ import annotations

from pathlib import Path

from journal import Reader, Writer
from journal._inspect import summarize
from tests.conftest import ASKS, BIDS


def write(directory: Path, first: int, count: int, *, seal: bool) -> None:
    writer = Writer(directory, segment_size=1 << 20)
    for sequence in range(first, first + count):
        writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
    writer.close(seal=seal)


def test_a_sealed_close_seals_the_last_segment_and_a_restart_resumes_in_the_next(
    journal_dir: Path,
) -> None:
    write(journal_dir, 0, 100, seal=True)
    segments = summarize(journal_dir).segments
    assert [(s.index, s.sealed, s.records) for s in segments] == [(0, True, 100), (1, False, 0)]

    write(journal_dir, 100, 50, seal=False)
    segments = summarize(journal_dir).segments
    assert [(s.index, s.sealed, s.records) for s in segments] == [(0, True, 100), (1, False, 50)]
    with Reader(journal_dir, start="beginning") as reader:
        assert [book.sequence for book in reader.available()] == list(range(150))


def test_a_sealed_close_of_an_empty_segment_does_not_roll(journal_dir: Path) -> None:
    write(journal_dir, 0, 0, seal=True)
    write(journal_dir, 0, 10, seal=True)
    write(journal_dir, 10, 0, seal=True)
    segments = summarize(journal_dir).segments
    assert [(s.index, s.sealed, s.records) for s in segments] == [(0, True, 10), (1, False, 0)]


def test_a_plain_close_leaves_the_segment_open(journal_dir: Path) -> None:
    write(journal_dir, 0, 10, seal=False)
    segments = summarize(journal_dir).segments
    assert [(s.index, s.sealed, s.records) for s in segments] == [(0, False, 10)]
    assert len(list(journal_dir.glob("*.journal"))) == 1, "the prepared next segment was left"
