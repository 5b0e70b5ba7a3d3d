"""The collector's hot path: BookPublisher against the raw append, the asyncio.Queue it
replaces and a hand-off thread, in one run: tables, then ratios measured in that run.

    .venv/bin/python benchmarks/bench_collector.py [--quick]

Every case hands on the same 10x10 Binance BTCUSDT book, a dict as
``OrderBookV2.to_dict()`` makes it (venue spelling, levels as ``[price, qty]`` lists):

1. ``Writer.append_orderbook("binance", "BTC-USDT", ...)``: the raw append, names
   already normalised.
2. ``BookPublisher.publish(dict)``: the same append behind the collector's interface
   (the key lookups, the name cache, one more call); its overhead over 1 in µs and %.
   ``json.loads`` of the 10x10 depth message such a book comes in is timed alongside,
   for scale: the collector already pays that per book. Median (and best) of
   interleaved repeats, so that a slow spell hits every case alike.
3. An asyncio loop producing books at 20,000 books/s in bursts of 20 (as websocket
   messages come), with a 1 ms heartbeat task measuring how late the loop runs it.
   Each run hands the books on one way: ``nothing`` (the control), ``asyncio.Queue``
   (``put_nowait`` and a consumer coroutine ``await``-ing ``get``: the hand-off the
   collector used before; on an unbounded queue ``await put`` is the same), ``inline``
   (``publish`` in the loop: what docs/COLLECTOR.md prescribes) and ``thread`` (a
   ``queue.SimpleQueue`` to a thread that publishes: the alternative it rejects). Per
   book: the loop's time handing it on, and the latency from the book in hand to
   delivered (the consumer coroutine has it; committed, for the journal). Modes are
   interleaved, one run of each per round; 16 MiB segments so that rolls are included.
4. The inline publisher again, observed from another process: a ``journal.Reader``
   (``idle="spin"``) child and, if built, the C++ radar (``build/release/radar``,
   ``--idle spin`` and ``--idle futex``) tail the journal and record now -
   ``local_timestamp_ns`` (which the writer stamps just before the commit): the
   latency of the hand-off to another process. A spinning observer needs a CPU of its
   own; a CPU check (two busy processes, 0.5 s, before and after) shows whether it had
   one, since on a busy machine its figures are the scheduler's.

Only the dict is handed on: no mode copies the levels, which a thread or queue
consumer running behind a collector that keeps changing its lists would also need.
Everything is created under one directory in /dev/shm, removed at the end whatever
happens (SIGTERM included); child processes are killed on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from _children import READY_TIMEOUT_S, wait_mapped, wait_ready
from _machine import commit, cpu_check, cpu_model, load, timer_overhead_ns

import journal
from journal.collector import BookPublisher

ROOT = Path(__file__).resolve().parent.parent
RADAR = ROOT / "build" / "release" / "radar"
SHM = Path("/dev/shm")

EXCHANGE = "binance"
SYMBOL = "BTCUSDT"  # as the collector sends it
NORMALISED = "BTC-USDT"  # as the journal stores it
TIMESTAMP_MS = 1_732_000_000_000
FIRST_SEQUENCE = 50_000_000_000  # Binance lastUpdateId-like
# Best first: bids descend, asks ascend on BTCUSDT's 0.01 tick; BTC quantities.
BIDS = [[96_500.00 - 0.01 * i, round(0.00512 * (i + 1) ** 1.5, 5)] for i in range(10)]
ASKS = [[96_500.01 + 0.01 * i, round(0.00431 * (i + 1) ** 1.5, 5)] for i in range(10)]

RATE = 20_000  # books/s produced in the event loop
BURST = 20  # books per wake-up of the producer: one websocket read's worth
HEARTBEAT_S = 0.001
LOOP_SEGMENT_SIZE = 16 * 1024 * 1024  # small enough that a run rolls
WARMUP = 1_000  # books published before a timed run: shapes and names cached
SETTLE_S = 0.2  # after opening a writer (it prepares its next segment in the background)


@dataclass(frozen=True)
class Settings:
    repeats: int  # interleaved repeats of the micro-benchmarks (1, 2)
    micro_books: int  # books per repeat
    rounds: int  # rounds of the event-loop modes (3)
    loop_books: int  # books per event-loop run
    observe_rounds: int  # rounds of the cross-process runs (4)
    observe_books: int


DEFAULT = Settings(7, 50_000, 3, 40_000, 3, 30_000)
QUICK = Settings(3, 10_000, 2, 8_000, 1, 8_000)


def to_dict(index: int) -> dict[str, Any]:
    """What ``OrderBookV2.to_dict()`` returns: a new dict and new top-10 lists each call."""
    return {
        "exchangename": EXCHANGE,
        "symbol": SYMBOL,
        "bids": BIDS[:10],
        "asks": ASKS[:10],
        "timestamp": TIMESTAMP_MS + index // 10,
        "sequence": FIRST_SEQUENCE + index,
    }


def depth_message() -> str:
    """The Binance partial-depth message a 10x10 book comes in (prices as strings)."""
    return json.dumps(
        {
            "lastUpdateId": FIRST_SEQUENCE,
            "bids": [[f"{p:.2f}", f"{q:.8f}"] for p, q in BIDS],
            "asks": [[f"{p:.2f}", f"{q:.8f}"] for p, q in ASKS],
        }
    )


# -- statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Percentiles of one run, in µs."""

    p50: float
    p99: float
    p999: float
    max: float
    count: int


