"""Readers register in ``<journal>/readers/``: their position and lag are seen from
other processes, a killed reader is recognised as dead, registration never stops a
reader that cannot make its file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import journal
from journal import _metrics_layout as M
from journal._metrics import remove_dead_readers
from journal.monitor import _snapshot as _monitor
from journal.monitor._snapshot import read_reader, reader_files, snapshot
from tests._procs import book
from tests.conftest import REPO

SEGMENT = 64 * 1024
TOP_ONCE = ("--once", "--interval", "0.1")

# A reader process: reads FIRST books, then as many more as each stdin line says;
# reports its position after each batch as a JSON line; closes at EOF.
READER = """
import json, sys
import journal
path, name, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
reader = journal.Reader(path, name=name)
def read(count):
    for _ in range(count):
        assert reader.poll(10) is not None, "no book within 10 s"
    print(json.dumps({"position": list(reader.position)}), flush=True)
read(first)
for line in sys.stdin:
    read(int(line))
reader.close()
print(json.dumps({"closed": True}), flush=True)
"""


class ReaderProcess:
    def __init__(self, path: Path, name: str, first: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(path), name, str(first)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def report(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"the reader said nothing: {self.proc.stderr.read()}")
        return json.loads(line)

    def read(self, count: int) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        return self.report()

    def finish(self) -> None:
        """Close its stdin: the reader closes (unregisters) and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.report() == {"closed": True}
        assert self.proc.wait(30) == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def reader_process(path: Path, name: str, first: int) -> Iterator[ReaderProcess]:
    process = ReaderProcess(path, name, first)
    try:
        yield process
    finally:
        process.close()


def write_books(writer: journal.Writer, first: int, count: int) -> None:
    for sequence in range(first, first + count):
        writer.append_orderbook(*book(sequence, -1))  # stamped now: lag in time is real


def test_a_reader_registers_on_its_first_book_and_unregisters_on_close(journal_dir: Path) -> None:
    reader = journal.Reader(journal_dir, name="collector")  # before the journal exists
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write_books(writer, 0, 10)
        assert reader_files(journal_dir) == []
        assert reader.poll(5) is not None
        (path,) = reader_files(journal_dir)
        assert path.name == f"collector-{os.getpid()}{M.METRICS_SUFFIX}"
        for _ in range(4):
            reader.try_next()
        figures = read_reader(path)
        assert (figures.name, figures.pid, figures.alive) == ("collector", os.getpid(), True)
        assert figures.records == 5 and figures.position == reader.position
        assert figures.last_record_ns > 0
        while reader.try_next() is not None:
            pass
        assert read_reader(path).last_poll_ns > 0  # found nothing new
        reader.close()
        assert reader_files(journal_dir) == []
        with journal.Reader(journal_dir, metrics=False) as quiet:
            assert len(list(quiet.available())) == 10
        assert reader_files(journal_dir) == []


