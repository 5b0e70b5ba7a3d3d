"""The journals' and the radar's shared-memory metrics as Prometheus metric families.

``JournalCollector`` is a prometheus_client collector: every ``collect()`` (one per
scrape, or per textfile write) finds the journals under the paths it was given
again (a journal created since appears, one removed goes), takes a snapshot of
each (journal.monitor._snapshot) and of every radar's ``radar.metrics`` (in a
journal directory, or a file given), and yields the families built from the tables
below; nothing is sampled in the background and nothing is kept between scrapes.
prometheus_client writes the text (format 0.0.4, or OpenMetrics when a scraper
asks for it); docs/METRICS.md lists every family.

Each family is defined once, in a table: its name with its unit (``_seconds``,
``_bytes``, ``_ratio``; counters end in ``_total``), its type, its help and how
its value is read off a source (a journal's snapshot, its writer's figures, one
reader's, one symbol of a collector feed, its replicator's or mirror's figures, a
radar, one of its streams or pairs).

Labels are stable across restarts, so a restarted process continues its series:
``journal`` (the directory name, or its path where two journals share a name),
``reader`` (the reader's name; the 2nd, 3rd live reader of one name, by start
time, ``name-2``, ``name-3``), ``venue`` and ``symbol`` (a collector's feed),
``role`` and ``stream`` (a journal's replicator, ``replicate``, or mirror,
``mirror``, one file of each a journal, and its JetStream stream), ``radar`` (its
name) with ``venue``/``symbol`` per stream and ``base``, ``krw_exchange``,
``usdt_exchange`` per pair. A process id is only ever the value of an ``*_info``
family's ``pid`` label. Of several registrations of one name, a
dead one is left out while a live one exists, else the newest dead one is shown
(``*_up`` 0). No ``_created`` samples: a counter's reset is its process's start,
exported as ``*_start_time_seconds``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar, cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from journal import _feed_metrics_layout as FL
from journal import _metrics_layout as M
from journal._errors import JournalError
from journal._feed_metrics import FeedCounter, FeedSnapshot, FeedState, StreamFigures
from journal._inspect import is_journal
from journal._radar_metrics import (
    RADAR_METRICS_NAME,
    RadarPair,
    RadarSnapshot,
    RadarStream,
    read_radar_metrics,
)
from journal._replication_metrics import NatsState, Role, Word
from journal.monitor._snapshot import (
    REFUSAL_REASONS,
    JournalSnapshot,
    ReaderFigures,
    ReplicationSide,
    WriterFigures,
    journal_labels,
    journals_under,
    snapshot,
)

_OCTAVE_COUNTERS: Final = range(
    (2 << M.LATENCY_SUB_BUCKET_BITS) - 1,
    M.LATENCY_BUCKETS - (1 << M.LATENCY_SUB_BUCKET_BITS),
    1 << M.LATENCY_SUB_BUCKET_BITS,
)
"""Counters whose upper bound is 2^k - 1 ns, where cumulative counts are exact: the
``le`` bounds of the exported histograms. The top octave's is not one of them: its
last counter also holds every value above LATENCY_MAX_NS (clamped into it by the
processes), which no finite bound may claim; they count in ``+Inf`` only."""
_UNITS: Final = ("seconds", "bytes", "ratio")
"""Base units a family name may end in (before ``_total``): OpenMetrics ``# UNIT``."""

_Source = TypeVar("_Source")


@dataclass(frozen=True, slots=True)
class _Metric(Generic[_Source]):
    """A gauge or counter family defined once: its name (with its unit: ``_bytes``,
    ``_seconds``, ``_total``), type and help, and how its value is read off a source.

    ``read`` gives the value, None where the source has none (the sample is left
    out: nothing measured yet is not a zero that reads as "just now"), or with
    ``label`` a value per label value (a sample each, in its order). ``in_ns``: the
    source counts ns, the metric is in seconds, as Prometheus prefers. ``current``:
    a figure of now (an age, a lag, a premium, a feed's state), left out once the
    process that keeps it died (its file's lock free): frozen, it would read as
    current (a dead radar's premium, a killed collector's "live"); counters, start
    times and times of a last event stay, true as they are."""

    name: str
    kind: str
    help: str
    read: Callable[[_Source], float | Mapping[str, float] | None]
    in_ns: bool = False
    label: str | None = None
    current: bool = False

    def samples(self, source: _Source, labels: dict[str, str]) -> Iterator[_Sample]:
        value = self.read(source)
        if value is None:
            return
        if isinstance(value, Mapping):
            assert self.label is not None
            for label, each in value.items():
                yield _Sample(self.name, self.kind, self.help, {**labels, self.label: label}, each)
        elif not (isinstance(value, float) and math.isnan(value)):  # unknown: left out
            scaled = value / 1e9 if self.in_ns else value
            yield _Sample(self.name, self.kind, self.help, labels, scaled)