def spread(values_ns: list[int]) -> Spread:
    ordered = sorted(values_ns)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, int(q / 100 * n))] / 1e3

    return Spread(pct(50), pct(99), pct(99.9), ordered[-1] / 1e3, n)


def median_of(spreads: list[Spread], field: str) -> float:
    """The median over rounds of one percentile: one slow round does not move it."""
    return statistics.median(getattr(s, field) for s in spreads)


# -- 1, 2: the append, the publisher, json.loads ----------------------------------------


def run_interleaved(
    cases: dict[str, Callable[[], None]], repeats: int, books: int
) -> dict[str, list[float]]:
    """µs per book of each repeat of each case, one of each per round: a slow spell of a
    shared machine hits every case alike, which keeps the ratios honest."""
    per_book: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            gc.collect()
            start = time.perf_counter_ns()
            run()
            per_book[name].append((time.perf_counter_ns() - start) / books / 1e3)
    return per_book


def first_names(path: Path) -> tuple[str, str]:
    """The names of a journal's first record: both writers must store the same."""
    with journal.Reader(path, start="beginning") as reader:
        record = reader.try_next()
    if record is None:
        raise RuntimeError(f"{path} holds no record")
    return record.exchange_name, record.symbol


def bench_micro(base: Path, s: Settings) -> dict[str, list[float]]:
    """Sections 1 and 2: the same book, raw append against publish (and json.loads)."""
    n = s.micro_books
    book = to_dict(0)
    message = depth_message()
    loads = json.loads
    with (
        journal.Writer(base / "raw") as writer,
        BookPublisher(base / "published") as publisher,
    ):
        time.sleep(SETTLE_S)
        append, publish = writer.append_orderbook, publisher.publish
        sequence = book["sequence"]

        def raw() -> None:
            for _ in range(n):
                append(EXCHANGE, NORMALISED, TIMESTAMP_MS, sequence, BIDS, ASKS)

        def published() -> None:
            for _ in range(n):
                publish(book)

        def parsed() -> None:
            for _ in range(n):
                loads(message)

        cases = {"append": raw, "publish": published, "json.loads": parsed}
        for run in cases.values():  # warm-up: shapes, names, caches
            run()
        per_book = run_interleaved(cases, s.repeats, n)
        stats = publisher.stats
        if stats.refused_total or stats.published != n * (s.repeats + 1):
            raise RuntimeError(f"the publisher refused books: {stats}")
    names = first_names(base / "raw"), first_names(base / "published")
    if names[0] != names[1] or names[0] != (EXCHANGE, NORMALISED):
        raise RuntimeError(f"raw append and publish stored different names: {names}")
    return per_book


# -- 3: the event loop ------------------------------------------------------------------


