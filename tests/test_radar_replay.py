"""The radar replaying old journals (issue #10): staleness on the data clock (the
latest local_timestamp_ns read, the journals merged in time order), so a replay of
an hour-old journal shows premiums rather than rows of STALE; its publish-to-observe
latency reported as not applicable instead of hour-long percentiles (one above the
max); a radar that catches up with its writers is live from then on."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

import journal
from tests import _cpp
from tests._cpp import program, wait_until_read

HOUR_NS = 3600 * 1_000_000_000
DEADLINE_S = 20.0  # for the radar to read what it is given; never reached when it works
FX = 1400.0


def ladder(mid: float, tick: float, side: int) -> list[list[float]]:
    return [[mid + side * tick * (k + 1), 1.0 + k] for k in range(10)]


UPBIT = ("upbit", "BTC-KRW", ladder(141_400_000.0, 1000.0, -1), ladder(141_400_000.0, 1000.0, 1))
BINANCE = ("binance", "BTC-USDT", ladder(100_000.0, 0.1, -1), ladder(100_000.0, 0.1, 1))
USDT_KRW = ("upbit", "USDT-KRW", ladder(FX, 0.5, -1), ladder(FX, 0.5, 1))
# mid 141,400,000 KRW / (mid 100,000 USDT * 1400 KRW per USDT) - 1
PREMIUM = 141_400_000 / (100_000 * FX) - 1


def write_old_journals(upbit: Path, binance: Path, start_ns: int, seconds: int) -> int:
    """Upbit at 10 books/s (a USDT-KRW book every second), Binance at 100/s, from
    ``start_ns`` on for ``seconds``, each venue in its own journal: a replay must
    advance them together. Returns the number of books."""
    books = 0
    with journal.Writer(upbit) as krw, journal.Writer(binance) as usdt:
        for tick in range(seconds * 10):
            t = start_ns + tick * 100_000_000
            venue, symbol, bids, asks = USDT_KRW if tick % 10 == 0 else UPBIT
            krw.append_orderbook(venue, symbol, t // 1_000_000, tick + 1, bids, asks, t)
            venue, symbol, bids, asks = BINANCE
            usdt.append_many(
                (venue, symbol, u // 10**6, tick * 10 + k + 1, bids, asks, u)
                for k, u in enumerate(range(t, t + 100_000_000, 10_000_000))
            )
            books += 11
    return books


def radar(*args: str, build: str = "release") -> subprocess.CompletedProcess[str]:
    return _cpp.radar(*args, build=build, timeout=120)


def latency_line(stderr: str) -> tuple[float, float, float, float, int]:
    match = re.search(
        r"publish-to-observe latency: p50 ([\d.]+) us, p99 ([\d.]+) us, "
        r"p99\.9 ([\d.]+) us, max ([\d.]+) us \((\d+) books\)",
        stderr,
    )
    assert match, stderr
    return (*(float(match[i]) for i in range(1, 5)), int(match[5]))  # type: ignore[return-value]


@pytest.mark.parametrize("build", ["release", "sanitize"])
def test_replay_of_an_hour_old_journal_shows_premiums(shm_dir: Path, build: str) -> None:
    upbit, binance, results = shm_dir / "upbit", shm_dir / "binance", shm_dir / "results"
    started_ns = time.time_ns()
    books = write_old_journals(upbit, binance, started_ns - HOUR_NS, 60)
    done = radar(
        *("--journal", str(upbit), "--journal", str(binance), "--results", str(results)),
        *("--start", "beginning", "--quiet", "--max-records", str(books)),
        build=build,
    )
    assert done.returncode == 0, done.stderr
    with journal.Reader(results) as reader:
        records = [record.to_dict() for record in reader.available()]
    # A result per book of either leg once both are known (the FX books update the
    # one pair too): none stale, every one with its premium and FX.
    assert len(records) > 6000, done.stderr
    assert not [r for r in records if r["stale"]], done.stderr
    assert all(r["kimchi_premium"] == pytest.approx(PREMIUM, abs=1e-12) for r in records)
    assert all(r["fx"] == FX for r in records)
    # Stamped with the radar's clock when computed (schema/radar.fbs), not the data's.
    assert min(r["timestamp_ns"] for r in records) >= started_ns
    assert f"results: {len(records)} (0 stale, 0 without FX)" in done.stderr
    # No latency from books an hour old: n/a, and how old they were.
    # The oldest book 1 h before the radar read it, the newest 59 min (and the
    # seconds this test took to get there).
    assert re.search(
        r"\n  publish-to-observe latency: n/a \(replay: 6,600 books read 1\.0 h to 5\d\.\d min "
        r"after they were published\)\n",
        done.stderr,
    ), done.stderr
    assert "fell behind" not in done.stderr
    assert "Sanitizer" not in done.stderr and "runtime error" not in done.stderr


def test_replay_judges_staleness_on_the_latest_book_read(
    shm_dir: Path,
) -> None:
    # One leg 10 s older than the other (5 s is the limit): stale on the data clock
    # too, which is the latest book read, not the first.
    path = shm_dir / "books"
    t = time.time_ns() - HOUR_NS
    with journal.Writer(path) as writer:
        writer.append_orderbook(*UPBIT[:2], 1, 1, *UPBIT[2:], t)
        writer.append_orderbook(*BINANCE[:2], 1, 1, *BINANCE[2:], t + 10 * 1_000_000_000)
        writer.append_orderbook(*UPBIT[:2], 2, 2, *UPBIT[2:], t + 11 * 1_000_000_000)
    done = radar(
        *("--journal", str(path), "--results", str(shm_dir / "results"), "--fx", str(FX)),
        *("--start", "beginning", "--quiet", "--max-records", "3"),
    )
    assert done.returncode == 0, done.stderr
    with journal.Reader(shm_dir / "results") as reader:
        first, second = (record.to_dict() for record in reader.available())
    assert first["stale"]  # upbit's book 10 s older than binance's
    assert not second["stale"] and second["kimchi_premium"] == pytest.approx(PREMIUM, abs=1e-12)


def test_replay_then_live_reports_the_live_books_latency_and_the_replayed_apart(
    shm_dir: Path,
) -> None:
    path = shm_dir / "books"
    old, new = 100, 10
    t = time.time_ns() - HOUR_NS
    with journal.Writer(path) as writer:
        for seq in range(old):
            writer.append_orderbook(*UPBIT[:2], seq, seq + 1, *UPBIT[2:], t + seq)
        proc = subprocess.Popen(
            [
                *(str(program("radar")), "--journal", str(path), "--start", "beginning"),
                *("--quiet", "--max-records", str(old + new), "--duration", str(DEADLINE_S)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until_read(proc, path, old)
            for seq in range(old, old + new):  # stamped now: live
                writer.append_orderbook(*UPBIT[:2], seq, seq + 1, *UPBIT[2:])
            _, stderr = proc.communicate(timeout=DEADLINE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    p50, p99, p999, worst, count = latency_line(stderr)
    assert count == new
    assert p50 <= p99 <= p999 <= worst < 1e6  # live books: well under a second
    assert (
        f"\n  replayed before catching up: {old} books read 1.0 h after they were published "
        "(latency n/a)\n" in stderr
    ), stderr
    assert re.search(r"\n  (never )?fell behind", stderr), stderr
