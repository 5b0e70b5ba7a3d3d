"""Fake Bybit v5 public websocket, spot (``/v5/public/spot``) or linear (``/v5/public/linear``).

Written from Bybit's documentation (github.com/bybit-exchange/docs):

- "Connect", https://bybit-exchange.github.io/docs/v5/ws/connect (docs/v5/websocket/
  wss-authentication.mdx): the public paths; ``{"op": "subscribe", "args": [...],
  "req_id": ...}`` answered, for spot, ``{"success": true, "ret_msg": "subscribe",
  "conn_id", "req_id", "op": "subscribe"}`` and for linear ``{"success": true,
  "ret_msg": "", "conn_id", "req_id": "", "op": "subscribe"}``; ``{"op": "ping"}`` (send
  it every 20 s) answered ``{"success": true, "ret_msg": "pong", "conn_id", "op":
  "ping"}`` (linear adds ``req_id``); spot takes at most 10 args per request.
- "Orderbook", https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook:
  topic ``orderbook.{depth}.{symbol}`` (depths 1, 50, 200, 1000); a ``snapshot``
  right after subscribing, then ``delta`` messages (size 0 deletes a level, a new price
  is inserted, an existing one updated); a new ``snapshot`` resets the book; ``u`` the
  update id, and "occasionally you'll receive u=1, which is a snapshot data due to
  the restart of the service"; ``seq`` the cross sequence; ``ts`` and ``cts``; spot
  messages carry ``ts`` before ``type``, futures after it.

The update id counts one per message of a topic (deltas after a snapshot go on from
its ``u``), so a skipped delta is a jump in ``u``. The fake's books never hold more
than 25 levels a side (the capture's ``orderBookL2_25``), so every depth's view is
the whole book. A repeated subscribe of a topic is answered with success and a fresh
snapshot: the documentation says nothing of it, and resubscribing is how a client
asks for a new snapshot.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import deque
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fake_exchanges._book import Change, LevelBook, SyntheticFlow, synthetic_book
from tests.fake_exchanges._captures import bybit_v5_captures
from tests.fake_exchanges._server import Connection, Event, FakeExchange

DEPTHS = (1, 50, 200, 1000)
SPOT_ARGS_LIMIT = 10
_TOPIC = re.compile(r"orderbook\.(\d+)\.([A-Z0-9]+)")


class BybitMarket:
    """One symbol's book, its update id ``u`` and cross sequence ``seq``."""

    def __init__(
        self,
        symbol: str,
        book: LevelBook,
        seq: int,
        ts_ms: int,
        deltas: list[dict[str, Any]],
        seed: int = 1,
        wall_clock: bool = False,
    ) -> None:
        self.symbol = symbol
        self.book = book
        self.u = 1
        self.seq = seq
        self.ts_ms = ts_ms
        self.recorded = deque(deltas)
        self.rng = random.Random(seed)
        self.flow: SyntheticFlow | None = None  # once the recorded deltas run out
        self.wall_clock = wall_clock
        self.running = False
        self.restart_pending = False

    def snapshot_data(self) -> dict[str, Any]:
        return {
            "s": self.symbol,
            "b": [[p, q] for p, q in self.book.top("bids")],
            "a": [[p, q] for p, q in self.book.top("asks")],
            "u": self.u,
            "seq": self.seq,
        }

    def next_event(self, tick_ms: int) -> tuple[str, dict[str, Any], int]:
        """("delta" or "snapshot", data, ts), applied to the book."""
        if self.restart_pending:  # the service restarted: u counts from 1 again
            self.restart_pending = False
            self.u = 1
            self.seq += 1
            self.ts_ms = self.now(tick_ms)
            return "snapshot", self.snapshot_data(), self.ts_ms
        if self.recorded:
            delta = self.recorded.popleft()
            bids, asks, self.seq, self.ts_ms = delta["b"], delta["a"], delta["seq"], delta["ts"]
        else:
            if self.flow is None:  # its prices: the book's now, never crossed
                self.flow = SyntheticFlow(self.book, self.rng, min_levels=8)
            changes = self.flow.step()
            bids = [[p, q] for side, p, q in changes if side == "bids"]
            asks = [[p, q] for side, p, q in changes if side == "asks"]
            self.seq += self.rng.randint(1, 40)
            self.ts_ms = self.now(tick_ms)
        applied: list[Change] = [("bids", p, q) for p, q in bids]
        applied += [("asks", p, q) for p, q in asks]
        self.book.apply(applied)
        self.u += 1
        data = {"s": self.symbol, "b": bids, "a": asks, "u": self.u, "seq": self.seq}
        return "delta", data, self.ts_ms

    def now(self, tick_ms: int) -> int:
        return int(time.time() * 1000) if self.wall_clock else self.ts_ms + tick_ms