@dataclass(frozen=True, slots=True)
class _Info(Generic[_Source]):
    """An ``<name>_info`` family: value 1, the source's identity (pid, host) as labels
    that change when the process does; join on the other labels to see them."""

    name: str
    help: str
    read: Callable[[_Source], Mapping[str, str]]
    current: bool = False
    """Never: the process shown stays true after it died (its ``*_up`` says so)."""

    def samples(self, source: _Source, labels: dict[str, str]) -> Iterator[_Sample]:
        yield _Sample(self.name, "info", self.help, labels, dict(self.read(source)))


@dataclass(frozen=True, slots=True)
class _Sample:
    """One sample of a family: a number (gauge, counter), the info labels (info), or
    ``(cumulative buckets, sum)`` (histogram)."""

    name: str
    kind: str
    help: str
    labels: dict[str, str]
    value: float | dict[str, str] | tuple[list[tuple[str, float]], float]


_In = TypeVar("_In", contravariant=True)


class _Table(Protocol[_In]):
    @property
    def current(self) -> bool: ...
    def samples(self, source: _In, labels: dict[str, str]) -> Iterator[_Sample]: ...


def _age_ns(taken_ns: int, last_ns: int) -> int | None:
    """How long before ``taken_ns`` (when the file was read) ``last_ns`` was; None
    for a ``last_ns`` of 0 (never), never negative (two clocks a hair apart)."""
    return None if not last_ns else max(taken_ns - last_ns, 0)


def _table_samples(
    table: Sequence[_Table[_Source]],
    source: _Source,
    labels: dict[str, str],
    alive: bool = True,
) -> Iterator[_Sample]:
    """The samples of each metric of ``table``; the ``current`` ones only while the
    source's process is ``alive``."""
    for metric in table:
        if alive or not metric.current:
            yield from metric.samples(source, labels)


def _moment(ns: int) -> int | None:
    """A time point (ns since the epoch) as exported: 0, the files' "never" (no
    record read yet, no state change), is left out rather than shown as 1970."""
    return ns or None


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

_WRITER_METRICS: Final[tuple[_Metric[WriterFigures] | _Info[WriterFigures], ...]] = (
    _Info(
        "journal_writer",
        "The process that last opened the journal for writing: its pid and host.",
        lambda writer: {"pid": str(writer.pid), "host": writer.host},
    ),
    _Metric(
        "journal_writer_start_time_seconds",
        "gauge",
        "When the writer whose counters these are opened the journal.",
        lambda writer: _moment(writer.started_ns),
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
        lambda writer: _moment(writer.last_publish_ns),
        in_ns=True,
    ),
)
"""Of a journal whose writer left its counters; the latency histogram follows."""

_READER_METRICS: Final[tuple[_Metric[ReaderFigures] | _Info[ReaderFigures], ...]] = (
    _Metric(
        "journal_reader_up",
        "gauge",
        "1 while the reader holds the lock of its metrics file, 0 once it died.",
        lambda reader: int(reader.alive),
    ),
    _Info(
        "journal_reader",
        "The process of the reader registered under this name: its pid and host.",
        lambda reader: {"pid": str(reader.pid), "host": reader.host},
    ),
    _Metric(
        "journal_reader_start_time_seconds",
        "gauge",
        "When the reader whose figures these are started (its counters start at 0).",
        lambda reader: _moment(reader.started_ns),
        in_ns=True,
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
        "Time field (local_timestamp_ns) of the last record the reader read (left out "
        "before the first).",
        lambda reader: _moment(reader.last_record_ns),
        in_ns=True,
    ),
    _Metric(
        "journal_reader_last_poll_timestamp_seconds",
        "gauge",
        "When the reader last found nothing new to read (left out before it first did).",
        lambda reader: _moment(reader.last_poll_ns),
        in_ns=True,
    ),
    _Metric(
        "journal_reader_lag_records",
        "gauge",
        "Records committed that the reader has not read (estimated beyond 20000; left "
        "out once the reader died).",
        lambda reader: None if reader.lag is None else reader.lag.records,
        current=True,
    ),
    _Metric(
        "journal_reader_lag_bytes",
        "gauge",
        "Committed bytes the reader has not read (left out once it died).",
        lambda reader: None if reader.lag is None else reader.lag.bytes,
        current=True,
    ),
    _Metric(
        "journal_reader_lag_seconds",
        "gauge",
        "How long the oldest record the reader has not read has been published (left "
        "out once the reader died).",
        lambda reader: None if reader.lag is None else reader.lag.ns,
        in_ns=True,
        current=True,
    ),
)
"""Of every reader shown (see ``stable_labels``), labelled with its ``reader``."""


