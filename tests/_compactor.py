"""A compactor run as a real process (``python -m journal.cli compact``, which is
``journal compact``), its log lines read as they come, so a test waits on what the
compactor says (with a deadline) instead of sleeping."""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time

from tests.conftest import REPO


class CompactorProcess:
    """``journal compact *args`` as a child; ``wait_for`` returns the first new log line
    that matches, ``finish`` its exit status once it exits (or is stopped)."""

    def __init__(self, *args: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "journal.cli", "compact", *map(str, args)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """The next log line matching the regular expression ``pattern``; fails with
        the log so far if the compactor exits or says nothing such in ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._new.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                self.stop()
                raise AssertionError(
                    f"compactor: no line matching {pattern!r} within {timeout} s; its log:\n"
                    f"{self.log}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"compactor exited ({self.proc.wait()}) before a line matching "
                    f"{pattern!r}; its log:\n{self.log}"
                )
            if re.search(pattern, line):
                return line

    def finish(self, timeout: float) -> int:
        """Its exit status, once it exits by itself (``--once``) within ``timeout`` s."""
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"compactor still running after {timeout} s:\n{self.log}"
            ) from None
        self._pump.join(timeout=5)
        return status

    def stop(self) -> None:
        """SIGKILL if still running, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._pump.join(timeout=5)
        with contextlib.suppress(OSError):
            if self.proc.stderr is not None:
                self.proc.stderr.close()
