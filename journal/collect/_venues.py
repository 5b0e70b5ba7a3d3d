"""The six venues ``journal collect`` speaks to: endpoints, protocol, builder and limits.

The limits are the venues' documented ones, kept with a margin:

    venue            streams per connection      silence limit   pings
    binance          1024 (we use 200)           10 s            server ping frames, 20 s
    binance-futures  200                         10 s            server ping frames, 3 min
    bybit            no cap; 10 topics/request   30 s            {"op":"ping"} every 20 s
    bybit-futures    no cap; 10 topics/request   30 s            {"op":"ping"} every 20 s
    upbit            codes in one request        60 s            "PING" every 20 s
    bithumb          codes in one request        60 s            "PING" every 20 s

The silence limit is how long a connection may go without any message (books,
pongs, status) before it is declared dead and replaced: the diff streams of liquid
markets speak every 100 ms, and the pinged venues answer within the ping interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from journal.collect._binance import BinanceProtocol
from journal.collect._bybit import BybitProtocol
from journal.collect._protocol import Protocol
from journal.collect._upbit import UpbitProtocol
from journal.feeds import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BithumbBook,
    BookBuilder,
    BybitLinearBook,
    BybitSpotBook,
    UpbitBook,
)
from journal.symbols import VENUES as SPELLINGS

BuilderFactory = Callable[[str, int], BookBuilder]


@dataclass(frozen=True, slots=True)
class Venue:
    name: str  # as journaled, journal.symbols
    ws_url: str
    rest_url: str | None
    protocol: Callable[[], Protocol]
    builder: BuilderFactory  # (journal symbol, depth) -> the stream's builder
    streams_per_connection: int
    silence_s: float
    rest_weight_per_minute: float = 0.0  # the venue's documented REST budget
    snapshot_weight: float = 0.0  # what one depth snapshot costs of it
    connect_timeout_s: float = 10.0
    subscribe_timeout_s: float = 10.0

    def venue_symbol(self, symbol: str) -> str:
        """``BTC-USDT`` as the venue spells it in requests: ``BTCUSDT``, ``KRW-BTC``."""
        base, _, quote = symbol.partition("-")
        style = SPELLINGS[self.name].style
        if style == "concatenated":
            return base + quote
        if style == "quote-base":
            return f"{quote}-{base}"
        return f"{quote}-{base}"  # Bithumb's v1 websocket spells markets as Upbit does


VENUES: Final[Mapping[str, Venue]] = MappingProxyType(
    {
        venue.name: venue
        for venue in (
            Venue(
                "binance",
                "wss://stream.binance.com:9443",
                "https://api.binance.com",
                lambda: BinanceProtocol("/api/v3/depth"),
                lambda symbol, depth: BinanceSpotBook(symbol, depth=depth),
                streams_per_connection=200,
                silence_s=10.0,
                rest_weight_per_minute=6000,  # REQUEST_WEIGHT per IP
                snapshot_weight=50,  # /api/v3/depth, limit 501-1000
            ),
            Venue(
                "binance-futures",
                "wss://fstream.binance.com/public",
                "https://fapi.binance.com",
                lambda: BinanceProtocol("/fapi/v1/depth"),
                lambda symbol, depth: BinanceFuturesBook(symbol, depth=depth),
                streams_per_connection=200,
                silence_s=10.0,
                rest_weight_per_minute=2400,
                snapshot_weight=20,  # /fapi/v1/depth, limit 1000
            ),
            Venue(
                "bybit",
                "wss://stream.bybit.com",
                None,
                lambda: BybitProtocol("/v5/public/spot"),
                lambda symbol, depth: BybitSpotBook(symbol, depth=depth),
                streams_per_connection=100,
                silence_s=30.0,
            ),
            Venue(
                "bybit-futures",
                "wss://stream.bybit.com",
                None,
                lambda: BybitProtocol("/v5/public/linear"),
                lambda symbol, depth: BybitLinearBook(symbol, depth=depth),
                streams_per_connection=100,
                silence_s=30.0,
            ),
            Venue(
                "upbit",
                "wss://api.upbit.com",
                None,
                UpbitProtocol,
                lambda symbol, depth: UpbitBook(symbol, depth=depth),
                streams_per_connection=100,
                silence_s=60.0,
            ),
            Venue(
                "bithumb",
                "wss://ws-api.bithumb.com",
                None,
                lambda: UpbitProtocol("bithumb"),
                lambda symbol, depth: BithumbBook(symbol, depth=depth),
                streams_per_connection=100,
                silence_s=60.0,
            ),
        )
    }
)
