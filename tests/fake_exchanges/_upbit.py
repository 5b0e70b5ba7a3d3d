"""Fake Upbit and Bithumb quotation websockets (``/websocket/v1``): whole order books.

Written from the venues' documentation:

- Upbit, https://docs.upbit.com/reference/websocket-orderbook and
  https://docs.upbit.com/reference/connection ("WebSocket 사용 및 에러 안내", "연결 관리"):
  one request, a JSON array ``[{"ticket": ...}, {"type": "orderbook", "codes":
  ["KRW-BTC", "KRW-ETH.15"], "is_only_snapshot", "is_only_realtime"}, {"format":
  "DEFAULT" | "SIMPLE" | "JSON_LIST" | "SIMPLE_LIST"}]``; codes in capitals, an
  optional ``.{count}`` of 1, 5, 15 or 30 units (any other count: 30); a request
  replaces the connection's subscriptions; a ``SNAPSHOT`` book first, then
  ``REALTIME`` ones; errors as ``{"error": {"name": "WRONG_FORMAT" | "NO_TICKET" |
  "NO_TYPE" | "NO_CODES" | "INVALID_PARAM", "message": ...}}``; the connection closed
  after about 120 s with nothing sent or received; ping frames answered with pongs,
  and the text ``PING`` answered ``{"status":"UP"}``, then every 10 s while the
  connection lasts. The frames are binary (as the capture UPBIT.ws.62.0 records them).
- Bithumb, https://apidocs.bithumb.com/reference/기본-정보 and its "호가 (Orderbook)"
  and "연결 관리" pages: the same request and response shapes at
  ``wss://ws-api.bithumb.com/websocket/v1``, ``level`` in each book, the same 120 s
  idle close and ``PING`` / ``{"status":"UP"}``; more than 10 connection requests a
  second from one IP get HTTP 429.

Every book is the whole book (``orderbook_units`` pairs ask i with bid i); there is no
sequence number, so nothing can be missing and every message replaces the book.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fake_exchanges._captures import upbit_books
from tests.fake_exchanges._server import Connection, Event, FakeExchange

UNIT_COUNTS = (1, 5, 15, 30)
DEFAULT_UNITS = 30
FORMATS = ("DEFAULT", "SIMPLE", "JSON_LIST", "SIMPLE_LIST")
TYPES = ("ticker", "trade", "orderbook", "candle.1s", "candle.1m")
Unit = tuple[float, float, float, float]  # ask price, bid price, ask size, bid size


class FullBookMarket:
    """One code's whole book: the recorded books first, then sizes that keep moving."""

    def __init__(
        self,
        code: str,
        books: list[tuple[int, list[Unit]]],
        seed: int = 1,
        wall_clock: bool = False,
    ) -> None:
        assert books, f"{code}: no books to start from"
        self.code = code
        self.recorded = deque(books[1:])
        self.timestamp_ms, self.units = books[0]
        self.rng = random.Random(seed)
        self.wall_clock = wall_clock
        self.running = False

    def next_book(self, tick_ms: int) -> tuple[int, list[Unit]]:
        if self.recorded:
            self.timestamp_ms, self.units = self.recorded.popleft()
        else:
            units = list(self.units)
            for _ in range(self.rng.randint(1, 3)):
                index = self.rng.randrange(len(units))
                ask_price, bid_price, ask_size, bid_size = units[index]
                if self.rng.random() < 0.5:
                    ask_size = round(self.rng.uniform(0.001, 50.0), 8)
                else:
                    bid_size = round(self.rng.uniform(0.001, 50.0), 8)
                units[index] = (ask_price, bid_price, ask_size, bid_size)
            self.units = units
            self.timestamp_ms = (
                int(time.time() * 1000) if self.wall_clock else self.timestamp_ms + tick_ms
            )
        return self.timestamp_ms, self.units


def captured_market(code: str, seed: int = 1) -> FullBookMarket:
    """Upbit's recorded books of ``code`` (KRW-LAMB, KRW-WAVES, BTC-XTZ, ...)."""
    books = [
        (b["tms"], [(u["ap"], u["bp"], u["as"], u["bs"]) for u in b["obu"]])
        for b in upbit_books(code)
    ]
    return FullBookMarket(code, books, seed)


def synthetic_market(
    code: str, mid: Decimal, tick: Decimal, seed: int = 1, units: int = 15
) -> FullBookMarket:
    """A book around ``mid`` stamped with the wall clock."""
    rng = random.Random(seed)
    levels = [
        (
            float(mid + tick * (i + 1)),
            float(mid - tick * (i + 1)),
            round(rng.uniform(0.001, 50.0), 8),
            round(rng.uniform(0.001, 50.0), 8),
        )
        for i in range(units)
    ]
    return FullBookMarket(code, [(int(time.time() * 1000), levels)], seed, wall_clock=True)


