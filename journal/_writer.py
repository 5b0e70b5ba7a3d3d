"""The journal's single writer: append, publish, roll, and recover after a crash.

Per record: validate and write the bytes in place (journal._encode), then one
release store of the commit offset (journal._publish), then one load of the
sleepers flag; no system call unless a reader sleeps on the futex. Then the
counters of ``writer.metrics`` (journal._metrics): two word stores, and one append
in LATENCY_SAMPLE_PERIOD timed into the latency histogram.

The journal is checked to still be there (directory and open segment at their
paths, the segment not truncated) at every roll and before the first append once
JOURNAL_CHECK_INTERVAL_NS has passed since the last check: an append that stamps
the time (or, with metrics, the sampled append) compares it with the deadline and,
when a check is due, lowers ``_limit`` so that the next append takes the slow path,
which checks before it writes. The hot path pays one comparison for it; a slow
writer (a book every 200 ms) checks before every book.

Compiled (journal._native): ``Writer``'s base class is journal._cwriter's WriterCore,
which holds the hot state above (``_position``, ``_limit``, ``_index``, ``_records``,
``_next_check_ns``, ``_time_next``: the same attributes, read and written by the
Python code here too) and whose ``append_orderbook``, ``append_dict`` and
``append_many`` do all of the above in C for the books the generated writer takes on
its fast path (Python floats, ints, lists or tuples) while the record fits the
segment. Any other call (an invalid book, a numpy array, an int price, a roll, a
check due, keywords) goes to the methods here with a ``_python`` suffix, unchanged:
they are the reference, and the whole path with ``JOURNAL_PURE_PYTHON=1``.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import struct
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns, time_ns
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from journal import _futex, _native
from journal import _layout as F
from journal._decode import Position, read_orderbook
from journal._encode import (
    DEFAULT_MAX_LEVELS,
    DEFAULT_MAX_NAME_BYTES,
    EncoderLimits,
    Levels,
    OrderBookEncoder,
    as_levels,
)
from journal._errors import (
    CorruptSegmentError,
    InvalidRecordError,
    JournalError,
    JournalFullError,
    JournalGoneError,
    RecordTooLargeError,
)
from journal._frames import check_commit, walk_frames
from journal._lock import WriterLock
from journal._metrics import (
    LAST_PUBLISH_WORD,
    LATENCY_SAMPLE_MASK,
    RECORDS_WORD,
    WriterMetrics,
)
from journal._orderbook_layout import LOCAL_TIMESTAMP_NS_POS
from journal._orderbook_layout import PAYLOAD_ID as ORDERBOOK_PAYLOAD_ID
from journal._paths import prepare_journal_directory
from journal._publish import (
    clear_interrupted_seal,
    clear_sleepers,
    is_sealed,
    load_commit_acquire,
    load_end_marker_offset,
    load_sleepers,
    publish_commit,
    publish_seal,
    require_supported_platform,
)
from journal._segment import (
    MappedSegment,
    WriterIdentity,
    create_segment,
    remove_unfinished,
    segment_indices,
    segment_path,
)
from journal._verify import SCHEMAS, VerificationError, verify_size_prefixed

log = logging.getLogger("journal.writer")

DEFAULT_SEGMENT_SIZE: Final = 64 * 1024 * 1024
JOURNAL_CHECK_INTERVAL_NS: Final = 50_000_000
"""How often (at most) an appending writer checks that its journal is still at its
path: a journal removed or replaced costs the books of at most about this long."""
_END_MARKER: Final = struct.pack("<II", F.END_OF_SEGMENT, 0)
_LOCAL_TIMESTAMP: Final = struct.Struct("<q")
_DICT_KEYS: Final = ("exchangename", "symbol", "timestamp", "sequence", "bids", "asks")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the journal found and mended; ``Writer.recovery``."""

    segment: int
    commit_offset: int
    records_in_segment: int
    created: bool
    cleared_bytes: int
    removed_unfinished: tuple[str, ...]


class _PureWriterCore:
    """The writer's hot state, on the pure-Python path: plain slots. Compiled, the
    same attributes are journal._cwriter.WriterCore's, with the compiled appends."""

    __slots__ = (
        "_frames_fast",
        "_index",
        "_limit",
        "_next_check_ns",
        "_position",
        "_records",
        "_time_next",
    )
    _index: int
    _position: int  # where the next record goes
    _limit: int  # _segment_limit; 0 or -1 for the slow path that checks or refuses
    _records: int
    _next_check_ns: int
    _time_next: bool
    _frames_fast: bool  # compiled: append_frames checks OBK1 records in C

    def _attach_map(self, data: Any) -> None:
        """Compiled: append into this mapped segment. Nothing to do here."""

    def _detach_map(self) -> None:
        """Compiled: let the mapped segment go before it is closed."""

    def _attach_counters(self, counters: Any) -> None:
        """Compiled: the metrics words (or None) the appends update."""

    def _set_limits(self, max_levels: int, max_name_bytes: int) -> None:
        """Compiled: what the encoder accepts."""


