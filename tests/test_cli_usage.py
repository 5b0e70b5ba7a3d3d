"""Usage errors of the `journal` command (issue #10): a bad path or value is one line on
stderr naming it and what is wrong, exit status 2; never a traceback, never a silent
exit 0. Run as a user runs them, as subprocesses."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import journal
from tests.conftest import ASKS, BIDS, REPO

SEGMENT = 64 * 1024


def run(*args: str | Path, prefix: Sequence[str] = (), timeout: float = 60) -> Completed:
    done = subprocess.run(
        [*prefix, sys.executable, "-m", "journal.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Completed(done)


class Completed:
    """A finished `journal` run, with the one check every usage error shares."""

    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.returncode = done.returncode
        self.stdout = done.stdout
        self.stderr = done.stderr

    def refused(self, *words: str | Path) -> str:
        """Assert exit 2 with one line on stderr holding each of ``words``; return it."""
        assert self.returncode == 2, (self.returncode, self.stderr)
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1 or lines[0].startswith("usage: "), self.stderr
        for word in words:
            assert str(word) in lines[-1], (word, self.stderr)
        return lines[-1]


def write_books(path: Path, count: int) -> None:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        for i in range(count):
            writer.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS, 1_000 + i)


# -- a journal that is not there ------------------------------------------------------------


def test_dump_of_a_missing_journal_is_an_error(shm_dir: Path) -> None:
    missing = shm_dir / "typo"
    done = run("dump", missing)
    assert done.refused(missing, "does not exist").startswith("journal dump: ")
    assert done.stdout == ""
    assert not missing.exists()


def test_dump_follow_of_a_missing_journal_says_once_that_it_waits(shm_dir: Path) -> None:
    """Waiting for a writer is what --follow is for: said once, then the books."""
    path = shm_dir / "books"
    follower = subprocess.Popen(
        [sys.executable, "-m", "journal.cli", "dump", str(path), "--follow", "--limit", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stderr is not None
        readable, _, _ = select.select([follower.stderr], [], [], 30)
        assert readable, "dump --follow said nothing about the journal it waits for"
        said = follower.stderr.readline()
        assert str(path) in said and "waiting for" in said and "writer" in said
        write_books(path, 2)
        out, err = follower.communicate(timeout=30)
    finally:
        follower.kill()
        follower.wait()
    assert follower.returncode == 0, err
    assert len(out.splitlines()) == 2
    assert err == ""


def test_an_empty_directory_or_a_directory_of_journals_is_no_journal(shm_dir: Path) -> None:
    empty = shm_dir / "empty"
    empty.mkdir()
    for command in ("dump", "info", "verify"):
        run(command, empty).refused(empty, "holds no segment files")
    write_books(shm_dir / "upbit", 3)
    for command in (["dump"], ["dump", "--follow"], ["info"], ["verify"]):
        run(*command, shm_dir).refused(shm_dir, "holds journals", "upbit", "give one of them")


@pytest.fixture
def a_file(shm_dir: Path) -> Path:
    path = shm_dir / "books.txt"
    path.write_text("not a journal\n")
    return path


JOURNAL_COMMANDS = (
    ["info"],
    ["verify"],
    ["dump"],
    ["dump", "--follow"],
    ["top", "--once", "--interval", "0.01"],
    ["metrics"],
)
"""The commands that take a JOURNAL, each as it is given one."""


def test_a_file_given_for_a_journal_is_said(a_file: Path) -> None:
    for command in JOURNAL_COMMANDS:
        run(*command, a_file).refused(a_file, "not a directory")


def test_a_path_through_a_file_is_said(a_file: Path) -> None:
    inside = a_file / "upbit"
    for command in (["info"], ["dump"], ["dump", "--follow"], ["metrics"]):
        run(*command, inside).refused(inside, "Not a directory")


# -- paths this user may not read ------------------------------------------------------------


def without_file_permission_bypass() -> list[str]:
    """A command prefix under which permissions apply: root drops the capabilities that
    bypass them (setpriv), any other user needs none."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root bypasses file permissions and setpriv is not installed")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.fixture
def locked_out(shm_dir: Path) -> Iterator[tuple[list[str], Path]]:
    """A journal of 600 books, and the prefix for commands that obey permissions."""
    prefix = without_file_permission_bypass()
    path = shm_dir / "books"
    write_books(path, 600)
    yield prefix, path
    for item in (path, *path.iterdir()):
        item.chmod(0o700 if item.is_dir() else 0o600)


def test_a_journal_directory_that_cannot_be_listed_is_said(
    locked_out: tuple[list[str], Path],
) -> None:
    prefix, path = locked_out
    path.chmod(0)
    for command in JOURNAL_COMMANDS:
        run(*command, path, prefix=prefix).refused(path, "Permission denied", "run as")


def test_a_segment_that_cannot_be_read_is_said(locked_out: tuple[list[str], Path]) -> None:
    prefix, path = locked_out
    segment = path / "00000001.journal"
    segment.chmod(0)
    for command in ("info", "verify", "dump"):
        run(command, path, prefix=prefix).refused(segment, "Permission denied")


# -- bad values -------------------------------------------------------------------------------


def test_metrics_output_that_cannot_be_written_is_said(shm_dir: Path) -> None:
    path = shm_dir / "books"
    write_books(path, 3)
    nowhere = shm_dir / "no-such-dir" / "journal.prom"
    run("metrics", path, "--output", nowhere).refused(nowhere, "does not exist")
    run("metrics", path, "--output", shm_dir).refused(shm_dir, "is a directory")
    run("metrics", path, "--output", path / "writer.lock" / "m.prom").refused("writer.lock")
    assert sorted(p.name for p in shm_dir.iterdir()) == ["books"]
    written = run("metrics", path, "--output", shm_dir / "journal.prom")
    assert written.returncode == 0, written.stderr
    assert "journal_records_total" in (shm_dir / "journal.prom").read_text()


def test_bad_option_values_are_argument_errors(shm_dir: Path) -> None:
    path = shm_dir / "books"
    write_books(path, 3)
    for args, option in (
        (["dump", path, "--from", "1:2:3"], "--from"),
        (["dump", path, "--limit", "0"], "--limit"),
        (["dump", path, "--archive", shm_dir / "no-archive"], "--archive"),
        (["top", path, "--interval", "soon"], "--interval"),
        (["top", path, "--interval", "inf"], "--interval"),
        (["demo", "--duration", "x"], "--duration"),
        (["demo", "--rate", "-5"], "--rate"),
        (["analyze", path, "--depth", "0"], "--depth"),
        (["analyze", path, "--depth", "100000000000000000000"], "--depth"),  # was a traceback
        (["analyze", path, "--fx", "0"], "--fx"),
        (["analyze", path, "--from", "2000", "--to", "1000"], "--from"),
    ):
        said = run(*args).refused(option)
        assert "invalid _" not in said  # argparse naming a helper function


def test_a_file_in_the_way_of_an_output_directory_is_said(a_file: Path) -> None:
    """The last line of defence (main): an OSError on a path the user gave is one line
    with the path, what the system said, and what to do."""
    from journal.demo._pipeline import find_radar

    if find_radar() is None:
        pytest.skip("demo checks that there is a radar (make setup) before --output")
    run("demo", "--output", a_file).refused(a_file, "File exists", "another path")


def test_dump_archive_must_be_a_directory(shm_dir: Path, a_file: Path) -> None:
    path = shm_dir / "books"
    write_books(path, 3)
    run("dump", path, "--archive", a_file).refused(a_file, "not a directory")
