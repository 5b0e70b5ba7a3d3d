"""Journals written by Python, read by the C++ reader: identical values, and corrupt
bytes reported (never a crash) under AddressSanitizer and UBSan."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

import journal
from journal import _layout as F
from tests._cpp import program
from tests.conftest import ASKS, BIDS

SEGMENT = 64 * 1024


def cpp_dump(path: Path, *args: str, build: str = "release") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(program("journal_dump_json", build)), str(path), *args],
        capture_output=True,
        text=True,
        errors="replace",  # a corrupt string may not be UTF-8 (the Verifier allows it)
        timeout=120,
        check=False,
    )


def python_dump(path: Path) -> list[dict]:
    with journal.Reader(path) as reader:
        return [record.to_dict() for record in reader.available()]


def write_edge_cases(path: Path) -> None:
    rng = np.random.default_rng(5)
    limits = journal.EncoderLimits(max_levels=200, max_name_bytes=64)
    with journal.Writer(path, segment_size=SEGMENT, max_levels=limits.max_levels) as writer:
        for i in range(3000):  # many rolls, values that need all 17 digits
            bids = [[100.0 - k * 0.1 - rng.random() * 0.01, rng.random() * 5] for k in range(10)]
            asks = [[100.5 + k * 0.1 + rng.random() * 0.01, rng.random() * 5] for k in range(10)]
            writer.append_orderbook(f"venue{i % 7}", f"C{i % 13}-KRW", i, i * 3, bids, asks, i)
        writer.append_orderbook("upbit", "BTC-KRW", 1, 2, [], [], 3)  # empty sides
        writer.append_orderbook("upbit", "BTC-KRW", 1, 2, BIDS, [], 3)
        writer.append_orderbook("upbit", "BTC-KRW", 1, 2, [], ASKS, 3)
        writer.append_orderbook("ü" * 32, "Ω" * 32, -1, -(1 << 63), BIDS, ASKS, (1 << 63) - 1)
        deep = [[1e6 - k, 1e-300] for k in range(200)]
        writer.append_orderbook("deep", "DEEP-USDT", 0, 0, deep, [[2e6, 1e300]], 0)


def test_cpp_reads_what_python_wrote_field_by_field(journal_dir: Path) -> None:
    write_edge_cases(journal_dir)
    result = cpp_dump(journal_dir)
    assert result.returncode == 0, result.stderr
    cpp = [json.loads(line) for line in result.stdout.splitlines()]
    python = python_dump(journal_dir)
    assert len(cpp) == len(python) == 3005
    assert cpp == python
    assert {record["position"][0] for record in cpp} != {0}  # followed the rolls


@pytest.mark.slow
def test_largest_record_a_segment_holds(journal_dir: Path) -> None:
    """A record one byte-step below the limit goes in; the C++ reader reads it whole."""
    levels = 256
    with journal.Writer(journal_dir, segment_size=SEGMENT, max_levels=10_000) as writer:
        while True:
            bids = [[1e9 - k, 1.0] for k in range(levels)]
            try:
                writer.append_orderbook("x", "Y-KRW", 0, 0, bids, [], 0)
            except journal.RecordTooLargeError:
                break
            levels += 64
    result = cpp_dump(journal_dir)
    assert result.returncode == 0, result.stderr
    cpp = [json.loads(line) for line in result.stdout.splitlines()]
    assert cpp == python_dump(journal_dir)
    assert len(cpp[-1]["bids"]) + 64 > (SEGMENT - F.HEADER_SIZE) // 16 - 64


def test_many_streams_each_read_back(shm_dir: Path) -> None:
    for stream in range(12):
        path = journal.stream_path(shm_dir, f"stream-{stream}")
        with journal.Writer(path, segment_size=SEGMENT) as writer:
            for i in range(50 + stream):
                writer.append_orderbook(f"ex{stream}", "BTC-KRW", i, i, BIDS, ASKS, i)
        result = cpp_dump(path)
        assert result.returncode == 0, result.stderr
        assert [json.loads(line) for line in result.stdout.splitlines()] == python_dump(path)


def test_resume_from_a_position(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        positions = [writer.append_orderbook("a", "B-KRW", i, i, BIDS, ASKS, i) for i in range(400)]
    segment, offset = positions[250]
    result = cpp_dump(journal_dir, "--from", f"{segment}:{offset}")
    assert result.returncode == 0, result.stderr
    sequences = [json.loads(line)["sequence"] for line in result.stdout.splitlines()]
    assert sequences == list(range(250, 400))


# -- corruption, under the sanitizer build ------------------------------------------------


def corrupt_copy(source: Path, target: Path, rng: random.Random) -> str:
    """Copy the journal and damage one committed byte range; return what was done."""
    target.mkdir()
    names = sorted(p.name for p in source.glob("*.journal"))
    for name in names:
        (target / name).write_bytes((source / name).read_bytes())
    victim = target / rng.choice(names)
    data = bytearray(victim.read_bytes())
    commit = int.from_bytes(data[F.COMMIT_OFFSET_OFFSET : F.COMMIT_OFFSET_OFFSET + 8], "little")
    kind = rng.choice(["flip", "zero", "random", "truncate-file", "commit"])
    if kind == "truncate-file":
        cut = rng.randrange(F.HEADER_SIZE // 2, len(data))
        victim.write_bytes(bytes(data[:cut]))
        return f"{kind} {victim.name} at {cut}"
    if kind == "commit":
        value = rng.choice([commit + 8, len(data) + 8, 3, commit + 4096 * 3])
        data[F.COMMIT_OFFSET_OFFSET : F.COMMIT_OFFSET_OFFSET + 8] = value.to_bytes(8, "little")
    else:
        start = rng.randrange(F.HEADER_SIZE, max(F.HEADER_SIZE + 1, commit))
        length = rng.randrange(1, 24)
        for i in range(start, min(start + length, commit)):
            data[i] = {"flip": data[i] ^ 0xFF, "zero": 0, "random": rng.randrange(256)}[kind]
    victim.write_bytes(bytes(data))
    return f"{kind} {victim.name}"


@pytest.mark.parametrize("seed", range(40))
def test_corrupt_journal_never_crashes_the_reader(
    seed: int, journal_dir: Path, shm_dir: Path
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for i in range(400):
            writer.append_orderbook("upbit", f"C{i % 5}-KRW", i, i, BIDS, ASKS, i)
    rng = random.Random(seed)
    damaged = shm_dir / "damaged"
    what = corrupt_copy(journal_dir, damaged, rng)
    result = cpp_dump(damaged, build="sanitize")
    # 0: the damage did not touch what the reader checks (e.g. a price's bits);
    # 1: reported with a file and an offset; 2: refused at opening. Never a crash
    # or a sanitizer report.
    assert result.returncode in (0, 1, 2), (what, result.returncode, result.stderr[-2000:])
    assert "Sanitizer" not in result.stderr, (what, result.stderr[-2000:])
    if result.returncode == 1:
        assert "offset=" in result.stderr, (what, result.stderr)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    good = python_dump(journal_dir)
    assert (
        records == good[: len(records)] or "flip" in what or "random" in what or ("zero" in what)
    ), what
