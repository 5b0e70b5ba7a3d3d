"""The C library, for the few calls Python's standard library does not wrap.

ctypes releases the GIL around foreign calls, so a slow call (prefaulting 64 MiB)
made from a background thread does not stall the appending thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
libc.madvise.restype = ctypes.c_int
