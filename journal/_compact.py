"""``tools/compact`` and ``journal compact``: sealed segments become verified zstd archives.

    tools/compact JOURNAL_DIR... --archive DIR [--once] [--keep K]

Each journal directory is a stream; its archives go to ``DIR/<stream>/`` (the
journal directory's name), one file per sealed segment (journal._archive). The open
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

A crash leaves at worst a ``.tmp`` file (removed by the next run, which holds the
stream's lock ``DIR/<stream>/compact.lock``, one compactor per stream), or an
archive whose segment is still in tmpfs (verified again and skipped by the next
run). Archives are deterministic (same segment bytes, level and frame size: same
archive bytes), so a re-run produces exactly the archive an uninterrupted run does.
If the archive disk is full, the temporary file is removed, the segment stays in
tmpfs and the error says so; the next pass tries again.

Without ``--once`` it watches the journal directories (watchdog: a new segment file
means the one before will be sealed soon) and also looks every ``--poll`` seconds,
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

from journal import _archive as A
from journal import _layout as F
from journal._errors import ArchiveFullError, CorruptArchiveError, JournalError
from journal._names import check_stream_name
from journal._segment import MappedSegment, segment_indices, segment_path

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


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directory(path: Path) -> None:
    """Create ``path`` and missing parents, each made durable in its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o755)
        _fsync_directory(directory.parent)


@dataclass(slots=True)
class _Archived:
    """A segment whose archive this process has verified (by index, per stream)."""

    created_ns: int
    path: Path


