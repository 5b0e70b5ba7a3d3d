"""Errors of the feed builders and the capture importer, within journal.JournalError."""

from __future__ import annotations

from journal._errors import JournalError


class FeedError(JournalError):
    """Base of what the feed builders and the capture importer raise on purpose."""


class MessageError(FeedError, ValueError):
    """A venue message without a field its documentation promises, or with a value of
    the wrong type; the capture importer adds the file and line it came from."""


class CaptureFormatError(FeedError, ValueError):
    """A capture line that breaks the capture format or carries a bad message.

    The message starts with ``FILE:LINE:`` so that editors and terminals jump to it.
    """

    def __init__(self, path: str, line_number: int, problem: str) -> None:
        super().__init__(f"{path}:{line_number}: {problem}")
        self.path = path
        self.line_number = line_number
