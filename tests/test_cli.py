"""The `journal` command: info, dump and verify, run as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal._segment import segment_path
from journal.analysis import load_books
from tests._procs import Children, reader_registered, wait_until
from tests.conftest import ASKS, BIDS
from tests.test_file_safety import wait_for
from tests.test_verify import open_at, set_header_word

SEGMENT = 64 * 1024


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_books(path: Path, count: int, first_ns: int = 1_000) -> list[journal.Position]:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        return [
            writer.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS, first_ns + i)
            for i in range(count)
        ]


def test_info_shows_segments_records_and_writer_state(journal_dir: Path) -> None:
    write_books(journal_dir, 500)
    shown = run("info", str(journal_dir))
    assert shown.returncode == 0, shown.stderr
    assert "records: 500" in shown.stdout
    assert "writer: not running" in shown.stdout
    assert "sealed" in shown.stdout and "open" in shown.stdout
    with journal.Writer(journal_dir, segment_size=SEGMENT):
        assert "writer: alive" in run("info", str(journal_dir)).stdout


@pytest.mark.slow
def test_dump_prints_what_the_reader_reads(journal_dir: Path) -> None:
    positions = write_books(journal_dir, 300)
    dumped = run("dump", str(journal_dir))
    assert dumped.returncode == 0, dumped.stderr
    lines = [json.loads(line) for line in dumped.stdout.splitlines()]
    with journal.Reader(journal_dir) as reader:
        assert lines == [record.to_dict() for record in reader.available()]
    segment, offset = positions[200]
    resumed = run("dump", str(journal_dir), "--from", f"{segment}:{offset}", "--limit", "5")
    assert [json.loads(line)["sequence"] for line in resumed.stdout.splitlines()] == list(
        range(200, 205)
    )
    by_time = run("dump", str(journal_dir), "--from", str(1_000 + 250))
    assert json.loads(by_time.stdout.splitlines()[0])["sequence"] == 250
    iso = datetime.fromtimestamp(0, UTC).isoformat()  # every book is after 1970
    assert len(run("dump", str(journal_dir), "--from", iso).stdout.splitlines()) == 300
    naive = run("dump", str(journal_dir), "--from", "2026-01-01T00:00:00")
    assert naive.returncode == 2 and "time zone" in naive.stderr


def test_dump_follow_prints_books_as_they_are_published(journal_dir: Path) -> None:
    write_books(journal_dir, 3)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journal.cli",
            "dump",
            str(journal_dir),
            "--follow",
            "--from",
            "end",
            "--limit",
            "2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )

    def ready() -> bool:
        """Its reader, opened at the end, has registered (on its first empty poll):
        every book published from now on comes after its start."""
        assert follower.poll() is None, f"dump --follow exited ({follower.returncode})"
        return reader_registered(journal_dir, follower.pid)

    try:
        wait_until(ready, 30, "dump --follow to open the journal")
        with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
            writer.append_orderbook("bithumb", "ETH-KRW", 7, 70, BIDS, ASKS, 1)
            writer.append_orderbook("bithumb", "ETH-KRW", 8, 80, BIDS, ASKS, 2)
        out, _ = follower.communicate(timeout=30)
    finally:
        follower.kill()
    assert [json.loads(line)["sequence"] for line in out.splitlines()] == [70, 80]


def test_verify_reports_the_first_corrupt_offset(journal_dir: Path) -> None:
    positions = write_books(journal_dir, 300)
    good = run("verify", str(journal_dir))
    assert good.returncode == 0 and "OK: 300 records" in good.stdout, good.stderr
    segment, offset = positions[123]
    path = journal_dir / F.segment_name(segment)
    data = bytearray(path.read_bytes())
    data[offset + 4 : offset + 8] = (1 << 24).to_bytes(4, "little")  # root offset out
    path.write_bytes(bytes(data))
    bad = run("verify", str(journal_dir))
    assert bad.returncode == 1
    assert "CORRUPT after 123 good records" in bad.stderr
    assert f"offset={offset + 4}" in bad.stderr and path.name in bad.stderr


def test_missing_journal_is_a_clear_error(shm_dir: Path) -> None:
    for command in ("info", "verify"):
        missing = run(command, str(shm_dir / "nothing-here"))
        assert missing.returncode == 2
        assert "not a journal directory" in missing.stderr


# -- verify: what a killed writer leaves is not damage, a cut-short segment is -------------------


def kill_mid_roll(children: Children, journal_dir: Path) -> tuple[int, int]:
    """A writer process that filled segment 0, rolled into segment 1 and wrote 3 books
    there, SIGKILLed once its worker prepared segment 2 for the next roll: segment 1
    open, 2 empty. Returns (books written, segment 1's commit)."""
    writer = children.spawn("serve", journal_dir, SEGMENT, stdin=True)
    writer.read_json(30)
    writer.send(op="fill")
    filled = writer.read_json(30)
    writer.send(op="publish", count=3)
    published = writer.read_json(30)
    segment, commit = published["position"]
    assert segment == 1 and published["positions"][0] == [1, F.HEADER_SIZE]
    wait_for(segment_path(journal_dir, 2))
    alive = run("verify", str(journal_dir))
    assert alive.returncode == 0, alive.stderr
    assert "segment 2 is empty, prepared for the live writer's next roll" in alive.stdout
    writer.kill()
    assert writer.proc.returncode == -signal.SIGKILL
    return len(filled["positions"]) + 3, commit


@pytest.mark.slow
def test_verify_a_writer_killed_mid_roll_is_safe(journal_dir: Path, children: Children) -> None:
    """Killed between preparing segment N+1 and sealing N (N open, N+1 empty): every
    book is readable and the next writer resumes in N, so verify says what it found
    and exits 0, and load_books and dump read every book."""
    books, commit = kill_mid_roll(children, journal_dir)
    checked = run("verify", str(journal_dir))
    assert checked.returncode == 0, checked.stderr
    assert f"OK: {books:,} records in 3 segments" in checked.stdout
    assert "interrupted roll: segment 1 is open and segment 2 after it is empty" in checked.stdout
    assert load_books(journal_dir).sequence.tolist() == list(range(books))
    dumped = run("dump", str(journal_dir))
    assert dumped.returncode == 0, dumped.stderr
    assert len(dumped.stdout.splitlines()) == books
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        assert (writer.recovery.segment, writer.recovery.commit_offset) == (1, commit)
    repaired = run("verify", str(journal_dir))
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.splitlines() == [f"OK: {books:,} records in 2 segments of {journal_dir}"]


@pytest.mark.slow
def test_verify_an_interrupted_seal_is_safe(journal_dir: Path, children: Children) -> None:
    """Killed between the two stores of a seal: the end marker written and its offset
    stored, not the commit that publishes it. The segment is open at its commit (the
    writer clears the offset), so verify exits 0 and says so."""
    books, commit = kill_mid_roll(children, journal_dir)
    path = segment_path(journal_dir, 1)
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, struct.pack("<II", F.END_OF_SEGMENT, 0), commit)
    finally:
        os.close(fd)
    set_header_word(journal_dir, 1, F.END_MARKER_OFFSET_OFFSET, commit)
    checked = run("verify", str(journal_dir))
    assert checked.returncode == 0, checked.stderr
    assert (
        f"interrupted seal: segment 1 has end_marker_offset={commit} but not the commit"
        in checked.stdout
    )
    assert "died between the two stores of sealing it" in checked.stdout
    assert "interrupted roll" in checked.stdout
    assert load_books(journal_dir).sequence.tolist() == list(range(books))
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        assert (writer.recovery.segment, writer.recovery.commit_offset) == (1, commit)
        assert writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS, 1) == (1, commit)
    repaired = run("verify", str(journal_dir))
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.splitlines() == [
        f"OK: {books + 1:,} records in 2 segments of {journal_dir}"
    ]


