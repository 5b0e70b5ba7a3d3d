"""A collector's feed metrics, ``<journal>/collector.metrics`` (journal._feed_metrics).

The layout against docs/FORMAT.md, what is written read back (in this process and
in another), one live collector per journal by its lock (a real second process),
a dead collector's file replaced, and the hot path's stores.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal import _feed_metrics_layout as L
from journal._errors import JournalError
from journal._feed_metrics import (
    CollectorRunningError,
    FeedCounter,
    FeedMetricsWriter,
    FeedState,
    read_feed_metrics,
)
from tests.conftest import REPO

SYMBOLS = ["BTC-USDT", "ETH-USDT", "XRP-USDT"]

# A collector in another process: opens the metrics, counts what it is told, says
# "ready" with its figures' pid, then waits for a line on stdin ("close": close
# first; anything else: exit without closing, as a crash would).
_COLLECTOR = """
import json, sys
from journal._feed_metrics import FeedMetricsWriter, FeedState, FeedCounter
journal, venue, symbols = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
messages = int(sys.argv[4])
metrics = FeedMetricsWriter(journal, venue, symbols)
for index, symbol in enumerate(symbols):
    stream = metrics.stream(symbol)
    stream.set_state(FeedState.LIVE)
    for n in range(messages * (index + 1)):
        stream.message(1_700_000_000_000_000_000 + n * 1_000_000, 1_700_000_000_000 + n)
    stream.add(FeedCounter.GAPS, index)
    stream.set(FeedCounter.BOOKS, 1000 + index)
print(json.dumps({"ready": True}), flush=True)
if sys.stdin.readline().strip() == "close":
    metrics.close()
    print(json.dumps({"closed": True}), flush=True)
    sys.stdin.readline()
