"""Fake Binance spot and USDT-M futures: diff depth streams and REST depth snapshots.

Written from Binance's documentation, not from the collector:

- spot websocket streams, https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams
  (github.com/binance/binance-spot-api-docs, web-socket-streams.md): raw streams at
  ``/ws/<streamName>``, combined at ``/stream?streams=a/b`` wrapped as
  ``{"stream": name, "data": payload}``, lowercase symbols; live ``SUBSCRIBE`` /
  ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` answered ``{"result": null, "id": N}``, the
  documented error messages (``{"code": 3, "msg": "Invalid JSON: ..."}``); a ping
  frame every 20 s, the connection dropped without a pong within a minute; at most 5
  incoming messages a second (pings, pongs, JSON) or the connection is dropped;
  1024 streams per connection. The diff depth payload ``{"e": "depthUpdate", "E",
  "s", "U", "u", "b", "a"}`` and "How to manage a local order book correctly".
- spot REST, rest-api.md there: ``GET /api/v3/depth?symbol=&limit=`` (default 100,
  at most 5000) answering ``{"lastUpdateId", "bids", "asks"}``; 429 when a rate limit
  is broken and 418 for an IP banned for going on after 429s, both with a
  ``Retry-After`` in seconds.
- USDT-M futures, https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams
  and its "How to manage a local order book correctly": the same stream paths; a
  ping every 3 minutes, a pong within 10 minutes; 10 incoming messages a second; the
  diff payload adds ``T`` and ``pu`` (the previous event's ``u``), and
  ``GET /fapi/v1/depth`` (limits 5, 10, 20, 50, 100, 500, 1000; default 500) answers
  ``{"lastUpdateId", "E", "T", "bids", "asks"}``.

What the fake checks of its client is kept in ``violations``: an uppercase stream
name, too many messages a second, a ping left without its pong, a request for a
snapshot inside a ``Retry-After`` window, a bad ``limit``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import random
import re
import time
from collections import deque
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fake_exchanges._book import Change, LevelBook, SyntheticFlow, synthetic_book
from tests.fake_exchanges._captures import binance_captures
from tests.fake_exchanges._server import Connection, Event, FakeExchange, RestCall

SPOT_LIMITS = range(1, 5001)
IN_FLIGHT_S = 0.1
"""A request this soon after a 429/418 answer was sent before the client read it."""
FUTURES_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
_ID = re.compile(r"[A-Za-z0-9]{1,36}")


class BinanceMarket:
    """One symbol's book, the recorded diffs still to publish, then synthetic ones."""

    def __init__(
        self,
        symbol: str,
        book: LevelBook,
        last_update_id: int,
        last_event_ms: int,
        diffs: list[dict[str, Any]],
        futures: bool,
        seed: int = 1,
        wall_clock: bool = False,
    ) -> None:
        self.symbol = symbol
        self.book = book
        self.last_update_id = last_update_id
        self.last_event_ms = last_event_ms
        self.recorded = deque(diffs)
        self.futures = futures
        self.rng = random.Random(seed)
        self.flow: SyntheticFlow | None = None  # once the recorded diffs run out
        self.wall_clock = wall_clock
        self.running = False
        self.history: deque[tuple[int, LevelBook]] = deque(maxlen=64)
        self.cross_pending = False
        self.crossing_bid: str | None = None  # the price to take back next

    def next_diff(self, tick_ms: int) -> dict[str, Any]:
        """The next diff event, applied to the book."""
        self.history.append((self.last_update_id, self.book.copy()))
        if self.recorded:
            diff = self.recorded.popleft()
        else:
            if self.flow is None:  # its prices: the book's now, never crossed
                self.flow = SyntheticFlow(self.book, self.rng)
            changes = self.flow.step()
            if self.cross_pending:  # a bid at the best ask: crossed
                self.cross_pending = False
                self.crossing_bid = self.book.top("asks", 1)[0][0]
                changes = [("bids", self.crossing_bid, "1.0000")]
            elif self.crossing_bid is not None:  # taken back at once
                changes = [("bids", self.crossing_bid, "0")]
                self.crossing_bid = None
            first = self.last_update_id + 1 + (self.rng.randint(0, 5) if self.futures else 0)
            final = first + self.rng.randint(0, 3)
            event_ms = int(time.time() * 1000) if self.wall_clock else self.last_event_ms + tick_ms
            diff = {"e": "depthUpdate", "E": event_ms}
            if self.futures:
                diff["T"] = event_ms - self.rng.randint(1, 5)
            diff |= {"s": self.symbol, "U": first, "u": final}
            if self.futures:
                diff["pu"] = self.last_update_id
            diff |= {
                "b": [[p, q] for side, p, q in changes if side == "bids"],
                "a": [[p, q] for side, p, q in changes if side == "asks"],
            }
        changes_applied: list[Change] = [("bids", p, q) for p, q in diff["b"]]
        changes_applied += [("asks", p, q) for p, q in diff["a"]]
        self.book.apply(changes_applied)
        self.last_update_id = diff["u"]
        self.last_event_ms = diff["E"]
        return diff

    def snapshot(self, limit: int, stale_by: int = 0) -> dict[str, Any]:
        """The REST depth answer: the book now, or as it was ``stale_by`` updates ago."""
        last, book = self.last_update_id, self.book
        if stale_by and self.history:
            last, book = self.history[max(0, len(self.history) - stale_by)]
        body: dict[str, Any] = {"lastUpdateId": last}
        if self.futures:  # the market's clock: the time of its last update
            body |= {"E": self.last_event_ms, "T": self.last_event_ms - 1}
        body["bids"] = [[p, q] for p, q in book.top("bids", limit)]
        body["asks"] = [[p, q] for p, q in book.top("asks", limit)]
        return body


