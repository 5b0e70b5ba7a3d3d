"""A collector's per-stream feed metrics in ``<journal>/collector.metrics``.

As the writer's and readers' metrics (journal._metrics): the collector publishes
its figures in a small mapped file that any process may read at any time, without
a lock and without the collector noticing. One slot per stream (symbol) of one
venue: its connection state, when it changed, the time of its last exchange
message and the exchange-to-local delay of it, and a counter per ``FeedCounter``.
docs/FORMAT.md ("Collector metrics") is the layout, journal._feed_metrics_layout
its only Python copy.

Every word is one aligned 64-bit word stored with a single 8-byte store: items of
a memoryview cast to ``q`` are copied with one ``memcpy`` of 8 bytes, one ``mov``
on x86-64 (the argument journal._publish makes for the commit), so a reader may see
an older *set* of words but never half of one. No ordering between the words is
needed: they are estimates that nobody acts on byte by byte.

The collector is the file's only writer: it holds an exclusive ``flock`` on the file
from before the file has its name until ``close``. A second collector on the same
journal finds the lock taken and fails with CollectorRunningError; a file whose
lock is free belongs to a collector that died, and the next one replaces it. The
file is kept after ``close`` (with every stream STOPPED) for post-mortems, as
``writer.metrics`` is.

The hot path is ``StreamMetrics.message``, called for every exchange message: a
load and three word stores, about 0.18 µs with CPython 3.11 on the 2-core x86-64
development machine (an empty two-argument call: 0.02 µs): small next to decoding
the message and updating its book.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from journal import _feed_metrics_layout as L
from journal._errors import JournalError
from journal._feed_metrics_layout import FeedCounter, FeedState
from journal._lock import lock_held
from journal._metrics import map_read_only, word_index
from journal._paths import prepare_journal_directory
from journal._segment import WriterIdentity

__all__ = [
    "CollectorRunningError",
    "FeedCounter",
    "FeedMetricsWriter",
    "FeedSnapshot",
    "FeedState",
    "StreamFigures",
    "StreamMetrics",
    "read_feed_metrics",
]

_CREATING_SUFFIX: Final = ".creating"
_STALE_CREATING_S: Final = 60.0
"""A half-created file older than this (and unlocked) belongs to a collector that died."""
_LOCK_ATTEMPTS: Final = 5
_LOCK_RETRY_S: Final = 0.01
"""``journal top`` probes the lock for an instant (a shared lock): a collector
replacing a dead one's file retries rather than mistake the probe for a live owner."""
_LINK_ATTEMPTS: Final = 10
_NS_PER_MS: Final = 1_000_000


class CollectorRunningError(JournalError):
    """Another live process publishes feed metrics in this journal (one collector per
    journal: its ``collector.metrics`` is locked)."""


