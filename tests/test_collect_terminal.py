"""On a terminal, ``journal collect`` keeps a live block of one line per venue under
its event lines: state, books/s, the age of the last message, reconnects, gaps."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fake_exchanges import FakeBinance, FakeUpbit

JOURNAL = str(REPO / ".venv" / "bin" / "journal")
STATUS = re.compile(rb"  (binance|upbit) +(\w+) +(\d+)/(\d+) +\d+ books/s +last ")


@pytest.mark.slow
def test_a_terminal_shows_a_live_line_per_venue():
    root = Path("/dev/shm") / f"collect-tty-{uuid.uuid4().hex[:8]}"
    controller, terminal = pty.openpty()
    try:
        with FakeBinance() as binance, FakeUpbit() as upbit:
            command = [
                JOURNAL,
                "collect",
                "binance:NKNUSDT",
                "upbit:KRW-WAVES",
                "--journal-root",
                str(root),
                "--ws-url",
                f"binance={binance.ws_url}",
                "--rest-url",
                f"binance={binance.rest_url}",
                "--ws-url",
                f"upbit={upbit.ws_url}",
            ]
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal
            )
            os.close(terminal)
            terminal = -1
            seen: dict[bytes, bytes] = {}
            screen = b""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                seen.get(b"binance") == b"live"
                and seen.get(b"upbit") == b"live"
                and b"collect: binance: live" in screen
                and b"collect: upbit: live" in screen
            ):
                ready, _, _ = select.select([controller], [], [], 0.5)
                if ready:
                    try:
                        screen += os.read(controller, 65536)
                    except OSError:
                        break
                    for match in STATUS.finditer(screen):
                        seen[match[1]] = match[2]
            process.send_signal(signal.SIGINT)
            while True:  # drain, so that the collector never blocks on a full terminal
                ready, _, _ = select.select([controller], [], [], 0.5)
                if not ready and process.poll() is not None:
                    break
                if ready:
                    try:
                        screen += os.read(controller, 65536)
                    except OSError:
                        break
            assert process.wait(timeout=20) == 0
        assert seen == {b"binance": b"live", b"upbit": b"live"}, screen[-2000:]
        assert b"\x1b[" in screen  # redrawn in place
        assert b"collect: binance: live" in screen and b"collect: upbit: live" in screen
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
        shutil.rmtree(root, ignore_errors=True)
