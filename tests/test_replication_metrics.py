"""``replicate.metrics`` / ``mirror.metrics``: docs/FORMAT.md ("Replication metrics")
agrees with journal._replication_metrics_layout; a file is made, owned, read and
replaced as the other metrics files are; ``journal metrics`` exports both sides as the
``journal_replication_*`` families (printed, written with ``--output --interval``,
scraped over HTTP from ``--listen``; parsed by prometheus_client), and ``journal top``
shows them. Files written here as the commands write them; tests/test_replicate.py
has the same from a real replicate and mirror through nats-server."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric

import journal
from journal import _layout as F
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
from journal.monitor import _prometheus, _top
from journal.monitor._prometheus import family_names
from journal.monitor._snapshot import snapshot
from tests._format_md import check_table, format_md_rows
from tests._replication import incarnation_of
from tests._running import Started, read_line
from tests.conftest import ASKS, BIDS, REPO
from tests.test_metrics_http import (
    families,
    journal_argv,
    label_sets,
    series,
    serve,
    value,
)

SEGMENT = 64 * 1024


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


# -- what journal metrics and journal top make of them --------------------------------------


BOOKS = 100
ACKNOWLEDGED = 60
"""The replicator's files below say JetStream acknowledged the first 60 books."""


@contextlib.contextmanager
def replicated_pair(root: Path) -> Iterator[tuple[Path, Path]]:
    """``root/src/books`` with 100 books and a ``replicate.metrics`` saying JetStream
    acknowledged the first 60 (connected, 2 retries), and ``root/copy/books`` with
    those 60 books and a ``mirror.metrics`` (connecting, 40 pending, a duplicate,
    2 redeliveries), both files owned by this process, as the commands write them."""
    source, copy = root / "src" / "books", root / "copy" / "books"
    now = time.time_ns()
    with (
        journal.Writer(source, segment_size=SEGMENT) as writer,
        journal.Writer(copy, segment_size=SEGMENT) as mirrored,
    ):
        for sequence in range(BOOKS):
            writer.append_orderbook("upbit", "BTC-KRW", sequence, now, BIDS, ASKS)
            if sequence < ACKNOWLEDGED:
                mirrored.append_orderbook("upbit", "BTC-KRW", sequence, now, BIDS, ASKS)
        with journal.Reader(source, metrics=False) as reader:
            position = list(reader.available())[ACKNOWLEDGED].position
        replicate = ReplicationMetrics.create(source, Role.REPLICATE, "JOURNAL")
        mirror = ReplicationMetrics.create(copy, Role.MIRROR, "JOURNAL")
        try:
            for metrics in (replicate, mirror):
                metrics.add(Word.RECORDS_TOTAL, ACKNOWLEDGED)
                metrics.add(Word.MESSAGES_TOTAL, 3)
                metrics.add(Word.BYTES_TOTAL, 25_920)
                metrics.set(Word.STREAM_SEQUENCE, 3)
                metrics.set(Word.INCARNATION_NS, incarnation_of(source))
                metrics.set(Word.SEGMENT, position[0])
                metrics.set(Word.OFFSET, position[1])
                metrics.set(Word.LAST_RECORD_NS, now)
                metrics.set(Word.LAST_MESSAGE_NS, now + 250_000)
                metrics.add(Word.RECONNECTS_TOTAL, 1)
            replicate.set(Word.NATS_STATE, NatsState.CONNECTED)
            replicate.set(Word.LATENCY_NS, 250_000)
            replicate.add(Word.RETRIES_TOTAL, 2)
            mirror.set(Word.NATS_STATE, NatsState.CONNECTING)
            mirror.set(Word.LATENCY_NS, 750_000)
            mirror.set(Word.PENDING_MESSAGES, 40)
            mirror.add(Word.DUPLICATES_TOTAL)
            mirror.add(Word.REDELIVERIES_TOTAL, 2)
            yield source, copy
        finally:
            replicate.close()
            mirror.close()


def replication_families(found: dict[str, Metric]) -> set[str]:
    return {name for name in found if name.startswith("journal_replication_")}


