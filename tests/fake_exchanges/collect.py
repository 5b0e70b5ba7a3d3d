"""`journal collect` run as the user runs it, against fake venues, and its journals
checked against the reference rebuild.

    run = CollectRun(shm_dir, ["binance:NKNUSDT"], {"binance": fake})
    run.wait_books("binance", 50)          # waits on the journal, with a deadline
    run.stop()                             # SIGTERM: exit 0, journals sealed
    verdict = run.verify("binance", fake, {"NKNUSDT": "NKN-USDT"})

Everything waits on a condition (books in the journal, a line on stderr, a counter
in ``collector.metrics``, a fake's record) with a deadline; nothing sleeps blind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import journal
from journal._feed_metrics import FeedCounter, FeedSnapshot, read_feed_metrics
from journal._segment import segment_indices
from tests.fake_exchanges import reference
from tests.fake_exchanges._server import FakeExchange

REPO = Path(__file__).resolve().parent.parent.parent
JOURNAL = REPO / ".venv" / "bin" / "journal"
DEADLINE_S = 30.0
POLL_S = 0.02  # a poll step inside a deadline loop
REST_VENUES = ("binance", "binance-futures")
FULL_BOOK_VENUES = ("upbit", "bithumb")


class CollectRun:
    """One ``journal collect`` process writing under ``directory/books``."""

    def __init__(
        self,
        directory: Path,
        targets: Sequence[str],
        fakes: dict[str, FakeExchange],
        *,
        depth: int = 10,
        options: Sequence[str] = (),
        ws_paths: dict[str, str] | None = None,
    ) -> None:
        """``ws_paths``: a path to give a venue's websocket URL (Binance "/ws": the
        raw endpoint); without one the collector appends the documented path."""
        self.root = directory / "books"
        self.depth = depth
        self.stderr_path = directory / f"collect-{uuid.uuid4().hex[:8]}.stderr"
        command = [str(JOURNAL), "collect", *targets, "--journal-root", str(self.root)]
        command += ["--depth", str(depth)]
        for venue, fake in fakes.items():
            path = (ws_paths or {}).get(venue, "")
            command += ["--ws-url", f"{venue}={fake.ws_url}{path}"]
            if venue in REST_VENUES:
                command += ["--rest-url", f"{venue}={fake.rest_url}"]
        command += list(options)
        self.command = command
        self._stderr = open(self.stderr_path, "w+b")  # noqa: SIM115  closed by stop/kill
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self._stderr, env=environment
        )
        self.returncode: int | None = None

    # -- the process --------------------------------------------------------------------

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def _alive_or_fail(self, what: str) -> None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"journal collect exited with {self.process.returncode} while waiting for "
                f"{what}:\n{self.stderr()}"
            )

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
        """Until ``condition()``, or fail naming ``what`` with the collector's stderr."""
        deadline = time.monotonic() + timeout
        while not condition():
            self._alive_or_fail(what)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout} s; journal collect said:\n{self.stderr()}"
                )
            time.sleep(POLL_S)

    def wait_line(self, pattern: str, timeout: float = DEADLINE_S) -> re.Match[str]:
        """The first stderr line matching ``pattern`` (a regex), once it is written."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.stderr(), re.MULTILINE)
            if match:
                found.append(match)
            return match is not None

        self.wait(seen, f"a stderr line matching {pattern!r}", timeout)
        return found[0]

    def stop(self, timeout: float = DEADLINE_S) -> str:
        """SIGTERM, then its exit status must be 0 (journals sealed); its stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"journal collect did not stop within {timeout} s of SIGTERM:\n{self.stderr()}"
            ) from None
        self._stderr.close()
        text = self.stderr()
        assert self.returncode == 0, f"journal collect exited {self.returncode}:\n{text}"
        return text

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._stderr.close()

    # -- what it wrote ------------------------------------------------------------------

    def journal(self, venue: str) -> Path:
        return self.root / venue

    def books(self, venue: str) -> list[reference.JournalBook]:
        """Every book in the venue's journal so far, in journal order."""
        path = self.journal(venue)
        if not segment_indices(path):
            return []  # no journal yet (a Reader would wait for its writer)
        out = []
        with journal.Reader(path, start="beginning", metrics=False) as reader:
            for record in reader.available():
                out.append(
                    reference.JournalBook(
                        record.exchange_name,
                        record.symbol,
                        record.timestamp,
                        record.sequence,
                        record.local_timestamp_ns,
                        tuple((float(p), float(q)) for p, q in record.bids.tolist()),
                        tuple((float(p), float(q)) for p, q in record.asks.tolist()),
                    )
                )
        return out

    def wait_books(
        self, venue: str, count: int, symbol: str | None = None, timeout: float = DEADLINE_S
    ) -> list[reference.JournalBook]:
        """Until the journal holds ``count`` books (of ``symbol``); returns them all."""
        found: list[list[reference.JournalBook]] = [[]]

        def enough() -> bool:
            found[0] = self.books(venue)
            return sum(symbol is None or b.symbol == symbol for b in found[0]) >= count

        self.wait(enough, f"{count} {venue} books{f' of {symbol}' if symbol else ''}", timeout)
        return found[0]

    def metrics(self, venue: str) -> FeedSnapshot:
        snapshot = read_feed_metrics(self.journal(venue))
        assert snapshot is not None, f"{self.journal(venue)} has no collector.metrics"
        return snapshot

    def counter(self, venue: str, symbol: str, counter: FeedCounter) -> int:
        snapshot = read_feed_metrics(self.journal(venue))
        if snapshot is None:
            return 0
        try:
            return snapshot.stream(symbol).count(counter)
        except KeyError:
            return 0

    def wait_counter(
        self,
        venue: str,
        symbol: str,
        counter: FeedCounter,
        at_least: int = 1,
        timeout: float = DEADLINE_S,
    ) -> int:
        self.wait(
            lambda: self.counter(venue, symbol, counter) >= at_least,
            f"{venue} {symbol} {counter.name} >= {at_least}",
            timeout,
        )
        return self.counter(venue, symbol, counter)

    def read_everything(self, venue: str, fake: FakeExchange, symbols: dict[str, str]) -> None:
        """Pause the fake's market data, then wait until the collector has counted every
        data frame the fake sent per symbol (``symbols``: venue spelling -> journal's),
        so that counts compare exactly: nothing is left in flight."""
        fake.pause()

        def sent(code: str) -> int:
            return sum(len(connection.data(code)) for connection in fake.snapshot().connections)

        for code, symbol in symbols.items():
            self.wait(
                lambda code=code, symbol=symbol: (
                    self.counter(venue, symbol, FeedCounter.MESSAGES) >= sent(code)
                ),
                f"{venue} {symbol}: every frame sent counted",
            )

    # -- the check ------------------------------------------------------------------------

    def verify(
        self,
        venue: str,
        fake: FakeExchange,
        symbols: dict[str, str],
        *,
        expect_violations: bool = False,
    ) -> reference.Verdict:
        """Every journaled book of ``venue`` equals the reference rebuild from what
        ``fake`` sent, in order; nothing at an id no documented rebuild reaches; the
        fake saw no broken rule. Call after ``stop`` (all frames recorded)."""
        books = self.books(venue)
        record = fake.snapshot()
        states = reference.rebuild(record, self.depth)
        verdict = reference.check(books, states, symbols, by_id=venue not in FULL_BOOK_VENUES)
        problems = verdict.problems[:10]
        assert not verdict.problems, (
            f"{len(verdict.problems)} of {len(books)} {venue} books are not books the "
            f"documented rules rebuild from what the fake sent:\n" + "\n".join(problems)
        )
        assert not verdict.timestamp_problems, "\n".join(verdict.timestamp_problems[:10])
        if not expect_violations:
            assert record.violations == [], (
                f"{venue}: the collector broke documented rules: {record.violations}"
            )
        return verdict


def symbol_books(books: Sequence[reference.JournalBook], symbol: str) -> list[Any]:
    return [book for book in books if book.symbol == symbol]


Venues = Callable[[FakeExchange], Any]
"""``venues(FakeBinance(...))`` starts a fake for the test and returns it."""
Collect = Callable[..., CollectRun]
"""``collect(targets, {venue: fake}, options=...)`` starts ``journal collect``."""


def started_venues() -> Iterator[Venues]:
    """For a test's fixture: start fake venues; every one is stopped after the test."""
    fakes: list[FakeExchange] = []

    def start(fake: FakeExchange) -> Any:
        fakes.append(fake)
        return fake.start()

    yield start
    for fake in fakes:
        fake.stop()


def collect_runs(directory: Path) -> Iterator[Collect]:
    """For a test's fixture: ``journal collect`` runs in ``directory``; killed after."""
    runs: list[CollectRun] = []

    def start(targets: Sequence[str], fakes: dict[str, FakeExchange], **options: Any) -> CollectRun:
        run = CollectRun(directory, targets, fakes, **options)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()
