"""Archive files: one sealed segment as independent zstd frames plus a time index.

docs/FORMAT.md ("Archive files") is the specification; its numbers are named in
journal/archive/_layout.py, which tests/test_archive.py pins against the document.
All integers are little-endian. File
``ARCHIVE/<stream>/<time>-<segment index>-<created_ns>.jzst`` (``created_ns`` tells
apart the segments of one index from two incarnations of a journal: StreamSegment):
a header, zstd frames of whole record frames (the value words of each record moved to
value planes after them: split_values; the last frame ends with the end-of-segment
marker), an index entry per zstd frame (where it is, its sizes, the segment offset of
its first byte, record and value counts, min/max time), and a trailer (where the
index is, totals, CRC-32s, end magic), as journal/archive/_layout.py draws them.

The segment's committed bytes are the 4096-byte segment header rebuilt from the
archive header (``futex_sleepers`` and reserved bytes zero, as the writer leaves
them), then the zstd frames' records, values restored, in order, up to the commit
offset: every record is read back bit-identical.

Reading is bounded: the header, index and trailer are checked (sizes, CRC-32s,
frames contiguous in the file and in the segment) before any frame is touched; a
zstd frame is decompressed only if its header declares a content size equal to the
index's (``raw_size``, at most ``max_frame_size``, plus VALUE_BYTES per moved record),
with a content checksum, and into a buffer of exactly that size. Anything else
raises CorruptArchiveError naming the file and the offset, never an unbounded
allocation.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
import zstandard

from journal import _layout as F
from journal import _orderbook_layout as OB
from journal._archived import StreamSegment
from journal._decode import Record, read_record
from journal._errors import CorruptArchiveError, CorruptSegmentError, JournalError
from journal._frames import END, check_commit, walk_frames
from journal._publish import load_end_marker_offset_from
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._verify import SCHEMAS, TableSchema, VerificationError, verify_size_prefixed
from journal.archive._layout import (
    ARCHIVE_END_MAGIC,
    ARCHIVE_HEADER_SIZE,
    ARCHIVE_MAGIC,
    ARCHIVE_SUFFIX,
    ARCHIVE_VERSION,
    ARCHIVE_VERSION_OFFSET,
    COMMIT_OFFSET_OFFSET,
    END_MARKER_OFFSET_OFFSET,
    HEADER_RESERVED_OFFSET,
    HEADER_SIZE_OFFSET,
    HEADER_STRUCT,
    INDEX_ENTRY_SIZE,
    INDEX_ENTRY_STRUCT,
    MIN_VALUE_FRAME,
    NO_TIME_MAX,
    NO_TIME_MIN,
    READABLE_VERSIONS,
    SEGMENT_FORMAT_VERSION_OFFSET,
    SEGMENT_SIZE_OFFSET,
    TRAILER_CRC32_OFFSET,
    TRAILER_CRC_COVERS,
    TRAILER_END_MAGIC_OFFSET,
    TRAILER_RESERVED_OFFSET,
    TRAILER_SIZE,
    TRAILER_STRUCT,
    VALUE_BYTES,
    VALUE_SIZE,
    VALUE_WORDS,
)
from journal.archive._layout import TEMPORARY_SUFFIX as TEMPORARY_SUFFIX  # compact's

# -- what the compactor writes, and what readers accept --------------------------------

DEFAULT_FRAME_SIZE: Final = 1 << 20
"""Raw bytes of records per zstd frame (a frame holds whole records; a record larger
than this gets a frame of its own)."""
MIN_FRAME_SIZE: Final = 1024
DEFAULT_LEVEL: Final = 9
DEFAULT_MAX_FRAME_SIZE: Final = 64 << 20
"""Readers refuse a zstd frame that decompresses to more than this (the compactor
passes the segment size, so a segment's own archive always verifies)."""
DEFAULT_SEGMENT_BYTES_LIMIT: Final = 1 << 30

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_I64 = struct.Struct("<q")
_END_MARKER: Final = struct.pack("<II", F.END_OF_SEGMENT, 0)
_CANONICAL_HEAD: Final = OB.FIXED_HEAD
"""Bytes 4..36 of every record journal.Writer lays out: root offset, identifier,
vtable and the table's soffset. Behind them, local_timestamp_ns is at a fixed place."""
_CANONICAL_HEAD_END: Final = OB.ROOT_OFFSET_POS + len(_CANONICAL_HEAD)
_SLEEPERS = slice(F.FUTEX_SLEEPERS_OFFSET, F.FUTEX_SLEEPERS_OFFSET + struct.calcsize("<I"))
"""The futex_sleepers flag (a u32), zero in an archived header."""
_WORD: Final = OB.WORD_SIZE
"""Record frames are 8-aligned: the value planes view them as u64 words."""
_ID: Final = F.RECORD_PAYLOAD_ID_OFFSET
_ID_END: Final = F.RECORD_PAYLOAD_ID_OFFSET + F.PAYLOAD_ID_SIZE
"""Where a record frame's file_identifier is."""

# -- file names -------------------------------------------------------------------------

_NAME = re.compile(
    r"(\d{8}T\d{6}\.\d{6}Z)-(\d{8,})(?:-([0-9a-f]{16}))?" + re.escape(ARCHIVE_SUFFIX)
)
_MIN_SECONDS: Final = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_U64_MASK: Final = (1 << 64) - 1


class ArchiveName(NamedTuple):
    """What an archive's file name says: its first record time (text), its segment's
    index and ``created_ns`` (None in the names of the first archive builds, which
    had no ``-<created>`` part: read it from the header)."""

    time: str
    segment_index: int
    created_ns: int | None


def archive_name(time_ns: int, segment_index: int, created_ns: int) -> str:
    """``YYYYmmddTHHMMSS.ffffffZ-NNNNNNNN-CCCCCCCCCCCCCCCC.jzst``: sorting names sorts
    by time, then index; ``C...`` (the segment's ``created_ns`` as 16 hex digits, two's
    complement) tells apart segments of one index from two incarnations of a journal.

    ``time_ns`` is the first record's time (UTC, truncated to microseconds); times
    outside the years 1..9999 are written as the epoch.
    """
    seconds, ns = divmod(time_ns, 1_000_000_000)
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        seconds, ns = 0, 0
    t = _EPOCH + timedelta(seconds=seconds)
    return (
        f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}"
        f".{ns // 1000:06d}Z-{segment_index:0{F.SEGMENT_NAME_DIGITS}d}"
        f"-{created_ns & _U64_MASK:016x}{ARCHIVE_SUFFIX}"
    )


