"""Segment files: safe creation, mapping, and the self-describing header.

A segment appears under its final name only once it is preallocated in full and its
header is written: it is built under a hidden temporary name and hard-linked into
place, which fails rather than replacing a file that exists. Files are opened with
O_NOFOLLOW, since /dev/shm is writable by everyone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from journal import _layout as F
from journal._errors import CorruptSegmentError, JournalError, JournalFullError
from journal._libc import libc
from journal._publish import is_sealed, load_commit_acquire

_CREATING_SUFFIX = ".creating"
_I64 = struct.Struct("<q")
_MADV_DONTNEED = 4
_MADV_POPULATE_WRITE = 23


@dataclass(frozen=True, slots=True)
class WriterIdentity:
    """Who wrote a segment: stamped in every header, shown by ``journal info``."""

    pid: int
    started_ns: int
    host: str

    @classmethod
    def current(cls) -> WriterIdentity:
        return cls(os.getpid(), time.time_ns(), socket.gethostname())


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    format_version: int
    header_size: int
    segment_size: int
    segment_index: int
    payload_id: bytes
    max_record_size: int
    created_ns: int
    writer: WriterIdentity
    incarnation_ns: int
    """``created_ns`` of segment 0 of this incarnation of the journal directory, in
    every segment of it (0: written before the field existed, unknown)."""

    @classmethod
    def parse(cls, data: bytes | memoryview | mmap.mmap, path: str) -> SegmentHeader:
        """Read and check a header; CorruptSegmentError names the field and the file."""
        if len(data) < F.HEADER_STRUCT.size:
            raise CorruptSegmentError(
                f"file is {len(data)} bytes, shorter than a segment header", path=path, offset=0
            )
        (
            magic,
            version,
            header_size,
            segment_size,
            index,
            payload_id,
            max_record,
            created,
            pid,
            _reserved,
            started,
            host,
        ) = F.HEADER_STRUCT.unpack_from(data, 0)
        if magic != F.MAGIC:
            raise CorruptSegmentError(
                f"magic={magic!r}, expected {F.MAGIC!r}: not a journal segment",
                path=path,
                offset=F.MAGIC_OFFSET,
            )
        if version != F.FORMAT_VERSION:
            raise CorruptSegmentError(
                f"format_version={version}, this reader knows {F.FORMAT_VERSION}",
                path=path,
                offset=F.FORMAT_VERSION_OFFSET,
            )
        if header_size != F.HEADER_SIZE:
            raise CorruptSegmentError(
                f"header_size={header_size}, expected {F.HEADER_SIZE}",
                path=path,
                offset=F.HEADER_SIZE_OFFSET,
            )
        if not F.MIN_SEGMENT_SIZE <= segment_size < F.MAX_SEGMENT_SIZE or (
            segment_size % F.PAGE_SIZE
        ):
            raise CorruptSegmentError(
                f"segment_size={segment_size} is not a page multiple in "
                f"{F.MIN_SEGMENT_SIZE}..{F.MAX_SEGMENT_SIZE}",
                path=path,
                offset=F.SEGMENT_SIZE_OFFSET,
            )
        if max_record != F.max_record_size(segment_size):
            raise CorruptSegmentError(
                f"max_record_size={max_record}, expected {F.max_record_size(segment_size)} "
                f"for segment_size={segment_size}",
                path=path,
                offset=F.MAX_RECORD_SIZE_OFFSET,
            )
        return cls(
            version,
            header_size,
            segment_size,
            index,
            payload_id,
            max_record,
            created,
            WriterIdentity(pid, started, host.rstrip(b"\0").decode("utf-8", "replace")),
            _I64.unpack_from(data, F.INCARNATION_NS_OFFSET)[0],
        )

    def pack(self) -> bytes:
        """The write-once fields: up to writer_host, then incarnation_ns."""
        fixed = F.HEADER_STRUCT.pack(
            F.MAGIC,
            self.format_version,
            self.header_size,
            self.segment_size,
            self.segment_index,
            self.payload_id,
            self.max_record_size,
            self.created_ns,
            self.writer.pid,
            0,
            self.writer.started_ns,
            self.writer.host.encode("utf-8")[: F.WRITER_HOST_SIZE],
        )
        packed = bytearray(F.INCARNATION_NS_OFFSET + 8)
        packed[: len(fixed)] = fixed
        _I64.pack_into(packed, F.INCARNATION_NS_OFFSET, self.incarnation_ns)
        return bytes(packed)


class PathState(NamedTuple):
    """What became of a mapped segment's file (``MappedSegment.path_state``)."""

    truncated: bool
    """Still this file, shorter than its mapping: touching the rest faults (SIGBUS).
    False: the path no longer names this file (removed or replaced)."""
    message: str


