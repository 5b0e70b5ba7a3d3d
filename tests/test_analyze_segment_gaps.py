"""load_books over a stream with a segment missing in the middle: an error naming the
stream and the segments, unless asked to read around them (``allow_gaps``), archives
and the live journal of a stream considered together."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import journal
from journal._segment import MappedSegment, segment_indices, segment_path
from journal.analysis import MissingSegmentsError, SegmentGap, load_books
from journal.archive import _archive as A
from tests._procs import book
from tests.test_analysis import archive_sealed, reader_records

SEGMENT = 64 * 1024
BOOKS = 2000


@pytest.fixture
def stream(journal_dir: Path, shm_dir: Path) -> Path:
    """A journal of BOOKS books in at least 6 segments, every sealed one archived in
    ``shm_dir/archive/<journal name>``; returns that archive stream directory."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(BOOKS):
            writer.append_orderbook(*book(seq))
    assert len(segment_indices(journal_dir)) >= 6
    return archive_sealed(journal_dir, shm_dir / "archive")


def archive_of(stream: Path, index: int) -> Path:
    """The archive file of segment ``index`` in the stream's directory."""
    (path,) = [p for p in A.archive_files(stream) if f"-{index:08d}-" in p.name]
    return path


def sequences_of(journal_dir: Path, index: int) -> list[int]:
    """The sequence numbers segment ``index`` of the journal holds."""
    return [r.sequence for r in reader_records(journal_dir) if r.position[0] == index]


def incarnation(journal_dir: Path) -> int:
    with MappedSegment(segment_path(journal_dir, 0)) as segment:
        return segment.header.incarnation_ns


@pytest.mark.parametrize("threads", [0, 2])
def test_a_segment_missing_from_archive_and_tmpfs_is_an_error(
    stream: Path, journal_dir: Path, threads: int
) -> None:
    """Segments 0, 1, 3... archived, 2 neither archived nor in tmpfs: load_books read
    the books around the hole without a word. Now it names the stream and segment."""
    lost = set(sequences_of(journal_dir, 2))
    born = incarnation(journal_dir)
    archive_of(stream, 2).unlink()
    for index in (0, 1, 2):  # the compactor removed them from tmpfs
        segment_path(journal_dir, index).unlink()
    for sources in ([stream, journal_dir], [stream]):
        with pytest.raises(MissingSegmentsError) as raised:
            load_books(sources, threads=threads)
        assert raised.value.gaps == (SegmentGap("books", born, 2, 2),)
        message = str(raised.value)
        assert message.startswith("stream books: segment 2 missing"), message
        assert "allow_gaps=True" in message and "--allow-gaps" in message
    # Asked to: the books around the hole, and the hole said.
    books = load_books([stream, journal_dir], threads=threads, allow_gaps=True)
    assert books.gaps == (SegmentGap("books", born, 2, 2),)
    assert books.sequence.tolist() == [s for s in range(BOOKS) if s not in lost]
    assert books.select(np.arange(3)).gaps == books.gaps


def test_a_hole_in_the_archive_that_tmpfs_fills_is_no_gap(stream: Path, journal_dir: Path) -> None:
    """The compactor could not archive segment 2 (it stays in tmpfs) but archived 3
    and 4: archive and live journal together hold every segment."""
    archive_of(stream, 2).unlink()
    for index in (0, 1):
        segment_path(journal_dir, index).unlink()
    for sources in ([stream, journal_dir], [journal_dir, stream]):
        books = load_books(sources)
        assert books.gaps == ()  # rows in source order: segment 2 comes from tmpfs
        assert sorted(books.sequence.tolist()) == list(range(BOOKS))


def test_several_missing_segments_are_named_together(stream: Path, journal_dir: Path) -> None:
    for index in (1, 2, 4):
        archive_of(stream, index).unlink()
    with pytest.raises(MissingSegmentsError, match=r"segments 1\.\.2 missing; .*segment 4 missing"):
        load_books(stream)


def test_the_oldest_segments_missing_are_no_gap(stream: Path, journal_dir: Path) -> None:
    """A stream's history starting later (the compactor removed the oldest segments,
    or the caller gave only the live journal) is not a hole."""
    first = sequences_of(journal_dir, 2)[0]
    for index in (0, 1):
        segment_path(journal_dir, index).unlink()
        archive_of(stream, index).unlink()
    books = load_books([stream, journal_dir])
    assert books.gaps == () and books.sequence.tolist() == list(range(first, BOOKS))


def test_a_new_incarnation_without_its_first_segments_is_a_gap(
    stream: Path, journal_dir: Path
) -> None:
    """The journal removed and made again (a reboot emptied tmpfs): its new segments 0
    and 1 were neither archived nor kept, segment 2 on are; the old incarnation is
    whole. The books between the two are gone: a gap of the new incarnation."""
    shutil.rmtree(journal_dir)
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(BOOKS):
            writer.append_orderbook(*book(seq))
    born = incarnation(journal_dir)
    for index in (0, 1):
        segment_path(journal_dir, index).unlink()
    with pytest.raises(MissingSegmentsError) as raised:
        load_books([stream, journal_dir])
    assert raised.value.gaps == (SegmentGap("books", born, 0, 1),)


def test_journal_analyze_says_which_segments_are_missing(stream: Path, journal_dir: Path) -> None:
    """Exit 2 and one line naming the stream and segment; --allow-gaps reads around it
    and says so in the summary."""
    archive_of(stream, 3).unlink()
    for index in (0, 1, 2, 3):
        segment_path(journal_dir, index).unlink()
    command = [sys.executable, "-m", "journal.cli", "analyze", str(stream), str(journal_dir)]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.startswith("journal analyze: stream books: segment 3 missing")
    assert len(failed.stderr.splitlines()) == 1 and not failed.stdout
    allowed = subprocess.run([*command, "--allow-gaps"], capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    assert "missing, read around (--allow-gaps): stream books: segment 3 missing" in allowed.stdout


@pytest.mark.slow
def test_journal_export_refuses_or_reads_around_missing_segments(
    stream: Path, journal_dir: Path, shm_dir: Path
) -> None:
    """As analyze; what --allow-gaps read around is said on stderr and kept in the
    metadata (journal.gaps) of the dataset's Parquet files."""
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow (extra 'parquet') is not installed")
    archive_of(stream, 3).unlink()
    for index in (0, 1, 2, 3):
        segment_path(journal_dir, index).unlink()
    out = shm_dir / "dataset"
    command = [sys.executable, "-m", "journal.cli", "export", str(stream), str(journal_dir)]
    command += ["--parquet", str(out)]
    failed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 2 and not out.exists()
    assert failed.stderr.startswith("journal export: stream books: segment 3 missing")
    allowed = subprocess.run([*command, "--allow-gaps"], capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stderr == (
        "journal export: segments missing, read around (--allow-gaps): "
        "stream books: segment 3 missing\n"
    )
    metadata = pq.read_schema(next(out.rglob("*.parquet"))).metadata
    assert json.loads(metadata[b"journal.gaps"]) == ["stream books: segment 3 missing"]