def _check_name(what: str, value: object, size: int) -> bytes:
    """``value`` encoded, if it can name a venue or symbol in the file; else ValueError."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what}={value!r}: give a non-empty string")
    encoded = value.encode("utf-8")
    if len(encoded) > size or not value.isprintable():
        raise ValueError(
            f"{what}={value!r}: at most {size} bytes of UTF-8 without control characters "
            f"(it has {len(encoded)})"
        )
    return encoded


class StreamMetrics:
    """One stream's slot: the collector's handle for a symbol, from
    ``FeedMetricsWriter.stream``. Every method is a few word stores and never raises
    for a value in range (after ``close`` they store into a private buffer: a late
    call from a task still unwinding does nothing harmful)."""

    __slots__ = (
        "_counters",
        "_delay",
        "_last",
        "_messages",
        "_state",
        "_state_changed",
        "_words",
        "symbol",
    )

    def __init__(self, words: memoryview, index: int, symbol: str) -> None:
        base = L.slot_offset(index)
        self.symbol = symbol
        self._state = word_index(base + L.STATE_OFFSET)
        self._state_changed = word_index(base + L.STATE_CHANGED_NS_OFFSET)
        self._last = word_index(base + L.LAST_MESSAGE_NS_OFFSET)
        self._delay = word_index(base + L.LAST_DELAY_NS_OFFSET)
        self._counters = word_index(base + L.COUNTERS_OFFSET)
        self._messages = self._counters + FeedCounter.MESSAGES
        self._words = words

    def detach(self, spare: memoryview) -> None:
        """Store into ``spare`` from now on (FeedMetricsWriter.close: the file's view
        is released, and a late call must not raise)."""
        self._words = spare

    def set_state(self, state: FeedState) -> None:
        """The stream is now in ``state``; ``state_changed_ns`` is stamped first, so a
        reader that sees the new state sees (about) its time."""
        words = self._words
        words[self._state_changed] = time.time_ns()
        words[self._state] = state

    def add(self, counter: FeedCounter, count: int = 1) -> None:
        """Count ``count`` more of ``counter`` (e.g. RECONNECTS when a connection drops)."""
        self._words[self._counters + counter] += count

    def set(self, counter: FeedCounter, value: int) -> None:
        """Set ``counter`` to ``value`` (a total kept elsewhere, such as a book
        builder's ``stats.books``); counters only ever grow, so give totals."""
        self._words[self._counters + counter] = value

    def message(self, received_ns: int, exchange_ms: int) -> None:
        """An exchange message for this stream arrived at ``received_ns``
        (CLOCK_REALTIME, ``time.time_ns()``), stamped ``exchange_ms`` by the exchange
        (ms since the epoch; 0 or less if it carries none): MESSAGES += 1, the last
        message time and, if stamped, the exchange-to-local delay. On the path of
        every message: three stores, nothing else."""
        words = self._words
        words[self._messages] += 1
        words[self._last] = received_ns
        if exchange_ms > 0:
            words[self._delay] = received_ns - exchange_ms * _NS_PER_MS

    @property
    def state(self) -> FeedState:
        """The state last set (read back from the slot)."""
        return FeedState(self._words[self._state])

    def count(self, counter: FeedCounter) -> int:
        """The value of ``counter`` (read back from the slot)."""
        value: int = self._words[self._counters + counter]
        return value


class FeedMetricsWriter:
    """The collector's ``<journal>/collector.metrics`` for ``venue`` and its ``symbols``.

    Creates the journal directory if needed (checked as the Writer checks it:
    journal._paths), then the file, complete and locked, under a temporary name and
    only then under its own. ``mode``: the file's permission bits; None: the
    read/write bits of the journal directory (0o600 for a new one), so whoever may
    read the journal may watch its feed.

    Raises ValueError for a bad venue or symbol list, CollectorRunningError if a
    live collector already publishes in this journal, JournalError if the file
    cannot be made (the path, and why). Use as a context manager or ``close()``.
    """

    __slots__ = ("__weakref__", "_fd", "_finalizer", "_map", "_streams", "_words", "path", "venue")

    def __init__(
        self,
        journal: str | os.PathLike[str],
        venue: str,
        symbols: Sequence[str],
        *,
        mode: int | None = None,
    ) -> None:
        encoded_venue = _check_name("venue", venue, L.VENUE_SIZE)
        if isinstance(symbols, str) or not isinstance(symbols, Iterable):
            raise ValueError(f"symbols={symbols!r}: give a list of symbols, e.g. ['BTC-USDT']")
        symbols = list(symbols)
        if not 1 <= len(symbols) <= L.MAX_STREAMS:
            raise ValueError(f"symbols: {len(symbols)} given, give 1 to {L.MAX_STREAMS}")
        encoded = [_check_name("symbol", symbol, L.SYMBOL_SIZE) for symbol in symbols]
        if len(set(symbols)) != len(symbols):
            twice = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"symbols: {', '.join(twice)} given more than once")
        if mode is not None and mode & ~0o666:
            raise ValueError(f"mode={oct(mode)}: only read/write bits (at most 0o666)")
        directory = Path(journal)
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(directory).st_mode) & 0o666
            except FileNotFoundError:
                mode = 0o600
        image = _image(encoded_venue, encoded)
        with prepare_journal_directory(directory, mode) as checked:
            try:
                fd, data = _create(checked.fd, directory, image, mode)
            except (CollectorRunningError, ValueError):
                raise
            except OSError as error:
                raise JournalError(
                    f"cannot create {directory / L.COLLECTOR_METRICS_NAME}: "
                    f"{error.strerror or error} (a full tmpfs, or no write permission on "
                    "the journal directory?)"
                ) from None
        self.path = directory / L.COLLECTOR_METRICS_NAME
        self.venue = venue
        self._fd = fd
        self._map = data
        self._words = memoryview(data).cast("q")
        self._streams = {
            symbol: StreamMetrics(self._words, index, symbol)
            for index, symbol in enumerate(symbols)
        }
        self._finalizer = weakref.finalize(self, os.close, fd)  # the lock goes with the fd

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def stream(self, symbol: str) -> StreamMetrics:
        """The slot of ``symbol``, one of the symbols given (else ValueError naming them);
        the same object on every call."""
        try:
            return self._streams[symbol]
        except KeyError:
            shown = ", ".join(list(self._streams)[:10]) + (
                ", ..." if len(self._streams) > 10 else ""
            )
            raise ValueError(
                f"symbol={symbol!r} is not a stream of {self.path} (venue {self.venue}: "
                f"{shown}); give the symbols to FeedMetricsWriter when creating it"
            ) from None

    def close(self) -> None:
        """Every stream STOPPED, then unmap and release the lock; the file stays with
        its last values (``journal top`` shows the collector stopped). Idempotent."""
        if not self._finalizer.alive:
            return
        spare = memoryview(bytearray(len(self._map))).cast("q")
        for stream in self._streams.values():
            stream.set_state(FeedState.STOPPED)
            stream.detach(spare)
        self._words.release()
        self._map.close()
        self._finalizer()

    def __enter__(self) -> FeedMetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._finalizer.alive else "closed"
        return f"FeedMetricsWriter({str(self.path)!r}, venue={self.venue!r}, {state})"


