"""What `journal --help`, `journal SUB --help` and `journal --version` tell a new user
(issue #10), one name for the journal argument, one meaning for ``--from``, and exit
status 1 for damage in every command that reads records."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import journal
from journal import _layout as F
from tests.conftest import ASKS, BIDS, REPO
from tests.test_verify import set_header_word

SEGMENT = 64 * 1024
COMMANDS = (
    "info",
    "dump",
    "verify",
    "demo",
    "compact",
    "analyze",
    "export",
    "import-captures",
    "top",
    "metrics",
)
FIRST_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20+00:00
"""Local time of the first book; book i is i ms later."""


def run(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_books(path: Path, count: int) -> list[journal.Position]:
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        return [
            writer.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS, FIRST_NS + i * 1_000_000)
            for i in range(count)
        ]


def description(help_text: str) -> str:
    """The paragraph between the usage lines and the first argument section."""
    after_usage = help_text.split("\n\n", 1)[1]
    return after_usage.split("\n\n", 1)[0]


def test_every_command_says_what_it_does_and_its_exit_statuses() -> None:
    for command in COMMANDS:
        shown = run(command, "--help")
        assert shown.returncode == 0, shown.stderr
        about = description(shown.stdout)
        assert not about.startswith(("positional arguments", "options")), command
        assert len(about.split()) >= 20, (command, about)
        statuses = re.search(r"exit status:\s+0\s.*", shown.stdout, re.DOTALL)
        assert statuses, command
        assert re.search(r"\b2\s+[a-zA-Z]", statuses[0]), command
    listed = run("--help").stdout
    for command in COMMANDS:
        assert f"    {command} " in listed or f"    {command}\n" in listed, command


def test_the_journal_argument_is_called_journal() -> None:
    for command in ("info", "dump", "verify", "top", "metrics"):
        usage = run(command, "--help").stdout.split("\n\n")[0]
        assert "JOURNAL" in usage, (command, usage)
        assert "JOURNAL_DIR" not in usage and " path" not in usage, (command, usage)


def test_version_is_the_package_version() -> None:
    shown = run("--version")
    assert shown.returncode == 0, shown.stderr
    version = importlib.metadata.version("orderbook-journal")
    assert shown.stdout.startswith(f"journal {version} (writer: "), shown.stdout
    # and which path is in use: compiled, or pure Python and why
    assert re.search(r"writer: (compiled|pure Python \(.+\)), reader: ", shown.stdout)


def analyzed_books(*args: str | Path) -> int:
    done = run("analyze", *args)
    assert done.returncode == 0, done.stderr
    if done.stdout.startswith("no books"):
        return 0
    match = re.match(r"([\d,]+) books", done.stdout)
    assert match, done.stdout
    return int(match[1].replace(",", ""))


def dumped_books(*args: str | Path) -> int:
    done = run("dump", *args)
    assert done.returncode == 0, done.stderr
    return len(done.stdout.splitlines())


def test_from_means_the_same_in_dump_and_analyze(journal_dir: Path) -> None:
    """beginning, ns and ISO times select the same books in dump and analyze (and export,
    which takes analyze's arguments); end is --to's open end; a position, a place in one
    journal, is refused where books are selected by time."""
    write_books(journal_dir, 300)
    at_100 = FIRST_NS + 100 * 1_000_000
    iso_100 = datetime.fromtimestamp(at_100 / 1e9, UTC).isoformat()
    for start in ("beginning", str(at_100), iso_100):
        expected = 300 if start == "beginning" else 200
        assert dumped_books(journal_dir, "--from", start) == expected, start
        assert analyzed_books(journal_dir, "--from", start) == expected, start
    assert analyzed_books(journal_dir, "--from", iso_100, "--to", "end") == 200
    assert analyzed_books(journal_dir, "--to", str(at_100)) == 100
    for args, why in (
        (["--from", "end"], "--from end"),
        (["--to", "beginning"], "--to beginning"),
        (["--from", f"0:{F.HEADER_SIZE}"], "a position"),
    ):
        for command in ("analyze", "export"):
            extra = ["--parquet", journal_dir.parent / "x.parquet"] if command == "export" else []
            refused = run(command, journal_dir, *args, *extra)
            assert refused.returncode == 2, refused.stderr
            assert why in refused.stderr and "Traceback" not in refused.stderr
            assert len(refused.stderr.splitlines()) == 1, refused.stderr
    naive = run("analyze", journal_dir, "--to", "2026-01-01T00:00:00")
    assert naive.returncode == 2 and "time zone" in naive.stderr


def test_damage_is_exit_status_1_for_every_command_that_reads(journal_dir: Path) -> None:
    """As verify (and the radar): 1 for a journal found damaged, 2 for usage."""
    positions = write_books(journal_dir, 600)
    segment = set_header_word(journal_dir, 0, F.COMMIT_OFFSET_OFFSET, positions[50][1])
    for command in (["info"], ["verify"], ["dump"], ["analyze"]):
        done = run(*command, journal_dir)
        assert done.returncode == 1, (command, done.returncode, done.stderr)
        assert segment.name in done.stderr and "Traceback" not in done.stderr
