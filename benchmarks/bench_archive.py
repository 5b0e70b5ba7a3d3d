"""Archive benchmarks of the order-book journal, in one run: sizes, ratios, decode rates.

    .venv/bin/python benchmarks/bench_archive.py [--quick]

Two sets of books, each written to a journal in /dev/shm with 4 MiB segments:

(a) synthetic: ``write_synthetic`` (the demo feed the archive figures were first
    measured on, kept here so that they stay comparable: six markets, a level or two
    changing per update, the mid stepping a tick now and then);
(b) Upbit: the order books of the real capture
    tests/data/exchange-captures/UPBIT.ws.62.0 (full top-15 snapshots, kept to 10
    levels; ``KRW-LAMB`` stored as ``LAMB-KRW``), replayed in order until there are
    enough books, each replay shifted in time so that both timestamps keep
    increasing. The capture has only 145 books, so the replays repeat them: zstd and
    Parquet both see the repeats within a frame / row group, which flatters the ratio
    against raw; a "one replay alone" line shows zstd on 145 books without repeats.

For each:

1. Size: the compactor (``journal compact DIR --archive A --once --keep 0``, run in
   this process through its CLI entry point) archives the sealed segments; raw bytes
   are their committed bytes (header included), archive bytes the ``.jzst`` files;
   compaction MB/s is raw bytes over the wall time of the pass (compress, verify,
   fsync, rename, remove). The same books as Parquet with zstd
   (``journal export --parquet``'s writer, from ``load_books`` columns).
2. Decode into numpy columns (records/s): ``journal.analysis.load_books`` over the
   archive and over the live journal (a copy kept before compaction), with its
   default worker threads (zstd frames decompressed and segments walked beside the
   decoding thread, one fewer than the CPUs) and with ``threads=0`` (everything in
   one thread; the figure a busy machine gets); the official flatc-generated Python
   reader (``OrderBook.GetRootAs`` and accessors) decoding records one by one into
   the same columns; and a ``journal.Reader`` loop (``verify=True``) doing the same.
   The official reader's columns, and ``load_books``'s in one thread, are checked
   equal to ``load_books``'s before anything is timed.

Repeats are interleaved (one of each case per round) and figures are medians.
Everything lives under one /dev/shm directory, removed on exit.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow
import zstandard
from _machine import ROOT, commit, cpu_model, load
from OrderBookData import OrderBook as GeneratedOrderBook

import journal
from journal._inspect import summarize
from journal.analysis import Books, load_books
from journal.analysis._report import write_parquet
from journal.archive import compact as _compact
from journal.archive._archive import archive_files, parse_archive_name

SHM = Path("/dev/shm")
SEGMENT_SIZE = 4 * 1024 * 1024
DEPTH = 10
CAPTURE = ROOT / "tests" / "data" / "exchange-captures" / "UPBIT.ws.62.0"


@dataclass(frozen=True)
class Settings:
    books: int  # books per data set
    repeats: int  # interleaved rounds (compaction and decode)
    official_books: int  # records the official reader decodes per repeat


DEFAULT = Settings(books=120_000, repeats=5, official_books=20_000)
QUICK = Settings(books=50_000, repeats=3, official_books=5_000)


@dataclass
class DataSet:
    name: str
    journal: Path  # compacted (only the live segment is left)
    live: Path  # a copy of the whole journal, kept before compaction
    archive: Path  # the archive root
    books: int = 0
    raw_bytes: int = 0  # committed bytes of the archived segments
    archive_bytes: int = 0
    archived_segments: int = 0
    archived_books: int = 0
    compact_s: list[float] = field(default_factory=list)
    parquet_bytes: int = 0
    one_replay: tuple[int, int] | None = None  # (raw, zstd) bytes of one replay alone
    rates: dict[str, list[float]] = field(default_factory=dict)


# -- the books ----------------------------------------------------------------------------

# (exchange, symbol, mid price, tick): realistic magnitudes for BTC and ETH.
MARKETS = (
    ("upbit", "BTC-KRW", 142_000_000.0, 1000.0),
    ("bithumb", "BTC-KRW", 141_900_000.0, 1000.0),
    ("binance", "BTC-USDT", 96_500.0, 0.01),
    ("bybit", "BTC-USDT", 96_495.0, 0.1),
    ("upbit", "ETH-KRW", 5_150_000.0, 1000.0),
    ("binance", "ETH-USDT", 3_500.0, 0.01),
)


def write_synthetic(directory: Path, books: int, seed: int = 7) -> None:
    """``books`` books across MARKETS. Like a real book, each update moves little: the
    mid steps a tick now and then, one or two levels change their quantity (in lots
    of 0.0001), the rest stay."""
    rng = random.Random(seed)
    mid_ticks = [round(mid / tick) for _, _, mid, tick in MARKETS]
    quantities: list[dict[int, float]] = [{} for _ in MARKETS]

    def quantity() -> float:
        return round(rng.uniform(0.01, 3.0), 4)

    with journal.Writer(directory, segment_size=SEGMENT_SIZE) as writer:
        for i in range(books):
            m = i % len(MARKETS)
            exchange, symbol, _, tick = MARKETS[m]
            if rng.random() < 0.1:
                mid_ticks[m] += rng.choice((-1, 1))
            levels = quantities[m]
            bid_ticks = [mid_ticks[m] - 1 - k for k in range(DEPTH)]
            ask_ticks = [mid_ticks[m] + 1 + k for k in range(DEPTH)]
            for changed in rng.sample(bid_ticks + ask_ticks, 2):
                levels[changed] = quantity()
            bids = [[t * tick, levels.setdefault(t, quantity())] for t in bid_ticks]
            asks = [[t * tick, levels.setdefault(t, quantity())] for t in ask_ticks]
            writer.append_orderbook(exchange, symbol, time.time_ns() // 1_000_000, i, bids, asks)


def upbit_books() -> list[tuple[str, int, int, list[list[float]], list[list[float]]]]:
    """(symbol, exchange ms, capture ns, bids, asks) of every order book in the capture."""
    books = []
    with open(CAPTURE) as capture:
        for line in capture:
            epoch, sep, text = line.partition(": ")
            if not sep or not text.startswith("b'") or '"ty":"orderbook"' not in text:
                continue
            message = json.loads(ast.literal_eval(text.strip()))
            quote, base = message["cd"].split("-", 1)
            units = message["obu"][:DEPTH]
            bids = [[float(u["bp"]), float(u["bs"])] for u in units]
            asks = [[float(u["ap"]), float(u["as"])] for u in units]
            books.append(
                (f"{base}-{quote}", int(message["tms"]), round(float(epoch) * 1e9), bids, asks)
            )
    if not books:
        raise SystemExit(f"no order books in {CAPTURE}")
    return books


def write_upbit(directory: Path, books: int) -> int:
    """Replay the capture's books in order until ``books`` are written; returns how
    many books one replay has."""
    capture = upbit_books()
    span_ns = capture[-1][2] - capture[0][2] + 1_000_000_000
    span_ms = span_ns // 1_000_000
    last_local = 0
    with journal.Writer(directory, segment_size=SEGMENT_SIZE) as writer:
        for i in range(books):
            replay, k = divmod(i, len(capture))
            symbol, ms, local_ns, bids, asks = capture[k]
            local_ns = max(local_ns + replay * span_ns, last_local + 1)
            last_local = local_ns
            writer.append_orderbook("upbit", symbol, ms + replay * span_ms, i, bids, asks, local_ns)
    return len(capture)


def one_replay_zstd(directory: Path, records: int) -> tuple[int, int]:
    """Raw bytes of the first ``records`` records and zstd level 9 of them alone."""
    with journal.Reader(directory, start="beginning") as reader:
        first = last = None
        for n, record in enumerate(reader.available()):
            if n == 0:
                first = record.position
            if n == records - 1:
                last = record.position[1] + record.size
                break
    assert first is not None and last is not None and first[0] == 0
    data = (directory / journal_segment_name(0)).read_bytes()[first[1] : last]
    return len(data), len(zstandard.ZstdCompressor(level=9).compress(data))


def journal_segment_name(index: int) -> str:
    from journal._layout import segment_name

    return segment_name(index)


# -- 1: compaction and Parquet -------------------------------------------------------------


def compact(journal_dir: Path, archive: Path) -> float:
    """One ``journal compact --once --keep 0`` pass; its wall time in seconds."""
    start = time.perf_counter()
    status = _compact.main(
        [str(journal_dir), "--archive", str(archive), "--once", "--keep", "0", "--quiet"]
    )
    elapsed = time.perf_counter() - start
    if status:
        raise RuntimeError(f"journal compact exited with {status}")
    return elapsed


def measure_sizes(sets: list[DataSet], base: Path, s: Settings) -> None:
    """Compaction rounds on fresh copies (interleaved), then the kept archive's sizes."""
    for round_ in range(s.repeats):
        for d in sets:
            copy = base / f"round-{round_}-{d.name}" / d.journal.name
            shutil.copytree(d.live, copy)
            archive = copy.parent / "archive"
            gc.collect()
            d.compact_s.append(compact(copy, archive))
            shutil.rmtree(copy.parent)
    for d in sets:
        compact(d.journal, d.archive)
        archived = {archive_index(p) for p in stream_archives(d)}
        for segment in summarize(d.live).segments:
            if segment.index in archived:
                d.raw_bytes += segment.commit_offset
                d.archived_books += segment.records
        d.archived_segments = len(archived)
        d.archive_bytes = sum(p.stat().st_size for p in stream_archives(d))
        parquet = d.archive.parent / f"{d.name}.parquet"
        write_parquet(load_books(d.archive / d.journal.name, depth=DEPTH), parquet)
        d.parquet_bytes = parquet.stat().st_size


