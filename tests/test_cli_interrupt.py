"""Ctrl-C at any moment of a ``journal`` command: exit status 130, never a traceback.

The command runs as its console script runs it: ``from journal.cli import main``,
then ``main()``. The child says when the import is done and runs ``main`` when told
to; SIGINT then comes at a random moment of the command's life (building the
parser, importing the command's modules and extras, running it), many times per
command. What comes before ``main`` (Python's own start and ``import journal``)
runs no code of the command and is not this test's: CPython itself may print a
traceback for a Ctrl-C in its first milliseconds.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import journal
from tests._running import DEADLINE_S, Running
from tests.conftest import ASKS, BIDS, REPO

CHILD = """\
import signal, sys, time
from journal.cli import main
print("ready", flush=True)
sys.stdin.readline()
print("running", flush=True)
began = time.monotonic()
status = main(sys.argv[1:])
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: not its Ctrl-C
print(f"main took {time.monotonic() - began:.6f} s", file=sys.stderr)
sys.exit(status)
"""
RUNS = 25
MAX_ATTEMPTS = 4 * RUNS
ENDINGS = (0, 130, -signal.SIGINT)
"""Done before the signal; interrupted (130); or ended by the signal itself, which
a shell shows as 130 too: Python gives SIGINT back its default action as it exits
(after ``--version`` printed, say), and a signal then ends the process."""
SHARE_OF_ITS_LIFE = 0.8
"""SIGINT comes within this share of the command's measured run: inside main."""


def _started(argv: list[str]) -> Running:
    child = Running([sys.executable, "-c", CHILD, *argv], cwd=REPO, stdin=subprocess.PIPE)
    child.read_line("^ready$")
    return child


def _go(child: Running) -> float:
    """Tell the child to run main; when it said it does (monotonic seconds): a
    loaded machine can leave it asleep in its readline for milliseconds after it
    was told, where a Ctrl-C is the harness's, not the command's."""
    assert child.process.stdin is not None
    child.process.stdin.write("\n")
    child.process.stdin.flush()
    child.read_line("^running$")
    return time.monotonic()


def _lifetime(argv: list[str]) -> float:
    """Seconds main takes for ``argv``, uninterrupted (it must succeed), as the child
    measured it (``--version`` exits from within main: then until its exit)."""
    child = _started(argv)
    told = _go(child)
    _, stderr = child.process.communicate(timeout=DEADLINE_S)
    assert child.process.returncode == 0, stderr
    took = re.search(r"^main took (\S+) s$", stderr, re.MULTILINE)
    return float(took[1]) if took else time.monotonic() - told


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["--version"], ["info", "{journal}"], ["metrics", "{journal}"]], ids=str
)
def test_ctrl_c_at_any_moment_is_exit_status_130_without_a_traceback(
    journal_dir: Path, command: list[str]
) -> None:
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    argv = [arg.format(journal=journal_dir) for arg in command]
    lifetime = min(_lifetime(argv) for _ in range(3))  # the first may compile bytecode
    interrupted = on_time = 0
    rng = random.Random(14)
    for _ in range(MAX_ATTEMPTS):
        if on_time == RUNS:
            break
        child = _started(argv)
        try:
            delay = rng.uniform(0, SHARE_OF_ITS_LIFE * lifetime)
            told = _go(child)
            time.sleep(max(0.0, told + delay - time.monotonic()))  # a random moment, by design
            sent = time.monotonic() - told
            child.process.send_signal(signal.SIGINT)
            _, stderr = child.process.communicate(timeout=DEADLINE_S)
        finally:
            child.kill()
        assert "Traceback" not in stderr, f"SIGINT {sent:.3f} s into {argv}:\n{stderr}"
        assert child.process.returncode in ENDINGS, (sent, child.process.returncode, stderr)
        # A busy machine can oversleep the parent past the command's whole run (info
        # takes ~7 ms): such a signal comes after main and proves nothing either way.
        if sent <= lifetime:
            on_time += 1
            interrupted += child.process.returncode != 0
    assert on_time == RUNS, f"only {on_time} of {MAX_ATTEMPTS} signals came within main's run"
    assert interrupted >= RUNS // 2, f"only {interrupted} of {RUNS} runs were interrupted"
