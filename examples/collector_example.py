"""A minimal collector that publishes its order books to a journal, then reads them back.

``OrderBookV2`` stands for the collector's book class: it keeps the levels of one
market and hands each update on with ``send_to_queue``. The only change for the
journal is in that method (see docs/COLLECTOR.md). Four "websockets" (coroutines)
update books of four venues, each spelling its market its own way; the journal
holds them as ``BASE-QUOTE``. The journal lives in /dev/shm and is removed at the
end, whatever happens.

    .venv/bin/python examples/collector_example.py
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import journal
from journal.collector import BookPublisher

UPDATES_PER_MARKET = 500


class OrderBookV2:
    """One market's book, as the collector keeps it (reduced to the hand-off)."""

    def __init__(self, exchangename: str, symbol: str, publisher: BookPublisher) -> None:
        self.exchangename = exchangename
        self.symbol = symbol
        self.publisher = publisher
        self.bids: list[list[float]] = []
        self.asks: list[list[float]] = []
        self.timestamp = 0
        self.sequence = 0

    def update(self, mid: float, tick: float, sequence: int) -> None:
        self.bids = [[round(mid - tick * (k + 1), 8), 0.5 + k] for k in range(10)]
        self.asks = [[round(mid + tick * (k + 1), 8), 0.5 + k] for k in range(10)]
        self.timestamp = time.time_ns() // 1_000_000 - 3  # the exchange's clock, a little behind
        self.sequence = sequence

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchangename": self.exchangename,
            "symbol": self.symbol,
            "bids": self.bids[:10],
            "asks": self.asks[:10],
            "timestamp": self.timestamp,
            "sequence": self.sequence,
        }

    async def send_to_queue(self) -> None:
        # Before: await self.queue.put(self.to_dict())
        self.publisher.publish(self.to_dict())  # ~5 µs, never awaits, never raises for a bad book


async def websocket(book: OrderBookV2, mid: float, tick: float, sequenced: bool) -> None:
    """Stands for one exchange connection: a message, an update, the hand-off."""
    rng = random.Random(book.symbol)
    for sequence in range(1, UPDATES_PER_MARKET + 1):
        mid += tick * rng.choice((-1, 0, 1))
        # Upbit and Bithumb send no sequence numbers: 0 says so to every reader.
        book.update(mid, tick, sequence if sequenced else 0)
        await book.send_to_queue()
        await asyncio.sleep(0.0002)  # waiting for the next message


async def collect(publisher: BookPublisher) -> None:
    markets = [
        ("upbit", "KRW-BTC", 136_800_000.0, 1000.0, False),
        ("bithumb", "BTC_KRW", 136_700_000.0, 1000.0, False),
        ("binance", "BTCUSDT", 96_500.0, 0.01, True),
        ("bybit", "BTCUSDT", 96_499.0, 0.01, True),
    ]
    await asyncio.gather(
        *(
            websocket(OrderBookV2(exchange, symbol, publisher), mid, tick, sequenced)
            for exchange, symbol, mid, tick, sequenced in markets
        )
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="collector-example-", dir="/dev/shm"))
    path = root / "books"
    print(f"journal {root}")
    try:
        with BookPublisher(path) as publisher:
            asyncio.run(collect(publisher))
            stats = publisher.stats
        print(f"published {stats.published} books, refused {stats.refused_total}")

        counts: Counter[tuple[str, str]] = Counter()
        with journal.Reader(path, start="beginning") as reader:
            for record in reader.available():
                counts[record.exchange_name, record.symbol] += 1
                last = record
        print(f"read back {sum(counts.values())} books:")
        for (exchange, symbol), count in sorted(counts.items()):
            print(f"  {exchange:8} {symbol:9} {count}")
        mid = (last.bids[0, 0] + last.asks[0, 0]) / 2
        delay_ms = last.local_timestamp_ns / 1e6 - last.timestamp
        print(
            f"last: {last.exchange_name} {last.symbol} mid {mid:,.2f}, seq {last.sequence}, "
            f"published {delay_ms:.1f} ms after its exchange timestamp"
        )
        if sum(counts.values()) != stats.published:
            raise SystemExit("the journal does not hold every published book")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"removed {root}")


if __name__ == "__main__":
    main()
