"""journal.collector: the collector's dicts through BookPublisher into a real journal."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import journal
from journal._inspect import summarize
from journal._layout import segment_name
from journal.collector import BookPublisher, PublishStats, Refusal
from journal.feeds import NONE_SENT
from journal.monitor._snapshot import read_writer
from tests.conftest import ASKS, BIDS, REPO, mounted_tmpfs
from tests.test_file_safety import wait_for

SEGMENT = 1 << 20
"""Small segments: these tests write a few books, and some compare whole files."""


def book(exchange: str = "upbit", symbol: str = "KRW-BTC", **changes: Any) -> dict[str, Any]:
    """An ``OrderBookV2.to_dict()`` as the collector sends it."""
    return {
        "exchangename": exchange,
        "symbol": symbol,
        "bids": BIDS,
        "asks": ASKS,
        "timestamp": 1_700_000_000_123,
        "sequence": 42,
        **changes,
    }


def read_all(path: Path) -> list[journal.OrderBookRecord]:
    with journal.Reader(path, start="beginning") as reader:
        return list(reader.available())


def segment_bytes(publisher: BookPublisher) -> bytes:
    """The whole file of the segment the publisher writes to."""
    segment = publisher.writer.position[0]
    return (publisher.path / segment_name(segment)).read_bytes()


# -- names -----------------------------------------------------------------------------

SPELLINGS = [
    (("upbit", "KRW-BTC"), ("upbit", "BTC-KRW")),
    (("upbit", "BTC"), ("upbit", "BTC-KRW")),
    (("upbit", "KRW-USDT"), ("upbit", "USDT-KRW")),
    (("UPBIT", "krw-eth"), ("upbit", "ETH-KRW")),
    (("bithumb", "BTC_KRW"), ("bithumb", "BTC-KRW")),
    (("bithumb", "XRP"), ("bithumb", "XRP-KRW")),
    (("binance", "BTCUSDT"), ("binance", "BTC-USDT")),
    (("binance", "SOL"), ("binance", "SOL-USDT")),
    (("bybit", "ETHUSDT"), ("bybit", "ETH-USDT")),
    (("binance_futures", "XRPUSDT"), ("binance-futures", "XRP-USDT")),
]


def test_every_venue_spelling_reaches_the_journal_as_base_quote(journal_dir: Path) -> None:
    before = time.time_ns()
    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        for sequence, ((exchange, symbol), _) in enumerate(SPELLINGS):
            assert publisher.publish(book(exchange, symbol, sequence=sequence)) is not None
        assert publisher.stats == PublishStats(len(SPELLINGS), dict.fromkeys(Refusal, 0), None)
    after = time.time_ns()

    records = read_all(journal_dir)
    assert [(r.exchange_name, r.symbol) for r in records] == [names for _, names in SPELLINGS]
    for sequence, record in enumerate(records):
        assert record.sequence == sequence
        assert record.timestamp == 1_700_000_000_123
        assert record.bids.tolist() == BIDS and record.asks.tolist() == ASKS
        # Stamped by the writer at the commit, on the collector clock.
        assert before <= record.local_timestamp_ns <= after


# The user's collector as it runs: its own venue names, the base alone as the symbol,
# and sequence None until a venue's first update id arrives.
USER_VENUES = {
    "binance": "binance",
    "binance_future": "binance-futures",
    "binancefuture": "binance-futures",  # older builds
    "bybit": "bybit",
    "bybit_future": "bybit-futures",
    "bybitfuture": "bybit-futures",  # older builds
    "upbit": "upbit",
    "bithumb": "bithumb",
}
USER_BASES = ("BTC", "ETH", "XRP", "SOL")


def test_the_users_collector_flow_publishes_without_a_single_refusal(shm_dir: Path) -> None:
    """Every name the user's collector sends, one journal per venue as the radar reads
    them, a None sequence first and update ids after: all published, none refused,
    stored as BASE-QUOTE with the venue's quote and None journaled as 0."""
    publishers = {
        venue: BookPublisher(shm_dir / venue, segment_size=SEGMENT)
        for venue in sorted(set(USER_VENUES.values()))
    }
    sent: dict[str, list[tuple[str, int]]] = {venue: [] for venue in publishers}
    try:
        for round_ in range(3):
            for name, venue in USER_VENUES.items():
                bases = USER_BASES + (("USDT",) if venue in ("upbit", "bithumb") else ())
                for base in bases:
                    sequence = None if round_ == 0 else 1_000 * round_ + len(sent[venue])
                    quote = "KRW" if venue in ("upbit", "bithumb") else "USDT"
                    dict_ = book(name, base, sequence=sequence)
                    assert publishers[venue].publish(dict_) is not None, name
                    sent[venue].append((f"{base}-{quote}", 0 if sequence is None else sequence))
        for venue, publisher in publishers.items():
            assert publisher.stats.refused_total == 0, (venue, publisher.stats.last_refusal)
            assert publisher.stats.published == len(sent[venue])
    finally:
        for publisher in publishers.values():
            publisher.close()
    assert set(publishers) == {
        "binance",
        "binance-futures",
        "bybit",
        "bybit-futures",
        "upbit",
        "bithumb",
    }
    for venue, expected in sent.items():
        records = read_all(shm_dir / venue)
        assert {r.exchange_name for r in records} == {venue}
        assert [(r.symbol, r.sequence) for r in records] == expected
    assert ("USDT-KRW", 0) in sent["bithumb"] and ("SOL-USDT", 0) in sent["bybit-futures"]