@dataclass(slots=True)
class _Stream:
    journal: Path
    name: str
    archive: Path
    lock_fd: int = -1
    archived: dict[int, _Archived] = field(default_factory=dict)
    watched: bool = False
    errors: set[str] = field(default_factory=set)
    """Errors of this pass; those of the previous pass are logged again only at DEBUG."""
    previous_errors: set[str] = field(default_factory=set)


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
        """Create the archive directories, lock them, remove stale temporary files."""
        try:
            for stream in self.streams:
                if stream.archive.resolve() == stream.journal.resolve():
                    raise JournalError(
                        f"the archive directory of {stream.journal} would be the journal "
                        "directory itself: choose another --archive"
                    )
                try:
                    _make_directory(stream.archive)
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
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
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
        for name in os.listdir(stream.archive):
            if name.startswith(".") and name.endswith(A.ARCHIVE_SUFFIX + A.TEMPORARY_SUFFIX):
                os.unlink(stream.archive / name)
                log.info("removed %s, left by an interrupted compactor", stream.archive / name)

    def close(self) -> None:
        for stream in self.streams:
            if stream.lock_fd >= 0:
                os.close(stream.lock_fd)
                stream.lock_fd = -1

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
            (stream, index, created)
            for stream in self.streams
            for index, created in sealed[id(stream)]
            if not self._is_archived(stream, index, created)
        ]
        started = time.monotonic()
        full: set[int] = set()
        for done, (stream, index, _created) in enumerate(backlog, start=1):
            if self.stop.is_set():
                report.stopped = True
                break
            if id(stream) in full:
                continue
            try:
                self._archive(stream, index, f"[{done}/{len(backlog)}]", report)
            except _Stopped:
                report.stopped = True
                break
            except ArchiveFullError as error:
                full.add(id(stream))
                self._error(stream, report, str(error))
            except (JournalError, OSError) as error:
                self._error(stream, report, f"segment {index} of {stream.journal}: {error}")
            self._remove_old(stream, sealed[id(stream)], report)
        for stream in self.streams:
            if not self.stop.is_set():
                self._remove_old(stream, sealed[id(stream)], report)
            stream.previous_errors, stream.errors = stream.errors, set()
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
        stream.errors.add(message)
        if message in stream.previous_errors:
            log.debug("%s (again)", message)
        else:
            log.error("%s", message)

    def _sealed(self, stream: _Stream, report: PassReport) -> list[tuple[int, int]]:
        """``(index, created_ns)`` of the stream's sealed segments, oldest first."""
        if not stream.journal.is_dir():
            return []
        try:
            indices = segment_indices(stream.journal)
        except OSError as error:
            self._error(stream, report, f"cannot list {stream.journal}: {error}")
            return []
        sealed = []
        for index in indices:
            try:
                with MappedSegment(segment_path(stream.journal, index)) as segment:
                    if segment.index != index:
                        raise JournalError(
                            f"{segment.path}: header says segment_index={segment.index}"
                        )
                    if segment.is_sealed():
                        sealed.append((index, segment.header.created_ns))
            except FileNotFoundError:
                continue  # an unused prepared segment its writer removed on closing
            except (JournalError, OSError) as error:
                self._error(stream, report, f"segment {index} of {stream.journal}: {error}")
        return sealed

    @staticmethod
    def _is_archived(stream: _Stream, index: int, created_ns: int) -> bool:
        known = stream.archived.get(index)
        return known is not None and known.created_ns == created_ns

    def _archive(self, stream: _Stream, index: int, progress: str, report: PassReport) -> None:
        path = segment_path(stream.journal, index)
        with MappedSegment(path) as segment:
            if not segment.is_sealed():
                return
            started = time.monotonic()
            commit = segment.load_commit_acquire()
            final = stream.archive / A.archive_name_for(segment, commit)
            if final.exists():
                self._check_existing(final, segment)
                # A crash may have come between its rename and the fsyncs: make it
                # durable now, before its segment may be removed.
                _fsync_file(final)
                _fsync_directory(stream.archive)
                stream.archived[index] = _Archived(segment.header.created_ns, final)
                report.already += 1
                log.info(
                    "%s %s segment %d: already archived as %s",
                    progress,
                    stream.name,
                    index,
                    final.name,
                )
                return
            size = self._write(stream, segment, final)
            stream.archived[index] = _Archived(segment.header.created_ns, final)
        elapsed = time.monotonic() - started
        report.archived += 1
        report.raw_bytes += commit
        report.archive_bytes += size
        log.info(
            "%s %s segment %d: %.2f MiB -> %.2f MiB (%.1fx) in %.2f s, %.0f MB/s -> %s",
            progress,
            stream.name,
            index,
            commit / 2**20,
            size / 2**20,
            commit / size,
            elapsed,
            commit / 1e6 / max(elapsed, 1e-9),
            final,
        )

    def _check_existing(self, final: Path, segment: MappedSegment) -> None:
        try:
            with A.ArchiveReader(final, max_frame_size=segment.header.segment_size) as reader:
                reader.verify(segment.map)
        except CorruptArchiveError as error:
            raise JournalError(
                f"{final} exists but does not reproduce {segment.path} ({error}); both are "
                "left as they are: move the archive away to have the segment archived again"
            ) from None

    def _write(self, stream: _Stream, segment: MappedSegment, final: Path) -> int:
        """Steps 2-4: temporary file, fsync, verify, rename, fsync the directory."""
        temporary = stream.archive / f".{final.name}{A.TEMPORARY_SUFFIX}"
        mode = stat.S_IMODE(os.stat(segment.path).st_mode) & 0o666
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = -1
        try:
            fd = os.open(temporary, flags, mode)
            os.fchmod(fd, mode)
            summary = A.write_archive(
                fd, segment, level=self.level, frame_size=self.frame_size, on_frame=self._on_frame
            )
            os.fsync(fd)
            os.close(fd)
            fd = -1
            _crash_point("written")
            with A.ArchiveReader(temporary, max_frame_size=segment.header.segment_size) as reader:
                reader.verify(segment.map)
            _crash_point("before-rename")
            os.rename(temporary, final)
        except BaseException as error:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                free = os.statvfs(stream.archive)
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
        _fsync_directory(stream.archive)
        _crash_point("renamed")
        return summary.file_size

    def _on_frame(self, entry: A.FrameEntry) -> None:
        _crash_point("compressing")
        if self.stop.is_set():
            raise _Stopped

    def _remove_old(
        self, stream: _Stream, sealed: list[tuple[int, int]], report: PassReport
    ) -> None:
        """Step 5: remove archived sealed segments beyond the ``keep`` newest, oldest
        first, stopping at the first one without a verified archive (of that very
        segment: same index and creation time)."""
        candidates = sealed[: len(sealed) - self.keep] if self.keep else sealed
        for index, created_ns in candidates:
            path = segment_path(stream.journal, index)
            known = stream.archived.get(index)
            if not path.exists():
                stream.archived.pop(index, None)
                continue
            if known is None or known.created_ns != created_ns or not known.path.exists():
                log.debug(
                    "%s segment %d has no verified archive: it and newer ones stay",
                    stream.name,
                    index,
                )
                return
            _crash_point("before-remove")
            try:
                os.unlink(path)
            except OSError as error:
                # Not ours to remove (another user, read-only): keep going, say so.
                log.error(
                    "%s segment %d stays in %s: cannot remove it (%s)",
                    stream.name,
                    index,
                    stream.journal,
                    error.strerror,
                )
                return
            _crash_point("removed")
            del stream.archived[index]
            report.removed += 1
            log.info(
                "%s segment %d removed from %s (archived as %s)",
                stream.name,
                index,
                stream.journal,
                known.path.name,
            )

    # -- watching ---------------------------------------------------------------------

    def watch(self, poll_s: float = DEFAULT_POLL_S) -> None:
        """Run passes until ``stop`` is set: on new segment files, and every ``poll_s``.

        A journal directory that does not exist yet is waited for by watching its
        parent (if that exists), so a compactor started before the writer reacts
        to the first segments at once too.
        """
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

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
        watched: set[str] = set()

        def watch_directory(directory: Path) -> bool:
            key = os.path.abspath(directory)
            if key in watched:
                return True
            try:
                observer.schedule(handler, key, recursive=False)
            except OSError as error:  # gone again, or out of inotify watches: poll
                log.warning("cannot watch %s (%s): polling every %s s", key, error, poll_s)
                return False
            watched.add(key)
            return True

        observer.start()
        try:
            while not self.stop.is_set():
                for stream in self.streams:
                    if stream.watched:
                        continue
                    if stream.journal.is_dir():
                        stream.watched = watch_directory(stream.journal)
                    elif stream.journal.parent.is_dir():
                        watch_directory(stream.journal.parent)
                self.wake.clear()
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
    parser.add_argument("journals", nargs="+", metavar="JOURNAL_DIR", help="journal directories")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compact",
        description="Archive sealed journal segments as verified zstd files (docs/FORMAT.md, "
        "'Archive files'), then remove them from tmpfs beyond the K newest.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
