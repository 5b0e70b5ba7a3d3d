"""Upbit books: every ``orderbook`` message is the whole book (its best 1, 5, 15 or
30 levels per side, as subscribed).

Upbit's websocket (``wss://api.upbit.com/websocket/v1``, "Orderbook") answers in the
format the subscription asks for; both are read:

    DEFAULT  {"type": "orderbook", "code": "KRW-BTC", "timestamp": ms,
              "orderbook_units": [{"ask_price", "bid_price", "ask_size", "bid_size"}, ...],
              "total_ask_size", "total_bid_size", "stream_type", "level"}
    SIMPLE   {"ty": "orderbook", "cd": "KRW-BTC", "tms": ms,
              "obu": [{"ap", "bp", "as", "bs"}, ...], "tas", "tbs", "st", "lv"}

Each unit holds one ask and one bid level; a side with fewer levels than units has
units of size 0, which are left out. Upbit sends no sequence number: there is no gap
to detect, every message resyncs the book, and ``needs_resync`` is never True. The
journaled sequence is the count of the stream's order-book messages (1, 2, ...), so
a message that published no book (crossed, or malformed) shows as a gap in the
journal; the timestamp is ``timestamp``/``tms``.

Besides books the connection carries ``{"status": "UP"}`` (the answer to a ``PING``
text frame) and errors ``{"error": {"name": ..., "message": ...}}``; ``route`` names
them ``status`` and ``error``. Bithumb's v1 websocket speaks the same protocol
(journal.feeds._bithumb).
"""

from __future__ import annotations

from typing import Any, ClassVar

from journal.feeds._book import (
    TOP_LEVELS,
    BookBuilder,
    Level,
    PriceLevels,
    TopOfBook,
    message_fields,
    read_levels,
)
from journal.feeds._errors import MessageError
from journal.feeds._route import Route

BOOK_TYPE = "orderbook"


def route_full_books(venue: str, message: Any) -> Route:
    """A message of Upbit's websocket protocol (also Bithumb's v1): by ``type`` (DEFAULT)
    or ``ty`` (SIMPLE); ``orderbook`` is book data for the market in ``code``/``cd``
    (``KRW-BTC``; a ``.count`` suffix, as in a subscription, is dropped)."""
    if isinstance(message, dict):
        kind = message.get("type", message.get("ty"))
        if kind == BOOK_TYPE:  # read for every message live: no context manager
            code = message.get("code", message.get("cd"))
            if code is None:
                raise MessageError(f"{venue} orderbook: no field 'code'")
            return Route(BOOK_TYPE, str(code).partition(".")[0], message)
        if isinstance(kind, str):
            return Route(kind, None, message)
        if "status" in message:
            return Route("status", None, message)
        if "error" in message:
            return Route("error", None, message)
    raise MessageError(
        f"{venue}: expected a message with 'type' (DEFAULT format) or 'ty' (SIMPLE), "
        f"{{'status': ...}} or {{'error': ...}}; got {str(message)[:120]}"
    )


def route(message: Any) -> Route:
    """An Upbit websocket message; see route_full_books."""
    return route_full_books("upbit", message)


class FullBook(BookBuilder):
    """A venue whose every order-book message is the whole book, Upbit-shaped."""

    _DEFAULT: ClassVar = ("orderbook_units", "bid_price", "bid_size", "ask_price", "ask_size")
    _SIMPLE: ClassVar = ("obu", "bp", "bs", "ap", "as")

    def __init__(self, symbol: str, depth: int = TOP_LEVELS) -> None:
        super().__init__(symbol, depth)

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        """One ``orderbook`` message, DEFAULT or SIMPLE format."""
        self.stats.messages += 1
        self.stats.snapshots += 1
        what = f"{self.exchange} {self.symbol} orderbook"
        try:
            with message_fields(what):
                simple = "obu" in message
                units_key, bp, bs, ap, as_ = self._SIMPLE if simple else self._DEFAULT
                units = message[units_key]
                bids = _present([(unit[bp], unit[bs]) for unit in units], what)
                asks = _present([(unit[ap], unit[as_]) for unit in units], what)
                timestamp_ms = int(message["tms" if simple else "timestamp"])
        except MessageError:
            if self._book is not None:
                self._gap()  # the book it held is not the latest any more
            raise
        self._sync(PriceLevels(bids, asks))
        published = self._publish(timestamp_ms, self.stats.messages, received_ns)
        return [] if published is None else [published]


def _present(pairs: list[tuple[Any, Any]], what: str) -> list[Level]:
    """The levels with a size: a unit of size 0 stands for no level on that side (and
    may carry price 0), so it is left out before the prices are checked."""
    return read_levels([pair for pair in pairs if not _is_zero(pair[1])], what)


def _is_zero(size: Any) -> bool:
    try:
        return float(size) == 0.0
    except (TypeError, ValueError):
        return False  # read_levels names it


class UpbitBook(FullBook):
    """The top of each whole book Upbit sends; levels of size 0 are left out."""

    EXCHANGE = "upbit"