def archive_index(path: Path) -> int:
    parsed = parse_archive_name(path.name)
    if parsed is None:
        raise RuntimeError(f"not an archive name: {path}")
    return parsed[1]


def stream_archives(d: DataSet) -> list[Path]:
    return archive_files(d.archive / d.journal.name)


# -- 2: decoding ---------------------------------------------------------------------------


@dataclass
class Columns:
    """What every decoder fills: the columns of Books that come from the record."""

    timestamp: np.ndarray
    local_timestamp_ns: np.ndarray
    sequence: np.ndarray
    exchange_code: np.ndarray
    symbol_code: np.ndarray
    bid_price: np.ndarray
    bid_qty: np.ndarray
    ask_price: np.ndarray
    ask_qty: np.ndarray
    exchanges: list[str]
    symbols: list[str]

    @classmethod
    def empty(cls, n: int) -> Columns:
        def levels() -> np.ndarray:
            return np.full((n, DEPTH), np.nan)

        ints = [np.zeros(n, np.int64) for _ in range(3)]
        codes = [np.zeros(n, np.int32) for _ in range(2)]
        return cls(*ints, *codes, levels(), levels(), levels(), levels(), [], [])


def code(names: dict[str, int], name: str) -> int:
    found = names.get(name)
    if found is None:
        found = names[name] = len(names)
    return found


