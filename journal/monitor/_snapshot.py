"""Reading a journal's metrics from outside: what ``journal top`` and ``journal metrics`` show.

Everything here only reads (mapped read-only, loaded word by word), so it never
disturbs the writer or the readers it watches (removing a dead reader's file is
journal._metrics.remove_dead_readers, on request). A snapshot gathers, for one journal: the
writer's counters (``writer.metrics``), whether it is alive (its lock), where it
will append next (segment headers), each registered reader with its lag, how
much of the tmpfs the segments take, the feed of the collector writing it
(``collector.metrics``, per symbol: journal._feed_metrics), and the journal's
replication (``replicate.metrics`` of the ``journal replicate`` publishing it,
``mirror.metrics`` of the ``journal mirror`` writing it: journal._replication_metrics).

A reader's lag is measured on the journal itself: the frames between its position
and the writer's are walked and counted (exactly, up to ``LAG_WALK_LIMIT`` frames;
beyond, estimated from their bytes), and its lag in time is how long the oldest
record it has not read has been published (now minus that record's time field). A
replicator's lag is measured the same way, from the position JetStream acknowledged
last.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import mmap
import os
import stat
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from journal import _layout as F
from journal import _metrics_layout as M
from journal._decode import Position, record_time_ns
from journal._errors import CorruptSegmentError, JournalError
from journal._feed_metrics import FeedSnapshot, read_feed_metrics
from journal._frames import END, frame_at
from journal._inspect import is_journal
from journal._lock import writer_alive
from journal._metrics import map_read_only, reader_alive
from journal._reader import Reader
from journal._replication_metrics import (
    ReplicationFigures,
    Role,
    Word,
    metrics_name,
    read_replication_metrics,
)
from journal._segment import MappedSegment, segment_indices
from journal._verify import SCHEMAS

LAG_WALK_LIMIT: Final = 20_000
"""Frames counted one by one per reader and snapshot; a larger lag is estimated."""
_SEQUENCE_ATTEMPTS: Final = 1000
REFUSAL_REASONS: Final = ("invalid", "too_large", "journal_full")
DISCOVERY_DEPTH: Final = 4
"""How many directories below a JOURNAL root journals are looked for: a root of
venues (/dev/shm/books/upbit: 1), a demo's workspace (books/upbit: 2), a desk's
tree of roots; a limit so that a root such as /dev/shm is never walked whole."""


@dataclass(frozen=True, slots=True)
class WriterFigures:
    """The counters of ``writer.metrics`` (docs/FORMAT.md, "Metrics files")."""

    pid: int
    host: str
    started_ns: int
    payload_id: bytes
    sample_period: int
    records: int
    bytes: int
    last_publish_ns: int
    segment: int
    rolls: int
    refused: dict[str, int]
    latency_sum_ns: int
    latency_counts: tuple[int, ...]

    @property
    def latency_samples(self) -> int:
        return sum(self.latency_counts)


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a reader is behind the writer when the snapshot was taken."""

    records: int
    bytes: int
    exact: bool
    """False when ``records`` is an estimate (a long lag, or segments gone from tmpfs)."""
    ns: int | None
    """Now minus the time of the oldest record not read yet; 0 when caught up; None
    if that record is no longer in tmpfs."""


@dataclass(frozen=True, slots=True)
class ReaderFigures:
    """One file of ``<journal>/readers/``; ``lag`` is None if it cannot be measured."""

    label: str
    """The file's name without ``.metrics``: ``<name>-<pid>[-<n>]``, unique."""
    name: str
    pid: int
    host: str
    started_ns: int
    alive: bool
    position: Position
    records: int
    last_record_ns: int
    last_poll_ns: int
    lag: Lag | None


@dataclass(frozen=True, slots=True)
class ReplicationSide:
    """A replication metrics file of the journal as read (``replicate.metrics``: the
    ``journal replicate`` publishing it; ``mirror.metrics``: the ``journal mirror``
    writing it), with a replicator's lag."""

    figures: ReplicationFigures
    lag: Lag | None
    """replicate: the records from the position JetStream acknowledged last to the
    writer's, and how long the oldest has waited; None for a mirror, before the first
    message, or where it could not be measured."""
    taken_ns: int
    """When the file was read (CLOCK_REALTIME): a mirror's own lag is of its last
    measure (``ReplicationFigures.mirror_lag``)."""

    @property
    def role(self) -> str:
        return self.figures.role.name.lower()


