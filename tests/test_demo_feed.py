"""journal.demo.feed: the synthetic books themselves, then run_feed into real journals."""

from __future__ import annotations

import itertools
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import journal
from journal._inspect import summarize, verify
from journal.collector import BookPublisher, Refusal
from journal.demo.feed import (
    MARKETS,
    PREMIUM_LIMITS,
    UPBIT_KRW_TICKS,
    DemoFeed,
    TickTable,
    run_feed,
)
from journal.symbols import normalize
from tests.conftest import REPO

START_NS = 1_750_000_000_000_000_000
BY_NAME = {(market.exchange, market.symbol): market for market in MARKETS}


def feed_books(seed: int = 7, rate: float = 2_000, count: int = 20_000) -> list[dict[str, Any]]:
    return list(DemoFeed(seed).books(rate, START_NS, count))


def mid(book: dict[str, Any]) -> float:
    return (book["bids"][0][0] + book["asks"][0][0]) / 2


def sample_latest(books: list[dict[str, Any]], every: int) -> Iterator[dict[tuple, dict]]:
    """The latest book of every market, every ``every`` books once all have one."""
    latest: dict[tuple, dict] = {}
    for index, book in enumerate(books):
        latest[book["exchangename"], book["symbol"]] = book
        if index % every == 0 and len(latest) == len(MARKETS):
            yield latest


# -- the books -------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_books_and_another_seed_others() -> None:
    assert feed_books(seed=3, count=5_000) == feed_books(seed=3, count=5_000)
    assert feed_books(seed=3, count=5_000) != feed_books(seed=4, count=5_000)


def test_every_venue_speaks_its_own_spelling_which_normalises_to_base_quote() -> None:
    seen = {(book["exchangename"], book["symbol"]) for book in feed_books(count=5_000)}
    assert seen == set(BY_NAME)
    assert {"KRW-BTC", "KRW-USDT", "BTC_KRW", "USDT_KRW", "BTCUSDT", "XRPUSDT"} <= {
        symbol for _, symbol in seen
    }
    normalised = {normalize(exchange, symbol) for exchange, symbol in seen}
    for base in ("BTC", "ETH", "XRP", "SOL"):
        for exchange, quote in [
            ("upbit", "KRW"),
            ("bithumb", "KRW"),
            ("binance", "USDT"),
            ("bybit", "USDT"),
        ]:
            assert (exchange, f"{base}-{quote}") in normalised
    assert {("upbit", "USDT-KRW"), ("bithumb", "USDT-KRW")} <= normalised


