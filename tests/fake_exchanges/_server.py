"""What every fake venue shares: an aiohttp server on 127.0.0.1 in a thread of its own,
the market clock, the connections with their faults, and the record of what was sent.

A test drives a fake from its own thread: ``start()`` binds a random port and returns
once the server listens; everything the server sends or receives is appended to
``record`` under ``lock`` (so a test may read it at any time, and ``wait_until`` waits
on it with a deadline); ``stop()`` closes every connection and joins the thread.

The market moves on its own clock (``tick_s``), from the first subscription to a
symbol on: like a real venue it does not wait for a client, so a client that is
disconnected or stalled misses updates and must resynchronise by the venue's rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

START_TIMEOUT_S = 10.0


class FaultKind(enum.StrEnum):
    """What can go wrong on a connection, each as the venue would show it."""

    DROP = "drop"
    """The TCP connection is cut: no close frame (a crashed server, a dead link)."""
    CLOSE = "close"
    """A clean websocket close, code 1001 (a server going away)."""
    STALL = "stall"
    """Silence: no more data, no pongs, no pings, no replies; the socket stays open."""
    GAP = "gap"
    """One data message is not sent: the venue's update ids skip."""
    DUPLICATE = "duplicate"
    """One data message is sent twice."""
    MALFORMED = "malformed"
    """A text frame that is not JSON, before the next data message."""
    UNKNOWN = "unknown"
    """A well-formed message of a type the collector cannot know, before the next data."""
    RESTART = "restart"
    """Bybit: the service restarts; a snapshot with u=1 comes, and u counts on from it."""
    CROSS = "cross"
    """Binance: the market's next update crosses the book (a bid at the best ask),
    the one after takes it back; a client must not publish it, count it, resync."""
    REFUSE = "refuse"
    """The subscription is refused (``mode``: "error" reply, "close", or "handshake")."""


@dataclass
class Fault:
    """One fault on the ``connection``-th websocket connection to the fake (from 1).

    Data faults fire before the data message that follows ``after`` data messages sent
    on that connection (of ``symbol`` only, when given). REFUSE fires at the
    connection's subscription (``mode`` "error": the venue's error reply; "close": the
    socket closed instead of a reply; "handshake": HTTP 429 before the upgrade).
    """

    kind: FaultKind
    connection: int = 1
    after: int = 0
    symbol: str | None = None
    mode: str = "error"
    fired_ns: int | None = field(default=None, compare=False)


@dataclass
class RestFault:
    """Answer snapshot requests number ``first`` .. ``first + count - 1`` (0-based)
    with ``status`` and, if given, a ``Retry-After`` of whole seconds; status 200 with
    ``stale_by`` > 0 answers with the book as it was ``stale_by`` updates ago (a
    snapshot older than the stream, which the client must fetch again)."""

    status: int
    retry_after: int | None = 1
    first: int = 0
    count: int = 1
    stale_by: int = 0


@dataclass(frozen=True)
class Sent:
    """One frame the fake sent. ``kind``: "data" (book data: a diff, a delta, a whole
    book, a venue snapshot), "control" (replies, pongs, status), "fault" (malformed or
    unknown messages), "skipped" (a GAP: recorded, never sent)."""

    index: int
    ns: int
    kind: str
    symbol: str | None
    version: int | None
    raw: str | bytes


@dataclass(frozen=True)
class Received:
    ns: int
    kind: str  # "text", "binary", "ping", "pong"
    data: str | bytes


