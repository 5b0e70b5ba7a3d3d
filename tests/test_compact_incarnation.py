"""The compactor while its journal directory is removed and made again (a wiped tmpfs,
an operator's ``rm -r``): the new writer starts a new incarnation at segment 0, and
the compactor, still busy with the old one, must neither remove the new segments
(same names, other files) nor stop archiving the new incarnation.

Real processes and files: ``journal compact`` as a child, its log lines waited on;
a real Writer in /dev/shm."""

from __future__ import annotations

import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

import journal
from journal import _layout as F
from journal._segment import MappedSegment, segment_indices, segment_path
from journal.archive import _archive as A
from tests._compactor import CompactorProcess
from tests._procs import book, check

BIG_SEGMENT = 4 << 20  # ~2 s at zstd level 19: the compactor is slow on purpose
NEW_SEGMENT = 1 << 20  # holds the new writer's books, with room to spare
SMALL_SEGMENT = 64 * 1024
NEW_BOOKS = 1000


def write_incarnation(path: Path, segment_size: int, sealed: int, first_seq: int = 0) -> int:
    """A journal whose segments ``0 .. sealed - 1`` are sealed (the next one open);
    returns the sequence after the last book written."""
    seq = first_seq
    with journal.Writer(path, segment_size=segment_size) as writer:
        while writer.position[0] < sealed:
            writer.append_many([book(s) for s in range(seq, seq + 100)])
            seq += 100
    return seq


def stamp(path: Path, index: int) -> tuple[int, int]:
    """``(created_ns, incarnation_ns)`` in the header of segment ``index`` of ``path``."""
    with MappedSegment(segment_path(path, index)) as segment:
        return segment.header.created_ns, segment.header.incarnation_ns


@pytest.fixture
def temporary_created(shm_dir: Path) -> Iterator[tuple[Path, threading.Event]]:
    """``ARCHIVE/books`` (made here, ours) and an event set by inotify (watchdog) when
    a temporary archive file appears in it: the compactor has begun compressing."""
    directory = shm_dir / "archive" / "books"
    directory.mkdir(parents=True, mode=0o755)
    created = threading.Event()

    class Temporary(FileSystemEventHandler):
        def on_created(self, event: FileSystemEvent) -> None:
            if str(event.src_path).endswith(A.TEMPORARY_SUFFIX):
                created.set()

    observer = Observer()
    observer.schedule(Temporary(), str(directory))
    observer.start()
    try:
        yield directory, created
    finally:
        observer.stop()
        observer.join(timeout=5)


@pytest.mark.slow
@pytest.mark.parametrize("removed", ["directory", "segments"])
def test_a_recreated_journal_keeps_its_segments_while_the_old_one_is_compacted(
    journal_dir: Path,
    shm_dir: Path,
    temporary_created: tuple[Path, threading.Event],
    removed: str,
) -> None:
    """Five big sealed segments, zstd level 19, keep 0. While segment 0 is being
    compressed the journal directory is removed (or only its segment files: the new
    journal is in the same directory) and a new writer writes 1,000 books into the
    new segment 0. When the compactor has archived the old segment 0, the file named
    ``00000000.journal`` is the new one: it must stay, with every book."""
    archive_books, compressing = temporary_created
    write_incarnation(journal_dir, BIG_SEGMENT, sealed=5)
    old_created, old_incarnation = stamp(journal_dir, 0)
    archive = archive_books.parent
    compactor = CompactorProcess(
        journal_dir, "--archive", archive, "--once", "--keep", 0, "--level", 19
    )
    try:
        assert compressing.wait(30), f"no temporary archive file appeared:\n{compactor.log}"
        if removed == "directory":
            shutil.rmtree(journal_dir)
        else:
            for index in segment_indices(journal_dir):
                segment_path(journal_dir, index).unlink()
        with journal.Writer(journal_dir, segment_size=NEW_SEGMENT) as writer:
            for seq in range(NEW_BOOKS):
                writer.append_orderbook(*book(seq))
            assert writer.position[0] == 0
        new_created, new_incarnation = stamp(journal_dir, 0)
        assert new_incarnation == new_created != old_created
        assert A.archive_files(archive_books) == [], (
            "the old segment 0 was archived before the new writer had written: the race "
            f"this test needs did not happen (a faster machine? larger segments)\n{compactor.log}"
        )
        status = compactor.finish(120)
    finally:
        compactor.stop()

    # The new incarnation's segment 0 is untouched, every book in it; no log line
    # claims to have removed a segment (the old ones went with their directory).
    assert not re.search(r"segment \d+ removed from", compactor.log), compactor.log
    assert stamp(journal_dir, 0) == (new_created, new_incarnation)
    with journal.Reader(journal_dir, start="beginning") as reader:
        records = list(reader.available())
    assert [record.sequence for record in records] == list(range(NEW_BOOKS))
    assert not [problem for record in records if (problem := check(record, record.sequence))]
    assert {record.position[0] for record in records} == {0}

    # The old segment 0 (mapped when the directory went) is archived, as itself.
    archives = A.archive_files(archive_books)
    assert len(archives) == 1, compactor.log
    with A.ArchiveReader(archives[0]) as reader:
        assert reader.header.segment_index == 0
        assert reader.header.created_ns == old_created
        assert reader.header.incarnation_ns == old_incarnation
        reader.verify()
    assert A.parse_archive_name(archives[0].name)[1:] == (0, old_created)  # type: ignore[index]
    # Segments 1-4 went before they were archived: said, not hidden. Why segment 0
    # stays: the path names another directory, or another file in the same one.
    assert status == 1, compactor.log
    assert re.search(r"segment 1 of .* removed before it was archived", compactor.log)
    why = "is another directory now" if removed == "directory" else "is another file"
    assert re.search(f"books segment 0 stays: .*{why}", compactor.log), compactor.log


