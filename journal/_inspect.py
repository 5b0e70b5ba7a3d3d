"""Read-only inspection of a journal directory: what ``journal info`` and ``verify`` show.

These walk every committed frame of every segment; they are tools, not hot paths.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from journal import _layout as F
from journal import _metrics_layout as M
from journal._decode import read_record
from journal._errors import CorruptSegmentError, JournalError
from journal._frames import (
    END,
    check_commit,
    commit_cut_short,
    marker_below_commit,
    marker_not_pointed_at,
    walk_frames,
)
from journal._lock import writer_alive
from journal._publish import is_sealed, load_commit_acquire, load_end_marker_offset
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
    notes: tuple[str, ...] = ()
    """States a writer repairs when it opens the journal (or is in the middle of):
    not damage, every committed record is readable."""


# -- the segment chain: which segment may be open ------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentState:
    """A segment's commit_offset and end_marker_offset, as ``load_states`` loaded them."""

    segment: MappedSegment
    commit: int
    end_marker: int
    sealed: bool

    @property
    def empty(self) -> bool:
        return self.commit == F.HEADER_SIZE

    @property
    def seal_interrupted(self) -> bool:
        """end_marker_offset stored, but not the commit that publishes the marker: the
        writer died between the two stores of a seal (or is between them now). The
        segment is open at its commit; a writer reopening the journal clears the
        offset (Writer._recover)."""
        return not self.sealed and self.end_marker != 0 and self.end_marker == self.commit

    def check_commit(self) -> None:
        """CorruptSegmentError unless the commit lies in the segment (to walk up to it)."""
        check_commit(self.commit, len(self.segment.map), str(self.segment.path))

    def check_seal(self, ended: bool) -> None:
        """CorruptSegmentError unless end_marker_offset is 0 (open), the commit (a seal
        interrupted) or 8 below it (sealed), as a writer stores it, and the committed
        frames end with the end marker (``ended``) exactly when it says sealed."""
        path = str(self.segment.path)
        marker = self.end_marker
        if marker and not self.sealed and not self.seal_interrupted:
            if marker < self.commit:
                raise marker_below_commit(marker, self.commit, path)
            raise commit_cut_short(marker, self.commit, path)
        if ended and not self.sealed:
            raise marker_not_pointed_at(marker, self.commit - F.END_MARKER_SIZE, path)
        if self.sealed and not ended:
            raise CorruptSegmentError(
                f"end_marker_offset={marker} and commit_offset={self.commit} say the "
                "segment is sealed, but there is no end-of-segment marker there",
                path=path,
                offset=marker,
            )


def _load_state(segment: MappedSegment) -> SegmentState:
    """The segment's commit (acquire) and seal, as the writer may be changing them.

    The commit is loaded first, as every reader does (``is_sealed``). A non-zero
    end_marker_offset that the commit does not match may be a seal made since by a
    live writer; so the commit is loaded again after it, and then it is the offset
    or 8 past it, since a writer commits up to the marker before it stores its
    offset. Unless a writer reopening the journal cleared the offset meanwhile (a
    seal it interrupted), then appended: the offset is read once more to tell.
    """
    with memoryview(segment.map)[: F.HEADER_SIZE].cast("Q") as words:
        commit = load_commit_acquire(words)
        if is_sealed(words, commit):
            return SegmentState(segment, commit, commit - F.END_MARKER_SIZE, True)
        marker = load_end_marker_offset(words)
        if marker:
            commit = load_commit_acquire(words)
            if is_sealed(words, commit):
                return SegmentState(segment, commit, commit - F.END_MARKER_SIZE, True)
            if commit != marker and load_end_marker_offset(words) != marker:
                marker = 0  # cleared by a writer's recovery: open at this commit
        return SegmentState(segment, commit, marker, False)


def load_states(segments: Sequence[MappedSegment]) -> list[SegmentState]:
    """The states of a journal's consecutive segments, in their order, loaded from the
    newest to the oldest: a writer seals segment N before it commits anything in N+1,
    so if N+1 holds records here, N is sealed here too. (Loaded oldest first, N could
    look open and N+1, loaded after a roll, hold records: damage that is not.)"""
    return [_load_state(segment) for segment in reversed(segments)][::-1]


