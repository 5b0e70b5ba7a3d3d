"""``radar --metrics-listen HOST:PORT``: the radar's own metrics (the radar_* families),
served over HTTP by the ``journal metrics --radar FILE`` child it starts, as a user
runs it. A real radar (the release and the sanitizer build) on real journals,
scraped on 127.0.0.1 and read with prometheus_client's parser: its premium and edge
as computed by hand, a journal created after it started; none of its journals'
series (their exporter's: nothing scraped twice); the child stopped with the radar,
and gone when the radar is killed with SIGKILL; a busy port, no journal program, or
options that cannot go together: exit status 2 and one line, before anything is
read or created."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import journal
from tests._cpp import program
from tests._procs import wait_until
from tests._running import DEADLINE_S, Running, Started
from tests.conftest import REPO
from tests.test_metrics_http import families, scrape, value
from tests.test_metrics_radar import FX, write_books

VENV_BIN = REPO / ".venv" / "bin"
JOURNAL = VENV_BIN / "journal"
EXIT_AT_ONCE_S = 30.0  # a refusal takes a Python start at most; this bounds a broken radar
RADAR = {"radar": "radar"}
PAIR = {**RADAR, "base": "BTC", "krw_exchange": "upbit", "usdt_exchange": "binance"}
# Buy on binance at 100,000.1 USDT (+10 bps), sell on upbit at 141,399,000 KRW (-5 bps).
_COST = 100_000.1 * FX * (1 + 10e-4)
EDGE = (141_399_000 * (1 - 5e-4) - _COST) / _COST
# Mids 141,400,000 KRW and 100,000 USDT at 1400 KRW/USDT.
PREMIUM = 141_400_000 / (100_000 * FX) - 1


def env_without_journal() -> dict[str, str]:
    """The environment with no ``journal`` on PATH (the venv's bin left out)."""
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(":")
        if entry and not (Path(entry) / "journal").exists()
    ]
    return {**os.environ, "PATH": ":".join(path) or "/nonexistent"}


def env_with_journal() -> dict[str, str]:
    """The environment with the venv's bin (its ``journal``) first on PATH."""
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}


