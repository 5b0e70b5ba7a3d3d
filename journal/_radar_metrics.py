"""The radar's own figures, read from its ``radar.metrics`` (docs/FORMAT.md, "Radar metrics").

The radar (radar_reader's radar_metrics.hpp) publishes in a mapped file what it
read and computed: books and results counted, per stream (venue, symbol) its books
and the times of its latest one, per pair (base, KRW venue, USDT venue) its latest
result, and its publish-to-observe latency histogram. Any process may read the file
at any time, without a lock and without the radar noticing; ``journal metrics``
serves it as the ``radar_*`` families. journal._radar_metrics_layout is the layout's
only Python copy.

Reading: the file is mapped read-only and each word loaded once with one 8-byte
load (a memoryview item), so a word is never seen half written. Stream words are
independent estimates. A pair's result words are written under the slot's sequence
lock: the reader loads the sequence, the words and the sequence again, and retries
unless both loads saw the same even value, so the figures of a pair always come
from one result. That argument relies on loads staying in program order, which
x86-64 guarantees (as journal._publish argues for the commit); this reader, like
the pure-Python path, is for x86-64. A slot's names were written before the count
that covers it was published, so only slots below the counts are read.

The radar holds an exclusive ``flock`` on the file for its whole life and leaves
the file when it stops: ``alive`` is whether the lock is held (the test reader
metrics use, journal._metrics.reader_alive).
"""

from __future__ import annotations

import errno
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from journal import _radar_metrics_layout as L
from journal._errors import JournalError
from journal._feed_metrics_layout import COLLECTOR_METRICS_MAGIC
from journal._layout import MAGIC as SEGMENT_MAGIC
from journal._metrics import reader_alive, word_index
from journal._metrics_layout import READER_METRICS_MAGIC, WRITER_METRICS_MAGIC

__all__ = [
    "RADAR_METRICS_NAME",
    "RadarMetricsMissingError",
    "RadarPair",
    "RadarSnapshot",
    "RadarStream",
    "read_radar_metrics",
]

RADAR_METRICS_NAME: Final = L.RADAR_METRICS_NAME
"""The file's name in the radar's results journal directory (``radar --results DIR``)."""

_SEQLOCK_PATIENCE_S: Final = 0.1
"""How long a pair's slot may keep changing under a read before it is an error: the
radar holds a slot for nanoseconds, or for a scheduler quantum if it is preempted
mid-write."""
_OTHER_MAGICS: Final = {
    WRITER_METRICS_MAGIC: "a writer's metrics file (writer.metrics)",
    READER_METRICS_MAGIC: "a reader's metrics file (readers/*.metrics)",
    COLLECTOR_METRICS_MAGIC: "a collector's metrics file (collector.metrics)",
    SEGMENT_MAGIC: "a journal segment",
}


class RadarMetricsMissingError(JournalError, FileNotFoundError):
    """No radar metrics file at the path (the radar has not started, or writes none)."""


@dataclass(frozen=True, slots=True)
class RadarStream:
    """One (venue, symbol) the radar reads."""

    venue: str
    symbol: str
    updates: int
    """Books of the stream read."""
    last_local_ns: int
    """``local_timestamp_ns`` of its latest book (collector clock, CLOCK_REALTIME; 0: none)."""
    last_exchange_ms: int
    """The exchange's time stamp of its latest book, ms since the epoch (0: none)."""


@dataclass(frozen=True, slots=True)
class RadarPair:
    """One (base, KRW venue, USDT venue) pair: its latest result (schema/radar.fbs)."""

    base: str
    krw_exchange: str
    usdt_exchange: str
    kimchi_premium: float
    """A fraction (0.01: the KRW market 1% above); NaN if unknown (stale, no FX)."""
    edge_bps: float
    """Executable edge after fees for the radar's notional, basis points; NaN if none."""
    fx: float
    """KRW per USDT used; NaN if unknown."""
    fill_base_quantity: float
    """Base quantity the notional fills (0 when nothing fills)."""
    stale: bool
    updated_ns: int
    """The radar's clock (CLOCK_REALTIME) when the result was computed."""
    updates: int
    """Results computed for the pair."""


