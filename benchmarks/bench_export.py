"""``journal export``'s Parquet dataset: the list layout it writes against a wide one,
written and queried in the same run.

    .venv/bin/python benchmarks/bench_export.py [--books N] [--rounds R] [--quick]

Both layouts are written by the same code (journal.analysis._dataset.write_dataset,
the same partitions, sort, row groups and zstd), from the same books: N ten-level
books of twelve venue/symbol pairs (benchmarks/_books.INSTRUMENTS) over two UTC
days, prices walking by ticks, 3% of the books shallower than ten levels on a side.

* ``list``: ``bid_price``, ``bid_qty``, ``ask_price``, ``ask_qty`` as list<double>,
  each the book's own length (what ``journal export`` writes);
* ``wide``: ``bid_price_0 .. bid_price_9`` and the three others, 40 double columns,
  null past a book's depth.

Measured per round, the layouts alternating (a slow spell of a shared machine hits
both): the write (books/s) and the dataset's bytes, then four queries over the whole
dataset, each the same question in each layout's own syntax:

1. ``duckdb top``: the issue's query, the mid per exchange and second
   (``bid_price[1]`` / ``bid_price_0``);
2. ``duckdb depth``: the quantity of all ten bid levels per symbol and minute
   (``list_sum(bid_qty)`` / ``coalesce(bid_qty_0, 0) + ...``);
3. ``polars top`` and 4. ``polars depth``: the same two in Polars' lazy scan
   (``list.first()`` / ``list.sum()`` against the wide columns).

Medians are printed with the ratio list / wide (above 1: the list layout is slower).
Everything is written under one directory in /dev/shm, removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _books import INSTRUMENTS
from _machine import commit, cpu_model, load

from journal.analysis import Books
from journal.analysis._dataset import write_dataset

DEPTH = 10
START_NS = 1_767_225_600 * 1_000_000_000 - 3_600 * 1_000_000_000  # 2025-12-31 23:00 UTC
SHALLOW = 0.03
LAYOUTS = ("list", "wide")


def make_books(n: int, seed: int = 11) -> Books:
    """``n`` books, instruments interleaved, over two UTC days (an hour before
    midnight to a day after), levels a tick apart, some shallower than DEPTH."""
    rng = np.random.default_rng(seed)
    k = len(INSTRUMENTS)
    exchanges = sorted({e for e, *_ in INSTRUMENTS})
    symbols = sorted({s for _, s, *_ in INSTRUMENTS})
    which = np.arange(n) % k
    exchange_code = np.array([exchanges.index(INSTRUMENTS[i][0]) for i in which], np.int32)
    symbol_code = np.array([symbols.index(INSTRUMENTS[i][1]) for i in which], np.int32)
    best, tick, scale = (np.array([row[j] for row in INSTRUMENTS]) for j in (2, 3, 4))
    steps = rng.integers(-1, 2, size=n)
    walk = np.zeros(n)
    for i in range(k):  # each instrument's best bid walks by ticks
        walk[i::k] = np.cumsum(steps[i::k])
    bid0 = best[which] + tick[which] * walk
    levels = np.arange(DEPTH)
    bid_price = bid0[:, None] - tick[which, None] * levels
    ask_price = bid0[:, None] + tick[which, None] * (1 + rng.integers(0, 2, n)[:, None] + levels)
    bid_qty = np.round(scale[which, None] * rng.lognormal(0, 0.7, (n, DEPTH)), 6)
    ask_qty = np.round(scale[which, None] * rng.lognormal(0, 0.7, (n, DEPTH)), 6)
    for price, qty in ((bid_price, bid_qty), (ask_price, ask_qty)):
        shallow = np.flatnonzero(rng.random(n) < SHALLOW)
        kept = rng.integers(0, DEPTH, len(shallow))
        cut = levels >= kept[:, None]
        price[shallow] = np.where(cut, np.nan, price[shallow])
        qty[shallow] = np.where(cut, np.nan, qty[shallow])
    span = 25 * 3_600 * 1_000_000_000
    local = START_NS + np.sort(rng.integers(0, span, n))
    sequence = np.where(np.isin(exchange_code, [exchanges.index("binance")]), np.arange(n) + 1, 0)
    return Books(
        timestamp=local // 1_000_000 - 5,
        local_timestamp_ns=local,
        sequence=sequence.astype(np.int64),
        exchange_code=exchange_code,
        symbol_code=symbol_code,
        bid_price=bid_price,
        bid_qty=bid_qty,
        ask_price=ask_price,
        ask_qty=ask_qty,
        segment=np.zeros(n, np.int64),
        offset=np.zeros(n, np.int64),
        exchanges=exchanges,
        symbols=symbols,
    )


def queries(out: Path, layout: str) -> dict[str, Callable[[], object]]:
    """The four queries (module docstring) over the dataset at ``out``."""
    import duckdb
    import polars as pl

    glob = f"{out}/**/*.parquet"
    if layout == "list":
        top_sql, bid0, ask0 = "(bid_price[1] + ask_price[1]) / 2", "bid_price", "ask_price"
        depth_sql = "list_sum(bid_qty)"
        top_pl = (pl.col(bid0).list.first() + pl.col(ask0).list.first()) / 2
        depth_pl = pl.col("bid_qty").list.sum()
    else:
        top_sql = "(bid_price_0 + ask_price_0) / 2"
        depth_sql = " + ".join(f"coalesce(bid_qty_{k}, 0)" for k in range(DEPTH))
        top_pl = (pl.col("bid_price_0") + pl.col("ask_price_0")) / 2
        depth_pl = pl.sum_horizontal([pl.col(f"bid_qty_{k}") for k in range(DEPTH)])
    connection = duckdb.connect()

    def duckdb_top() -> object:
        return connection.sql(
            f"select exchange, date_trunc('second', local_time), avg({top_sql}) "
            f"from '{glob}' group by all"
        ).fetchall()

    def duckdb_depth() -> object:
        return connection.sql(
            f"select symbol, date_trunc('minute', local_time), sum({depth_sql}) "
            f"from '{glob}' group by all"
        ).fetchall()

    def scan() -> pl.LazyFrame:
        return pl.scan_parquet(glob, hive_partitioning=True)

    def polars_top() -> object:
        second = pl.col("local_time").dt.truncate("1s")
        return scan().group_by("exchange", second).agg(top_pl.mean()).collect()

    def polars_depth() -> object:
        minute = pl.col("local_time").dt.truncate("1m")
        return scan().group_by("symbol", minute).agg(depth_pl.sum()).collect()

    return {
        "duckdb top": duckdb_top,
        "duckdb depth": duckdb_depth,
        "polars top": polars_top,
        "polars depth": polars_depth,
    }


def timed(call: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200,000 books, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.books, args.rounds = 200_000, 2
    print(f"bench_export: {cpu_model()}; load {load()}; commit {commit('journal', 'benchmarks')}")
    books = make_books(args.books)
    shallow = np.count_nonzero(np.isnan(books.bid_price[:, -1]))
    print(
        f"{len(books):,} books, {DEPTH} levels ({shallow:,} with fewer bids), {args.rounds} rounds"
    )
    base = Path("/dev/shm") / f"bench-export-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    times: dict[tuple[str, str], list[float]] = {}
    sizes: dict[str, int] = {}
    try:
        for round_ in range(args.rounds):
            for layout in LAYOUTS if round_ % 2 == 0 else LAYOUTS[::-1]:
                out = base / f"{layout}-{round_}"
                start = time.perf_counter()
                written = write_dataset(books, out, layout=layout)
                times.setdefault(("write", layout), []).append(time.perf_counter() - start)
                sizes[layout] = written.bytes
                for name, query in queries(out, layout).items():
                    query()  # warm: the files in the page cache, the readers loaded
                    times.setdefault((name, layout), []).append(timed(query))
                shutil.rmtree(out)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{'':14}{'list':>12}{'wide':>12}{'list / wide':>14}")
    print(
        f"{'bytes':14}{sizes['list'] / 1e6:>10.1f}MB{sizes['wide'] / 1e6:>10.1f}MB"
        f"{sizes['list'] / sizes['wide']:>13.2f}x"
    )
    for name in ("write", "duckdb top", "duckdb depth", "polars top", "polars depth"):
        medians = {layout: statistics.median(times[(name, layout)]) for layout in LAYOUTS}
        cells = "".join(f"{medians[layout] * 1e3:>10.0f}ms" for layout in LAYOUTS)
        print(f"{name:14}{cells}{medians['list'] / medians['wide']:>13.2f}x", end="")
        if name == "write":
            rates = ", ".join(f"{len(books) / medians[x] / 1e6:.2f} M books/s {x}" for x in LAYOUTS)
            print(f"   ({rates})", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