def _image(venue: bytes, symbols: Sequence[bytes]) -> bytearray:
    """The whole file as created: header, symbols, every stream STOPPED, no delay."""
    size = L.collector_metrics_size(len(symbols))
    identity = WriterIdentity.current()
    image = bytearray(size)
    L.HEADER_STRUCT.pack_into(
        image,
        0,
        L.COLLECTOR_METRICS_MAGIC,
        L.COLLECTOR_METRICS_VERSION,
        size,
        identity.pid,
        len(symbols),
        identity.started_ns,
        identity.host.encode("utf-8")[: L.HOST_SIZE],
        venue,
    )
    for index, symbol in enumerate(symbols):
        base = L.slot_offset(index)
        image[base + L.SYMBOL_OFFSET : base + L.SYMBOL_OFFSET + len(symbol)] = symbol
        struct.pack_into("<q", image, base + L.LAST_DELAY_NS_OFFSET, L.NO_DELAY)
    return image


def _create(
    directory_fd: int, directory: Path, image: bytes | bytearray, mode: int
) -> tuple[int, mmap.mmap]:
    """Build the file under ``.collector.metrics.<pid>.creating``, locked, then link it
    to its name (replacing a dead collector's file). Returns the open, locked
    descriptor and the file mapped for writing."""
    _remove_stale_temporaries(directory_fd)
    temporary = f".{L.COLLECTOR_METRICS_NAME}.{os.getpid()}{_CREATING_SUFFIX}"
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, mode, dir_fd=directory_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new and ours: never blocks
        os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
        os.posix_fallocate(fd, 0, len(image))
        os.pwrite(fd, image, 0)
        data = mmap.mmap(fd, len(image), access=mmap.ACCESS_WRITE)
        try:
            _link_into_place(directory_fd, directory, temporary)
        except BaseException:
            data.close()
            raise
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=directory_fd)
        raise
    return fd, data


