"""`journal collect` against fake Binance venues that misbehave, one fault at a time.

The fakes (tests/fake_exchanges) speak Binance's documented protocol and replay the
recorded captures; nobody who wrote the collector wrote them. For each fault the
collector must recover (reconnect, resync), every book it journals must equal the
reference rebuild of what the fake sent (tests/fake_exchanges/reference.py: by the
documented sync rules alone, so a book at an update id that no rule reaches was
published while unsynced), and its counters in ``collector.metrics`` must say what
happened. Each test runs the real command for a few seconds: all are slow.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from journal._feed_metrics import FeedCounter
from tests.fake_exchanges import FakeBinance, Fault, FaultKind, RestFault, binance_synthetic
from tests.fake_exchanges._binance import IN_FLIGHT_S
from tests.fake_exchanges.collect import (
    Collect,
    CollectRun,
    Venues,
)

pytestmark = pytest.mark.slow


SPOT = {"NKNUSDT": "NKN-USDT", "LRCBTC": "LRC-BTC"}
FUTURES = {"SUSHIUSDT": "SUSHI-USDT", "CTKUSDT": "CTK-USDT"}
TICK_S = 0.01  # a market update every 10 ms per symbol


def spot(
    venues: Venues,
    collect: Collect,
    faults: list[Fault] | None = None,
    rest_faults: list[RestFault] | None = None,
    options: tuple[str, ...] = (),
    **fake_options: Any,
) -> tuple[FakeBinance, CollectRun]:
    """A fake Binance spot with the captured NKNUSDT and LRCBTC, and a collector on it."""
    fake_options.setdefault("ping_interval_s", 0.5)  # the 20 s heartbeat, compressed
    fake = venues(
        FakeBinance(
            tick_s=TICK_S, faults=faults or [], rest_faults=rest_faults or [], **fake_options
        )
    )
    run = collect([f"binance:{s}" for s in SPOT], {"binance": fake}, options=options)
    return fake, run


def more_books(run: CollectRun, venue: str, symbol: str, count: int = 30) -> None:
    """Until ``count`` more books of ``symbol`` than now are journaled: it goes on."""
    now = sum(book.symbol == symbol for book in run.books(venue))
    run.wait_books(venue, now + count, symbol)


def figures(run: CollectRun, venue: str, symbol: str) -> dict[str, int]:
    stream = run.metrics(venue).stream(symbol)
    return {counter.name.lower(): stream.count(counter) for counter in FeedCounter}


def journaled(run: CollectRun, venue: str, symbol: str) -> int:
    return sum(book.symbol == symbol for book in run.books(venue))


# -- a well-behaved venue ---------------------------------------------------------------------


def test_books_equal_the_reference_rebuild_and_pings_are_answered(
    venues: Venues, collect: Collect
) -> None:
    fake, run = spot(venues, collect)
    run.wait_books("binance", 100, "NKN-USDT")
    run.wait_books("binance", 100, "LRC-BTC")
    fake.wait_until(lambda f: f.counters["pongs_matched"] >= 2, "two pongs")
    run.read_everything("binance", fake, SPOT)
    stderr = run.stop()
    verdict = run.verify("binance", fake, SPOT)
    assert verdict.matched == len(run.books("binance"))
    summary = re.search(r"binance: (\d+) books journaled .*\(sealed\)", stderr)
    assert summary and int(summary[1]) == verdict.matched, stderr
    record = fake.snapshot()
    assert len(record.connections) == 1, "both symbols on one connection"
    for venue_symbol, symbol in SPOT.items():
        counts = figures(run, "binance", symbol)
        assert counts["books"] == journaled(run, "binance", symbol)
        assert counts["reconnects"] == counts["gaps"] == counts["errors"] == 0, counts
        assert counts["snapshots"] >= 1
        sent = len(record.connections[0].data(venue_symbol))
        assert counts["books"] <= counts["messages"] == sent


def test_the_raw_stream_endpoint_works_too(venues: Venues, collect: Collect) -> None:
    """A URL ending in /ws: raw payloads (no {"stream", "data"} wrapper), streams
    subscribed by SUBSCRIBE."""
    fake = venues(FakeBinance(tick_s=TICK_S))
    run = collect([f"binance:{s}" for s in SPOT], {"binance": fake}, ws_paths={"binance": "/ws"})
    for symbol in SPOT.values():
        run.wait_books("binance", 50, symbol)
    run.stop()
    run.verify("binance", fake, SPOT)
    connection = fake.snapshot().connections[0]
    assert connection.path == "/ws" and sorted(connection.subscriptions) == sorted(
        f"{s.lower()}@depth@100ms" for s in SPOT
    )


# -- the connection goes ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.CLOSE])
def test_a_lost_connection_is_reconnected_and_every_book_resynced(
    venues: Venues, collect: Collect, kind: FaultKind
) -> None:
    fake, run = spot(venues, collect, [Fault(kind, connection=1, after=60)])
    fake.wait_until(lambda f: f.counters["connections"] >= 2, "a second connection")
    for symbol in SPOT.values():
        more_books(run, "binance", symbol)
    run.stop()
    run.verify("binance", fake, SPOT)
    record = fake.snapshot()
    second = record.connections[1].opened_ns
    fresh = [call for call in record.rest if call.ns > second and call.status == 200]
    assert {call.query["symbol"] for call in fresh} == set(SPOT), "a new snapshot per book"
    for symbol in SPOT.values():
        counts = figures(run, "binance", symbol)
        assert counts["reconnects"] >= 1 and counts["snapshots"] >= 2, counts


def test_a_silent_connection_is_taken_for_dead(venues: Venues, collect: Collect) -> None:
    """A stall: the socket stays open, nothing comes, not even pongs or pings."""
    fake, run = spot(
        venues,
        collect,
        [Fault(FaultKind.STALL, connection=1, after=60)],
        options=("--silence-limit", "binance=1"),
    )
    fake.wait_until(lambda f: f.counters["connections"] >= 2, "a second connection", 15)
    stalled = fake.snapshot().connections[0]
    for symbol in SPOT.values():
        more_books(run, "binance", symbol)
    run.stop()
    run.verify("binance", fake, SPOT)
    record = fake.snapshot()
    assert record.connections[0].closed_ns is not None, "the stalled connection was closed"
    assert record.connections[1].opened_ns - stalled.sent[-1].ns >= 0.9e9, (
        "replaced only after the silence limit"
    )
    assert figures(run, "binance", "NKN-USDT")["reconnects"] >= 1


# -- what arrives is wrong ----------------------------------------------------------------------


def test_a_gap_resyncs_from_a_new_snapshot_while_the_connection_goes_on(
    venues: Venues, collect: Collect
) -> None:
    fake, run = spot(venues, collect, [Fault(FaultKind.GAP, after=40, symbol="NKNUSDT")])
    run.wait_counter("binance", "NKN-USDT", FeedCounter.GAPS)
    run.wait_counter("binance", "NKN-USDT", FeedCounter.RESYNCS)
    more_books(run, "binance", "NKN-USDT")
    run.stop()
    verdict = run.verify("binance", fake, SPOT)
    assert verdict.matched > 0
    record = fake.snapshot()
    assert len(record.connections) == 1, "a gap is resynced without reconnecting"
    skipped = next(s for s in record.connections[0].sent if s.kind == "skipped")
    after = [c for c in record.rest if c.ns > skipped.ns and c.query["symbol"] == "NKNUSDT"]
    assert after, "a snapshot fetched after the gap"
    counts = figures(run, "binance", "NKN-USDT")
    assert counts["gaps"] == 1 and counts["resyncs"] == 1 and counts["reconnects"] == 0, counts
    assert figures(run, "binance", "LRC-BTC")["gaps"] == 0, "the other book is untouched"


def test_a_duplicate_is_not_a_gap(venues: Venues, collect: Collect) -> None:
    fake, run = spot(venues, collect, [Fault(FaultKind.DUPLICATE, after=40, symbol="NKNUSDT")])
    fake.wait_until(lambda f: f.counters["fault_duplicate"] == 1, "the duplicate sent")
    more_books(run, "binance", "NKN-USDT")
    run.stop()
    run.verify("binance", fake, SPOT)
    counts = figures(run, "binance", "NKN-USDT")
    assert counts["gaps"] == counts["resyncs"] == counts["reconnects"] == 0, counts
    assert len(fake.snapshot().connections) == 1


def test_a_crossed_book_is_not_journaled_and_is_resynced(venues: Venues, collect: Collect) -> None:
    """A diff that puts a bid at the best ask (taken back by the next): no venue shows a
    crossed book, so the book is dropped, counted as crossed and fetched again."""
    market = binance_synthetic("BTCUSDT", Decimal("100000"), Decimal("0.01"), False)
    fake = venues(FakeBinance([market], tick_s=TICK_S, faults=[Fault(FaultKind.CROSS, after=40)]))
    run = collect(["binance:BTCUSDT"], {"binance": fake})
    run.wait_counter("binance", "BTC-USDT", FeedCounter.CROSSED)
    run.wait_counter("binance", "BTC-USDT", FeedCounter.RESYNCS)
    more_books(run, "binance", "BTC-USDT")
    run.stop()
    run.verify("binance", fake, {"BTCUSDT": "BTC-USDT"})
    for book in run.books("binance"):
        assert book.bids[0][0] < book.asks[0][0], book
    record = fake.snapshot()
    crossing = next(s for s in record.connections[0].data() if '"1.0000"' in str(s.raw))
    assert any(call.ns > crossing.ns for call in record.rest), "a snapshot after the crossing"
    counts = figures(run, "binance", "BTC-USDT")
    assert counts["crossed"] >= 1 and counts["resyncs"] >= 1 and counts["reconnects"] == 0


@pytest.mark.parametrize("kind", [FaultKind.MALFORMED, FaultKind.UNKNOWN])
def test_a_malformed_or_unknown_message_is_counted_and_passed_over(
    venues: Venues, collect: Collect, kind: FaultKind
) -> None:
    fake, run = spot(venues, collect, [Fault(kind, after=40)])
    fake.wait_until(lambda f: f.counters[f"fault_{kind.value}"] == 1, f"the {kind} message")
    for symbol in SPOT.values():
        more_books(run, "binance", symbol)
    run.stop()
    run.verify("binance", fake, SPOT)
    assert len(fake.snapshot().connections) == 1, "no reconnect for one bad message"
    for symbol in SPOT.values():
        counts = figures(run, "binance", symbol)
        assert counts["gaps"] == counts["reconnects"] == 0, counts


@pytest.mark.parametrize("mode", ["error", "close", "handshake"])
def test_a_refused_subscription_is_retried_after_back_off(
    venues: Venues, collect: Collect, mode: str
) -> None:
    fake, run = spot(venues, collect, [Fault(FaultKind.REFUSE, connection=1, mode=mode)])
    fake.wait_until(lambda f: f.counters["connections"] >= 1 + (mode != "handshake"), "a retry")
    for symbol in SPOT.values():
        run.wait_books("binance", 30, symbol)
    stderr = run.stop()
    run.verify("binance", fake, SPOT)
    record = fake.snapshot()
    assert record.connections[0].refused and not record.connections[-1].refused
    assert figures(run, "binance", "NKN-USDT")["reconnects"] >= 1
    if mode == "error":  # logged with the venue's own words (docs/COLLECT.md)
        assert "streams refused" in stderr


# -- REST --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 418])
def test_a_rate_limited_snapshot_waits_for_retry_after(
    venues: Venues, collect: Collect, status: int
) -> None:
    """Binance: 429 (a limit broken) and 418 (banned) carry Retry-After in seconds; a
    request before it runs out breaks the rules (the fake then bans: 418)."""
    fake, run = spot(venues, collect, rest_faults=[RestFault(status, retry_after=1, count=2)])
    for symbol in SPOT.values():
        run.wait_books("binance", 30, symbol)
    run.stop()
    run.verify("binance", fake, SPOT)  # no request inside Retry-After: no violation
    calls = fake.snapshot().rest
    limited = [call for call in calls if call.status != 200]
    served = [call for call in calls if call.status == 200]
    assert limited[0].status == status
    assert min(call.ns for call in served) - limited[0].ns >= 1e9, "waited out Retry-After"


@pytest.mark.parametrize(
    "answers",
    [
        ((418, 2), (429, 1)),
        ((429, 1), (418, 2)),
    ],
)
def test_the_longest_retry_after_holds(
    venues: Venues, collect: Collect, answers: tuple[tuple[int, int], ...]
) -> None:
    """Two snapshot requests at once (two symbols), answered one 418 with Retry-After
    2 (banned for 2 s), the other 429 with Retry-After 1, in either order: no request
    may come before the ban's 2 s are over, whichever answer was read first (but
    the one request already on its way when the 418 was answered)."""
    (first, first_wait), (second, second_wait) = answers
    fake, run = spot(
        venues,
        collect,
        rest_faults=[
            RestFault(first, retry_after=first_wait, first=0),
            RestFault(second, retry_after=second_wait, first=1),
        ],
    )
    try:
        for symbol in SPOT.values():  # synced about 2 s in, if the ban is kept
            run.wait_books("binance", 30, symbol, timeout=10)
    finally:
        run.stop()
    calls = fake.snapshot().rest
    assert [call.status for call in calls[:2]] == [first, second]
    ban = next(call for call in calls if call.status == 418)
    after = [call for call in calls if call.ns > ban.ns]
    # The two requests are not always at once: the second symbol's may wait out the
    # first 429 and go with its retry, answered 418 while that retry is on its way
    # (sent before the 418 was read: the fake answers it 429, IN_FLIGHT_S).
    in_flight = [call for call in after if call.ns - ban.ns < IN_FLIGHT_S * 1e9]
    assert len(in_flight) <= 1, f"{len(in_flight)} requests right after the 418 (2 at a time)"
    later = after[len(in_flight)]
    assert later.ns - ban.ns >= 2e9, (
        f"a request {(later.ns - ban.ns) / 1e9:.3f} s after a 418 with Retry-After 2 "
        f"(answers in order: {[(c.status, c.retry_after) for c in calls[:3]]})"
    )
    run.verify("binance", fake, SPOT)


def test_a_snapshot_older_than_the_stream_is_fetched_again(
    venues: Venues, collect: Collect
) -> None:
    """The documented step: a snapshot whose lastUpdateId is below the first buffered
    event's U (a lagging REST server) cannot be synced to; fetch another."""
    fake, run = spot(
        venues,
        collect,
        rest_faults=[RestFault(200, stale_by=40, first=0, count=2)],
        warmup=40,
    )
    for symbol in SPOT.values():
        run.wait_books("binance", 30, symbol)
    run.stop()
    run.verify("binance", fake, SPOT)
    record = fake.snapshot()
    stale = {c.query["symbol"]: json.loads(c.body)["lastUpdateId"] for c in record.rest[:2]}
    first_diff = {
        json.loads(sent.raw)["data"]["s"]: json.loads(sent.raw)["data"]["U"]
        for sent in reversed(record.connections[0].data())
    }
    assert all(stale[symbol] + 1 < first_diff[symbol] for symbol in SPOT), "stale indeed"
    assert len(record.rest) >= 4, "each book fetched a snapshot again"


