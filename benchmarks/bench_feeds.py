"""Feed throughput: messages/s on one core through parse + book update + publish, the
collector's own path against cryptofeed's handlers on the same recorded messages, in
one run; then where a book's time goes. Tables, then ratios measured in that run.

    .venv/bin/python benchmarks/bench_feeds.py [--quick]

The messages are real, recorded by cryptofeed (tests/data/exchange-captures):

- **Binance diffs**: the ``depthUpdate`` messages of ``BINANCE.ws.1.0`` that follow
  the REST snapshots of ``BINANCE.http.0.0`` (4 markets, diffs of 1-40 levels on
  books of up to 1000 levels a side), as the websocket delivered them (text). They are
  replayed in passes: before each pass every book is dropped and synced on its snapshot
  again (not timed), so that every pass applies the same diffs to the same books.
- **Upbit full books**: the ``orderbook`` messages of ``UPBIT.ws.62.0`` (SIMPLE
  format, 15 levels a side, 5 markets), binary frames as Upbit sends them, in passes.

Cases, each over the same messages, one run of each per repeat (interleaved, so that a
slow spell of a shared machine hits every case alike), each publishing into its own
new journal in /dev/shm (segments of 64 MiB, rolls included):

1. ``collector``: ``journal collect``'s per-message path itself,
   ``journal.collect._connection.Connection._on_data``: the receive time, ``orjson.loads``,
   the venue protocol's ``classify``, the stream's builder (``journal.feeds``:
   BinanceSpotBook, UpbitBook) and its ``BookPublisher.publish`` of the top 10, and the
   stream's shared-memory counters. ``collector, json``: the same with ``json.loads``.
2. ``cryptofeed``: cryptofeed's own ``Feed.message_handler`` (Binance, Upbit) on the
   same messages: yapic ``json.loads`` with Decimal prices, its ``OrderBook`` of
   Decimals, its callback; ``no-op`` with a callback that does nothing, ``+ journal``
   with ``journal.collect.cryptofeed.JournalBookCallback`` publishing the top 10.
3. The stages of the collector's path, each timed alone over the same messages: parse
   (orjson, json), classify, book (``builder.on_message``), publish
   (``BookPublisher.publish`` of the books the builder made, as the stream hands them);
   the rest of the full path (counters, calls) is the full time less the stages. And
   cryptofeed's: its parse, its book (the no-op handler less its parse), the journal
   callback (``+ journal`` less ``no-op``).

Before timing, one pass of each path is checked: the two journals hold the same books
(levels, exchange time; Binance update ids), so both did the same work.
Everything is created under one directory in /dev/shm, removed at the end whatever
happens (SIGTERM included).

The captures come from cryptofeed's sample data: "This product includes software
developed by Bryant Moscon (http://www.bryantmoscon.com/)".
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _machine import commit, cpu_model, load, timer_overhead_ns
from cryptofeed.defines import L2_BOOK
from cryptofeed.exchanges import Binance, Upbit
from cryptofeed.symbols import Symbols
from yapic import json as yapic_json

import journal
from journal.collect import _connection
from journal.collect._connection import Connection
from journal.collect._ratelog import RateLimitedLog
from journal.collect._venue import VenueCollector, VenuePlan
from journal.collect._venues import VENUES
from journal.collect.cryptofeed import JournalBookCallback
from journal.collector import BookPublisher

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "data" / "exchange-captures"
SHM = Path("/dev/shm")
DEPTH = 10

# The captures' markets: (journal symbol, cryptofeed's symbol, the venue's own spelling).
BINANCE_MARKETS = {
    "NKNUSDT": ("NKN", "USDT"),
    "BLZETH": ("BLZ", "ETH"),
    "LRCBTC": ("LRC", "BTC"),
    "RUNEEUR": ("RUNE", "EUR"),
}
UPBIT_MARKETS = ["KRW-LAMB", "KRW-WAVES", "BTC-XTZ", "BTC-ITAM", "BTC-PAX"]


@dataclass(frozen=True)
class Settings:
    repeats: int  # interleaved repeats of every case
    messages: int  # at least this many messages per case and repeat (whole passes)


DEFAULT = Settings(5, 60_000)
QUICK = Settings(3, 8_000)


# -- the recorded messages ---------------------------------------------------------------


def capture_lines(name: str) -> list[tuple[str | None, float, str]]:
    """``(url, seconds, text)`` of each received message or REST response of a capture;
    Upbit's bytes literals unwrapped to their text."""
    found = []
    with open(CAPTURES / name, encoding="utf-8") as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line or " <-" in line.split(": ", 1)[0]:
                continue  # empty, a connection opened, a message sent
            head, _, text = line.partition(": ")
            url, _, seconds = head.rpartition(" -> ")
            if text.startswith(("b'", 'b"')):
                text = ast.literal_eval(text).decode()
            found.append((url or None, float(seconds), text))
    return found