def test_a_none_sequence_is_journaled_as_none_sent(journal_dir: Path) -> None:
    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        assert publisher.publish(book(sequence=None)) is not None
        assert publisher.publish(book(sequence=7)) is not None
    assert [r.sequence for r in read_all(journal_dir)] == [NONE_SENT, 7] == [0, 7]


def test_a_given_local_timestamp_is_kept_and_numpy_sides_are_accepted(journal_dir: Path) -> None:
    sent = book(
        "binance",
        "BTCUSDT",
        bids=np.array(BIDS),
        asks=np.array(ASKS),
        local_timestamp_ns=123_456_789,
    )
    copy = dict(sent)
    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        position = publisher.publish(sent)
    assert sent == copy, "publish changed the caller's dict"
    [record] = read_all(journal_dir)
    assert record.position == position
    assert record.local_timestamp_ns == 123_456_789
    assert record.bids.tolist() == BIDS


# -- refusals ----------------------------------------------------------------------------

BAD_BOOKS = [
    pytest.param(None, Refusal.WRONG_TYPE, "a mapping with keys", id="none"),
    pytest.param([("upbit", "BTC")], Refusal.WRONG_TYPE, "a mapping with keys", id="list"),
    pytest.param("upbit BTC", Refusal.WRONG_TYPE, "a mapping with keys", id="str"),
    pytest.param(
        {k: v for k, v in book().items() if k != "bids"}, Refusal.MISSING_KEY, "no key 'bids'"
    ),
    pytest.param(
        {k: v for k, v in book().items() if k != "exchangename"},
        Refusal.MISSING_KEY,
        "no key 'exchangename'",
    ),
    pytest.param(book("kraken", "XBTUSD"), Refusal.UNKNOWN_NAME, "exchange 'kraken'"),
    pytest.param(book("upbit", "BTC/KRW"), Refusal.UNKNOWN_NAME, "upbit symbol 'BTC/KRW'"),
    pytest.param(book("upbit", ["BTC"]), Refusal.WRONG_TYPE, "symbol=['BTC']: expected str"),
    pytest.param(book(7, "BTC"), Refusal.WRONG_TYPE, "exchangename=7: expected str"),
    pytest.param(book(timestamp="1700000000123"), Refusal.WRONG_TYPE, "timestamp="),
    pytest.param(book(timestamp=True), Refusal.WRONG_TYPE, "timestamp=True"),
    pytest.param(book(sequence=1.5), Refusal.WRONG_TYPE, "sequence=1.5"),
    pytest.param(book(local_timestamp_ns="now"), Refusal.WRONG_TYPE, "local_timestamp_ns="),
    pytest.param(book(bids="100.0"), Refusal.WRONG_TYPE, "bids"),
    pytest.param(book(bids=[[100.0]]), Refusal.WRONG_TYPE, "bids[0]"),
    pytest.param(book(bids=[["100.0", 1.0]]), Refusal.WRONG_TYPE, "bids[0].price='100.0'"),
    pytest.param(book(bids=[[math.nan, 1.0]]), Refusal.INVALID_BOOK, "bids[0].price=nan"),
    pytest.param(book(asks=[[101.0, -1.0]]), Refusal.INVALID_BOOK, "asks[0].quantity=-1.0"),
    pytest.param(book(bids=[[101.0, 1.0]]), Refusal.INVALID_BOOK, "crossed book"),
    pytest.param(book(bids=BIDS[::-1]), Refusal.INVALID_BOOK, "strictly descending"),
    pytest.param(
        book(bids=[[100.0 - i, 1.0] for i in range(11)]), Refusal.INVALID_BOOK, "max_levels=10"
    ),
    pytest.param(book(timestamp=1 << 63), Refusal.INVALID_BOOK, "outside the int64 range"),
]


