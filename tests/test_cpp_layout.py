"""The C++ layout header (radar_reader/.../layout.hpp) and journal/_layout.py agree."""

from __future__ import annotations

import subprocess

from journal import _layout as F
from tests._cpp import program


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
