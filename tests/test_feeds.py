"""Builders against an independent rebuild of every real capture, and gaps injected.

The reference here reads the capture files without journal.feeds, keeps each book as
a dict of Decimal levels (Bybit: by level id) and sorts it whole after every message:
slow and plain, written apart from the builders' float dicts and heaps.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import journal
from journal.feeds import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BybitLegacyBook,
    CaptureReplay,
    MessageError,
    TopOfBook,
    UpbitBook,
    import_captures,
)
from tests.conftest import CAPTURES

Levels = list[tuple[float, float]]
Expected = tuple[int, int, int, Levels, Levels]  # sequence, timestamp ms, local ns, bids, asks


# -- reading the captures without journal.feeds -----------------------------------------


def received(name: str) -> Iterator[tuple[int, Any]]:
    """(receive time in ns, message) of each received line of a capture."""
    for line in (CAPTURES / name).read_text().splitlines():
        head, separator, text = line.partition(": ")
        if separator and " " not in head:  # not a connection, a sent line or a REST line
            message = ast.literal_eval(text) if text.startswith("b'") else text
            yield int(Decimal(head) * 10**9), json.loads(message)


def rest_snapshots(name: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """Symbol -> (receive time in ns, REST depth body)."""
    snapshots = {}
    for line in (CAPTURES / name).read_text().splitlines():
        if line:
            url, _, response = line.partition(" -> ")
            epoch, _, body = response.partition(": ")
            symbol = re.search(r"symbol=(\w+)", url)
            assert symbol is not None, url
            snapshots[symbol[1]] = (int(Decimal(epoch) * 10**9), json.loads(body))
    return snapshots


def depth_diffs(prefix: str, symbol: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (ns, message["data"])
        for ns, message in received(f"{prefix}.ws.1.0")
        if message["data"].get("e") == "depthUpdate" and message["data"]["s"] == symbol
    ]


# -- the reference books -------------------------------------------------------------------


def best(bids: dict[Decimal, Decimal], asks: dict[Decimal, Decimal]) -> tuple[Levels, Levels]:
    return (
        [(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)[:10]],
        [(float(p), float(q)) for p, q in sorted(asks.items())[:10]],
    )


def set_levels(side: dict[Decimal, Decimal], changes: list[list[str]]) -> None:
    for price, quantity in changes:
        if Decimal(quantity) == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = Decimal(quantity)


class BinanceReference:
    """The book after each diff: the snapshot, then every diff it does not make stale."""

    def __init__(self, snapshot: dict[str, Any], futures: bool) -> None:
        self.bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
        self.snapshot_id = snapshot["lastUpdateId"]
        self.futures = futures
        self.started = False

    def apply(self, diff: dict[str, Any]) -> tuple[Levels, Levels] | None:
        stale = diff["u"] < self.snapshot_id or (not self.futures and diff["u"] == self.snapshot_id)
        if stale and not self.started:
            return None
        self.started = True
        set_levels(self.bids, diff["b"])
        set_levels(self.asks, diff["a"])
        return best(self.bids, self.asks)

    def as_rest_snapshot(self, last_update_id: int) -> dict[str, Any]:
        return {
            "lastUpdateId": last_update_id,
            "bids": [[str(p), str(q)] for p, q in sorted(self.bids.items(), reverse=True)],
            "asks": [[str(p), str(q)] for p, q in sorted(self.asks.items())],
        }


def binance_expected(prefix: str, symbol: str, futures: bool) -> list[Expected]:
    reference = BinanceReference(rest_snapshots(f"{prefix}.http.0.0")[symbol][1], futures)
    expected = []
    for ns, diff in depth_diffs(prefix, symbol):
        top = reference.apply(diff)
        if top is not None:
            expected.append((diff["u"], diff["E"], ns, *top))
    return expected


class BybitReference:
    """Levels by id, as (side, price, size); each book sorted from them."""

    def __init__(self, snapshot: list[dict[str, Any]]) -> None:
        self.levels = {e["id"]: (e["side"], Decimal(e["price"]), e["size"]) for e in snapshot}

    def apply(self, delta: dict[str, Any]) -> None:
        for entry in delta["delete"]:
            del self.levels[entry["id"]]
        for entry in delta["update"]:
            side, price, _ = self.levels[entry["id"]]
            self.levels[entry["id"]] = (side, price, entry["size"])
        for entry in delta["insert"]:
            assert entry["id"] not in self.levels
            self.levels[entry["id"]] = (entry["side"], Decimal(entry["price"]), entry["size"])

    def top(self) -> tuple[Levels, Levels]:
        def side(name: str) -> dict[Decimal, Decimal]:
            return {price: Decimal(size) for s, price, size in self.levels.values() if s == name}

        return best(side("Buy"), side("Sell"))

    def as_snapshot_message(self, topic: str, cross_seq: int, timestamp_e6: int) -> dict[str, Any]:
        data = [
            {"price": str(price), "id": level_id, "side": side, "size": size}
            for level_id, (side, price, size) in self.levels.items()
        ]
        return {
            "topic": topic,
            "type": "snapshot",
            "data": data,
            "cross_seq": cross_seq,
            "timestamp_e6": timestamp_e6,
        }


def bybit_messages(symbol: str) -> list[tuple[int, dict[str, Any]]]:
    return [
        (ns, message)
        for ns, message in received("BYBIT.ws.26.0")
        if message.get("topic") == f"orderBookL2_25.{symbol}"
    ]


def bybit_expected(symbol: str) -> list[Expected]:
    (first_ns, snapshot), *deltas = bybit_messages(symbol)
    assert snapshot["type"] == "snapshot" and all(m["type"] == "delta" for _, m in deltas)
    reference = BybitReference(snapshot["data"])
    expected = []
    for ns, message in [(first_ns, snapshot), *deltas]:
        if message["type"] == "delta":
            reference.apply(message["data"])
        top = reference.top()
        expected.append((message["cross_seq"], message["timestamp_e6"] // 1000, ns, *top))
    return expected


def upbit_expected(code: str) -> list[Expected]:
    books = [
        (ns, message)
        for ns, message in received("UPBIT.ws.62.0")
        if message["ty"] == "orderbook" and message["cd"] == code
    ]
    return [
        (
            count,
            message["tms"],
            ns,
            sorted(((u["bp"], u["bs"]) for u in message["obu"] if u["bs"]), reverse=True)[:10],
            sorted((u["ap"], u["as"]) for u in message["obu"] if u["as"])[:10],
        )
        for count, (ns, message) in enumerate(books, start=1)
    ]


def as_expected(book: TopOfBook) -> Expected:
    return (book.sequence, book.timestamp_ms, book.local_timestamp_ns, book.bids, book.asks)


def replayed(*names: str) -> tuple[dict[tuple[str, str], list[Expected]], CaptureReplay]:
    replay = CaptureReplay([CAPTURES / name for name in names])
    books: dict[tuple[str, str], list[Expected]] = defaultdict(list)
    for _, book in replay.books():
        books[book.exchange, book.symbol].append(as_expected(book))
    return books, replay


# -- every real stream, book by book ---------------------------------------------------------

BINANCE_STREAMS = [
    ("BINANCE", "NKNUSDT", "binance", "NKN-USDT", 149),
    ("BINANCE", "BLZETH", "binance", "BLZ-ETH", 9),
    ("BINANCE", "LRCBTC", "binance", "LRC-BTC", 13),
    ("BINANCE", "RUNEEUR", "binance", "RUNE-EUR", 1),
    ("BINANCE_FUTURES", "SUSHIUSDT", "binance-futures", "SUSHI-USDT", 252),
    ("BINANCE_FUTURES", "AKROUSDT", "binance-futures", "AKRO-USDT", 188),
    ("BINANCE_FUTURES", "KEEPUSDT", "binance-futures", "KEEP-USDT", 132),
    ("BINANCE_FUTURES", "CTKUSDT", "binance-futures", "CTK-USDT", 180),
]


@pytest.mark.parametrize(("prefix", "venue_symbol", "exchange", "symbol", "count"), BINANCE_STREAMS)
def test_binance_books_equal_the_reference_rebuild(
    prefix: str, venue_symbol: str, exchange: str, symbol: str, count: int
) -> None:
    books, replay = replayed(f"{prefix}.ws.1.0", f"{prefix}.http.0.0")
    expected = binance_expected(prefix, venue_symbol, futures=prefix == "BINANCE_FUTURES")
    assert len(expected) == count
    assert books[exchange, symbol] == expected
    stats = next(s for s in replay.streams if (s.exchange, s.symbol) == (exchange, symbol))
    # The real streams have no gap: every diff follows the one before (U = u + 1 on
    # spot, pu = u on futures), and the first diff kept bridges the REST snapshot.
    assert (stats.gaps, stats.crossed, stats.resyncs, stats.synced) == (0, 0, 0, True)
    assert stats.messages == stats.applied + stats.stale + stats.unsynced
    assert stats.unsynced == 0 and stats.snapshots == 1


@pytest.mark.parametrize(
    ("venue_symbol", "symbol", "count"), [("BTCUSD", "BTC-USD", 507), ("EOSUSD", "EOS-USD", 511)]
)
def test_bybit_books_equal_the_reference_rebuild(
    venue_symbol: str, symbol: str, count: int
) -> None:
    books, replay = replayed("BYBIT.ws.26.0")
    expected = bybit_expected(venue_symbol)
    assert len(expected) == count
    assert books["bybit", symbol] == expected
    assert all(stats.gaps == 0 and stats.synced for stats in replay.streams)


UPBIT_STREAMS = [
    ("KRW-LAMB", "LAMB-KRW", 87),
    ("KRW-WAVES", "WAVES-KRW", 26),
    ("BTC-XTZ", "XTZ-BTC", 16),
    ("BTC-ITAM", "ITAM-BTC", 8),
    ("BTC-PAX", "PAX-BTC", 8),
]


@pytest.mark.parametrize(("code", "symbol", "count"), UPBIT_STREAMS)
def test_upbit_books_are_the_top_10_of_each_whole_book(code: str, symbol: str, count: int) -> None:
    books, _ = replayed("UPBIT.ws.62.0")
    expected = upbit_expected(code)
    assert len(expected) == count
    assert books["upbit", symbol] == expected
    assert all(len(bids) == len(asks) == 10 for *_, bids, asks in expected)


def test_non_orderbook_messages_are_counted_by_type() -> None:
    _, replay = replayed("BINANCE.ws.1.0", "BINANCE.http.0.0", "BYBIT.ws.26.0", "UPBIT.ws.62.0")
    assert dict(replay.ignored) == {
        ("binance", "aggTrade"): 2,
        ("binance", "bookTicker"): 84,
        ("binance", "kline_1m"): 2,
        ("bybit", "response"): 4,
        ("bybit", "trade"): 76,
        ("upbit", "trade"): 304,
    }


# -- gaps and resyncs, injected into the real streams ---------------------------------------

BINANCE_GAP_CASES = [
    ("BINANCE", "NKNUSDT", BinanceSpotBook, False),
    ("BINANCE_FUTURES", "SUSHIUSDT", BinanceFuturesBook, True),
]


@pytest.mark.parametrize(("prefix", "symbol", "builder_class", "futures"), BINANCE_GAP_CASES)
def test_a_lost_binance_diff_stops_the_books_until_a_later_snapshot(
    prefix: str, symbol: str, builder_class: type[BinanceSpotBook], futures: bool
) -> None:
    snapshot_ns, snapshot = rest_snapshots(f"{prefix}.http.0.0")[symbol]
    diffs = depth_diffs(prefix, symbol)
    lost, resync_at = 60, 90
    builder = builder_class(symbol)
    before = builder.on_snapshot(snapshot, snapshot_ns)
    for index, (ns, diff) in enumerate(diffs[: resync_at + 1]):
        if index != lost:
            before += builder.on_message(diff, ns)
    assert builder.stats.gaps == 1 and not builder.synced
    assert before[-1].sequence == diffs[lost - 1][1]["u"], "a book after the gap"

    # The exchange's book after diff `resync_at`, as its REST depth call gives it.
    reference = BinanceReference(snapshot, futures)
    for _, diff in diffs[: resync_at + 1]:
        reference.apply(diff)
    resync_ns = diffs[resync_at][0] + 1
    after = builder.on_snapshot(reference.as_rest_snapshot(diffs[resync_at][1]["u"]), resync_ns)
    for ns, diff in diffs[resync_at + 1 :]:
        after += builder.on_message(diff, ns)

    assert (builder.stats.gaps, builder.stats.resyncs, builder.synced) == (1, 1, True)
    # A futures snapshot's lastUpdateId is the u of a diff, and that diff bridges it
    # (U <= lastUpdateId <= u): applied again, it changes nothing and is published at
    # the snapshot's time. On spot the first diff after it is the next one.
    first = resync_at if futures else resync_at + 1
    by_sequence = {book[0]: book for book in binance_expected(prefix, symbol, futures)}
    want = [by_sequence[diff["u"]] for _, diff in diffs[first:]]
    if futures:
        want[0] = (*want[0][:2], resync_ns, *want[0][3:])
    assert [as_expected(book) for book in after] == want


@pytest.mark.parametrize(("prefix", "symbol", "builder_class", "futures"), BINANCE_GAP_CASES)
def test_without_a_later_snapshot_the_stream_stays_unsynced(
    prefix: str, symbol: str, builder_class: type[BinanceSpotBook], futures: bool
) -> None:
    snapshot_ns, snapshot = rest_snapshots(f"{prefix}.http.0.0")[symbol]
    diffs = depth_diffs(prefix, symbol)
    lost = 60
    builder = builder_class(symbol)
    books = builder.on_snapshot(snapshot, snapshot_ns)
    for index, (ns, diff) in enumerate(diffs):
        if index != lost:
            books += builder.on_message(diff, ns)
    assert books[-1].sequence == diffs[lost - 1][1]["u"]
    stats = builder.stats
    assert (stats.gaps, stats.resyncs, stats.synced) == (1, 0, False)
    assert stats.unsynced == len(diffs) - lost - 1
    assert stats.messages == stats.applied + stats.stale + stats.unsynced


def test_a_gap_in_a_capture_file_is_reported_and_its_stream_ends_unsynced(
    tmp_path: Path, journal_dir: Path
) -> None:
    lines = (CAPTURES / "BINANCE.ws.1.0").read_text().splitlines(keepends=True)
    nkn = [i for i, line in enumerate(lines) if '"stream":"nknusdt@depth@100ms"' in line]
    lost_u = json.loads(lines[nkn[50]].partition(": ")[2])["data"]["u"]
    del lines[nkn[50]]
    (tmp_path / "BINANCE.ws.1.0").write_text("".join(lines))
    (tmp_path / "BINANCE.http.0.0").symlink_to(CAPTURES / "BINANCE.http.0.0")

    report = import_captures(
        [tmp_path / "BINANCE.ws.1.0", tmp_path / "BINANCE.http.0.0"], journal_dir
    )
    stats = {s.symbol: s for s in report.streams}
    assert (stats["NKN-USDT"].gaps, stats["NKN-USDT"].synced) == (1, False)
    assert stats["NKN-USDT"].books == 49
    assert all(s.synced and not s.gaps for name, s in stats.items() if name != "NKN-USDT")
    table = report.table()
    assert "ended unsynced" in table and "binance NKN-USDT" in table

    with journal.Reader(journal_dir) as reader:
        nkn_books = [r.sequence for r in reader.available() if r.symbol == "NKN-USDT"]
    assert len(nkn_books) == 49 and max(nkn_books) < lost_u


def test_a_crossed_binance_book_is_counted_not_published_and_resynced() -> None:
    snapshot_ns, snapshot = rest_snapshots("BINANCE.http.0.0")["NKNUSDT"]
    diffs = depth_diffs("BINANCE", "NKNUSDT")
    builder = BinanceSpotBook("NKN-USDT")
    builder.on_snapshot(snapshot, snapshot_ns)
    books = [book for ns, diff in diffs[:20] for book in builder.on_message(diff, ns)]
    best_ask = books[-1].asks[0][0]
    ns, diff = diffs[20]
    crossing = {**diff, "b": [*diff["b"], [f"{best_ask * 1.5:.8f}", "1.0"]]}
    assert builder.on_message(crossing, ns) == []
    assert (builder.stats.crossed, builder.synced) == (1, False)
    assert [book for ns, diff in diffs[21:30] for book in builder.on_message(diff, ns)] == []

    reference = BinanceReference(snapshot, futures=False)
    for _, diff in diffs[:30]:
        reference.apply(diff)
    builder.on_snapshot(reference.as_rest_snapshot(diffs[29][1]["u"]), diffs[29][0])
    ns, diff = diffs[30]
    (book,) = builder.on_message(diff, ns)
    assert (book.bids, book.asks) == reference.apply(diff)
    assert (builder.stats.crossed, builder.stats.resyncs, builder.stats.gaps) == (1, 1, 0)


def test_a_crossed_upbit_book_is_not_published_and_the_next_whole_book_resyncs() -> None:
    books = [(ns, m) for ns, m in received("UPBIT.ws.62.0") if m.get("cd") == "KRW-WAVES"]
    books = [(ns, m) for ns, m in books if m["ty"] == "orderbook"]
    builder = UpbitBook("WAVES-KRW")
    (ns, message), (next_ns, next_message) = books[:2]
    units = [{**message["obu"][0], "bp": message["obu"][0]["ap"]}, *message["obu"][1:]]
    assert builder.on_message({**message, "obu": units}, ns) == []
    assert (builder.stats.crossed, builder.synced) == (1, False)
    (book,) = builder.on_message(next_message, next_ns)
    assert book.sequence == 2  # the crossed message had number 1: the journal shows the gap
    assert (builder.stats.resyncs, builder.stats.books, builder.synced) == (1, 1, True)


def test_a_repeated_bybit_delta_is_a_gap_and_a_new_snapshot_resyncs() -> None:
    messages = bybit_messages("EOSUSD")
    builder = BybitLegacyBook("EOS-USD")
    published = [book for ns, m in messages[:50] for book in builder.on_message(m, ns)]
    assert len(published) == 50
    assert builder.on_message(messages[49][1], messages[49][0]) == []  # cross_seq again
    assert [book for ns, m in messages[50:80] for book in builder.on_message(m, ns)] == []
    assert (builder.stats.gaps, builder.synced) == (1, False)

    reference = BybitReference(messages[0][1]["data"])
    for _, message in messages[1:80]:
        reference.apply(message["data"])
    last = messages[79][1]
    resync = reference.as_snapshot_message(last["topic"], last["cross_seq"], last["timestamp_e6"])
    after = builder.on_message(resync, messages[79][0])
    after += [book for ns, m in messages[80:] for book in builder.on_message(m, ns)]
    assert (builder.stats.resyncs, builder.synced) == (1, True)
    expected = bybit_expected("EOSUSD")
    assert as_expected(after[0]) == expected[79]
    assert [as_expected(book) for book in after[1:]] == expected[80:]


def test_a_lost_bybit_insert_is_a_gap_when_its_level_is_next_touched() -> None:
    messages = bybit_messages("BTCUSD")
    lost, touched = next(
        (i, j)
        for i, (_, m) in enumerate(messages[1:], start=1)
        for inserted in m["data"]["insert"]
        for j, (_, later) in enumerate(messages[i + 1 :], start=i + 1)
        if any(e["id"] == inserted["id"] for e in later["data"]["update"] + later["data"]["delete"])
    )
    builder = BybitLegacyBook("BTC-USD")
    published = []
    for index, (ns, message) in enumerate(messages):
        if index != lost:
            published += builder.on_message(message, ns)
    assert builder.stats.gaps == 1 and not builder.synced
    assert published[-1].sequence < messages[touched][1]["cross_seq"]


def test_a_bybit_delta_bad_halfway_drops_the_book_until_the_next_snapshot() -> None:
    """The delete of a delta is applied before its bad insert is read: the book left
    behind is not the exchange's, so nothing more is published from it."""
    messages = bybit_messages("EOSUSD")
    builder = BybitLegacyBook("EOS-USD")
    assert builder.on_message(messages[0][1], messages[0][0])
    a_bid = messages[0][1]["data"][0]
    bad = {
        **messages[1][1],
        "data": {
            "delete": [{"id": a_bid["id"], "side": "Buy", "symbol": "EOSUSD"}],
            "update": [],
            "insert": [{"id": 1, "side": "Sell", "price": "9.000", "symbol": "EOSUSD"}],
        },
    }
    with pytest.raises(MessageError, match="size"):
        builder.on_message(bad, messages[1][0])
    assert (builder.stats.gaps, builder.synced) == (1, False)
    assert [book for ns, m in messages[2:20] for book in builder.on_message(m, ns)] == []
