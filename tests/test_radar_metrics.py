"""The radar's radar.metrics, end to end: a real radar process on real journals in
/dev/shm, its file read with journal._radar_metrics.read_radar_metrics and held to
the journals themselves (the books written, the results the radar appended)."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import journal
from journal import _radar_metrics_layout as L
from journal._errors import JournalError
from journal._metrics_layout import WRITER_METRICS_MAGIC, latency_bucket_bounds
from journal._radar_metrics import (
    RADAR_METRICS_NAME,
    RadarMetricsMissingError,
    RadarPair,
    RadarSnapshot,
    read_radar_metrics,
)
from tests._cpp import RADAR_DEADLINE_S, program, radar

MARKETS = (  # venue, symbol, mid, tick
    ("upbit", "BTC-KRW", 141_400_000.0, 1000.0),
    ("bithumb", "BTC-KRW", 141_450_000.0, 1000.0),
    ("binance", "BTC-USDT", 100_000.0, 0.1),
    ("upbit", "ETH-KRW", 5_000_000.0, 100.0),
    ("binance", "ETH-USDT", 3_500.0, 0.01),
    ("upbit", "USDT-KRW", 1400.0, 1.0),
)


def book(i: int) -> tuple[Any, ...]:
    """Book ``i``: the markets in turn, prices moving with ``i`` so that every result
    differs, the exchange's time stamp and the sequence derived from ``i``."""
    venue, symbol, mid, tick = MARKETS[i % len(MARKETS)]
    mid += tick * (i % 37)
    bids = [[mid - tick * (k + 1), 1.0 + k] for k in range(10)]
    asks = [[mid + tick * (k + 1), 1.0 + k] for k in range(10)]
    return (venue, symbol, 1_700_000_000_000 + i, i // len(MARKETS) + 1, bids, asks)


def write_books(path: Path, first: int, count: int) -> None:
    with journal.Writer(path) as writer:
        writer.append_many(book(i) for i in range(first, first + count))


def start_radar(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(program("radar")), "--quiet", "--stale-ms", "600000", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def radars() -> Iterator[list[subprocess.Popen[str]]]:
    """Radar processes the test starts; any still running is killed after it."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_for(path: Path, proc: subprocess.Popen[str], done: Any = lambda s: True) -> RadarSnapshot:
    """The radar's snapshot once ``done(snapshot)`` holds (the file exists by then)."""
    deadline = time.monotonic() + RADAR_DEADLINE_S
    while True:
        try:
            snapshot = read_radar_metrics(path)
            if done(snapshot):
                return snapshot
        except RadarMetricsMissingError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"the radar exited with {proc.returncode}: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} not as expected in {RADAR_DEADLINE_S} s")
        time.sleep(0.005)  # a poll step inside the deadline loop


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGINT, as Ctrl-C: the radar finishes its book and prints its summary."""
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=RADAR_DEADLINE_S)
    assert proc.returncode == 0, stderr
    return stderr


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def results_of(path: Path) -> list[dict[str, Any]]:
    with journal.Reader(path, metrics=False) as reader:
        return [record.to_dict() for record in reader.available()]


def pair_key(result: dict[str, Any] | RadarPair) -> tuple[str, str, str]:
    if isinstance(result, RadarPair):
        return (result.base, result.krw_exchange, result.usdt_exchange)
    return (result["base"], result["krw_exchange"], result["usdt_exchange"])


def test_snapshot_holds_the_last_result_per_pair_and_the_books_per_stream(
    shm_dir: Path, radars: list[subprocess.Popen[str]]
) -> None:
    books, results = shm_dir / "books", shm_dir / "results"
    count = 3000
    write_books(books, 0, count)
    path = results / RADAR_METRICS_NAME
    proc = start_radar("--journal", str(books), "--results", str(results), "--start", "beginning")
    radars.append(proc)
    running = wait_for(path, proc, lambda s: s.books == count)
    assert running.alive and running.pid == proc.pid
    assert (running.name, running.host) == ("radar", socket.gethostname())
    assert 0 < running.started_ns <= running.taken_ns <= time.time_ns()
    assert running.latency_sample_period == L.LATENCY_SAMPLE_PERIOD

    # A second radar cannot take the live radar's file; the first keeps it.
    second = radar("--journal", str(books), "--metrics-file", str(path), "--duration", "10")
    assert second.returncode == 2, second.stderr
    assert f"{path} belongs to a live radar (pid={proc.pid} host=" in second.stderr
    assert "radar summary" not in second.stderr
    assert read_radar_metrics(path).alive

    stop(proc)
    final = read_radar_metrics(path)
    assert not final.alive and final.pid == proc.pid and final.books == count

    # Per stream: the books written, and the times of the last one, as read back.
    with journal.Reader(books, metrics=False) as reader:
        written = [
            (r.exchange_name, r.symbol, r.local_timestamp_ns, r.timestamp)
            for r in reader.available()
        ]
    per_stream = Counter((venue, symbol) for venue, symbol, _, _ in written)
    last = {(venue, symbol): (local, exchange) for venue, symbol, local, exchange in written}
    assert [(s.venue, s.symbol) for s in final.streams] == list(dict.fromkeys(last))
    for stream in final.streams:
        key = (stream.venue, stream.symbol)
        assert stream.updates == per_stream[key]
        assert (stream.last_local_ns, stream.last_exchange_ms) == last[key]
    assert final.streams_without_slot == 0

    # Per pair: its last result in the results journal, and how many it had.
    appended = results_of(results)
    assert final.results == len(appended) > 0
    per_pair = Counter(pair_key(r) for r in appended)
    last_result = {pair_key(r): r for r in appended}
    assert [pair_key(p) for p in final.pairs] == list(dict.fromkeys(pair_key(r) for r in appended))
    assert len(final.pairs) == 3  # BTC upbit and bithumb with binance, ETH upbit with binance
    for pair in final.pairs:
        expected = last_result[pair_key(pair)]
        assert pair.updates == per_pair[pair_key(pair)]
        assert pair.updated_ns == expected["timestamp_ns"]
        assert pair.stale is expected["stale"]
        for field in ("kimchi_premium", "edge_bps", "fx", "fill_base_quantity"):
            assert same(getattr(pair, field), expected[field]), field
        assert not math.isnan(pair.kimchi_premium) and not pair.stale
    assert final.pairs_without_slot == 0
    assert sum(final.latency_counts) <= count and len(final.latency_counts) == L.LATENCY_BUCKETS
    assert os.stat(path).st_mode & 0o777 == 0o600  # its directory is the radar's, 0700


def test_live_books_fill_the_latency_histogram(
    shm_dir: Path, radars: list[subprocess.Popen[str]]
) -> None:
    books, path = shm_dir / "books", shm_dir / "elsewhere.metrics"
    write_books(books, 0, 1)  # the journal exists: the radar starts at its end
    # --metrics-file gives a radar without --results its metrics.
    proc = start_radar("--journal", str(books), "--start", "end", "--metrics-file", str(path))
    radars.append(proc)
    wait_for(path, proc)  # made after the journal was opened at its end
    count = 500
    write_books(books, 1, count)
    snapshot = wait_for(path, proc, lambda s: s.books == count)
    assert sum(snapshot.latency_counts) == count  # every book live, every one counted
    bounds = [latency_bucket_bounds(i) for i, n in enumerate(snapshot.latency_counts) if n]
    assert bounds[0][0] <= snapshot.latency_sum_ns / count <= bounds[-1][1]
    assert snapshot.latency_sum_ns < count * 10 * 10**9  # each under 10 s
    per_stream = Counter(book(i)[:2] for i in range(1, count + 1))
    assert {(s.venue, s.symbol): s.updates for s in snapshot.streams} == per_stream
    stop(proc)
    assert not list(shm_dir.glob(".elsewhere.metrics.*"))  # no temporary left


def test_no_metrics_writes_none_and_a_stopped_radars_file_is_replaced(shm_dir: Path) -> None:
    books, results = shm_dir / "books", shm_dir / "results"
    write_books(books, 0, 60)
    common = ("--journal", str(books), "--start", "beginning", "--quiet", "--max-records", "60")
    done = radar(*common, "--results", str(results), "--no-metrics")
    assert done.returncode == 0, done.stderr
    assert not (results / RADAR_METRICS_NAME).exists()
    assert not (books / "readers").exists() or not list((books / "readers").iterdir())
    refused = radar(*common, "--no-metrics", "--metrics-file", str(shm_dir / "m"))
    assert refused.returncode == 2 and "give one or the other" in refused.stderr
    first = radar(*common, "--results", str(shm_dir / "results2"), "--metrics-name", "desk-1")
    assert first.returncode == 0, first.stderr
    path = shm_dir / "results2" / RADAR_METRICS_NAME
    before = read_radar_metrics(path)
    assert before.name == "desk-1" and not before.alive and before.books == 60
    again = radar(*common, "--metrics-file", str(path))  # a stopped radar's file: replaced
    assert again.returncode == 0, again.stderr
    after = read_radar_metrics(path)
    assert after.started_ns > before.started_ns and after.name == "radar" and after.books == 60


def test_streams_beyond_capacity_are_counted_and_said_once(shm_dir: Path) -> None:
    books, path = shm_dir / "books", shm_dir / RADAR_METRICS_NAME
    count = L.DEFAULT_STREAM_CAPACITY + 6
    with journal.Writer(books) as writer:
        writer.append_many(
            ("binance", f"S{i}-USDT", 1, 1, [[1.0, 1.0]], [[1.1, 1.0]]) for i in range(count)
        )
    done = radar(
        "--journal", str(books), "--start", "beginning", "--quiet",
        "--max-records", str(count), "--metrics-file", str(path), build="sanitize",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Sanitizer" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "without a slot" in line]
    assert len(said) == 1, done.stderr
    assert said[0].startswith(f"radar: {path}: stream binance S1024-USDT: no room left")
    snapshot = read_radar_metrics(path)
    assert snapshot.books == count and len(snapshot.streams) == L.DEFAULT_STREAM_CAPACITY
    assert snapshot.streams_without_slot == 6
    assert snapshot.streams[-1].symbol == f"S{L.DEFAULT_STREAM_CAPACITY - 1}-USDT"


# A writer child appending books live, in batches, until it has written N.
WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from tests.test_radar_metrics import book
    import journal
    path, books = sys.argv[1], int(sys.argv[2])
    with journal.Writer(path) as writer:
        for start in range(0, books, 50):
            writer.append_many(book(i) for i in range(start, min(books, start + 50)))
            time.sleep(0.001)  # paced, so the reader's reads overlap the radar's writes
    """
)


