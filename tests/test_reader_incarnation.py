"""Readers follow a journal that is removed and created again (issue #9): a wiped
tmpfs or an operator's ``rm -rf`` followed by a new writer is a new incarnation,
read from its first segment, counted, and nothing of it lost."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal import _metrics_layout as M
from tests._procs import Child, Children, book

SEGMENT = 64 * 1024


def _write(path: Path, seqs: range, *, seal: bool = False) -> None:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        for seq in seqs:
            writer.append_orderbook(*book(seq))
        if seal:
            writer.close(seal=True)


def _read_until(child: Child, last_seq: int, timeout: float) -> list[tuple[int, int]]:
    """(sequence, incarnations) of every book the child reads, up to ``last_seq``."""
    seen: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1][0] != last_seq:
        line = child.read_json(timeout=max(0.1, deadline - time.monotonic()))
        seen.append((line["seq"], line["incarnations"]))
    return seen


@pytest.mark.parametrize("idle", ["futex", "backoff"])
@pytest.mark.parametrize("with_archive", [False, True], ids=["tmpfs", "archive"])
def test_reader_process_follows_a_recreated_journal(
    journal_dir: Path, shm_dir: Path, children: Children, idle: str, with_archive: bool
) -> None:
    archive = shm_dir / "archive"
    archive.mkdir()
    _write(journal_dir, range(100))
    reader = children.spawn("follow", journal_dir, idle, archive if with_archive else "-")
    assert reader.read_json(timeout=30)["waiting"]
    assert _read_until(reader, 99, timeout=30) == [(seq, 0) for seq in range(100)]
    shutil.rmtree(journal_dir)
    started = time.monotonic()
    _write(journal_dir, range(1000, 2000))  # a new incarnation, several segments
    seen = _read_until(reader, 1999, timeout=30)
    assert seen == [(seq, 1) for seq in range(1000, 2000)], seen[:5]
    # Followed within about a check interval, not at some far timeout.
    assert time.monotonic() - started < 5


def test_reader_at_an_end_marker_skips_to_the_new_incarnations_first_segment(
    journal_dir: Path,
) -> None:
    """The reader is in a sealed segment when the journal is recreated and the new
    incarnation already has a segment of the next index: that one is not read as
    the continuation; the new incarnation is read from segment 0."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as old:
        seq = 0
        while old.position[0] < 3:
            old.append_orderbook(*book(seq))
            seq += 1
    reader = journal.Reader(journal_dir, idle="spin")
    try:
        first = reader.try_next()
        assert first is not None and first.position[0] == 0
        shutil.rmtree(journal_dir)
        _write(journal_dir, range(10_000, 10_600))  # reaches segments 1, 2, ...
        sequences = [record.sequence for record in reader.available()]
        old_in_segment_0 = [s for s in sequences if s < 10_000]
        assert sequences[len(old_in_segment_0) :] == list(range(10_000, 10_600))
        assert old_in_segment_0 == list(range(1, len(old_in_segment_0) + 1))
        assert reader.incarnations == 1
    finally:
        reader.close()


def test_reader_says_so_once_and_counts_in_its_metrics(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(journal_dir, range(5))
    reader = journal.Reader(journal_dir, idle="spin", name="follower")
    try:
        assert len(list(reader.available())) == 5
        shutil.rmtree(journal_dir)
        with caplog.at_level(logging.WARNING, logger="journal.reader"):
            for _ in range(3):  # the journal is gone, nothing new yet: said once
                assert list(reader.available()) == []
            assert len(caplog.records) == 1
            assert "removed or recreated" in caplog.records[0].getMessage()
            _write(journal_dir, range(100, 110))
            assert [r.sequence for r in reader.available()] == list(range(100, 110))
        assert "new incarnation" in caplog.records[-1].getMessage()
        registration = reader._metrics.path
        assert registration is not None and registration.parent.parent == journal_dir
        words = memoryview(registration.read_bytes()).cast("Q")
        assert words[M.READER_INCARNATIONS_TOTAL_OFFSET // 8] == 1
    finally:
        reader.close()


def test_open_segment_cut_short_is_an_error_not_the_end(journal_dir: Path) -> None:
    """A sealed segment whose commit offset is lowered reads as open: followed by a
    segment holding records, that is damage, and the reader says so with the file."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        positions = []
        while writer.position[0] < 2:
            positions.append(writer.append_orderbook(*book(len(positions))))
    assert positions[50][0] == 0
    segment = journal_dir / F.segment_name(0)
    with segment.open("r+b") as file:  # commit at the 50th record's end: a boundary
        file.seek(F.COMMIT_OFFSET_OFFSET)
        file.write(positions[50][1].to_bytes(8, "little"))
    with journal.Reader(journal_dir) as reader:
        with pytest.raises(journal.CorruptSegmentError, match="cut short") as caught:
            list(reader.available())
        assert str(segment) in str(caught.value)


def test_the_last_sealed_segment_cut_short_is_an_error_not_the_end(journal_dir: Path) -> None:
    """Sealed by close(seal=True), then its commit lowered: no later segment holds
    records, but its end_marker_offset lies past the commit, which no writer does."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        positions = [writer.append_orderbook(*book(seq)) for seq in range(60)]
        writer.close(seal=True)
    segment = journal_dir / F.segment_name(0)
    with segment.open("r+b") as file:
        file.seek(F.COMMIT_OFFSET_OFFSET)
        file.write(positions[10][1].to_bytes(8, "little"))
    with (
        journal.Reader(journal_dir, metrics=False) as reader,
        pytest.raises(journal.CorruptSegmentError, match="cut short") as caught,
    ):
        list(reader.available())
    assert str(segment) in str(caught.value)


def test_a_file_in_place_of_the_journal_is_waited_out(journal_dir: Path) -> None:
    _write(journal_dir, range(5))
    reader = journal.Reader(journal_dir, idle="spin", metrics=False)
    try:
        assert len(list(reader.available())) == 5
        shutil.rmtree(journal_dir)
        journal_dir.write_bytes(b"")  # someone's file, for a while
        assert list(reader.available()) == []
        journal_dir.unlink()
        _write(journal_dir, range(100, 103))
        assert [r.sequence for r in reader.available()] == [100, 101, 102]
    finally:
        reader.close()
