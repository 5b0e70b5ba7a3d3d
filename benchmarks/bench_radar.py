"""Python collector to C++ radar: latency against pyzmq and a Python reader, and replay rate.

    .venv/bin/python benchmarks/bench_radar.py [--quick] [--replay-only]

Needs the release build of the radar (``make cpp``: build/release/radar) and pyzmq
(``pip install -e '.[bench]'``; ``make bench`` does both). What it measures, in one run:

1. Python append -> C++ radar: a writer process (this script, hidden child mode)
   appends realistic 10x10 books (four venues, a dozen symbols, ``local_timestamp_ns``
   taken by ``append_orderbook`` itself) to a journal in /dev/shm while
   ``build/release/radar --start end --quiet --max-records N`` tails it with
   ``--idle spin``, ``futex`` and ``backoff``. The latency is the radar's own summary:
   from each book's ``local_timestamp_ns`` (CLOCK_REALTIME, which the writer stamps
   after validating and laying out the book, just before its commit) to when the
   radar has read and verified it: the hand-off itself.
2. The same bytes over pyzmq ``ipc://``: the writer process encodes each book with
   ``OrderBookEncoder().encode`` (the same record, stamped the same way: just before
   ``send``) and sends it
   on a PUSH socket; a Python consumer process receives it on PULL (blocking ``recv``,
   and a variant that busy-polls with ``NOBLOCK``, the analogue of spinning), decodes
   it with ``journal._decode.read_orderbook`` and records now - ``local_timestamp_ns``.
3. Python append -> Python ``journal.Reader(idle="spin")`` in its own process: the
   Python-to-Python comparison with the same decode as the zmq consumer.
4. Ratios, per round (every case runs once per round, rounds interleaved, so a slow
   spell of this shared machine hits every case alike), then their median.

Each latency case runs at three pacings: 10,000 books/s with the writer sleeping until
each book's slot (its CPU idles between books, as a collector waiting on websockets
does: the headline), 10,000 books/s with the writer busy-waiting on
``time.perf_counter_ns``, and flooded (as fast as the writer can). Busy-waiting keeps
the writer's CPU 100% busy: with a spinning consumer that is two busy CPUs, which a VM
whose vCPUs share fewer physical CPUs cannot give (the ``stalled`` column shows the
writer descheduled; the CPU check at the start and end measures it directly).
Flooded, a consumer slower than the writer falls behind and its latency becomes
queueing time: that column measures throughput headroom, the paced ones latency.
The ``publish`` column is the writer's own call (append, or encode + send); the
stamp is taken at its end, so the latency does not include it.

5. C++ replay: N books written once with ``Writer.append_many``, then
   ``radar --start beginning --max-records N --fx 1400`` (engine and all) replays them
   in four variants, interleaved (each repeat runs them all, in turn forwards and
   backwards): as deployed (registered as the journal's reader, publishing
   radar.metrics), with ``--no-verify``, registered but without radar.metrics (no
   ``--metrics-file``, no ``--results``), and ``--no-metrics`` (neither). Records/s
   from the radar's own summary; what radar.metrics costs is the deployed radar
   against the registered one without it, per repeat (the two ran next to each
   other), then the median. benchmarks/callgrind_radar.py counts the same in
   instructions per book.

Every radar run of the latency cases publishes its figures in a radar.metrics
(``--metrics-file``, as a radar with ``--results`` does by default), so the latency and
the replay rate are those of the radar as deployed.

Readiness: a journal consumer starts at the end of a journal that already exists (the
writer created it and appended a warm-up that compiles its encoders), and the writer
starts only once the radar has mapped the segment (/proc/PID/maps) or the Python
consumer said it is ready, plus a short settle. Every figure is the median of the
rounds (min and max shown); ``--quick`` runs two rounds. Everything is created under
one directory in /dev/shm, removed at the end; child processes are killed on any error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _books import INSTRUMENTS, make_books
from _children import wait_mapped, wait_ready
from _machine import commit, cpu_check, cpu_model, load

import journal
from journal._decode import read_orderbook
from journal._orderbook_layout import LOCAL_TIMESTAMP_NS_POS

ROOT = Path(__file__).resolve().parent.parent
RADAR = ROOT / "build" / "release" / "radar"
SHM = Path("/dev/shm")
PACED_RATE = 10_000  # books/s
WARMUP = 1_000  # books appended or sent before a run, not measured
STALL_NS = 50_000  # a busy loop that sees the clock jump this much was descheduled
SETTLE_S = 0.1  # after the consumer is ready, before the writer starts
FX = 1_400.0
REPLAY_AGE_NS = 3_600 * 10**9  # how old the replayed books are (write_replay)

SEQUENCED = {"binance", "bybit"}


@dataclass(frozen=True)
class Settings:
    rounds: int
    paced_books: int  # per paced latency run (at PACED_RATE)
    flood_books: int  # per flooded latency run
    replay_books: int
    replay_repeats: int


DEFAULT = Settings(5, 8_000, 40_000, 1_000_000, 11)
QUICK = Settings(2, 3_000, 10_000, 200_000, 5)


@dataclass(frozen=True)
class Case:
    name: str  # consumer, as printed
    kind: str  # radar | reader | zmq | zmq-spin
    idle: str = ""  # the radar's --idle


CASES = [
    Case("C++ radar, --idle spin", "radar", "spin"),
    Case("C++ radar, --idle futex", "radar", "futex"),
    Case("C++ radar, --idle backoff", "radar", "backoff"),
    Case("Python journal.Reader, idle spin", "reader"),
    Case("pyzmq ipc PUSH/PULL, blocking recv", "zmq"),
    Case("pyzmq ipc PUSH/PULL, NOBLOCK busy-poll", "zmq-spin"),
]


@dataclass(frozen=True)
class Pacing:
    label: str
    rate: int  # books/s, 0: as fast as the writer can
    mode: str  # how the writer waits for a book's slot: sleep | busy


PACINGS = [
    Pacing("10k/s, writer sleeps", PACED_RATE, "sleep"),
    Pacing("10k/s, writer busy-waits", PACED_RATE, "busy"),
    Pacing("flooded", 0, ""),
]


# -- the books ---------------------------------------------------------------------------


class Sequencer:
    """Per-symbol sequence numbers for the book cycle (0 for venues without them)."""

    def __init__(self, books: list[tuple[str, str, Any, Any]]) -> None:
        self.keys = [(ex, sym) for ex, sym, _, _ in books]
        self.sequence = {key: 1_000_000 for key in self.keys}

    def next(self, index: int) -> int:
        key = self.keys[index]
        if key[0] not in SEQUENCED:
            return 0
        self.sequence[key] += 1
        return self.sequence[key]


# -- child processes (hidden modes) ------------------------------------------------------


def child_writer(spec: dict[str, Any]) -> None:
    """Append (or encode and send) ``books`` books after the parent's go on stdin.

    Pacing: ``busy`` spins on perf_counter_ns until each book's slot; ``sleep`` sleeps
    until it (the writer's CPU idles between books, as a collector waiting on its
    websockets does); no rate: as fast as possible. Also times each publish call.
    """
    books = make_books()
    cycle = len(books)
    seq = Sequencer(books)
    total, rate, warmup = spec["books"], spec["rate"], spec["warmup"]
    interval = 1e9 / rate if rate else 0.0
    sleep_pacing = spec["pacing"] == "sleep"
    clock = time.perf_counter_ns
    sleep = time.sleep
    if spec["mode"] == "journal":
        writer: journal.Writer | None = journal.Writer(spec["path"])
        publish = writer.append_orderbook
        sock = context = None
    else:
        import zmq

        writer = None
        context = zmq.Context()
        sock = context.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 30_000)
        sock.connect(spec["endpoint"])
        encode = journal.OrderBookEncoder().encode
        send = sock.send
        stamp = struct.Struct("<q").pack_into

        def publish(*book: Any) -> None:
            # Stamped right before the hand-off, as the journal writer stamps right
            # before its commit: both latencies measure the transport alone.
            record = bytearray(encode(*book, 0))
            stamp(record, LOCAL_TIMESTAMP_NS_POS, time.time_ns())
            send(record)

    ts_ms = time.time_ns() // 1_000_000
    for i in range(warmup):
        ex, sym, bids, asks = books[i % cycle]
        publish(ex, sym, ts_ms, seq.next(i % cycle), bids, asks)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    costs = [0] * total
    stalled = 0  # busy-wait pacing: time the writer's loop was off its CPU
    ts_ms = time.time_ns() // 1_000_000
    start = clock()
    for i in range(total):
        if interval:
            target = start + int(i * interval)
            if sleep_pacing:
                ahead = target - clock()
                if ahead > 0:
                    sleep(ahead / 1e9)
            else:
                last = clock()
                while last < target:
                    now = clock()
                    if now - last > STALL_NS:
                        stalled += now - last
                    last = now
        ex, sym, bids, asks = books[i % cycle]
        began = clock()
        publish(ex, sym, ts_ms + i // 10, seq.next(i % cycle), bids, asks)
        costs[i] = clock() - began
    elapsed = clock() - start
    costs.sort()
    result = {
        "rate": total / (elapsed / 1e9),
        "publish_p50": costs[total // 2] / 1e3,
        "stalled": stalled / elapsed if interval and not sleep_pacing else None,
    }
    print(json.dumps(result), flush=True)
    if writer is not None:
        writer.close()
    if sock is not None and context is not None:
        sock.close()  # LINGER: waits until the consumer has every message
        context.term()


def latency_summary(lat: list[int], first_ns: int, last_ns: int) -> dict[str, Any]:
    ordered = sorted(lat)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, int(q / 100 * n))] / 1e3

    return {
        "count": n,
        "p50": pct(50),
        "p99": pct(99),
        "p999": pct(99.9),
        "max": ordered[-1] / 1e3,
        "rate": (n - 1) / ((last_ns - first_ns) / 1e9) if last_ns > first_ns else 0.0,
    }


def child_reader(spec: dict[str, Any]) -> None:
    """Tail the journal from its end with ``journal.Reader(idle="spin")``."""
    total = spec["books"]
    lat = [0] * total
    now = time.time_ns
    if sys.stdin.readline().strip() != "open":  # the writer has created the journal
        return
    with journal.Reader(spec["path"], start="end", idle="spin") as reader:
        poll = reader.poll
        print("ready", flush=True)
        first = 0
        for i in range(total):
            book = poll(30.0)
            if book is None:
                raise SystemExit(f"reader: timed out after {i} of {total} books")
            lat[i] = now() - book.local_timestamp_ns
            if i == 0:
                first = time.perf_counter_ns()
        last = time.perf_counter_ns()
    print(json.dumps(latency_summary(lat, first, last)), flush=True)


def child_zmq(spec: dict[str, Any]) -> None:
    """PULL, decode each record as a journal reader would, record now - local ts."""
    import zmq

    total, warmup, spin = spec["books"], spec["warmup"], spec["spin"]
    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)
    sock.bind(spec["endpoint"])
    recv = sock.recv
    for _ in range(warmup):
        recv()
    print("ready", flush=True)  # the pipe is up and warm
    lat = [0] * total
    now = time.time_ns
    again = zmq.Again
    noblock = zmq.NOBLOCK
    first = 0
    for i in range(total):
        if spin:
            while True:
                try:
                    buf = recv(noblock)
                    break
                except again:
                    pass
        else:
            buf = recv()
        book = read_orderbook(buf, 0, len(buf), (0, 0))
        lat[i] = now() - book.local_timestamp_ns
        if i == 0:
            first = time.perf_counter_ns()
    last = time.perf_counter_ns()
    sock.close(linger=0)
    context.term()
    print(json.dumps(latency_summary(lat, first, last)), flush=True)


# -- parent: process handling ----------------------------------------------------------


class Children:
    """Every process started for a run; all killed (by pid) if still alive at exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def python(self, mode: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
        return self.start(
            [sys.executable, __file__, "--child", mode, json.dumps(spec)],
            stdin=subprocess.PIPE,
        )

    def start(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
        )
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
                proc.communicate(timeout=10)


def finish(proc: subprocess.Popen[str], what: str, timeout: float) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise RuntimeError(f"{what} timed out: {err.strip()[-2000:]}") from None
    if proc.returncode:
        raise RuntimeError(f"{what} exited with {proc.returncode}: {err.strip()[-2000:]}")
    return out, err


SUMMARY = re.compile(r"radar summary: (\d+) books in ([\d.]+) s \(([\d.]+)/s\)")
LATENCY = re.compile(
    r"publish-to-observe latency: p50 ([\d.]+) us, p99 ([\d.]+) us, "
    r"p99\.9 ([\d.]+) us, max ([\d.]+) us \((\d+) books\)"
)


def radar_latency(err: str, books: int) -> dict[str, Any]:
    match = LATENCY.search(err)
    if match is None:
        raise RuntimeError(f"no latency line in the radar's summary:\n{err}")
    count = int(match.group(5))
    if count != books:
        raise RuntimeError(f"the radar saw {count} of {books} books:\n{err}")
    p50, p99, p999, worst = (float(match.group(i)) for i in range(1, 5))
    return {"count": count, "p50": p50, "p99": p99, "p999": p999, "max": worst, "rate": None}


def latency_run(run_dir: Path, case: Case, pacing: Pacing, books: int) -> dict[str, Any]:
    """One case at one pacing: consumer ready, then the writer goes; counts checked.

    The writer and a Python consumer start together (their imports overlap); a journal
    consumer opens the journal at its end only once the writer has created it and
    appended its warm-up.
    """
    run_dir.mkdir()
    timeout = 60 + books / 5_000
    writer_spec = {"books": books, "rate": pacing.rate, "pacing": pacing.mode, "warmup": WARMUP}
    try:
        with Children() as children:
            if case.kind.startswith("zmq"):
                endpoint = f"ipc://{run_dir}/push.ipc"
                spec = {"endpoint": endpoint, "books": books, "warmup": WARMUP}
                consumer = children.python("zmq", {**spec, "spin": case.kind == "zmq-spin"})
                writer = children.python("writer", {**writer_spec, **spec, "mode": "zmq"})
                wait_ready(writer, "zmq writer")
                wait_ready(consumer, "zmq consumer")
            else:
                path = run_dir / "books"
                if case.kind == "reader":
                    consumer = children.python("reader", {"path": str(path), "books": books})
                writer = children.python(
                    "writer", {**writer_spec, "mode": "journal", "path": str(path)}
                )
                wait_ready(writer, "journal writer")
                if case.kind == "radar":
                    consumer = children.start(
                        [str(RADAR), "--journal", str(path), "--start", "end", "--quiet",
                         "--idle", case.idle, "--max-records", str(books),
                         "--metrics-file", str(run_dir / "radar.metrics")],
                        stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                    wait_mapped(consumer, path)
                else:
                    tell(consumer, "open")
                    wait_ready(consumer, "journal.Reader consumer")
            time.sleep(SETTLE_S)
            tell(writer, "go")
            out, _ = finish(writer, "writer", timeout)
            written = json.loads(out.strip().splitlines()[-1])
            out, err = finish(consumer, case.name, timeout)
            if case.kind == "radar":
                result = radar_latency(err, books)
            else:
                result = json.loads(out.strip().splitlines()[-1])
                if result["count"] != books:
                    raise RuntimeError(f"{case.name} saw {result['count']} of {books} books")
            result["writer_rate"] = written["rate"]
            result["publish_p50"] = written["publish_p50"]
            result["stalled"] = written["stalled"]
            return result
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def tell(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


# -- replay --------------------------------------------------------------------------------


def write_replay(path: Path, total: int) -> float:
    """``total`` books in batches of 1,000 with ``append_many``; returns books/s."""
    books = make_books()
    cycle = len(books)
    seq = Sequencer(books)
    # Stamped an hour ago: every run is a replay. Books read within a second of their
    # stamp make the radar live (radar.cpp, ReplayClock: latency recorded, observed()
    # stored), which the first runs after writing were, and the later ones not.
    local_ns = time.time_ns() - REPLAY_AGE_NS
    ts_ms = local_ns // 1_000_000
    start = time.perf_counter()
    with journal.Writer(path) as writer:
        for first in range(0, total, 1_000):
            batch = []
            for i in range(first, min(total, first + 1_000)):
                ex, sym, bids, asks = books[i % cycle]
                batch.append(
                    (ex, sym, ts_ms + i // 10, seq.next(i % cycle), bids, asks, local_ns + i * 100)
                )
            writer.append_many(batch)
    return total / (time.perf_counter() - start)


@dataclass(frozen=True)
class Replay:
    options: tuple[str, ...]  # the radar's options beyond the replay's own
    radar_metrics: bool  # publishes radar.metrics (--metrics-file)


DEPLOYED = "verified (default)"
WITHOUT_FILE = "verified, registered, no radar.metrics"
REPLAY_VARIANTS = {
    DEPLOYED: Replay((), True),  # as a radar with --results runs
    "--no-verify": Replay(("--no-verify",), True),
    WITHOUT_FILE: Replay((), False),  # the reader registration alone
    "verified, --no-metrics": Replay(("--no-metrics",), False),  # neither
}


def replay_run(path: Path, books: int, variant: Replay) -> dict[str, float]:
    argv = [
        str(RADAR), "--journal", str(path), "--start", "beginning", "--quiet",
        "--idle", "spin", "--max-records", str(books), "--stale-ms", "100000000000",
        "--fx", str(FX), *variant.options,
    ]  # fmt: skip
    if variant.radar_metrics:
        argv += ["--metrics-file", str(path.parent / "radar.metrics")]
    with Children() as children:
        start = time.perf_counter()
        proc = children.start(argv, stdin=subprocess.DEVNULL)
        _, err = finish(proc, "radar replay", 120)
        wall = time.perf_counter() - start
    match = SUMMARY.search(err)
    if match is None:
        raise RuntimeError(f"no summary line from the radar:\n{err}")
    if int(match.group(1)) != books:
        raise RuntimeError(f"the radar replayed {match.group(1)} of {books} books:\n{err}")
    if "results: 0 " in err:
        raise RuntimeError(f"the radar computed no results on replay:\n{err}")
    return {"rate": float(match.group(3)), "wall_rate": books / wall}


# -- report ----------------------------------------------------------------------------------


def machine() -> str:
    try:
        import zmq
    except ImportError:  # --replay-only does without it
        return f"{cpu_model()}, numpy {np.__version__}"
    return (
        f"{cpu_model()}, numpy {np.__version__}, "
        f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})"
    )


def version() -> str:
    """The commit, local changes, and when the radar binary was built."""
    built = time.strftime("%Y-%m-%d %H:%M", time.localtime(RADAR.stat().st_mtime))
    return f"{commit('journal/', 'radar_reader/')}; radar binary built {built}"


@dataclass
class Runs:
    """Results per (consumer, pacing), one per round, in round order."""

    by_key: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, case: Case, pacing: Pacing, result: dict[str, Any]) -> None:
        self.by_key.setdefault((case.name, pacing.label), []).append(result)

    def get(self, case: Case, pacing: Pacing) -> list[dict[str, Any]]:
        return self.by_key[(case.name, pacing.label)]

    def median(self, case: Case, pacing: Pacing, key: str) -> float:
        return statistics.median(r[key] for r in self.get(case, pacing))


def ratio(runs: Runs, over: Case, under: Case, pacing: Pacing) -> tuple[float, float, float]:
    """p50 ratio per round (the cases of a round ran close together): median, min, max."""
    pairs = zip(runs.get(over, pacing), runs.get(under, pacing), strict=True)
    values = [a["p50"] / b["p50"] for a, b in pairs]
    return statistics.median(values), min(values), max(values)


def fmt_us(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def fmt_x(value: float) -> str:
    return f"{value:.1f}x" if value >= 0.95 else f"{value:.2g}x"


def fmt_ratio(r: tuple[float, float, float]) -> str:
    return f"{fmt_x(r[0])} [{fmt_x(r[1])[:-1]}-{fmt_x(r[2])}]"


def report_latency(s: Settings, runs: Runs, lost: list[float]) -> None:
    print(
        f"\npublish-to-observe latency, us: from local_timestamp_ns (stamped just before "
        f"the journal commit or the pyzmq send) to the consumer having read the book; median over "
        f"{s.rounds} rounds"
    )
    print(
        f"{'consumer':<40} {'p50':>7} {'p99':>8} {'p99.9':>8} {'max':>8} "
        f"{'p50 min-max':>14} {'publish':>8} {'writer/s':>9} {'read/s':>8} {'stalled':>8}"
    )
    for pacing in PACINGS:
        books = s.paced_books if pacing.rate else s.flood_books
        print(f"-- {pacing.label}, {books:,} books per run")
        for case in CASES:
            results = runs.get(case, pacing)
            p50s = [r["p50"] for r in results]
            rates = [r["rate"] for r in results if r["rate"]]
            read = f"{statistics.median(rates):>8,.0f}" if rates else f"{'-':>8}"
            stalls = [r["stalled"] for r in results if r["stalled"] is not None]
            stall = f"{statistics.median(stalls):>8.1%}" if stalls else f"{'-':>8}"
            spread = f"{fmt_us(min(p50s))}-{fmt_us(max(p50s))}"
            print(
                f"{case.name:<40} {fmt_us(runs.median(case, pacing, 'p50')):>7} "
                f"{fmt_us(runs.median(case, pacing, 'p99')):>8} "
                f"{fmt_us(runs.median(case, pacing, 'p999')):>8} "
                f"{fmt_us(runs.median(case, pacing, 'max')):>8} {spread:>14} "
                f"{runs.median(case, pacing, 'publish_p50'):>8.1f} "
                f"{runs.median(case, pacing, 'writer_rate'):>9,.0f} {read} {stall}"
            )
    print(
        "publish: p50 us of the writer's append_orderbook (journal) or encode + send (zmq)"
        " call, most of it inside the latency;\nread/s: Python consumers, first to last "
        "book; stalled: share of a busy-waiting writer's time off its CPU (descheduled).\n"
        "Flooded, a consumer slower than the writer queues: its latency is waiting time."
    )

    spin, futex, backoff, reader, zmq_block, zmq_spin = CASES
    pairs = [
        ("pyzmq blocking / radar spin", zmq_block, spin),
        ("pyzmq blocking / radar futex", zmq_block, futex),
        ("pyzmq blocking / radar backoff", zmq_block, backoff),
        ("pyzmq busy-poll / radar spin", zmq_spin, spin),
        ("pyzmq blocking / Python Reader spin", zmq_block, reader),
        ("pyzmq busy-poll / Python Reader spin", zmq_spin, reader),
        ("Python Reader spin / radar spin", reader, spin),
    ]
    ratios = {(label, p.label): ratio(runs, over, under, p) for label, over, under in pairs
              for p in PACINGS}  # fmt: skip
    print("\np50 ratios, computed per round then median [min-max over rounds]:")
    print(f"  {'':<38}" + "".join(f" {p.label:>26}" for p in PACINGS))
    for label, _, _ in pairs:
        cells = [ratios[(label, p.label)] for p in PACINGS]
        print(f"  {label:<38}" + "".join(f" {fmt_ratio(c):>26}" for c in cells))
    headline = PACINGS[0]
    for label in ("pyzmq blocking / radar spin", "pyzmq blocking / radar futex"):
        value, worst, _ = ratios[(label, headline.label)]
        print(
            f"  bar, pyzmq p50 >= 10x radar p50 ({label.split(' / ')[1]}, {headline.label}): "
            f"{'met' if value >= 10 else 'NOT met'}, {value:.1f}x (worst round {worst:.1f}x)"
        )
    print(
        f"  CPU check, two busy processes off their CPU (~0% on two real cores): "
        f"{lost[0]:.0%} and {lost[1]:.0%} before the runs, {lost[2]:.0%} and {lost[3]:.0%} "
        "after"
    )

    print("\n## Latency summary (Markdown)\n")
    print(
        f"Machine: {machine()}; two busy processes were off their vCPU "
        f"{max(lost[:2]):.0%} of the time before the runs, {max(lost[2:]):.0%} after (0% on "
        f"two real cores). Medians of {s.rounds} interleaved "
        f"rounds; 10x10 books over {len(INSTRUMENTS)} venue/symbol pairs. Latency: from "
        "`local_timestamp_ns`, stamped just before the hand-off (the journal commit, "
        "or the pyzmq send), "
        "to the consumer having read the book; p50 [min-max over rounds].\n"
    )
    print("| Consumer | " + " | ".join(f"p50 / p99, {p.label}" for p in PACINGS) + " |")
    print("|---|" + "---|" * len(PACINGS))
    for case in CASES:
        cells = []
        for p in PACINGS:
            p50s = [r["p50"] for r in runs.get(case, p)]
            cells.append(
                f"{fmt_us(runs.median(case, p, 'p50'))} µs "
                f"[{fmt_us(min(p50s))}-{fmt_us(max(p50s))}] / "
                f"{fmt_us(runs.median(case, p, 'p99'))} µs"
            )
        print(f"| {case.name} | " + " | ".join(cells) + " |")
    print("\n| p50 ratio, same run | " + " | ".join(p.label for p in PACINGS) + " |")
    print("|---|" + "---|" * len(PACINGS))
    for label, _, _ in pairs:
        cells = [ratios[(label, p.label)] for p in PACINGS]
        print(
            f"| {label} | " + " | ".join(fmt_ratio(c) for c in cells)
            + " |"
        )  # fmt: skip


def same_run_cost(replay: dict[str, list[dict[str, float]]]) -> tuple[list[float], list[float]]:
    """What radar.metrics costs, per repeat: the deployed radar against the registered
    one without the file, which ran next to it: extra ns per book, and the share of
    the rate without it that is lost."""
    pairs = list(zip(replay[DEPLOYED], replay[WITHOUT_FILE], strict=True))
    extra_ns = [1e9 / a["rate"] - 1e9 / b["rate"] for a, b in pairs]
    lost = [1 - a["rate"] / b["rate"] for a, b in pairs]
    return extra_ns, lost


def report_replay(
    s: Settings, replay: dict[str, list[dict[str, float]]], write_rate: float
) -> None:
    print(
        f"\nC++ replay: radar --start beginning --fx {FX:g} (engine included) over "
        f"{s.replay_books:,} books (written at {write_rate:,.0f} books/s with append_many); "
        f"{s.replay_repeats} repeats of every variant, interleaved, the radar's own books/s:"
    )
    for label in REPLAY_VARIANTS:
        rates = [r["rate"] for r in replay[label]]
        walls = [r["wall_rate"] for r in replay[label]]
        med = statistics.median(rates)
        print(
            f"  {label:<40} median {med:>11,.0f}/s ({1e9 / med:.0f} ns/book), "
            f"min {min(rates):>11,.0f}, max {max(rates):>11,.0f}; "
            f"whole process incl. start-up {statistics.median(walls):>11,.0f}/s"
        )
    extra_ns, lost = same_run_cost(replay)
    cost = (
        f"{statistics.median(extra_ns):+.1f} ns/book [{min(extra_ns):+.1f} to "
        f"{max(extra_ns):+.1f}], {statistics.median(lost):.1%} of the replay rate "
        f"[{min(lost):.1%} to {max(lost):.1%}]"
    )
    fastest = {label: max(r["rate"] for r in replay[label]) for label in (DEPLOYED, WITHOUT_FILE)}
    # The fastest repeat of each: the least disturbed by other work on a shared machine.
    best = (
        f"{1e9 / fastest[DEPLOYED] - 1e9 / fastest[WITHOUT_FILE]:+.1f} ns/book, "
        f"{1 - fastest[DEPLOYED] / fastest[WITHOUT_FILE]:.1%} of the replay rate"
    )
    print(
        f"  radar.metrics, same repeat ('{DEPLOYED}' against '{WITHOUT_FILE}'): {cost}; "
        f"median [min to max] over repeats; fastest repeat of each: {best}"
    )

    print("\n## Replay summary (Markdown)\n")
    print("| C++ replay, radar with its engine | books/s |")
    print("|---|---|")
    for label in REPLAY_VARIANTS:
        med = statistics.median(r["rate"] for r in replay[label])
        shown = label.replace("--no-verify", "`--no-verify`").replace(
            "--no-metrics", "`--no-metrics`"
        )
        print(f"| {shown} | {med:,.0f} ({1e9 / med:.0f} ns/book) |")
    print(f"\nPublishing radar.metrics, same repeat: {cost}; fastest repeat of each: {best}.")


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 45 s)")
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="only the C++ replay (its variants, and what radar.metrics costs): seconds",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, spec = args.child[0], json.loads(args.child[1])
        {"writer": child_writer, "reader": child_reader, "zmq": child_zmq}[mode](spec)
        return

    if not RADAR.exists():
        sys.exit(f"{RADAR} is missing: run `make cpp` first")
    if not args.replay_only:
        try:
            import zmq  # noqa: F401
        except ImportError:
            sys.exit("pyzmq is missing: pip install -e '.[bench]' (make bench does it)")

    s = QUICK if args.quick else DEFAULT
    base = SHM / f"bench-radar-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    began = time.monotonic()
    flags = "".join(
        f" --{f}" for f in ("quick", "replay-only") if getattr(args, f.replace("-", "_"))
    )
    print(f"# bench_radar{flags}: {machine()}")
    print(f"# at {version()}")
    print(f"# load average at start: {load()} (other work on these CPUs skews every figure)")
    lost = cpu_check(1.0)
    print(
        f"# CPU check: two busy processes were off their CPU {lost[0]:.0%} and {lost[1]:.0%} "
        "of the time (gaps > 50 us; ~0% on two real cores)"
    )
    rounds = 0 if args.replay_only else s.rounds
    print(
        f"# {rounds} rounds x {len(CASES)} consumers x {len(PACINGS)} pacings "
        f"({s.paced_books:,} books paced, {s.flood_books:,} flooded), interleaved; "
        f"replay {s.replay_repeats} x {len(REPLAY_VARIANTS)} variants x "
        f"{s.replay_books:,} books\n",
        flush=True,
    )
    # SIGTERM (make, a CI timeout) unwinds like Ctrl-C: children killed, /dev/shm cleaned.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs = Runs()
    replay: dict[str, list[dict[str, float]]] = {label: [] for label in REPLAY_VARIANTS}
    try:
        base.mkdir(mode=0o700)
        run = 0
        for round_ in range(rounds):
            for pacing in PACINGS:
                books = s.paced_books if pacing.rate else s.flood_books
                for case in CASES:
                    run += 1
                    runs.add(case, pacing, latency_run(base / f"run-{run}", case, pacing, books))
            first = PACINGS[0]
            print(
                f"# round {round_ + 1}/{s.rounds} done at {time.monotonic() - began:.0f} s: "
                f"{first.label}: radar spin p50 {runs.get(CASES[0], first)[-1]['p50']:.1f} us, "
                f"futex {runs.get(CASES[1], first)[-1]['p50']:.1f} us, "
                f"pyzmq {runs.get(CASES[4], first)[-1]['p50']:.1f} us",
                flush=True,
            )
        path = base / "replay"
        write_rate = write_replay(path, s.replay_books)
        for repeat in range(s.replay_repeats):
            # Forwards, then backwards: no variant always runs first (a warm page cache,
            # a CPU's clock still rising).
            order = list(REPLAY_VARIANTS.items())
            for label, variant in order if repeat % 2 == 0 else reversed(order):
                replay[label].append(replay_run(path, s.replay_books, variant))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lost += cpu_check(1.0)
    if rounds:
        report_latency(s, runs, lost)
    report_replay(s, replay, write_rate)
    print(
        f"\n# total {time.monotonic() - began:.1f} s; load average at end: {load()}; "
        f"/dev/shm cleaned up: {not base.exists()}"
    )


if __name__ == "__main__":
    main()
