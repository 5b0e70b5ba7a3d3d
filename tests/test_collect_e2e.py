"""Six fake venues -> one `journal collect` -> the radar computes kimchi premiums.

The design's whole data flow without the internet: synthetic BTC markets on Binance
spot and futures and Bybit spot and linear at 100,000 USDT, and on Upbit and Bithumb
at 142,800,000 KRW with USDT-KRW at 1,400 KRW: a premium of 2 % over every USDT
venue. Each fake speaks its venue's protocol; one collector keeps all eight books;
every journaled book equals the reference rebuild; the radar, reading the six
journals from their beginning, pairs each KRW venue with each USDT venue and finds
the 2 %.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import journal
from tests._cpp import radar, summary_number
from tests.fake_exchanges import (
    FakeBinance,
    FakeBithumb,
    FakeBybit,
    FakeExchange,
    FakeUpbit,
    FullBookMarket,
    binance_synthetic,
    bybit_synthetic,
    full_book_synthetic,
)
from tests.fake_exchanges.collect import Collect, Venues

USDT_PRICE = Decimal("100000")
FX = Decimal("1400")
PREMIUM = Decimal("0.02")
KRW_PRICE = USDT_PRICE * FX * (1 + PREMIUM)  # 142,800,000
TICK_S = 0.02
USDT_VENUES = ("binance", "binance-futures", "bybit", "bybit-futures")
KRW_VENUES = ("upbit", "bithumb")
SYMBOLS = {
    "binance": {"BTCUSDT": "BTC-USDT"},
    "binance-futures": {"BTCUSDT": "BTC-USDT"},
    "bybit": {"BTCUSDT": "BTC-USDT"},
    "bybit-futures": {"BTCUSDT": "BTC-USDT"},
    "upbit": {"KRW-BTC": "BTC-KRW", "KRW-USDT": "USDT-KRW"},
    "bithumb": {"KRW-BTC": "BTC-KRW", "KRW-USDT": "USDT-KRW"},
}


def six_venues(venues: Venues) -> dict[str, FakeExchange]:
    tick = Decimal("0.1")

    def krw(seed: int) -> list[FullBookMarket]:
        return [
            full_book_synthetic("KRW-BTC", KRW_PRICE, Decimal("1000"), seed=seed),
            full_book_synthetic("KRW-USDT", FX, Decimal("1"), seed=seed + 1),
        ]

    return {
        "binance": venues(
            FakeBinance(
                [binance_synthetic("BTCUSDT", USDT_PRICE, Decimal("0.01"), False, 1)], tick_s=TICK_S
            )
        ),
        "binance-futures": venues(
            FakeBinance(
                [binance_synthetic("BTCUSDT", USDT_PRICE, tick, True, 2)],
                futures=True,
                tick_s=TICK_S,
            )
        ),
        "bybit": venues(
            FakeBybit(
                [bybit_synthetic("BTCUSDT", USDT_PRICE, tick, 3)], category="spot", tick_s=TICK_S
            )
        ),
        "bybit-futures": venues(
            FakeBybit(
                [bybit_synthetic("BTCUSDT", USDT_PRICE, tick, 4)], category="linear", tick_s=TICK_S
            )
        ),
        "upbit": venues(FakeUpbit(krw(5), tick_s=TICK_S)),
        "bithumb": venues(FakeBithumb(krw(7), tick_s=TICK_S)),
    }


@pytest.mark.slow
def test_six_fake_venues_through_one_collector_to_the_radars_premiums(
    venues: Venues, collect: Collect, shm_dir: Path
) -> None:
    fakes = six_venues(venues)
    targets = [f"{venue}:{code}" for venue, codes in SYMBOLS.items() for code in codes]
    run = collect(targets, fakes)
    for venue, codes in SYMBOLS.items():
        for symbol in codes.values():
            run.wait_books(venue, 40, symbol)
    run.stop()
    total = 0
    for venue, fake in fakes.items():
        verdict = run.verify(venue, fake, SYMBOLS[venue])
        assert verdict.matched == len(run.books(venue)) > 0
        total += verdict.matched

    results = shm_dir / "results"
    journals = [arg for venue in SYMBOLS for arg in ("--journal", str(run.journal(venue)))]
    done = radar(
        *journals,
        "--results",
        str(results),
        "--start",
        "beginning",
        "--quiet",
        "--max-records",
        str(total),
        "--stale-ms",
        "600000",
    )
    assert done.returncode == 0, done.stderr
    assert summary_number(done.stderr, r"radar summary: (\d+) books") == total
    with journal.Reader(results, metrics=False) as reader:
        records = [record.to_dict() for record in reader.available()]
    for krw_venue in KRW_VENUES:
        for usdt_venue in USDT_VENUES:
            pair = [
                r
                for r in records
                if (r["krw_exchange"], r["usdt_exchange"]) == (krw_venue, usdt_venue)
                and r["base"] == "BTC"
                and not r["stale"]
            ]
            assert pair, f"no premium for {krw_venue} / {usdt_venue}: {done.stderr}"
            last = pair[-1]
            assert last["fx"] == pytest.approx(float(FX), rel=1e-3)
            assert last["kimchi_premium"] == pytest.approx(float(PREMIUM), abs=1e-4), last