@dataclass
class Feed:
    """One venue's recorded messages and what syncing its books takes."""

    venue: str  # journal.collect's venue
    symbols: list[str]  # journal spelling
    raw: list[bytes | str]  # what the collector's websocket hands on
    texts: list[str]  # what cryptofeed's connection hands on
    snapshots: dict[str, tuple[str, str]] = field(default_factory=dict)  # venue symbol ->
    # (REST URL, body)

    @property
    def count(self) -> int:
        return len(self.raw)


def binance_feed() -> Feed:
    """The diffs that follow each market's snapshot (u > lastUpdateId), in capture order."""
    snapshots = {}
    for url, _, body in capture_lines("BINANCE.http.0.0"):
        assert url is not None
        symbol = url.split("symbol=")[1].split("&")[0]
        snapshots[symbol] = (url, body)
    last_ids = {symbol: json.loads(body)["lastUpdateId"] for symbol, (_, body) in snapshots.items()}
    texts = []
    for _, _, text in capture_lines("BINANCE.ws.1.0"):
        message = json.loads(text)
        data = message.get("data", {})
        if data.get("e") == "depthUpdate" and data["u"] > last_ids[data["s"]]:
            texts.append(text)
    symbols = [f"{base}-{quote}" for base, quote in BINANCE_MARKETS.values()]
    return Feed("binance", symbols, list(texts), texts, snapshots)


def upbit_feed() -> Feed:
    texts = [
        text for _, _, text in capture_lines("UPBIT.ws.62.0") if '"ty":"orderbook"' in text[:20]
    ]
    symbols = [f"{code.split('-')[1]}-{code.split('-')[0]}" for code in UPBIT_MARKETS]
    return Feed("upbit", symbols, [text.encode() for text in texts], texts)


# -- the collector's path ----------------------------------------------------------------


class CollectorPath:
    """``journal collect``'s own objects for one venue: its VenueCollector (journal,
    metrics, streams) and a Connection, whose ``_on_data`` is the per-message path."""

    def __init__(self, feed: Feed, journal_path: Path) -> None:
        venue = VENUES[feed.venue]
        plan = VenuePlan(
            venue, tuple(feed.symbols), journal_path, DEPTH, venue.ws_url, venue.rest_url
        )
        self.lines = RateLimitedLog(logging.getLogger("bench_feeds"), first=3)
        self.collector = VenueCollector(plan, self.lines)
        self.connection = Connection(
            venue,
            venue.protocol(),
            self.collector.streams,
            venue.ws_url,
            None,  # no REST: the bench resyncs the books itself, between passes
            None,
            None,  # type: ignore[arg-type]  # no session: nothing is connected
            DEPTH,
            self.lines,
            venue.name,
        )
        self.connection._subscribed = True
        self.feed = feed
        self.snapshots = {
            symbol: orjson.loads(body) for symbol, (_, body) in feed.snapshots.items()
        }
        self.streams = self.connection.streams  # venue symbol -> Stream

    def resync(self) -> None:
        """Every book dropped and synced again on its snapshot (Binance); not timed."""
        for symbol, stream in self.streams.items():
            if symbol in self.snapshots:
                stream.builder.reset()
                stream.on_snapshot(self.snapshots[symbol], time.time_ns())

    def run_pass(self) -> int:
        """One pass of the messages through ``Connection._on_data``; ns taken."""
        on_data = self.connection._on_data
        raw = self.feed.raw
        self.resync()
        clock = time.perf_counter_ns
        start = clock()
        for data in raw:
            on_data(data)
        return clock() - start

    @property
    def publisher(self) -> BookPublisher:
        return self.collector.publisher

    def close(self) -> None:
        self.collector.close()


