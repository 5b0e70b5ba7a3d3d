"""The radar's own figures as Prometheus families: a real radar tails two journals,
``journal metrics --listen`` serves its ``radar.metrics`` (found in the results
journal it writes), scraped over HTTP on 127.0.0.1 and read with prometheus_client's
parser; the series keep their labels when the radar is restarted, and a radar
metrics file elsewhere is read with ``--radar FILE``."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import journal
from tests._cpp import program
from tests._procs import wait_until
from tests._running import DEADLINE_S, Running, Started
from tests.conftest import REPO
from tests.test_metrics_http import Served, families, label_sets, series, serve, value

JOURNAL_METRICS = (sys.executable, "-m", "journal.cli", "metrics")
FX = 1400.0
# BTC: 100,000 USDT on binance, 141,400,000 KRW on upbit: a premium of 1% at 1400 KRW/USDT.
BINANCE = ([[99_999.9, 1.0]], [[100_000.1, 1.0]])
UPBIT = ([[141_399_000.0, 1.0]], [[141_401_000.0, 1.0]])


def write_books(shm_dir: Path) -> tuple[Path, Path]:
    """One book on each venue, published now (the radar's staleness limit is far)."""
    upbit, binance = shm_dir / "books" / "upbit", shm_dir / "books" / "binance"
    now_ns = time.time_ns()
    with journal.Writer(upbit) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", now_ns // 10**6, 0, *UPBIT, now_ns)
    with journal.Writer(binance) as writer:
        writer.append_orderbook("binance", "BTC-USDT", now_ns // 10**6, 7, *BINANCE, now_ns)
    return upbit, binance


def radar_argv(journals: list[Path], *options: str) -> list[object]:
    """The radar tailing ``journals`` until stopped, its results (and radar.metrics)
    in ``options``' --results or its metrics at their --metrics-file."""
    return [
        program("radar"),
        *(arg for path in journals for arg in ("--journal", path)),
        *("--start", "beginning", "--quiet", "--idle", "backoff", "--duration", "120"),
        *("--fx", FX, "--stale-ms", "600000", "--fee", "upbit=5", "--fee", "binance=10"),
        *options,
    ]


def start_radar(running: Started, journals: list[Path], *options: str) -> Running:
    return running.start(radar_argv(journals, *options), stdout=subprocess.DEVNULL)


def scraped_when(exporter: Served, pid: int, **pair: str) -> dict:  # type: ignore[type-arg]
    """The first scrape in which the radar of ``pid`` (the file is its, not the one a
    radar before it left) has computed ``pair``."""
    found: list[dict] = [{}]  # type: ignore[type-arg]

    def seen() -> bool:
        found[0] = exporter.families()
        try:
            info = found[0]["radar_info"].samples[0].labels
            return (
                info["pid"] == str(pid) and value(found[0], "radar_pair_updates_total", **pair) >= 1
            )
        except (KeyError, AssertionError):
            return False

    wait_until(seen, DEADLINE_S, f"radar pid {pid} computing {pair} in a scrape")
    return found[0]


CURRENT_RADAR_FAMILIES = {
    "radar_book_age_seconds",
    "radar_kimchi_premium_ratio",
    "radar_executable_edge_ratio",
    "radar_fx_krw_per_usdt",
    "radar_pair_stale",
}
"""A radar's figures of now: left out once it stopped or died."""


@pytest.mark.slow
def test_the_radars_families_and_their_labels_across_a_restart(
    shm_dir: Path, running: Started
) -> None:
    upbit, binance = write_books(shm_dir)
    results = shm_dir / "results"
    first = start_radar(running, [upbit, binance], "--results", str(results))
    # The workspace's root: books/<venue> and results found below it, two levels down.
    exporter = serve(running, shm_dir)
    radar = {"radar": "radar"}
    pair = {**radar, "base": "BTC", "krw_exchange": "upbit", "usdt_exchange": "binance"}
    found = scraped_when(exporter, first.process.pid, **pair)

    assert value(found, "radar_up", **radar) == 1
    assert found["radar_info"].samples[0].labels["pid"] == str(first.process.pid)
    assert value(found, "radar_books_total", **radar) == 2
    assert value(found, "radar_results_total", **radar) >= 1
    assert found["radar_books"].type == found["radar_results"].type == "counter"
    assert value(found, "radar_kimchi_premium_ratio", **pair) == pytest.approx(0.01, abs=1e-12)
    assert value(found, "radar_fx_krw_per_usdt", **pair) == FX
    # Buy on binance at 100,000.1 USDT (+10 bps), sell on upbit at 141,399,000 KRW (-5 bps).
    cost = 100_000.1 * FX * (1 + 10e-4)
    edge = (141_399_000 * (1 - 5e-4) - cost) / cost
    assert value(found, "radar_executable_edge_ratio", **pair) == pytest.approx(edge, rel=1e-9)
    assert value(found, "radar_pair_stale", **pair) == 0
    assert abs(value(found, "radar_pair_last_update_timestamp_seconds", **pair) - time.time()) < 60
    for venue, symbol in (("upbit", "BTC-KRW"), ("binance", "BTC-USDT")):
        stream = {**radar, "venue": venue, "symbol": symbol}
        assert value(found, "radar_book_updates_total", **stream) == 1
        assert 0 <= value(found, "radar_book_age_seconds", **stream) < 60
        assert abs(value(found, "radar_book_last_timestamp_seconds", **stream) - time.time()) < 60
    latency = found["radar_observe_latency_seconds"]
    assert latency.type == "histogram"
    buckets = [s for s in latency.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and not math.isnan(buckets[-1].value)
    # The radar is a reader of each journal, by its name; the results journal too is found.
    for path in (upbit, binance):
        assert value(found, "journal_reader_up", journal=path.name, reader="radar") == 1
    assert {s.labels["journal"] for s in found["journal_segments"].samples} == {
        "upbit",
        "binance",
        "results",
    }

    first.stop(signal.SIGINT)  # its file stays, the lock free: radar_up 0, its counters
    stopped = exporter.families()
    assert value(stopped, "radar_up", **radar) == 0
    assert value(stopped, "radar_books_total", **radar) == 2
    assert value(stopped, "radar_pair_updates_total", **pair) >= 1
    # Its figures of now would read as current: left out, the alerts and panels quiet.
    assert set(label_sets(found, "radar_")) >= CURRENT_RADAR_FAMILIES
    assert not CURRENT_RADAR_FAMILIES & set(stopped), sorted(stopped)
    kept = label_sets(found, "radar_")
    for name in CURRENT_RADAR_FAMILIES:
        del kept[name]
    assert label_sets(stopped, "radar_") == kept

    second = start_radar(running, [upbit, binance], "--results", str(results))
    again = scraped_when(exporter, second.process.pid, **pair)
    assert value(again, "radar_up", **radar) == 1
    assert label_sets(again, "radar_") == label_sets(found, "radar_")
    # Its reader series appear as it polls each journal (a time of "never" is left out).
    wait_until(
        lambda: (
            label_sets(exporter.families(), "journal_reader_")
            == label_sets(found, "journal_reader_")
        ),
        DEADLINE_S,
        "the restarted radar's reader series, as before the restart",
    )
    assert series(again["radar_info"]) == {
        frozenset({**radar, "pid": str(second.process.pid), "host": _host(found)}.items()): 1
    }
    exporter.stop()


def _host(found: dict) -> str:  # type: ignore[type-arg]
    return str(found["radar_info"].samples[0].labels["host"])


@pytest.mark.slow
def test_a_radar_metrics_file_elsewhere_is_read_with_radar_file(
    shm_dir: Path, running: Started
) -> None:
    upbit, binance = write_books(shm_dir)
    metrics_file = shm_dir / "desk.metrics"
    options = ("--metrics-file", str(metrics_file), "--metrics-name", "desk")
    start_radar(running, [upbit, binance], *options)
    wait_until(metrics_file.exists, DEADLINE_S, "the radar's metrics file")

    def read(*journals: Path) -> dict:  # type: ignore[type-arg]
        done = subprocess.run(
            [*JOURNAL_METRICS, *map(str, journals), "--radar", str(metrics_file)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        assert done.returncode == 0 and not done.stderr, done.stderr
        return families(done.stdout)

    pair = {"radar": "desk", "base": "BTC", "krw_exchange": "upbit", "usdt_exchange": "binance"}
    found: list[dict] = [{}]  # type: ignore[type-arg]

    def computed() -> bool:
        found[0] = read(shm_dir / "books")
        return "radar_kimchi_premium_ratio" in found[0]

    wait_until(computed, DEADLINE_S, "the desk radar's premium in journal metrics")
    assert value(found[0], "radar_kimchi_premium_ratio", **pair) == pytest.approx(0.01, abs=1e-12)
    assert value(found[0], "journal_reader_up", journal="upbit", reader="desk") == 1
    # --radar FILE alone (what the radar's --metrics-listen runs): its families only.
    alone = read()
    assert value(alone, "radar_up", radar="desk") == 1
    assert {name for name in alone if not name.startswith("radar_")} == {"journal_scrape_problems"}
