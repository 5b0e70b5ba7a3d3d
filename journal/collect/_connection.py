"""One websocket connection of a venue, carrying some of its streams, kept alive for
as long as the collector runs.

Each turn: connect (within the venue's connect timeout), subscribe (acknowledged, or
for Upbit and Bithumb shown by a first book, within the subscribe timeout), then read
until the connection fails: closed by the venue, an error, or silence longer than the
venue's limit (no message at all: a half-open TCP connection looks exactly like
that). Then every book of the connection is dropped (what arrives on the next one
cannot be chained to it), and the next turn starts after a back-off with jitter
(journal.collect._backoff), reset once a connection has lived long enough.

Gaps are answered at once, while the connection goes on: a Binance book that lost
its chain fetches a REST snapshot (through the venue's rate-limit gate), a Bybit one
resubscribes its topic. Nothing raises out of ``run``: every failure is logged
(rate-limited) and counted, and the loop goes on until it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Final

import aiohttp
import orjson

from journal._feed_metrics import FeedCounter, FeedState
from journal.collect._backoff import Backoff
from journal.collect._protocol import Kind, Protocol
from journal.collect._ratelog import RateLimitedLog
from journal.collect._rest import RateLimitedError, RestError, RestGate
from journal.collect._stream import Stream
from journal.collect._venues import Venue

HEALTHY_AFTER_NS: Final = 10_000_000_000
"""A connection that delivered messages for 10 s after subscribing worked: the next
failure retries without waiting for the back-off its predecessors built up."""
CLOSE_TIMEOUT_S: Final = 2.0
"""How long closing waits for the venue's close frame: a stalled venue must not hold
a reconnect, or the collector's stop, for aiohttp's default 10 s."""
RESYNC_WAIT_S: Final = 2.0
"""A stream resubscribed (Bybit) is not resubscribed again sooner: the deltas sent
before the venue took the request still arrive, and are not a new gap. A resync that
brought no book within this long is sent again (a lost or refused request), the wait
doubling: sent at 0, 2 and 6 s; 8 s after the third (RESYNC_ATTEMPTS), the
connection is replaced."""
RESYNC_ATTEMPTS: Final = 3
WATCH_INTERVAL_S: Final = 0.5
"""How often the connection looks for resyncs that brought nothing."""
SNAPSHOT_QUIET_S: Final = 60.0
"""A stream that needed no snapshot for this long gets its next one at once; within
it, snapshot requests are spaced by a growing back-off (a gap storm must not become
a REST storm: Binance bans IPs that ignore its limits)."""

_WS_TIMEOUT: Final = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S)
_TIME_NS = time.time_ns
_WORDS = re.compile(r"[A-Za-z0-9_-]+")
_loads = orjson.loads
_BOOK = Kind.BOOK


class ConnectionDead(Exception):
    """Why a connection is given up: the text goes to the log and the status line."""


class Connection:
    """Streams of one venue over one websocket, reconnected forever."""

    def __init__(
        self,
        venue: Venue,
        protocol: Protocol,
        streams: Sequence[Stream],
        ws_url: str,
        rest_url: str | None,
        rest: RestGate | None,
        session: aiohttp.ClientSession,
        depth: int,
        lines: RateLimitedLog,
        label: str,
    ) -> None:
        self.venue = venue
        self.protocol = protocol
        self.streams = {stream.venue_symbol: stream for stream in streams}
        self.ws_url = ws_url
        self.rest_url = rest_url
        self.rest = rest
        self.session = session
        self.depth = depth
        self.lines = lines
        self.label = label  # "binance" or "binance#2" when a venue needs several
        self.backoff = Backoff()
        self.connections = 0  # made
        self.reconnects = 0  # lost or failed, and tried again (the RECONNECTS counter)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pending: set[int] = set()
        self._subscribed = False
        self._subscribed_ns = 0
        self._last_data_ns = 0
        self._refusal: str | None = None
        self._refused: set[str] = set()  # venue symbols the venue refused on this connection
        self._url: str | None = None  # the endpoint form that works (None: the first)
        self._outbox: asyncio.Queue[str] = asyncio.Queue()  # what the sender sends next

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read, reconnect, until cancelled; never raises anything else."""
        while True:
            try:
                await self._turn()
            except asyncio.CancelledError:
                self._drop_books(FeedState.STOPPED)
                raise
            except ConnectionDead as error:
                reason = str(error)
            except Exception as error:  # nothing raises out of the collector's loop
                log_key = (self.label, "unexpected", type(error).__name__)
                self.lines.log(log_key, logging.ERROR, f"{self.label}: unexpected {error!r}")
                logging.getLogger("journal.collect").debug("traceback", exc_info=True)
                reason = f"unexpected {type(error).__name__}: {error}"
            else:
                reason = "closed"
            # Healthy: it delivered for a while after subscribing (not merely lasted: a
            # connection that times out, or subscribes and falls silent, was not).
            if self._subscribed and self._last_data_ns - self._subscribed_ns >= HEALTHY_AFTER_NS:
                self.backoff.reset()
            self._drop_books(FeedState.BACKOFF)
            wait = self.backoff.next_wait()
            self.reconnects += 1
            for stream in self.streams.values():
                stream.metrics.add(FeedCounter.RECONNECTS)
            self.lines.log(
                (self.label, "lost"),
                logging.WARNING,
                f"{self.label}: connection lost: {reason}; reconnecting in {wait:.1f} s "
                f"(attempt {self.backoff.failures})",
            )
            await asyncio.sleep(wait)

    async def _turn(self) -> None:
        """One connection, from connect to its failure (raised as ConnectionDead)."""
        self._subscribed = False
        self._set_states(FeedState.CONNECTING)
        symbols = list(self.streams)
        if self._url is None:
            self._url = self.protocol.stream_url(self.ws_url, symbols)
        url = self._url
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancellation
            # that arrives as the connection completes (the stop would then hang).
            async with asyncio.timeout(self.venue.connect_timeout_s):
                ws = await self.session.ws_connect(
                    url, autoping=True, max_msg_size=0, compress=0, timeout=_WS_TIMEOUT
                )
        except TimeoutError:
            raise ConnectionDead(
                f"no connection to {url} within {self.venue.connect_timeout_s:g} s"
            ) from None
        except aiohttp.WSServerHandshakeError as error:
            if error.status == 404:
                # The next documented form, and after the last the first again: a
                # gateway restarting may answer 404 to the form it does serve.
                self._url = self.protocol.alternative_url(url, symbols)
                next_url = self._url or self.protocol.stream_url(self.ws_url, symbols)
                raise ConnectionDead(f"{url}: HTTP 404; next, {next_url}") from None
            raise ConnectionDead(f"{url} refused the websocket: HTTP {error.status}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise ConnectionDead(f"cannot connect to {url}: {error}") from None
        self.connections += 1
        helpers: list[asyncio.Task[None]] = []
        try:
            self._ws = ws
            self._refusal = None
            self._refused = set()
            self._pending = set()
            self._last_data_ns = 0
            self._set_states(FeedState.SUBSCRIBING)
            for request_id, text in self.protocol.subscribe(symbols, self.depth):
                if request_id is not None:
                    self._pending.add(request_id)
                await ws.send_str(text)
            if not self.protocol.acknowledges:
                self._pending.clear()
            self._outbox = asyncio.Queue()
            helpers.append(asyncio.create_task(self._send(ws)))
            helpers.append(asyncio.create_task(self._watch(ws)))
            if self.protocol.ping_interval_s is not None:
                helpers.append(asyncio.create_task(self._ping(self.protocol.ping_interval_s)))
            await self._read(ws, url)
        finally:
            self._ws = None
            for helper in helpers:
                helper.cancel()
            for stream in self.streams.values():
                stream.drop()  # before the close: no snapshot lands on a dead connection
            await ws.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, url: str) -> None:
        silence = self.venue.silence_s
        deadline = time.monotonic() + self.venue.subscribe_timeout_s
        on_data = self._on_data
        text_type, binary_type = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        while True:
            if self._subscribed:
                timeout = silence
            else:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    raise ConnectionDead(
                        f"no answer to the subscription within {self.venue.subscribe_timeout_s:g} s"
                    )
            try:
                message = await ws.receive(timeout=timeout)
            except TimeoutError:
                if not self._subscribed:
                    continue  # the deadline check above says it
                raise ConnectionDead(
                    f"no message for {silence:g} s (the venue's silence limit): "
                    "taken for a dead connection"
                ) from None
            kind = message.type
            if kind is text_type or kind is binary_type:
                on_data(message.data)
                if self._refusal is not None:
                    raise ConnectionDead(self._refusal)
            elif kind is aiohttp.WSMsgType.ERROR:
                raise ConnectionDead(f"websocket error: {ws.exception()}")
            elif self._refusal is not None:  # closed by _watch
                raise ConnectionDead(self._refusal)
            else:  # CLOSE, CLOSING, CLOSED
                code = ws.close_code
                raise ConnectionDead(f"closed by the venue (close code {code})")

    async def _ping(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            text = self.protocol.ping()
            if text is not None:
                self._outbox.put_nowait(text)

    async def _watch(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Resubscriptions that brought no book are sent again (the stream's topic may
        send nothing more after an unsubscribe, so no message would ever ask); after
        RESYNC_ATTEMPTS the connection is replaced."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self.rest is not None or not self._subscribed:
                continue  # REST snapshots retry in their own task
            now = time.monotonic()
            for stream in self.streams.values():
                if not stream.builder.needs_resync or stream.venue_symbol in self._refused:
                    continue
                wait = RESYNC_WAIT_S * 2 ** max(0, stream.resync_attempts - 1)
                if now - stream.resync_sent_at < wait:
                    continue
                if stream.resync_attempts >= RESYNC_ATTEMPTS:
                    self._refusal = (
                        f"{stream.symbol}: {RESYNC_ATTEMPTS} resubscriptions brought no "
                        "book: replacing the connection"
                    )
                    await ws.close()
                    return
                self._resync(stream)

    # -- messages ------------------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        """One text or binary frame: decoded, classified, given to its stream."""
        self._last_data_ns = received_ns = _TIME_NS()
        try:
            message = _loads(data)
        except orjson.JSONDecodeError as error:
            self._error("malformed", f"{self.label}: a message that is not JSON ({error})")
            return
        try:
            kind, symbol, payload = self.protocol.classify(message)
            if kind is _BOOK:
                stream = self.streams.get(symbol)  # type: ignore[arg-type]
                if stream is None:
                    self._error("symbol", f"{self.label}: a book of {symbol!r}, not subscribed")
                    return
                if not self._subscribed:
                    self._on_subscribed()
                stream.on_book(payload, received_ns)
                if stream.builder.needs_resync:
                    self._resync(stream)
            else:
                self._on_control(kind, symbol, payload)
        except Exception as error:  # a bug must not stop the venue: logged and counted
            self._error("unexpected", f"{self.label}: unexpected {error!r} on {message!r:.200}")
            logging.getLogger("journal.collect").debug("traceback", exc_info=True)

    def _on_control(self, kind: Kind, request_id: object, payload: object) -> None:
        if kind is Kind.ACK:
            self._acknowledged(request_id)
        elif kind is Kind.REFUSED:
            named = self._named_streams(str(payload))
            for stream in named:
                stream.metrics.add(FeedCounter.ERRORS)
            if not named:
                self._count_error()
            first = named and (request_id in self._pending or not self._subscribed)
            if first and self._refused | {s.venue_symbol for s in named} >= set(self.streams):
                # Every symbol of the connection refused: nothing left to carry, so it is
                # replaced, with back-off, as after a refusal that names none.
                self._refusal = f"subscription refused: {payload}"
            elif first:
                # Refused in the first subscription: a symbol the venue does not know
                # (delisted, mistyped). Later refusals are failed resyncs, which _watch
                # sends again.
                self._refused.update(stream.venue_symbol for stream in named)
                for stream in named:
                    stream.set_state(FeedState.STOPPED)
                self.lines.log(
                    (self.label, "refused", tuple(sorted(self._refused))),
                    logging.ERROR,
                    f"{self.label}: the venue refused {', '.join(s.symbol for s in named)}: "
                    f"{payload}; its other symbols go on (tried again on the next connection)",
                )
                self._acknowledged(request_id)
            elif not self._subscribed:
                self._refusal = f"subscription refused: {payload}"
            else:
                self.lines.log(
                    (self.label, "refused"), logging.WARNING, f"{self.label}: refused: {payload}"
                )
        elif kind is Kind.OTHER:
            self._error(
                "other", f"{self.label}: ignored a message of no known type: {payload!r:.200}"
            )

    def _acknowledged(self, request_id: object) -> None:
        self._pending.discard(request_id)  # type: ignore[arg-type]
        if not self._pending and not self._subscribed:
            self._on_subscribed()

    def _named_streams(self, text: str) -> list[Stream]:
        """The streams whose venue symbol a refusal names (Bybit's says
        ``topic:orderbook.50.BADUSDT``): only those are refused, not their neighbours."""
        words = set(_WORDS.findall(text))
        return [stream for symbol, stream in self.streams.items() if symbol in words]

    def _on_subscribed(self) -> None:
        self._subscribed = True
        self._subscribed_ns = _TIME_NS()
        now = time.monotonic()
        for symbol, stream in self.streams.items():
            stream.resync_sent_at = now  # the subscription is the first resync
            if symbol not in self._refused:
                stream.set_state(FeedState.SYNCING)
        logging.getLogger("journal.collect").info(
            "%s: subscribed %d stream%s (connection %d)",
            self.label,
            len(self.streams),
            "" if len(self.streams) == 1 else "s",
            self.connections,
        )

    def _error(self, what: str, text: str) -> None:
        self._count_error()
        self.lines.log((self.label, what), logging.WARNING, text)

    def _count_error(self) -> None:
        """Counted once, on the connection's first stream: not any stream's fault."""
        for stream in self.streams.values():
            stream.metrics.add(FeedCounter.ERRORS)
            break

    # -- resyncs ---------------------------------------------------------------------------

    def _resync(self, stream: Stream) -> None:
        """Get ``stream``'s book back now: a REST snapshot, or a resubscription."""
        if self.rest is not None and self.rest_url is not None:
            if stream.snapshot_task is None or stream.snapshot_task.done():
                stream.snapshot_task = asyncio.create_task(self._fetch_snapshot(stream))
            return
        now = time.monotonic()
        if self._ws is None or now - stream.resync_sent_at < RESYNC_WAIT_S:
            return
        requests = self.protocol.resubscribe(stream.venue_symbol, self.depth)
        if requests:
            stream.resync_sent_at = now
            stream.resync_attempts += 1
            for _, text in requests:
                self._outbox.put_nowait(text)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Sends what the connection queues (pings, resubscriptions), in order."""
        try:
            while True:
                await ws.send_str(await self._outbox.get())
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return  # the read loop sees the connection fail

    async def _fetch_snapshot(self, stream: Stream) -> None:
        """REST snapshots until the builder is synced (a snapshot older than the first
        diff it holds does not sync it: Binance says fetch again). Never raises."""
        try:
            await self._snapshots(stream)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # logged and counted; the next gap asks again
            self._error("unexpected", f"{self.label} {stream.symbol}: snapshot: {error!r}")
            logging.getLogger("journal.collect").debug("traceback", exc_info=True)

    async def _snapshots(self, stream: Stream) -> None:
        assert self.rest is not None and self.rest_url is not None
        url = self.protocol.snapshot_url(self.rest_url, stream.venue_symbol)
        assert url is not None
        backoff = stream.snapshot_backoff
        while stream.builder.needs_resync:
            now = time.monotonic()
            if now - stream.snapshot_at >= SNAPSHOT_QUIET_S:
                backoff.reset()  # the first snapshot after a quiet spell goes at once
            else:
                await asyncio.sleep(max(0.0, stream.snapshot_at + backoff.next_wait() - now))
            stream.snapshot_at = time.monotonic()
            try:
                body = await self.rest.get_json(url, self.venue.snapshot_weight)
            except RateLimitedError as error:
                stream.metrics.add(FeedCounter.ERRORS)
                self.lines.log((self.label, "rate"), logging.WARNING, f"{self.label}: {error}")
                continue  # the gate holds every request of the venue back until Retry-After
            except RestError as error:
                stream.metrics.add(FeedCounter.ERRORS)
                self.lines.log(
                    (self.label, "rest"),
                    logging.WARNING,
                    f"{self.label} {stream.symbol}: snapshot failed: {error}",
                )
                continue
            stream.on_snapshot(body, _TIME_NS())

    def _set_states(self, state: FeedState) -> None:
        for stream in self.streams.values():
            stream.set_state(state)

    def _drop_books(self, state: FeedState) -> None:
        for stream in self.streams.values():
            stream.drop()
            stream.set_state(state)