def chain_break(states: Sequence[SegmentState]) -> tuple[int, CorruptSegmentError] | None:
    """The first of ``states`` (oldest first, consecutive) that is open although it
    is not the newest, and the error that says so; None if there is none but the
    open segment of a roll under way (``roll_pending``), the one before the newest.

    A segment open before one holding records had its commit cut short (the writer
    seals it first): its later records would be skipped. One open before two or
    more empty segments is no roll either: a writer prepares one segment ahead.
    """
    found = None
    holding = None  # the nearest later segment that holds records
    newest = len(states) - 1
    for position in range(newest, -1, -1):
        state = states[position]
        if not state.sealed and position < newest:
            if holding is not None:
                found = (
                    position,
                    _open_too_early(
                        state,
                        f"but segment {holding.segment.index} after it holds records "
                        f"(commit_offset={holding.commit})",
                    ),
                )
            elif position < newest - 1:
                found = (
                    position,
                    _open_too_early(
                        state,
                        f"and segments {state.segment.index + 1}..{states[newest].segment.index} "
                        "after it are all empty (a writer prepares one segment ahead, never more)",
                    ),
                )
        if not state.empty:
            holding = state
    return found


def _open_too_early(state: SegmentState, why: str) -> CorruptSegmentError:
    return CorruptSegmentError(
        f"segment {state.segment.index} is not sealed (commit_offset={state.commit}, "
        f"end_marker_offset={state.end_marker}) {why}: its commit was cut short or its "
        "seal lost, so the records after its commit would be skipped; a writer does not "
        "repair this, restore the segment from a copy",
        path=str(state.segment.path),
        offset=F.COMMIT_OFFSET_OFFSET,
    )


def roll_pending(states: Sequence[SegmentState]) -> bool:
    """Whether the newest segment is empty after an open one: prepared by a writer for
    its next roll (created before the open one is sealed, FORMAT.md "Publishing"),
    which a live writer has most of the time and a dead one leaves behind."""
    return len(states) >= 2 and not states[-2].sealed and states[-1].empty


def open_segments(
    directory: Path, stack: contextlib.ExitStack
) -> tuple[list[MappedSegment], JournalError | None]:
    """Map the journal's segments, oldest first, until one fails to open (returned
    with the error, for the caller to raise once it has read those before it).

    Segments the compactor removed before they were opened are left out if they
    are the oldest (it removes the oldest first); a gap in the indices, a segment
    gone after a later one was found, or one of another incarnation (the journal
    recreated meanwhile), is an error.
    """
    opened: list[MappedSegment] = []
    for index in segment_indices(directory):
        if opened and index != opened[-1].index + 1:
            missing = opened[-1].index + 1
            return opened, CorruptSegmentError(
                f"segment {missing} is missing between {missing - 1} and {index}",
                path=str(directory),
            )
        try:
            segment = MappedSegment.open_checked(directory, index, None)
        except FileNotFoundError:
            if not opened:
                continue
            return opened, JournalError(
                f"{segment_path(directory, index)} was removed while it was being read, "
                f"after segment {opened[-1].index} (the compactor removes the oldest "
                "first): read the journal again"
            )
        except JournalError as error:
            return opened, error
        first = opened[0].header.incarnation_ns if opened else 0
        incarnation = segment.header.incarnation_ns
        if first and incarnation and incarnation != first:
            segment.close()
            return opened, JournalError(
                f"{segment.path} has incarnation_ns={incarnation}, segment "
                f"{opened[0].index} before it {first}: the journal was removed and created "
                "again while it was being read; read it again"
            )
        opened.append(stack.enter_context(segment))
    return opened, None


# -- journal info and journal verify -----------------------------------------------------


def _require_journal(directory: Path) -> None:
    """JournalError naming ``directory`` and what it is, unless it holds segments:
    there is nothing to show or verify yet, which is not "0 records, OK"."""
    absence = journal_absence(directory)
    if absence is not None:
        raise JournalError(absence)


def summarize(directory: str | os.PathLike[str]) -> JournalSummary:
    """Segments, commit offsets and record counts; raises on framing errors."""
    directory = Path(directory)
    _require_journal(directory)
    summary = JournalSummary(str(directory), writer_alive(directory))
    with contextlib.ExitStack() as stack:
        opened, failure = open_segments(directory, stack)
        for state in load_states(opened):
            state.check_commit()
            segment = state.segment
            path = str(segment.path)
            frames = list(walk_frames(segment.map, state.commit, segment.header.payload_id, path))
            ended = bool(frames) and frames[-1][1] == END
            state.check_seal(ended)
            summary.segments.append(
                SegmentSummary(
                    segment.index,
                    path,
                    segment.header,
                    state.commit,
                    len(frames) - ended,
                    state.sealed,
                )
            )
        if failure is not None:
            raise failure
    return summary


