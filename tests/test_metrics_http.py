"""``journal metrics --listen``: Prometheus scrapes over real HTTP on 127.0.0.1.

Each test runs ``journal metrics`` as a user runs it, waits for the URL it prints,
scrapes it with urllib and reads the text with prometheus_client's own parser
(and the OpenMetrics one, asked for by an Accept header); writers and readers are
real, in this process or in children. Series labels must be stable across a
reader's restart, journals created later must appear at the next scrape, every
family must follow Prometheus' naming conventions; ``--interval`` rewrites a
textfile; a busy port or a bad HOST:PORT is one line, exit status 2.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import journal
from journal._errors import JournalError
from journal._feed_metrics import FeedCounter, FeedMetricsWriter, FeedState
from journal.monitor._exporter import ALL_INTERFACES, parse_listen
from journal.monitor._prometheus import family_names, stable_labels
from tests._procs import wait_until
from tests._running import DEADLINE_S, Running, Started
from tests.conftest import ASKS, BIDS, REPO

SEGMENT = 64 * 1024
READER = """\
import sys
import journal
reader = journal.Reader(sys.argv[1], name=sys.argv[2], start="beginning")
for _ in range(int(sys.argv[3])):
    assert reader.try_next() is not None
print("ready", flush=True)
sys.stdin.readline()
"""
"""A reader in its own process: reads N books, says ready, waits for a line."""


# -- the exporter as a user runs it ----------------------------------------------------------


def journal_argv(*args: object) -> list[str]:
    return [sys.executable, "-m", "journal.cli", *map(str, args)]


def scrape(url: str, accept: str | None = None) -> str:
    """One scrape of ``url``, as Prometheus makes it (an HTTP GET)."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


class Served(Running):
    """``journal metrics ARGS --listen 127.0.0.1:0`` running; ``url`` once it serves."""

    def __init__(self, *args: object, listen: str = "127.0.0.1:0") -> None:
        super().__init__(journal_argv("metrics", *args, "--listen", listen), cwd=REPO)
        self.url = ""

    def wait_serving(self) -> None:
        self.url = self.read_line(r"^serving http://").split()[1]

    def scrape(self, accept: str | None = None) -> str:
        return scrape(self.url, accept)

    def families(self) -> dict[str, Metric]:
        return families(self.scrape())


def serve(running: Started, *args: object) -> Served:
    """``journal metrics ARGS --listen`` started (killed after the test if it still
    runs), once it serves."""
    exporter = Served(*args)
    running.append(exporter)
    exporter.wait_serving()
    return exporter


# -- reading a scrape ------------------------------------------------------------------------


def families(text: str) -> dict[str, Metric]:
    """The families of a scrape by name, as prometheus_client's parser reads them
    (a counter under its name without ``_total``), checked against the conventions."""
    found = list(text_string_to_metric_families(text))
    names = [family.name for family in found]
    assert len(names) == len(set(names)), f"a family twice: {names}"
    check_conventions(found)
    return {family.name: family for family in found}


_TIME_WORDS = frozenset({"time", "timestamp", "age", "latency", "delay"})
_BAD_UNITS = frozenset(
    {"ms", "us", "ns", "milliseconds", "microseconds", "nanoseconds", "kb", "mb", "percent"}
)


def check_conventions(found: Sequence[Metric]) -> None:
    """Prometheus' naming conventions on every family: snake case with a known
    prefix, help present, counters sampled as ``_total`` (and no other family ending
    so), no ``_created`` sample, base units spelled at the end (``_seconds``,
    ``_bytes``), never ms or ns; a pid only as a label of an ``_info`` family."""
    for family in found:
        name = family.name
        assert re.fullmatch(r"(journal|radar)_[a-z0-9_]+", name), name
        assert family.documentation.strip(), f"{name}: no help"
        assert family.type in ("counter", "gauge", "histogram"), (name, family.type)
        assert not _BAD_UNITS.intersection(name.split("_")), f"{name}: use base units"
        base = name.removesuffix("_info")
        if _TIME_WORDS.intersection(base.split("_")):
            assert base.endswith("_seconds"), f"{name}: a time is in seconds"
        if "bytes" in name:
            assert name.endswith("_bytes"), f"{name}: bytes at the end"
        if family.type != "counter":
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
        for sample in family.samples:
            assert not sample.name.endswith("_created"), sample
            if family.type == "counter":
                assert sample.name == name + "_total", sample
            if "pid" in sample.labels:
                assert name.endswith("_info"), f"{name}: pid as a label of a series"
            assert sample.value == sample.value or family.type != "gauge", sample  # no NaN