_FEED_METRICS: Final[tuple[_Metric[FeedSnapshot] | _Info[FeedSnapshot], ...]] = (
    _Metric(
        "journal_feed_up",
        "gauge",
        "1 while the collector feeding the journal holds the lock of its metrics file, "
        "0 once it stopped or died.",
        lambda feed: int(feed.alive),
    ),
    _Info(
        "journal_feed",
        "The collector process feeding the journal: its pid and host.",
        lambda feed: {"pid": str(feed.pid), "host": feed.host},
    ),
    _Metric(
        "journal_feed_start_time_seconds",
        "gauge",
        "When the collector whose counters these are started.",
        lambda feed: _moment(feed.started_ns),
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
        + "), 0 for the others; left out once the collector stopped or died.",
        lambda stream: {
            state.name.lower(): int(stream.figures.state is state) for state in FeedState
        },
        label="state",
        current=True,
    ),
    _Metric(
        "journal_feed_state_change_timestamp_seconds",
        "gauge",
        "When the symbol's feed entered its current state (left out while it never changed).",
        lambda stream: _moment(stream.figures.state_changed_ns),
        in_ns=True,
    ),
    *(_counter_metric(index, name) for index, name in enumerate(FL.COUNTER_NAMES)),
    _Metric(
        "journal_feed_last_message_timestamp_seconds",
        "gauge",
        "When the symbol's last exchange message arrived (left out before the first).",
        lambda stream: _moment(stream.figures.last_message_ns),
        in_ns=True,
    ),
    _Metric(
        "journal_feed_last_message_age_seconds",
        "gauge",
        "Seconds since the symbol's last exchange message arrived, when read: a "
        "growing age is a stale feed (left out before the first message, and once the "
        "collector stopped or died).",
        lambda stream: _age_ns(stream.feed.taken_ns, stream.figures.last_message_ns),
        in_ns=True,
        current=True,
    ),
    _Metric(
        "journal_feed_delay_seconds",
        "gauge",
        "Arrival less the exchange's time stamp of the symbol's last stamped message "
        "(negative: the clocks disagree; left out once the collector stopped or died).",
        lambda stream: stream.figures.last_delay_ns,
        in_ns=True,
        current=True,
    ),
)
"""Of each symbol of a collector's feed, labelled with ``venue`` and ``symbol``."""


# -- replication (journal._replication_metrics) -----------------------------------------


def _word(word: Word, role: Role | None = None) -> Callable[[ReplicationSide], int | None]:
    """A word of the file; with ``role``, of that side's files only (the other's
    samples left out: a mirror retries nothing, a replicator has no consumer)."""
    return lambda side: side.figures[word] if role is None or side.figures.role is role else None


def _known(word: Word, after: Word | None = None) -> Callable[[ReplicationSide], int | None]:
    """A word about the last message, left out while 0 (none yet), or while ``after``
    is 0 (the word is only written with it)."""
    return lambda side: side.figures[word] if side.figures[after or word] else None


def _lag(field: str) -> Callable[[ReplicationSide], int | None]:
    """A replicator's lag as measured here from its source journal (``side.lag``), a
    mirror's as it measured it from the stream (left out before it did, or when that
    is too long ago to be its lag now)."""

    def value(side: ReplicationSide) -> int | None:
        mirror = side.figures.role is Role.MIRROR
        lag = side.figures.mirror_lag(side.taken_ns) if mirror else side.lag
        return None if lag is None else cast(int | None, getattr(lag, field))

    return value


