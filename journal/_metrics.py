"""Metrics files in tmpfs: the writer's counters and each reader's registration.

As Aeron's counters: each process publishes its own figures in a small mapped file
that any process may read at any time, without a lock and without the owner
noticing. Every counter is one aligned 64-bit word stored with a single 8-byte
store (memoryview ``q`` items and ``@``-native ``struct`` fields are copied with one
``memcpy`` of 8 bytes, one ``mov`` on x86-64, as journal._publish argues for the
commit; ``<``-standard ones byte by byte, so never those), so a reader may see an
older *set* of counters but never half a counter.
No ordering is needed between them: they are estimates, and no reader acts on a
byte of a segment because of them.

A file is built under a hidden temporary name (allocated in full with
``posix_fallocate``, so a full tmpfs is an error now rather than a SIGBUS on a
later store, and its header written) and only then given its name, so a file
under its final name always has a complete header. docs/FORMAT.md, "Metrics
files", is the layout; journal.monitor._snapshot reads the files.

A reader's file is ``flock``-ed by its owner for its whole life: a file whose lock
is free belongs to a dead reader. Registration is best-effort: a reader that cannot
create its file (read-only access to the journal, a full tmpfs) logs it once per
journal and reads on, unregistered.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import mmap
import os
import re
import stat
import struct
import sys
import time
import weakref
from pathlib import Path
from typing import Final

from journal import _metrics_layout as M
from journal._errors import InvalidRecordError, JournalError, JournalFullError, RecordTooLargeError
from journal._lock import lock_held
from journal._paths import open_directory
from journal._segment import WriterIdentity

log = logging.getLogger("journal.metrics")

READ_COUNTERS: Final = struct.Struct("@QQQq")
"""A reader's segment, offset, records_total and last_record_ns, stored per record."""
assert READ_COUNTERS.size == M.READER_LAST_POLL_NS_OFFSET - M.READER_SEGMENT_OFFSET

LATENCY_SAMPLE_MASK: Final = M.LATENCY_SAMPLE_PERIOD - 1
assert M.LATENCY_SAMPLE_PERIOD & LATENCY_SAMPLE_MASK == 0, "a power of two"
POLL_HEARTBEAT_EVERY: Final = 64
"""An idle reader stores its poll time on the first empty poll after a record, then
every this many empty polls: a spinning reader does not read the clock per spin."""
_CREATING_SUFFIX: Final = ".creating"
_STALE_CREATING_S: Final = 60.0
"""A reader's half-created file older than this belongs to a reader that died."""
_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_MAX_SUFFIXES: Final = 100
_warned: set[str] = set()


def word_index(offset: int) -> int:
    """Index of the u64 word at byte ``offset`` (a multiple of 8): where a metrics
    file's field is in its words (``memoryview.cast("q")``), here and in the radar's
    (journal._radar_metrics)."""
    assert offset % 8 == 0, offset
    return offset // 8


RECORDS_WORD: Final = word_index(M.RECORDS_TOTAL_OFFSET)
LAST_PUBLISH_WORD: Final = word_index(M.LAST_PUBLISH_NS_OFFSET)
"""The words every commit stores: index them in ``WriterMetrics.counters``."""
_SEGMENT_SEQUENCE_WORD: Final = word_index(M.SEGMENT_SEQUENCE_OFFSET)
_SEGMENT_WORD: Final = word_index(M.SEGMENT_OFFSET)
_BYTES_BASE_WORD: Final = word_index(M.BYTES_BASE_OFFSET)
_ROLLS_WORD: Final = word_index(M.ROLLS_TOTAL_OFFSET)
_LATENCY_SUM_WORD: Final = word_index(M.LATENCY_SUM_NS_OFFSET)
_LATENCY_COUNTS_WORD: Final = word_index(M.LATENCY_COUNTS_OFFSET)
_REFUSAL_WORDS: Final = (
    # Most specific first: RecordTooLargeError is an InvalidRecordError.
    (RecordTooLargeError, word_index(M.REFUSED_TOO_LARGE_TOTAL_OFFSET)),
    (InvalidRecordError, word_index(M.REFUSED_INVALID_TOTAL_OFFSET)),
    (JournalFullError, word_index(M.REFUSED_JOURNAL_FULL_TOTAL_OFFSET)),
)
_LAST_POLL_WORD: Final = word_index(M.READER_LAST_POLL_NS_OFFSET)
_INCARNATIONS_WORD: Final = word_index(M.READER_INCARNATIONS_TOTAL_OFFSET)