def segment_indices(directory: Path) -> list[int]:
    """Indices of the complete segments in ``directory``, oldest first."""
    indices = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        stem, dot, suffix = name.partition(".")
        # The canonical name of its index only: at least 8 ASCII digits, no extra zeros.
        if (
            dot
            and "." + suffix == F.SEGMENT_SUFFIX
            and stem.isascii()
            and stem.isdigit()
            and F.segment_name(int(stem)) == name
        ):
            indices.append(int(stem))
    indices.sort()
    return indices


def segment_path(directory: Path, index: int) -> Path:
    return directory / F.segment_name(index)


def remove_unfinished(directory: Path) -> list[str]:
    """Delete segments a crashed writer left half-created (the caller holds the lock)."""
    removed = []
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(F.SEGMENT_SUFFIX + _CREATING_SUFFIX):
            os.unlink(directory / name)
            removed.append(name)
    return removed


def create_segment(
    directory: Path,
    index: int,
    segment_size: int,
    payload_id: bytes,
    writer: WriterIdentity,
    mode: int,
    incarnation_ns: int | None,
    directory_fd: int | None = None,
) -> Path:
    """Create segment ``index`` preallocated in full with its header and commit set.

    ``incarnation_ns`` is the incarnation's stamp (FORMAT.md, "Incarnations"); None
    starts a new incarnation, stamped with this segment's own ``created_ns``.

    Raises JournalFullError if the filesystem has no room (so a full tmpfs is an
    error here, never a SIGBUS in the middle of a write), FileExistsError if the
    segment exists. With ``directory_fd`` (the writer's locked directory) the files
    are made relative to it, so a journal directory removed or replaced meanwhile
    gets nothing (FileNotFoundError) instead of a stray segment in its successor.
    """
    final = segment_path(directory, index)
    temporary = directory / f".{final.name}{_CREATING_SUFFIX}"
    # Relative names with the directory's descriptor, or the full paths without it.
    if directory_fd is None:
        final_name, temporary_name = str(final), str(temporary)
    else:
        final_name, temporary_name = final.name, temporary.name
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary_name, flags, mode, dir_fd=directory_fd)
    except FileExistsError:
        raise JournalError(
            f"{temporary} exists: only this journal's writer creates it, and it removes "
            "leftovers when it opens; something else is writing into the journal directory"
        ) from None
    try:
        os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
        try:
            os.posix_fallocate(fd, 0, segment_size)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = os.statvfs(directory)
            raise JournalFullError(
                error.errno,
                f"no room for segment={index} of segment_size={segment_size} in "
                f"{directory} (free={free.f_bavail * free.f_frsize} bytes): free space "
                "in the tmpfs, let the compactor archive sealed segments, or mount a "
                "larger one",
            ) from error
        created_ns = time.time_ns()
        header = SegmentHeader(
            F.FORMAT_VERSION,
            F.HEADER_SIZE,
            segment_size,
            index,
            payload_id,
            F.max_record_size(segment_size),
            created_ns,
            writer,
            created_ns if incarnation_ns is None else incarnation_ns,
        )
        os.pwrite(fd, header.pack(), 0)
        os.pwrite(fd, F.HEADER_SIZE.to_bytes(8, "little"), F.COMMIT_OFFSET_OFFSET)
        # Fails with FileExistsError: never clobbers.
        os.link(temporary_name, final_name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):  # the directory went with it
            os.unlink(temporary_name, dir_fd=directory_fd)
        raise
    os.close(fd)
    os.unlink(temporary_name, dir_fd=directory_fd)
    return final


