"""The radar program end to end: a Python writer process, the radar process tailing
it, the results journal read back from Python."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import journal
from tests._cpp import program, radar, summary_number

# A writer child: books for four venues, consecutive sequences per (venue, symbol),
# the journal rolling every 4 MiB. argv: DIR BOOKS BATCH.
WRITER = textwrap.dedent(
    """
    import sys, journal
    path, books, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    markets = [("upbit", "BTC-KRW", 141_400_000.0, 1000.0), ("bithumb", "BTC-KRW", 141_450_000.0,
               1000.0), ("binance", "BTC-USDT", 100_000.0, 0.1), ("upbit", "USDT-KRW", 1400.0, 1.0)]
    def book(i):
        exchange, symbol, mid, tick = markets[i % len(markets)]
        bids = [[mid - tick * (k + 1), 1.0 + k] for k in range(10)]
        asks = [[mid + tick * (k + 1), 1.0 + k] for k in range(10)]
        return (exchange, symbol, i, i // len(markets) + 1, bids, asks)
    with journal.Writer(path, segment_size=4 << 20) as writer:
        for start in range(0, books, batch):
            writer.append_many(book(i) for i in range(start, min(books, start + batch)))
    """
)


def run_writer(path: Path, books: int, batch: int = 1000) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(books), str(batch)], text=True
    )


@pytest.mark.slow
def test_one_million_books_live_none_lost_duplicated_or_reordered(shm_dir: Path) -> None:
    books = 1_000_000
    path = shm_dir / "books"
    # The radar starts first, before the journal exists, and waits for it.
    tailer = subprocess.Popen(
        [
            str(program("radar")),
            "--journal",
            str(path),
            "--start",
            "beginning",
            "--quiet",
            "--max-records",
            str(books),
            "--duration",
            "240",
            "--stale-ms",
            "600000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    writer = run_writer(path, books)
    try:
        assert writer.wait(timeout=240) == 0
        _, stderr = tailer.communicate(timeout=240)
    finally:
        for child in (writer, tailer):
            if child.poll() is None:
                child.kill()
    assert tailer.returncode == 0, stderr
    assert summary_number(stderr, r"radar summary: (\d+) books") == books
    assert summary_number(stderr, r"binance=(\d+)") == books // 4
    assert summary_number(stderr, r"bithumb=(\d+)") == books // 4
    assert summary_number(stderr, r"upbit=(\d+)") == books // 2
    # Consecutive sequences per (venue, symbol): any loss shows as a gap the next
    # book closes, any duplicate or reordering as a sequence not above the last.
    assert summary_number(stderr, r"out of order or repeated \(per symbol\): (\d+)") == 0
    assert summary_number(stderr, r"verify failures: (\d+) journals stopped") == 0
    assert len(list(path.glob("*.journal"))) > 50  # followed many rolls


def test_results_journal_holds_the_hand_computed_premium(shm_dir: Path) -> None:
    path, results = shm_dir / "books", shm_dir / "results"
    writer = run_writer(path, 4000, batch=100)
    assert writer.wait(timeout=60) == 0
    done = radar(
        "--journal",
        str(path),
        "--results",
        str(results),
        "--start",
        "beginning",
        "--quiet",
        "--max-records",
        "4000",
        "--fx",
        "1400",
        "--stale-ms",
        "600000",
        "--fee",
        "upbit=5",
        "--fee",
        "binance=10",
    )
    assert done.returncode == 0, done.stderr
    with journal.Reader(results) as reader:
        records = [record.to_dict() for record in reader.available()]
    assert records, done.stderr
    upbit = [r for r in records if r["krw_exchange"] == "upbit"][-1]
    bithumb = [r for r in records if r["krw_exchange"] == "bithumb"][-1]
    # mid 141,400,000 KRW / (mid 100,000 USDT * 1400 KRW/USDT) - 1 = 0.01
    assert upbit["kimchi_premium"] == pytest.approx(0.01, abs=1e-12)
    # mid 141,450,000 / 140,000,000 - 1
    assert bithumb["kimchi_premium"] == pytest.approx(141_450_000 / 140_000_000 - 1, abs=1e-12)
    assert upbit["fx"] == 1400.0 and upbit["base"] == "BTC" and upbit["usdt_exchange"] == "binance"
    assert upbit["notional_krw"] == 10_000_000.0 and not upbit["stale"]
    # Buy on binance (ask 100,000.1 USDT = 140,000,140 KRW, +10 bps fee), sell on
    # upbit (bid 141,399,000 KRW, -5 bps fee): 10,000,000 KRW buys about 0.0714 BTC.
    assert (upbit["buy_exchange"], upbit["sell_exchange"]) == ("binance", "upbit")
    cost = 100_000.1 * 1400 * (1 + 10e-4)
    proceeds = 141_399_000 * (1 - 5e-4)
    assert upbit["edge_bps"] == pytest.approx((proceeds - cost) / cost * 1e4, rel=1e-9)
    assert upbit["fill_base_quantity"] == pytest.approx(10_000_000 / cost, rel=1e-12)
    # journal dump and verify treat it like any journal.
    dumped = subprocess.run(
        [sys.executable, "-m", "journal.cli", "verify", str(results)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dumped.returncode == 0, dumped.stderr
    assert f"{len(records):,} records" in dumped.stdout


def test_missing_fx_and_stale_books_are_flagged(shm_dir: Path) -> None:
    path, results = shm_dir / "books", shm_dir / "results"
    with journal.Writer(path) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, [[100.0, 1.0]], [[101.0, 1.0]])
        writer.append_orderbook("binance", "BTC-USDT", 1, 1, [[0.07, 1.0]], [[0.08, 1.0]])
        writer.append_orderbook("upbit", "USDT-KRW", 1, 1, [[1399.0, 1.0]], [[1401.0, 1.0]], 1)
    done = radar(
        "--journal",
        str(path),
        "--results",
        str(results),
        "--start",
        "beginning",
        "--quiet",
        "--max-records",
        "3",
    )
    assert done.returncode == 0, done.stderr
    with journal.Reader(results) as reader:
        first, second = (record.to_dict() for record in reader.available())
    assert math.isnan(first["fx"]) and math.isnan(first["kimchi_premium"])  # no FX yet
    assert not first["stale"]
    assert second["stale"] and math.isnan(second["kimchi_premium"])  # FX book from 1970


def test_corrupt_journal_is_reported_with_its_offset_and_exit_status(shm_dir: Path) -> None:
    path = shm_dir / "books"
    with journal.Writer(path) as writer:
        positions = [
            writer.append_orderbook("upbit", "BTC-KRW", i, i, [[100.0, 1.0]], [[101.0, 1.0]])
            for i in range(20)
        ]
    segment, offset = positions[10]
    with open(path / f"{segment:08d}.journal", "r+b") as file:
        file.seek(offset + 4)
        file.write((1 << 30).to_bytes(4, "little"))  # the root offset, far away
    for build in ("release", "sanitize"):
        done = radar(
            "--journal",
            str(path),
            "--start",
            "beginning",
            "--quiet",
            "--duration",
            "1",
            build=build,
        )
        assert done.returncode == 1, done.stderr
        assert f"offset={offset}" in done.stderr
        assert summary_number(done.stderr, r"radar summary: (\d+) books") == 10
        assert "Sanitizer" not in done.stderr


def test_help_and_bad_arguments() -> None:
    shown = radar("--help")
    assert shown.returncode == 0
    for option in (
        "--journal",
        "--results",
        "--start",
        "--notional-krw",
        "--fee",
        "--fx",
        "--stale-ms",
        "--idle",
        "--duration",
        "--max-records",
    ):
        assert option in shown.stdout
    for bad in (
        ["--journal"],
        [],
        ["--journal", "x", "--idle", "nap"],
        ["--journal", "x", "--fee", "upbit"],
        ["--journal", "x", "--fx", "abc"],
    ):
        refused = radar(*bad)
        assert refused.returncode == 2, bad
        assert "radar:" in refused.stderr
