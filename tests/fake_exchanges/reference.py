"""The books a correct client may publish, rebuilt from what a fake sent, by the venues'
documented rules alone, and the check of a journal against them.

Independent on purpose: this module reads only the frames and REST bodies the fake
recorded (as a client would have received them), parses them itself, and applies
each venue's rules as its documentation states them (cited in the fakes' modules).
It imports nothing from ``journal.feeds`` or ``journal.collect`` and nothing of the
fakes' own book code.

``rebuild(record, depth)`` returns every state a client following the rules can
vouch for: per connection, from each whole book it could sync to (a Binance REST
snapshot taken while the connection was open, a Bybit ``snapshot`` message, an Upbit
or Bithumb book), then after each update that the rules let it apply, until a gap
ends the chain (the client must resync). A Binance chain may go on into a later
connection when that connection's first diff links to it by the rules (nothing was
missed in between, so the book is still sound).

``check(books, states, ...)`` says what is wrong with a journal's books: a book at an
update id no chain reaches (published while unsynced), a book that differs from the
rebuild at its id, books out of order, a timestamp that is not the message's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Level = tuple[float, float]


@dataclass(frozen=True)
class BookState:
    """One book a client may publish: ``depth`` best levels a side, as the journal
    stores them (float price and quantity), with the ids and times of the message
    that made it."""

    symbol: str
    version: int
    ids: frozenset[int]
    timestamps: frozenset[int]
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    connection: int
    rest: bool = False
    """A Binance REST snapshot (a book no stream message made)."""


@dataclass(frozen=True)
class JournalBook:
    """A book as read from the journal (see tests.test_collect_faults.read_books)."""

    exchange: str
    symbol: str
    timestamp: int
    sequence: int
    local_ns: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


class _Book:
    """A book by absolute quantities: price text -> quantity text (0 removes)."""

    def __init__(self, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]) -> None:
        self.bids: dict[Decimal, str] = {}
        self.asks: dict[Decimal, str] = {}
        self.update(bids, asks)

    def update(self, bids: Iterable[Sequence[Any]], asks: Iterable[Sequence[Any]]) -> None:
        for levels, changes in ((self.bids, bids), (self.asks, asks)):
            for price, quantity in changes:
                if Decimal(str(quantity)) == 0:
                    levels.pop(Decimal(str(price)), None)
                else:
                    levels[Decimal(str(price))] = str(quantity)

    def copy(self) -> _Book:
        book = _Book((), ())
        book.bids, book.asks = dict(self.bids), dict(self.asks)
        return book

    def top(self, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        bids = sorted(self.bids, reverse=True)[:depth]
        asks = sorted(self.asks)[:depth]
        return (
            tuple((float(p), float(self.bids[p])) for p in bids),
            tuple((float(p), float(self.asks[p])) for p in asks),
        )


def _crossed(bids: tuple[Level, ...], asks: tuple[Level, ...]) -> bool:
    return bool(bids and asks and bids[0][0] >= asks[0][0])


def _frames(connection: Any) -> list[tuple[int, Any]]:
    """(version, decoded JSON) of each book-data frame the connection was sent."""
    frames = []
    for sent in connection.sent:
        if sent.kind != "data":
            continue
        raw = sent.raw.decode() if isinstance(sent.raw, bytes) else sent.raw
        frames.append((sent.version or 0, json.loads(raw)))
    return frames


def rebuild(record: Any, depth: int) -> list[BookState]:
    """Every book a correct client of ``record``'s venue may publish, ``depth`` a side."""
    if record.venue in ("binance", "binance-futures"):
        return _binance(record, depth, futures=record.venue == "binance-futures")
    if record.venue in ("bybit", "bybit-futures"):
        return _bybit(record, depth)
    if record.venue in ("upbit", "bithumb"):
        return _full_books(record, depth)
    raise ValueError(f"no reference rules for venue {record.venue!r}")


# -- Binance ------------------------------------------------------------------------------


