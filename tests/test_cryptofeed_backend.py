"""journal.collect.cryptofeed: cryptofeed's own feed handlers, fed the recorded captures
offline, publish through the callback; the journal must hold each book cryptofeed had.

The replay is cryptofeed's: ``cryptofeed.raw_data_collection.playback`` builds the
exchange's Feed, serves its REST snapshot requests from the recorded ``.http.`` file
and hands every recorded websocket message to the Feed's ``message_handler``. It wants
the symbol list the Feed fetches at start in a ``<EXCHANGE>.0`` file, which the
captures here lack (README there): the test writes one with just the captured markets.

A witness registered on L2_BOOK copies cryptofeed's book at each callback (top levels
read from ``OrderBook.to_dict()`` and sorted here, not as the backend reads them), then
awaits the JournalBookCallback with the same book; the journal is then read back and
compared, book by book.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptofeed.connection import HTTPAsyncConn, HTTPSync
from cryptofeed.defines import ASK, BID, L2_BOOK
from cryptofeed.raw_data_collection import playback
from cryptofeed.symbols import Symbols
from cryptofeed.types import OrderBook, Trade

import journal
from journal._inspect import summarize
from journal.collect.cryptofeed import (
    CallbackRefusal,
    JournalBookCallback,
)
from journal.collector import Refusal
from journal.symbols import VENUES as JOURNAL_VENUES
from tests.conftest import REPO

CAPTURES = REPO / "tests" / "data" / "exchange-captures"
DEPTH = 10
SEGMENT_SIZE = 1 << 20  # the default 64 MiB, prefaulted per journal, costs ~0.3 s each

# The markets of the captures, as each exchange's symbol list (exchangeInfo,
# /v1/market/all) would give them, and as the journal must name them.
BINANCE_SPOT = {
    "NKNUSDT": ("NKN", "USDT"),
    "BLZETH": ("BLZ", "ETH"),
    "LRCBTC": ("LRC", "BTC"),
    "RUNEEUR": ("RUNE", "EUR"),
}
BINANCE_PERPETUALS = {
    "SUSHIUSDT": ("SUSHI", "USDT"),
    "AKROUSDT": ("AKRO", "USDT"),
    "KEEPUSDT": ("KEEP", "USDT"),
    "CTKUSDT": ("CTK", "USDT"),
}
UPBIT_MARKETS = ["KRW-LAMB", "KRW-WAVES", "BTC-XTZ", "BTC-ITAM", "BTC-PAX", "BTC-ARK"]
EXPECTED_NAMES = {
    ("BINANCE", "NKN-USDT"): ("binance", "NKN-USDT"),
    ("BINANCE", "BLZ-ETH"): ("binance", "BLZ-ETH"),
    ("BINANCE", "LRC-BTC"): ("binance", "LRC-BTC"),
    ("BINANCE", "RUNE-EUR"): ("binance", "RUNE-EUR"),
    ("BINANCE_FUTURES", "SUSHI-USDT-PERP"): ("binance-futures", "SUSHI-USDT"),
    ("BINANCE_FUTURES", "AKRO-USDT-PERP"): ("binance-futures", "AKRO-USDT"),
    ("BINANCE_FUTURES", "KEEP-USDT-PERP"): ("binance-futures", "KEEP-USDT"),
    ("BINANCE_FUTURES", "CTK-USDT-PERP"): ("binance-futures", "CTK-USDT"),
    ("UPBIT", "LAMB-KRW"): ("upbit", "LAMB-KRW"),
    ("UPBIT", "WAVES-KRW"): ("upbit", "WAVES-KRW"),
    ("UPBIT", "XTZ-BTC"): ("upbit", "XTZ-BTC"),  # Upbit's code BTC-XTZ: XTZ in BTC
    ("UPBIT", "ITAM-BTC"): ("upbit", "ITAM-BTC"),
    ("UPBIT", "PAX-BTC"): ("upbit", "PAX-BTC"),
}


def binance_exchange_info(markets: dict[str, tuple[str, str]], perpetual: bool) -> dict[str, Any]:
    """The part of /exchangeInfo that cryptofeed's Binance._parse_symbol_data reads."""
    symbols = []
    for symbol, (base, quote) in markets.items():
        entry: dict[str, Any] = {
            "symbol": symbol,
            "status": "TRADING",
            "baseAsset": base,
            "quoteAsset": quote,
            "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.00010000"}],
        }
        if perpetual:
            entry["contractType"] = "PERPETUAL"
        symbols.append(entry)
    return {"symbols": symbols}