@dataclass(frozen=True, slots=True)
class JournalSnapshot:
    path: Path
    name: str
    taken_monotonic_ns: int
    taken_ns: int
    writer_alive: bool | None
    """None: no writer ever locked the journal (no writer.lock)."""
    writer: WriterFigures | None
    end: Position | None
    """Where the next record will be committed; None before the first segment."""
    readers: tuple[ReaderFigures, ...]
    segments: int
    segment_bytes: int
    """tmpfs taken by this journal's segment files (allocated bytes)."""
    filesystem_bytes: int
    filesystem_free_bytes: int
    problems: tuple[str, ...]
    """Metrics files that could not be read, each with its path and why."""
    feed: FeedSnapshot | None = None
    """The collector's per-symbol feed figures; None without ``collector.metrics``."""
    replication: tuple[ReplicationSide, ...] = ()
    """Its replicator's and its mirror's files (replicate first), those it has."""


# -- finding journals ------------------------------------------------------------------


def add_journals_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The JOURNAL... that ``journal top`` and ``journal metrics`` both take
    (``journal metrics`` may be given a ``--radar FILE`` alone: not ``required``)."""
    parser.add_argument(
        "journals",
        nargs="+" if required else "*",
        metavar="JOURNAL",
        help="journal directories, or directories holding journals at any depth up to "
        f"{DISCOVERY_DEPTH} (/dev/shm/books: each journal in it; a demo's workspace: "
        "books/<venue> and results)",
    )


def journals_under(root: Path, depth: int = DISCOVERY_DEPTH) -> list[Path]:
    """The journals below ``root`` (not ``root`` itself), at most ``depth`` directories
    down, sorted: a journal's own directory is never searched (its ``readers/`` is
    not a journal), nor a directory reached through a symbolic link below the
    first level (no loops, no walking the whole filesystem from a link to /), nor a
    hidden one. A directory that cannot be listed holds none; ``root`` itself
    unreadable is the caller's OSError."""
    found: list[Path] = []
    level = [root]
    for down in range(depth):
        deeper: list[Path] = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError:
                if directory is root:
                    raise
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                if is_journal(path):
                    found.append(path)
                elif entry.is_dir(follow_symlinks=down == 0):
                    deeper.append(path)
        level = deeper
    return sorted(found)