# -- cryptofeed's path -------------------------------------------------------------------


async def nothing(book: Any, receipt_timestamp: float) -> None:
    """cryptofeed's callback doing nothing: its handler's own cost."""


def cryptofeed_symbols(feed: Feed) -> None:
    """cryptofeed's symbol table for the venue, as its REST call would fill it (offline)."""
    if feed.venue == "binance":
        info = {
            "symbols": [
                {
                    "symbol": symbol,
                    "baseAsset": base,
                    "quoteAsset": quote,
                    "status": "TRADING",
                    "filters": [{"tickSize": "0.00000001"}],
                }
                for symbol, (base, quote) in BINANCE_MARKETS.items()
            ]
        }
        Symbols.set("BINANCE", *Binance._parse_symbol_data(info))
    else:
        Symbols.set("UPBIT", *Upbit._parse_symbol_data([{"market": m} for m in UPBIT_MARKETS]))


class CryptofeedPath:
    """cryptofeed's Feed for the venue, its message handler fed the same messages, its
    snapshot requests answered with the recorded REST bodies."""

    def __init__(self, feed: Feed, callback: Callable[[Any, float], Awaitable[None]]) -> None:
        cryptofeed_symbols(feed)
        symbols = [
            f"{base}-{quote}"
            for base, quote in (
                BINANCE_MARKETS.values()
                if feed.venue == "binance"
                else [(m.split("-")[1], m.split("-")[0]) for m in UPBIT_MARKETS]
            )
        ]
        kind = Binance if feed.venue == "binance" else Upbit
        self.handler = kind(
            symbols=symbols, channels=[L2_BOOK], callbacks={L2_BOOK: callback}, config={}
        )
        bodies = {url: body for url, body in feed.snapshots.values()}

        async def recorded(address: str, **_: Any) -> str:
            return bodies[address]

        self.handler.http_conn.read = recorded  # an instance attribute: this feed only
        self.feed = feed

    async def resync(self) -> None:
        """cryptofeed's books dropped and fetched again (Binance's REST path), not timed."""
        if self.feed.venue == "binance":
            self.handler._reset()
            for symbol in BINANCE_MARKETS:
                await self.handler._snapshot(symbol)

    async def run_pass(self) -> int:
        handle = self.handler.message_handler
        texts = self.feed.texts
        await self.resync()
        clock, now = time.perf_counter_ns, time.time
        start = clock()
        for text in texts:
            await handle(text, None, now())
        return clock() - start


# -- the stages, each alone --------------------------------------------------------------