@dataclass(frozen=True)
class Seen:
    """cryptofeed's book at one callback, read independently of the backend."""

    exchange: str
    symbol: str
    timestamp: float | None
    sequence: int | None
    receipt: Any
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class Witness:
    """Registered on L2_BOOK: copies cryptofeed's book, then hands it to the callback
    (cryptofeed's playback lets one callable per channel be given)."""

    def __init__(self, callback: JournalBookCallback) -> None:
        self.callback = callback
        self.seen: list[Seen] = []

    async def __call__(self, book: OrderBook, receipt_timestamp: Any) -> None:
        sides = book.book.to_dict()
        bids = sorted(sides[BID].items(), reverse=True)[:DEPTH]
        asks = sorted(sides[ASK].items())[:DEPTH]
        self.seen.append(
            Seen(
                book.exchange,
                book.symbol,
                book.timestamp,
                book.sequence_number,
                receipt_timestamp,
                [(float(p), float(q)) for p, q in bids],
                [(float(p), float(q)) for p, q in asks],
            )
        )
        await self.callback(book, receipt_timestamp)

    async def stop(self) -> None:  # cryptofeed's Feed.shutdown awaits it
        await self.callback.stop()


def replay(
    exchange: str, captures: list[str], symbol_data: Any, markets: list[str], config_dir: Path
) -> Witness | Any:
    """cryptofeed's playback of ``captures`` with a ``<exchange>.0`` file written for it;
    returns playback's result. cryptofeed patches two HTTP classes while it runs and
    restores them only on success: restored here whatever happens."""
    config_dir.mkdir()
    config = config_dir / f"{exchange}.0"  # no "ws"/"http" in the path: playback's test
    config.write_text(
        f"https://symbols.invalid/ -> 0.0: {json.dumps(symbol_data, separators=(',', ':'))}\n"
        f"configuration: {json.dumps({L2_BOOK: markets})}\n"
    )
    Symbols.data.pop(exchange, None)  # cryptofeed's process-wide cache: read ours
    saved = HTTPAsyncConn.read, HTTPSync.read
    try:
        return playback(
            exchange,
            [str(config), *(str(CAPTURES / name) for name in captures)],
            callbacks={L2_BOOK: WITNESS[0]},
        )
    finally:
        HTTPAsyncConn.read, HTTPSync.read = saved
        Symbols.data.pop(exchange, None)


WITNESS: list[Witness] = []  # playback takes callbacks by value: one at a time


@pytest.fixture
def witness(shm_dir: Path) -> Iterator[Witness]:
    callback = JournalBookCallback(shm_dir / "books", depth=DEPTH, segment_size=SEGMENT_SIZE)
    WITNESS[:] = [Witness(callback)]
    try:
        yield WITNESS[0]
    finally:
        WITNESS.clear()
        callback.close()


def read_journal(path: Path) -> list[journal.OrderBookRecord]:
    with journal.Reader(path, start="beginning") as reader:
        return list(reader.available())


def check_journaled(witness: Witness, root: Path, venue: str) -> dict[str, int]:
    """Every book cryptofeed had is in the venue's journal, in order, as it was; the
    books per journaled symbol."""
    records = read_journal(root / venue)
    seen = witness.seen
    assert len(records) == len(seen), f"{len(seen)} books from cryptofeed, {len(records)} journaled"
    per_symbol: dict[str, int] = {}
    for index, (book, record) in enumerate(zip(seen, records, strict=True)):
        where = f"book {index} ({book.exchange} {book.symbol} seq {book.sequence})"
        assert (record.exchange_name, record.symbol) == EXPECTED_NAMES[
            book.exchange, book.symbol
        ], where
        timestamp = book.timestamp if book.timestamp else float(book.receipt)
        assert record.timestamp == round(timestamp * 1000), where
        assert record.sequence == (book.sequence or 0), where
        assert record.local_timestamp_ns == int(float(book.receipt) * 1e9), where
        np.testing.assert_array_equal(record.bids, np.array(book.bids).reshape(-1, 2), where)
        np.testing.assert_array_equal(record.asks, np.array(book.asks).reshape(-1, 2), where)
        per_symbol[record.symbol] = per_symbol.get(record.symbol, 0) + 1
    return per_symbol