_REPLICATION_METRICS: Final[tuple[_Metric[ReplicationSide] | _Info[ReplicationSide], ...]] = (
    _Metric(
        "journal_replication_up",
        "gauge",
        "1 while the journal's replicator (role replicate) or mirror (role mirror) holds "
        "the lock of its metrics file, 0 once it stopped or died (its last figures kept).",
        lambda side: int(side.figures.alive),
    ),
    _Info(
        "journal_replication",
        "The process publishing the journal to JetStream (replicate) or writing it as a "
        "mirror (mirror): its pid and host.",
        lambda side: {"pid": str(side.figures.pid), "host": side.figures.host},
    ),
    _Metric(
        "journal_replication_start_time_seconds",
        "gauge",
        "When the replicator or mirror whose counters these are started.",
        lambda side: side.figures.started_ns,
        in_ns=True,
    ),
    _Metric(
        "journal_replication_nats_connected",
        "gauge",
        "1 while the process is connected to NATS, 0 while it connects or reconnects and "
        "once it stopped or died.",
        lambda side: int(
            side.figures.alive and side.figures[Word.NATS_STATE] == NatsState.CONNECTED
        ),
    ),
    _Metric(
        "journal_replication_nats_reconnects_total",
        "counter",
        "NATS connections of the process lost and made again.",
        _word(Word.RECONNECTS_TOTAL),
    ),
    _Metric(
        "journal_replication_nats_errors_total",
        "counter",
        "Errors the NATS client reported on the process's connection.",
        _word(Word.ERRORS_TOTAL),
    ),
    _Metric(
        "journal_replication_records_total",
        "counter",
        "Records of the journal JetStream acknowledged (replicate) or appended to the "
        "mirror journal (mirror).",
        _word(Word.RECORDS_TOTAL),
    ),
    _Metric(
        "journal_replication_messages_total",
        "counter",
        "JetStream messages (each a run of the journal's records) acknowledged "
        "(replicate) or appended (mirror).",
        _word(Word.MESSAGES_TOTAL),
    ),
    _Metric(
        "journal_replication_bytes_total",
        "counter",
        "Bytes of record frames in those messages.",
        _word(Word.BYTES_TOTAL),
    ),
    _Metric(
        "journal_replication_stream_sequence",
        "gauge",
        "Stream sequence of the journal's last message acknowledged (replicate; at its "
        "start, the stream's last of the journal) or appended (mirror); left out while "
        "none.",
        _known(Word.STREAM_SEQUENCE),
    ),
    _Metric(
        "journal_replication_last_record_timestamp_seconds",
        "gauge",
        "Time field (local_timestamp_ns, the source writer's clock) of that message's "
        "last record; left out while none.",
        _known(Word.LAST_RECORD_NS),
        in_ns=True,
    ),
    _Metric(
        "journal_replication_last_message_timestamp_seconds",
        "gauge",
        "When the process's last message was acknowledged by JetStream (replicate) or "
        "committed to the mirror journal (mirror); left out before its first.",
        _known(Word.LAST_MESSAGE_NS),
        in_ns=True,
    ),
    _Metric(
        "journal_replication_delay_seconds",
        "gauge",
        "Of the last message: from its publish to JetStream's acknowledgement "
        "(replicate); from its last record's time field to its commit in the mirror "
        "journal, source to mirror, the hosts' clock difference included (mirror). Left "
        "out before the process's first message.",
        _known(Word.LATENCY_NS, after=Word.LAST_MESSAGE_NS),
        in_ns=True,
        current=True,
    ),
    _Metric(
        "journal_replication_lag_records",
        "gauge",
        "Records committed to the source journal that JetStream has not acknowledged "
        "(replicate; estimated beyond 20000); records of the journal the stream holds "
        "beyond the mirror journal, as of the mirror's last look (mirror, once a second).",
        _lag("records"),
        current=True,
    ),
    _Metric(
        "journal_replication_lag_bytes",
        "gauge",
        "Committed bytes of the source journal that JetStream has not acknowledged (replicate).",
        lambda side: None if side.lag is None else side.lag.bytes,
        current=True,
    ),
    _Metric(
        "journal_replication_lag_seconds",
        "gauge",
        "How long the oldest record JetStream has not acknowledged has been published "
        "(replicate); how much later the stream's last record of the journal was "
        "written than the mirror journal's last, by the source's clock (mirror). 0: "
        "caught up.",
        _lag("ns"),
        in_ns=True,
        current=True,
    ),
    _Metric(
        "journal_replication_retries_total",
        "counter",
        "JetStream requests the replicator retried (a publish, or a read of the "
        "journal's last message in the stream, that failed or timed out).",
        _word(Word.RETRIES_TOTAL, Role.REPLICATE),
    ),
    _Metric(
        "journal_replication_resyncs_total",
        "counter",
        "Times the replicator read the journal's last message in the stream again (the "
        "stream did not hold what it expected).",
        _word(Word.RESYNCS_TOTAL, Role.REPLICATE),
    ),
    _Metric(
        "journal_replication_pending_messages",
        "gauge",
        "Messages the stream holds for the mirror's consumer not yet delivered (mirror).",
        _word(Word.PENDING_MESSAGES, Role.MIRROR),
        current=True,
    ),
    _Metric(
        "journal_replication_duplicates_total",
        "counter",
        "Messages the mirror journal already held, acknowledged and not appended again.",
        _word(Word.DUPLICATES_TOTAL, Role.MIRROR),
    ),
    _Metric(
        "journal_replication_gaps_total",
        "counter",
        "Messages that did not continue the mirror journal (the consumer is rewound), "
        "and messages of a copy that stopped (left unacknowledged).",
        _word(Word.GAPS_TOTAL, Role.MIRROR),
    ),
    _Metric(
        "journal_replication_rewinds_total",
        "counter",
        "Rewinds of the mirror's consumer to its acknowledgement floor.",
        _word(Word.REWINDS_TOTAL, Role.MIRROR),
    ),
    _Metric(
        "journal_replication_redeliveries_total",
        "counter",
        "Messages of the journal JetStream delivered to the mirror more than once.",
        _word(Word.REDELIVERIES_TOTAL, Role.MIRROR),
    ),
    _Metric(
        "journal_replication_skipped_records_total",
        "counter",
        "Records the stream held that a new mirror journal could not start with (the "
        "stream's limits had dropped the start of their segment): never copied.",
        _word(Word.SKIPPED_RECORDS_TOTAL, Role.MIRROR),
    ),
)
"""Of the journal's replicator and mirror (journal.monitor._snapshot.ReplicationSide),
labelled with ``role`` (``replicate``, ``mirror``) and ``stream`` (the JetStream stream)."""