def on_grid(value: float, step: float) -> bool:
    """``value`` is a whole multiple of ``step``, within float rounding (which grows with
    the number of steps: 2e12 lots of 1e-8 in 20,000 USDT)."""
    return abs(value - round(value / step) * step) <= max(step * 1e-6, abs(value) * 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("rate", [200, 20_000])  # big moves between updates, and small ones
def test_books_are_ten_levels_on_the_tick_grid_in_lots_and_never_crossed(rate: int) -> None:
    for book in feed_books(rate=rate):
        market = BY_NAME[book["exchangename"], book["symbol"]]
        bids, asks = book["bids"], book["asks"]
        assert len(bids) == len(asks) == 10
        bid_prices = [price for price, _ in bids]
        ask_prices = [price for price, _ in asks]
        assert bid_prices == sorted(set(bid_prices), reverse=True)
        assert ask_prices == sorted(set(ask_prices))
        assert bid_prices[0] < ask_prices[0], book
        for price, quantity in bids + asks:
            assert price > 0
            assert on_grid(price, market.ticks.tick_at(price)), (book["symbol"], price)
            assert quantity >= market.lot and on_grid(quantity, market.lot), (market, quantity)


def test_the_tick_tables_follow_the_price_bands() -> None:
    assert [UPBIT_KRW_TICKS.tick_at(p) for p in (136_800_000, 4_950_000, 269_000, 3_261)] == [
        1000.0,
        1000.0,
        100.0,
        1.0,
    ]
    assert UPBIT_KRW_TICKS.up(4_998.0, 3) == 5_005.0  # snapped onto the 5-won band
    assert UPBIT_KRW_TICKS.down(5_000.0, 1) == 4_999.0  # the band under 5,000 ticks by 1
    assert UPBIT_KRW_TICKS.floor(5_003.7) == 5_000.0
    assert UPBIT_KRW_TICKS.ceil(5_003.7) == 5_005.0
    binance = TickTable.constant(0.01)
    assert binance.floor(96_500.129) == 96_500.12 and binance.ceil(96_500.121) == 96_500.13
    assert binance.floor(96_500.12) == 96_500.12  # a valid price is its own floor
    with pytest.raises(ValueError, match="must start at 0 and ascend"):
        TickTable(((1.0, 0.1), (0.0, 0.01)))


def test_sequences_and_exchange_timestamps_follow_each_venues_convention() -> None:
    rate = 2_000
    last: dict[tuple, tuple[int, int]] = {}
    for index, book in enumerate(DemoFeed(7).books(rate, START_NS, 20_000)):
        key = book["exchangename"], book["symbol"]
        feed_ms = (START_NS + index * 1_000_000_000 // rate) // 1_000_000
        assert 0 < feed_ms - book["timestamp"] < 50, "exchange time trails by a few ms"
        previous_ts, previous_seq = last.get(key, (0, 0))
        assert book["timestamp"] >= previous_ts
        if book["exchangename"] in ("upbit", "bithumb"):
            assert book["sequence"] == 0, "these venues send none: 0 says so"
        else:
            assert book["sequence"] > previous_seq
        if book["exchangename"] == "bybit" and previous_seq:
            assert book["sequence"] == previous_seq + 1
        last[key] = book["timestamp"], book["sequence"]


def test_an_update_changes_few_levels_when_the_price_holds() -> None:
    """Like a real book: at 20,000 books/s, most updates keep the touch and change one or
    two quantities; the level objects that did not change are the very same."""
    previous: dict[tuple, dict] = {}
    changed_levels = []
    for book in feed_books(rate=20_000):
        key = book["exchangename"], book["symbol"]
        if key in previous:
            before = previous[key]["bids"] + previous[key]["asks"]
            after = book["bids"] + book["asks"]
            changed_levels.append(sum(a is not b for a, b in zip(before, after, strict=True)))
        previous[key] = book
    assert statistics.median(changed_levels) <= 2


@pytest.mark.slow
def test_all_venues_follow_one_price_and_the_premium_drifts_and_jumps() -> None:
    """Five minutes of feed time: the premium the radar would compute (KRW mid over
    USDT mid times the venue's USDT-KRW mid) stays plausible, moves, and jumps."""
    books = feed_books(seed=11, rate=100, count=30_000)
    premiums, usd_prices, venue_gaps = [], [], []
    for latest in sample_latest(books, every=50):  # every 0.5 s
        binance = mid(latest["binance", "BTCUSDT"])
        usd_prices.append(binance)
        assert abs(mid(latest["bybit", "BTCUSDT"]) / binance - 1) < 0.002
        premium = {
            venue: mid(latest[venue, krw]) / (binance * mid(latest[venue, usdt])) - 1
            for venue, krw, usdt in [
                ("upbit", "KRW-BTC", "KRW-USDT"),
                ("bithumb", "BTC_KRW", "USDT_KRW"),
            ]
        }
        venue_gaps.append(abs(premium["upbit"] - premium["bithumb"]))
        premiums.append(premium["upbit"])
    # Both KRW venues show one premium, but for a jump one has seen and one not yet.
    assert statistics.median(venue_gaps) < 0.001
    low, high = PREMIUM_LIMITS
    assert low - 0.005 < min(premiums) and max(premiums) < high + 0.005
    assert 0.01 < statistics.mean(premiums) < 0.03
    assert statistics.stdev(premiums) > 0.002, "the premium should drift"
    jumps = sum(abs(b - a) > 0.005 for a, b in itertools.pairwise(premiums))
    assert 10 <= jumps <= 60, f"{jumps} jumps in 300 s, expected ~30"
    # The USD price walks (~1 bp/sqrt(s) for BTC: ~17 bps over five minutes).
    assert 1e-4 < statistics.stdev(usd_prices) / usd_prices[0] < 0.02


def test_the_feed_passes_the_publisher_without_a_refusal(journal_dir: Path) -> None:
    books = feed_books(count=5_000)
    with BookPublisher(journal_dir, segment_size=1 << 20) as publisher:
        for book in books:
            publisher.publish(book)
        assert publisher.stats.published == len(books)
        assert publisher.stats.refused_total == 0
    with journal.Reader(journal_dir, start="beginning") as reader:
        records = list(reader.available())
    assert [(r.exchange_name, r.symbol) for r in records] == [
        normalize(b["exchangename"], b["symbol"]) for b in books
    ]
    assert records[-1].bids.tolist() == books[-1]["bids"]


# -- run_feed ------------------------------------------------------------------------------


def read_counts(path: Path) -> Counter[str]:
    with journal.Reader(path, start="beginning") as reader:
        return Counter(record.exchange_name for record in reader.available())


@pytest.mark.slow
def test_run_feed_keeps_its_rate_and_writes_what_it_reports(journal_dir: Path) -> None:
    rate, duration = 2_000, 1.5
    report = run_feed(journal_dir, rate, duration, seed=5, segment_size=1 << 20)
    expected = rate * duration
    # Loose bounds: a shared machine may be slow, but the feed never runs ahead.
    assert 0.7 * expected <= report.published <= expected
    assert duration * 0.95 <= report.elapsed_s < duration + 1.0
    assert set(report.books) == {"binance", "bybit", "upbit", "bithumb"}
    assert report.refused == dict.fromkeys(Refusal, 0)
    assert report.journals == (str(journal_dir),)
    assert read_counts(journal_dir) == Counter(report.books)
    assert f"published {report.published:,} books" in report.summary()


@pytest.mark.slow
def test_run_feed_at_rate_zero_goes_as_fast_as_it_can(journal_dir: Path) -> None:
    report = run_feed(journal_dir, 0, 0.5, segment_size=4 << 20)
    assert report.published > 2_000  # ~35,000 books/s here; far below that is still fine
    assert sum(read_counts(journal_dir).values()) == report.published


def test_run_feed_per_venue_writes_one_journal_per_exchange(shm_dir: Path) -> None:
    report = run_feed(shm_dir / "books", 1_000, 0.5, per_venue=True, segment_size=1 << 20)
    assert len(report.journals) == 4
    for venue, count in report.books.items():
        assert read_counts(shm_dir / "books" / venue) == Counter({venue: count})


def test_run_feed_stops_when_its_event_is_set(journal_dir: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    report = run_feed(journal_dir, 1_000, None, stop=stop, segment_size=1 << 20)
    assert time.monotonic() - started < 5
    assert report.published > 0
    assert sum(read_counts(journal_dir).values()) == report.published


def test_run_feed_refuses_negative_arguments(journal_dir: Path) -> None:
    with pytest.raises(ValueError, match="neither may be negative"):
        run_feed(journal_dir, -1, 1)
    with pytest.raises(ValueError, match="must be > 0"):
        next(DemoFeed().books(0, START_NS))
    assert not journal_dir.exists()


def test_sigterm_stops_the_feed_cleanly_leaving_a_readable_journal(journal_dir: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "journal.demo.feed",
            "--journal",
            str(journal_dir),
            "--rate",
            "5000",
            "--segment-size",
            str(1 << 20),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "publishing to" in process.stdout.readline()
        deadline = time.monotonic() + 20
        while not any(journal_dir.glob("*.journal")) or summarize(journal_dir).records < 1000:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the feed wrote nothing"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    match = re.search(r"published ([\d,]+) books", out)
    assert match, out
    published = int(match.group(1).replace(",", ""))
    report = verify(journal_dir)
    assert report.first_error is None and report.records == published
    assert not summarize(journal_dir).writer_alive
    journal.Writer(journal_dir).close()  # the lock went with the writer
