"""Read-only inspection of a journal directory: what ``journal info`` and ``verify`` show.

These walk every committed frame of every segment; they are tools, not hot paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from journal import _layout as F
from journal._decode import read_record
from journal._errors import CorruptSegmentError, JournalError
from journal._frames import END, check_commit, walk_frames
from journal._lock import writer_alive
from journal._segment import MappedSegment, SegmentHeader, segment_indices, segment_path
from journal._verify import SCHEMAS, TableSchema, VerificationError


@dataclass(frozen=True, slots=True)
class SegmentSummary:
    index: int
    path: str
    header: SegmentHeader
    commit_offset: int
    records: int
    sealed: bool


@dataclass(slots=True)
class JournalSummary:
    path: str
    writer_alive: bool | None
    segments: list[SegmentSummary] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(segment.records for segment in self.segments)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    segments: int
    records: int
    first_error: str | None


def _open_checked(path: Path, index: int) -> tuple[MappedSegment, int]:
    segment = MappedSegment.open_checked(path.parent, index, None)
    commit = segment.load_commit_acquire()
    check_commit(commit, len(segment.map), str(path))
    return segment, commit


def _segments(directory: Path) -> Iterator[tuple[int, Path]]:
    if not directory.is_dir():
        raise JournalError(f"{directory} is not a journal directory (no such directory)")
    indices = segment_indices(directory)
    if not indices:
        raise JournalError(f"{directory} holds no segment files (*{F.SEGMENT_SUFFIX})")
    for expected, index in enumerate(indices, start=indices[0]):
        if index != expected:
            raise CorruptSegmentError(
                f"segment {expected} is missing between {expected - 1} and {index}",
                path=str(directory),
            )
        yield index, segment_path(directory, index)


def summarize(directory: str | os.PathLike[str]) -> JournalSummary:
    """Segments, commit offsets and record counts; raises on framing errors."""
    directory = Path(directory)
    summary = JournalSummary(str(directory), writer_alive(directory))
    for index, path in _segments(directory):
        segment, commit = _open_checked(path, index)
        with segment:
            frames = list(walk_frames(segment.map, commit, segment.header.payload_id, str(path)))
        sealed = bool(frames) and frames[-1][1] == END
        summary.segments.append(
            SegmentSummary(index, str(path), segment.header, commit, len(frames) - sealed, sealed)
        )
    return summary


def verify(directory: str | os.PathLike[str]) -> VerifyReport:
    """Walk every record: framing, FlatBuffers verification, decoding, segment chain.

    Stops at the first problem and reports it with its file and offset.
    """
    directory = Path(directory)
    segments = records = 0
    try:
        indices = list(_segments(directory))
        for position, (index, path) in enumerate(indices):
            segment, commit = _open_checked(path, index)
            segments += 1
            with segment:
                payload_id = segment.header.payload_id
                schema = SCHEMAS.get(payload_id)
                sealed = False
                for offset, size in walk_frames(segment.map, commit, payload_id, str(path)):
                    if size == END:
                        if not segment.is_sealed():
                            raise CorruptSegmentError(
                                "end marker here, but the header's end_marker_offset "
                                "does not point at it",
                                path=str(path),
                                offset=offset,
                            )
                        sealed = True
                        break
                    end = offset + F.SIZE_PREFIX_SIZE + size
                    if schema is None:
                        raise CorruptSegmentError(
                            f"payload_id={payload_id!r} has no known schema to verify",
                            path=str(path),
                            offset=F.PAYLOAD_ID_OFFSET,
                        )
                    _verify_record(segment, offset, end, schema)
                    records += 1
                if not sealed and position != len(indices) - 1:
                    raise CorruptSegmentError(
                        f"segment {index} has no end-of-segment marker but segment "
                        f"{index + 1} follows it (a writer reopening the journal repairs this)",
                        path=str(path),
                        offset=commit,
                    )
    except CorruptSegmentError as error:
        return VerifyReport(segments, records, str(error))
    return VerifyReport(segments, records, None)


def _verify_record(segment: MappedSegment, offset: int, end: int, schema: TableSchema) -> None:
    try:
        read_record(segment.map, offset, end, (segment.index, offset), schema, verify=True)
    except VerificationError as error:
        raise CorruptSegmentError(
            f"record fails FlatBuffers verification: {error}",
            path=str(segment.path),
            offset=offset + error.offset,
        ) from None
    except UnicodeDecodeError as error:
        raise CorruptSegmentError(
            f"record has a string that is not UTF-8 ({error.reason})",
            path=str(segment.path),
            offset=offset,
        ) from None
