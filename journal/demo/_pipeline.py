"""``journal demo``: the whole product in one command.

Starts, each in its own process: the synthetic multi-exchange feed publishing
through the collector publisher into one journal per venue in /dev/shm (as
``journal collect`` writes them, each with the collector's feed metrics), the C++
radar tailing them (its live table on the terminal, its results in a results
journal, its own metrics beside them), and the compactor archiving every sealed
segment. With ``--metrics-listen HOST:PORT`` the demo serves the metrics of all of
it (writers, readers, feeds, radar) for Prometheus while it runs; without, it
prints the ``journal metrics WORKSPACE --listen`` command that serves the same (its
/dev/shm workspace holds ``books/<venue>`` and ``results``). After the chosen
duration, or at Ctrl-C, it stops them in the order that loses nothing (feed, then
radar once it has read every book, then compactor after a last pass), checks that
every book written was read by the radar and archived, prints a summary and draws
the charts of the offline analysis. Nothing stays in /dev/shm unless asked.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from journal._errors import JournalError
from journal._reader import Reader
from journal.archive import _archive
from journal.demo.feed import VENUES
from journal.monitor._snapshot import ReaderFigures, read_reader, read_writer, reader_files

if TYPE_CHECKING:  # prometheus_client, the metrics extra: imported for --metrics-listen only
    from journal.monitor._exporter import MetricsServer

REPO = Path(__file__).resolve().parents[2]
CHECKOUT_RADAR = REPO / "build" / "release" / "radar"  # make setup, in a checkout
RADAR_HOW_TO_GET = (
    "`pip install .` in the repository builds it into the environment's bin/ (it needs a "
    "C++17 compiler; a wheel built with JOURNAL_WITHOUT_RADAR=1 has none), `make setup` "
    "into build/release/radar, or give --radar PATH"
)
SEGMENT_SIZE = 4 * 1024 * 1024
KEEP_SEGMENTS = 2
# Taker fees in basis points, as the venues publish them for a plain account.
FEES_BPS = {"upbit": 5, "bithumb": 4, "binance": 10, "bybit": 10}
STOP_TIMEOUT_S = 10.0
RADAR_CATCH_UP_S = 10.0
RADAR_NAME = "radar"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float
    rate: int
    seed: int
    output: Path
    radar: Path
    idle: str
    keep_shm: bool
    metrics_listen: str | None = None
    """HOST:PORT to serve the pipeline's metrics on (journal metrics --listen)."""


@dataclass
class RadarSummary:
    """What the radar printed when it stopped (its stderr)."""

    books: int | None = None
    latency: str | None = None
    out_of_order: int | None = None
    verify_failures: int | None = None
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> RadarSummary:
        def number(pattern: str) -> int | None:
            match = re.search(pattern, text)
            return int(match[1]) if match else None

        latency = re.search(r"publish-to-observe latency: ([^(\n]*)", text)
        return cls(
            books=number(r"radar summary: (\d+) books"),
            latency=latency[1].strip() if latency else None,
            out_of_order=number(r"out of order or repeated \(per symbol\): (\d+)"),
            verify_failures=number(r"verify failures: (\d+) journals stopped"),
            text=text,
        )


@dataclass
class Outcome:
    """The figures the summary prints and the checks it makes."""

    books_written: int = 0
    books_per_stream: dict[str, int] = field(default_factory=dict)
    archived_records: int = 0
    archived_segments: int = 0
    archive_bytes: int = 0
    raw_bytes: int = 0
    radar: RadarSummary = field(default_factory=RadarSummary)
    problems: list[str] = field(default_factory=list)