def record_locations(live: Path, n: int) -> list[tuple[bytes, int]]:
    """(segment bytes, offset of the size prefix) of the first ``n`` records."""
    buffers: dict[int, bytes] = {}
    locations = []
    with journal.Reader(live, start="beginning") as reader:
        for record in reader.available():
            index, offset = record.position
            if index not in buffers:
                buffers[index] = (live / journal_segment_name(index)).read_bytes()
            locations.append((buffers[index], offset))
            if len(locations) == n:
                break
    return locations


def decode_official(locations: list[tuple[bytes, int]]) -> Columns:
    """flatc's generated Python reader, one record at a time, into the columns."""
    c = Columns.empty(len(locations))
    exchanges: dict[str, int] = {}
    symbols: dict[str, int] = {}
    get_root = GeneratedOrderBook.OrderBook.GetRootAs
    for i, (buffer, offset) in enumerate(locations):
        book = get_root(buffer, offset + 4)  # past the size prefix
        c.timestamp[i] = book.Timestamp()
        c.local_timestamp_ns[i] = book.LocalTimestampNs()
        c.sequence[i] = book.Sequence()
        c.exchange_code[i] = code(exchanges, book.ExchangeName().decode())
        c.symbol_code[i] = code(symbols, book.Symbol().decode())
        for j in range(min(book.BidsLength(), DEPTH)):
            level = book.Bids(j)
            c.bid_price[i, j] = level.Price()
            c.bid_qty[i, j] = level.Quantity()
        for j in range(min(book.AsksLength(), DEPTH)):
            level = book.Asks(j)
            c.ask_price[i, j] = level.Price()
            c.ask_qty[i, j] = level.Quantity()
    c.exchanges, c.symbols = list(exchanges), list(symbols)
    return c