def _binance(record: Any, depth: int, futures: bool) -> list[BookState]:
    """Spot: drop diffs with ``u <= lastUpdateId``; the first applied has ``U <=
    lastUpdateId + 1 <= u``; then a diff with ``u`` below the book's id is ignored, one
    with ``U`` above the book's id + 1 is a gap. Futures: drop ``u < lastUpdateId``;
    the first has ``U <= lastUpdateId <= u``; then each ``pu`` is the previous ``u``
    (a diff at or below the book's id is a replay, ignored)."""
    diffs: dict[tuple[int, str], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for connection in record.connections:
        for version, frame in _frames(connection):
            data = frame.get("data", frame) if isinstance(frame, dict) else None
            if isinstance(data, dict) and data.get("e") == "depthUpdate":
                diffs[(connection.index, data["s"])].append((version, data))
    states: list[BookState] = []
    for call in record.rest:
        if call.status != 200:
            continue
        symbol = call.query.get("symbol", "")
        body = json.loads(call.body)
        for connection in record.connections:
            if connection.opened_ns <= call.ns and (
                connection.closed_ns is None or call.ns <= connection.closed_ns
            ):
                book = _Book(body["bids"], body["asks"])
                later = [
                    c.index
                    for c in record.connections
                    if c.index > connection.index and diffs[(c.index, symbol)]
                ]
                indices = [connection.index, *later]
                chain = _binance_chain(
                    symbol,
                    book.copy(),
                    body["lastUpdateId"],
                    [diffs[(index, symbol)] for index in indices],
                    indices,
                    depth,
                    futures,
                )
                bids, asks = book.top(depth)
                if chain and not _crossed(bids, asks):  # once a diff showed it reaches
                    # the stream, the snapshot itself
                    stamps = frozenset({body["E"], body["T"]} if futures else ())
                    ids = frozenset({body["lastUpdateId"]})
                    version = chain[0].version - 1
                    states.append(
                        BookState(symbol, version, ids, stamps, bids, asks, connection.index, True)
                    )
                states += chain
    return states


def _binance_chain(
    symbol: str,
    book: _Book,
    last_update_id: int,
    connections: list[list[tuple[int, dict[str, Any]]]],
    indices: list[int],
    depth: int,
    futures: bool,
) -> list[BookState]:
    states: list[BookState] = []
    book_id = last_update_id
    synced = False  # the first diff after the snapshot is not applied yet
    for number, (index, events) in enumerate(zip(indices, connections, strict=True)):
        linked = number == 0
        for version, diff in events:
            first, final = diff["U"], diff["u"]
            if not synced:
                if (final < book_id) if futures else (final <= book_id):
                    continue  # older than the snapshot
                target = book_id if futures else book_id + 1
                if not first <= target <= final:
                    return states  # the snapshot does not reach this stream: fetch again
                synced = linked = True
            elif final <= book_id:
                continue  # a replay of what the book holds (a duplicate), not a gap
            elif not linked:
                # A later connection: it continues the book only if nothing was missed.
                ok = diff["pu"] == book_id if futures else first <= book_id + 1
                if not ok:
                    return states
                linked = True
            elif (diff["pu"] != book_id) if futures else (first > book_id + 1):
                return states  # a gap: the book must be rebuilt from a new snapshot
            book.update(diff["b"], diff["a"])
            book_id = final
            bids, asks = book.top(depth)
            if _crossed(bids, asks):
                return states
            stamps = {diff["E"], diff["T"]} if futures else {diff["E"]}
            states.append(
                BookState(symbol, version, frozenset({final}), frozenset(stamps), bids, asks, index)
            )
        if not linked:
            return states  # this later connection never carried the symbol on
    return states


# -- Bybit ----------------------------------------------------------------------------------


def _bybit(record: Any, depth: int) -> list[BookState]:
    """A ``snapshot`` (on subscribing, or ``u`` = 1 after a restart) resets the book;
    a ``delta`` applies size 0 as a removal; ``u`` counts one per message of a topic,
    so a delta with ``u`` at or below the book's is a replay and one above it + 1 a gap
    (no book until the next snapshot)."""
    states: list[BookState] = []
    for connection in record.connections:
        books: dict[str, tuple[_Book, int] | None] = {}
        for version, frame in _frames(connection):
            topic = frame.get("topic", "") if isinstance(frame, dict) else ""
            if not topic.startswith("orderbook."):
                continue
            data = frame["data"]
            update_id = data["u"]
            current = books.get(topic)
            if frame["type"] == "snapshot":
                book = _Book(data["b"], data["a"])
            elif frame["type"] == "delta" and current is not None:
                book, book_id = current
                if update_id <= book_id:
                    continue
                if update_id != book_id + 1:
                    books[topic] = None
                    continue
                book.update(data["b"], data["a"])
            else:
                continue
            books[topic] = (book, update_id)
            bids, asks = book.top(depth)
            if _crossed(bids, asks):
                books[topic] = None
                continue
            states.append(
                BookState(
                    data["s"],
                    version,
                    frozenset({update_id, data["seq"]}),
                    frozenset({frame["ts"], frame.get("cts", frame["ts"])}),
                    bids,
                    asks,
                    connection.index,
                )
            )
    return states


# -- Upbit, Bithumb ---------------------------------------------------------------------------


def _full_books(record: Any, depth: int) -> list[BookState]:
    """Every orderbook message is the whole book: ``orderbook_units`` (``obu``) pair
    the i-th ask with the i-th bid, best first."""
    states: list[BookState] = []
    for connection in record.connections:
        for version, frame in _frames(connection):
            for book in frame if isinstance(frame, list) else [frame]:
                kind = book.get("type", book.get("ty"))
                if kind != "orderbook":
                    continue
                units = book.get("orderbook_units", book.get("obu", []))
                bids = tuple(
                    (float(u.get("bid_price", u.get("bp"))), float(u.get("bid_size", u.get("bs"))))
                    for u in units
                )[:depth]
                asks = tuple(
                    (float(u.get("ask_price", u.get("ap"))), float(u.get("ask_size", u.get("as"))))
                    for u in units
                )[:depth]
                if _crossed(bids, asks):
                    continue
                stamp = book.get("timestamp", book.get("tms"))
                states.append(
                    BookState(
                        book.get("code", book.get("cd")),
                        version,
                        frozenset(),
                        frozenset({stamp}),
                        bids,
                        asks,
                        connection.index,
                    )
                )
    return states


# -- the check ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What ``check`` found: ``problems`` (empty when the journal is right), how many
    books it matched, and the rebuild's states per symbol (for messages)."""

    problems: list[str]
    matched: int
    timestamp_problems: list[str]


def _describe(bids: tuple[Level, ...], asks: tuple[Level, ...]) -> str:
    best_bid = bids[0] if bids else None
    best_ask = asks[0] if asks else None
    return f"{len(bids)}x{len(asks)} levels, best bid {best_bid}, best ask {best_ask}"


def check(
    books: Sequence[JournalBook],
    states: Sequence[BookState],
    symbols: dict[str, str],
    *,
    by_id: bool,
) -> Verdict:
    """Each journaled book must equal a state of the rebuild, in order.

    ``symbols`` maps the venue's symbol to the journal's (``NKNUSDT`` -> ``NKN-USDT``).
    ``by_id``: the venue has update ids (Binance ``u``, Bybit ``u`` or ``seq``): the
    journal's ``sequence`` names the state, so a book at an id that no chain reaches
    is one published while unsynced, even when its levels happen to look right.
    Without ids (Upbit, Bithumb) a book must equal a state at or after the previous
    one's. Timestamps that are not the message's are listed apart.
    """
    by_symbol: dict[str, list[BookState]] = defaultdict(list)
    for state in states:
        by_symbol[symbols.get(state.symbol, state.symbol)].append(state)
    for listed in by_symbol.values():
        listed.sort(key=lambda s: s.version)
    problems: list[str] = []
    stamps: list[str] = []
    matched = 0
    last_version: dict[str, int] = defaultdict(lambda: -1)
    index: dict[str, dict[int, list[BookState]]] = {}
    for symbol, listed in by_symbol.items():
        index[symbol] = defaultdict(list)
        for state in listed:
            for key in state.ids:
                index[symbol][key].append(state)
    for number, book in enumerate(books):
        where = (
            f"book {number} ({book.exchange} {book.symbol} seq={book.sequence} ts={book.timestamp})"
        )
        if book.symbol not in by_symbol:
            problems.append(f"{where}: no rebuild has this symbol (rebuilt: {sorted(by_symbol)})")
            continue
        if by_id:
            candidates = index[book.symbol].get(book.sequence, [])
            if not candidates:
                problems.append(
                    f"{where}: no documented rebuild reaches update id {book.sequence}: "
                    "published while unsynced (after a gap, before its resync)?"
                )
                continue
        else:
            candidates = by_symbol[book.symbol]
        equal = [s for s in candidates if s.bids == book.bids and s.asks == book.asks]
        # Equal books at one id (a Binance snapshot and the diff that ends at its id):
        # the one whose message carries the book's timestamp, if there is one.
        equal.sort(key=lambda s: book.timestamp not in s.timestamps)
        if not equal:
            nearest = candidates[0] if by_id else None
            detail = (
                f"; the rebuild at that id has {_describe(nearest.bids, nearest.asks)}"
                if nearest is not None
                else ""
            )
            problems.append(
                f"{where}: {_describe(book.bids, book.asks)} equals no rebuilt book{detail}"
            )
            continue
        later = [s for s in equal if s.version >= last_version[book.symbol]]
        if not later:
            problems.append(
                f"{where}: equals only books older than the previous one journaled (out of order)"
            )
            continue
        state = later[0]
        last_version[book.symbol] = state.version
        matched += 1
        if state.timestamps and book.timestamp not in state.timestamps:
            stamps.append(
                f"{where}: timestamp {book.timestamp} is not the message's "
                f"{sorted(state.timestamps)}"
            )
    return Verdict(problems, matched, stamps)
