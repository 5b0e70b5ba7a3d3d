"""The C++ layout headers (radar_reader/.../layout.hpp, metrics.hpp) and their Python
twins (journal/_layout.py, journal/_metrics_layout.py) agree."""

from __future__ import annotations

import re
import subprocess

from journal import _layout as F
from journal import _metrics_layout as M
from tests._cpp import program
from tests.conftest import REPO


def test_every_cpp_constant_equals_its_python_twin() -> None:
    printed = subprocess.run(
        [str(program("layout_test")), "--print"], capture_output=True, text=True, check=True
    ).stdout
    constants = dict(line.split(" ", 1) for line in printed.splitlines())
    assert len(constants) >= 30
    for name, text in constants.items():
        python = getattr(F, name)
        if isinstance(python, bytes):
            python = python.decode("ascii")
        assert str(python) == text, f"{name}: Python {python!r}, C++ {text!r}"


def test_every_cpp_metrics_constant_equals_its_python_twin() -> None:
    printed = subprocess.run(
        [str(program("metrics_test")), "--print"], capture_output=True, text=True, check=True
    ).stdout
    constants = dict(line.split(" ", 1) for line in printed.splitlines())
    assert len(constants) >= 40
    for name, text in constants.items():
        python = getattr(M, name)
        if isinstance(python, bytes):
            python = python.decode("ascii")
        assert str(python) == text, f"{name}: Python {python!r}, C++ {text!r}"


def test_payload_ids_and_shared_words_are_spelled_only_in_their_headers() -> None:
    """Payload identifiers come from layout.hpp, and the commit, end marker and futex
    sleepers words are touched only in atomics.hpp (issue #11): no other header
    spells an identifier's characters or reaches a shared header word by itself (in
    the mapped header: a SegmentHeader filled before its file is named is not shared)."""
    include = REPO / "radar_reader" / "include" / "radar_reader"
    identifier = re.compile(r"'[A-Z]',\s*'[A-Z]',\s*'[A-Z]',\s*'\d'|\"(OBK1|RDR1)\"")
    shared = re.compile(
        r"(->|\)\.)(end_marker_offset|futex_sleepers|commit_offset)\b"
        r"|\+\s*(layout::)?k(EndMarkerOffset|FutexSleepers|CommitOffset)Offset\b"
    )
    for header in sorted(include.glob("*.hpp")):
        code = "\n".join(line.split("//")[0] for line in header.read_text().splitlines())
        if header.name != "layout.hpp":
            assert not identifier.search(code), f"{header.name} spells a payload id"
        if header.name not in ("layout.hpp", "atomics.hpp"):
            assert not shared.search(code), f"{header.name} touches a shared header word"
