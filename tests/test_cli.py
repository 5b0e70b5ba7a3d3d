"""The `journal` command: info, dump and verify, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import journal
from journal import _layout as F
from tests.conftest import ASKS, BIDS

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
    try:
        time.sleep(1.0)
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
