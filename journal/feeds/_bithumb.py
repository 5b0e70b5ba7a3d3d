"""Bithumb books: its public websocket v1 (``wss://ws-api.bithumb.com/websocket/v1``,
"호가 (Orderbook)"), which speaks Upbit's protocol.

The subscription is ``[{"ticket": ...}, {"type": "orderbook", "codes": ["KRW-BTC"]},
{"format": "DEFAULT"}]`` (or ``SIMPLE``); markets are spelled quote-base, ``KRW-BTC``,
as on Upbit (the retired ``pubwss.bithumb.com`` API spelled ``BTC_KRW`` and sent
level diffs; this one does not). Every ``orderbook`` message is the whole book:

    DEFAULT  {"type": "orderbook", "code": "KRW-BTC", "timestamp": ms,
              "orderbook_units": [{"ask_price", "bid_price", "ask_size", "bid_size"}, ...],
              "total_ask_size", "total_bid_size", "level", "stream_type"?}
    SIMPLE   {"ty", "cd", "tms", "obu": [{"ap", "bp", "as", "bs"}, ...], "tas", "tbs", "lv", "st"?}

The documentation lists no ``stream_type`` for Bithumb's orderbook (Upbit's has it);
it is not read either way. No sequence, no REST snapshot: every message resyncs the
book, ``needs_resync`` is never True, and the journaled sequence is the count of the
stream's order-book messages, as for Upbit (journal.feeds._upbit). Non-book messages
(``{"status": "UP"}``, ``{"error": {...}}``) are routed by name.
"""

from __future__ import annotations

from typing import Any

from journal.feeds._route import Route
from journal.feeds._upbit import FullBook, route_full_books


def route(message: Any) -> Route:
    """A Bithumb v1 websocket message; see journal.feeds._upbit.route_full_books."""
    return route_full_books("bithumb", message)


class BithumbBook(FullBook):
    """The top of each whole book Bithumb sends; levels of size 0 are left out."""

    EXCHANGE = "bithumb"