class Radar(Running):
    """The radar tailing ``journals`` with ``--metrics-listen 127.0.0.1:0`` (or
    ``listen``) until stopped; its stderr read as it comes, without buffering."""

    def __init__(
        self,
        journals: list[Path],
        *options: str,
        radar: Path | None = None,
        build: str = "release",
        env: dict[str, str] | None = None,
        listen: str = "127.0.0.1:0",
    ) -> None:
        super().__init__(
            [
                radar or program("radar", build),
                *(arg for path in journals for arg in ("--journal", path)),
                *("--start", "beginning", "--quiet", "--duration", "120"),
                *("--fx", FX, "--stale-ms", "600000", "--fee", "upbit=5"),
                *("--fee", "binance=10", "--metrics-listen", listen),
                *options,
            ],
            env_with_journal() if env is None else env,
            replace_env=True,
            stdout=subprocess.DEVNULL,
            bufsize=0,
            text=False,
        )
        self.stderr = ""

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` (a line) in its stderr so far or to come,
        within the deadline."""
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        deadline = time.monotonic() + DEADLINE_S
        while not (found := re.search(pattern, self.stderr, re.MULTILINE)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {DEADLINE_S} s:\n{self.stderr}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.process.wait(DEADLINE_S)
                    raise AssertionError(
                        f"the radar exited ({self.process.returncode}) before {pattern!r}:\n"
                        f"{self.stderr}"
                    )
                self.stderr += chunk.decode()
        return found

    def serving(self) -> tuple[str, int]:
        """The URL its exporter serves and the exporter's pid, from its stderr line."""
        found = self.wait_for(r"^radar: serving (http://\S+) \(journal metrics, pid (\d+): ")
        return found[1], int(found[2])

    def finish(self, sig: int | None = None) -> str:
        """Signal it (or not), wait for its exit; its whole stderr."""
        if sig is not None:
            self.process.send_signal(sig)
        _, rest = self.process.communicate(timeout=DEADLINE_S)
        self.stderr += rest.decode()
        return self.stderr


def start_radar(running: Started, journals: list[Path], *options: str, **kwargs: Any) -> Radar:
    """A Radar (above), killed after the test if it still runs."""
    radar = Radar(journals, *options, **kwargs)
    running.append(radar)
    return radar


def gone(pid: int, timeout: float = DEADLINE_S) -> bool:
    """Whether process ``pid`` ends within ``timeout``: its pidfd becomes readable
    when it exits (reaped by whoever is its parent, or a zombie: either way gone)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def refused(url: str) -> bool:
    """Whether nothing listens at ``url``'s host and port any more."""
    host, port = re.fullmatch(r"http://([^/]+):(\d+)/metrics", url).groups()  # type: ignore[union-attr]
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def scraped_when(url: str, condition: object) -> dict:  # type: ignore[type-arg]
    """The first scrape of ``url`` for which ``condition(families)`` holds."""
    found: list[dict] = [{}]  # type: ignore[type-arg]

    def seen() -> bool:
        found[0] = families(scrape(url))
        try:
            return bool(condition(found[0]))  # type: ignore[operator]
        except (KeyError, AssertionError):
            return False

    wait_until(seen, DEADLINE_S, f"a scrape of {url} where {condition}")
    return found[0]


def computed(found: dict) -> bool:  # type: ignore[type-arg]
    return value(found, "radar_pair_updates_total", **PAIR) >= 1


def only_the_radars(found: dict) -> bool:  # type: ignore[type-arg]
    """Whether a scrape holds the radar's families and, of the journals', only the
    exporter's own gauge: the journals it tails are their exporter's to serve."""
    return {name for name in found if not name.startswith("radar_")} == {"journal_scrape_problems"}


@pytest.mark.slow
@pytest.mark.parametrize("build", ["release", "sanitize"])
def test_the_radar_serves_its_own_figures_over_http(
    shm_dir: Path, running: Started, build: str
) -> None:
    upbit, binance = write_books(shm_dir)
    later = shm_dir / "books" / "later"  # waited for by the radar
    results = shm_dir / "results"
    radar = start_radar(running, [upbit, binance, later], "--results", str(results), build=build)
    url, exporter = radar.serving()
    found = scraped_when(url, computed)

    assert value(found, "radar_up", **RADAR) == 1
    assert found["radar_info"].samples[0].labels["pid"] == str(radar.process.pid)
    assert value(found, "radar_books_total", **RADAR) == 2
    assert value(found, "radar_kimchi_premium_ratio", **PAIR) == pytest.approx(PREMIUM, abs=1e-12)
    assert value(found, "radar_kimchi_premium_ratio", **PAIR) == pytest.approx(0.01, abs=1e-12)
    assert value(found, "radar_executable_edge_ratio", **PAIR) == pytest.approx(EDGE, rel=1e-9)
    assert value(found, "radar_fx_krw_per_usdt", **PAIR) == FX
    assert value(found, "radar_pair_stale", **PAIR) == 0
    for venue, symbol in (("upbit", "BTC-KRW"), ("binance", "BTC-USDT")):
        stream = {**RADAR, "venue": venue, "symbol": symbol}
        assert value(found, "radar_book_updates_total", **stream) == 1
    assert found["radar_observe_latency_seconds"].type == "histogram"
    # Not the journals it tails, nor its registrations in them (journal_reader_*):
    # those are their exporter's, so that a dashboard summing over targets counts
    # each writer and reader once.
    assert only_the_radars(found), sorted(found)

    # The journal it waited for, created now: its books in the radar's next figures.
    with journal.Writer(later) as writer:
        now_ns = time.time_ns()
        writer.append_orderbook("upbit", "ETH-KRW", now_ns // 10**6, 0, [[1.0, 1.0]], [[2.0, 1.0]])
    eth = {**RADAR, "venue": "upbit", "symbol": "ETH-KRW"}
    then = scraped_when(url, lambda f: value(f, "radar_books_total", **RADAR) == 3)
    assert value(then, "radar_book_updates_total", **eth) == 1
    assert only_the_radars(then), sorted(then)

    stderr = radar.finish(signal.SIGINT)
    assert radar.process.returncode == 0, stderr
    assert gone(exporter), f"journal metrics (pid {exporter}) outlived the radar"
    assert refused(url)
    assert "radar summary: 3 books" in stderr
    for unwanted in ("Traceback", "Sanitizer", "journal metrics (pid"):
        assert unwanted not in stderr, stderr


@pytest.mark.slow
def test_a_radar_killed_with_sigkill_leaves_no_exporter(shm_dir: Path, running: Started) -> None:
    # As a wheel installs them: journal beside the radar, none on PATH.
    bin_dir = shm_dir / "bin"
    bin_dir.mkdir()
    shutil.copy2(program("radar"), bin_dir / "radar")
    (bin_dir / "journal").symlink_to(JOURNAL)
    upbit, binance = write_books(shm_dir)
    metrics_file = shm_dir / "desk.metrics"
    radar = start_radar(
        running,
        [upbit, binance],
        *("--metrics-file", str(metrics_file)),
        radar=bin_dir / "radar",
        env=env_without_journal(),
    )
    url, exporter = radar.serving()
    assert f"pid {exporter}: {bin_dir / 'journal'})" in radar.stderr
    scraped_when(url, computed)  # the --metrics-file given to it as --radar FILE

    radar.process.kill()
    radar.process.wait(DEADLINE_S)
    assert gone(exporter), f"journal metrics (pid {exporter}) outlived a radar killed with SIGKILL"
    assert refused(url)


@pytest.mark.slow
def test_an_exporter_that_ends_on_its_own_is_said_and_the_radar_reads_on(
    shm_dir: Path, running: Started
) -> None:
    upbit, binance = write_books(shm_dir)
    radar = start_radar(running, [upbit, binance], "--results", str(shm_dir / "results"))
    url, exporter = radar.serving()
    scraped_when(url, computed)
    os.kill(exporter, signal.SIGKILL)
    radar.wait_for(
        rf"^radar: journal metrics \(pid {exporter}\) ended: the metrics are no longer served; "
        "the radar reads on$"
    )
    assert refused(url)
    assert radar.process.poll() is None
    stderr = radar.finish(signal.SIGINT)
    assert radar.process.returncode == 0, stderr
    assert f"radar: journal metrics (pid {exporter}) had ended: killed by signal 9 (Killed)\n" in (
        stderr
    )
    assert "radar summary: 2 books" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("build", ["release", "sanitize"])
def test_a_busy_port_is_exit_status_2_in_one_line_before_anything_is_read(
    shm_dir: Path, build: str
) -> None:
    upbit, binance = write_books(shm_dir)
    results = shm_dir / "results"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                str(program("radar", build)),
                *("--journal", str(upbit), "--journal", str(binance)),
                *("--results", str(results), "--quiet", "--duration", "60"),
                *("--metrics-listen", f"127.0.0.1:{port}", "--journal-program", str(JOURNAL)),
            ],
            capture_output=True,
            text=True,
            timeout=EXIT_AT_ONCE_S,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"radar: --metrics-listen 127.0.0.1:{port}: Address already in use; another process "
        "listens there (another exporter?): choose another port, or stop it"
    ]
    assert done.stdout == ""
    # Nothing read or created: no results journal, no registration as a reader.
    assert not results.exists()
    for path in (upbit, binance):
        assert not list(path.glob("readers/radar-*")), list(path.glob("readers/*"))


@pytest.mark.slow
def test_a_bad_listen_address_is_said_as_the_radars_option(shm_dir: Path) -> None:
    upbit, _ = write_books(shm_dir)
    done = refusal(
        *("--journal", str(upbit), "--metrics-file", str(shm_dir / "r.metrics")),
        *("--metrics-listen", "localhost", "--journal-program", str(JOURNAL)),
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "radar: --metrics-listen 'localhost': give HOST:PORT, e.g. 127.0.0.1:9108, :9108 (all "
        "interfaces) or [::1]:9108"
    ]


def refusal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The release radar run with ``args``, expected to refuse them at once."""
    return subprocess.run(
        [str(program("radar")), *args],
        capture_output=True,
        text=True,
        timeout=EXIT_AT_ONCE_S,
        env=env,
        check=False,
    )


def test_no_journal_program_is_exit_status_2_in_one_line(shm_dir: Path) -> None:
    # build/release holds no journal beside the radar, and PATH none.
    books = ("--journal", str(shm_dir / "books"))
    results = shm_dir / "results"
    listen = ("--results", str(results), "--metrics-listen", "127.0.0.1:0")
    done = refusal(*books, *listen, env=env_without_journal())
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("radar: --metrics-listen 127.0.0.1:0: no journal program beside ")
    assert lines[0].endswith(
        "nor on PATH to serve the metrics: activate the venv orderbook-journal is installed in, "
        "or give --journal-program PATH"
    )
    assert not results.exists()

    missing = shm_dir / "no-such-journal-program"
    done = refusal(*books, *listen, "--journal-program", str(missing))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"radar: --journal-program {missing}: No such file or directory: give the journal "
        "program (bin/journal in the venv orderbook-journal is installed in)"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--metrics-listen", ":9109", "--results", "R", "--no-metrics"],
            "radar: --metrics-listen :9109 serves the radar's metrics, which --no-metrics "
            "turns off: give one or the other",
        ),
        (
            ["--metrics-listen", ":9109"],
            "radar: --metrics-listen :9109 serves the radar's radar.metrics: give --results "
            "DIR (it is written there) or --metrics-file PATH",
        ),
        (
            ["--journal-program", "/usr/bin/journal"],
            "radar: --journal-program /usr/bin/journal is the program --metrics-listen runs: "
            "give --metrics-listen HOST:PORT too",
        ),
        (["--metrics-listen", ""], 'radar: --metrics-listen "": give HOST:PORT'),
    ],
)
def test_options_that_do_not_go_together_are_usage_errors(
    shm_dir: Path, options: list[str], message: str
) -> None:
    done = subprocess.run(
        [str(program("radar")), "--journal", str(shm_dir / "books"), *options],
        capture_output=True,
        text=True,
        timeout=EXIT_AT_ONCE_S,
        cwd=shm_dir,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[0].startswith(message), done.stderr
    assert "\nusage: radar " in done.stderr  # the usage follows, as for every usage error


def test_help_says_the_options() -> None:
    shown = subprocess.run(
        [str(program("radar")), "--help"], capture_output=True, text=True, check=True
    )
    assert "--metrics-listen HOST:PORT" in shown.stdout
    assert "--journal-program PATH" in shown.stdout


def test_journal_metrics_allow_missing_is_for_long_running_exports(
    shm_dir: Path, running: Started
) -> None:
    missing = shm_dir / "books" / "later"
    done = subprocess.run(
        [str(JOURNAL), "metrics", str(missing), "--allow-missing"],
        capture_output=True,
        text=True,
        timeout=EXIT_AT_ONCE_S,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "journal metrics: --allow-missing: a one-off export reads the journals now; it is for "
        "--listen or --interval, which find the journals again at each scrape or write"
    ]
    # With --interval, a journal and a --radar file not there yet are written once they are.
    output = shm_dir / "journal.prom"
    exporter = running.start(
        [
            *(JOURNAL, "metrics", missing, "--radar", shm_dir / "r.metrics"),
            *("--allow-missing", "--output", output, "--interval", "0.05"),
        ]
    )
    exporter.read_line(f"^writing {re.escape(str(output))} every 0.05 s")
    with journal.Writer(missing) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 0, [[1.0, 1.0]], [[2.0, 1.0]])
    wait_until(
        lambda: 'journal_records_total{journal="later"} 1.0' in output.read_text(),
        DEADLINE_S,
        "the journal created later in the textfile",
    )
    exporter.stop()