"""


def start_collector(
    journal: Path, venue: str = "binance", symbols: list[str] = SYMBOLS, messages: int = 10
) -> subprocess.Popen[str]:
    """A collector process with its metrics open; returns once it said ready."""
    child = subprocess.Popen(
        [sys.executable, "-c", _COLLECTOR, str(journal), venue, ",".join(symbols), str(messages)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()  # blocks until it is ready (or died: "")
    if not line:
        child.wait(10)
        raise AssertionError(f"collector process failed: {child.stderr.read()}")  # type: ignore[union-attr]
    assert json.loads(line) == {"ready": True}
    return child


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()


# -- the layout ------------------------------------------------------------------------


def test_pinned_surface() -> None:
    assert L.COLLECTOR_METRICS_MAGIC == b"OBJMETRC"
    assert L.COLLECTOR_METRICS_VERSION == 1
    assert L.COLLECTOR_METRICS_NAME == "collector.metrics"
    assert [s.name for s in FeedState] == [
        "STOPPED",
        "CONNECTING",
        "SUBSCRIBING",
        "SYNCING",
        "LIVE",
        "BACKOFF",
    ]
    assert list(FeedState) == list(range(6))
    assert [c.name for c in FeedCounter] == [
        "MESSAGES",
        "BOOKS",
        "RECONNECTS",
        "GAPS",
        "RESYNCS",
        "CROSSED",
        "STALE",
        "SNAPSHOTS",
        "ERRORS",
        "REFUSED",
    ]
    assert list(FeedCounter) == list(range(10))
    assert L.collector_metrics_size(3) == 128 + 3 * 256


def test_the_file_holds_each_field_at_its_offset(journal_dir: Path) -> None:
    """Bytes of a written file, read with the documented offsets alone."""
    with FeedMetricsWriter(journal_dir, "binance-futures", SYMBOLS) as metrics:
        stream = metrics.stream("ETH-USDT")
        stream.set_state(FeedState.SYNCING)
        stream.message(2_000_000_000_000_000_000, 1_999_999_999_990)
        stream.add(FeedCounter.RESYNCS, 3)
        raw = (journal_dir / "collector.metrics").read_bytes()
    assert len(raw) == 128 + 3 * 256
    assert raw[0:8] == b"OBJMETRC"
    assert struct.unpack_from("<IIII", raw, 8) == (1, len(raw), os.getpid(), 3)
    assert raw[96:128].rstrip(b"\0") == b"binance-futures"
    slot = 128 + 256  # ETH-USDT: the second symbol
    assert raw[slot + 224 : slot + 256].rstrip(b"\0") == b"ETH-USDT"
    state, changed, last, delay = struct.unpack_from("<QqqQ", raw, slot)
    assert state == FeedState.SYNCING
    assert changed > 0 and last == 2_000_000_000_000_000_000
    assert delay == 10_000_000  # 10 ms
    counters = struct.unpack_from("<10Q", raw, slot + 32)
    assert counters[FeedCounter.MESSAGES] == 1 and counters[FeedCounter.RESYNCS] == 3
    untouched = 128  # BTC-USDT: no delay yet
    assert struct.unpack_from("<q", raw, untouched + 24)[0] == L.NO_DELAY


# -- round trip ------------------------------------------------------------------------


def test_what_is_written_is_read_back(journal_dir: Path) -> None:
    before = time.time_ns()
    with FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW", "USDT-KRW"]) as metrics:
        btc = metrics.stream("BTC-KRW")
        assert metrics.stream("BTC-KRW") is btc
        assert metrics.symbols == ("BTC-KRW", "USDT-KRW")
        btc.set_state(FeedState.CONNECTING)
        btc.set_state(FeedState.LIVE)
        for n in range(5):
            btc.message(before + n, before // 1_000_000 - 25)
        btc.message(before + 99, 0)  # no exchange time: the last delay stays
        btc.add(FeedCounter.RECONNECTS)
        btc.add(FeedCounter.RECONNECTS)
        btc.add(FeedCounter.CROSSED, 4)
        btc.set(FeedCounter.BOOKS, 123)
        btc.set(FeedCounter.SNAPSHOTS, 2)
        for counter in (FeedCounter.GAPS, FeedCounter.STALE, FeedCounter.ERRORS):
            btc.add(counter)
        btc.add(FeedCounter.REFUSED, 7)
        assert btc.state is FeedState.LIVE and btc.count(FeedCounter.RECONNECTS) == 2

        shot = read_feed_metrics(journal_dir)
        assert shot is not None
        assert (shot.venue, shot.pid, shot.alive) == ("upbit", os.getpid(), True)
        assert before <= shot.started_ns <= shot.taken_ns
        assert shot.host == os.uname().nodename
        figures = shot.stream("BTC-KRW")
        assert figures.state is FeedState.LIVE and figures.state_changed_ns >= before
        assert figures.last_message_ns == before + 99
        assert figures.last_delay_ns == before + 4 - (before // 1_000_000 - 25) * 1_000_000
        assert (figures.messages, figures.books, figures.reconnects) == (6, 123, 2)
        assert (figures.gaps, figures.resyncs, figures.crossed, figures.stale) == (1, 0, 4, 1)
        assert (figures.snapshots, figures.errors, figures.refused) == (2, 1, 7)
        assert figures.count(FeedCounter.CROSSED) == 4
        idle = shot.stream("USDT-KRW")
        assert idle.state is FeedState.STOPPED and idle.last_message_ns == 0
        assert idle.last_delay_ns is None and idle.messages == 0
        with pytest.raises(KeyError, match="ETH-KRW"):
            shot.stream("ETH-KRW")

    shot = read_feed_metrics(journal_dir)
    assert shot is not None and not shot.alive  # closed: kept, every stream stopped
    assert [s.state for s in shot.streams] == [FeedState.STOPPED] * 2
    assert shot.stream("BTC-KRW").messages == 6


def test_a_negative_delay_is_kept_signed(journal_dir: Path) -> None:
    """The exchange's clock ahead of ours: the delay is negative, not wrapped."""
    with FeedMetricsWriter(journal_dir, "bithumb", ["BTC-KRW"]) as metrics:
        metrics.stream("BTC-KRW").message(1_700_000_000_000_000_000, 1_700_000_000_003)
        shot = read_feed_metrics(journal_dir)
    assert shot is not None and shot.streams[0].last_delay_ns == -3_000_000


