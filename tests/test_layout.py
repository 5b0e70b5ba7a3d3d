"""The binary layout: pinned constants, and docs/FORMAT.md agreeing with journal._layout."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import journal
from journal import _layout as F
from journal import _metrics_layout as M
from journal import _orderbook_layout as OB
from journal._segment import segment_indices
from tests._format_md import check_table, format_md_rows
from tests.conftest import REPO


def test_pinned_surface() -> None:
    assert journal.MAGIC == b"OBJOURNL"
    assert journal.FORMAT_VERSION == 1
    assert journal.ORDERBOOK_PAYLOAD_ID == b"OBK1"
    assert F.HEADER_SIZE == 4096
    assert F.END_OF_SEGMENT == 0xFFFF_FFFF
    assert set(journal.__all__) >= {
        "Writer",
        "Reader",
        "JournalError",
        "CorruptSegmentError",
        "JournalFullError",
        "InvalidRecordError",
        "WriterLockedError",
        "RecordTooLargeError",
    }


def test_commit_word_alone_and_reader_word_apart() -> None:
    assert F.COMMIT_OFFSET_OFFSET % F.CACHE_LINE_PAIR == 0
    assert F.FUTEX_SLEEPERS_OFFSET % F.CACHE_LINE_PAIR == 0
    assert F.FUTEX_SLEEPERS_OFFSET - F.COMMIT_OFFSET_OFFSET == F.CACHE_LINE_PAIR
    assert F.END_MARKER_OFFSET_OFFSET + 8 <= F.COMMIT_OFFSET_OFFSET


def test_format_md_header_table_matches_constants() -> None:
    rows = format_md_rows("Segment header")
    fields = {name: (offset, size) for offset, size, name in rows if name != "reserved"}
    expected = {
        "magic": (F.MAGIC_OFFSET, len(F.MAGIC)),
        "format_version": (F.FORMAT_VERSION_OFFSET, 4),
        "header_size": (F.HEADER_SIZE_OFFSET, 4),
        "segment_size": (F.SEGMENT_SIZE_OFFSET, 8),
        "segment_index": (F.SEGMENT_INDEX_OFFSET, 8),
        "payload_id": (F.PAYLOAD_ID_OFFSET, F.PAYLOAD_ID_SIZE),
        "max_record_size": (F.MAX_RECORD_SIZE_OFFSET, 4),
        "created_ns": (F.CREATED_NS_OFFSET, 8),
        "writer_pid": (F.WRITER_PID_OFFSET, 4),
        "writer_started_ns": (F.WRITER_STARTED_NS_OFFSET, 8),
        "writer_host": (F.WRITER_HOST_OFFSET, F.WRITER_HOST_SIZE),
        "end_marker_offset": (F.END_MARKER_OFFSET_OFFSET, 8),
        "incarnation_ns": (F.INCARNATION_NS_OFFSET, 8),
        "commit_offset": (F.COMMIT_OFFSET_OFFSET, 8),
        "futex_sleepers": (F.FUTEX_SLEEPERS_OFFSET, 4),
    }
    for name, place in expected.items():
        assert fields[name] == place, name
    # The table covers the header without gaps or overlaps.
    for (offset, size, _), (next_offset, _, _) in itertools.pairwise(rows):
        assert offset + size == next_offset
    assert rows[-1][0] + rows[-1][1] == F.HEADER_SIZE


def test_format_md_metrics_tables_match_constants() -> None:
    header = {
        "magic": (M.METRICS_MAGIC_OFFSET, 8),
        "metrics_version": (M.METRICS_VERSION_OFFSET, 4),
        "file_size": (M.METRICS_FILE_SIZE_OFFSET, 4),
    }
    writer = {
        **header,
        "writer_pid": (M.METRICS_PID_OFFSET, 4),
        "latency_sample_period": (M.LATENCY_SAMPLE_PERIOD_OFFSET, 4),
        "writer_started_ns": (M.METRICS_STARTED_NS_OFFSET, 8),
        "writer_host": (M.METRICS_HOST_OFFSET, M.METRICS_HOST_SIZE),
        "payload_id": (M.WRITER_PAYLOAD_ID_OFFSET, 4),
        "latency_buckets": (M.LATENCY_BUCKETS_OFFSET, 4),
        "records_total": (M.RECORDS_TOTAL_OFFSET, 8),
        "last_publish_ns": (M.LAST_PUBLISH_NS_OFFSET, 8),
        "segment_sequence": (M.SEGMENT_SEQUENCE_OFFSET, 8),
        "segment": (M.SEGMENT_OFFSET, 8),
        "bytes_base": (M.BYTES_BASE_OFFSET, 8),
        "rolls_total": (M.ROLLS_TOTAL_OFFSET, 8),
        "refused_invalid_total": (M.REFUSED_INVALID_TOTAL_OFFSET, 8),
        "refused_too_large_total": (M.REFUSED_TOO_LARGE_TOTAL_OFFSET, 8),
        "refused_journal_full_total": (M.REFUSED_JOURNAL_FULL_TOTAL_OFFSET, 8),
        "latency_sum_ns": (M.LATENCY_SUM_NS_OFFSET, 8),
        "latency_counts": (M.LATENCY_COUNTS_OFFSET, 8 * M.LATENCY_BUCKETS),
    }
    reader = {
        **header,
        "reader_pid": (M.METRICS_PID_OFFSET, 4),
        "reader_started_ns": (M.METRICS_STARTED_NS_OFFSET, 8),
        "reader_host": (M.METRICS_HOST_OFFSET, M.METRICS_HOST_SIZE),
        "reader_name": (M.READER_NAME_OFFSET, M.READER_NAME_SIZE),
        "segment": (M.READER_SEGMENT_OFFSET, 8),
        "offset": (M.READER_OFFSET_OFFSET, 8),
        "records_total": (M.READER_RECORDS_TOTAL_OFFSET, 8),
        "last_record_ns": (M.READER_LAST_RECORD_NS_OFFSET, 8),
        "last_poll_ns": (M.READER_LAST_POLL_NS_OFFSET, 8),
        "incarnations_total": (M.READER_INCARNATIONS_TOTAL_OFFSET, 8),
    }
    check_table(format_md_rows("Metrics files", 0), writer, M.WRITER_METRICS_SIZE)
    check_table(format_md_rows("Metrics files", 1), reader, M.READER_METRICS_SIZE)
    # Every counter is an aligned word after the write-once header.
    for table in (writer, reader):
        for name, (offset, width) in table.items():
            if offset >= M.METRICS_COUNTERS_OFFSET:
                assert offset % 8 == 0 and width % 8 == 0, name


def test_header_struct_packs_fields_at_their_offsets() -> None:
    packed = F.HEADER_STRUCT.pack(
        F.MAGIC,
        1,
        4096,
        1 << 20,
        7,
        b"OBK1",
        F.max_record_size(1 << 20),
        11,
        13,
        0,
        17,
        b"host",
    )
    assert packed[F.SEGMENT_INDEX_OFFSET : F.SEGMENT_INDEX_OFFSET + 8] == (7).to_bytes(8, "little")
    assert packed[F.PAYLOAD_ID_OFFSET : F.PAYLOAD_ID_OFFSET + 4] == b"OBK1"
    assert packed[F.WRITER_PID_OFFSET : F.WRITER_PID_OFFSET + 4] == (13).to_bytes(4, "little")
    assert packed[F.WRITER_HOST_OFFSET : F.WRITER_HOST_OFFSET + 4] == b"host"


def test_orderbook_layout_is_aligned() -> None:
    assert OB.TABLE_POS % 8 == 0
    for field in (OB.TIMESTAMP_FIELD, OB.SEQUENCE_FIELD, OB.LOCAL_TIMESTAMP_NS_FIELD):
        assert (OB.TABLE_POS + field) % 8 == 0
    assert (OB.BIDS_VECTOR_POS + 4) % 8 == 0  # level data after the u32 count
    assert OB.VTABLE_POS + OB.VTABLE_SIZE <= OB.TABLE_POS


def test_ten_by_ten_book_is_432_bytes() -> None:
    bids = [[100.0 - i, 1.0] for i in range(10)]
    asks = [[101.0 + i, 1.0] for i in range(10)]
    record = journal.OrderBookEncoder().encode("upbit", "BTC-KRW", 1, 2, bids, asks, 3)
    assert len(record) == 432  # docs/FORMAT.md says so


def test_segments_past_ten_to_the_eighth_are_listed(shm_dir: Path) -> None:
    """Names get a ninth digit at 10**8; the listing takes them, and canonical names only
    (no extra leading zero, ASCII digits only)."""
    fullwidth = "\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18"
    names = ["99999999", "100000000", "0100000000", fullwidth, "00000001", "1"]
    for stem in names:
        (shm_dir / f"{stem}{F.SEGMENT_SUFFIX}").touch()
    assert segment_indices(shm_dir) == [1, 99_999_999, 100_000_000]
    assert F.segment_name(100_000_000) == "100000000.journal"


def test_orderbook_positions_and_words_are_where_a_record_has_them() -> None:
    """The named positions and the u64-word view of journal._orderbook_layout, checked
    on a record the encoder lays out (the archive's value planes and the bulk loader
    use nothing else)."""
    import numpy as np

    bids = [[100.0 - i, 1.0 + i] for i in range(3)]
    asks = [[101.0 + i, 2.0 + i] for i in range(2)]
    record = journal.OrderBookEncoder().encode("upbit", "BTC-KRW", 11, 22, bids, asks, 33)
    words = np.frombuffer(record, "<u8")
    head = OB.HEAD_STRUCT.unpack_from(record)
    assert OB.HEAD_SIZE == OB.BIDS_LEVELS_POS == OB.WORD_SIZE * OB.HEAD_WORDS == 80
    # The values: three whole words, in the order timestamp, sequence, local time.
    assert OB.VALUE_WORDS == (5, 6, 7)
    assert words[list(OB.VALUE_WORDS)].tolist() == [11, 22, 33]
    assert (OB.VALUES_POS, OB.VALUES_END) == (40, 64)
    for pos, value in ((OB.TIMESTAMP_POS, 11), (OB.SEQUENCE_POS, 22)):
        assert words[OB.word(pos)] == value and OB.word_shift(pos) == 0
    # The fixed words: the same bytes in every record of the layout.
    assert list(OB.FIXED_WORDS) == [1, 2, 3]
    assert words[OB.FIXED_WORDS.start : OB.FIXED_WORDS.stop].tobytes() == OB.FIXED_WORDS_BYTES
    assert record[OB.ROOT_OFFSET_POS : OB.FIXED_HEAD_END] == OB.FIXED_HEAD

    def u32(pos: int) -> int:
        return int(words[OB.word(pos)] >> np.uint64(OB.word_shift(pos))) & 0xFFFF_FFFF

    # Offsets to the strings and vectors, and the vectors' lengths, where named.
    assert u32(OB.BIDS_VECTOR_POS) == len(bids) == head[-1]
    assert OB.BIDS_POS + u32(OB.BIDS_POS) == OB.BIDS_VECTOR_POS
    asks_at = OB.asks_vector_pos(len(bids))
    assert OB.ASKS_POS + u32(OB.ASKS_POS) == asks_at and u32(asks_at) == len(asks)
    levels = np.frombuffer(record, "<f8", 2 * len(bids), OB.BIDS_LEVELS_POS)
    assert levels.reshape(-1, 2).tolist() == bids
    levels = np.frombuffer(record, "<f8", 2 * len(asks), asks_at + OB.UOFFSET_SIZE)
    assert levels.reshape(-1, 2).tolist() == asks
    exchange_at = OB.EXCHANGE_NAME_POS + u32(OB.EXCHANGE_NAME_POS)
    assert record[exchange_at + OB.UOFFSET_SIZE :].startswith(b"upbit\0")
    symbol_at = OB.SYMBOL_POS + u32(OB.SYMBOL_POS)
    assert record[symbol_at + OB.UOFFSET_SIZE :].startswith(b"BTC-KRW\0")
    assert OB.vtable_entry(OB.FIELD_COUNT) == OB.VTABLE_SIZE


def test_shared_header_words_are_reached_only_through_publish() -> None:
    """The commit, end marker and futex sleepers words of a mapped segment are loaded
    and stored by journal._publish's named functions only (issue #11): no other
    module indexes its word views or unpacks end_marker_offset itself."""
    inline = re.compile(
        r"\[\s*(COMMIT_WORD|END_MARKER_WORD|SLEEPERS_WORD)\s*\]"
        r"|unpack_from\([^)]*(END_MARKER_OFFSET_OFFSET|FUTEX_SLEEPERS_OFFSET|COMMIT_OFFSET_OFFSET)"
    )
    for path in sorted((REPO / "journal").rglob("*.py")):
        if path.name in ("_publish.py", "_layout.py"):
            continue
        assert not inline.search(path.read_text()), path.relative_to(REPO)