def parse_archive_name(name: str) -> ArchiveName | None:
    """What an archive's file name says, None if it is not an archive's name."""
    match = _NAME.fullmatch(name)
    if not match:
        return None
    created = None
    if match[3] is not None:
        created = int(match[3], 16)
        created -= (created >> 63) << 64  # back to the signed i64
    return ArchiveName(match[1], int(match[2]), created)


def archive_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The archive files of one stream's directory, in time order (name order)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [Path(directory) / name for name in sorted(names) if parse_archive_name(name)]


# -- record times -------------------------------------------------------------------------


def _time_slot(schema: TableSchema) -> int:
    for table_field in schema.fields:
        if table_field.name == schema.time_field:
            return table_field.slot
    raise AssertionError(f"{schema.name} has no field {schema.time_field}")


_TIME_SLOTS: Final = {payload: _time_slot(schema) for payload, schema in SCHEMAS.items()}


def record_time(data: Any, offset: int, end: int, schema: TableSchema) -> int:
    """The schema's time field (ns) of the record whose size prefix is at ``offset``.

    A record in journal.Writer's own layout is read at its fixed place; any other
    is verified first (VerificationError), then read through its vtable, so no byte
    outside ``[offset, end)`` is ever read.
    """
    if (
        schema.payload_id == OB.PAYLOAD_ID
        and end - offset >= OB.LOCAL_TIMESTAMP_NS_POS + _I64.size
        and data[offset + OB.ROOT_OFFSET_POS : offset + _CANONICAL_HEAD_END] == _CANONICAL_HEAD
    ):
        return _I64.unpack_from(data, offset + OB.LOCAL_TIMESTAMP_NS_POS)[0]
    verify_size_prefixed(data, offset, end, schema)
    base = offset + F.SIZE_PREFIX_SIZE
    table = base + _U32.unpack_from(data, base)[0]
    vtable = table - _I32.unpack_from(data, table)[0]
    entry = OB.vtable_entry(_TIME_SLOTS[schema.payload_id])
    if entry >= _U16.unpack_from(data, vtable)[0]:
        return 0
    field = _U16.unpack_from(data, vtable + entry)[0]
    return _I64.unpack_from(data, table + field)[0] if field else 0


def first_record_time(segment: MappedSegment, commit: int) -> int | None:
    """Time of the segment's first record, None if it has none (or no known schema)."""
    schema = SCHEMAS.get(segment.header.payload_id)
    if schema is None or commit <= F.HEADER_SIZE:
        return None
    path = str(segment.path)
    for offset, size in walk_frames(segment.map, commit, segment.header.payload_id, path):
        if size == END:
            return None
        return _segment_record_time(segment.map, offset, size, schema, path)
    return None


def _segment_record_time(data: Any, offset: int, size: int, schema: TableSchema, path: str) -> int:
    try:
        return record_time(data, offset, offset + F.SIZE_PREFIX_SIZE + size, schema)
    except VerificationError as error:
        raise CorruptSegmentError(
            f"record fails FlatBuffers verification: {error}",
            path=path,
            offset=offset + error.offset,
        ) from None


def archive_name_for(segment: MappedSegment, commit: int) -> str:
    """The archive file name of a segment: its first record's time, or its creation
    time if it holds no record."""
    created = segment.header.created_ns
    first = first_record_time(segment, commit)
    return archive_name(created if first is None else first, segment.index, created)


def committed_header(data: Any) -> bytes:
    """A segment's 4096 header bytes as archived: ``futex_sleepers`` (reader state,
    not content) read as zero."""
    header = bytearray(data[: F.HEADER_SIZE])
    header[_SLEEPERS] = bytes(4)
    return bytes(header)


