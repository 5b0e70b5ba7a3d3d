"""Where `make setup` puts the C++ programs the tests drive (release and sanitizer
builds), and the ways the radar's tests run it and read what it did."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from journal import _metrics_layout as M
from tests.conftest import REPO

BUILD = REPO / "build"
RADAR_DEADLINE_S = 20.0  # for the radar to read what it is given; never reached when it works


def program(name: str, build: str = "release") -> Path:
    """The built program; a missing one fails the test with the command that builds it."""
    path = BUILD / build / name
    assert path.exists(), f"{path} is missing: run 'make setup' (it builds the C++ side)"
    return path


def radar(
    *args: str, build: str = "release", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The radar run to its end with ``args``; its output kept, its status not checked."""
    return subprocess.run(
        [str(program("radar", build)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def summary_number(stderr: str, pattern: str) -> int:
    """The number ``pattern`` (one group) finds in the radar's summary, commas dropped."""
    match = re.search(pattern, stderr)
    assert match, f"{pattern!r} not in the radar's summary:\n{stderr}"
    return int(match[1].replace(",", ""))


def records_read(journal_dir: Path, pid: int) -> int | None:
    """The radar's records_total in its reader metrics file, or None if not there."""
    path = journal_dir / M.READERS_DIRECTORY / f"radar-{pid}{M.METRICS_SUFFIX}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    offset = M.READER_RECORDS_TOTAL_OFFSET
    return int.from_bytes(data[offset : offset + 8], "little") if len(data) > offset else None


def wait_until_read(proc: subprocess.Popen[str], journal_dir: Path, count: int) -> None:
    """Until the radar's registration says it read ``count`` books (or it died)."""
    deadline = time.monotonic() + RADAR_DEADLINE_S
    while records_read(journal_dir, proc.pid) != count:
        if proc.poll() is not None:
            _, stderr = proc.communicate()
            pytest.fail(f"the radar exited with {proc.returncode}: {stderr}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"the radar did not read {count} books of {journal_dir} in {RADAR_DEADLINE_S} s"
            )
        time.sleep(0.005)  # a poll step inside the deadline loop
