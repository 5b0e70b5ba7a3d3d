"""Each venue's sync rules on small synthetic message lists: duplicates ignored and not
counted as gaps, a gap asks for a resync at once, a stale snapshot is refetched, the
Bybit restart case, crossed books, both Upbit formats, Bithumb, reset, depth."""

from __future__ import annotations

import random
from typing import Any

import pytest

from journal.feeds import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BithumbBook,
    BookBuilder,
    BybitBook,
    BybitLinearBook,
    BybitSpotBook,
    MessageError,
    StreamStats,
    TopOfBook,
    UpbitBook,
    _binance,
    _bithumb,
    _bybit,
    _upbit,
)

NS = 1_700_000_000_000_000_000


def check_counts(stats: StreamStats) -> None:
    assert stats.messages == stats.applied + stats.stale + stats.unsynced
    assert stats.applied == stats.books + stats.crossed
    assert stats.unsynced >= 0


# -- Binance spot ------------------------------------------------------------------


def diff(first: int, last: int, bids: Any = (), asks: Any = (), pu: int | None = None) -> dict:
    message: dict[str, Any] = {
        "e": "depthUpdate",
        "E": 1_000 + last,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "b": [[str(p), str(q)] for p, q in bids],
        "a": [[str(p), str(q)] for p, q in asks],
    }
    if pu is not None:
        message["pu"] = pu
    return message


def snapshot(last_update_id: int) -> dict:
    return {
        "lastUpdateId": last_update_id,
        "bids": [["100.0", "1.0"], ["99.0", "2.0"]],
        "asks": [["101.0", "1.0"], ["102.0", "2.0"]],
    }


def feed(builder: BookBuilder, *messages: dict) -> list[TopOfBook]:
    books: list[TopOfBook] = []
    for message in messages:
        books += builder.on_message(message, NS)
    check_counts(builder.stats)
    return books


def test_binance_spot_needs_a_snapshot_from_the_start_and_buffers_diffs_until_it() -> None:
    book = BinanceSpotBook("BTC-USDT")
    assert book.needs_resync and not book.synced
    assert feed(book, diff(8, 10, bids=[(100, 5)]), diff(11, 12, asks=[(101, 3)])) == []
    books = book.on_snapshot(snapshot(10), NS + 1)
    # u=10 <= lastUpdateId: stale; U=11 bridges: applied, stamped with the snapshot's time
    assert [b.sequence for b in books] == [12]
    assert books[0].asks[0] == (101.0, 3.0) and books[0].local_timestamp_ns == NS + 1
    assert books[0].bids[0] == (100.0, 1.0)  # the stale diff was not applied
    assert (book.stats.stale, book.stats.books, book.stats.gaps) == (1, 1, 0)
    assert book.synced and not book.needs_resync


def test_binance_spot_snapshot_older_than_the_first_diff_can_bridge_is_refetched() -> None:
    book = BinanceSpotBook("BTC-USDT")
    feed(book, diff(20, 22), diff(23, 25))
    assert book.on_snapshot(snapshot(18), NS) == []  # 19 missing: U=20 > 18 + 1
    assert book.needs_resync and not book.synced
    assert book.stats.stale_snapshots == 1 and book.stats.gaps == 0
    # The diffs still wait: a newer snapshot syncs on them.
    books = book.on_snapshot(snapshot(22), NS)
    assert [b.sequence for b in books] == [25]
    assert not book.needs_resync and book.stats.stale == 1


def test_binance_spot_snapshot_exactly_before_the_first_diff_is_used() -> None:
    book = BinanceSpotBook("BTC-USDT")
    feed(book, diff(20, 22))
    assert [b.sequence for b in book.on_snapshot(snapshot(19), NS)] == [22]


def test_binance_spot_snapshot_before_any_diff_waits_for_the_bridge() -> None:
    book = BinanceSpotBook("BTC-USDT")
    assert book.on_snapshot(snapshot(10), NS) == []
    assert not book.needs_resync and not book.synced
    assert feed(book, diff(5, 10)) == []  # stale
    assert [b.sequence for b in feed(book, diff(9, 13), diff(14, 14))] == [13, 14]
    assert book.stats.stale == 1


def test_binance_spot_duplicates_and_replays_are_stale_not_gaps() -> None:
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    feed(book, diff(11, 12), diff(13, 15))
    assert feed(book, diff(13, 15), diff(11, 12), diff(14, 15)) == []  # u <= book id 15
    assert (book.stats.stale, book.stats.gaps) == (3, 0)
    assert book.synced and not book.needs_resync
    assert [b.sequence for b in feed(book, diff(16, 16))] == [16]