# -- the parts of the file ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveHeader:
    """The archive's first 256 bytes: enough to rebuild the segment header exactly."""

    payload_id: bytes
    segment_format_version: int
    segment_index: int
    segment_size: int
    created_ns: int
    writer_pid: int
    writer_started_ns: int
    writer_host: bytes  # the segment's 64 bytes, NUL padding included
    commit_offset: int
    end_marker_offset: int
    frame_size: int
    zstd_level: int
    incarnation_ns: int = 0
    """The segment's (0: unknown, in archives written before the field existed)."""
    archive_version: int = ARCHIVE_VERSION

    @property
    def sealed(self) -> bool:
        return self.end_marker_offset != 0

    @property
    def host(self) -> str:
        return self.writer_host.rstrip(b"\0").decode("utf-8", "replace")

    @classmethod
    def from_segment(
        cls, data: Any, commit: int, frame_size: int, zstd_level: int
    ) -> ArchiveHeader:
        (_m, version, _hs, size, index, payload, _mr, created, pid, _r, started, host) = (
            F.HEADER_STRUCT.unpack_from(data, 0)
        )
        marker = load_end_marker_offset_from(data)  # after write_archive's commit load
        incarnation = _I64.unpack_from(data, F.INCARNATION_NS_OFFSET)[0]
        return cls(
            payload,
            version,
            index,
            size,
            created,
            pid,
            started,
            host,
            commit,
            marker,
            frame_size,
            zstd_level,
            incarnation,
        )

    def pack(self) -> bytes:
        packed = HEADER_STRUCT.pack(
            ARCHIVE_MAGIC,
            self.archive_version,
            ARCHIVE_HEADER_SIZE,
            self.payload_id,
            self.segment_format_version,
            self.segment_index,
            self.segment_size,
            self.created_ns,
            self.writer_pid,
            0,
            self.writer_started_ns,
            self.writer_host,
            self.commit_offset,
            self.end_marker_offset,
            self.frame_size,
            self.zstd_level,
            self.incarnation_ns,
        )
        return packed + bytes(ARCHIVE_HEADER_SIZE - len(packed))

    @classmethod
    def parse(cls, data: bytes, path: str) -> ArchiveHeader:
        """Check every field that a reader relies on; CorruptArchiveError names it."""

        def bad(message: str, offset: int) -> CorruptArchiveError:
            return CorruptArchiveError(message, path=path, offset=offset)

        (
            magic,
            version,
            header_size,
            payload,
            segment_version,
            index,
            size,
            created,
            pid,
            reserved,
            started,
            host,
            commit,
            marker,
            frame_size,
            level,
            incarnation,
        ) = HEADER_STRUCT.unpack_from(data, 0)
        if magic != ARCHIVE_MAGIC:
            raise bad(f"magic={magic!r}, expected {ARCHIVE_MAGIC!r}: not an archive", 0)
        if version not in READABLE_VERSIONS:
            known = " and ".join(map(str, READABLE_VERSIONS))
            raise bad(
                f"archive_version={version}: this reader knows versions {known}; read it "
                "with the journal release that wrote it",
                ARCHIVE_VERSION_OFFSET,
            )
        if header_size != ARCHIVE_HEADER_SIZE:
            raise bad(
                f"header_size={header_size}, expected {ARCHIVE_HEADER_SIZE}", HEADER_SIZE_OFFSET
            )
        if segment_version != F.FORMAT_VERSION:
            raise bad(
                f"segment_format_version={segment_version}, this reader knows {F.FORMAT_VERSION}",
                SEGMENT_FORMAT_VERSION_OFFSET,
            )
        if not F.MIN_SEGMENT_SIZE <= size <= F.MAX_SEGMENT_SIZE or size % F.PAGE_SIZE:
            raise bad(f"segment_size={size} is not a valid segment size", SEGMENT_SIZE_OFFSET)
        if not F.HEADER_SIZE <= commit <= size or commit % F.RECORD_ALIGNMENT:
            raise bad(
                f"commit_offset={commit} is outside {F.HEADER_SIZE}..{size} or not a "
                f"multiple of {F.RECORD_ALIGNMENT}",
                COMMIT_OFFSET_OFFSET,
            )
        if marker and marker + F.END_MARKER_SIZE != commit:
            raise bad(
                f"end_marker_offset={marker} is not commit_offset={commit} - {F.END_MARKER_SIZE}",
                END_MARKER_OFFSET_OFFSET,
            )
        if reserved or any(data[HEADER_STRUCT.size : ARCHIVE_HEADER_SIZE]):
            raise bad("reserved header bytes are not zero", HEADER_RESERVED_OFFSET)
        return cls(
            payload,
            segment_version,
            index,
            size,
            created,
            pid,
            started,
            host,
            commit,
            marker,
            frame_size,
            level,
            incarnation,
            version,
        )

    def segment_header(self) -> bytes:
        """The segment's 4096 header bytes, as ``committed_header`` reads them."""
        header = bytearray(F.HEADER_SIZE)
        F.HEADER_STRUCT.pack_into(
            header,
            0,
            F.MAGIC,
            self.segment_format_version,
            F.HEADER_SIZE,
            self.segment_size,
            self.segment_index,
            self.payload_id,
            F.max_record_size(self.segment_size),
            self.created_ns,
            self.writer_pid,
            0,
            self.writer_started_ns,
            self.writer_host,
        )
        _I64.pack_into(header, F.END_MARKER_OFFSET_OFFSET, self.end_marker_offset)
        _I64.pack_into(header, F.INCARNATION_NS_OFFSET, self.incarnation_ns)
        _I64.pack_into(header, F.COMMIT_OFFSET_OFFSET, self.commit_offset)
        return bytes(header)


@dataclass(frozen=True, slots=True)
class FrameEntry:
    """One index entry: a zstd frame and the records in it."""

    file_offset: int
    compressed_size: int
    segment_offset: int
    raw_size: int
    record_count: int
    min_time_ns: int
    max_time_ns: int
    value_count: int = 0

    @property
    def content_size(self) -> int:
        """What the zstd frame decompresses to: the segment bytes, then the planes of
        the values moved out of them."""
        return self.raw_size + VALUE_BYTES * self.value_count

    def pack(self) -> bytes:
        return INDEX_ENTRY_STRUCT.pack(
            self.file_offset,
            self.compressed_size,
            self.segment_offset,
            self.raw_size,
            self.record_count,
            self.value_count,
            self.min_time_ns,
            self.max_time_ns,
        )

    def overlaps(self, start_ns: int | None, end_ns: int | None) -> bool:
        """Whether a record time in ``[start_ns, end_ns)`` can be in this frame."""
        return (
            self.record_count > 0
            and (start_ns is None or self.max_time_ns >= start_ns)
            and (end_ns is None or self.min_time_ns < end_ns)
        )