def test_binance_spot_diffs_and_snapshots(witness: Witness, shm_dir: Path) -> None:
    result = replay(
        "BINANCE",
        ["BINANCE.ws.1.0", "BINANCE.http.0.0"],
        binance_exchange_info(BINANCE_SPOT, perpetual=False),
        list(captured_symbols("BINANCE")),
        shm_dir / "cryptofeed-config",
    )
    books = check_journaled(witness, shm_dir / "books", "binance")
    assert books.keys() == {"NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"}
    assert books["NKN-USDT"] > 100  # 150 diffs captured, a few made stale by the snapshot
    stats = witness.callback.stats
    assert result["callbacks"][L2_BOOK] == len(witness.seen) == stats.books
    assert stats.published == stats.books and stats.refused_total == 0, stats
    # A spot REST snapshot has no exchange time: cryptofeed's one book per symbol for it.
    snapshots = [book for book in witness.seen if book.timestamp is None]
    assert len(snapshots) == stats.receipt_timed == 4
    assert all(isinstance(book.sequence, int) and book.sequence > 0 for book in witness.seen)


def test_binance_futures_perpetuals(witness: Witness, shm_dir: Path) -> None:
    replay(
        "BINANCE_FUTURES",
        ["BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0"],
        binance_exchange_info(BINANCE_PERPETUALS, perpetual=True),
        list(captured_symbols("BINANCE_FUTURES")),
        shm_dir / "cryptofeed-config",
    )
    books = check_journaled(witness, shm_dir / "books", "binance-futures")
    assert books.keys() == {"SUSHI-USDT", "AKRO-USDT", "KEEP-USDT", "CTK-USDT"}
    stats = witness.callback.stats
    assert stats.published == stats.books == len(witness.seen) > 500
    assert stats.refused_total == 0 and stats.receipt_timed == 0, stats


def test_upbit_full_books_krw_and_btc_markets(witness: Witness, shm_dir: Path) -> None:
    replay(
        "UPBIT",
        ["UPBIT.ws.62.0"],
        [{"market": market} for market in UPBIT_MARKETS],
        list(captured_symbols("UPBIT")),
        shm_dir / "cryptofeed-config",
    )
    books = check_journaled(witness, shm_dir / "books", "upbit")
    assert books == {"LAMB-KRW": 87, "WAVES-KRW": 26, "XTZ-BTC": 16, "ITAM-BTC": 8, "PAX-BTC": 8}
    stats = witness.callback.stats
    assert stats.published == stats.books == 145 and stats.refused_total == 0, stats
    assert {book.sequence for book in witness.seen} == {None}  # journaled as 0: no sequence


def test_stop_seals_and_later_books_are_refused(witness: Witness, shm_dir: Path) -> None:
    """cryptofeed's shutdown awaited stop (through the witness): the journal is sealed
    and closed; a book after that is counted, not raised."""
    replay(
        "UPBIT",
        ["UPBIT.ws.62.0"],
        [{"market": market} for market in UPBIT_MARKETS],
        list(captured_symbols("UPBIT")),
        shm_dir / "cryptofeed-config",
    )
    callback = witness.callback
    assert callback.publisher("upbit").closed
    segments = summarize(shm_dir / "books" / "upbit").segments  # the next one made, empty
    assert [(s.sealed, s.records) for s in segments] == [(True, 145), (False, 0)]
    assert callback.publish(book("UPBIT", "BTC-KRW"), 1.0) is False
    assert callback.stats.refused == {CallbackRefusal.STOPPED: 1}
    asyncio.run(callback.stop())  # once per feed served: the next ones find nothing left


def captured_symbols(exchange: str) -> list[str]:
    return [symbol for (ex, symbol) in EXPECTED_NAMES if ex == exchange]


# -- books made by hand: names, refusals, lifetime ---------------------------------------


