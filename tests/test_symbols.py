"""Names as each venue spells them, normalised to ``BASE-QUOTE``; ambiguity refused."""

from __future__ import annotations

import pytest

from journal.symbols import UnknownNameError, normalize


@pytest.mark.parametrize(
    ("exchange", "symbol", "expected"),
    [
        ("upbit", "KRW-BTC", ("upbit", "BTC-KRW")),
        ("UPBIT", "BTC", ("upbit", "BTC-KRW")),
        ("upbit", "BTC-KRW", ("upbit", "BTC-KRW")),  # already normalised
        ("upbit", "BTC-ETH", ("upbit", "ETH-BTC")),  # ETH quoted in BTC
        ("upbit", "KRW-USDT", ("upbit", "USDT-KRW")),
        ("bithumb", "BTC_KRW", ("bithumb", "BTC-KRW")),
        ("bithumb", "xrp", ("bithumb", "XRP-KRW")),
        ("binance", "BTCUSDT", ("binance", "BTC-USDT")),
        ("binance", "LRCBTC", ("binance", "LRC-BTC")),
        ("binance", "ETH", ("binance", "ETH-USDT")),
        ("binance", "BTCFDUSD", ("binance", "BTC-FDUSD")),
        ("BINANCE_FUTURES", "SUSHIUSDT", ("binance-futures", "SUSHI-USDT")),
        ("bybit", "BTCUSD", ("bybit", "BTC-USD")),
        ("bybit", "SOL-USDT", ("bybit", "SOL-USDT")),
    ],
)
def test_each_venue_spelling_becomes_base_quote(
    exchange: str, symbol: str, expected: tuple[str, str]
) -> None:
    assert normalize(exchange, symbol) == expected


@pytest.mark.parametrize(
    ("exchange", "symbol", "message"),
    [
        ("kraken", "XBTUSD", "exchange 'kraken' is not one of"),
        ("", "BTC", "expected a non-empty string"),
        ("upbit", "KRW/BTC", "expected quote-base spelling"),
        ("upbit", "", "expected a non-empty string"),
        ("upbit", ["BTC"], "expected a non-empty string"),  # unhashable: still named
        ("bithumb", "BTC/KRW", "expected base_quote spelling"),
        ("binance", "BTC/USDT", "expected concatenated spelling"),
    ],
)
def test_names_that_cannot_be_read_are_refused_with_the_value(
    exchange: object, symbol: object, message: str
) -> None:
    with pytest.raises(UnknownNameError, match=message):
        normalize(exchange, symbol)  # type: ignore[arg-type]
