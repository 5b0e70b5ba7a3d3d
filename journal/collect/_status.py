"""What ``journal collect`` says while it runs.

A line per venue when it starts and whenever its state changes (connecting, syncing,
live, reconnecting), written through ``logging`` so that a service manager's journal
keeps them. On a terminal, below them, a live block with one line per venue (state,
books/s, age of the last message, reconnects, gaps) redrawn every second; a feed that
has gone quiet shows its age growing, and turns STALE past the venue's silence limit.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Final, TextIO

from journal._feed_metrics import FeedState
from journal.collect._venue import VenueCollector

REDRAW_S: Final = 1.0
CHECK_S: Final = 0.2

_ORDER: Final = (
    FeedState.BACKOFF,
    FeedState.CONNECTING,
    FeedState.SUBSCRIBING,
    FeedState.SYNCING,
    FeedState.LIVE,
    FeedState.STOPPED,
)


def venue_state(collector: VenueCollector) -> tuple[FeedState, int, int]:
    """The venue's state (its least advanced stream's), streams live, streams."""
    states = [stream.state for stream in collector.streams]
    worst = min(states, key=_ORDER.index)
    return worst, states.count(FeedState.LIVE), len(states)


class StatusBoard(logging.Handler):
    """Event lines (a logging handler) and, on a terminal, the live block under them."""

    def __init__(self, collectors: Sequence[VenueCollector], out: TextIO | None = None) -> None:
        super().__init__(logging.INFO)
        self.collectors = collectors
        self.out = out if out is not None else sys.stderr
        self.live = self.out.isatty()
        self._drawn = 0  # lines of the live block now on the screen
        self._states: dict[str, tuple[FeedState, int, int]] = {}
        self._books: dict[str, tuple[float, int]] = {}
        self._lines: list[str] = []  # the live block, computed at each redraw
        self.setFormatter(logging.Formatter("%(asctime)s collect: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._erase()
            self.out.write(self.format(record) + "\n")
            self._draw()
            self.out.flush()
        except Exception:
            self.handleError(record)

    async def run(self) -> None:
        """Check states every CHECK_S (a line per change), redraw every REDRAW_S."""
        log = logging.getLogger("journal.collect")
        last_draw = 0.0
        while True:
            for collector in self.collectors:
                state = venue_state(collector)
                if self._states.get(collector.name) != state:
                    self._states[collector.name] = state
                    worst, live, total = state
                    log.info(
                        "%s: %s (%d/%d books live)", collector.name, worst.name.lower(), live, total
                    )
            now = time.monotonic()
            if self.live and now - last_draw >= REDRAW_S:
                last_draw = now
                self._lines = self._status_lines(now, time.time_ns())
                self._erase()
                self._draw()
                self.out.flush()
            await asyncio.sleep(CHECK_S)

    def _status_lines(self, now: float, now_ns: int) -> list[str]:
        """One line per venue, books/s over the time since the last redraw, cut to the
        terminal's width (a wrapped line would break the redraw in place)."""
        width = shutil.get_terminal_size().columns - 1
        return [self.status_line(collector, now, now_ns)[:width] for collector in self.collectors]

    def status_line(self, collector: VenueCollector, now: float, now_ns: int) -> str:
        worst, live, total = venue_state(collector)
        books = sum(stream.builder.stats.books for stream in collector.streams)
        before = self._books.get(collector.name, (now, books))
        rate = (books - before[1]) / (now - before[0]) if now > before[0] else 0.0
        self._books[collector.name] = (now, books)
        last_ns = max(stream.last_ns for stream in collector.streams)
        age_s = (now_ns - last_ns) / 1e9 if last_ns else None
        age = "never" if age_s is None else f"{age_s:.1f}s"
        if age_s is not None and age_s > collector.plan.venue.silence_s:
            age += " STALE"
        reconnects = sum(connection.reconnects for connection in collector.connections)
        gaps = sum(stream.builder.stats.gaps for stream in collector.streams)
        return (
            f"  {collector.name:<15} {worst.name.lower():<9} {live:>2}/{total:<2} "
            f"{rate:>5.0f} books/s  last {age:<8} reconn {reconnects:<2} gaps {gaps}"
        )

    def _draw(self) -> None:
        if not self.live or not self._lines:
            return
        self.out.write("\n".join(self._lines) + "\n")
        self._drawn = len(self._lines)

    def _erase(self) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # up to the block's start, clear below
            self._drawn = 0

    def finish(self) -> None:
        """Leave the last live block on the screen, drawn no more."""
        self.live = False
        self._drawn = 0