def assert_both_sides(found: dict[str, Metric]) -> None:
    """What ``replicated_pair`` exports, labelled by journal (two named books: their
    paths), role and stream, a pid only in the info family."""
    journals = sorted(s.labels["journal"] for s in found["journal_replication_up"].samples)
    assert [Path(name).parent.name for name in journals] == ["copy", "src"], journals
    copy, source = ({"journal": name, "stream": "JOURNAL"} for name in journals)
    replicate, mirror = {**source, "role": "replicate"}, {**copy, "role": "mirror"}
    for side in (replicate, mirror):
        assert value(found, "journal_replication_up", **side) == 1
        assert value(found, "journal_replication_records_total", **side) == ACKNOWLEDGED
        assert value(found, "journal_replication_messages_total", **side) == 3
        assert value(found, "journal_replication_bytes_total", **side) == 25_920
        assert value(found, "journal_replication_stream_sequence", **side) == 3
        assert value(found, "journal_replication_nats_reconnects_total", **side) == 1
        assert value(found, "journal_replication_nats_errors_total", **side) == 0
        info = series(found["journal_replication_info"], **side)
        assert list(info) == [
            frozenset({**side, "pid": str(os.getpid()), "host": socket.gethostname()}.items())
        ]
    assert value(found, "journal_replication_nats_connected", **replicate) == 1
    assert value(found, "journal_replication_nats_connected", **mirror) == 0  # connecting
    assert value(found, "journal_replication_delay_seconds", **replicate) == 0.00025
    assert value(found, "journal_replication_delay_seconds", **mirror) == 0.00075
    # The replicator's lag: the 40 books after the acknowledged position, walked.
    assert value(found, "journal_replication_lag_records", **replicate) == BOOKS - ACKNOWLEDGED
    assert value(found, "journal_replication_lag_bytes", **replicate) == 40 * 432
    assert 0 <= value(found, "journal_replication_lag_seconds", **replicate) < 600
    assert value(found, "journal_replication_retries_total", **replicate) == 2
    assert value(found, "journal_replication_pending_messages", **mirror) == 40
    assert value(found, "journal_replication_duplicates_total", **mirror) == 1
    assert value(found, "journal_replication_redeliveries_total", **mirror) == 2
    # Each role's own families on its series only.
    sets = label_sets(found, "journal_replication_")
    only = {"replicate": ("lag_", "retries", "resyncs"), "mirror": ("pending", "duplicates")}
    for role, prefixes in only.items():
        for prefix in prefixes:
            for name in (n for n in sets if n.startswith(f"journal_replication_{prefix}")):
                assert {dict(s.split("=", 1) for s in labels)["role"] for labels in sets[name]} == {
                    role
                }, name
    # Every replication family of the tables, and no other.
    exported = {
        name + "_total" if found[name].type == "counter" else name
        for name in replication_families(found)
    }
    assert exported == {n for n in family_names() if n.startswith("journal_replication_")}
    assert found["journal_replication_records"].type == "counter"