def captured_markets(futures: bool, symbols: list[str] | None = None) -> list[BinanceMarket]:
    """The recorded markets (spot: NKNUSDT, BLZETH, LRCBTC, RUNEEUR; futures:
    SUSHIUSDT, AKROUSDT, KEEPUSDT, CTKUSDT), each from its REST snapshot."""
    markets = []
    for index, (symbol, capture) in enumerate(sorted(binance_captures(futures).items())):
        if symbols is not None and symbol not in symbols:
            continue
        snapshot = capture.snapshot
        book = LevelBook.from_levels(
            [tuple(level) for level in snapshot["bids"]],  # type: ignore[misc]
            [tuple(level) for level in snapshot["asks"]],  # type: ignore[misc]
        )
        first_ms = capture.diffs[0]["E"] if capture.diffs else 0
        markets.append(
            BinanceMarket(
                symbol,
                book,
                snapshot["lastUpdateId"],
                first_ms,
                capture.diffs,
                futures,
                seed=index + 1,
            )
        )
    return markets


def synthetic_market(
    symbol: str, mid: Decimal, tick: Decimal, futures: bool, seed: int = 1, levels: int = 40
) -> BinanceMarket:
    """A market around ``mid`` stamped with the wall clock (for end-to-end runs)."""
    rng = random.Random(seed)
    book = synthetic_book(mid, tick, levels, rng)
    first_id = 1_000_000 * seed
    return BinanceMarket(
        symbol, book, first_id, int(time.time() * 1000), [], futures, seed, wall_clock=True
    )