def test_binance_spot_overlapping_diff_is_applied() -> None:
    """U <= book id + 1 < u: the update procedure applies it (sizes are absolute)."""
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    feed(book, diff(11, 12))
    assert [b.sequence for b in feed(book, diff(12, 14, bids=[(100.5, 1)]))] == [14]


def test_binance_spot_gap_asks_for_a_snapshot_at_once_and_resyncs_on_it() -> None:
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    feed(book, diff(11, 12))
    assert feed(book, diff(14, 15)) == []  # 13 lost
    assert book.needs_resync and not book.synced and book.stats.gaps == 1
    assert feed(book, diff(16, 17)) == []  # waits for the snapshot
    books = book.on_snapshot(snapshot(15), NS)
    assert [b.sequence for b in books] == [17]
    assert book.stats.resyncs == 1 and book.stats.stale == 1 and not book.needs_resync
    assert book.on_snapshot(snapshot(30), NS) == []  # synced: not used
    assert book.stats.snapshots == 3


def test_binance_spot_crossed_book_is_dropped_and_resynced() -> None:
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    assert feed(book, diff(11, 11, bids=[(101.5, 1)])) == []
    assert book.stats.crossed == 1 and book.needs_resync and not book.synced


def test_binance_impossible_diff_drops_the_book() -> None:
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    feed(book, diff(11, 11))
    bad = diff(12, 12)
    bad["b"] = [["100.0"]]  # no size
    with pytest.raises(MessageError, match="binance BTC-USDT depthUpdate"):
        book.on_message(bad, NS)
    assert book.needs_resync and book.stats.gaps == 1
    negative = diff(13, 13, asks=[(101, -1)])
    with pytest.raises(MessageError, match="impossible level"):
        book.on_message(negative, NS)
    check_counts(book.stats)


def test_binance_reset_drops_everything_and_asks_for_a_snapshot() -> None:
    book = BinanceSpotBook("BTC-USDT")
    book.on_snapshot(snapshot(10), NS)
    feed(book, diff(11, 11))
    feed(book, diff(12, 12))
    book.reset()
    assert book.needs_resync and not book.synced
    feed(book, diff(40, 41))
    assert [b.sequence for b in book.on_snapshot(snapshot(40), NS)] == [41]
    assert book.stats.resyncs == 1


def test_binance_futures_pu_chaining_and_stale_replays() -> None:
    book = BinanceFuturesBook("BTC-USDT")
    feed(book, diff(5, 9, pu=4), diff(10, 12, pu=9))
    # u=9 < 10 dropped; U=10 <= 10 <= 12 bridges
    assert [b.sequence for b in book.on_snapshot(snapshot(10), NS)] == [12]
    assert book.stats.stale == 1
    assert [b.sequence for b in feed(book, diff(13, 20, pu=12))] == [20]
    assert feed(book, diff(13, 20, pu=12), diff(10, 12, pu=9)) == []  # replays
    assert (book.stats.stale, book.stats.gaps) == (3, 0)
    assert feed(book, diff(25, 26, pu=24)) == []  # pu != 20
    assert book.stats.gaps == 1 and book.needs_resync


def test_binance_futures_snapshot_too_old_is_refetched() -> None:
    book = BinanceFuturesBook("BTC-USDT")
    feed(book, diff(20, 25, pu=19))
    assert book.on_snapshot(snapshot(15), NS) == []
    assert book.needs_resync and book.stats.stale_snapshots == 1
    assert [b.sequence for b in book.on_snapshot(snapshot(21), NS)] == [25]


def test_binance_route_combined_raw_and_responses() -> None:
    data = diff(1, 2)
    assert _binance.route({"stream": "btcusdt@depth@100ms", "data": data}).symbol == "BTCUSDT"
    assert _binance.route(data).kind == "depthUpdate"
    assert _binance.route({"result": None, "id": 1}).kind == "response"
    assert _binance.route({"code": 2, "msg": "Invalid request"}).kind == "error"
    with pytest.raises(MessageError, match="expected a combined-stream message"):
        _binance.route({"what": 1})


# -- Bybit v5 ----------------------------------------------------------------------


