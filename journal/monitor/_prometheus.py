"""``journal metrics JOURNAL...``: the journals' metrics in Prometheus text format.

Text exposition format 0.0.4: per metric family a ``# HELP`` and a ``# TYPE`` line,
then its samples; labels ``journal`` (the directory name, or its path where two
journals share a name) and ``reader`` (``<name>-<pid>[-<n>]``). Counters end in
``_total``; times are in seconds and bytes in bytes, as Prometheus prefers. The
append latency histogram has a bucket per power of two of nanoseconds
(``le`` = 2^k - 1 ns, exact bounds of the writer's finer counters), cumulative,
then ``+Inf``, ``_sum`` and ``_count``. Print it for a scrape (an HTTP wrapper or
node_exporter's textfile collector: ``--output FILE`` replaces FILE atomically).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from journal import _metrics_layout as M
from journal._errors import JournalError
from journal.monitor._snapshot import (
    REFUSAL_REASONS,
    JournalSnapshot,
    add_journals_argument,
    find_journals,
    journal_labels,
    snapshot,
)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_OCTAVE_COUNTERS: Final = range((2 << M.LATENCY_SUB_BUCKET_BITS) - 1, M.LATENCY_BUCKETS, 8)
"""Counters whose upper bound is 2^k - 1 ns: cumulative counts there are exact."""


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    help: str
    samples: list[str] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float, suffix: str = "") -> None:
        text = ",".join(f'{key}="{_escape(label)}"' for key, label in labels.items())
        self.samples.append(f"{self.name}{suffix}{{{text}}} {_number(value)}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(snapshots: Sequence[JournalSnapshot]) -> str:
    """The exposition text for ``snapshots`` (one per journal)."""
    families: dict[str, _Family] = {}

    def family(name: str, kind: str, help_text: str) -> _Family:
        return families.setdefault(name, _Family(name, kind, help_text))

    for shot in snapshots:
        for name, kind, help_text, labels, value, suffix in _samples(shot):
            family(name, kind, help_text).add(labels, value, suffix)
    lines: list[str] = []
    for item in families.values():
        lines.append(f"# HELP {item.name} {item.help}")
        lines.append(f"# TYPE {item.name} {item.kind}")
        lines.extend(item.samples)
    return "\n".join(lines) + "\n" if lines else ""


_Sample = tuple[str, str, str, dict[str, str], float, str]


def _samples(shot: JournalSnapshot) -> Iterator[_Sample]:
    journal = {"journal": shot.name}
    if shot.writer_alive is not None:
        yield (
            "journal_writer_up",
            "gauge",
            "1 if a process holds the journal's writer lock, else 0.",
            journal,
            int(shot.writer_alive),
            "",
        )
    yield (
        "journal_segments",
        "gauge",
        "Segment files of the journal in tmpfs.",
        journal,
        shot.segments,
        "",
    )
    yield (
        "journal_segment_bytes",
        "gauge",
        "Bytes of tmpfs allocated to the journal's segment files.",
        journal,
        shot.segment_bytes,
        "",
    )
    yield (
        "journal_filesystem_size_bytes",
        "gauge",
        "Size of the filesystem (tmpfs) holding the journal.",
        journal,
        shot.filesystem_bytes,
        "",
    )
    yield (
        "journal_filesystem_free_bytes",
        "gauge",
        "Bytes still free for the journal's writer on its filesystem.",
        journal,
        shot.filesystem_free_bytes,
        "",
    )
    if shot.end is not None:
        yield (
            "journal_commit_offset_bytes",
            "gauge",
            "Commit offset of the segment being written (segment header).",
            journal,
            shot.end[1],
            "",
        )
    writer = shot.writer
    if writer is not None:
        yield from _writer_samples(shot, journal)
    for reader in shot.readers:
        labels = {**journal, "reader": reader.label}
        yield (
            "journal_reader_up",
            "gauge",
            "1 while the reader holds the lock of its metrics file, 0 once it died.",
            labels,
            int(reader.alive),
            "",
        )
        yield (
            "journal_reader_records_total",
            "counter",
            "Records the reader has read since it started.",
            labels,
            reader.records,
            "",
        )
        yield (
            "journal_reader_position_segment",
            "gauge",
            "Segment of the reader's next record.",
            labels,
            reader.position[0],
            "",
        )
        yield (
            "journal_reader_last_record_timestamp_seconds",
            "gauge",
            "Time field (local_timestamp_ns) of the last record the reader read.",
            labels,
            reader.last_record_ns / 1e9,
            "",
        )
        yield (
            "journal_reader_last_poll_timestamp_seconds",
            "gauge",
            "When the reader last found nothing new to read (0: never).",
            labels,
            reader.last_poll_ns / 1e9,
            "",
        )
        if reader.lag is None:
            continue
        yield (
            "journal_reader_lag_records",
            "gauge",
            "Records committed that the reader has not read (estimated beyond 20000).",
            labels,
            reader.lag.records,
            "",
        )
        yield (
            "journal_reader_lag_bytes",
            "gauge",
            "Committed bytes the reader has not read.",
            labels,
            reader.lag.bytes,
            "",
        )
        if reader.lag.ns is not None:
            yield (
                "journal_reader_lag_seconds",
                "gauge",
                "How long the oldest record the reader has not read has been published.",
                labels,
                reader.lag.ns / 1e9,
                "",
            )


def _writer_samples(shot: JournalSnapshot, journal: dict[str, str]) -> Iterator[_Sample]:
    writer = shot.writer
    assert writer is not None
    yield (
        "journal_writer_start_time_seconds",
        "gauge",
        "When the writer whose counters these are opened the journal.",
        journal,
        writer.started_ns / 1e9,
        "",
    )
    yield (
        "journal_records_total",
        "counter",
        "Records appended by the writer since it opened the journal.",
        journal,
        writer.records,
        "",
    )
    yield (
        "journal_bytes_total",
        "counter",
        "Bytes of records (frames with padding) appended by the writer.",
        journal,
        writer.bytes,
        "",
    )
    yield (
        "journal_rolls_total",
        "counter",
        "Segments the writer sealed and moved on from.",
        journal,
        writer.rolls,
        "",
    )
    for reason in REFUSAL_REASONS:
        yield (
            "journal_refusals_total",
            "counter",
            "Appends refused: invalid book, record too large, journal full (tmpfs).",
            {**journal, "reason": reason},
            writer.refused[reason],
            "",
        )
    yield (
        "journal_segment",
        "gauge",
        "Index of the segment the writer appends to.",
        journal,
        writer.segment,
        "",
    )
    yield (
        "journal_last_publish_timestamp_seconds",
        "gauge",
        "Time of the writer's last commit (the book's local_timestamp_ns).",
        journal,
        writer.last_publish_ns / 1e9,
        "",
    )
    name = "journal_append_latency_seconds"
    help_text = (
        f"append_orderbook latency, one call in {writer.sample_period} timed "
        "(entry to commit published)."
    )
    seen = 0
    counts = writer.latency_counts
    previous = 0
    for index in _OCTAVE_COUNTERS:
        seen += sum(counts[previous : index + 1])
        previous = index + 1
        upper_ns = M.latency_bucket_bounds(index)[1]
        le = {**journal, "le": repr(upper_ns / 1e9)}
        yield (name, "histogram", help_text, le, seen, "_bucket")
    total = sum(counts)
    yield (name, "histogram", help_text, {**journal, "le": "+Inf"}, total, "_bucket")
    yield (name, "histogram", help_text, journal, writer.latency_sum_ns / 1e9, "_sum")
    yield (name, "histogram", help_text, journal, total, "_count")


# -- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_journals_argument(parser)
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write to FILE (replaced atomically, for node_exporter's textfile "
        "collector) instead of stdout",
    )


def run(args: argparse.Namespace) -> int:
    """Exit status 0; JournalError (a path that is not a journal, an --output that
    cannot be written) is the caller's."""
    output = None if args.output is None else Path(args.output)
    if output is not None:
        _check_output(output)  # before the journals are read, not after
    journals = find_journals(args.journals)
    labels = journal_labels(journals)
    snapshots = [snapshot(journal, labels[journal]) for journal in journals]
    for shot in snapshots:
        for problem in shot.problems:
            print(f"journal metrics: {problem}", file=sys.stderr)
    text = render(snapshots)
    if output is None:
        sys.stdout.write(text)
        return 0
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, output)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise JournalError(
            f"--output {output}: {error.strerror} writing {temporary.name} next to it (to "
            "rename it over FILE): give a FILE in a directory this user may write"
        ) from None
    return 0


def _check_output(output: Path) -> None:
    """JournalError unless ``output`` can be replaced by a file: its directory exists
    and it is not a directory itself. Said with FILE's name, where the write would
    name only the temporary file next to it."""
    if output.is_dir():
        raise JournalError(
            f"--output {output} is a directory: give a file name, e.g. {output / 'journal.prom'}"
        )
    if not output.parent.is_dir():
        raise JournalError(
            f"--output {output}: the directory {output.parent} does not exist (or is not a "
            "directory): create it, or give a FILE in an existing directory"
        )
