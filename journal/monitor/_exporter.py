"""``journal metrics``: the journals' and radars' metrics for Prometheus, served or written.

Three ways, one collector (journal.monitor._prometheus.JournalCollector), every one
reading the shared-memory counters afresh when asked:

- ``--listen HOST:PORT``: an HTTP endpoint (prometheus_client's server, a thread
  per request; ``/metrics``, or any path), one fresh read per scrape, until SIGINT
  or SIGTERM (exit 0). ``:9108`` listens on every IPv4 interface, ``127.0.0.1:0``
  on a free port; the URL is printed once the port is bound
  (``serving http://127.0.0.1:9108/metrics``), so a supervisor or a test can wait
  for that line.
- ``--output FILE [--interval S]``: node_exporter's textfile collector. FILE is
  written whole under a temporary name next to it and renamed over it (a scrape
  never sees half a file), once, or every S seconds until SIGINT or SIGTERM.
- neither: the text once on stdout.

A metrics file that cannot be read is said on stderr (by ``--listen`` and
``--interval`` when it first fails, not at every scrape) and left out; the rest is
exported. ``serving`` is the same endpoint for ``journal collect`` and ``journal
demo`` (``--metrics-listen``), over the journals they write; the radar's
``--metrics-listen`` runs this command with its ``--radar FILE`` alone, no JOURNAL
(only the radar_* families: the journals it reads, and its registrations in them,
are their exporter's, so that nothing is scraped twice), and ``--allow-missing``
(the radar.metrics it makes once this serves need not exist yet).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client.exposition import generate_latest, start_http_server
from prometheus_client.registry import CollectorRegistry

from journal._arguments import positive_number
from journal._errors import JournalError
from journal._paths import replaceable_file_problem
from journal._radar_metrics import read_radar_metrics
from journal.monitor._prometheus import JournalCollector, registry
from journal.monitor._snapshot import add_journals_argument, find_journals

ALL_INTERFACES: Final = "0.0.0.0"
"""What ``:PORT`` listens on: every IPv4 interface (give ``[::]:PORT`` for IPv6)."""
_STOP_POLL_S: Final = 1.0
"""The main thread wakes this often while it waits for a signal (a safety net: the
handler's Event.set() wakes it at once)."""
_LISTEN_FORMS: Final = "HOST:PORT, e.g. 127.0.0.1:9108, :9108 (all interfaces) or [::1]:9108"


# -- where to listen ---------------------------------------------------------------------


def parse_listen(text: str, option: str = "--listen") -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``:PORT`` (every interface) or
    ``[IPv6]:PORT``; port 0 is a free one the kernel picks. JournalError, naming
    ``option`` and the value, for anything else."""
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text:
        raise JournalError(f"{option} {text!r}: give {_LISTEN_FORMS}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise JournalError(
            f"{option} {text!r}: put an IPv6 address in brackets, e.g. [::1]:{port_text}"
        )
    if not (port_text.isascii() and port_text.isdecimal()) or int(port_text) > 65535:
        raise JournalError(f"{option} {text!r}: the port {port_text!r} is not 0..65535")
    return host or ALL_INTERFACES, int(port_text)


@dataclass(slots=True)
class MetricsServer:
    """An HTTP endpoint serving a registry, in a daemon thread; ``close`` stops it."""

    server: WSGIServer
    thread: threading.Thread
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop accepting, wait for the serving loop to end, free the port."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def serve(registry: CollectorRegistry, listen: str, option: str = "--listen") -> MetricsServer:
    """Bind ``listen`` (parse_listen's forms) and serve ``registry`` on it. JournalError
    for a bad address, a port in use or one this user may not bind."""
    host, port = parse_listen(listen, option)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except socket.gaierror as error:
        raise JournalError(
            f"{option} {listen}: no address for host {host!r} ({error.strerror}): give an "
            "address of this host, e.g. 127.0.0.1:9108, or :9108 for all interfaces"
        ) from None
    except OSError as error:
        advice = {
            errno.EADDRINUSE: "another process listens there (another exporter?): choose "
            "another port, or stop it",
            errno.EADDRNOTAVAIL: "it is not an address of this host: give one of its "
            "addresses, or :PORT for all interfaces",
            errno.EACCES: "ports below 1024 need privileges: choose a port above 1023",
        }.get(error.errno or 0, "choose another address")
        raise JournalError(f"{option} {listen}: {error.strerror or error}; {advice}") from None
    bound = server.server_address
    return MetricsServer(server, thread, host, int(bound[1]))


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ProblemLog:
    """Says each problem of a scrape (to ``say``, stderr by default) when it appears,
    not again at every scrape while it lasts (again if it goes and comes back).
    Scrapes may run in several threads at once."""

    def __init__(self, prefix: str, say: Callable[[str], None] = _to_stderr) -> None:
        self.prefix = prefix
        self.say = say
        self._lock = threading.Lock()
        self._previous: set[str] = set()

    def __call__(self, problems: Sequence[str]) -> None:
        with self._lock:
            for problem in problems:
                if problem not in self._previous:
                    self.say(f"{self.prefix}{problem}")
            self._previous = set(problems)


@contextlib.contextmanager
def serving(
    paths: Sequence[Path],
    listen: str,
    *,
    option: str,
    prefix: str,
    radar_files: Sequence[Path] = (),
    say: Callable[[str], None] = _to_stderr,
) -> Iterator[MetricsServer]:
    """The metrics of the journals at or under ``paths`` (found again at every
    scrape) and of their radars, served on ``listen`` while inside; the URL said on
    stdout (``serving http://HOST:PORT/metrics``) once bound, problems to ``say``
    (stderr) after ``prefix``. JournalError before anything is served if it cannot
    bind."""
    collector = JournalCollector(paths, radar_files, ProblemLog(prefix, say))
    server = serve(registry(collector), listen, option)
    try:
        print(f"serving {server.url}", flush=True)
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An Event set by SIGINT or SIGTERM while inside (the previous handlers come back)."""
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda *_: stop.set())
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _wait(stop: threading.Event, seconds: float | None) -> bool:
    """True once ``stop`` is set; False after ``seconds`` (None: never)."""
    if seconds is not None:
        return stop.wait(seconds)
    while not stop.wait(_STOP_POLL_S):
        pass
    return True


# -- the textfile --------------------------------------------------------------------------


def check_output(output: Path) -> None:
    """JournalError unless ``output`` can be replaced by a file: its directory exists
    and it is not a directory itself. Said with FILE's name, where the write would
    name only the temporary file next to it."""
    if output.is_dir():
        raise JournalError(
            f"--output {output} is a directory: give a file name, e.g. {output / 'journal.prom'}"
        )
    if problem := replaceable_file_problem(output):
        raise JournalError(f"--output {problem}")
    if not output.parent.is_dir():
        raise JournalError(
            f"--output {output}: the directory {output.parent} does not exist (or is not a "
            "directory): create it, or give a FILE in an existing directory"
        )


def write_textfile(output: Path, text: bytes) -> None:
    """``text`` into ``output``: a new file next to it (never through a link planted
    at its name), renamed over it. JournalError if it cannot be written."""
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as file:
            file.write(text)
        os.replace(temporary, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise JournalError(
            f"--output {output}: {error.strerror} writing {temporary.name} next to it (to "
            "rename it over FILE): give a FILE in a directory this user may write"
        ) from None


# -- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_journals_argument(parser, required=False)  # --radar FILE alone: the radar's own
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="serve the metrics over HTTP for Prometheus to scrape, each scrape read "
        "afresh, until SIGINT or SIGTERM; :9108 listens on every interface, "
        "127.0.0.1:0 on a free port; the URL is printed once listening",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE (replaced atomically, for node_exporter's textfile "
        "collector) instead of stdout",
    )
    parser.add_argument(
        "--interval",
        type=positive_number,
        metavar="SECONDS",
        help="with --output: rewrite FILE every SECONDS until SIGINT or SIGTERM",
    )
    parser.add_argument(
        "--radar",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a radar's metrics file outside the journals given (its --metrics-file); "
        "each journal's radar.metrics is found without it; repeatable; given without "
        "JOURNAL, only the radar's families are exported",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --listen or --interval: a JOURNAL or --radar FILE that does not exist "
        "yet is exported once it is created instead of refused (the radar's "
        "--metrics-listen runs journal metrics so: it makes its file once this serves)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status 0 (also when stopped by a signal); JournalError (a bad option, a
    path that is not a journal, a --radar FILE that is not a radar's metrics file,
    an --output that cannot be written, a port in use) is the caller's: one line,
    exit status 2."""
    if not args.journals and not args.radar:
        raise JournalError(
            "give JOURNAL... (journal directories or a directory they are in), or a "
            "radar's metrics file with --radar FILE, or both"
        )
    if args.listen is not None and (args.output is not None or args.interval is not None):
        raise JournalError(
            "--listen serves every scrape fresh; --output FILE [--interval S] writes a "
            "file: give one or the other"
        )
    if args.interval is not None and args.output is None:
        raise JournalError(
            f"--interval {args.interval:g}: rewrites --output FILE every SECONDS; give "
            "--output FILE (or --listen HOST:PORT to be scraped)"
        )
    if args.allow_missing and args.listen is None and args.interval is None:
        raise JournalError(
            "--allow-missing: a one-off export reads the journals now; it is for --listen "
            "or --interval, which find the journals again at each scrape or write"
        )
    if args.listen is not None:
        parse_listen(args.listen)  # a typo is said before the journals are read
    output = None if args.output is None else Path(args.output)
    if output is not None:
        check_output(output)
    paths = [Path(path) for path in args.journals]
    if args.listen is None and args.interval is None:
        find_journals(paths)  # each is a journal or holds some, now
    else:
        for path in paths:
            _check_watched(path, allow_missing=args.allow_missing)
    for radar in args.radar:
        _check_radar_file(radar, allow_missing=args.allow_missing)
    if args.listen is not None:
        with (
            _stop_on_signals() as stop,
            serving(
                paths,
                args.listen,
                option="--listen",
                prefix="journal metrics: ",
                radar_files=args.radar,
            ),
        ):
            _wait(stop, None)
        return 0
    if args.interval is not None:
        assert output is not None
        collector = JournalCollector(paths, args.radar, ProblemLog("journal metrics: "))
        exposition = registry(collector)
        with _stop_on_signals() as stop:
            write_textfile(output, generate_latest(exposition))
            print(f"writing {output} every {args.interval:g} s", flush=True)
            while not _wait(stop, args.interval):
                write_textfile(output, generate_latest(exposition))
        return 0
    collector = JournalCollector(paths, args.radar, _print_problems)
    text = generate_latest(registry(collector))
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        write_textfile(output, text)
    return 0


def _print_problems(problems: Sequence[str]) -> None:
    for problem in problems:
        print(f"journal metrics: {problem}", file=sys.stderr)


def _check_watched(path: Path, *, allow_missing: bool = False) -> None:
    """A JOURNAL of a long-running export (``--listen``, ``--interval``) is a journal
    or a directory, which may hold no journal yet: those created in it later are
    found at the next scrape (an exporter may start before the collector). A path
    that is a file is a mistake, and one that does not exist too unless
    ``allow_missing`` (it is exported once created): JournalError."""
    try:
        directory = stat.S_ISDIR(path.stat().st_mode)
    except FileNotFoundError:
        if allow_missing:
            return
        raise JournalError(
            f"{path} does not exist: give journal directories or the directory they are "
            "in (one holding no journal yet is watched for them)"
        ) from None
    if not directory:
        raise JournalError(
            f"{path} is not a directory: give journal directories or the directory they are in"
        )
    os.listdir(path)  # no permission: the OSError, said with the path


_RADAR_FILE_HINT: Final = (
    "give the file the radar writes its metrics to (its --metrics-file; with --results "
    "DIR it is DIR/radar.metrics, found in the journals given)"
)


def _check_radar_file(path: Path, *, allow_missing: bool = False) -> None:
    """A ``--radar FILE`` is a radar's metrics file that exists now (a typo, or
    another metrics file given by mistake, is an error, not a radar that never
    appears), or with ``allow_missing`` may not exist yet (the radar that runs
    journal metrics makes it once it serves); a radar that dies later leaves it,
    its lock free. JournalError says what the file is instead."""
    if allow_missing and not path.exists():
        return
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise JournalError(f"--radar {path} {what}: {_RADAR_FILE_HINT}, and start the radar first")
    try:
        read_radar_metrics(path)
    except FileNotFoundError:  # removed since: as if it did not exist
        if not allow_missing:
            raise JournalError(
                f"--radar {path} does not exist: {_RADAR_FILE_HINT}, and start the radar first"
            ) from None
    except JournalError as error:
        raise JournalError(f"--radar {error}; {_RADAR_FILE_HINT}") from None