@dataclass(frozen=True, slots=True)
class RadarSnapshot:
    """A radar's ``radar.metrics``, read at ``taken_ns``."""

    path: Path
    name: str
    """The radar's name (``--metrics-name``, default "radar")."""
    pid: int
    host: str
    started_ns: int
    alive: bool
    """Whether the radar holds the file's lock (it runs); False once it stopped or died."""
    taken_ns: int
    """CLOCK_REALTIME ns just after the words were read: ages are measured from it (a
    book's ``taken_ns - last_local_ns`` is never negative on the radar's host)."""
    books: int
    """Books read, all journals."""
    results: int
    """Results computed (each also appended to the results journal, if any)."""
    latency_sample_period: int
    """One live book in this many is counted in the histogram (1: every one)."""
    latency_counts: tuple[int, ...]
    """Publish-to-observe latency of live books (replayed books are not counted), in the
    writer's buckets: journal._metrics_layout.latency_bucket_bounds gives each one's ns."""
    latency_sum_ns: int
    streams: tuple[RadarStream, ...]
    pairs: tuple[RadarPair, ...]
    streams_without_slot: int = 0
    """Streams seen that have no slot (no room, or a name over 32 bytes): their books are
    in ``books`` only. The radar said so once on stderr."""
    pairs_without_slot: int = 0
    """Pairs computed that have no slot: their results are in ``results`` only."""


def read_radar_metrics(path: str | os.PathLike[str]) -> RadarSnapshot:
    """The figures of the radar whose metrics file is ``path`` (``<results>/radar.metrics``).

    Reads without disturbing the radar. RadarMetricsMissingError (a JournalError and a
    FileNotFoundError) if there is no such file; JournalError naming the file and the
    offset of the field for a file that is not a radar's metrics file this code can
    read (short, another kind of file, another version, inconsistent sizes).
    """
    path = Path(path)
    data = _map(path)
    with data:
        stream_capacity = _check_header(path, data)
        with memoryview(data) as raw, raw.cast("Q") as words, raw.cast("d") as doubles:
            # The counts first: the names below them are complete (published after them).
            stream_count = _count(path, words, L.STREAM_COUNT_OFFSET, L.STREAM_CAPACITY_OFFSET)
            pair_count = _count(path, words, L.PAIR_COUNT_OFFSET, L.PAIR_CAPACITY_OFFSET)
            first = word_index(L.LATENCY_COUNTS_OFFSET)
            latency_counts = tuple(words[first : first + L.LATENCY_BUCKETS].tolist())
            streams = tuple(_stream(data, words, index) for index in range(stream_count))
            pairs = tuple(
                _pair(path, data, words, doubles, stream_capacity, index)
                for index in range(pair_count)
            )
            books = words[word_index(L.BOOKS_TOTAL_OFFSET)]
            results = words[word_index(L.RESULTS_TOTAL_OFFSET)]
            latency_sum_ns = words[word_index(L.LATENCY_SUM_NS_OFFSET)]
            streams_without_slot = words[word_index(L.STREAMS_WITHOUT_SLOT_TOTAL_OFFSET)]
            pairs_without_slot = words[word_index(L.PAIRS_WITHOUT_SLOT_TOTAL_OFFSET)]
        # After the words: every time in them is older (an age is never negative).
        taken_ns = time.time_ns()
        _, _, _, pid, period, started_ns, host, name, _, _, _ = L.HEADER_STRUCT.unpack_from(data)
    return RadarSnapshot(
        path=path,
        name=_text(name),
        pid=pid,
        host=_text(host),
        started_ns=started_ns,
        alive=reader_alive(path),
        taken_ns=taken_ns,
        books=books,
        results=results,
        latency_sample_period=period,
        latency_counts=latency_counts,
        latency_sum_ns=latency_sum_ns,
        streams=streams,
        pairs=pairs,
        streams_without_slot=streams_without_slot,
        pairs_without_slot=pairs_without_slot,
    )


