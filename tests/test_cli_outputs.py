"""Outputs are written whole under a temporary name and renamed over their path:
a path that is not a regular file (a device, a symbolic link) would be destroyed,
so it is refused (the review replaced /dev/null with a file as root)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import journal
from tests.conftest import ASKS, BIDS, REPO


def _journal_command(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def books(journal_dir: Path) -> Path:
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    return journal_dir


@pytest.mark.parametrize("kind", ["device", "symlink"])
@pytest.mark.parametrize("command", ["export", "metrics"])
def test_an_output_that_is_not_a_regular_file_is_refused(
    books: Path, shm_dir: Path, kind: str, command: str
) -> None:
    if kind == "device":
        target = shm_dir / "null"
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    else:
        (shm_dir / "elsewhere").write_text("kept")
        target = shm_dir / "link.out"
        target.symlink_to(shm_dir / "elsewhere")
    before = os.lstat(target)
    if command == "export":  # a dataset directory, renamed over its path
        done = _journal_command("export", books, "--parquet", target, "--overwrite")
        refusal = "give the directory itself" if kind == "symlink" else "give a new path"
    else:
        done = _journal_command("metrics", books, "--output", target)
        refusal = "give the path of a regular file"
    assert done.returncode == 2, done
    assert refusal in done.stderr and "Traceback" not in done.stderr
    after = os.lstat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if kind == "symlink":
        assert (shm_dir / "elsewhere").read_text() == "kept"
