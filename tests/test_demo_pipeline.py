"""``journal demo`` end to end: feed, radar and compactor processes for a few seconds;
every book written must have been read by the radar and archived, and nothing may
stay in /dev/shm, whether the demo runs out its time or is stopped with Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._cpp import program

SHM = Path("/dev/shm")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def demo_argv(output: Path, seconds: float, rate: int = 2000) -> list[str]:
    return [
        sys.executable,
        "-m",
        "journal.cli",
        "demo",
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--output",
        str(output),
        "--radar",
        str(program("radar")),
    ]


def figure(stdout: str, label: str) -> int:
    match = re.search(rf"^{label}\s+([\d,]+)", stdout, re.MULTILINE)
    assert match, f"no {label!r} line in the summary:\n{stdout}"
    return int(match[1].replace(",", ""))


def demo_workspaces() -> set[str]:
    return {path.name for path in SHM.glob("journal-demo-*")}


def check_summary(stdout: str, output: Path) -> int:
    written = figure(stdout, "books written")
    assert written > 0, stdout
    assert figure(stdout, "read by radar") == written, stdout
    assert figure(stdout, "archived") == written, stdout
    assert "every book written was read by the radar and archived" in stdout
    assert re.search(r"BTC\s+upbit/binance\s+[+-]\d", stdout), stdout  # a premium was seen
    chart = Path(re.search(r"^chart\s+(\S+)", stdout, re.MULTILINE)[1])
    assert chart.is_relative_to(output) and chart.read_bytes()[:8] == PNG_MAGIC
    return written


@pytest.mark.slow
def test_the_demo_runs_its_time_and_every_book_is_read_and_archived(tmp_path: Path) -> None:
    before = demo_workspaces()
    done = subprocess.run(
        demo_argv(tmp_path, 4), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = check_summary(done.stdout, tmp_path)
    assert written >= 2000, "4 s at 2,000 books/s wrote less than a second's worth"
    assert demo_workspaces() == before, "the demo left its journals in /dev/shm"


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_in_order_losing_nothing(tmp_path: Path) -> None:
    before = demo_workspaces()
    demo = subprocess.Popen(
        demo_argv(tmp_path, 60), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(4)
        assert demo.poll() is None, demo.communicate()
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, stdout + stderr
    assert "demo: stopping" in stderr
    check_summary(stdout, tmp_path)
    assert demo_workspaces() == before, "the demo left its journals in /dev/shm"
