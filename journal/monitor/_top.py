"""``journal top JOURNAL...``: writers and readers of journals, live.

Every ``--interval`` seconds it takes a snapshot of each journal (journal.monitor._snapshot)
and shows, per journal: the writer (alive or not, its pid), records, records/s and
MB/s over the interval, the segment it writes, rolls, refused appends (invalid /
too large / journal full), append latency p50 and p99 of the appends timed in the
interval, the segments' share of tmpfs; per registered reader: alive or dead,
records/s, lag in records and in time (how long the oldest record it has not read
has waited), its position; per symbol of the collector feeding it
(``collector.metrics``): its state, books/s, the age of its last exchange message
(past ``--stale`` seconds the stream is marked STALE, in red on a terminal: a feed
gone silent, or a collector that died), reconnects, gaps, resyncs, crossed books and
the exchange-to-local delay. On a terminal it redraws in place (plain ANSI), else it
prints ``key=value`` lines, one per journal, reader and symbol, each refresh. ``--once``
measures one interval, prints, and exits. ``--clean`` removes the files of dead
readers once shown (a new reader of the journal removes them too). Ctrl-C exits
cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, TextIO

from journal._arguments import positive_number
from journal._feed_metrics import FeedSnapshot, FeedState, StreamFigures
from journal._metrics import remove_dead_readers
from journal.monitor import _replication as replication
from journal.monitor._snapshot import (
    REFUSAL_REASONS,
    JournalSnapshot,
    ReaderFigures,
    add_journals_argument,
    find_journals,
    journal_labels,
    latency_percentile,
    snapshot,
)

DEFAULT_INTERVAL_S: Final = 1.0
DEFAULT_STALE_S: Final = 5.0
"""A stream without an exchange message for longer is marked STALE: the pairs the
radar watches change many times a second on every venue (a quiet pair may need a
longer ``--stale``)."""
_RED: Final = "\x1b[1;31m"
_RESET: Final = "\x1b[0m"
_CLEAR: Final = "\x1b[H\x1b[2J"
"""Cursor home, clear the screen: the whole view is redrawn each refresh."""


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal's figures over one interval, ready to print."""

    name: str
    writer: str
    records: int | None
    rate: float | None
    megabytes_rate: float | None
    segment: int | None
    rolls: int | None
    refused: tuple[int, ...] | None
    p50_us: float | None
    p99_us: float | None
    idle_s: float | None
    segments: int
    segment_bytes: int
    filesystem_free_bytes: int
    readers: tuple[ReaderRow, ...]
    problems: tuple[str, ...]
    feed: FeedRow | None = None


@dataclass(frozen=True, slots=True)
class ReaderRow:
    label: str
    alive: bool
    records: int
    rate: float | None
    lag_records: int | None
    lag_exact: bool
    lag_us: float | None
    position: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FeedRow:
    """The collector feeding a journal: its venue and one row per symbol."""

    venue: str
    collector: str
    """``alive pid N``, ``stopped pid N`` (closed) or ``DEAD pid N`` (died running)."""
    streams: tuple[StreamRow, ...]


@dataclass(frozen=True, slots=True)
class StreamRow:
    symbol: str
    state: str
    state_s: float | None
    """Seconds since the last change of state (None: never changed)."""
    messages: int
    message_rate: float | None
    books: int
    book_rate: float | None
    age_s: float | None
    """Seconds since the last exchange message (None: none yet)."""
    stale: bool
    reconnects: int
    gaps: int
    resyncs: int
    crossed: int
    delay_ms: float | None
    """Exchange-to-local delay of the last stamped message (None: none yet)."""