@dataclass
class ConnectionRecord:
    """One websocket connection as the fake saw it."""

    index: int
    path: str
    query: str
    opened_ns: int
    closed_ns: int | None = None
    closed_by: str = ""
    sent: list[Sent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    subscriptions: list[str] = field(default_factory=list)
    refused: bool = False

    def data(self, symbol: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == "data" and (symbol is None or s.symbol == symbol)]


@dataclass(frozen=True)
class RestCall:
    ns: int
    path: str
    query: dict[str, str]
    status: int
    body: str
    retry_after: int | None


@dataclass
class FakeRecord:
    """Everything a fake did, copied at one instant (see FakeExchange.snapshot)."""

    venue: str
    connections: list[ConnectionRecord]
    rest: list[RestCall]
    counters: Counter[str]
    violations: list[str]


@dataclass(frozen=True)
class Event:
    """One market update, before a connection renders it in its own form."""

    symbol: str
    version: int
    kind: str
    data: Any


class Connection:
    """A live websocket connection: its queue of market events, its sender, its faults."""

    def __init__(
        self, fake: FakeExchange, ws: web.WebSocketResponse, request: web.Request, index: int
    ) -> None:
        self.fake = fake
        self.ws = ws
        self.request = request
        self.record = ConnectionRecord(
            index=index, path=request.path, query=request.query_string, opened_ns=time.time_ns()
        )
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.stalled = False
        self.closing = False
        self.data_sent = 0
        self.data_sent_by_symbol: Counter[str] = Counter()
        self.topics: set[str] = set()
        self.state: dict[str, Any] = {}  # venue-specific (format, raw/combined, ...)
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def index(self) -> int:
        return self.record.index

    def subscribed(self, symbol: str) -> bool:
        return self.fake.wants(self, symbol)

    def push(self, event: Event) -> None:
        if not self.closing:
            self.queue.put_nowait(event)

    async def send(
        self,
        payload: Any,
        kind: str,
        symbol: str | None = None,
        version: int | None = None,
        raw: str | bytes | None = None,
    ) -> None:
        """Send one frame (JSON of ``payload`` unless ``raw``) and record it."""
        if self.closing or self.ws.closed:
            return
        if raw is None:
            text = json.dumps(payload, separators=(",", ":"))
            raw = text.encode() if self.fake.binary_frames else text
        with self.fake.lock:
            self.record.sent.append(
                Sent(len(self.record.sent), time.time_ns(), kind, symbol, version, raw)
            )
            if kind == "data":
                self.fake.counters["data_sent"] += 1
        try:
            if isinstance(raw, bytes):
                await self.ws.send_bytes(raw)
            else:
                await self.ws.send_str(raw)
        except (ConnectionError, RuntimeError):
            self.closing = True

    def reply(self, payload: Any) -> None:
        """A reply (subscription, pong, status), queued behind the data already queued
        so that frames leave in the order the venue made them; none while stalled."""
        self.push(Event("", 0, "control", payload))

    def push_data(self, event: Event) -> None:
        """Book data for this connection only (a snapshot on subscribing)."""
        self.push(event)

    def skip(self, event: Event) -> None:
        with self.fake.lock:
            index = len(self.record.sent)
            self.record.sent.append(
                Sent(index, time.time_ns(), "skipped", event.symbol, event.version, b"")
            )

    def abort(self, why: str) -> None:
        """Cut the TCP connection without a close frame."""
        self.closing = True
        with self.fake.lock:
            self.record.closed_by = self.record.closed_by or why
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def close(self, why: str, code: int = 1001, message: bytes = b"") -> None:
        self.closing = True
        with self.fake.lock:
            self.record.closed_by = self.record.closed_by or why
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)

    def due_faults(self, event: Event) -> list[Fault]:
        """The data faults of this connection that fire before ``event``'s message."""
        due = []
        for fault in self.fake.faults:
            if (
                fault.fired_ns is None
                and fault.kind is not FaultKind.REFUSE
                and fault.connection == self.index
                and (fault.symbol is None or fault.symbol == event.symbol)
            ):
                sent = (
                    self.data_sent
                    if fault.symbol is None
                    else self.data_sent_by_symbol[fault.symbol]
                )
                if sent >= fault.after:
                    fault.fired_ns = time.time_ns()
                    due.append(fault)
        return due

    async def run_sender(self) -> None:
        """Send the market's events in order, applying this connection's faults."""
        while True:
            event = await self.queue.get()
            if self.closing:
                return
            if self.stalled:
                continue
            if event.kind == "control":
                await self.send(event.data, "control")
                continue
            payload = self.fake.render(self, event)
            if payload is None:
                continue
            repeat = 1
            for fault in self.due_faults(event):
                kind = fault.kind
                with self.fake.lock:
                    self.fake.counters[f"fault_{kind.value}"] += 1
                if kind is FaultKind.DROP:
                    self.abort("fault: drop")
                    return
                if kind is FaultKind.CLOSE:
                    await self.close("fault: close")
                    return
                if kind is FaultKind.STALL:
                    self.stalled = True
                elif kind is FaultKind.GAP:
                    repeat = 0
                elif kind is FaultKind.DUPLICATE:
                    repeat = 2
                elif kind is FaultKind.MALFORMED:
                    await self.send(None, "fault", raw=self.fake.malformed(event))
                elif kind is FaultKind.UNKNOWN:
                    await self.send(self.fake.unknown(event), "fault")
                elif kind is FaultKind.RESTART:
                    self.fake.restart(event.symbol)
                elif kind is FaultKind.CROSS:
                    self.fake.cross(event.symbol)
            if self.stalled:
                continue
            if repeat == 0:
                self.skip(event)
                continue
            for _ in range(repeat):
                await self.send(payload, "data", event.symbol, event.version)
            self.data_sent += 1
            self.data_sent_by_symbol[event.symbol] += 1