class MappedSegment:
    """One segment file mapped whole; closing unmaps and closes the descriptor.

    Read-only by default (readers); ``writable`` for the writer. Numpy views of
    records keep the mapping alive after ``close`` until they are dropped.
    ``directory_fd``: open ``path.name`` relative to that directory (the writer's
    locked one) rather than ``path``. ``identity`` is the file's (st_dev, st_ino):
    ``still_at_path`` compares it with what ``path`` names now.
    """

    __slots__ = ("header", "identity", "index", "map", "path")

    def __init__(
        self, path: Path, *, writable: bool = False, directory_fd: int | None = None
    ) -> None:
        self.path = path
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path if directory_fd is None else path.name, flags, dir_fd=directory_fd)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise JournalError(f"refusing to open {path}: it is a symbolic link") from error
            raise
        try:
            info = os.fstat(fd)
            self.identity = (info.st_dev, info.st_ino)
            if not stat.S_ISREG(info.st_mode):
                raise JournalError(f"refusing to open {path}: not a regular file")
            if info.st_size < F.HEADER_SIZE:
                raise CorruptSegmentError(
                    f"file size={info.st_size} is smaller than the header", path=str(path)
                )
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self.map = mmap.mmap(fd, info.st_size, access=access)
        finally:
            os.close(fd)
        self.header = SegmentHeader.parse(self.map, str(path))
        if self.header.segment_size != len(self.map):
            size = len(self.map)
            self.map.close()
            raise CorruptSegmentError(
                f"segment_size={self.header.segment_size} but the file is {size} bytes",
                path=str(path),
                offset=F.SEGMENT_SIZE_OFFSET,
            )
        self.index = self.header.segment_index

    @classmethod
    def open_checked(
        cls,
        directory: Path,
        index: int,
        payload_id: bytes | None,
        *,
        writable: bool = False,
        directory_fd: int | None = None,
    ) -> MappedSegment:
        """Segment ``index`` of ``directory``, its header naming that index and (unless
        None) that payload; CorruptSegmentError otherwise."""
        segment = cls(segment_path(directory, index), writable=writable, directory_fd=directory_fd)
        header = segment.header
        if header.segment_index != index or (
            payload_id is not None and header.payload_id != payload_id
        ):
            segment.close()
            raise CorruptSegmentError(
                f"header says segment_index={header.segment_index} "
                f"payload_id={header.payload_id!r}, expected {index}"
                + ("" if payload_id is None else f" and {payload_id!r}"),
                path=str(segment.path),
                offset=F.SEGMENT_INDEX_OFFSET,
            )
        return segment

    def path_state(self) -> PathState | None:
        """None while ``path`` still names this very file, in full; otherwise what
        happened to it. One stat."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return PathState(False, f"{self.path} was removed")
        except OSError as error:  # its directory removed, say, or replaced by a file
            return PathState(False, f"{self.path} cannot be reached: {error.strerror}")
        if (info.st_dev, info.st_ino) != self.identity:
            return PathState(False, f"{self.path} is another file now (replaced)")
        if info.st_size < len(self.map):
            return PathState(
                True,
                f"{self.path} was truncated to {info.st_size} bytes (segment_size={len(self.map)})",
            )
        return None

    def load_commit_acquire(self) -> int:
        """The commit offset (acquire; pairs with the writer's publish_commit)."""
        with memoryview(self.map)[: F.HEADER_SIZE].cast("Q") as words:
            return load_commit_acquire(words)

    def is_sealed(self) -> bool:
        """Whether the end marker is committed (loads the commit, then the marker)."""
        with memoryview(self.map)[: F.HEADER_SIZE].cast("Q") as words:
            return is_sealed(words, load_commit_acquire(words))

    def prefault(self) -> bool:
        """Map every page writable now (MADV_POPULATE_WRITE, Linux 5.14+), so appends
        do not take a page fault every few records. Slow for a large segment, and
        without the GIL: call it off the appending thread. False if unsupported."""
        return self._advise(_MADV_POPULATE_WRITE)

    def drop_page_tables(self) -> None:
        """Unmap the pages from this process (MADV_DONTNEED; the data stays in the
        file), so that ``close`` is cheap; slow for a large segment, without the GIL."""
        self._advise(_MADV_DONTNEED)

    def _advise(self, advice: int) -> bool:
        anchor = ctypes.c_char.from_buffer(self.map)
        try:
            status: int = libc.madvise(ctypes.addressof(anchor), len(self.map), advice)
            return status == 0
        finally:
            del anchor

    def close(self) -> None:
        # BufferError: numpy views still point into the mapping; it is unmapped when
        # the last of them goes, which is what keeps them valid.
        with contextlib.suppress(BufferError):
            self.map.close()

    def __enter__(self) -> MappedSegment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def incarnation_now(directory: Path) -> int | None:
    """The incarnation of the journal in ``directory`` as it is now: its oldest
    segment's stamp. None while it holds no segment: not made yet (a new journal is its
    directory first, then its first segment), or renamed or removed away."""
    for index in segment_indices(directory):
        try:
            with MappedSegment(segment_path(directory, index)) as segment:
                return segment.header.incarnation_ns
        except FileNotFoundError:
            continue  # archived and removed meanwhile: the next is the oldest
    return None
