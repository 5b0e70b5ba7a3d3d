"""Replays capture files through one builder per stream, in the order of reception.

The files are named as cryptofeed records them, ``EXCHANGE.ws.N.M`` (a websocket
connection) and ``EXCHANGE.http.N.M`` (its REST calls). All given files are merged by
receive time, each kept in its own order, so a Binance stream meets its REST snapshot
exactly when the collector did: diffs received before wait for it, and a snapshot
answers a gap only if it was received after the gap. A REST snapshot goes to the
stream its URL names (``depth?symbol=NKNUSDT``) on the same exchange.
"""

from __future__ import annotations

import heapq
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journal.feeds import _binance, _bybit_legacy, _upbit
from journal.feeds._book import BookBuilder, StreamStats, TopOfBook
from journal.feeds._capture import CaptureLine, LineKind, read_capture
from journal.feeds._errors import CaptureFormatError, FeedError, MessageError
from journal.feeds._route import Route
from journal.symbols import UnknownNameError, normalize, normalize_exchange


@dataclass(frozen=True, slots=True)
class Venue:
    """How to read one exchange's captures."""

    builder: Callable[[str], BookBuilder]  # from the BASE-QUOTE symbol
    route: Callable[[Any], Route]  # a received message
    route_rest: Callable[[str, Any], Route] | None  # a REST response (URL, body), if used


VENUES: dict[str, Venue] = {
    "binance": Venue(_binance.BinanceSpotBook, _binance.route, _binance.route_rest),
    "binance-futures": Venue(_binance.BinanceFuturesBook, _binance.route, _binance.route_rest),
    "upbit": Venue(_upbit.UpbitBook, _upbit.route, None),
    # The captures are of Bybit's retired v2 API: the legacy builder reads them.
    "bybit": Venue(_bybit_legacy.BybitLegacyBook, _bybit_legacy.route, None),
}

_CAPTURE_NAME = re.compile(r"(?P<exchange>\w+)\.(?P<transport>ws|http)\.\d+\.\d+")


@dataclass(frozen=True, slots=True)
class CaptureFile:
    path: str
    exchange: str  # as the journal names it: binance-futures
    transport: str  # "ws" or "http"

    @classmethod
    def named(cls, path: str | os.PathLike[str]) -> CaptureFile:
        """The exchange and transport of a capture, from its file name."""
        name = Path(path).name
        match = _CAPTURE_NAME.fullmatch(name)
        if match is None:
            raise FeedError(
                f"{path}: not a capture file name; expected EXCHANGE.ws.N.M or "
                "EXCHANGE.http.N.M as cryptofeed records them (BINANCE.ws.1.0)"
            )
        try:
            exchange = normalize_exchange(match["exchange"])
        except UnknownNameError as error:
            raise FeedError(f"{path}: {error}") from None
        if exchange not in VENUES:
            raise FeedError(
                f"{path}: no order-book builder for {exchange}; there are: {', '.join(VENUES)}"
            )
        if match["transport"] == "http" and VENUES[exchange].route_rest is None:
            raise FeedError(f"{path}: {exchange} books do not use REST snapshots; leave it out")
        return cls(os.fspath(path), exchange, match["transport"])


class CaptureReplay:
    """The books that capture files make, and what each stream's builder did.

    ``books()`` replays the files once; afterwards ``streams`` and ``ignored`` hold
    the counters. CaptureFormatError names the file and line of a bad message.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.files = [CaptureFile.named(path) for path in paths]
        _check_files(self.files)
        self._builders: dict[tuple[str, str], BookBuilder] = {}
        self.ignored: Counter[tuple[str, str]] = Counter()  # (exchange, type) -> messages

    @property
    def streams(self) -> list[StreamStats]:
        """Per stream, sorted by exchange and symbol."""
        return sorted(
            (builder.stats for builder in self._builders.values()),
            key=lambda stats: (stats.exchange, stats.symbol),
        )

    def books(self) -> Iterator[tuple[CaptureLine, TopOfBook]]:
        """Each published book, with the line that made it known."""
        lines = heapq.merge(
            *(_lines_of(capture) for capture in self.files), key=lambda item: item[1].received_ns
        )
        for exchange, line in lines:
            try:
                books = self._replay(exchange, line)
            except MessageError as error:
                raise CaptureFormatError(line.path, line.line_number, str(error)) from None
            for book in books:
                yield line, book

    def _replay(self, exchange: str, line: CaptureLine) -> list[TopOfBook]:
        venue = VENUES[exchange]
        if line.kind is LineKind.RECEIVED:
            route = venue.route(line.payload)
            if route.symbol is None:
                self.ignored[exchange, route.kind] += 1
                return []
            return self._builder(exchange, route.symbol).on_message(route.body, line.received_ns)
        if line.kind is LineKind.RESPONSE:
            if venue.route_rest is None or line.url is None:
                raise MessageError(f"a REST response, but {exchange} books use no REST snapshot")
            route = venue.route_rest(line.url, line.payload)
            if route.symbol is None:
                self.ignored[exchange, route.kind] += 1
                return []
            builder = self._builder(exchange, route.symbol)
            assert isinstance(builder, _binance.BinanceDiffBook)
            return builder.on_snapshot(route.body, line.received_ns)
        return []  # a connection opened, a subscription sent: no market data

    def _builder(self, exchange: str, venue_symbol: str) -> BookBuilder:
        """The stream's builder; streams are told apart by their journal names, so
        that ``NKNUSDT`` and ``nknusdt`` are one stream."""
        try:
            symbol = normalize(exchange, venue_symbol)[1]
        except UnknownNameError as error:
            raise MessageError(str(error)) from None
        builder = self._builders.get((exchange, symbol))
        if builder is None:
            builder = self._builders[exchange, symbol] = VENUES[exchange].builder(symbol)
        return builder


def _lines_of(capture: CaptureFile) -> Iterator[tuple[str, CaptureLine]]:
    for line in read_capture(capture.path):
        yield capture.exchange, line


def _check_files(files: list[CaptureFile]) -> None:
    """Each file once, and the REST snapshots of every exchange that needs them."""
    seen: set[str] = set()
    for capture in files:
        real = os.path.realpath(capture.path)
        if real in seen:
            raise FeedError(f"{capture.path}: given twice; its messages would be replayed twice")
        seen.add(real)
    with_snapshots = {capture.exchange for capture in files if capture.transport == "http"}
    for capture in files:
        if VENUES[capture.exchange].route_rest and capture.exchange not in with_snapshots:
            prefix = Path(capture.path).name.partition(".")[0]
            raise FeedError(
                f"{capture.path}: {capture.exchange} diffs sync on REST depth snapshots; "
                f"give the capture's {prefix}.http.* file too"
            )
