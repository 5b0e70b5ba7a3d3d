"""Logging that a failing world cannot flood: the first few of each kind, then counts.

A venue that sends a malformed message every 100 ms, or refuses a reconnect every
second for an hour, must leave a readable log: each kind of problem (a key such as
``("binance", "malformed")``) is logged in full ``first`` times, then summed and
logged at most once per ``interval_s`` with the count and the latest text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Kind:
    logged: int = 0
    unlogged: int = 0
    latest: str = ""
    last_summary: float = field(default_factory=time.monotonic)


class RateLimitedLog:
    """``log(key, level, text)``: in full for the first ``first`` of a key, then a
    summary line per key at most every ``interval_s``."""

    def __init__(self, logger: logging.Logger, first: int = 3, interval_s: float = 30.0) -> None:
        self.logger = logger
        self.first = first
        self.interval_s = interval_s
        self._kinds: dict[Hashable, _Kind] = {}

    def log(self, key: Hashable, level: int, text: str) -> None:
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind()
        if kind.logged < self.first:
            kind.logged += 1
            later = (
                f" (more of these: counted, one line every {self.interval_s:g} s)"
                if kind.logged == self.first
                else ""
            )
            self.logger.log(level, "%s%s", text, later)
            return
        kind.unlogged += 1
        kind.latest = text
        now = time.monotonic()
        if now - kind.last_summary >= self.interval_s:
            self._summarise(kind, level, now)

    def flush(self) -> None:
        """Log what is left unlogged (at stop)."""
        now = time.monotonic()
        for kind in self._kinds.values():
            self._summarise(kind, logging.WARNING, now)

    def _summarise(self, kind: _Kind, level: int, now: float) -> None:
        if kind.unlogged:
            self.logger.log(
                level,
                "%d more like this in %.0f s; latest: %s",
                kind.unlogged,
                now - kind.last_summary,
                kind.latest,
            )
            kind.unlogged = 0
        kind.last_summary = now