class Stages:
    """The collector's path cut into its stages, each run over every message of a pass;
    the inputs of a stage are the outputs of the one before, made once."""

    def __init__(self, feed: Feed, journal_path: Path) -> None:
        self.path = CollectorPath(feed, journal_path)
        self.feed = feed
        self.protocol = self.path.connection.protocol
        self.parsed = [orjson.loads(data) for data in feed.raw]
        self.routed = []
        for message in self.parsed:
            _, symbol, payload = self.protocol.classify(message)
            self.routed.append((self.path.streams[symbol].builder, payload))
        self.path.resync()
        self.books = [builder.on_message(payload, 1) for builder, payload in self.routed]

    def parse(self, loads: Callable[[Any], Any]) -> int:
        raw = self.feed.raw
        clock = time.perf_counter_ns
        start = clock()
        for data in raw:
            loads(data)
        return clock() - start

    def classify(self) -> int:
        classify = self.protocol.classify
        parsed = self.parsed
        clock = time.perf_counter_ns
        start = clock()
        for message in parsed:
            classify(message)
        return clock() - start

    def book(self) -> int:
        routed = self.routed
        self.path.resync()
        clock, now = time.perf_counter_ns, time.time_ns
        start = clock()
        for builder, payload in routed:
            builder.on_message(payload, now())
        return clock() - start

    def publish(self) -> int:
        """The books as journal.collect._stream.Stream hands them to the publisher."""
        publish = self.path.publisher.publish
        books = self.books
        clock = time.perf_counter_ns
        start = clock()
        for made in books:
            for top in made:
                publish(
                    {
                        "exchangename": top.exchange,
                        "symbol": top.symbol,
                        "timestamp": top.timestamp_ms,
                        "sequence": top.sequence,
                        "bids": top.bids,
                        "asks": top.asks,
                    }
                )
        return clock() - start

    def cryptofeed_parse(self) -> int:
        texts = self.feed.texts
        loads = yapic_json.loads
        clock = time.perf_counter_ns
        start = clock()
        for text in texts:
            loads(text, parse_float=Decimal)
        return clock() - start

    def close(self) -> None:
        self.path.close()


# -- checking both paths did the same work ----------------------------------------------


def records(path: Path) -> list[journal.OrderBookRecord]:
    with journal.Reader(path, start="beginning") as reader:
        return list(reader.available())


async def check_same_books(feed: Feed, base: Path) -> str:
    """One pass of each path into new journals; their books must be the same."""
    ours = CollectorPath(feed, base / f"check-{feed.venue}-collector")
    try:
        ours.run_pass()
        stats = ours.publisher.stats
        if stats.published != feed.count or stats.refused_total:
            raise RuntimeError(
                f"{feed.venue}: the collector published {stats.published} books of "
                f"{feed.count} messages: {stats}"
            )
    finally:
        ours.close()
    callback = JournalBookCallback(base / f"check-{feed.venue}-cryptofeed", depth=DEPTH)
    try:
        theirs = CryptofeedPath(feed, callback)
        await theirs.run_pass()
        got = callback.stats
        if got.refused_total:
            raise RuntimeError(f"{feed.venue}: cryptofeed's books refused: {got}")
    finally:
        callback.close()
    mine = records(base / f"check-{feed.venue}-collector")
    # cryptofeed also publishes each REST snapshot (no exchange time): not a diff's book.
    its = [r for r in records(base / f"check-{feed.venue}-cryptofeed" / feed.venue)]
    its = its[len(feed.snapshots) :]
    if len(mine) != len(its):
        raise RuntimeError(f"{feed.venue}: {len(mine)} books against cryptofeed's {len(its)}")
    names: set[tuple[str, str]] = set()
    for n, (a, b) in enumerate(zip(mine, its, strict=True)):
        same = (
            a.exchange_name == b.exchange_name
            and a.timestamp == b.timestamp
            and np.array_equal(a.bids, b.bids)
            and np.array_equal(a.asks, b.asks)
            and (feed.venue != "binance" or a.sequence == b.sequence)
        )
        if not same:
            raise RuntimeError(f"{feed.venue}: book {n} differs:\n  {a}\n  {b}")
        if a.symbol != b.symbol:
            names.add((a.symbol, b.symbol))
    found = f"{len(mine)} books with the same levels and times"
    if names:  # reported, not hidden: the two name a market differently
        pairs = ", ".join(f"{x} against {y}" for x, y in sorted(names))
        found += f"; NAMED DIFFERENTLY: collector {pairs} (cryptofeed's)"
    return found


# -- the runs ----------------------------------------------------------------------------


@dataclass
class Results:
    """µs per message of each case, one value per repeat."""

    per_message: dict[str, list[float]] = field(default_factory=dict)

    def add(self, case: str, ns: int, messages: int) -> None:
        self.per_message.setdefault(case, []).append(ns / messages / 1e3)

    def median(self, case: str) -> float:
        return statistics.median(self.per_message[case])


