"""/dev/shm is writable by everyone: the journal never follows a planted symlink,
creates its files private by default, and refuses stream names that escape the root.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal._metrics_layout import WRITER_METRICS_NAME
from tests._procs import book

SEGMENT = 64 * 1024
PRECIOUS = b"not the journal's to touch\n"


@pytest.fixture(params=["dangling", "existing"])
def victim(request: pytest.FixtureRequest, shm_dir: Path) -> Path:
    """Where a planted symlink points: nothing yet, or a file that must not change."""
    path = shm_dir / "victim"
    if request.param == "existing":
        path.write_bytes(PRECIOUS)
        path.chmod(0o644)
    return path


def assert_untouched(victim: Path, kind: str = "file") -> None:
    if kind == "dir":
        assert os.listdir(victim) == [], f"files were created in {victim}"
    elif victim.exists():
        assert victim.read_bytes() == PRECIOUS, f"{victim} was written through the symlink"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    else:
        assert not victim.is_symlink() and not os.path.lexists(victim), f"{victim} created"


def segment_files(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(F.SEGMENT_SUFFIX))


def wait_for(path: Path, timeout: float = 10.0) -> None:
    """The writer prepares its next segment in the background: wait until it exists
    and the hidden name it was built under is gone (linked first, unlinked after)."""
    deadline = time.monotonic() + timeout
    while not path.exists() or any(name.startswith(".") for name in os.listdir(path.parent)):
        assert time.monotonic() < deadline, f"{path} never appeared (or its build never ended)"
        time.sleep(0.005)


def append_until_segment(writer: journal.Writer, index: int, first_seq: int = 0) -> int:
    seq = first_seq
    while writer.position[0] < index:
        writer.append_orderbook(*book(seq))
        seq += 1
    return seq


# -- symlinks -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["dangling", "directory"])
def test_symlinked_journal_directory_is_refused(journal_dir: Path, shm_dir: Path, target: str):
    elsewhere = shm_dir / "elsewhere"
    if target == "directory":
        elsewhere.mkdir()
    journal_dir.symlink_to(elsewhere)
    with pytest.raises(journal.JournalError, match="symlink"):
        journal.Writer(journal_dir, segment_size=SEGMENT)
    if target == "directory":
        assert_untouched(elsewhere, "dir")
    else:
        assert not os.path.lexists(elsewhere)
    assert journal_dir.is_symlink()


def test_symlinked_lock_file_is_refused(journal_dir: Path, victim: Path) -> None:
    journal_dir.mkdir(mode=0o700)
    (journal_dir / F.LOCK_FILE_NAME).symlink_to(victim)
    with pytest.raises(journal.JournalError, match="lock file"):
        journal.Writer(journal_dir, segment_size=SEGMENT)
    assert_untouched(victim)
    assert segment_files(journal_dir) == []  # refused before creating anything


def test_symlinked_first_segment_is_refused(journal_dir: Path, victim: Path) -> None:
    journal_dir.mkdir(mode=0o700)
    (journal_dir / F.segment_name(0)).symlink_to(victim)
    with pytest.raises(journal.JournalError, match="symbolic link"):
        journal.Writer(journal_dir, segment_size=SEGMENT)
    assert_untouched(victim)
    with pytest.raises(journal.JournalError, match="symbolic link"):
        journal.Reader(journal_dir).try_next()


def test_symlink_to_a_real_segment_is_refused(journal_dir: Path, shm_dir: Path) -> None:
    """Even pointing at a valid segment: neither the writer nor a reader follows it."""
    other = shm_dir / "other"
    with journal.Writer(other, segment_size=SEGMENT) as writer:
        for seq in range(5):
            writer.append_orderbook(*book(seq))
    real = other / F.segment_name(0)
    before = real.read_bytes()
    journal_dir.mkdir(mode=0o700)
    (journal_dir / F.segment_name(0)).symlink_to(real)
    with pytest.raises(journal.JournalError, match="symbolic link"):
        journal.Writer(journal_dir, segment_size=SEGMENT)
    with pytest.raises(journal.JournalError, match="symbolic link"):
        journal.Reader(journal_dir).try_next()
    assert real.read_bytes() == before


def test_symlink_where_the_next_segment_goes_is_refused_at_reopen(
    journal_dir: Path, victim: Path
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
    assert segment_files(journal_dir) == [F.segment_name(0)]  # the prepared one removed
    (journal_dir / F.segment_name(1)).symlink_to(victim)
    with pytest.raises(journal.JournalError, match="symbolic link"):
        journal.Writer(journal_dir, segment_size=SEGMENT)
    assert_untouched(victim)
    with journal.Reader(journal_dir) as reader:
        assert [record.sequence for record in reader.available()] == [0]


@pytest.mark.parametrize("name", ["segment", "temporary"])
def test_symlink_planted_while_writing_is_refused_at_the_roll(
    journal_dir: Path, victim: Path, name: str
) -> None:
    """Planted where the segment after next (or its temporary name) will be created."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        wait_for(journal_dir / F.segment_name(1))  # prepared; segment 2 comes at the roll
        planted = F.segment_name(2) if name == "segment" else f".{F.segment_name(2)}.creating"
        (journal_dir / planted).symlink_to(victim)
        seq = append_until_segment(writer, 1)
        with pytest.raises((journal.JournalError, OSError)):
            append_until_segment(writer, 2, seq)
        assert writer.position[0] == 1
    assert_untouched(victim)
    assert (journal_dir / planted).is_symlink()
    # Everything written is intact and readable.
    with journal.Reader(journal_dir) as reader:
        sequences = [record.sequence for record in reader.available()]
    assert sequences == list(range(len(sequences))) and len(sequences) > seq


