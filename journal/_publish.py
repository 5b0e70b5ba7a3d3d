"""Every access to a header word shared with another process, with its ordering.

The commit offset is the protocol: publishing it (the writer) and loading it (the
readers) order every other access to a segment. Around it, two more words are shared
and are touched only through the functions here: ``end_marker_offset`` (stored by a
writer's seal before the commit that covers the marker) and ``futex_sleepers`` (raised
by a reader about to sleep, cleared by the writer that wakes it). Each function's
docstring names the access it pairs with; radar_reader's atomics.hpp has the same
functions for C++. ``commit_words`` is the header viewed as native unsigned 64-bit
words (``memoryview.cast("Q")``), the commit offset word ``COMMIT_WORD``, alone on its
cache-line pair; ``sleepers_words`` the header viewed as 32-bit words (``cast("I")``).

Why a plain store is a release store here (x86-64 only, see ``require_x86_64``):
``memoryview`` item assignment of format ``Q`` compiles to one aligned 8-byte
``mov`` (CPython's ``PACK_SINGLE`` is a fixed-size ``memcpy``), and an aligned
8-byte store is atomic on x86-64. x86-64 (TSO) never reorders a store with older
stores, so every byte of the record, copied before, is visible to any core that
sees the new commit. Symmetrically a plain load is an acquire load: loads are not
reordered with younger loads, so a reader that sees commit ``c`` then reads the
bytes below ``c`` sees them complete. On ARM or POWER neither holds without fences
that Python cannot emit, so the pure-Python path refuses to run there.

With the compiled extension (journal._native decides; ``JOURNAL_PURE_PYTHON=1``
forces the pure path), every function here is replaced at import by its C version
(journal/_c/atomics.h, the same names): a real release store and acquire load
(``<stdatomic.h>``), and the seq_cst fence between a store of the handshake and the
load after it (``raise_sleepers_flag``, ``load_sleepers``) that Python cannot emit,
so no futex wake is missed. The journal then also runs on little-endian aarch64.
"""

from __future__ import annotations

import platform
import struct
import sys
from typing import Any, Final

from journal import _native
from journal._errors import UnsupportedPlatformError
from journal._layout import (
    COMMIT_OFFSET_OFFSET,
    END_MARKER_OFFSET_OFFSET,
    END_MARKER_SIZE,
    FUTEX_SLEEPERS_OFFSET,
)

COMMIT_WORD: Final = COMMIT_OFFSET_OFFSET // 8
"""Index of the commit offset in the header viewed as u64 words."""
END_MARKER_WORD: Final = END_MARKER_OFFSET_OFFSET // 8
"""Index of end_marker_offset in the header viewed as u64 words."""
SLEEPERS_WORD: Final = FUTEX_SLEEPERS_OFFSET // 4
"""Index of the futex sleepers flag in the header viewed as u32 words."""
_END_MARKER_OFFSET: Final = struct.Struct("<Q")


_ORDERED_MACHINES: Final = ("x86_64", "amd64")
"""Where plain loads and stores are acquire and release (the pure-Python path)."""
_FENCED_MACHINES: Final = ("aarch64", "arm64")
"""Where the compiled path's real atomics are needed, and enough."""


def require_supported_platform(machine: str | None = None, *, native: bool | None = None) -> None:
    """Refuse to publish or tail where the path in use cannot order its accesses:
    the pure-Python path on anything but x86-64; the compiled path (``native``) on
    anything but x86-64 and aarch64. Little-endian only (the format is, natively).
    ``machine`` and ``native`` default to this process's: tests pass others."""
    machine = (machine if machine is not None else platform.machine()).lower()
    native = _native.NATIVE if native is None else native
    supported = _ORDERED_MACHINES + (_FENCED_MACHINES if native else ())
    if machine in supported and sys.byteorder == "little":
        return
    if native:
        raise UnsupportedPlatformError(
            f"machine={machine!r} byteorder={sys.byteorder}: the journal's compiled path "
            "is built and tested for little-endian x86-64 and aarch64 only "
            "(docs/FORMAT.md, 'Memory ordering'); use the C++ library here"
        )
    hint = (
        "; build the compiled extension (a C compiler, then pip install), which uses real "
        "fences, or unset JOURNAL_PURE_PYTHON"
        if machine in _FENCED_MACHINES
        else "; use the C++ library, which uses real atomics, here"
    )
    raise UnsupportedPlatformError(
        f"machine={machine!r} byteorder={sys.byteorder}: the journal's pure-Python path "
        "relies on x86-64 store ordering to publish records (docs/FORMAT.md, "
        f"'Memory ordering'){hint}"
    )


require_x86_64: Final = require_supported_platform
"""The former name, still imported by some modules."""