def decode_reader(live: Path, n: int) -> Columns:
    """A journal.Reader loop (verify=True) into the same columns."""
    c = Columns.empty(n)
    exchanges: dict[str, int] = {}
    symbols: dict[str, int] = {}
    with journal.Reader(live, start="beginning") as reader:
        for i, record in enumerate(reader.available()):
            c.timestamp[i] = record.timestamp
            c.local_timestamp_ns[i] = record.local_timestamp_ns
            c.sequence[i] = record.sequence
            c.exchange_code[i] = code(exchanges, record.exchange_name)
            c.symbol_code[i] = code(symbols, record.symbol)
            bids, asks = record.bids[:DEPTH], record.asks[:DEPTH]
            c.bid_price[i, : len(bids)] = bids[:, 0]
            c.bid_qty[i, : len(bids)] = bids[:, 1]
            c.ask_price[i, : len(asks)] = asks[:, 0]
            c.ask_qty[i, : len(asks)] = asks[:, 1]
            if i + 1 == n:
                break
    c.exchanges, c.symbols = list(exchanges), list(symbols)
    return c


def check_same(books: Books, c: Columns, n: int, label: str) -> None:
    """The first ``n`` rows of ``books`` equal ``c`` (names compared, not codes)."""
    for name in ("timestamp", "local_timestamp_ns", "sequence"):
        if not np.array_equal(getattr(books, name)[:n], getattr(c, name)):
            raise AssertionError(f"{label}: column {name} differs from load_books")
    for name in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
        if not np.array_equal(getattr(books, name)[:n], getattr(c, name), equal_nan=True):
            raise AssertionError(f"{label}: column {name} differs from load_books")
    for codes, names, mine, my_names in (
        (books.exchange_code, books.exchanges, c.exchange_code, c.exchanges),
        (books.symbol_code, books.symbols, c.symbol_code, c.symbols),
    ):
        if [names[k] for k in codes[:n]] != [my_names[k] for k in mine]:
            raise AssertionError(f"{label}: names differ from load_books")


@dataclass
class Case:
    name: str
    records: int
    run: Callable[[], object]


