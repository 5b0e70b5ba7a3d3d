"""Child processes of the benchmarks: a reader that says it is ready, a radar that
has mapped its journal. Both fail with the child's stderr rather than hang."""

from __future__ import annotations

import select
import subprocess
import time
from pathlib import Path

READY_TIMEOUT_S = 20.0


def wait_ready(proc: subprocess.Popen[str], what: str) -> None:
    """Wait for the child's "ready" line; fail with its stderr if it dies first."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise RuntimeError(f"{what} did not get ready: {line!r} {err.strip()[-2000:]}")


def wait_mapped(proc: subprocess.Popen[str], path: Path) -> None:
    """Wait until the radar has mapped a segment of ``path``: from then on it reads."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    needle = f"{path}/"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise RuntimeError(f"the radar exited with {proc.returncode}: {err.strip()[-2000:]}")
        try:
            if needle in Path(f"/proc/{proc.pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"the radar did not map {path} within {READY_TIMEOUT_S} s")
