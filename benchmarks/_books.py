"""The synthetic order books the reader and radar benchmarks write: 10x10 books of
twelve venue/symbol pairs, a few ticks apart."""

from __future__ import annotations

import random

# (exchange, symbol, best bid, tick, quantity scale): Upbit and Bithumb have no
# sequence numbers (0); Binance and Bybit count up per symbol.
INSTRUMENTS = [
    ("upbit", "BTC-KRW", 95_000_000.0, 1_000.0, 0.05),
    ("binance", "BTC-USDT", 67_000.0, 0.1, 0.4),
    ("upbit", "USDT-KRW", 1_395.0, 1.0, 20_000.0),
    ("bybit", "BTC-USDT", 67_000.5, 0.1, 0.5),
    ("bithumb", "BTC-KRW", 95_010_000.0, 1_000.0, 0.03),
    ("upbit", "ETH-KRW", 4_950_000.0, 1_000.0, 0.8),
    ("binance", "ETH-USDT", 3_500.0, 0.01, 6.0),
    ("bithumb", "USDT-KRW", 1_396.0, 1.0, 15_000.0),
    ("bybit", "ETH-USDT", 3_500.02, 0.01, 5.0),
    ("bithumb", "ETH-KRW", 4_952_000.0, 1_000.0, 0.6),
    ("upbit", "XRP-KRW", 740.0, 1.0, 3_000.0),
    ("binance", "XRP-USDT", 0.5291, 0.0001, 9_000.0),
]
VARIANTS = 16  # books per instrument, cycled: prices move by a few ticks


def make_books(seed: int = 7) -> list[tuple[str, str, list[list[float]], list[list[float]]]]:
    """``VARIANTS`` books per instrument, interleaved: valid, uncrossed, a few ticks apart."""
    rng = random.Random(seed)
    books = []
    for _ in range(VARIANTS):
        for exchange, symbol, best_bid, tick, scale in INSTRUMENTS:
            bid = best_bid + tick * rng.randint(-3, 3)
            spread = tick * rng.randint(1, 2)
            bids = [[bid - tick * i, round(scale * rng.uniform(0.1, 2.0), 6)] for i in range(10)]
            asks = [
                [bid + spread + tick * i, round(scale * rng.uniform(0.1, 2.0), 6)]
                for i in range(10)
            ]
            books.append((exchange, symbol, bids, asks))
    return books
