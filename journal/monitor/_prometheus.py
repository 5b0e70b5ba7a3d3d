"""``journal metrics JOURNAL...``: the journals' metrics in Prometheus text format.

Text exposition format 0.0.4: per metric family a ``# HELP`` and a ``# TYPE`` line,
then its samples; labels ``journal`` (the directory name, or its path where two
journals share a name), ``reader`` (``<name>-<pid>[-<n>]``), and for the feed of
the collector writing the journal (``collector.metrics``) ``venue`` and ``symbol``:
its state as a state set (``journal_feed_state{state=...}`` 1 for the current
state, 0 for the others), its counters, the time and age of the last exchange
message and the exchange-to-local delay. Counters end in
``_total``; times are in seconds and bytes in bytes, as Prometheus prefers. The
append latency histogram has a bucket per power of two of nanoseconds
(``le`` = 2^k - 1 ns, exact bounds of the writer's finer counters), cumulative,
then ``+Inf``, ``_sum`` and ``_count``. Print it for a scrape (an HTTP wrapper or
node_exporter's textfile collector: ``--output FILE`` replaces FILE atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Generic, TypeVar

from journal import _feed_metrics_layout as FL
from journal import _metrics_layout as M
from journal._errors import JournalError
from journal._feed_metrics import FeedCounter, FeedSnapshot, FeedState, StreamFigures
from journal._paths import replaceable_file_problem
from journal.monitor import _replication as replication
from journal.monitor._snapshot import (
    REFUSAL_REASONS,
    JournalSnapshot,
    ReaderFigures,
    WriterFigures,
    add_journals_argument,
    find_journals,
    journal_labels,
    snapshot,
)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_OCTAVE_COUNTERS: Final = range((2 << M.LATENCY_SUB_BUCKET_BITS) - 1, M.LATENCY_BUCKETS, 8)
"""Counters whose upper bound is 2^k - 1 ns: cumulative counts there are exact."""


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    help: str
    samples: list[str] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float, suffix: str = "") -> None:
        text = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
        self.samples.append(f"{self.name}{suffix}{{{text}}} {_number(value)}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(snapshots: Sequence[JournalSnapshot]) -> str:
    """The exposition text for ``snapshots`` (one per journal)."""
    families: dict[str, _Family] = {}

    def family(name: str, kind: str, help_text: str) -> _Family:
        return families.setdefault(name, _Family(name, kind, help_text))

    for shot in snapshots:
        for name, kind, help_text, labels, value, suffix in _samples(shot):
            family(name, kind, help_text).add(labels, value, suffix)
    lines: list[str] = []
    for item in families.values():
        lines.append(f"# HELP {item.name} {item.help}")
        lines.append(f"# TYPE {item.name} {item.kind}")
        lines.extend(item.samples)
    return "\n".join(lines) + "\n" if lines else ""


_Sample = tuple[str, str, str, dict[str, str], float, str]
"""name, type, help, labels, value, suffix of the name (``_bucket``, ``_sum``, ...)."""

_Source = TypeVar("_Source")


@dataclass(frozen=True, slots=True)
class _Metric(Generic[_Source]):
    """A metric family defined once: its name (with its unit: ``_bytes``,
    ``_seconds``, ``_total``), type and help, and how its value is read off a
    source (a journal's snapshot, its writer's figures, one reader's figures).

    ``read`` gives the value, None where the source has none (the sample is left
    out), or with ``label`` a value per label value (a sample each, in its order).
    ``in_ns``: the source counts ns, the metric is in seconds, as Prometheus
    prefers."""

    name: str
    kind: str
    help: str
    read: Callable[[_Source], float | Mapping[str, float] | None]
    in_ns: bool = False
    label: str | None = None

    def samples(self, source: _Source, labels: dict[str, str]) -> Iterator[_Sample]:
        value = self.read(source)
        if value is None:
            return
        if isinstance(value, Mapping):
            assert self.label is not None
            for label, each in value.items():
                yield self._sample({**labels, self.label: label}, each)
        else:
            yield self._sample(labels, value)

    def _sample(self, labels: dict[str, str], value: float) -> _Sample:
        return (self.name, self.kind, self.help, labels, value / 1e9 if self.in_ns else value, "")


def _table_samples(
    table: Sequence[_Metric[_Source]], source: _Source, labels: dict[str, str]
) -> Iterator[_Sample]:
    for metric in table:
        yield from metric.samples(source, labels)


_JOURNAL_METRICS: Final[tuple[_Metric[JournalSnapshot], ...]] = (
    _Metric(
        "journal_writer_up",
        "gauge",
        "1 if a process holds the journal's writer lock, else 0.",
        lambda shot: None if shot.writer_alive is None else int(shot.writer_alive),
    ),
    _Metric(
        "journal_segments",
        "gauge",
        "Segment files of the journal in tmpfs.",
        lambda shot: shot.segments,
    ),
    _Metric(
        "journal_segment_bytes",
        "gauge",
        "Bytes of tmpfs allocated to the journal's segment files.",
        lambda shot: shot.segment_bytes,
    ),
    _Metric(
        "journal_filesystem_size_bytes",
        "gauge",
        "Size of the filesystem (tmpfs) holding the journal.",
        lambda shot: shot.filesystem_bytes,
    ),
    _Metric(
        "journal_filesystem_free_bytes",
        "gauge",
        "Bytes still free for the journal's writer on its filesystem.",
        lambda shot: shot.filesystem_free_bytes,
    ),
    _Metric(
        "journal_commit_offset_bytes",
        "gauge",
        "Commit offset of the segment being written (segment header).",
        lambda shot: None if shot.end is None else shot.end[1],
    ),
)
"""Of every journal, in this order."""

_WRITER_METRICS: Final[tuple[_Metric[WriterFigures], ...]] = (
    _Metric(
        "journal_writer_start_time_seconds",
        "gauge",
        "When the writer whose counters these are opened the journal.",
        lambda writer: writer.started_ns,
        in_ns=True,
    ),
    _Metric(
        "journal_records_total",
        "counter",
        "Records appended by the writer since it opened the journal.",
        lambda writer: writer.records,
    ),
    _Metric(
        "journal_bytes_total",
        "counter",
        "Bytes of records (frames with padding) appended by the writer.",
        lambda writer: writer.bytes,
    ),
    _Metric(
        "journal_rolls_total",
        "counter",
        "Segments the writer sealed and moved on from.",
        lambda writer: writer.rolls,
    ),
    _Metric(
        "journal_refusals_total",
        "counter",
        "Appends refused: invalid book, record too large, journal full (tmpfs).",
        lambda writer: {reason: writer.refused[reason] for reason in REFUSAL_REASONS},
        label="reason",
    ),
    _Metric(
        "journal_segment",
        "gauge",
        "Index of the segment the writer appends to.",
        lambda writer: writer.segment,
    ),
    _Metric(
        "journal_last_publish_timestamp_seconds",
        "gauge",
        "Time of the writer's last commit (the book's local_timestamp_ns).",
        lambda writer: writer.last_publish_ns,
        in_ns=True,
    ),
)
"""Of a journal whose writer left its counters; the latency histogram follows."""

_READER_METRICS: Final[tuple[_Metric[ReaderFigures], ...]] = (
    _Metric(
        "journal_reader_up",
        "gauge",
        "1 while the reader holds the lock of its metrics file, 0 once it died.",
        lambda reader: int(reader.alive),
    ),
    _Metric(
        "journal_reader_records_total",
        "counter",
        "Records the reader has read since it started.",
        lambda reader: reader.records,
    ),
    _Metric(
        "journal_reader_position_segment",
        "gauge",
        "Segment of the reader's next record.",
        lambda reader: reader.position[0],
    ),
    _Metric(
        "journal_reader_last_record_timestamp_seconds",
        "gauge",
        "Time field (local_timestamp_ns) of the last record the reader read.",
        lambda reader: reader.last_record_ns,
        in_ns=True,
    ),
    _Metric(
        "journal_reader_last_poll_timestamp_seconds",
        "gauge",
        "When the reader last found nothing new to read (0: never).",
        lambda reader: reader.last_poll_ns,
        in_ns=True,
    ),
    _Metric(
        "journal_reader_lag_records",
        "gauge",
        "Records committed that the reader has not read (estimated beyond 20000).",
        lambda reader: None if reader.lag is None else reader.lag.records,
    ),
    _Metric(
        "journal_reader_lag_bytes",
        "gauge",
        "Committed bytes the reader has not read.",
        lambda reader: None if reader.lag is None else reader.lag.bytes,
    ),
    _Metric(
        "journal_reader_lag_seconds",
        "gauge",
        "How long the oldest record the reader has not read has been published.",
        lambda reader: None if reader.lag is None else reader.lag.ns,
        in_ns=True,
    ),
)
"""Of every reader registered in a journal, labelled with its ``reader``."""


_FEED_METRICS: Final[tuple[_Metric[FeedSnapshot], ...]] = (
    _Metric(
        "journal_feed_up",
        "gauge",
        "1 while the collector feeding the journal holds the lock of its metrics file, "
        "0 once it stopped or died.",
        lambda feed: int(feed.alive),
    ),
    _Metric(
        "journal_feed_start_time_seconds",
        "gauge",
        "When the collector whose counters these are started.",
        lambda feed: feed.started_ns,
        in_ns=True,
    ),
)
"""Of the collector feeding a journal, labelled with its ``venue``."""


@dataclass(frozen=True, slots=True)
class _Stream:
    """One symbol of a collector's feed, with the moment its words were read (ages)."""

    feed: FeedSnapshot
    figures: StreamFigures


_COUNTER_HELP: Final = {
    "messages_total": "Exchange messages received for the symbol.",
    "books_total": "Books of the symbol published into the journal.",
    "reconnects_total": "Connections carrying the symbol lost and made again.",
    "gaps_total": "Sequence gaps in the symbol's updates (book dropped and resynced).",
    "resyncs_total": "Resyncs of the symbol's book (a new snapshot or subscription).",
    "crossed_total": "Crossed books of the symbol (dropped and resynced).",
    "stale_total": "Duplicate or stale messages of the symbol ignored.",
    "snapshots_total": "Snapshots of the symbol's book applied.",
    "errors_total": "Errors counted for the symbol (bad messages, failed requests).",
    "refused_total": "Books of the symbol the journal refused.",
}
assert set(_COUNTER_HELP) == set(FL.COUNTER_NAMES)


def _counter_metric(index: int, name: str) -> _Metric[_Stream]:
    return _Metric(
        f"journal_feed_{name}",
        "counter",
        _COUNTER_HELP[name],
        lambda stream: stream.figures.count(FeedCounter(index)),
    )


_STREAM_METRICS: Final[tuple[_Metric[_Stream], ...]] = (
    _Metric(
        "journal_feed_state",
        "gauge",
        "The symbol's feed state: 1 for the current one ("
        + ", ".join(state.name.lower() for state in FeedState)
        + "), 0 for the others.",
        lambda stream: {
            state.name.lower(): int(stream.figures.state is state) for state in FeedState
        },
        label="state",
    ),
    _Metric(
        "journal_feed_state_change_timestamp_seconds",
        "gauge",
        "When the symbol's feed entered its current state (0: never changed).",
        lambda stream: stream.figures.state_changed_ns,
        in_ns=True,
    ),
    *(_counter_metric(index, name) for index, name in enumerate(FL.COUNTER_NAMES)),
    _Metric(
        "journal_feed_last_message_timestamp_seconds",
        "gauge",
        "When the symbol's last exchange message arrived (left out before the first).",
        lambda stream: stream.figures.last_message_ns or None,
        in_ns=True,
    ),
    _Metric(
        "journal_feed_last_message_age_seconds",
        "gauge",
        "Seconds since the symbol's last exchange message arrived, when read: a "
        "growing age is a stale feed (left out before the first message).",
        lambda stream: (
            None
            if not stream.figures.last_message_ns
            else max(stream.feed.taken_ns - stream.figures.last_message_ns, 0)
        ),
        in_ns=True,
    ),
    _Metric(
        "journal_feed_delay_seconds",
        "gauge",
        "Arrival less the exchange's time stamp of the symbol's last stamped message "
        "(negative: the clocks disagree).",
        lambda stream: stream.figures.last_delay_ns,
        in_ns=True,
    ),
)
"""Of each symbol of a collector's feed, labelled with ``venue`` and ``symbol``."""


def _samples(shot: JournalSnapshot) -> Iterator[_Sample]:
    """A journal's samples: its own, its writer's, each reader's, then its feed's."""
    journal = {"journal": shot.name}
    yield from _table_samples(_JOURNAL_METRICS, shot, journal)
    if shot.writer is not None:
        yield from _table_samples(_WRITER_METRICS, shot.writer, journal)
        yield from _latency_samples(shot.writer, journal)
    for reader in shot.readers:
        yield from _table_samples(_READER_METRICS, reader, {**journal, "reader": reader.label})
    if shot.feed is not None:
        venue = {**journal, "venue": shot.feed.venue}
        yield from _table_samples(_FEED_METRICS, shot.feed, venue)
        for figures in shot.feed.streams:
            stream = _Stream(shot.feed, figures)
            yield from _table_samples(_STREAM_METRICS, stream, {**venue, "symbol": figures.symbol})


def _latency_samples(writer: WriterFigures, journal: dict[str, str]) -> Iterator[_Sample]:
    """The append latency histogram: a cumulative bucket per octave, ``+Inf``, then
    ``_sum`` and ``_count``. Its help names the writer's sample period."""
    head = (
        "journal_append_latency_seconds",
        "histogram",
        f"append_orderbook latency, one call in {writer.sample_period} timed "
        "(entry to commit published).",
    )
    seen = 0
    counts = writer.latency_counts
    previous = 0
    for index in _OCTAVE_COUNTERS:
        seen += sum(counts[previous : index + 1])
        previous = index + 1
        upper_ns = M.latency_bucket_bounds(index)[1]
        yield (*head, {**journal, "le": repr(upper_ns / 1e9)}, seen, "_bucket")
    total = sum(counts)
    yield (*head, {**journal, "le": "+Inf"}, total, "_bucket")
    yield (*head, journal, writer.latency_sum_ns / 1e9, "_sum")
    yield (*head, journal, total, "_count")


# -- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_journals_argument(parser)
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE (replaced atomically, for node_exporter's textfile "
        "collector) instead of stdout",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status 0; JournalError (a path that is not a journal, an --output that
    cannot be written) is the caller's."""
    output = None if args.output is None else Path(args.output)
    if output is not None:
        _check_output(output)  # before the journals are read, not after
    journals = find_journals(args.journals)
    labels = journal_labels(journals)
    snapshots = [snapshot(journal, labels[journal]) for journal in journals]
    for shot in snapshots:
        for problem in shot.problems:
            print(f"journal metrics: {problem}", file=sys.stderr)
    text = render(snapshots) + replication.exposition(snapshots)
    if output is None:
        sys.stdout.write(text)
        return 0
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        # New, not through a link planted at its name.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(temporary, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise JournalError(
            f"--output {output}: {error.strerror} writing {temporary.name} next to it (to "
            "rename it over FILE): give a FILE in a directory this user may write"
        ) from None
    return 0


def _check_output(output: Path) -> None:
    """JournalError unless ``output`` can be replaced by a file: its directory exists
    and it is not a directory itself. Said with FILE's name, where the write would
    name only the temporary file next to it."""
    if output.is_dir():
        raise JournalError(
            f"--output {output} is a directory: give a file name, e.g. {output / 'journal.prom'}"
        )
    if problem := replaceable_file_problem(output):
        raise JournalError(f"--output {problem}")
    if not output.parent.is_dir():
        raise JournalError(
            f"--output {output}: the directory {output.parent} does not exist (or is not a "
            "directory): create it, or give a FILE in an existing directory"
        )