class HandOff(Protocol):
    """One way of handing a book on from the loop; ``finish`` waits for the last."""

    def hand_on(self, started_ns: int, book: dict[str, Any]) -> object: ...

    async def finish(self) -> list[int] | None: ...


class Nothing:
    """The control: the loop, the books and the heartbeat, nothing handed on."""

    def hand_on(self, started_ns: int, book: dict[str, Any]) -> None:
        pass

    async def finish(self) -> None:
        return None


class AsyncioQueue:
    """The hand-off the collector used: an unbounded asyncio.Queue and a consumer
    coroutine in the same loop, which runs only once the producer awaits."""

    def __init__(self, books: int) -> None:
        self.queue: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.delivered = [0] * books
        self.task = asyncio.create_task(self._consume(books))

    def hand_on(self, started_ns: int, book: dict[str, Any]) -> None:
        self.queue.put_nowait((started_ns, book))

    async def _consume(self, books: int) -> None:
        clock, get, delivered = time.perf_counter_ns, self.queue.get, self.delivered
        for i in range(books):
            started_ns, _ = await get()
            delivered[i] = clock() - started_ns

    async def finish(self) -> list[int]:
        await asyncio.wait_for(self.task, READY_TIMEOUT_S)
        return self.delivered


class Inline:
    """``publish`` in the loop: the book is committed when the call returns, so its
    book-to-committed latency is the loop's time (``finish`` returns None for that)."""

    def __init__(self, publisher: BookPublisher) -> None:
        self.publish = publisher.publish

    def hand_on(self, started_ns: int, book: dict[str, Any]) -> None:
        self.publish(book)

    async def finish(self) -> None:
        return None


class HandOffThread:
    """A SimpleQueue to a thread that publishes: the loop only pays the put, every book
    waits for the thread to get the GIL and run."""

    def __init__(self, publisher: BookPublisher, books: int) -> None:
        self.queue: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self.delivered = [0] * books
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._work, args=(publisher, books), name="publisher", daemon=True
        )
        self.thread.start()

    def hand_on(self, started_ns: int, book: dict[str, Any]) -> None:
        self.queue.put((started_ns, book))

    def _work(self, publisher: BookPublisher, books: int) -> None:
        clock, get, publish, delivered = (
            time.perf_counter_ns,
            self.queue.get,
            publisher.publish,
            self.delivered,
        )
        try:
            for i in range(books):
                started_ns, book = get(timeout=READY_TIMEOUT_S)
                publish(book)
                delivered[i] = clock() - started_ns
        except BaseException as error:  # reported by finish, on the loop's thread
            self.error = error

    async def finish(self) -> list[int]:
        self.thread.join(READY_TIMEOUT_S)  # the loop has nothing else to run by now
        if self.error is not None or self.thread.is_alive():
            raise RuntimeError(f"the publishing thread failed: {self.error!r}")
        return self.delivered


@dataclass(frozen=True)
class LoopRun:
    """One producer run: per-book loop time, book-to-delivered, heartbeat lateness."""

    loop: Spread
    delivered: Spread | None  # None: nothing delivered (the control)
    lateness: Spread
    rate: float  # books/s achieved
    rolls: int  # segment rolls during the run


async def heartbeat(lateness: list[int], stop: asyncio.Event) -> None:
    """Sleep 1 ms, again and again: how late it wakes is how long the loop was busy."""
    clock = time.perf_counter_ns
    period_ns = int(HEARTBEAT_S * 1e9)
    while not stop.is_set():
        began = clock()
        await asyncio.sleep(HEARTBEAT_S)
        lateness.append(clock() - began - period_ns)


async def produce(hand_off: HandOff, loop_ns: list[int]) -> float:
    """Hand on ``len(loop_ns)`` fresh to_dict() books at RATE in bursts of BURST, on an
    absolute schedule (a late wake-up is caught up, the rate holds); books/s."""
    clock, sleep, hand_on = time.perf_counter_ns, asyncio.sleep, hand_off.hand_on
    books = len(loop_ns)
    interval_ns = BURST * 1_000_000_000 // RATE
    start = clock()
    for first in range(0, books, BURST):
        ahead = start + first // BURST * interval_ns - clock()
        await sleep(ahead / 1e9 if ahead > 0 else 0)
        for i in range(first, min(books, first + BURST)):
            book = to_dict(i)
            began = clock()
            hand_on(began, book)
            loop_ns[i] = clock() - began
    return books / ((clock() - start) / 1e9)


