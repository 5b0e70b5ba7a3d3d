"""Shared fixtures: real journal directories in /dev/shm, removed after each test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._procs import Children

SHM = Path("/dev/shm")
REPO = Path(__file__).resolve().parent.parent
# Real exchange captures (cryptofeed's sample data, unchanged; see its README.md
# and LICENSE.cryptofeed there), kept in the repository so every clone tests them.
CAPTURES = REPO / "tests" / "data" / "exchange-captures"


def ten_levels(best: float, step: float, side: str) -> list[list[float]]:
    """A sorted 10-level book side: bids descend from ``best``, asks ascend."""
    sign = -1.0 if side == "bids" else 1.0
    return [[best + sign * step * i, 1.0 + i] for i in range(10)]


BIDS = ten_levels(100.0, 0.5, "bids")
ASKS = ten_levels(100.5, 0.5, "asks")


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory in /dev/shm (tmpfs), removed with everything in it."""
    path = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (e.g. "512k") mounted at ``mountpoint``, unmounted after;
    skips the test where mounting is not permitted."""
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr}")
    try:
        yield mountpoint
    finally:
        unmounted = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True)
        if unmounted.returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@pytest.fixture
def children(shm_dir: Path) -> Iterator[Children]:
    """Child processes (tests/_procs.py), all killed before ``shm_dir`` is removed."""
    kids = Children()
    try:
        yield kids
    finally:
        kids.close_all()


@pytest.fixture
def journal_dir(shm_dir: Path) -> Path:
    """Where a test's journal goes (not created: the Writer creates it)."""
    return shm_dir / "books"