def verify(directory: str | os.PathLike[str]) -> VerifyReport:
    """Walk every record: framing, FlatBuffers verification, decoding, segment chain.

    Stops at the first problem and reports it with its file and offset. States a
    writer repairs (a roll or a seal it did not finish) are notes, not problems.
    """
    directory = Path(directory)
    _require_journal(directory)
    alive = bool(writer_alive(directory))
    segments = records = 0
    with contextlib.ExitStack() as stack:
        opened, failure = open_segments(directory, stack)
        try:
            states = load_states(opened)
            broken = chain_break(states)
            for position, state in enumerate(states):
                segments += 1
                state.check_commit()
                for _ in _verified_records(state):
                    records += 1
                if broken is not None and broken[0] == position:
                    raise broken[1]
            if failure is not None:
                raise failure
        except CorruptSegmentError as error:
            return VerifyReport(segments, records, str(error))
    return VerifyReport(segments, records, None, _repair_notes(states, alive))


def _verified_records(state: SegmentState) -> Iterator[int]:
    """Verify the segment's committed records, yielding the offset of each one that
    passes (so that a report counts the good records before a bad one)."""
    segment = state.segment
    path = str(segment.path)
    payload_id = segment.header.payload_id
    schema = SCHEMAS.get(payload_id)
    ended = False
    for offset, size in walk_frames(segment.map, state.commit, payload_id, path):
        if size == END:
            ended = True
            break
        if schema is None:
            raise CorruptSegmentError(
                f"payload_id={payload_id!r} has no known schema to verify",
                path=path,
                offset=F.PAYLOAD_ID_OFFSET,
            )
        _verify_record(segment, offset, offset + F.SIZE_PREFIX_SIZE + size, schema)
        yield offset
    state.check_seal(ended)


def _repair_notes(states: list[SegmentState], writer_alive: bool) -> tuple[str, ...]:
    """What a writer repairs (or, alive, is doing): said, since it is not damage."""
    notes = []
    for state in states:
        if state.seal_interrupted:
            notes.append(
                f"interrupted seal: segment {state.segment.index} has end_marker_offset="
                f"{state.end_marker} but not the commit that publishes the end marker: "
                + (
                    "the writer is sealing it now"
                    if writer_alive
                    else "the writer died between the two stores of sealing it; safe: its "
                    "records end there, and the next writer clears the offset and goes on"
                )
            )
    if roll_pending(states):
        open_index, prepared = states[-2].segment.index, states[-1].segment.index
        if writer_alive:
            notes.append(
                f"segment {prepared} is empty, prepared for the live writer's next roll; "
                f"it writes segment {open_index}"
            )
        else:
            notes.append(
                f"interrupted roll: segment {open_index} is open and segment {prepared} "
                "after it is empty: the writer stopped after preparing its next segment, "
                f"before sealing {open_index}; safe: no record is lost, and the next "
                f"writer resumes in segment {open_index}"
            )
    return tuple(notes)


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


def is_journal(path: Path) -> bool:
    """A directory with segments, a writer lock or writer metrics."""
    if not path.is_dir():
        return False
    return bool(
        segment_indices(path)
        or (path / F.LOCK_FILE_NAME).exists()
        or (path / M.WRITER_METRICS_NAME).exists()
    )


def journals_in(directory: Path) -> list[Path]:
    """The journals directly inside ``directory`` (a root such as /dev/shm/books)."""
    return sorted(child for child in directory.iterdir() if is_journal(child))


def journal_absence(path: Path) -> str | None:
    """Why there is no journal at ``path`` yet, or None if it holds segments.

    What is returned (the path does not exist, or is a directory without segments)
    is what a writer creating the journal there changes: ``journal dump --follow``
    may wait for it, the other commands refuse it. What no writer changes raises
    JournalError: a path that is not a directory, or a directory of journals (the
    root /dev/shm/books given for its journal /dev/shm/books/upbit). An OSError
    (no permission) is left to the caller, which names the path with it.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return f"{path} is not a journal directory: it does not exist"
    if not stat.S_ISDIR(info.st_mode):
        raise JournalError(
            f"{path} is not a directory: give the journal directory, the one holding the "
            f"*{F.SEGMENT_SUFFIX} segment files"
        )
    if segment_indices(path):
        return None
    inside = journals_in(path)
    if inside:
        raise JournalError(
            f"{path} is not a journal directory but holds journals "
            f"({', '.join(journal.name for journal in inside)}): give one of them, "
            f"e.g. {inside[0]}"
        )
    return f"{path} is not a journal directory: it holds no segment files (*{F.SEGMENT_SUFFIX})"