def _create(
    directory: Path, name: str, size: int, header: bytes, mode: int, *, keep_locked: bool
) -> tuple[int, mmap.mmap]:
    """Build ``directory/name`` complete under a temporary name, then name it.

    The writer's file replaces an older one (``rename``: the writer lock makes it the
    only one to write it); a reader's file must be new (``link`` fails if the name
    exists). With ``keep_locked`` the file is flock-ed first and the descriptor
    returned open, holding the lock; otherwise it is closed (-1).
    """
    temporary = directory / f".{name}{_CREATING_SUFFIX}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode)
    try:
        if keep_locked:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
        os.posix_fallocate(fd, 0, size)
        os.pwrite(fd, header, 0)
        data = mmap.mmap(fd, size, access=mmap.ACCESS_WRITE)
        try:
            if keep_locked:
                os.link(temporary, directory / name)
                os.unlink(temporary)
            else:
                os.rename(temporary, directory / name)
        except BaseException:
            data.close()
            raise
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if not keep_locked:
        os.close(fd)
        fd = -1
    return fd, data


# -- the writer ------------------------------------------------------------------------


class WriterMetrics:
    """The writer's ``writer.metrics``: created by each writer when it opens the
    journal (replacing its predecessor's), kept after it closes for post-mortems.

    The hot path (journal._writer) stores the two per-commit words itself,
    ``counters[RECORDS_WORD] = n``: a memoryview item store is about a third of the
    interpreter work of a ``struct.pack_into`` call, and bytes are derived from the
    commit rather than stored (docs/FORMAT.md); rare events go through the methods
    here. ``counters`` is signed (``q``): a caller's local_timestamp_ns may be
    negative.
    """

    __slots__ = ("counters", "map", "path")

    def __init__(self, path: Path, data: mmap.mmap) -> None:
        self.path = path
        self.map = data
        self.counters = memoryview(data).cast("q")

    @classmethod
    def create(
        cls, directory: Path, identity: WriterIdentity, payload_id: bytes, mode: int
    ) -> WriterMetrics | None:
        """The writer's metrics file, or None (logged) if it cannot be made: metrics
        are never a reason for the journal to refuse books. The caller holds the
        writer lock, so a leftover temporary file is a dead writer's: removed."""
        header = M.WRITER_HEADER_STRUCT.pack(
            M.WRITER_METRICS_MAGIC,
            M.METRICS_VERSION,
            M.WRITER_METRICS_SIZE,
            identity.pid,
            M.LATENCY_SAMPLE_PERIOD,
            identity.started_ns,
            identity.host.encode("utf-8")[: M.METRICS_HOST_SIZE],
            payload_id,
            M.LATENCY_BUCKETS,
        )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / f".{M.WRITER_METRICS_NAME}{_CREATING_SUFFIX}")
        try:
            _, data = _create(
                directory,
                M.WRITER_METRICS_NAME,
                M.WRITER_METRICS_SIZE,
                header,
                mode,
                keep_locked=False,
            )
        except OSError as error:
            log.warning(
                "writer metrics of %s are off: cannot create %s (%s); the journal works "
                "without them, journal top and journal metrics will not show its counters",
                directory,
                directory / M.WRITER_METRICS_NAME,
                error.strerror or error,
            )
            return None
        return cls(directory / M.WRITER_METRICS_NAME, data)

    def use_segment(self, index: int, bytes_base: int) -> None:
        """The writer now appends to segment ``index``: bytes_total is ``bytes_base``
        plus its commit. A sequence lock: x86-64 keeps these stores in order, and
        readers load the sequence before and after the two words (journal.monitor._snapshot)."""
        counters = self.counters
        counters[_SEGMENT_SEQUENCE_WORD] += 1  # odd: being changed
        counters[_SEGMENT_WORD] = index
        counters[_BYTES_BASE_WORD] = bytes_base
        counters[_SEGMENT_SEQUENCE_WORD] += 1

    def rolled(self) -> None:
        self.counters[_ROLLS_WORD] += 1

    def refused(self, error: BaseException) -> None:
        """Count an append refused with ``error``, by reason (other errors: not counted)."""
        for kind, word in _REFUSAL_WORDS:
            if isinstance(error, kind):
                self.counters[word] += 1
                return

    def sample_latency(self, latency_ns: int) -> None:
        """Count one timed append (one in LATENCY_SAMPLE_PERIOD)."""
        counters = self.counters
        counters[_LATENCY_COUNTS_WORD + M.latency_bucket(latency_ns)] += 1
        counters[_LATENCY_SUM_WORD] += latency_ns

    def close(self) -> None:
        """Unmap; the file stays with the last values (``journal top`` shows them)."""
        self.counters.release()
        self.map.close()