def test_symlink_at_a_temporary_name_is_removed_not_followed(
    journal_dir: Path, victim: Path
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
    planted = f".{F.segment_name(1)}.creating"
    (journal_dir / planted).symlink_to(victim)
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        assert writer.recovery.removed_unfinished == (planted,)
        wait_for(journal_dir / F.segment_name(1))
        assert not (journal_dir / F.segment_name(1)).is_symlink()
    assert_untouched(victim)


# -- permissions ------------------------------------------------------------------------


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def modes(journal_dir: Path) -> dict[str, int]:
    found = {"<dir>": stat.S_IMODE(os.lstat(journal_dir).st_mode)}
    for name in os.listdir(journal_dir):
        found[name] = stat.S_IMODE(os.lstat(journal_dir / name).st_mode)
    return found


@pytest.mark.parametrize("process_umask", [0o022, 0o000], ids=["umask022", "umask000"])
@pytest.mark.parametrize(
    ("mode", "file_mode", "dir_mode"),
    [(None, 0o600, 0o700), (0o640, 0o640, 0o750), (0o660, 0o660, 0o770)],
    ids=["default", "mode640", "mode660"],
)
def test_file_modes(
    journal_dir: Path, process_umask: int, mode: int | None, file_mode: int, dir_mode: int
) -> None:
    options = {} if mode is None else {"mode": mode}
    with umask(process_umask), journal.Writer(journal_dir, segment_size=SEGMENT, **options) as w:
        append_until_segment(w, 1)
        wait_for(journal_dir / F.segment_name(2))
        found = modes(journal_dir)
    expected = {
        "<dir>": dir_mode,
        F.LOCK_FILE_NAME: file_mode,
        WRITER_METRICS_NAME: file_mode,
        **{F.segment_name(i): file_mode for i in range(3)},
    }
    assert found == expected


def test_requested_mode_is_exact_under_a_strict_umask(journal_dir: Path) -> None:
    """``mode`` is "the permission of the files" (Writer docstring): a service with
    umask 077 that asks for 0o640 so its group can read must get 0o640."""
    with umask(0o077), journal.Writer(journal_dir, segment_size=SEGMENT, mode=0o640) as w:
        w.append_orderbook(*book(0))
        wait_for(journal_dir / F.segment_name(1))
        found = modes(journal_dir)
    expected = {"<dir>": 0o750, F.LOCK_FILE_NAME: 0o640, WRITER_METRICS_NAME: 0o640}
    expected |= {F.segment_name(0): 0o640, F.segment_name(1): 0o640}
    assert found == expected, "Writer(mode=0o640) under umask 077 made " + ", ".join(
        f"{name}: {oct(value)}" for name, value in sorted(found.items())
    )


def test_mode_with_execute_or_special_bits_is_refused(journal_dir: Path) -> None:
    for mode in (0o700, 0o4600, 0o1600, 0o777):
        with pytest.raises(ValueError, match="mode"):
            journal.Writer(journal_dir, segment_size=SEGMENT, mode=mode)
    assert not journal_dir.exists()


# -- stream names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        "a/../../b",
        ".hidden",
        "-dash",
        "_under",
        "trailing\n",
        "nul\0byte",
        "space name",
        "back\\slash",
        "b\u043e\u043eks",  # Cyrillic o's
        "x" * 129,
    ],
)
def test_unsafe_stream_names_are_refused(shm_dir: Path, name: str) -> None:
    with pytest.raises(ValueError, match="stream name"):
        journal.stream_path(shm_dir, name)
    assert os.listdir(shm_dir) == []


@pytest.mark.parametrize("name", [None, b"upbit", 7, ["upbit"]])
def test_non_string_stream_names_are_refused(shm_dir: Path, name: object) -> None:
    with pytest.raises(ValueError, match="stream name"):
        journal.stream_path(shm_dir, name)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["upbit", "binance.spot", "bybit-linear_v5", "A1", "x" * 128])
def test_safe_stream_names_stay_under_the_root(shm_dir: Path, name: str) -> None:
    path = journal.stream_path(shm_dir, name)
    assert path == shm_dir / name
    assert path.parent == shm_dir
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
    assert os.listdir(shm_dir) == [name]
