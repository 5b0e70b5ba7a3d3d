"""``journal collect --metrics-listen``: the collector serves its journals' metrics
(its writers and feeds per symbol) over HTTP for its whole life, scraped here while
it collects from a fake Upbit on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests._procs import wait_until
from tests._running import DEADLINE_S, Started
from tests.fake_exchanges import FakeUpbit
from tests.fake_exchanges.collect import JOURNAL, Venues
from tests.test_metrics_http import families, scrape, value

TICK_S = 0.02


@pytest.mark.slow
def test_collect_serves_its_feeds_and_writers_while_it_runs(
    venues: Venues, shm_dir: Path, running: Started
) -> None:
    """``journal collect upbit:KRW-WAVES --metrics-listen 127.0.0.1:0`` against a fake
    Upbit, scraped at the URL it says."""
    fake = venues(FakeUpbit(tick_s=TICK_S))
    collect = running.start(
        [
            *(JOURNAL, "collect", "upbit:KRW-WAVES", "--journal-root", shm_dir / "books"),
            *("--ws-url", f"upbit={fake.ws_url}", "--metrics-listen", "127.0.0.1:0"),
        ]
    )
    url = collect.read_line(r"^serving http://").split()[1]
    wave = {"journal": "upbit", "venue": "upbit", "symbol": "WAVES-KRW"}

    def live_with_books() -> bool:
        found = families(scrape(url))
        return (
            "journal_feed_state" in found
            and value(found, "journal_feed_state", **wave, state="live") == 1
            and value(found, "journal_feed_books_total", **wave) >= 5
        )

    wait_until(live_with_books, DEADLINE_S, "WAVES-KRW live with books, seen by a scrape")
    found = families(scrape(url))
    assert value(found, "journal_feed_up", journal="upbit", venue="upbit") == 1
    info = found["journal_feed_info"].samples[0].labels
    assert info["pid"] == str(collect.process.pid) and info["venue"] == "upbit"
    assert value(found, "journal_writer_up", journal="upbit") == 1
    books = value(found, "journal_records_total", journal="upbit")
    assert books >= value(found, "journal_feed_books_total", **wave) - 1  # read a moment apart
    assert found["journal_feed_messages"].type == "counter"
    collect.stop()


def test_collect_with_a_busy_metrics_port_stops_before_opening_anything(shm_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                str(JOURNAL),
                "collect",
                "upbit:KRW-WAVES",
                "--journal-root",
                str(shm_dir / "books"),
                "--metrics-listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"journal collect: --metrics-listen 127.0.0.1:{port}: ")
    assert "in use" in line
    assert not (shm_dir / "books").exists()