# -- the radar (journal._radar_metrics) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RadarStream:
    """One (venue, symbol) the radar reads, with the moment its words were read (ages)."""

    radar: RadarSnapshot
    stream: RadarStream


_RADAR_METRICS: Final[tuple[_Metric[RadarSnapshot] | _Info[RadarSnapshot], ...]] = (
    _Metric(
        "radar_up",
        "gauge",
        "1 while the radar holds the lock of its metrics file, 0 once it stopped or died "
        "(then its counters are kept, its premiums, edges and book ages left out).",
        lambda radar: int(radar.alive),
    ),
    _Info(
        "radar",
        "The radar process: its pid and host.",
        lambda radar: {"pid": str(radar.pid), "host": radar.host},
    ),
    _Metric(
        "radar_start_time_seconds",
        "gauge",
        "When the radar whose figures these are started (its counters start at 0).",
        lambda radar: _moment(radar.started_ns),
        in_ns=True,
    ),
    _Metric(
        "radar_books_total",
        "counter",
        "Books the radar has read, all journals.",
        lambda radar: radar.books,
    ),
    _Metric(
        "radar_results_total",
        "counter",
        "Results the radar has computed (each appended to its results journal, if any).",
        lambda radar: radar.results,
    ),
    _Metric(
        "radar_streams_without_slot_total",
        "counter",
        "Streams the radar read that have no slot in its metrics file (no room, or a "
        "name over 32 bytes): their books count in radar_books_total only.",
        lambda radar: radar.streams_without_slot,
    ),
    _Metric(
        "radar_pairs_without_slot_total",
        "counter",
        "Pairs the radar computed that have no slot in its metrics file: their results "
        "count in radar_results_total only.",
        lambda radar: radar.pairs_without_slot,
    ),
)
"""Of every radar shown (see ``stable_labels``), labelled with its ``radar``; the
observe latency histogram follows."""

_RADAR_STREAM_METRICS: Final[tuple[_Metric[_RadarStream], ...]] = (
    _Metric(
        "radar_book_age_seconds",
        "gauge",
        "Seconds since the latest book of the stream the radar read was published "
        "(its local_timestamp_ns), on the wall clock when read, also while the radar "
        "replays an old journal: a growing age is a stale book, left out of the radar's "
        "edges past its staleness limit (left out before the first book, and once the "
        "radar stopped or died).",
        lambda each: _age_ns(each.radar.taken_ns, each.stream.last_local_ns),
        in_ns=True,
        current=True,
    ),
    _Metric(
        "radar_book_updates_total",
        "counter",
        "Books of the stream the radar has read.",
        lambda each: each.stream.updates,
    ),
    _Metric(
        "radar_book_last_timestamp_seconds",
        "gauge",
        "Publication time (local_timestamp_ns) of the latest book of the stream the "
        "radar read (left out before the first).",
        lambda each: _moment(each.stream.last_local_ns),
        in_ns=True,
    ),
)
"""Of each (venue, symbol) the radar reads, labelled with ``venue`` and ``symbol``."""