def find_journals(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Each path that is a journal, or the journals below it (a root such as
    /dev/shm/books, or a demo's workspace: journals_under). JournalError names a
    path with neither, and what it is; an OSError (a path through a file, no
    permission) is left to the caller."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if is_journal(path):
            found.append(path)
            continue
        give = "give journal directories or a directory they are in"
        try:
            directory = stat.S_ISDIR(path.stat().st_mode)
        except FileNotFoundError:
            raise JournalError(f"{path} does not exist: {give}") from None
        inside = journals_under(path) if directory else []
        if not inside:
            what = (
                f"is not a journal (no *{F.SEGMENT_SUFFIX}, {F.LOCK_FILE_NAME} or "
                f"{M.WRITER_METRICS_NAME}) and holds none (searched {DISCOVERY_DEPTH} "
                "directories down)"
                if directory
                else "is not a directory"
            )
            raise JournalError(f"{path} {what}: {give}")
        found.extend(inside)
    return list(dict.fromkeys(found))


def journal_labels(journals: Sequence[Path]) -> dict[Path, str]:
    """A short name per journal: its directory name, or its path where two share one."""
    names = [journal.name for journal in journals]
    return {
        journal: journal.name if names.count(journal.name) == 1 else str(journal)
        for journal in journals
    }


# -- metrics files ---------------------------------------------------------------------


def _map_read_only(path: Path) -> mmap.mmap | None:
    """The metrics file mapped read-only, or None if it does not exist."""
    return map_read_only(path, M.METRICS_COUNTERS_OFFSET, "a metrics header")


def _check_header(path: Path, data: mmap.mmap, magic: bytes, size: int) -> None:
    found = bytes(data[M.METRICS_MAGIC_OFFSET : M.METRICS_MAGIC_OFFSET + len(magic)])
    if found != magic:
        raise JournalError(
            f"{path} offset={M.METRICS_MAGIC_OFFSET}: magic={found!r}, expected {magic!r}"
        )
    version, file_size = struct.unpack_from("<II", data, M.METRICS_VERSION_OFFSET)
    if version != M.METRICS_VERSION:
        raise JournalError(
            f"{path} offset={M.METRICS_VERSION_OFFSET}: metrics_version={version}, this "
            f"reader knows {M.METRICS_VERSION}: use the journal package of its writer"
        )
    if file_size != size or len(data) < size:
        raise JournalError(
            f"{path} offset={M.METRICS_FILE_SIZE_OFFSET}: file_size={file_size} "
            f"(file {len(data)} bytes), expected {size}"
        )


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def read_writer(journal: Path) -> WriterFigures | None:
    """The writer's counters, None if it has no metrics file (metrics off, or a
    writer without them such as the radar's results writer)."""
    path = journal / M.WRITER_METRICS_NAME
    data = _map_read_only(path)
    if data is None:
        return None
    with data:
        _check_header(path, data, M.WRITER_METRICS_MAGIC, M.WRITER_METRICS_SIZE)
        (_, _, _, pid, period, started, host, payload_id, buckets) = (
            M.WRITER_HEADER_STRUCT.unpack_from(data, 0)
        )
        if buckets != M.LATENCY_BUCKETS:
            raise JournalError(
                f"{path} offset={M.LATENCY_BUCKETS_OFFSET}: latency_buckets={buckets}, "
                f"expected {M.LATENCY_BUCKETS}"
            )
        with memoryview(data).cast("q") as words:
            segment, bytes_base = _segment_words(path, words)
            counters = words.tolist()  # one 8-byte load per word
    records = counters[M.RECORDS_TOTAL_OFFSET // 8]
    first = M.LATENCY_COUNTS_OFFSET // 8
    return WriterFigures(
        pid=pid,
        host=_text(host),
        started_ns=started,
        payload_id=payload_id,
        sample_period=period,
        records=records,
        bytes=bytes_base + _committed(journal, segment),
        last_publish_ns=counters[M.LAST_PUBLISH_NS_OFFSET // 8],
        segment=segment,
        rolls=counters[M.ROLLS_TOTAL_OFFSET // 8],
        refused={
            "invalid": counters[M.REFUSED_INVALID_TOTAL_OFFSET // 8],
            "too_large": counters[M.REFUSED_TOO_LARGE_TOTAL_OFFSET // 8],
            "journal_full": counters[M.REFUSED_JOURNAL_FULL_TOTAL_OFFSET // 8],
        },
        latency_sum_ns=counters[M.LATENCY_SUM_NS_OFFSET // 8],
        latency_counts=tuple(counters[first : first + M.LATENCY_BUCKETS]),
    )


def _segment_words(path: Path, words: memoryview) -> tuple[int, int]:
    """``segment`` and ``bytes_base``, read as a consistent pair: the sequence is
    even and unchanged around them (pairs with WriterMetrics.use_segment; x86-64
    keeps these loads in order)."""
    sequence_word = M.SEGMENT_SEQUENCE_OFFSET // 8
    for _ in range(_SEQUENCE_ATTEMPTS):
        before = words[sequence_word]
        segment = words[M.SEGMENT_OFFSET // 8]
        bytes_base = words[M.BYTES_BASE_OFFSET // 8]
        if before % 2 == 0 and words[sequence_word] == before:
            return segment, bytes_base
        time.sleep(0)
    raise JournalError(
        f"{path} offset={M.SEGMENT_SEQUENCE_OFFSET}: segment_sequence stays odd (a writer "
        "died while rolling): the next writer of the journal rewrites the file"
    )


def _committed(journal: Path, index: int) -> int:
    """Segment ``index``'s commit, less its end marker if sealed (a writer's bytes)."""
    try:
        with MappedSegment(journal / F.segment_name(index)) as segment:
            commit = segment.load_commit_acquire()
            return commit - F.END_MARKER_SIZE if segment.is_sealed() else commit
    except FileNotFoundError:
        return F.HEADER_SIZE  # archived and removed since: its bytes are in bytes_base


def read_reader(path: Path) -> ReaderFigures:
    """A reader's registration (its lag left to ``snapshot``)."""
    data = _map_read_only(path)
    if data is None:
        raise FileNotFoundError(path)
    with data:
        _check_header(path, data, M.READER_METRICS_MAGIC, M.READER_METRICS_SIZE)
        (_, _, _, pid, _, started, host, name) = M.READER_HEADER_STRUCT.unpack_from(data, 0)
        with memoryview(data).cast("q") as words:
            counters = words.tolist()
    return ReaderFigures(
        label=path.name.removesuffix(M.METRICS_SUFFIX),
        name=_text(name),
        pid=pid,
        host=_text(host),
        started_ns=started,
        alive=reader_alive(path),
        position=(
            counters[M.READER_SEGMENT_OFFSET // 8],
            counters[M.READER_OFFSET_OFFSET // 8],
        ),
        records=counters[M.READER_RECORDS_TOTAL_OFFSET // 8],
        last_record_ns=counters[M.READER_LAST_RECORD_NS_OFFSET // 8],
        last_poll_ns=counters[M.READER_LAST_POLL_NS_OFFSET // 8],
        lag=None,
    )


def reader_files(journal: Path) -> list[Path]:
    directory = journal / M.READERS_DIRECTORY
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        directory / name
        for name in names
        if name.endswith(M.METRICS_SUFFIX) and not name.startswith(".")
    ]


# -- lag -----------------------------------------------------------------------------


def end_position(journal: Path) -> Position | None:
    """Where the writer commits next: the position a reader started at "end" takes."""
    with Reader(journal, start="end", verify=False, metrics=False) as probe:
        return probe.position


def measure_lag(
    journal: Path,
    start: Position,
    end: Position,
    now_ns: int,
    frame_size_hint: float | None = None,
) -> Lag:
    """Records and bytes from ``start`` (a reader's next position) to ``end`` (the
    writer's), and how long the first of them has waited. Frames beyond
    LAG_WALK_LIMIT, and segments gone from tmpfs, are estimated: from the mean
    frame walked, else from ``frame_size_hint`` (the writer's mean)."""
    if start >= end:
        return Lag(0, 0, True, 0)
    records = lag_bytes = walked_bytes = 0
    exact = True
    oldest_ns: int | None = None
    for index in range(start[0], end[0] + 1):
        first = start[1] if index == start[0] else F.HEADER_SIZE
        try:
            segment = MappedSegment(journal / F.segment_name(index))
        except FileNotFoundError:  # archived and removed meanwhile: a full segment
            exact = False
            lag_bytes += max(_segment_size(journal) - F.END_MARKER_SIZE - first, 0)
            continue
        with segment:
            sealed = index != end[0] and segment.is_sealed()
            stop = end[1] if index == end[0] else segment.load_commit_acquire()
            payload_id = segment.header.payload_id
            schema = SCHEMAS.get(payload_id)
            offset = first
            while offset < stop and exact:
                if records >= LAG_WALK_LIMIT:
                    exact = False
                    break
                size = frame_at(segment.map, offset, stop, payload_id, str(segment.path))
                if size == END:
                    break
                record_end = offset + F.SIZE_PREFIX_SIZE + size
                if oldest_ns is None and records == 0 and schema is not None:
                    oldest_ns = record_time_ns(segment.map, offset, record_end, schema)
                records += 1
                walked_bytes += F.align_record(record_end) - offset
                offset = F.align_record(record_end)
            lag_bytes += max(stop - (F.END_MARKER_SIZE if sealed else 0) - first, 0)
    if not exact:
        mean = walked_bytes / records if records else frame_size_hint
        if mean:
            records += round((lag_bytes - walked_bytes) / mean)
    if not records:
        return Lag(0, lag_bytes, exact, 0)
    waited = None if oldest_ns is None else max(now_ns - oldest_ns, 0)
    return Lag(records, lag_bytes, exact, waited)


def _segment_size(journal: Path) -> int:
    """The segment size of the journal's newest segment (for estimates)."""
    indices = segment_indices(journal)
    if not indices:
        return F.MIN_SEGMENT_SIZE
    with (
        contextlib.suppress(FileNotFoundError, JournalError),
        MappedSegment(journal / F.segment_name(indices[-1])) as segment,
    ):
        return segment.header.segment_size
    return F.MIN_SEGMENT_SIZE


# -- a snapshot ------------------------------------------------------------------------


def snapshot(journal: Path, name: str | None = None) -> JournalSnapshot:
    """Everything ``journal top`` shows of one journal, at one moment."""
    problems: list[str] = []
    readers: list[ReaderFigures] = []
    for path in reader_files(journal):
        try:
            readers.append(read_reader(path))
        except FileNotFoundError:
            continue  # the reader closed meanwhile
        except (JournalError, OSError) as error:
            problems.append(str(error))
    taken_monotonic_ns, taken_ns = time.monotonic_ns(), time.time_ns()
    writer = None
    try:
        writer = read_writer(journal)
    except (JournalError, OSError) as error:
        problems.append(str(error))
    end = None
    try:
        end = end_position(journal)
    except (JournalError, OSError) as error:
        problems.append(f"{journal}: no end position: {error}")
    hint = writer.bytes / writer.records if writer is not None and writer.records else None
    if end is not None:
        for index, reader in enumerate(readers):
            try:
                lag = measure_lag(journal, reader.position, end, taken_ns, hint)
            except (CorruptSegmentError, JournalError, OSError) as error:
                problems.append(f"reader {reader.label}: lag not measured: {error}")
                continue
            readers[index] = dataclasses.replace(reader, lag=lag)
    feed = None
    try:
        feed = read_feed_metrics(journal)
    except (JournalError, OSError) as error:
        problems.append(str(error))
    replication = _replication(journal, end, taken_ns, hint, problems)
    segments, segment_bytes = _segment_usage(journal)
    filesystem = os.statvfs(journal)
    return JournalSnapshot(
        path=journal,
        name=name or journal.name,
        taken_monotonic_ns=taken_monotonic_ns,
        taken_ns=taken_ns,
        writer_alive=writer_alive(journal),
        writer=writer,
        end=end,
        readers=tuple(readers),
        segments=segments,
        segment_bytes=segment_bytes,
        filesystem_bytes=filesystem.f_blocks * filesystem.f_frsize,
        filesystem_free_bytes=filesystem.f_bavail * filesystem.f_frsize,
        problems=tuple(problems),
        feed=feed,
        replication=replication,
    )


def _replication(
    journal: Path, end: Position | None, now_ns: int, hint: float | None, problems: list[str]
) -> tuple[ReplicationSide, ...]:
    """The journal's replication files, a replicator's with its lag (from the position
    JetStream acknowledged last: the end of the last message it published, or the
    stream's last message of the journal once it started); what cannot be read is
    added to ``problems``."""
    sides: list[ReplicationSide] = []
    for role in Role:
        path = journal / metrics_name(role)
        try:
            figures = read_replication_metrics(path)
        except (JournalError, OSError) as error:
            problems.append(str(error))
            continue
        if figures is None:
            continue
        lag = None
        # offset 0: no position yet (a run ends past a segment header). A position of
        # another incarnation (the journal made again while the stream holds the old
        # one's end) is no place in this one: lag unknown.
        if role is Role.REPLICATE and end is not None and figures[Word.OFFSET]:
            acknowledged = (figures[Word.SEGMENT], figures[Word.OFFSET])
            try:
                if _incarnation(journal, end[0]) == figures[Word.INCARNATION_NS]:
                    lag = measure_lag(journal, acknowledged, end, now_ns, hint)
            except (CorruptSegmentError, JournalError, OSError) as error:
                problems.append(f"{path}: lag not measured: {error}")
        sides.append(ReplicationSide(figures, lag, now_ns))
    return tuple(sides)


def _incarnation(journal: Path, index: int) -> int | None:
    """The incarnation of the journal's segment ``index``; None if it is gone."""
    try:
        with MappedSegment(journal / F.segment_name(index)) as segment:
            return segment.header.incarnation_ns
    except FileNotFoundError:
        return None


def _segment_usage(journal: Path) -> tuple[int, int]:
    """Segment files and the tmpfs bytes allocated to them."""
    count = allocated = 0
    for index in segment_indices(journal):
        with contextlib.suppress(FileNotFoundError):
            allocated += os.lstat(journal / F.segment_name(index)).st_blocks * 512
            count += 1
    return count, allocated


# -- the latency histogram ---------------------------------------------------------------


def latency_percentile(counts: Sequence[int], quantile: float) -> int | None:
    """As HdrHistogram: the upper bound (ns) of the counter holding the value of rank
    ``max(1, ceil(quantile * total))``; None without samples."""
    total = sum(counts)
    if not total:
        return None
    target = quantile * total
    rank = max(1, math.ceil(target - target * 1e-15))  # 0.99 * 100 is 99.00000000000001
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return M.latency_bucket_bounds(index)[1]
    return M.latency_bucket_bounds(len(counts) - 1)[1]