async def loop_run(mode: str, books: int, publisher: BookPublisher | None) -> LoopRun:
    """One run of ``mode`` in the running loop, with the heartbeat beside it."""
    hand_off: HandOff
    if mode == "nothing":
        hand_off = Nothing()
    elif mode == "asyncio.Queue":
        hand_off = AsyncioQueue(books)
    elif mode == "inline" and publisher is not None:
        hand_off = Inline(publisher)
    elif mode == "thread" and publisher is not None:
        hand_off = HandOffThread(publisher, books)
    else:
        raise ValueError(f"mode {mode!r} (publisher {publisher!r})")
    segment = publisher.writer.position[0] if publisher is not None else 0
    lateness: list[int] = []
    stop = asyncio.Event()
    beats = asyncio.create_task(heartbeat(lateness, stop))
    loop_ns = [0] * books
    rate = await produce(hand_off, loop_ns)
    stop.set()
    await beats
    delivered = await hand_off.finish()
    if mode == "inline":
        delivered = loop_ns
    rolls = publisher.writer.position[0] - segment if publisher is not None else 0
    return LoopRun(
        spread(loop_ns),
        spread(delivered) if delivered is not None else None,
        spread(lateness),
        rate,
        rolls,
    )


def open_warm_publisher(path: Path) -> BookPublisher:
    """A publisher on a new journal, its shape and names cached by WARMUP books (whose
    sequence numbers come before the timed run's)."""
    publisher = BookPublisher(path, segment_size=LOOP_SEGMENT_SIZE)
    for i in range(-WARMUP, 0):
        publisher.publish(to_dict(i))
    time.sleep(SETTLE_S)
    return publisher


def check_published(publisher: BookPublisher, books: int) -> None:
    stats = publisher.stats
    if stats.refused_total or stats.published != WARMUP + books:
        raise RuntimeError(f"expected {WARMUP + books} books published: {stats}")


def run_mode(base: Path, name: str, mode: str, books: int) -> LoopRun:
    """One event-loop run of ``mode``, on a journal of its own (removed after)."""
    path = base / name
    publisher = None if mode in ("nothing", "asyncio.Queue") else open_warm_publisher(path)
    try:
        gc.collect()
        result = asyncio.run(loop_run(mode, books, publisher))
        if publisher is not None:
            check_published(publisher, books)
        return result
    finally:
        if publisher is not None:
            publisher.close()
        shutil.rmtree(path, ignore_errors=True)


MODES = ("nothing", "asyncio.Queue", "inline", "thread")


def bench_loop(base: Path, s: Settings) -> dict[str, list[LoopRun]]:
    """Section 3: every mode once per round, rounds interleaved."""
    runs: dict[str, list[LoopRun]] = {mode: [] for mode in MODES}
    for round_ in range(s.rounds):
        for mode in MODES:
            runs[mode].append(run_mode(base, f"loop-{round_}-{mode}", mode, s.loop_books))
    return runs


# -- 4: observed from another process --------------------------------------------------


@dataclass(frozen=True)
class Observer:
    """A process tailing the journal: ``kind`` reader (journal.Reader) or radar."""

    kind: str
    idle: str

    @property
    def label(self) -> str:
        name = "journal.Reader" if self.kind == "reader" else "C++ radar"
        return f"{name}, idle {self.idle}"


def observers() -> list[Observer]:
    """The Python reader spinning; the radar spinning (its headline) and on a futex (no
    core burnt: each commit then wakes it), if it is built."""
    found = [Observer("reader", "spin")]
    if RADAR.exists():
        found += [Observer("radar", "spin"), Observer("radar", "futex")]
    return found


