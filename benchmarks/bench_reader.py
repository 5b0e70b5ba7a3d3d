"""The Python Reader, compiled (journal._creader) against pure Python, in one run.

    .venv/bin/python benchmarks/bench_reader.py [--quick]

``journal.Reader`` uses the compiled next-record step when the extension is built;
a subclass of Reader keeps the pure-Python step, so both read in this one process,
in alternating runs (every round runs each case once: a slow spell of a shared
machine hits both alike). For 10x10 books (realistic: twelve instruments, prices
moving by a few ticks), what it measures:

1. Replay: a journal of N books written beforehand (64 MiB segments), read with
   ``available()``: the reader's own speed, books/s and µs per book; then again
   taking each book's ``bids`` and ``asks`` (the compiled reader makes a book's level
   views on first use, so a consumer that skips books does not pay for them).
2. Live, flooded: a writer process (hidden child mode of this script, the writer
   path ``journal._native`` picks: compiled when built) appends N books as fast as
   it can while this process follows with ``for book in reader`` (``idle="spin"``);
   the reader's books/s from its first book to its last, the writer's own rate in
   the same run, and how long after the writer's last commit the reader had its
   last book (0 when it kept up: it then reads at the writer's pace).
3. Latency: the writer publishes at 10,000 books/s, sleeping between books (a
   collector waiting on its websockets), this process spins (``idle="spin"``) and
   takes ``time.time_ns() - book.local_timestamp_ns`` for each book: from the
   writer's stamp, just before its commit, to the book in Python hands, decoded.
   p50, p99, p99.9.

Ratios compiled / pure of each median are printed, then the judged figures
(issue #13): the compiled reader at least 5x the pure one (replay), faster than
the writer can write, and a spinning reader's p50 under 3 µs. Everything is created
under one directory in /dev/shm, removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _books import make_books
from _children import wait_ready
from _machine import commit, cpu_check, cpu_model, load

import journal
from journal import _native

SHM = Path("/dev/shm")
PACED_RATE = 10_000  # books/s, the latency runs
WARMUP = 2_000  # books the writer appends before a run (compiles, maps, warms caches)
SETTLE_S = 0.1
SEGMENT_SIZE = 64 << 20


@dataclass(frozen=True)
class Settings:
    rounds: int
    replay_books: int
    live_books: int
    paced_books: int


DEFAULT = Settings(5, 500_000, 300_000, 20_000)
QUICK = Settings(3, 150_000, 100_000, 6_000)


class PureReader(journal.Reader):
    """The pure-Python Reader: ``Reader.__new__`` gives subclasses their own class."""


READERS: dict[str, type[journal.Reader]] = {"compiled": journal.Reader, "pure": PureReader}


# -- the writer process (hidden mode) ----------------------------------------------------


def child_writer(spec: dict[str, Any]) -> None:
    """Append ``warmup`` books, say ready, wait for "go", append ``books`` more
    (paced at ``rate`` books/s, sleeping until each slot, or flooded), print the rate."""
    books = make_books()
    cycle = len(books)
    total, rate = spec["books"], spec["rate"]
    interval = 1e9 / rate if rate else 0.0
    clock = time.perf_counter_ns
    sleep = time.sleep
    with journal.Writer(spec["path"], segment_size=SEGMENT_SIZE) as writer:
        append = writer.append_orderbook
        ts_ms = time.time_ns() // 1_000_000
        for i in range(spec["warmup"]):
            ex, sym, bids, asks = books[i % cycle]
            append(ex, sym, ts_ms, -1, bids, asks)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        start = clock()
        for i in range(total):
            if interval:
                ahead = start + int(i * interval) - clock()
                if ahead > 0:
                    sleep(ahead / 1e9)
            ex, sym, bids, asks = books[i % cycle]
            append(ex, sym, ts_ms, i, bids, asks)
        end_ns = time.time_ns()
        elapsed = clock() - start
    print(
        json.dumps(
            {
                "rate": total / (elapsed / 1e9),
                "end_ns": end_ns,
                "writer": _native.describe().split(",")[0],
            }
        ),
        flush=True,
    )


@contextlib.contextmanager
def writer_process(path: Path, books: int, rate: int) -> Iterator[subprocess.Popen[str]]:
    spec = {"path": str(path), "books": books, "rate": rate, "warmup": WARMUP}
    child = subprocess.Popen(
        [sys.executable, __file__, "--writer-child", json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(child, "the writer")
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def writer_result(child: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = child.communicate(timeout=120)
    if child.returncode:
        raise RuntimeError(f"the writer exited with {child.returncode}: {err.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# -- the cases -------------------------------------------------------------------------------


def write_replay(path: Path, books: int) -> None:
    cycle = make_books()
    with journal.Writer(path, segment_size=SEGMENT_SIZE) as writer:
        for i in range(books):
            ex, sym, bids, asks = cycle[i % len(cycle)]
            writer.append_orderbook(ex, sym, 1_732_000_000_000, i, bids, asks)


def replay_run(path: Path, kind: str, books: int, levels: bool) -> dict[str, float]:
    """Read the whole journal; ``levels``: and take each book's two level views."""
    with READERS[kind](path, metrics=True, name=f"bench-{kind}") as reader:
        count = 0
        start = time.perf_counter_ns()
        if levels:
            for book in reader.available():
                book.bids  # noqa: B018 (the view, made on first use by the compiled reader)
                book.asks  # noqa: B018
                count += 1
        else:
            for _ in reader.available():
                count += 1
        elapsed = time.perf_counter_ns() - start
    if count != books:
        raise RuntimeError(f"{kind}: read {count} of {books} books")
    return {"rate": books / (elapsed / 1e9), "us": elapsed / books / 1e3}


