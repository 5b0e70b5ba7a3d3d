"""``radar.metrics``'s layout, once per language: radar_metrics.hpp's constants (printed
by radar_metrics_test --print), journal._radar_metrics_layout and docs/FORMAT.md
("Radar metrics") agree, and the radar's latency buckets are the writer's."""

from __future__ import annotations

import subprocess

from journal import _metrics_layout as M
from journal import _radar_metrics_layout as L
from tests._cpp import program
from tests._format_md import check_table, format_md_rows


def printed(flag: str) -> list[tuple[str, str]]:
    output = subprocess.run(
        [str(program("radar_metrics_test")), flag], capture_output=True, text=True, check=True
    ).stdout
    return [(name, value) for name, value in (line.split(" ", 1) for line in output.splitlines())]


def test_every_cpp_constant_equals_its_python_twin() -> None:
    constants = dict(printed("--print"))
    assert len(constants) >= 50
    for name, text in constants.items():
        python = getattr(L, name)
        if isinstance(python, bytes):
            python = python.decode("ascii")
        assert str(python) == text, f"{name}: Python {python!r}, C++ {text!r}"


def test_cpp_latency_buckets_are_the_writers() -> None:
    pairs = printed("--buckets")
    assert len(pairs) > 4096
    for value, bucket in pairs:
        assert M.latency_bucket(int(value)) == int(bucket), value
        low, high = M.latency_bucket_bounds(int(bucket))
        assert low <= min(int(value), M.LATENCY_MAX_NS) <= high


def test_format_md_tables_match_constants() -> None:
    header = {
        "magic": (L.MAGIC_OFFSET, 8),
        "metrics_version": (L.VERSION_OFFSET, 4),
        "file_size": (L.FILE_SIZE_OFFSET, 4),
        "radar_pid": (L.PID_OFFSET, 4),
        "latency_sample_period": (L.LATENCY_SAMPLE_PERIOD_OFFSET, 4),
        "radar_started_ns": (L.STARTED_NS_OFFSET, 8),
        "radar_host": (L.HOST_OFFSET, L.HOST_SIZE),
        "radar_name": (L.NAME_OFFSET, L.RADAR_NAME_SIZE),
        "stream_capacity": (L.STREAM_CAPACITY_OFFSET, 8),
        "pair_capacity": (L.PAIR_CAPACITY_OFFSET, 8),
        "latency_buckets": (L.LATENCY_BUCKETS_OFFSET, 8),
        "books_total": (L.BOOKS_TOTAL_OFFSET, 8),
        "results_total": (L.RESULTS_TOTAL_OFFSET, 8),
        "stream_count": (L.STREAM_COUNT_OFFSET, 8),
        "pair_count": (L.PAIR_COUNT_OFFSET, 8),
        "streams_without_slot_total": (L.STREAMS_WITHOUT_SLOT_TOTAL_OFFSET, 8),
        "pairs_without_slot_total": (L.PAIRS_WITHOUT_SLOT_TOTAL_OFFSET, 8),
        "latency_sum_ns": (L.LATENCY_SUM_NS_OFFSET, 8),
        "latency_counts": (L.LATENCY_COUNTS_OFFSET, 8 * L.LATENCY_BUCKETS),
    }
    stream = {
        "updates_total": (L.STREAM_UPDATES_TOTAL_OFFSET, 8),
        "last_local_ns": (L.STREAM_LAST_LOCAL_NS_OFFSET, 8),
        "last_exchange_ms": (L.STREAM_LAST_EXCHANGE_MS_OFFSET, 8),
        "venue": (L.STREAM_VENUE_OFFSET, L.VENUE_SIZE),
        "symbol": (L.STREAM_SYMBOL_OFFSET, L.SYMBOL_SIZE),
    }
    pair = {
        "sequence": (L.PAIR_SEQUENCE_OFFSET, 8),
        "kimchi_premium": (L.PAIR_KIMCHI_PREMIUM_OFFSET, 8),
        "edge_bps": (L.PAIR_EDGE_BPS_OFFSET, 8),
        "fx": (L.PAIR_FX_OFFSET, 8),
        "fill_base_quantity": (L.PAIR_FILL_BASE_QUANTITY_OFFSET, 8),
        "stale": (L.PAIR_STALE_OFFSET, 8),
        "updated_ns": (L.PAIR_UPDATED_NS_OFFSET, 8),
        "updates_total": (L.PAIR_UPDATES_TOTAL_OFFSET, 8),
        "base": (L.PAIR_BASE_OFFSET, L.BASE_SIZE),
        "krw_exchange": (L.PAIR_KRW_EXCHANGE_OFFSET, L.VENUE_SIZE),
        "usdt_exchange": (L.PAIR_USDT_EXCHANGE_OFFSET, L.VENUE_SIZE),
    }
    check_table(format_md_rows("Radar metrics", 0), header, L.STREAMS_OFFSET)
    check_table(format_md_rows("Radar metrics", 1), stream, L.STREAM_SLOT_SIZE)
    check_table(format_md_rows("Radar metrics", 2), pair, L.PAIR_SLOT_SIZE)
    # Every field from 128 on but the names (and the array of counters) is one aligned word.
    words = [v for k, v in header.items() if v[0] >= 128 and k != "latency_counts"]
    words += [v for k, v in {**stream, **pair}.items() if v[1] == 8]
    assert all(offset % 8 == 0 and width == 8 for offset, width in words)
    assert len(words) == 9 + 3 + 8
    # The common header fields sit where the other metrics files have them.
    assert (L.VERSION_OFFSET, L.FILE_SIZE_OFFSET, L.PID_OFFSET) == (
        M.METRICS_VERSION_OFFSET,
        M.METRICS_FILE_SIZE_OFFSET,
        M.METRICS_PID_OFFSET,
    )
    assert (L.STARTED_NS_OFFSET, L.HOST_OFFSET, L.LATENCY_BUCKETS) == (
        M.METRICS_STARTED_NS_OFFSET,
        M.METRICS_HOST_OFFSET,
        M.LATENCY_BUCKETS,
    )


def test_sizes_follow_the_capacities() -> None:
    assert L.radar_metrics_size(1, 1) == L.STREAMS_OFFSET + L.STREAM_SLOT_SIZE + L.PAIR_SLOT_SIZE
    assert L.pair_slot_offset(8, 2) == L.STREAMS_OFFSET + 8 * L.STREAM_SLOT_SIZE + 2 * 192
    assert L.stream_slot_offset(3) == L.STREAMS_OFFSET + 3 * L.STREAM_SLOT_SIZE
    assert L.DEFAULT_FILE_SIZE == 921_600 < 1 << 32  # file_size is a u32
    assert L.radar_metrics_size(L.MAX_CAPACITY, L.MAX_CAPACITY) < 1 << 32
