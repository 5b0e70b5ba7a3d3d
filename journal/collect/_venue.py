"""One venue of a live collector: its journal, its metrics file, its connections.

Each venue runs in its own asyncio task with its own HTTP session, so a venue that
hangs, refuses or floods us never stalls another: the event loop is shared, and
every await in a venue's code has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from journal._feed_metrics import FeedMetricsWriter, FeedState
from journal.collect._connection import Connection
from journal.collect._ratelog import RateLimitedLog
from journal.collect._rest import RestGate
from journal.collect._stream import Stream
from journal.collect._venues import Venue
from journal.collector import BookPublisher

log = logging.getLogger("journal.collect")


@dataclass(frozen=True, slots=True)
class VenuePlan:
    """What to collect from one venue, and where to."""

    venue: Venue
    symbols: tuple[str, ...]  # journal spelling, BTC-USDT
    journal: Path
    depth: int
    ws_url: str
    rest_url: str | None


class VenueCollector:
    """Opens the venue's journal and metrics at construction (so a journal that cannot
    be written is known before anything connects); ``run`` until cancelled."""

    def __init__(self, plan: VenuePlan, lines: RateLimitedLog) -> None:
        self.plan = plan
        self.lines = lines
        self.publisher = BookPublisher(plan.journal, max_levels=plan.depth)
        try:
            self.metrics = FeedMetricsWriter(
                self.publisher.path, venue=plan.venue.name, symbols=list(plan.symbols)
            )
        except BaseException:
            self.publisher.close()
            raise
        venue = plan.venue
        self.streams = [
            Stream(
                venue.name,
                symbol,
                venue.venue_symbol(symbol),
                venue.builder(symbol, plan.depth),
                self.publisher,
                self.metrics.stream(symbol),
                lines,
            )
            for symbol in plan.symbols
        ]
        self.connections: list[Connection] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self.plan.venue.name

    async def run(self) -> None:
        """Connections for all the venue's streams, as few as its limits allow."""
        plan, venue = self.plan, self.plan.venue
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=venue.connect_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            rest = (
                RestGate(session, venue.rest_weight_per_minute)
                if plan.rest_url is not None
                else None
            )
            size = venue.streams_per_connection
            groups = [self.streams[i : i + size] for i in range(0, len(self.streams), size)]
            self.connections = [
                Connection(
                    venue,
                    venue.protocol(),
                    group,
                    plan.ws_url,
                    plan.rest_url,
                    rest,
                    session,
                    plan.depth,
                    self.lines,
                    venue.name if len(groups) == 1 else f"{venue.name}#{n}",
                )
                for n, group in enumerate(groups, 1)
            ]
            log.info(
                "%s: collecting %d symbol%s (%s) into %s over %d connection%s to %s",
                venue.name,
                len(self.streams),
                "" if len(self.streams) == 1 else "s",
                ", ".join(plan.symbols),
                self.publisher.path,
                len(groups),
                "" if len(groups) == 1 else "s",
                plan.ws_url,
            )
            await asyncio.gather(*(connection.run() for connection in self.connections))

    def close(self) -> None:
        """Seal the journal (the compactor takes the last segment) and close the metrics;
        a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        for stream in self.streams:
            stream.set_state(FeedState.STOPPED)
        try:
            self.publisher.close(seal=True)
        finally:
            self.metrics.close()