def bybit(kind: str, u: int, bids: Any = (), asks: Any = (), ts: int = 1_700_000_000_000) -> dict:
    return {
        "topic": "orderbook.50.BTCUSDT",
        "type": kind,
        "ts": ts + u,
        "data": {
            "s": "BTCUSDT",
            "b": [[str(p), str(q)] for p, q in bids],
            "a": [[str(p), str(q)] for p, q in asks],
            "u": u,
            "seq": 9_000_000 + 7 * u,
        },
        "cts": ts + u - 3,
    }


BYBIT_SNAPSHOT = bybit("snapshot", 100, bids=[(100, 1), (99, 2)], asks=[(101, 1), (102, 2)])


def test_bybit_snapshot_then_contiguous_deltas() -> None:
    book = BybitBook("BTC-USDT", depth=1, exchange="bybit-futures")
    books = feed(
        book,
        BYBIT_SNAPSHOT,
        bybit("delta", 101, bids=[(100, 0), (99.5, 3)]),
        bybit("delta", 102, asks=[(100.5, 4)]),
    )
    assert [b.sequence for b in books] == [100, 101, 102]
    assert books[0].timestamp_ms == 1_700_000_000_100  # ts, not cts
    assert books[1].bids == [(99.5, 3.0)]  # "0" deleted 100; depth=1
    assert books[2].asks == [(100.5, 4.0)] and books[2].exchange == "bybit-futures"
    assert not book.needs_resync and book.stats.snapshots == 1


def test_bybit_duplicate_is_stale_and_gap_asks_for_resubscription() -> None:
    book = BybitSpotBook("BTC-USDT")
    feed(book, BYBIT_SNAPSHOT, bybit("delta", 101))
    assert feed(book, bybit("delta", 101), bybit("delta", 99)) == []
    assert (book.stats.stale, book.stats.gaps, book.needs_resync) == (2, 0, False)
    assert feed(book, bybit("delta", 103)) == []
    assert (book.stats.gaps, book.needs_resync, book.synced) == (1, True, False)
    assert feed(book, bybit("delta", 104)) == []  # unsynced until a snapshot
    books = feed(book, bybit("snapshot", 110, bids=[(100, 1)], asks=[(101, 1)]))
    assert [b.sequence for b in books] == [110]
    assert book.stats.resyncs == 1 and not book.needs_resync


def test_bybit_restart_u_1_overwrites_the_book() -> None:
    book = BybitLinearBook("BTC-USDT")
    feed(book, BYBIT_SNAPSHOT, bybit("delta", 101))
    books = feed(book, bybit("delta", 1, bids=[(50, 1)], asks=[(51, 1)]))
    assert books[0].bids == [(50.0, 1.0)] and books[0].asks == [(51.0, 1.0)]
    assert books[0].sequence == 1 and book.stats.stale == 0 and book.stats.gaps == 0
    assert [b.sequence for b in feed(book, bybit("delta", 2, bids=[(49, 1)]))] == [2]


def test_bybit_snapshot_always_resets_the_book() -> None:
    book = BybitSpotBook("BTC-USDT")
    feed(book, BYBIT_SNAPSHOT, bybit("delta", 101, bids=[(98, 1)]))
    books = feed(book, bybit("snapshot", 101, bids=[(97, 1)], asks=[(103, 1)]))
    assert books[0].bids == [(97.0, 1.0)]  # 98, 99, 100 gone


def test_bybit_delta_before_any_snapshot_is_unsynced_and_asks_for_one() -> None:
    book = BybitSpotBook("BTC-USDT")
    assert not book.needs_resync
    assert feed(book, bybit("delta", 5)) == []
    assert book.needs_resync and book.stats.unsynced == 1 and book.stats.gaps == 0


def test_bybit_impossible_delta_drops_the_book() -> None:
    book = BybitSpotBook("BTC-USDT")
    feed(book, BYBIT_SNAPSHOT)
    bad = bybit("delta", 101)
    bad["data"]["b"] = [["100.0"]]
    with pytest.raises(MessageError, match="bybit BTC-USDT orderbook"):
        book.on_message(bad, NS)
    assert book.needs_resync and book.stats.gaps == 1 and not book.synced
    check_counts(book.stats)


def test_bybit_crossed_and_reset() -> None:
    book = BybitSpotBook("BTC-USDT")
    feed(book, BYBIT_SNAPSHOT)
    assert feed(book, bybit("delta", 101, bids=[(101, 1)])) == []
    assert book.stats.crossed == 1 and book.needs_resync
    feed(book, BYBIT_SNAPSHOT)
    book.reset()
    assert book.needs_resync and not book.synced