def _map(path: Path) -> mmap.mmap:
    """``path`` mapped read-only (opened without following a symbolic link), at least
    as long as the header."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RadarMetricsMissingError(
            f"{path}: no such file; the radar writes radar.metrics in its --results "
            "directory (or at --metrics-file) from its start"
        ) from None
    except OSError as error:
        raise JournalError(
            f"{path}: cannot open it ({error.strerror}"
            + ("; a symbolic link, which is not followed" if error.errno == errno.ELOOP else "")
            + ")"
        ) from None
    try:
        size = os.fstat(fd).st_size
        if size < L.STREAMS_OFFSET:
            raise JournalError(
                f"{path} offset={size}: the file ends there, inside the {L.STREAMS_OFFSET}-byte "
                "header of a radar metrics file (a truncated copy, or another kind of file)"
            )
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def _check_header(path: Path, data: mmap.mmap) -> int:
    """JournalError (path, offset, field) unless the header is a radar's this reader
    knows and the file's size agrees with it; returns the stream capacity."""
    magic, version, file_size, _, period, _, _, _, streams, pairs, buckets = (
        L.HEADER_STRUCT.unpack_from(data)
    )

    def bad(offset: int, text: str) -> JournalError:
        return JournalError(f"{path} offset={offset}: {text}")

    if magic != L.RADAR_METRICS_MAGIC:
        kind = _OTHER_MAGICS.get(magic)
        raise bad(
            L.MAGIC_OFFSET,
            f"magic={magic!r}, expected {L.RADAR_METRICS_MAGIC!r}: not a radar's metrics file"
            + (f" (it is {kind})" if kind else ""),
        )
    if version != L.RADAR_METRICS_VERSION:
        raise bad(
            L.VERSION_OFFSET,
            f"metrics_version={version}, this reader knows {L.RADAR_METRICS_VERSION}: use the "
            "journal package of the radar's release",
        )
    if period < 1:
        raise bad(L.LATENCY_SAMPLE_PERIOD_OFFSET, f"latency_sample_period={period}, expected >= 1")
    for offset, field, value in (
        (L.STREAM_CAPACITY_OFFSET, "stream_capacity", streams),
        (L.PAIR_CAPACITY_OFFSET, "pair_capacity", pairs),
    ):
        if not 1 <= value <= L.MAX_CAPACITY:
            raise bad(offset, f"{field}={value}, expected 1 to {L.MAX_CAPACITY}")
    if buckets != L.LATENCY_BUCKETS:
        raise bad(
            L.LATENCY_BUCKETS_OFFSET, f"latency_buckets={buckets}, expected {L.LATENCY_BUCKETS}"
        )
    expected = L.radar_metrics_size(streams, pairs)
    if file_size != expected:
        raise bad(
            L.FILE_SIZE_OFFSET,
            f"file_size={file_size} does not fit stream_capacity={streams} and "
            f"pair_capacity={pairs} (expected {expected})",
        )
    if len(data) != file_size:
        raise bad(
            L.FILE_SIZE_OFFSET,
            f"file_size={file_size}, but the file has {len(data)} bytes (truncated, or grown)",
        )
    return int(streams)


def _count(path: Path, words: memoryview[int], offset: int, capacity_offset: int) -> int:
    """A slot count, checked against its capacity."""
    count: int = words[word_index(offset)]
    capacity: int = words[word_index(capacity_offset)]
    if count > capacity:
        field = "stream_count" if offset == L.STREAM_COUNT_OFFSET else "pair_count"
        raise JournalError(
            f"{path} offset={offset}: {field}={count}, above its capacity {capacity}"
        )
    return count


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _name(data: mmap.mmap, offset: int, size: int) -> str:
    return _text(data[offset : offset + size])


