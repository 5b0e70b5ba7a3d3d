"""A full tmpfs is a clean JournalFullError, never a SIGBUS, and loses nothing.

Each test mounts its own 512 KiB tmpfs (we run as root; skipped if mounting is not
permitted) and writes 64 KiB segments into it from a child process, so that a
SIGBUS would show as the child's exit status instead of killing pytest.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from tests._procs import Children, book, check
from tests.conftest import mounted_tmpfs

SEGMENT = 64 * 1024


@pytest.fixture
def tiny_tmpfs(shm_dir: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted under ``shm_dir``, unmounted afterwards."""
    with mounted_tmpfs(shm_dir / "tiny", "512k") as mountpoint:
        yield mountpoint


def read_everything(path: Path, first_seq: int | None = 0) -> list[tuple[int, tuple[int, int]]]:
    """(sequence, position) of every committed book, each verified and checked as it
    is read to be consecutive from ``first_seq`` (None: from whichever comes first)."""
    books = []
    with journal.Reader(path, start="beginning", verify=True) as reader:
        for record in reader.available():
            if first_seq is None:
                first_seq = record.sequence
            problem = check(record, first_seq + len(books))
            assert not problem, problem
            books.append((record.sequence, record.position))
    assert books
    return books


def segment_names(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if name.endswith(F.SEGMENT_SUFFIX))


@pytest.mark.parametrize("how", ["single", "batch"])
def test_full_tmpfs_is_a_clean_error_and_the_journal_stays_readable(
    tiny_tmpfs: Path, children: Children, how: str
) -> None:
    books = tiny_tmpfs / "books"
    child = children.spawn("fill", books, SEGMENT, how)
    status = child.wait(60)
    assert status != -signal.SIGBUS, f"the writer died of SIGBUS:\n{child.stderr_text()}"
    assert status == 0, f"exit status {status}:\n{child.stderr_text()}"
    result = child.read_json(5)

    assert result["error_type"] == "JournalFullError", result
    assert result["is_oserror"] and result["errno"] == errno.ENOSPC, result
    assert "no room for segment" in result["message"], result
    # Still full: the next append fails the same way and writes nothing.
    assert result["again"] == "JournalFullError", result
    assert result["position_after_retry"] == result["position_at_error"]

    # Everything acknowledged is there, verified, and sealed segments chain up.
    names = segment_names(books)
    assert len(names) >= 5, names
    assert not [name for name in os.listdir(books) if name.endswith(".creating")]
    records = read_everything(books)
    if how == "single":
        assert len(records) == result["appended"]
    else:
        # A batch stopped by the full tmpfs keeps the books that fitted before the
        # roll; every book of the earlier batches is there.
        assert result["appended"] <= len(records) < result["appended"] + 50
    assert records[-1][1][0] == result["position_at_error"][0]

    # Reopened: nothing to mend, still full, and room made by removing the oldest
    # segment (as the compactor does) lets the journal roll on.
    with journal.Writer(books, segment_size=SEGMENT) as writer:
        assert writer.recovery.cleared_bytes == 0
        seq = len(records)
        with pytest.raises(journal.JournalFullError):
            while True:
                writer.append_orderbook(*book(seq))
                seq += 1
        (books / names[0]).unlink()
        index = writer.position[0]
        while writer.position[0] == index:
            writer.append_orderbook(*book(seq))
            seq += 1
    in_first = sum(1 for _, position in records if position[0] == 0)
    tail = read_everything(books, in_first)
    assert tail[0][1] == (1, F.HEADER_SIZE)  # segment 0 is gone
    assert tail[-1][0] == seq - 1


def test_room_freed_before_the_roll_is_used(tiny_tmpfs: Path, children: Children) -> None:
    """The next segment, prepared in the background, found no room; room is freed
    before the current segment fills up: the roll must use it, not fail."""
    books = tiny_tmpfs / "books"
    child = children.spawn("fill-then-free", books, SEGMENT)
    status = child.wait(60)
    assert status == 0, f"exit status {status}:\n{child.stderr_text()}"
    result = child.read_json(5)
    assert result["free_after_removing"] >= SEGMENT, result
    assert result["errors_after_freeing"] == [], (
        f"after segment {result['removed']} was removed ({result['free_after_removing']} "
        f"bytes free), the roll from segment {result['full_at'][0]} still raised "
        f"JournalFullError: {result['errors_after_freeing'][0]}"
    )
    assert result["position"][0] == result["full_at"][0] + 1
    records = read_everything(books, first_seq=None)
    assert records[-1][0] == result["appended"] - 1
