"""``journal demo``: a writer process and a reader tailing it live, on an embedded feed.

The writer publishes synthetic 10x10 books for four venues (two KRW, two USDT
markets) as fast as it can generate them; this process tails the journal with a
Reader, measures publish-to-observe latency from ``local_timestamp_ns``, then
shows ``journal info`` and ``journal verify`` of what was written.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from journal._inspect import summarize, verify
from journal._reader import Reader
from journal._writer import Writer

# (exchange, symbol, mid price, tick): realistic magnitudes for BTC and ETH.
MARKETS = (
    ("upbit", "BTC-KRW", 142_000_000.0, 1000.0),
    ("bithumb", "BTC-KRW", 141_900_000.0, 1000.0),
    ("binance", "BTC-USDT", 96_500.0, 0.01),
    ("bybit", "BTC-USDT", 96_495.0, 0.1),
    ("upbit", "ETH-KRW", 5_150_000.0, 1000.0),
    ("binance", "ETH-USDT", 3_500.0, 0.01),
)
DEMO_SEGMENT_SIZE = 4 * 1024 * 1024


def write_feed(directory: Path, books: int, seed: int = 7) -> None:
    """The writer process: ``books`` books across MARKETS, then close.

    Like a real book, each update moves little: the mid steps a tick now and then,
    one or two levels change their quantity (in lots of 0.0001), the rest stay.
    """
    rng = random.Random(seed)
    mid_ticks = [round(mid / tick) for _, _, mid, tick in MARKETS]
    quantities: list[dict[int, float]] = [{} for _ in MARKETS]

    def quantity() -> float:
        return round(rng.uniform(0.01, 3.0), 4)

    with Writer(directory, segment_size=DEMO_SEGMENT_SIZE) as writer:
        for i in range(books):
            m = i % len(MARKETS)
            exchange, symbol, _, tick = MARKETS[m]
            if rng.random() < 0.1:
                mid_ticks[m] += rng.choice((-1, 1))
            levels = quantities[m]
            bid_ticks = [mid_ticks[m] - 1 - k for k in range(10)]
            ask_ticks = [mid_ticks[m] + 1 + k for k in range(10)]
            for changed in rng.sample(bid_ticks + ask_ticks, 2):
                levels[changed] = quantity()
            bids = [[t * tick, levels.setdefault(t, quantity())] for t in bid_ticks]
            asks = [[t * tick, levels.setdefault(t, quantity())] for t in ask_ticks]
            writer.append_orderbook(exchange, symbol, time.time_ns() // 1_000_000, i, bids, asks)


def run_demo(books: int, keep: bool) -> int:
    directory = Path(tempfile.mkdtemp(prefix="journal-demo-", dir="/dev/shm")) / "books"
    print(f"journal demo: {books:,} books from a writer process into {directory}")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journal.cli",
            "demo",
            "--writer-only",
            str(directory),
            "--books",
            str(books),
        ]
    )
    latencies = np.empty(books, dtype=np.int64)
    seen = 0
    try:
        with Reader(directory, start="beginning", idle="backoff") as reader:
            started = None
            while seen < books:
                record = reader.poll(timeout=10.0)
                if record is None:
                    raise SystemExit("demo: no book for 10 s; the writer died?")
                latencies[seen] = time.time_ns() - record.local_timestamp_ns
                if record.sequence != seen:
                    raise SystemExit(f"demo: expected sequence {seen}, got {record.sequence}")
                if started is None:
                    started = time.perf_counter()
                    first = record.to_dict()
                seen += 1
            elapsed = time.perf_counter() - started
        if writer.wait(timeout=30) != 0:
            raise SystemExit(f"demo: writer exited with status {writer.returncode}")
        p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]) / 1000
        print("first book:", json.dumps(first)[:200], "...")
        print(
            f"read {seen:,} books in order, none missing, at {seen / elapsed:,.0f} books/s "
            f"(the writer's Python feed generator is the bottleneck)"
        )
        print(
            f"publish-to-observe latency (Python reader, backoff idle): "
            f"p50 {p50:.1f} us, p99 {p99:.1f} us, p99.9 {p999:.1f} us"
        )
        summary = summarize(directory)
        print(
            f"journal info: {len(summary.segments)} segments, {summary.records:,} records, "
            f"writer alive: {summary.writer_alive}"
        )
        report = verify(directory)
        print(
            f"journal verify: {report.records:,} records in {report.segments} segments: "
            + ("OK" if report.first_error is None else report.first_error)
        )
        return 0 if report.first_error is None else 1
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory.parent, ignore_errors=True)