def pack_index_and_trailer(header: bytes, entries: list[FrameEntry], index_offset: int) -> bytes:
    """The index and the trailer that end an archive whose frames end at ``index_offset``."""
    index = b"".join(entry.pack() for entry in entries)
    with_records = [entry for entry in entries if entry.record_count]
    head = TRAILER_STRUCT.pack(
        index_offset,
        len(entries),
        sum(entry.record_count for entry in entries),
        min((entry.min_time_ns for entry in with_records), default=NO_TIME_MIN),
        max((entry.max_time_ns for entry in with_records), default=NO_TIME_MAX),
        zlib.crc32(header),
        zlib.crc32(index),
        0,
        0,
        ARCHIVE_END_MAGIC,
    )
    crc = zlib.crc32(head[:TRAILER_CRC_COVERS])
    trailer = head[:TRAILER_CRC32_OFFSET] + _U32.pack(crc) + head[TRAILER_END_MAGIC_OFFSET:]
    return index + trailer


# -- value planes (version 2; the layout: journal.archive._layout) ------------------


def split_values(frame: np.ndarray, starts: np.ndarray) -> bytes:
    """Zero the VALUE_WORDS of the record frames at ``starts`` (byte offsets,
    8-aligned) of the writable uint8 ``frame`` and return them as value planes: per
    word, the differences from the previous record's (mod 2^64), as VALUE_SIZE byte
    planes (the low bytes of all records, then the next bytes...), so small steps are
    long runs."""
    words = frame.view("<u8")
    at = starts[:, None] // _WORD + VALUE_WORDS
    values = words[at]
    words[at] = 0
    deltas = values.copy()
    deltas[1:] -= values[:-1]
    planes = deltas.T.copy().view(np.uint8).reshape(len(VALUE_WORDS), len(starts), VALUE_SIZE)
    return np.ascontiguousarray(planes.transpose(0, 2, 1)).tobytes()


def plane_values(planes: Any, count: int) -> np.ndarray:
    """The values the planes of ``count`` records hold: (len(VALUE_WORDS), count)
    uint64, each of the VALUE_WORDS of each record frame in turn (the differences added
    up, modulo 2^64). Apart from restore_values so that a reader can restore them
    where it wants."""
    stacked = np.frombuffer(planes, np.uint8).reshape(len(VALUE_WORDS), VALUE_SIZE, count)
    deltas = np.ascontiguousarray(stacked.transpose(0, 2, 1)).view("<u8")[:, :, 0]
    return np.cumsum(deltas, axis=1)


