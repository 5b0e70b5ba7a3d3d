"""``tools/compact`` and ``journal compact``: sealed segments become verified zstd archives.

    tools/compact JOURNAL... --archive DIR [--once] [--keep K]

Each journal directory is a stream; its archives go to ``DIR/<stream>/`` (the
journal directory's name), one file per sealed segment (journal.archive._archive). The open
segment, and the empty one a writer prepares for its next roll, are never touched:
a segment is archived only once its header says it is sealed.

For one sealed segment, each step safe to interrupt at any point (kill -9):

1. Name the archive after the segment's first record time, index and creation time
   (two incarnations of a journal, both from segment 0, get two names). If it exists
   and reproduces the segment (decompressed and compared), fsync it and its
   directory (a crash may have come right after its rename) and go to 5.
2. Write it to ``DIR/<stream>/.<name>.tmp`` (created exclusively), fsync it.
3. Verify it: decompress every frame and compare with the segment's committed bytes.
4. Rename it to ``<name>`` and fsync the directory: from here it is an archive.
5. Remove segments from tmpfs: only sealed ones older than the ``K`` newest sealed
   segments (kept for slow readers), oldest first, stopping at the first sealed one
   without a verified archive. (A segment whose header cannot be read is not among
   the candidates: it stays, and readers cross it through the archive if the ones
   around it were removed.)

A file is removed only if it is the very file archived, checked right before the
unlink: the journal path still names the directory listed, and the file at the
segment's name there has the inode read when archiving and the same ``created_ns``
and ``incarnation_ns`` in its header. Never an index match alone: a journal directory
removed and made again (a new incarnation, docs/FORMAT.md) reuses every name, and
the open segment of the new writer must not go for the old segment archived under
that index. Anything else keeps the file and says why. Segment files are opened,
and removed, relative to the journal directory's descriptor, never through a path
that may name another directory by then; after a recreation the new directory is
listed (and watched) afresh, and its segments archived as the new incarnation's.
(Between the check and the unlink lie a few system calls, and unlink(2) cannot be
told which inode to remove: only a process that may write the journal directory
could swap the file in that window, and the writer never replaces a segment.)

Paths are checked as the writer checks its own (journal._paths): the archive root,
each ``DIR/<stream>`` (ours, not a symlink) and each journal directory (not a
symlink, its owner root, us or a trusted uid) with every parent. A journal whose path
another user controls is neither archived nor touched; archive files are created
``O_EXCL | O_NOFOLLOW`` relative to the checked archive directory.

A crash leaves at worst a ``.tmp`` file (removed by the next run, which holds the
stream's lock ``DIR/<stream>/compact.lock``, one compactor per stream), or an
archive whose segment is still in tmpfs (verified again and skipped by the next
run). Archives are deterministic (same segment bytes, level and frame size: same
archive bytes), so a re-run produces exactly the archive an uninterrupted run does.
If the archive disk is full, the temporary file is removed, the segment stays in
tmpfs and the error says so; the next pass tries again.

Without ``--once`` it watches the journal directories (watchdog: a new segment file
means the one before will be sealed soon) and their parents (a journal directory
made, or made again, is watched in turn), and also looks every ``--poll`` seconds,
since sealing writes into an existing file, which makes no file event. SIGINT and
SIGTERM stop it cleanly: a segment being compressed is abandoned (its temporary
file removed) and the process exits 0.

Test hook: ``JOURNAL_COMPACT_CRASH_AT=<step>`` makes the compactor SIGKILL itself
the first time it reaches ``<step>``, one of CRASH_STEPS: ``compressing`` (after the
first zstd frame of a temporary file is written), ``written`` (temporary file
complete and fsynced), ``before-rename`` (verified), ``renamed`` (archive under its
final name), ``before-remove`` (about to remove a segment from tmpfs), ``removed``
(just removed). tests/test_compact.py uses it; never set it in production.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from journal import _layout as F
from journal._errors import ArchiveFullError, CorruptArchiveError, JournalError
from journal._names import check_stream_name
from journal._paths import CheckedDirectory, open_directory
from journal._segment import MappedSegment, SegmentHeader, segment_indices, segment_path
from journal.archive import _archive as A

log = logging.getLogger("journal.compact")

DEFAULT_KEEP: Final = 2
DEFAULT_POLL_S: Final = 1.0
LOCK_NAME: Final = "compact.lock"
CRASH_ENV: Final = "JOURNAL_COMPACT_CRASH_AT"
CRASH_STEPS: Final = (
    "compressing",
    "written",
    "before-rename",
    "renamed",
    "before-remove",
    "removed",
)


def _crash_point(step: str) -> None:
    """The test hook: die here, as kill -9 would, if JOURNAL_COMPACT_CRASH_AT=step."""
    if os.environ.get(CRASH_ENV) == step:
        log.warning("%s=%s: killing myself (SIGKILL) here", CRASH_ENV, step)
        os.kill(os.getpid(), signal.SIGKILL)


class _Stopped(Exception):
    """SIGINT/SIGTERM arrived while a segment was being compressed."""


_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
"""O_NONBLOCK: a FIFO under a segment's or an archive's name must not hang us."""


def _fsync_file(name: str, directory_fd: int) -> None:
    fd = os.open(name, _READ_FLAGS, dir_fd=directory_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _SegmentFile:
    """A sealed segment file as listed: what makes the file at its name the very one
    archived (the index alone does not: a recreated journal reuses every index)."""

    index: int
    identity: tuple[int, int]
    """The file's (st_dev, st_ino)."""
    created_ns: int
    incarnation_ns: int

    @classmethod
    def of(cls, segment: MappedSegment) -> _SegmentFile:
        header = segment.header
        return cls(segment.index, segment.identity, header.created_ns, header.incarnation_ns)

    def other_file(self, identity: tuple[int, int]) -> str | None:
        """None if ``identity`` (st_dev, st_ino) is this segment's file, else how not."""
        if identity == self.identity:
            return None
        return f"it is another file (inode {identity[1]}, the one listed {self.identity[1]})"

    def other_header(self, header: SegmentHeader) -> str | None:
        """None if ``header`` has this segment's stamps, else how not."""
        if (header.created_ns, header.incarnation_ns) == (self.created_ns, self.incarnation_ns):
            return None
        return (
            f"its header says created_ns={header.created_ns} "
            f"incarnation_ns={header.incarnation_ns}, the segment listed has "
            f"{self.created_ns} and {self.incarnation_ns}"
        )


