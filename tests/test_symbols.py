"""Names as each venue spells them, normalised to ``BASE-QUOTE``; ambiguity refused."""

from __future__ import annotations

import pytest

from journal.symbols import UnknownNameError, normalize, normalize_exchange


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
        ("bithumb", "KRW-BTC", ("bithumb", "BTC-KRW")),  # the v1 websocket's spelling
        ("bithumb", "BTC-KRW", ("bithumb", "BTC-KRW")),
        ("bithumb", "BTC-ETH", ("bithumb", "ETH-BTC")),  # v1: quote first
        ("binance", "BTCUSDT", ("binance", "BTC-USDT")),
        ("binance", "LRCBTC", ("binance", "LRC-BTC")),
        ("binance", "ETH", ("binance", "ETH-USDT")),
        ("binance", "BTCFDUSD", ("binance", "BTC-FDUSD")),
        ("BINANCE_FUTURES", "SUSHIUSDT", ("binance-futures", "SUSHI-USDT")),
        ("bybit", "BTCUSD", ("bybit", "BTC-USD")),
        ("bybit", "SOL-USDT", ("bybit", "SOL-USDT")),
        ("bybit-futures", "BTCUSDT", ("bybit-futures", "BTC-USDT")),
        ("bybit-futures", "ETH", ("bybit-futures", "ETH-USDT")),
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


@pytest.mark.parametrize(
    ("alias", "venue"),
    [
        ("binance_future", "binance-futures"),
        ("binancefuture", "binance-futures"),
        ("binance_futures", "binance-futures"),
        ("binanceusdm", "binance-futures"),
        ("BINANCE-USDM", "binance-futures"),
        ("bybit_future", "bybit-futures"),
        ("bybitfuture", "bybit-futures"),
        ("bybit_futures", "bybit-futures"),
        ("bybit-linear", "bybit-futures"),
        ("Bybit-Futures", "bybit-futures"),
    ],
)
def test_the_collectors_exchange_names_are_aliases(alias: str, venue: str) -> None:
    assert normalize_exchange(alias) == venue
    assert normalize(alias, "BTC") == (venue, "BTC-USDT")