class FakeUpbit(FakeExchange):
    """Upbit's quotation websocket with the given markets (default: the capture's)."""

    venue = "upbit"
    binary_frames = True
    level_field = False

    def __init__(
        self,
        markets: list[FullBookMarket] | None = None,
        *,
        idle_timeout_s: float = 120.0,
        status_interval_s: float = 10.0,
        binary_frames: bool | None = None,
        connects_per_s: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        default = ["KRW-LAMB", "KRW-WAVES", "BTC-XTZ"]
        self.markets = {
            m.code: m
            for m in (markets or [captured_market(c, i + 1) for i, c in enumerate(default)])
        }
        self.idle_timeout_s = idle_timeout_s
        self.status_interval_s = status_interval_s
        if binary_frames is not None:
            self.binary_frames = binary_frames
        self.connects_per_s = connects_per_s
        self.connect_times: deque[float] = deque()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/websocket/v1", self.serve_websocket_limited)

    async def serve_websocket_limited(self, request: web.Request) -> web.StreamResponse:
        """The connection-request limit (Bithumb: 10 a second per IP, then 429)."""
        if self.connects_per_s is not None:
            now = time.monotonic()
            self.connect_times.append(now)
            while self.connect_times and self.connect_times[0] < now - 1.0:
                self.connect_times.popleft()
            if len(self.connect_times) > self.connects_per_s:
                self.violation(f"more than {self.connects_per_s} connection requests in a second")
                self.count("handshakes_refused")
                return web.Response(status=429, text="Too Many Requests")
        return await self.serve_websocket(request)

    async def on_open(self, connection: Connection) -> None:
        connection.state["last_activity"] = time.monotonic()
        connection.state["codes"] = {}
        connection.state["format"] = "DEFAULT"

    def connection_tasks(self, connection: Connection) -> list[Any]:
        return [self.idle_close(connection), self.status_loop(connection)]

    async def idle_close(self, connection: Connection) -> None:
        """Closed after ``idle_timeout_s`` with nothing sent or received."""
        while not connection.closing:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            last_sent = connection.record.sent[-1].ns / 1e9 if connection.record.sent else 0.0
            last_received = (
                connection.record.received[-1].ns / 1e9 if connection.record.received else 0.0
            )
            idle_since = max(last_sent, last_received, connection.record.opened_ns / 1e9)
            if connection.stalled:  # a stalled server sends nothing, so count only the client
                idle_since = max(last_received, connection.record.opened_ns / 1e9)
            if time.time() - idle_since > self.idle_timeout_s:
                self.count("idle_closes")
                await connection.close("idle timeout", code=1000)
                return

    async def status_loop(self, connection: Connection) -> None:
        """After a text PING: {"status":"UP"} every ``status_interval_s``."""
        while not connection.closing:
            started = connection.state.get("status_since")
            await asyncio.sleep(min(0.5, self.status_interval_s / 4))
            if started is None:
                continue
            last = connection.state.get("status_last", started)
            if time.monotonic() - last >= self.status_interval_s:
                connection.state["status_last"] = time.monotonic()
                connection.reply({"status": "UP"})
                self.count("status_up")

    def error(self, connection: Connection, name: str, message: str) -> None:
        connection.reply({"error": {"name": name, "message": message}})

    async def on_text(self, connection: Connection, text: str) -> None:
        if text == "PING":
            self.count("client_pings")
            now = time.monotonic()
            connection.state.setdefault("status_since", now)
            connection.state["status_last"] = now
            connection.reply({"status": "UP"})
            self.count("status_up")
            return
        try:
            request = json.loads(text)
        except ValueError:
            self.violation(f"not JSON and not PING: {text[:80]!r}")
            self.error(connection, "WRONG_FORMAT", "요청 형식이 올바르지 않습니다.")
            return
        if not isinstance(request, list) or not all(isinstance(f, dict) for f in request):
            self.violation(f"request is not an array of objects: {text[:80]!r}")
            self.error(connection, "WRONG_FORMAT", "요청 형식이 올바르지 않습니다.")
            return
        if not any("ticket" in field for field in request):
            self.violation(f"request without a ticket: {text[:80]!r}")
            self.error(connection, "NO_TICKET", "티켓이 존재하지 않습니다.")
            return
        types = [field for field in request if "type" in field]
        if not types:
            self.error(connection, "NO_TYPE", "타입 필드가 존재하지 않습니다.")
            self.violation(f"request without a type: {text[:80]!r}")
            return
        formats = [field["format"] for field in request if "format" in field]
        if formats and formats[-1] not in FORMATS:
            self.error(connection, "INVALID_PARAM", f"format {formats[-1]}")
            self.violation(f"format {formats[-1]!r} is not one of {FORMATS}")
            return
        codes: dict[str, int] = {}
        snapshot, realtime = True, True
        for field in types:
            if field["type"] not in TYPES:
                self.error(connection, "INVALID_PARAM", f"type {field['type']}")
                self.violation(f"unknown type {field['type']!r}")
                return
            if not field.get("codes"):
                self.error(connection, "NO_CODES", "코드 필드가 존재하지 않습니다.")
                self.violation(f"type {field['type']!r} without codes")
                return
            if field["type"] != "orderbook":
                continue
            snapshot = not field.get("is_only_realtime", False)
            realtime = not field.get("is_only_snapshot", False)
            for entry in field["codes"]:
                code, _, count = str(entry).partition(".")
                if code != code.upper():
                    self.violation(f"code {entry!r} is not in capitals (the docs require it)")
                    continue
                units = int(count) if count.isdigit() else DEFAULT_UNITS
                codes[code] = units if units in UNIT_COUNTS else DEFAULT_UNITS
        self.count("subscribe_requests")
        if await self.refused(
            connection,
            lambda: self.error(connection, "INVALID_PARAM", "요청 파라미터가 올바르지 않습니다."),
        ):
            return
        connection.state["format"] = formats[-1] if formats else "DEFAULT"
        connection.state["codes"] = codes if realtime else {}
        connection.topics = set(codes)  # a new request replaces the subscriptions
        with self.lock:
            connection.record.subscriptions.extend(codes)
            self.counters["subscriptions"] += len(codes)
        for code in codes:
            market = self.markets.get(code)
            if market is None:
                continue
            market.running = True
            if snapshot:
                version = self.next_version()
                units = market.units
                connection.push_data(Event(code, version, "SNAPSHOT", (market.timestamp_ms, units)))
                if self.keep_truth:
                    bids = tuple((float(u[1]), float(u[3])) for u in units)
                    asks = tuple((float(u[0]), float(u[2])) for u in units)
                    self.remember(code, version, bids, asks)

    def wants(self, connection: Connection, symbol: str) -> bool:
        return symbol in connection.state.get("codes", {})

    def render(self, connection: Connection, event: Event) -> Any:
        units_wanted = connection.state["codes"].get(event.symbol)
        if units_wanted is None and event.kind != "SNAPSHOT":
            return None
        timestamp_ms, units = event.data
        units = units[: units_wanted or DEFAULT_UNITS]
        stream_type = "SNAPSHOT" if event.kind == "SNAPSHOT" else "REALTIME"
        simple = connection.state["format"] in ("SIMPLE", "SIMPLE_LIST")
        total_ask = sum(u[2] for u in units)
        total_bid = sum(u[3] for u in units)
        if simple:
            book: dict[str, Any] = {
                "ty": "orderbook",
                "cd": event.symbol,
                "tms": timestamp_ms,
                "tas": total_ask,
                "tbs": total_bid,
                "obu": [{"ap": a, "bp": b, "as": s, "bs": t} for a, b, s, t in units],
                "st": stream_type,
            }
            if self.level_field:
                book["lv"] = 1
        else:
            book = {
                "type": "orderbook",
                "code": event.symbol,
                "timestamp": timestamp_ms,
                "total_ask_size": total_ask,
                "total_bid_size": total_bid,
                "orderbook_units": [
                    {"ask_price": a, "bid_price": b, "ask_size": s, "bid_size": t}
                    for a, b, s, t in units
                ],
                "stream_type": stream_type,
            }
            if self.level_field:
                book["level"] = 1
        return [book] if connection.state["format"].endswith("LIST") else book

    def tick(self) -> list[Event]:
        tick_ms = max(1, int(self.tick_s * 1000))
        events = []
        for code, market in self.markets.items():
            if market.running:
                timestamp_ms, units = market.next_book(tick_ms)
                events.append(Event(code, self.next_version(), "REALTIME", (timestamp_ms, units)))
                if self.keep_truth:
                    bids = tuple((float(u[1]), float(u[3])) for u in units)
                    asks = tuple((float(u[0]), float(u[2])) for u in units)
                    self.remember(code, self.version, bids, asks)
        return events

    def malformed(self, event: Event) -> str:
        return '{"type":"orderbook","code":"' + event.symbol + '","timestamp":'

    def unknown(self, event: Event) -> Any:
        return {"type": "mystery", "code": event.symbol, "timestamp": int(time.time() * 1000)}


class FakeBithumb(FakeUpbit):
    """Bithumb's public websocket v1: Upbit's shapes plus ``level``; 10 connects/s."""

    venue = "bithumb"
    level_field = True

    def __init__(self, markets: list[FullBookMarket] | None = None, **options: Any) -> None:
        options.setdefault("connects_per_s", 10)
        if markets is None:
            markets = [
                synthetic_market("KRW-BTC", Decimal("140000000"), Decimal("1000"), seed=7),
                synthetic_market("KRW-ETH", Decimal("5000000"), Decimal("500"), seed=8),
            ]
        super().__init__(markets, **options)