def reader_child(path: str, books: int, idle: str) -> None:
    """Tail the journal from its end; now - local_timestamp_ns per book, the sequence
    numbers checked for a gap; a JSON summary on stdout."""
    now = time.time_ns
    latencies = [0] * books
    with journal.Reader(path, start="end", idle=idle) as reader:
        print("ready", flush=True)
        poll = reader.poll
        for i in range(books):
            book = poll(READY_TIMEOUT_S)
            if book is None:
                raise SystemExit(f"reader: timed out after {i} of {books} books")
            latencies[i] = now() - book.local_timestamp_ns
            if book.sequence != FIRST_SEQUENCE + i:
                raise SystemExit(f"reader: book {i} has sequence {book.sequence}")
    print(json.dumps(spread(latencies).__dict__), flush=True)


LATENCY = re.compile(
    r"publish-to-observe latency: p50 ([\d.]+) us, p99 ([\d.]+) us, "
    r"p99\.9 ([\d.]+) us, max ([\d.]+) us \((\d+) books\)"
)


def radar_spread(stderr: str, books: int) -> Spread:
    """The latency line of the radar's summary (its own HDR histogram)."""
    match = LATENCY.search(stderr)
    if match is None:
        raise RuntimeError(f"no latency line in the radar's summary:\n{stderr[-2000:]}")
    p50, p99, p999, worst = (float(match.group(i)) for i in range(1, 5))
    count = int(match.group(5))
    if count != books:
        raise RuntimeError(f"the radar saw {count} of {books} books:\n{stderr[-2000:]}")
    return Spread(p50, p99, p999, worst, count)


def start_observer(observer: Observer, path: Path, books: int) -> subprocess.Popen[str]:
    """A journal.Reader child or the radar, tailing ``path`` from its end, ready."""
    if observer.kind == "reader":
        argv = [sys.executable, __file__, "--reader-child", str(path), str(books), observer.idle]
    else:
        argv = [str(RADAR), "--journal", str(path), "--start", "end", "--quiet",
                "--idle", observer.idle, "--max-records", str(books)]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if observer.kind == "reader":
            wait_ready(proc, "the reader child")
        else:
            wait_mapped(proc, path)
    except BaseException:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a child of ours (by its Popen) if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate(timeout=10)


def observed(proc: subprocess.Popen[str], observer: Observer, books: int) -> Spread:
    """The observer's latency summary once it has read every book."""
    try:
        out, err = proc.communicate(timeout=READY_TIMEOUT_S + books / 1_000)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise RuntimeError(f"{observer.label} timed out") from None
    if proc.returncode:
        raise RuntimeError(f"{observer.label} exited with {proc.returncode}: {err[-2000:]}")
    if observer.kind == "radar":
        return radar_spread(err, books)
    result = Spread(**json.loads(out.strip().splitlines()[-1]))
    if result.count != books:
        raise RuntimeError(f"the reader saw {result.count} of {books} books")
    return result


@dataclass(frozen=True)
class ObservedRun:
    publish: LoopRun  # the inline run, as section 3 measures it
    observed: Spread  # now - local_timestamp_ns in the other process


def observe_run(base: Path, name: str, observer: Observer, books: int) -> ObservedRun:
    """Inline publishing in the loop while ``observer`` tails the journal from another
    process (which it opened at the end, after the warm-up)."""
    path = base / name
    publisher = open_warm_publisher(path)
    proc: subprocess.Popen[str] | None = None
    try:
        proc = start_observer(observer, path, books)
        time.sleep(SETTLE_S)
        gc.collect()
        run = asyncio.run(loop_run("inline", books, publisher))
        check_published(publisher, books)
        return ObservedRun(run, observed(proc, observer, books))
    finally:
        if proc is not None:
            stop(proc)
        publisher.close()
        shutil.rmtree(path, ignore_errors=True)


def bench_observed(base: Path, s: Settings) -> dict[Observer, list[ObservedRun]]:
    """Section 4: one run per observer per round."""
    runs: dict[Observer, list[ObservedRun]] = {observer: [] for observer in observers()}
    for round_ in range(s.observe_rounds):
        for n, (observer, results) in enumerate(runs.items()):
            name = f"observe-{round_}-{n}"
            results.append(observe_run(base, name, observer, s.observe_books))
    return runs


