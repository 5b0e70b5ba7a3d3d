"""One stream (a venue's symbol) of a live collector: its builder, its shared-memory
counters and the journal its books go to.

``on_book`` is the hot path of every order-book message: the builder applies it, each
book it publishes goes to the venue's BookPublisher, and the counters are copied to
the stream's metrics slot. It never raises: a message the builder cannot read is
counted as an error (the builder has already dropped its book if the message may have
changed it) and the next message goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from journal._feed_metrics import FeedCounter, FeedState, StreamMetrics
from journal.collect._backoff import Backoff
from journal.collect._ratelog import RateLimitedLog
from journal.collector import BookPublisher
from journal.feeds import BookBuilder, FeedError

log = logging.getLogger("journal.collect")

_BOOKS = FeedCounter.BOOKS
_COUNTS = (
    (FeedCounter.GAPS, "gaps"),
    (FeedCounter.RESYNCS, "resyncs"),
    (FeedCounter.CROSSED, "crossed"),
    (FeedCounter.STALE, "stale"),
    (FeedCounter.SNAPSHOTS, "snapshots"),
)


class Stream:
    """A symbol of a venue, as journaled (``BTC-USDT``) and as the venue spells it."""

    __slots__ = (
        "_publish",
        "_rare",
        "builder",
        "exchange",
        "last_ns",
        "lines",
        "metrics",
        "resync_attempts",
        "resync_sent_at",
        "snapshot_at",
        "snapshot_backoff",
        "snapshot_task",
        "state",
        "symbol",
        "venue_symbol",
    )

    def __init__(
        self,
        exchange: str,
        symbol: str,
        venue_symbol: str,
        builder: BookBuilder,
        publisher: BookPublisher,
        metrics: StreamMetrics,
        lines: RateLimitedLog,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.venue_symbol = venue_symbol
        self.builder = builder
        self.metrics = metrics
        self.lines = lines
        self._publish: Callable[[dict[str, Any]], object] = publisher.publish
        self._rare = 0  # gaps + resyncs + crossed + stale + snapshots, last copied
        self.state = FeedState.CONNECTING  # from the start: a collector is about to connect
        self.snapshot_task: asyncio.Task[None] | None = None
        self.resync_sent_at = -1e9  # time.monotonic() of the last resubscription
        self.resync_attempts = 0  # resubscriptions since the book was last synced
        self.snapshot_at = -1e9  # time.monotonic() of the last snapshot request
        self.snapshot_backoff = Backoff(base_s=0.25, cap_s=30.0)
        self.last_ns = 0  # when the last message of the stream arrived
        metrics.set_state(FeedState.CONNECTING)

    def set_state(self, state: FeedState) -> None:
        if state is not self.state:
            self.state = state
            self.metrics.set_state(state)

    def on_book(self, payload: Any, received_ns: int) -> None:
        """One order-book message of this stream, received at ``received_ns``."""
        try:
            books = self.builder.on_message(payload, received_ns)
        except FeedError as error:
            self.metrics.add(FeedCounter.ERRORS)
            self.lines.log(
                (self.exchange, self.symbol, "message"),
                logging.WARNING,
                f"{self.exchange} {self.symbol}: message not applied: {error}",
            )
            books = []
        self._published(books, received_ns)

    def on_snapshot(self, body: Any, received_ns: int) -> None:
        """A REST snapshot (Binance) and the books of the diffs it lets apply."""
        try:
            books = self.builder.on_snapshot(body, received_ns)  # type: ignore[attr-defined]
        except FeedError as error:
            self.metrics.add(FeedCounter.ERRORS)
            self.lines.log(
                (self.exchange, self.symbol, "snapshot"),
                logging.WARNING,
                f"{self.exchange} {self.symbol}: snapshot not usable: {error}",
            )
            books = []
        self._published(books, 0)

    def _published(self, books: list[Any], received_ns: int) -> None:
        exchange_ms = 0
        publish = self._publish
        for top in books:
            if (
                publish(
                    {
                        "exchangename": top.exchange,
                        # The venue's spelling, which the publisher reads unambiguously
                        # (Upbit's BTC-XTZ is XTZ quoted in BTC; XTZ-BTC would not be).
                        "symbol": self.venue_symbol,
                        "timestamp": top.timestamp_ms,
                        "sequence": top.sequence,
                        "bids": top.bids,
                        "asks": top.asks,
                    }
                )
                is None
            ):
                self.metrics.add(FeedCounter.REFUSED)
            exchange_ms = top.timestamp_ms
        metrics = self.metrics
        if received_ns:
            self.last_ns = received_ns
            metrics.message(received_ns, exchange_ms)
        stats = self.builder.stats
        metrics.set(_BOOKS, stats.books)
        rare = stats.gaps + stats.resyncs + stats.crossed + stats.stale + stats.snapshots
        if rare != self._rare:
            self._rare = rare
            for counter, name in _COUNTS:
                metrics.set(counter, getattr(stats, name))
        if self.state is FeedState.LIVE or self.state is FeedState.SYNCING:
            synced = self.builder.synced
            if synced and self.state is FeedState.SYNCING:
                self.set_state(FeedState.LIVE)
                self.resync_attempts = 0
                self.lines.log(
                    (self.exchange, self.symbol, "live"),
                    logging.INFO,
                    f"{self.exchange} {self.symbol}: live (book synced)",
                )
            elif not synced and self.state is FeedState.LIVE:
                self.set_state(FeedState.SYNCING)
                self.lines.log(
                    (self.exchange, self.symbol, "dropped"),
                    logging.WARNING,
                    f"{self.exchange} {self.symbol}: book dropped (gaps {stats.gaps}, "
                    f"crossed {stats.crossed}): resyncing",
                )

    def drop(self) -> None:
        """The connection is gone: the book goes, and so does any snapshot request."""
        if self.snapshot_task is not None:
            self.snapshot_task.cancel()
            self.snapshot_task = None
        self.builder.reset()
        self.resync_sent_at = -1e9
        self.resync_attempts = 0