def test_verify_an_open_segment_before_records_is_corrupt(journal_dir: Path) -> None:
    """Segment N open (its commit lowered, its end marker offset cleared) while N+1
    holds records: no writer leaves that, the records after N's commit would be
    skipped. Likewise a sealed segment's commit cut short. Exit 1, with the file."""
    positions = write_books(journal_dir, 600)
    assert positions[-1][0] >= 3
    path = segment_path(journal_dir, 0)
    set_header_word(journal_dir, 0, F.COMMIT_OFFSET_OFFSET, positions[50][1])
    cut = run("verify", str(journal_dir))
    assert cut.returncode == 1
    assert "CORRUPT after 50 good records" in cut.stderr
    assert "past commit_offset" in cut.stderr
    assert f"file={path} offset={F.COMMIT_OFFSET_OFFSET})" in cut.stderr
    open_at(journal_dir, 0, positions[50][1])
    opened = run("verify", str(journal_dir))
    assert opened.returncode == 1
    assert "CORRUPT after 50 good records: segment 0 is not sealed" in opened.stderr
    assert "segment 1 after it holds records" in opened.stderr
    assert f"file={path} offset={F.COMMIT_OFFSET_OFFSET})" in opened.stderr


def test_verify_help_gives_the_exit_statuses() -> None:
    shown = run("verify", "--help")
    assert shown.returncode == 0
    assert "exit status: 0" in shown.stdout and "1 damage" in shown.stdout
    assert "2 not a journal" in shown.stdout


def test_dump_of_a_segment_with_its_commit_cut_short_fails(journal_dir: Path) -> None:
    """The commit of sealed segment 0 lowered to its 50th record: dump must not print
    50 books of segment 0, then segment 1's, as if nothing were missing."""
    positions = write_books(journal_dir, 600)
    path = segment_path(journal_dir, 0)
    set_header_word(journal_dir, 0, F.COMMIT_OFFSET_OFFSET, positions[50][1])
    dumped = run("dump", str(journal_dir))
    assert dumped.returncode != 0
    assert path.name in dumped.stderr