# -- report -----------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.2f}" if value < 10 else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def per_round(a: list[float], b: list[float]) -> str:
    """a / b per round (the two ran close together), then median [min-max]."""
    values = [x / y for x, y in zip(a, b, strict=True)]
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def report_micro(per_book: dict[str, list[float]], s: Settings) -> None:
    print(
        f"1, 2. µs per book: median (best) of {s.repeats} interleaved repeats x {s.micro_books:,}"
    )
    labels = {
        "append": f'Writer.append_orderbook("{EXCHANGE}", "{NORMALISED}", ...)',
        "publish": f'BookPublisher.publish({{"symbol": "{SYMBOL}", ...}})',
        "json.loads": "json.loads of the 10x10 depth message (scale)",
    }
    for name, label in labels.items():
        values = per_book[name]
        print(f"  {label:<58} {statistics.median(values):>6.2f} ({min(values):.2f})")
    append, publish = per_book["append"], per_book["publish"]
    overheads = [p - a for p, a in zip(publish, append, strict=True)]
    over = statistics.median(overheads)
    print(
        f"  publisher overhead over the raw append (per repeat, median): {over:.2f} µs = "
        f"{over / statistics.median(append):.0%}; best against best "
        f"{min(publish) - min(append):.2f} µs"
    )


def report_loop(runs: dict[str, list[LoopRun]], s: Settings, timer_ns: float) -> None:
    print(
        f"\n3. event loop, {RATE:,} books/s in bursts of {BURST}, {s.loop_books:,} books per "
        f"run, median of {s.rounds} rounds; µs (timer pair {timer_ns:.0f} ns included)"
    )
    print(
        f"  {'mode':<15} {'loop/book p50':>13} {'p99':>7}   {'book->delivered p50':>19} "
        f"{'p99':>7}   {'heartbeat late p50':>18} {'p99':>7} {'books/s':>8} {'rolls':>5}"
    )
    for mode, results in runs.items():
        loops = [r.loop for r in results]
        late = [r.lateness for r in results]
        got = [r.delivered for r in results if r.delivered is not None]
        loop_cells = f"{fmt(median_of(loops, 'p50')):>13} {fmt(median_of(loops, 'p99')):>7}"
        if mode == "nothing":
            loop_cells = f"{'-':>13} {'-':>7}"
        delivered = (
            f"{fmt(median_of(got, 'p50')):>19} {fmt(median_of(got, 'p99')):>7}"
            if got
            else f"{'-':>19} {'-':>7}"
        )
        rate = statistics.median(r.rate for r in results)
        rolls = sum(r.rolls for r in results)
        print(
            f"  {mode:<15} {loop_cells}   {delivered}   {fmt(median_of(late, 'p50')):>18} "
            f"{fmt(median_of(late, 'p99')):>7} {rate:>8,.0f} {rolls:>5}"
        )
    print(
        "  delivered: asyncio.Queue, the consumer coroutine has the book; inline and thread, "
        "publish has returned (committed)"
    )


def report_observed(
    runs: dict[Observer, list[ObservedRun]], s: Settings, lost: list[float]
) -> None:
    print(
        f"\n4. inline publish observed from another process: now - local_timestamp_ns (stamped "
        f"just before the commit), {s.observe_books:,} books per run, median of "
        f"{s.observe_rounds} round(s); µs"
    )
    print(
        f"  {'observer':<30} {'p50':>6} {'p99':>7} {'p99.9':>7} {'max':>7}   "
        f"{'same runs: book->committed p50':>30} {'p99':>6}"
    )
    for observer, results in runs.items():
        seen = [r.observed for r in results]
        pub = [r.publish.delivered for r in results if r.publish.delivered is not None]
        print(
            f"  {observer.label:<30} {fmt(median_of(seen, 'p50')):>6} "
            f"{fmt(median_of(seen, 'p99')):>7} {fmt(median_of(seen, 'p999')):>7} "
            f"{fmt(median_of(seen, 'max')):>7}   {fmt(median_of(pub, 'p50')):>30} "
            f"{fmt(median_of(pub, 'p99')):>6}"
        )
    if max(lost) > 0.05:
        print(
            f"  a spinning observer needs a CPU of its own; the CPU check found up to "
            f"{max(lost):.0%} off-CPU: its figures are then the scheduler's more than the "
            "hand-off's"
        )
    if not RADAR.exists():
        print(f"  (no C++ radar: {RADAR} is not built; `make cpp` builds it)")


