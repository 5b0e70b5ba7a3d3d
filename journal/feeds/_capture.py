"""Reads cryptofeed capture files: one recorded event per line, with its local time.

The format (see the README next to the captures):

    URL <-> EPOCH            a websocket connection opened at EPOCH (seconds)
    URL <- EPOCH: TEXT       a message we sent (a subscription)
    EPOCH: TEXT              a message received at EPOCH
    URL -> EPOCH: BODY       a REST response received at EPOCH (the ``.http.`` files)

TEXT and BODY are JSON; Upbit frames are written as a Python bytes literal
(``b'{...}'``), read with ``ast.literal_eval`` (literals only, never ``eval``).
Every line is parsed, whatever the importer later does with it, so a damaged capture
fails at its first bad line, with file and line number, rather than part-way through
a book. Empty lines carry nothing (every capture ends with some) and are passed over.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from journal.feeds._errors import CaptureFormatError


class LineKind(Enum):
    CONNECTED = "<->"
    SENT = "<-"
    RESPONSE = "->"
    RECEIVED = ""


_LINE = re.compile(
    r"(?:(?P<url>\S+) (?P<arrow><->|<-|->) )?(?P<seconds>\d+)(?:\.(?P<fraction>\d+))?"
    r"(?:: (?P<text>.*))?"
)
_BYTES_LITERAL_START = ("b'", 'b"')


@dataclass(frozen=True, slots=True)
class CaptureLine:
    """One recorded event; ``payload`` is the decoded JSON (None for CONNECTED)."""

    kind: LineKind
    received_ns: int  # the recorded EPOCH, exactly (the decimal string, not a float)
    url: str | None  # None for RECEIVED: the connection is the file's
    payload: Any
    path: str
    line_number: int


def read_capture(path: str | os.PathLike[str]) -> Iterator[CaptureLine]:
    """The events of one capture file in file order; CaptureFormatError at a bad line."""
    name = os.fspath(path)
    with open(name, "rb") as lines:  # decoded line by line: an error names its line
        for line_number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\n")
            except UnicodeDecodeError as error:
                raise CaptureFormatError(
                    name, line_number, f"not UTF-8 text ({error}): is this a capture file?"
                ) from None
            if text:
                yield parse_line(text, name, line_number)


def parse_line(text: str, path: str, line_number: int) -> CaptureLine:
    """One line of a capture; ``path`` and ``line_number`` only name it in errors."""
    match = _LINE.fullmatch(text)
    if match is None:
        raise CaptureFormatError(
            path,
            line_number,
            f"not a capture line: {text[:80]!r}; expected 'URL <-> EPOCH', 'URL <- EPOCH: TEXT', "
            "'EPOCH: TEXT' or 'URL -> EPOCH: BODY'",
        )
    kind = LineKind(match["arrow"] or "")
    body = match["text"]
    if (kind is LineKind.CONNECTED) != (body is None):
        expected = "nothing after" if kind is LineKind.CONNECTED else "': TEXT' after"
        raise CaptureFormatError(
            path, line_number, f"{kind.name.lower()} line with {expected} its EPOCH expected"
        )
    fraction = (match["fraction"] or "")[:9]  # beyond ns: not representable, not recorded
    received_ns = int(match["seconds"]) * 1_000_000_000 + int(fraction.ljust(9, "0"))
    payload = None if body is None else _decode(body, path, line_number)
    return CaptureLine(kind, received_ns, match["url"], payload, path, line_number)


def _decode(body: str, path: str, line_number: int) -> Any:
    """JSON, or JSON inside a Python bytes literal (Upbit frames)."""
    if body.startswith(_BYTES_LITERAL_START):
        try:
            frame = ast.literal_eval(body)
        except (SyntaxError, ValueError, RecursionError) as error:
            raise CaptureFormatError(
                path, line_number, f"not a Python bytes literal ({error}): {body[:80]!r}"
            ) from None
        if not isinstance(frame, bytes):
            raise CaptureFormatError(
                path,
                line_number,
                f"a {type(frame).__name__} literal where a bytes literal b'...' was expected",
            )
        try:
            body = frame.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CaptureFormatError(
                path, line_number, f"bytes literal is not UTF-8 text ({error})"
            ) from None
    try:
        return json.loads(body)
    except ValueError as error:
        raise CaptureFormatError(
            path, line_number, f"message is not JSON ({error}): {body[:80]!r}"
        ) from None