def measure_decoding(sets: list[DataSet], s: Settings) -> None:
    cases: list[tuple[DataSet, Case]] = []
    for d in sets:
        stream = d.archive / d.journal.name
        everything = load_books(d.live, depth=DEPTH)
        archived = load_books(stream, depth=DEPTH)
        if len(everything) != d.books or len(archived) != d.archived_books:
            raise AssertionError(f"{d.name}: load_books found {len(everything)}/{len(archived)}")
        for name in Books.COLUMNS:  # the archive holds the journal's first books, bit for bit
            if not np.array_equal(
                getattr(archived, name), getattr(everything, name)[: len(archived)], equal_nan=True
            ):
                raise AssertionError(f"{d.name}: archive column {name} differs from the journal")
        for source, threaded in ((d.live, everything), (stream, archived)):
            alone = load_books(source, depth=DEPTH, threads=0)
            for name in Books.COLUMNS:
                if not np.array_equal(
                    getattr(alone, name), getattr(threaded, name), equal_nan=True
                ):
                    raise AssertionError(f"{d.name}: column {name} differs with threads=0")
        n = min(s.official_books, d.books)
        locations = record_locations(d.live, n)
        check_same(everything, decode_official(locations), n, f"{d.name} official reader")
        check_same(everything, decode_reader(d.live, d.books), d.books, f"{d.name} Reader")

        def archive_case(stream: Path = stream) -> object:
            return load_books(stream, depth=DEPTH)

        def live_case(live: Path = d.live) -> object:
            return load_books(live, depth=DEPTH)

        def archive_one_thread(stream: Path = stream) -> object:
            return load_books(stream, depth=DEPTH, threads=0)

        def live_one_thread(live: Path = d.live) -> object:
            return load_books(live, depth=DEPTH, threads=0)

        def official_case(locations: list[tuple[bytes, int]] = locations) -> object:
            return decode_official(locations)

        def reader_case(live: Path = d.live, n: int = d.books) -> object:
            return decode_reader(live, n)

        cases += [
            (d, Case("load_books, archive", d.archived_books, archive_case)),
            (d, Case("load_books, live journal", d.books, live_case)),
            (d, Case("load_books, archive, threads=0", d.archived_books, archive_one_thread)),
            (d, Case("load_books, live, threads=0", d.books, live_one_thread)),
            (d, Case("official generated reader", n, official_case)),
            (d, Case("journal.Reader loop", d.books, reader_case)),
        ]
    for _ in range(s.repeats):
        for d, case in cases:
            gc.collect()
            start = time.perf_counter_ns()
            case.run()
            elapsed = time.perf_counter_ns() - start
            d.rates.setdefault(case.name, []).append(case.records / (elapsed / 1e9))


# -- report --------------------------------------------------------------------------------


def machine() -> str:
    return (
        f"{cpu_model()}, numpy {np.__version__}, zstandard {zstandard.__version__}, "
        f"pyarrow {pyarrow.__version__}"
    )


def mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB"


def report(sets: list[DataSet], s: Settings) -> None:
    for d in sets:
        compact_mb_s = d.raw_bytes / 1e6 / statistics.median(d.compact_s)
        print(
            f"\n[{d.name}] {d.books:,} books; {d.archived_segments} sealed segments archived "
            f"({d.archived_books:,} books), the live one stays in tmpfs"
        )
        print(f"  raw segments (committed)  {mb(d.raw_bytes):>12}")
        print(
            f"  archive (.jzst)           {mb(d.archive_bytes):>12}  "
            f"raw/archive {d.raw_bytes / d.archive_bytes:6.1f}x"
        )
        print(
            f"  Parquet + zstd            {mb(d.parquet_bytes):>12}  "
            f"raw/parquet {d.raw_bytes / d.parquet_bytes:6.1f}x  "
            f"parquet/archive {d.parquet_bytes / d.archive_bytes:5.2f}x"
        )
        print(
            f"  per book: raw {d.raw_bytes / d.archived_books:.1f} B, archive "
            f"{d.archive_bytes / d.archived_books:.1f} B, parquet "
            f"{d.parquet_bytes / d.archived_books:.1f} B"
        )
        if d.one_replay:
            raw, packed = d.one_replay
            print(
                f"  one replay alone ({raw:,} B raw records), zstd -9: {packed:,} B = "
                f"{raw / packed:.1f}x (no repeats to find)"
            )
        times = d.compact_s
        print(
            f"  compaction: median {statistics.median(times):.3f} s (min {min(times):.3f}, "
            f"max {max(times):.3f}) = {compact_mb_s:,.0f} MB/s of raw segment"
        )
        print(f"  decode into numpy columns, records/s ({s.repeats} interleaved repeats):")
        for name, rates in d.rates.items():
            print(
                f"    {name:<31} median {statistics.median(rates):>12,.0f}  "
                f"min {min(rates):>12,.0f}  max {max(rates):>12,.0f}"
            )
        med = {name: statistics.median(rates) for name, rates in d.rates.items()}
        official = med["official generated reader"]
        archive_rate = med["load_books, archive"]
        print(
            f"  ratios: load_books archive / official {archive_rate / official:,.0f}x,"
            f" load_books live / official {med['load_books, live journal'] / official:,.0f}x,"
            f" Reader loop / official {med['journal.Reader loop'] / official:.1f}x,"
            f" load_books live / archive "
            f"{med['load_books, live journal'] / med['load_books, archive']:.2f}x"
        )

    print("\n## Summary (Markdown)\n")
    print(
        f"Machine: {machine()}. 4 MiB segments, zstd level 9 (the compactor's default), "
        f"depth {DEPTH}; medians of {s.repeats} interleaved repeats.\n"
    )
    print("| Measurement | " + " | ".join(d.name for d in sets) + " |")
    print("|---|" + "---|" * len(sets))
    rows: list[tuple[str, Callable[[DataSet], str]]] = [
        ("Books (archived)", lambda d: f"{d.books:,} ({d.archived_books:,})"),
        ("Raw segments, committed", lambda d: mb(d.raw_bytes)),
        ("Archive", lambda d: mb(d.archive_bytes)),
        ("Parquet + zstd (same books)", lambda d: mb(d.parquet_bytes)),
        ("**Raw / archive**", lambda d: f"**{d.raw_bytes / d.archive_bytes:.1f}x**"),
        ("Raw / Parquet", lambda d: f"{d.raw_bytes / d.parquet_bytes:.1f}x"),
        ("**Parquet / archive**", lambda d: f"**{d.parquet_bytes / d.archive_bytes:.2f}x**"),
        (
            "Compaction (compress + verify + fsync)",
            lambda d: f"{d.raw_bytes / 1e6 / statistics.median(d.compact_s):,.0f} MB/s",
        ),
    ]
    for name in (
        "load_books, archive",
        "load_books, live journal",
        "load_books, archive, threads=0",
        "load_books, live, threads=0",
    ):
        rows.append((f"`{name}`", lambda d, name=name: rate(d, name)))
    rows += [
        ("Official generated reader", lambda d: rate(d, "official generated reader")),
        ("`journal.Reader` loop", lambda d: rate(d, "journal.Reader loop")),
        (
            "`load_books` archive / official reader",
            lambda d: f"{median_rate(d, 'load_books, archive') / official_rate(d):,.0f}x",
        ),
    ]
    for label, value in rows:
        print(f"| {label} | " + " | ".join(value(d) for d in sets) + " |")