def live_run(base: Path, kind: str, books: int, run: int) -> dict[str, float]:
    path = base / f"live-{kind}-{run}"
    with writer_process(path, books, 0) as child:
        with READERS[kind](path, start="end", idle="spin", name=f"bench-{kind}") as reader:
            time.sleep(SETTLE_S)
            go(child)
            first = 0
            for count, book in enumerate(reader, 1):
                if book.sequence != count - 1:
                    raise RuntimeError(f"{kind}: book {count - 1} has sequence {book.sequence}")
                if count == 1:
                    first = time.perf_counter_ns()
                elif count == books:
                    break
            last = time.perf_counter_ns()
            last_ns = time.time_ns()
        written = writer_result(child)
    shutil.rmtree(path, ignore_errors=True)
    return {
        "rate": (books - 1) / ((last - first) / 1e9),
        "writer_rate": written["rate"],
        "behind_ms": max(0.0, (last_ns - written["end_ns"]) / 1e6),
        "writer": written["writer"],
    }


def latency_run(base: Path, kind: str, books: int, run: int) -> dict[str, float]:
    path = base / f"latency-{kind}-{run}"
    lat = np.zeros(books, dtype=np.int64)
    now = time.time_ns
    with writer_process(path, books, PACED_RATE) as child:
        with READERS[kind](path, start="end", idle="spin", name=f"bench-{kind}") as reader:
            time.sleep(SETTLE_S)
            go(child)
            for i, book in enumerate(reader):
                lat[i] = now() - book.local_timestamp_ns
                if i + 1 == books:
                    break
        writer_result(child)
    shutil.rmtree(path, ignore_errors=True)
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9]) / 1e3
    return {"p50": float(p50), "p99": float(p99), "p999": float(p999)}


