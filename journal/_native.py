"""The one place that decides: the compiled extensions or the pure-Python path.

The extensions (journal._cwriter, the writer's hot path and the shared-memory
atomics; journal._creader, the reader's) are built by ``pip install`` when a C
compiler is there (setup.py) and used automatically when they import. The
pure-Python path is the reference implementation and the fallback: it is used when
an extension cannot be imported (silently: ``describe()``, ``journal --version`` and
``journal.NATIVE`` say which path is in use), and always when the environment has
``JOURNAL_PURE_PYTHON=1``, read once, at import.

Every other module asks here (``cwriter``/``creader``: the module or None), never
imports an extension itself.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final

PURE_PYTHON_VARIABLE: Final = "JOURNAL_PURE_PYTHON"
PURE_PYTHON_FORCED: Final = os.environ.get(PURE_PYTHON_VARIABLE, "") not in ("", "0")

_why_not: dict[str, str] = {}


def _load(name: str) -> ModuleType | None:
    """The extension ``journal.<name>``, or None (the reason kept for ``describe``)."""
    if PURE_PYTHON_FORCED:
        _why_not[name] = f"{PURE_PYTHON_VARIABLE}=1"
        return None
    try:
        return importlib.import_module(f"journal.{name}")
    except ImportError as error:  # not built (no compiler), or built for another Python
        _why_not[name] = f"not importable: {error}"
        return None


cwriter: Final = _load("_cwriter")
"""journal._cwriter: the writer's hot path, the atomics and futex calls; or None."""
creader: Final = _load("_creader")
"""journal._creader: the Reader's next-record step; or None."""

NATIVE: Final = cwriter is not None
"""Whether the compiled writer and atomics are in use (then the journal publishes
with real release stores and fences, and runs on little-endian aarch64 too)."""
NATIVE_READER: Final = creader is not None


def describe() -> str:
    """Which path is in use, for ``journal --version`` and logs: ``writer: compiled,
    reader: pure Python (JOURNAL_PURE_PYTHON=1)``."""
    parts = []
    for role, name, module in (("writer", "_cwriter", cwriter), ("reader", "_creader", creader)):
        how = "compiled" if module is not None else f"pure Python ({_why_not[name]})"
        parts.append(f"{role}: {how}")
    return ", ".join(parts)