def test_a_watching_compactor_archives_the_new_incarnation_of_a_recreated_journal(
    journal_dir: Path, shm_dir: Path
) -> None:
    """--poll 600: only inotify wakes the compactor. Its watch of the journal directory
    dies with the directory; the new directory (another inode) must be watched again
    so that the new incarnation's sealed segments are archived, apart from the old."""
    archive = shm_dir / "archive"
    old_books = write_incarnation(journal_dir, SMALL_SEGMENT, sealed=3)
    _, old_incarnation = stamp(journal_dir, 0)
    compactor = CompactorProcess(
        journal_dir, "--archive", archive, "--keep", 1, "--poll", 600, "--frame-size", 4096
    )
    try:
        compactor.wait_for(r"books segment 2: .* -> ", 30)
        shutil.rmtree(journal_dir)
        new_books = write_incarnation(journal_dir, SMALL_SEGMENT, sealed=3)
        open_index = segment_indices(journal_dir)[-1]
        _, new_incarnation = stamp(journal_dir, open_index)
        assert new_incarnation != old_incarnation
        # The newest sealed segment stays in tmpfs (keep 1): its name can be known.
        last_created, _ = stamp(journal_dir, open_index - 1)
        last_name = A.archive_name(0, open_index - 1, last_created)[23:]  # past the time
        compactor.wait_for(re.escape(last_name), 30)
        compactor.proc.send_signal(signal.SIGTERM)
        assert compactor.finish(30) == 0, compactor.log
    finally:
        compactor.stop()

    # Each incarnation's archives: its own segments, under their own names.
    by_incarnation: dict[int, dict[int, list[int]]] = {}
    for path in A.archive_files(archive / "books"):
        with A.ArchiveReader(path) as reader:
            header = reader.header
            assert A.parse_archive_name(path.name)[1:] == (  # type: ignore[index]
                header.segment_index,
                header.created_ns,
            )
            sequences = [record.sequence for record in reader.records()]
        by_incarnation.setdefault(header.incarnation_ns, {})[header.segment_index] = sequences
    assert set(by_incarnation) == {old_incarnation, new_incarnation}
    assert sorted(by_incarnation[old_incarnation]) == [0, 1, 2]
    assert sorted(by_incarnation[new_incarnation]) == list(range(open_index))
    # The old incarnation's open segment went with its directory, never sealed.
    old = [seq for index in range(3) for seq in by_incarnation[old_incarnation][index]]
    assert old == list(range(len(old))) and 0 < len(old) < old_books
    # The new one: its sealed segments archived, then its open segment in tmpfs.
    archived = by_incarnation[new_incarnation]
    new = [seq for index in range(open_index) for seq in archived[index]]
    with journal.Reader(journal_dir, start=(open_index, F.HEADER_SIZE)) as reader:
        new += [record.sequence for record in reader.available()]
    assert new == list(range(new_books))