def restore_values(frame: np.ndarray, planes: Any, starts: np.ndarray) -> None:
    """The inverse of split_values: the VALUE_WORDS of the record frames at ``starts``
    of ``frame`` (writable uint8) set from the value planes."""
    values = plane_values(planes, len(starts))
    frame.view("<u8")[starts[:, None] // _WORD + VALUE_WORDS] = values.T


# -- writing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    """What ``write_archive`` wrote."""

    header: ArchiveHeader
    frames: tuple[FrameEntry, ...]
    record_count: int
    file_size: int

    @property
    def raw_size(self) -> int:
        """The segment's committed bytes, header included."""
        return self.header.commit_offset


def _write_all(fd: int, data: Any) -> None:
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            done += os.write(fd, view[done:])


def write_archive(
    fd: int,
    segment: MappedSegment,
    *,
    level: int = DEFAULT_LEVEL,
    frame_size: int = DEFAULT_FRAME_SIZE,
    on_frame: Callable[[FrameEntry], None] | None = None,
) -> ArchiveSummary:
    """Write the archive of ``segment``'s committed bytes to ``fd`` (from its start).

    The segment should be sealed (nothing is appended to it any more); its frames
    are checked as they are walked (CorruptSegmentError names the file and offset).
    Deterministic: the same segment bytes, ``level`` and ``frame_size`` give the
    same archive bytes. ``on_frame`` is called after each zstd frame is written.
    """
    if frame_size < MIN_FRAME_SIZE or frame_size >= 1 << 32:
        raise ValueError(f"frame_size={frame_size}: use {MIN_FRAME_SIZE} .. 4 GiB")
    data = segment.map
    path = str(segment.path)
    payload_id = segment.header.payload_id
    schema = SCHEMAS.get(payload_id)
    if schema is None:
        raise JournalError(
            f"{path}: payload_id={payload_id!r} has no known schema, so its records "
            "have no time to index; not archived"
        )
    commit = segment.load_commit_acquire()
    check_commit(commit, len(data), path)
    header = ArchiveHeader.from_segment(data, commit, frame_size, level)
    packed_header = header.pack()
    compressor = zstandard.ZstdCompressor(
        level=level, write_checksum=True, write_content_size=True, write_dict_id=False
    )
    entries: list[FrameEntry] = []
    position = len(packed_header)
    _write_all(fd, packed_header)

    start = F.HEADER_SIZE
    count = 0
    low, high = NO_TIME_MIN, NO_TIME_MAX
    moved: list[int] = []  # frame offsets of the records whose values move to planes
    with memoryview(data) as view:

        def flush(end: int) -> None:
            nonlocal position, start, count, low, high, moved
            content = bytearray(view[start:end])
            content += split_values(np.frombuffer(content, np.uint8), np.array(moved, np.int64))
            compressed = compressor.compress(content)
            _write_all(fd, compressed)
            entry = FrameEntry(
                position, len(compressed), start, end - start, count, low, high, len(moved)
            )
            entries.append(entry)
            position += len(compressed)
            start, count, low, high, moved = end, 0, NO_TIME_MIN, NO_TIME_MAX, []
            if on_frame is not None:
                on_frame(entry)

        for offset, size in walk_frames(data, commit, payload_id, path):
            if size == END:
                break  # the marker ends the last frame
            frame_end = F.align_record(offset + F.SIZE_PREFIX_SIZE + size)
            if count and frame_end - start > frame_size:
                flush(offset)
            time_ns = _segment_record_time(data, offset, size, schema, path)
            count += 1
            low, high = min(low, time_ns), max(high, time_ns)
            if frame_end - offset >= MIN_VALUE_FRAME:
                moved.append(offset - start)
        if commit > start:
            flush(commit)
    _write_all(fd, pack_index_and_trailer(packed_header, entries, position))
    file_size = position + len(entries) * INDEX_ENTRY_SIZE + TRAILER_SIZE
    return ArchiveSummary(header, tuple(entries), sum(e.record_count for e in entries), file_size)


# -- reading ------------------------------------------------------------------------------


class _Trailer(NamedTuple):
    """An archive's trailer, field by field (journal.archive._layout.TRAILER_FIELDS,
    with the reserved word)."""

    index_offset: int
    frame_count: int
    record_count: int
    min_time_ns: int
    max_time_ns: int
    header_crc32: int
    index_crc32: int
    reserved: int
    trailer_crc32: int
    end_magic: bytes


class ArchiveReader:
    """An archive file, checked when opened; frames are decompressed on demand.

    ``max_frame_size`` bounds what one zstd frame may decompress to (and so what a
    reader allocates at once). ``frames_decompressed`` counts the frames read, so a
    caller (or a test) sees that a time range touched only the frames it needed.

    ``decompress_frame`` may be called from several threads at once (each gets its own
    zstd context; zstd runs without the GIL), so that a reader such as
    journal.analysis decompresses frames ahead while it decodes others.

    ``directory_fd``: open the last component of ``path`` relative to that directory
    (one whose path was checked, journal._paths) rather than ``path`` itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        directory_fd: int | None = None,
    ) -> None:
        self.path = str(path)
        self.max_frame_size = max_frame_size
        self.frames_decompressed = 0
        self._counter_lock = threading.Lock()
        self._contexts = threading.local()
        try:
            # O_NONBLOCK: a FIFO under an archive's name must not hang the reader.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            name = path if directory_fd is None else os.path.basename(path)
            self._fd = os.open(name, flags, dir_fd=directory_fd)
        except OSError as error:
            raise JournalError(f"cannot open archive {path}: {error.strerror}") from error
        try:
            info = os.fstat(self._fd)
            if not stat.S_ISREG(info.st_mode):
                raise JournalError(f"refusing to read {path}: not a regular file")
            self.file_size = info.st_size
            self._load(self.file_size)
        except BaseException:
            self.close()
            raise
        self.schema: TableSchema | None = SCHEMAS.get(self.header.payload_id)

    def _corrupt(self, message: str, offset: int | None) -> CorruptArchiveError:
        return CorruptArchiveError(message, path=self.path, offset=offset)

    def _pread(self, size: int, offset: int) -> bytes:
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise self._corrupt(
                f"file ends after {len(data)} of the {size} bytes expected here", offset
            )
        return data

    def _load(self, file_size: int) -> None:
        """Check the file's parts, in this order, before any zstd frame is touched:
        its ends (the trailer), the header, the index, each index entry, the totals."""
        trailer_at = file_size - TRAILER_SIZE
        header_bytes, trailer = self._read_ends(file_size)
        self.header = self._checked_header(header_bytes, trailer)
        index = self._read_index(trailer, trailer_at)
        frames = self._checked_entries(index, trailer.index_offset)
        self._check_totals(frames, trailer, trailer_at)
        self.frames: tuple[FrameEntry, ...] = tuple(frames)
        self.record_count: int = trailer.record_count
        self.min_time_ns: int = trailer.min_time_ns
        self.max_time_ns: int = trailer.max_time_ns

    def _read_ends(self, file_size: int) -> tuple[bytes, _Trailer]:
        """The header's bytes and the trailer, the trailer checked on its own (end
        magic, CRC-32, reserved word)."""
        minimum = ARCHIVE_HEADER_SIZE + TRAILER_SIZE
        if file_size < minimum:
            raise self._corrupt(
                f"file is {file_size} bytes, shorter than a header and a trailer ({minimum})",
                0,
            )
        header_bytes = self._pread(ARCHIVE_HEADER_SIZE, 0)
        trailer_at = file_size - TRAILER_SIZE
        trailer_bytes = self._pread(TRAILER_SIZE, trailer_at)
        trailer = _Trailer._make(TRAILER_STRUCT.unpack(trailer_bytes))
        if trailer.end_magic != ARCHIVE_END_MAGIC:
            raise self._corrupt(
                f"end_magic={trailer.end_magic!r}, expected {ARCHIVE_END_MAGIC!r}: the file is "
                "truncated or not an archive",
                trailer_at + TRAILER_END_MAGIC_OFFSET,
            )
        if zlib.crc32(trailer_bytes[:TRAILER_CRC_COVERS]) != trailer.trailer_crc32:
            raise self._corrupt("trailer fails its CRC-32", trailer_at)
        if trailer.reserved:
            raise self._corrupt(
                f"trailer reserved={trailer.reserved}, expected 0",
                trailer_at + TRAILER_RESERVED_OFFSET,
            )
        return header_bytes, trailer

    def _checked_header(self, header_bytes: bytes, trailer: _Trailer) -> ArchiveHeader:
        """The header, against the trailer's CRC-32 and field by field."""
        if zlib.crc32(header_bytes) != trailer.header_crc32:
            # Say what is wrong with the header if it is that obvious, else the CRC.
            ArchiveHeader.parse(header_bytes, self.path)
            raise self._corrupt("header fails its CRC-32", 0)
        return ArchiveHeader.parse(header_bytes, self.path)

    def _read_index(self, trailer: _Trailer, trailer_at: int) -> bytes:
        """The index's bytes: exactly between the zstd frames and the trailer, checked
        against the trailer's CRC-32."""
        index_offset, frame_count = trailer.index_offset, trailer.frame_count
        index_size = trailer_at - index_offset
        if not ARCHIVE_HEADER_SIZE <= index_offset <= trailer_at or (
            index_size != frame_count * INDEX_ENTRY_SIZE
        ):
            raise self._corrupt(
                f"index_offset={index_offset} frame_count={frame_count} do not fill the "
                f"file between the header and the trailer ({trailer_at + TRAILER_SIZE} bytes)",
                trailer_at,
            )
        index = self._pread(index_size, index_offset)
        if zlib.crc32(index) != trailer.index_crc32:
            raise self._corrupt("index fails its CRC-32", index_offset)
        return index

    def _checked_entries(self, index: bytes, index_offset: int) -> list[FrameEntry]:
        """The index entries, each sound on its own (_entry_problem) and following the
        one before it, the frames filling the file up to the index and the segment
        from its header to its commit offset."""
        frames = []
        file_at, segment_at = ARCHIVE_HEADER_SIZE, F.HEADER_SIZE
        for i, fields in enumerate(INDEX_ENTRY_STRUCT.iter_unpack(index)):
            offset, compressed, segment_offset, raw, records, values, low, high = fields
            entry = FrameEntry(offset, compressed, segment_offset, raw, records, low, high, values)
            problem = self._entry_problem(i, entry, file_at, segment_at, index_offset)
            if problem:
                raise self._corrupt(problem, index_offset + i * INDEX_ENTRY_SIZE)
            frames.append(entry)
            file_at, segment_at = offset + compressed, segment_offset + raw
        commit = self.header.commit_offset
        if file_at != index_offset or segment_at != commit:
            raise self._corrupt(
                f"the zstd frames end at file offset {file_at} and segment offset "
                f"{segment_at}, not at index_offset={index_offset} and "
                f"commit_offset={commit}",
                index_offset,
            )
        return frames

    def _entry_problem(
        self, i: int, entry: FrameEntry, file_at: int, segment_at: int, index_offset: int
    ) -> str | None:
        """What is wrong with index entry ``i``, expected to start at ``file_at`` in the
        file and ``segment_at`` in the segment; None if nothing."""
        offset, compressed = entry.file_offset, entry.compressed_size
        segment_offset, raw = entry.segment_offset, entry.raw_size
        records, values = entry.record_count, entry.value_count
        version = self.header.archive_version
        if offset != file_at or compressed == 0 or offset + compressed > index_offset:
            return (
                f"zstd frame {i}: file_offset={offset} compressed_size={compressed} "
                f"(expected to start at {file_at}, end by {index_offset})"
            )
        if segment_offset != segment_at or raw % F.RECORD_ALIGNMENT:
            return (
                f"zstd frame {i}: segment_offset={segment_offset} raw_size={raw} "
                f"(expected to start at {segment_at}, 8-aligned)"
            )
        if not 0 < raw <= self.max_frame_size:
            return (
                f"zstd frame {i}: raw_size={raw} is outside 1..max_frame_size={self.max_frame_size}"
            )
        if records > raw // (F.SIZE_PREFIX_SIZE + F.MIN_RECORD_SIZE):
            return f"zstd frame {i}: record_count={records} cannot fit raw_size={raw}"
        if values > records or (values and version < 2):
            return (
                f"zstd frame {i}: value_count={values} with record_count={records} in "
                f"an archive of version {version}"
            )
        if records and entry.min_time_ns > entry.max_time_ns:
            return (
                f"zstd frame {i}: min_time_ns={entry.min_time_ns} > max_time_ns={entry.max_time_ns}"
            )
        return None

    def _check_totals(self, frames: list[FrameEntry], trailer: _Trailer, trailer_at: int) -> None:
        """The trailer's record count and time range are the index's."""
        with_records = [entry for entry in frames if entry.record_count]
        if (
            trailer.record_count != sum(entry.record_count for entry in frames)
            or trailer.min_time_ns
            != min((e.min_time_ns for e in with_records), default=NO_TIME_MIN)
            or trailer.max_time_ns
            != max((e.max_time_ns for e in with_records), default=NO_TIME_MAX)
        ):
            raise self._corrupt("trailer totals disagree with the index", trailer_at)

    # -- frames ---------------------------------------------------------------------------

    def read_frame(self, i: int) -> bytes:
        """The decompressed content of zstd frame ``i``: segment bytes from its
        ``segment_offset``, checked (content size, checksum, record framing, count)."""
        data = self._frame(i)
        for _ in self._walk(i, data):
            pass
        return data

    def _frame(self, i: int) -> bytes:
        """The segment bytes of zstd frame ``i``: decompressed (decompress_frame), the
        values put back into the records (their framing checked by ``_walk``)."""
        entry = self.frames[i]
        content = self.decompress_frame(i)
        if not entry.value_count:
            return content
        raw = bytearray(memoryview(content)[: entry.raw_size])
        starts = np.fromiter(
            (
                offset
                for offset, size in self._walk(i, raw)
                if F.align_record(F.SIZE_PREFIX_SIZE + size) >= MIN_VALUE_FRAME
            ),
            np.int64,
        )
        if len(starts) != entry.value_count:
            raise self._corrupt(
                f"zstd frame {i}: {len(starts)} records of {MIN_VALUE_FRAME} bytes or more, "
                f"the index says value_count={entry.value_count}",
                entry.file_offset,
            )
        restore_values(np.frombuffer(raw, np.uint8), memoryview(content)[entry.raw_size :], starts)
        return bytes(raw)

    def decompress_frame(self, i: int) -> bytes:
        """Zstd frame ``i`` decompressed, bounded (module docstring): the segment bytes,
        then (version 2) the value planes of its records (split_values)."""
        entry = self.frames[i]
        compressed = self._pread(entry.compressed_size, entry.file_offset)
        where = entry.file_offset
        try:
            params = zstandard.get_frame_parameters(compressed)
        except zstandard.ZstdError as error:
            raise self._corrupt(f"zstd frame {i}: bad frame header ({error})", where) from None
        if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            raise self._corrupt(f"zstd frame {i}: no content size in its header", where)
        if params.content_size != entry.content_size:
            raise self._corrupt(
                f"zstd frame {i}: content size {params.content_size} in its header, "
                f"{entry.content_size} in the index",
                where,
            )
        if not params.has_checksum:
            raise self._corrupt(f"zstd frame {i}: no content checksum", where)
        try:
            data = self._decompressor().decompress(
                compressed, max_output_size=entry.content_size, allow_extra_data=False
            )
        except zstandard.ZstdError as error:
            raise self._corrupt(f"zstd frame {i}: {error}", where) from None
        if len(data) != entry.content_size:
            raise self._corrupt(
                f"zstd frame {i}: decompressed to {len(data)} bytes, expected {entry.content_size}",
                where,
            )
        with self._counter_lock:
            self.frames_decompressed += 1
        return data

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        """This thread's zstd context: one may not be used by two threads at once."""
        context = getattr(self._contexts, "decompressor", None)
        if context is None:
            context = self._contexts.decompressor = zstandard.ZstdDecompressor()
        return context

    def _walk(self, i: int, data: bytes) -> Iterator[tuple[int, int]]:
        """``(offset in data, size prefix)`` of each record of frame ``i``, one at a
        time: a frame of millions of tiny records costs no list of them. The count is
        checked against the index once the walk reaches the frame's end."""
        entry = self.frames[i]
        last = i == len(self.frames) - 1
        count = 0
        offset, end = 0, len(data)
        payload_id = self.header.payload_id
        marker = False
        while offset < end:
            problem = None
            size = _U32.unpack_from(data, offset)[0]
            if size == F.END_OF_SEGMENT:
                if (
                    not last
                    or offset + F.END_MARKER_SIZE != end
                    or data[offset : offset + F.END_MARKER_SIZE] != _END_MARKER
                    or entry.segment_offset + offset != self.header.end_marker_offset
                ):
                    problem = "an end-of-segment marker that is not the end of the segment"
                marker = True
            elif size < F.MIN_RECORD_SIZE or offset + F.SIZE_PREFIX_SIZE + size > end:
                problem = f"size prefix={size} runs past the end of the zstd frame"
            elif data[offset + _ID : offset + _ID_END] != payload_id:
                problem = (
                    f"file_identifier={data[offset + _ID : offset + _ID_END]!r}, the archive "
                    f"holds {payload_id!r}"
                )
            if problem:
                raise self._corrupt(
                    f"zstd frame {i}: {problem} at segment offset {entry.segment_offset + offset}",
                    entry.file_offset,
                )
            if marker:
                break
            count += 1
            yield offset, size
            offset = F.align_record(offset + F.SIZE_PREFIX_SIZE + size)
        if last and self.header.sealed and not marker:
            raise self._corrupt(
                f"zstd frame {i}: the archive is of a sealed segment but its last frame "
                "does not end with the end-of-segment marker",
                entry.file_offset,
            )
        if count != entry.record_count:
            raise self._corrupt(
                f"zstd frame {i}: {count} records, the index says {entry.record_count}",
                entry.file_offset,
            )

    def _time(self, i: int, data: bytes, offset: int, size: int) -> int:
        schema = self._schema_or_raise()
        try:
            return record_time(data, offset, offset + F.SIZE_PREFIX_SIZE + size, schema)
        except VerificationError as error:
            entry = self.frames[i]
            raise self._corrupt(
                f"zstd frame {i}: record at segment offset {entry.segment_offset + offset} "
                f"fails FlatBuffers verification: {error}",
                entry.file_offset,
            ) from None

    def _schema_or_raise(self) -> TableSchema:
        if self.schema is None:
            raise JournalError(
                f"{self.path}: payload_id={self.header.payload_id!r} has no known schema"
            )
        return self.schema

    def frames_overlapping(self, start_ns: int | None, end_ns: int | None) -> list[int]:
        """Indices of the zstd frames that may hold a record time in ``[start_ns, end_ns)``."""
        return [i for i, entry in enumerate(self.frames) if entry.overlaps(start_ns, end_ns)]

    # -- records ----------------------------------------------------------------------------

    def records(
        self, start_ns: int | None = None, end_ns: int | None = None, *, verify: bool = True
    ) -> Iterator[Record]:
        """The records whose time is in ``[start_ns, end_ns)`` (None: unbounded), in
        segment order; only the zstd frames whose time range overlaps are read.

        Each record is decoded as journal.Reader decodes it (``position`` is its
        ``(segment, offset)``; order-book levels are numpy views of the frame's bytes).
        """
        schema = self._schema_or_raise()
        index = self.header.segment_index
        for i in self.frames_overlapping(start_ns, end_ns):
            entry = self.frames[i]
            data = self._frame(i)
            for offset, size in self._walk(i, data):
                time_ns = self._time(i, data, offset, size)
                if not entry.min_time_ns <= time_ns <= entry.max_time_ns:
                    raise self._corrupt(
                        f"zstd frame {i}: record at segment offset "
                        f"{entry.segment_offset + offset} has time {time_ns}, outside the "
                        f"index's {entry.min_time_ns}..{entry.max_time_ns}",
                        entry.file_offset,
                    )
                if (start_ns is not None and time_ns < start_ns) or (
                    end_ns is not None and time_ns >= end_ns
                ):
                    continue
                end = offset + F.SIZE_PREFIX_SIZE + size
                position = (index, entry.segment_offset + offset)
                try:
                    yield read_record(data, offset, end, position, schema, verify)
                except (VerificationError, UnicodeDecodeError) as error:
                    raise self._corrupt(
                        f"zstd frame {i}: record at segment offset {position[1]} does not "
                        f"decode: {error}",
                        entry.file_offset,
                    ) from None

    # -- the whole segment ------------------------------------------------------------------

    def iter_segment_bytes(self) -> Iterator[bytes]:
        """The segment's committed bytes in pieces: its header, then each frame."""
        yield self.header.segment_header()
        for i in range(len(self.frames)):
            yield self.read_frame(i)

    def segment_bytes(self, limit: int = DEFAULT_SEGMENT_BYTES_LIMIT) -> bytes:
        """The segment's committed bytes (``commit_offset`` of them) in one piece."""
        if self.header.commit_offset > limit:
            raise JournalError(
                f"{self.path}: the segment's committed bytes ({self.header.commit_offset}) "
                f"exceed limit={limit}; pass a larger limit or use iter_segment_bytes"
            )
        return b"".join(self.iter_segment_bytes())

    def verify(self, segment: Any = None) -> None:
        """Check everything: each frame decompressed, its records framed and counted,
        the index's times exact; and, given the segment's bytes (``segment``: its
        mapping), that the archive reproduces every committed byte of it.
        Raises CorruptArchiveError at the first problem."""
        if segment is not None:
            if len(segment) < self.header.commit_offset:
                raise self._corrupt(
                    f"the segment holds {len(segment)} bytes, the archive "
                    f"{self.header.commit_offset}",
                    COMMIT_OFFSET_OFFSET,
                )
            expected = committed_header(segment)
            rebuilt = self.header.segment_header()
            if rebuilt != expected:
                at = _first_difference(rebuilt, expected)
                raise self._corrupt(
                    f"the archive header does not reproduce the segment header (segment "
                    f"offset {at} differs)",
                    0,
                )
        self._schema_or_raise()
        for i, entry in enumerate(self.frames):
            data = self._frame(i)
            low, high = NO_TIME_MIN, NO_TIME_MAX
            for offset, size in self._walk(i, data):
                time_ns = self._time(i, data, offset, size)
                low, high = min(low, time_ns), max(high, time_ns)
            if (low, high) != (entry.min_time_ns, entry.max_time_ns):
                raise self._corrupt(
                    f"zstd frame {i}: record times {low}..{high}, the index says "
                    f"{entry.min_time_ns}..{entry.max_time_ns}",
                    entry.file_offset,
                )
            if segment is not None:
                original = segment[entry.segment_offset : entry.segment_offset + entry.raw_size]
                if data != original:
                    at = entry.segment_offset + _first_difference(data, original)
                    raise self._corrupt(
                        f"zstd frame {i} differs from the segment at segment offset {at}",
                        entry.file_offset,
                    )

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ArchiveReader({self.path!r}, segment={self.header.segment_index}, "
            f"frames={len(self.frames)}, records={self.record_count})"
        )