def book(
    exchange: str,
    symbol: str,
    *,
    bids: dict[Decimal, Decimal] | None = None,
    asks: dict[Decimal, Decimal] | None = None,
    timestamp: float | None = 1_700_000_000.123,
    sequence: int | None = 7,
) -> OrderBook:
    """A cryptofeed OrderBook as a Feed hands it to its callbacks."""
    made = OrderBook(
        exchange,
        symbol,
        bids=bids if bids is not None else {Decimal(100 - i): Decimal(i + 1) for i in range(15)},
        asks=asks if asks is not None else {Decimal(101 + i): Decimal("0.5") for i in range(15)},
    )
    made.timestamp = timestamp
    made.sequence_number = sequence
    return made


def test_names_of_every_journal_venue(shm_dir: Path) -> None:
    cases = {
        ("BINANCE", "BTC-USDT"): ("binance", "BTC-USDT"),
        ("BINANCE_FUTURES", "BTC-USDT-PERP"): ("binance-futures", "BTC-USDT"),
        ("BYBIT", "BTC-USDT"): ("bybit", "BTC-USDT"),
        ("BYBIT", "BTC-USDT-PERP"): ("bybit-futures", "BTC-USDT"),
        ("UPBIT", "BTC-KRW"): ("upbit", "BTC-KRW"),
        ("UPBIT", "USDT-KRW"): ("upbit", "USDT-KRW"),
        ("UPBIT", "ETH-BTC"): ("upbit", "ETH-BTC"),
        ("BITHUMB", "XRP-KRW"): ("bithumb", "XRP-KRW"),
    }
    cases = {key: names for key, names in cases.items() if names[0] in JOURNAL_VENUES}
    with JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, depth=5) as callback:
        for exchange, symbol in cases:
            assert asyncio.run(call(callback, book(exchange, symbol), 1_700_000_000.5)) is None
        stats = callback.stats
        assert stats.published == len(cases) and stats.refused_total == 0, stats
    for (exchange, symbol), (venue, name) in cases.items():
        records = [r for r in read_journal(shm_dir / venue) if r.symbol == name]
        assert len(records) == 1, (exchange, symbol)
        record = records[0]
        assert record.exchange_name == venue
        assert record.timestamp == 1_700_000_000_123 and record.sequence == 7
        assert record.local_timestamp_ns == 1_700_000_000_500_000_000
        assert record.bids.tolist() == [[100.0 - i, i + 1.0] for i in range(5)]
        assert record.asks.tolist() == [[101.0 + i, 0.5] for i in range(5)]


async def call(callback: JournalBookCallback, made: Any, receipt: Any) -> None:
    """As cryptofeed's Feed.callback does."""
    return await callback(made, receipt)


def test_refusals_are_counted_never_raised(shm_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    crossed = book("BINANCE", "ETH-USDT", bids={Decimal(102): Decimal(1)})
    with JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, log_first=1) as callback:
        for made in [
            book("COINBASE", "BTC-USD"),  # no journal venue
            book("COINBASE", "BTC-USD"),
            book("BINANCE_US", "BTC-USDT"),  # not binance
            book("BINANCE_FUTURES", "BTC-USDT-25DEC26"),  # a dated future
            book("BINANCE", "BTC-USDT-PERP"),  # no perpetuals on spot
            Trade("BINANCE", "BTC-USDT", "buy", Decimal(1), Decimal(100), 1.0),  # wrong channel
            crossed,  # the publisher's refusal
            book("UPBIT", "BTC-KRW", timestamp=None),  # stamped with its receipt time
        ]:
            asyncio.run(call(callback, made, 1_700_000_001.25))
        stats = callback.stats
    assert stats.books == 8 and stats.published == 1
    assert stats.refused == {
        CallbackRefusal.UNKNOWN_VENUE: 5,
        CallbackRefusal.NOT_A_BOOK: 1,
        Refusal.INVALID_BOOK: 1,
    }
    assert stats.receipt_timed == 1
    assert read_journal(shm_dir / "upbit")[0].timestamp == 1_700_000_001_250
    assert not (shm_dir / "coinbase").exists()
    text = caplog.text
    assert "no journal venue for COINBASE's spot markets" in text
    assert "not a spot or perpetual market" in text
    assert "register the callback on the L2_BOOK channel only" in text
    assert "crossed" in text.lower()


