"""Where `make setup` puts the C++ programs the tests drive (release and sanitizer builds)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

BUILD = REPO / "build"


def program(name: str, build: str = "release") -> Path:
    """The built program; a missing one fails the test with the command that builds it."""
    path = BUILD / build / name
    assert path.exists(), f"{path} is missing: run 'make setup' (it builds the C++ side)"
    return path
