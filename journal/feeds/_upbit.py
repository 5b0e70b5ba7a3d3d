"""Upbit books: every ``orderbook`` message (SIMPLE format) is the whole book.

Upbit sends its 15 best levels per side (``obu`` units of ``bp``/``bs`` bid price and
size, ``ap``/``as`` ask price and size) with ``tms``, the exchange time in ms, and no
sequence number: there is no gap to detect, and every message resyncs the book. The
sequence journaled is the count of the stream's order-book messages (1, 2, ...), so a
message that published no book (a crossed one) shows as a gap in the journal.
"""

from __future__ import annotations

from typing import Any

from journal.feeds._book import BookBuilder, PriceLevels, TopOfBook, message_fields
from journal.feeds._errors import MessageError
from journal.feeds._route import Route


def route(message: Any) -> Route:
    """By the SIMPLE format's ``ty``: ``orderbook`` is book data, with the market in ``cd``."""
    if not isinstance(message, dict) or "ty" not in message:
        raise MessageError(
            "upbit: expected a SIMPLE-format message with 'ty' (subscribe with "
            '{"format": "SIMPLE"})'
        )
    if message["ty"] == "orderbook":
        with message_fields("upbit orderbook"):
            return Route("orderbook", str(message["cd"]), message)
    return Route(str(message["ty"]), None, message)


class UpbitBook(BookBuilder):
    """The top of each whole book Upbit sends; levels of size 0 are left out."""

    EXCHANGE = "upbit"

    def on_message(self, message: Any, received_ns: int) -> list[TopOfBook]:
        self.stats.messages += 1
        self.stats.snapshots += 1
        with message_fields("upbit orderbook"):
            units = message["obu"]
            book = PriceLevels(
                [(float(unit["bp"]), float(unit["bs"])) for unit in units],
                [(float(unit["ap"]), float(unit["as"])) for unit in units],
            )
            timestamp_ms = int(message["tms"])
        self._sync(book)
        published = self._publish(timestamp_ms, self.stats.messages, received_ns)
        return [] if published is None else [published]