_RADAR_PAIR_METRICS: Final[tuple[_Metric[RadarPair], ...]] = (
    _Metric(
        "radar_kimchi_premium_ratio",
        "gauge",
        "Latest kimchi premium of the base asset between the two venues: "
        "mid_KRW / (mid_USDT * fx) - 1 (0.02 is 2%; left out while unknown, and once "
        "the radar stopped or died).",
        lambda pair: pair.kimchi_premium,
        current=True,
    ),
    _Metric(
        "radar_executable_edge_ratio",
        "gauge",
        "Latest executable edge for the radar's notional after both venues' taker fees, "
        "buying on one venue and selling on the other (0.001 is 10 bps; left out while "
        "no edge can be computed, and once the radar stopped or died).",
        lambda pair: pair.edge_bps / 1e4,
        current=True,
    ),
    _Metric(
        "radar_fx_krw_per_usdt",
        "gauge",
        "KRW per USDT the radar used for the pair's latest result (left out while "
        "unknown, and once the radar stopped or died).",
        lambda pair: pair.fx,
        current=True,
    ),
    _Metric(
        "radar_pair_stale",
        "gauge",
        "1 if a book of the pair was older than the radar's staleness limit at its "
        "latest result (its edge left out), else 0; left out once the radar stopped or "
        "died.",
        lambda pair: int(pair.stale),
        current=True,
    ),
    _Metric(
        "radar_pair_updates_total",
        "counter",
        "Results the radar has computed for the pair.",
        lambda pair: pair.updates,
    ),
    _Metric(
        "radar_pair_last_update_timestamp_seconds",
        "gauge",
        "When the radar last computed the pair (left out before the first result).",
        lambda pair: _moment(pair.updated_ns),
        in_ns=True,
    ),
)
"""Of each (base, KRW venue, USDT venue) pair, labelled with ``base``,
``krw_exchange`` and ``usdt_exchange``."""


APPEND_LATENCY: Final = "journal_append_latency_seconds"
"""The writer's append latency histogram, after _WRITER_METRICS."""
OBSERVE_LATENCY: Final = "radar_observe_latency_seconds"
"""The radar's publish-to-observe latency histogram, after _RADAR_METRICS."""
SCRAPE_PROBLEMS: Final = "journal_scrape_problems"
"""The exporter's own gauge: metrics files a scrape could not read."""


def family_names() -> list[str]:
    """Every family a scrape can hold, in the order it shows them, each by the name
    of its samples' family in the text format (``*_info`` for the info families)."""

    def names(table: Sequence[_Metric[_Source] | _Info[_Source]]) -> list[str]:
        return [m.name + "_info" if isinstance(m, _Info) else m.name for m in table]

    return [
        *names(_JOURNAL_METRICS),
        *names(_WRITER_METRICS),
        APPEND_LATENCY,
        *names(_READER_METRICS),
        *names(_FEED_METRICS),
        *names(_STREAM_METRICS),
        *names(_REPLICATION_METRICS),
        *names(_RADAR_METRICS),
        OBSERVE_LATENCY,
        *names(_RADAR_STREAM_METRICS),
        *names(_RADAR_PAIR_METRICS),
        SCRAPE_PROBLEMS,
    ]


# -- stable labels ----------------------------------------------------------------------


class _Registration(Protocol):
    """A reader's or radar's metrics file as read: who, whether alive, since when."""

    @property
    def name(self) -> str: ...
    @property
    def alive(self) -> bool: ...
    @property
    def pid(self) -> int: ...
    @property
    def started_ns(self) -> int: ...


_Registered = TypeVar("_Registered", bound=_Registration)


def stable_labels(registrations: Iterable[_Registered]) -> list[tuple[str, _Registered]]:
    """The registrations to show, each with its label: its name, so that a restarted
    process continues the series of the one before it.

    Several live ones of one name (two radars, a reader opened twice): by start time
    the first gets the name, the next ``name-2``, ``name-3`` (never a label another
    registration has as its name). Dead ones are left out where a live one of the
    name exists; otherwise the newest dead one is shown, its ``*_up`` 0."""
    by_name: dict[str, list[_Registered]] = {}
    for item in registrations:
        by_name.setdefault(item.name, []).append(item)
    taken = set(by_name)
    shown: list[tuple[str, _Registered]] = []
    for name, items in by_name.items():
        live = sorted((i for i in items if i.alive), key=lambda i: (i.started_ns, i.pid))
        if not live:
            shown.append((name, max(items, key=lambda i: (i.started_ns, i.pid))))
            continue
        shown.append((name, live[0]))
        number = 1
        for item in live[1:]:
            number += 1
            while f"{name}-{number}" in taken:
                number += 1
            taken.add(f"{name}-{number}")
            shown.append((f"{name}-{number}", item))
    return shown


# -- samples of a scrape ------------------------------------------------------------------