@dataclass(slots=True)
class _Stream:
    journal: Path
    name: str
    archive: Path
    archive_dir: CheckedDirectory | None = None
    lock_fd: int = -1
    journal_dir: CheckedDirectory | None = None
    """The journal directory as checked and listed by this pass (None: none usable)."""
    journal_identity: tuple[int, int] | None = None
    """(st_dev, st_ino) of the last journal directory seen, to say when it changes."""
    archived: dict[_SegmentFile, Path] = field(default_factory=dict)
    """Segments whose archive this process verified, among the ones last listed."""
    said: set[str] = field(default_factory=set)
    """Errors and warnings of this pass, logged once; those of the previous pass are
    logged again only at DEBUG."""
    previous_said: set[str] = field(default_factory=set)

    @property
    def archive_fd(self) -> int:
        assert self.archive_dir is not None, "Compactor.open() first"
        return self.archive_dir.fd


@dataclass(slots=True)
class PassReport:
    """What one pass over every stream did."""

    archived: int = 0
    already: int = 0
    removed: int = 0
    raw_bytes: int = 0
    archive_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    stopped: bool = False


class Compactor:
    """Archives sealed segments of ``journals`` under ``archive_root``; see the module.

    ``open`` takes each stream's lock and removes temporary files a killed
    compactor left; ``run_pass`` does one pass; ``watch`` runs passes until
    ``stop`` is set.
    """

    def __init__(
        self,
        journals: Sequence[str | os.PathLike[str]],
        archive_root: str | os.PathLike[str],
        *,
        keep: int = DEFAULT_KEEP,
        level: int = A.DEFAULT_LEVEL,
        frame_size: int = A.DEFAULT_FRAME_SIZE,
    ) -> None:
        if keep < 0:
            raise ValueError(f"keep={keep}: the number of sealed segments kept must be >= 0")
        if not 1 <= level <= 22:
            raise ValueError(f"level={level}: zstd levels are 1..22")
        if not A.MIN_FRAME_SIZE <= frame_size <= A.DEFAULT_MAX_FRAME_SIZE:
            # Larger frames would make archives that journal.Reader, load_books and
            # analyze refuse (their bound on decompression): never remove a segment
            # whose only copy they cannot read.
            raise ValueError(
                f"frame_size={frame_size}: use {A.MIN_FRAME_SIZE} .. {A.DEFAULT_MAX_FRAME_SIZE}"
            )
        self.archive_root = Path(archive_root)
        self.keep = keep
        self.level = level
        self.frame_size = frame_size
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.streams: list[_Stream] = []
        seen: dict[str, Path] = {}
        for journal in journals:
            path = Path(journal)
            name = path.resolve().name
            try:
                check_stream_name(name)
            except ValueError as error:
                raise JournalError(f"{path}: its name is not a stream name: {error}") from None
            if name in seen:
                raise JournalError(
                    f"{seen[name]} and {path} would share the archive directory "
                    f"{self.archive_root / name}: give journals with distinct names"
                )
            seen[name] = path
            self.streams.append(_Stream(path, name, self.archive_root / name))

    # -- set-up -----------------------------------------------------------------------

    def open(self) -> None:
        """Create the archive directories (paths checked: journal._paths), lock them,
        remove stale temporary files."""
        try:
            for stream in self.streams:
                if stream.archive.resolve() == stream.journal.resolve():
                    raise JournalError(
                        f"the archive directory of {stream.journal} would be the journal "
                        "directory itself: choose another --archive"
                    )
                try:
                    stream.archive_dir = open_directory(
                        stream.archive, create_mode=0o755, own_last=True, durable=True
                    )
                except JournalError as error:
                    raise JournalError(f"archive directory {stream.archive}: {error}") from None
                try:
                    stream.lock_fd = self._lock(stream)
                    self._remove_temporaries(stream)
                except OSError as error:
                    raise JournalError(
                        f"cannot prepare the archive directory {stream.archive}: {error}"
                    ) from error
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _lock(stream: _Stream) -> int:
        path = stream.archive / LOCK_NAME
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(LOCK_NAME, flags, 0o644, dir_fd=stream.archive_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise JournalError(
                f"another compactor ({holder or 'unknown'}) holds {path}: one compactor per stream"
            ) from None
        with contextlib.suppress(OSError):  # informational only; the disk may be full
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} journal={stream.journal}\n".encode(), 0)
        return fd

    @staticmethod
    def _remove_temporaries(stream: _Stream) -> None:
        for name in os.listdir(stream.archive_fd):
            if name.startswith(".") and name.endswith(A.ARCHIVE_SUFFIX + A.TEMPORARY_SUFFIX):
                os.unlink(name, dir_fd=stream.archive_fd)
                log.info("removed %s, left by an interrupted compactor", stream.archive / name)

    def close(self) -> None:
        for stream in self.streams:
            if stream.lock_fd >= 0:
                os.close(stream.lock_fd)
                stream.lock_fd = -1
            for directory in (stream.archive_dir, stream.journal_dir):
                if directory is not None:
                    directory.close()
            stream.archive_dir = stream.journal_dir = None

    def __enter__(self) -> Compactor:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one pass ---------------------------------------------------------------------

    def run_pass(self) -> PassReport:
        """Archive every sealed segment not yet archived, then remove what may go."""
        report = PassReport()
        sealed = {id(stream): self._sealed(stream, report) for stream in self.streams}
        backlog = [
            (stream, segment)
            for stream in self.streams
            for segment in sealed[id(stream)]
            if segment not in stream.archived
        ]
        started = time.monotonic()
        full: set[int] = set()
        for done, (stream, segment) in enumerate(backlog, start=1):
            if self.stop.is_set():
                report.stopped = True
                break
            if id(stream) in full:
                continue
            try:
                self._archive(stream, segment, f"[{done}/{len(backlog)}]", report)
            except _Stopped:
                report.stopped = True
                break
            except ArchiveFullError as error:
                full.add(id(stream))
                self._error(stream, report, str(error))
            except (JournalError, OSError) as error:
                self._error(stream, report, f"segment {segment.index} of {stream.journal}: {error}")
            self._remove_old(stream, sealed[id(stream)], report)
        for stream in self.streams:
            if not self.stop.is_set():
                self._remove_old(stream, sealed[id(stream)], report)
            stream.previous_said, stream.said = stream.said, set()
        if report.archived > 1:
            elapsed = time.monotonic() - started
            log.info(
                "archived %d segments: %.1f MiB -> %.1f MiB (%.1fx) in %.1f s, %.0f MB/s",
                report.archived,
                report.raw_bytes / 2**20,
                report.archive_bytes / 2**20,
                report.raw_bytes / max(report.archive_bytes, 1),
                elapsed,
                report.raw_bytes / 1e6 / max(elapsed, 1e-9),
            )
        return report

    def _error(self, stream: _Stream, report: PassReport, message: str) -> None:
        report.errors.append(message)
        self._say(stream, logging.ERROR, message)

    @staticmethod
    def _say(stream: _Stream, level: int, message: str) -> None:
        """Log ``message`` once a pass, and at DEBUG if the previous pass said it."""
        if message in stream.said:
            return
        stream.said.add(message)
        if message in stream.previous_said:
            log.debug("%s (again)", message)
        else:
            log.log(level, "%s", message)

    def _open_journal(self, stream: _Stream, report: PassReport) -> CheckedDirectory | None:
        """The journal directory for this pass, its path checked (journal._paths); None
        if there is none (yet, or any more) or it may not be trusted (an error)."""
        if stream.journal_dir is not None:
            stream.journal_dir.close()
            stream.journal_dir = None
        try:
            directory = open_directory(stream.journal, follow_last=False)
        except FileNotFoundError:
            return None
        except JournalError as error:
            self._error(
                stream,
                report,
                f"journal directory {stream.journal}: {error}; its segments are neither "
                "archived nor removed",
            )
            return None
        if stream.journal_identity not in (None, directory.identity):
            log.info(
                "%s is another directory now (removed or replaced, then made again): a new "
                "incarnation of the journal, archived apart from the old one",
                stream.journal,
            )
        stream.journal_identity = directory.identity
        stream.journal_dir = directory
        return directory

    def _sealed(self, stream: _Stream, report: PassReport) -> list[_SegmentFile]:
        """The stream's sealed segment files, oldest first, read through this pass's
        journal directory descriptor; what is remembered of files no longer listed goes."""
        directory = self._open_journal(stream, report)
        sealed: list[_SegmentFile] = []
        if directory is not None:
            try:
                # By path: names only. Each file is opened relative to the descriptor
                # (a name the directory listed no longer holds is simply not found).
                indices = segment_indices(stream.journal)
            except OSError as error:
                self._error(stream, report, f"cannot list {stream.journal}: {error}")
                indices = []
            open_index: int | None = None  # an open segment seen before this one
            for index in indices:
                try:
                    with self._open_segment(stream, directory, index) as segment:
                        if segment.is_sealed():
                            sealed.append(_SegmentFile.of(segment))
                            if open_index is not None:
                                self._check_still_open(stream, directory, open_index, index, report)
                                open_index = None
                        else:
                            open_index = index
                            log.debug(
                                "%s segment %d: skipped, not sealed (the writer's open "
                                "segment, or the one prepared for its next roll; a writer "
                                "that stopped without close(seal=True) leaves it open): "
                                "archived once sealed",
                                stream.name,
                                index,
                            )
                except FileNotFoundError:
                    continue  # an unused prepared segment its writer removed on closing
                except (JournalError, OSError) as error:
                    self._error(stream, report, f"segment {index} of {stream.journal}: {error}")
        listed = set(sealed)
        stream.archived = {seg: path for seg, path in stream.archived.items() if seg in listed}
        return sealed

    def _check_still_open(
        self,
        stream: _Stream,
        directory: CheckedDirectory,
        open_index: int,
        sealed_index: int,
        report: PassReport,
    ) -> None:
        """An error if segment ``open_index`` is still not sealed now that a later one
        (``sealed_index``) is: a writer seals a segment before it writes the next, so
        its commit was cut short or its seal lost. Looked at again, since a live
        writer may have sealed it since it was listed. It is neither archived nor
        removed, and said: a hole the archive would otherwise hide."""
        try:
            with self._open_segment(stream, directory, open_index) as segment:
                if segment.is_sealed():
                    return
        except (JournalError, OSError):
            return  # gone since: the next pass sees what became of it
        self._error(
            stream,
            report,
            f"segment {open_index} of {stream.journal} is not sealed but segment "
            f"{sealed_index} after it is: its commit offset was cut short or its seal "
            "lost (damage); it is neither archived nor removed: run 'journal verify'",
        )

    @staticmethod
    def _open_segment(stream: _Stream, directory: CheckedDirectory, index: int) -> MappedSegment:
        segment = MappedSegment(segment_path(stream.journal, index), directory_fd=directory.fd)
        if segment.index != index:
            segment.close()
            raise JournalError(f"{segment.path}: header says segment_index={segment.index}")
        return segment

    def _archive(
        self, stream: _Stream, listed: _SegmentFile, progress: str, report: PassReport
    ) -> None:
        directory = stream.journal_dir
        assert directory is not None  # listed by this pass
        try:
            segment = self._open_segment(stream, directory, listed.index)
        except FileNotFoundError:
            raise JournalError(
                "removed before it was archived (with its journal directory?): its records "
                "are lost unless a copy exists elsewhere"
            ) from None
        with segment:
            problem = listed.other_file(segment.identity) or listed.other_header(segment.header)
            if problem is not None:
                message = (
                    f"{stream.name} segment {listed.index}: {segment.path} changed since it "
                    f"was listed ({problem}); left for the next pass to list"
                )
                self._say(stream, logging.WARNING, message)
                return
            started = time.monotonic()
            commit = segment.load_commit_acquire()
            name = A.archive_name_for(segment, commit)
            final = stream.archive / name
            if os.path.lexists(final):
                self._check_existing(stream, name, segment)
                # A crash may have come between its rename and the fsyncs: make it
                # durable now, before its segment may be removed.
                _fsync_file(name, stream.archive_fd)
                os.fsync(stream.archive_fd)
                stream.archived[listed] = final
                report.already += 1
                log.info(
                    "%s %s segment %d: already archived as %s",
                    progress,
                    stream.name,
                    listed.index,
                    name,
                )
                return
            log.debug("%s segment %d: compressing into %s", stream.name, listed.index, final)
            size = self._write(stream, segment, name)
            stream.archived[listed] = final
        elapsed = time.monotonic() - started
        report.archived += 1
        report.raw_bytes += commit
        report.archive_bytes += size
        log.info(
            "%s %s segment %d: %.2f MiB -> %.2f MiB (%.1fx) in %.2f s, %.0f MB/s -> %s",
            progress,
            stream.name,
            listed.index,
            commit / 2**20,
            size / 2**20,
            commit / size,
            elapsed,
            commit / 1e6 / max(elapsed, 1e-9),
            final,
        )

    @staticmethod
    def _check_existing(stream: _Stream, name: str, segment: MappedSegment) -> None:
        final = stream.archive / name
        try:
            with A.ArchiveReader(
                final,
                max_frame_size=segment.header.segment_size,
                directory_fd=stream.archive_fd,
            ) as reader:
                reader.verify(segment.map)
        except CorruptArchiveError as error:
            raise JournalError(
                f"{final} exists but does not reproduce {segment.path} ({error}); both are "
                "left as they are: move the archive away to have the segment archived again"
            ) from None

    def _write(self, stream: _Stream, segment: MappedSegment, name: str) -> int:
        """Steps 2-4: temporary file, fsync, verify, rename, fsync the directory; all
        relative to the checked archive directory."""
        archive_fd = stream.archive_fd
        temporary = f".{name}{A.TEMPORARY_SUFFIX}"
        assert stream.journal_dir is not None
        info = os.stat(segment.path.name, dir_fd=stream.journal_dir.fd, follow_symlinks=False)
        mode = stat.S_IMODE(info.st_mode) & 0o666
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = -1
        try:
            fd = os.open(temporary, flags, mode, dir_fd=archive_fd)
            os.fchmod(fd, mode)
            summary = A.write_archive(
                fd, segment, level=self.level, frame_size=self.frame_size, on_frame=self._on_frame
            )
            os.fsync(fd)
            os.close(fd)
            fd = -1
            _crash_point("written")
            with A.ArchiveReader(
                stream.archive / temporary,
                max_frame_size=segment.header.segment_size,
                directory_fd=archive_fd,
            ) as reader:
                reader.verify(segment.map)
            _crash_point("before-rename")
            os.rename(temporary, name, src_dir_fd=archive_fd, dst_dir_fd=archive_fd)
        except BaseException as error:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=archive_fd)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                free = os.fstatvfs(archive_fd)
                raise ArchiveFullError(
                    error.errno,
                    f"no room in the archive {stream.archive} for segment {segment.index} of "
                    f"{stream.journal} (free={free.f_bavail * free.f_frsize} bytes): the "
                    "segment stays in tmpfs; free space on the archive disk and it is "
                    "archived on the next pass",
                ) from error
            if isinstance(error, CorruptArchiveError):
                raise JournalError(
                    f"the archive just written does not verify ({error}); removed, the "
                    "segment stays in tmpfs"
                ) from None
            raise
        os.fsync(archive_fd)
        _crash_point("renamed")
        return summary.file_size

    def _on_frame(self, entry: A.FrameEntry) -> None:
        _crash_point("compressing")
        if self.stop.is_set():
            raise _Stopped

    def _remove_old(self, stream: _Stream, sealed: list[_SegmentFile], report: PassReport) -> None:
        """Step 5: remove archived sealed segments beyond the ``keep`` newest, oldest
        first, stopping at the first one without a verified archive, or that is not
        the very file archived any more (``_not_removable``). Those gone leave
        ``sealed`` (the stream's sealed segments in tmpfs)."""
        candidates = sealed[: len(sealed) - self.keep] if self.keep else sealed[:]
        for listed in candidates:
            archive = stream.archived.get(listed)
            if archive is None:
                log.debug(
                    "%s segment %d has no verified archive: it and newer ones stay",
                    stream.name,
                    listed.index,
                )
                return
            try:
                os.stat(archive.name, dir_fd=stream.archive_fd, follow_symlinks=False)
            except FileNotFoundError:
                del stream.archived[listed]
                message = (
                    f"{stream.name} segment {listed.index} stays: its archive {archive} is "
                    "gone (removed by someone?); it is archived again on the next pass"
                )
                self._say(stream, logging.WARNING, message)
                return
            try:
                problem = self._not_removable(stream, listed)
            except FileNotFoundError:  # gone already (with its directory?)
                del stream.archived[listed]
                sealed.remove(listed)
                continue
            if problem is not None:
                message = f"{stream.name} segment {listed.index} stays: {problem}"
                self._say(stream, logging.WARNING, message)
                return
            _crash_point("before-remove")
            assert stream.journal_dir is not None
            try:
                os.unlink(F.segment_name(listed.index), dir_fd=stream.journal_dir.fd)
            except FileNotFoundError:
                del stream.archived[listed]
                sealed.remove(listed)
                continue
            except OSError as error:
                # Not ours to remove (another user, read-only): keep going, say so.
                log.error(
                    "%s segment %d stays in %s: cannot remove it (%s)",
                    stream.name,
                    listed.index,
                    stream.journal,
                    error.strerror,
                )
                return
            _crash_point("removed")
            del stream.archived[listed]
            sealed.remove(listed)
            report.removed += 1
            log.info(
                "%s segment %d removed from %s (archived as %s)",
                stream.name,
                listed.index,
                stream.journal,
                archive.name,
            )

    @staticmethod
    def _not_removable(stream: _Stream, listed: _SegmentFile) -> str | None:
        """Why the file at segment ``listed``'s name may not be removed now (None: it
        may), checked right before the unlink: the journal path still names the
        directory listed, and the file there is the one archived (``other_file``,
        ``other_header``). FileNotFoundError: the file is gone already."""
        directory = stream.journal_dir
        assert directory is not None
        try:
            info = os.stat(stream.journal, follow_symlinks=False)
        except OSError as error:
            return (
                f"the journal directory {stream.journal} is gone ({error.strerror}); nothing "
                "in the one listed goes"
            )
        if (info.st_dev, info.st_ino) != directory.identity:
            return (
                f"{stream.journal} is another directory now (removed or replaced since this "
                "pass listed it); nothing in it goes before a pass has listed it"
            )
        path = segment_path(stream.journal, listed.index)
        try:
            fd = os.open(path.name, _READ_FLAGS, dir_fd=directory.fd)
        except FileNotFoundError:
            raise  # the caller's case: nothing to remove
        except OSError as error:
            return f"it cannot be opened to check it ({error.strerror})"
        try:
            file_info = os.fstat(fd)
            problem = listed.other_file((file_info.st_dev, file_info.st_ino))
            if problem is not None:
                return f"{problem}, not the one archived"
            header = SegmentHeader.parse(os.pread(fd, F.HEADER_SIZE, 0), str(path))
        except (JournalError, OSError) as error:
            return f"its header cannot be read to check it ({error})"
        finally:
            os.close(fd)
        problem = listed.other_header(header)
        return None if problem is None else f"{problem}: not the one archived"

    # -- watching ---------------------------------------------------------------------

    def watch(self, poll_s: float = DEFAULT_POLL_S) -> None:
        """Run passes until ``stop`` is set: on new segment files, and every ``poll_s``.

        Each journal directory and its parent are watched: the parent so that a
        journal directory made (or made again) wakes the compactor, which then
        watches the new directory. A watch dies with its directory, so one whose path
        names another directory now (another inode: a new incarnation) is replaced.
        """
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
        from watchdog.observers.api import ObservedWatch

        wake = self.wake
        journals = {os.path.abspath(stream.journal) for stream in self.streams}

        def matters(path: str | bytes) -> bool:
            text = os.fsdecode(path)
            return text.endswith(F.SEGMENT_SUFFIX) or os.path.abspath(text) in journals

        class NewSegment(FileSystemEventHandler):
            def on_created(self, event: FileSystemEvent) -> None:
                if matters(event.src_path):
                    wake.set()

            def on_moved(self, event: FileSystemEvent) -> None:
                if matters(event.dest_path):
                    wake.set()

        observer: Any = Observer()
        handler = NewSegment()
        watches: dict[str, tuple[ObservedWatch, tuple[int, int]]] = {}
        unwatchable: set[tuple[str, tuple[int, int]]] = set()

        def watch_directory(directory: Path) -> None:
            """Watch the directory ``directory`` names now, unless it is watched."""
            key = os.path.abspath(directory)
            try:
                info = os.stat(key)
            except OSError:
                identity = None  # not there (yet): its parent's watch says when it is
            else:
                identity = (info.st_dev, info.st_ino)
            watched = watches.get(key)
            if watched is not None and watched[1] == identity:
                return
            if watched is not None:
                with contextlib.suppress(KeyError, OSError):  # its emitter may have died
                    observer.unschedule(watched[0])
                del watches[key]
            if identity is None or (key, identity) in unwatchable:
                return
            try:
                watches[key] = (observer.schedule(handler, key, recursive=False), identity)
            except OSError as error:  # gone again, or out of inotify watches: poll
                unwatchable.add((key, identity))
                log.warning("cannot watch %s (%s): polling every %s s", key, error, poll_s)

        observer.start()
        try:
            while not self.stop.is_set():
                # Cleared before the watches are checked: an event from now on is a
                # reason for another pass, even one about a directory just looked at.
                self.wake.clear()
                for stream in self.streams:
                    watch_directory(stream.journal.parent)
                    watch_directory(stream.journal)
                self.run_pass()
                self.wake.wait(poll_s)
        finally:
            observer.stop()
            observer.join(timeout=5)


