"""journal/_c/layout.h mirrors the Python layout constants, name for name.

The extension exports every constant of the header (its LAYOUT_CONSTANTS list);
each must equal the Python constant of the same name in the module its prefix
names, and no #define of the header may be missing from that list.
"""

from __future__ import annotations

import re

import pytest

from journal import _layout, _metrics_layout, _native, _orderbook_layout
from tests.conftest import REPO

LAYOUT_H = REPO / "journal" / "_c" / "layout.h"
PREFIXES = {"JL_": _layout, "OBL_": _orderbook_layout, "ML_": _metrics_layout}

needs_extension = pytest.mark.skipif(
    _native.cwriter is None, reason="the compiled extension is not in use"
)


def header_constants() -> list[str]:
    """Every value #define of layout.h (not the guard, not the function-like macros)."""
    names = re.findall(r"^#define ((?:JL|OBL|ML)_\w+)\s", LAYOUT_H.read_text(), re.M)
    return [name for name in names if name != "JOURNAL_LAYOUT_H"]


@needs_extension
def test_every_constant_of_layout_h_equals_the_python_one() -> None:
    assert _native.cwriter is not None
    exported = _native.cwriter.layout()
    assert set(exported) == set(header_constants()), "LAYOUT_CONSTANTS must list every #define"
    for name, value in exported.items():
        prefix = next(p for p in PREFIXES if name.startswith(p))
        python = getattr(PREFIXES[prefix], name.removeprefix(prefix))
        assert value == python, f"layout.h {name}={value!r}, Python {python!r}"


@needs_extension
def test_the_checker_catches_a_constant_that_differs() -> None:
    """What the test above compares: values from the compiled header, not the text."""
    assert _native.cwriter is not None
    exported = _native.cwriter.layout()
    assert exported["JL_COMMIT_OFFSET_OFFSET"] == 256
    assert exported["OBL_HEAD_SIZE"] == _orderbook_layout.HEAD_SIZE == 80
    assert exported["OBL_PAYLOAD_ID"] == b"OBK1"


def test_the_header_names_only_python_constants() -> None:
    """Without the extension too: every name of layout.h exists in Python."""
    for name in header_constants():
        prefix = next(p for p in PREFIXES if name.startswith(p))
        assert hasattr(PREFIXES[prefix], name.removeprefix(prefix)), name