def _journal_samples(shot: JournalSnapshot) -> Iterator[_Sample]:
    """A journal's samples: its own, its writer's, each reader's, its feed's, then its
    replicator's and its mirror's."""
    journal = {"journal": shot.name}
    yield from _table_samples(_JOURNAL_METRICS, shot, journal)
    if shot.writer is not None:
        yield from _table_samples(_WRITER_METRICS, shot.writer, journal)
        yield _latency_sample(
            APPEND_LATENCY,
            f"append_orderbook latency, one call in {shot.writer.sample_period} timed "
            "(entry to commit published).",
            journal,
            shot.writer.latency_counts,
            shot.writer.latency_sum_ns,
        )
    for label, reader in stable_labels(shot.readers):
        yield from _table_samples(
            _READER_METRICS, reader, {**journal, "reader": label}, reader.alive
        )
    if shot.feed is not None:
        venue = {**journal, "venue": shot.feed.venue}
        yield from _table_samples(_FEED_METRICS, shot.feed, venue)
        for figures in shot.feed.streams:
            stream = _Stream(shot.feed, figures)
            yield from _table_samples(
                _STREAM_METRICS, stream, {**venue, "symbol": figures.symbol}, shot.feed.alive
            )
    for side in shot.replication:
        labels = {**journal, "role": side.role, "stream": side.figures.stream}
        yield from _table_samples(_REPLICATION_METRICS, side, labels, side.figures.alive)


def _radar_samples(label: str, radar: RadarSnapshot) -> Iterator[_Sample]:
    """A radar's samples: its own, its observe latency, each stream's, each pair's."""
    labels = {"radar": label}
    yield from _table_samples(_RADAR_METRICS, radar, labels)
    yield _latency_sample(
        OBSERVE_LATENCY,
        f"Publish-to-observe latency of the books the radar read live, one in "
        f"{radar.latency_sample_period} timed (local_timestamp_ns to the radar's read).",
        labels,
        radar.latency_counts,
        radar.latency_sum_ns,
    )
    for stream in radar.streams:
        yield from _table_samples(
            _RADAR_STREAM_METRICS,
            _RadarStream(radar, stream),
            {**labels, "venue": stream.venue, "symbol": stream.symbol},
            radar.alive,
        )
    for pair in radar.pairs:
        yield from _table_samples(
            _RADAR_PAIR_METRICS,
            pair,
            {
                **labels,
                "base": pair.base,
                "krw_exchange": pair.krw_exchange,
                "usdt_exchange": pair.usdt_exchange,
            },
            radar.alive,
        )


def _latency_sample(
    name: str, help_text: str, labels: dict[str, str], counts: Sequence[int], sum_ns: int
) -> _Sample:
    """A latency histogram in the writer's bucket scheme (journal._metrics_layout),
    cumulative at each power of two of ns (``le`` = 2^k - 1 ns, where the finer
    counters' bounds fall exactly) up to the top octave, then ``+Inf`` with every
    count (the top octave's and the clamped overflow: _OCTAVE_COUNTERS)."""
    if len(counts) != M.LATENCY_BUCKETS:
        raise JournalError(f"{name}: {len(counts)} latency counters, expected {M.LATENCY_BUCKETS}")
    buckets: list[tuple[str, float]] = []
    seen = previous = 0
    for index in _OCTAVE_COUNTERS:
        seen += sum(counts[previous : index + 1])
        previous = index + 1
        upper_s = M.latency_bucket_bounds(index)[1] / 1e9
        buckets.append((floatToGoString(upper_s), seen))  # type: ignore[no-untyped-call]
    buckets.append(("+Inf", sum(counts)))
    return _Sample(name, "histogram", help_text, labels, (buckets, sum_ns / 1e9))


def _unit(name: str) -> str:
    base = name.removesuffix("_total")
    return next((unit for unit in _UNITS if base.endswith(f"_{unit}")), "")


def families(samples: Iterable[_Sample]) -> list[Metric]:
    """The samples gathered into one prometheus_client family per name, in the order
    each name first appears; every sample of a family has the same label names."""
    built: dict[str, tuple[Metric, tuple[str, ...]]] = {}
    for item in samples:
        entry = built.get(item.name)
        if entry is None:
            names = tuple(item.labels)
            family: Metric
            if item.kind == "gauge":
                family = GaugeMetricFamily(
                    item.name, item.help, labels=names, unit=_unit(item.name)
                )
            elif item.kind == "counter":
                family = CounterMetricFamily(
                    item.name, item.help, labels=names, unit=_unit(item.name)
                )
            elif item.kind == "histogram":
                family = HistogramMetricFamily(
                    item.name, item.help, labels=names, unit=_unit(item.name)
                )
            else:
                family = InfoMetricFamily(item.name, item.help, labels=names)
            entry = built[item.name] = (family, names)
        family, names = entry
        assert tuple(item.labels) == names, (item.name, item.labels, names)
        values = list(item.labels.values())
        value = item.value
        if isinstance(family, HistogramMetricFamily):
            assert isinstance(value, tuple)
            family.add_metric(values, value[0], value[1])
        elif isinstance(family, InfoMetricFamily):
            assert isinstance(value, dict)
            family.add_metric(values, value)
        else:
            assert isinstance(value, int | float)
            assert isinstance(family, GaugeMetricFamily | CounterMetricFamily)
            family.add_metric(values, value)
    return [family for family, _ in built.values()]