# -- USDT-M futures -------------------------------------------------------------------------------


def test_futures_books_chain_by_pu_and_a_gap_resyncs(venues: Venues, collect: Collect) -> None:
    fake = venues(
        FakeBinance(
            futures=True,
            tick_s=TICK_S,
            faults=[Fault(FaultKind.GAP, after=60, symbol="SUSHIUSDT")],
        )
    )
    run = collect([f"binance-futures:{s}" for s in FUTURES], {"binance-futures": fake})
    run.wait_counter("binance-futures", "SUSHI-USDT", FeedCounter.RESYNCS)
    more_books(run, "binance-futures", "SUSHI-USDT")
    run.wait_books("binance-futures", 60, "CTK-USDT")
    run.stop()
    run.verify("binance-futures", fake, FUTURES)
    record = fake.snapshot()
    assert all(call.path == "/fapi/v1/depth" for call in record.rest)
    assert len(record.connections) == 1
    counts = figures(run, "binance-futures", "SUSHI-USDT")
    assert counts["gaps"] == 1 and counts["resyncs"] == 1, counts
    assert figures(run, "binance-futures", "CTK-USDT")["gaps"] == 0
    subscribed = json.dumps(record.connections[0].subscriptions)
    assert "sushiusdt@depth" in subscribed


def test_futures_duplicate_is_not_a_gap(venues: Venues, collect: Collect) -> None:
    """A replayed diff's pu is not the book's u, but its u is at the book's id: a
    replay, ignored, not a gap (issue #12: "a replayed u at or below the book's id is
    not a gap")."""
    fault = Fault(FaultKind.DUPLICATE, after=60, symbol="SUSHIUSDT")
    fake = venues(FakeBinance(futures=True, tick_s=TICK_S, faults=[fault]))
    run = collect([f"binance-futures:{s}" for s in FUTURES], {"binance-futures": fake})
    fake.wait_until(lambda f: f.counters["fault_duplicate"] == 1, "the duplicate sent")
    more_books(run, "binance-futures", "SUSHI-USDT")
    run.stop()
    run.verify("binance-futures", fake, FUTURES)
    counts = figures(run, "binance-futures", "SUSHI-USDT")
    assert counts["gaps"] == counts["resyncs"] == counts["reconnects"] == 0, counts
