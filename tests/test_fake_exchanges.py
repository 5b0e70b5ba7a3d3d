"""The fake exchanges speak their venues' documented protocols, and do each fault.

A tiny aiohttp client plays the collector here: it subscribes as the documentation
says, and the test checks what the fake answers, that what it sends rebuilds (by
tests.fake_exchanges.reference) to the fake's own book, and that each fault shows
on the wire as it should. The collector's own tests (tests/test_collect_*.py) rely on
all of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.fake_exchanges import (
    FakeBinance,
    FakeBithumb,
    FakeBybit,
    FakeExchange,
    FakeUpbit,
    Fault,
    FaultKind,
    RestFault,
    binance_captured,
    reference,
)

T = TypeVar("T")
DEADLINE_S = 10.0


@contextlib.asynccontextmanager
async def connect(
    url: str, **options: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]]:
    """A session and a websocket to ``url``, closed on leaving."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url, **options) as ws:
        yield session, ws


def run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(asyncio.wait_for(coroutine, DEADLINE_S))  # type: ignore[arg-type]


@pytest.fixture
def started() -> Iterator[Callable[[FakeExchange], Any]]:
    """Start fakes for a test; every one is stopped after it."""
    fakes: list[FakeExchange] = []

    def start(fake: FakeExchange) -> Any:
        fakes.append(fake)
        return fake.start()

    yield start
    for fake in fakes:
        fake.stop()


