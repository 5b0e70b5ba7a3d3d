"""The C++ layout headers (radar_reader/.../layout.hpp, metrics.hpp) and their Python
twins (journal/_layout.py, journal/_metrics_layout.py) agree."""

from __future__ import annotations

import subprocess

from journal import _layout as F
from journal import _metrics_layout as M
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
