"""The pieces of ``journal collect`` that need no server: URLs and requests as each
venue documents them, what an incoming message is, the back-off and the log limiter."""

from __future__ import annotations

import logging
import random

import orjson
import pytest

from journal.collect._backoff import Backoff
from journal.collect._binance import BinanceProtocol
from journal.collect._bybit import BybitProtocol, topic_depth
from journal.collect._protocol import Kind
from journal.collect._ratelog import RateLimitedLog
from journal.collect._upbit import UpbitProtocol
from journal.collect._venues import VENUES


def test_binance_names_its_streams_in_the_url_and_subscribes_them():
    protocol = BinanceProtocol("/api/v3/depth")
    url = protocol.stream_url("wss://stream.binance.com:9443", ["BTCUSDT", "ETHUSDT"])
    assert (
        url
        == "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    )
    futures = protocol.stream_url("wss://fstream.binance.com/public", ["BTCUSDT"])
    assert futures == "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms"
    assert protocol.stream_url("ws://127.0.0.1:9/ws", ["BTCUSDT"]) == "ws://127.0.0.1:9/ws"
    # A gateway that answers 404: the raw endpoint, then (one symbol) the single stream.
    raw = protocol.alternative_url(url, ["BTCUSDT", "ETHUSDT"])
    assert raw == "wss://stream.binance.com:9443/ws"
    assert protocol.alternative_url(raw, ["BTCUSDT", "ETHUSDT"]) is None
    single = protocol.alternative_url("ws://h:1/stream?streams=btcusdt@depth@100ms", ["BTCUSDT"])
    assert protocol.alternative_url(single or "", ["BTCUSDT"]) == "ws://h:1/ws/btcusdt@depth@100ms"
    [(request_id, text)] = protocol.subscribe(["BTCUSDT"], 10)
    assert orjson.loads(text) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@depth@100ms"],
        "id": request_id,
    }
    assert (
        protocol.snapshot_url("http://127.0.0.1:9", "BTCUSDT")
        == "http://127.0.0.1:9/api/v3/depth?symbol=BTCUSDT&limit=1000"
    )


def test_binance_messages():
    protocol = BinanceProtocol("/api/v3/depth")
    diff = {"e": "depthUpdate", "s": "BTCUSDT", "U": 1, "u": 2, "E": 3, "b": [], "a": []}
    assert protocol.classify({"stream": "btcusdt@depth@100ms", "data": diff}) == (
        Kind.BOOK,
        "BTCUSDT",
        diff,
    )
    assert protocol.classify(diff).kind is Kind.BOOK  # the raw /ws endpoint
    assert protocol.classify({"result": None, "id": 7})[:2] == (Kind.ACK, 7)
    refused = protocol.classify({"error": {"code": 2, "msg": "Invalid request"}, "id": 7})
    assert refused.kind is Kind.REFUSED and "Invalid request" in refused.payload
    assert protocol.classify({"code": -1121, "msg": "Invalid symbol."}).kind is Kind.REFUSED
    assert protocol.classify({"stream": "btcusdt@trade", "data": {"e": "trade"}}).kind is Kind.OTHER
    assert protocol.classify([1, 2]).kind is Kind.OTHER


def test_bybit_subscribes_ten_topics_a_request_and_resubscribes_one():
    protocol = BybitProtocol("/v5/public/spot")
    assert protocol.stream_url("ws://127.0.0.1:9", []) == "ws://127.0.0.1:9/v5/public/spot"
    symbols = [f"S{n}USDT" for n in range(12)]
    requests = [orjson.loads(text) for _, text in protocol.subscribe(symbols, 10)]
    assert [len(request["args"]) for request in requests] == [10, 2]
    assert requests[0]["op"] == "subscribe" and requests[0]["args"][0] == "orderbook.50.S0USDT"
    again = [orjson.loads(text) for _, text in protocol.resubscribe("BTCUSDT", 10)]
    assert [request["op"] for request in again] == ["unsubscribe", "subscribe"]
    assert all(request["args"] == ["orderbook.50.BTCUSDT"] for request in again)
    assert [topic_depth(depth) for depth in (1, 10, 50, 51, 200, 201, 1000)] == [
        50,
        50,
        50,
        200,
        200,
        1000,
        1000,
    ]


def test_bybit_messages():
    protocol = BybitProtocol("/v5/public/linear")
    book = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1, "data": {}}
    assert protocol.classify(book) == (Kind.BOOK, "BTCUSDT", book)
    ack = {"success": True, "ret_msg": "", "op": "subscribe", "req_id": "4", "conn_id": "x"}
    assert protocol.classify(ack)[:2] == (Kind.ACK, 4)
    refusal = {"success": False, "ret_msg": "error:handler not found", "op": "subscribe"}
    assert protocol.classify(refusal).kind is Kind.REFUSED
    assert protocol.classify({"success": True, "ret_msg": "pong", "op": "ping"}).kind is Kind.PONG
    assert protocol.classify({"op": "pong", "args": ["1"], "conn_id": "x"}).kind is Kind.PONG
    assert protocol.classify({"topic": "publicTrade.BTCUSDT"}).kind is Kind.OTHER
    assert orjson.loads(protocol.ping() or "")["op"] == "ping"


