"""The radar program and a journal directory removed and made again by a new writer
(docs/FORMAT.md, "Incarnations"): it says so once and reads every book of the new
journal, whatever its idle strategy. And what came with that work (issue #9): a
journal corrupt at start-up is reported as corrupt (exit status 1), not as bad
arguments (2); the summary says whether, and how far, the radar fell behind."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import journal
from tests import _cpp
from tests._cpp import program, summary_number, wait_until_read

BEFORE = 10  # books of the first incarnation
AFTER = 1000  # books of the second
MARKET = ("upbit", "BTC-KRW")
BIDS = [[141_000_000.0 - 1000.0 * k, 1.0 + k] for k in range(10)]
ASKS = [[141_001_000.0 + 1000.0 * k, 1.0 + k] for k in range(10)]
DEADLINE_S = 20.0  # for the radar to start reading; never reached when it works


def book(seq: int) -> tuple:
    """Consecutive sequences across both incarnations: the radar's summary counts
    any book lost, repeated or reordered as a sequence out of order."""
    return (*MARKET, seq, seq + 1, BIDS, ASKS)


@pytest.mark.parametrize("idle", ["futex", "backoff"])
def test_radar_follows_a_journal_removed_and_made_again(shm_dir: Path, idle: str) -> None:
    path = shm_dir / "books"
    with journal.Writer(path) as writer:
        writer.append_many(book(seq) for seq in range(BEFORE))
    radar = subprocess.Popen(
        [
            str(program("radar")),
            "--journal",
            str(path),
            "--start",
            "beginning",
            "--quiet",
            "--idle",
            idle,
            "--stale-ms",
            "600000",
            "--max-records",
            str(BEFORE + AFTER),
            "--duration",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Idle in the open segment of the first journal, registered in it.
        wait_until_read(radar, path, BEFORE)
        shutil.rmtree(path)
        with journal.Writer(path) as writer:
            writer.append_many(book(seq) for seq in range(BEFORE, BEFORE + AFTER))
        written = time.monotonic()
        # It exits by itself once it has read --max-records books.
        _, stderr = radar.communicate(timeout=DEADLINE_S)
        followed_in = time.monotonic() - written
    finally:
        if radar.poll() is None:
            radar.kill()
            radar.communicate()
    assert radar.returncode == 0, stderr
    notices = re.findall(
        rf"radar: journal {re.escape(str(path))} was recreated \(new incarnation created at "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC\); following it from segment (\d+)\n",
        stderr,
    )
    assert notices == ["0"], stderr  # said once
    assert summary_number(stderr, r"radar summary: (\d+) books") == BEFORE + AFTER
    assert summary_number(stderr, r"out of order or repeated \(per symbol\): (\d+)") == 0
    assert summary_number(stderr, r"journals recreated and followed: (\d+)") == 1
    assert re.search(r"\n  (never )?fell behind", stderr), stderr
    # Noticed on its clock (a check every 100 ms, a futex wait of at most 50 ms).
    assert followed_in < 2.0, (followed_in, stderr)


def corrupt_journal_with_a_short_segment(path: Path) -> Path:
    with journal.Writer(path, segment_size=64 * 1024) as writer:
        writer.append_many(book(seq) for seq in range(5))
    segment = path / "00000000.journal"
    os.truncate(segment, 32 * 1024)  # the header says 64 KiB
    return segment


def radar(*args: str, build: str) -> subprocess.CompletedProcess[str]:
    return _cpp.radar(*args, "--quiet", "--stale-ms", "600000", build=build, timeout=60)


@pytest.mark.parametrize("build", ["release", "sanitize"])
@pytest.mark.parametrize("start", ["beginning", "end"])
def test_segment_of_wrong_size_at_start_up_is_a_corrupt_journal(
    shm_dir: Path, build: str, start: str
) -> None:
    segment = corrupt_journal_with_a_short_segment(shm_dir / "books")
    done = radar("--journal", str(shm_dir / "books"), "--start", start, build=build)
    assert done.returncode == 1, done.stderr
    assert f"radar: corrupt journal, not reading it: {segment}: segment_size=65536" in done.stderr
    assert "(offset=16)" in done.stderr  # segment_size's offset in the header
    assert "Sanitizer" not in done.stderr


def test_a_journal_corrupt_at_start_up_stops_alone(shm_dir: Path) -> None:
    corrupt_journal_with_a_short_segment(shm_dir / "bad")
    with journal.Writer(shm_dir / "good") as writer:
        writer.append_many(book(seq) for seq in range(7))
    done = radar(
        "--journal",
        str(shm_dir / "bad"),
        "--journal",
        str(shm_dir / "good"),
        "--start",
        "beginning",
        "--max-records",
        "7",
        "--duration",
        "30",
        build="release",
    )
    assert done.returncode == 1, done.stderr
    assert summary_number(done.stderr, r"radar summary: (\d+) books") == 7
    assert summary_number(done.stderr, r"verify failures: (\d+) journals stopped") == 1


def test_summary_says_how_far_behind_the_radar_fell(shm_dir: Path) -> None:
    # A live radar (it reads a book stamped now first) then given a backlog of books
    # that waited 2 s: it fell behind. (A radar that starts behind, on books already
    # old, is replaying: tests/test_radar_replay.py.)
    path = shm_dir / "books"
    books = 5000
    with journal.Writer(path) as writer:
        tailer = subprocess.Popen(
            [
                *(str(program("radar")), "--journal", str(path), "--quiet"),
                *("--stale-ms", "600000", "--max-records", str(books + 1), "--duration", "60"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_read(tailer, path, 0)  # tailing the live end, registered
            writer.append_orderbook(*book(0))  # stamped now: live
            wait_until_read(tailer, path, 1)
            published = time.time_ns() - 2_000_000_000
            writer.append_many((*book(seq), published) for seq in range(1, books + 1))
            _, stderr = tailer.communicate(timeout=60)
        finally:
            if tailer.poll() is None:
                tailer.kill()
                tailer.communicate()
    assert tailer.returncode == 0, stderr
    match = re.search(
        r"\n  fell behind: max lag ~([\d,]+) records / (\d+\.\d\d) s at \d\d:\d\d:\d\d UTC\n",
        stderr,
    )
    assert match, stderr
    # Sampled every 256 books read: after the 257th, the 256th of the backlog (one
    # commit: append_many), the other 4,744 were unread.
    assert int(match[1].replace(",", "")) == books - 256
    assert 2.0 <= float(match[2]) < 60
    assert "replayed" not in stderr and "n/a" not in stderr  # live all along


def test_summary_says_when_the_radar_never_fell_behind(shm_dir: Path) -> None:
    path = shm_dir / "books"
    with journal.Writer(path) as writer:
        tailer = subprocess.Popen(
            [str(program("radar")), "--journal", str(path), "--quiet", "--max-records", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_read(tailer, path, 0)  # tailing the live end, registered
            writer.append_orderbook(*book(0))  # stamped now: read within the idle wait
            _, stderr = tailer.communicate(timeout=DEADLINE_S)
        finally:
            if tailer.poll() is None:
                tailer.kill()
                tailer.communicate()
    assert tailer.returncode == 0, stderr
    assert re.search(
        r"\n  never fell behind \(max lag ~0 records / \d+(\.\d)? (us|ms)\)\n", stderr
    ), stderr