def _link_into_place(directory_fd: int, directory: Path, temporary: str) -> None:
    """``link(2)`` the finished file to its name, which fails if the name exists: then
    the file there is a live collector's (CollectorRunningError) or a dead one's
    (removed, and the link tried again). Two collectors starting together: one
    links, the other finds its file locked."""
    name = L.COLLECTOR_METRICS_NAME
    for _ in range(_LINK_ATTEMPTS):
        try:
            os.link(temporary, name, src_dir_fd=directory_fd, dst_dir_fd=directory_fd)
        except FileExistsError:
            _remove_if_dead(directory_fd, directory)
            continue
        os.unlink(temporary, dir_fd=directory_fd)
        return
    raise JournalError(
        f"{directory / name} was replaced {_LINK_ATTEMPTS} times while this collector "
        "tried to create it: is another collector restarting in a loop on this journal?"
    )


def _remove_if_dead(directory_fd: int, directory: Path) -> None:
    """Remove ``collector.metrics`` if no process holds its lock (its collector died).

    The lock is taken on the file first and the name checked to be that file, so a
    live collector's file that took its place meanwhile is never removed."""
    name = L.COLLECTOR_METRICS_NAME
    path = directory / name
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory_fd)
    except FileNotFoundError:
        return
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise JournalError(
                f"{path} is a symbolic link, not a collector's metrics file: remove it"
            ) from None
        raise
    try:
        for attempt in range(_LOCK_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _LOCK_ATTEMPTS - 1:
                    raise CollectorRunningError(
                        f"journal {directory} already has a live collector "
                        f"({_describe_holder(fd)}; {path} is locked): one collector per "
                        "journal; stop it, or collect this venue into another journal"
                    ) from None
                time.sleep(_LOCK_RETRY_S)
        there = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        mine = os.fstat(fd)
        if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            os.unlink(name, dir_fd=directory_fd)
    except FileNotFoundError:
        return
    finally:
        os.close(fd)


def _describe_holder(fd: int) -> str:
    """``pid=N host=H venue=V`` from a collector's header, for messages."""
    try:
        header = os.pread(fd, L.HEADER_STRUCT.size, 0)
        magic, _, _, pid, _, _, host, venue = L.HEADER_STRUCT.unpack(header)
    except (OSError, struct.error):
        return "pid unknown"
    if magic != L.COLLECTOR_METRICS_MAGIC:
        return "pid unknown"
    return f"pid={pid} host={_text(host)} venue={_text(venue)}"


def _remove_stale_temporaries(directory_fd: int) -> None:
    """Half-created files of collectors that died while creating theirs: unlocked
    and older than a minute."""
    prefix = f".{L.COLLECTOR_METRICS_NAME}."
    for name in os.listdir(directory_fd):
        if not (name.startswith(prefix) and name.endswith(_CREATING_SUFFIX)):
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory_fd)
        except OSError:
            continue
        try:
            if time.time() - os.fstat(fd).st_mtime < _STALE_CREATING_S:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(name, dir_fd=directory_fd)
        except OSError:
            continue  # locked (a live collector creating it) or gone
        finally:
            os.close(fd)


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", "replace")


# -- reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamFigures:
    """One stream's slot as read (docs/FORMAT.md, "Collector metrics")."""

    symbol: str
    state: FeedState
    state_changed_ns: int
    """CLOCK_REALTIME ns of the last state change (0: never changed since creation)."""
    last_message_ns: int
    """CLOCK_REALTIME ns of the last exchange message (0: none yet)."""
    last_delay_ns: int | None
    """Exchange-to-local delay of the last stamped message (None: none yet); signed:
    clocks disagree."""
    messages: int
    books: int
    reconnects: int
    gaps: int
    resyncs: int
    crossed: int
    stale: int
    snapshots: int
    errors: int
    refused: int

    def count(self, counter: FeedCounter) -> int:
        """The value of ``counter``."""
        value: int = getattr(self, counter.name.lower())
        return value


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """A collector's ``collector.metrics``, read at ``taken_ns``."""

    path: Path
    venue: str
    pid: int
    host: str
    started_ns: int
    alive: bool
    """Whether the collector holds the file's lock (it runs); False once it closed or died."""
    taken_ns: int
    """CLOCK_REALTIME ns when the words were read: ages are measured from it."""
    streams: tuple[StreamFigures, ...]

    def stream(self, symbol: str) -> StreamFigures:
        """The figures of ``symbol`` (KeyError if the collector has no such stream)."""
        for figures in self.streams:
            if figures.symbol == symbol:
                return figures
        raise KeyError(f"{self.path}: no stream {symbol!r} (venue {self.venue})")


