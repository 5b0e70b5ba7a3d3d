"""Tailing a journal from Python: follow commits and segments, wait as asked.

``try_next`` is the whole protocol: acquire-load the commit, and while the next
frame lies below it, check the frame, verify and decode the record, step over it;
at an end-of-segment marker, open the next segment. It never blocks. ``poll`` and
iteration add waiting with an idle strategy.

With ``archive=``, a segment no longer in tmpfs is read from its archive (an
iterator of the archive's records, a branch of its own taken only while the
reader has no mapped segment), then reading goes on with the next segment, from
tmpfs if its file is there, else from the archive again.

A reader with nothing new to read checks its journal at most every
JOURNAL_CHECK_INTERVAL_S (one stat, a directory listing): the open segment it
waits on gone from its path means the journal was removed or recreated, and the
reader follows the new incarnation from its first segment (docs/FORMAT.md,
"Incarnations"); an open segment followed by one that holds records is damage
(its commit offset was cut short), reported as such rather than read as the end.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from journal import _futex, _native
from journal import _layout as F
from journal._archived import (
    ArchivedSegment,
    StreamSegment,
    archive_access,
    following_segment,
    newest_incarnation,
)
from journal._decode import Position, Record, read_record, record_time_ns
from journal._errors import CorruptSegmentError, JournalError
from journal._frames import (
    END,
    check_commit,
    commit_cut_short,
    frame_at,
    marker_below_commit,
    walk_frames,
)
from journal._metrics import ReaderMetrics
from journal._paths import open_directory
from journal._publish import (
    is_sealed,
    load_commit_acquire,
    load_end_marker_offset,
    raise_sleepers_flag,
    require_x86_64,
)
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._verify import ORDERBOOK_SCHEMA, SCHEMAS, TableSchema, VerificationError

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
_SPIN_LOADS: Final = 500
"""Loads of the commit word per idle="spin" wait of the compiled reader (each with a
CPU pause: some microseconds), between its polls through the Python path."""
JOURNAL_CHECK_INTERVAL_S: Final = 0.1
"""How often (at most) a reader with nothing to read checks that its journal is
still there: a recreated journal is followed within about this long."""

log = logging.getLogger("journal.reader")


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

    ``archive``: the archive root the compactor writes to (its ``--archive DIR``);
    the journal's archives are ``archive/<path.name>/``. With it, segments that are
    no longer in tmpfs (the start, or a reader that fell behind the compactor) are
    read from their archives and reading continues with the next segment, from
    tmpfs when its file is there, else from the archive: one stream, no gap, no
    duplicate, positions ``(segment, offset)`` the same on both sides. A segment in
    neither raises JournalError. Without it, such a segment raises JournalError.
    With it, a journal that tmpfs lost entirely (a reboot) is read from its archive,
    then from the writer that starts it again; a journal recreated from segment 0
    is one more *incarnation*, read after the older ones (docs/FORMAT.md, "Archive
    files"); a saved position names a segment of the newest incarnation.

    Iterating blocks for the next book forever; ``available()`` stops at the
    current end; ``poll(timeout)`` returns None at the timeout.

    A journal removed and created again (a wiped tmpfs, ``rm -rf``, a new writer)
    is followed: the reader logs it once, counts it in ``incarnations`` and goes on
    with the new incarnation's first segment (from its archive, with ``archive=``,
    if the compactor took it meanwhile).

    ``metrics``: register in ``<path>/readers/<name>-<pid>.metrics`` (position,
    records read, last record time) so that ``journal top`` shows this reader and
    its lag; removed by ``close``. Best-effort: without write access to the journal
    directory it logs once and reads on. ``name`` defaults to the program's name.

    With the compiled extension (journal._native), ``Reader(...)`` makes a reader
    whose next-record step is in C (``_CompiledReader``): the same records, the same
    errors, several times faster. Subclasses of Reader keep the pure-Python step.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Reader:
        if cls is Reader and _native.creader is not None:
            return object.__new__(_CompiledReader)
        return object.__new__(cls)

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: Start = "beginning",
        *,
        verify: bool = True,
        idle: IdleName = "backoff",
        archive: str | os.PathLike[str] | None = None,
        metrics: bool = True,
        name: str | None = None,
    ) -> None:
        require_x86_64()
        if idle not in IDLE_STRATEGIES:
            raise ValueError(f"idle={idle!r}: choose one of {', '.join(IDLE_STRATEGIES)}")
        _check_start(start)
        self.path = Path(path)
        self._metrics = ReaderMetrics(self.path, name, enabled=metrics)
        self.payload_id: bytes | None = None  # the journal's, from its first segment
        self.schema: TableSchema | None = None
        self.verify = verify
        self.idle = idle
        self._start: Start | None = start
        self._not_before_ns: int | None = None
        self._segment: MappedSegment | None = None
        self._incarnation_ns = 0  # of the segment being read, from tmpfs
        self._next_check_s = 0.0
        self._journal_ended = False  # the open segment went: waiting for a new one
        self.incarnations = 0
        """How many times the journal was recreated under this reader, which followed."""
        self._index = -1
        self._offset = 0
        self._pinned: np.ndarray | None = None
        self._futex_header: mmap.mmap | None = None
        self._futex_address = 0
        self.archive_dir = None if archive is None else Path(archive) / self.path.resolve().name
        self._archive: ArchivedSegment | None = None  # while reading an archived segment
        self._archived: Iterator[Record] = iter(())
        self._archived_next: Record | None = None
        self._archive_bytes: bytes | None = None  # its segment, rebuilt for record_bytes
        self._start_in_archive = archive is not None
        if start == "end" and not segment_indices(self.path):
            # No journal yet: every book its writer will publish comes after now,
            # and after everything archived.
            self._start = "beginning"
            self._start_in_archive = False
        self._open_start()

    # -- reading -------------------------------------------------------------------

    def try_next(self) -> Record | None:
        """The next committed record, or None if there is none yet. Never blocks.

        Order books are OrderBookRecord; other payloads (radar results) TableRecord.

        Raises CorruptSegmentError (file and offset) on bytes that break the format.
        """
        if self._segment is None:
            if self._archive is not None:
                return self._next_archived()
            if not self._open_start():
                return None
        while True:
            # Pairs with the writer's publish_commit: bytes below commit are complete.
            commit = load_commit_acquire(self._words)
            offset = self._offset
            if offset >= commit:
                self._metrics.polled_empty()
                if time.monotonic() >= self._next_check_s:
                    return self._check_journal()
                return None
            assert self.payload_id is not None and self.schema is not None  # segment open
            size = frame_at(self._map, offset, commit, self.payload_id, self._path_text)
            if size == END:
                if not self._open_next_segment():
                    return None
                if self._segment is None:  # gone from tmpfs: read from its archive
                    return self._next_archived()
                continue
            end = offset + F.SIZE_PREFIX_SIZE + size
            record = self._decode(offset, end)
            self._offset = F.align_record(end)
            if self._not_before_ns is not None:
                assert self.schema is not None
                if getattr(record, self.schema.time_field) < self._not_before_ns:
                    continue
                self._not_before_ns = None
            self._metrics.read(self._index, self._offset, getattr(record, self.schema.time_field))
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
        """Every book committed so far, then stop (for dumps and batch jobs).

        Before stopping, the journal is checked: an open segment followed by one
        that holds records (a commit offset cut short) raises CorruptSegmentError
        instead of ending the dump early."""
        while True:
            while (record := self.try_next()) is not None:
                yield record
            self._next_check_s = 0.0  # the next empty poll checks
            record = self.try_next()
            if record is None:
                return
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
        if self._segment is None and self._archive is None:
            return None
        return (self._index, self._offset)

    @property
    def lag_estimate(self) -> int:
        """Committed bytes not yet read (racy by nature: the writer moves on)."""
        if self._archive is not None:
            behind = self._archive.header.commit_offset - self._offset
        elif self._segment is None:
            return 0
        else:
            behind = load_commit_acquire(self._words) - self._offset
        for index in segment_indices(self.path):
            if index > self._index:
                try:
                    with MappedSegment(segment_path(self.path, index)) as later:
                        behind += later.load_commit_acquire() - F.HEADER_SIZE
                except FileNotFoundError:
                    continue  # removed by the compactor meanwhile
        return behind

    @property
    def incarnation_ns(self) -> int | None:
        """The incarnation stamp of the segment being read (docs/FORMAT.md,
        "Incarnations"), from tmpfs or its archive; None before the first segment.
        0: unknown (segments written before the field existed)."""
        if self._archive is not None:
            return self._archive.header.incarnation_ns
        if self._segment is not None:
            return self._segment.header.incarnation_ns
        return None

    @property
    def segment_size(self) -> int | None:
        """The size of the segment being read (a copy of the journal needs segments
        at least as large); None before the first segment."""
        if self._archive is not None:
            return self._archive.header.segment_size
        if self._segment is not None:
            return self._segment.header.segment_size
        return None

    def record_bytes(self, record: Record) -> bytes:
        """The committed bytes of ``record`` (size prefix and FlatBuffer, without the
        padding after it), copied: to carry it elsewhere byte for byte
        (``journal replicate``). ``record`` must come from the segment this reader is
        on, i.e. be the last one it returned (the next ``try_next`` may move on).

        A record read from an archive is cut from its segment's bytes, rebuilt once
        per archived segment (a reader that fell behind tmpfs pays a second
        decompression for it)."""
        index, offset = record.position
        if index != self._index:
            raise JournalError(
                f"record at position {record.position} is not in segment {self._index}, "
                "the one this reader is on: take a record's bytes before reading on"
            )
        if self._archive is not None:
            if self._archive_bytes is None:
                header = self._archive.header
                self._archive_bytes = self._archive.segment_bytes(header.commit_offset)
            return self._archive_bytes[offset : offset + record.size]
        if self._segment is None:
            raise JournalError(f"reader of {self.path} is closed")
        return self._map[offset : offset + record.size]

    def close(self) -> None:
        self._metrics.close()
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
        """Place the reader at its start once the journal has a segment, or (with
        ``archive``) once the stream has one: tmpfs may have lost every segment."""
        indices = segment_indices(self.path)
        stream = self._stream_segments() if self._start_in_archive else []
        start = self._start
        if not indices and (not stream or start == "end"):
            return False
        if indices:
            _check_path(self.path)
        if start == "beginning":
            if stream:
                self._open_stream_segment(stream[0], F.HEADER_SIZE)
            else:
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
            if self._segment is None:  # sealed, archived and removed meanwhile
                index += 1
                continue
            commit = load_commit_acquire(self._words)  # pairs with publish_commit
            if not is_sealed(self._words, commit):
                self._offset = commit
                return
            index += 1

    def _open_position(self, position: tuple[int, int], indices: list[int]) -> None:
        index, offset = position
        if index not in indices:
            if self.archive_dir is not None and (not indices or index < indices[0]):
                self._open_archived(index, offset)
                return
            where = "" if self.archive_dir is None else f" nor archived in {self.archive_dir}"
            raise JournalError(
                f"start position segment={index} is not in {self.path}{where} (segments "
                f"{indices[0]}..{indices[-1]} are): older segments are in the archive"
            )
        self._open_segment(index, F.HEADER_SIZE)
        if self._segment is None:  # archived and removed meanwhile
            self._open_archived(index, offset)
            return
        commit = load_commit_acquire(self._words)  # pairs with publish_commit
        if offset == commit and is_sealed(self._words, commit):
            # Past the end marker: the next record is the next segment's first.
            self._open_segment(index + 1, F.HEADER_SIZE)
            return
        assert self.payload_id is not None  # set by _open_segment
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
        chosen = indices[0] if indices else -1
        found = False
        for index in reversed(indices):
            try:
                segment = MappedSegment(segment_path(self.path, index))
            except FileNotFoundError:
                continue  # archived and removed meanwhile
            with segment:
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
                    found = True
                    break
        self._not_before_ns = not_before_ns
        if not found and self.archive_dir is not None:
            # Before tmpfs: the newest archived segment with a book not after the time
            # (its index says so without decompressing), else the stream's oldest.
            stream = self._stream_segments()
            live = next((k for k, segment in enumerate(stream) if segment.in_tmpfs), len(stream))
            if live:
                for archived in reversed(stream[:live]):
                    assert archived.archive is not None
                    with archive_access().open(archived.archive) as archive:
                        if archive.record_count and archive.min_time_ns <= not_before_ns:
                            break
                else:
                    archived = stream[0]
                self._open_stream_segment(archived, F.HEADER_SIZE)
                return
        self._open_segment(chosen, F.HEADER_SIZE)

    def _open_segment(self, index: int, offset: int) -> None:
        try:
            segment = MappedSegment.open_checked(self.path, index, self.payload_id)
        except FileNotFoundError:
            if self.archive_dir is not None:
                self._open_archived(index, offset)
                return
            raise JournalError(
                f"segment {segment_path(self.path, index).name} is no longer in {self.path}: "
                "the reader fell behind the segments kept in tmpfs; read the rest from the "
                "archive (archive=DIR, journal dump --archive DIR)"
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
        self._incarnation_ns = segment.header.incarnation_ns
        check_commit(load_commit_acquire(self._words), len(segment.map), self._path_text)

    # -- the journal under the reader --------------------------------------------------

    def _check_journal(self) -> Record | None:
        """Nothing new in the open segment being read: is the journal still there?

        Its file gone from its path (only a recreated journal does that to an open
        segment) means following the next incarnation; its file truncated, or a
        later segment holding records, is damage."""
        self._next_check_s = time.monotonic() + JOURNAL_CHECK_INTERVAL_S
        segment = self._segment
        assert segment is not None
        state = segment.path_state()
        if state is None:
            self._check_not_cut_short(segment)
            return None
        if state.truncated:
            raise CorruptSegmentError(
                f"{state.message} by another process: reading on would fault",
                path=self._path_text,
                offset=F.SEGMENT_SIZE_OFFSET,
            )
        return self._follow_next_incarnation(state.message)

    def _check_not_cut_short(self, segment: MappedSegment) -> None:
        """CorruptSegmentError if the open segment being read ends where it cannot:
        an end marker offset below its commit, or a later segment of its incarnation
        holding records (the writer seals a segment before it writes the next one),
        which means its commit offset was lowered: the records above are not lost,
        they must not be read as the end either."""
        commit = load_commit_acquire(self._words)
        marker = load_end_marker_offset(self._words)
        if marker and marker + F.END_MARKER_SIZE < commit:
            raise marker_below_commit(marker, commit, self._path_text)
        if marker > commit:
            raise commit_cut_short(marker, commit, self._path_text)
        for index in segment_indices(self.path):
            if index <= self._index:
                continue
            try:
                later = MappedSegment(segment_path(self.path, index))
            except (JournalError, OSError):
                continue  # removed meanwhile, or no segment (a planted symlink): no evidence
            with later:
                if later.header.incarnation_ns != segment.header.incarnation_ns:
                    return  # a new incarnation's: followed once this file is gone
                later_commit = later.load_commit_acquire()
            # Loaded after segment N+1's: a writer that sealed this one and went on
            # to N+1 between the two loads is seen as such, not as damage.
            commit = load_commit_acquire(self._words)
            marker = load_end_marker_offset(self._words)
            if later_commit > F.HEADER_SIZE and not is_sealed(self._words, commit):
                raise CorruptSegmentError(
                    f"segment {self._index} is not sealed (commit_offset={commit}, "
                    f"end_marker_offset={marker}) but segment {index} after it holds "
                    f"records (commit_offset={later_commit}): its commit offset was cut "
                    "short, records after it would be skipped; run 'journal verify'",
                    path=self._path_text,
                    offset=F.COMMIT_OFFSET_OFFSET,
                )
            return

    def _open_next_segment(self) -> bool:
        """At an end marker: open segment N+1 of this incarnation. False if there is
        none to read yet (the journal was removed or recreated under the reader and
        its next incarnation has no segment yet)."""
        index = self._index + 1
        if self._journal_ended:
            if time.monotonic() < self._next_check_s:
                return False
            self._next_check_s = time.monotonic() + JOURNAL_CHECK_INTERVAL_S
        if not segment_path(self.path, index).exists():
            segment = self._segment
            assert segment is not None
            state = segment.path_state()
            if state is not None and not state.truncated and not self._in_archive(index):
                # This segment went too, and its successor is nowhere: the journal went.
                self._follow_next_incarnation(state.message, read=False)
                return not self._journal_ended
        if self._of_another_incarnation(index):
            # Segment N+1 of a new incarnation: the journal was recreated under us.
            self._follow_next_incarnation(f"segment {index} is of another incarnation", read=False)
            return not self._journal_ended
        self._open_segment(index, F.HEADER_SIZE)
        return True

    def _of_another_incarnation(self, index: int) -> bool:
        """Whether tmpfs's segment ``index`` belongs to another incarnation than the
        segment being read (both stamped). One look at its header, once a roll."""
        if not self._incarnation_ns:
            return False
        try:
            with MappedSegment(segment_path(self.path, index)) as following:
                stamp = following.header.incarnation_ns
        except FileNotFoundError:
            return False
        return stamp != 0 and stamp != self._incarnation_ns

    def _in_archive(self, index: int) -> bool:
        """Whether segment ``index`` of the incarnation being read is in the archive."""
        if self.archive_dir is None:
            return False
        reading = self._reading()
        assert reading is not None
        following = following_segment(self._stream_segments(), *reading)
        return following is not None and following.index == index

    def _follow_next_incarnation(self, why: str, *, read: bool = True) -> Record | None:
        """The incarnation being read is over: go on with the first segment of the
        next one once it has one (``read``: and return its first record)."""
        if not self._journal_ended:
            self._journal_ended = True
            log.warning(
                "journal %s was removed or recreated under this reader (%s): reading "
                "its next incarnation from its first segment once a writer makes it",
                self.path,
                why,
            )
        first = self._next_incarnation_start()
        if first is None:
            return None
        self._journal_ended = False
        self.incarnations += 1
        self._metrics.new_incarnation()
        created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(first.created_ns / 1e9))
        log.warning(
            "journal %s: following its new incarnation (created %s) from segment %d",
            self.path,
            created,
            first.index,
        )
        self._open_stream_segment(first, F.HEADER_SIZE)
        return self.try_next() if read else None

    def _next_incarnation_start(self) -> StreamSegment | None:
        """The first segment of the incarnation after the one being read, or None
        while there is none. Without an archive, a new incarnation whose first
        segments tmpfs no longer holds is a gap: JournalError."""
        reading = self._reading()
        assert reading is not None
        if self.archive_dir is not None:
            following = following_segment(self._stream_segments(), *reading)
            if following is None or following.created_ns <= reading[0]:
                return None
            if following.in_tmpfs:
                _check_path(self.path)  # a journal made anew: its maker must be trusted
            return following
        try:
            indices = segment_indices(self.path)
        except NotADirectoryError:
            return None  # a file there for now: no journal yet, look again
        if not indices:
            return None
        _check_path(self.path)  # a journal made anew: whoever made it must be trusted
        try:
            first = MappedSegment(segment_path(self.path, indices[0]))
        except FileNotFoundError:
            return None  # removed meanwhile: look again at the next check
        with first:
            header = first.header
            if self._segment is not None and first.identity == self._segment.identity:
                return None
        if header.incarnation_ns and header.incarnation_ns == self._incarnation_ns:
            raise JournalError(
                f"segment {self._index + 1} of {self.path} is gone but its incarnation "
                f"goes on from segment {indices[0]}: the reader fell behind the segments "
                "kept in tmpfs (read with archive=DIR, journal dump --archive DIR), or "
                "someone removes files of a live journal"
            )
        if indices[0] != 0:
            raise JournalError(
                f"journal {self.path} was recreated and its new incarnation starts at "
                f"segment {indices[0]} in tmpfs: segments before it went to the archive "
                "before this reader saw them; read with archive=DIR"
            )
        return StreamSegment(header.created_ns, indices[0], None, in_tmpfs=True)

    # -- archived segments ---------------------------------------------------------------

    def _stream_segments(self) -> list[StreamSegment]:
        """The stream's segments, archived and in tmpfs, every incarnation of the
        journal in the order written (journal._archived.StreamSegment)."""
        assert self.archive_dir is not None
        return archive_access().stream_segments(self.archive_dir, self.path)

    def _reading(self) -> tuple[int, int] | None:
        """``(created_ns, index)`` of the segment being read, None before the start."""
        if self._archive is not None:
            return (self._archive.header.created_ns, self._index)
        if self._segment is not None:
            return (self._segment.header.created_ns, self._index)
        return None

    def _open_stream_segment(self, segment: StreamSegment, offset: int) -> None:
        if segment.in_tmpfs:
            self._open_segment(segment.index, offset)
        else:
            assert segment.archive is not None
            self._open_archive_file(segment.archive, segment.index, offset)

    def _open_archived(self, index: int, offset: int) -> None:
        """Read segment ``index`` from its archive: the one that follows the segment
        being read, or (a start) the newest incarnation's segment ``index``."""
        stream = self._stream_segments()
        reading = self._reading()
        if reading is not None and reading[1] == index - 1:
            following = following_segment(stream, *reading)
        else:
            following = next((s for s in newest_incarnation(stream) if s.index == index), None)
        if following is None or following.index != index or following.archive is None:
            raise JournalError(
                f"segment {segment_path(self.path, index).name} is neither in {self.path} "
                f"nor archived in {self.archive_dir}: the stream has a gap there"
            )
        self._open_archive_file(following.archive, index, offset)

    def _open_archive_file(self, path: Path, index: int, offset: int) -> None:
        """Read segment ``index`` from archive ``path``, from record boundary ``offset``
        (or from the first book at or after ``_not_before_ns``, if set)."""
        archive = archive_access().open(path)
        try:
            header = archive.header
            if header.segment_index != index:
                raise JournalError(f"{path}: header says segment_index={header.segment_index}")
            if self.payload_id is None:
                self.schema = _schema_of(header.payload_id, str(path))
                self.payload_id = header.payload_id
            elif header.payload_id != self.payload_id:
                raise JournalError(
                    f"{path}: payload_id={header.payload_id!r}, the journal holds "
                    f"{self.payload_id!r}"
                )
            if not header.sealed:
                raise JournalError(f"{path}: the archive of an unsealed segment")
            records = archive.records(self._not_before_ns, verify=self.verify)
            following = next(records, None)
            if offset > F.HEADER_SIZE:  # a saved position: skip to its record boundary
                while following is not None and following.position[1] < offset:
                    following = next(records, None)
                at = header.end_marker_offset if following is None else following.position[1]
                if offset == header.commit_offset and following is None:
                    archive.close()
                    self._open_segment(index + 1, F.HEADER_SIZE)
                    return
                if offset != at:
                    raise JournalError(
                        f"start position offset={offset} is not a record boundary of segment "
                        f"{index} (archived in {path}, commit_offset={header.commit_offset}): "
                        "pass a position the reader returned"
                    )
        except BaseException:
            archive.close()
            raise
        self._release()
        self._archive = archive
        self._archived = records
        self._archived_next = following
        self._index = index
        self._offset = header.end_marker_offset if following is None else following.position[1]

    def _next_archived(self) -> Record | None:
        """The next record of the archived segment being read; past its end, go on
        with the next segment (tmpfs first), or the next incarnation's first. Never
        None while records remain."""
        while True:
            assert self._archive is not None
            record = self._archived_next
            if record is not None:
                following = next(self._archived, None)
                self._archived_next = following
                self._offset = (
                    self._archive.header.end_marker_offset
                    if following is None
                    else following.position[1]
                )
                self._not_before_ns = None
                assert self.schema is not None
                self._metrics.read(
                    self._index, self._offset, getattr(record, self.schema.time_field)
                )
                return record
            reading = self._reading()
            assert reading is not None
            next_segment = following_segment(self._stream_segments(), *reading)
            if next_segment is None:
                # The newest segment of the stream, and tmpfs holds none after it: its
                # journal was lost with tmpfs (the open segment, never sealed, with it).
                # A new writer's first segment is read when it comes.
                return None
            if next_segment.index > self._index + 1:  # neither in tmpfs nor archived
                self._open_archived(self._index + 1, F.HEADER_SIZE)  # reports the gap
            # The next of this incarnation, or the first of the next incarnation (tmpfs
            # may hold a segment of this index from a later incarnation: not this one).
            self._open_stream_segment(next_segment, F.HEADER_SIZE)
            if self._segment is not None:
                return self.try_next()

    def _release(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
            self._archive_bytes = None
            self._archived = iter(())
            self._archived_next = None
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
        raise_sleepers_flag(sleepers)  # pairs with the writer's load_sleepers
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


class _CompiledReader(Reader):
    """A Reader whose next-record step is journal._creader's ``Cursor`` (C).

    While a segment of an order-book journal is mapped, the cursor reads its records:
    the commit's acquire load, the frame, the checks and the decoding of
    ``read_orderbook``, the counters of ``ReaderMetrics.read``. Wherever it returns
    None (nothing new, the end marker, a record it does not accept or leaves to
    Python), ``Reader.try_next`` takes over from the same offset, so every rare path
    (rolls, incarnations, archives, time starts, errors) is the Python one. The
    offset lives in the cursor (``_offset`` below); so does ``verify``.

    Its records are ``journal._creader.OrderBookRecord``, a subclass of
    OrderBookRecord whose level views are made on first use (then kept): the same
    values and types; pickled or copied, a plain OrderBookRecord. ``idle="spin"``
    spins on the commit word in C between polls.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Reader's arguments (``Reader(...)`` is what callers write and type-check)."""
        creader = _native.creader
        assert creader is not None  # Reader.__new__ chose this class
        self._cursor = creader.Cursor(True)  # Reader.__init__ sets verify through the property
        self._step = self._cursor.step
        super().__init__(*args, **kwargs)

    @property
    def _offset(self) -> int:
        offset: int = self._cursor.offset
        return offset

    @_offset.setter
    def _offset(self, offset: int) -> None:
        self._cursor.offset = offset

    @property
    def verify(self) -> bool:
        verify: bool = self._cursor.verify
        return verify

    @verify.setter
    def verify(self, verify: bool) -> None:
        self._cursor.verify = verify

    def try_next(self) -> Record | None:
        if self._not_before_ns is None:
            record: Record | None = self._step()
            if record is not None:
                return record
        return super().try_next()

    def available(self) -> Iterator[Record]:
        step = self._step
        try_next = super().try_next
        while True:
            while True:
                if self._not_before_ns is None:  # set only by a time start, until its book
                    while (record := step()) is not None:
                        yield record
                record = try_next()
                if record is None:
                    break
                yield record
            self._next_check_s = 0.0  # the next empty poll checks
            record = self.try_next()
            if record is None:
                return
            yield record

    def __iter__(self) -> Iterator[Record]:
        step = self._step
        poll = self.poll
        while True:
            if self._not_before_ns is None:  # set only by a time start, until its book
                while (record := step()) is not None:
                    yield record
            record = poll(None)
            if record is not None:
                yield record

    def _idle_once(self, count: int, remaining: float | None) -> None:
        if self.idle == "spin" and self._segment is not None:
            # Spin on the commit word in C rather than through a poll per look.
            self._cursor.wait_commit(_SPIN_LOADS)
        else:
            super()._idle_once(count, remaining)

    def _open_segment(self, index: int, offset: int) -> None:
        super()._open_segment(index, offset)
        if self._segment is not None and self.schema is ORDERBOOK_SCHEMA:
            assert self._pinned is not None
            self._cursor.bind(self._pinned, self._index, self._offset, self._metrics)

    def _release(self) -> None:
        self._cursor.unbind()  # before the mapping is closed: it holds the pinned array
        super()._release()


def _check_path(path: Path) -> None:
    """JournalError unless every directory on the journal's path is trusted
    (journal._paths): records under a directory another user controls could be
    anyone's, planted for this reader."""
    with open_directory(path):
        pass


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
