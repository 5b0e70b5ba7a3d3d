"""The collector's feed in ``journal top`` and ``journal metrics``: per venue and
symbol its state, books/s, last message age (a stale feed marked), reconnects,
gaps, resyncs, crossed books and delay, from a real ``collector.metrics`` beside a
real journal in /dev/shm; the Prometheus text passes the suite's strict parser."""

from __future__ import annotations

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

import journal
from journal._feed_metrics import FeedCounter, FeedMetricsWriter, FeedState
from journal.monitor import _prometheus, _top
from journal.monitor._snapshot import snapshot
from tests.conftest import ASKS, BIDS, REPO
from tests.test_metrics_cli import parse_exposition, run_journal, sample

SYMBOLS = ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
SECOND = 1_000_000_000
DEAD_FEED_LEFT_OUT = {
    "journal_feed_state",
    "journal_feed_last_message_age_seconds",
    "journal_feed_delay_seconds",
}
"""A stopped or dead collector's figures of now: a killed one's "live" and its
growing age would read as a live feed gone stale."""


@pytest.fixture
def fed(journal_dir: Path) -> Iterator[FeedMetricsWriter]:
    """A journal with a book, and a collector's feed metrics for three symbols:
    BTC-USDT live and fresh, ETH-USDT live but silent for 30 s, SOL-USDT in back-off
    before its first message."""
    with (
        journal.Writer(journal_dir, segment_size=64 * 1024) as writer,
        FeedMetricsWriter(journal_dir, "binance", SYMBOLS) as metrics,
    ):
        writer.append_orderbook("binance", "BTC-USDT", 1, 1, BIDS, ASKS)
        now = time.time_ns()
        btc = metrics.stream("BTC-USDT")
        btc.set_state(FeedState.LIVE)
        for _ in range(40):
            btc.message(now, now // 1_000_000 - 15)  # 15 ms late
        btc.set(FeedCounter.BOOKS, 38)
        btc.add(FeedCounter.RECONNECTS, 2)
        btc.add(FeedCounter.GAPS)
        btc.add(FeedCounter.RESYNCS, 3)
        btc.add(FeedCounter.CROSSED, 4)
        eth = metrics.stream("ETH-USDT")
        eth.set_state(FeedState.LIVE)
        eth.message(now - 30 * SECOND, 0)  # no exchange time: no delay
        metrics.stream("SOL-USDT").set_state(FeedState.BACKOFF)
        yield metrics


def _feed_lines(stdout: str) -> dict[str, dict[str, str]]:
    """``journal top``'s feed lines (key=value), by symbol."""
    found = {}
    for line in stdout.splitlines():
        if " feed=" in line:
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            found[fields["symbol"]] = fields
    return found


# -- journal metrics -----------------------------------------------------------------------


def test_metrics_export_the_feed(journal_dir: Path, fed: FeedMetricsWriter) -> None:
    done = run_journal("metrics", str(journal_dir))
    assert done.returncode == 0, done.stderr
    samples = parse_exposition(done.stdout)
    venue = {"journal": journal_dir.name, "venue": "binance"}
    btc = {**venue, "symbol": "BTC-USDT"}
    eth = {**venue, "symbol": "ETH-USDT"}
    sol = {**venue, "symbol": "SOL-USDT"}
    assert sample(samples, "journal_feed_up", **venue) == 1
    assert sample(samples, "journal_feed_messages_total", **btc) == 40
    assert sample(samples, "journal_feed_books_total", **btc) == 38
    assert sample(samples, "journal_feed_reconnects_total", **btc) == 2
    assert sample(samples, "journal_feed_gaps_total", **btc) == 1
    assert sample(samples, "journal_feed_resyncs_total", **btc) == 3
    assert sample(samples, "journal_feed_crossed_total", **btc) == 4
    for counter in ("stale", "snapshots", "errors", "refused"):
        assert sample(samples, f"journal_feed_{counter}_total", **btc) == 0
    # The state as a state set: 1 for the current state, 0 for every other.
    for labels, current in ((btc, "live"), (sol, "backoff")):
        states = {
            s.name.lower(): sample(samples, "journal_feed_state", **labels, state=s.name.lower())
            for s in FeedState
        }
        assert states == {name: int(name == current) for name in states}
    assert 0.015 <= sample(samples, "journal_feed_delay_seconds", **btc) < 1
    assert 30 <= sample(samples, "journal_feed_last_message_age_seconds", **eth) < 90
    assert sample(samples, "journal_feed_last_message_age_seconds", **btc) < 30
    started = sample(samples, "journal_feed_start_time_seconds", **venue)
    assert abs(started - time.time()) < 60
    # Nothing measured yet: left out, not a zero that would read as "just now".
    assert ("journal_feed_delay_seconds", frozenset(eth.items())) not in samples
    assert ("journal_feed_last_message_age_seconds", frozenset(sol.items())) not in samples
    assert ("journal_feed_last_message_timestamp_seconds", frozenset(sol.items())) not in samples
    # The journal's own families are still there, labelled as before.
    assert sample(samples, "journal_records_total", journal=journal_dir.name) == 1

    fed.close()
    samples = parse_exposition(_prometheus.render([snapshot(journal_dir)]))
    assert sample(samples, "journal_feed_up", **venue) == 0
    assert sample(samples, "journal_feed_messages_total", **btc) == 40  # kept
    assert sample(samples, "journal_feed_last_message_timestamp_seconds", **btc) > 0  # kept
    # Its figures of now (state, age, delay) left out: journal_feed_up 0 says it all.
    assert not DEAD_FEED_LEFT_OUT & {name for name, _ in samples}


def test_a_broken_collector_file_is_said_and_the_rest_exported(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        writer.append_orderbook("binance", "BTC-USDT", 1, 1, BIDS, ASKS)
        (journal_dir / "collector.metrics").write_bytes(
            b"OBJMETRC" + struct.pack("<I", 7) + bytes(300)
        )
        done = run_journal("metrics", str(journal_dir))
        assert done.returncode == 0
        assert "collector.metrics offset=8: metrics_version=7" in done.stderr
        samples = parse_exposition(done.stdout)
        assert sample(samples, "journal_records_total", journal=journal_dir.name) == 1
        assert "journal_feed_" not in done.stdout
        shot = snapshot(journal_dir)
        assert shot.feed is None and "metrics_version=7" in _top.log_lines(
            [_top.compare(None, shot)]
        )


# -- journal top ---------------------------------------------------------------------------


def test_top_once_shows_each_symbol_and_marks_the_stale_one(
    journal_dir: Path, fed: FeedMetricsWriter
) -> None:
    done = run_journal("top", str(journal_dir), "--once", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    lines = _feed_lines(done.stdout)
    assert list(lines) == SYMBOLS
    btc, eth, sol = (lines[s] for s in SYMBOLS)
    assert btc["feed"] == "binance" and btc["collector"] == f"alive,pid={os.getpid()}"
    assert (btc["state"], btc["messages"], btc["books"]) == ("live", "40", "38")
    assert (btc["reconnects"], btc["gaps"], btc["resyncs"], btc["crossed"]) == ("2", "1", "3", "4")
    assert btc["stale"] == "0" and float(btc["age_s"]) < 5
    assert 15 <= float(btc["delay_ms"]) < 1000
    assert btc["book_rate"] == "0.0"  # nothing happened in the interval
    assert eth["stale"] == "1" and float(eth["age_s"]) >= 30 and eth["delay_ms"] == "-"
    assert sol["state"] == "backoff" and sol["age_s"] == "-" and sol["stale"] == "0"
    # A longer threshold (top --stale 120): nobody is stale.
    row = _top.compare(None, snapshot(journal_dir), stale_s=120)
    assert row.feed is not None and [s.stale for s in row.feed.streams] == [False] * 3


def test_books_per_second_over_the_interval(journal_dir: Path, fed: FeedMetricsWriter) -> None:
    before = snapshot(journal_dir)
    btc = fed.stream("BTC-USDT")
    btc.set(FeedCounter.BOOKS, 38 + 500)
    for _ in range(600):
        btc.message(time.time_ns(), 0)
    after = snapshot(journal_dir)
    seconds = (after.taken_monotonic_ns - before.taken_monotonic_ns) / 1e9
    row = _top.compare(before, after)
    assert row.feed is not None
    stream = row.feed.streams[0]
    assert stream.book_rate == pytest.approx(500 / seconds)
    assert stream.message_rate == pytest.approx(600 / seconds)
    assert _top.compare(None, after).feed.streams[0].book_rate is None  # type: ignore[union-attr]


def test_the_terminal_view_shows_stale_in_red_and_in_words(
    journal_dir: Path, fed: FeedMetricsWriter
) -> None:
    shot = snapshot(journal_dir)
    text = _top.screen([_top.compare(None, shot)], [shot], 1.0)
    red = "\x1b[1;31m"
    assert f"FEED binance  collector alive pid {os.getpid()}  {red}1 of 3 STALE" in text
    header = next(line for line in text.splitlines() if "SYMBOL" in line)
    for column in ("STATE", "BOOKS/S", "AGE S", "DELAY MS", "RECONN", "GAPS", "RESYNC", "CROSSED"):
        assert column in header
    rows = {
        line.split()[0]: line
        for line in text.splitlines()
        if line.startswith("  ") and "-USDT" in line
    }
    assert red in rows["ETH-USDT"] and re.search(r"STALE 3\d\.\d", rows["ETH-USDT"])
    assert red not in rows["BTC-USDT"] and red not in rows["SOL-USDT"]
    assert re.search(r"BTC-USDT\s+live\s", rows["BTC-USDT"])


def test_a_dead_collector_is_said_and_its_silent_streams_marked_stale(
    journal_dir: Path,
) -> None:
    """Killed while its streams were live: the file keeps their states, the lock is
    gone; top says DEAD and marks every stream gone silent past the threshold."""
    script = (
        "import sys, time\n"
        "from journal._feed_metrics import FeedMetricsWriter, FeedState\n"
        "m = FeedMetricsWriter(sys.argv[1], 'upbit', ['BTC-KRW', 'USDT-KRW'])\n"
        "for s in ('BTC-KRW', 'USDT-KRW'):\n"
        "    m.stream(s).set_state(FeedState.LIVE)\n"
        "    m.stream(s).message(time.time_ns() - 20 * 10**9, 0)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with journal.Writer(journal_dir, segment_size=64 * 1024):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(journal_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(10)
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    stream.close()
        done = run_journal("top", str(journal_dir), "--once", "--interval", "0.05")
        lines = _feed_lines(done.stdout)
        assert [f["collector"] for f in lines.values()] == [f"dead,pid={child.pid}"] * 2
        assert [f["stale"] for f in lines.values()] == ["1", "1"]
        shot = snapshot(journal_dir)
        samples = parse_exposition(_prometheus.render([shot]))
        assert sample(samples, "journal_feed_up", journal=journal_dir.name, venue="upbit") == 0
        assert not DEAD_FEED_LEFT_OUT & {name for name, _ in samples}  # though it died "live"
        text = _top.screen([_top.compare(None, shot)], [shot], 1.0)
        assert f"collector \x1b[1;31mDEAD pid {child.pid}" in text
