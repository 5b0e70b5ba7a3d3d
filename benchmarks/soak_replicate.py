"""The replication soak: the issue's acceptance run, its figures printed.

1,000,000 books replicated through a 3-node JetStream cluster while the replicator,
the mirror and one server are each killed (SIGKILL) several times; afterwards the
mirror journals equal their sources book for book, and the radar on the mirror
computes what it computes on the source.

* A 3-node JetStream cluster on loopback (tests/nats_server.py's NatsServer, as the
  nats_cluster fixture starts it), its stores and every log in a temporary directory
  under /tmp; the journals in one under /dev/shm. Both removed at the end (also on
  Ctrl-C or a failure) unless --keep.
* Two writer processes: ``upbit`` (BTC-KRW, ETH-KRW, XRP-KRW, a USDT-KRW book every
  tenth) and ``binance`` (BTC-USDT, ETH-USDT, XRP-USDT), the venue and symbol names
  the radar pairs (tests/test_radar_replay.py), 10x10 books stamped now, prices
  moving so that the premiums differ; --books split between them, written at
  --rate books/s in all, each writer sleeping only to keep its own pace.
* `journal replicate upbit binance --replicas 3` and `journal mirror`, each with its
  log; while the writers write, at random moments (--seed), one of: the replicator
  killed and restarted, the mirror killed and restarted, a random nats-server killed
  and started again after a random short while (one node down at a time: the next
  fault waits until its JetStream is up and every server's /healthz says its streams
  and consumers are current). The kinds take turns, in a random order each round; at
  least 3 of each, more faults after the writers finished if need be. A replicator or
  mirror that exits by itself is said and restarted.
* Then, once each mirror journal's end is its source's (polled, with a deadline):
  (a) every record of source and mirror, position and bytes, equal, as many as
  written; (b) `journal dump` of source and mirror, sha256 equal; (c) the radar on
  the source journals and on the mirror journals, its results journals equal
  record for record but for timestamp_ns (the radar's clock) and position.

Exit status 0 only if every check passes.

    .venv/bin/python benchmarks/soak_replicate.py [--books N] [--rate R] [--seed S] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import hashlib
import itertools
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _machine import ROOT, commit, cpu_model, load

sys.path.insert(0, str(ROOT))
import journal
from tests import _cpp
from tests._replication import end_of, records_of
from tests.nats_server import NatsServer, start_cluster

JOURNAL = Path(sys.executable).parent / "journal"
SEGMENT = 16 << 20  # 16 MiB: ~40,000 books a segment, so the faults meet segment rolls
JOURNALS = ("upbit", "binance")
KINDS = ("replicate", "mirror", "server")
MIN_KILLS = 3
FAULT_GAP_S = (0.2, 1.5)  # between two faults
SIDE_DOWN_S = (0.0, 0.5)  # a killed replicator or mirror stays down this long
SERVER_DOWN_S = (0.0, 1.5)  # a killed nats-server likewise
HEALTHY_S = 60.0  # for a restarted nats-server to be back in the cluster
EXTRA_FAULTS_S = 120.0  # faults after the writers finished, until MIN_KILLS of each
CATCH_UP_S = 900.0  # for the mirror to reach its sources once the writers are done

# One writer process: python -c WRITER PATH VENUE COUNT RATE SEGMENT_SIZE. Prints
# "done N SECONDS END" after N books written in SECONDS, END its time.monotonic() then
# (CLOCK_MONOTONIC: one clock for every process of the host). Prices move on slow waves (another
# phase per venue), so that the results differ; the ladders are 10 levels a side.
WRITER = """
import math, sys, time, journal
path, venue, count, rate, segment_size = sys.argv[1:]
count, rate, segment_size = int(count), float(rate), int(segment_size)
if venue == "upbit":
    markets = [("BTC-KRW", 141_400_000.0, 1000.0), ("ETH-KRW", 4_900_000.0, 1000.0),
               ("XRP-KRW", 840.0, 1.0)]
    fx, phase = ("USDT-KRW", 1400.0, 0.5), 0.0
else:
    markets = [("BTC-USDT", 100_000.0, 0.1), ("ETH-USDT", 3_500.0, 0.01),
               ("XRP-USDT", 0.6, 0.0001)]
    fx, phase = None, 1.0

