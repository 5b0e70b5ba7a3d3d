"""The ``journal`` command: inspect, demo, compact, analyze, export, import and monitor journals.

Usage errors (a path that is not a journal, a file where a directory is needed, no
permission, a bad option value) are one line on stderr naming the path or value and
what is wrong with it, exit status 2; damage found in a journal or an archive is
exit status 1, as ``journal verify`` and the radar have it; Ctrl-C is exit status
130 without a traceback, from main's first line on.

A command's own modules (and the extras they need: aiohttp, prometheus_client,
pyarrow) are imported when that command is chosen, not to build the parser of
every command: ``journal info`` starts as fast as Python and the core do.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.metadata
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from journal._arguments import positive_int, positive_number
from journal._encode import MAX_LEVELS as MAX_DEPTH
from journal._errors import CorruptArchiveError, CorruptSegmentError, JournalError
from journal._native import describe as describe_native
from journal._reader import IDLE_STRATEGIES, Reader, Start

_POSITION: Final = re.compile(r"(\d+):(\d+)", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
START_FORMS: Final = (
    "beginning, end, SEGMENT:OFFSET (a position dump printed), ns since the epoch, or an "
    "ISO-8601 time with its zone such as 2026-11-29T15:00:00+00:00"
)


def _parse_start(text: str) -> Start:
    """A ``--from`` or ``--to`` value in one of START_FORMS, the same in every command
    (argparse names the option in its error). An ISO time becomes exact ns: float
    seconds would move a microsecond-precise time by one."""
    if text in ("beginning", "end"):
        return text  # type: ignore[return-value]
    if position := _POSITION.fullmatch(text):
        return (int(position[1]), int(position[2]))
    if text.isascii() and text.isdecimal():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use {START_FORMS}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give the time zone (e.g. +00:00), times are not guessed"
        )
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _existing_directory(text: str) -> Path:
    """``dump --archive DIR``: a root the compactor wrote, never a typo read as an
    archive that holds nothing."""
    path = Path(text)
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}: give the compactor's --archive directory")
    return path


def _info(args: argparse.Namespace) -> int:
    from journal._inspect import summarize

    summary = summarize(args.journal)
    alive = {True: "alive", False: "not running", None: "never started"}[summary.writer_alive]
    newest = summary.segments[-1].header
    print(f"journal {summary.path}")
    print(
        f"  writer: {alive} (last: pid={newest.writer.pid} host={newest.writer.host} "
        f"started={datetime.fromtimestamp(newest.writer.started_ns / 1e9).isoformat()})"
    )
    print(
        f"  payload: {newest.payload_id.decode('ascii', 'replace')}  "
        f"records: {summary.records:,}  segments: {len(summary.segments)}"
    )
    print("  segment      size        commit   used   records  state")
    for segment in summary.segments:
        size = segment.header.segment_size
        print(
            f"  {segment.index:>7}  {size:>10,}  {segment.commit_offset:>12,}  "
            f"{100 * segment.commit_offset / size:>4.0f}%  {segment.records:>8,}  "
            + ("sealed" if segment.sealed else "open")
        )
    return 0


def _dump(args: argparse.Namespace) -> int:
    from journal._inspect import journal_absence
    from journal.archive._archive import archive_files

    write = sys.stdout.write
    count = 0
    absence = journal_absence(Path(args.journal))
    with Reader(
        args.journal,
        start=args.start,
        verify=not args.no_verify,
        idle=args.idle,
        archive=args.archive,
    ) as reader:
        if absence is not None and not (reader.archive_dir and archive_files(reader.archive_dir)):
            if not args.follow:
                raise JournalError(absence)
            print(
                f"journal dump: {absence}; waiting for a writer to create it (Ctrl-C stops)",
                file=sys.stderr,
                flush=True,
            )
        records = iter(reader) if args.follow else reader.available()
        for record in records:
            write(json.dumps(record.to_dict(), separators=(",", ":")) + "\n")
            count += 1
            if args.follow:
                sys.stdout.flush()
            if args.limit is not None and count >= args.limit:
                break
    return 0


def _verify(args: argparse.Namespace) -> int:
    from journal._inspect import verify

    report = verify(args.journal)
    if report.first_error is None:
        print(f"OK: {report.records:,} records in {report.segments} segments of {args.journal}")
        for note in report.notes:
            print(f"  {note}")
        return 0
    print(f"CORRUPT after {report.records:,} good records: {report.first_error}", file=sys.stderr)
    return 1


def _demo(args: argparse.Namespace) -> int:
    from journal.demo import _pipeline as _demo

    radar = Path(args.radar) if args.radar is not None else _demo.find_radar()
    if radar is None:
        print(f"journal demo: no radar found: {_demo.RADAR_HOW_TO_GET}", file=sys.stderr)
        return 2
    return _demo.run_demo(
        _demo.DemoOptions(
            duration_s=args.duration,
            rate=args.rate,
            seed=args.seed,
            output=Path(args.output),
            radar=radar,
            idle=args.idle,
            keep_shm=args.keep_shm,
            metrics_listen=_metrics_listen(args.metrics_listen),
        )
    )


def _collect(args: argparse.Namespace) -> int:
    from journal.collect import _run

    listen = _metrics_listen(args.metrics_listen)
    if listen is None:
        return _run.run(args)
    import logging

    from journal.monitor._exporter import serving

    def serve(root: Path) -> contextlib.AbstractContextManager[object]:
        return serving(
            [root],
            listen,
            option="--metrics-listen",
            prefix="metrics: ",
            say=logging.getLogger("journal.collect").warning,
        )

    return _run.run(args, serve)


def _metrics_listen(listen: str | None) -> str | None:
    """``--metrics-listen`` of collect and demo, checked before anything starts: a
    well-formed HOST:PORT, and prometheus_client installed (JournalError: one line,
    exit status 2, with the pip command)."""
    if listen is None:
        return None
    try:
        from journal.monitor._exporter import parse_listen
    except ModuleNotFoundError as error:  # prometheus_client: the metrics extra
        if (error.name or "").partition(".")[0] != "prometheus_client":
            raise
        raise JournalError(
            "--metrics-listen needs prometheus_client, which is not installed: "
            "pip install 'orderbook-journal[metrics]'"
        ) from None
    parse_listen(listen, "--metrics-listen")
    return listen


def _compact(args: argparse.Namespace) -> int:
    from journal.archive.compact import run

    return run(args)


def _check_source_arguments(args: argparse.Namespace) -> None:
    """analyze's and export's ``--from``/``--to`` made what load_books takes (ns or
    None), and ``--depth`` checked: a usage error said here, not a traceback there.

    They take dump's forms where these mean something for books selected by time
    across journals and archives: ns and ISO times, as in dump; ``--from beginning``
    and ``--to end`` are the open ends (as leaving them out). ``--from end``,
    ``--to beginning`` (nothing selected) and positions (SEGMENT:OFFSET: a place in
    one journal, where these read several) are refused, as is an empty range.
    """
    for option, open_end, value in (("--from", "beginning", args.start), ("--to", "end", args.end)):
        if value in (None, open_end) or isinstance(value, int):
            continue
        if isinstance(value, tuple):
            raise JournalError(
                f"{option} {value[0]}:{value[1]}: a position names a place in one journal; "
                f"{args.command} selects books by time in all its sources: give ns since "
                "the epoch or an ISO-8601 time"
            )
        raise JournalError(
            f"{option} {value}: selects nothing; give a time, or leave {option} out "
            f"(it is the {open_end} then)"
        )
    args.start = args.start if isinstance(args.start, int) else None
    args.end = args.end if isinstance(args.end, int) else None
    if args.start is not None and args.end is not None and args.start >= args.end:
        raise JournalError(
            f"--from ({args.start} ns) is not before --to ({args.end} ns): the range "
            "[from, to) is empty"
        )
    if not 1 <= args.depth <= MAX_DEPTH:
        raise JournalError(
            f"--depth {args.depth}: give 1 to {MAX_DEPTH} levels per side (what a writer "
            "stores at most)"
        )


def _analyze(args: argparse.Namespace) -> int:
    from journal.analysis._report import run_analyze

    _check_source_arguments(args)
    return run_analyze(args)


def _export(args: argparse.Namespace) -> int:
    from journal.analysis._report import run_export

    _check_source_arguments(args)
    return run_export(args)


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Where build_parser adds its subcommands, one function each (_add_info, ...).

    A subcommand's arguments that need its modules (and their extras) are added when
    argparse hands it the command line (``journal metrics ...``, ``journal metrics
    --help``), by the function given to ``_add_command``: ``journal --help`` lists
    every command from its summary, and a command imports only its own modules."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pending: dict[str, Callable[[argparse.ArgumentParser], None]] = {}

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list) and values, values
        if (add := self.pending.pop(str(values[0]), None)) is not None:
            add(self._name_parser_map[str(values[0])])
        super().__call__(parser, namespace, values, option_string)


def _add_command(
    commands: _Commands,
    name: str,
    summary: str,
    description: str,
    exit_statuses: str,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does and how it exits: a script
    needs the statuses, a new user the paragraph. ``arguments`` adds its arguments
    (and its ``run``) once the command is chosen (see _Commands)."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, epilog=f"exit status: {exit_statuses}"
    )
    if arguments is not None:
        commands.pending[name] = arguments
    return parser


def _add_journal_argument(parser: argparse.ArgumentParser) -> None:
    """The JOURNAL of info, dump and verify (top and metrics take JOURNAL...)."""
    parser.add_argument(
        "journal", metavar="JOURNAL", help="the journal directory, e.g. /dev/shm/books/upbit"
    )


def _version() -> str:
    """The package version, whether the compiled extensions are in use, and the radar
    ``journal demo`` would run (the first thing to check after an install)."""
    from journal.demo._pipeline import RADAR_HOW_TO_GET, find_radar

    try:
        version = importlib.metadata.version("orderbook-journal")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown (the package is not installed: pip install -e .)"
    radar = find_radar()
    found = str(radar) if radar is not None else f"none found ({RADAR_HOW_TO_GET})"
    return f"{version} ({describe_native()})\nradar: {found}"


class _VersionAction(argparse.Action):
    """``--version``: _version() worked out when asked, not for every command."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"{parser.prog} {_version()}")  # on stdout, as argparse's own
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The journal command: its own options, then its subcommands, one function
    each, in the order ``journal --help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="journal",
        description="Order-book journals: inspect, demo, compact, analyze, import, monitor. "
        "A journal (JOURNAL) is a directory of *.journal segment files, one writer's, "
        "such as /dev/shm/books/upbit.",
        epilog="journal COMMAND --help says what a command does and its exit statuses.",
    )
    parser.add_argument(
        "--version",
        action=_VersionAction,
        nargs=0,
        help="show the version, the compiled or pure-Python path, and the radar found; exit",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", action=_Commands
    )
    for add in (
        _add_info,
        _add_dump,
        _add_verify,
        _add_demo,
        _add_compact,
        _add_analyze,
        _add_import_captures,
        _add_collect,
        _add_replicate,
        _add_mirror,
        _add_top,
        _add_metrics,
        _add_export,
    ):
        add(commands)
    return parser