def median_rate(d: DataSet, name: str) -> float:
    return statistics.median(d.rates[name])


def official_rate(d: DataSet) -> float:
    return median_rate(d, "official generated reader")


def rate(d: DataSet, name: str) -> str:
    return f"{statistics.median(d.rates[name]):,.0f} records/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 40 s)")
    args = parser.parse_args()
    s = QUICK if args.quick else DEFAULT
    base = SHM / f"bench-archive-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    print(f"# bench_archive{' --quick' if args.quick else ''}: {machine()}")
    print(f"# journal at {commit('journal/')}")
    print(f"# load average at start: {load()} (other work on these CPUs skews every figure)")
    print(
        f"# {s.books:,} books per data set, {s.repeats} repeats; official reader on "
        f"{s.official_books:,} records per repeat\n",
        flush=True,
    )
    try:
        base.mkdir(mode=0o700)
        sets = []
        for name in ("synthetic", "upbit"):
            directory = base / name / "books"
            sets.append(
                DataSet(name, directory, base / name / "live" / "books", base / name / "archive")
            )
        write_synthetic(sets[0].journal, s.books)
        replay = write_upbit(sets[1].journal, s.books)
        sets[1].one_replay = one_replay_zstd(sets[1].journal, replay)
        for d in sets:
            d.books = s.books
            shutil.copytree(d.journal, d.live)
            (d.live / ".lock").unlink(missing_ok=True)
        print(f"# books written in {time.monotonic() - began:.1f} s", flush=True)
        measure_sizes(sets, base, s)
        measure_decoding(sets, s)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report(sets, s)
    print(
        f"\n# total {time.monotonic() - began:.1f} s; load average at end: {load()}; "
        f"/dev/shm cleaned up: {not base.exists()}"
    )


if __name__ == "__main__":
    sys.exit(main())