def compare(
    before: JournalSnapshot | None, after: JournalSnapshot, stale_s: float = DEFAULT_STALE_S
) -> JournalRow:
    """What changed between two snapshots of one journal (``before`` None: no rates);
    a feed's stream without a message for more than ``stale_s`` seconds is stale."""
    seconds = None
    if before is not None:
        seconds = (after.taken_monotonic_ns - before.taken_monotonic_ns) / 1e9
    writer, earlier = after.writer, before.writer if before is not None else None
    same_writer = (
        writer is not None
        and earlier is not None
        and (earlier.pid, earlier.started_ns) == (writer.pid, writer.started_ns)
    )
    rate = megabytes = p50 = p99 = None
    if writer is not None and same_writer and seconds:
        assert earlier is not None
        rate = (writer.records - earlier.records) / seconds
        megabytes = (writer.bytes - earlier.bytes) / seconds / 1e6
        interval = [
            a - b for a, b in zip(writer.latency_counts, earlier.latency_counts, strict=True)
        ]
        p50, p99 = (latency_percentile(interval, q) for q in (0.5, 0.99))
    state = {True: "alive", False: "stopped", None: "none"}[after.writer_alive]
    if writer is not None:
        state += f" pid {writer.pid}"
    previous = {r.label: r for r in before.readers} if before is not None else {}
    return JournalRow(
        name=after.name,
        writer=state,
        records=None if writer is None else writer.records,
        rate=rate,
        megabytes_rate=megabytes,
        segment=None if writer is None else writer.segment,
        rolls=None if writer is None else writer.rolls,
        refused=None if writer is None else tuple(writer.refused[r] for r in REFUSAL_REASONS),
        p50_us=None if p50 is None else p50 / 1e3,
        p99_us=None if p99 is None else p99 / 1e3,
        idle_s=None
        if writer is None or not writer.records
        else max(after.taken_ns - writer.last_publish_ns, 0) / 1e9,
        segments=after.segments,
        segment_bytes=after.segment_bytes,
        filesystem_free_bytes=after.filesystem_free_bytes,
        readers=tuple(_reader_row(previous.get(r.label), r, seconds) for r in after.readers),
        problems=after.problems,
        feed=None
        if after.feed is None
        else _feed_row(None if before is None else before.feed, after.feed, seconds, stale_s),
    )


def _feed_row(
    before: FeedSnapshot | None, after: FeedSnapshot, seconds: float | None, stale_s: float
) -> FeedRow:
    """Rates only against the same collector (pid and start time); a stream not
    stopped whose last message (or, before any, the collector's start) is older than
    ``stale_s`` is stale, whether the collector runs or died."""
    same = before is not None and (before.pid, before.started_ns) == (after.pid, after.started_ns)
    previous = {s.symbol: s for s in before.streams} if before is not None and same else {}
    if after.alive:
        collector = "alive"
    elif all(s.state is FeedState.STOPPED for s in after.streams):
        collector = "stopped"
    else:
        collector = "DEAD"
    rows = []
    for stream in after.streams:
        earlier = previous.get(stream.symbol)
        rows.append(_stream_row(earlier, stream, after, seconds, stale_s))
    return FeedRow(after.venue, f"{collector} pid {after.pid}", tuple(rows))


def _stream_row(
    before: StreamFigures | None,
    after: StreamFigures,
    feed: FeedSnapshot,
    seconds: float | None,
    stale_s: float,
) -> StreamRow:
    message_rate = book_rate = None
    if before is not None and seconds:
        message_rate = (after.messages - before.messages) / seconds
        book_rate = (after.books - before.books) / seconds
    age_s = None if not after.last_message_ns else (feed.taken_ns - after.last_message_ns) / 1e9
    silent_s = age_s if age_s is not None else (feed.taken_ns - feed.started_ns) / 1e9
    return StreamRow(
        symbol=after.symbol,
        state=after.state.name.lower(),
        state_s=None
        if not after.state_changed_ns
        else max(feed.taken_ns - after.state_changed_ns, 0) / 1e9,
        messages=after.messages,
        message_rate=message_rate,
        books=after.books,
        book_rate=book_rate,
        age_s=age_s,
        stale=after.state is not FeedState.STOPPED and silent_s > stale_s,
        reconnects=after.reconnects,
        gaps=after.gaps,
        resyncs=after.resyncs,
        crossed=after.crossed,
        delay_ms=None if after.last_delay_ns is None else after.last_delay_ns / 1e6,
    )


def _reader_row(
    before: ReaderFigures | None, after: ReaderFigures, seconds: float | None
) -> ReaderRow:
    rate = None
    if before is not None and seconds:
        rate = (after.records - before.records) / seconds
    lag = after.lag
    return ReaderRow(
        label=after.label,
        alive=after.alive,
        records=after.records,
        rate=rate,
        lag_records=None if lag is None else lag.records,
        lag_exact=lag is None or lag.exact,
        lag_us=None if lag is None or lag.ns is None else lag.ns / 1e3,
        position=after.position,
    )


# -- formatting --------------------------------------------------------------------------


def _count(value: float | None, width: int, digits: int = 0) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width},.{digits}f}"


def _size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _lag(row: ReaderRow) -> str:
    if row.lag_records is None:
        return "-"
    return ("" if row.lag_exact else "~") + f"{row.lag_records:,}"