@pytest.mark.parametrize(("bad", "reason", "message"), BAD_BOOKS)
def test_a_bad_book_is_refused_counted_by_reason_and_writes_nothing(
    journal_dir: Path, bad: Any, reason: Refusal, message: str
) -> None:
    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        publisher.publish(book(sequence=1))
        position = publisher.writer.position
        before = segment_bytes(publisher)

        assert publisher.publish(bad) is None  # no exception into the collector

        assert publisher.writer.position == position
        assert segment_bytes(publisher) == before, "a refused book changed the segment"
        stats = publisher.stats
        assert stats.published == 1
        assert stats.refused == {r: int(r is reason) for r in Refusal}
        assert stats.refused_total == 1
        assert stats.last_refusal is not None and message in stats.last_refusal
        publisher.publish(book(sequence=2))
    assert [r.sequence for r in read_all(journal_dir)] == [1, 2]


def test_refusals_are_logged_in_full_first_then_summarised(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="journal.collector")
    publisher = BookPublisher(
        journal_dir, segment_size=SEGMENT, log_first=2, summary_interval_s=3600
    )
    for _ in range(5):
        publisher.publish(book(bids=[[math.nan, 1.0]]))
    publisher.publish(book("kraken", "XBTUSD"))  # a new kind: logged in full again
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3, lines
    assert all("bids[0].price=nan: not finite (invalid_book)" in line for line in lines[:2])
    assert "in a summary every 3600 s" in lines[1]
    assert "exchange 'kraken'" in lines[2] and "(unknown_name)" in lines[2]

    caplog.clear()
    publisher.close()  # what the summary had not told yet
    [summary] = [record.getMessage() for record in caplog.records]
    assert re.search(r"refused 3 more books in \d+ s \(invalid_book=3\)", summary), summary
    assert "since opening: invalid_book=5, unknown_name=1" in summary
    assert publisher.stats.refused[Refusal.INVALID_BOOK] == 5


def test_a_summary_is_logged_once_its_interval_has_passed(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="journal.collector")
    with BookPublisher(
        journal_dir, segment_size=SEGMENT, log_first=1, summary_interval_s=0.05
    ) as publisher:
        for _ in range(3):
            publisher.publish(book(sequence="x"))
        assert len(caplog.records) == 1
        time.sleep(0.06)  # the summary interval (0.05 s) must pass: no process to wait for
        publisher.publish(book(sequence="x"))
        assert len(caplog.records) == 2
        assert "refused 3 more books" in caplog.records[1].getMessage()


# -- a full tmpfs ------------------------------------------------------------------------