@pytest.mark.slow
def test_reads_never_mix_two_results_of_a_pair(
    shm_dir: Path, radars: list[subprocess.Popen[str]]
) -> None:
    """Snapshots read while the radar writes: each pair's words are exactly those of
    one result it appended (its premium, edge, FX, fill, stale flag and time), and its
    update count is that result's rank among the pair's results."""
    books, results = shm_dir / "books", shm_dir / "results"
    write_books(books, 0, 1)
    path = results / RADAR_METRICS_NAME
    proc = start_radar("--journal", str(books), "--results", str(results), "--idle", "spin")
    radars.append(proc)
    wait_for(path, proc)
    count = 20_000
    repo = str(Path(__file__).resolve().parent.parent)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(books), str(count), repo])
    seen: list[RadarPair] = []
    try:
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            seen += read_radar_metrics(path).pairs
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.wait() == 0
    wait_for(path, proc, lambda s: s.books == count)
    stop(proc)
    ranked: dict[tuple[Any, ...], set[int]] = {}
    ranks: Counter[tuple[str, str, str]] = Counter()
    for r in results_of(results):
        ranks[pair_key(r)] += 1
        ranked.setdefault(identity(pair_key(r), r["timestamp_ns"], r), set()).add(
            ranks[pair_key(r)]
        )
    assert len(seen) > 100
    for pair in seen:
        values = {f: getattr(pair, f) for f in ("kimchi_premium", "edge_bps", "fx")}
        values |= {"fill_base_quantity": pair.fill_base_quantity, "stale": pair.stale}
        key = identity(pair_key(pair), pair.updated_ns, values)
        assert pair.updates in ranked.get(key, ()), pair