def _mount_point(path: Path) -> Path:
    """The top directory of the filesystem holding ``path`` (/dev/shm, say)."""
    path = path.resolve()
    device = path.stat().st_dev
    while path.parent != path and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def _filesystems(snapshots: Sequence[JournalSnapshot]) -> list[str]:
    """One line per filesystem under the journals: used, size, free."""
    lines, seen = [], set()
    for shot in snapshots:
        device = os.stat(shot.path).st_dev
        if device in seen:
            continue
        seen.add(device)
        used = shot.filesystem_bytes - shot.filesystem_free_bytes
        share = 100 * used / shot.filesystem_bytes if shot.filesystem_bytes else 0.0
        lines.append(
            f"filesystem {_mount_point(shot.path)}: {_size(used)} used of "
            f"{_size(shot.filesystem_bytes)} ({share:.0f}%), "
            f"{_size(shot.filesystem_free_bytes)} free"
        )
    return lines


def screen(
    rows: Sequence[JournalRow], snapshots: Sequence[JournalSnapshot], interval: float
) -> str:
    """The terminal view: a header, then a table of journals with their readers."""
    now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"journal top  {now}  every {interval:g} s  (Ctrl-C quits)", *_filesystems(snapshots)]
    lines.append("")
    lines.append(
        f"{'JOURNAL':<14} {'WRITER':<16} {'RECORDS':>13} {'REC/S':>9} {'MB/S':>7} "
        f"{'SEG':>5} {'ROLLS':>5} {'REFUSED i/l/f':>13} {'P50 µs':>7} {'P99 µs':>7} "
        f"{'IDLE S':>7}  SEGMENTS"
    )
    for row in rows:
        refused = "-" if row.refused is None else "/".join(str(n) for n in row.refused)
        lines.append(
            f"{row.name:<14} {row.writer:<16} {_count(row.records, 13)} {_count(row.rate, 9)} "
            f"{_count(row.megabytes_rate, 7, 2)} {_count(row.segment, 5)} "
            f"{_count(row.rolls, 5)} {refused:>13} {_count(row.p50_us, 7, 1)} "
            f"{_count(row.p99_us, 7, 1)} {_count(row.idle_s, 7, 1)}  "
            f"{row.segments} = {_size(row.segment_bytes)}"
        )
        if row.readers:
            lines.append(
                f"  {'READER':<26} {'STATE':<5} {'RECORDS':>13} {'REC/S':>9} "
                f"{'LAG REC':>11} {'LAG µs':>11}  POSITION"
            )
        for reader in row.readers:
            lines.append(
                f"  {reader.label:<26} {'alive' if reader.alive else 'DEAD':<5} "
                f"{reader.records:>13,} {_count(reader.rate, 9)} {_lag(reader):>11} "
                f"{_count(reader.lag_us, 11, 1)}  {reader.position[0]}:{reader.position[1]}"
            )
        if row.feed is not None:
            lines.extend(_feed_lines(row.feed))
        lines.extend(f"  ! {problem}" for problem in row.problems)
    return "\n".join(lines) + "\n"


def _red(text: str) -> str:
    return f"{_RED}{text}{_RESET}"


def _feed_lines(feed: FeedRow) -> list[str]:
    """The feed's block of the terminal view: a line for the collector, one per symbol;
    a stale stream's age (and a dead collector) in red, and said in words too."""
    collector = feed.collector
    head = f"  FEED {feed.venue}  collector {_red(collector) if 'DEAD' in collector else collector}"
    stale = sum(stream.stale for stream in feed.streams)
    if stale:
        head += "  " + _red(f"{stale} of {len(feed.streams)} STALE")
    lines = [
        head,
        f"  {'SYMBOL':<16} {'STATE':<11} {'FOR S':>7} {'MSG/S':>8} {'BOOKS/S':>8} "
        f"{'AGE S':>12} {'DELAY MS':>9} {'RECONN':>6} {'GAPS':>6} {'RESYNC':>6} {'CROSSED':>7}",
    ]
    for stream in feed.streams:
        age = "-" if stream.age_s is None else f"{stream.age_s:,.1f}"
        age = _red(f"{'STALE ' + age:>12}") if stream.stale else f"{age:>12}"
        lines.append(
            f"  {stream.symbol:<16} {stream.state:<11} {_count(stream.state_s, 7, 1)} "
            f"{_count(stream.message_rate, 8, 1)} {_count(stream.book_rate, 8, 1)} {age} "
            f"{_count(stream.delay_ms, 9, 1)} {stream.reconnects:>6,} {stream.gaps:>6,} "
            f"{stream.resyncs:>6,} {stream.crossed:>7,}"
        )
    return lines