def test_journal_metrics_prints_serves_and_writes_both_sides(
    shm_dir: Path, running: Started
) -> None:
    """One collector behind every way out: the one-off print, ``--output`` with
    ``--interval``, and a scrape over HTTP (``--listen``), each parsed by
    prometheus_client's parser and held to the naming conventions."""
    output = shm_dir / "journal.prom"
    with replicated_pair(shm_dir / "j") as (source, copy):
        roots = (source.parent, copy.parent)
        printed = subprocess.run(
            journal_argv("metrics", *roots), cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert printed.returncode == 0 and not printed.stderr, printed.stderr
        assert_both_sides(families(printed.stdout))
        exporter = serve(running, *roots)
        try:
            assert_both_sides(exporter.families())
        finally:
            exporter.stop()
        writing = subprocess.Popen(
            journal_argv("metrics", *roots, "--output", output, "--interval", "30"),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            read_line(writing, "^writing ")
            assert_both_sides(families(output.read_text()))
        finally:
            writing.terminate()
            writing.communicate(timeout=60)
        assert writing.returncode == 0


def test_a_dead_owner_is_down_with_its_last_figures(journal_dir: Path) -> None:
    code = (
        "import sys, os\nfrom pathlib import Path\n"
        "from journal._replication_metrics import ReplicationMetrics, Role, Word\n"
        "m = ReplicationMetrics.create(Path(sys.argv[1]), Role.MIRROR, 'S')\n"
        "m.set(Word.NATS_STATE, 1)\nm.add(Word.RECORDS_TOTAL, 7)\nos._exit(0)\n"
    )
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
        subprocess.run([sys.executable, "-c", code, str(journal_dir)], check=True, timeout=60)
        found = families(_prometheus.render([snapshot(journal_dir)]))
    mirror = {"journal": "books", "role": "mirror", "stream": "S"}
    assert value(found, "journal_replication_up", **mirror) == 0
    assert value(found, "journal_replication_nats_connected", **mirror) == 0  # its word says 1
    assert value(found, "journal_replication_records_total", **mirror) == 7
    # No message yet: nothing about the last one, rather than zeros reading "just now".
    for name in ("delay_seconds", "last_message_timestamp_seconds", "stream_sequence"):
        assert f"journal_replication_{name}" not in found


def test_a_replicators_lag_needs_a_position_of_this_incarnation(journal_dir: Path) -> None:
    with (
        journal.Writer(journal_dir, segment_size=SEGMENT) as writer,
        contextlib.closing(ReplicationMetrics.create(journal_dir, Role.REPLICATE, "S")) as metrics,
    ):
        for sequence in range(5):
            writer.append_orderbook("upbit", "BTC-KRW", sequence, time.time_ns(), BIDS, ASKS)
        (side,) = snapshot(journal_dir).replication
        assert side.lag is None  # no position yet (offset 0)
        metrics.set(Word.SEGMENT, 0)
        metrics.set(Word.OFFSET, F.HEADER_SIZE)
        metrics.set(Word.INCARNATION_NS, incarnation_of(journal_dir) - 1)
        (side,) = snapshot(journal_dir).replication
        assert side.lag is None  # the old incarnation's position: no place in this one
        metrics.set(Word.INCARNATION_NS, incarnation_of(journal_dir))
        (side,) = snapshot(journal_dir).replication
        assert side.lag is not None and (side.lag.records, side.lag.exact) == (5, True)


def test_a_broken_replication_file_is_said_and_the_rest_exported(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
        (journal_dir / "mirror.metrics").write_bytes(b"OBJMETRW" + bytes(504))
        done = subprocess.run(
            journal_argv("metrics", journal_dir), cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "mirror.metrics: magic=b'OBJMETRW', not a replication metrics file" in done.stderr
        found = families(done.stdout)
        assert value(found, "journal_records_total", journal="books") == 1
        assert value(found, "journal_scrape_problems") == 1
        assert not replication_families(found)
        assert "not a replication metrics file" in _top.log_lines(
            [_top.compare(None, snapshot(journal_dir))]
        )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_top_shows_both_sides_with_rates_from_the_first_interval(shm_dir: Path) -> None:
    """journal top's replication rows (the hooks in _top.run): key=value lines into a
    pipe, the REPLICATION block on a terminal; the first snapshot primes the rates."""
    with replicated_pair(shm_dir / "j") as (source, copy):
        done = subprocess.run(
            journal_argv("top", "--once", "--interval", "0.1", source.parent, copy.parent),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        lines = {
            re.search(r" replication=(\w+) ", line)[1]: dict(  # type: ignore[index]
                field.split("=", 1) for field in line.split()[1:]
            )
            for line in done.stdout.splitlines()
            if " replication=" in line
        }
        assert set(lines) == {"replicate", "mirror"}, done.stdout
        replicate, mirror = lines["replicate"], lines["mirror"]
        assert replicate["journal"].endswith("src/books") and replicate["stream"] == "JOURNAL"
        assert replicate["owner"] == f"alive,pid={os.getpid()}"
        assert (replicate["lag_records"], replicate["records_total"]) == ("40", "60")
        assert replicate["rate"] == mirror["rate"] == "0"  # primed: nothing in the interval
        assert (mirror["pending_messages"], mirror["duplicates_total"]) == ("40", "1")
        assert "lag_records" not in mirror

        terminal = _Terminal()
        args = argparse.Namespace(
            journals=[str(source.parent), str(copy.parent)],
            interval=0.05,
            stale=5.0,
            once=True,
            clean=False,
        )
        assert _top.run(args, terminal) == 0
    view = terminal.getvalue()
    assert "REPLICATION" in view and "JOURNAL ROLE" not in view
    rows = [line.split() for line in view.split("REPLICATION", 1)[1].splitlines()[1:]]
    assert [(row[1], row[6], row[8]) for row in rows] == [
        ("replicate", "60", "40"),
        ("mirror", "60", "-"),
    ], view