def publish_commit(commit_words: memoryview, commit: int) -> None:
    """Release-store ``commit``: every byte below it was written before this call.

    Pairs with ``load_commit_acquire`` in Python readers and
    ``load_commit_acquire()`` in radar_reader's atomics.hpp.
    """
    commit_words[COMMIT_WORD] = commit


def load_commit_acquire(commit_words: memoryview) -> int:
    """Acquire-load the commit offset: bytes below it are complete once this returns.

    Pairs with ``publish_commit`` (the writer's release store).
    """
    return commit_words[COMMIT_WORD]


def publish_seal(commit_words: memoryview, marker_offset: int) -> None:
    """Publish the end marker already written at ``marker_offset``.

    ``end_marker_offset`` is stored first, then the commit that covers the marker,
    so a reader that sees that commit sees the offset too (``is_sealed``).
    """
    commit_words[END_MARKER_WORD] = marker_offset
    publish_commit(commit_words, marker_offset + END_MARKER_SIZE)


def load_end_marker_offset(commit_words: memoryview) -> int:
    """``end_marker_offset``: 0 while the segment is open. Load the commit first
    (pairs with ``publish_seal``); a marker offset at or past that commit is a seal
    under way or interrupted, one below it is damage."""
    return commit_words[END_MARKER_WORD]


def load_end_marker_offset_from(segment: Any) -> int:
    """``load_end_marker_offset`` for a segment's bytes from its start, given as any
    buffer (a mapping, or bytes read from it) rather than a word view: pairs with
    ``publish_seal`` the same way, once a commit covering the marker was loaded."""
    marker: int = _END_MARKER_OFFSET.unpack_from(segment, END_MARKER_OFFSET_OFFSET)[0]
    return marker


def clear_interrupted_seal(commit_words: memoryview) -> None:
    """Undo the first store of a seal that a crash interrupted (``end_marker_offset``
    equal to the commit, which was never moved past the marker): the segment is
    open again. Only the recovering writer calls it, under the writer lock; pairs
    with ``load_end_marker_offset`` in readers, which take such a marker for a seal
    under way until they see it gone."""
    commit_words[END_MARKER_WORD] = 0


def is_sealed(commit_words: memoryview, commit: int) -> bool:
    """Whether ``commit``, just acquire-loaded, is the one that publishes the end marker.

    Load the commit first, then call this: pairs with ``publish_seal``.
    """
    marker = load_end_marker_offset(commit_words)
    return marker != 0 and commit == marker + END_MARKER_SIZE


# -- the futex sleepers flag (FORMAT.md, "Futex wait" and "Memory ordering") -------------


def raise_sleepers_flag(sleepers_words: memoryview) -> None:
    """A reader about to sleep on the commit word: set ``futex_sleepers``, then load
    the commit (``load_commit_acquire``) and sleep only if it has not moved.

    Pairs with ``load_sleepers`` (then ``clear_sleepers``) in the writer after each
    ``publish_commit``, and with ``announce_sleeper`` / ``take_sleepers`` in
    radar_reader's atomics.hpp. The store and the commit load need a StoreLoad fence
    that Python cannot emit: on the pure-Python path a wake can in rare cases be
    missed, so readers sleep with a timeout. Compiled, this is atomics.h's
    ``journal_announce_sleeper``: the store, then a seq_cst fence.
    """
    sleepers_words[SLEEPERS_WORD] = 1


def load_sleepers(sleepers_words: memoryview) -> int:
    """The writer, after ``publish_commit`` or ``publish_seal``: non-zero if a reader
    said it sleeps (``raise_sleepers_flag``; C++ ``announce_sleeper``), then
    ``clear_sleepers`` and wake. Without a fence between the commit store and this
    load (pure Python has none), a reader's flag can be missed: see
    raise_sleepers_flag. Compiled, a seq_cst fence comes first."""
    return sleepers_words[SLEEPERS_WORD]


def clear_sleepers(sleepers_words: memoryview) -> None:
    """The writer, before ``FUTEX_WAKE``: lower the flag ``load_sleepers`` found raised.
    Readers raise it again (``raise_sleepers_flag``) before each sleep, so a wake
    racing a new sleeper costs that sleeper at most its timeout."""
    sleepers_words[SLEEPERS_WORD] = 0


# -- the compiled versions (journal/_c/atomics.h), when the extension is in use ---------

if _native.cwriter is not None:
    publish_commit = _native.cwriter.publish_commit
    load_commit_acquire = _native.cwriter.load_commit_acquire
    publish_seal = _native.cwriter.publish_seal
    load_end_marker_offset = _native.cwriter.load_end_marker_offset
    clear_interrupted_seal = _native.cwriter.clear_interrupted_seal
    raise_sleepers_flag = _native.cwriter.raise_sleepers_flag
    load_sleepers = _native.cwriter.load_sleepers
    clear_sleepers = _native.cwriter.clear_sleepers