def _add_info(commands: _Commands) -> None:
    info = _add_command(
        commands,
        "info",
        "segments, commit offsets, records, writer state",
        "Show JOURNAL's segments (size, commit offset, share used, records, sealed or "
        "open), its payload and record count, and its writer: alive, not running, or never "
        "started, with the pid, host and start time of the last one. Every committed frame "
        "is walked, so framing damage is found; records are not verified (journal verify).",
        "0 shown; 1 damage in a segment, said with its file and offset; 2 JOURNAL is not a "
        "journal directory, or it cannot be read.",
    )
    _add_journal_argument(info)
    info.set_defaults(run=_info)


def _add_dump(commands: _Commands) -> None:
    dump = _add_command(
        commands,
        "dump",
        "print records as JSON lines",
        "Print JOURNAL's records as JSON lines, each with its position, from --from to "
        "the last record committed, or with --follow on as the writer commits more. "
        "--from takes the same forms in every command: beginning (the oldest segment "
        "kept), end (records committed from now on), SEGMENT:OFFSET (a position printed "
        "before: dump resumes at that record), ns since the epoch or an ISO-8601 time with "
        "its zone (the first record whose local_timestamp_ns is at or after it). A "
        "JOURNAL that does not exist, or holds no segment, is an error; with --follow "
        "dump says so once on stderr and waits for its writer to create it.",
        "0 the records were printed; 1 damage, said with its file and offset after the "
        "records before it; 2 JOURNAL is not a journal (without --follow), a bad --from, "
        "or it cannot be read; 130 interrupted (Ctrl-C).",
    )
    _add_journal_argument(dump)
    dump.add_argument(
        "--from",
        dest="start",
        type=_parse_start,
        default="beginning",
        metavar="START",
        help=f"where to start (default beginning): {START_FORMS}",
    )
    dump.add_argument(
        "--archive",
        metavar="DIR",
        type=_existing_directory,
        help="the compactor's archive root: read segments gone from tmpfs from "
        "DIR/<journal name>/, then the live ones",
    )
    dump.add_argument("--follow", action="store_true", help="keep printing new records")
    dump.add_argument("--limit", type=positive_int, help="stop after this many records")
    dump.add_argument("--no-verify", action="store_true", help="skip FlatBuffers verification")
    dump.add_argument(
        "--idle",
        choices=IDLE_STRATEGIES,
        default="backoff",
        help="how --follow waits (default backoff)",
    )
    dump.set_defaults(run=_dump)