async def bench_feed(feed: Feed, base: Path, s: Settings) -> Results:
    """Every case over ``passes`` passes of the feed's messages, interleaved per repeat."""
    passes = max(1, -(-s.messages // feed.count))
    messages = passes * feed.count
    results = Results()
    original_loads = _connection._loads
    for repeat in range(s.repeats + 1):  # the first round warms up, not counted
        cases: list[tuple[str, Callable[[Path], Awaitable[int]]]] = []

        async def collector(path: Path, loads: Callable[[Any], Any]) -> int:
            ours = CollectorPath(feed, path)
            _connection._loads = loads  # what Connection._on_data parses with
            try:
                ours.run_pass()  # warm: shapes, names
                gc.collect()
                taken = sum(ours.run_pass() for _ in range(passes))
                stats = ours.publisher.stats
                if stats.published != (passes + 1) * feed.count or stats.refused_total:
                    raise RuntimeError(f"{feed.venue}: the collector's books: {stats}")
                return taken
            finally:
                _connection._loads = original_loads
                ours.close()

        async def cryptofeed(path: Path, journaled: bool) -> int:
            callback = JournalBookCallback(path, depth=DEPTH) if journaled else None
            try:
                theirs = CryptofeedPath(feed, callback or nothing)
                await theirs.run_pass()
                gc.collect()
                taken = 0
                for _ in range(passes):
                    taken += await theirs.run_pass()
                if callback is not None and callback.stats.refused_total:
                    raise RuntimeError(f"{feed.venue}: cryptofeed's books: {callback.stats}")
                return taken
            finally:
                if callback is not None:
                    callback.close()

        async def stage(path: Path, name: str) -> int:
            stages = Stages(feed, path)
            try:
                run: Callable[[], int] = {
                    "parse orjson": lambda: stages.parse(orjson.loads),
                    "parse json": lambda: stages.parse(json.loads),
                    "classify": stages.classify,
                    "book": stages.book,
                    "publish": stages.publish,
                    "cryptofeed parse": stages.cryptofeed_parse,
                }[name]
                run()
                gc.collect()
                return sum(run() for _ in range(passes))
            finally:
                stages.close()

        cases = [
            ("collector", lambda p: collector(p, orjson.loads)),
            ("collector, json", lambda p: collector(p, json.loads)),
            ("cryptofeed no-op", lambda p: cryptofeed(p, False)),
            ("cryptofeed + journal", lambda p: cryptofeed(p, True)),
        ]
        for name in ("parse orjson", "parse json", "classify", "book", "publish"):
            cases.append((name, lambda p, name=name: stage(p, name)))
        cases.append(("cryptofeed parse", lambda p: stage(p, "cryptofeed parse")))
        for n, (case, run) in enumerate(cases):
            path = base / f"{feed.venue}-{repeat}-{n}"
            try:
                taken = await run(path)
            finally:
                shutil.rmtree(path, ignore_errors=True)
            if repeat:
                results.add(case, taken, messages)
    return results


# -- report ------------------------------------------------------------------------------


def per_round(a: list[float], b: list[float]) -> str:
    """a / b per repeat (the two ran close together), then median [min-max]."""
    values = [x / y for x, y in zip(a, b, strict=True)]
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def report(feed: Feed, results: Results, s: Settings, passes: int) -> None:
    r = results.per_message
    print(
        f"\n{feed.venue}: {feed.count} recorded messages x {passes} passes per case, "
        f"median (best) of {s.repeats} repeats"
    )
    print(f"  {'path':<48} {'µs/message':>10} {'(best)':>8} {'messages/s':>11}")
    labels = {
        "collector": "journal collect: Connection._on_data, orjson",
        "collector, json": "journal collect: Connection._on_data, json",
        "cryptofeed no-op": "cryptofeed: message_handler, no-op callback",
        "cryptofeed + journal": "cryptofeed: message_handler + JournalBookCallback",
    }
    for case, label in labels.items():
        median = results.median(case)
        print(f"  {label:<48} {median:>10.2f} {min(r[case]):>8.2f} {1e6 / median:>11,.0f}")

    full = results.median("collector")
    stages = {
        "parse (orjson.loads)": results.median("parse orjson"),
        "classify (protocol)": results.median("classify"),
        "book (builder.on_message)": results.median("book"),
        "publish (BookPublisher.publish)": results.median("publish"),
    }
    rest = full - sum(stages.values())
    print("  the collector's path by stage, each timed alone (µs/message, share of the full path):")
    for label, value in [*stages.items(), ("the rest: counters, calls (full - stages)", rest)]:
        print(f"    {label:<46} {value:>8.2f}  {value / full:>5.0%}")
    print(
        f"    {'(json.loads instead of orjson)':<46} {results.median('parse json'):>8.2f}  "
        f"{results.median('parse json') / results.median('collector, json'):>5.0%} of the "
        "json path"
    )
    theirs = results.median("cryptofeed + journal")
    parse = results.median("cryptofeed parse")
    handler = results.median("cryptofeed no-op")
    print("  cryptofeed's path + JournalBookCallback (µs/message, share):")
    for label, value in [
        ("parse (yapic json.loads, Decimal)", parse),
        ("book (no-op handler - parse)", handler - parse),
        ("JournalBookCallback (+ journal - no-op)", theirs - handler),
    ]:
        print(f"    {label:<46} {value:>8.2f}  {value / theirs:>5.0%}")

    print("  ratios, same run (per repeat, then median [min-max]):")
    unpublished = [
        a + b + c for a, b, c in zip(r["parse orjson"], r["classify"], r["book"], strict=True)
    ]
    rows = [
        ("cryptofeed + journal / collector", per_round(r["cryptofeed + journal"], r["collector"])),
        ("cryptofeed no-op / collector", per_round(r["cryptofeed no-op"], r["collector"])),
        (
            "cryptofeed no-op / collector's parse+classify+book",
            per_round(r["cryptofeed no-op"], unpublished),
        ),
        ("collector, json / collector (orjson)", per_round(r["collector, json"], r["collector"])),
        ("json.loads / orjson.loads", per_round(r["parse json"], r["parse orjson"])),
        ("cryptofeed's parse / orjson.loads", per_round(r["cryptofeed parse"], r["parse orjson"])),
    ]
    for label, value in rows:
        print(f"    {label:<52} {value}")


def machine() -> str:
    return (
        f"{cpu_model()}, numpy {np.__version__}, orjson {orjson.__version__}, "
        f"cryptofeed {version('cryptofeed')}, order_book {version('order_book')}"
    )


async def run_all(base: Path, s: Settings) -> None:
    for feed in (binance_feed(), upbit_feed()):
        checked = await check_same_books(feed, base)
        print(f"# check, {feed.venue}: one pass of each path journaled: {checked}", flush=True)
        results = await bench_feed(feed, base, s)
        report(feed, results, s, max(1, -(-s.messages // feed.count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 20 s)")
    args = parser.parse_args()
    s = QUICK if args.quick else DEFAULT
    base = SHM / f"bench-feeds-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    print(f"# bench_feeds{' --quick' if args.quick else ''}: {machine()}")
    print(f"# journal at {commit('journal/')}")
    print(f"# load average at start: {load()} (other work on these CPUs skews every figure)")
    print(f"# timer pair: {timer_overhead_ns():.0f} ns (a few per pass, not per message)")
    # SIGTERM (make, a CI timeout) unwinds like Ctrl-C: /dev/shm cleaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        base.mkdir(mode=0o700)
        asyncio.run(run_all(base, s))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"\n# total {time.monotonic() - began:.1f} s; load average at end: {load()}; "
        f"/dev/shm cleaned up: {not base.exists()}"
    )


if __name__ == "__main__":
    main()