def test_upbit_and_bithumb_subscribe_with_a_ticket_and_ping_with_text():
    protocol = UpbitProtocol()
    assert protocol.stream_url("wss://api.upbit.com", []) == "wss://api.upbit.com/websocket/v1"
    [(request_id, text)] = protocol.subscribe(["KRW-BTC", "KRW-USDT"], 10)
    ticket, kind, form = orjson.loads(text)
    assert request_id is None and ticket["ticket"].startswith("journal-")
    assert kind == {"type": "orderbook", "codes": ["KRW-BTC", "KRW-USDT"]}
    assert form == {"format": "DEFAULT"}
    assert protocol.ping() == "PING"
    default = {"type": "orderbook", "code": "KRW-BTC", "orderbook_units": []}
    simple = {"ty": "orderbook", "cd": "KRW-BTC", "obu": []}
    assert protocol.classify(default)[:2] == (Kind.BOOK, "KRW-BTC")
    assert protocol.classify(simple)[:2] == (Kind.BOOK, "KRW-BTC")
    assert protocol.classify({"status": "UP"}).kind is Kind.PONG
    error = {"error": {"name": "INVALID_PARAM", "message": "codes"}}
    assert protocol.classify(error).kind is Kind.REFUSED
    assert protocol.classify({"type": "ticker", "code": "KRW-BTC"}).kind is Kind.OTHER


@pytest.mark.parametrize(
    ("venue", "symbol", "spelled"),
    [
        ("binance", "BTC-USDT", "BTCUSDT"),
        ("binance-futures", "ETH-USDT", "ETHUSDT"),
        ("bybit", "SOL-USDT", "SOLUSDT"),
        ("bybit-futures", "XRP-USDT", "XRPUSDT"),
        ("upbit", "BTC-KRW", "KRW-BTC"),
        ("bithumb", "USDT-KRW", "KRW-USDT"),
    ],
)
def test_each_venue_spells_its_symbols(venue, symbol, spelled):
    assert VENUES[venue].venue_symbol(symbol) == spelled
    builder = VENUES[venue].builder(symbol, 5)
    assert builder.stats.exchange == venue and builder.stats.symbol == symbol


def test_backoff_doubles_with_full_jitter_up_to_the_cap_and_resets():
    backoff = Backoff(base_s=0.5, cap_s=4.0, floor_s=0.01, _random=random.Random(1))
    waits = [backoff.next_wait() for _ in range(200)]
    assert all(0.01 <= wait <= 4.0 for wait in waits)
    assert max(waits[:1]) <= 0.5 and max(waits[1:2]) <= 1.0
    assert max(waits[10:]) > 3.0  # capped, not stuck low
    assert len({round(wait, 6) for wait in waits}) > 150  # jittered
    backoff.reset()
    assert backoff.next_wait() <= 0.5


class _LowestDraws(random.Random):
    """Every draw the lowest it could be: what the floor is there for."""

    def uniform(self, a: float, b: float) -> float:
        return a


def test_backoff_never_waits_less_than_its_floor():
    backoff = Backoff(base_s=0.25, cap_s=30.0, floor_s=0.05, _random=_LowestDraws())
    assert [backoff.next_wait() for _ in range(5)] == [0.05] * 5


def test_the_log_limiter_logs_the_first_then_counts(caplog):
    logger = logging.getLogger("test.ratelog")
    limiter = RateLimitedLog(logger, first=2, interval_s=3600)
    with caplog.at_level(logging.WARNING, "test.ratelog"):
        for n in range(50):
            limiter.log("malformed", logging.WARNING, f"bad message {n}")
        limiter.log("other", logging.WARNING, "another kind")
        limiter.flush()
    texts = [record.getMessage() for record in caplog.records]
    assert texts[0] == "bad message 0" and texts[1].startswith("bad message 1")
    assert "another kind" in texts[2]
    assert any("48 more like this" in text and "bad message 49" in text for text in texts)
    assert len(texts) == 4


@pytest.mark.parametrize(
    ("venue", "symbol"),
    [("upbit", "XTZ-BTC"), ("upbit", "BTC-KRW"), ("bithumb", "ETH-KRW"), ("binance", "ETH-BTC")],
)
def test_books_are_journaled_under_the_symbol_asked_for(venue, symbol, tmp_path):
    """A market quoted in another asset than the venue's default keeps its direction
    (Upbit's BTC-XTZ is XTZ quoted in BTC, journaled XTZ-BTC)."""
    import logging as logging_
    import shutil
    import uuid
    from pathlib import Path

    from journal import Reader
    from journal._feed_metrics import FeedMetricsWriter
    from journal.collect._stream import Stream
    from journal.collector import BookPublisher

    path = Path("/dev/shm") / f"collect-names-{uuid.uuid4().hex[:8]}"
    spec = VENUES[venue]
    spelled = spec.venue_symbol(symbol)
    try:
        publisher = BookPublisher(path)
        metrics = FeedMetricsWriter(path, venue=venue, symbols=[symbol])
        stream = Stream(
            venue,
            symbol,
            spelled,
            spec.builder(symbol, 10),
            publisher,
            metrics.stream(symbol),
            RateLimitedLog(logging_.getLogger("test")),
        )
        if venue == "binance":
            stream.builder.on_snapshot(
                {"lastUpdateId": 1, "bids": [["1", "1"]], "asks": [["2", "1"]]}, 1
            )
            message = {
                "e": "depthUpdate",
                "E": 5,
                "s": spelled,
                "U": 2,
                "u": 2,
                "b": [["1.5", "1"]],
                "a": [],
            }
        else:
            unit = {"ask_price": 2.0, "bid_price": 1.0, "ask_size": 1.0, "bid_size": 1.0}
            message = {
                "type": "orderbook",
                "code": spelled,
                "timestamp": 5,
                "orderbook_units": [unit],
            }
        stream.on_book(message, 10)
        publisher.close()
        metrics.close()
        with Reader(path, metrics=False) as reader:
            [book] = list(reader.available())
        assert (book.exchange_name, book.symbol) == (venue, symbol)
    finally:
        shutil.rmtree(path, ignore_errors=True)