def _add_verify(commands: _Commands) -> None:
    check = _add_command(
        commands,
        "verify",
        "check every record; exit 1 at the first corrupt position",
        "Check every segment header, every record (framing, FlatBuffers "
        "verification, decoding) and the chain of segments: each one sealed but the one "
        "being written (and the empty one a writer prepares after it). What a writer "
        "leaves when it is killed and repairs when it opens the journal (a roll or a "
        "seal it did not finish) is not damage: notes after the OK line say what was "
        "found, and the exit status is 0.",
        "0 every committed record is readable (notes say what a writer will repair); "
        "1 damage, reported with its file and offset after the number of good records "
        "before it; 2 not a journal, or it cannot be read.",
    )
    _add_journal_argument(check)
    check.set_defaults(run=_verify)


def _add_demo(commands: _Commands) -> None:
    demo = _add_command(
        commands,
        "demo",
        "the whole pipeline: demo feed -> journal -> radar, compactor, analysis",
        "Run the synthetic multi-exchange feed into a journal per venue in /dev/shm "
        "(each with the collector's feed metrics), the radar tailing them and the "
        "compactor archiving them; then stop them in order, check that every book was "
        "read and archived, and print a summary and a chart. Logs, the archive and the "
        "charts stay in a new run-* directory of --output. With --metrics-listen the "
        "pipeline's metrics (writers, readers, feeds, the radar's) are served for "
        "Prometheus while it runs; without, the demo prints the journal metrics command "
        "that serves them from its workspace.",
        "0 every book was read by the radar and archived; 1 a problem, said in a PROBLEM "
        "line (the logs are in the run directory); 2 no radar found (`pip install .` or "
        "make setup builds one, or give --radar PATH), an argument is wrong, or the "
        "--metrics-listen port is in use; 130 interrupted (Ctrl-C).",
    )
    demo.add_argument(
        "--duration", type=positive_number, default=30.0, help="seconds to run (default 30)"
    )
    demo.add_argument(
        "--rate", type=positive_int, default=5000, help="books per second (default 5000)"
    )
    demo.add_argument("--seed", type=int, default=7, help="the feed's random seed (default 7)")
    demo.add_argument(
        "--output",
        default="demo-output",
        help="where logs, the archive and the charts go, one run-* directory per run "
        "(default ./demo-output)",
    )
    demo.add_argument(
        "--radar",
        help="the radar program (default: the one `pip install .` put beside journal, "
        "else a checkout's build/release/radar, else radar on PATH; journal --version "
        "says which)",
    )
    demo.add_argument(
        "--idle",
        choices=("spin", "yield", "backoff", "futex"),
        default="futex",
        help="how the radar waits (default futex; spin gives the lowest latency but takes a CPU)",
    )
    demo.add_argument(
        "--keep-shm", action="store_true", help="keep the journals in /dev/shm afterwards"
    )
    demo.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve the pipeline's metrics (writers, the radar's reads, feeds, the radar's "
        "premiums and edges) for Prometheus while it runs, as journal metrics --listen; "
        "127.0.0.1:0 picks a free port; the URL is printed",
    )
    demo.set_defaults(run=_demo)


