"""Replication in ``journal top``: replicate.metrics, mirror.metrics.

A journal that ``journal replicate`` publishes has ``replicate.metrics`` in its
directory; a mirror journal that ``journal mirror`` writes has ``mirror.metrics``
(journal._replication_metrics), both read into the journal's snapshot
(journal.monitor._snapshot.ReplicationSide, also what ``journal metrics`` exports as
``journal_replication_*``: journal.monitor._prometheus). For each, one row: the owner
alive or dead, its NATS connection, records and messages, its rate over the
interval, and its lag:

* replicate: the records between the position JetStream acknowledged last and the
  writer's (walked as a reader's lag is, journal.monitor._snapshot.measure_lag), and
  how long the oldest of them has waited; ``retries``, ``resyncs``.
* mirror: the records of the journal the stream holds beyond the copy and how much
  later (by the source's clock) the stream's last of them was written, as the mirror
  last measured them (once a second); the last message's end-to-end latency (its
  commit less its last record's source time: both clocks' difference included when
  the hosts differ), and the messages the stream holds for its consumer not yet
  delivered (``pending``, all journals together); ``duplicates``, ``gaps``,
  ``rewinds``, ``redeliveries``, ``skipped`` records.

The block comes after the journals' own (a module of its own, so that the monitor's
other views stay as they are); a file that cannot be read is among its journal's
problems, shown with the journal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from journal._replication_metrics import NatsState, ReplicationFigures, Role, Word
from journal.monitor._snapshot import JournalSnapshot, Lag

_previous: dict[Path, tuple[int, int]] = {}
"""Per file: records and monotonic ns when last shown, for the rate."""


@dataclass(frozen=True, slots=True)
class ReplicationRow:
    journal: str
    figures: ReplicationFigures
    rate: float | None
    lag: Lag | None
    """replicate only: from the acknowledged position to the writer's."""
    taken_ns: int
    """When the file was read."""

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


def replication_rows(shots: Sequence[JournalSnapshot]) -> list[ReplicationRow]:
    """A row per replication metrics file of the journals, with its records' rate
    since the last snapshot of it given to this."""
    rows: list[ReplicationRow] = []
    for shot in shots:
        now = shot.taken_monotonic_ns
        for side in shot.replication:
            figures = side.figures
            records = figures[Word.RECORDS_TOTAL]
            before = _previous.get(figures.path)
            rate = None
            if before is not None and now > before[1] and records >= before[0]:
                rate = (records - before[0]) * 1e9 / (now - before[1])
            _previous[figures.path] = (records, now)
            rows.append(ReplicationRow(shot.name, figures, rate, side.lag, side.taken_ns))
    return rows


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def screen(shots: Sequence[JournalSnapshot]) -> str:
    """The terminal block: nothing when no journal is replicated or mirrored."""
    rows = replication_rows(shots)
    if not rows:
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
                f"{f' skipped {n:,}' if (n := f[Word.SKIPPED_RECORDS_TOTAL]) else ''}"
            )
            lag_records = lag_us = None
            if (lag := f.mirror_lag(row.taken_ns)) is not None:
                lag_records, lag_us = lag.records, lag.ns / 1e3
            pending = f"{f[Word.PENDING_MESSAGES]:,}"
        lines.append(
            f"{row.journal:<14} {row.role:<9} {row.owner:<16} {row.nats:<12} "
            f"{f[Word.RECORDS_TOTAL]:>13,} {_number(row.rate):>9} {_number(lag_records):>9} "
            f"{_number(lag_us, 1):>11} {f[Word.LATENCY_NS] / 1e3:>9,.1f} {pending:>8} "
            f"{f[Word.RECONNECTS_TOTAL]:>6,}  {f[Word.SEGMENT]}:{f[Word.OFFSET]} "
            f"seq {f[Word.STREAM_SEQUENCE]} {events}"
        )
    return "\n".join(lines) + "\n"


_LAG = (Word.LAG_CHECKED_NS, Word.LAG_RECORDS, Word.LAG_NS)
"""A mirror's lag words: in a log line as the replicator's lag is (lag_records, lag_ns)."""


def log_lines(shots: Sequence[JournalSnapshot]) -> str:
    """The same as ``key=value`` lines, one per file."""
    rows = replication_rows(shots)
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    lines = []
    for row in rows:
        f = row.figures
        words = " ".join(f"{word.name.lower()}={f[word]}" for word in Word if word not in _LAG)
        lag = ""
        if row.lag is not None:
            lag = f" lag_records={row.lag.records} lag_ns={_number(row.lag.ns).replace(',', '')}"
        elif (mirror_lag := f.mirror_lag(row.taken_ns)) is not None:  # as it measured it
            lag = f" lag_records={mirror_lag.records} lag_ns={mirror_lag.ns}"
        lines.append(
            f"{now} journal={row.journal} replication={row.role} "
            f"owner={row.owner.replace(' pid ', ',pid=')} stream={f.stream} "
            f"rate={_number(row.rate).replace(',', '')}{lag} {words}"
        )
    return "\n".join(lines) + "\n" if lines else ""
