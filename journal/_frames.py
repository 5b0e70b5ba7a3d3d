"""Walking record frames in a segment: the framing rules every reader applies.

A frame at an 8-aligned offset below the commit is either the end-of-segment marker
(its second word zero, the last frame, where the header's end_marker_offset says) or
a size prefix whose FlatBuffer ends at or before the commit. Anything else is
corruption, reported with the file and offset. ``data`` is always a whole segment,
header included.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any, Final

from journal._errors import CorruptSegmentError
from journal._layout import (
    COMMIT_OFFSET_OFFSET,
    END_MARKER_OFFSET_OFFSET,
    END_MARKER_SIZE,
    END_OF_SEGMENT,
    HEADER_SIZE,
    MIN_RECORD_SIZE,
    PAYLOAD_ID_SIZE,
    RECORD_ALIGNMENT,
    RECORD_PAYLOAD_ID_OFFSET,
    SIZE_PREFIX_SIZE,
    align_record,
)
from journal._publish import load_end_marker_offset_from

_U32: Final = struct.Struct("<I")
END: Final = -1
"""What ``frame_at`` returns for the end-of-segment marker."""


def marker_below_commit(marker: int, commit: int, path: str) -> CorruptSegmentError:
    """end_marker_offset set, but below the commit: one of the two words is damaged."""
    return CorruptSegmentError(
        f"end_marker_offset={marker} lies below commit_offset={commit} (a sealed "
        f"segment's commit is {END_MARKER_SIZE} past it): one of them is damaged",
        path=path,
        offset=END_MARKER_OFFSET_OFFSET,
    )


def commit_cut_short(marker: int, commit: int, path: str) -> CorruptSegmentError:
    """end_marker_offset past the commit: a writer stores the marker offset equal to
    its commit, then moves the commit past the marker, so a sealed segment's commit
    was lowered."""
    return CorruptSegmentError(
        f"end_marker_offset={marker} lies past commit_offset={commit}: the commit of a "
        "sealed segment was cut short, so the records after it would be skipped; the "
        "segment needs restoring from a copy",
        path=path,
        offset=COMMIT_OFFSET_OFFSET,
    )


def marker_not_pointed_at(marker: int, at: int, path: str) -> CorruptSegmentError:
    """An end marker committed at ``at`` that end_marker_offset does not name."""
    return CorruptSegmentError(
        f"an end-of-segment marker is committed here but end_marker_offset={marker} does "
        "not point at it: the header says the segment is open, and a writer would append "
        "after its marker",
        path=path,
        offset=at,
    )


def check_commit(commit: int, segment_size: int, path: str) -> None:
    """A commit offset must lie between the header and the end, on a record boundary."""
    if not HEADER_SIZE <= commit <= segment_size or commit % RECORD_ALIGNMENT:
        raise CorruptSegmentError(
            f"commit_offset={commit} is outside {HEADER_SIZE}..{segment_size} or not "
            f"a multiple of {RECORD_ALIGNMENT}",
            path=path,
            offset=commit,
        )


def frame_at(data: Any, offset: int, commit: int, payload_id: bytes, path: str) -> int:
    """Size prefix of the record at ``offset`` (< ``commit``), or END for the marker."""
    size: int = _U32.unpack_from(data, offset)[0]
    if size == END_OF_SEGMENT:
        if offset + END_MARKER_SIZE != commit:
            raise CorruptSegmentError(
                f"end-of-segment marker followed by {commit - offset - END_MARKER_SIZE} "
                "committed bytes",
                path=path,
                offset=offset,
            )
        # Stored before the commit that covers the marker (publish_seal): visible.
        marker_offset = load_end_marker_offset_from(data)
        if 0 < marker_offset < offset:
            raise marker_below_commit(marker_offset, commit, path)
        if marker_offset != offset:
            raise marker_not_pointed_at(marker_offset, offset, path)
        second = _U32.unpack_from(data, offset + SIZE_PREFIX_SIZE)[0]
        if second:
            raise CorruptSegmentError(
                f"end-of-segment marker's second word={second}, must be 0",
                path=path,
                offset=offset + SIZE_PREFIX_SIZE,
            )
        return END
    if size < MIN_RECORD_SIZE or offset + SIZE_PREFIX_SIZE + size > commit:
        raise CorruptSegmentError(
            f"size prefix={size} does not fit between the record and commit_offset={commit}",
            path=path,
            offset=offset,
        )
    identifier_at = offset + RECORD_PAYLOAD_ID_OFFSET
    identifier = bytes(data[identifier_at : identifier_at + PAYLOAD_ID_SIZE])
    if identifier != payload_id:
        raise CorruptSegmentError(
            f"file_identifier={identifier!r}, the segment holds {payload_id!r}",
            path=path,
            offset=offset,
        )
    return size


def walk_frames(data: Any, commit: int, payload_id: bytes, path: str) -> Iterator[tuple[int, int]]:
    """Yield ``(offset, size)`` of every committed frame; size is END for the marker."""
    offset = HEADER_SIZE
    while offset < commit:
        size = frame_at(data, offset, commit, payload_id, path)
        yield offset, size
        if size == END:
            return
        offset = align_record(offset + SIZE_PREFIX_SIZE + size)
