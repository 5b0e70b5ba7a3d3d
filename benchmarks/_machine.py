"""What a benchmark run says about where it ran: CPU, load, and the code's commit."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name and count (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def commit(*paths: str) -> str:
    """The commit the code is at, and whether ``paths`` have local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *paths],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f" + uncommitted changes in {' or '.join(paths)}" if dirty else "")


_CPU_CHECK = """
import sys, time
clock = time.perf_counter_ns
span = int(float(sys.argv[1]) * 1e9)
start = last = clock()
lost = 0
while last - start < span:
    now = clock()
    if now - last > 50_000:
        lost += now - last
    last = now
print(lost / (last - start))
"""


def cpu_check(seconds: float = 1.0) -> list[float]:
    """Two busy processes for ``seconds``: the share of time each was off its CPU
    (gaps over 50 µs). Near 0 on two free cores; a VM whose two vCPUs share less than
    two physical CPUs, or other work on the machine, shows here, and any case where
    two processes spin (a writer and a spinning reader) then suffers."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CPU_CHECK, str(seconds)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    return [float(proc.communicate(timeout=30 + seconds)[0]) for proc in procs]


def timer_overhead_ns() -> float:
    """Median cost of an empty ``perf_counter_ns()`` pair: inside every timed figure."""
    clock = time.perf_counter_ns
    pairs = []
    for _ in range(20_000):
        start = clock()
        pairs.append(clock() - start)
    return statistics.median(pairs)
