"""What a replicated journal looks like in JetStream: subjects, headers, message ids.

One NATS message carries a run of record frames of one segment of one incarnation of
one journal, exactly the bytes between two record boundaries of that segment (each
record, then its zero padding to 8 bytes): the mirror appends them as they are. The
headers say where the run lies in its source, so that the mirror can check that it
continues what it holds, and the message id names that place, so that JetStream
drops a second copy of it (docs/REPLICATION.md has the whole scheme and why it is
exactly-once). No NATS import here: bytes and strings in, bytes and strings out.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from journal import _layout as F
from journal._layout import HEADER_SIZE
from journal._names import check_stream_name

DEFAULT_STREAM: Final = "JOURNAL"
DEFAULT_SUBJECT_PREFIX: Final = "journal"

# Header names (NATS headers are case-sensitive as sent; nats-py keeps them).
MSG_ID: Final = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQUENCE: Final = "Nats-Expected-Last-Subject-Sequence"
JOURNAL: Final = "Journal-Name"
INCARNATION: Final = "Journal-Incarnation"
SEGMENT: Final = "Journal-Segment"
START: Final = "Journal-Start"
END: Final = "Journal-End"
RECORDS: Final = "Journal-Records"
PREVIOUS: Final = "Journal-Previous"
SEGMENT_SIZE: Final = "Journal-Segment-Size"
PAYLOAD: Final = "Journal-Payload"
LAST_TIME: Final = "Journal-Last-Time"
"""The time field (``local_timestamp_ns`` for order books) of the run's last record."""
FIRST_RECORD: Final = "Journal-First-Record"
"""How many records of the run's incarnation the subject held before the run: a
mirror subtracts what it copied from the subject's last run's end to know how many
records it is behind (its lag), journal by journal."""
SOURCE: Final = "Journal-Source"
"""Which journal this is: ``HOST:ABSOLUTE_PATH`` of the replicated directory. Two
journals of one name (two hosts, or /a/feed and /b/feed) map to one subject; this
tells them apart (the replicator refuses a subject another source publishes)."""


def source_identity(path: Path) -> str:
    """``HOST:ABSOLUTE_PATH`` of journal directory ``path``."""
    return f"{socket.gethostname()}:{path.absolute()}"


_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*", re.ASCII)
_NAME_DOT: Final = "%2E"
"""'.' separates subject tokens; a journal name's dots become this (journal names
never hold '%', so the mapping is one to one)."""


def default_durable(journal_root: Path) -> str:
    """A mirror's consumer name when none is given: ``mirror-HOST-XXXXXXXX``, of the
    host and the journal root's absolute path (a restart of the mirror goes on with
    its consumer; any other mirror, here or elsewhere, has its own: one consumer's
    messages are shared between the mirrors that pull from it)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:24] or "host"
    digest = hashlib.sha256(f"{socket.gethostname()}:{journal_root.absolute()}".encode())
    return f"mirror-{host}-{digest.hexdigest()[:8]}"


def check_subject_prefix(prefix: str) -> str:
    """``prefix`` if it is one or more subject tokens of ``[A-Za-z0-9_-]``, else ValueError."""
    if not _TOKEN.fullmatch(prefix):
        raise ValueError(
            f"subject prefix {prefix!r}: use tokens of [A-Za-z0-9_-] separated by '.' "
            "(no wildcard, no space)"
        )
    return prefix


def check_stream(stream: str) -> str:
    """A JetStream stream name: ``[A-Za-z0-9_-]``, at most 64 characters."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream, re.ASCII):
        raise ValueError(f"stream name {stream!r}: use 1-64 of [A-Za-z0-9_-]")
    return stream


def subject(prefix: str, journal: str) -> str:
    """The subject of journal directory name ``journal``: ``<prefix>.<name>``, its
    dots written %2E so that the name is one token."""
    return f"{prefix}.{check_stream_name(journal).replace('.', _NAME_DOT)}"


def stream_subjects(prefix: str) -> str:
    """The subjects a stream of journals holds: one token after the prefix."""
    return f"{prefix}.*"


def message_id(journal: str, incarnation_ns: int, segment: int, start: int, end: int) -> str:
    """The place of a run: the same run published twice has the same id (and the
    empty run that seals a segment another than the records that follow it)."""
    return f"{journal}:{incarnation_ns}:{segment}:{start}:{end}"