def log_lines(rows: Sequence[JournalRow]) -> str:
    """The view as ``key=value`` lines for a file or a pipe, one per journal and reader."""
    now = datetime.now().astimezone().isoformat(timespec="seconds")

    def value(number: float | None, digits: int = 0) -> str:
        return "-" if number is None else f"{number:.{digits}f}"

    lines = []
    for row in rows:
        refused = (
            "-"
            if row.refused is None
            else ",".join(f"{r}:{n}" for r, n in zip(REFUSAL_REASONS, row.refused, strict=True))
        )
        lines.append(
            f"{now} journal={row.name} writer={row.writer.replace(' pid ', ',pid=')} "
            f"records={value(row.records)} rate={value(row.rate)} "
            f"mb_per_s={value(row.megabytes_rate, 3)} segment={value(row.segment)} "
            f"rolls={value(row.rolls)} refused={refused} p50_us={value(row.p50_us, 2)} "
            f"p99_us={value(row.p99_us, 2)} idle_s={value(row.idle_s, 3)} "
            f"segments={row.segments} segment_bytes={row.segment_bytes} "
            f"filesystem_free_bytes={row.filesystem_free_bytes}"
        )
        for reader in row.readers:
            lines.append(
                f"{now} journal={row.name} reader={reader.label} "
                f"state={'alive' if reader.alive else 'dead'} records={reader.records} "
                f"rate={value(reader.rate)} lag_records={_lag(reader).replace(',', '')} "
                f"lag_us={value(reader.lag_us, 1)} "
                f"position={reader.position[0]}:{reader.position[1]}"
            )
        if row.feed is not None:
            feed = row.feed
            collector = feed.collector.lower().replace(" pid ", ",pid=")
            for stream in feed.streams:
                lines.append(
                    f"{now} journal={row.name} feed={feed.venue} collector={collector} "
                    f"symbol={stream.symbol} state={stream.state} "
                    f"state_s={value(stream.state_s, 1)} messages={stream.messages} "
                    f"message_rate={value(stream.message_rate, 1)} books={stream.books} "
                    f"book_rate={value(stream.book_rate, 1)} age_s={value(stream.age_s, 3)} "
                    f"stale={int(stream.stale)} delay_ms={value(stream.delay_ms, 3)} "
                    f"reconnects={stream.reconnects} gaps={stream.gaps} "
                    f"resyncs={stream.resyncs} crossed={stream.crossed}"
                )
        lines.extend(f"{now} journal={row.name} problem={problem!r}" for problem in row.problems)
    return "\n".join(lines) + "\n"


# -- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_journals_argument(parser)
    parser.add_argument(
        "--interval",
        type=positive_number,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"refresh every SECONDS (default {DEFAULT_INTERVAL_S:g}); rates are over it",
    )
    parser.add_argument(
        "--stale",
        type=positive_number,
        default=DEFAULT_STALE_S,
        metavar="SECONDS",
        help="mark a collector's symbol STALE after SECONDS without an exchange message "
        f"(default {DEFAULT_STALE_S:g})",
    )
    parser.add_argument("--once", action="store_true", help="measure one interval, print it, exit")
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the metrics files of dead readers once shown",
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Exit status 0 (also on Ctrl-C); JournalError (not a journal) is the caller's."""
    out = sys.stdout if out is None else out
    terminal = out.isatty()
    previous: dict[Path, JournalSnapshot] = {}
    try:
        while True:
            journals = find_journals(args.journals)  # a root may gain journals
            labels = journal_labels(journals)
            if not previous:
                previous = {j: snapshot(j, labels[j]) for j in journals}
                replication.replication_rows(list(previous.values()))  # rates from here
                time.sleep(args.interval)
            current = {j: snapshot(j, labels[j]) for j in journals}
            rows = [compare(previous.get(j), current[j], args.stale) for j in journals]
            shots = list(current.values())
            if terminal:
                view = screen(rows, shots, args.interval) + replication.screen(shots)
                out.write(("" if args.once else _CLEAR) + view)
            else:
                out.write(log_lines(rows) + replication.log_lines(shots))
            out.flush()
            if args.clean:
                for journal in journals:
                    remove_dead_readers(journal)
            if args.once:
                return 0
            previous = current
            time.sleep(args.interval)
    except KeyboardInterrupt:
        out.write("\n" if terminal else "")
        return 0