# -- a reader ------------------------------------------------------------------------


def check_reader_name(name: str) -> str:
    """``name`` if it can name a reader's file and label its metrics, else ValueError."""
    if (
        not isinstance(name, str)
        or not _NAME_PATTERN.fullmatch(name)
        or len(name.encode()) > M.READER_NAME_SIZE
    ):
        raise ValueError(
            f"reader name={name!r}: use 1..{M.READER_NAME_SIZE} letters, digits, '_', '.' "
            "or '-', not starting with '.' or '-'"
        )
    return name


def default_reader_name() -> str:
    """The program's name (``journal``, ``collector``, ``pytest``...), made safe;
    ``python`` for ``python -c``."""
    program = sys.argv[0] if sys.argv else ""
    if not program or program.startswith("-"):
        return "python"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(program).stem).lstrip(".-")
    return safe[: M.READER_NAME_SIZE] or "reader"


def map_read_only(path: Path, header_size: int, header: str) -> mmap.mmap | None:
    """A metrics file mapped read-only (opened with O_NOFOLLOW); None if it does not
    exist. JournalError if it is shorter than ``header_size``, said as "shorter than
    {header}"."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size < header_size:
            raise JournalError(f"{path}: {size} bytes, shorter than {header}")
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def reader_alive(path: Path) -> bool:
    """Whether the reader that owns metrics file ``path`` still holds its lock.
    A missing or unreadable file is not alive."""
    try:
        return lock_held(path) is True
    except OSError:
        return False


def remove_dead_readers(journal: Path) -> list[str]:
    """Remove the metrics files of readers that died without closing; their names.

    Half-created files (a reader killed while registering) go once they are old
    enough that no live reader can still be creating them.
    """
    directory = journal / M.READERS_DIRECTORY
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in names:
        path = directory / name
        if name.startswith(".") and name.endswith(M.METRICS_SUFFIX + _CREATING_SUFFIX):
            try:
                stale = time.time() - os.lstat(path).st_mtime > _STALE_CREATING_S
            except FileNotFoundError:
                continue
        else:
            stale = name.endswith(M.METRICS_SUFFIX) and not reader_alive(path)
        if stale:
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(path)
                removed.append(name)
    return removed


class ReaderMetrics:
    """A reader's registration in ``<journal>/readers/``: its position, records read,
    the time of the last one and of its last empty poll, for ``journal top``.

    The file is made on the first record or empty poll (the journal may not exist
    when the reader starts), removed by ``close`` or when the object is collected;
    a reader that dies leaves it, unlocked, for ``journal top`` to show as dead.
    Not ``enabled``: every method does nothing.
    """

    __slots__ = (
        "__weakref__",
        "_empty_polls",
        "_finalizer",
        "_gave_up",
        "_incarnations",
        "_map",
        "_name",
        "_records",
        "_started_ns",
        "journal",
        "path",
    )

    def __init__(self, journal: Path, name: str | None = None, *, enabled: bool = True) -> None:
        self.journal = journal
        self._name = default_reader_name() if name is None else check_reader_name(name)
        self._started_ns = time.time_ns()
        self._map: mmap.mmap | None = None
        self._gave_up = not enabled
        self._records = 0
        self._empty_polls = 0
        self._incarnations = 0
        self._finalizer: weakref.finalize[[int, mmap.mmap, Path], ReaderMetrics] | None = None
        self.path: Path | None = None

    def read(self, segment: int, offset: int, record_time_ns: int) -> None:
        """A record was read; the next one is at ``(segment, offset)``."""
        data = self._map
        if data is None:
            if self._gave_up:
                return
            data = self._register()
            if data is None:
                return
        records = self._records + 1
        self._records = records
        self._empty_polls = 0
        READ_COUNTERS.pack_into(
            data, M.READER_SEGMENT_OFFSET, segment, offset, records, record_time_ns
        )

    def polled_empty(self) -> None:
        """A poll found nothing new: a heartbeat, stored at most every
        POLL_HEARTBEAT_EVERY empty polls (and on the first after a record)."""
        polls = self._empty_polls
        self._empty_polls = polls + 1
        if polls % POLL_HEARTBEAT_EVERY:
            return
        data = self._map
        if data is None:
            if self._gave_up:
                return
            data = self._register()
            if data is None:
                return
        with memoryview(data).cast("q") as words:
            words[_LAST_POLL_WORD] = time.time_ns()

    def new_incarnation(self) -> None:
        """The journal was recreated: the registration went with the old directory.
        Count it; register again in the new directory at the next record or poll."""
        self._incarnations += 1
        self._map = None
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None

    def close(self) -> None:
        """Unregister: the file goes, the lock with it."""
        self._gave_up = True
        self._map = None
        if self._finalizer is not None:
            self._finalizer()

    def _register(self) -> mmap.mmap | None:
        """Create this reader's file; on failure, say why once and never try again."""
        try:
            directory = _readers_directory(self.journal)
            remove_dead_readers(self.journal)
            mode = stat.S_IMODE(os.stat(directory).st_mode) & 0o666
            fd, data, path = _create_registration(directory, self._name, self._started_ns, mode)
        except (OSError, JournalError) as error:
            self._gave_up = True
            key = str(self.journal)
            if key not in _warned:
                _warned.add(key)
                log.warning(
                    "reader %s is not registered in %s (%s): journal top will not show "
                    "it; it reads on (Reader(metrics=False) does not try)",
                    self._name,
                    self.journal / M.READERS_DIRECTORY,
                    getattr(error, "strerror", None) or error,
                )
            return None
        self._map = data
        self.path = path
        self._finalizer = weakref.finalize(self, _unregister, fd, data, path)
        with memoryview(data).cast("Q") as words:
            words[_INCARNATIONS_WORD] = self._incarnations
        return data