def test_calls_after_close_do_nothing(journal_dir: Path) -> None:
    metrics = FeedMetricsWriter(journal_dir, "bybit", ["BTC-USDT"])
    stream = metrics.stream("BTC-USDT")
    stream.message(5, 1)
    metrics.close()
    metrics.close()
    stream.message(6, 1)  # a task still unwinding: harmless
    stream.add(FeedCounter.ERRORS)
    stream.set_state(FeedState.BACKOFF)
    shot = read_feed_metrics(journal_dir)
    assert shot is not None and shot.streams[0].messages == 1
    assert shot.streams[0].state is FeedState.STOPPED and shot.streams[0].errors == 0
    assert "closed" in repr(metrics)


def test_no_file_is_none(journal_dir: Path) -> None:
    assert read_feed_metrics(journal_dir) is None
    journal_dir.mkdir()
    assert read_feed_metrics(journal_dir) is None


@pytest.mark.parametrize(
    ("venue", "symbols", "message"),
    [
        ("", SYMBOLS, "venue=''"),
        ("x" * 33, SYMBOLS, "at most 32 bytes"),
        ("binance", [], "0 given"),
        ("binance", "BTC-USDT", "give a list of symbols"),
        ("binance", ["BTC-USDT", "BTC-USDT"], "BTC-USDT given more than once"),
        ("binance", ["BTC\0USDT"], "control characters"),
        ("binance", ["B" * 33], "at most 32 bytes"),
    ],
)
def test_bad_arguments_are_said(
    journal_dir: Path, venue: str, symbols: object, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FeedMetricsWriter(journal_dir, venue, symbols)  # type: ignore[arg-type]
    assert not journal_dir.exists()


def test_an_unknown_symbol_is_said_with_the_known_ones(journal_dir: Path) -> None:
    with (
        FeedMetricsWriter(journal_dir, "binance", SYMBOLS) as metrics,
        pytest.raises(ValueError, match=r"symbol='SOL-USDT' is not a stream .*BTC-USDT, ETH-USDT"),
    ):
        metrics.stream("SOL-USDT")


def test_the_file_mode_follows_the_journal_directory(shm_dir: Path) -> None:
    shared = shm_dir / "shared"
    shared.mkdir(mode=0o750)
    os.chmod(shared, 0o750)
    with FeedMetricsWriter(shared, "upbit", ["BTC-KRW"]):
        assert (shared / "collector.metrics").stat().st_mode & 0o777 == 0o640
    with FeedMetricsWriter(shm_dir / "new", "upbit", ["BTC-KRW"]):  # created: private
        assert (shm_dir / "new").stat().st_mode & 0o777 == 0o700
        assert (shm_dir / "new" / "collector.metrics").stat().st_mode & 0o777 == 0o600
    with FeedMetricsWriter(shm_dir / "given", "upbit", ["BTC-KRW"], mode=0o644):
        assert (shm_dir / "given" / "collector.metrics").stat().st_mode & 0o777 == 0o644


def test_a_file_that_is_not_collector_metrics_is_said(journal_dir: Path) -> None:
    journal_dir.mkdir()
    path = journal_dir / "collector.metrics"
    path.write_bytes(b"OBJMETRW" + bytes(200))
    with pytest.raises(JournalError, match=r"offset=0: magic=b'OBJMETRW'"):
        read_feed_metrics(journal_dir)
    path.write_bytes(b"short")
    with pytest.raises(JournalError, match="5 bytes, shorter than its header"):
        read_feed_metrics(journal_dir)
    with FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW"]):  # unlocked: replaced
        pass
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 20, 2)  # stream_count 2, file_size for one
    path.write_bytes(data)
    with pytest.raises(JournalError, match="file_size=384 does not fit stream_count=2"):
        read_feed_metrics(journal_dir)
    struct.pack_into("<I", data, 20, 1)
    struct.pack_into("<Q", data, 128, 99)  # a state this reader does not know
    path.write_bytes(data)
    with pytest.raises(JournalError, match=r"offset=128: stream 'BTC-KRW' state=99"):
        read_feed_metrics(journal_dir)