def ladder(mid, tick, side, i):
    return [[mid + side * tick * (k + 1), 1.0 + k + (i % 7) * 0.25] for k in range(10)]

started = time.monotonic()
with journal.Writer(path, segment_size=segment_size) as writer:
    for i in range(count):
        if fx is not None and i % 10 == 0:
            symbol, base, tick = fx
        else:
            symbol, base, tick = markets[i % 3]
        wave = 0.01 * math.sin(i / 3000.0 + phase) + 0.002 * math.sin(i / 97.0 + 2 * phase)
        mid = round(base * (1.0 + wave) / tick) * tick
        writer.append_orderbook(
            venue, symbol, time.time_ns() // 1_000_000, i + 1,
            ladder(mid, tick, -1, i), ladder(mid, tick, 1, i),
        )
        if rate and i % 100 == 99:
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)  # pacing this writer, not waiting for anyone
ended = time.monotonic()
print("done", count, ended - started, ended, flush=True)
"""

STARTED = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", flush=True)


class Side:
    """`journal replicate` or `journal mirror`, restartable; stdout and stderr in a log."""

    def __init__(self, name: str, args: list[str], log: Path, ready: list[str]) -> None:
        self.name = name
        self.args = args
        self.log = log
        self.ready_marks = ready
        """Patterns its log shows once it is connected and at work (since its start)."""
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[int] = []
        """Exit statuses of the times it ended by itself (not killed by this script)."""

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"--- soak: start {self.starts} at {time.time():.3f} ---\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        popen, self.popen = self.popen, None
        if popen is not None:
            if popen.poll() is None:
                popen.send_signal(signal.SIGKILL)
            popen.wait(30)

    def terminate(self) -> int | None:
        """SIGTERM, its exit status (None if it had to be killed)."""
        popen, self.popen = self.popen, None
        if popen is None:
            return None
        popen.send_signal(signal.SIGTERM)
        try:
            return popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(30)
            return None

    def ready(self) -> bool:
        text = self.log.read_text(errors="replace").rsplit("--- soak: start", 1)[-1]
        return all(re.search(mark, text) for mark in self.ready_marks)

    def revive_if_dead(self) -> None:
        """One that ended by itself is said and started again (as systemd would)."""
        if self.popen is not None and (status := self.popen.poll()) is not None:
            self.exits.append(status)
            say(f"WARNING: {self.name} exited by itself with status {status}; restarted")
            self.start()


def mirrored_all(source: Path, mirrored: Path) -> bool:
    """Each mirror journal's end is its source's."""
    return all(
        (mirrored / name).exists()
        and end_of(source / name) is not None
        and end_of(mirrored / name) == end_of(source / name)
        for name in JOURNALS
    )


class Watch(threading.Thread):
    """When the mirror first holds every book: polled (20 ms) once the writers are done,
    whatever the faults are doing then."""

    def __init__(self, writers: list[subprocess.Popen[str]], source: Path, mirrored: Path) -> None:
        super().__init__(daemon=True)
        self.writers, self.source, self.mirrored = writers, source, mirrored
        self.at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                done = all(w.poll() is not None for w in self.writers)
                if done and mirrored_all(self.source, self.mirrored):
                    self.at = time.monotonic()
                    return
            except OSError:  # a segment being made or rolled: the next poll
                continue


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` with growing pauses until true; seconds it took. TimeoutError
    naming ``what`` past ``timeout``."""
    started = time.monotonic()
    pause = 0.005
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.2)
    return time.monotonic() - started