@dataclass(frozen=True, slots=True)
class Run:
    """Where a message's frames lie in its source journal (its headers, parsed)."""

    journal: str
    incarnation_ns: int
    segment: int
    start: int
    end: int
    records: int
    previous: tuple[int, int] | None
    """``(segment, offset)`` where the message before it on the subject ended; None
    for the first message of an incarnation."""
    segment_size: int
    payload_id: bytes
    last_time_ns: int
    source: str = ""
    """``source_identity`` of the journal it comes from ("": a replicator before it)."""
    first_record: int = -1
    """Records of the incarnation on the subject before this run (-1: not said, a
    replicator before it)."""

    @property
    def next_record(self) -> int:
        """``first_record`` of the run after it on the subject (-1: not known)."""
        return -1 if self.first_record < 0 else self.first_record + self.records

    def headers(self) -> dict[str, str]:
        previous = "-" if self.previous is None else f"{self.previous[0]}:{self.previous[1]}"
        headers = {
            MSG_ID: message_id(
                self.journal, self.incarnation_ns, self.segment, self.start, self.end
            ),
            JOURNAL: self.journal,
            INCARNATION: str(self.incarnation_ns),
            SEGMENT: str(self.segment),
            START: str(self.start),
            END: str(self.end),
            RECORDS: str(self.records),
            PREVIOUS: previous,
            SEGMENT_SIZE: str(self.segment_size),
            PAYLOAD: self.payload_id.decode("ascii"),
            LAST_TIME: str(self.last_time_ns),
        }
        if self.source:
            headers[SOURCE] = self.source
        if self.first_record >= 0:
            headers[FIRST_RECORD] = str(self.first_record)
        return headers

    @property
    def first_of_segment(self) -> bool:
        return self.start == HEADER_SIZE


class BadHeaders(ValueError):
    """A message on a journal subject whose headers are not this scheme's."""


def parse_run(headers: dict[str, str] | None, size: int) -> Run:
    """The Run of a message of ``size`` payload bytes; BadHeaders says what is wrong."""
    if not headers:
        raise BadHeaders("no headers: not a message of journal replicate")
    try:
        journal = headers[JOURNAL]
        check_stream_name(journal)
        previous_text = headers[PREVIOUS]
        if previous_text == "-":
            previous = None
        else:
            segment_text, _, offset_text = previous_text.partition(":")
            previous = (int(segment_text), int(offset_text))
        run = Run(
            journal=journal,
            incarnation_ns=int(headers[INCARNATION]),
            segment=int(headers[SEGMENT]),
            start=int(headers[START]),
            end=int(headers[END]),
            records=int(headers[RECORDS]),
            previous=previous,
            segment_size=int(headers[SEGMENT_SIZE]),
            payload_id=headers[PAYLOAD].encode("ascii"),
            last_time_ns=int(headers[LAST_TIME]),
            source=headers.get(SOURCE, ""),
            first_record=int(headers.get(FIRST_RECORD, -1)),
        )
    except KeyError as error:
        raise BadHeaders(f"header {error.args[0]} missing") from None
    except (ValueError, UnicodeEncodeError) as error:
        raise BadHeaders(f"a header does not parse: {error}") from None
    segment_size = run.segment_size
    if (
        run.segment < 0
        or run.incarnation_ns <= 0
        or run.records < 0
        or run.first_record < -1
        or (run.previous is not None and min(run.previous) < 0)
        or not F.MIN_SEGMENT_SIZE <= segment_size < F.MAX_SEGMENT_SIZE
        or segment_size % F.PAGE_SIZE
        or run.end > segment_size
        or len(run.payload_id) != 4
        or not run.payload_id.isalnum()
    ):
        raise BadHeaders(
            f"{SEGMENT}={run.segment} {INCARNATION}={run.incarnation_ns} {RECORDS}="
            f"{run.records} {FIRST_RECORD}={run.first_record} {PREVIOUS}={previous_text} "
            f"{SEGMENT_SIZE}={segment_size} "
            f"{PAYLOAD}={headers[PAYLOAD]!r}: not a journal's (segment, incarnation, "
            "records >= 0, first record >= 0, segment size a multiple of the page size, "
            "4-letter payload id)"
        )
    # An empty run (START = END at a segment's start) seals the segment before it.
    if run.end - run.start != size or run.start < HEADER_SIZE or run.end % 8 or run.start % 8:
        raise BadHeaders(f"{START}={run.start} {END}={run.end} but the payload holds {size} bytes")
    if headers.get(MSG_ID) != message_id(
        journal, run.incarnation_ns, run.segment, run.start, run.end
    ):
        raise BadHeaders(f"{MSG_ID}={headers.get(MSG_ID)!r} does not name the run's place")
    return run
