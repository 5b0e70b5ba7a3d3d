"""``replicate.metrics`` / ``mirror.metrics``: docs/FORMAT.md ("Replication metrics")
agrees with journal._replication_metrics_layout; a file is made, owned, read and
replaced as the other metrics files are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from journal import _metrics_layout as M
from journal import _replication_metrics_layout as L
from journal._errors import JournalError
from journal._replication_metrics import (
    NatsState,
    ReplicationMetrics,
    ReplicationRunningError,
    Role,
    Word,
    read_replication_metrics,
)
from tests._format_md import check_table, format_md_rows


def test_format_md_table_matches_constants() -> None:
    expected = {
        "magic": (L.MAGIC_OFFSET, 8),
        "metrics_version": (L.VERSION_OFFSET, 4),
        "file_size": (L.FILE_SIZE_OFFSET, 4),
        "pid": (L.PID_OFFSET, 4),
        "role": (L.ROLE_OFFSET, 4),
        "started_ns": (L.STARTED_NS_OFFSET, 8),
        "host": (L.HOST_OFFSET, L.HOST_SIZE),
        "stream": (L.STREAM_OFFSET, L.STREAM_SIZE),
        **{name: (L.word_offset(Word[name.upper()]), 8) for name in L.WORD_NAMES},
    }
    check_table(format_md_rows("Replication metrics"), expected, L.REPLICATION_METRICS_SIZE)
    # The common fields sit where the other metrics files have them.
    assert (L.VERSION_OFFSET, L.FILE_SIZE_OFFSET, L.PID_OFFSET) == (
        M.METRICS_VERSION_OFFSET,
        M.METRICS_FILE_SIZE_OFFSET,
        M.METRICS_PID_OFFSET,
    )
    assert (L.STARTED_NS_OFFSET, L.HOST_OFFSET) == (
        M.METRICS_STARTED_NS_OFFSET,
        M.METRICS_HOST_OFFSET,
    )


def test_a_file_is_written_read_and_kept(shm_dir: Path) -> None:
    metrics = ReplicationMetrics.create(shm_dir, Role.MIRROR, "JOURNAL")
    metrics.set(Word.NATS_STATE, NatsState.CONNECTED)
    metrics.add(Word.RECORDS_TOTAL, 1234)
    metrics.set(Word.SEGMENT, 3)
    figures = read_replication_metrics(shm_dir / "mirror.metrics")
    assert figures is not None and figures.alive and figures.role == Role.MIRROR
    assert (figures.pid, figures.stream) == (os.getpid(), "JOURNAL")
    assert figures[Word.RECORDS_TOTAL] == 1234 and figures[Word.SEGMENT] == 3
    with pytest.raises(ReplicationRunningError, match="held by a live journal mirror"):
        ReplicationMetrics.create(shm_dir, Role.MIRROR, "JOURNAL")
    metrics.close()
    figures = read_replication_metrics(shm_dir / "mirror.metrics")
    assert figures is not None and not figures.alive
    assert figures[Word.NATS_STATE] == NatsState.CLOSED and figures[Word.RECORDS_TOTAL] == 1234
    assert read_replication_metrics(shm_dir / "replicate.metrics") is None
    assert not [p for p in shm_dir.iterdir() if p.name.startswith(".")]


def test_a_dead_owners_file_is_replaced(shm_dir: Path) -> None:
    code = (
        "import sys, os\nfrom pathlib import Path\n"
        "from journal._replication_metrics import ReplicationMetrics, Role, Word\n"
        "m = ReplicationMetrics.create(Path(sys.argv[1]), Role.REPLICATE, 'S')\n"
        "m.add(Word.RECORDS_TOTAL, 7)\nos._exit(0)\n"  # dies holding it
    )
    subprocess.run([sys.executable, "-c", code, str(shm_dir)], check=True, timeout=60)
    dead = read_replication_metrics(shm_dir / "replicate.metrics")
    assert dead is not None and not dead.alive and dead[Word.RECORDS_TOTAL] == 7
    metrics = ReplicationMetrics.create(shm_dir, Role.REPLICATE, "S")
    try:
        assert metrics.get(Word.RECORDS_TOTAL) == 0
    finally:
        metrics.close()


def test_a_file_of_another_kind_is_said(shm_dir: Path) -> None:
    (shm_dir / "mirror.metrics").write_bytes(b"OBJMETRW" + bytes(504))
    with pytest.raises(JournalError, match="not a replication metrics file"):
        read_replication_metrics(shm_dir / "mirror.metrics")