def captured_markets(rename: dict[str, str] | None = None) -> list[BybitMarket]:
    """The v2 capture (EOSUSD, BTCUSD) converted to v5; ``rename`` maps its symbols
    to the ones served (default: EOSUSDT, BTCUSDT)."""
    rename = rename or {"BTCUSD": "BTCUSDT", "EOSUSD": "EOSUSDT"}
    markets = []
    for index, (symbol, capture) in enumerate(sorted(bybit_v5_captures(rename).items())):
        book = LevelBook.from_levels(capture.bids, capture.asks)
        markets.append(
            BybitMarket(symbol, book, capture.seq, capture.ts_ms, capture.deltas, index + 1)
        )
    return markets


def synthetic_market(symbol: str, mid: Decimal, tick: Decimal, seed: int = 1) -> BybitMarket:
    rng = random.Random(seed)
    book = synthetic_book(mid, tick, 25, rng)
    return BybitMarket(symbol, book, 10_000 * seed, int(time.time() * 1000), [], seed, True)


class FakeBybit(FakeExchange):
    """Bybit v5 public orderbook topics for ``category`` "spot" or "linear"."""

    def __init__(
        self, markets: list[BybitMarket] | None = None, *, category: str = "spot", **options: Any
    ) -> None:
        super().__init__(**options)
        assert category in ("spot", "linear"), category
        self.category = category
        self.venue = "bybit" if category == "spot" else "bybit-futures"
        self.markets = {m.symbol: m for m in (markets or captured_markets())}
        self.path = f"/v5/public/{category}"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(self.path, self.serve_websocket)

    async def on_open(self, connection: Connection) -> None:
        connection.state["conn_id"] = str(uuid.uuid4())

    def answer(
        self, connection: Connection, op: str, success: bool, message: str, req_id: Any
    ) -> None:
        reply: dict[str, Any] = {"success": success, "ret_msg": message}
        reply["conn_id"] = connection.state["conn_id"]
        if self.category == "linear" or req_id is not None:
            reply["req_id"] = "" if req_id is None else req_id
        reply["op"] = op
        connection.reply(reply)

    async def on_text(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            self.violation(f"not JSON: {text[:80]!r}")
            self.answer(connection, "", False, "error:request not JSON", None)
            return
        if not isinstance(request, dict):
            self.violation(f"not a JSON object: {text[:80]!r}")
            return
        op = request.get("op")
        req_id = request.get("req_id")
        args = request.get("args", [])
        if op == "ping":
            self.count("client_pings")
            if self.category == "spot":
                reply = {"success": True, "ret_msg": "pong", "conn_id": connection.state["conn_id"]}
                reply["op"] = "ping"
                connection.reply(reply)
            else:
                self.answer(connection, "ping", True, "pong", req_id)
            return
        if op not in ("subscribe", "unsubscribe"):
            self.violation(f"unknown op {op!r}")
            self.answer(connection, str(op), False, f"error:unknown op {op}", req_id)
            return
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            self.violation(f"{op} args not a list of topics: {args!r}")
            self.answer(connection, op, False, "error:args", req_id)
            return
        if op == "unsubscribe":
            connection.topics.difference_update(args)
            self.count("unsubscribes")
            self.answer(connection, op, True, "", req_id)
            return
        self.count("subscribe_requests")
        if self.category == "spot" and len(args) > SPOT_ARGS_LIMIT:
            self.violation(f"{len(args)} args in one spot subscribe (the docs: at most 10)")
            self.answer(connection, op, False, f"error:args size >{SPOT_ARGS_LIMIT}", req_id)
            return
        invalid = f"Invalid symbol :[{','.join(args)}]"
        if await self.refused(
            connection, lambda: self.answer(connection, op, False, invalid, req_id)
        ):
            return
        for topic in args:
            match = _TOPIC.fullmatch(topic)
            if match is None or match[2] not in self.markets or int(match[1]) not in DEPTHS:
                self.violation(f"subscribe to {topic!r}: not an orderbook topic of this fake")
                self.answer(connection, op, False, f"error:handler not found,topic:{topic}", req_id)
                return
            if match[1] == "1":
                self.violation(f"{topic}: depth 1 (snapshots only) is not modelled by the fake")
        self.answer(connection, op, True, "subscribe" if self.category == "spot" else "", req_id)
        for topic in args:
            match = _TOPIC.fullmatch(topic)
            assert match is not None
            market = self.markets[match[2]]
            market.running = True
            connection.topics.add(topic)
            with self.lock:
                connection.record.subscriptions.append(topic)
                self.counters["subscriptions"] += 1
            data = market.snapshot_data()
            version = self.next_version()
            connection.push_data(
                Event(market.symbol, version, "snapshot", (topic, data, market.ts_ms))
            )
            if self.keep_truth:
                self.remember(market.symbol, version, *_floats(market.book))

    def wants(self, connection: Connection, symbol: str) -> bool:
        return any(_topic_symbol(topic) == symbol for topic in connection.topics)

    def render(self, connection: Connection, event: Event) -> Any:
        if event.kind == "snapshot" and isinstance(event.data, tuple):
            topic, data, ts_ms = event.data  # the snapshot of one subscription
            return self.message(topic, "snapshot", data, ts_ms)
        kind, data, ts_ms = event.data
        for topic in sorted(connection.topics):
            if _topic_symbol(topic) == event.symbol:
                return self.message(topic, kind, data, ts_ms)
        return None

    def message(self, topic: str, kind: str, data: dict[str, Any], ts_ms: int) -> dict[str, Any]:
        """The documented field order: spot has ``ts`` before ``type``, linear after."""
        if self.category == "spot":
            return {"topic": topic, "ts": ts_ms, "type": kind, "data": data, "cts": ts_ms - 2}
        return {"topic": topic, "type": kind, "ts": ts_ms, "data": data, "cts": ts_ms - 2}

    def tick(self) -> list[Event]:
        tick_ms = max(1, int(self.tick_s * 1000))
        events = []
        for symbol, market in self.markets.items():
            if market.running:
                update = market.next_event(tick_ms)
                events.append(Event(symbol, self.next_version(), "update", update))
                if self.keep_truth:
                    self.remember(symbol, self.version, *_floats(market.book))
        return events

    def restart(self, symbol: str) -> None:
        self.markets[symbol].restart_pending = True

    def malformed(self, event: Event) -> str:
        return '{"topic":"orderbook.50.' + event.symbol + '","type":"delta","ts":'

    def unknown(self, event: Event) -> Any:
        now = int(time.time() * 1000)
        return {"topic": f"mystery.{event.symbol}", "type": "snapshot", "ts": now, "data": {}}


def _floats(book: LevelBook) -> tuple[Any, Any]:
    return tuple(
        tuple((float(p), float(q)) for p, q in book.top(side, 20)) for side in ("bids", "asks")
    )


def _topic_symbol(topic: str) -> str | None:
    match = _TOPIC.fullmatch(topic)
    return None if match is None else match[2]