def _add_compact(commands: _Commands) -> None:
    _add_command(
        commands,
        "compact",
        "archive sealed segments as verified zstd files (what tools/compact runs)",
        "Archive the sealed segments of each journal into DIR/<journal name>/ "
        "(docs/FORMAT.md, 'Archive files'): written to a temporary file, verified "
        "against the segment, fsynced and renamed; then remove them from tmpfs beyond "
        "the K newest. --once makes one pass; otherwise it watches the journals (also "
        "ones not created yet) until SIGINT or SIGTERM.",
        "0 done, or stopped by a signal; 1 with --once, a segment could not be archived "
        "(it stays in tmpfs); 2 could not start: a bad argument, or another compactor "
        "on the archive.",
        _compact_arguments,
    )


def _compact_arguments(compact: argparse.ArgumentParser) -> None:
    from journal.archive.compact import add_arguments

    add_arguments(compact)
    compact.set_defaults(run=_compact)


def _add_analyze(commands: _Commands) -> None:
    _add_command(
        commands,
        "analyze",
        "update rates, spreads, sequence gaps, delays and kimchi premium; PNG charts",
        "Load the books of every SOURCE (journal directories and archives, in any mix) "
        "and print per exchange and symbol the books, update rate, spread, sequence gaps "
        "and exchange-to-local delay, then the kimchi premium per base asset and venue "
        "pair; with --charts, PNG charts too. --from and --to select books by local time "
        "in [from, to): ns since the epoch or an ISO-8601 time with its zone, as in "
        "dump; --from beginning and --to end are the open ends (the default). Positions "
        "(SEGMENT:OFFSET) are refused: they name a place in one journal.",
        "0 the summary was printed (also when no book is selected); 1 damage in a "
        "source, said with its file and offset; 2 a bad argument, a SOURCE that is "
        "neither a journal nor an archive or cannot be read, or segments missing "
        "between those given (see --allow-gaps); 130 interrupted (Ctrl-C).",
        _analyze_arguments,
    )


