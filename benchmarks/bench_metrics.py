"""What a Prometheus scrape of ``journal metrics --listen`` costs, by part.

    .venv/bin/python benchmarks/bench_metrics.py [--journals 6] [--symbols 200] [--rounds 15]

Builds, under one directory in /dev/shm (removed at the end), ``--journals``
journals of 1,000 books, each with a collector's feed metrics of ``--symbols``
symbols (all live, one message each) and three registered readers, then times, in
alternating rounds, the median of:

1. read: the snapshots of every journal (writer, readers with their lag, feed), as
   a scrape takes them (journal.monitor._prometheus.JournalCollector.read);
2. families: those snapshots made into prometheus_client families (the metric tables);
3. text: prometheus_client's ``generate_latest`` of them (text format 0.0.4);
4. scrape: a whole HTTP GET of the endpoint ``journal metrics --listen`` runs
   (prometheus_client's server on 127.0.0.1), as Prometheus makes it.

The lines and bytes of the exposition and the cost per line are printed; the
default size (6 journals x 200 symbols, ~24,500 lines) is a large desk. The hand
formatter prometheus_client replaced rendered the same 6 x 200 in 68 ms against
209 ms for families + text here (docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

import journal
from journal._feed_metrics import FeedMetricsWriter, FeedState
from journal.monitor._exporter import serving
from journal.monitor._prometheus import JournalCollector, families, scrape_samples

BIDS = [[100.0 - 0.5 * i, 1.0 + i] for i in range(10)]
ASKS = [[100.5 + 0.5 * i, 1.0 + i] for i in range(10)]


@contextlib.contextmanager
def journals(root: Path, count: int, symbols: int) -> Iterator[None]:
    """``count`` journals under ``root``, each with a writer, a feed and three readers."""
    with contextlib.ExitStack() as stack:
        for index in range(count):
            path = root / f"venue{index}"
            writer = stack.enter_context(journal.Writer(path, segment_size=1 << 20))
            for sequence in range(1000):
                writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
            names = [f"S{k}-USDT" for k in range(symbols)]
            feed = stack.enter_context(FeedMetricsWriter(path, f"venue{index}", names))
            for name in names:
                feed.stream(name).set_state(FeedState.LIVE)
                feed.stream(name).message(time.time_ns(), time.time_ns() // 1_000_000)
            for reader_index in range(3):
                reader = stack.enter_context(journal.Reader(path, name=f"reader{reader_index}"))
                reader.try_next()
        yield


def median_ms(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journals", type=int, default=6)
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    root = Path("/dev/shm") / f"bench-metrics-{uuid.uuid4().hex[:8]}"
    try:
        with journals(root, args.journals, args.symbols):
            collector = JournalCollector([root])
            snapshots, radars, _ = collector.read()
            built = families(scrape_samples(snapshots, radars))

            class Fixed:
                def collect(self) -> list[object]:
                    return built  # type: ignore[return-value]

            registry = CollectorRegistry()
            registry.register(Fixed())  # type: ignore[arg-type]
            text = generate_latest(registry)
            with serving([root], "127.0.0.1:0", option="--listen", prefix="") as server:

                def scrape() -> bytes:
                    with urllib.request.urlopen(server.url, timeout=30) as response:
                        return bytes(response.read())

                figures = {
                    "read": median_ms(collector.read, args.rounds),
                    "families": median_ms(
                        lambda: families(scrape_samples(snapshots, radars)), args.rounds
                    ),
                    "text": median_ms(lambda: generate_latest(registry), args.rounds),
                    "scrape (HTTP GET)": median_ms(scrape, args.rounds),
                }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines = text.count(b"\n")
    print(
        f"{args.journals} journals x {args.symbols} symbols, 3 readers each: "
        f"{lines:,} lines, {len(text):,} bytes; medians of {args.rounds} rounds"
    )
    for name, ms in figures.items():
        print(f"  {name:<18} {ms:8.1f} ms  ({ms * 1e3 / lines:.2f} µs a line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
