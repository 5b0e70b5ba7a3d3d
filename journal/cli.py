"""The ``journal`` command: inspect, demo, compact, analyze, export, import and monitor journals."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from journal._errors import JournalError
from journal._reader import IDLE_STRATEGIES, Reader, Start


def _parse_start(text: str) -> Start:
    """``beginning``, ``end``, ``SEGMENT:OFFSET``, ns since the epoch, or ISO-8601 time."""
    if text in ("beginning", "end"):
        return text  # type: ignore[return-value]
    if ":" in text and text.replace(":", "").isdigit():
        segment, offset = text.split(":")
        return (int(segment), int(offset))
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--from {text!r}: use beginning, end, SEGMENT:OFFSET, ns since the epoch or "
            "an ISO-8601 time such as 2026-11-29T15:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"--from {text!r}: give the time zone (e.g. +00:00), times are not guessed"
        )
    return int(moment.timestamp() * 1_000_000_000)


def _info(args: argparse.Namespace) -> int:
    from journal._inspect import summarize

    summary = summarize(args.path)
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
    write = sys.stdout.write
    count = 0
    with Reader(
        args.path,
        start=args.start,
        verify=not args.no_verify,
        idle=args.idle,
        archive=args.archive,
    ) as reader:
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

    report = verify(args.path)
    if report.first_error is None:
        print(f"OK: {report.records:,} records in {report.segments} segments of {args.path}")
        for note in report.notes:
            print(f"  {note}")
        return 0
    print(f"CORRUPT after {report.records:,} good records: {report.first_error}", file=sys.stderr)
    return 1


def _demo(args: argparse.Namespace) -> int:
    from journal import _demo

    return _demo.run_demo(
        _demo.DemoOptions(
            duration_s=args.duration,
            rate=args.rate,
            seed=args.seed,
            output=Path(args.output),
            radar=Path(args.radar),
            idle=args.idle,
            keep_shm=args.keep_shm,
        )
    )


def _compact(args: argparse.Namespace) -> int:
    from journal._compact import run

    return run(args)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0")
    return value


def _parse_time(text: str) -> int:
    """ns since the epoch, or an ISO-8601 time with its zone."""
    start = _parse_start(text)
    if not isinstance(start, int):
        raise argparse.ArgumentTypeError(f"{text!r}: give ns since the epoch or an ISO-8601 time")
    return start


def _analyze(args: argparse.Namespace) -> int:
    from journal._analyze import run_analyze

    return run_analyze(args)


def _export(args: argparse.Namespace) -> int:
    from journal._analyze import run_export

    return run_export(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="journal",
        description="Order-book journals: inspect, demo, compact, analyze, import, monitor.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="segments, commit offsets, records, writer state")
    info.add_argument("path", help="journal directory")
    info.set_defaults(run=_info)

    dump = commands.add_parser("dump", help="print records as JSON lines")
    dump.add_argument("path", help="journal directory")
    dump.add_argument(
        "--from",
        dest="start",
        type=_parse_start,
        default="beginning",
        help="beginning (default), end, SEGMENT:OFFSET, ns since the epoch, or ISO-8601 time",
    )
    dump.add_argument(
        "--archive",
        metavar="DIR",
        help="the compactor's archive root: read segments gone from tmpfs from "
        "DIR/<journal name>/, then the live ones",
    )
    dump.add_argument("--follow", action="store_true", help="keep printing new records")
    dump.add_argument("--limit", type=int, help="stop after this many records")
    dump.add_argument("--no-verify", action="store_true", help="skip FlatBuffers verification")
    dump.add_argument(
        "--idle",
        choices=IDLE_STRATEGIES,
        default="backoff",
        help="how --follow waits (default backoff)",
    )
    dump.set_defaults(run=_dump)

    check = commands.add_parser(
        "verify",
        help="check every record; exit 1 at the first corrupt position",
        description="Check every segment header, every record (framing, FlatBuffers "
        "verification, decoding) and the chain of segments: each one sealed but the one "
        "being written (and the empty one a writer prepares after it). What a writer "
        "leaves when it is killed and repairs when it opens the journal (a roll or a "
        "seal it did not finish) is not damage: notes after the OK line say what was "
        "found, and the exit status is 0.",
        epilog="exit status: 0 every committed record is readable (notes say what a "
        "writer will repair); 1 damage, reported with its file and offset after the "
        "number of good records before it; 2 not a journal, or it cannot be read.",
    )
    check.add_argument("path", help="journal directory")
    check.set_defaults(run=_verify)

    from journal._demo import DEFAULT_RADAR

    demo = commands.add_parser(
        "demo",
        help="the whole pipeline: demo feed -> journal -> radar, compactor, analysis",
        description="Run the synthetic multi-exchange feed into a journal in /dev/shm, the "
        "radar tailing it and the compactor archiving it; then stop them in order, check "
        "that every book was read and archived, and print a summary and a chart.",
    )
    demo.add_argument(
        "--duration", type=_positive_float, default=30.0, help="seconds to run (default 30)"
    )
    demo.add_argument("--rate", type=int, default=5000, help="books per second (default 5000)")
    demo.add_argument("--seed", type=int, default=7, help="the feed's random seed (default 7)")
    demo.add_argument(
        "--output",
        default="demo-output",
        help="where logs, the archive and the charts go, one run-* directory per run "
        "(default ./demo-output)",
    )
    demo.add_argument(
        "--radar", default=str(DEFAULT_RADAR), help=f"the radar program (default {DEFAULT_RADAR})"
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
    demo.set_defaults(run=_demo)

    from journal._compact import add_arguments as compact_arguments

    compact = commands.add_parser(
        "compact",
        help="archive sealed segments as verified zstd files (what tools/compact runs)",
        description="Archive sealed segments of each JOURNAL_DIR into DIR/<journal name>/ "
        "(docs/FORMAT.md, 'Archive files'), then remove them from tmpfs beyond the K newest.",
    )
    compact_arguments(compact)
    compact.set_defaults(run=_compact)

    from journal._analyze import add_source_arguments

    analyze = commands.add_parser(
        "analyze",
        help="update rates, spreads, sequence gaps, delays and kimchi premium; PNG charts",
    )
    add_source_arguments(analyze, _parse_time)
    analyze.add_argument("--charts", metavar="DIR", help="write PNG charts here (matplotlib)")
    analyze.add_argument(
        "--fx", type=float, help="fixed KRW per USDT (default: a USDT-KRW book of a KRW venue)"
    )
    analyze.set_defaults(run=_analyze)

    from journal.feeds import _import

    captures = commands.add_parser(
        "import-captures",
        help="replay exchange capture files into a journal: real books, gaps and resyncs",
        description="Rebuild each stream's book from the captured websocket messages "
        "and REST snapshots (docs/FEEDS.md) and append every top-10 book, with its "
        "recorded times, to a new journal; report per stream books, gaps and resyncs.",
    )
    _import.add_arguments(captures)
    captures.set_defaults(run=_import.run)

    from journal import _prometheus, _top

    top = commands.add_parser("top", help="writers and readers of journals, live: rate, lag")
    _top.add_arguments(top)
    top.set_defaults(run=_top.run)

    metrics = commands.add_parser(
        "metrics", help="writer and reader metrics in the Prometheus text format"
    )
    _prometheus.add_arguments(metrics)
    metrics.set_defaults(run=_prometheus.run)

    export = commands.add_parser("export", help="write the books as Parquet (pyarrow)")
    add_source_arguments(export, _parse_time)
    export.add_argument("--parquet", required=True, metavar="OUT", help="the Parquet file")
    export.set_defaults(run=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except JournalError as error:
        print(f"journal {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader of our output went away (| head): not an error
        return 0


if __name__ == "__main__":
    sys.exit(main())