class FakeBinance(FakeExchange):
    """Binance spot (``futures=False``) or USDT-M futures, with the given markets."""

    def __init__(
        self,
        markets: list[BinanceMarket] | None = None,
        *,
        futures: bool = False,
        ping_interval_s: float | None = None,
        pong_timeout_s: float | None = None,
        incoming_per_s: int | None = None,
        warmup: int = 0,
        **options: Any,
    ) -> None:
        """``warmup``: updates each market makes before anyone connects (so that a
        snapshot ``stale_by`` that many is older than any client's stream)."""
        super().__init__(**options)
        self.futures = futures
        self.venue = "binance-futures" if futures else "binance"
        self.markets = {m.symbol: m for m in (markets or captured_markets(futures))}
        # The documented heartbeat and limits; a test shortens them to see them work.
        self.ping_interval_s = ping_interval_s or (180.0 if futures else 20.0)
        self.pong_timeout_s = pong_timeout_s or (600.0 if futures else 60.0)
        self.incoming_per_s = incoming_per_s or (10 if futures else 5)
        self.depth_path = "/fapi/v1/depth" if futures else "/api/v3/depth"
        self.banned_until = 0.0  # monotonic; a request before it breaks Retry-After
        self.limited_at = 0.0  # monotonic time of the last 429/418 answer
        for market in self.markets.values():
            for _ in range(warmup):
                market.next_diff(max(1, int(self.tick_s * 1000)))

    # -- routes ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/stream", self.serve_websocket)
        app.router.add_get("/ws", self.serve_websocket)
        app.router.add_get("/ws/{streams:.*}", self.serve_websocket)
        app.router.add_get(self.depth_path, self.serve_depth)

    # -- websocket -----------------------------------------------------------------------

    async def on_open(self, connection: Connection) -> None:
        request = connection.request
        connection.state["combined"] = request.path == "/stream"
        connection.state["pending_pings"] = {}
        connection.state["incoming"] = deque()
        if request.path == "/stream":
            names = [n for n in request.query.get("streams", "").split("/") if n]
        elif request.path.startswith("/ws/"):
            names = [n for n in request.path[len("/ws/") :].split("/") if n]
        else:
            names = []
        if names:
            await self.subscribe(connection, names, None, from_url=True)

    def depth_symbol(self, name: str) -> str | None:
        """The market a diff depth stream name is of, or None."""
        symbol, _, kind = name.partition("@")
        speeds = ("depth", "depth@100ms", "depth@250ms", "depth@500ms")
        if not self.futures:
            speeds = ("depth", "depth@100ms", "depth@1000ms")
        if kind in speeds and symbol == symbol.lower():
            upper = symbol.upper()
            return upper if upper in self.markets else None
        return None

    async def subscribe(
        self, connection: Connection, names: list[str], request_id: Any, from_url: bool = False
    ) -> None:
        def refuse() -> None:
            error: dict[str, Any] = {"code": 2, "msg": "Invalid request: streams refused"}
            if not from_url:
                error["id"] = request_id
            connection.reply(error)

        if await self.refused(connection, refuse):
            return
        for name in names:
            if name != name.lower():
                self.violation(f"stream name {name!r} is not lowercase (the docs: all lowercase)")
            connection.topics.add(name)
            symbol = self.depth_symbol(name)
            if symbol is not None:
                self.markets[symbol].running = True
        with self.lock:
            connection.record.subscriptions.extend(names)
            self.counters["subscriptions"] += len(names)
            if len(connection.topics) > 1024:
                self.violations.append(
                    f"{len(connection.topics)} streams on one connection (max 1024)"
                )
        if not from_url:
            connection.reply({"result": None, "id": request_id})

    async def on_text(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            connection.reply({"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"})
            self.violation(f"not JSON: {text[:80]!r}")
            return
        if not isinstance(request, dict) or "method" not in request:
            connection.reply({"code": 2, "msg": "Invalid request: missing field `method`"})
            self.violation(f"no method: {text[:80]!r}")
            return
        request_id = request.get("id")
        if not (
            request_id is None
            or (isinstance(request_id, int) and -(2**63) <= request_id < 2**63)
            or (isinstance(request_id, str) and _ID.fullmatch(request_id))
        ):
            connection.reply(
                {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}
            )
            self.violation(f"bad request id {request_id!r}")
            return
        method = request["method"]
        params = request.get("params", [])
        self.count("subscribe_requests" if method == "SUBSCRIBE" else f"requests_{method}")
        if method == "SUBSCRIBE":
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                connection.reply({"code": 2, "msg": "Invalid request: params", "id": request_id})
                self.violation(f"SUBSCRIBE params not a list of names: {params!r}")
                return
            await self.subscribe(connection, params, request_id)
        elif method == "UNSUBSCRIBE":
            for name in params if isinstance(params, list) else []:
                connection.topics.discard(name)
            connection.reply({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            connection.reply({"result": sorted(connection.topics), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if params[:1] != ["combined"]:
                connection.reply({"code": 0, "msg": "Unknown property", "id": request_id})
            elif method == "SET_PROPERTY":
                connection.state["combined"] = bool(params[1])
                connection.reply({"result": None, "id": request_id})
            else:
                connection.reply({"result": connection.state["combined"], "id": request_id})
        else:
            connection.reply(
                {
                    "code": 2,
                    "msg": f"Invalid request: unknown variant `{method}`, expected one of "
                    "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, "
                    "`GET_PROPERTY`",
                }
            )
            self.violation(f"unknown method {method!r}")

    def incoming(self, connection: Connection, kind: str) -> None:
        times: deque[float] = connection.state["incoming"]
        now = time.monotonic()
        times.append(now)
        while times and times[0] < now - 1.0:
            times.popleft()
        if len(times) > self.incoming_per_s:
            self.violation(
                f"{len(times)} incoming messages in a second on connection "
                f"{connection.index} (the limit is {self.incoming_per_s}): disconnected"
            )
            connection.abort("too many incoming messages")

    def connection_tasks(self, connection: Connection) -> list[Any]:
        return [self.ping_loop(connection)]

    async def ping_loop(self, connection: Connection) -> None:
        """A ping frame every interval; a ping without its pong in time ends the link."""
        pending: dict[bytes, float] = connection.state.setdefault("pending_pings", {})
        number = 0
        while not connection.closing:
            await asyncio.sleep(min(self.ping_interval_s, self.pong_timeout_s) / 4)
            now = time.monotonic()
            late = [p for p, sent in pending.items() if now - sent > self.pong_timeout_s]
            if late:
                self.violation(
                    f"no pong within {self.pong_timeout_s} s to ping {late[0]!r} on "
                    f"connection {connection.index}: disconnected"
                )
                await connection.close("no pong", code=1008)
                return
            last = connection.state.get("last_ping", 0.0)
            if connection.stalled or now - last < self.ping_interval_s:
                continue
            number += 1
            payload = f"{connection.index}-{number}".encode()
            pending[payload] = now
            connection.state["last_ping"] = now
            try:
                await connection.ws.ping(payload)
            except (ConnectionError, RuntimeError):
                return
            self.count("pings_sent")

    def on_pong(self, connection: Connection, data: bytes) -> None:
        pending: dict[bytes, float] = connection.state.setdefault("pending_pings", {})
        if pending.pop(data, None) is not None:
            self.count("pongs_matched")
        else:
            self.count("pongs_unsolicited")  # allowed by the docs

    def wants(self, connection: Connection, symbol: str) -> bool:
        return any(self.depth_symbol(name) == symbol for name in connection.topics)

    def render(self, connection: Connection, event: Event) -> Any:
        for name in sorted(connection.topics):
            if self.depth_symbol(name) == event.symbol:
                if connection.state["combined"]:
                    return {"stream": name, "data": event.data}
                return event.data
        return None

    def tick(self) -> list[Event]:
        tick_ms = max(1, int(self.tick_s * 1000))
        events = []
        for symbol, market in self.markets.items():
            if market.running:
                event = Event(symbol, self.next_version(), "diff", market.next_diff(tick_ms))
                events.append(event)
                if self.keep_truth:
                    self.remember(symbol, event.version, *_floats(market.book))
        return events

    def cross(self, symbol: str) -> None:
        market = self.markets[symbol]
        assert not market.recorded, "a crossing update goes after the recorded diffs"
        market.cross_pending = True

    def malformed(self, event: Event) -> str:
        return '{"stream":"' + event.symbol.lower() + '@depth@100ms","data":{"e":"depthUpdate","E":'

    def unknown(self, event: Event) -> Any:
        data = {"e": "mysteryEvent", "E": int(time.time() * 1000), "s": event.symbol}
        return {"stream": f"{event.symbol.lower()}@mystery", "data": data}

    # -- REST ----------------------------------------------------------------------------

    async def serve_depth(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        query = dict(request.query)
        with self.lock:
            number = self.counters["snapshot_requests"]
            self.counters["snapshot_requests"] += 1
        status, retry_after, body = self.depth_answer(query, number, now)
        headers = {"X-MBX-USED-WEIGHT-1M": str(10 * (number + 1))}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
            self.banned_until = max(self.banned_until, now + retry_after)
            self.limited_at = now
        text = json.dumps(body, separators=(",", ":"))
        with self.lock:
            self.rest.append(
                RestCall(time.time_ns(), request.path, query, status, text, retry_after)
            )
            self.counters[f"rest_{status}"] += 1
        return web.Response(
            status=status, text=text, content_type="application/json", headers=headers
        )

    def depth_answer(
        self, query: dict[str, str], number: int, now: float
    ) -> tuple[int, int | None, Any]:
        for fault in self.rest_faults:
            if fault.first <= number < fault.first + fault.count and fault.status != 200:
                message = {429: "Too many requests.", 418: "Way too many requests; IP banned."}
                body = {"code": -1003, "msg": message.get(fault.status, "Internal error.")}
                return fault.status, fault.retry_after, body
        if now < self.banned_until:
            remaining = max(1, math.ceil(self.banned_until - now))
            if now - self.limited_at < IN_FLIGHT_S:
                # Sent before the client could have read the 429/418: still limited.
                return 429, remaining, {"code": -1003, "msg": "Too many requests."}
            self.violation(
                f"snapshot request {number} came {self.banned_until - now:.3f} s before the "
                "Retry-After of the last 429/418 ran out: banned (418)"
            )
            return 418, remaining + 1, {"code": -1003, "msg": "Way too many requests; IP banned."}
        symbol = query.get("symbol", "")
        if not symbol:
            return 400, None, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent."}
        market = self.markets.get(symbol)
        if market is None:
            return 400, None, {"code": -1121, "msg": "Invalid symbol."}
        try:
            limit = int(query.get("limit", "500" if self.futures else "100"))
        except ValueError:
            limit = -1
        if limit not in (FUTURES_LIMITS if self.futures else SPOT_LIMITS):
            self.violation(f"depth limit {query.get('limit')!r} is not one the docs allow")
            message = "Data sent for parameter 'limit' is not valid."
            return 400, None, {"code": -1130, "msg": message}
        stale = [
            f.stale_by
            for f in self.rest_faults
            if f.status == 200 and f.first <= number < f.first + f.count
        ]
        return 200, None, market.snapshot(limit, stale[0] if stale else 0)

    def truth(self, symbol: str, depth: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The market's book now (for diagnostics; tests check against the reference)."""
        book = self.markets[symbol].book
        return book.top("bids", depth), book.top("asks", depth)


def _floats(book: LevelBook) -> tuple[Any, Any]:
    return tuple(
        tuple((float(p), float(q)) for p, q in book.top(side, 20)) for side in ("bids", "asks")
    )


def snapshot_counts(calls: list[RestCall]) -> collections.Counter[int]:
    """How many snapshot answers had each status."""
    return collections.Counter(call.status for call in calls)
