"""journal.Reader(archive=...) and journal dump --archive: archived and live segments
read as one stream, on real journals in /dev/shm compacted by the real compactor
(journal.archive.compact in-process, tools/compact as a process): every record once, in
order, the same positions as the segments had, from the beginning, a saved
position, a time, and for a live reader that falls behind the compactor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal._segment import segment_indices
from journal.archive import _archive as A
from journal.archive import compact as C
from tests._procs import LOCAL_NS0, book, check
from tests.conftest import REPO

SEGMENT = 64 * 1024  # ~300 books a segment
BOOKS = 3000  # ~10 segments
FRAME = 4096  # several zstd frames a segment


def write(path: Path, first: int, count: int, writer: journal.Writer | None = None) -> None:
    def append(w: journal.Writer) -> None:
        for at in range(first, first + count, 100):
            w.append_many([book(s) for s in range(at, min(at + 100, first + count))])

    if writer is not None:
        append(writer)
        return
    with journal.Writer(path, segment_size=SEGMENT) as new:
        append(new)


def compact_once(journal_dir: Path, archive: Path, keep: int = 1) -> None:
    with C.Compactor([journal_dir], archive, keep=keep, frame_size=FRAME) as compactor:
        report = compactor.run_pass()
    assert report.errors == []


def read_all(path: Path, **kwargs: object) -> list[tuple[tuple[int, int], int]]:
    """``(position, sequence)`` of every record available, each checked."""
    with journal.Reader(path, **kwargs) as reader:  # type: ignore[arg-type]
        result = []
        for record in reader.available():
            assert not check(record, record.sequence), check(record, record.sequence)
            result.append((record.position, record.sequence))
    return result


@pytest.fixture
def compacted(shm_dir: Path) -> tuple[Path, Path, list[tuple[tuple[int, int], int]]]:
    """A journal of BOOKS books compacted with keep 1, its archive root, and what a
    plain reader read from it before compaction (positions and sequences)."""
    journal_dir = shm_dir / "books"
    write(journal_dir, 0, BOOKS)
    reference = read_all(journal_dir)
    assert [seq for _, seq in reference] == list(range(BOOKS))
    archive = shm_dir / "archive"
    compact_once(journal_dir, archive)
    left = segment_indices(journal_dir)
    assert left[0] >= 7, left  # most segments only in the archive now
    archived = {A.parse_archive_name(p.name)[1] for p in A.archive_files(archive / "books")}  # type: ignore[index]
    assert set(range(left[0])) <= archived
    return journal_dir, archive, reference


def test_beginning_reads_every_record_once_across_the_boundary(compacted) -> None:  # type: ignore[no-untyped-def]
    journal_dir, archive, reference = compacted
    assert read_all(journal_dir, archive=archive) == reference
    # Without the archive, the oldest segment left in tmpfs is the beginning.
    first = segment_indices(journal_dir)[0]
    assert read_all(journal_dir) == [item for item in reference if item[0][0] >= first]


def test_saved_positions_resume_exactly_on_either_side(compacted) -> None:  # type: ignore[no-untyped-def]
    journal_dir, archive, reference = compacted
    first_live = segment_indices(journal_dir)[0]
    archived = [k for k, (pos, _) in enumerate(reference) if pos[0] == 2]
    live = [k for k, (pos, _) in enumerate(reference) if pos[0] == first_live]
    for k in (0, archived[0], archived[len(archived) // 2], archived[-1], live[5]):
        got = read_all(journal_dir, start=reference[k][0], archive=archive)
        assert got == reference[k:], k

    # The reader's own position after the last book of an archived segment (its end
    # marker), and the segment's commit offset, both mean the next segment's first.
    with journal.Reader(journal_dir, archive=archive) as reader:
        records = reader.available()
        for _ in range(archived[-1] + 1):
            next(records)
        saved = reader.position
        assert saved is not None and saved[0] == 2 and saved[1] > reference[archived[-1]][0][1]
        rest = [(r.position, r.sequence) for r in records]
    assert rest == reference[archived[-1] + 1 :]
    assert read_all(journal_dir, start=saved, archive=archive) == rest
    commit = (2, saved[1] + F.END_MARKER_SIZE)
    assert read_all(journal_dir, start=commit, archive=archive) == rest

    inside = (2, reference[archived[3]][0][1] + 8)
    with pytest.raises(journal.JournalError, match="not a record boundary"):
        journal.Reader(journal_dir, start=inside, archive=archive)
    with pytest.raises(journal.JournalError, match="older segments are in the archive"):
        journal.Reader(journal_dir, start=reference[archived[0]][0])


def test_a_time_start_reads_only_the_frames_it_needs(compacted) -> None:  # type: ignore[no-untyped-def]
    journal_dir, archive, reference = compacted
    k = [k for k, (pos, _) in enumerate(reference) if pos[0] == 3][200]
    seq = reference[k][1]
    with journal.Reader(journal_dir, start=LOCAL_NS0 + seq * 1000, archive=archive) as reader:
        first = reader.try_next()
        assert first is not None and first.sequence == seq
        frames = reader._archive
        assert frames is not None and 0 < frames.frames_decompressed < len(frames.frames)
        rest = [(r.position, r.sequence) for r in reader.available()]
    assert [(first.position, first.sequence), *rest] == reference[k:]
    # Between two books: the next one; before everything: the very first book.
    assert (
        read_all(journal_dir, start=LOCAL_NS0 + seq * 1000 + 1, archive=archive)
        == (reference[k + 1 :])
    )
    assert read_all(journal_dir, start=LOCAL_NS0 - 1, archive=archive) == reference
    # A time in the segments still in tmpfs needs no archive at all.
    live = [k for k, (pos, _) in enumerate(reference) if pos[0] == segment_indices(journal_dir)[0]]
    t = LOCAL_NS0 + reference[live[10]][1] * 1000
    assert read_all(journal_dir, start=t, archive=archive) == reference[live[10] :]


def test_a_missing_archived_segment_is_an_error_naming_it(compacted) -> None:  # type: ignore[no-untyped-def]
    journal_dir, archive, reference = compacted
    (gone,) = [p for p in A.archive_files(archive / "books") if "-00000004-" in p.name]
    gone.unlink()
    seen = []
    gap = r"segment 00000004\.\w+ is neither in"
    with (
        journal.Reader(journal_dir, archive=archive) as reader,
        pytest.raises(journal.JournalError, match=gap),
    ):
        for record in reader.available():
            seen.append(record.sequence)
    assert seen == [seq for pos, seq in reference if pos[0] < 4]
    start_in_gap = next(pos for pos, _ in reference if pos[0] == 4)
    with pytest.raises(journal.JournalError, match="00000004"):
        journal.Reader(journal_dir, start=start_in_gap, archive=archive)


@pytest.mark.slow
def test_a_live_reader_that_falls_behind_continues_from_the_archive(shm_dir: Path) -> None:
    """A reader started before any compaction reads slowly while a writer appends and
    tools/compact --once --keep 1 runs between its reads: segments it has not read
    yet vanish from tmpfs, and it reads them from the archive, then live again."""
    journal_dir = shm_dir / "books"
    archive = shm_dir / "archive"
    sequences: list[int] = []
    from_archive = 0
    written = 0
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write(journal_dir, 0, 200, writer)
        written = 200
        with journal.Reader(journal_dir, archive=archive, verify=True) as reader:
            for _ in range(6):
                for _ in range(150):  # reads slower than the writer writes
                    record = reader.try_next()
                    assert record is not None
                    assert not check(record, record.sequence)
                    sequences.append(record.sequence)
                    from_archive += reader._archive is not None
                write(journal_dir, written, 1000, writer)  # > 3 segments
                written += 1000
                done = subprocess.run(
                    [
                        *(sys.executable, str(REPO / "tools" / "compact"), journal_dir),
                        *("--archive", archive, "--once", "--keep", "1", "--frame-size", "4096"),
                    ],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, done.stderr
                assert segment_indices(journal_dir)[0] > reader.position[0] + 1  # type: ignore[index]
            for record in reader.available():
                assert not check(record, record.sequence)
                sequences.append(record.sequence)
            assert reader._archive is None  # back on the mapped live segment
            # Following live: a book written now is read at once, from tmpfs.
            writer.append_orderbook(*book(written))
            record = reader.poll(5.0)
            assert record is not None and record.sequence == written
            sequences.append(written)
    assert from_archive > 0
    assert sequences == list(range(written + 1))


def test_without_archive_a_reader_that_fell_behind_says_so(shm_dir: Path) -> None:
    journal_dir = shm_dir / "books"
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write(journal_dir, 0, 100, writer)
        with journal.Reader(journal_dir) as reader:
            assert reader.try_next() is not None
            write(journal_dir, 100, 1500, writer)
            compact_once(journal_dir, shm_dir / "archive")
            with pytest.raises(journal.JournalError, match=r"fell behind.*--archive DIR"):
                list(reader.available())


@pytest.mark.slow
def test_dump_archive_prints_the_same_records(compacted) -> None:  # type: ignore[no-untyped-def]
    journal_dir, archive, reference = compacted

    def dump(*args: object) -> list[dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "journal.cli", "dump", str(journal_dir), *map(str, args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    lines = dump("--archive", archive)
    with journal.Reader(journal_dir, archive=archive) as reader:
        expected = [json.loads(json.dumps(r.to_dict())) for r in reader.available()]
    assert lines == expected
    assert [(tuple(line["position"]), line["sequence"]) for line in lines] == reference
    k = len(reference) // 3
    segment, offset = reference[k][0]
    assert (
        dump("--archive", archive, "--from", f"{segment}:{offset}", "--limit", 5)
        == (expected[k : k + 5])
    )


def test_an_archive_root_without_this_stream_changes_nothing(shm_dir: Path) -> None:
    journal_dir = shm_dir / "books"
    write(journal_dir, 0, 500)
    other = shm_dir / "archive"
    (other / "books").mkdir(parents=True)
    assert read_all(journal_dir, archive=other) == read_all(journal_dir)
    shutil.rmtree(other)
    assert read_all(journal_dir, archive=other) == read_all(journal_dir)


def dump_lines(journal_dir: Path, *args: object) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "journal.cli", "dump", str(journal_dir), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def archived_part(
    reference: list[tuple[tuple[int, int], int]], journal_dir: Path
) -> list[tuple[tuple[int, int], int]]:
    """The books of ``reference`` in sealed segments (the compactor archives those; the
    open segment is never archived, so tmpfs lost takes it along)."""
    open_index = segment_indices(journal_dir)[-1]
    return [item for item in reference if item[0][0] < open_index]


def test_a_journal_lost_with_tmpfs_is_read_from_its_archive_then_followed(
    shm_dir: Path,
) -> None:
    """After a reboot (the journal directory gone from tmpfs), a reader with the archive
    reads every archived book from any start; one left waiting follows the writer
    that starts the journal again, from its segment 0."""
    journal_dir = shm_dir / "books"
    archive = shm_dir / "archive"
    write(journal_dir, 0, 1000)
    reference = read_all(journal_dir)
    compact_once(journal_dir, archive, keep=0)
    archived = archived_part(reference, journal_dir)
    assert len(archived) > 600 and archived == reference[: len(archived)]
    shutil.rmtree(journal_dir)  # tmpfs emptied

    assert read_all(journal_dir, archive=archive) == archived
    assert read_all(journal_dir) == []  # without the archive: nothing yet, no error
    k = len(archived) // 2
    assert read_all(journal_dir, start=archived[k][0], archive=archive) == archived[k:]
    t = LOCAL_NS0 + archived[k][1] * 1000
    assert read_all(journal_dir, start=t, archive=archive) == archived[k:]
    lines = dump_lines(journal_dir, "--archive", archive)
    assert [(tuple(line["position"]), line["sequence"]) for line in lines] == archived

    with (
        journal.Reader(journal_dir, archive=archive) as waiting,
        journal.Reader(journal_dir, start="end", archive=archive) as from_now,
    ):
        assert [(r.position, r.sequence) for r in waiting.available()] == archived
        assert waiting.try_next() is None and from_now.try_next() is None
        write(journal_dir, 5000, 50)  # a new writer: segment 0 again
        record = waiting.poll(5.0)
        assert record is not None
        assert (record.position, record.sequence) == ((0, F.HEADER_SIZE), 5000)
        assert [r.sequence for r in waiting.available()] == list(range(5001, 5050))
        assert [r.sequence for r in from_now.available()] == list(range(5000, 5050))


def test_two_incarnations_of_a_journal_are_both_archived_and_read_in_order(
    shm_dir: Path,
) -> None:
    """A journal deleted and written again, from segment 0, with the very same books:
    same indices, same first record times. The compactor keeps both incarnations'
    archives (never taking the old one for the new segment); a reader reads the old
    incarnation's books, then the new one's; positions name the newest incarnation."""
    journal_dir = shm_dir / "books"
    archive = shm_dir / "archive"
    write(journal_dir, 0, 1000)
    first = read_all(journal_dir)
    compact_once(journal_dir, archive, keep=0)
    first_archived = archived_part(first, journal_dir)
    old_names = {p.name for p in A.archive_files(archive / "books")}
    shutil.rmtree(journal_dir)

    write(journal_dir, 0, 1000)
    second = read_all(journal_dir)
    assert second == first
    compact_once(journal_dir, archive, keep=1)
    files = A.archive_files(archive / "books")
    assert old_names < {p.name for p in files}
    assert len(files) == 2 * len(old_names)
    for path in files:
        with A.ArchiveReader(path) as reader:
            name = A.parse_archive_name(path.name)
            assert name is not None
            assert (name.segment_index, name.created_ns) == (
                reader.header.segment_index,
                reader.header.created_ns,
            )

    assert read_all(journal_dir, archive=archive) == first_archived + second
    k = len(second) // 2
    assert read_all(journal_dir, start=second[k][0], archive=archive) == second[k:]
    assert [
        (tuple(line["position"]), line["sequence"])
        for line in dump_lines(journal_dir, "--archive", archive)
    ] == first_archived + second
