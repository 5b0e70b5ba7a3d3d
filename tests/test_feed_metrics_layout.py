"""``collector.metrics``'s layout: docs/FORMAT.md ("Collector metrics") agrees with
journal._feed_metrics_layout, as tests/test_layout.py checks the other files."""

from __future__ import annotations

from journal import _feed_metrics_layout as L
from journal import _metrics_layout as M
from tests._format_md import check_table, format_md_rows


def test_format_md_tables_match_constants() -> None:
    header = {
        "magic": (L.MAGIC_OFFSET, 8),
        "metrics_version": (L.VERSION_OFFSET, 4),
        "file_size": (L.FILE_SIZE_OFFSET, 4),
        "collector_pid": (L.PID_OFFSET, 4),
        "stream_count": (L.STREAM_COUNT_OFFSET, 4),
        "collector_started_ns": (L.STARTED_NS_OFFSET, 8),
        "collector_host": (L.HOST_OFFSET, L.HOST_SIZE),
        "venue": (L.VENUE_OFFSET, L.VENUE_SIZE),
    }
    slot = {
        "state": (L.STATE_OFFSET, 8),
        "state_changed_ns": (L.STATE_CHANGED_NS_OFFSET, 8),
        "last_message_ns": (L.LAST_MESSAGE_NS_OFFSET, 8),
        "last_delay_ns": (L.LAST_DELAY_NS_OFFSET, 8),
        **{name: (L.COUNTERS_OFFSET + 8 * index, 8) for index, name in enumerate(L.COUNTER_NAMES)},
        "symbol": (L.SYMBOL_OFFSET, L.SYMBOL_SIZE),
    }
    check_table(format_md_rows("Collector metrics", 0), header, L.STREAMS_OFFSET)
    check_table(format_md_rows("Collector metrics", 1), slot, L.STREAM_SLOT_SIZE)
    for name, (offset, width) in slot.items():
        if name != "symbol":
            assert offset % 8 == 0 and width == 8, name
    # The file header's common fields sit where the other metrics files have them.
    assert (L.VERSION_OFFSET, L.FILE_SIZE_OFFSET) == (
        M.METRICS_VERSION_OFFSET,
        M.METRICS_FILE_SIZE_OFFSET,
    )
    assert (L.PID_OFFSET, L.STARTED_NS_OFFSET, L.HOST_OFFSET) == (
        M.METRICS_PID_OFFSET,
        M.METRICS_STARTED_NS_OFFSET,
        M.METRICS_HOST_OFFSET,
    )