def test_venues_open_at_construction_and_bound_what_is_journaled(shm_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"'KRAKEN' is neither a journal venue"):
        JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, venues=["BINANCE", "KRAKEN"])
    assert not list(shm_dir.iterdir())  # nothing opened for a refused list
    with JournalBookCallback(
        shm_dir, segment_size=SEGMENT_SIZE, venues=["BINANCE", "upbit"]
    ) as callback:
        assert sorted(path.name for path in shm_dir.iterdir()) == ["binance", "upbit"]
        callback.publish(book("BINANCE_FUTURES", "BTC-USDT-PERP"), 1.5)
        callback.publish(book("BINANCE", "BTC-USDT"), 1.5)
        stats = callback.stats
    assert stats.published == 1 and stats.refused == {CallbackRefusal.UNKNOWN_VENUE: 1}
    assert "not one of the venues given" in (stats.last_refusal or "")


def test_a_locked_journal_is_refused_then_retried(shm_dir: Path) -> None:
    """Another writer holds the journal: books are refused (counted) and the journal is
    tried again after retry_s; at construction with venues=..., it raises."""
    other = journal.Writer(shm_dir / "binance")
    try:
        with pytest.raises(journal.WriterLockedError):
            JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, venues=["BINANCE"])
        with JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, retry_s=0.0) as callback:
            assert callback.publish(book("BINANCE", "BTC-USDT"), 2.0) is False
            assert callback.stats.refused == {CallbackRefusal.JOURNAL_UNAVAILABLE: 1}
            other.close()
            assert callback.publish(book("BINANCE", "BTC-USDT"), 2.0) is True
            assert callback.stats.published == 1
    finally:
        other.close()


def test_depth_and_receipt_forms(shm_dir: Path) -> None:
    """A shallower book than depth; a receipt time that is not a float (playback's
    string, an int) or no number at all (the writer stamps it)."""
    with JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, depth=20) as callback:
        callback.publish(book("BINANCE", "BTC-USDT"), "1700000002.5")
        callback.publish(book("BINANCE", "BTC-USDT"), 1_700_000_003)
        callback.publish(book("BINANCE", "BTC-USDT", sequence=None), None)
        callback.publish(book("BINANCE", "BTC-USDT", bids={}), 4.0)  # one side empty
        assert callback.stats.published == 4, callback.stats
    records = read_journal(shm_dir / "binance")
    assert [len(r.bids) for r in records] == [15, 15, 15, 0]
    assert records[0].local_timestamp_ns == 1_700_000_002_500_000_000
    assert records[1].local_timestamp_ns == 1_700_000_003_000_000_000
    assert records[2].local_timestamp_ns > 1_700_000_003_000_000_000  # the writer's clock
    assert records[2].sequence == 0
    with pytest.raises(ValueError, match="depth=0"):
        JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE, depth=0)


def test_registered_on_a_feed_handler(shm_dir: Path) -> None:
    """The callback as a desk registers it: FeedHandler.add_feed(Binance(...)) keeps it
    as is (not wrapped), so cryptofeed awaits it with (book, receipt_timestamp)."""
    from cryptofeed import FeedHandler
    from cryptofeed.exchanges import Binance

    Symbols.set("BINANCE", {"BTC-USDT": "BTCUSDT"}, {})
    try:
        with JournalBookCallback(shm_dir, segment_size=SEGMENT_SIZE) as callback:
            feed = Binance(symbols=["BTC-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: callback})
            FeedHandler(config={"log": {"disabled": True}}).add_feed(feed)  # no log file
            assert feed.callbacks[L2_BOOK] == [callback]
            asyncio.run(feed.callback(L2_BOOK, book("BINANCE", "BTC-USDT"), 5.0))
            assert callback.stats.published == 1
    finally:
        Symbols.data.pop("BINANCE", None)


def test_import_without_cryptofeed_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['cryptofeed'] = None\n"
        "try:\n"
        "    import journal.collect.cryptofeed\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert "pip install 'orderbook-journal[cryptofeed]'" in completed.stdout, completed