def test_bybit_exchange_is_spot_or_linear() -> None:
    with pytest.raises(ValueError, match="'bybit' \\(spot\\) or 'bybit-futures'"):
        BybitBook("BTC-USDT", exchange="bybit-inverse")


def test_bybit_route() -> None:
    assert _bybit.route(BYBIT_SNAPSHOT)[:2] == ("orderbook", "BTCUSDT")
    assert _bybit.route({"topic": "publicTrade.BTCUSDT", "data": []})[:2] == ("publicTrade", None)
    pong = {"success": True, "ret_msg": "pong", "conn_id": "x", "op": "ping"}
    assert _bybit.route(pong).kind == "pong"
    assert _bybit.route({"op": "pong", "args": ["1"], "conn_id": "x"}).kind == "pong"
    ok = {"success": True, "ret_msg": "", "conn_id": "x", "req_id": "1", "op": "subscribe"}
    assert _bybit.route(ok).kind == "subscribe"
    refused = {**ok, "success": False, "ret_msg": "error:handler not found"}
    assert _bybit.route(refused).kind == "error"


# -- Upbit and Bithumb ---------------------------------------------------------------

UNITS = [(101.0, 100.0, 1.0, 2.0), (102.0, 99.0, 3.0, 4.0), (0.0, 98.0, 0.0, 5.0)]


def upbit_default(code: str = "KRW-BTC", units: Any = UNITS, ts: int = 1_700_000_000_000) -> dict:
    return {
        "type": "orderbook",
        "code": code,
        "timestamp": ts,
        "total_ask_size": 4.0,
        "total_bid_size": 11.0,
        "orderbook_units": [
            {"ask_price": a, "bid_price": b, "ask_size": asz, "bid_size": bsz}
            for a, b, asz, bsz in units
        ],
        "stream_type": "REALTIME",
        "level": 0,
    }


def upbit_simple(code: str = "KRW-BTC", units: Any = UNITS, ts: int = 1_700_000_000_000) -> dict:
    return {
        "ty": "orderbook",
        "cd": code,
        "tms": ts,
        "tas": 4.0,
        "tbs": 11.0,
        "obu": [{"ap": a, "bp": b, "as": asz, "bs": bsz} for a, b, asz, bsz in units],
        "st": "SNAPSHOT",
        "lv": 0,
    }


@pytest.mark.parametrize("builder", [UpbitBook, BithumbBook])
def test_both_formats_give_the_same_book(builder: type[BookBuilder]) -> None:
    book = builder("BTC-KRW", depth=2)
    default, simple = feed(book, upbit_default(), upbit_simple())
    assert default.bids == simple.bids == [(100.0, 2.0), (99.0, 4.0)]
    assert default.asks == simple.asks == [(101.0, 1.0), (102.0, 3.0)]  # size-0 unit left out
    assert (default.sequence, simple.sequence) == (1, 2)
    assert default.timestamp_ms == 1_700_000_000_000
    assert not book.needs_resync


@pytest.mark.parametrize("builder", [UpbitBook, BithumbBook])
def test_full_books_crossed_then_next_message_resyncs(builder: type[BookBuilder]) -> None:
    book = builder("BTC-KRW")
    assert feed(book, upbit_default(units=[(99.0, 100.0, 1.0, 1.0)])) == []
    assert book.stats.crossed == 1 and not book.needs_resync
    assert len(feed(book, upbit_simple())) == 1
    assert book.stats.resyncs == 1
    with pytest.raises(MessageError, match="orderbook"):
        book.on_message(upbit_simple(units=[(101.0, 100.0, -1.0, 1.0)]), NS)
    assert not book.synced and not book.needs_resync
    book.reset()
    assert not book.needs_resync


@pytest.mark.parametrize("route", [_upbit.route, _bithumb.route])
def test_full_book_route_both_formats_and_non_book_messages(route: Any) -> None:
    assert route(upbit_default())[:2] == ("orderbook", "KRW-BTC")
    assert route(upbit_simple(code="KRW-ETH"))[:2] == ("orderbook", "KRW-ETH")
    assert route({"type": "trade", "code": "KRW-BTC"})[:2] == ("trade", None)
    assert route({"status": "UP"}).kind == "status"
    error = {"error": {"name": "INVALID_PARAM", "message": "bad codes"}}
    assert route(error).kind == "error"
    with pytest.raises(MessageError, match="expected a message with 'type'"):
        route([1, 2])