def _signed(word: int) -> int:
    """A u64 word as the i64 it stores."""
    return word - (1 << 64) if word >= 1 << 63 else word


def _stream(data: mmap.mmap, words: memoryview[int], index: int) -> RadarStream:
    base = L.stream_slot_offset(index)
    first = word_index(base)
    return RadarStream(
        venue=_name(data, base + L.STREAM_VENUE_OFFSET, L.VENUE_SIZE),
        symbol=_name(data, base + L.STREAM_SYMBOL_OFFSET, L.SYMBOL_SIZE),
        updates=words[first + word_index(L.STREAM_UPDATES_TOTAL_OFFSET)],
        last_local_ns=_signed(words[first + word_index(L.STREAM_LAST_LOCAL_NS_OFFSET)]),
        last_exchange_ms=_signed(words[first + word_index(L.STREAM_LAST_EXCHANGE_MS_OFFSET)]),
    )


_PREMIUM: Final = word_index(L.PAIR_KIMCHI_PREMIUM_OFFSET)
_EDGE: Final = word_index(L.PAIR_EDGE_BPS_OFFSET)
_FX: Final = word_index(L.PAIR_FX_OFFSET)
_FILL: Final = word_index(L.PAIR_FILL_BASE_QUANTITY_OFFSET)
_STALE: Final = word_index(L.PAIR_STALE_OFFSET)
_UPDATED: Final = word_index(L.PAIR_UPDATED_NS_OFFSET)
_UPDATES: Final = word_index(L.PAIR_UPDATES_TOTAL_OFFSET)


def _pair(
    path: Path,
    data: mmap.mmap,
    words: memoryview[int],
    doubles: memoryview[float],
    stream_capacity: int,
    index: int,
) -> RadarPair:
    """Pair slot ``index``, its result words read under the slot's sequence lock."""
    base = L.pair_slot_offset(stream_capacity, index)
    names = (
        _name(data, base + L.PAIR_BASE_OFFSET, L.BASE_SIZE),
        _name(data, base + L.PAIR_KRW_EXCHANGE_OFFSET, L.VENUE_SIZE),
        _name(data, base + L.PAIR_USDT_EXCHANGE_OFFSET, L.VENUE_SIZE),
    )
    slot = word_index(base)
    sequence = slot + word_index(L.PAIR_SEQUENCE_OFFSET)
    deadline: float | None = None
    dead_checked = False
    while True:
        # The loads in this order, each once: sequence, the words, sequence again.
        begin = words[sequence]
        values = (
            doubles[slot + _PREMIUM],
            doubles[slot + _EDGE],
            doubles[slot + _FX],
            doubles[slot + _FILL],
            words[slot + _STALE],
            words[slot + _UPDATED],
            words[slot + _UPDATES],
        )
        if not begin & 1 and words[sequence] == begin:
            break
        if begin & 1 and not dead_checked:
            # A radar killed between the two stores of a write leaves the slot odd
            # for good: its last words are as good as it gets.
            dead_checked = True
            if not reader_alive(path):
                break
        now = time.monotonic()
        if deadline is None:
            deadline = now + _SEQLOCK_PATIENCE_S
        elif now > deadline:
            raise JournalError(
                f"{path} offset={base + L.PAIR_SEQUENCE_OFFSET}: pair slot {index} "
                f"({' '.join(names)}) changed under every read for {_SEQLOCK_PATIENCE_S} s "
                f"(sequence={begin}): is the radar stuck in the middle of a write?"
            )
    premium, edge, fx, fill, stale, updated, updates = values
    return RadarPair(
        *names,
        kimchi_premium=premium,
        edge_bps=edge,
        fx=fx,
        fill_base_quantity=fill,
        stale=bool(stale),
        updated_ns=_signed(updated),
        updates=updates,
    )