async def frames(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[Any]:
    """The next ``count`` data frames, decoded (text or binary JSON)."""
    out: list[Any] = []
    async for message in ws:
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            data = message.data
            out.append(json.loads(data) if isinstance(data, str) else json.loads(data.decode()))
            if len(out) == count:
                break
    return out


def rebuilt_as_the_fake_holds(fake: FakeExchange, depth: int) -> int:
    """Every book the reference rebuilds is the fake's own at that point (the fake
    keeps its true books with ``keep_truth``): the fake sends what it holds and the
    reference applies it by the rules. Returns how many books were compared."""
    states = [s for s in reference.rebuild(fake.snapshot(), depth) if not s.rest]
    for state in states:
        assert (state.bids, state.asks) == fake.truth_at(state.symbol, state.version, depth), (
            f"{fake.venue} {state.symbol} version {state.version}"
        )
    return len(states)


# -- Binance --------------------------------------------------------------------------------


def test_binance_combined_stream_subscribe_and_snapshot_rebuild_the_fakes_book(
    started: Callable[[FakeExchange], Any],
) -> None:
    fake: FakeBinance = started(FakeBinance(tick_s=0.005, keep_truth=True))

    async def client() -> tuple[list[Any], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            url = f"{fake.ws_url}/stream?streams=nknusdt@depth@100ms"
            async with session.ws_connect(url) as ws:
                await ws.send_str(
                    json.dumps({"method": "SUBSCRIBE", "params": ["lrcbtc@depth"], "id": 7})
                )
                first = await frames(ws, 5)
                params = {"symbol": "NKNUSDT", "limit": "1000"}
                async with session.get(f"{fake.rest_url}/api/v3/depth", params=params) as r:
                    assert r.status == 200
                    snapshot = await r.json()
                return first + await frames(ws, 60), snapshot

    received, snapshot = run(client())
    assert {"result": None, "id": 7} in received
    diffs = [f for f in received if "stream" in f]
    assert {f["stream"] for f in diffs} == {"nknusdt@depth@100ms", "lrcbtc@depth"}
    assert all(f["data"]["e"] == "depthUpdate" for f in diffs)
    assert set(snapshot) == {"lastUpdateId", "bids", "asks"}
    nkn = [f["data"] for f in diffs if f["data"]["s"] == "NKNUSDT"]
    assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(nkn))
    assert rebuilt_as_the_fake_holds(fake, 10) > 20
    record = fake.snapshot()
    assert record.counters["subscriptions"] == 2
    assert record.violations == []


def test_binance_raw_stream_path_sends_unwrapped_payloads(
    started: Callable[[FakeExchange], Any],
) -> None:
    fake: FakeBinance = started(FakeBinance(tick_s=0.005))

    async def client() -> list[Any]:
        async with connect(f"{fake.ws_url}/ws/nknusdt@depth@100ms") as (_session, ws):
            return await frames(ws, 3)

    assert [f["e"] for f in run(client())] == ["depthUpdate"] * 3


def test_binance_futures_diffs_chain_by_pu(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeBinance = started(FakeBinance(futures=True, tick_s=0.002, keep_truth=True))

    async def client() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            url = f"{fake.ws_url}/stream?streams=sushiusdt@depth@100ms"
            async with session.ws_connect(url) as ws:
                params = {"symbol": "SUSHIUSDT", "limit": "1000"}
                async with session.get(f"{fake.rest_url}/fapi/v1/depth", params=params) as r:
                    body = await r.json()
                    assert {"lastUpdateId", "E", "T", "bids", "asks"} <= set(body)
                return await frames(ws, 300)  # past the capture, into synthetic diffs

    data = [f["data"] for f in run(client())]
    assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(data))
    assert any(b["U"] != a["u"] + 1 for a, b in itertools.pairwise(data))
    assert rebuilt_as_the_fake_holds(fake, 10) > 250


def test_binance_rest_errors_and_retry_after(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeBinance = started(
        FakeBinance(rest_faults=[RestFault(429, retry_after=1, first=0, count=1)])
    )

    async def client() -> list[tuple[int, str | None, Any]]:
        answers = []
        async with aiohttp.ClientSession() as session:
            for pause, query in (
                (0.0, {"symbol": "NKNUSDT"}),  # 429 Retry-After: 1
                (0.0, {"symbol": "NKNUSDT"}),  # as if sent before the 429 was read: 429
                (0.2, {"symbol": "NKNUSDT"}),  # a client that did not wait: banned, 418
                (0.2, {"symbol": "NOPE"}),  # still inside the ban: banned again
            ):
                await asyncio.sleep(pause)  # the client's own (wrong) retry timing
                async with session.get(f"{fake.rest_url}/api/v3/depth", params=query) as r:
                    answers.append((r.status, r.headers.get("Retry-After"), await r.json()))
        return answers

    answers = run(client())
    assert [status for status, _, _ in answers] == [429, 429, 418, 418]
    assert all(retry_after is not None for _, retry_after, _ in answers)
    violations = fake.snapshot().violations
    assert len(violations) == 2 and "Retry-After" in violations[0]

    fake2: FakeBinance = started(FakeBinance())

    async def unknown_symbol() -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{fake2.rest_url}/api/v3/depth", params={"symbol": "NOPE"}) as r,
        ):
            return r.status, await r.json()

    assert run(unknown_symbol()) == (400, {"code": -1121, "msg": "Invalid symbol."})


def test_binance_stale_snapshot_is_older_than_the_stream(
    started: Callable[[FakeExchange], Any],
) -> None:
    fake: FakeBinance = started(
        FakeBinance(tick_s=0.005, rest_faults=[RestFault(200, stale_by=10, count=1)])
    )

    async def client() -> tuple[int, int]:
        async with connect(f"{fake.ws_url}/ws/nknusdt@depth@100ms") as (session, ws):
            await frames(ws, 20)
            params = {"symbol": "NKNUSDT", "limit": "1000"}
            async with session.get(f"{fake.rest_url}/api/v3/depth", params=params) as r:
                stale = (await r.json())["lastUpdateId"]
            async with session.get(f"{fake.rest_url}/api/v3/depth", params=params) as r:
                fresh = (await r.json())["lastUpdateId"]
            return stale, fresh

    stale, fresh = run(client())
    assert stale < fresh


@pytest.mark.slow
def test_binance_server_pings_need_pongs(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeBinance = started(FakeBinance(ping_interval_s=0.3, pong_timeout_s=0.6))

    async def client(autoping: bool) -> None:
        async with connect(f"{fake.ws_url}/ws", autoping=autoping) as (_session, ws):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.5):  # ~5 pings; without pongs: closed
                    async for _ in ws:
                        pass

    run(client(autoping=True))
    assert fake.snapshot().counters["pongs_matched"] >= 3
    assert fake.snapshot().violations == []
    run(client(autoping=False))  # the fake ends the connection without its pongs
    record = fake.snapshot()
    assert record.connections[-1].closed_by == "no pong"
    assert "no pong" in record.violations[-1]


def test_binance_protocol_errors_answered_as_documented(
    started: Callable[[FakeExchange], Any],
) -> None:
    fake: FakeBinance = started(FakeBinance())

    async def client() -> list[Any]:
        async with connect(f"{fake.ws_url}/ws") as (_session, ws):
            await ws.send_str("not json")
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": [], "id": 1.5}))
            await ws.send_str(
                json.dumps({"method": "SUBSCRIBE", "params": ["NKNUSDT@depth"], "id": 2})
            )
            return await frames(ws, 3)

    replies = run(client())
    assert replies[0]["code"] == 3 and replies[0]["msg"].startswith("Invalid JSON")
    assert replies[1]["code"] == 2
    assert replies[2] == {"result": None, "id": 2}
    violations = fake.snapshot().violations
    assert any("not lowercase" in v for v in violations)


def test_binance_incoming_message_limit(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeBinance = started(FakeBinance())

    async def client() -> None:
        async with connect(f"{fake.ws_url}/ws") as (_session, ws):
            for number in range(8):
                message = {"method": "LIST_SUBSCRIPTIONS", "id": number}
                await ws.send_str(json.dumps(message))
            async for _ in ws:
                pass

    run(client())
    assert fake.snapshot().connections[0].closed_by == "too many incoming messages"


# -- faults on the wire -----------------------------------------------------------------------


def binance_frames(fault: Fault, count: int, **options: Any) -> tuple[FakeBinance, list[Any]]:
    fake = FakeBinance(faults=[fault], tick_s=0.002, **options).start()
    try:

        async def client() -> list[Any]:
            out: list[Any] = []
            async with aiohttp.ClientSession() as session:
                url = f"{fake.ws_url}/stream?streams=nknusdt@depth@100ms"
                async with session.ws_connect(url) as ws:
                    try:
                        async with asyncio.timeout(0.5):
                            async for message in ws:
                                if message.type is aiohttp.WSMsgType.TEXT:
                                    out.append(message.data)
                                    if len(out) == count:
                                        break
                    except TimeoutError:
                        out.append("TIMEOUT")
                    out.append(("END", ws.close_code))
            return out

        out = run(client())
        fake.wait_until(
            lambda f: all(c.closed_ns is not None for c in f.connections), "the connection closed"
        )
        return fake, out
    finally:
        fake.stop()


def test_fault_drop_cuts_the_connection_without_a_close_frame() -> None:
    fake, out = binance_frames(Fault(FaultKind.DROP, after=5), 50)
    assert len(out) == 6 and out[-1][0] == "END"
    assert fake.snapshot().connections[0].closed_by == "fault: drop"


def test_fault_close_is_a_clean_going_away() -> None:
    _, out = binance_frames(Fault(FaultKind.CLOSE, after=5), 50)
    assert out[-1] == ("END", 1001)


def test_fault_stall_is_silence_with_the_socket_open() -> None:
    fake, out = binance_frames(Fault(FaultKind.STALL, after=5), 50)
    assert len(out) == 7 and out[5] == "TIMEOUT"
    assert fake.snapshot().connections[0].closed_by == "client"


def test_fault_gap_skips_one_update() -> None:
    fake, out = binance_frames(Fault(FaultKind.GAP, after=5), 10)
    data = [json.loads(text)["data"] for text in out[:10]]
    jumps = [b["U"] - a["u"] for a, b in itertools.pairwise(data)]
    assert jumps.count(1) == 8 and max(jumps) > 1
    sent = fake.snapshot().connections[0].sent
    assert [s.kind for s in sent].count("skipped") == 1


def test_fault_duplicate_sends_a_message_twice() -> None:
    _, out = binance_frames(Fault(FaultKind.DUPLICATE, after=5), 10)
    assert out[5] == out[6]


def test_fault_malformed_and_unknown_messages() -> None:
    _, out = binance_frames(Fault(FaultKind.MALFORMED, after=3), 8)
    with pytest.raises(json.JSONDecodeError):
        json.loads(out[3])
    _, out = binance_frames(Fault(FaultKind.UNKNOWN, after=3), 8)
    assert json.loads(out[3])["data"]["e"] == "mysteryEvent"


@pytest.mark.parametrize("mode", ["error", "close"])
def test_fault_refuse_subscription(mode: str) -> None:
    fake, out = binance_frames(Fault(FaultKind.REFUSE, mode=mode), 3)
    if mode == "error":
        assert json.loads(out[0])["code"] == 2 and out[1] == "TIMEOUT"
    else:
        assert out[-1] == ("END", 1008)
    assert fake.snapshot().connections[0].refused


def test_fault_refuse_handshake(started: Callable[[FakeExchange], Any]) -> None:
    fake = started(FakeBinance(faults=[Fault(FaultKind.REFUSE, mode="handshake")]))

    async def client() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(2):
                try:
                    ws = await session.ws_connect(f"{fake.ws_url}/ws")
                    await ws.close()
                    statuses.append(101)
                except aiohttp.WSServerHandshakeError as error:
                    statuses.append(error.status)
        return statuses

    assert run(client()) == [429, 101]
    assert fake.snapshot().connections[0].refused


# -- Bybit ------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["spot", "linear"])
def test_bybit_v5_subscribe_snapshot_deltas_ping(
    category: str, started: Callable[[FakeExchange], Any]
) -> None:
    fake: FakeBybit = started(FakeBybit(category=category, tick_s=0.002, keep_truth=True))

    async def client() -> list[Any]:
        async with connect(f"{fake.ws_url}/v5/public/{category}") as (_session, ws):
            request = {"op": "subscribe", "args": ["orderbook.50.BTCUSDT"], "req_id": "a1"}
            await ws.send_str(json.dumps(request))
            out = await frames(ws, 40)
            await ws.send_str(json.dumps({"op": "ping", "req_id": "p1"}))
            out += [
                f for f in await frames(ws, 200) if f.get("op") == "ping"
            ]  # the pong, among deltas
            return out

    received = run(client())
    reply = received[0]
    assert reply["success"] is True and reply["op"] == "subscribe"
    assert reply["ret_msg"] == ("subscribe" if category == "spot" else "")
    snapshot, *deltas = [f for f in received if "topic" in f]
    assert snapshot["type"] == "snapshot" and snapshot["topic"] == "orderbook.50.BTCUSDT"
    assert list(snapshot)[1] == ("ts" if category == "spot" else "type")
    ids = [snapshot["data"]["u"]] + [d["data"]["u"] for d in deltas]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert received[-1]["ret_msg"] == "pong"
    assert rebuilt_as_the_fake_holds(fake, 10) > 200


def test_bybit_restart_gap_and_spot_args_limit(started: Callable[[FakeExchange], Any]) -> None:
    faults = [Fault(FaultKind.GAP, after=10), Fault(FaultKind.RESTART, after=20)]
    fake: FakeBybit = started(FakeBybit(tick_s=0.002, faults=faults, keep_truth=True))

    async def client() -> list[Any]:
        async with connect(f"{fake.ws_url}/v5/public/spot") as (_session, ws):
            too_many = [f"orderbook.50.T{n}USDT" for n in range(11)]
            await ws.send_str(json.dumps({"op": "subscribe", "args": too_many}))
            await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
            return await frames(ws, 40)

    received = run(client())
    assert received[0]["success"] is False
    ids = [f["data"]["u"] for f in received if f.get("topic", "").startswith("orderbook")]
    assert ids[10] - ids[9] == 2  # the gap
    restart = [f for f in received if f.get("type") == "snapshot" and f["data"]["u"] == 1]
    assert restart, "a snapshot with u=1 after the restart"
    # Books from the gap to the restart are not vouched for; all others are the fake's.
    sent = fake.snapshot().connections[0].data("BTCUSDT")
    vouched = rebuilt_as_the_fake_holds(fake, 5)
    assert 0 < vouched < len(sent)


# -- Upbit, Bithumb -------------------------------------------------------------------------


@pytest.mark.parametrize("venue", ["upbit", "bithumb"])
def test_upbit_shaped_request_snapshot_realtime_and_ping(
    venue: str, started: Callable[[FakeExchange], Any]
) -> None:
    kind = FakeUpbit if venue == "upbit" else FakeBithumb
    fake = started(kind(tick_s=0.005, keep_truth=True))
    code = "KRW-LAMB" if venue == "upbit" else "KRW-BTC"

    async def client() -> tuple[list[Any], list[aiohttp.WSMsgType]]:
        async with connect(f"{fake.ws_url}/websocket/v1") as (_session, ws):
            request = [
                {"ticket": "t"},
                {"type": "orderbook", "codes": [f"{code}.5"]},
                {"format": "SIMPLE"},
            ]
            await ws.send_str(json.dumps(request))
            types = []
            out = []
            async for message in ws:
                types.append(message.type)
                out.append(json.loads(message.data))
                if len(out) == 5:
                    await ws.send_str("PING")
                if any(f.get("status") == "UP" for f in out):
                    break
            return out, types

    out, types = run(client())
    assert set(types) == {aiohttp.WSMsgType.BINARY}
    books = [f for f in out if f.get("ty") == "orderbook"]
    assert books[0]["st"] == "SNAPSHOT" and books[1]["st"] == "REALTIME"
    assert all(len(b["obu"]) == 5 and b["cd"] == code for b in books)
    assert ("lv" in books[0]) == (venue == "bithumb")
    assert rebuilt_as_the_fake_holds(fake, 5) == len(fake.snapshot().connections[0].data())


def test_upbit_errors_and_idle_close(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeUpbit = started(FakeUpbit(idle_timeout_s=0.4))

    async def client() -> tuple[list[Any], int | None]:
        async with connect(f"{fake.ws_url}/websocket/v1") as (_session, ws):
            await ws.send_str(json.dumps([{"type": "orderbook", "codes": ["KRW-LAMB"]}]))
            await ws.send_str(json.dumps([{"ticket": "t"}, {"format": "DEFAULT"}]))
            await ws.send_str(json.dumps([{"ticket": "t"}, {"type": "orderbook"}]))
            out = await frames(ws, 3)
            async for _ in ws:  # nothing subscribed, nothing sent: idle
                pass
            return out, ws.close_code

    out, code = run(client())
    assert [f["error"]["name"] for f in out] == ["NO_TICKET", "NO_TYPE", "NO_CODES"]
    assert code == 1000 and fake.snapshot().counters["idle_closes"] == 1


def test_bithumb_connection_request_limit(started: Callable[[FakeExchange], Any]) -> None:
    fake: FakeBithumb = started(FakeBithumb(connects_per_s=2))

    async def client() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                try:
                    ws = await session.ws_connect(f"{fake.ws_url}/websocket/v1")
                    await ws.close()
                    statuses.append(101)
                except aiohttp.WSServerHandshakeError as error:
                    statuses.append(error.status)
        return statuses

    assert run(client())[2:] == [429, 429]


def test_synthetic_markets_never_cross() -> None:
    market = binance_captured(False, ["NKNUSDT"])[0]
    for _ in range(3000):
        market.next_diff(100)
        assert not market.book.crossed()


# -- the reference has teeth -----------------------------------------------------------------


def test_the_check_catches_books_published_across_a_gap(
    started: Callable[[FakeExchange], Any],
) -> None:
    """A client that applies every diff, gap or not, journals books at update ids no
    documented rebuild reaches; one that stops at the gap passes."""
    fault = Fault(FaultKind.GAP, after=30)
    fake: FakeBinance = started(FakeBinance(tick_s=0.002, faults=[fault]))

    async def client() -> tuple[list[Any], dict[str, Any]]:
        async with connect(f"{fake.ws_url}/ws/nknusdt@depth@100ms") as (session, ws):
            first = await frames(ws, 5)
            params = {"symbol": "NKNUSDT", "limit": "1000"}
            async with session.get(f"{fake.rest_url}/api/v3/depth", params=params) as r:
                snapshot = await r.json()
            return first + await frames(ws, 60), snapshot

    diffs, snapshot = run(client())
    book = {
        "bids": {Decimal(p): q for p, q in snapshot["bids"]},
        "asks": {Decimal(p): q for p, q in snapshot["asks"]},
    }
    naive, honest, last, gapped = [], [], snapshot["lastUpdateId"], False
    for diff in diffs:
        if diff["u"] <= last:
            continue
        gapped = gapped or diff["U"] > last + 1
        for side, key in (("bids", "b"), ("asks", "a")):
            for price, quantity in diff[key]:
                if Decimal(quantity) == 0:
                    book[side].pop(Decimal(price), None)
                else:
                    book[side][Decimal(price)] = quantity
        last = diff["u"]
        bids = sorted(book["bids"], reverse=True)[:10]
        asks = sorted(book["asks"])[:10]
        journaled = reference.JournalBook(
            "binance",
            "NKN-USDT",
            diff["E"],
            diff["u"],
            0,
            tuple((float(p), float(book["bids"][p])) for p in bids),
            tuple((float(p), float(book["asks"][p])) for p in asks),
        )
        naive.append(journaled)
        if not gapped:
            honest.append(journaled)
    states = reference.rebuild(fake.snapshot(), 10)
    symbols = {"NKNUSDT": "NKN-USDT"}
    assert gapped and honest and len(naive) > len(honest)
    assert reference.check(honest, states, symbols, by_id=True).problems == []
    problems = reference.check(naive, states, symbols, by_id=True).problems
    assert len(problems) == len(naive) - len(honest)
    assert all("published while unsynced" in problem for problem in problems)
    shuffled = [honest[1], honest[0], *honest[2:]]  # out of order
    assert reference.check(shuffled, states, symbols, by_id=True).problems
    wrong = [honest[0], dataclasses.replace(honest[1], bids=honest[0].asks)]
    assert (
        "equals no rebuilt book" in reference.check(wrong, states, symbols, by_id=True).problems[0]
    )
