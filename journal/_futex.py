"""futex(2) on the low half of a mapped commit word, through ctypes.

The writer calls ``wake_all`` only after a reader has raised the sleepers flag, so
a writer with no sleeping reader makes no system call. The futex is a shared one
(no FUTEX_PRIVATE_FLAG): the kernel keys it by file and offset, across processes.

With the compiled extension (journal._native), both calls are its C versions
(journal/_c/atomics.h: the syscall number of the machine it was built for, the GIL
released while waiting); the ctypes ones below are the pure-Python path's (x86-64).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Final

from journal import _native
from journal._libc import libc

_SYS_FUTEX: Final = 202  # x86-64: journal._publish refuses others to the pure path
FUTEX_WAIT: Final = 0
FUTEX_WAKE: Final = 1
_WAKE_EVERYONE: Final = 0x7FFF_FFFF


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


_syscall = libc.syscall


def wake_all(address: int) -> int:
    """Wake every process waiting on the u32 at ``address``; returns how many woke."""
    woken: int = _syscall(_SYS_FUTEX, ctypes.c_void_p(address), FUTEX_WAKE, _WAKE_EVERYONE, None)
    if woken < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"futex wake at address=0x{address:x}: {os.strerror(err)}")
    return woken


def wait(address: int, expected: int, timeout_s: float) -> None:
    """Sleep while the u32 at ``address`` equals ``expected``, at most ``timeout_s``.

    Returns on a wake, a changed value (EAGAIN), a signal or the timeout; the caller
    re-checks the commit in every case.
    """
    seconds = int(timeout_s)
    spec = _Timespec(seconds, int((timeout_s - seconds) * 1e9))
    result = _syscall(
        _SYS_FUTEX,
        ctypes.c_void_p(address),
        FUTEX_WAIT,
        ctypes.c_uint32(expected & 0xFFFF_FFFF),
        ctypes.byref(spec),
    )
    if result < 0:
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
            raise OSError(err, f"futex wait at address=0x{address:x}: {os.strerror(err)}")


if _native.cwriter is not None:
    wake_all = _native.cwriter.futex_wake
    wait = _native.cwriter.futex_wait
