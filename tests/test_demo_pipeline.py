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

import journal
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


def workspace(first_line: str) -> Path:
    """The demo's journals directory in /dev/shm, from the line it starts with
    (``journal demo: feed -> /dev/shm/journal-demo-XXXX/books -> radar, ...``). The
    test checks this one, not every journal-demo-* there: another demo may be running
    (another test worker, another user)."""
    match = re.search(r"feed -> (\S+)/books -> radar", first_line)
    assert match, f"no workspace in the demo's first line: {first_line!r}"
    path = Path(match[1])
    assert path.parent == SHM and path.name.startswith("journal-demo-"), path
    return path


def premium_seen(results: Path, deadline: float) -> None:
    """Until the radar has published a kimchi premium of BTC on upbit/binance (NaN
    until both books are there), the figure the summary must show: the whole pipeline
    is running. Its reader does not register (metrics=False): it leaves no trace."""
    with journal.Reader(results, start="beginning", metrics=False) as reader:
        while True:
            result = reader.poll(0.1)
            if (
                result is not None
                and (result.base, result.krw_exchange, result.usdt_exchange)
                == ("BTC", "upbit", "binance")
                and result.kimchi_premium == result.kimchi_premium
            ):
                return
            assert time.monotonic() < deadline, "the radar published no BTC upbit/binance premium"


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
    done = subprocess.run(
        demo_argv(tmp_path, 4), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = check_summary(done.stdout, tmp_path)
    assert written >= 2000, "4 s at 2,000 books/s wrote less than a second's worth"
    assert not workspace(done.stdout).exists(), "the demo left its journals in /dev/shm"


@pytest.mark.slow
def test_ctrl_c_stops_the_demo_in_order_losing_nothing(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        demo_argv(tmp_path, 60), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert demo.stdout is not None
        first_line = demo.stdout.readline()
        shm = workspace(first_line)
        premium_seen(shm / "results", time.monotonic() + 60)
        assert demo.poll() is None, demo.communicate()
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=120)
        stdout = first_line + stdout
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, stdout + stderr
    assert "demo: stopping" in stderr
    check_summary(stdout, tmp_path)
    assert not shm.exists(), "the demo left its journals in /dev/shm"
