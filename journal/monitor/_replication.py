"""Replication in ``journal top`` and ``journal metrics``: replicate.metrics, mirror.metrics.

A journal that ``journal replicate`` publishes has ``replicate.metrics`` in its
directory; a mirror journal that ``journal mirror`` writes has ``mirror.metrics``
(journal._replication_metrics). For each, one row: the owner alive or dead, its NATS
connection, records and messages, its rate over the interval, and its lag:

* replicate: the records between the position JetStream acknowledged last and the
  writer's (walked as a reader's lag is, journal.monitor._snapshot.measure_lag), and
  how long the oldest of them has waited; ``retries``, ``resyncs``.
* mirror: the last message's end-to-end latency (its commit less its last record's
  source time: both clocks' difference included when the hosts differ), and the
  messages the stream holds for its consumer not yet delivered (``pending``);
  ``duplicates``, ``gaps``, ``rewinds``, ``redeliveries``.

The block comes after the journals' own (a module of its own, so that the monitor's
other views stay as they are).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from journal._errors import JournalError
from journal._replication_metrics import (
    NatsState,
    ReplicationFigures,
    Role,
    Word,
    metrics_name,
    read_replication_metrics,
)
from journal.monitor._snapshot import JournalSnapshot, Lag, measure_lag

_previous: dict[Path, tuple[int, int]] = {}
"""Per file: records and monotonic ns when last shown, for the rate."""


@dataclass(frozen=True, slots=True)
class ReplicationRow:
    journal: str
    figures: ReplicationFigures
    rate: float | None
    lag: Lag | None
    """replicate only: from the acknowledged position to the writer's."""

    @property
    def role(self) -> str:
        return self.figures.role.name.lower()

    @property
    def owner(self) -> str:
        return f"{'alive' if self.figures.alive else 'DEAD'} pid {self.figures.pid}"

    @property
    def nats(self) -> str:
        if not self.figures.alive:
            return "-"
        return NatsState(self.figures[Word.NATS_STATE]).name.lower()


def replication_rows(shots: Sequence[JournalSnapshot]) -> tuple[list[ReplicationRow], list[str]]:
    """A row per replication metrics file of the journals, and what could not be read."""
    rows: list[ReplicationRow] = []
    problems: list[str] = []
    for shot in shots:
        for role in Role:
            path = shot.path / metrics_name(role)
            try:
                figures = read_replication_metrics(path)
            except (JournalError, OSError) as error:
                problems.append(str(error))
                continue
            if figures is None:
                continue
            records = figures[Word.RECORDS_TOTAL]
            before = _previous.get(path)
            now = time.monotonic_ns()
            rate = None
            if before is not None and now > before[1] and records >= before[0]:
                rate = (records - before[0]) * 1e9 / (now - before[1])
            _previous[path] = (records, now)
            lag = None
            if role == Role.REPLICATE and shot.end is not None and figures[Word.MESSAGES_TOTAL]:
                position = (figures[Word.SEGMENT], figures[Word.OFFSET])
                try:
                    lag = measure_lag(shot.path, position, shot.end, shot.taken_ns)
                except (JournalError, OSError) as error:
                    problems.append(f"{path}: lag not measured: {error}")
            rows.append(ReplicationRow(shot.name, figures, rate, lag))
    return rows, problems


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def screen(shots: Sequence[JournalSnapshot]) -> str:
    """The terminal block: nothing when no journal is replicated or mirrored."""
    rows, problems = replication_rows(shots)
    if not rows and not problems:
        return ""
    lines = [
        "",
        f"{'REPLICATION':<14} {'ROLE':<9} {'OWNER':<16} {'NATS':<12} {'RECORDS':>13} "
        f"{'REC/S':>9} {'LAG REC':>9} {'LAG µs':>11} {'LAT µs':>9} {'PENDING':>8} "
        f"{'RECONN':>6}  POSITION / EVENTS",
    ]
    for row in rows:
        f = row.figures
        if f.role == Role.REPLICATE:
            events = f"retries {f[Word.RETRIES_TOTAL]} resyncs {f[Word.RESYNCS_TOTAL]}"
            lag_records = None if row.lag is None else row.lag.records
            lag_us = None if row.lag is None or row.lag.ns is None else row.lag.ns / 1e3
            pending = "-"
        else:
            events = (
                f"dup {f[Word.DUPLICATES_TOTAL]} gaps {f[Word.GAPS_TOTAL]} "
                f"rewinds {f[Word.REWINDS_TOTAL]} redelivered {f[Word.REDELIVERIES_TOTAL]}"
            )
            lag_records = lag_us = None
            pending = f"{f[Word.PENDING_MESSAGES]:,}"
        lines.append(
            f"{row.journal:<14} {row.role:<9} {row.owner:<16} {row.nats:<12} "
            f"{f[Word.RECORDS_TOTAL]:>13,} {_number(row.rate):>9} {_number(lag_records):>9} "
            f"{_number(lag_us, 1):>11} {f[Word.LATENCY_NS] / 1e3:>9,.1f} {pending:>8} "
            f"{f[Word.RECONNECTS_TOTAL]:>6,}  {f[Word.SEGMENT]}:{f[Word.OFFSET]} "
            f"seq {f[Word.STREAM_SEQUENCE]} {events}"
        )
    lines.extend(f"  ! {problem}" for problem in problems)
    return "\n".join(lines) + "\n"


