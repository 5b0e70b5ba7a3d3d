"""``journal collect``: live books from the exchanges into one journal per venue.

Startup refuses what cannot work before anything connects (a bad VENUE:SYMBOL, an
unknown key in the config, a journal another writer holds: exit 2). Then every venue
runs in its own task until ``--duration`` passes or SIGINT/SIGTERM arrives; stopping
closes the connections, seals each journal (its last segment goes to the compactor)
and prints what each venue did. A second signal stops without waiting for the venues
to close their connections; the journals are sealed all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from journal._arguments import positive_number
from journal._errors import JournalError
from journal.collect._config import DEFAULT_DEPTH, CollectPlan, ConfigError, build_plan
from journal.collect._ratelog import RateLimitedLog
from journal.collect._status import StatusBoard
from journal.collect._venue import VenueCollector
from journal.collect._venues import VENUES

log = logging.getLogger("journal.collect")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pairs",
        metavar="VENUE:SYMBOL",
        nargs="*",
        help="what to collect, e.g. binance:BTCUSDT upbit:KRW-BTC bithumb:BTC; "
        f"venues: {', '.join(VENUES)}",
    )
    parser.add_argument(
        "--journal-root",
        type=Path,
        metavar="DIR",
        help="one journal per venue is written under DIR (DIR/binance, DIR/upbit, ...), "
        "e.g. /dev/shm/books",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="a TOML file of venues, symbols, depth, journal_root and endpoints "
        "(examples/collect.toml); VENUE:SYMBOL arguments and options add to it",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="N",
        help=f"levels per side journaled (default {DEFAULT_DEPTH})",
    )
    parser.add_argument(
        "--duration",
        type=positive_number,
        metavar="SECONDS",
        help="stop after this long (default: until SIGINT or SIGTERM)",
    )
    parser.add_argument(
        "--ws-url",
        action="append",
        default=[],
        metavar="VENUE=URL",
        help="the venue's websocket service instead of the exchange's "
        "(a proxy, a co-located gateway, a test's fake), e.g. binance=ws://127.0.0.1:9000",
    )
    parser.add_argument(
        "--rest-url",
        action="append",
        default=[],
        metavar="VENUE=URL",
        help="the venue's REST service for depth snapshots (binance, binance-futures), "
        "e.g. binance=http://127.0.0.1:9000",
    )

    parser.add_argument(
        "--silence-limit",
        action="append",
        default=[],
        metavar="VENUE=SECONDS",
        help="take a connection of VENUE for dead after this long without a message "
        "(defaults: binance 10, bybit 30, upbit and bithumb 60; docs/COLLECT.md); "
        "more for a venue of quiet markets",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve the journals' metrics (writer, readers, these feeds per symbol, a "
        "radar's) for Prometheus while collecting, as journal metrics --listen does for "
        "the journal root: e.g. :9108, or 127.0.0.1:0 for a free port; the URL is printed",
    )


MetricsServing = Callable[[Path], contextlib.AbstractContextManager[object]]
"""Serves the metrics of the journals under a root while inside (journal.monitor's,
given by the command line: the collectors do not import the monitor)."""


def run(args: argparse.Namespace, serve_metrics: MetricsServing | None = None) -> int:
    try:
        plan = build_plan(
            args.pairs,
            config=args.config,
            journal_root=args.journal_root,
            depth=args.depth,
            ws_urls=args.ws_url,
            rest_urls=args.rest_url,
            silences=args.silence_limit,
        )
    except ConfigError as error:
        print(f"journal collect: {error}", file=sys.stderr)
        return 2
    for warning in plan.warnings:
        print(f"journal collect: warning: {warning}", file=sys.stderr)
    # Bound before any journal is opened: a port in use stops here, exit status 2.
    with contextlib.nullcontext() if serve_metrics is None else serve_metrics(plan.root):
        return collect(plan, args.duration)


def collect(plan: CollectPlan, duration: float | None) -> int:
    """Open every venue's journal, collect until stopped, seal; 0 when stopped as asked,
    1 if a journal could not be sealed."""
    lines = RateLimitedLog(log)
    collectors: list[VenueCollector] = []
    try:
        for venue_plan in plan.venues:
            collectors.append(VenueCollector(venue_plan, lines))
    except (JournalError, OSError) as error:
        for collector in collectors:
            collector.close()
        text = error.strerror if isinstance(error, OSError) and error.filename else error
        where = f"{error.filename}: " if isinstance(error, OSError) and error.filename else ""
        print(f"journal collect: {where}{text}", file=sys.stderr)
        return 2
    board = StatusBoard(collectors)
    # Every log line of the process (the publisher's refusals, asyncio's) goes through
    # the board, so that none is drawn over by the live block.
    root = logging.getLogger()
    root.addHandler(board)
    logging.getLogger("journal").setLevel(logging.INFO)
    try:
        return asyncio.run(_collect(collectors, board, lines, duration))
    finally:
        for collector in collectors:  # an interrupt before the loop ran: seal anyway
            if not collector.closed:
                collector.close()
        root.removeHandler(board)


async def _collect(
    collectors: list[VenueCollector],
    board: StatusBoard,
    lines: RateLimitedLog,
    duration: float | None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = [asyncio.create_task(collector.run(), name=collector.name) for collector in collectors]
    board_task = asyncio.create_task(board.run())

    def on_signal(number: int) -> None:
        if stop.is_set():  # again: no more waiting for the connections to close
            for task in tasks:
                task.cancel()
            return
        log.info("%s: stopping (again to stop without waiting for the venues)", _name(number))
        stop.set()

    # The handlers stay until every journal is sealed: a second signal cuts the wait
    # for the network, never the seal.
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, on_signal, number)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
        stop.set()
        for task in [*tasks, board_task]:
            task.cancel()
        results = await asyncio.gather(*tasks, board_task, return_exceptions=True)
        for collector, result in zip(collectors, results, strict=False):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("%s: stopped by %r", collector.name, result)
        board.finish()
        lines.flush()
        status = 0
        for collector in collectors:
            try:
                collector.close()
            except (JournalError, OSError) as error:
                log.error("%s: the journal could not be sealed: %s", collector.name, error)
                status = 1
            log.info("%s", _summary(collector))
        return status
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def _name(number: int) -> str:
    return signal.Signals(number).name


def _summary(collector: VenueCollector) -> str:
    stats = [stream.builder.stats for stream in collector.streams]
    published = collector.publisher.stats
    reconnects = sum(connection.reconnects for connection in collector.connections)
    return (
        f"{collector.name}: {published.published} books journaled in {collector.publisher.path} "
        f"(sealed); {sum(s.messages for s in stats)} messages, {reconnects} reconnects, "
        f"{sum(s.gaps for s in stats)} gaps, {sum(s.resyncs for s in stats)} resyncs, "
        f"{sum(s.crossed for s in stats)} crossed, {sum(s.stale for s in stats)} stale, "
        f"{published.refused_total} refused"
    )