def p50s(runs: list[LoopRun], field: str) -> list[float]:
    return [getattr(r, field).p50 for r in runs]


def report_ratios(
    per_book: dict[str, list[float]],
    loop: dict[str, list[LoopRun]],
    seen: dict[Observer, list[ObservedRun]],
) -> None:
    print("\nratios, same run (per repeat or round, then median [min-max]):")
    queue_p50 = p50s(loop["asyncio.Queue"], "delivered")
    inline_p50 = p50s(loop["inline"], "delivered")
    rows = [
        ("publish / raw append, per book", per_round(per_book["publish"], per_book["append"])),
        ("publish / json.loads, per book", per_round(per_book["publish"], per_book["json.loads"])),
        ("inline / asyncio.Queue, loop time p50", per_round(p50s(loop["inline"], "loop"),
                                                             p50s(loop["asyncio.Queue"], "loop"))),
        ("asyncio.Queue put->consumer / inline book->committed, p50",
         per_round(queue_p50, inline_p50)),
        ("thread / inline, book->committed p50", per_round(p50s(loop["thread"], "delivered"),
                                                            inline_p50)),
        ("inline / thread, loop time p50", per_round(inline_p50, p50s(loop["thread"], "loop"))),
        ("inline / nothing, heartbeat lateness p99",
         per_round([r.lateness.p99 for r in loop["inline"]],
                   [r.lateness.p99 for r in loop["nothing"]])),
    ]  # fmt: skip
    queue_median = statistics.median(queue_p50)
    for observer, results in seen.items():
        observed_p50 = statistics.median(r.observed.p50 for r in results)
        label = f"asyncio.Queue put->consumer / {observer.label}, p50"
        rows.append((label, f"{queue_median / observed_p50:.2f}x (medians)"))
    for label, value in rows:
        print(f"  {label:<62} {value}")


# -- main -------------------------------------------------------------------------------


def machine() -> str:
    return f"{cpu_model()}, numpy {np.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 10 s)")
    parser.add_argument("--reader-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader_child:
        path, books, idle = args.reader_child
        reader_child(path, int(books), idle)
        return

    s = QUICK if args.quick else DEFAULT
    base = SHM / f"bench-collector-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    print(f"# bench_collector{' --quick' if args.quick else ''}: {machine()}")
    print(f"# journal at {commit('journal/')}")
    print(f"# load average at start: {load()} (other work on these CPUs skews every figure)")
    print(
        f"# radar: {RADAR.relative_to(ROOT) if RADAR.exists() else 'not built, skipped'}; "
        f"book: {EXCHANGE} {SYMBOL}, 10x10, as OrderBookV2.to_dict() gives it\n",
        flush=True,
    )
    lost = cpu_check(0.5)
    # SIGTERM (make, a CI timeout) unwinds like Ctrl-C: children killed, /dev/shm cleaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        base.mkdir(mode=0o700)
        per_book = bench_micro(base, s)
        timer_ns = timer_overhead_ns()
        loop = bench_loop(base, s)
        seen = bench_observed(base, s)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lost += cpu_check(0.5)
    print(
        f"# CPU check, two busy processes off their CPU (~0% on two free CPUs): "
        f"{lost[0]:.0%} and {lost[1]:.0%} before the runs, {lost[2]:.0%} and {lost[3]:.0%} after\n"
    )
    report_micro(per_book, s)
    report_loop(loop, s, timer_ns)
    report_observed(seen, s, lost)
    report_ratios(per_book, loop, seen)
    print(
        f"\n# total {time.monotonic() - began:.1f} s; load average at end: {load()}; "
        f"/dev/shm cleaned up: {not base.exists()}"
    )


if __name__ == "__main__":
    main()