def series(family: Metric, **match: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``family`` whose labels include ``match``, by their labels."""
    return {
        frozenset(sample.labels.items()): sample.value
        for sample in family.samples
        if all(sample.labels.get(key) == value for key, value in match.items())
    }


def value(found: dict[str, Metric], name: str, **labels: str) -> float:
    """The sample named ``name`` (``journal_records_total``, not its family's name)
    with exactly ``labels``."""
    family = found[re.sub(r"_(total|bucket|sum|count)$", "", name)]
    for sample in family.samples:
        if sample.name == name and sample.labels == labels:
            return float(sample.value)
    raise AssertionError(f"no {name}{labels} in {[s.labels for s in family.samples]}")


def label_sets(found: dict[str, Metric], prefix: str) -> dict[str, set[frozenset[str]]]:
    """Per family starting with ``prefix`` (but its ``_info``), its series' label sets."""
    return {
        name: {frozenset(f"{k}={v}" for k, v in s.labels.items()) for s in family.samples}
        for name, family in found.items()
        if name.startswith(prefix) and not name.endswith("_info")
    }


def write_books(path: Path, count: int) -> journal.Writer:
    writer = journal.Writer(path, segment_size=SEGMENT)
    for sequence in range(count):
        writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS)
    return writer


# -- the families --------------------------------------------------------------------------


def test_a_scrape_over_http_has_writer_reader_and_feed_families(
    shm_dir: Path, running: Started
) -> None:
    root = shm_dir / "books"
    with (
        write_books(root / "upbit", 300) as writer,
        FeedMetricsWriter(root / "upbit", "upbit", ["BTC-KRW", "ETH-KRW"]) as feed,
        journal.Reader(root / "upbit", name="arb") as reader,
    ):
        btc = feed.stream("BTC-KRW")
        btc.set_state(FeedState.LIVE)
        for _ in range(25):
            now = time.time_ns()  # one clock reading: two could straddle a millisecond
            btc.message(now, now // 1_000_000 - 7)
        btc.add(FeedCounter.BOOKS, 24)
        for _ in range(100):
            reader.try_next()
        exporter = serve(running, root)
        found = exporter.families()
        upbit = {"journal": "upbit"}
        assert found["journal_records"].type == "counter"
        assert value(found, "journal_records_total", **upbit) == 300
        assert value(found, "journal_writer_up", **upbit) == 1
        info = found["journal_writer_info"].samples[0].labels
        assert info == {**upbit, "pid": str(os.getpid()), "host": socket.gethostname()[:64]}
        assert found["journal_append_latency_seconds"].type == "histogram"
        buckets = [s for s in found["journal_append_latency_seconds"].samples if "le" in s.labels]
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 300 // 16
        arb = {**upbit, "reader": "arb"}  # the reader's name: no pid in the series
        assert value(found, "journal_reader_up", **arb) == 1
        assert value(found, "journal_reader_records_total", **arb) == 100
        assert value(found, "journal_reader_lag_records", **arb) == 200
        assert found["journal_reader_info"].samples[0].labels["pid"] == str(os.getpid())
        venue = {**upbit, "venue": "upbit"}
        assert value(found, "journal_feed_up", **venue) == 1
        assert found["journal_feed_info"].samples[0].labels == {
            **venue,
            "pid": str(os.getpid()),
            "host": socket.gethostname()[:64],
        }
        btc_labels = {**venue, "symbol": "BTC-KRW"}
        assert value(found, "journal_feed_messages_total", **btc_labels) == 25
        assert value(found, "journal_feed_books_total", **btc_labels) == 24
        assert value(found, "journal_feed_state", **btc_labels, state="live") == 1
        assert value(found, "journal_feed_state", **btc_labels, state="stopped") == 0
        assert 0.007 <= value(found, "journal_feed_delay_seconds", **btc_labels) < 1
        assert value(found, "journal_scrape_problems") == 0

        # Every scrape is read afresh: no sampling in between.
        writer.append_orderbook("upbit", "BTC-KRW", 1, 300, BIDS, ASKS)
        assert value(exporter.families(), "journal_records_total", **upbit) == 301

        # OpenMetrics when asked for it: info and unit metadata, no _created sample.
        text = exporter.scrape("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n")
        open_families = {f.name: f for f in openmetrics_families(text)}
        assert open_families["journal_writer"].type == "info"
        assert open_families["journal_records"].type == "counter"
        assert open_families["journal_append_latency_seconds"].unit == "seconds"
        assert not [
            s.name for f in open_families.values() for s in f.samples if s.name.endswith("_created")
        ]
        exporter.stop(signal.SIGINT)


@pytest.mark.slow
def test_reader_series_keep_their_labels_across_a_restart(
    journal_dir: Path, running: Started
) -> None:
    """A reader's series are labelled by its name: killed and started again, it
    continues them; its dead registration is shown (up 0) only while no live one of
    the name exists; a second live reader of the name is ``name-2``."""

    def start_reader(name: str, books: int) -> Running:
        child = running.start(
            [sys.executable, "-c", READER, journal_dir, name, books],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stderr=None,
        )
        child.read_line("^ready$")
        return child

    arb = {"journal": journal_dir.name, "reader": "arb"}
    with write_books(journal_dir, 100):
        first = start_reader("arb", 10)
        exporter = serve(running, journal_dir)
        before = exporter.families()
        assert value(before, "journal_reader_records_total", **arb) == 10
        pid = str(first.process.pid)
        assert value(before, "journal_reader_info", **arb, pid=pid, host=_host()) == 1

        first.kill()
        dead = exporter.families()
        assert value(dead, "journal_reader_up", **arb) == 0
        # A dead reader's lag is no reader's lag now: left out, its counters kept.
        lags = {
            "journal_reader_lag_records",
            "journal_reader_lag_bytes",
            "journal_reader_lag_seconds",
        }
        kept = label_sets(before, "journal_reader_")
        assert lags <= set(kept)
        assert label_sets(dead, "journal_reader_") == {
            name: labels for name, labels in kept.items() if name not in lags
        }
        assert value(dead, "journal_reader_records_total", **arb) == 10

        second = start_reader("arb", 20)
        after = exporter.families()
        assert label_sets(after, "journal_reader_") == label_sets(before, "journal_reader_")
        assert value(after, "journal_reader_up", **arb) == 1  # the dead one left out
        assert value(after, "journal_reader_records_total", **arb) == 20
        assert series(after["journal_reader_info"]) == {
            frozenset({**arb, "pid": str(second.process.pid), "host": _host()}.items()): 1
        }

        third = start_reader("arb", 30)
        both = exporter.families()
        assert value(both, "journal_reader_records_total", **arb) == 20  # the older
        assert value(both, "journal_reader_records_total", **{**arb, "reader": "arb-2"}) == 30
        assert third.process.pid != second.process.pid
        exporter.stop()


def _host() -> str:
    return socket.gethostname()[:64]


def test_a_journal_created_later_appears_in_the_next_scrape(
    shm_dir: Path, running: Started
) -> None:
    """An exporter may start before the collector: a root holding no journal yet is
    watched, and each journal made in it is in the next scrape."""
    root = shm_dir / "books"
    root.mkdir()
    exporter = serve(running, root)
    assert list(exporter.families()) == ["journal_scrape_problems"]
    with write_books(root / "upbit", 3):
        assert series(exporter.families()["journal_records"]) == {
            frozenset({"journal": "upbit"}.items()): 3
        }
        with write_books(root / "binance", 5):
            found = exporter.families()
            assert value(found, "journal_records_total", journal="binance") == 5
            assert value(found, "journal_records_total", journal="upbit") == 3
    exporter.stop()


def test_every_family_follows_the_naming_conventions(journal_dir: Path) -> None:
    """The conventions checked on a full exposition (writer, reader, feed), and the
    checker catches what it must."""
    with (
        write_books(journal_dir, 20),
        FeedMetricsWriter(journal_dir, "upbit", ["BTC-KRW"]) as feed,
        journal.Reader(journal_dir, name="arb") as reader,
    ):
        feed.stream("BTC-KRW").message(time.time_ns(), 1)
        reader.try_next()
        done = subprocess.run(
            journal_argv("metrics", journal_dir), cwd=REPO, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr
    found = families(done.stdout)
    assert {f.type for f in found.values()} == {"counter", "gauge", "histogram"}
    for bad in (
        "# HELP journal_lag_ms Lag.\n# TYPE journal_lag_ms gauge\njournal_lag_ms 1\n",
        "# HELP journal_age Age.\n# TYPE journal_age gauge\njournal_age 1\n",
        "# HELP journal_x_total X.\n# TYPE journal_x_total gauge\njournal_x_total 1\n",
        '# HELP journal_up Up.\n# TYPE journal_up gauge\njournal_up{pid="1"} 1\n',
        "# TYPE journal_up gauge\njournal_up 1\n",
    ):
        with pytest.raises(AssertionError):
            families(bad)


# -- the textfile, every --interval ----------------------------------------------------------


def test_interval_rewrites_the_textfile_until_sigterm(
    journal_dir: Path, shm_dir: Path, running: Started
) -> None:
    output = shm_dir / "journal.prom"
    with write_books(journal_dir, 10) as writer:
        process = running.start(
            journal_argv("metrics", journal_dir, "--output", output, "--interval", "0.05"),
            cwd=REPO,
        )
        process.read_line(rf"^writing {re.escape(str(output))} every 0.05 s")
        assert value(families(output.read_text()), "journal_records_total", journal="books") == 10
        writer.append_orderbook("upbit", "BTC-KRW", 1, 10, BIDS, ASKS)

        def rewritten() -> bool:
            found = families(output.read_text())  # whole at every look: renamed over
            return value(found, "journal_records_total", journal="books") == 11

        wait_until(rewritten, DEADLINE_S, "the textfile rewritten with the 11th book")
        process.stop()
    assert sorted(p.name for p in shm_dir.iterdir()) == ["books", "journal.prom"]  # no temporary


# -- usage errors ----------------------------------------------------------------------------


def one_line_error(*args: object) -> str:
    done = subprocess.run(journal_argv(*args), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_busy_port_is_one_line_and_exit_status_2(journal_dir: Path) -> None:
    with write_books(journal_dir, 1), socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error("metrics", journal_dir, "--listen", f"127.0.0.1:{port}")
    assert line.startswith(f"journal metrics: --listen 127.0.0.1:{port}: ")
    assert "in use" in line and "choose another port" in line


@pytest.mark.slow
def test_bad_options_are_one_line_and_exit_status_2(journal_dir: Path) -> None:
    with write_books(journal_dir, 1):
        line = one_line_error("metrics", journal_dir, "--listen", "9108")
        assert "--listen '9108': give HOST:PORT" in line
        line = one_line_error("metrics", journal_dir, "--interval", "5")
        assert "--interval 5" in line and "--output FILE" in line
        line = one_line_error("metrics", journal_dir, "--radar", journal_dir / "radar.metrics")
        assert "radar.metrics does not exist" in line
        nowhere = journal_dir.parent / "no-such-root"
        line = one_line_error("metrics", nowhere, "--listen", "127.0.0.1:0")
        assert f"{nowhere} does not exist" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9108", (ALL_INTERFACES, 9108)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:9108", ("localhost", 9108)),
        ("[::1]:9108", ("::1", 9108)),
    ],
)
def test_listen_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9108", "host:", "host:port", ":65536", "::1:9108", ":-1"])
def test_bad_listen_forms_are_refused(text: str) -> None:
    with pytest.raises(JournalError, match=re.escape(f"--listen {text!r}")):
        parse_listen(text)


@pytest.mark.slow
def test_without_prometheus_client_each_command_says_what_to_install(journal_dir: Path) -> None:
    """The metrics extra missing: a one-line hint with the pip command, exit 2."""
    blocked = (
        "import sys\n"
        "class NotInstalled:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] == 'prometheus_client':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        "from journal.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with write_books(journal_dir, 1):
        for command in (
            ["metrics", str(journal_dir), "--listen", ":0"],
            ["demo", "--metrics-listen", ":0", "--duration", "1", "--radar", sys.executable],
            ["collect", "upbit:KRW-BTC", "--journal-root", str(journal_dir.parent / "c")],
        ):
            if command[0] == "collect":
                command += ["--metrics-listen", ":0"]
            done = subprocess.run(
                [sys.executable, "-c", blocked, *command], cwd=REPO, capture_output=True, text=True
            )
            assert done.returncode == 2, (command, done.stderr)
            (line,) = done.stderr.splitlines()
            assert "pip install 'orderbook-journal[metrics]'" in line, line
            assert "prometheus_client" in line
    assert not (journal_dir.parent / "c").exists()


def test_docs_list_every_family_with_its_type() -> None:
    """docs/METRICS.md has a row for every family a scrape can hold, with the type
    the exporter gives it, and none that does not exist."""
    rows = re.findall(
        r"^\| `([a-z_]+)` \| (gauge|counter|histogram)(?: \(info\))? \|",
        (REPO / "docs" / "METRICS.md").read_text(),
        flags=re.MULTILINE,
    )
    documented = dict(rows)
    assert len(documented) == len(rows), "a family documented twice"
    assert list(documented) == family_names()
    for name, kind in documented.items():
        expected = "counter" if name.endswith("_total") else "gauge"
        if name.endswith("_latency_seconds"):
            expected = "histogram"
        assert kind == expected, name


@dataclass(frozen=True)
class _Registration:
    name: str
    alive: bool
    pid: int
    started_ns: int


def test_stable_labels_rules() -> None:
    """By name; later live ones name-2, name-3 (skipping a name another has); dead
    ones only where no live one of the name is, the newest of them."""
    live_old = _Registration("arb", True, 30, 100)
    live_new = _Registration("arb", True, 10, 200)
    live_third = _Registration("arb", True, 20, 300)
    squatter = _Registration("arb-2", True, 40, 50)
    dead = _Registration("arb", False, 50, 400)
    old_dead, new_dead = _Registration("mm", False, 60, 1), _Registration("mm", False, 70, 2)
    shown = stable_labels([dead, live_third, live_new, squatter, live_old, old_dead, new_dead])
    assert shown == [
        ("arb", live_old),
        ("arb-3", live_new),
        ("arb-4", live_third),
        ("arb-2", squatter),
        ("mm", new_dead),
    ]