def sha256_of_dump(path: Path) -> tuple[str, int, int]:
    """sha256 of `journal dump PATH`'s output, its line count and the exit status."""
    digest = hashlib.sha256()
    lines = 0
    with subprocess.Popen(
        [str(JOURNAL), "dump", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as dump:
        assert dump.stdout is not None and dump.stderr is not None
        while chunk := dump.stdout.read(1 << 20):
            digest.update(chunk)
            lines += chunk.count(b"\n")
        stderr = dump.stderr.read()
        status = dump.wait()
    if status != 0:
        say(f"journal dump {path} exited with {status}: {stderr.decode(errors='replace')}")
    return digest.hexdigest(), lines, status


def results_of(path: Path) -> Iterator[dict[str, Any]]:
    """The radar's results, less the radar's clock (timestamp_ns) and the position."""
    with journal.Reader(path, metrics=False) as reader:
        for record in reader.available():
            yield {
                k: v for k, v in record.to_dict().items() if k not in ("timestamp_ns", "position")
            }


def run_radar(root: Path, results: Path, books: int) -> tuple[int, str]:
    done = _cpp.radar(
        *("--journal", str(root / "upbit"), "--journal", str(root / "binance")),
        *("--results", str(results), "--start", "beginning", "--quiet"),
        *("--max-records", str(books), "--no-metrics"),
        timeout=1800,
    )
    summary = re.search(r"results: [^\n]*", done.stderr)
    return done.returncode, (summary[0] if summary else done.stderr.strip()[-500:])


def log_findings(logs: list[Path]) -> None:
    """Per log, its lines by level and the distinct warnings and errors (numbers
    blanked so that repeats of one message count as one)."""
    for log in logs:
        try:
            text = log.read_text(errors="replace")
        except OSError:
            continue
        levels: collections.Counter[str] = collections.Counter()
        notable: collections.Counter[str] = collections.Counter()
        for line in text.splitlines():
            level = next(
                (
                    word
                    for word in ("Traceback", "CRITICAL", "ERROR", "WARNING", "[WRN]", "[ERR]")
                    if word in line
                ),
                None,
            )
            if level is None:
                continue
            levels[level] += 1
            notable[re.sub(r"\d+", "N", line.split(level, 1)[1].strip())[:160]] += 1
        say(f"log {log.name}: {sum(levels.values())} notable lines {dict(levels)}")
        for message, count in notable.most_common(12):
            print(f"      {count:6d} x {message}", flush=True)
        # The mirror's consumer made again (INFO): from where, and how often from the
        # stream's first message (everything delivered again, skipped as duplicates).
        starts = [int(n) for n in re.findall(r"rewound from stream sequence (\d+)", text)]
        if starts:
            print(
                f"      consumer rewinds: {len(starts)}, from stream sequence 1 (the whole "
                f"stream again): {starts.count(1)}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=int, default=1_000_000, help="books in all (both)")
    parser.add_argument("--rate", type=float, default=25_000.0, help="books/s in all (both)")
    parser.add_argument("--seed", type=int, default=None, help="of the faults (default: random)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    if args.books < 2 or args.rate <= 0:
        parser.error("--books must be at least 2 and --rate more than 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below cleans up
    print(f"soak_replicate: {cpu_model()}; load {load()}; {commit('journal')}", flush=True)
    print(
        f"soak_replicate: --books {args.books:,} --rate {args.rate:,.0f} --seed {seed}", flush=True
    )
    shm = Path(tempfile.mkdtemp(prefix="soak-replicate-", dir="/dev/shm"))
    store = Path(tempfile.mkdtemp(prefix="soak-replicate-nats-"))
    source, mirrored = shm / "books", shm / "mirror"
    counts = {"upbit": args.books // 2, "binance": args.books - args.books // 2}
    servers: list[NatsServer] = []
    sides: dict[str, Side] = {}
    writers: dict[str, subprocess.Popen[str]] = {}
    checks: list[tuple[str, bool]] = []
    kills: collections.Counter[str] = collections.Counter()
    while_writing: collections.Counter[str] = collections.Counter()
    watch: Watch | None = None
    end_to_end = 0.0
    try:
        servers = start_cluster(store, 60.0)
        urls = ",".join(server.url for server in servers)
        say(f"cluster up: {urls} (stores in {store})")
        paths = [str(source / name) for name in JOURNALS]
        sides = {
            "replicate": Side(
                "replicate",
                [str(JOURNAL), "replicate", *paths, "--nats", urls, "--replicas", "3"],
                store / "replicate.log",
                [rf"{name}: (going on after|nothing in)" for name in JOURNALS],
            ),
            "mirror": Side(
                "mirror",
                [str(JOURNAL), "mirror", "--nats", urls, "--journal-root", str(mirrored)],
                store / "mirror.log",
                [r"(starts|rewound) from stream sequence"],
            ),
        }
        for side in sides.values():
            side.start()
        began = time.monotonic()
        for name in JOURNALS:
            share = counts[name] / args.books
            writers[name] = subprocess.Popen(
                [
                    *(sys.executable, "-c", WRITER, str(source / name), name),
                    *(str(counts[name]), str(args.rate * share), str(SEGMENT)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=(store / f"writer-{name}.log").open("wb"),
                text=True,
            )
        say(f"writers started: {counts} books at {args.rate:,.0f} books/s in all")
        watch = Watch(list(writers.values()), source, mirrored)
        watch.start()

        rng = random.Random(seed)
        written_at: float | None = None
        while True:
            writing = any(w.poll() is None for w in writers.values())
            if not writing and written_at is None:
                written_at = time.monotonic()
                say(
                    f"writers done (seen {written_at - began:.1f} s in); kills so far {dict(kills)}"
                )
            lacking = [kind for kind in KINDS if kills[kind] < MIN_KILLS]
            if not writing and not lacking:
                break
            if written_at is not None and time.monotonic() - written_at > EXTRA_FAULTS_S:
                raise RuntimeError(f"fewer than {MIN_KILLS} kills of {lacking}: {dict(kills)}")
            time.sleep(rng.uniform(*FAULT_GAP_S))  # the moment of the next fault
            writing = any(w.poll() is None for w in writers.values())
            for side in sides.values():
                side.revive_if_dead()
            # Each kind in turn, in a random order each round: every kind meets the
            # writers several times however long the servers take to be current again.
            fewest = min(kills[kind] for kind in KINDS)
            victim = rng.choice([kind for kind in KINDS if kills[kind] == fewest])
            kills[victim] += 1
            if writing:
                while_writing[victim] += 1
            if victim == "server":
                server = rng.choice(servers)
                server.kill()
                time.sleep(rng.uniform(*SERVER_DOWN_S))  # down for a random while
                server.start(timeout=60)
                took = wait_until(server.healthy, HEALTHY_S, f"{server.name} back")
                full = wait_until(
                    lambda: all(s.healthy(all_current=True) for s in servers), HEALTHY_S, "healthz"
                )
                say(
                    f"kill {sum(kills.values())}: nats-server {server.name} "
                    f"(JetStream back in {took:.1f} s, all current in {took + full:.1f} s)"
                )
            else:
                sides[victim].kill()
                time.sleep(rng.uniform(*SIDE_DOWN_S))
                sides[victim].start()
                say(f"kill {sum(kills.values())}: {victim}")
        faults_ended = time.monotonic()
        written, writing_s, last_book = {}, {}, 0.0
        for name, writer in writers.items():
            out, _ = writer.communicate(timeout=30)
            said = out.split()
            if writer.returncode != 0 or said[:2] != ["done", str(counts[name])]:
                raise RuntimeError(f"writer {name}: status {writer.returncode}, said {out!r}")
            written[name], writing_s[name] = counts[name], float(said[2])
            last_book = max(last_book, float(said[3]))
            say(
                f"writer {name}: {counts[name]:,} books in {writing_s[name]:.1f} s "
                f"({counts[name] / writing_s[name]:,.0f} books/s)"
            )
        say(
            f"kills: {dict(kills)}, of which while the writers wrote {dict(while_writing)} "
            f"(seed {seed}); waiting for the mirror to catch up"
        )

        said_at = time.monotonic()

        def caught_up() -> bool:
            nonlocal said_at
            for side in sides.values():
                side.revive_if_dead()
            if time.monotonic() - said_at > 5.0:  # where the copies are, now and then
                said_at = time.monotonic()
                say(
                    "catching up: "
                    + ", ".join(
                        f"{name} mirror at {end_of(mirrored / name)} of {end_of(source / name)}"
                        for name in JOURNALS
                    )
                )
            return mirrored_all(source, mirrored)

        waited = wait_until(caught_up, CATCH_UP_S, f"the mirror catching up (seed {seed})")
        watch.join(5)
        ended = watch.at if watch.at is not None else time.monotonic()
        say(
            f"mirror holds every book {ended - last_book:.1f} s after the last one was written"
            f" ({ended - faults_ended:+.1f} s from the end of the faults; waited {waited:.1f} s)"
        )
        wait_until(lambda: all(s.ready() for s in sides.values()), 120, "replicate and mirror")
        statuses = {name: side.terminate() for name, side in sides.items()}
        say(f"replicate and mirror stopped (SIGTERM), exit statuses {statuses}")
        for server in servers:
            server.stop()
        say("cluster stopped")

        # (a) records: positions and bytes
        for name in JOURNALS:
            expected, got = records_of(source / name), records_of(mirrored / name)
            same = got == expected and len(expected) == written[name]
            first_difference = next(
                (
                    (i, a[0], b[0])
                    for i, (a, b) in enumerate(zip(expected, got, strict=False))
                    if a != b
                ),
                None,
            )
            checks.append((f"records {name}", same))
            say(
                f"{'PASS' if same else 'FAIL'} (a) records of {name}: source {len(expected):,}, "
                f"mirror {len(got):,}, written {written[name]:,}; positions and bytes "
                f"{'equal' if got == expected else f'differ, first at {first_difference}'}"
            )
            del expected, got

        # (b) journal dump, sha256
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            dumps = {
                (name, side): pool.submit(sha256_of_dump, root / name)
                for name in JOURNALS
                for side, root in (("source", source), ("mirror", mirrored))
            }
            for name in JOURNALS:
                (a, lines_a, status_a), (b, lines_b, status_b) = (
                    dumps[(name, "source")].result(),
                    dumps[(name, "mirror")].result(),
                )
                same = a == b and status_a == status_b == 0 and lines_a == written[name]
                checks.append((f"dump {name}", same))
                say(
                    f"{'PASS' if same else 'FAIL'} (b) journal dump {name}: {lines_a:,} / "
                    f"{lines_b:,} lines, sha256 source {a}, mirror {b}"
                )

        # (c) the radar on both
        books = sum(written.values())
        radar = {}
        for where, root in (("source", source), ("mirror", mirrored)):
            started = time.monotonic()
            status, summary = run_radar(root, shm / f"results-{where}", books)
            radar[where] = status
            say(
                f"radar on the {where}: exit {status} in {time.monotonic() - started:.1f} s, "
                f"{summary}"
            )
        results = {"source": 0, "mirror": 0}
        difference = None
        for index, (ours, theirs) in enumerate(
            itertools.zip_longest(
                results_of(shm / "results-source"), results_of(shm / "results-mirror")
            )
        ):
            results["source"] += ours is not None
            results["mirror"] += theirs is not None
            if ours != theirs and difference is None:
                difference = (index, ours, theirs)
        same = (
            difference is None and results["source"] > 0 and radar["source"] == radar["mirror"] == 0
        )
        checks.append(("radar", same))
        say(
            f"{'PASS' if same else 'FAIL'} (c) radar results: {results['source']:,} on the "
            f"source, {results['mirror']:,} on the mirror, "
            + (
                "equal record for record (but timestamp_ns and position)"
                if difference is None
                else f"first difference at result {difference}"
            )
        )

        log_findings([side.log for side in sides.values()] + [s.log for s in servers])
        exits = {name: side.exits for name, side in sides.items()}
        if any(exits.values()):
            say(f"WARNING: sides that exited by themselves (restarted): {exits}")
        took = ended - began
        end_to_end = books / took
        say(
            f"elapsed {time.monotonic() - STARTED:.1f} s; writing {max(writing_s.values()):.1f} s "
            f"({books / max(writing_s.values()):,.0f} books/s); writers' start to the last book "
            f"mirrored {took:.1f} s: {books / took:,.0f} books/s end to end"
        )
    except BaseException as error:
        say(f"FAIL: {type(error).__name__}: {error} (seed {seed}, kills {dict(kills)})")
        checks.append((type(error).__name__, False))
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            raise
    finally:
        if watch is not None:
            watch.stop.set()
        for writer in writers.values():
            if writer.poll() is None:
                writer.kill()
            writer.wait(30)
        for side in sides.values():
            side.kill()
        for server in servers:
            server.kill()
        if args.keep:
            say(f"kept: journals in {shm}, NATS stores and logs in {store}")
        else:
            shutil.rmtree(shm, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
    passed = bool(checks) and all(ok for _, ok in checks)
    failed = [name for name, ok in checks if not ok]
    print(
        f"SUMMARY: {'PASS' if passed else 'FAIL'}: {args.books:,} books, seed {seed}, kills "
        + ", ".join(f"{kind} {kills[kind]} ({while_writing[kind]} while writing)" for kind in KINDS)
        + (f", {end_to_end:,.0f} books/s end to end" if end_to_end else "")
        + f", {time.monotonic() - STARTED:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else "; all checks passed"),
        flush=True,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
