"""Journal and stream names that cannot escape their root directory."""

from __future__ import annotations

import re
from pathlib import Path

_STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_stream_name(stream: str) -> str:
    """Return ``stream`` if it is one safe path component, else raise ValueError.

    Allowed: letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit,
    at most 128 characters; so no ``/``, no ``..``, no hidden or empty names.
    """
    if not isinstance(stream, str) or not _STREAM_NAME.fullmatch(stream):
        raise ValueError(
            f"invalid stream name {stream!r}: use 1-128 of [A-Za-z0-9._-], "
            "starting with a letter or digit (no '/', no '..')"
        )
    return stream


def stream_path(root: str | Path, stream: str) -> Path:
    """The journal directory of ``stream`` under ``root``, refusing names that escape it."""
    return Path(root) / check_stream_name(stream)