class FakeExchange:
    """Base of the fake venues; a subclass adds routes, markets and the venue's rules."""

    venue = "fake"
    binary_frames = False

    def __init__(
        self,
        *,
        tick_s: float = 0.02,
        faults: list[Fault] | tuple[Fault, ...] = (),
        rest_faults: list[RestFault] | tuple[RestFault, ...] = (),
        keep_truth: bool = False,
    ) -> None:
        self.tick_s = tick_s
        self.keep_truth = keep_truth
        self.truths: dict[tuple[str, int], tuple[Any, Any]] = {}
        self.faults = list(faults)
        self.rest_faults = list(rest_faults)
        self.lock = threading.Lock()
        self.connections: list[ConnectionRecord] = []
        self.rest: list[RestCall] = []
        self.counters: Counter[str] = Counter()
        self.violations: list[str] = []
        self.live: list[Connection] = []
        self.version = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- the test's side -----------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeExchange:
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.venue}", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"fake {self.venue} did not start within {START_TIMEOUT_S} s")
        if self._error is not None:
            raise RuntimeError(f"fake {self.venue} failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` in the server's loop thread (to change a market safely)."""
        assert self._loop is not None

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(START_TIMEOUT_S)

    def snapshot(self) -> FakeRecord:
        """A consistent copy of everything recorded so far."""
        with self.lock:
            return FakeRecord(
                venue=self.venue,
                connections=[
                    ConnectionRecord(
                        index=c.index,
                        path=c.path,
                        query=c.query,
                        opened_ns=c.opened_ns,
                        closed_ns=c.closed_ns,
                        closed_by=c.closed_by,
                        sent=list(c.sent),
                        received=list(c.received),
                        subscriptions=list(c.subscriptions),
                        refused=c.refused,
                    )
                    for c in self.connections
                ],
                rest=list(self.rest),
                counters=Counter(self.counters),
                violations=list(self.violations),
            )

    def pause(self) -> None:
        """Send no more market data on any connection (a stall the test asks for), so
        that it can wait until the client has read every frame sent, then compare
        counts exactly: no frame is then in flight."""
        with self.lock:
            for connection in self.live:
                connection.stalled = True

    def wait_until(
        self, condition: Callable[[FakeExchange], bool], what: str, timeout: float = 10.0
    ) -> None:
        """Until ``condition(self)`` holds (checked under the lock), or fail saying ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if condition(self):
                    return
                counters = dict(self.counters)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fake {self.venue}: {what} did not happen within {timeout} s "
                    f"(counters {counters})"
                )
            time.sleep(0.005)  # a poll step inside the deadline loop

    def remember(self, symbol: str, version: int, bids: Any, asks: Any) -> None:
        """With ``keep_truth``: the market's best 20 levels a side after ``version``
        (the self-tests compare the reference's rebuild with them)."""
        if self.keep_truth:
            with self.lock:
                self.truths[(symbol, version)] = (bids, asks)

    def truth_at(self, symbol: str, version: int, depth: int) -> tuple[Any, Any]:
        with self.lock:
            bids, asks = self.truths[(symbol, version)]
        return tuple(bids[:depth]), tuple(asks[:depth])

    def violation(self, text: str) -> None:
        """The client broke a documented rule: kept for the test to assert on."""
        with self.lock:
            self.violations.append(text)

    def count(self, key: str, amount: int = 1) -> None:
        with self.lock:
            self.counters[key] += amount

    # -- the server ------------------------------------------------------------------

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # reported by start() when it happens there
            self._error = error
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ticker = asyncio.create_task(self._tick_loop())
        self._started.set()
        await self._stop.wait()
        ticker.cancel()
        for connection in list(self.live):
            if not connection.ws.closed:  # not one the client is closing
                connection.abort("fake stopped")
        with contextlib.suppress(Exception):
            await runner.cleanup()

    async def _tick_loop(self) -> None:
        clock = asyncio.get_running_loop()
        start = clock.time()
        ticks = 0
        while True:
            ticks += 1
            await asyncio.sleep(max(0.0, start + ticks * self.tick_s - clock.time()))
            for event in self.tick():
                for connection in self.live:
                    if connection.subscribed(event.symbol):
                        connection.push(event)

    def next_version(self) -> int:
        self.version += 1
        return self.version

    async def serve_websocket(self, request: web.Request) -> web.StreamResponse:
        """Accept a websocket, run its reader and sender until either side ends it."""
        index = len(self.connections) + 1
        refuse = self.refusal(index)
        if refuse is not None and refuse.mode == "handshake":
            refuse.fired_ns = time.time_ns()
            with self.lock:
                self.counters["handshakes_refused"] += 1
                self.connections.append(
                    ConnectionRecord(
                        index=index,
                        path=request.path,
                        query=request.query_string,
                        opened_ns=time.time_ns(),
                        closed_ns=time.time_ns(),
                        closed_by="refused: HTTP 429",
                        refused=True,
                    )
                )
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "1"})
        ws = web.WebSocketResponse(
            autoping=False, heartbeat=None, compress=False, max_msg_size=1 << 22
        )
        await ws.prepare(request)
        connection = Connection(self, ws, request, index)
        with self.lock:
            self.connections.append(connection.record)
            self.counters["connections"] += 1
        self.live.append(connection)
        connection.tasks.append(asyncio.create_task(connection.run_sender()))
        connection.tasks.extend(asyncio.create_task(t) for t in self.connection_tasks(connection))
        try:
            await self.on_open(connection)
            async for message in ws:
                await self._receive(connection, message)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            connection.closing = True
            for task in connection.tasks:
                task.cancel()
            self.live.remove(connection)
            with self.lock:
                connection.record.closed_ns = time.time_ns()
                connection.record.closed_by = connection.record.closed_by or "client"
            await self.on_close(connection)
        return ws

    async def _receive(self, connection: Connection, message: Any) -> None:
        now = time.time_ns()
        record = connection.record
        if message.type is WSMsgType.TEXT:
            with self.lock:
                record.received.append(Received(now, "text", message.data))
            self.incoming(connection, "text")
            await self.on_text(connection, message.data)
        elif message.type is WSMsgType.BINARY:
            with self.lock:
                record.received.append(Received(now, "binary", message.data))
            self.incoming(connection, "binary")
            await self.on_binary(connection, message.data)
        elif message.type is WSMsgType.PING:
            message = message._replace(data=bytes(message.data))
            with self.lock:
                record.received.append(Received(now, "ping", message.data))
                self.counters["client_ping_frames"] += 1
            self.incoming(connection, "ping")
            if not connection.stalled:
                with contextlib.suppress(Exception):
                    await connection.ws.pong(message.data)
        elif message.type is WSMsgType.PONG:
            message = message._replace(data=bytes(message.data))
            with self.lock:
                record.received.append(Received(now, "pong", message.data))
            self.incoming(connection, "pong")
            self.on_pong(connection, message.data)

    def refusal(self, index: int) -> Fault | None:
        for fault in self.faults:
            if fault.kind is FaultKind.REFUSE and fault.connection == index:
                return fault
        return None

    async def refused(self, connection: Connection, answer: Callable[[], None]) -> bool:
        """Whether a REFUSE fault is for this subscription: if so it is recorded and
        counted, and the connection closed (mode "close") or ``answer()`` sends the
        venue's refusal."""
        refusal = self.refusal(connection.index)
        if refusal is None:
            return False
        refusal.fired_ns = time.time_ns()
        with self.lock:
            connection.record.refused = True
            self.counters["subscriptions_refused"] += 1
        if refusal.mode == "close":
            await connection.close("refused: closed", code=1008)
        else:
            answer()
        return True

    def open_connections(self) -> Iterator[Connection]:
        return iter(list(self.live))

    # -- what a venue defines --------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def tick(self) -> list[Event]:
        """The market's updates of one tick (already applied to its books)."""
        return []

    def wants(self, connection: Connection, symbol: str) -> bool:
        return False

    def render(self, connection: Connection, event: Event) -> Any:
        """The payload ``connection`` receives for ``event``, or None."""
        return None

    def connection_tasks(self, connection: Connection) -> list[Any]:
        """Coroutines that run while the connection is open (server pings, status)."""
        return []

    async def on_open(self, connection: Connection) -> None:
        return None

    async def on_close(self, connection: Connection) -> None:
        return None

    async def on_text(self, connection: Connection, text: str) -> None:
        return None

    async def on_binary(self, connection: Connection, data: bytes) -> None:
        await self.on_text(connection, data.decode("utf-8", "replace"))

    def on_pong(self, connection: Connection, data: bytes) -> None:
        return None

    def incoming(self, connection: Connection, kind: str) -> None:
        """Every frame the client sent (a venue that limits them counts here)."""
        return None

    def malformed(self, event: Event) -> str:
        return '{"broken": '

    def unknown(self, event: Event) -> Any:
        return {"e": "mysteryEvent", "E": int(time.time() * 1000)}

    def restart(self, symbol: str) -> None:
        return None

    def cross(self, symbol: str) -> None:
        return None
