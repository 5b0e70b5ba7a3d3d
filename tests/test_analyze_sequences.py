"""``journal analyze`` counts sequence gaps only where the venue's journaled sequence
is contiguous (journal.feeds.venue_sequence), and out-of-order and repeated sequences
everywhere: real captures and the demo feed, imported or published by real processes,
report no gap where their builders certify none."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import journal
from journal.analysis import load_books
from journal.analysis._report import check_sequence
from journal.feeds import (
    BinanceFuturesBook,
    BinanceSpotBook,
    BybitBook,
    SequenceRule,
    UpbitBook,
    venue_sequence,
)
from tests._procs import LOCAL_NS0
from tests.conftest import CAPTURES

SEQ_COLUMNS = ("seq gaps", "seq back", "seq repeat")


def journal_cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stream_table(out: str) -> dict[tuple[str, str], dict[str, str]]:
    """The per-stream table of ``journal analyze``: (exchange, symbol) -> column -> cell.
    Cells are two or more spaces apart; column names have single spaces."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("exchange "))
    header = re.split(r"\s{2,}", lines[start].strip())
    table = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), f"{line!r} does not fit {header}"
        table[cells[0], cells[1]] = dict(zip(header, cells, strict=True))
    return table


@pytest.mark.slow
def test_the_real_captures_have_no_gap(shm_dir: Path) -> None:
    """Every stream of the captures is gap-free by its builder; analyze reported 187
    gaps on binance-futures AKRO-USDT's 188 books (Binance's ``u`` steps by the number
    of updates of a diff) and hundreds on Bybit (``cross_seq`` skips numbers)."""
    files = sorted(CAPTURES.glob("*.ws.*")) + sorted(CAPTURES.glob("*.http.*"))
    imported = journal_cli("import-captures", *files, "--journal", shm_dir / "captures")
    assert imported.returncode == 0, imported.stderr
    analyzed = journal_cli("analyze", shm_dir / "captures")
    assert analyzed.returncode == 0, analyzed.stderr
    table = stream_table(analyzed.stdout)
    assert len(table) == 15
    for (exchange, symbol), row in table.items():
        where = f"{exchange} {symbol}: {row}"
        if exchange == "upbit":  # the message count: contiguous, checked
            assert [row[c] for c in SEQ_COLUMNS] == ["0", "0", "0"], where
        elif row["books"] == "1":  # nothing to compare
            assert [row[c] for c in SEQ_COLUMNS] == ["-", "-", "-"], where
        else:  # update ids and cross_seq: only checked to increase
            assert [row[c] for c in SEQ_COLUMNS] == ["-", "0", "0"], where
    notes = analyzed.stdout
    assert "binance-futures  the diff's last update id u" in notes
    assert "not contiguous, gaps not counted" in notes
    assert "upbit            the count of the stream's order-book messages" in notes


@pytest.mark.slow
def test_the_demo_feed_has_no_gap(journal_dir: Path) -> None:
    """The demo's Binance ids grow by 1 to 12 an update (analyze reported 13,087 gaps
    in 14,249 BTC-USDT books), Bybit's by one; Upbit and Bithumb journal 0 (none)."""
    feed = subprocess.run(
        [
            *(sys.executable, "-m", "journal.demo.feed", "--journal", str(journal_dir)),
            *("--rate", "0", "--duration", "1", "--segment-size", str(4 << 20)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert feed.returncode == 0, feed.stderr
    books = load_books(journal_dir)
    binance = books.where("binance", "BTC-USDT").sequence
    assert len(binance) > 100 and (np.diff(binance) > 1).any()  # what was taken for gaps
    analyzed = journal_cli("analyze", journal_dir)
    assert analyzed.returncode == 0, analyzed.stderr
    table = stream_table(analyzed.stdout)
    assert {exchange for exchange, _ in table} == {"binance", "bybit", "upbit", "bithumb"}
    for (exchange, symbol), row in table.items():
        cells = [row[c] for c in SEQ_COLUMNS]
        if exchange in ("upbit", "bithumb"):
            assert cells == ["-", "-", "-"], f"{exchange} {symbol}: {row}"
        else:
            assert cells == ["-", "0", "0"], f"{exchange} {symbol}: {row}"
    assert "bithumb  no sequence in these books (0): not checked" in analyzed.stdout


def test_each_rule_counts_what_it_defines(journal_dir: Path) -> None:
    """Upbit's message count skipping one (a message that published no book) is a
    gap, repeated or lower ones are repeats and out of order; a Binance id going back
    is out of order, its large steps nothing; a venue journal.feeds does not know is
    not assumed contiguous."""
    streams = {
        ("upbit", "BTC-KRW"): [1, 2, 3, 5, 6, 6, 4, 7],  # a gap, a repeat, one back
        ("binance", "BTC-USDT"): [100, 112, 150, 149, 160],  # one back
        ("kraken", "BTC-USD"): [10, 17, 24, 24, 31],  # a repeat
    }
    with journal.Writer(journal_dir) as writer:
        for k, ((exchange, symbol), sequences) in enumerate(streams.items()):
            for i, sequence in enumerate(sequences):
                local = LOCAL_NS0 + (10 * i + k) * 1_000_000
                writer.append_orderbook(
                    exchange, symbol, local // 1_000_000, sequence, [[99.0, 1.0]], [[101.0, 1.0]],
                    local,
                )  # fmt: skip
    table = stream_table(journal_cli("analyze", journal_dir).stdout)
    assert [table["upbit", "BTC-KRW"][c] for c in SEQ_COLUMNS] == ["2", "1", "1"]
    assert [table["binance", "BTC-USDT"][c] for c in SEQ_COLUMNS] == ["-", "1", "0"]
    assert [table["kraken", "BTC-USD"][c] for c in SEQ_COLUMNS] == ["-", "0", "1"]


def test_check_sequence_skips_sequence_zero() -> None:
    """0 is "none sent": neither a step from nor to it is checked."""
    check = check_sequence("upbit", np.array([0, 0, 5, 0, 6, 8], np.int64))
    assert (check.rule, check.steps, check.gaps) == (SequenceRule.CONTIGUOUS, 1, 1)
    none = check_sequence("upbit", np.zeros(4, np.int64))
    assert none.steps == 0


@pytest.mark.parametrize(
    ("builder", "rule"),
    [
        (BinanceSpotBook, SequenceRule.INCREASING),
        (BinanceFuturesBook, SequenceRule.INCREASING),
        (BybitBook, SequenceRule.INCREASING),
        (UpbitBook, SequenceRule.CONTIGUOUS),
    ],
)
def test_every_builder_has_its_venue_sequence(builder: type, rule: SequenceRule) -> None:
    assert venue_sequence(builder.EXCHANGE).rule is rule
    assert venue_sequence("no-such-venue").rule is SequenceRule.INCREASING
