"""``replicate.metrics`` and ``mirror.metrics``: the figures of journal replicate and
journal mirror, in the journal's directory, for ``journal top`` and ``journal metrics``.

As the other metrics files (journal._metrics, journal._feed_metrics): a small mapped
file any process reads at any time without a lock and without its owner noticing;
docs/FORMAT.md ("Replication metrics") is the layout, journal._replication_metrics_layout
its only Python copy. Each word is stored whole (a memoryview cast to ``q``: one
8-byte ``mov``), so a reader sees an older set of words at worst, never half of one.

The owner holds an exclusive ``flock`` on its file from before the file has its name
until ``close``: a second replicator of the same journal (or mirror of the same
copy) finds it taken and stops with ReplicationRunningError; a file whose lock is
free is a dead owner's, replaced by the next one. The file stays after ``close``
with its last figures, as ``writer.metrics`` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from journal import _replication_metrics_layout as L
from journal._errors import JournalError
from journal._lock import lock_held
from journal._metrics import map_read_only
from journal._replication_metrics_layout import NatsState, Role, Word

__all__ = [
    "NatsState",
    "ReplicationFigures",
    "ReplicationMetrics",
    "ReplicationRunningError",
    "Role",
    "Word",
    "metrics_name",
    "read_replication_metrics",
]

_LINK_ATTEMPTS: Final = 10


class ReplicationRunningError(JournalError):
    """Another live process replicates this journal (or mirrors into it)."""


def metrics_name(role: Role) -> str:
    return L.REPLICATE_METRICS_NAME if role == Role.REPLICATE else L.MIRROR_METRICS_NAME


def _encoded(text: str, size: int) -> bytes:
    return text.encode("utf-8", "replace")[:size]


class ReplicationMetrics:
    """The owner's handle on its file: ``set`` and ``add`` store one word each."""

    def __init__(self, path: Path, fd: int, data: mmap.mmap) -> None:
        self.path = path
        self._fd = fd
        self._map = data
        self._words: memoryview | None = memoryview(data).cast("q")
        self._base = L.COUNTERS_OFFSET // 8

    @classmethod
    def create(
        cls, journal: Path, role: Role, stream: str, mode: int = 0o600
    ) -> ReplicationMetrics:
        """Make ``journal/<role>.metrics`` (the journal directory must exist), or
        ReplicationRunningError if a live owner holds it."""
        name = metrics_name(role)
        path = journal / name
        temporary = journal / f".{name}.{os.getpid()}.creating"
        fd = os.open(
            temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, L.REPLICATION_METRICS_SIZE)
            header = L.HEADER_STRUCT.pack(
                L.REPLICATION_METRICS_MAGIC,
                L.REPLICATION_METRICS_VERSION,
                L.REPLICATION_METRICS_SIZE,
                os.getpid(),
                int(role),
                time.time_ns(),
                _encoded(socket.gethostname(), L.HOST_SIZE),
                _encoded(stream, L.STREAM_SIZE),
            )
            os.pwrite(fd, header, 0)
            for _ in range(_LINK_ATTEMPTS):
                try:
                    os.link(temporary, path, follow_symlinks=False)
                    break
                except FileExistsError:
                    if lock_held(path):
                        raise ReplicationRunningError(
                            f"{path} is held by a live journal {role.name.lower()} (one per "
                            "journal): stop it first, or replicate to another stream from "
                            "another copy"
                        ) from None
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)  # a dead owner's: its figures go
            else:
                raise JournalError(f"{path}: could not be put in place")
            data = mmap.mmap(fd, L.REPLICATION_METRICS_SIZE)
        except BaseException:
            os.close(fd)
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
        return cls(path, fd, data)

    def set(self, word: Word, value: int) -> None:
        if self._words is not None:
            self._words[self._base + word] = value

    def add(self, word: Word, count: int = 1) -> None:
        if self._words is not None:
            self._words[self._base + word] += count

    def get(self, word: Word) -> int:
        return 0 if self._words is None else int(self._words[self._base + word])

    def close(self) -> None:
        """Unmap and release the lock; the file stays with its last figures."""
        if self._words is None:
            return
        self.set(Word.NATS_STATE, NatsState.CLOSED)
        self._words.release()
        self._words = None
        self._map.close()
        os.close(self._fd)  # the lock goes with the descriptor


MIRROR_LAG_STALE_NS: Final = 10_000_000_000


class MirrorLag(NamedTuple):
    """A mirror's lag as it measured it: the stream's records of the journal beyond
    the copy, and how much later the last of them was written than the copy's last."""

    records: int
    ns: int


@dataclass(frozen=True, slots=True)
class ReplicationFigures:
    """A replication metrics file as read: its header, its words, its owner alive."""

    path: Path
    role: Role
    pid: int
    host: str
    started_ns: int
    stream: str
    alive: bool
    words: dict[Word, int]

    def __getitem__(self, word: Word) -> int:
        return self.words[word]

    def mirror_lag(self, now_ns: int) -> MirrorLag | None:
        """A mirror's lag as it measured it last; None before it
        did, when it is no mirror, and when that is over ``MIRROR_LAG_STALE_NS`` ago
        (it measures every second: one that cannot reach the stream, or died, does
        not know its lag, and an old figure would pass for it)."""
        checked = self[Word.LAG_CHECKED_NS]
        if self.role is not Role.MIRROR or not checked or now_ns - checked > MIRROR_LAG_STALE_NS:
            return None
        return MirrorLag(self[Word.LAG_RECORDS], self[Word.LAG_NS])


def read_replication_metrics(path: Path) -> ReplicationFigures | None:
    """The figures of ``path``; None if there is no such file. JournalError names
    the file and what is wrong with it (not this format, another version)."""
    data = map_read_only(path, L.REPLICATION_METRICS_SIZE, "a replication metrics file")
    if data is None:
        return None
    with data:
        magic, version, size, pid, role, started, host, stream = L.HEADER_STRUCT.unpack_from(
            data, 0
        )
        if magic != L.REPLICATION_METRICS_MAGIC:
            raise JournalError(f"{path}: magic={magic!r}, not a replication metrics file")
        if version != L.REPLICATION_METRICS_VERSION or size != L.REPLICATION_METRICS_SIZE:
            raise JournalError(
                f"{path}: metrics_version={version} file_size={size}, this journal reads "
                f"version {L.REPLICATION_METRICS_VERSION} of {L.REPLICATION_METRICS_SIZE} bytes"
            )
        with memoryview(data).cast("q") as words:
            values = words[L.COUNTERS_OFFSET // 8 :].tolist()
    try:
        side = Role(role)
    except ValueError:
        raise JournalError(f"{path}: role={role}, neither replicate (1) nor mirror (2)") from None
    return ReplicationFigures(
        path=path,
        role=side,
        pid=pid,
        host=host.rstrip(b"\0").decode("utf-8", "replace"),
        started_ns=started,
        stream=stream.rstrip(b"\0").decode("utf-8", "replace"),
        alive=lock_held(path) is True,
        words={word: values[word] for word in Word},
    )