def scrape_samples(
    snapshots: Sequence[JournalSnapshot], radars: Sequence[RadarSnapshot] = ()
) -> Iterator[_Sample]:
    """Every sample of one scrape: the journals', then the radars'."""
    for shot in snapshots:
        yield from _journal_samples(shot)
    for label, radar in stable_labels(radars):
        yield from _radar_samples(label, radar)


def render(snapshots: Sequence[JournalSnapshot], radars: Sequence[RadarSnapshot] = ()) -> str:
    """The exposition text (format 0.0.4) of ``snapshots`` (one per journal) and
    ``radars``, as a scrape of a JournalCollector over them would give it."""

    class _Fixed:
        def collect(self) -> list[Metric]:
            return families(scrape_samples(snapshots, radars))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    return generate_latest(registry).decode()


# -- the collector ----------------------------------------------------------------------


def discover(paths: Iterable[Path]) -> list[Path]:
    """Each path that is a journal, and the journals below each other one (at any
    depth up to DISCOVERY_DEPTH, never inside a journal: journals_under); a path
    that does not exist (yet), or cannot be listed, holds none. The startup check
    that a path is a journal or holds some is the command's
    (journal.monitor._snapshot.find_journals); a scrape takes what is there."""
    found: list[Path] = []
    for path in paths:
        try:
            if is_journal(path):
                found.append(path)
            elif path.is_dir():
                found.extend(journals_under(path))
        except OSError:
            continue
    return list(dict.fromkeys(found))


class JournalCollector:
    """A prometheus_client collector (``registry.register(JournalCollector(...))``) of
    the journals at or under ``paths`` and of the radars whose metrics files are in
    those journals (``radar.metrics``) or among ``radar_files``.

    Every ``collect()`` reads everything afresh. A metrics file that cannot be read
    is left out and said to ``on_problems`` (each with its path and why; called once
    per scrape, with none too), never raised:
    a scrape shows what can be read; ``journal_scrape_problems`` counts the rest.
    Safe to call from several threads at once (it only reads)."""

    def __init__(
        self,
        paths: Sequence[Path],
        radar_files: Sequence[Path] = (),
        on_problems: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.paths = tuple(paths)
        self.radar_files = tuple(radar_files)
        self.on_problems = on_problems

    def describe(self) -> list[Metric]:
        """Nothing fixed: the families depend on what is found at each scrape (and
        registering must not read every journal)."""
        return []

    def collect(self) -> list[Metric]:
        snapshots, radars, problems = self.read()
        if self.on_problems is not None:
            self.on_problems(problems)
        found = families(scrape_samples(snapshots, radars))
        scrape = GaugeMetricFamily(
            SCRAPE_PROBLEMS,
            "Metrics files this scrape could not read (each said on the exporter's "
            "stderr with its path and why); 0 when every one was read.",
            value=len(problems),
        )
        return [*found, scrape]

    def read(self) -> tuple[list[JournalSnapshot], list[RadarSnapshot], list[str]]:
        """A snapshot of each journal found, each radar, and what could not be read."""
        journals = discover(self.paths)
        names = journal_labels(journals)
        snapshots: list[JournalSnapshot] = []
        problems: list[str] = []
        for journal in journals:
            try:
                shot = snapshot(journal, names[journal])
            except (JournalError, OSError) as error:  # removed, or unreadable, meanwhile
                problems.append(f"{journal}: not read: {error}")
                continue
            snapshots.append(shot)
            problems.extend(shot.problems)
        radars: list[RadarSnapshot] = []
        for path in self._radar_paths(journals):
            try:
                radar = read_radar(path)
            except (JournalError, OSError) as error:
                problems.append(str(error))
                continue
            if radar is not None:
                radars.append(radar)
        return snapshots, radars, problems

    def _radar_paths(self, journals: Sequence[Path]) -> list[Path]:
        """The given radar files, then each journal's ``radar.metrics``; each once."""
        paths = [*self.radar_files, *(journal / RADAR_METRICS_NAME for journal in journals)]
        unique: dict[Path, Path] = {}
        for path in paths:
            try:
                key = path.resolve()
            except OSError:
                key = path
            unique.setdefault(key, path)
        return list(unique.values())


def read_radar(path: Path) -> RadarSnapshot | None:
    """The radar metrics file at ``path``, None if there is none (no radar wrote its
    metrics there, or it is gone)."""
    try:
        return read_radar_metrics(path)
    except FileNotFoundError:
        return None


def registry(collector: JournalCollector) -> CollectorRegistry:
    """A registry of ``collector`` alone: no process or platform metrics of the
    exporter mixed with the journals' (prometheus_client's default registry has them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