# -- the command --------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("journals", nargs="+", metavar="JOURNAL", help="journal directories")
    parser.add_argument(
        "--archive",
        required=True,
        metavar="DIR",
        help="archive root: each journal's archives go to DIR/<journal directory name>/",
    )
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument(
        "--keep",
        type=_non_negative,
        default=DEFAULT_KEEP,
        metavar="K",
        help=f"sealed segments kept in tmpfs for slow readers (default {DEFAULT_KEEP})",
    )
    parser.add_argument(
        "--level",
        type=int,
        default=A.DEFAULT_LEVEL,
        help=f"zstd level 1..22 (default {A.DEFAULT_LEVEL})",
    )
    parser.add_argument(
        "--frame-size",
        type=int,
        default=A.DEFAULT_FRAME_SIZE,
        metavar="BYTES",
        help=f"raw bytes of records per zstd frame (default {A.DEFAULT_FRAME_SIZE}, "
        f"at most {A.DEFAULT_MAX_FRAME_SIZE}: what readers decompress)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_S,
        metavar="SECONDS",
        help=f"watch mode: also look every SECONDS (default {DEFAULT_POLL_S})",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log errors only")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug details")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 done (or stopped by a signal), 1 a segment could not be archived
    in ``--once`` mode, 2 could not start (bad arguments, another compactor)."""
    level = logging.ERROR if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    if not logging.getLogger().handlers:
        logging.basicConfig(
            stream=sys.stderr, format="%(asctime)s compact %(levelname)s %(message)s"
        )
    log.setLevel(level)
    step = os.environ.get(CRASH_ENV)
    if step and step not in CRASH_STEPS:
        log.warning("%s=%s is not one of %s", CRASH_ENV, step, ", ".join(CRASH_STEPS))
    problem = _journal_paths_problem(args.journals, once=args.once)
    if problem:
        log.error("%s", problem)
        return 2
    try:
        compactor = Compactor(
            args.journals,
            args.archive,
            keep=args.keep,
            level=args.level,
            frame_size=args.frame_size,
        )
        compactor.open()
    except (JournalError, ValueError, OSError) as error:
        log.error("%s", error)
        return 2

    def stop(signum: int, _frame: object) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        compactor.stop.set()
        compactor.wake.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info(
            "compacting %s into %s (keep %d sealed segments, zstd level %d)%s",
            ", ".join(str(stream.journal) for stream in compactor.streams),
            compactor.archive_root,
            compactor.keep,
            compactor.level,
            "" if args.once else ", watching",
        )
        for stream in compactor.streams:
            if not stream.journal.exists():
                log.info(
                    "%s does not exist yet: waiting for its writer to create it", stream.journal
                )
        if args.once:
            report = compactor.run_pass()
            if report.stopped:
                log.info("stopped; the rest is left for the next run")
                return 0
            return 1 if report.errors else 0
        compactor.watch(args.poll)
        log.info("stopped")
        return 0
    finally:
        compactor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _journal_paths_problem(journals: Sequence[str], *, once: bool) -> str | None:
    """Why the journal paths cannot be compacted, checked before anything is created:
    a path that is not a directory; with ``once``, one that does not exist (nothing to
    archive: a typo). Watching, a missing journal is waited for (said at the start)."""
    for journal in journals:
        path = Path(journal)
        if path.exists() and not path.is_dir():
            return f"journal {path} is not a directory: pass journal directories"
        if once and not path.exists():
            return (
                f"journal {path} does not exist: nothing to compact (check the path; "
                "without --once the compactor waits for its writer to create it)"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compact",
        description="Archive sealed journal segments as verified zstd files (docs/FORMAT.md, "
        "'Archive files'), then remove them from tmpfs beyond the K newest.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
