"""The demo as a monitored system: its feed keeps a collector's feed metrics in each
venue's journal (as ``journal collect`` does), and ``journal demo --metrics-listen``
serves the whole pipeline's metrics (writers, the radar's reads, feeds, the radar's
own) over HTTP while it runs, scraped here with urllib and read with
prometheus_client's parser."""

from __future__ import annotations

from pathlib import Path

from journal._feed_metrics import FeedState, read_feed_metrics
from journal.demo.feed import MARKETS, VENUES, run_feed
from journal.symbols import normalize


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