def log_lines(shots: Sequence[JournalSnapshot]) -> str:
    """The same as ``key=value`` lines, one per file."""
    rows, problems = replication_rows(shots)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    lines = []
    for row in rows:
        f = row.figures
        words = " ".join(f"{word.name.lower()}={f[word]}" for word in Word)
        lag = ""
        if row.lag is not None:
            lag = f" lag_records={row.lag.records} lag_ns={_number(row.lag.ns).replace(',', '')}"
        lines.append(
            f"{now} journal={row.journal} replication={row.role} "
            f"owner={row.owner.replace(' pid ', ',pid=')} stream={f.stream} "
            f"rate={_number(row.rate).replace(',', '')}{lag} {words}"
        )
    lines.extend(f"{now} replication_problem={problem!r}" for problem in problems)
    return "\n".join(lines) + "\n" if lines else ""


_COUNTERS = (
    (Word.RECORDS_TOTAL, "records_total", "records published (replicate) or appended (mirror)"),
    (Word.MESSAGES_TOTAL, "messages_total", "messages acknowledged by JetStream or appended"),
    (Word.BYTES_TOTAL, "bytes_total", "record frame bytes carried"),
    (Word.RECONNECTS_TOTAL, "reconnects_total", "NATS reconnections"),
    (Word.RETRIES_TOTAL, "retries_total", "JetStream requests retried (replicate)"),
    (Word.RESYNCS_TOTAL, "resyncs_total", "positions read back from the stream again"),
    (Word.DUPLICATES_TOTAL, "duplicates_total", "messages the mirror already held"),
    (Word.GAPS_TOTAL, "gaps_total", "messages that did not continue the mirror"),
    (Word.REWINDS_TOTAL, "rewinds_total", "consumer rewinds to its acknowledgement floor"),
    (Word.REDELIVERIES_TOTAL, "redeliveries_total", "messages delivered more than once"),
)


def exposition(shots: Sequence[JournalSnapshot]) -> str:
    """``journal_replication_*`` families in the Prometheus text format."""
    rows, _ = replication_rows(shots)
    if not rows:
        return ""
    families: dict[str, tuple[str, str, list[str]]] = {}

    def sample(name: str, kind: str, help_text: str, row: ReplicationRow, value: float) -> None:
        labels = f'journal="{row.journal}",role="{row.role}",stream="{row.figures.stream}"'
        family = families.setdefault(name, (kind, help_text, []))
        family[2].append(f"journal_replication_{name}{{{labels}}} {value}")

    for row in rows:
        f = row.figures
        sample("up", "gauge", "1 while the replicator or mirror holds its file", row, int(f.alive))
        connected = int(f.alive and f[Word.NATS_STATE] == NatsState.CONNECTED)
        sample("nats_connected", "gauge", "1 while connected to NATS", row, connected)
        for word, name, help_text in _COUNTERS:
            sample(name, "counter", help_text, row, f[word])
        sample(
            "stream_sequence",
            "gauge",
            "stream sequence of the last message",
            row,
            f[Word.STREAM_SEQUENCE],
        )
        sample(
            "latency_seconds",
            "gauge",
            "last message: publish round trip (replicate), source record to commit (mirror)",
            row,
            f[Word.LATENCY_NS] / 1e9,
        )
        if f.role == Role.MIRROR:
            sample(
                "pending_messages",
                "gauge",
                "messages the stream holds for the mirror not yet delivered",
                row,
                f[Word.PENDING_MESSAGES],
            )
        if row.lag is not None:
            sample(
                "lag_records",
                "gauge",
                "records not yet acknowledged by JetStream",
                row,
                row.lag.records,
            )
            if row.lag.ns is not None:
                sample(
                    "lag_seconds",
                    "gauge",
                    "age of the oldest record not yet acknowledged",
                    row,
                    row.lag.ns / 1e9,
                )
    lines = []
    for name, (kind, help_text, samples) in families.items():
        lines.append(f"# HELP journal_replication_{name} {help_text}")
        lines.append(f"# TYPE journal_replication_{name} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + "\n"