def _first_difference(a: bytes, b: bytes) -> int:
    """Offset of the first byte where ``a`` and ``b`` differ (or the shorter length)."""
    n = min(len(a), len(b))
    left = np.frombuffer(a, np.uint8, n)
    right = np.frombuffer(b, np.uint8, n)
    differ = np.flatnonzero(left != right)
    return int(differ[0]) if len(differ) else n


# -- a stream's segments, across incarnations of its journal --------------------------------


def stream_segments(archive_dir: Path | None, journal_dir: Path) -> list[StreamSegment]:
    """Every segment of a stream, archived (in ``archive_dir``) or in ``journal_dir``,
    in stream order (see StreamSegment); one entry for a segment in both."""
    found: dict[tuple[int, int], StreamSegment] = {}
    for path in archive_files(archive_dir) if archive_dir is not None else []:
        name = parse_archive_name(path.name)
        assert name is not None
        created = name.created_ns
        if created is None:  # a name without its -<created> part: the header says
            with ArchiveReader(path) as reader:
                created = reader.header.created_ns
        found[created, name.segment_index] = StreamSegment(created, name.segment_index, path)
    for index in segment_indices(journal_dir):
        try:
            with MappedSegment(segment_path(journal_dir, index)) as segment:
                created = segment.header.created_ns
        except FileNotFoundError:
            continue  # archived and removed meanwhile: its archive is listed, or not yet
        archived = found.get((created, index))
        path = None if archived is None else archived.archive
        found[created, index] = StreamSegment(created, index, path, in_tmpfs=True)
    return sorted(found.values())
