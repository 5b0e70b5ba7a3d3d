"""What the replication tests share: a source writer process, the replicate and mirror
commands as processes, and comparisons of a mirror with its source.

Run as a program it is the source writer: ``python tests/_replication.py write PATH
FIRST COUNT RATE SEGMENT_SIZE`` appends books FIRST..FIRST+COUNT-1 (tests._procs.book,
stamped now) at RATE books/s (0: as fast as it can), then prints "done" and exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import journal
from journal._segment import MappedSegment, incarnation_now, segment_indices, segment_path

REPO = Path(__file__).resolve().parent.parent
JOURNAL = Path(sys.executable).parent / "journal"


def write(path: str, first: str, count: str, rate: str, segment_size: str) -> int:
    sys.path.insert(0, str(REPO))  # run as a program: tests._procs from the tree
    from tests._procs import book

    begin, n, per_second = int(first), int(count), float(rate)
    started = time.monotonic()
    with journal.Writer(path, segment_size=int(segment_size)) as writer:
        for i in range(n):
            seq = begin + i
            writer.append_orderbook(*book(seq, -1)[:6])
            if per_second and i % 100 == 99:
                ahead = (i + 1) / per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)  # pacing this writer, not waiting for anyone
    print("done", flush=True)
    return 0


def end_of(path: Path) -> tuple[int, int] | None:
    """``(segment, commit)`` of the journal's oldest unsealed segment: where its next
    record goes (a mirror that caught up has its source's); None without segments."""
    for index in segment_indices(path):
        try:
            with MappedSegment(segment_path(path, index)) as segment:
                if not segment.is_sealed():
                    return (index, segment.load_commit_acquire())
        except FileNotFoundError:
            continue
    return None


def records_of(path: Path) -> list[tuple[tuple[int, int], bytes]]:
    """Every record of the journal with its position and bytes."""
    with journal.Reader(path, metrics=False) as reader:
        return [(record.position, reader.record_bytes(record)) for record in reader.available()]


def incarnation_of(path: Path) -> int:
    """The incarnation of the journal at ``path``, which must hold a segment."""
    incarnation = incarnation_now(path)
    assert incarnation is not None, f"{path} holds no segment"
    return incarnation


class Process:
    """A `journal` command (or the writer) run in the background, its stderr in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log)
        return self

    def kill(self) -> None:
        popen, self.popen = self.popen, None
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
        if popen is not None:
            popen.wait(10)

    def terminate(self) -> int:
        popen, self.popen = self.popen, None
        assert popen is not None
        popen.send_signal(signal.SIGTERM)
        return popen.wait(20)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def line(self) -> bytes:
        assert self.popen is not None and self.popen.stdout is not None
        return self.popen.stdout.readline()


def replicate(url: str, journals: list[Path], log: Path, *options: str) -> Process:
    return Process([str(JOURNAL), "replicate", *map(str, journals), "--nats", url, *options], log)


def mirror(url: str, root: Path, log: Path, *options: str) -> Process:
    return Process(
        [str(JOURNAL), "mirror", "--nats", url, "--journal-root", str(root), *options], log
    )


def writer(
    path: Path, first: int, count: int, rate: float, segment_size: int, log: Path
) -> Process:
    return Process(
        [
            sys.executable,
            __file__,
            "write",
            str(path),
            str(first),
            str(count),
            str(rate),
            str(segment_size),
        ],
        log,
    )


def wait_for(condition: object, timeout: float, what: str, logs: list[Path] = ()) -> None:  # type: ignore[assignment]
    """Until ``condition()``, checked with growing pauses, or fail saying ``what`` and
    the ends of ``logs``."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {log}:\n" + _tail(log) for log in logs)
            raise AssertionError(f"{what}: not within {timeout} s\n{tails}")
        time.sleep(pause)
        pause = min(pause * 1.5, 0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return str(error)


def killed_all(processes: Iterator[Process] | list[Process]) -> None:
    for process in processes:
        process.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    sys.exit({"write": write}[sys.argv[1]](*sys.argv[2:]))
