"""The extensions cross-compiled for aarch64, where the journal's ordering needs fences.

With Debian's cross compiler (``apt-get install gcc-aarch64-linux-gnu``; skipped
without it): every C source of the extensions compiles with setup.py's flags
(-Werror included) against this Python's headers (the LP64, little-endian layout of
CPython's objects is the same), the shared-memory accesses come out as real
acquire/release instructions and barriers (``ldar``, ``stlr``, ``dmb ish``), and
the handshake's litmus test (tests/litmus_handshake.c), built for aarch64, runs
under qemu-user (if installed) with no wake missed.

What this cannot check: the extension running inside an aarch64 CPython (there is
none here), or the ordering of real aarch64 hardware (qemu translates to x86-64).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

CROSS_GCC = shutil.which("aarch64-linux-gnu-gcc")
OBJDUMP = shutil.which("aarch64-linux-gnu-objdump")
QEMU = shutil.which("qemu-aarch64")
SOURCES = sorted((REPO / "journal" / "_c").glob("*.c"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CROSS_GCC is None or OBJDUMP is None,
        reason="no aarch64 cross compiler (apt-get install gcc-aarch64-linux-gnu)",
    ),
]


def setup_py_flags() -> list[str]:
    """C_FLAGS as setup.py gives them to every extension."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "C_FLAGS" for t in node.targets
        ):
            flags: list[str] = ast.literal_eval(node.value)
            return flags
    raise AssertionError("setup.py has no C_FLAGS")


def cross_compile(source: Path, out: Path) -> str:
    """Compile ``source`` for aarch64; its disassembly."""
    assert CROSS_GCC is not None and OBJDUMP is not None
    includes = [sysconfig.get_paths()["include"], np.get_include(), str(source.parent)]
    command = [CROSS_GCC, *setup_py_flags(), "-fPIC", *(f"-I{path}" for path in includes)]
    done = subprocess.run(
        [*command, "-c", str(source), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return subprocess.run(
        [OBJDUMP, "-d", str(out)], capture_output=True, text=True, check=True
    ).stdout


def instructions(disassembly: str) -> set[str]:
    return set(re.findall(r"^\s+[0-9a-f]+:\s+[0-9a-f]{8}\s+(\w+)", disassembly, re.M))


def test_sources_are_there() -> None:
    assert REPO / "journal" / "_c" / "cwriter.c" in SOURCES


@pytest.mark.parametrize("source", SOURCES, ids=lambda path: path.name)
def test_each_extension_compiles_for_aarch64_with_real_barriers(
    source: Path, tmp_path: Path
) -> None:
    used = instructions(cross_compile(source, tmp_path / f"{source.stem}.o"))
    assert "ldar" in used or "ldapr" in used, "the commit is acquire-loaded"
    if source.name == "cwriter.c":
        assert "stlr" in used, "the commit is release-stored"
        assert "dmb" in used, "the futex handshake's seq_cst fences"


@pytest.mark.skipif(QEMU is None, reason="no qemu-user (apt-get install qemu-user)")
def test_the_handshake_litmus_runs_on_aarch64_without_a_missed_wake(tmp_path: Path) -> None:
    assert CROSS_GCC is not None and QEMU is not None
    program = tmp_path / "litmus_handshake"
    flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-static"]
    source = REPO / "tests" / "litmus_handshake.c"
    subprocess.run(
        [CROSS_GCC, *flags, f"-I{REPO / 'journal' / '_c'}", str(source), "-o", str(program)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    done = subprocess.run(
        [QEMU, str(program), "300000", "fenced"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "missed 0\n"
