"""``journal metrics`` (Prometheus text, checked by a strict parser), ``journal top``
(one refresh, and live on a terminal until Ctrl-C), the radar's registration, and
the journal's other tools with metrics files in its directory."""

from __future__ import annotations

import dataclasses
import math
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import journal
from journal import _metrics_layout as M
from journal._feed_metrics import FeedMetricsWriter
from journal._radar_metrics import RadarPair, RadarSnapshot, RadarStream
from journal.archive.compact import Compactor
from journal.monitor import _prometheus
from journal.monitor._prometheus import discover
from journal.monitor._snapshot import (
    DISCOVERY_DEPTH,
    find_journals,
    journal_labels,
    journals_under,
    reader_files,
    snapshot,
)
from tests._cpp import program
from tests._procs import book
from tests.conftest import ASKS, BIDS, REPO

SEGMENT = 64 * 1024
SECOND_NS = 1_000_000_000
NOW_NS = time.time_ns()
"""A fixed 'now' for snapshots made by hand."""


def run_journal(command: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``journal top`` / ``journal metrics`` as a user runs them."""
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", command, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- a strict reader of the Prometheus text format 0.0.4 --------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _labels(text: str) -> dict[str, str]:
    labels, position = {}, 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match, f"bad labels {text!r} at {position}"
        assert match[1] not in labels, f"label {match[1]} twice"
        labels[match[1]] = re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], match[2])
        position = match.end()
    return labels


def parse_exposition(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample by (name, labels); AssertionError at the first thing the text
    format forbids: samples before their family's HELP and TYPE, a family declared
    twice or interleaved, a counter not ending in _total, a bad name, label or
    value, a histogram whose buckets do not rise to +Inf = _count."""
    assert text.endswith("\n")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    families: dict[str, str] = {}
    current: str | None = None
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in helped, line
            helped.add(name)
            current = None
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped and name not in families, line
            assert kind in ("counter", "gauge", "histogram"), line
            assert kind != "counter" or name.endswith("_total"), line
            families[name] = kind
            current = name
        else:
            match = _SAMPLE.fullmatch(line)
            assert match and current is not None, f"stray line {line!r}"
            name, labels = match[1], _labels(match[2] or "")
            suffixes = ("_bucket", "_sum", "_count") if families[current] == "histogram" else ("",)
            assert name in {current + suffix for suffix in suffixes}, f"{name} in {current}"
            assert name.endswith("_bucket") == ("le" in labels), line
            value = float(match[3])
            key = (name, frozenset(labels.items()))
            assert key not in samples, f"duplicate sample {line!r}"
            samples[key] = value
    for name, kind in families.items():
        if kind != "histogram":
            continue
        series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
        for (sample, labels), value in samples.items():
            if sample == name + "_bucket":
                rest = frozenset(item for item in labels if item[0] != "le")
                series.setdefault(rest, []).append((float(dict(labels)["le"]), value))
        for rest, buckets in series.items():
            buckets.sort()
            counts = [count for _, count in buckets]
            assert counts == sorted(counts), f"{name} buckets not cumulative"
            assert buckets[-1][0] == math.inf
            assert samples[(name + "_count", rest)] == buckets[-1][1]
            assert (name + "_sum", rest) in samples
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


# -- journal metrics ---------------------------------------------------------------------


def test_metrics_output_parses_and_matches_the_journals(shm_dir: Path) -> None:
    root = shm_dir / "books"
    with (
        journal.Writer(root / "upbit", segment_size=SEGMENT) as upbit,
        journal.Writer(root / 'bin"ance', segment_size=SEGMENT) as binance,  # a label to escape
    ):
        for sequence in range(700):
            upbit.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        binance.append_orderbook(*book(0))
        with pytest.raises(journal.InvalidRecordError):
            upbit.append_orderbook("upbit", "BTC-KRW", 1, 1, ASKS, BIDS)
        with journal.Reader(root / "upbit", name="arb") as reader:
            for _ in range(200):
                reader.try_next()
            done = run_journal("metrics", str(root))
            position = reader.position
        rolls = upbit.position[0]
    assert done.returncode == 0, done.stderr
    samples = parse_exposition(done.stdout)
    label = "arb"  # its name: the same series after a restart
    assert sample(samples, "journal_records_total", journal="upbit") == 700
    assert sample(samples, "journal_records_total", journal='bin"ance') == 1
    assert 'journal_records_total{journal="bin\\"ance"} 1.0\n' in done.stdout
    assert sample(samples, "journal_bytes_total", journal="upbit") == 700 * 432
    assert sample(samples, "journal_rolls_total", journal="upbit") == rolls
    assert sample(samples, "journal_refusals_total", journal="upbit", reason="invalid") == 1
    assert sample(samples, "journal_refusals_total", journal="upbit", reason="too_large") == 0
    assert sample(samples, "journal_writer_up", journal="upbit") == 1
    assert sample(samples, "journal_segment", journal="upbit") == rolls
    latency_count = sample(samples, "journal_append_latency_seconds_count", journal="upbit")
    assert latency_count == (700 - 1) // M.LATENCY_SAMPLE_PERIOD
    assert sample(samples, "journal_append_latency_seconds_sum", journal="upbit") > 0
    assert sample(samples, "journal_reader_up", journal="upbit", reader=label) == 1
    assert sample(samples, "journal_reader_records_total", journal="upbit", reader=label) == 200
    assert sample(samples, "journal_reader_lag_records", journal="upbit", reader=label) == 500
    assert sample(samples, "journal_reader_lag_bytes", journal="upbit", reader=label) == 500 * 432
    assert (
        sample(samples, "journal_reader_position_segment", journal="upbit", reader=label)
        == position[0]  # type: ignore[index]
    )
    # Its segments so far, and perhaps the one prepared for the next roll.
    assert sample(samples, "journal_segments", journal="upbit") in (rolls + 1, rolls + 2)


def test_metrics_of_a_path_that_is_no_journal_is_an_error(shm_dir: Path) -> None:
    done = run_journal("metrics", str(shm_dir))
    assert done.returncode == 2
    assert f"{shm_dir} is not a journal" in done.stderr


def test_a_root_is_searched_for_journals_below_it_but_never_inside_one(shm_dir: Path) -> None:
    """A demo's workspace (books/<venue> and results), deeper journals up to the
    limit, none inside a journal (its readers/), none in a hidden directory or past
    the limit; labels stay unique (a path where two share a name)."""
    workspace = shm_dir / "workspace"
    deep = workspace / "desk" / "a" / "b"
    inside = workspace / "books" / "upbit" / "readers" / "nested"
    places = [
        workspace / "books" / "upbit",
        workspace / "books" / "binance",
        workspace / "results",
        deep / "upbit",  # DISCOVERY_DEPTH levels down: found, and a second "upbit"
        deep / "c" / "too-deep",
        inside,
        workspace / ".hidden" / "j",
    ]
    assert len(deep.relative_to(workspace).parts) + 1 == DISCOVERY_DEPTH
    for place in places:
        with journal.Writer(place, segment_size=SEGMENT) as writer:
            writer.append_orderbook(*book(0))
    (workspace / "link").symlink_to(workspace / "books")  # a link at the first level: followed
    (workspace / "desk" / "link").symlink_to(workspace)  # below it: not (no loops)
    expected = sorted([*places[:4], workspace / "link" / "binance", workspace / "link" / "upbit"])
    assert journals_under(workspace) == expected
    assert find_journals([workspace]) == expected
    assert discover([workspace, workspace / "books"]) == expected
    labels = journal_labels(expected)
    assert labels[workspace / "results"] == "results"
    assert labels[workspace / "books" / "upbit"] == str(workspace / "books" / "upbit")
    assert len(set(labels.values())) == len(expected)

    done = run_journal("metrics", str(workspace))
    assert done.returncode == 0, done.stderr
    samples = parse_exposition(done.stdout)
    assert sample(samples, "journal_records_total", journal="results") == 1
    assert sample(samples, "journal_records_total", journal=str(deep / "upbit")) == 1


def test_help_says_how_deep_a_root_is_searched() -> None:
    shown = run_journal("metrics", "--help")
    assert f"up to {DISCOVERY_DEPTH} directories down" in " ".join(shown.stdout.split())


def _radar(alive: bool, counts: tuple[int, ...] = (0,) * M.LATENCY_BUCKETS) -> RadarSnapshot:
    now = NOW_NS
    return RadarSnapshot(
        path=Path("radar.metrics"),
        name="radar",
        pid=1,
        host="host",
        started_ns=now - SECOND_NS,
        alive=alive,
        taken_ns=now,
        books=10,
        results=4,
        latency_sample_period=1,
        latency_counts=counts,
        latency_sum_ns=sum(counts) * 1000,
        streams=(RadarStream("upbit", "BTC-KRW", 6, now - SECOND_NS, 0),),
        pairs=(RadarPair("BTC", "upbit", "binance", 0.01, 12.5, 1400.0, 0.1, False, now, 4),),
    )


def test_a_dead_radars_current_figures_are_left_out() -> None:
    """radar_up 0, its counters and times kept; its premium, edge, FX, stale flag
    and book ages (frozen, they would read as now) left out."""
    radar = {"radar": "radar"}
    stream = {**radar, "venue": "upbit", "symbol": "BTC-KRW"}
    pair = {**radar, "base": "BTC", "krw_exchange": "upbit", "usdt_exchange": "binance"}
    current = {
        ("radar_book_age_seconds", frozenset(stream.items())),
        ("radar_kimchi_premium_ratio", frozenset(pair.items())),
        ("radar_executable_edge_ratio", frozenset(pair.items())),
        ("radar_fx_krw_per_usdt", frozenset(pair.items())),
        ("radar_pair_stale", frozenset(pair.items())),
    }
    live = parse_exposition(_prometheus.render([], [_radar(alive=True)]))
    dead = parse_exposition(_prometheus.render([], [_radar(alive=False)]))
    assert current <= set(live)
    assert set(dead) == set(live) - current
    assert sample(live, "radar_up", **radar) == 1 and sample(dead, "radar_up", **radar) == 0
    for name, labels in (
        ("radar_books_total", radar),
        ("radar_book_updates_total", stream),
        ("radar_book_last_timestamp_seconds", stream),
        ("radar_pair_updates_total", pair),
        ("radar_pair_last_update_timestamp_seconds", pair),
    ):
        assert sample(dead, name, **labels) == sample(live, name, **labels)


def test_latencies_past_the_top_bucket_are_only_in_inf(journal_dir: Path) -> None:
    """The processes clamp a latency above LATENCY_MAX_NS (68.7 s) into their last
    counter: no finite ``le`` may claim it, so the top octave's bound is not
    exported, and those counts are in +Inf only; the same for both histograms."""
    counts = [0] * M.LATENCY_BUCKETS
    counts[M.latency_bucket(1_000)] = 3  # 1 us
    counts[-1] = 5  # clamped: 68.7 s or longer
    top = (1 << (M.LATENCY_MAX_BITS - 1)) - 1  # the last finite bound, 2^35 - 1 ns
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
        shot = snapshot(journal_dir)
    assert shot.writer is not None
    shot = dataclasses.replace(
        shot, writer=dataclasses.replace(shot.writer, latency_counts=tuple(counts))
    )
    samples = parse_exposition(_prometheus.render([shot], [_radar(True, tuple(counts))]))
    for name, labels in (
        ("journal_append_latency_seconds", {"journal": journal_dir.name}),
        ("radar_observe_latency_seconds", {"radar": "radar"}),
    ):
        buckets = {
            le: value
            for (sample_name, found), value in samples.items()
            if sample_name == f"{name}_bucket"
            for le in [float(dict(found)["le"])]
            if {k: v for k, v in found if k != "le"} == labels
        }
        finite = [le for le in buckets if le != math.inf]
        assert max(finite) == pytest.approx(top / 1e9)
        assert all(buckets[le] == 3 for le in finite if le >= 1e-6)
        assert buckets[math.inf] == 8 == sample(samples, f"{name}_count", **labels)


def test_never_is_left_out_not_exported_as_1970(journal_dir: Path) -> None:
    """A time point of 0 in a metrics file means never (no record read yet, a feed
    that never changed state): no sample, not one that reads as 1970."""
    with (
        journal.Writer(journal_dir, segment_size=SEGMENT) as writer,
        FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW"]),
    ):
        writer.append_orderbook(*book(0))
        with journal.Reader(journal_dir, name="idle", start="end") as reader:
            assert reader.try_next() is None  # registered, polled, nothing read
            samples = parse_exposition(_prometheus.render([snapshot(journal_dir)]))
    idle = frozenset({"journal": journal_dir.name, "reader": "idle"}.items())
    btc = frozenset({"journal": journal_dir.name, "venue": "upbit", "symbol": "BTC-KRW"}.items())
    assert samples[("journal_reader_up", idle)] == 1
    assert samples[("journal_reader_last_poll_timestamp_seconds", idle)] > 0
    assert ("journal_reader_last_record_timestamp_seconds", idle) not in samples
    assert ("journal_feed_state_change_timestamp_seconds", btc) not in samples
    assert ("journal_feed_last_message_timestamp_seconds", btc) not in samples
    moments = [
        value
        for (name, _), value in samples.items()
        if name.endswith(("timestamp_seconds", "start_time_seconds"))
    ]
    assert moments and min(moments) > 1e9  # none is 1970


def test_a_radar_file_that_is_not_one_is_exit_status_2(journal_dir: Path) -> None:
    """--radar given a writer's metrics file: said in one line, exit status 2 (a
    one-off print too); neither JOURNAL nor --radar: the same."""
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
        wrong = journal_dir / M.WRITER_METRICS_NAME
        for args in ([str(journal_dir), "--radar", str(wrong)], ["--radar", str(wrong)], []):
            done = run_journal("metrics", *args)
            assert done.returncode == 2, (args, done.stdout, done.stderr)
            assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
            if args:
                assert f"--radar {wrong} offset=0" in done.stderr
                assert "a writer's metrics file" in done.stderr
            else:
                assert "give JOURNAL... " in done.stderr and "--radar FILE" in done.stderr


# -- journal top -------------------------------------------------------------------------


def test_top_once_shows_the_writer_and_its_readers(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT, max_levels=5000) as writer:
        for sequence in range(300):
            writer.append_orderbook(*book(sequence, -1))
        deep = [[1e6 - i, 1.0] for i in range(4500)]  # more than a 64 KiB segment holds
        with pytest.raises(journal.RecordTooLargeError):
            writer.append_orderbook("upbit", "BTC-KRW", 1, 1, deep, [[2e6, 1.0]])
        with journal.Reader(journal_dir, name="lagging") as reader:
            for _ in range(100):
                reader.try_next()
            done = run_journal("top", str(journal_dir), "--once", "--interval", "0.2")
            segment, offset = reader.position  # type: ignore[misc]
    assert done.returncode == 0, done.stderr
    journal_line, reader_line = done.stdout.splitlines()
    assert f"writer=alive,pid={os.getpid()} records=300 rate=0 " in journal_line
    assert f"segment={writer.position[0]} " in journal_line
    assert "refused=invalid:0,too_large:1,journal_full:0" in journal_line
    assert f"reader=lagging-{os.getpid()} state=alive records=100 rate=0 " in reader_line
    assert "lag_records=200 " in reader_line
    assert f"position={segment}:{offset}" in reader_line
    lag_us = float(re.search(r"lag_us=([\d.]+)", reader_line)[1])  # type: ignore[index]
    assert lag_us > 200_000  # the 101st book was stamped before the 0.2 s interval


def test_top_on_a_terminal_redraws_until_ctrl_c(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        writer.append_orderbook(*book(0))
        controller, terminal = pty.openpty()
        top = subprocess.Popen(
            [sys.executable, "-m", "journal.cli", "top", str(journal_dir), "--interval", "0.1"],
            cwd=REPO,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        try:
            seen = b""
            deadline = time.monotonic() + 30
            while seen.count(b"\x1b[H\x1b[2J") < 3 and time.monotonic() < deadline:
                if select.select([controller], [], [], 1)[0]:
                    seen += os.read(controller, 65536)
            assert seen.count(b"\x1b[H\x1b[2J") >= 3, seen
            assert b"JOURNAL" in seen and journal_dir.name.encode() in seen
            top.send_signal(signal.SIGINT)
            assert top.wait(10) == 0
        finally:
            if top.poll() is None:
                top.kill()
                top.wait()
            os.close(controller)
    assert b"Traceback" not in seen


# -- the radar registers -------------------------------------------------------------------


@pytest.mark.parametrize("build", ["release", "sanitize"])
def test_the_radar_registers_in_each_journal_it_tails(shm_dir: Path, build: str) -> None:
    upbit, binance = shm_dir / "upbit", shm_dir / "binance"
    radar = subprocess.Popen(
        [
            str(program("radar", build)),
            *("--journal", str(upbit), "--journal", str(binance)),
            *("--start", "beginning", "--quiet", "--duration", "60", "--idle", "backoff"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The journals appear after the radar started: it registers once they exist.
        with (
            journal.Writer(upbit, segment_size=SEGMENT) as one,
            journal.Writer(binance, segment_size=SEGMENT) as two,
        ):
            for sequence in range(50):
                one.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
                two.append_orderbook("binance", "BTC-USDT", 1, sequence, BIDS, ASKS)
            label = f"radar-{radar.pid}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                shots = [snapshot(path) for path in (upbit, binance)]
                readers = [shot.readers for shot in shots]
                if all(r and r[0].records == 50 for r in readers):
                    break
                time.sleep(0.05)
            for shot in shots:
                (reader,) = shot.readers
                assert (reader.label, reader.name, reader.alive) == (label, "radar", True)
                assert reader.records == 50 and reader.lag is not None
                assert reader.lag.records == 0
                assert reader.position == shot.end
        radar.send_signal(signal.SIGINT)
        _, stderr = radar.communicate(timeout=30)
    finally:
        if radar.poll() is None:
            radar.kill()
            radar.wait()
    assert radar.returncode == 0, stderr
    assert "not registered" not in stderr and "Sanitizer" not in stderr
    assert reader_files(upbit) == reader_files(binance) == []  # removed on exit


# -- the other tools ignore metrics files ----------------------------------------------------


def test_a_journal_with_metrics_files_verifies_compacts_and_is_read(shm_dir: Path) -> None:
    path, archive = shm_dir / "books", shm_dir / "archive"
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        for sequence in range(600):
            writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
        writer.close(seal=True)
    live = journal.Reader(path, name="watcher")  # a live reader's file, locked
    live.try_next()
    dead = path / M.READERS_DIRECTORY / f"dead-1{M.METRICS_SUFFIX}"
    dead.write_bytes(b"\0" * M.READER_METRICS_SIZE)  # a dead reader's, unlocked
    try:
        for command in ("verify", "info"):
            done = subprocess.run(
                [sys.executable, "-m", "journal.cli", command, str(path)],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
        assert (
            "OK: 600 records"
            in subprocess.run(
                [sys.executable, "-m", "journal.cli", "verify", str(path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )

        radar = subprocess.run(
            [
                str(program("radar")),
                *("--journal", str(path), "--start", "beginning", "--quiet"),
                *("--max-records", "600", "--duration", "30"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert radar.returncode == 0, radar.stderr
        assert "radar summary: 600 books" in radar.stderr

        with Compactor([path], archive, keep=0) as compactor:
            report = compactor.run_pass()
        assert report.errors == [] and report.archived == report.removed >= 4
        assert (path / M.WRITER_METRICS_NAME).exists() and dead.exists()
        with journal.Reader(path, archive=archive, metrics=False) as reader:
            assert [b.sequence for b in reader.available()] == list(range(600))
    finally:
        live.close()
