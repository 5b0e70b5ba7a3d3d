"""The demo as a monitored system: its feed keeps a collector's feed metrics in each
venue's journal (as ``journal collect`` does), and ``journal demo --metrics-listen``
serves the whole pipeline's metrics (writers, the radar's reads, feeds, the radar's
own) over HTTP while it runs, scraped here with urllib and read with
prometheus_client's parser."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from journal._feed_metrics import FeedState, read_feed_metrics
from journal.demo.feed import MARKETS, VENUES, run_feed
from journal.symbols import normalize
from tests._procs import wait_until
from tests.test_demo_pipeline import demo_argv
from tests.test_metrics_http import DEADLINE_S, families, read_line, scrape, series, value


def test_the_feed_per_venue_keeps_each_venues_feed_metrics(shm_dir: Path) -> None:
    report = run_feed(shm_dir / "books", 2_000, 0.5, per_venue=True, segment_size=1 << 20)
    for venue in VENUES:
        feed = read_feed_metrics(shm_dir / "books" / venue.name)
        assert feed is not None, venue.name
        assert feed.venue == venue.name and not feed.alive  # closed: the lock is free
        symbols = [normalize(venue.name, m.symbol)[1] for m in MARKETS if m.venue is venue]
        assert [s.symbol for s in feed.streams] == symbols
        assert {s.state for s in feed.streams} == {FeedState.STOPPED}
        assert sum(s.books for s in feed.streams) == report.books[venue.name]
        for stream in feed.streams:
            assert stream.messages == stream.books > 0, stream
            assert stream.refused == stream.gaps == stream.reconnects == 0
            assert stream.last_message_ns > 0
            # The synthetic exchange time trails the feed's by the venue's latency.
            assert stream.last_delay_ns is not None
            assert venue.latency_ms * 1e6 <= stream.last_delay_ns < (venue.latency_ms + 50) * 1e6


def test_the_feed_into_one_journal_has_no_feed_metrics(journal_dir: Path) -> None:
    """One journal for all venues: a collector's metrics name one venue, so none."""
    run_feed(journal_dir, 1_000, 0.1, segment_size=1 << 20)
    assert read_feed_metrics(journal_dir) is None


@pytest.mark.slow
def test_the_demo_serves_the_pipelines_metrics_while_it_runs(tmp_path: Path) -> None:
    """Writers, the radar's reads, the feeds and the radar's own figures, in one
    endpoint, while the demo runs; then it finishes as it does without."""
    demo = subprocess.Popen(
        [
            *demo_argv(tmp_path / "demo", seconds=8),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = read_line(demo, r"^serving http://127\.0\.0\.1:\d+/metrics$").split()[1]
        venues = [venue.name for venue in VENUES]

        def everything_seen() -> bool:
            found = families(scrape(url))
            needed = ("journal_records", "journal_reader_records", "journal_feed_books")
            if not all(name in found for name in (*needed, "radar_kimchi_premium_ratio")):
                return False
            readers = series(found["journal_reader_records"], reader="radar")
            premiums = series(found["radar_kimchi_premium_ratio"], base="BTC")
            return len(readers) == len(venues) and min(readers.values()) > 0 and bool(premiums)

        wait_until(everything_seen, DEADLINE_S, "every part of the pipeline in a scrape")
        found = families(scrape(url))
        for venue in venues:
            assert value(found, "journal_writer_up", journal=venue) == 1
            assert value(found, "journal_reader_up", journal=venue, reader="radar") == 1
            assert value(found, "journal_feed_up", journal=venue, venue=venue) == 1
            assert (
                value(
                    found,
                    "journal_feed_state",
                    journal=venue,
                    venue=venue,
                    symbol="BTC-KRW" if venue in ("upbit", "bithumb") else "BTC-USDT",
                    state="live",
                )
                == 1
            )
        assert value(found, "radar_up", radar="radar") == 1
        premium = value(
            found,
            "radar_kimchi_premium_ratio",
            radar="radar",
            base="BTC",
            krw_exchange="upbit",
            usdt_exchange="binance",
        )
        assert -0.01 <= premium <= 0.05  # the feed's premium (journal.demo.feed)
        assert found["radar_observe_latency_seconds"].type == "histogram"
        assert (
            value(
                found, "radar_book_updates_total", radar="radar", venue="upbit", symbol="USDT-KRW"
            )
            > 0
        )
        stdout, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 0, stderr
    assert "every book written was read by the radar and archived" in stdout


def test_the_demo_with_a_busy_metrics_port_starts_nothing(tmp_path: Path) -> None:
    """One line, exit status 2, before any process or run directory is made."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*demo_argv(tmp_path / "demo", seconds=1), "--metrics-listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"demo: --metrics-listen 127.0.0.1:{port}: ") and "in use" in line
    assert list((tmp_path / "demo").iterdir()) == []