def identity(pair: tuple[str, str, str], at_ns: int, r: dict[str, Any]) -> tuple[Any, ...]:
    """A result's words as a hashable key, NaN as None (NaN != NaN)."""
    numbers = tuple(
        None if math.isnan(r[f]) else r[f]
        for f in ("kimchi_premium", "edge_bps", "fx", "fill_base_quantity")
    )
    return (*pair, at_ns, bool(r["stale"]), *numbers)


# -- files that are not a radar's ---------------------------------------------------


@pytest.fixture
def good_file(shm_dir: Path) -> Path:
    """A radar's metrics file, its radar stopped."""
    books, path = shm_dir / "books", shm_dir / "good.metrics"
    write_books(books, 0, 12)
    done = radar(
        "--journal", str(books), "--start", "beginning", "--quiet", "--max-records", "12",
        "--metrics-file", str(path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path


def damaged(good: Path, name: str, offset: int, data: bytes) -> Path:
    path = good.with_name(name)
    shutil.copyfile(good, path)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(data)
    return path


def test_bad_files_are_refused_with_the_offset(good_file: Path) -> None:
    assert read_radar_metrics(good_file).books == 12
    u64 = lambda value: value.to_bytes(8, "little")  # noqa: E731
    u32 = lambda value: value.to_bytes(4, "little")  # noqa: E731
    damages = [  # name, the offset damaged (and named in the message), bytes written there
        ("magic", L.MAGIC_OFFSET, b"OBJMETRX", "not a radar's metrics file"),
        ("writer", L.MAGIC_OFFSET, WRITER_METRICS_MAGIC, "a writer's metrics file"),
        ("version", L.VERSION_OFFSET, u32(2), "metrics_version=2"),
        ("size", L.FILE_SIZE_OFFSET, u32(L.STREAMS_OFFSET), f"file_size={L.STREAMS_OFFSET}"),
        ("period", L.LATENCY_SAMPLE_PERIOD_OFFSET, u32(0), "latency_sample_period=0"),
        ("streams", L.STREAM_CAPACITY_OFFSET, u64(0), "stream_capacity=0"),
        ("pairs", L.PAIR_CAPACITY_OFFSET, u64(1 << 40), "pair_capacity="),
        ("buckets", L.LATENCY_BUCKETS_OFFSET, u64(100), "latency_buckets=100"),
        ("count", L.STREAM_COUNT_OFFSET, u64(5000), "stream_count=5000"),
        ("pair-count", L.PAIR_COUNT_OFFSET, u64(5000), "pair_count=5000"),
    ]
    cases = [
        (damaged(good_file, name, offset, data), offset, text)
        for name, offset, data, text in damages
    ]
    short = good_file.with_name("short")
    cut = L.NAME_OFFSET + 4  # inside the header, within the radar's name
    short.write_bytes(good_file.read_bytes()[:cut])
    cases.append((short, cut, f"inside the {L.STREAMS_OFFSET}-byte header"))
    grown = good_file.with_name("grown")
    grown.write_bytes(good_file.read_bytes() + bytes(64))
    cases.append((grown, L.FILE_SIZE_OFFSET, "but the file has"))
    for path, offset, text in cases:
        with pytest.raises(JournalError) as refused:
            read_radar_metrics(path)
        message = str(refused.value)
        assert f"{path} offset={offset}: " in message and text in message, message
    link = good_file.with_name("link")
    link.symlink_to(good_file)
    with pytest.raises(JournalError, match="symbolic link"):
        read_radar_metrics(link)
    with pytest.raises(RadarMetricsMissingError, match="no such file"):
        read_radar_metrics(good_file.with_name("missing"))
    assert issubclass(RadarMetricsMissingError, FileNotFoundError)


def test_the_radar_never_replaces_a_file_that_is_not_a_radars(shm_dir: Path) -> None:
    books = shm_dir / "books"
    write_books(books, 0, 1)
    notes = shm_dir / "notes.txt"
    notes.write_text("keep me")
    link = shm_dir / "link.metrics"
    link.symlink_to(notes)
    for path, said in ((notes, "is not a radar's metrics file"), (link, "is a symbolic link")):
        refused = radar("--journal", str(books), "--duration", "5", "--metrics-file", str(path))
        assert refused.returncode == 2, refused.stderr
        assert f"radar: {path} " in refused.stderr and said in refused.stderr
    assert notes.read_text() == "keep me" and link.is_symlink()
    missing = shm_dir / "no-such-directory" / RADAR_METRICS_NAME
    refused = radar("--journal", str(books), "--duration", "5", "--metrics-file", str(missing))
    assert refused.returncode == 2 and f"directory {missing.parent}" in refused.stderr
    assert not [p.name for p in shm_dir.iterdir() if p.name.startswith(".")]
