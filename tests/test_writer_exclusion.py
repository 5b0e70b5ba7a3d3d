"""A writer holds its journal against everything an outsider can do to the files:
a deleted ``writer.lock``, a removed directory, a truncated segment (issue #9)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from tests._procs import Children, book
from tests.test_file_safety import wait_for


def test_deleting_writer_lock_does_not_let_a_second_writer_in(
    journal_dir: Path, children: Children
) -> None:
    holder = children.spawn("hold", journal_dir, stdin=True)
    assert holder.read_json(timeout=30)["ready"]
    os.unlink(journal_dir / F.LOCK_FILE_NAME)
    second = children.spawn("try-open", journal_dir)
    answer = second.read_json(timeout=30)
    assert answer["result"] == "locked", answer
    assert second.wait(timeout=30) == 0
    # The same in this process, through the API.
    with pytest.raises(journal.WriterLockedError, match="already has a live writer"):
        journal.Writer(journal_dir, segment_size=64 * 1024)


def test_lock_goes_with_the_writer(journal_dir: Path, children: Children) -> None:
    holder = children.spawn("hold", journal_dir, stdin=True)
    assert holder.read_json(timeout=30)["ready"]
    holder.kill()
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        assert writer.recovery.records_in_segment == 10


def test_removed_directory_stops_the_writer_with_journal_gone(journal_dir: Path) -> None:
    writer = journal.Writer(journal_dir, segment_size=64 * 1024)
    try:
        writer.append_orderbook(*book(0))
        wait_for(journal_dir / F.segment_name(1))  # the worker's segment built, not racing
        shutil.rmtree(journal_dir)
        errors: list[Exception] = []
        for seq in range(1, 1_000_000):
            try:
                writer.append_orderbook(*book(seq))
            except journal.JournalError as error:
                errors.append(error)
                break
        assert errors, "the writer never noticed its journal was removed"
        assert isinstance(errors[0], journal.JournalGoneError), errors[0]
        assert str(journal_dir) in str(errors[0])
        # Every later append says the same, through every path.
        with pytest.raises(journal.JournalGoneError):
            writer.append_orderbook(*book(1))
        with pytest.raises(journal.JournalGoneError):
            writer.append_many([book(2)])
        assert not journal_dir.exists(), "nothing may be recreated by the old writer"
    finally:
        writer.close()
    # A new writer on the path starts a new incarnation.
    with journal.Writer(journal_dir, segment_size=64 * 1024) as fresh:
        assert fresh.recovery.created
        fresh.append_orderbook(*book(0))


def test_writer_never_recreates_segments_in_a_replaced_directory(journal_dir: Path) -> None:
    """The directory replaced under a writer before its roll: the roll creates no file
    in the new directory (it belongs to whoever made it)."""
    writer = journal.Writer(journal_dir, segment_size=64 * 1024)
    try:
        writer.append_orderbook(*book(0))
        wait_for(journal_dir / F.segment_name(1))  # the worker's segment built, not racing
        shutil.rmtree(journal_dir)
        journal_dir.mkdir(mode=0o700)
        with pytest.raises(journal.JournalGoneError, match="removed or replaced"):
            for seq in range(1, 10_000):  # more than a 64 KiB segment holds: a roll
                writer.append_orderbook(*book(seq))
        assert os.listdir(journal_dir) == []
    finally:
        writer.close()


def test_truncated_segment_is_refused_not_a_sigbus(journal_dir: Path, children: Children) -> None:
    child = children.spawn("append-until-gone", journal_dir, 4 * 1024 * 1024, stdin=True)
    segment = Path(child.read_json(timeout=30)["segment"])
    # Someone with write access cuts the live segment to its first 64 KiB: the
    # writer's next pages are no longer backed by the file.
    os.truncate(segment, 64 * 1024)
    assert child.proc.stdin is not None
    child.proc.stdin.write("go\n")
    child.proc.stdin.flush()
    status = child.wait(timeout=60)
    assert status != -signal.SIGBUS, f"the writer died of SIGBUS:\n{child.stderr_text()}"
    result = child.read_json(timeout=5)
    assert result["error"] == "JournalGoneError", result
    assert "truncated to 65536 bytes" in result["message"]


def test_a_writer_refuses_to_resume_a_sealed_segment_whose_commit_was_cut_short(
    journal_dir: Path,
) -> None:
    """Sealed segment 0 with its commit lowered, then the empty segment 1: the next
    writer would resume in 0 at the lowered commit and zero every book after it."""
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        positions = [writer.append_orderbook(*book(seq)) for seq in range(60)]
        writer.close(seal=True)
    segment = journal_dir / F.segment_name(0)
    before = segment.read_bytes()
    with segment.open("r+b") as file:
        file.seek(F.COMMIT_OFFSET_OFFSET)
        file.write(positions[20][1].to_bytes(8, "little"))
    with pytest.raises(journal.CorruptSegmentError, match="cut short"):
        journal.Writer(journal_dir, segment_size=64 * 1024)
    after = segment.read_bytes()
    assert after[F.HEADER_SIZE :] == before[F.HEADER_SIZE :], "books after the commit were zeroed"


def test_a_live_writer_is_seen_alive_after_its_lock_file_is_deleted(
    journal_dir: Path, children: Children
) -> None:
    from journal._lock import writer_alive

    holder = children.spawn("hold", journal_dir, stdin=True)
    assert holder.read_json(timeout=30)["ready"]
    os.unlink(journal_dir / F.LOCK_FILE_NAME)
    assert writer_alive(journal_dir) is True  # journal info, top, metrics, verify ask it
    holder.kill()
    assert writer_alive(journal_dir) is None  # no holder, no trace of one