def read_feed_metrics(journal: str | os.PathLike[str]) -> FeedSnapshot | None:
    """The collector's figures in ``journal``; None if it has no ``collector.metrics``.

    Reads without disturbing the collector: mapped read-only, each word loaded once
    (one 8-byte load). JournalError if the file is not one this code can read (the
    path, offset and field).
    """
    path = Path(journal) / L.COLLECTOR_METRICS_NAME
    data = map_read_only(path, L.STREAMS_OFFSET, f"its header ({L.STREAMS_OFFSET})")
    if data is None:
        return None
    size = len(data)
    with data:
        magic, version, file_size, pid, count, started, host, venue = L.HEADER_STRUCT.unpack_from(
            data
        )
        if magic != L.COLLECTOR_METRICS_MAGIC:
            raise JournalError(
                f"{path} offset={L.MAGIC_OFFSET}: magic={magic!r}, expected "
                f"{L.COLLECTOR_METRICS_MAGIC!r}"
            )
        if version != L.COLLECTOR_METRICS_VERSION:
            raise JournalError(
                f"{path} offset={L.VERSION_OFFSET}: metrics_version={version}, this reader "
                f"knows {L.COLLECTOR_METRICS_VERSION}: use the journal package of its collector"
            )
        if not 0 <= count <= L.MAX_STREAMS or file_size != L.collector_metrics_size(count):
            raise JournalError(
                f"{path} offset={L.FILE_SIZE_OFFSET}: file_size={file_size} does not fit "
                f"stream_count={count} (expected {L.collector_metrics_size(count)})"
            )
        if size != file_size:
            raise JournalError(
                f"{path} offset={L.FILE_SIZE_OFFSET}: file_size={file_size}, but the file "
                f"has {size} bytes"
            )
        taken_ns = time.time_ns()
        with memoryview(data).cast("q") as view:
            words = view.tolist()  # one 8-byte load per word
        streams = tuple(_stream_figures(path, data, words, index) for index in range(count))
    return FeedSnapshot(
        path=path,
        venue=_text(venue),
        pid=pid,
        host=_text(host),
        started_ns=started,
        alive=lock_held(path) is True,
        taken_ns=taken_ns,
        streams=streams,
    )


def _stream_figures(path: Path, data: mmap.mmap, words: list[int], index: int) -> StreamFigures:
    base = L.slot_offset(index)
    symbol = _text(data[base + L.SYMBOL_OFFSET : base + L.SYMBOL_OFFSET + L.SYMBOL_SIZE])
    state_word = words[word_index(base + L.STATE_OFFSET)]
    try:
        state = FeedState(state_word)
    except ValueError:
        raise JournalError(
            f"{path} offset={base + L.STATE_OFFSET}: stream {symbol!r} state={state_word}, "
            f"not a FeedState this reader knows"
        ) from None
    first = word_index(base + L.COUNTERS_OFFSET)
    counters = words[first : first + len(FeedCounter)]
    delay = words[word_index(base + L.LAST_DELAY_NS_OFFSET)]
    return StreamFigures(
        symbol,
        state,
        words[word_index(base + L.STATE_CHANGED_NS_OFFSET)],
        words[word_index(base + L.LAST_MESSAGE_NS_OFFSET)],
        None if delay == L.NO_DELAY else delay,
        *counters,
    )
