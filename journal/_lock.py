"""The one-writer rule, enforced by the kernel with flock(2) on the journal directory.

The lock is on the directory itself, not on a file in it: a file can be unlinked
by anyone who may write the directory, and the next writer would lock a new file
of the same name while the first still writes (two writers interleaving segments).
A directory cannot be replaced under a process that holds it open: removed and
made again, it is another inode, another lock, and another incarnation of the
journal (docs/FORMAT.md, "Incarnations"), which the first writer notices.

The lock goes with the process that holds it, however it dies, so a crashed
writer never blocks its successor. ``writer.lock`` records the holder's pid and host
for error messages and ``journal info``; it is never trusted for the decision.
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
_HOLDER_TEXT_MAX: Final = 256


def lock_path(directory: Path) -> Path:
    """``writer.lock``: who holds (or last held) the writer lock, for messages."""
    return directory / LOCK_FILE_NAME


def _open_directory(directory: Path) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise JournalError(
            f"cannot open journal directory {directory} to lock it: {error.strerror}"
        ) from error


def _write_holder(directory_fd: int, directory: Path, mode: int) -> None:
    """Say in ``writer.lock`` who holds the lock (information only)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(LOCK_FILE_NAME, flags, mode, dir_fd=directory_fd)
    except OSError as error:
        raise JournalError(
            f"cannot open lock file {lock_path(directory)}: {error.strerror} "
            "(is it a symbolic link or owned by another user?)"
        ) from error
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, mode)  # exactly the mode asked for, whatever the umask
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid={os.getpid()} host={socket.gethostname()}\n".encode(), 0)
    finally:
        os.close(fd)


def _holder(directory: Path) -> str:
    try:
        fd = os.open(lock_path(directory), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return "unknown"
    try:
        return os.pread(fd, _HOLDER_TEXT_MAX, 0).decode("utf-8", "replace").strip() or "unknown"
    finally:
        os.close(fd)


class WriterLock:
    """Held by the journal's writer for its whole life; ``release`` closes it.

    ``still_ours()`` says whether ``directory`` still names the directory locked:
    removed (or replaced) under the writer, the journal it writes is gone.
    """

    __slots__ = ("_fd", "_identity")

    def __init__(self, directory: Path, mode: int, directory_fd: int | None = None) -> None:
        # The checked directory's own descriptor when given: not the path, looked up again.
        fd = _open_directory(directory) if directory_fd is None else os.dup(directory_fd)
        for attempt in range(_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ATTEMPTS - 1:
                    os.close(fd)
                    raise WriterLockedError(
                        f"journal {directory} already has a live writer ({_holder(directory)}); "
                        "one writer per journal: stop it or write to another stream"
                    ) from None
                time.sleep(_RETRY_DELAY_S)
        try:
            _write_holder(fd, directory, mode)
        except BaseException:
            os.close(fd)
            raise
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)
        self._fd = fd

    @property
    def directory_fd(self) -> int:
        """The locked directory, open: files created relative to it stay in it."""
        return self._fd

    def still_ours(self, directory: Path) -> bool:
        """Whether ``directory`` is still the directory this lock holds (one stat)."""
        try:
            info = os.stat(directory, follow_symlinks=False)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def writer_alive(directory: Path) -> bool | None:
    """Whether a process holds the writer lock now; None if no writer holds it and
    none ever did (no ``writer.lock``).

    Takes a shared lock for an instant: a writer starting at that very moment
    retries (see WriterLock), so the probe never makes it fail.
    """
    held = lock_held(directory)
    if held:
        return True  # the lock is the directory's: a deleted writer.lock changes nothing
    if held is None or not os.path.lexists(lock_path(directory)):
        return None
    return False


def lock_held(path: Path) -> bool | None:
    """Whether a process holds an exclusive flock on ``path`` now; None if there is
    no such file.

    A shared lock for an instant: prober and prober never block each other, and a
    live owner's exclusive lock makes it fail.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