def _analyze_arguments(analyze: argparse.ArgumentParser) -> None:
    from journal.analysis._report import add_source_arguments

    add_source_arguments(analyze, _parse_start)
    analyze.add_argument("--charts", metavar="DIR", help="write PNG charts here (matplotlib)")
    analyze.add_argument(
        "--fx",
        type=positive_number,
        help="fixed KRW per USDT (default: a USDT-KRW book of a KRW venue)",
    )
    analyze.set_defaults(run=_analyze)


def _add_import_captures(commands: _Commands) -> None:
    _add_command(
        commands,
        "import-captures",
        "replay exchange capture files into a journal: real books, gaps and resyncs",
        "Rebuild each stream's book from the captured websocket messages "
        "and REST snapshots (docs/FEEDS.md) and append every top-10 book, with its "
        "recorded times, to a new journal; report per stream books, gaps and resyncs.",
        "0 imported; 2 a capture file that cannot be read or parsed (its name and line), "
        "or a journal that cannot be created or already holds records.",
        _import_captures_arguments,
    )


def _import_captures_arguments(captures: argparse.ArgumentParser) -> None:
    from journal.feeds import _import

    _import.add_arguments(captures)
    captures.set_defaults(run=_import.run)


def _add_collect(commands: _Commands) -> None:
    _add_command(
        commands,
        "collect",
        "live order books from the exchanges' websockets into one journal per venue",
        "Connect to each venue's public websocket (binance, binance-futures, bybit, "
        "bybit-futures, upbit, bithumb), keep every symbol's book by the venue's documented "
        "sync rules (REST snapshots, gap resyncs), and journal its top levels after every "
        "update into DIR/<venue>. Reconnects with back-off; counters per symbol in the "
        "journal's collector.metrics (journal top, journal metrics). docs/COLLECT.md.",
        "0 stopped by --duration, SIGINT or SIGTERM (journals sealed); 2 a bad argument or "
        "config, or a journal that cannot be opened.",
        _collect_arguments,
    )


def _collect_arguments(collect: argparse.ArgumentParser) -> None:
    try:
        from journal.collect import _run
    except ModuleNotFoundError as error:  # aiohttp/orjson: the collect extra
        if error.name not in ("aiohttp", "orjson"):
            raise
        missing = error.name
        collect.set_defaults(run=lambda _args: _missing_extra("collect", missing))
        collect.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    _run.add_arguments(collect)
    collect.set_defaults(run=_collect)


