"""Offline analysis: load_books columns equal what journal.Reader and ArchiveReader
decode, record by record, for journals and archives; filters; NaN padding; corrupt
bytes reported; ``journal analyze`` and ``journal export``."""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zstandard

import journal
from journal import _layout as F
from journal import cli
from journal._inspect import verify
from journal._segment import MappedSegment, segment_indices, segment_path
from journal.analysis import Books, load_books
from journal.analysis import _load as analysis
from journal.archive import _archive as A
from tests._books import Book, build_official
from tests._procs import LOCAL_NS0, Children, book
from tests.test_archive import _assemble, _header, _marker_frame
from tests.test_file_safety import wait_for
from tests.test_verify import CHAIN_DAMAGE, roll_between_header_loads, write_chain

SEGMENT = 64 * 1024


def official(seq: int, present: set[str] | None = None) -> bytes:
    """Book ``seq`` laid out by the official builder (not the writer's own layout)."""
    value = Book(*book(seq))
    return build_official(value) if present is None else build_official(value, present)


def write_books(path: Path, count: int) -> None:
    """``count`` books by every append path (own layout singly and in batches, the
    official builder's layout, with and without optional fields), several segments."""
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        seq = 0
        while seq < count:
            kind = (seq // 40) % 4
            if kind == 0:
                writer.append_orderbook(*book(seq))
                seq += 1
            elif kind == 1:
                batch = min(40, count - seq)
                writer.append_many([book(s) for s in range(seq, seq + batch)])
                seq += batch
            elif kind == 2:
                writer.append(official(seq))
                seq += 1
            else:
                present = {"exchange_name", "symbol", "timestamp", "sequence", "bids", "asks"}
                writer.append(official(seq, present))  # no local_timestamp_ns: reads as 0
                seq += 1


def archive_sealed(journal_dir: Path, archive_root: Path, frame_size: int = 4096) -> Path:
    """Archive every sealed segment into ``archive_root/<journal name>``; returns it."""
    stream = archive_root / journal_dir.name
    stream.mkdir(parents=True, exist_ok=True)
    for index in segment_indices(journal_dir):
        with MappedSegment(segment_path(journal_dir, index)) as segment:
            if not segment.is_sealed():
                continue
            target = stream / A.archive_name_for(segment, segment.load_commit_acquire())
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                A.write_archive(fd, segment, frame_size=frame_size)
            finally:
                os.close(fd)
    return stream


def assert_rows_match(books: Books, records: list[journal.OrderBookRecord]) -> None:
    """Every column of ``books`` equals the decoded records, bit for bit."""
    assert len(books) == len(records)
    for i, record in enumerate(records):
        where = f"row {i} at {record.position}"
        assert (int(books.segment[i]), int(books.offset[i])) == record.position, where
        assert books.timestamp[i] == record.timestamp, where
        assert books.sequence[i] == record.sequence, where
        assert books.local_timestamp_ns[i] == record.local_timestamp_ns, where
        assert books.exchanges[books.exchange_code[i]] == record.exchange_name, where
        assert books.symbols[books.symbol_code[i]] == record.symbol, where
        for side, price, qty in (
            (record.bids, books.bid_price, books.bid_qty),
            (record.asks, books.ask_price, books.ask_qty),
        ):
            k = min(len(side), books.depth)
            assert price[i, :k].tobytes() == side[:k, 0].tobytes(), where
            assert qty[i, :k].tobytes() == side[:k, 1].tobytes(), where
            assert np.isnan(price[i, k:]).all() and np.isnan(qty[i, k:]).all(), where


@pytest.fixture
def books_journal(journal_dir: Path) -> Path:
    write_books(journal_dir, 1500)
    return journal_dir


def reader_records(path: Path) -> list[journal.OrderBookRecord]:
    with journal.Reader(path) as reader:
        return list(reader.available())  # type: ignore[arg-type]


def archive_records(stream: Path, **kwargs: int) -> list[journal.OrderBookRecord]:
    records = []
    for file in A.archive_files(stream):
        with A.ArchiveReader(file) as reader:
            records.extend(reader.records(**kwargs))  # type: ignore[arg-type]
    return records


# -- columns equal the record readers ---------------------------------------------------------


def test_journal_columns_equal_reader(books_journal: Path) -> None:
    books = load_books(books_journal)
    records = reader_records(books_journal)
    assert len(records) == 1500
    assert books.bid_price.shape == (1500, 10) and books.bid_price.dtype == np.float64
    assert books.timestamp.dtype == np.int64 and books.exchange_code.dtype == np.int32
    assert_rows_match(books, records)


def test_archive_columns_equal_archive_reader(books_journal: Path, shm_dir: Path) -> None:
    stream = archive_sealed(books_journal, shm_dir / "archive")
    files = A.archive_files(stream)
    assert len(files) >= 3
    records = archive_records(stream)
    assert_rows_match(load_books(stream), records)
    assert_rows_match(load_books(shm_dir / "archive"), records)  # an archive root
    assert_rows_match(load_books(files), records)  # the files themselves


def test_archive_and_live_read_once(books_journal: Path, shm_dir: Path) -> None:
    """Segments both archived and still in tmpfs are not read twice."""
    stream = archive_sealed(books_journal, shm_dir / "archive")
    assert_rows_match(load_books([stream, books_journal]), reader_records(books_journal))


def test_time_exchange_symbol_filters(books_journal: Path, shm_dir: Path) -> None:
    stream = archive_sealed(books_journal, shm_dir / "archive", frame_size=2048)
    start, end = LOCAL_NS0 + 300 * 1000, LOCAL_NS0 + 700 * 1000
    for source, records in (
        (books_journal, reader_records(books_journal)),
        (stream, archive_records(stream)),
    ):
        want = [r for r in records if start <= r.local_timestamp_ns < end]
        assert 0 < len(want) < len(records)
        assert_rows_match(load_books(source, start_ns=start, end_ns=end), want)
        want = [
            r for r in records if r.exchange_name in ("upbit", "bybit") and r.symbol == "BTC-KRW"
        ]
        books = load_books(source, exchanges=["upbit", "bybit"], symbols=["BTC-KRW"])
        assert_rows_match(books, want)
        assert set(books.symbols) == {"BTC-KRW"}
        assert len(load_books(source, exchanges=["nowhere"])) == 0
    # A time range decompresses only the zstd frames that overlap it.
    file = A.archive_files(stream)[0]
    with A.ArchiveReader(file) as reader:
        first = reader.frames[1]
        assert len(reader.frames) > 3
    books = load_books(file, start_ns=first.min_time_ns, end_ns=first.max_time_ns + 1)
    assert len(books) == first.record_count


def test_nan_padding_and_depth(books_journal: Path) -> None:
    records = reader_records(books_journal)
    deep = load_books(books_journal, depth=12)
    assert deep.ask_qty.shape == (1500, 12)
    assert_rows_match(deep, records)
    # book(seq) has 1..4 bids and 1..3 asks: shallow books are NaN beyond their depth.
    assert np.isnan(deep.bid_price[:, 4:]).all() and not np.isnan(deep.bid_price[:, 0]).any()
    shallow = load_books(books_journal, depth=2)
    assert shallow.bid_price.shape == (1500, 2)
    assert_rows_match(shallow, records)
    assert np.isnan(shallow.bid_price[0, 1])  # book 0 has one bid
    with pytest.raises(ValueError, match="depth"):
        load_books(books_journal, depth=0)


def test_empty_and_missing_sources(journal_dir: Path, shm_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT):
        pass
    books = load_books(journal_dir)
    assert len(books) == 0 and books.bid_price.shape == (0, 10)
    with pytest.raises(journal.JournalError, match="no such file"):
        load_books(shm_dir / "missing")


def test_corrupt_bytes_are_reported(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(50):
            writer.append_orderbook(*book(seq))
        position = writer.append_orderbook(*book(50))
        for seq in range(51, 60):
            writer.append_orderbook(*book(seq))
    path = segment_path(journal_dir, position[0])
    with open(path, "r+b") as file:
        file.seek(position[1] + 8)
        file.write(b"XXXX")  # the record's file_identifier
    with pytest.raises(journal.CorruptSegmentError, match=f"offset={position[1]}"):
        load_books(journal_dir)


def test_corrupt_later_segment_is_named(journal_dir: Path) -> None:
    """Segments are scanned before any is decoded: damage in a later one is still
    reported with that segment's file and offset."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        positions = [writer.append_orderbook(*book(seq)) for seq in range(1500)]
    segment, offset = positions[-50]
    assert segment >= 2
    path = segment_path(journal_dir, segment)
    with open(path, "r+b") as file:
        file.seek(offset + 8)
        file.write(b"XXXX")
    with pytest.raises(journal.CorruptSegmentError, match=f"{path.name}.*offset={offset}"):
        load_books(journal_dir)


def test_record_in_own_layout_with_bad_offsets_is_refused(journal_dir: Path) -> None:
    """A record that looks like the writer's layout but whose asks offset is wrong
    falls back to the verifying decoder, which refuses it with its position."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        position = writer.append_orderbook(*book(7))
    with open(segment_path(journal_dir, position[0]), "r+b") as file:
        file.seek(position[1] + 72)
        file.write((10_000).to_bytes(4, "little"))
    with pytest.raises(journal.CorruptSegmentError, match="does not decode"):
        load_books(journal_dir)


# -- journal analyze -----------------------------------------------------------------------------


def _flat(mid: float, count: int = 3) -> tuple[list[list[float]], list[list[float]]]:
    half = mid * 1e-4 / 2  # a 1 bps spread
    return (
        [[mid - half - i * half, 1.0] for i in range(count)],
        [[mid + half + i * half, 1.0] for i in range(count)],
    )


def write_market(root: Path) -> list[Path]:
    """Upbit (BTC-KRW, USDT-KRW) and Binance (BTC-USDT) with a +0.5% kimchi premium,
    Binance with a 5 ms exchange-to-local delay and update ids that skip 5 once (a
    diff of 6 updates: no gap, Binance's ids are not contiguous)."""
    upbit, binance = root / "upbit", root / "binance"
    t0 = LOCAL_NS0
    with journal.Writer(upbit, segment_size=SEGMENT) as writer:
        for i in range(100):
            local = t0 + i * 10_000_000
            writer.append_orderbook(
                "upbit", "BTC-KRW", local // 1_000_000 - 3, 0, *_flat(140_700_000.0), local
            )
            writer.append_orderbook(
                "upbit", "USDT-KRW", local // 1_000_000 - 3, 0, *_flat(1400.0), local + 1
            )
    with journal.Writer(binance, segment_size=SEGMENT) as writer:
        for i in range(200):
            local = t0 + i * 5_000_000 + 2
            sequence = 1000 + i + (5 if i >= 150 else 0)
            writer.append_orderbook(
                "binance", "BTC-USDT", local // 1_000_000 - 5, sequence, *_flat(100_000.0), local
            )
    return [upbit, binance]


def premium_row(out: str, base: str, pair: str) -> dict[str, str]:
    """The kimchi premium table's row of ``base`` on ``pair``, by column name (cells are
    two or more spaces apart, names have single spaces)."""
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("kimchi premium"))
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    for line in lines[start + 2 :]:
        cells = re.split(r"\s{2,}", line.strip())
        if cells[:2] == [base, pair]:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no {base} {pair} row in:\n{out}")


def test_analyze_prints_summary(shm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = [str(p) for p in write_market(shm_dir)]
    assert cli.main(["analyze", *sources]) == 0
    out = capsys.readouterr().out
    assert "400 books" in out
    lines = {tuple(line.split()[:2]): line.split() for line in out.splitlines() if line}
    binance = lines[("binance", "BTC-USDT")]
    assert binance[2] == "200" and binance[3] == "200.00"  # books, rate per second
    assert float(binance[4]) == pytest.approx(1.0, rel=1e-6)  # median spread bps
    assert binance[6:9] == ["-", "0", "0"]  # gaps not defined; none back, none repeated
    assert 5.0 <= float(binance[9]) < 6.0  # delay p50 ms
    assert lines[("upbit", "BTC-KRW")][6:9] == ["-", "-", "-"]  # no sequence numbers
    assert "USDT-KRW mid on upbit" in out
    premium = premium_row(out, "BTC", "upbit / binance")
    assert premium["mean"] == premium["last"] == "+0.500"


def test_analyze_time_range_and_fixed_fx(shm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sources = [str(p) for p in write_market(shm_dir)]
    end = LOCAL_NS0 + 500_000_000
    assert cli.main(["analyze", *sources, "--to", str(end), "--fx", "1407"]) == 0
    out = capsys.readouterr().out
    assert "200 books" in out  # 50 + 50 on upbit, 100 on binance
    assert "fixed 1407 KRW/USDT" in out
    assert premium_row(out, "BTC", "upbit / binance")["mean"] == "+0.000"


@pytest.mark.slow
def test_analyze_writes_charts(shm_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (extra 'analysis') is not installed")
    sources = [str(p) for p in write_market(shm_dir)]
    charts = shm_dir / "charts"
    assert cli.main(["analyze", *sources, "--charts", str(charts)]) == 0
    assert "charts:" in capsys.readouterr().out
    for name in ("kimchi.png", "spread.png", "delay.png"):
        data = (charts / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_analyze_without_matplotlib_still_prints(
    shm_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    sources = [str(p) for p in write_market(shm_dir)]
    assert cli.main(["analyze", *sources, "--charts", str(shm_dir / "charts")]) == 0
    out = capsys.readouterr().out
    assert "400 books" in out and "matplotlib is not installed" in out
    assert not (shm_dir / "charts").exists()


# -- journal export ------------------------------------------------------------------------------


def test_export_round_trips(
    books_journal: Path, shm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dataset holds every book of the sources (an archive and the live journal,
    read once), as load_books loads them: times as timestamps, sequence 0 as null,
    names, and each side's levels (the padding left out); tests/test_export_dataset.py
    checks the layout itself."""
    ds = pytest.importorskip("pyarrow.dataset", reason="pyarrow (extra 'parquet') is not installed")
    stream = archive_sealed(books_journal, shm_dir / "archive")
    out = shm_dir / "dataset"
    assert cli.main(["export", str(stream), str(books_journal), "--parquet", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"1,500 books -> {out} (")
    table = ds.dataset(out, format="parquet", partitioning="hive").to_table()
    books = load_books([stream, books_journal])
    # The dataset's rows are sorted by partition, symbol and local time.
    key = [
        (books.exchanges[e], books.symbols[s], int(t))
        for e, s, t in zip(
            books.exchange_code, books.symbol_code, books.local_timestamp_ns, strict=True
        )
    ]
    rows = sorted(range(len(books)), key=lambda i: key[i])
    got = sorted(
        zip(
            table["exchange"].to_pylist(),
            table["symbol"].to_pylist(),
            table["local_time"].cast("int64").to_pylist(),
            range(table.num_rows),
            strict=True,
        )
    )
    assert [g[:3] for g in got] == [key[i] for i in rows]
    order = [g[3] for g in got]
    np.testing.assert_array_equal(
        table["exchange_time"].cast("int64").to_numpy(zero_copy_only=False)[order],
        books.timestamp[rows],
    )
    sequence = table["sequence"].to_pylist()
    assert [sequence[j] for j in order] == [int(s) or None for s in books.sequence[rows]]
    for name in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
        levels = table[name].to_pylist()
        for j, i in zip(order, rows, strict=True):
            expected = getattr(books, name)[i]
            assert levels[j] == expected[np.isfinite(expected)].tolist()


def test_identifier_bytes_inside_a_record(journal_dir: Path) -> None:
    """A quantity whose bytes hold the payload identifier where a record could start
    is not taken for a record (the records are then walked one by one)."""
    tricky = struct.unpack("<d", b"OBK1\x00\x00\xf0\x3f")[0]  # just above 1.0
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(20):
            exchange, symbol, timestamp, sequence, bids, asks, local = book(seq)
            bids = [[price, tricky] for price, _ in bids]
            writer.append_orderbook(exchange, symbol, timestamp, sequence, bids, asks, local)
    books = load_books(journal_dir)
    assert_rows_match(books, reader_records(journal_dir))
    assert (books.bid_qty[:, 0] == tricky).all()


# -- threads, archives' claims, shapes -----------------------------------------------------------


def assert_same_books(left: Books, right: Books) -> None:
    """Every column equal, bit for bit (NaN included), and the same names."""
    assert (left.exchanges, left.symbols) == (right.exchanges, right.symbols)
    for name in Books.COLUMNS:
        assert np.array_equal(getattr(left, name), getattr(right, name), equal_nan=True), name


def test_threads_give_the_books_of_one_thread(books_journal: Path, shm_dir: Path) -> None:
    """Frames decompressed and segments walked by workers, columns written by the
    writer thread: the very same rows, in the same order, as everything in one thread."""
    stream = archive_sealed(books_journal, shm_dir / "archive", frame_size=2048)
    sources = [stream, books_journal]
    alone = load_books(sources, threads=0)
    assert_rows_match(alone, reader_records(books_journal))
    start, end = LOCAL_NS0 + 300 * 1000, LOCAL_NS0 + 1200 * 1000
    alone_filtered = load_books(sources, start, end, symbols=["BTC-KRW"], threads=0)
    assert 0 < len(alone_filtered) < len(alone)
    for threads in (1, 3):
        assert_same_books(load_books(sources, threads=threads), alone)
        filtered = load_books(sources, start, end, symbols=["BTC-KRW"], threads=threads)
        assert_same_books(filtered, alone_filtered)
    with pytest.raises(ValueError, match="threads"):
        load_books(sources, threads=-1)


@pytest.mark.parametrize("threads", [0, 2])
def test_a_bad_frame_in_a_worker_is_reported_with_its_archive_and_offset(
    books_journal: Path, shm_dir: Path, threads: int
) -> None:
    """Zstd frames that fail their checksum in workers are reported as in one thread:
    the first bad frame in source order (not the first to fail), with its archive's
    path and its file offset."""
    stream = archive_sealed(books_journal, shm_dir / "archive", frame_size=2048)
    files = A.archive_files(stream)
    for file, bad in ((files[1], (5, 3)), (files[2], (1,))):
        with A.ArchiveReader(file) as reader:
            entries = [reader.frames[i] for i in bad]
        data = bytearray(file.read_bytes())
        for entry in entries:
            data[entry.file_offset + entry.compressed_size // 2] ^= 0xFF
        file.write_bytes(data)
    with A.ArchiveReader(files[1]) as reader:
        third = reader.frames[3]
    with pytest.raises(journal.CorruptArchiveError, match="zstd frame 3") as raised:
        load_books(stream, threads=threads)
    assert (raised.value.path, raised.value.offset) == (str(files[1]), third.file_offset)


def own_record(seq: int, local_ns: int) -> bytes:
    """Book ``seq`` in the writer's layout at ``local_ns``, padded to its record frame."""
    record = journal.OrderBookEncoder().encode(*book(seq)[:6], local_ns)
    return record + bytes(-len(record) % 8)


def test_an_index_that_claims_too_many_records_does_not_size_the_output(shm_dir: Path) -> None:
    """A 10 KB archive whose index claims ten million records (4 MiB frames of zeros,
    a few hundred bytes each) after one good frame: the output is sized by the file
    (one record per compressed byte), not by the claim (~4 GB of columns), and the
    first bad frame is reported."""
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    good = own_record(0, LOCAL_NS0)
    zeros = 4 << 20
    frames = [(compressor.compress(good), len(good), 1)]
    frames += [(compressor.compress(bytes(zeros)), zeros, zeros // 16)] * 40
    raw = len(good) + 40 * zeros
    header = dataclasses.replace(_header(F.HEADER_SIZE + raw), archive_version=1)
    path = _assemble(shm_dir / "claims.jzst", header, frames)
    assert path.stat().st_size < 20_000
    tracemalloc.start()
    try:
        with pytest.raises(journal.CorruptArchiveError, match="zstd frame 1: size prefix=0"):
            load_books(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 << 20, f"peak {peak:,} bytes"


def test_version_one_archives_are_loaded(shm_dir: Path) -> None:
    """Frames of plain segment bytes (no value planes), records of both layouts."""
    records = [own_record(seq, LOCAL_NS0) for seq in range(5)]
    official_book = Book(*book(5)[:6], LOCAL_NS0)
    records.append(build_official(official_book) + bytes(-len(build_official(official_book)) % 8))
    raw = b"".join(records) + _marker_frame(8)
    frame = zstandard.ZstdCompressor(write_checksum=True).compress(raw)
    header = dataclasses.replace(_header(F.HEADER_SIZE + len(raw)), archive_version=1)
    path = _assemble(shm_dir / "v1.jzst", header, [(frame, len(raw), len(records))])
    with A.ArchiveReader(path) as reader:
        want = list(reader.records())
    assert len(want) == 6
    for threads in (0, 2):
        assert_rows_match(load_books(path, threads=threads), want)  # type: ignore[arg-type]


def test_an_archive_with_more_records_than_compressed_bytes_grows_the_output(
    journal_dir: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Books that repeat exactly compress to less than a byte each: the output,
    reserved for one record per compressed byte, grows as the records are found."""
    with journal.Writer(journal_dir, segment_size=256 << 10) as writer:
        for _ in range(6000):
            writer.append_orderbook(*book(7))
    stream = archive_sealed(journal_dir, shm_dir / "archive", frame_size=256 << 10)
    records = archive_records(stream)
    claimed = 0
    for file in A.archive_files(stream):
        with A.ArchiveReader(file) as reader:
            claimed += sum(min(e.record_count, e.compressed_size) for e in reader.frames)
    assert len(A.archive_files(stream)) >= 3 and claimed < len(records) / 2
    grown_from: list[int] = []
    grow = analysis._Loader._grow

    def spy(loader: analysis._Loader, rows: int, *, written: int) -> None:
        grown_from.append(len(loader.out["timestamp"]) if loader.out else 0)
        grow(loader, rows, written=written)

    monkeypatch.setattr(analysis._Loader, "_grow", spy)
    for threads in (0, 2):
        grown_from.clear()
        assert_rows_match(load_books(stream, threads=threads), records)
        assert grown_from[0] == 0 and len(grown_from) >= 2  # allocated, then grown


def test_an_archive_that_changes_between_plan_and_read_is_refused(
    books_journal: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive is planned from its index, then opened again to be read: if the
    index is not the same, the planned frame numbers are not trusted."""
    stream = archive_sealed(books_journal, shm_dir / "archive")
    opened: list[str] = []

    class Changing(A.ArchiveReader):
        """Its index loses a frame the second time the archive is opened."""

        def __init__(self, path: str | os.PathLike[str]) -> None:
            super().__init__(path)
            opened.append(str(path))
            if opened.count(str(path)) > 1:
                self.frames = self.frames[:-1]

    monkeypatch.setattr(analysis, "ArchiveReader", Changing)
    with pytest.raises(journal.JournalError, match="changed while it was being read"):
        load_books(stream)


def test_many_shapes_in_one_block(journal_dir: Path) -> None:
    """More distinct shapes (names) than a block groups without sorting."""
    with journal.Writer(journal_dir, segment_size=1 << 20) as writer:
        for seq in range(3000):
            exchange, _, ts, sequence, bids, asks, local = book(seq)
            symbol = f"S{seq % (2 * analysis._FEW_GROUPS + 7)}-KRW"
            writer.append_orderbook(exchange, symbol, ts, sequence, bids, asks, local)
    books = load_books(journal_dir)
    assert len(books.symbols) == 2 * analysis._FEW_GROUPS + 7
    assert_rows_match(books, reader_records(journal_dir))


def test_grouping_survives_hash_collisions() -> None:
    """Two keys with the same hash, and hashes sharing their top bits, are still told
    apart exactly, groups numbered by first appearance."""
    mask = (1 << 64) - 1
    h0, h1 = int(analysis._HASH[0]), int(analysis._HASH[1])
    x, y = 5, 9
    x2 = x + 1
    y2 = (((x * h0) ^ (y * h1) ^ (x2 * h0)) & mask) * pow(h1, -1, 1 << 64) & mask
    assert ((x * h0) ^ (y * h1)) & mask == ((x2 * h0) ^ (y2 * h1)) & mask
    first = np.array([x, x2, x, 1, x2], np.uint64)
    second = np.array([y, y2, y, 1, y2], np.uint64)
    groups, inverse = analysis._distinct([first, second])
    assert groups.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    same_top = np.array([7, 1, 7, 2, 1], np.uint64)  # one bucket, three values
    groups, inverse = analysis._group(same_top)
    assert groups.tolist() == [0, 1, 3] and inverse.tolist() == [0, 1, 0, 2, 1]
    many = (np.arange(100, dtype=np.uint64) % 50) << np.uint64(56)  # over _FEW_GROUPS
    groups, inverse = analysis._group(many[::-1].copy())
    assert groups.tolist() == list(range(50)) and inverse.tolist() == list(range(50)) * 2


# -- a journal's segment chain: nothing read short -----------------------------------------------


@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize(
    "damage", [case[1] for case in CHAIN_DAMAGE], ids=[case[0] for case in CHAIN_DAMAGE]
)
def test_a_broken_chain_is_refused_not_read_short(
    damage: Callable[[Path, list[tuple[int, int]]], tuple[int, int]],
    threads: int,
    journal_dir: Path,
) -> None:
    """A segment that is not the newest and not sealed (its commit lowered, its end
    marker offset cleared or moved) while later ones hold records: load_books read
    what the damaged header let it, and fewer books than the journal holds, without
    a word. Now it raises what journal verify reports, with the file and offset."""
    segment, offset = damage(journal_dir, write_chain(journal_dir))
    with pytest.raises(journal.CorruptSegmentError) as raised:
        load_books(journal_dir, threads=threads)
    path = segment_path(journal_dir, segment)
    assert (raised.value.path, raised.value.offset) == (str(path), offset), str(raised.value)
    assert verify(journal_dir).first_error == str(raised.value)


def test_an_open_segment_and_the_next_one_prepared_load_in_full(journal_dir: Path) -> None:
    """The usual state of a live journal: the newest segment empty, prepared for the
    writer's next roll, after the open one."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(1000):
            writer.append_orderbook(*book(seq))
        index = writer.position[0]
        wait_for(segment_path(journal_dir, index + 1))
        assert segment_indices(journal_dir)[-1] == index + 1
        books = load_books(journal_dir)
        assert books.sequence.tolist() == list(range(1000))
        assert_rows_match(books, reader_records(journal_dir))


@pytest.mark.parametrize("threads", [0, 2])
def test_a_roll_between_two_header_loads_is_no_hole(
    journal_dir: Path, children: Children, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """The writer rolls just after load_books loaded the newest segment's header: the
    books are segment 0's in full (sealed by the time its header was loaded), no
    error, and not segment 1's book without the ones before it."""
    rolled = roll_between_header_loads(journal_dir, children, monkeypatch)
    books = load_books(journal_dir, threads=threads)
    assert rolled and rolled[0]["positions"] == [[1, F.HEADER_SIZE]]  # it did roll
    assert books.sequence.tolist() == list(range(rolled[0]["first"]))


@pytest.mark.slow
def test_a_live_writer_rolling_never_leaves_a_hole(
    journal_dir: Path, shm_dir: Path, children: Children
) -> None:
    """load_books while a writer process rolls hundreds of times a second: each load
    is the books 0..n-1, none missing where a roll happened between the loads of two
    segments' headers, and never an error."""
    writer = children.spawn("torture", journal_dir, shm_dir / "acks", 0, SEGMENT, 11)
    writer.read_json(30)
    wait_for(segment_path(journal_dir, 2))  # it rolled into segment 1
    loads = 0
    started = time.monotonic()
    while loads < 3 or time.monotonic() - started < 1.0:
        books = load_books(journal_dir, threads=loads % 3)
        assert len(books) and np.array_equal(books.sequence, np.arange(len(books)))
        loads += 1
    writer.kill()
    books = load_books(journal_dir)
    assert np.array_equal(books.sequence, np.arange(len(books)))


def test_an_archive_of_an_unsealed_segment_is_refused(journal_dir: Path, shm_dir: Path) -> None:
    """The compactor archives sealed segments only; an archive of an open one (its
    records end where the segment was when it was copied) is refused, as
    journal.Reader refuses it, rather than read as if the segment ended there."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(100):
            writer.append_orderbook(*book(seq))
    stream = shm_dir / "archive" / journal_dir.name
    stream.mkdir(parents=True)
    with MappedSegment(segment_path(journal_dir, 0)) as segment:
        assert not segment.is_sealed()
        target = stream / A.archive_name_for(segment, segment.load_commit_acquire())
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            A.write_archive(fd, segment)
        finally:
            os.close(fd)
    with pytest.raises(journal.CorruptArchiveError, match="unsealed") as raised:
        load_books(stream)
    assert (raised.value.path, raised.value.offset) == (str(target), A.END_MARKER_OFFSET_OFFSET)
