"""Another user for the tests of paths in a world-writable tmpfs: what "nobody"
(uid 65534) plants there, made by a child process that setuid()s to it before it
runs a plain ``mkdir`` or ``ln``. Needs root; tests skip with the reason otherwise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

import pytest

NOBODY: Final = 65534


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: files of another user (nobody) are made with setuid()")


def as_nobody(*command: str | Path) -> None:
    """Run ``command`` as uid and gid 65534, no supplementary groups; it must succeed."""
    done = subprocess.run(
        [str(part) for part in command],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, f"{command} as nobody: {done.stderr}"


def shared_directory(shm_dir: Path) -> Path:
    """``shm_dir/shared``: root-owned, mode 1777 like /dev/shm itself, so nobody can
    plant things in it (``shm_dir`` opened to 0755 for nobody to get there). The
    shm_dir fixture removes it all, nobody's files too (root may)."""
    require_root()
    shm_dir.chmod(0o755)
    shared = shm_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    return shared