def _add_replicate(commands: _Commands) -> None:
    from journal.replicate import _arguments

    replicate = _add_command(
        commands,
        "replicate",
        "publish journals to a NATS JetStream stream, for journal mirror on other hosts",
        "Tail each JOURNAL (from the archive too, with --archive) and publish its records "
        "to the stream (created if missing), many records a message, each message "
        "de-duplicated by its id and stored only right after the journal's previous one: "
        "no loss, no duplicate across crashes of either side. Where to go on is read "
        "back from the stream at start. docs/REPLICATION.md.",
        "0 stopped by --duration, SIGINT or SIGTERM; 1 NATS refused the credentials or "
        "the stream, another journal replicate publishes a journal, or a journal could not "
        "go on (said; the others go on until stopped); 2 a bad argument.",
    )
    _arguments.add_replicate_arguments(replicate)
    replicate.set_defaults(run=_run_replicate)


def _add_mirror(commands: _Commands) -> None:
    from journal.replicate import _arguments

    mirror = _add_command(
        commands,
        "mirror",
        "copy the journals of a JetStream stream into local journals, byte for byte",
        "A durable consumer of the stream appends each replicated journal's records to "
        "DIR/<name>, the same bytes at the same positions, acknowledging a message only "
        "once its records are committed; it goes on from what each mirror journal holds. "
        "The radar and every reader tail a mirror journal as any journal. "
        "docs/REPLICATION.md.",
        "0 stopped by --duration, SIGINT or SIGTERM; 1 NATS refused the credentials, the "
        "stream does not hold --subject-prefix, or a journal's copy could not go on (said; "
        "the others go on until stopped); 2 a bad argument.",
    )
    _arguments.add_mirror_arguments(mirror)
    mirror.set_defaults(run=_run_mirror)


def _run_replicate(args: argparse.Namespace) -> int:
    from journal.replicate import _run  # asyncio and nats-py: for this command only

    return _run.run_replicate(args)


def _run_mirror(args: argparse.Namespace) -> int:
    from journal.replicate import _run

    return _run.run_mirror(args)


def _missing_extra(extra: str, module: str) -> int:
    print(
        f"journal {extra}: needs {module}, which is not installed: "
        f"pip install 'orderbook-journal[{extra}]'",
        file=sys.stderr,
    )
    return 2


def _add_top(commands: _Commands) -> None:
    _add_command(
        commands,
        "top",
        "writers, readers, collector feeds and replication of journals, live: rate, lag, staleness",
        "Show every --interval seconds each journal's writer (alive, pid, records, "
        "records/s, MB/s, segment, rolls, refused appends, append latency p50 and p99, "
        "idle time) and its registered readers (alive, records/s, lag in records and in "
        "time, position), the feeds of a `journal collect` per symbol (state, books/s, "
        "age of the last message, STALE past --stale, delay, reconnects, gaps, resyncs), "
        "the `journal replicate` and `journal mirror` of each (alive, NATS state, "
        "records/s, a replicator's lag, latency, a mirror's pending messages, retries, "
        "gaps, redeliveries), and how much of tmpfs the segments take. On a terminal it "
        "redraws in place until Ctrl-C; into a pipe or a file it prints key=value lines.",
        "0 after --once, or on Ctrl-C; 2 a JOURNAL that is neither a journal nor a "
        "directory holding journals, or that cannot be read.",
        _top_arguments,
    )


def _top_arguments(top: argparse.ArgumentParser) -> None:
    from journal.monitor import _top

    _top.add_arguments(top)
    top.set_defaults(run=_top.run)


