"""Processes a test runs as a user runs them: an exporter, a radar, a collector, the demo.

``Running`` starts one with its output piped (stdout and stderr as text, Python
unbuffered), reads its lines as they come (``read_line``: the ``serving http://...``
line an exporter prints once bound), stops it with a signal and checks that it
ended well (``stop``: exit status 0, no traceback), or kills it. The ``running``
fixture (tests/conftest.py) kills every one still running after the test, whether
it passed or not.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

DEADLINE_S = 30.0
"""How long a process may take to say or do what a test waits for."""


def read_line(process: subprocess.Popen[str], pattern: str, timeout: float = DEADLINE_S) -> str:
    """The first line of ``process``'s stdout matching ``pattern``, within ``timeout``.

    Read from the pipe a byte at a time, never ahead: a process that prints several
    lines at once (a banner) and then nothing for a while would otherwise leave the
    wanted one in a file object's buffer, where select() cannot see it, until its next
    output. What follows the line stays in the pipe for the next read (communicate())."""
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    line = bytearray()
    while time.monotonic() < deadline:
        if not select.select([descriptor], [], [], 0.5)[0]:
            assert process.poll() is None, f"exited {process.returncode}: {seen} {line!r}"
            continue
        byte = os.read(descriptor, 1)
        if not byte:
            break
        line += byte
        if byte != b"\n":
            continue
        text = line.decode(errors="replace")
        line.clear()
        seen.append(text)
        if re.search(pattern, text):
            return text
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {seen} {line!r}")


class Running:
    """A process started from ``argv``; ``popen`` overrides the pipes (stdout
    DEVNULL, binary unbuffered stderr, ...), ``env`` adds to the environment (or
    replaces it with ``replace_env``)."""

    def __init__(
        self,
        argv: Sequence[object],
        env: Mapping[str, str] | None = None,
        *,
        replace_env: bool = False,
        **popen: Any,
    ) -> None:
        base = {} if replace_env else {**os.environ, "PYTHONUNBUFFERED": "1"}
        options: dict[str, Any] = {
            "stdout": subprocess.PIPE,
            "stderr": subprocess.PIPE,
            "text": True,
            "env": {**base, **(env or {})},
            **popen,
        }
        self.process: subprocess.Popen[Any] = subprocess.Popen(
            [str(arg) for arg in argv], **options
        )

    def read_line(self, pattern: str, timeout: float = DEADLINE_S) -> str:
        """Its first stdout line matching ``pattern`` from now on (read_line)."""
        return read_line(self.process, pattern, timeout)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop it with ``sig`` and wait: it must exit with status 0 and no traceback.
        Its stderr (what it had not said yet) is returned."""
        self.process.send_signal(sig)
        _, stderr = self.process.communicate(timeout=DEADLINE_S)
        text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr or ""
        assert self.process.returncode == 0, text
        assert "Traceback" not in text, text
        return text

    def kill(self) -> None:
        """SIGKILL if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


class Started(list[Running]):
    """The processes a test started (the ``running`` fixture): ``start`` one, and all
    killed after the test."""

    def start(self, argv: Sequence[object], **options: Any) -> Running:
        process = Running(argv, **options)
        self.append(process)
        return process

    def kill_all(self) -> None:
        for process in self:
            process.kill()
