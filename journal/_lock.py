"""The one-writer rule, enforced by the kernel with flock(2) on ``writer.lock``.

The lock goes with the process that holds it, however it dies, so a crashed
writer never blocks its successor. The file records the holder's pid and host for
error messages and ``journal info``; it is never trusted for the decision itself.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Final

from journal._errors import JournalError, WriterLockedError
from journal._layout import LOCK_FILE_NAME

_ATTEMPTS: Final = 5
_RETRY_DELAY_S: Final = 0.01
"""``journal info`` probes the lock for an instant; a writer starting then retries."""


def lock_path(directory: Path) -> Path:
    return directory / LOCK_FILE_NAME


def _open_lock_file(directory: Path, mode: int) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(lock_path(directory), flags, mode)
    except OSError as error:
        raise JournalError(
            f"cannot open lock file {lock_path(directory)}: {error.strerror} "
            "(is it a symbolic link or owned by another user?)"
        ) from error
    if os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
    return fd


class WriterLock:
    """Held by the journal's writer for its whole life; ``release`` closes it."""

    __slots__ = ("_fd",)

    def __init__(self, directory: Path, mode: int) -> None:
        fd = _open_lock_file(directory, mode)
        for attempt in range(_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ATTEMPTS - 1:
                    holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
                    os.close(fd)
                    raise WriterLockedError(
                        f"journal {directory} already has a live writer ({holder or 'unknown'}); "
                        "one writer per journal: stop it or write to another stream"
                    ) from None
                time.sleep(_RETRY_DELAY_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def writer_alive(directory: Path) -> bool | None:
    """Whether a process holds the writer lock now; None if there is no lock file.

    Takes a shared lock for an instant: a writer starting at that very moment
    retries (see WriterLock), so the probe never makes it fail.
    """
    return lock_held(lock_path(directory))


def lock_held(path: Path) -> bool | None:
    """Whether a process holds an exclusive flock on ``path`` now; None if there is
    no such file.

    A shared lock for an instant: prober and prober never block each other, and a
    live owner's exclusive lock makes it fail.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
