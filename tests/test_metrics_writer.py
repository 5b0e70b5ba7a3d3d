"""The writer's counters in ``writer.metrics``: what was written is what they say.

Records, bytes, rolls, refusals by reason and the latency histogram, read back the
way ``journal top`` reads them (journal.monitor._snapshot) and, once, from another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import journal
from journal import _metrics_layout as M
from journal.monitor._snapshot import latency_percentile, read_writer, snapshot
from tests._procs import book
from tests.conftest import ASKS, BIDS, mounted_tmpfs

SEGMENT = 64 * 1024
FRAME = 432  # a 10x10 book with these names (docs/FORMAT.md)


def test_counters_match_what_was_written(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for sequence in range(1000):
            writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        writer.append_many([("upbit", "BTC-KRW", 1, s, BIDS, ASKS) for s in range(500)])
        writer.append(journal.OrderBookEncoder().encode("upbit", "BTC-KRW", 1, 7, BIDS, ASKS))
        writer.append_dict(
            {"exchangename": "upbit", "symbol": "BTC-KRW", "timestamp": 1, "sequence": 8}
            | {"bids": BIDS, "asks": ASKS}
        )
        figures = read_writer(journal_dir)
        assert figures is not None
        assert figures.records == 1502
        assert figures.bytes == 1502 * FRAME  # frames with padding, end markers excluded
        assert figures.segment == writer.position[0]
        assert figures.rolls == writer.position[0]  # one roll per segment after the first
        assert figures.rolls >= 9
        assert figures.refused == {"invalid": 0, "too_large": 0, "journal_full": 0}
        assert figures.pid == os.getpid()
        assert figures.payload_id == b"OBK1"
        assert figures.sample_period == M.LATENCY_SAMPLE_PERIOD
    # Kept after the writer closed: its last values, for a post-mortem.
    shot = snapshot(journal_dir)
    assert shot.writer_alive is False
    assert shot.writer is not None and shot.writer.records == 1502


def test_last_publish_is_the_stamp_of_the_last_book(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
        with journal.Reader(journal_dir, metrics=False) as reader:
            stamped = next(reader.available()).local_timestamp_ns
        assert read_writer(journal_dir).last_publish_ns == stamped  # type: ignore[union-attr]
        writer.append_orderbook("upbit", "BTC-KRW", 1, 2, BIDS, ASKS, 1234)
        assert read_writer(journal_dir).last_publish_ns == 1234  # type: ignore[union-attr]
        writer.append_orderbook("upbit", "BTC-KRW", 1, 3, BIDS, ASKS, -5)  # int64 is allowed
        assert read_writer(journal_dir).last_publish_ns == -5  # type: ignore[union-attr]


def test_refusals_are_counted_by_reason_and_nothing_else_moves(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT, max_levels=5000) as writer:
        writer.append_orderbook(*book(0))
        bad_books = [
            ("upbit", "BTC-KRW", 1, 1, [[101.0, 1.0]], [[100.0, 1.0]]),  # crossed
            ("upbit", "", 1, 1, BIDS, ASKS),  # empty symbol
            ("upbit", "BTC-KRW", 1, 1, [[float("nan"), 1.0]], ASKS),
        ]
        for bad in bad_books:
            with pytest.raises(journal.InvalidRecordError):
                writer.append_orderbook(*bad)
        with pytest.raises(journal.InvalidRecordError):
            writer.append_dict({"symbol": "BTC-KRW"})
        with pytest.raises(journal.InvalidRecordError):
            writer.append_many([book(1), ("upbit", "BTC-KRW", 1, 2, [[1.0, -1.0]], ASKS)])
        with pytest.raises(journal.InvalidRecordError):
            writer.append(b"\x08\x00\x00\x00nonsense")
        deep = [[1e6 - i, 1.0] for i in range(4500)]  # 4500 x 16 bytes > a 64 KiB segment
        with pytest.raises(journal.RecordTooLargeError):
            writer.append_orderbook("upbit", "BTC-KRW", 1, 3, deep, [[2e6, 1.0]])
        figures = read_writer(journal_dir)
        assert figures is not None
        assert figures.refused == {"invalid": 6, "too_large": 1, "journal_full": 0}
        assert figures.records == 1
    writer.close()
    with pytest.raises(journal.JournalError):  # closed: not a refusal, not counted
        writer.append_orderbook(*book(9))


def test_a_full_tmpfs_is_counted_as_journal_full(shm_dir: Path) -> None:
    with mounted_tmpfs(shm_dir / "tiny", "512k") as tiny:
        path = tiny / "books"
        with journal.Writer(path, segment_size=SEGMENT) as writer:
            sequence = 0
            with pytest.raises(journal.JournalFullError):
                while True:
                    writer.append_orderbook(*book(sequence))
                    sequence += 1
            with pytest.raises(journal.JournalFullError):
                writer.append_orderbook(*book(sequence))
            figures = read_writer(path)
            assert figures is not None
            assert figures.refused["journal_full"] == 2
            assert figures.records == sequence


def test_latency_histogram_samples_one_append_in_the_period(journal_dir: Path) -> None:
    appends = 4000
    with journal.Writer(journal_dir, segment_size=1 << 20) as writer:
        for sequence in range(appends):
            writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        figures = read_writer(journal_dir)
    assert figures is not None
    # The append after every 16th is timed: after the 16th, 32nd, ... 3984th.
    assert figures.latency_samples == (appends - 1) // M.LATENCY_SAMPLE_PERIOD
    p50 = latency_percentile(figures.latency_counts, 0.5)
    p99 = latency_percentile(figures.latency_counts, 0.99)
    assert p50 is not None and p99 is not None
    assert 100 < p50 <= p99 < 1_000_000_000  # an append is microseconds, not seconds
    mean = figures.latency_sum_ns / figures.latency_samples
    assert 100 < mean < 1_000_000_000


def test_latency_buckets_cover_every_value_once() -> None:
    previous_high = -1
    for index in range(M.LATENCY_BUCKETS):
        low, high = M.latency_bucket_bounds(index)
        assert low == previous_high + 1
        assert M.latency_bucket(low) == index and M.latency_bucket(high) == index
        if low >= 16:
            assert (high - low + 1) * 8 <= low  # at most 1/8 of its values wide
        previous_high = high
    assert previous_high == M.LATENCY_MAX_NS
    assert M.latency_bucket(M.LATENCY_MAX_NS + 12345) == M.LATENCY_BUCKETS - 1
    assert latency_percentile([0] * M.LATENCY_BUCKETS, 0.5) is None
    counts = [0] * M.LATENCY_BUCKETS
    counts[M.latency_bucket(3500)] = 99
    counts[M.latency_bucket(90_000)] = 1
    assert latency_percentile(counts, 0.5) == M.latency_bucket_bounds(M.latency_bucket(3500))[1]
    assert latency_percentile(counts, 0.99) == M.latency_bucket_bounds(M.latency_bucket(3500))[1]
    assert latency_percentile(counts, 1.0) == M.latency_bucket_bounds(M.latency_bucket(90_000))[1]


def test_each_writer_counts_from_zero_and_bytes_follow_the_log(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as first:
        for sequence in range(300):
            first.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        started = read_writer(journal_dir).started_ns  # type: ignore[union-attr]
    with journal.Writer(journal_dir, segment_size=SEGMENT) as second:  # resumes mid-segment
        assert read_writer(journal_dir).records == 0  # type: ignore[union-attr]
        assert read_writer(journal_dir).bytes == 0  # type: ignore[union-attr]
        for sequence in range(300, 1000):
            second.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        figures = read_writer(journal_dir)
        assert figures is not None
        assert figures.started_ns > started
        assert (figures.records, figures.bytes) == (700, 700 * FRAME)
        second.close(seal=True)  # the roll of a stopping collector counts too
        sealed = read_writer(journal_dir)
        assert sealed is not None
        assert sealed.rolls == figures.rolls + 1 and sealed.bytes == 700 * FRAME


def test_metrics_off_makes_no_file(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT, metrics=False) as writer:
        writer.append_orderbook(*book(0))
    assert not (journal_dir / M.WRITER_METRICS_NAME).exists()
    assert read_writer(journal_dir) is None


READ_FROM_ANOTHER_PROCESS = """
import json, sys
from pathlib import Path
from journal.monitor._snapshot import read_writer
figures = read_writer(Path(sys.argv[1]))
print(json.dumps({"records": figures.records, "bytes": figures.bytes, "pid": figures.pid}))
"""


def test_another_process_reads_the_counters_of_a_live_writer(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for sequence in range(123):
            writer.append_orderbook(*book(sequence))
        out = subprocess.run(
            [sys.executable, "-c", READ_FROM_ANOTHER_PROCESS, str(journal_dir)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    seen = json.loads(out)
    encode = journal.OrderBookEncoder().encode
    assert seen == {
        "records": 123,
        "bytes": sum(len(encode(*book(sequence))) for sequence in range(123)),
        "pid": os.getpid(),
    }
