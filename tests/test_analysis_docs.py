"""docs/ANALYSIS.md's examples run as written, in order, as a notebook runs its cells:
against a live journal, its archive and the real radar's results journal that this
test writes in /dev/shm (the documents' paths replaced by these), the ``console``
lines with the installed ``journal`` command."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import journal
from tests._cpp import radar
from tests.conftest import REPO
from tests.test_analysis import archive_sealed

pytest.importorskip("pandas")
pytest.importorskip("polars")
pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

DOC = REPO / "docs" / "ANALYSIS.md"
BLOCK = re.compile(r"^```(python|console)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
MARKETS = (
    ("upbit", "BTC-KRW", 141_400_000.0, 1_000.0),
    ("binance", "BTC-USDT", 100_000.0, 0.1),
    ("upbit", "USDT-KRW", 1_400.0, 1.0),
    ("bithumb", "BTC-KRW", 141_450_000.0, 1_000.0),
)
BOOKS = 3000


def blocks() -> list[tuple[str, str]]:
    """The document's ``python`` and ``console`` blocks, in order."""
    found = BLOCK.findall(DOC.read_text())
    assert [kind for kind, _ in found].count("python") >= 3, "docs/ANALYSIS.md lost its examples"
    return found


def write_desk(root: Path) -> dict[str, Path]:
    """The places the document names: a live journal of BOOKS books in 64 KiB segments
    (four streams, two seconds ago to now), the archive of its sealed segments, and the
    real radar's results journal over it."""
    desk = root / "desk"
    books = desk / "books"
    now = time.time_ns()
    with journal.Writer(books, segment_size=64 * 1024) as writer:
        for i in range(BOOKS):
            exchange, symbol, mid, tick = MARKETS[i % len(MARKETS)]
            mid += tick * (i % 9 - 4)
            bids = [[mid - tick * (k + 1), 1.0 + k] for k in range(10)]
            asks = [[mid + tick * (k + 1), 1.0 + k] for k in range(10)]
            stamp = now - 2_000_000_000 + i * 600_000
            writer.append_orderbook(exchange, symbol, stamp // 1_000_000, i + 1, bids, asks, stamp)
    archive_sealed(books, root / "archive", frame_size=4096)
    done = radar(
        "--journal", str(books), "--results", str(desk / "radar"), "--start", "beginning",
        "--quiet", "--max-records", str(BOOKS), "--no-metrics",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"/data/archive": root / "archive", "/dev/shm/desk": desk, "/data/export": root / "out"}


def placed(text: str, paths: dict[str, Path]) -> str:
    for documented, real in paths.items():
        text = text.replace(documented, str(real))
    return text


@pytest.mark.slow
def test_the_documented_examples_run(shm_dir: Path) -> None:
    paths = write_desk(shm_dir)
    command = Path(sys.executable).parent / "journal"
    namespace: dict[str, Any] = {"__name__": "analysis_docs"}
    printed = io.StringIO()
    for kind, code in blocks():
        code = placed(code, paths)
        if kind == "console":
            for line in code.splitlines():
                assert line.startswith("$ journal "), line
                argv = [str(command), *shlex.split(line.removeprefix("$ journal "))]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, (line, done.stderr)
        else:
            with contextlib.redirect_stdout(printed):
                exec(compile(code, str(DOC), "exec"), namespace)  # the document's own code
    # What the examples computed is there, from all the books.
    assert len(namespace["books"]) == 3 * BOOKS // 4  # BTC-KRW twice and BTC-USDT
    assert len(namespace["per_second"]) > 0
    assert namespace["edges"].height >= 2  # upbit and bithumb against binance
    assert sum(row[4] for row in namespace["depth"]) == BOOKS
    assert namespace["spreads"]["books"].sum() == BOOKS
    assert namespace["upbit"].num_rows == BOOKS // 2
    assert f"{3 * BOOKS // 4:,} books of " in printed.getvalue()
