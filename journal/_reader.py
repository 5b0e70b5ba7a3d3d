"""Tailing a journal from Python: follow commits and segments, wait as asked.

``try_next`` is the whole protocol: acquire-load the commit, and while the next
frame lies below it, check the frame, verify and decode the record, step over it;
at an end-of-segment marker, open the next segment. It never blocks. ``poll`` and
iteration add waiting with an idle strategy.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import numpy as np

from journal import _futex
from journal import _layout as F
from journal._decode import Position, Record, read_record, record_time_ns
from journal._errors import CorruptSegmentError, JournalError
from journal._frames import END, check_commit, frame_at, walk_frames
from journal._publish import SLEEPERS_WORD, is_sealed, load_commit_acquire, require_x86_64
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._verify import SCHEMAS, TableSchema, VerificationError

Start = Literal["beginning", "end"] | tuple[int, int] | int
IdleName = Literal["spin", "yield", "backoff", "futex"]
IDLE_STRATEGIES: Final = ("spin", "yield", "backoff", "futex")

_BACKOFF_SPINS: Final = 64
_BACKOFF_YIELDS: Final = 64
_BACKOFF_MIN_SLEEP_S: Final = 20e-6
_BACKOFF_MAX_SLEEP_S: Final = 1e-3
_FUTEX_MAX_WAIT_S: Final = 0.05
"""A sleeper re-checks at least this often; bounds a wake lost to a race (FORMAT.md)."""
_WAITING_FOR_WRITER_SLEEP_S: Final = 0.005


class Reader:
    """Reads the order books of journal ``path`` in order, from ``start``.

    ``start``: ``"beginning"`` (oldest segment kept), ``"end"`` (only books
    published from now on), a saved ``(segment, offset)`` (a ``position``: reading
    resumes at that record), or an ``int`` collector time in ns (the first book
    whose ``local_timestamp_ns`` is at or after it).

    The journal need not exist yet: the reader waits for its writer. ``verify``
    runs the FlatBuffers verification on every record (turn off only for trusted
    replay). ``idle`` is how ``poll`` and iteration wait: ``spin`` (lowest latency,
    burns a core), ``yield``, ``backoff`` (spin, yield, then sleeps up to 1 ms) or
    ``futex`` (sleeps until the writer wakes it; needs write access to segment
    headers).

    Iterating blocks for the next book forever; ``available()`` stops at the
    current end; ``poll(timeout)`` returns None at the timeout.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: Start = "beginning",
        *,
        verify: bool = True,
        idle: IdleName = "backoff",
    ) -> None:
        require_x86_64()
        if idle not in IDLE_STRATEGIES:
            raise ValueError(f"idle={idle!r}: choose one of {', '.join(IDLE_STRATEGIES)}")
        _check_start(start)
        self.path = Path(path)
        self.payload_id: bytes | None = None  # the journal's, from its first segment
        self.schema: TableSchema | None = None
        self.verify = verify
        self.idle = idle
        self._start: Start | None = start
        self._not_before_ns: int | None = None
        self._segment: MappedSegment | None = None
        self._index = -1
        self._offset = 0
        self._pinned: np.ndarray | None = None
        self._futex_header: mmap.mmap | None = None
        self._futex_address = 0
        if start == "end" and not segment_indices(self.path):
            # No journal yet: every book its writer will publish comes after now.
            self._start = "beginning"
        self._open_start()

    # -- reading -------------------------------------------------------------------

    def try_next(self) -> Record | None:
        """The next committed record, or None if there is none yet. Never blocks.

        Order books are OrderBookRecord; other payloads (radar results) TableRecord.

        Raises CorruptSegmentError (file and offset) on bytes that break the format.
        """
        if self._segment is None and not self._open_start():
            return None
        while True:
            # Pairs with the writer's publish_commit: bytes below commit are complete.
            commit = load_commit_acquire(self._words)
            offset = self._offset
            if offset >= commit:
                return None
            size = frame_at(self._map, offset, commit, self.payload_id, self._path_text)
            if size == END:
                self._open_segment(self._index + 1, F.HEADER_SIZE)
                continue
            end = offset + F.SIZE_PREFIX_SIZE + size
            record = self._decode(offset, end)
            self._offset = F.align_record(end)
            if self._not_before_ns is not None:
                assert self.schema is not None
                if getattr(record, self.schema.time_field) < self._not_before_ns:
                    continue
                self._not_before_ns = None
            return record

    def poll(self, timeout: float | None = None) -> Record | None:
        """The next book, waiting up to ``timeout`` seconds (None: forever)."""
        record = self.try_next()
        if record is not None:
            return record
        deadline = None if timeout is None else time.monotonic() + timeout
        idle_count = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._idle_once(idle_count, remaining)
            idle_count += 1
            record = self.try_next()
            if record is not None:
                return record

    def available(self) -> Iterator[Record]:
        """Every book committed so far, then stop (for dumps and batch jobs)."""
        while (record := self.try_next()) is not None:
            yield record

    def __iter__(self) -> Iterator[Record]:
        while True:
            record = self.poll(None)
            if record is not None:
                yield record

    # -- state ---------------------------------------------------------------------

    @property
    def position(self) -> Position | None:
        """``(segment, offset)`` of the next record: save it to resume there later.

        None until the journal's first segment exists.
        """
        return (self._index, self._offset) if self._segment is not None else None

    @property
    def lag_estimate(self) -> int:
        """Committed bytes not yet read (racy by nature: the writer moves on)."""
        if self._segment is None:
            return 0
        behind = load_commit_acquire(self._words) - self._offset
        for index in segment_indices(self.path):
            if index > self._index:
                with MappedSegment(segment_path(self.path, index)) as later:
                    behind += later.load_commit_acquire() - F.HEADER_SIZE
        return behind

    def close(self) -> None:
        self._release()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Reader({str(self.path)!r}, position={self.position})"

    # -- internals -------------------------------------------------------------------

    def _decode(self, offset: int, end: int) -> Record:
        assert self.schema is not None
        try:
            return read_record(
                self._map,
                offset,
                end,
                (self._index, offset),
                self.schema,
                self.verify,
                self._pinned,
            )
        except VerificationError as error:
            raise CorruptSegmentError(
                f"record fails FlatBuffers verification: {error}",
                path=self._path_text,
                offset=offset + error.offset,
            ) from None
        except (struct.error, UnicodeDecodeError, IndexError, TypeError, ValueError) as error:
            raise CorruptSegmentError(
                f"record cannot be decoded ({error}); run 'journal verify'",
                path=self._path_text,
                offset=offset,
            ) from None

    def _open_start(self) -> bool:
        """Place the reader at its start once the journal has a segment."""
        indices = segment_indices(self.path)
        if not indices:
            return False
        start = self._start
        if start == "beginning":
            self._open_segment(indices[0], F.HEADER_SIZE)
        elif start == "end":
            self._open_end(indices)
        elif isinstance(start, tuple):
            self._open_position(start, indices)
        else:
            assert isinstance(start, int)
            self._open_time(start, indices)
        self._start = None
        return True

    def _open_end(self, indices: list[int]) -> None:
        """Start at the commit of the segment being written: the oldest unsealed one
        (a newer, empty one may already be prepared for the next roll)."""
        index = indices[-1]
        for candidate in reversed(indices[:-1]):
            with MappedSegment(segment_path(self.path, candidate)) as segment:
                if segment.is_sealed():
                    break
            index = candidate
        while True:
            self._open_segment(index, F.HEADER_SIZE)
            commit = load_commit_acquire(self._words)  # pairs with publish_commit
            if not is_sealed(self._words, commit):
                self._offset = commit
                return
            index += 1

    def _open_position(self, position: tuple[int, int], indices: list[int]) -> None:
        index, offset = position
        if index not in indices:
            raise JournalError(
                f"start position segment={index} is not in {self.path} (segments "
                f"{indices[0]}..{indices[-1]} are): older segments are in the archive"
            )
        self._open_segment(index, F.HEADER_SIZE)
        commit = load_commit_acquire(self._words)  # pairs with publish_commit
        if offset == commit and is_sealed(self._words, commit):
            # Past the end marker: the next record is the next segment's first.
            self._open_segment(index + 1, F.HEADER_SIZE)
            return
        boundaries = {
            at for at, _ in walk_frames(self._map, commit, self.payload_id, self._path_text)
        }
        if offset != commit and offset not in boundaries:
            raise JournalError(
                f"start position offset={offset} is not a record boundary of segment "
                f"{index} (commit_offset={commit}): pass a position the reader returned"
            )
        self._offset = offset

    def _open_time(self, not_before_ns: int, indices: list[int]) -> None:
        """Start in the newest segment whose first book is not after the time."""
        chosen = indices[0]
        for index in reversed(indices):
            with MappedSegment(segment_path(self.path, index)) as segment:
                commit = segment.load_commit_acquire()
                if commit == F.HEADER_SIZE:
                    continue
                payload_id = segment.header.payload_id
                first = frame_at(segment.map, F.HEADER_SIZE, commit, payload_id, str(segment.path))
                if first == END:
                    continue
                end = F.HEADER_SIZE + F.SIZE_PREFIX_SIZE + first
                schema = _schema_of(payload_id, str(segment.path))
                if record_time_ns(segment.map, F.HEADER_SIZE, end, schema) <= not_before_ns:
                    chosen = index
                    break
        self._open_segment(chosen, F.HEADER_SIZE)
        self._not_before_ns = not_before_ns

    def _open_segment(self, index: int, offset: int) -> None:
        try:
            segment = MappedSegment.open_checked(self.path, index, self.payload_id)
        except FileNotFoundError:
            raise JournalError(
                f"segment {segment_path(self.path, index).name} is no longer in {self.path}: "
                "the reader fell behind the segments kept in tmpfs; read the rest from the "
                "archive"
            ) from None
        if self.payload_id is None:  # the first segment: the journal's payload
            try:
                self.schema = _schema_of(segment.header.payload_id, str(segment.path))
            except JournalError:
                segment.close()
                raise
            self.payload_id = segment.header.payload_id
        path = segment.path
        self._release()
        self._segment = segment
        self._map = segment.map
        self._pinned = np.frombuffer(segment.map, np.uint8)
        self._words = memoryview(segment.map)[: F.HEADER_SIZE].cast("Q")
        self._path_text = str(path)
        self._index = index
        self._offset = offset
        check_commit(load_commit_acquire(self._words), len(segment.map), self._path_text)

    def _release(self) -> None:
        if self._futex_header is not None:
            self._futex_header.close()
            self._futex_header = None
        if self._segment is not None:
            self._words.release()
            self._pinned = None  # records' level views keep their own reference
            self._segment.close()
            self._segment = None

    def _idle_once(self, count: int, remaining: float | None) -> None:
        if self._segment is None:
            time.sleep(min(_WAITING_FOR_WRITER_SLEEP_S, remaining or _WAITING_FOR_WRITER_SLEEP_S))
        elif self.idle == "spin":
            pass
        elif self.idle == "yield":
            os.sched_yield()
        elif self.idle == "futex":
            self._futex_wait(remaining)
        elif count < _BACKOFF_SPINS:
            pass
        elif count < _BACKOFF_SPINS + _BACKOFF_YIELDS:
            os.sched_yield()
        else:
            doublings = min(count - _BACKOFF_SPINS - _BACKOFF_YIELDS, 10)
            sleep = min(_BACKOFF_MIN_SLEEP_S * (1 << doublings), _BACKOFF_MAX_SLEEP_S)
            time.sleep(sleep if remaining is None else min(sleep, remaining))

    def _futex_wait(self, remaining: float | None) -> None:
        """Raise the sleepers flag, re-check the commit, sleep on its low 32 bits."""
        if self._futex_header is None:
            self._map_futex_header()
        assert self._futex_header is not None
        sleepers = memoryview(self._futex_header).cast("I")
        sleepers[SLEEPERS_WORD] = 1
        sleepers.release()
        # Pairs with publish_commit; a commit after this load changes the futex
        # word, so the kernel refuses to sleep on the stale value.
        commit = load_commit_acquire(self._words)
        if commit > self._offset:
            return
        timeout = _FUTEX_MAX_WAIT_S if remaining is None else min(remaining, _FUTEX_MAX_WAIT_S)
        _futex.wait(self._futex_address, commit, timeout)

    def _map_futex_header(self) -> None:
        try:
            fd = os.open(self._path_text, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except PermissionError as error:
            raise JournalError(
                f"idle='futex' needs write access to {self._path_text} to tell the "
                "writer it sleeps; use idle='backoff' or a writer mode of 0o660"
            ) from error
        try:
            self._futex_header = mmap.mmap(fd, F.HEADER_SIZE, access=mmap.ACCESS_WRITE)
        finally:
            os.close(fd)
        anchor = ctypes.c_char.from_buffer(self._futex_header, F.COMMIT_OFFSET_OFFSET)
        self._futex_address = ctypes.addressof(anchor)
        del anchor


def _schema_of(payload_id: bytes, path: str) -> TableSchema:
    try:
        return SCHEMAS[payload_id]
    except KeyError:
        raise JournalError(
            f"{path}: payload_id={payload_id!r} has no schema this reader knows "
            f"(it reads {', '.join(repr(p) for p in SCHEMAS)})"
        ) from None


def _check_start(start: object) -> None:
    if start in ("beginning", "end"):
        return
    if (
        isinstance(start, tuple)
        and len(start) == 2
        and all(type(part) is int and part >= 0 for part in start)
    ):
        return
    if type(start) is int:
        return
    raise ValueError(
        f"start={start!r}: use 'beginning', 'end', a (segment, offset) position or "
        "a time in ns since the epoch"
    )