if TYPE_CHECKING or _native.cwriter is None:
    _WriterCore = _PureWriterCore
else:
    _WriterCore = _native.cwriter.WriterCore


class Writer(_WriterCore):
    """Appends order books to the journal directory ``path``, which it owns alone.

    ``Writer(path)`` creates the journal or reopens it: after a crash it resumes
    after the last committed record (``recovery`` says what it found). A second
    writer on the same journal raises WriterLockedError. Use it as a context
    manager, or call ``close``.

    ``segment_size`` applies to segments created from now on (existing ones keep
    theirs); ``mode`` is the permission of the files (0o640 lets the group read,
    0o660 also lets group readers sleep on the futex); ``max_levels`` and
    ``max_name_bytes`` bound what ``append_orderbook`` accepts.

    ``metrics`` keeps the writer's counters (records, bytes, rolls, refusals, append
    latency) in ``writer.metrics`` for ``journal top`` and ``journal metrics``; they
    cost about 0.01 us per compiled append, 0.1-0.2 us on the pure-Python path
    (benchmarks/bench_append.py measures it).

    ``incarnation_ns`` and ``first_segment`` apply only when the journal is created
    (no segment yet): its first segment is ``first_segment`` (not 0) and every
    segment carries ``incarnation_ns`` instead of a stamp of its own. They exist for
    a copy of another journal (``journal mirror``): with ``append_frames`` and
    ``roll`` it holds the source's records at the source's very positions, and its
    segments name the source's incarnation. An existing journal keeps its own
    (``incarnation_ns`` says which).
    """

    __slots__ = (
        "__weakref__",
        "_bytes_base",
        "_commit_address",
        "_counters",
        "_encoder",
        "_finalizer",
        "_gone",
        "_known_shapes",
        "_last_position",
        "_lock",
        "_map",
        "_metrics",
        "_preparation",
        "_schema",
        "_scratch",
        "_segment",
        "_segment_limit",
        "_segments",
        "_shape",
        "_sleepers",
        "_words",
        "_worker",
        "path",
        "payload_id",
        "recovery",
        "segment_size",
    )
    # Set by _use_segment (the segment appended to), not in __init__.
    _map: mmap.mmap
    _words: memoryview  # its commit word
    _sleepers: memoryview  # its futex sleepers flag
    _segment_limit: int  # no record may end past it (room for the end marker)
    _last_position: Position
    _commit_address: int | None  # of the commit word, for FUTEX_WAKE (once needed)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_levels: int = DEFAULT_MAX_LEVELS,
        max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
        mode: int = 0o600,
        payload_id: bytes = ORDERBOOK_PAYLOAD_ID,
        metrics: bool = True,
        incarnation_ns: int | None = None,
        first_segment: int = 0,
    ) -> None:
        require_supported_platform()
        if (
            not F.MIN_SEGMENT_SIZE <= segment_size < F.MAX_SEGMENT_SIZE
            or segment_size % F.PAGE_SIZE
        ):
            raise ValueError(
                f"segment_size={segment_size}: must be a multiple of {F.PAGE_SIZE} in "
                f"{F.MIN_SEGMENT_SIZE}..{F.MAX_SEGMENT_SIZE - F.PAGE_SIZE}"
            )
        if len(payload_id) != F.PAYLOAD_ID_SIZE:
            raise ValueError(f"payload_id={payload_id!r}: must be {F.PAYLOAD_ID_SIZE} bytes")
        if mode & ~0o666:
            raise ValueError(f"mode={oct(mode)}: only read/write bits (at most 0o666)")
        if incarnation_ns is not None and not 0 < incarnation_ns < 1 << 63:
            raise ValueError(f"incarnation_ns={incarnation_ns}: must be a positive int64")
        if type(first_segment) is not int or not 0 <= first_segment < 1 << 63:
            raise ValueError(f"first_segment={first_segment!r}: must be an int >= 0")
        self.path = Path(path)
        self.segment_size = segment_size
        self.payload_id = payload_id
        self._encoder = OrderBookEncoder(EncoderLimits(max_levels, max_name_bytes))
        self._set_limits(max_levels, max_name_bytes)
        self._shape = self._encoder.shape
        self._known_shapes = self._encoder.known_shapes
        self._schema = SCHEMAS.get(payload_id)
        self._frames_fast = payload_id == ORDERBOOK_PAYLOAD_ID
        self._segments = _SegmentFactory(
            self.path, segment_size, payload_id, WriterIdentity.current(), mode
        )
        self._scratch = bytearray()
        self._segment: MappedSegment | None = None
        self._metrics: WriterMetrics | None = None
        self._counters: memoryview | None = None  # the metrics' words, or None
        self._records = 0
        self._time_next = False  # time the next append_orderbook
        self._preparation: Future[MappedSegment] | None = None
        self._gone: str | None = None  # what happened to the journal, once it is gone
        self._next_check_ns = time_ns() + JOURNAL_CHECK_INTERVAL_NS  # recovery checks it
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-prepare")
        with prepare_journal_directory(self.path, mode) as checked:
            self._lock = WriterLock(self.path, mode, checked.fd)
        # The worker creates segments relative to the locked directory: removed or
        # replaced, it gets none. Its own descriptor, closed by its last job: opened
        # anew, not dup'ed, since a dup would share the flock, held until that job ran.
        self._segments.directory_fd = os.open(
            ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._lock.directory_fd
        )
        # A writer dropped without close() still gives the journal back when it is
        # collected: the lock would otherwise outlive it for the whole process.
        self._finalizer = weakref.finalize(
            self, _abandon, self._lock, self._worker, self._segments.directory_fd
        )
        try:
            self.recovery = self._recover(incarnation_ns, first_segment)
        except BaseException:
            self.close()
            raise
        self._bytes_base = -self._position  # bytes_total = _bytes_base + commit
        if metrics:
            self._metrics = WriterMetrics.create(
                self.path, self._segments.identity, payload_id, mode
            )
        if self._metrics is not None:
            self._metrics.use_segment(self._index, self._bytes_base)
            self._counters = self._metrics.counters
            self._attach_counters(self._counters)
        if self.recovery.cleared_bytes or self.recovery.removed_unfinished:
            log.warning("recovered journal %s: %s", self.path, self.recovery)

    # -- appending ---------------------------------------------------------------

    def _append_orderbook_python(
        self,
        exchange_name: str,
        symbol: str,
        timestamp: int,
        sequence: int,
        bids: Levels,
        asks: Levels,
        local_timestamp_ns: int | None = None,
    ) -> Position:
        """Validate one book, write it and publish it; returns its ``(segment, offset)``.

        ``bids``/``asks``: ``(price, quantity)`` pairs, best first, or ``(n, 2)``
        arrays. ``timestamp`` is the exchange's, in ms; ``local_timestamp_ns``
        defaults to the time of publishing: taken after the book is validated and
        laid out, just before the commit, so that publish-to-observe latencies
        measure the hand-off. InvalidRecordError (a ValueError) names the bad
        field; nothing is written then.
        """
        started = perf_counter_ns() if self._time_next else 0
        try:
            if type(bids) is not list:
                bids = as_levels("bids", bids)
            if type(asks) is not list:
                asks = as_levels("asks", asks)
            try:
                shape = self._known_shapes[exchange_name, symbol, len(bids), len(asks)]
            except (KeyError, TypeError):  # a new shape, or names to refuse
                shape = self._shape(exchange_name, symbol, len(bids), len(asks))
            stamp = local_timestamp_ns is None
            if local_timestamp_ns is None:
                local_timestamp_ns = 0  # stamped below, once the record is laid out
            position = self._position
            end = position + shape.size
            if end > self._limit:
                # Rare: validate into scratch first, so a bad book never causes a roll.
                scratch = bytearray(shape.size)
                shape.write(scratch, 0, timestamp, sequence, local_timestamp_ns, bids, asks)
                if stamp:
                    local_timestamp_ns = _stamp_now(scratch, 0)
                self._write_frames(scratch, [shape.size])
                if self._counters is not None:  # the book's stamp, as on the fast path
                    self._counters[LAST_PUBLISH_WORD] = local_timestamp_ns
                if started and self._metrics is not None:
                    self._metrics.sample_latency(perf_counter_ns() - started)
                    self._time_next = False
                return self._last_position
            shape.write(self._map, position, timestamp, sequence, local_timestamp_ns, bids, asks)
        except JournalError as error:
            if self._metrics is not None:
                self._metrics.refused(error)
            raise
        if stamp:
            local_timestamp_ns = time_ns()
            _LOCAL_TIMESTAMP.pack_into(
                self._map, position + LOCAL_TIMESTAMP_NS_POS, local_timestamp_ns
            )
            if local_timestamp_ns >= self._next_check_ns:
                self._limit = 0  # the next append takes the slow path, which checks
        self._position = end
        publish_commit(self._words, end)
        if load_sleepers(self._sleepers):
            self._wake_sleepers()
        counters = self._counters
        if counters is not None:
            # Figures for journal top: no ordering with the commit is needed.
            records = self._records + 1
            self._records = records
            counters[RECORDS_WORD] = records
            counters[LAST_PUBLISH_WORD] = local_timestamp_ns
            if started:
                assert self._metrics is not None  # counters are its words
                self._metrics.sample_latency(perf_counter_ns() - started)
                self._time_next = False
            elif not records & LATENCY_SAMPLE_MASK:
                self._time_next = True  # one append in LATENCY_SAMPLE_PERIOD
                if time_ns() >= self._next_check_ns:
                    self._limit = 0  # the next append takes the slow path, which checks
        return (self._index, position)

    def _append_dict_python(self, book: Mapping[str, Any]) -> Position:
        """Append the collector's ``OrderBookV2.to_dict()`` form.

        Keys: ``exchangename``, ``symbol``, ``timestamp`` (ms), ``sequence``,
        ``bids``, ``asks``; optional ``local_timestamp_ns``.
        """
        try:
            args = _dict_args(book)
        except InvalidRecordError as error:
            if self._metrics is not None:
                self._metrics.refused(error)
            raise
        return self.append_orderbook(*args)

    def append(self, record: bytes | bytearray | memoryview) -> Position:
        """Append one size-prefixed FlatBuffer carrying this journal's identifier.

        The buffer is verified (journal._verify) for the journal's schema before
        anything is written; for a payload without a known schema, its framing.
        """
        try:
            view = self._checked_buffer(record)
            self._write_frames(view, [len(view)])
        except JournalError as error:
            if self._metrics is not None:
                self._metrics.refused(error)
            raise
        return self._last_position

    def _append_frames_python(self, frames: bytes | bytearray | memoryview) -> int:
        """Append record frames exactly as they lie in a segment; returns how many.

        ``frames`` is a run of frames as a reader finds them between two record
        boundaries of a segment: each a size-prefixed FlatBuffer of this journal's
        payload, then zero padding to a multiple of 8, back to back. Every record gets
        the checks of ``append`` (framing, identifier, verification, the book rules);
        if one fails, InvalidRecordError names its index and offset in ``frames``
        and nothing is written. Then they are copied byte for byte (their
        ``local_timestamp_ns`` included: nothing is stamped) with one commit per
        segment touched. This is how a copy of a journal (``journal mirror``) appends
        what another writer wrote: the same bytes, so the same records at the same
        offsets when the copy rolls where its source did (``roll``).
        """
        try:
            sizes = self._checked_frames(frames)
            if sizes:
                with memoryview(frames).cast("B") as view:
                    self._write_frames(view, sizes)
        except JournalError as error:
            if self._metrics is not None:
                self._metrics.refused(error)
            raise
        return len(sizes)

    def _checked_frames(self, frames: Any) -> list[int]:
        """The framed size of each record of ``frames``, every record checked as
        ``append`` checks it; InvalidRecordError names the first that fails."""
        try:
            view = memoryview(frames).cast("B")
        except TypeError:
            raise InvalidRecordError(
                f"frames: expected a bytes-like run of record frames, got {type(frames).__name__}"
            ) from None
        with view:
            sizes: list[int] = []
            offset, end = 0, len(view)
            while offset < end:
                where = f"frames[{len(sizes)}] at offset {offset}"
                if end - offset < F.SIZE_PREFIX_SIZE:
                    raise InvalidRecordError(f"{where}: {end - offset} bytes, no size prefix")
                size = int.from_bytes(view[offset : offset + F.SIZE_PREFIX_SIZE], "little")
                record_end = offset + F.SIZE_PREFIX_SIZE + size
                framed = F.align_record(record_end) - offset
                if offset + framed > end:
                    raise InvalidRecordError(
                        f"{where}: size prefix={size} runs past the end of the {end} bytes "
                        "(a frame is the record, then zero padding to a multiple of 8)"
                    )
                if any(view[record_end : offset + framed]):
                    raise InvalidRecordError(f"{where}: the padding after the record is not zero")
                try:
                    self._checked_buffer(view[offset:record_end])
                except InvalidRecordError as error:
                    raise type(error)(f"{where}: {error}") from None
                sizes.append(framed)
                offset += framed
            return sizes

    def roll(self) -> Position:
        """Seal the open segment now (its end marker) and go on in the next one;
        returns the new position, ``(segment + 1, 4096)``.

        A copy of another journal calls it where its source rolled, so that its
        records keep their source positions (``append_frames``). An empty segment is
        sealed too: the caller asked for that segment boundary.
        """
        if self._segment is None:
            raise JournalError(f"the writer of {self.path} is closed")
        self._roll()
        return self.position

    @property
    def incarnation_ns(self) -> int:
        """The stamp every segment of this incarnation carries (docs/FORMAT.md)."""
        stamp = self._segments.incarnation_ns
        assert stamp is not None  # set when the journal was opened or created
        return stamp

    def _append_many_python(self, books: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        """Validate a batch in full, then write it with one commit per segment touched.

        Books without a local_timestamp_ns are stamped as they are validated, so up
        to the batch's validation time before it is published.

        Each book is a ``to_dict()`` mapping or a tuple of ``append_orderbook``
        arguments. If any book is invalid, InvalidRecordError names its index and
        nothing of the batch is written. Returns the number of books appended.
        """
        try:
            return self._append_batch(books)
        except JournalError as error:
            if self._metrics is not None:
                self._metrics.refused(error)
            raise

    if TYPE_CHECKING or _native.cwriter is None:
        # Compiled, WriterCore's appends are these, in C, falling back to the above.
        append_orderbook = _append_orderbook_python
        append_dict = _append_dict_python
        append_many = _append_many_python
    if TYPE_CHECKING or not hasattr(_WriterCore, "append_frames"):
        append_frames = _append_frames_python

    def _append_batch(self, books: Iterable[Mapping[str, Any] | Sequence[Any]]) -> int:
        scratch = self._scratch
        sizes: list[int] = []
        used = 0
        for index, book in enumerate(books):
            try:
                if isinstance(book, Mapping):
                    args = _dict_args(book)
                else:
                    try:
                        args = tuple(book)
                    except TypeError:
                        raise InvalidRecordError(
                            f"expected a to_dict() mapping or a tuple of append_orderbook "
                            f"arguments, got {type(book).__name__}"
                        ) from None
                    if not 6 <= len(args) <= 7:
                        raise InvalidRecordError(
                            f"expected (exchange_name, symbol, timestamp, sequence, bids, "
                            f"asks[, local_timestamp_ns]), got {len(args)} items"
                        )
                exchange_name, symbol, timestamp, sequence, bids, asks = args[:6]
                local_ns = args[6] if len(args) == 7 and args[6] is not None else time.time_ns()
                bids = as_levels("bids", bids)
                asks = as_levels("asks", asks)
                shape = self._shape(exchange_name, symbol, len(bids), len(asks))
                if used + shape.size > len(scratch):
                    scratch.extend(bytes(max(len(scratch), shape.size, 1 << 16)))
                shape.write(scratch, used, timestamp, sequence, local_ns, bids, asks)
            except InvalidRecordError as error:
                raise type(error)(f"books[{index}]: {error}") from None
            sizes.append(shape.size)
            used += shape.size
        if sizes:
            with memoryview(scratch)[:used] as batch:  # released even if an error is kept
                self._write_frames(batch, sizes)
        return len(sizes)

    def count_refusal(self, error: JournalError) -> None:
        """Count in this writer's metrics a book refused on its behalf without calling
        it (the collector's back-off while the tmpfs is full), as if it had refused it."""
        if self._metrics is not None:
            self._metrics.refused(error)

    # -- state ---------------------------------------------------------------------

    @property
    def position(self) -> Position:
        """``(segment, offset)`` where the next record will go; also the commit offset."""
        return (self._index, self._position)

    def close(self, *, seal: bool = False) -> None:
        """Release the mapping and the lock. Committed records stay for readers.

        ``seal=True`` first rolls a segment that holds records: the next segment is
        created and this one gets its end marker, so the compactor may archive it
        now rather than after the next writer fills it. For a collector that stops
        for the day; a restart resumes in the new, empty segment. Without it the
        segment stays open and a restarted writer appends to it.

        The segment prepared for the next roll was never published; it is removed.
        """
        try:
            if seal and self._segment is not None and self._position > F.HEADER_SIZE:
                self._roll()
        finally:
            self._close()

    def _close(self) -> None:
        preparation, self._preparation = self._preparation, None
        if preparation is not None:
            with contextlib.suppress(JournalError, OSError):
                unused = preparation.result()
                unused.close()
                os.unlink(unused.path)
        self._release_segment()
        self._limit = -1  # every later append takes the slow path, which refuses it
        metrics, self._metrics, self._counters = self._metrics, None, None
        self._attach_counters(None)  # before the metrics' words are released
        if metrics is not None:
            metrics.close()
        self._finalizer()  # releases the lock, stops the worker

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"position={self.position}" if self._segment else "closed"
        return f"Writer({str(self.path)!r}, {state})"

    # -- internals -------------------------------------------------------------------

    def _checked_buffer(self, record: Any) -> memoryview:
        try:
            view = memoryview(record).cast("B")
        except TypeError:
            raise InvalidRecordError(
                f"record: expected a bytes-like size-prefixed FlatBuffer, got "
                f"{type(record).__name__}"
            ) from None
        if len(view) < F.SIZE_PREFIX_SIZE + F.MIN_RECORD_SIZE:
            raise InvalidRecordError(f"record of {len(view)} bytes is too short for a FlatBuffer")
        size = int.from_bytes(view[: F.SIZE_PREFIX_SIZE], "little")
        if size + F.SIZE_PREFIX_SIZE != len(view):
            raise InvalidRecordError(
                f"size prefix={size} but the buffer holds {len(view) - 4} bytes after it: "
                "pass exactly what FinishSizePrefixed produced"
            )
        identifier = bytes(
            view[F.RECORD_PAYLOAD_ID_OFFSET : F.RECORD_PAYLOAD_ID_OFFSET + F.PAYLOAD_ID_SIZE]
        )
        if identifier != self.payload_id:
            raise InvalidRecordError(
                f"file_identifier={identifier!r}, this journal holds {self.payload_id!r}"
            )
        if self._schema is not None:
            try:
                verify_size_prefixed(view, 0, len(view), self._schema)
            except VerificationError as error:
                raise InvalidRecordError(f"record fails verification: {error}") from None
        if self.payload_id == ORDERBOOK_PAYLOAD_ID:
            self._check_book_rules(view)
        return view

    def _check_book_rules(self, view: memoryview) -> None:
        """A verified OrderBook built elsewhere must keep the rules append_orderbook
        enforces (limits, prices, order, names): run them on its decoded values."""
        try:
            book = read_orderbook(view, 0, len(view), (self._index, self._position))
        except UnicodeDecodeError as error:
            raise InvalidRecordError(f"record has a string that is not UTF-8: {error}") from None
        bids, asks = book.bids.tolist(), book.asks.tolist()
        shape = self._shape(book.exchange_name, book.symbol, len(bids), len(asks))
        scratch = bytearray(shape.size)
        shape.write(scratch, 0, book.timestamp, book.sequence, book.local_timestamp_ns, bids, asks)

    def _write_frames(self, data: bytes | bytearray | memoryview, sizes: list[int]) -> None:
        """Copy validated frames (back to back, each padded to 8) and publish them.

        One commit per segment: frames that do not fit go to the next segment.
        """
        if self._segment is None:
            raise JournalError(f"the writer of {self.path} is closed")
        if self._gone is not None or time_ns() >= self._next_check_ns:
            self._check_journal()
        capacity = self.segment_size - F.HEADER_SIZE - F.END_MARKER_SIZE
        start = 0
        first = 0
        while first < len(sizes):
            position = self._position
            end = position
            count = 0
            for size in sizes[first:]:
                framed = F.align_record(size)
                if end + framed > self._limit:
                    break
                end += framed
                count += 1
            if count == 0:
                if F.align_record(sizes[first]) > capacity:
                    raise RecordTooLargeError(
                        f"record of {sizes[first]} bytes is larger than a segment can hold "
                        f"({capacity} bytes with segment_size={self.segment_size}); records "
                        "are never split: raise segment_size"
                    )
                try:
                    self._roll()
                except JournalFullError as error:
                    if first:  # a batch: say how much of it is in the journal
                        raise JournalFullError(
                            error.errno,
                            f"{error.strerror}; {first} of the {len(sizes)} records were "
                            "committed before it (in order), the rest were not",
                        ) from error
                    raise
                continue
            cursor = position
            for size in sizes[first : first + count]:
                self._map[cursor : cursor + size] = data[start : start + size]
                framed = F.align_record(size)
                if framed != size:
                    self._map[cursor + size : cursor + framed] = bytes(framed - size)
                self._last_position = (self._index, cursor)
                start += size
                cursor += framed
            self._position = end
            publish_commit(self._words, end)
            if load_sleepers(self._sleepers):
                self._wake_sleepers()
            counters = self._counters
            if counters is not None:
                self._records += count
                counters[RECORDS_WORD] = self._records
                counters[LAST_PUBLISH_WORD] = time_ns()
            first += count

    def _roll(self) -> None:
        """Seal this segment with the end marker once the next one exists in full."""
        self._check_journal()
        try:
            next_segment = self._take_prepared(self._index + 1)
        except FileNotFoundError:
            self._check_journal()  # the directory went after the check above: say so
            raise
        self._seal(self._map, self._words, self._position)
        if load_sleepers(self._sleepers):
            self._wake_sleepers()
        sealed = self._detach_segment()
        self._bytes_base += self._position - F.HEADER_SIZE  # still counted after the roll
        self._use_segment(next_segment)
        self._prepare(self._index + 1, retire=sealed)
        if self._metrics is not None:
            self._metrics.rolled()

    @staticmethod
    def _seal(data: Any, words: memoryview, commit: int) -> None:
        data[commit : commit + F.END_MARKER_SIZE] = _END_MARKER
        publish_seal(words, commit)

    def _prepare(self, index: int, retire: MappedSegment | None = None) -> None:
        """In the background: unmap ``retire`` (the segment just sealed), then create
        and prefault segment ``index`` for the next roll.

        Allocating, prefaulting and unmapping 64 MiB of tmpfs take tens of
        milliseconds; done by the writer's one worker thread (started once, since
        starting a thread costs the appending thread ~0.4 ms), a roll costs
        microseconds.
        """
        self._preparation = self._worker.submit(self._segments.prepare, index, retire)

    def _take_prepared(self, index: int) -> MappedSegment:
        """The next segment: the prepared one, or created now if preparing failed."""
        preparation, self._preparation = self._preparation, None
        if preparation is not None:
            with contextlib.suppress(JournalError, OSError):
                return preparation.result()
            # It failed (tmpfs full, say) when it ran: try again now, so room freed
            # since is used, and a failure is reported as it stands now.
        return self._segments.create_or_adopt(index)

    def _check_journal(self) -> None:
        """JournalGoneError if the journal is no longer at its path: the directory
        removed or replaced (a wiped tmpfs, an operator's ``rm -rf``), the open
        segment removed, replaced or truncated. Checked before anything is written, so
        the book at hand is not lost into a file no reader can find, and a truncated
        segment is refused here rather than faulting (SIGBUS) on the next write.
        Said once in the log; every later append raises the same error."""
        self._next_check_ns = time_ns() + JOURNAL_CHECK_INTERVAL_NS
        if self._gone is None:
            segment = self._segment
            if not self._lock.still_ours(self.path):
                self._gone = f"journal directory {self.path} was removed or replaced"
            elif segment is not None and (state := segment.path_state()) is not None:
                self._gone = f"the open segment {state.message}"
            else:
                self._limit = self._segment_limit
                return
            self._limit = -1  # every later append takes the slow path, which refuses it
            log.error("%s under its writer: this writer stops; open a new one", self._gone)
        raise JournalGoneError(
            f"{self._gone} under this writer: nothing more is written through it (the "
            f"book at hand was not); close it and open a new Writer on {self.path}, "
            "which starts a new incarnation of the journal"
        )

    def _wake_sleepers(self) -> None:
        """A reader said it sleeps on this segment's commit word: clear the flag, wake all.

        Readers raise the flag again before each sleep and wait with a timeout, so a
        wake racing a new sleeper costs that sleeper at most its timeout.
        """
        clear_sleepers(self._sleepers)
        if self._commit_address is None:
            anchor = ctypes.c_char.from_buffer(self._map, F.COMMIT_OFFSET_OFFSET)
            self._commit_address = ctypes.addressof(anchor)
            del anchor
        _futex.wake_all(self._commit_address)

    def _use_segment(self, segment: MappedSegment) -> None:
        """Make ``segment`` the one appended to, from its commit offset on."""
        self._release_segment()
        self._segment = segment
        self._map = segment.map
        self._attach_map(segment.map)
        header = memoryview(segment.map)[: F.HEADER_SIZE]
        self._words = header.cast("Q")
        self._sleepers = header.cast("I")
        header.release()
        self._index = segment.index
        self._position = load_commit_acquire(self._words)
        self._segment_limit = segment.header.segment_size - F.END_MARKER_SIZE
        self._limit = self._segment_limit if self._gone is None else -1
        self._last_position = (segment.index, self._position)
        self._commit_address = None
        if self._metrics is not None:
            self._metrics.use_segment(self._index, self._bytes_base)

    def _detach_segment(self) -> MappedSegment | None:
        """Stop using the current segment; the caller closes it."""
        segment, self._segment = self._segment, None
        if segment is not None:
            self._detach_map()  # before the mapping is closed
            for view in (self._words, self._sleepers):
                view.release()
            self._commit_address = None
        return segment

    def _release_segment(self) -> None:
        segment = self._detach_segment()
        if segment is not None:
            segment.close()

    def _recover(self, incarnation_ns: int | None, first_segment: int) -> RecoveryReport:
        """Resume after the last committed record; mend what a crash can leave.

        A crash can leave: uncommitted bytes after the commit (cleared), a segment
        half-created under its temporary name (removed), an empty segment prepared
        for the next roll (kept for it: writing resumes in the open one before it),
        a sealed segment without a next one (created now). Committed records are
        never changed.
        """
        removed = tuple(remove_unfinished(self.path))
        indices = segment_indices(self.path)
        created = not indices
        if created:
            # A new journal: its own incarnation, or the one it was told to carry on.
            self._segments.incarnation_ns = incarnation_ns
            self._use_segment(self._segments.create_or_adopt(first_segment))
        else:
            self._use_segment(self._segments.open(self._segment_to_resume(indices)))
        segment = self._segment
        assert segment is not None
        self._segments.incarnation_ns = segment.header.incarnation_ns
        commit = self._position
        check_commit(commit, len(self._map), str(segment.path))
        records = sum(1 for _ in walk_frames(self._map, commit, self.payload_id, str(segment.path)))
        sealed = is_sealed(self._words, commit)
        marker = load_end_marker_offset(self._words)
        if not sealed and marker and marker != commit:
            # Not what a crash leaves (that is marker == commit, below): the commit of
            # a sealed segment was moved. Checked before anything is cleared.
            raise CorruptSegmentError(
                f"end_marker_offset={marker} but commit_offset={commit}: a sealed segment "
                "whose commit was cut short (or other damage); resuming would overwrite "
                "the records after the commit: refused, run 'journal verify'",
                path=str(segment.path),
                offset=F.COMMIT_OFFSET_OFFSET,
            )
        cleared = _clear_beyond(self._map, commit)
        if sealed:
            records -= 1  # the end marker
            self._use_segment(self._segments.create_or_adopt(segment.index + 1))
        else:
            # A crash between the two stores of a seal leaves the offset (equal to the
            # commit) without the commit that would publish the marker: still open.
            clear_interrupted_seal(self._words)
        assert self._segment is not None
        self._segment.prefault()
        self._prepare(self._index + 1)
        return RecoveryReport(self._index, self._position, records, created, cleared, removed)

    def _segment_to_resume(self, indices: list[int]) -> int:
        """The newest segment, or the open one before it if the newest is the empty
        segment a writer prepared for its next roll."""
        newest = indices[-1]
        if len(indices) < 2 or indices[-2] != newest - 1:
            return newest
        with MappedSegment(segment_path(self.path, newest - 1)) as previous:
            if previous.is_sealed():
                return newest
        with MappedSegment(segment_path(self.path, newest)) as prepared:
            commit = prepared.load_commit_acquire()
            if commit != F.HEADER_SIZE:
                raise CorruptSegmentError(
                    f"segment {newest} holds records (commit_offset={commit}) but segment "
                    f"{newest - 1} before it is not sealed",
                    path=str(prepared.path),
                    offset=F.COMMIT_OFFSET_OFFSET,
                )
        return newest - 1


@dataclass(slots=True)
class _SegmentFactory:
    """Makes and opens a journal's segments for its writer. The worker thread calls
    it, never the Writer itself, so a writer dropped without close() is collected
    (and its lock released) on the thread that dropped it.

    ``incarnation_ns`` is the stamp of the incarnation being written, set once by
    recovery (None until then: the first segment created starts a new one).
    """

    path: Path
    segment_size: int
    payload_id: bytes
    identity: WriterIdentity
    mode: int
    incarnation_ns: int | None = None
    directory_fd: int | None = None
    """The locked journal directory; segments are made and opened relative to it."""

    def open(self, index: int) -> MappedSegment:
        return MappedSegment.open_checked(
            self.path, index, self.payload_id, writable=True, directory_fd=self.directory_fd
        )

    def create_or_adopt(self, index: int) -> MappedSegment:
        """Create segment ``index``, or take the empty one a previous writer prepared."""
        # FileExistsError: prepared by the writer before us; checked empty below.
        with contextlib.suppress(FileExistsError):
            create_segment(
                self.path,
                index,
                self.segment_size,
                self.payload_id,
                self.identity,
                self.mode,
                self.incarnation_ns,
                self.directory_fd,
            )
        segment = self.open(index)
        commit = segment.load_commit_acquire()
        if commit != F.HEADER_SIZE:
            segment.close()
            raise CorruptSegmentError(
                f"segment {index} should be empty but commit_offset={commit}",
                path=str(segment.path),
                offset=F.COMMIT_OFFSET_OFFSET,
            )
        if self.incarnation_ns is None:
            self.incarnation_ns = segment.header.incarnation_ns
        elif segment.header.incarnation_ns != self.incarnation_ns:
            stamp = segment.header.incarnation_ns
            segment.close()
            raise CorruptSegmentError(
                f"segment {index} has incarnation_ns={stamp}, the journal being written "
                f"{self.incarnation_ns}: another writer recreated the journal directory",
                path=str(segment.path),
                offset=F.INCARNATION_NS_OFFSET,
            )
        return segment

    def prepare(self, index: int, retire: MappedSegment | None) -> MappedSegment:
        """On the worker thread: unmap ``retire``, create and prefault ``index``; the
        slow calls in it release the GIL."""
        if retire is not None:
            retire.drop_page_tables()
            retire.close()
        segment = self.create_or_adopt(index)
        segment.prefault()
        return segment


def _abandon(lock: WriterLock, worker: ThreadPoolExecutor, directory_fd: int) -> None:
    """Give the journal back: the end of Writer.close, or of a writer never closed."""
    lock.release()
    try:
        # After the job it may still run, which uses it.
        worker.submit(os.close, directory_fd)
    except RuntimeError:  # the interpreter is shutting down: no job runs any more
        os.close(directory_fd)
    worker.shutdown(wait=False)  # its last job (if any) finishes on its own


def _stamp_now(buffer: Any, record_offset: int) -> int:
    """Write the collector clock into the local_timestamp_ns of a laid-out record;
    returns it."""
    now = time.time_ns()
    _LOCAL_TIMESTAMP.pack_into(buffer, record_offset + LOCAL_TIMESTAMP_NS_POS, now)
    return now


def _dict_args(book: Mapping[str, Any]) -> tuple[Any, ...]:
    if not isinstance(book, Mapping):  # an array or a sequence indexes, then fails oddly
        raise InvalidRecordError(f"expected an order-book dict, got {type(book).__name__}")
    try:
        return (*(book[key] for key in _DICT_KEYS), book.get("local_timestamp_ns"))
    except KeyError as error:
        raise InvalidRecordError(
            f"order-book dict has no key {error.args[0]!r}; expected keys: " + ", ".join(_DICT_KEYS)
        ) from None
    except TypeError:
        raise InvalidRecordError(
            f"expected an order-book dict, got {type(book).__name__}"
        ) from None


def _clear_beyond(data: Any, commit: int) -> int:
    """Zero everything after ``commit`` (a dead writer's uncommitted bytes); returns
    how many bytes, up to the last non-zero one, had to be cleared."""
    tail = np.frombuffer(data, np.uint8, offset=commit)
    try:
        if not tail.any():
            return 0
        cleared = len(tail) - int(np.argmax(tail[::-1] != 0))
        tail[:cleared] = 0
        return cleared
    finally:
        del tail