def _add_metrics(commands: _Commands) -> None:
    _add_command(
        commands,
        "metrics",
        "writer, reader, collector feed, replication and radar metrics for Prometheus: "
        "served or printed",
        "Export each journal's metrics for Prometheus (docs/METRICS.md): the writer's "
        "records, bytes, rolls, refused appends and append latency histogram; each "
        "reader's position and lag (labelled by its name, stable across restarts); each "
        "collector feed's state, messages, books, reconnects, gaps, resyncs, delay and "
        "last message age per symbol; its `journal replicate` and `journal mirror` (NATS "
        "connection, records, a replicator's lag, latency, a mirror's pending messages, "
        "retries, gaps, redeliveries); each radar's premiums, executable edges and FX per "
        "pair, book ages per stream and observe latency (the radar.metrics of a journal "
        "given, or --radar FILE; --radar FILE alone: only the radar's). A JOURNAL root "
        "is searched for journals up to 4 directories down (never inside a journal). "
        "Every read is fresh from the shared-memory counters. "
        "With --listen HOST:PORT an HTTP endpoint serves them until SIGINT or SIGTERM "
        "(journals created under a JOURNAL root later appear); with --output FILE they "
        "are written for node_exporter's textfile collector, once or every --interval "
        "seconds; otherwise printed once (text format 0.0.4). A metrics file that cannot "
        "be read is said on stderr and left out; the rest is exported.",
        "0 printed or written, or served until SIGINT or SIGTERM (problems with single "
        "metrics files on stderr); 2 a JOURNAL that is neither a journal nor holds "
        "journals, or cannot be read, a --radar FILE that does not exist (either one "
        "waited for with --allow-missing) or is not a radar's metrics file, neither "
        "JOURNAL nor --radar, an --output that cannot be written, a bad HOST:PORT or a "
        "port in use, or prometheus_client not installed (pip install "
        "'orderbook-journal[metrics]').",
        _metrics_arguments,
    )


def _metrics_arguments(metrics: argparse.ArgumentParser) -> None:
    try:
        from journal.monitor import _exporter
    except ModuleNotFoundError as error:  # prometheus_client: the metrics extra
        if (error.name or "").partition(".")[0] != "prometheus_client":
            raise
        metrics.set_defaults(run=lambda _args: _missing_extra("metrics", "prometheus_client"))
        metrics.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    _exporter.add_arguments(metrics)
    metrics.set_defaults(run=_exporter.run)


def _add_export(commands: _Commands) -> None:
    _add_command(
        commands,
        "export",
        "write the books as a Parquet dataset (pyarrow) for DuckDB, Polars, Spark",
        "Write the books of every SOURCE, selected as analyze selects them (--from, "
        "--to, --exchange, --symbol, --depth), as a Parquet dataset (zstd) partitioned "
        "hive style: OUT/date=YYYY-MM-DD/exchange=NAME/part-NNNNN.parquet, the UTC date "
        "of each book's local time. A row per book: symbol, market (spot, "
        "linear_perpetual, inverse_perpetual, ... by venue and symbol; null where the "
        "table cannot tell), exchange_time (timestamp ms, UTC), local_time (timestamp "
        "ns, UTC; see --local-time-unit), sequence and its levels as lists (bid_price, "
        "bid_qty, ask_price, ask_qty, each the book's own length); date and exchange "
        "come from the directories (docs/ANALYSIS.md). Spark (checked: 3.5.9, 4.3.0) "
        "reads the ns dataset with spark.sql.legacy.parquet.nanosAsLong=true, "
        "local_time then a long (timestamp_micros(local_time div 1000)), and a "
        "--local-time-unit us one as it is. A selection of no book writes nothing: "
        "exit 2, with what the sources hold. The dataset is written beside OUT and "
        "published by one rename (a swap with --overwrite and --replace-partitions): "
        "a reader, or a kill even with SIGKILL, finds the old dataset or the new one "
        "whole; Ctrl-C before that rename leaves OUT as it was, after it the export "
        "ends as done. Progress goes to stderr: a live line on a terminal, else a line "
        "every --progress-interval seconds.",
        "0 written; 1 damage in a source, said with its file and offset; 2 a bad "
        "argument, a selection of no book, a SOURCE that cannot be read, segments "
        "missing between those given (see --allow-gaps), an OUT that exists (see "
        "--overwrite) or cannot be written, or pyarrow not installed; 130 interrupted "
        "(Ctrl-C) before publishing, OUT unchanged.",
        _export_arguments,
    )


