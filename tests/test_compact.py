"""The compactor, run as a real process (tools/compact, journal compact) on real
journals in /dev/shm: once and watch modes, keep K, idempotent re-runs, the open
segment left alone, SIGKILL at every step, and a full archive disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal._segment import MappedSegment, segment_indices, segment_path
from journal.archive import _archive as A
from journal.archive import compact as C
from tests._procs import LOCAL_NS0, book, check, wait_until
from tests._users import NOBODY, as_nobody, shared_directory
from tests.conftest import REPO, SHM, mounted_tmpfs
from tests.test_file_safety import wait_for

SEGMENT = 64 * 1024
BOOKS = 2200  # ~7 sealed segments of 64 KiB and an open one
FRAME = "4096"  # small zstd frames, so a segment has several


def compact(
    *args: object, crash_at: str | None = None, via: str = "tools", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the compactor to completion (or its death) as a child process."""
    env = dict(os.environ)
    env.pop(C.CRASH_ENV, None)
    if crash_at:
        env[C.CRASH_ENV] = crash_at
    command = (
        [sys.executable, str(REPO / "tools" / "compact")]
        if via == "tools"
        else [sys.executable, "-m", "journal.cli", "compact"]
    )
    return subprocess.run(
        [*command, *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def inotify_watched(pid: int) -> set[int]:
    """The inodes process ``pid`` watches with inotify (watchdog's observer), from
    /proc/PID/fdinfo: a watch is there once ``observer.schedule`` has returned."""
    watched = set()
    with contextlib.suppress(FileNotFoundError):  # the process or an fd went meanwhile
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            with contextlib.suppress(FileNotFoundError):
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                    if line.startswith("inotify wd:"):
                        fields = dict(field.split(":", 1) for field in line.split()[1:])
                        watched.add(int(fields["ino"], 16))
    return watched


def start_compact(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "compact"), *map(str, args)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_journal(path: Path, count: int = BOOKS) -> None:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        for first in range(0, count, 100):
            writer.append_many([book(s) for s in range(first, min(first + 100, count))])


def sealed(path: Path) -> list[int]:
    result = []
    for index in segment_indices(path):
        with MappedSegment(segment_path(path, index)) as segment:
            if segment.is_sealed():
                result.append(index)
    return result


def committed(path: Path, index: int) -> bytes:
    with MappedSegment(segment_path(path, index)) as segment:
        commit = segment.load_commit_acquire()
        return A.committed_header(segment.map) + bytes(segment.map[F.HEADER_SIZE : commit])


def files(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` but the lock, with its bytes."""
    if not directory.is_dir():
        return {}
    return {
        name: (directory / name).read_bytes()
        for name in sorted(os.listdir(directory))
        if name != C.LOCK_NAME
    }


def every_book(journal_dir: Path, archive_dir: Path) -> list[int]:
    """Sequences of all books, from the archives of the segments gone from tmpfs and
    from the segments still there, each book checked against what was written."""
    in_tmpfs = set(segment_indices(journal_dir))
    by_segment: dict[int, list[int]] = {}
    for path in A.archive_files(archive_dir):
        index = A.parse_archive_name(path.name)[1]  # type: ignore[index]
        if index in in_tmpfs:
            continue
        with A.ArchiveReader(path) as reader:
            assert reader.header.segment_index == index
            assert index not in by_segment, f"two archives of segment {index}"
            by_segment[index] = []
            for record in reader.records():
                assert not check(record, record.sequence), check(record, record.sequence)
                by_segment[index].append(record.sequence)
    with journal.Reader(journal_dir, start="beginning") as reader:
        for record in reader.available():
            assert not check(record, record.sequence)
            by_segment.setdefault(record.position[0], []).append(record.sequence)
    return [seq for index in sorted(by_segment) for seq in by_segment[index]]


@pytest.fixture(scope="module")
def module_shm() -> Iterator[Path]:
    path = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def template(module_shm: Path) -> Path:
    """A closed journal: sealed segments and the last one open (never sealed)."""
    path = module_shm / "template" / "books"
    write_journal(path)
    assert len(sealed(path)) >= 6
    return path


@pytest.fixture(scope="module")
def reference(module_shm: Path, template: Path) -> tuple[dict[str, bytes], list[int]]:
    """What one uninterrupted run (keep 1) leaves: archive files, segment indices."""
    journal_dir = module_shm / "reference" / "books"
    shutil.copytree(template, journal_dir)
    archive = module_shm / "reference-archive"
    done = compact(journal_dir, "--archive", archive, "--once", "--keep", 1, "--frame-size", FRAME)
    assert done.returncode == 0, done.stderr
    return files(archive / "books"), segment_indices(journal_dir)


@pytest.fixture
def books(shm_dir: Path, template: Path) -> Path:
    """A fresh copy of the template journal, byte for byte."""
    path = shm_dir / "books"
    shutil.copytree(template, path)
    return path


# -- once mode ----------------------------------------------------------------------------


@pytest.mark.parametrize(("keep", "via"), [(0, "tools"), (2, "cli"), (3, "tools")])
def test_once_archives_every_sealed_segment_and_keeps_k(
    books: Path, shm_dir: Path, keep: int, via: str
) -> None:
    archive = shm_dir / "archive"
    segments = sealed(books)
    open_index = segment_indices(books)[-1]
    originals = {index: committed(books, index) for index in segments}
    done = compact(
        books, "--archive", archive, "--once", "--keep", keep, "--frame-size", FRAME, via=via
    )
    assert done.returncode == 0, done.stderr

    archives = A.archive_files(archive / "books")
    assert [A.parse_archive_name(p.name)[1] for p in archives] == segments  # type: ignore[index]
    for path in archives:
        with A.ArchiveReader(path) as reader:
            assert reader.segment_bytes() == originals[reader.header.segment_index]
    kept = segments[len(segments) - keep :] if keep else []
    assert segment_indices(books) == [*kept, open_index]
    assert every_book(books, archive / "books") == list(range(BOOKS))

    # Progress and what was done, in the log.
    assert f"[1/{len(segments)}]" in done.stderr
    assert f"[{len(segments)}/{len(segments)}]" in done.stderr
    assert f"archived {len(segments)} segments" in done.stderr
    assert done.stderr.count("removed from") == len(segments) - len(kept)
    assert not [name for name in os.listdir(archive / "books") if name.endswith(".tmp")]


@pytest.mark.slow
def test_reruns_are_idempotent(books: Path, shm_dir: Path) -> None:
    archive = shm_dir / "archive"
    first = compact(books, "--archive", archive, "--once", "--keep", 4, "--frame-size", FRAME)
    assert first.returncode == 0, first.stderr
    made = files(archive / "books")
    inodes = {name: os.stat(archive / "books" / name).st_ino for name in made}

    # Nothing new: the archives of the segments still in tmpfs are verified, not rewritten.
    again = compact(books, "--archive", archive, "--once", "--keep", 4, "--frame-size", FRAME)
    assert again.returncode == 0, again.stderr
    assert files(archive / "books") == made
    assert {name: os.stat(archive / "books" / name).st_ino for name in made} == inodes
    assert again.stderr.count("already archived") == 4
    assert "removed from" not in again.stderr

    # Fewer kept: segments go, archives stay as they are.
    fewer = compact(books, "--archive", archive, "--once", "--keep", 1, "--frame-size", FRAME)
    assert fewer.returncode == 0, fewer.stderr
    assert files(archive / "books") == made
    assert fewer.stderr.count("removed from") == 3
    assert every_book(books, archive / "books") == list(range(BOOKS))


def test_an_archive_that_differs_is_never_replaced_and_keeps_its_segment(
    books: Path, shm_dir: Path
) -> None:
    archive = shm_dir / "archive"
    done = compact(books, "--archive", archive, "--once", "--keep", 10, "--frame-size", FRAME)
    assert done.returncode == 0, done.stderr
    third = A.archive_files(archive / "books")[2]
    damaged = bytearray(third.read_bytes())
    damaged[A.ARCHIVE_HEADER_SIZE + 40] ^= 0xFF
    third.write_bytes(damaged)

    again = compact(books, "--archive", archive, "--once", "--keep", 0, "--frame-size", FRAME)
    assert again.returncode == 1
    assert "does not reproduce" in again.stderr and str(third) in again.stderr
    assert third.read_bytes() == damaged
    # Segments 0 and 1 went; 2 has no good archive, so it and all after it stay.
    assert segment_indices(books)[0] == 2
    assert every_book(books, archive / "books") == list(range(BOOKS))


def test_the_open_segment_is_never_touched(journal_dir: Path, shm_dir: Path) -> None:
    archive = shm_dir / "archive"
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(1500):
            writer.append_orderbook(*book(seq))
        open_index = writer.position[0]
        # The writer prepares segment open_index + 1 in the background: until it is done.
        wait_for(segment_path(journal_dir, open_index + 1))
        assert segment_indices(journal_dir)[-2:] == [open_index, open_index + 1]
        before = {
            index: segment_path(journal_dir, index).read_bytes()
            for index in (open_index, open_index + 1)
        }
        done = compact(
            journal_dir, "--archive", archive, "--once", "--keep", 0, "--frame-size", FRAME
        )
        assert done.returncode == 0, done.stderr
        assert segment_indices(journal_dir) == [open_index, open_index + 1]
        for index, data in before.items():
            assert segment_path(journal_dir, index).read_bytes() == data
        archived = [A.parse_archive_name(p.name)[1] for p in A.archive_files(archive / "books")]  # type: ignore[index]
        assert archived == list(range(open_index))
        for seq in range(1500, 2000):  # the writer goes on, into the next segment too
            writer.append_orderbook(*book(seq))
    assert every_book(journal_dir, archive / "books") == list(range(2000))


def test_a_recreated_journal_is_not_mistaken_for_the_archived_one(
    journal_dir: Path, shm_dir: Path
) -> None:
    """A long-running compactor (keep 2) has verified the archives of the two newest
    sealed segments. The journal is deleted and written again, later: its segments
    have the same indices. When one of them cannot be archived, it must stay in
    tmpfs, whatever the compactor remembers of the old segment of that index."""
    archive = shm_dir / "archive"
    write_journal(journal_dir, 2200)
    with C.Compactor([journal_dir], archive, keep=2, frame_size=4096) as compactor:
        first = compactor.run_pass()
        assert first.errors == [] and first.archived == first.removed + 2 >= 6
        remembered = sorted(segment.index for segment in compactor.streams[0].archived)
        assert len(remembered) == 2

        shutil.rmtree(journal_dir)
        later = 10**12
        with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
            seq = 0
            while writer.position[0] <= remembered[-1] + 3:
                writer.append_orderbook(*book(seq, LOCAL_NS0 + later + 1000 * seq))
                seq += 1
        # The archive name of the new segment with the first remembered index is taken.
        with MappedSegment(segment_path(journal_dir, remembered[0])) as segment:
            name = A.archive_name_for(segment, segment.load_commit_acquire())
        (archive / "books" / name).write_bytes(b"not this segment's archive")

        second = compactor.run_pass()
        assert len(second.errors) == 1 and "does not reproduce" in second.errors[0]
        assert segment_indices(journal_dir)[0] == remembered[0]
        assert second.removed == remembered[0]


# -- crashes ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("step", C.CRASH_STEPS)
def test_killed_at_any_step_loses_nothing_and_makes_the_same_archives(
    books: Path, shm_dir: Path, reference: tuple[dict[str, bytes], list[int]], step: str
) -> None:
    archive = shm_dir / "archive"
    args = (books, "--archive", archive, "--once", "--keep", 1, "--frame-size", FRAME)
    expected_files, expected_segments = reference
    crashed = compact(*args, crash_at=step)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    # What a crash leaves: never a half-written file under an archive's name.
    left = files(archive / "books")
    temporaries = [name for name in left if name.endswith(A.TEMPORARY_SUFFIX)]
    finals = [name for name in left if A.parse_archive_name(name)]
    assert set(left) == {*temporaries, *finals}
    for name in finals:
        assert left[name] == expected_files[name], f"{name} after a crash at {step}"
    first_archive = min(expected_files)
    if step in ("compressing", "written", "before-rename"):
        assert temporaries == [f".{first_archive}{A.TEMPORARY_SUFFIX}"]
        assert finals == []
    else:
        assert temporaries == []
        assert finals == [first_archive]
    assert (0 in segment_indices(books)) == (step != "removed")

    rerun = compact(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert files(archive / "books") == expected_files
    assert segment_indices(books) == expected_segments
    assert every_book(books, archive / "books") == list(range(BOOKS))
    if temporaries:
        assert "left by an interrupted compactor" in rerun.stderr


@pytest.mark.slow
@pytest.mark.parametrize("after", ["[1/", "[4/", "removed from"])
def test_killed_mid_backlog_then_rerun(
    books: Path, shm_dir: Path, reference: tuple[dict[str, bytes], list[int]], after: str
) -> None:
    """SIGKILL from outside as soon as the log shows ``after``: wherever it then is."""
    archive = shm_dir / "archive"
    args = (books, "--archive", archive, "--once", "--keep", 1, "--frame-size", FRAME)
    child = start_compact(*args)
    assert child.stderr is not None
    for line in child.stderr:
        if after in line:
            child.kill()
            break
    child.communicate()
    assert child.returncode in (0, -signal.SIGKILL)
    rerun = compact(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert (files(archive / "books"), segment_indices(books)) == reference
    assert every_book(books, archive / "books") == list(range(BOOKS))


# -- watch mode ---------------------------------------------------------------------------


def test_watch_mode_archives_a_live_writer_and_stops_on_sigterm(
    journal_dir: Path, shm_dir: Path
) -> None:
    """--poll 30: after its first pass (made before the journal exists), only
    watchdog's events (the journal directory, new segment files) wake the compactor."""
    archive = shm_dir / "archive"
    child = start_compact(
        journal_dir, "--archive", archive, "--keep", 1, "--poll", 30, "--frame-size", FRAME
    )
    try:
        assert child.stderr is not None
        assert "watching" in child.stderr.readline()
        # Its watch on the journal's parent is set before its first pass: from then on
        # the journal directory made below wakes it (the first pass finds nothing).
        parent = shm_dir.stat().st_ino
        wait_until(
            lambda: child.poll() is None and parent in inotify_watched(child.pid),
            20,
            f"the compactor to watch {shm_dir}",
        )
        assert not journal_dir.exists()
        seq = 0
        with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
            deadline = time.monotonic() + 20
            while writer.position[0] < 6:
                for _ in range(50):
                    writer.append_orderbook(*book(seq))
                    seq += 1
                time.sleep(0.01)  # a writer that pauses between bursts, not a wait
                assert time.monotonic() < deadline
            # All sealed segments archived, all but the newest sealed one removed.
            open_index = writer.position[0]
            while not (
                len(A.archive_files(archive / "books")) == open_index
                and segment_indices(journal_dir)[0] == open_index - 1
            ):
                assert time.monotonic() < deadline, (
                    f"archives: {A.archive_files(archive / 'books')}, "
                    f"segments: {segment_indices(journal_dir)}"
                )
                time.sleep(0.05)

            # One compactor per stream.
            second = compact(journal_dir, "--archive", archive, "--once")
            assert second.returncode == 2
            assert "another compactor" in second.stderr

            child.send_signal(signal.SIGTERM)
            _, stderr = child.communicate(timeout=10)
            assert child.returncode == 0, stderr
            assert "SIGTERM: stopping" in stderr and stderr.rstrip().endswith("stopped")
            assert every_book(journal_dir, archive / "books") == list(range(seq))
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


@pytest.mark.slow
def test_sigint_while_compressing_leaves_no_temporary_file(shm_dir: Path, module_shm: Path) -> None:
    """A larger segment and tiny frames: SIGINT lands while it is being compressed."""
    journal_dir = shm_dir / "big"
    with journal.Writer(journal_dir, segment_size=4 << 20) as writer:
        for first in range(0, 54_000, 500):
            writer.append_many([book(s) for s in range(first, first + 500)])
    assert sealed(journal_dir) == [0, 1]
    archive = shm_dir / "archive"
    child = start_compact(journal_dir, "--archive", archive, "--level", 19, "--frame-size", 1024)
    try:
        deadline = time.monotonic() + 20
        while not (archive / "big").is_dir() or not any(
            name.endswith(".tmp") for name in os.listdir(archive / "big")
        ):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.005)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=10)
        assert child.returncode == 0, stderr
        assert "SIGINT: stopping" in stderr
        assert all(A.parse_archive_name(name) for name in files(archive / "big"))
        assert segment_indices(journal_dir) == [0, 1, 2]
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


# -- a full archive disk ------------------------------------------------------------------


@pytest.fixture
def tiny_archive_disk(shm_dir: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs mounted under ``shm_dir``, unmounted afterwards."""
    with mounted_tmpfs(shm_dir / "archive-disk", "256k") as mountpoint:
        yield mountpoint


def test_archive_disk_full_keeps_the_segments_and_says_so(
    books: Path, tiny_archive_disk: Path
) -> None:
    filler = tiny_archive_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\xff" * 4096)
    finally:
        os.close(fd)
    before = {index: committed(books, index) for index in segment_indices(books)}
    args = (books, "--archive", tiny_archive_disk, "--once", "--keep", 1, "--frame-size", FRAME)

    full = compact(*args)
    assert full.returncode == 1, full.stderr
    assert "no room in the archive" in full.stderr
    assert "the segment stays in tmpfs" in full.stderr
    assert full.stderr.count("no room") == 1  # the rest of the stream waits for room
    assert {index: committed(books, index) for index in segment_indices(books)} == before
    assert files(tiny_archive_disk / "books") == {}

    filler.unlink()
    room = compact(*args)
    assert room.returncode == 0, room.stderr
    assert len(segment_indices(books)) == 2
    assert every_book(books, tiny_archive_disk / "books") == list(range(BOOKS))


# -- paths another user controls ---------------------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "directory"])
def test_an_archive_directory_planted_by_another_user_is_refused(
    books: Path, shm_dir: Path, planted: str
) -> None:
    """ARCHIVE is world-writable (root's, 1777, as /dev/shm): nobody plants
    ARCHIVE/books, a link to a victim directory or a directory of its own."""
    archive = shared_directory(shm_dir)
    victim = shm_dir / "victim"
    victim.mkdir(mode=0o700)
    if planted == "symlink":
        as_nobody("ln", "-s", victim, archive / "books")
        expected = f"{archive / 'books'} is a symlink (to {victim})"
    else:
        as_nobody("mkdir", "-m", "0777", archive / "books")
        expected = f"{archive / 'books'} is owned by uid={NOBODY} (mode 0777), not by this user"
    before = {index: committed(books, index) for index in segment_indices(books)}

    done = compact(books, "--archive", archive, "--once", "--keep", 0, "--frame-size", FRAME)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert os.listdir(victim) == []
    assert {index: committed(books, index) for index in segment_indices(books)} == before
    if planted == "directory":
        assert os.listdir(archive / "books") == []


def test_a_journal_under_a_parent_of_another_user_is_neither_archived_nor_touched(
    books: Path, shm_dir: Path
) -> None:
    """The journal's parent is nobody's (0777): nobody could swap the journal for
    one of its own, so the compactor reads nothing there and removes nothing."""
    shared = shared_directory(shm_dir)
    parent = shared / "attacker-parent"
    as_nobody("mkdir", "-m", "0777", parent)
    journal_dir = parent / "books"
    books.rename(journal_dir)
    before = {index: committed(journal_dir, index) for index in segment_indices(journal_dir)}
    archive = shm_dir / "archive"

    done = compact(journal_dir, "--archive", archive, "--once", "--keep", 0)
    assert done.returncode == 1, done.stderr
    assert f"refusing {parent}: owned by uid={NOBODY} (mode 0777)" in done.stderr
    assert "neither archived nor removed" in done.stderr
    assert files(archive / "books") == {}
    assert {index: committed(journal_dir, index) for index in segment_indices(journal_dir)} == (
        before
    )


# -- the command --------------------------------------------------------------------------


@pytest.mark.slow
def test_bad_arguments_exit_2(books: Path, shm_dir: Path) -> None:
    other = shm_dir / "elsewhere" / "books"
    other.mkdir(parents=True)
    twice = compact(books, other, "--archive", shm_dir / "a", "--once")
    assert twice.returncode == 2 and "distinct names" in twice.stderr
    inside = compact(books, "--archive", shm_dir, "--once")
    assert inside.returncode == 2 and "journal directory itself" in inside.stderr
    negative = compact(books, "--archive", shm_dir / "a", "--keep", "-1")
    assert negative.returncode == 2 and "must be >= 0" in negative.stderr
    assert compact(books, "--once").returncode == 2  # --archive is required


def test_tools_compact_runs_as_a_script_with_any_python3() -> None:
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH")
    done = subprocess.run(
        [str(REPO / "tools" / "compact"), "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "--archive DIR" in done.stdout and "--keep K" in done.stdout


def test_a_journal_that_does_not_exist_is_refused_once_and_nothing_created(
    shm_dir: Path,
) -> None:
    archive = shm_dir / "archive"
    done = compact(shm_dir / "missing", "--archive", archive, "--once", via="journal")
    assert done.returncode == 2
    assert f"journal {shm_dir / 'missing'} does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert not archive.exists(), "an archive directory was made for a typo"
    (shm_dir / "a-file").write_text("")
    done = compact(shm_dir / "a-file", "--archive", archive, "--once")
    assert done.returncode == 2 and "is not a directory" in done.stderr
    assert not archive.exists()


def test_verbose_says_why_a_segment_is_not_archived(journal_dir: Path, shm_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
    done = compact(journal_dir, "--archive", shm_dir / "archive", "--once", "-v")
    assert done.returncode == 0, done.stderr
    assert "books segment 0: skipped, not sealed" in done.stderr
    assert "close(seal=True)" in done.stderr


def test_an_open_segment_before_a_sealed_one_is_reported_as_damage(
    journal_dir: Path, shm_dir: Path
) -> None:
    """Segment 1's commit lowered: it reads as open, yet segment 2 after it is sealed.
    The compactor says so and exits 1, instead of archiving around a hidden hole."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        positions = []
        while writer.position[0] < 4:
            positions.append(writer.append_orderbook(*book(len(positions))))
    cut = next(offset for segment, offset in positions if segment == 1)
    with segment_path(journal_dir, 1).open("r+b") as file:
        file.seek(F.COMMIT_OFFSET_OFFSET)
        file.write(cut.to_bytes(8, "little"))
    done = compact(journal_dir, "--archive", shm_dir / "archive", "--once", "--keep", 0)
    assert done.returncode == 1, done.stderr
    assert "segment 1 of" in done.stderr and "is not sealed but segment 2" in done.stderr
    assert 1 in segment_indices(journal_dir), "the damaged segment must stay"
