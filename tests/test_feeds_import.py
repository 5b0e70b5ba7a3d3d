"""Every real capture imported into a journal in /dev/shm and read back; the command."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import journal
from journal import _layout as F
from journal._segment import MappedSegment
from journal.feeds import FeedError, import_captures
from journal.feeds._import import add_arguments, run
from tests.conftest import CAPTURES

ALL = sorted(str(path) for path in CAPTURES.glob("*.*.*.*"))

BOOKS = {
    ("binance", "NKN-USDT"): 149,
    ("binance", "BLZ-ETH"): 9,
    ("binance", "LRC-BTC"): 13,
    ("binance", "RUNE-EUR"): 1,
    ("binance-futures", "SUSHI-USDT"): 252,
    ("binance-futures", "AKRO-USDT"): 188,
    ("binance-futures", "KEEP-USDT"): 132,
    ("binance-futures", "CTK-USDT"): 180,
    ("bybit", "BTC-USD"): 507,
    ("bybit", "EOS-USD"): 511,
    ("upbit", "LAMB-KRW"): 87,
    ("upbit", "WAVES-KRW"): 26,
    ("upbit", "XTZ-BTC"): 16,
    ("upbit", "ITAM-BTC"): 8,
    ("upbit", "PAX-BTC"): 8,
}


def received_times(name: str) -> set[int]:
    """Receive times (ns) recorded in a capture, read from its text."""
    times = set()
    for line in (CAPTURES / name).read_text().splitlines():
        head = line.partition(": ")[0].rpartition(" ")[2]
        if head:
            seconds, _, fraction = head.partition(".")
            times.add(int(seconds) * 10**9 + int(fraction.ljust(9, "0")))
    return times


def test_all_captures_into_a_journal_and_back(journal_dir: Path) -> None:
    report = import_captures(ALL, journal_dir)
    assert {(s.exchange, s.symbol): s.books for s in report.streams} == BOOKS
    assert all(s.synced and not (s.gaps or s.crossed or s.resyncs) for s in report.streams)
    assert report.books == sum(BOOKS.values())

    with journal.Reader(journal_dir) as reader:
        records = list(reader.available())
    assert Counter((r.exchange_name, r.symbol) for r in records) == BOOKS
    local = [r.local_timestamp_ns for r in records]
    assert local == sorted(local), "books journaled out of receive order"

    recorded = set().union(*(received_times(Path(name).name) for name in ALL))
    assert {r.local_timestamp_ns for r in records} <= recorded
    sequences = defaultdict(list)
    for record in records:
        delay_ms = record.local_timestamp_ns / 1e6 - record.timestamp
        assert -1_000 < delay_ms < 5_000, (record.exchange_name, record.symbol, delay_ms)
        sequences[record.exchange_name, record.symbol].append(record.sequence)
        assert 0 < len(record.bids) <= 10 and 0 < len(record.asks) <= 10
        assert record.bids[0, 0] < record.asks[0, 0]
    for stream, numbers in sequences.items():
        assert numbers == sorted(set(numbers)), f"{stream}: sequence not increasing"
    assert sequences["upbit", "LAMB-KRW"] == list(range(1, 88))


def test_the_first_binance_book_is_stamped_from_its_diff(journal_dir: Path) -> None:
    import_captures([CAPTURES / "BINANCE.ws.1.0", CAPTURES / "BINANCE.http.0.0"], journal_dir)
    with journal.Reader(journal_dir) as reader:
        first = next(r for r in reader.available() if r.symbol == "NKN-USDT")
    # Line 3 of the capture: the first diff after the snapshot's lastUpdateId 499869752.
    line = (CAPTURES / "BINANCE.ws.1.0").read_text().splitlines()[2]
    epoch, _, text = line.partition(": ")
    diff = json.loads(text)["data"]
    assert (first.sequence, first.timestamp) == (diff["u"], diff["E"]) == (499869754, 1633998512568)
    assert first.local_timestamp_ns == 1_633_998_512_564_785_000 and epoch == "1633998512.564785"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="journal import-captures")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_the_command_prints_the_table(
    journal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(*ALL, "--journal", str(journal_dir))) == 0
    out = capsys.readouterr().out
    assert "binance-futures  SUSHI-USDT" in out
    assert "upbit: trade 304" in out
    assert f"{sum(BOOKS.values())} books of 15 streams written to {journal_dir}" in out

    metrics = (journal_dir / "writer.metrics").read_bytes()
    assert run(parse(*ALL, "--journal", str(journal_dir))) == 2
    assert "already holds records" in capsys.readouterr().err
    # Refused before anything was touched: journal top still shows the import.
    assert (journal_dir / "writer.metrics").read_bytes() == metrics


@pytest.mark.slow
def test_an_import_is_sealed_so_one_compaction_archives_it_all(
    journal_dir: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(*ALL, "--journal", str(journal_dir))) == 0
    archive = shm_dir / "archive"
    compacted = subprocess.run(
        [
            sys.executable,
            "-m",
            "journal.cli",
            "compact",
            str(journal_dir),
            "--archive",
            str(archive),
            "--once",
            "--keep",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compacted.returncode == 0, compacted.stderr
    with journal.Reader(journal_dir, archive=archive, metrics=False) as reader:
        assert sum(1 for _ in reader.available()) == sum(BOOKS.values())
    # Every book is archived: tmpfs keeps only the empty segment the seal opened.
    for left in journal_dir.glob("*.journal"):
        with MappedSegment(left) as segment:
            assert segment.load_commit_acquire() == F.HEADER_SIZE, f"{left} not archived"


def test_a_bad_line_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path, journal_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (CAPTURES / "UPBIT.ws.62.0").read_text().splitlines(keepends=True)
    lines[9] = lines[9].replace('"tms":', '"tms" ', 1)
    (tmp_path / "UPBIT.ws.62.0").write_text("".join(lines))
    assert run(parse(str(tmp_path / "UPBIT.ws.62.0"), "--journal", str(journal_dir))) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'UPBIT.ws.62.0'}:10: message is not JSON" in err
    assert not journal_dir.exists()


def test_a_message_without_a_field_names_file_line_and_field(
    tmp_path: Path, journal_dir: Path
) -> None:
    lines = (CAPTURES / "BYBIT.ws.26.0").read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if '"type":"delta"' in line)
    lines[index] = lines[index].replace('"cross_seq"', '"crossseq"')
    (tmp_path / "BYBIT.ws.26.0").write_text("".join(lines))
    with pytest.raises(
        FeedError, match=rf":{index + 1}: bybit orderBookL2_25: no field 'cross_seq'"
    ):
        import_captures([tmp_path / "BYBIT.ws.26.0"], journal_dir)


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        (["BINANCE.ws.1.0"], "give the capture's BINANCE.http.* file too"),
        (["README.md"], "not a capture file name"),
        (["BYBIT.ws.26.0", "BYBIT.ws.26.0"], "given twice"),
    ],
)
def test_files_that_cannot_make_books_are_refused(
    files: list[str], problem: str, journal_dir: Path
) -> None:
    with pytest.raises(FeedError, match=re.escape(problem)):
        import_captures([CAPTURES / name for name in files], journal_dir)
    assert not journal_dir.exists()


def test_an_unknown_exchange_in_a_file_name_is_refused(tmp_path: Path, journal_dir: Path) -> None:
    (tmp_path / "KRAKEN.ws.1.0").write_text("1.0: {}\n")
    with pytest.raises(
        FeedError, match=re.escape("KRAKEN.ws.1.0: exchange 'KRAKEN' is not one of")
    ):
        import_captures([tmp_path / "KRAKEN.ws.1.0"], journal_dir)