def _export_arguments(export: argparse.ArgumentParser) -> None:
    from journal.analysis._report import add_source_arguments

    add_source_arguments(export, _parse_start)
    export.add_argument(
        "--parquet", required=True, metavar="OUT", help="the dataset directory to create"
    )
    existing = export.add_mutually_exclusive_group()
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the dataset at OUT whole (at once); refused if OUT holds anything "
        "an export does not write",
    )
    existing.add_argument(
        "--replace-partitions",
        action="store_true",
        help="add this export's date/exchange partitions to the dataset at OUT, each "
        "replacing the one of the same date and exchange whole (export whole days); "
        "the others are kept as hard links and the whole directory swapped at once",
    )
    export.add_argument(
        "--layout",
        choices=("list", "wide"),
        default="list",
        help="the levels as list columns, each the book's own length (default; "
        "bid_price[1] in DuckDB), or wide: bid_price_0 .. bid_price_N-1 double columns, "
        "null past a book's depth (faster top-of-book queries, slower writes: the "
        "measurements are in docs/ANALYSIS.md)",
    )
    from journal.analysis._table import LOCAL_TIME_UNITS

    export.add_argument(
        "--local-time-unit",
        choices=LOCAL_TIME_UNITS,
        default="ns",
        help="local_time as TIMESTAMP(NANOS), as journaled (default), or us: "
        "TIMESTAMP(MICROS), floored, which Spark reads as a timestamp without settings",
    )
    export.add_argument("--quiet", action="store_true", help="no progress on stderr (errors still)")
    export.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="when stderr is not a terminal, a progress line at most this often "
        "(default 10; 0: every step; a finite number)",
    )
    export.set_defaults(run=_export)


_OS_ERROR_ADVICE: Final = {
    errno.EACCES: "run as a user allowed there, such as the journal writer's, or change "
    "its permissions",
    errno.EPERM: "run as a user allowed there, or change its permissions",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "give a file, not a directory",
    errno.EEXIST: "something is in the way there: give another path",
    errno.EROFS: "the filesystem is read-only",
    errno.ENOSPC: "the filesystem is full",
}


def describe_os_error(error: OSError) -> str:
    """One line for an OSError on a path: the path, what the system said, and what
    to do, instead of a traceback for what is not a bug but the path given."""
    if error.filename is None:
        return str(error)  # pyarrow and the like put the path in the text
    where = os.fsdecode(error.filename)
    if error.filename2 is not None:
        where += f" -> {os.fsdecode(error.filename2)}"
    text = f"{where}: {error.strerror or error}"
    advice = _OS_ERROR_ADVICE.get(error.errno or 0)
    return f"{text} ({advice})" if advice else text


def main(argv: Sequence[str] | None = None) -> int:
    """The journal command: its exit status. Ctrl-C at any moment from here on, while
    the parser is built, the command's modules imported or it runs, is status 130
    and no traceback (a command that must clean up catches it first)."""
    interrupts = _Interrupts()
    sys.unraisablehook = interrupts.hook
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not if ignored
        signal.signal(signal.SIGINT, interrupts.handler)
    try:
        args = build_parser().parse_args(argv)
        if interrupts.lost:
            return 130
        status = _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if interrupts.received or _interrupted(error):
            return 130
        raise
    return 130 if interrupts.lost else status


class _Interrupts:
    """Ctrl-C while main runs.

    Raised as Python's own handler raises it (KeyboardInterrupt), and counted
    (``received``): one that lands inside an import can come out as an unrelated
    exception (``TypeError: expected a message argument`` from ``_ssl``'s), which is
    that Ctrl-C all the same: status 130, no traceback. One that lands where Python
    cannot raise it at all (a callback of the import machinery, printed as "Exception
    ignored ... KeyboardInterrupt") is counted silently (``lost``) and the command ends
    with status 130 (at once if it came while the command line was read, else when it
    returns: a long command is stopped by the next Ctrl-C). Raising it again from
    here only moves it elsewhere inside the import."""

    def __init__(self) -> None:
        self.received = 0
        self.lost = 0

    def handler(self, signum: int, frame: object) -> None:
        self.received += 1
        raise KeyboardInterrupt

    def hook(self, unraisable: sys.UnraisableHookArgs) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            self.lost += 1
        else:
            sys.__unraisablehook__(unraisable)


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` is a Ctrl-C that Python wrapped on its way out: one that
    lands while a module is imported can come back as another exception caused by
    it (a RuntimeError from a dataclass field's ``__set_name__``, say)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _run(args: argparse.Namespace) -> int:
    """The chosen command run, its errors made one line and an exit status."""
    try:
        return args.run(args)
    except (CorruptSegmentError, CorruptArchiveError) as error:
        print(f"journal {args.command}: {error}", file=sys.stderr)
        return 1
    except JournalError as error:
        print(f"journal {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader of our output went away (| head): not an error
        return 0
    except OSError as error:
        print(f"journal {args.command}: {describe_os_error(error)}", file=sys.stderr)
        return 2
