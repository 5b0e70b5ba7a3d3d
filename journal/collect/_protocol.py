"""What a venue's websocket protocol is, as the connection needs it: where to connect,
how to subscribe, how to keep the connection alive, what an incoming message is, and
how to get a book back after a gap. One subclass per protocol family (Binance, Bybit
v5, Upbit and Bithumb); journal.collect._venues pairs each venue with its protocol,
endpoints and limits.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson

from journal.feeds import MessageError
from journal.feeds._route import Route


class Kind(enum.Enum):
    """What an incoming message is, to the connection."""

    BOOK = "book"  # order-book data of one stream: its builder takes the payload
    ACK = "ack"  # a subscription (or unsubscription) request accepted
    REFUSED = "refused"  # a request refused, or an error the venue reports
    PONG = "pong"  # the answer to our application-level ping, or a status message
    OTHER = "other"  # a message of a type we did not ask for: counted, not used


class Incoming(NamedTuple):
    kind: Kind
    symbol: Any  # BOOK: the venue's spelling (BTCUSDT, KRW-BTC); ACK, REFUSED: request id
    payload: Any  # what the builder reads (BOOK), or the text to log (REFUSED, OTHER)


class Protocol(ABC):
    """A venue's protocol; stateless but for the request ids it numbers."""

    ping_interval_s: float | None = None
    """Send ``ping()`` this often; None: the venue pings us (websocket ping frames,
    answered by the transport) and needs no application-level ping."""
    acknowledges: bool = True
    """True: every subscription request is answered (ACK or REFUSED); False: the first
    book is the only sign that a subscription was taken (Upbit, Bithumb)."""

    def __init__(self) -> None:
        self._request_id = 0

    def next_id(self) -> int:
        self._request_id += 1
        return self._request_id

    @abstractmethod
    def stream_url(self, base: str, symbols: Sequence[str]) -> str:
        """The websocket URL for ``symbols`` (venue spelling), from the service's base
        (``wss://stream.binance.com:9443`` or a test's ``ws://127.0.0.1:PORT``)."""

    def alternative_url(self, failed: str, symbols: Sequence[str]) -> str | None:
        """Another documented endpoint to try after ``failed`` was answered 404 (a
        gateway that serves only one of the venue's forms); None: there is none."""
        return None

    @abstractmethod
    def subscribe(self, symbols: Sequence[str], depth: int) -> list[tuple[int | None, str]]:
        """The messages to send once connected: ``(request id or None, text)``."""

    def resubscribe(self, symbol: str, depth: int) -> list[tuple[int | None, str]]:
        """The messages that make the venue send ``symbol``'s book again (Bybit); empty
        where a resync is a REST snapshot (Binance) or needs nothing (full books)."""
        return []

    def ping(self) -> str | None:
        """The application-level ping, sent every ``ping_interval_s``."""
        return None

    @abstractmethod
    def classify(self, message: Any) -> Incoming:
        """What a decoded JSON message is."""

    def snapshot_url(self, base: str, symbol: str) -> str | None:
        """The REST depth snapshot of ``symbol``; None where the protocol needs none."""
        return None


def incoming(route: Callable[[Any], Route], kinds: Mapping[str, Kind], message: Any) -> Incoming:
    """What ``message`` is to the connection, read by the venue's ``route`` (journal.feeds:
    the one place that knows the venue's message shapes) and its kinds mapped by
    ``kinds`` (the rest: OTHER). A message ``route`` cannot read is OTHER, counted."""
    try:
        kind, symbol, body = route(message)
    except MessageError:
        return Incoming(Kind.OTHER, None, message)
    mapped = kinds.get(kind, Kind.OTHER)
    if mapped is Kind.BOOK:
        return Incoming(Kind.BOOK, symbol, body)
    if mapped is Kind.REFUSED:
        return Incoming(Kind.REFUSED, request_id(message), orjson.dumps(message).decode())
    if mapped is Kind.ACK:
        return Incoming(Kind.ACK, request_id(message), message)
    return Incoming(mapped, None, message)


def request_id(message: Any) -> int | None:
    """The request a venue's answer names: Binance's ``id``, Bybit's ``req_id`` (a
    string of digits, as we send it)."""
    value = message.get("id", message.get("req_id")) if isinstance(message, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return None


def join_path(base: str, path: str) -> str:
    """``base`` with ``path`` appended, unless ``base`` already names a path: a test or a
    gateway may give the full URL (``ws://127.0.0.1:9000/ws``) or just the host."""
    parts = urlsplit(base)
    if parts.path not in ("", "/"):
        return base
    return base.rstrip("/") + path


def check_url(text: str, schemes: tuple[str, ...]) -> str:
    """A URL of one of ``schemes`` with a host, or ValueError saying what is wrong."""
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(
            f"{text!r} is not a {'/'.join(schemes)} URL with a host "
            f"(e.g. {schemes[0]}://127.0.0.1:9000)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None
    return text