def find_radar() -> Path | None:
    """The radar a plain ``journal demo`` runs (``--radar`` overrides): the one a wheel
    installed among this Python's scripts (the venv's bin/ beside ``journal``, or the
    user scheme's for ``pip install --user``), then a checkout's build/release/radar
    (the editable install of ``make setup`` builds it there), then ``radar`` on PATH,
    last because the name is generic. None if there is none (RADAR_HOW_TO_GET)."""
    schemes = [sysconfig.get_default_scheme()]
    if site.ENABLE_USER_SITE:  # not in a venv: pip install --user's ~/.local/bin
        schemes.append(sysconfig.get_preferred_scheme("user"))
    candidates = [Path(sysconfig.get_path("scripts", scheme)) / "radar" for scheme in schemes]
    on_path = shutil.which("radar")
    for path in [*candidates, CHECKOUT_RADAR, *([Path(on_path)] if on_path else [])]:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


class PipelineError(Exception):
    """A process of the pipeline failed: stop the others in order and report it."""


class StopRequested(Exception):
    """Ctrl-C or SIGTERM: stop the pipeline in order and summarise what ran."""


class _Signals:
    """First SIGINT/SIGTERM: ask for an orderly stop, which the pipeline checks for
    between steps (raising from the handler could cut a process start in half).
    Second: KeyboardInterrupt, and everything is killed at once."""

    def __init__(self) -> None:
        self.requested = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _Signals:
        for number in (signal.SIGINT, signal.SIGTERM):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.requested += 1
        if self.requested > 1:
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise StopRequested


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the demo dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class _Children:
    """The pipeline's processes, each in its own session so that Ctrl-C reaches only
    the demo, which then stops them in order."""

    def __init__(self) -> None:
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            argv, start_new_session=True, preexec_fn=_die_with_parent, **kwargs
        )
        self.running[name] = child
        return child

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal ``name``, wait for it; killed if it does not stop within ``timeout``.
        A process never started (Ctrl-C came first) counts as stopped cleanly."""
        child = self.running.get(name)
        if child is None:
            return 0
        # Still in ``running`` while waited for: a second Ctrl-C (kill_all) reaches it.
        asked = child.poll() is None
        if asked:
            child.send_signal(sig)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"journal demo: {name} did not stop in {timeout:.0f} s, killed",
                    file=sys.stderr,
                )
                child.kill()
                child.wait()
        del self.running[name]
        # Ended by the signal asked of it, before it could set its handler: a stop.
        return 0 if asked and child.returncode == -sig else child.returncode

    def kill_all(self) -> None:
        for child in self.running.values():
            if child.poll() is None:
                child.kill()
            child.wait()
        self.running.clear()


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


@contextlib.contextmanager
def _shm_workspace(keep: bool) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="journal-demo-", dir="/dev/shm"))
    try:
        yield directory
    finally:
        if keep:
            print(f"kept {directory} (--keep-shm)")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str, signals: _Signals) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        signals.check()
        if time.monotonic() > deadline:
            raise PipelineError(f"{what} within {timeout:.0f} s")
        time.sleep(0.02)


def _new_run_directory(output: Path) -> Path:
    """``OUTPUT/run-<local time>``, with a suffix when a run started the same second."""
    output.mkdir(parents=True, exist_ok=True)
    stem = datetime.now().strftime("run-%Y%m%d-%H%M%S")
    for attempt in itertools.count(1):
        run_dir = output / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        return run_dir
    raise AssertionError("unreachable")


def run_demo(options: DemoOptions) -> int:
    if not options.radar.is_file():
        print(
            f"journal demo: the radar {options.radar} is not a file: {RADAR_HOW_TO_GET}",
            file=sys.stderr,
        )
        return 2
    run_dir = _new_run_directory(options.output)
    outcome = Outcome()
    children = _Children()
    interrupted = False
    with (
        _Signals() as signals,  # first: a signal from here on is an orderly stop
        _shm_workspace(options.keep_shm) as shm,
        contextlib.ExitStack() as files,
    ):
        books, results, archive = shm / "books", shm / "results", run_dir / "archive"
        served_at = None
        if options.metrics_listen is not None:
            try:
                served_at = files.enter_context(_serve_metrics(options.metrics_listen, shm)).url
            except JournalError as error:
                print(f"journal demo: {error}", file=sys.stderr)
                run_dir.rmdir()
                return 2
        logs = {
            name: files.enter_context(open(run_dir / f"{name}.log", "wb"))
            for name in ("feed", "radar", "compact")
        }
        print(
            f"journal demo: feed -> {books} -> radar, compactor -> {archive}\n"
            f"  {options.rate:,} books/s for {options.duration_s:g} s; "
            f"Ctrl-C stops everything cleanly; logs in {run_dir}\n"
            f"  {_metrics_hint(shm, served_at)}",
            flush=True,
        )
        try:
            try:
                _start(children, options, books, results, archive, logs, signals)
                _run_until_done(children, signals)
            except StopRequested:
                interrupted = True
                print("\njournal demo: stopping (Ctrl-C again to kill at once)", file=sys.stderr)
            except PipelineError as error:
                outcome.problems.append(str(error))
                print(f"\njournal demo: {error}; stopping", file=sys.stderr)
            signals.requested = 1  # from now on Ctrl-C kills
            _stop_in_order(children, books, archive, outcome)
        except KeyboardInterrupt:
            print("journal demo: killed", file=sys.stderr)
            return 130
        finally:
            children.kill_all()
        outcome.radar = RadarSummary.parse((run_dir / "radar.log").read_text(errors="replace"))
        _account(outcome, books, archive)
        premiums = _premiums_seen(results)
    chart = _analyze(archive, run_dir)
    _print_summary(outcome, premiums, chart, run_dir)
    if interrupted:
        return 130
    return 1 if outcome.problems else 0


def _serve_metrics(
    listen: str, workspace: Path
) -> contextlib.AbstractContextManager[MetricsServer]:
    """The metrics of the journals in the demo's ``workspace`` on ``listen``, found at
    each scrape (they appear as the pipeline starts): the venues' journals
    ``books/<venue>`` (writer, the radar's registration, feed) and ``results`` (the
    radar's own metrics), as ``journal metrics WORKSPACE --listen`` serves them."""
    from journal.monitor._exporter import serving

    return serving([workspace], listen, option="--metrics-listen", prefix="journal demo: metrics: ")


def _metrics_hint(workspace: Path, served_at: str | None) -> str:
    """The banner's line on the demo's metrics: the exact command that serves them
    from its workspace while it runs (a new user's first scrape), or, with
    ``--metrics-listen``, where the demo serves them itself (``served_at``)."""
    command = f"{_journal_command()} metrics {shlex.quote(str(workspace))} --listen"
    if served_at is not None:
        return f"metrics served at {served_at} while it runs (as `{command} HOST:PORT` would)"
    return (
        f"metrics for Prometheus while it runs: {command} 127.0.0.1:9108 "
        "(or journal demo --metrics-listen HOST:PORT)"
    )


def _journal_command() -> str:
    """How to run the journal command from a shell: ``journal`` when the one on PATH
    is this environment's, else its path (a venv not activated), else ``python -m
    journal.cli`` (no console script, a checkout run without installing)."""
    script = Path(sys.executable).parent / "journal"
    if not script.is_file():
        return f"{shlex.quote(sys.executable)} -m journal.cli"
    on_path = shutil.which("journal")
    if on_path is not None and Path(on_path).resolve() == script.resolve():
        return "journal"
    return shlex.quote(str(script))


def _venue_journals(books: Path) -> list[Path]:
    """The feed's journal of each venue: ``books/<venue>``."""
    return [books / venue.name for venue in VENUES]


def _start(
    children: _Children,
    options: DemoOptions,
    books: Path,
    results: Path,
    archive: Path,
    logs: dict[str, object],
    signals: _Signals,
) -> None:
    children.start(
        "feed",
        _python(
            "journal.demo.feed",
            "--journal",
            str(books),
            "--rate",
            str(options.rate),
            "--duration",
            str(options.duration_s),
            "--seed",
            str(options.seed),
            "--segment-size",
            str(SEGMENT_SIZE),
            "--seal",
            "--per-venue",
        ),
        stdout=logs["feed"],
        stderr=subprocess.STDOUT,
    )
    journals = _venue_journals(books)
    _wait_for(lambda: any(books.glob("*/*.journal")), 30, "the feed created no journal", signals)
    on_terminal = sys.stdout.isatty()
    fees = [arg for venue, bps in FEES_BPS.items() for arg in ("--fee", f"{venue}={bps}")]
    children.start(
        "radar",
        [
            str(options.radar),
            *(arg for journal in journals for arg in ("--journal", str(journal))),
            "--results",
            str(results),
            "--start",
            "beginning",
            "--idle",
            options.idle,
            "--stale-ms",
            "2000",
            *fees,
            *([] if on_terminal else ["--quiet"]),
        ],
        stderr=logs["radar"],
    )
    children.start(
        "compact",
        _python(
            "journal.cli",
            "compact",
            *map(str, journals),
            "--archive",
            str(archive),
            "--keep",
            str(KEEP_SEGMENTS),
        ),
        stdout=logs["compact"],
        stderr=subprocess.STDOUT,
    )


def _run_until_done(children: _Children, signals: _Signals) -> None:
    """Until the feed ends; a line of progress every 5 s when not on a terminal,
    where the radar's own table is not shown."""
    feed = children.running["feed"]
    started = time.monotonic()
    next_report = started + 5
    while feed.poll() is None:
        signals.check()
        for name in ("radar", "compact"):
            code = children.running[name].poll()
            if code is not None:
                raise PipelineError(f"the {name} stopped early (exit {code}): see {name}.log")
        time.sleep(0.1)
        if not sys.stdout.isatty() and time.monotonic() >= next_report:
            next_report += 5
            print(f"  {time.monotonic() - started:4.0f} s: running", flush=True)


def _stop_in_order(children: _Children, books: Path, archive: Path, outcome: Outcome) -> None:
    """Feed first (it seals its last segment), then the radar once it has read every
    book, then the compactor after a last pass archives what the feed sealed."""
    if children.stop("feed") != 0:
        outcome.problems.append("the feed exited with an error: see feed.log")
    journals = _venue_journals(books)
    if not all(journal.exists() for journal in journals):  # stopped before the feed opened them
        children.kill_all()
        return
    outcome.books_written = _books_written(journals)
    if "radar" in children.running:
        _wait_for_radar(journals, outcome.books_written)
    children.stop("radar", signal.SIGINT)
    children.stop("compact")
    last_pass = subprocess.run(
        _python(
            "journal.cli", "compact", *map(str, journals), "--archive", str(archive), "--once", "-q"
        ),
        start_new_session=True,
        capture_output=True,
        text=True,
    )
    if last_pass.returncode != 0:
        outcome.problems.append(f"the compactor's last pass failed: {last_pass.stderr.strip()}")


def _books_written(journals: list[Path]) -> int:
    """The writers' own counts, from their metrics files (they outlive the writers)."""
    figures = [read_writer(journal) for journal in journals]
    return sum(each.records for each in figures if each is not None)


def _wait_for_radar(journals: list[Path], written: int) -> None:
    """Until the radar's registrations say it has read ``written`` books in all; a
    radar that stops making progress for RADAR_CATCH_UP_S is stopped anyway, and the
    summary then says how many it read."""
    progress, since = -1, time.monotonic()
    while time.monotonic() - since < RADAR_CATCH_UP_S:
        read = sum(
            reader.records for journal in journals for reader in _radar_registrations(journal)
        )
        if read >= written:
            return
        if read > progress:
            progress, since = read, time.monotonic()
        time.sleep(0.02)


def _radar_registrations(books: Path) -> list[ReaderFigures]:
    figures = []
    for path in reader_files(books):
        with contextlib.suppress(JournalError, OSError):  # gone or half-written: next look
            reader = read_reader(path)
            if reader.name == RADAR_NAME and reader.alive:
                figures.append(reader)
    return figures


def _account(outcome: Outcome, books: Path, archive: Path) -> None:
    """Archived records, sizes, and the checks: written == read by the radar == archived."""
    for journal in _venue_journals(books):
        for path in _archive.archive_files(archive / journal.name):
            with _archive.ArchiveReader(path) as reader:
                outcome.archived_segments += 1
                outcome.archive_bytes += reader.file_size
                outcome.raw_bytes += reader.header.commit_offset
                outcome.archived_records += sum(1 for _ in reader.records())
    written = outcome.books_written
    read = outcome.radar.books or 0  # None: it printed no summary (never started)
    if read != written:
        outcome.problems.append(f"the radar read {read:,} books of {written:,}")
    if outcome.archived_records != written:
        outcome.problems.append(f"{outcome.archived_records:,} books archived of {written:,}")
    if outcome.radar.out_of_order:
        outcome.problems.append(f"the radar saw {outcome.radar.out_of_order} books out of order")
    if outcome.radar.verify_failures:
        outcome.problems.append("the radar's FlatBuffers Verifier refused records")


@dataclass(frozen=True)
class PremiumSeen:
    base: str
    pair: str
    first: float
    low: float
    high: float
    last: float
    results: int


def _premiums_seen(results: Path) -> list[PremiumSeen]:
    """Per base asset and (KRW venue, USDT venue): the kimchi premium the radar reported."""
    series: dict[tuple[str, str], list[float]] = {}
    if not any(results.glob("*.journal")):
        return []
    with Reader(results, start="beginning") as reader:
        for result in reader.available():
            premium = result.kimchi_premium
            if premium == premium:  # NaN until both books are there
                key = (result.base, f"{result.krw_exchange}/{result.usdt_exchange}")
                series.setdefault(key, []).append(premium)
    return [
        PremiumSeen(base, pair, v[0], min(v), max(v), v[-1], len(v))
        for (base, pair), v in sorted(series.items())
    ]


def _analyze(archive: Path, run_dir: Path) -> Path | None:
    """The offline analysis of the archive: kimchi.png, spread.png, delay.png."""
    from journal.analysis import load_books
    from journal.analysis._report import kimchi_premiums, series_stats, write_charts

    sources = [str(path) for path in sorted(archive.iterdir())] if archive.is_dir() else []
    if not sources:
        return None
    books = load_books(sources)
    if not len(books):
        return None
    premiums, _ = kimchi_premiums(books)
    try:
        charts = write_charts(books, series_stats(books), premiums, run_dir / "charts")
    except ImportError:
        print("charts not drawn: matplotlib is missing (pip install 'orderbook-journal[analysis]')")
        return None
    return charts[0]


def _print_summary(
    outcome: Outcome, premiums: list[PremiumSeen], chart: Path | None, run_dir: Path
) -> None:
    radar = outcome.radar
    print("\n== journal demo summary ==")
    print(f"books written    {outcome.books_written:>12,}")
    print(f"read by radar    {'?' if radar.books is None else f'{radar.books:,}':>12}")
    print(f"archived         {outcome.archived_records:>12,} in {outcome.archived_segments} files")
    if radar.latency:
        print(f"radar latency    {radar.latency.rstrip(', ')} (publish to observe)")
    if outcome.archive_bytes:
        print(
            f"archive          {outcome.archive_bytes / 1e6:,.2f} MB for "
            f"{outcome.raw_bytes / 1e6:,.2f} MB of segments: "
            f"{outcome.raw_bytes / outcome.archive_bytes:.1f}x smaller"
        )
    if premiums:
        print("kimchi premium seen by the radar (first, low, high, last):")
        for p in premiums:
            print(
                f"  {p.base:<5} {p.pair:<18} {100 * p.first:+7.3f}% {100 * p.low:+7.3f}% "
                f"{100 * p.high:+7.3f}% {100 * p.last:+7.3f}%  ({p.results:,} results)"
            )
    if chart is not None:
        print(f"chart            {chart}")
    print(f"logs and archive {run_dir}")
    for problem in outcome.problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if not outcome.books_written:
        print("stopped before the feed wrote a book")
    elif not outcome.problems:
        print("every book written was read by the radar and archived")