def test_a_symbolic_link_in_the_files_place_is_refused(shm_dir: Path) -> None:
    journal = shm_dir / "books"
    journal.mkdir(mode=0o700)
    (shm_dir / "elsewhere").write_text("kept")
    (journal / "collector.metrics").symlink_to(shm_dir / "elsewhere")
    with pytest.raises(JournalError, match="is a symbolic link"):
        FeedMetricsWriter(journal, "upbit", ["BTC-KRW"])
    assert (shm_dir / "elsewhere").read_text() == "kept"
    assert [p.name for p in journal.iterdir()] == ["collector.metrics"]  # no temporary left


# -- another process ---------------------------------------------------------------------


def test_counters_are_seen_by_another_process(
    journal_dir: Path, children: list[subprocess.Popen[str]]
) -> None:
    child = start_collector(journal_dir, "bybit-futures", SYMBOLS, messages=100)
    children.append(child)
    shot = read_feed_metrics(journal_dir)
    assert shot is not None
    assert (shot.venue, shot.pid, shot.alive) == ("bybit-futures", child.pid, True)
    assert [s.symbol for s in shot.streams] == SYMBOLS
    assert [s.messages for s in shot.streams] == [100, 200, 300]
    assert [s.gaps for s in shot.streams] == [0, 1, 2]
    assert [s.books for s in shot.streams] == [1000, 1001, 1002]
    assert [s.state for s in shot.streams] == [FeedState.LIVE] * 3
    assert shot.streams[2].last_message_ns == 1_700_000_000_000_000_000 + 299_000_000
    assert shot.streams[2].last_delay_ns == 0  # stamped the same ms as received
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("close\n")
    child.stdin.flush()
    assert json.loads(child.stdout.readline()) == {"closed": True}
    shot = read_feed_metrics(journal_dir)  # the process lives on, its metrics closed
    assert shot is not None and not shot.alive
    assert [s.state for s in shot.streams] == [FeedState.STOPPED] * 3


def test_a_second_live_collector_is_refused(
    journal_dir: Path, children: list[subprocess.Popen[str]]
) -> None:
    first = start_collector(journal_dir)
    children.append(first)
    with pytest.raises(CollectorRunningError) as raised:
        FeedMetricsWriter(journal_dir, "binance", ["BTC-USDT"])
    message = str(raised.value)
    assert f"already has a live collector (pid={first.pid} " in message
    assert "venue=binance" in message and "one collector per journal" in message
    # Another process fails the same way, and the first's file is untouched.
    second = subprocess.run(
        [sys.executable, "-c", _COLLECTOR, str(journal_dir), "binance", "BTC-USDT", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1 and "CollectorRunningError" in second.stderr
    shot = read_feed_metrics(journal_dir)
    assert shot is not None and shot.pid == first.pid and shot.alive
    assert [p.name for p in journal_dir.iterdir()] == ["collector.metrics"]


def test_a_dead_collectors_file_is_replaced(
    journal_dir: Path, children: list[subprocess.Popen[str]]
) -> None:
    dead = start_collector(journal_dir, "upbit", ["BTC-KRW"], messages=50)
    children.append(dead)
    dead.send_signal(signal.SIGKILL)
    dead.wait(10)
    shot = read_feed_metrics(journal_dir)
    assert shot is not None and shot.pid == dead.pid and not shot.alive
    assert shot.streams[0].state is FeedState.LIVE  # as it was when it died
    with FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW", "ETH-KRW"]) as metrics:
        metrics.stream("ETH-KRW").message(1, 0)
        shot = read_feed_metrics(journal_dir)
        assert shot is not None and shot.pid == os.getpid() and shot.alive
        assert [(s.symbol, s.messages) for s in shot.streams] == [("BTC-KRW", 0), ("ETH-KRW", 1)]


def test_a_half_created_file_of_a_dead_collector_is_removed(journal_dir: Path) -> None:
    journal_dir.mkdir(mode=0o700)
    old = journal_dir / ".collector.metrics.99999.creating"
    young = journal_dir / ".collector.metrics.99998.creating"
    old.write_bytes(b"\0" * 128)
    young.write_bytes(b"\0" * 128)
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    with FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW"]):
        names = sorted(p.name for p in journal_dir.iterdir())
    # The young one may be a live collector's, still creating: it stays.
    assert names == [young.name, "collector.metrics"]