# -- every builder ----------------------------------------------------------------


@pytest.mark.parametrize(
    "builder", [BinanceSpotBook, BinanceFuturesBook, BybitBook, UpbitBook, BithumbBook]
)
def test_depth_is_checked(builder: type[BookBuilder]) -> None:
    assert builder("BTC-USDT", depth=3).depth == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="depth="):
            builder("BTC-USDT", depth=bad)  # type: ignore[arg-type]


# -- against an independent rebuild -------------------------------------------------


def reference_top(book: dict[str, dict[float, float]], depth: int) -> tuple[list, list]:
    """The top of a book by whole sorts, independent of PriceLevels' sorted prices."""
    bids = sorted(book["b"].items(), reverse=True)[:depth]
    asks = sorted(book["a"].items())[:depth]
    return bids, asks


def random_changes(rng: random.Random, book: dict[str, dict[float, float]]) -> tuple[list, list]:
    """A few level changes that keep the book uncrossed: bids below 100, asks above."""
    changes: dict[str, list] = {"b": [], "a": []}
    for _ in range(rng.randint(1, 4)):
        side = rng.choice("ba")
        price = float(rng.randint(80, 99) if side == "b" else rng.randint(101, 120))
        size = 0.0 if rng.random() < 0.3 else float(rng.randint(1, 9))
        changes[side].append((price, size))
        if size:
            book[side][price] = size
        else:
            book[side].pop(price, None)
    return changes["b"], changes["a"]


@pytest.mark.parametrize("seed", range(5))
def test_bybit_books_with_replays_equal_a_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    reference: dict[str, dict[float, float]] = {"b": {99.0: 1.0}, "a": {101.0: 1.0}}
    expected: dict[int, tuple[list, list]] = {1000: reference_top(reference, 5)}
    messages = [bybit("snapshot", 1000, bids=[(99, 1)], asks=[(101, 1)])]
    for u in range(1001, 1300):
        bids, asks = random_changes(rng, reference)
        messages.append(bybit("delta", u, bids=bids, asks=asks))
        expected[u] = reference_top(reference, 5)
        if rng.random() < 0.1:  # a replay of an earlier message
            messages.append(rng.choice(messages[1:]))
    book = BybitSpotBook("BTC-USDT", depth=5)
    books = feed(book, *messages)
    assert [b.sequence for b in books] == sorted(expected)
    for published in books:
        assert (published.bids, published.asks) == expected[published.sequence]
    assert book.stats.gaps == 0 and book.stats.stale == len(messages) - len(expected)


@pytest.mark.parametrize("seed", range(5))
def test_binance_spot_books_with_replays_and_a_gap_equal_a_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    reference: dict[str, dict[float, float]] = {"b": {100.0: 1.0}, "a": {101.0: 1.0}}
    snapshots: dict[int, dict] = {}
    expected: dict[int, tuple[list, list]] = {}
    diffs = []
    last = 10
    for _ in range(300):
        bids, asks = random_changes(rng, reference)
        first, last = last + 1, last + rng.randint(1, 3)
        diffs.append(diff(first, last, bids=bids, asks=asks))
        expected[last] = reference_top(reference, 10)
        snapshots[last] = {
            "lastUpdateId": last,
            "bids": [[str(p), str(q)] for p, q in reference["b"].items()],
            "asks": [[str(p), str(q)] for p, q in reference["a"].items()],
        }
    book = BinanceSpotBook("BTC-USDT")
    lost = rng.randrange(100, 200)  # this diff never arrives: a gap
    published = book.on_snapshot(
        {"lastUpdateId": 10, "bids": [["100", "1"]], "asks": [["101", "1"]]}, NS
    )
    for index, message in enumerate(diffs):
        if index == lost:
            continue
        published += book.on_message(message, NS)
        if rng.random() < 0.1:
            published += book.on_message(rng.choice(diffs[: index + 1]), NS)  # a replay
        if book.needs_resync and index > lost + 5:
            # The connector's snapshot, taken a few diffs after the gap.
            published += book.on_snapshot(snapshots[diffs[index - 3]["u"]], NS)
    check_counts(book.stats)
    assert book.stats.gaps == 1 and book.stats.resyncs == 1 and book.synced
    for top in published:
        assert (top.bids, top.asks) == expected[top.sequence]
    sequences = [top.sequence for top in published]
    assert sequences == sorted(set(sequences))  # nothing published twice or backwards
