"""Exchange and symbol names as the journal stores them: ``upbit``, ``BTC-KRW``.

Every venue spells a market its own way (Upbit and Bithumb's v1 API ``KRW-BTC``,
Bithumb's older API ``BTC_KRW``, Binance and Bybit ``BTCUSDT``) and the existing
collector sometimes sends the base asset alone (``"BTC"`` on ``upbit`` means BTC
quoted in KRW). The radar
pairs venues by base and quote, so names are normalised once, at the edge, to
``BASE-QUOTE`` in upper case, and exchange names to lower case. A name that
cannot be read unambiguously is refused, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

# Quote assets recognised at the end of a concatenated symbol (``NKNUSDT``),
# longest first so that ``USDT`` wins over ``USD`` and ``FDUSD`` over ``USD``.
CONCATENATED_QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "EUR",
    "TRY",
    "BTC",
    "ETH",
    "BNB",
    "KRW",
    "USD",
)


@dataclass(frozen=True, slots=True)
class VenueSpelling:
    """How one exchange writes a market, and its quote when only the base is sent."""

    style: str  # "quote-base" (KRW-BTC), "base_quote" (BTC_KRW) or "concatenated" (BTCUSDT)
    default_quote: str


VENUES: dict[str, VenueSpelling] = {
    "upbit": VenueSpelling("quote-base", "KRW"),
    "bithumb": VenueSpelling("base_quote", "KRW"),
    "binance": VenueSpelling("concatenated", "USDT"),
    "binance-futures": VenueSpelling("concatenated", "USDT"),
    "bybit": VenueSpelling("concatenated", "USDT"),  # v5 spot (and legacy v2 imports)
    "bybit-futures": VenueSpelling("concatenated", "USDT"),  # v5 linear USDT perpetuals
}

# Spellings of the exchange names seen in collectors and in the captures: the user's
# collector says binance_future and bybit_future (older builds binancefuture and
# bybitfuture), cryptofeed binanceusdm, Bybit itself "linear".
EXCHANGE_ALIASES = {
    "binance_future": "binance-futures",
    "binancefuture": "binance-futures",
    "binance_futures": "binance-futures",
    "binanceusdm": "binance-futures",
    "binance-usdm": "binance-futures",
    "bybit_future": "bybit-futures",
    "bybitfuture": "bybit-futures",
    "bybit_futures": "bybit-futures",
    "bybit-linear": "bybit-futures",
}


class UnknownNameError(ValueError):
    """An exchange or symbol name that cannot be normalised unambiguously."""


def normalize_exchange(exchange: str) -> str:
    """``"UPBIT"`` -> ``"upbit"``, ``"BINANCE_FUTURES"`` -> ``"binance-futures"``."""
    if not isinstance(exchange, str) or not exchange:
        raise UnknownNameError(f"exchange name {exchange!r}: expected a non-empty string")
    name = exchange.strip().lower()
    name = EXCHANGE_ALIASES.get(name, name)
    if name not in VENUES:
        raise UnknownNameError(
            f"exchange {exchange!r} is not one of {', '.join(sorted(VENUES))}: "
            "add its spelling to journal.symbols.VENUES"
        )
    return name


def _split_concatenated(symbol: str) -> tuple[str, str] | None:
    for quote in CONCATENATED_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None


def normalize_symbol(exchange: str, symbol: str) -> str:
    """The ``BASE-QUOTE`` name of ``symbol`` as ``exchange`` (already normalised) spells it.

    Cached: a collector sends the same few hundred names millions of times.
    """
    if not isinstance(symbol, str) or not symbol.strip():
        raise UnknownNameError(f"{exchange} symbol {symbol!r}: expected a non-empty string")
    return _normalize_symbol(exchange, symbol)


@lru_cache(maxsize=4096)
def _normalize_symbol(exchange: str, symbol: str) -> str:
    venue = VENUES[exchange]
    text = symbol.strip().upper()
    if text.isalnum() and venue.style != "concatenated":
        return f"{text}-{venue.default_quote}"  # the base alone: "BTC" on upbit
    if venue.style == "quote-base":
        quote, dash, base = text.partition("-")
        if dash and quote.isalnum() and base.isalnum():
            # "BTC-KRW" is already BASE-QUOTE: KRW is never a base on Upbit.
            return f"{quote}-{base}" if base == "KRW" else f"{base}-{quote}"
    elif venue.style == "base_quote":
        base, underscore, quote = text.partition("_")
        if underscore and base.isalnum() and quote.isalnum():
            return f"{base}-{quote}"
        # Bithumb's v1 API spells markets as Upbit does, quote first: KRW-BTC.
        quote, dash, base = text.partition("-")
        if dash and quote.isalnum() and base.isalnum():
            return f"{quote}-{base}" if base == "KRW" else f"{base}-{quote}"
    else:
        if "-" in text:
            base, _, quote = text.partition("-")
            if base.isalnum() and quote.isalnum():
                return f"{base}-{quote}"
        elif text.isalnum():
            parts = _split_concatenated(text)
            if parts is not None:
                return f"{parts[0]}-{parts[1]}"
            return f"{text}-{venue.default_quote}"  # the base alone: "BTC" on binance
    raise UnknownNameError(
        f"{exchange} symbol {symbol!r}: expected {venue.style} spelling "
        f"(e.g. {_EXAMPLES[venue.style]}) or the base asset alone"
    )


_EXAMPLES = {
    "quote-base": "KRW-BTC",
    "base_quote": "BTC_KRW, or KRW-BTC as its v1 API writes it",
    "concatenated": "BTCUSDT",
}


def normalize(exchange: str, symbol: str) -> tuple[str, str]:
    """``(exchange, BASE-QUOTE)`` as the journal stores them, or UnknownNameError."""
    venue = normalize_exchange(exchange)
    return venue, normalize_symbol(venue, symbol)