def test_two_readers_of_one_process_have_a_file_each(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write_books(writer, 0, 3)
    with journal.Reader(journal_dir, name="a") as one, journal.Reader(journal_dir, name="a") as two:
        one.try_next()
        two.try_next()
        names = {path.name for path in reader_files(journal_dir)}
        assert names == {f"a-{os.getpid()}.metrics", f"a-{os.getpid()}-1.metrics"}
    with pytest.raises(ValueError, match="reader name"):
        journal.Reader(journal_dir, name="../escape")


def test_lag_of_a_reader_process_is_seen_from_another_process(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write_books(writer, 0, 1000)
        with reader_process(journal_dir, "slow", 400) as slow:
            position = slow.report()["position"]
            time.sleep(0.05)  # lag.ns must show this time passing: a duration, not a wait
            (reader,) = snapshot(journal_dir).readers
            assert reader.label == f"slow-{slow.proc.pid}"
            assert reader.alive and reader.records == 400
            assert list(reader.position) == position
            assert reader.lag is not None and reader.lag.exact
            assert reader.lag.records == 600
            encode = journal.OrderBookEncoder().encode
            assert reader.lag.bytes == sum(len(encode(*book(s))) for s in range(400, 1000))
            # The oldest unread book (the 401st) was stamped before the sleep.
            assert reader.lag.ns is not None and reader.lag.ns >= 50_000_000

            slow.read(600)
            caught_up = snapshot(journal_dir).readers[0]
            assert caught_up.records == 1000 and caught_up.lag is not None
            assert (caught_up.lag.records, caught_up.lag.ns) == (0, 0)

            write_books(writer, 1000, 10)
            behind = snapshot(journal_dir).readers[0]
            assert behind.lag is not None and behind.lag.records == 10
            slow.finish()  # closed cleanly: its file is gone
            assert reader_files(journal_dir) == []


def test_a_long_lag_is_estimated_from_the_frames_walked(
    journal_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_monitor, "LAG_WALK_LIMIT", 100)
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for sequence in range(2000):
            writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, [[1.0, 1.0]], [[2.0, 1.0]])
        with journal.Reader(journal_dir, name="behind") as reader:
            reader.try_next()
            lag = snapshot(journal_dir).readers[0].lag
    assert lag is not None and not lag.exact
    assert lag.records == 1999  # books of one size: the estimate is exact


@pytest.mark.slow
def test_a_killed_reader_is_dead_until_cleaned_up(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write_books(writer, 0, 20)
        with reader_process(journal_dir, "doomed", 5) as doomed:
            doomed.report()
            doomed.proc.send_signal(signal.SIGKILL)
            doomed.proc.wait()
            (reader,) = snapshot(journal_dir).readers
            assert reader.label == f"doomed-{doomed.proc.pid}"
            assert not reader.alive and reader.records == 5
            assert reader.lag is not None and reader.lag.records == 15
            # The next reader to register removes what the dead one left.
            with journal.Reader(journal_dir, name="next") as successor:
                successor.try_next()
                assert [r.label for r in snapshot(journal_dir).readers] == [f"next-{os.getpid()}"]
        with reader_process(journal_dir, "doomed", 1) as again:
            again.report()
            again.proc.kill()
            again.proc.wait()
            top = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "journal.cli",
                    "top",
                    str(journal_dir),
                    *TOP_ONCE,
                    "--clean",
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            assert f"reader=doomed-{again.proc.pid} state=dead records=1 " in top.stdout
            assert snapshot(journal_dir).readers == ()  # shown once, then removed
            assert remove_dead_readers(journal_dir) == []


def test_a_reader_that_cannot_register_says_so_once_and_reads_on(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        write_books(writer, 0, 5)
    (journal_dir / M.READERS_DIRECTORY).write_text("not a directory\n")
    with caplog.at_level(logging.WARNING, logger="journal.metrics"):
        for _ in range(2):
            with journal.Reader(journal_dir, name="blocked") as reader:
                assert len(list(reader.available())) == 5
    warnings = [r.getMessage() for r in caplog.records if "not registered" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "blocked" in warnings[0] and str(journal_dir / M.READERS_DIRECTORY) in warnings[0]


UNPRIVILEGED_READER = """
import json, logging, os, sys
import journal  # imported as root: the interpreter's own files may be root's only
os.setgid(65534)
os.setuid(65534)
logging.basicConfig(level=logging.WARNING)
with journal.Reader(sys.argv[1], name="group") as reader:
    print(json.dumps({"books": len(list(reader.available()))}), flush=True)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a reader as another user")
def test_a_read_only_user_reads_unregistered(journal_dir: Path) -> None:
    """mode=0o644: others may read the segments, not write the journal directory."""
    journal_dir.parent.chmod(0o755)
    with journal.Writer(journal_dir, segment_size=SEGMENT, mode=0o644) as writer:
        write_books(writer, 0, 7)
        done = subprocess.run(
            [sys.executable, "-c", UNPRIVILEGED_READER, str(journal_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"books": 7}
    assert "is not registered" in done.stderr and "Permission denied" in done.stderr
    assert not (journal_dir / M.READERS_DIRECTORY).exists()