# -- report ------------------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def spread(runs: list[dict[str, Any]], key: str) -> str:
    values = [run[key] for run in runs]
    return f"{min(values):,.3g}..{max(values):,.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    parser.add_argument(
        "--cases",
        default="replay,live,latency",
        help="which of replay, live, latency to run (default: all; the judged figures need all)",
    )
    parser.add_argument("--writer-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer_child:
        child_writer(json.loads(args.writer_child))
        return
    if _native.creader is None:
        raise SystemExit(f"the compiled reader is not in use ({_native.describe()}): make setup")
    s = QUICK if args.quick else DEFAULT
    cases = set(args.cases.split(","))
    if not cases <= {"replay", "live", "latency"}:
        parser.error(f"--cases {args.cases}: choose among replay, live, latency")
    print(f"machine: {cpu_model()}, numpy {np.__version__}; load {load()}")
    print(f"code: {commit('journal', 'benchmarks')}; {_native.describe()}")
    busy = cpu_check()
    print(f"two busy processes lost {busy[0]:.1%} / {busy[1]:.1%} of their time off CPU")
    base = SHM / f"bench-reader-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        replay = base / "replay"
        if "replay" in cases:
            write_replay(replay, s.replay_books)
        for run in range(s.rounds):
            for kind in ("compiled", "pure"):
                if "replay" in cases:
                    runs.setdefault(("replay", kind), []).append(
                        replay_run(replay, kind, s.replay_books, levels=False)
                    )
                    runs.setdefault(("replay+levels", kind), []).append(
                        replay_run(replay, kind, s.replay_books, levels=True)
                    )
                if "live" in cases:
                    runs.setdefault(("live", kind), []).append(
                        live_run(base, kind, s.live_books, run)
                    )
                if "latency" in cases:
                    runs.setdefault(("latency", kind), []).append(
                        latency_run(base, kind, s.paced_books, run)
                    )
            print(f"  round {run + 1}/{s.rounds} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"\n10x10 books; {s.rounds} rounds, medians; replay {s.replay_books:,} books, "
        f"live {s.live_books:,}, latency {s.paced_books:,} at {PACED_RATE:,}/s"
    )
    print(f"{'case':<56} {'compiled':>10} {'pure':>10} {'ratio':>7}")

    def row(label: str, case: str, key: str, fmt: str, higher_better: bool = True) -> float:
        c = median(runs[(case, "compiled")], key)
        p = median(runs[(case, "pure")], key)
        ratio = c / p if higher_better else p / c
        print(f"{label:<56} {format(c, fmt):>10} {format(p, fmt):>10} {ratio:>6.1f}x")
        return ratio

    if "replay" in cases:
        row("replay, available(): books/s", "replay", "rate", ",.0f")
        row("  µs per book", "replay", "us", ".3f", higher_better=False)
        row("replay, taking each book's bids and asks: books/s", "replay+levels", "rate", ",.0f")
        row("  µs per book", "replay+levels", "us", ".3f", higher_better=False)
    if "live" in cases:
        row("live, writer process flooded: reader books/s", "live", "rate", ",.0f")
        row("  writer books/s, same runs", "live", "writer_rate", ",.0f")
        print(
            f"{'  reader done after the writer, ms (0: kept up)':<56} "
            f"{median(runs[('live', 'compiled')], 'behind_ms'):>10.1f} "
            f"{median(runs[('live', 'pure')], 'behind_ms'):>10.1f}"
        )
    if "latency" in cases:
        row("latency, 10k/s, reader spins: p50 µs", "latency", "p50", ".2f", higher_better=False)
        row("  p99 µs", "latency", "p99", ".2f", higher_better=False)
        row("  p99.9 µs", "latency", "p999", ".2f", higher_better=False)
    for case, key in (
        ("replay", "rate"),
        ("replay+levels", "rate"),
        ("live", "rate"),
        ("latency", "p50"),
    ):
        if case.partition("+")[0] in cases:
            print(
                f"  spread {case} {key}: compiled {spread(runs[(case, 'compiled')], key)}, "
                f"pure {spread(runs[(case, 'pure')], key)}"
            )
    if cases != {"replay", "live", "latency"}:
        return
    writer = runs[("live", "compiled")][0]["writer"]
    replay_ratio = median(runs[("replay", "compiled")], "rate") / median(
        runs[("replay", "pure")], "rate"
    )
    replay_rate = median(runs[("replay", "compiled")], "rate")
    levels_rate = median(runs[("replay+levels", "compiled")], "rate")
    writer_rate = statistics.median(
        run["writer_rate"] for kind in ("compiled", "pure") for run in runs[("live", kind)]
    )
    p50 = median(runs[("latency", "compiled")], "p50")
    print(f"\njudged (issue #13), {writer}:")
    print(f"  compiled / pure reader, replay: {replay_ratio:.1f}x (at least 5x)")
    print(
        f"  compiled reader {replay_rate:,.0f} books/s / the writer's {writer_rate:,.0f} "
        f"books/s: {replay_rate / writer_rate:.2f}x (above 1x); taking both level views "
        f"{levels_rate:,.0f} books/s: {levels_rate / writer_rate:.2f}x; live it was done "
        f"{median(runs[('live', 'compiled')], 'behind_ms'):.1f} ms after the writer"
    )
    print(f"  publish to Python reader, spinning, p50: {p50:.2f} µs (under 3 µs)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
