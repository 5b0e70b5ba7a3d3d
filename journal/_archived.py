"""What the core Reader needs of the archive, and nothing more.

``Reader(path, archive=DIR)`` reads segments the compactor removed from tmpfs out of
their archive files. The core does not import the archive package (it sits above
the core: journal.archive reads and removes segments through it); the archive
package registers an ``ArchiveAccess`` here when it is imported (``import journal``
does), and the Reader asks for it only when given ``archive=``. What it needs: the
stream's segments in order across incarnations (``StreamSegment``, ordered here),
and one archive file's header and records.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from journal._decode import Record
from journal._errors import JournalError


class ArchivedHeader(Protocol):
    """The archived segment's header fields the Reader checks."""

    @property
    def segment_index(self) -> int: ...
    @property
    def payload_id(self) -> bytes: ...
    @property
    def sealed(self) -> bool: ...
    @property
    def commit_offset(self) -> int: ...
    @property
    def end_marker_offset(self) -> int: ...
    @property
    def created_ns(self) -> int: ...
    @property
    def incarnation_ns(self) -> int: ...
    @property
    def segment_size(self) -> int: ...


class ArchivedSegment(Protocol):
    """One archive file, open: its header, its records from a time, closed after."""

    @property
    def header(self) -> ArchivedHeader: ...
    @property
    def record_count(self) -> int: ...
    @property
    def min_time_ns(self) -> int: ...
    def records(
        self, start_ns: int | None = None, end_ns: int | None = None, *, verify: bool = True
    ) -> Iterator[Record]: ...
    def segment_bytes(self, limit: int = ...) -> bytes: ...
    def close(self) -> None: ...
    def __enter__(self) -> ArchivedSegment: ...
    def __exit__(self, *exc: object) -> None: ...


class ArchiveAccess(Protocol):
    """What the archive package provides the Reader."""

    def stream_segments(self, archive_dir: Path, journal_dir: Path) -> list[StreamSegment]:
        """Every segment of the stream, archived or in tmpfs, in stream order."""
        ...

    def open(self, path: Path) -> ArchivedSegment:
        """One archive file, its header checked (CorruptArchiveError otherwise)."""
        ...


_access: ArchiveAccess | None = None


def register(access: ArchiveAccess) -> None:
    """Called by journal.archive when it is imported."""
    global _access
    _access = access


def archive_access() -> ArchiveAccess:
    """The registered access; JournalError if the archive package is not loaded."""
    if _access is None:
        raise JournalError(
            "reading archives needs the journal.archive package: import journal (or "
            "journal.archive) before passing archive="
        )
    return _access


@dataclass(frozen=True, slots=True, order=True)
class StreamSegment:
    """One segment of a stream, wherever it is; ordered by creation, then index.

    A journal deleted and written again (a reboot emptied tmpfs, or ``rm -r``) starts
    again at segment 0: segments of one index from two *incarnations* differ by
    ``created_ns`` (CLOCK_REALTIME when the writer created the file). Sorted by it,
    a stream's segments are its incarnations one after the other, each a run of
    increasing indices; an index that does not increase starts the next incarnation.
    ``archive`` is the segment's archive file (None if none), ``in_tmpfs`` whether the
    journal directory still holds this very segment (same index and created_ns).
    """

    created_ns: int
    index: int
    archive: Path | None = field(default=None, compare=False)
    in_tmpfs: bool = field(default=False, compare=False)


def newest_incarnation(segments: list[StreamSegment]) -> list[StreamSegment]:
    """The segments of the stream's last incarnation (the live one, if tmpfs has one)."""
    start = 0
    for k in range(1, len(segments)):
        if segments[k].index <= segments[k - 1].index:
            start = k
    return segments[start:]


def following_segment(
    segments: list[StreamSegment], created_ns: int, index: int
) -> StreamSegment | None:
    """The segment read after segment ``index`` created at ``created_ns``: the next in
    stream order. It is ``index + 1`` of the same incarnation, or (an index not above
    ``index``) the oldest segment left of the next incarnation; a larger index means
    the ones between are neither in tmpfs nor archived (the caller reports the gap).
    None: nothing after it yet."""
    after = bisect.bisect_right(segments, StreamSegment(created_ns, index))
    return segments[after] if after < len(segments) else None
