"""journal.analysis.load_results: the radar's results journals (written by the real
radar, and by the official FlatBuffers builder in every shape the schema allows) and
their archives into numpy columns equal to what journal.Reader decodes, record by
record; filters, gaps, corrupt bytes reported with file and offset; dataframes."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from RadarData import RadarResult as RR

import journal
from journal import _layout as F
from journal._errors import CorruptArchiveError, CorruptSegmentError, JournalError
from journal._segment import segment_indices, segment_path
from journal.analysis import MissingSegmentsError, Results, load_books, load_results
from journal.analysis._results import STRING_FIELDS
from tests._cpp import radar
from tests.conftest import SHM
from tests.test_analysis import archive_sealed

SEGMENT = 64 * 1024
T0 = 1_800_000_000_000_000_000
STRINGS = ("base", "krw_exchange", "usdt_exchange", "buy_exchange", "sell_exchange")
FIGURES = ("fx", "kimchi_premium", "edge_bps", "fill_base_quantity", "notional_krw")


def result_record(values: dict[str, Any]) -> bytes:
    """A RadarResult by the official builder: fields absent from ``values`` are not
    stored, scalars equal to their default are left out (as the radar's builder does)."""
    builder = flatbuffers.Builder(256)
    strings = {k: builder.CreateString(values[k]) for k in STRINGS if k in values}
    RR.Start(builder)
    adders = {
        "timestamp_ns": RR.AddTimestampNs,
        "base": RR.AddBase,
        "krw_exchange": RR.AddKrwExchange,
        "usdt_exchange": RR.AddUsdtExchange,
        "fx": RR.AddFx,
        "kimchi_premium": RR.AddKimchiPremium,
        "buy_exchange": RR.AddBuyExchange,
        "sell_exchange": RR.AddSellExchange,
        "edge_bps": RR.AddEdgeBps,
        "fill_base_quantity": RR.AddFillBaseQuantity,
        "stale": RR.AddStale,
        "source_local_timestamp_ns": RR.AddSourceLocalTimestampNs,
        "notional_krw": RR.AddNotionalKrw,
    }
    for name, add in adders.items():
        if name in values:
            add(builder, strings.get(name, values[name]))
    builder.FinishSizePrefixed(RR.End(builder), file_identifier=b"RDR1")
    return bytes(builder.Output())


def typical(i: int) -> dict[str, Any]:
    """The i-th of a cycle of results: three pairs, a few without FX or fill, some stale."""
    krw = ("upbit", "bithumb", "upbit")[i % 3]
    fills = i % 5 != 0
    return {
        "timestamp_ns": T0 + i * 1_000_000,
        "base": ("BTC", "BTC", "ETH")[i % 3],
        "krw_exchange": krw,
        "usdt_exchange": "binance",
        "fx": 1400.0 + (i % 7) if i % 13 else math.nan,
        "kimchi_premium": 0.01 + i * 1e-6,
        "buy_exchange": "binance" if fills else "",
        "sell_exchange": krw if fills else "",
        "edge_bps": 12.5 - i * 1e-3 if fills else math.nan,
        "fill_base_quantity": 0.07 if fills else 0.0,
        "stale": i % 17 == 0,
        "source_local_timestamp_ns": T0 - 5_000_000 + i * 1_000_000,
        "notional_krw": 10_000_000.0,
    }


def write_results(path: Path, records: list[dict[str, Any]]) -> list[tuple[int, int]]:
    with journal.Writer(path, segment_size=SEGMENT, payload_id=b"RDR1") as writer:
        return [writer.append(result_record(values)) for values in records]


def reader_fields(path: Path) -> list[tuple[tuple[int, int], dict[str, Any]]]:
    with journal.Reader(path, metrics=False) as reader:
        return [(record.position, record.fields) for record in reader.available()]  # type: ignore[union-attr]


def assert_rows_match(
    results: Results, expected: list[tuple[tuple[int, int], dict[str, Any]]]
) -> None:
    """Every column of ``results`` equals the Reader's decode, NaN equal to NaN."""
    assert len(results) == len(expected)
    for name in STRING_FIELDS:
        assert results.name(name).tolist() == [f[name] for _, f in expected], name
    for name in ("timestamp_ns", "source_local_timestamp_ns", *FIGURES, "stale"):
        np.testing.assert_array_equal(getattr(results, name), [f[name] for _, f in expected])
    assert results.segment.tolist() == [p[0] for p, _ in expected]
    assert results.offset.tolist() == [p[1] for p, _ in expected]


# -- the real radar ----------------------------------------------------------------------------


@pytest.fixture
def radar_results(shm_dir: Path) -> Path:
    """The radar's results journal over 2,000 books of four streams: the first
    results without FX (NaN, no direction), then premiums; Bithumb's books stamped an
    hour old, so its pair's results are stale."""
    books, results = shm_dir / "books", shm_dir / "results"
    now = time.time_ns()
    markets = (
        ("upbit", "BTC-KRW", 141_400_000.0, 1_000.0),
        ("bithumb", "BTC-KRW", 141_450_000.0, 1_000.0),
        ("binance", "BTC-USDT", 100_000.0, 0.1),
        ("upbit", "USDT-KRW", 1_400.0, 1.0),
    )
    with journal.Writer(books) as writer:
        for i in range(2000):
            exchange, symbol, mid, tick = markets[i % len(markets)]
            mid += tick * (i % 9 - 4)
            bids = [[mid - tick * (k + 1), 1.0 + k] for k in range(10)]
            asks = [[mid + tick * (k + 1), 1.0 + k] for k in range(10)]
            stamp = now - (3_600_000_000_000 if exchange == "bithumb" else 0) + i * 1000
            writer.append_orderbook(exchange, symbol, stamp // 1_000_000, i + 1, bids, asks, stamp)
    done = radar(
        "--journal", str(books), "--results", str(results), "--start", "beginning", "--quiet",
        "--max-records", "2000", "--stale-ms", "60000", "--fee", "upbit=5", "--fee", "binance=10",
        "--no-metrics",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return results


def test_the_radars_results_equal_what_the_reader_decodes(radar_results: Path) -> None:
    results = load_results(radar_results)
    expected = reader_fields(radar_results)
    assert_rows_match(results, expected)
    # The journal holds every kind the decoder must tell apart.
    assert results.stale.any() and not results.stale.all()
    assert np.isnan(results.fx).any() and "" in results.names
    assert sorted(set(results.name("krw_exchange"))) == ["bithumb", "upbit"]
    upbit = results.where(base="BTC", krw_exchange="upbit", usdt_exchange="binance")
    assert (
        len(upbit) and not upbit.stale.any() and results.where(krw_exchange="bithumb").stale.all()
    )


def test_a_books_journal_and_a_results_journal_are_told_apart(
    radar_results: Path, shm_dir: Path
) -> None:
    with pytest.raises(JournalError, match="not radar results \\(order books: load_books"):
        load_results(shm_dir / "books")
    with pytest.raises(JournalError, match="not order books \\(the radar's results: load_results"):
        load_books(radar_results)


# -- every shape, archives, gaps ----------------------------------------------------------------


NAMES = st.sampled_from(["BTC", "ETH", "upbit", "bithumb", "binance", "", "도지", "x" * 40])
FIELDS = {
    "timestamp_ns": st.integers(-(2**63), 2**63 - 1),
    "base": NAMES,
    "krw_exchange": NAMES,
    "usdt_exchange": NAMES,
    "fx": st.floats(allow_nan=True),
    "kimchi_premium": st.floats(allow_nan=True),
    "buy_exchange": NAMES,
    "sell_exchange": NAMES,
    "edge_bps": st.floats(allow_nan=True),
    "fill_base_quantity": st.floats(allow_nan=True),
    "stale": st.booleans(),
    "source_local_timestamp_ns": st.integers(-(2**63), 2**63 - 1),
    "notional_krw": st.floats(allow_nan=True),
}
RECORDS = st.lists(
    st.fixed_dictionaries({}, optional=FIELDS),  # any subset of the fields, any values
    min_size=1,
    max_size=300,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS)
def test_every_shape_the_schema_allows_decodes_as_the_reader_does(
    records: list[dict[str, Any]],
) -> None:
    """Records of every field subset, string length and value (NaN, -0.0, extremes),
    mixed in one buffer: the grouping by skeleton and bytes must never merge two
    records that differ, nor lose a value."""
    path = SHM / f"journal-test-results-{os.getpid()}-{time.monotonic_ns()}"
    try:
        write_results(path, records)
        assert_rows_match(load_results(path), reader_fields(path))
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def many_segments(journal_dir: Path) -> Path:
    """6,000 typical results in 64 KiB segments (about 20)."""
    write_results(journal_dir, [typical(i) for i in range(6000)])
    assert len(segment_indices(journal_dir)) > 10
    return journal_dir


@pytest.mark.slow
def test_archives_and_the_live_journal_are_read_once(many_segments: Path, shm_dir: Path) -> None:
    stream = archive_sealed(many_segments, shm_dir / "archive", frame_size=2048)
    expected = reader_fields(many_segments)
    assert_rows_match(load_results([stream, many_segments]), expected)
    assert_rows_match(load_results([shm_dir / "archive", many_segments]), expected)
    archived = load_results(stream)
    assert len(archived) < len(expected) and archived.offset.tolist() == [
        p[1] for p, _ in expected[: len(archived)]
    ]


def test_time_and_name_filters(many_segments: Path, shm_dir: Path) -> None:
    stream = archive_sealed(many_segments, shm_dir / "archive", frame_size=2048)
    start, end = T0 + 1000 * 1_000_000, T0 + 2500 * 1_000_000
    picked = load_results([stream, many_segments], start_ns=start, end_ns=end)
    assert picked.timestamp_ns.tolist() == list(range(start, end, 1_000_000))
    eth = load_results(many_segments, bases=["ETH"])
    assert set(eth.name("base")) == {"ETH"} and len(eth) == 2000
    upbit = load_results(many_segments, exchanges=["upbit", "binance"])
    assert set(upbit.name("krw_exchange")) == {"upbit"} and len(upbit) == 4000
    assert len(load_results(many_segments, exchanges=["upbit"])) == 0


def test_a_missing_segment_is_refused_or_read_around(many_segments: Path, shm_dir: Path) -> None:
    stream = archive_sealed(many_segments, shm_dir / "archive", frame_size=2048)
    archives = sorted(stream.iterdir())
    archives[3].unlink()
    for index in segment_indices(many_segments)[:5]:
        segment_path(many_segments, index).unlink()
    with pytest.raises(MissingSegmentsError, match="segment 3 missing"):
        load_results([stream, many_segments])
    around = load_results([stream, many_segments], allow_gaps=True)
    assert [str(gap) for gap in around.gaps] == [f"stream {many_segments.name}: segment 3 missing"]
    assert 0 < len(around) < 6000


def test_corrupt_bytes_are_reported_with_file_and_offset(journal_dir: Path) -> None:
    positions = write_results(journal_dir, [typical(i) for i in range(50)])
    segment, offset = positions[20]
    with open(segment_path(journal_dir, segment), "r+b") as file:
        file.seek(offset + F.SIZE_PREFIX_SIZE)
        file.write((1 << 30).to_bytes(4, "little"))  # the root offset, far away
    with pytest.raises(CorruptSegmentError) as raised:
        load_results(journal_dir)
    assert raised.value.path == str(segment_path(journal_dir, segment))
    assert raised.value.offset == offset


def test_a_corrupt_archive_frame_is_reported_with_its_file_offset(
    many_segments: Path, shm_dir: Path
) -> None:
    from journal.archive._archive import ArchiveReader

    stream = archive_sealed(many_segments, shm_dir / "archive", frame_size=2048)
    target = sorted(stream.iterdir())[2]
    with ArchiveReader(target) as reader:
        entry = reader.frames[1]
    data = bytearray(target.read_bytes())
    data[entry.file_offset + entry.compressed_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CorruptArchiveError) as raised:
        load_results(stream)
    assert raised.value.path == str(target) and raised.value.offset == entry.file_offset


def test_empty_and_missing_sources(shm_dir: Path, journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT, payload_id=b"RDR1"):
        pass
    empty = load_results(journal_dir)
    assert len(empty) == 0 and empty.names == [] and empty.fx.dtype == np.float64
    with pytest.raises(JournalError, match="no such file or directory"):
        load_results(shm_dir / "nothing")


def test_analyze_takes_the_results_archives_too(many_segments: Path, shm_dir: Path) -> None:
    """journal analyze's radar edges come from load_results: an archive of results
    is a results source as the journal is, and both together are read once."""
    from journal.analysis._report import is_results_journal, radar_edges

    stream = archive_sealed(many_segments, shm_dir / "archive", frame_size=2048)
    assert is_results_journal(stream) and is_results_journal(next(stream.iterdir()))
    assert is_results_journal(many_segments) and not is_results_journal(shm_dir / "nothing")
    live = radar_edges([many_segments])
    both = radar_edges([stream, many_segments])
    assert [(e.base, e.krw_exchange, e.usdt_exchange) for e in both] == [
        ("BTC", "bithumb", "binance"),
        ("BTC", "upbit", "binance"),
        ("ETH", "upbit", "binance"),
    ]
    for a, b in zip(live, both, strict=True):
        np.testing.assert_array_equal(a.time_ns, b.time_ns)
        np.testing.assert_array_equal(a.edge, b.edge)
        assert a.notional_krw == b.notional_krw == 10_000_000.0
    assert sum(len(e.time_ns) for e in both) == 6000
