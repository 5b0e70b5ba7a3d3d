"""``journal export``/``analyze`` outputs and Ctrl-C: a directory that cannot take the
output is said before anything is loaded, and SIGINT while a large journal loads
stops the process cleanly (one line, exit 130, no partial file), real processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import journal
from journal.analysis._load import _INLINE
from tests.conftest import SHM

BOOKS = 400_000
BIDS = [[100.0 - k, 1.0 + k] for k in range(10)]
ASKS = [[101.0 + k, 1.0 + k] for k in range(10)]


@pytest.fixture(scope="module")
def large_journal() -> Iterator[Path]:
    """BOOKS ten-level books in 16 MiB segments (~170 MB), shared by the module's
    tests, removed after them."""
    root = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    root.mkdir(mode=0o700)
    try:
        with journal.Writer(root / "books", segment_size=16 << 20) as writer:
            for start in range(0, BOOKS, 10_000):
                writer.append_many(
                    ("upbit", "BTC-KRW", 1_700_000_000_000 + s, s + 1, BIDS, ASKS,
                     1_700_000_000_000_000_000 + s * 1_000_000)
                    for s in range(start, start + 10_000)
                )  # fmt: skip
        yield root / "books"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def journal_cli(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "journal.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_mapped(process: subprocess.Popen[str], directory: Path) -> None:
    """Until the process has mapped a segment of ``directory``: load_books has started
    (it maps every segment while planning, before decoding any)."""
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, process.communicate()
        with contextlib.suppress(FileNotFoundError):  # it exited since: said just above
            if str(directory) in maps.read_text():
                return
        assert time.monotonic() < deadline, "the load never started"
        time.sleep(0.001)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "analyze"])
def test_ctrl_c_while_loading_stops_cleanly(
    command: str, large_journal: Path, shm_dir: Path
) -> None:
    """It exited 130 without a word, sometimes 1 with InvalidStateError and a
    traceback, and could leave a Parquet file cut short."""
    out = shm_dir / "out"
    out.mkdir()
    if command == "export":
        process = journal_cli("export", large_journal, "--parquet", out / "books")
    else:
        process = journal_cli("analyze", large_journal, "--charts", out)
    wait_until_mapped(process, large_journal)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (stdout, stderr)
    assert stderr == f"journal {command}: interrupted\n"
    assert os.listdir(out) == []  # no output, whole or partial, no temporary file


@pytest.mark.slow
def test_ctrl_c_while_writing_leaves_no_dataset(large_journal: Path, shm_dir: Path) -> None:
    """SIGINT once the dataset is being written (its staging directory beside OUT
    exists): exit 130, one line, neither OUT nor the staging directory left."""
    target = shm_dir / "books"
    process = journal_cli("export", large_journal, "--parquet", target)
    staging = shm_dir / f".books.export-{process.pid}"
    deadline = time.monotonic() + 120
    while not any(staging.rglob("*.parquet")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.001)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, (stdout, stderr)
    assert stderr == "journal export: interrupted\n" and not stdout
    assert os.listdir(shm_dir) == []


@pytest.mark.slow
def test_export_writes_its_dataset_whole(large_journal: Path, shm_dir: Path) -> None:
    """Uninterrupted, the same command writes the dataset (at its own name only once
    complete) and nothing else."""
    ds = pytest.importorskip("pyarrow.dataset", reason="pyarrow (extra 'parquet') is not installed")
    target = shm_dir / "books"
    process = journal_cli("export", large_journal, "--parquet", target)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert stdout.startswith(f"{BOOKS:,} books -> {target} (1 partition, 1 file, ")
    assert os.listdir(shm_dir) == ["books"]
    assert os.listdir(target / "date=2023-11-14") == ["exchange=upbit"]
    dataset = ds.dataset(target, format="parquet", partitioning="hive")
    assert dataset.count_rows() == BOOKS


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("missing/books", "missing does not exist; create the directory"),
        ("a-file/books", "a-file is not a directory"),
        (".", "exists and is not empty; give a new directory"),
    ],
)
def test_export_to_a_place_it_cannot_write_is_one_line(
    where: str, expected: str, shm_dir: Path
) -> None:
    """A traceback (FileNotFoundError from pyarrow) after the whole load; now one line
    naming the path, exit 2, before any source is read (this one does not exist).
    ("." is the test's directory, which holds a-file.)"""
    (shm_dir / "a-file").write_text("")
    target = shm_dir / where
    process = journal_cli("export", shm_dir / "no-such-journal", "--parquet", target)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and not stdout
    assert stderr.startswith(f"journal export: --parquet {target}: "), stderr
    assert expected in stderr and len(stderr.splitlines()) == 1


def test_analyze_charts_in_a_file_is_one_line(shm_dir: Path) -> None:
    (shm_dir / "a-file").write_text("")
    process = journal_cli("analyze", shm_dir / "no-such-journal", "--charts", shm_dir / "a-file")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and not stdout
    assert stderr == f"journal analyze: --charts {shm_dir / 'a-file'}: not a directory; " \
        "give a directory for the files\n"  # fmt: skip


def test_ctrl_c_in_a_one_thread_load_is_raised_at_once() -> None:
    """threads=0 runs the tasks in the calling thread: a KeyboardInterrupt there is
    the caller's, raised at once, not kept in the task's future (from which it could
    come back as InvalidStateError, when it landed after the result was set)."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _INLINE.submit(interrupted)
    failed = _INLINE.submit(int, "x")  # a task's own error still waits for result()
    with pytest.raises(ValueError):
        failed.result()
