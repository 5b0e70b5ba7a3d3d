"""`journal collect` against fake Bybit v5 (spot, linear), Upbit and Bithumb venues.

As tests/test_collect_faults.py does for Binance: the fakes speak each venue's
documented protocol (tests/fake_exchanges), inject one fault at a time, and every
journaled book must equal the reference rebuild of what the fake sent. Bybit's books
are synced by a ``snapshot`` and its deltas' update id ``u`` (a gap: resubscribe; a
``u`` = 1 snapshot: the service restarted, start again from it); Upbit's and
Bithumb's are whole books, so a reconnect is the only resync they need. All slow.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from journal._feed_metrics import FeedCounter
from tests.fake_exchanges import (
    FakeBithumb,
    FakeBybit,
    FakeUpbit,
    Fault,
    FaultKind,
    bybit_synthetic,
)
from tests.fake_exchanges.collect import (
    Collect,
    CollectRun,
    Venues,
)

pytestmark = pytest.mark.slow

BYBIT = {"BTCUSDT": "BTC-USDT", "EOSUSDT": "EOS-USDT"}
UPBIT = {"KRW-LAMB": "LAMB-KRW", "KRW-WAVES": "WAVES-KRW"}
BITHUMB = {"KRW-BTC": "BTC-KRW", "KRW-ETH": "ETH-KRW"}
TICK_S = 0.01


def figures(run: CollectRun, venue: str, symbol: str) -> dict[str, int]:
    stream = run.metrics(venue).stream(symbol)
    return {counter.name.lower(): stream.count(counter) for counter in FeedCounter}


def more_books(run: CollectRun, venue: str, symbol: str, count: int = 30) -> None:
    now = sum(book.symbol == symbol for book in run.books(venue))
    run.wait_books(venue, now + count, symbol)


def bybit(
    venues: Venues,
    collect: Collect,
    category: str,
    faults: list[Fault] | None = None,
    options: tuple[str, ...] = (),
) -> tuple[FakeBybit, CollectRun, str]:
    venue = "bybit" if category == "spot" else "bybit-futures"
    fake = venues(FakeBybit(category=category, tick_s=TICK_S, faults=faults or []))
    run = collect([f"{venue}:{s}" for s in BYBIT], {venue: fake}, options=options)
    return fake, run, venue


# -- Bybit v5 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["spot", "linear"])
def test_bybit_books_equal_the_reference_and_a_gap_resubscribes(
    venues: Venues, collect: Collect, category: str
) -> None:
    fake, run, venue = bybit(
        venues, collect, category, [Fault(FaultKind.GAP, after=40, symbol="BTCUSDT")]
    )
    run.wait_counter(venue, "BTC-USDT", FeedCounter.RESYNCS)
    more_books(run, venue, "BTC-USDT")
    run.wait_books(venue, 60, "EOS-USDT")
    run.stop()
    verdict = run.verify(venue, fake, BYBIT)
    assert verdict.matched == len(run.books(venue))
    record = fake.snapshot()
    assert len(record.connections) == 1, "a gap is resynced on the same connection"
    topic = "orderbook.50.BTCUSDT"
    assert record.connections[0].subscriptions.count(topic) >= 2, "resubscribed for a snapshot"
    counts = figures(run, venue, "BTC-USDT")
    assert counts["gaps"] == 1 and counts["resyncs"] == 1 and counts["reconnects"] == 0, counts
    assert figures(run, venue, "EOS-USDT")["gaps"] == 0


def test_bybit_restart_snapshot_with_u_1_replaces_the_book(
    venues: Venues, collect: Collect
) -> None:
    """The documented restart: a snapshot with u=1 mid-stream; deltas go on from it."""
    fake, run, venue = bybit(
        venues, collect, "spot", [Fault(FaultKind.RESTART, after=40, symbol="BTCUSDT")]
    )
    fake.wait_until(lambda f: f.counters["fault_restart"] == 1, "the restart")
    more_books(run, venue, "BTC-USDT", 60)
    run.stop()
    run.verify(venue, fake, BYBIT)
    sequences = [book.sequence for book in run.books(venue) if book.symbol == "BTC-USDT"]
    restart = sequences.index(1, 1)  # journaled from the restart's snapshot on
    assert sequences[restart + 1 : restart + 5] == [2, 3, 4, 5]
    counts = figures(run, venue, "BTC-USDT")
    assert counts["gaps"] == 0 and counts["reconnects"] == 0, counts


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.STALL])
def test_bybit_lost_or_silent_connection_is_replaced(
    venues: Venues, collect: Collect, kind: FaultKind
) -> None:
    fake, run, venue = bybit(
        venues, collect, "linear", [Fault(kind, after=60)], ("--silence-limit", "bybit-futures=1")
    )
    fake.wait_until(lambda f: f.counters["connections"] >= 2, "a second connection", 15)
    for symbol in BYBIT.values():
        more_books(run, venue, symbol)
    run.stop()
    run.verify(venue, fake, BYBIT)
    assert figures(run, venue, "BTC-USDT")["reconnects"] >= 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(FaultKind.MALFORMED, after=30),
        Fault(FaultKind.UNKNOWN, after=30),
        Fault(FaultKind.DUPLICATE, after=30),
    ],
    ids=["malformed", "unknown", "duplicate"],
)
def test_bybit_bad_messages_are_passed_over(venues: Venues, collect: Collect, fault: Fault) -> None:
    fake, run, venue = bybit(venues, collect, "spot", [fault])
    fake.wait_until(lambda f: f.counters[f"fault_{fault.kind.value}"] == 1, "the fault")
    for symbol in BYBIT.values():
        more_books(run, venue, symbol)
    run.stop()
    run.verify(venue, fake, BYBIT)
    assert len(fake.snapshot().connections) == 1
    for symbol in BYBIT.values():
        counts = figures(run, venue, symbol)
        assert counts["gaps"] == counts["reconnects"] == 0, counts


def test_bybit_spot_takes_at_most_ten_topics_a_request(venues: Venues, collect: Collect) -> None:
    """Twelve spot symbols: Bybit spot takes up to 10 args per subscribe request (the
    fake refuses more and records it); all twelve books come, on one connection."""
    bases = ["BTC", "ETH", "XRP", "SOL", "DOGE", "ADA", "TRX", "LINK", "DOT", "LTC", "BCH", "AVAX"]
    markets = [
        bybit_synthetic(f"{base}USDT", Decimal(100 + 10 * n), Decimal("0.01"), seed=n + 1)
        for n, base in enumerate(bases)
    ]
    fake = venues(FakeBybit(markets, category="spot", tick_s=0.05))
    symbols = {f"{base}USDT": f"{base}-USDT" for base in bases}
    run = collect([f"bybit:{s}" for s in symbols], {"bybit": fake})
    for symbol in symbols.values():
        run.wait_books("bybit", 10, symbol)
    run.stop()
    run.verify("bybit", fake, symbols)  # no violation: no request of more than 10
    record = fake.snapshot()
    assert len(record.connections) == 1
    assert record.counters["subscribe_requests"] >= 2


def test_bybit_refused_subscription_is_retried(venues: Venues, collect: Collect) -> None:
    fake, run, venue = bybit(venues, collect, "spot", [Fault(FaultKind.REFUSE, mode="error")])
    for symbol in BYBIT.values():
        run.wait_books(venue, 30, symbol)
    stderr = run.stop()
    run.verify(venue, fake, BYBIT)
    assert fake.snapshot().connections[0].refused
    assert "Invalid symbol" in stderr, "logged with the venue's words"


# -- Upbit, Bithumb -------------------------------------------------------------------------------


def full_books(
    venues: Venues,
    collect: Collect,
    venue: str,
    faults: list[Fault] | None = None,
    options: tuple[str, ...] = (),
    **fake_options: Any,
) -> tuple[FakeUpbit, CollectRun, dict[str, str]]:
    kind, symbols = (FakeUpbit, UPBIT) if venue == "upbit" else (FakeBithumb, BITHUMB)
    fake = venues(kind(tick_s=TICK_S, faults=faults or [], **fake_options))
    run = collect([f"{venue}:{code}" for code in symbols], {venue: fake}, options=options)
    return fake, run, symbols


@pytest.mark.parametrize(
    ("venue", "binary"), [("upbit", True), ("bithumb", True), ("bithumb", False)]
)
def test_whole_books_equal_the_reference(
    venues: Venues, collect: Collect, venue: str, binary: bool
) -> None:
    fake, run, symbols = full_books(venues, collect, venue, binary_frames=binary)
    for symbol in symbols.values():
        run.wait_books(venue, 60, symbol)
    run.read_everything(venue, fake, symbols)
    run.stop()
    verdict = run.verify(venue, fake, symbols)
    assert verdict.matched == len(run.books(venue))
    record = fake.snapshot()
    assert len(record.connections) == 1, "all codes in one request on one connection"
    for code, symbol in symbols.items():
        counts = figures(run, venue, symbol)
        assert counts["books"] == sum(b.symbol == symbol for b in run.books(venue))
        sent = len(record.connections[0].data(code))
        assert counts["books"] <= counts["messages"] == sent
        assert counts["gaps"] == counts["reconnects"] == counts["errors"] == 0, counts


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.STALL, FaultKind.CLOSE])
def test_upbit_lost_or_silent_connection_is_replaced(
    venues: Venues, collect: Collect, kind: FaultKind
) -> None:
    fake, run, symbols = full_books(
        venues, collect, "upbit", [Fault(kind, after=40)], ("--silence-limit", "upbit=1")
    )
    fake.wait_until(lambda f: f.counters["connections"] >= 2, "a second connection", 15)
    for symbol in symbols.values():
        more_books(run, "upbit", symbol)
    run.stop()
    run.verify("upbit", fake, symbols)
    assert figures(run, "upbit", "LAMB-KRW")["reconnects"] >= 1


@pytest.mark.parametrize(
    "fault",
    [Fault(FaultKind.MALFORMED, after=30), Fault(FaultKind.UNKNOWN, after=30)],
    ids=["malformed", "unknown"],
)
def test_bithumb_bad_messages_are_passed_over(
    venues: Venues, collect: Collect, fault: Fault
) -> None:
    fake, run, symbols = full_books(venues, collect, "bithumb", [fault])
    fake.wait_until(lambda f: f.counters[f"fault_{fault.kind.value}"] == 1, "the fault")
    for symbol in symbols.values():
        more_books(run, "bithumb", symbol)
    run.stop()
    run.verify("bithumb", fake, symbols)
    assert len(fake.snapshot().connections) == 1


@pytest.mark.parametrize("mode", ["error", "handshake"])
def test_upbit_refusal_is_retried(venues: Venues, collect: Collect, mode: str) -> None:
    """An error answer to the request ({"error": {"name": ...}}) or HTTP 429 at the
    handshake: the collector tries again after back-off and gets its books."""
    fake, run, symbols = full_books(venues, collect, "upbit", [Fault(FaultKind.REFUSE, mode=mode)])
    for symbol in symbols.values():
        run.wait_books("upbit", 30, symbol)
    run.stop()
    run.verify("upbit", fake, symbols)
    assert fake.snapshot().connections[0].refused


def test_bithumb_refused_handshakes_are_retried_with_back_off(
    venues: Venues, collect: Collect
) -> None:
    """HTTP 429 at three handshakes in a row (Bithumb: more than 10 connection requests
    a second from one IP): the collector backs off, stays within the limit, connects."""
    refusals = [Fault(FaultKind.REFUSE, connection=n, mode="handshake") for n in (1, 2, 3)]
    fake, run, symbols = full_books(venues, collect, "bithumb", refusals)
    for symbol in symbols.values():
        run.wait_books("bithumb", 30, symbol)
    run.stop()
    run.verify("bithumb", fake, symbols)  # no violation: never over 10 connects a second
    attempts = fake.snapshot().connections
    assert [a.refused for a in attempts[:4]] == [True, True, True, False]
    waits = [b.opened_ns - a.opened_ns for a, b in itertools.pairwise(attempts[:4])]
    assert all(wait > 0.04e9 for wait in waits), f"back-off between attempts: {waits}"


# -- heartbeats --------------------------------------------------------------------------------


def test_heartbeats_keep_quiet_connections_open(venues: Venues, collect: Collect) -> None:
    """Markets with no update after the first book, for over 30 s: Bybit gets
    ``{"op":"ping"}`` (its pongs are messages, within the 30 s silence limit), Upbit
    and Bithumb ``PING`` before their 120 s idle close (shortened to 25 s here), whose
    ``{"status":"UP"}`` every 10 s the collector takes as life, not as an error."""
    quiet = 3600.0  # one market update an hour
    bybit_fake = venues(FakeBybit(category="spot", tick_s=quiet))
    upbit_fake = venues(FakeUpbit(tick_s=quiet, idle_timeout_s=25))
    bithumb_fake = venues(FakeBithumb(tick_s=quiet, idle_timeout_s=25))
    run = collect(
        ["bybit:BTCUSDT", "upbit:KRW-LAMB", "bithumb:KRW-BTC"],
        {"bybit": bybit_fake, "upbit": upbit_fake, "bithumb": bithumb_fake},
    )
    for fake in (upbit_fake, bithumb_fake):
        fake.wait_until(lambda f: f.counters["status_up"] >= 2, "two status UP", 45)
    bybit_fake.wait_until(lambda f: f.counters["client_pings"] >= 1, "a Bybit ping", 45)
    run.stop()
    for fake in (bybit_fake, upbit_fake, bithumb_fake):
        record = fake.snapshot()
        assert len(record.connections) == 1, f"{fake.venue}: reconnected while quiet"
        assert record.counters["idle_closes"] == 0
    for venue, symbol in (("bybit", "BTC-USDT"), ("upbit", "LAMB-KRW"), ("bithumb", "BTC-KRW")):
        counts = figures(run, venue, symbol)
        assert counts["books"] == 1 and counts["reconnects"] == counts["errors"] == 0, counts