def _readers_directory(journal: Path) -> Path:
    """``<journal>/readers``, created with the journal directory's permissions if
    missing (so whoever may write the journal directory may register), exactly,
    whatever the umask. Its path is checked (journal._paths: no parent another user
    controls, no symlink): a chmod by name could otherwise land wherever a link
    planted in its place points."""
    directory = journal / M.READERS_DIRECTORY
    mode = stat.S_IMODE(os.stat(journal).st_mode)
    open_directory(directory, create_mode=mode, create_parents=False, follow_last=False).close()
    return directory


def _create_registration(
    directory: Path, name: str, started_ns: int, mode: int
) -> tuple[int, mmap.mmap, Path]:
    """Create ``<name>-<pid>.metrics`` (``-<n>`` added while a live reader of this
    process has the name), locked; a dead reader's file of that name is replaced."""
    identity = WriterIdentity.current()
    header = M.READER_HEADER_STRUCT.pack(
        M.READER_METRICS_MAGIC,
        M.METRICS_VERSION,
        M.READER_METRICS_SIZE,
        identity.pid,
        0,
        started_ns,
        identity.host.encode("utf-8")[: M.METRICS_HOST_SIZE],
        name.encode("utf-8"),
    )
    for suffix in itertools.islice(itertools.count(), _MAX_SUFFIXES):
        stem = f"{name}-{identity.pid}" + (f"-{suffix}" if suffix else "")
        path = directory / f"{stem}{M.METRICS_SUFFIX}"
        try:
            fd, data = _create(
                directory, path.name, M.READER_METRICS_SIZE, header, mode, keep_locked=True
            )
        except FileExistsError:
            if not reader_alive(path):  # a dead process had our pid: its file goes
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            continue
        return fd, data, path
    raise JournalError(f"{_MAX_SUFFIXES} readers named {name!r} in this process already")


def _unregister(fd: int, data: mmap.mmap, path: Path) -> None:
    """Remove the file first, then let go of the lock: never a live-looking dead file."""
    with contextlib.suppress(OSError):
        os.unlink(path)
    data.close()
    os.close(fd)
