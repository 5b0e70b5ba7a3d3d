"""One error hierarchy for the journal, with ``key=value`` context in every message."""

from __future__ import annotations


class JournalError(Exception):
    """Base of every error the journal raises on purpose."""


class InvalidRecordError(JournalError, ValueError):
    """A record was refused before any byte of it was written.

    Also a ``ValueError``: callers that validate input with ``except ValueError``
    catch it without knowing the journal.
    """


class RecordTooLargeError(InvalidRecordError):
    """The record is larger than one segment can hold; records are never split."""


class CorruptSegmentError(JournalError):
    """Bytes in a segment break the format; the message names the file and offset."""

    def __init__(self, message: str, *, path: str = "", offset: int | None = None) -> None:
        where = f" (file={path}" + (f" offset={offset})" if offset is not None else ")")
        super().__init__(message + (where if path else ""))
        self.path = path
        self.offset = offset


class JournalFullError(JournalError, OSError):
    """The filesystem under the journal has no room for the next segment."""


class JournalGoneError(JournalError):
    """The journal this writer appends to is no longer at its path: its directory or
    its open segment was removed or replaced (a wiped tmpfs, an operator's ``rm``),
    or the segment was truncated. Nothing more is written through this writer; a
    new ``Writer`` on the path starts a new incarnation (docs/FORMAT.md)."""


class WriterLockedError(JournalError):
    """Another live process owns the journal as its writer."""


class UnsupportedPlatformError(JournalError):
    """The writer's publication protocol is not proven for this CPU architecture."""


class CorruptArchiveError(JournalError):
    """Bytes in an archive file break the format or fail their checksum; the message
    names the file and the offset in it (of the field, or of the zstd frame)."""

    def __init__(self, message: str, *, path: str = "", offset: int | None = None) -> None:
        where = f" (file={path}" + (f" offset={offset})" if offset is not None else ")")
        super().__init__(message + (where if path else ""))
        self.path = path
        self.offset = offset


class ArchiveFullError(JournalError, OSError):
    """The filesystem under the archive has no room: the segment stays in tmpfs."""