def test_a_full_tmpfs_is_counted_logged_and_retried_after_room_is_freed(
    shm_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    segment = 64 * 1024
    with mounted_tmpfs(shm_dir / "tiny", "512k") as tiny:
        path = tiny / "books"
        publisher = BookPublisher(path, segment_size=segment, full_retry_s=0.2)
        sequence = 0
        while publisher.publish(book(sequence=sequence)) is not None:
            sequence += 1
            assert sequence < 100_000, "the tmpfs never filled up"
        assert publisher.stats.refused[Refusal.JOURNAL_FULL] == 1
        [logged] = [r for r in caplog.records if r.name == "journal.collector"]
        assert logged.levelno == logging.ERROR
        assert "no room" in logged.getMessage() and "(journal_full)" in logged.getMessage()

        # Within the back-off the journal is not tried again: refused at once.
        started = time.perf_counter()
        for _ in range(1000):
            assert publisher.publish(book(sequence=sequence)) is None
        assert time.perf_counter() - started < 0.15
        assert publisher.stats.refused[Refusal.JOURNAL_FULL] == 1001
        # ... and every one of them counts where journal top and metrics look.
        assert read_writer(path).refused["journal_full"] == 1001

        # Free room as the compactor would, wait out the back-off: books go in again.
        oldest = sorted(path.glob("*.journal"))[0]
        oldest.unlink()
        time.sleep(0.25)  # the 0.2 s back-off, timed by the publisher: nothing to wait on
        assert publisher.publish(book(sequence=sequence)) is not None
        assert "the journal has room again; 1001 books were refused" in caplog.text
        publisher.close()
        # Every book taken is there, in order; the refused ones are not.
        sequences = [record.sequence for record in read_all(path)]
        assert sequences == list(range(sequences[0], sequence + 1))


# -- asyncio -----------------------------------------------------------------------------


def test_publishing_from_an_event_loop_keeps_it_ticking(journal_dir: Path) -> None:
    """Thousands of books published from coroutines while a 1 ms heartbeat runs: the
    heartbeat is never held up for long (loose bound: machines are noisy)."""
    books_per_burst, bursts = 50, 200

    async def collector(publisher: BookPublisher) -> list[int]:
        ticks: list[int] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            while not done.is_set():
                ticks.append(time.perf_counter_ns())
                await asyncio.sleep(0.001)

        async def websocket(exchange: str, symbol: str) -> None:
            for burst in range(bursts // 2):
                for i in range(books_per_burst):
                    publisher.publish(book(exchange, symbol, sequence=burst * 1000 + i))
                await asyncio.sleep(0.0005)  # waiting for the next message

        beat = asyncio.create_task(heartbeat())
        await asyncio.gather(websocket("upbit", "KRW-BTC"), websocket("binance", "BTCUSDT"))
        done.set()
        await beat
        return ticks

    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        ticks = asyncio.run(collector(publisher))
        assert publisher.stats.published == books_per_burst * bursts
        assert publisher.writer.position[0] >= 3, "the segment should have rolled"
    gaps_ms = np.diff(ticks) / 1e6
    assert len(ticks) >= 20
    assert np.median(gaps_ms) < 5, gaps_ms
    assert gaps_ms.max() < 100, gaps_ms.max()
    assert len(read_all(journal_dir)) == books_per_burst * bursts


# -- lifecycle -----------------------------------------------------------------------------


def test_a_closed_publisher_raises_and_closing_twice_does_nothing(journal_dir: Path) -> None:
    publisher = BookPublisher(journal_dir, segment_size=SEGMENT)
    publisher.publish(book())
    publisher.close()
    publisher.close()
    assert publisher.closed
    assert "closed" in repr(publisher)
    for sent in (book(), {"exchangename": "upbit"}):  # even a bad book: closed comes first
        with pytest.raises(journal.JournalError, match="is closed: open a new BookPublisher"):
            publisher.publish(sent)
    with pytest.raises(journal.JournalError, match="closed"):
        publisher.writer  # noqa: B018
    assert publisher.stats.published == 1
    # The lock went with it: another writer may open the journal.
    journal.Writer(journal_dir).close()


def test_a_second_publisher_on_the_same_journal_is_refused(journal_dir: Path) -> None:
    with BookPublisher(journal_dir), pytest.raises(journal.WriterLockedError):
        BookPublisher(journal_dir)


def test_close_passes_seal_on_to_the_writer(journal_dir: Path) -> None:
    with BookPublisher(journal_dir, segment_size=SEGMENT) as publisher:
        publisher.publish(book())
    assert [(s.index, s.sealed) for s in summarize(journal_dir).segments] == [(0, False)]

    publisher = BookPublisher(journal_dir, segment_size=SEGMENT)
    publisher.publish(book())
    publisher.close(seal=True)
    assert [(s.index, s.sealed, s.records) for s in summarize(journal_dir).segments] == [
        (0, True, 2),
        (1, False, 0),
    ]


def test_bad_arguments_are_refused_before_the_journal_is_created(journal_dir: Path) -> None:
    with pytest.raises(ValueError, match="none may be negative"):
        BookPublisher(journal_dir, full_retry_s=-1)
    assert not journal_dir.exists()


def test_the_example_script_runs_and_removes_its_journal() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "collector_example.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"journal (/dev/shm/\S+)", result.stdout)
    assert match, result.stdout
    assert not Path(match.group(1)).exists(), "the example left its journal behind"
    assert "read back" in result.stdout and "refused 0" in result.stdout, result.stdout


# -- a journal removed under the publisher -----------------------------------------------


def test_a_journal_removed_under_the_publisher_is_created_again_and_publishing_goes_on(
    journal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = BookPublisher(journal_dir, segment_size=64 * 1024)
    try:
        for sequence in range(100):
            assert publisher.publish(book(sequence=sequence)) is not None
        # Not while the writer's worker builds the next segment (rm -rf would race it).
        wait_for(journal_dir / segment_name(publisher.writer.position[0] + 1))
        shutil.rmtree(journal_dir)
        deadline = time.monotonic() + 30
        sequence = 100
        first_new: int | None = None  # the first book published into the new journal
        # Publish on (the publisher must never raise) until it has noticed and the
        # books land in the new journal, then a few segments more.
        while first_new is None or sequence < first_new + 1000:
            assert time.monotonic() < deadline, "the publisher never recreated its journal"
            position = publisher.publish(book(sequence=sequence))
            assert position is not None, publisher.stats.last_refusal
            if first_new is None and publisher.stats.recreated == 1:
                first_new = sequence
            sequence += 1
        stats = publisher.stats
        assert stats.recreated == 1 and stats.refused_total == 0, stats
        gone = [r for r in caplog.records if "created again" in r.getMessage()]
        assert len(gone) == 1, caplog.text
    finally:
        publisher.close()
    # The new incarnation holds every book from the one that found the journal gone.
    sequences = [record.sequence for record in read_all(journal_dir)]
    assert sequences == list(range(first_new, sequence))


def test_a_journal_that_cannot_be_created_again_is_refused_counted_and_retried(
    shm_dir: Path,
) -> None:
    parent = shm_dir / "parent"
    path = parent / "books"
    publisher = BookPublisher(path, segment_size=64 * 1024, full_retry_s=0.05)
    try:
        assert publisher.publish(book(sequence=0)) is not None
        wait_for(path / segment_name(1))
        shutil.rmtree(parent)
        parent.write_bytes(b"")  # a file where the parent directory was: cannot create
        deadline = time.monotonic() + 30
        sequence = 1
        while publisher.stats.refused[Refusal.JOURNAL_GONE] == 0:
            assert time.monotonic() < deadline
            publisher.publish(book(sequence=sequence))
            sequence += 1
        assert "cannot be created again" in (publisher.stats.last_refusal or "")
        parent.unlink()
        while publisher.stats.recreated == 0:  # retried after full_retry_s: back again
            assert time.monotonic() < deadline
            publisher.publish(book(sequence=sequence))
            sequence += 1
        assert publisher.publish(book(sequence=sequence)) is not None
    finally:
        publisher.close()
