"""The figures of journal replicate and journal mirror in their metrics files.

``ReplicatorStats``: one per replicated journal, ``<source journal>/replicate.metrics``;
``MirrorStats``: one ``<mirror journal>/mirror.metrics`` per mirrored journal
(journal._replication_metrics, docs/FORMAT.md "Replication metrics"). A file is made
once its journal directory exists (a replicator may start before its writer, a
mirror journal appears with its first message). Every call is a few word stores.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from journal._errors import JournalError
from journal._replication_metrics import (
    NatsState,
    ReplicationMetrics,
    ReplicationRunningError,
    Role,
    Word,
)
from journal.replicate._nats import ConnectionState
from journal.replicate._scheme import Run

log = logging.getLogger("journal.replicate")


def _open(journal: Path, role: Role, stream: str) -> ReplicationMetrics | None:
    if not journal.is_dir():
        return None
    try:
        return ReplicationMetrics.create(journal, role, stream)
    except ReplicationRunningError:
        raise
    except (JournalError, OSError) as error:  # best-effort, as a reader's registration
        log.warning("%s: no %s metrics (%s)", journal, role.name.lower(), error)
        return None


def _connection(metrics: ReplicationMetrics, state: ConnectionState) -> None:
    metrics.set(Word.NATS_STATE, _STATES.get(state.state, NatsState.CONNECTING))
    metrics.set(Word.RECONNECTS_TOTAL, state.reconnects)
    metrics.set(Word.ERRORS_TOTAL, state.errors)


_STATES = {
    ConnectionState.CONNECTING: NatsState.CONNECTING,
    ConnectionState.CONNECTED: NatsState.CONNECTED,
    ConnectionState.DISCONNECTED: NatsState.DISCONNECTED,
    ConnectionState.CLOSED: NatsState.CLOSED,
}


def _position(metrics: ReplicationMetrics, run: Run, sequence: int) -> None:
    metrics.set(Word.STREAM_SEQUENCE, sequence)
    metrics.set(Word.INCARNATION_NS, run.incarnation_ns)
    metrics.set(Word.SEGMENT, run.segment)
    metrics.set(Word.OFFSET, run.end)
    metrics.set(Word.LAST_RECORD_NS, run.last_time_ns)


class ReplicatorStats:
    """One replicated journal's figures (the replicator calls it)."""

    def __init__(self, journal: Path, state: ConnectionState, stream: str) -> None:
        self.journal = journal
        self.state = state
        self.stream = stream
        self.metrics: ReplicationMetrics | None = None

    @classmethod
    def create(cls, journal: Path, state: ConnectionState, stream: str = "") -> ReplicatorStats:
        stats = cls(journal, state, stream)
        stats._file()
        return stats

    def _file(self) -> ReplicationMetrics | None:
        if self.metrics is None:
            self.metrics = _open(self.journal, Role.REPLICATE, self.stream)
        return self.metrics

    def published(self, run: Run, size: int, sequence: int, latency_ns: int) -> None:
        metrics = self._file()
        if metrics is None:
            return
        metrics.add(Word.RECORDS_TOTAL, run.records)
        metrics.add(Word.MESSAGES_TOTAL)
        metrics.add(Word.BYTES_TOTAL, size)
        _position(metrics, run, sequence)
        metrics.set(Word.LAST_MESSAGE_NS, time.time_ns())
        metrics.set(Word.LATENCY_NS, latency_ns)
        _connection(metrics, self.state)

    def acknowledged(self, run: Run, sequence: int) -> None:
        """Where the stream says the journal is (at a start or a resync)."""
        metrics = self._file()
        if metrics is not None:
            _position(metrics, run, sequence)

    def retried(self) -> None:
        if (metrics := self._file()) is not None:
            metrics.add(Word.RETRIES_TOTAL)
            _connection(metrics, self.state)

    def resynced(self) -> None:
        if (metrics := self._file()) is not None:
            metrics.add(Word.RESYNCS_TOTAL)

    def tick(self) -> None:
        """Now and then: the connection's state; a file gone with its journal (the
        journal was removed and is written again) is made again in the new one."""
        if self.metrics is not None and not self.metrics.path.exists():
            self.close()
        if (metrics := self._file()) is not None:
            _connection(metrics, self.state)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None


class MirrorStats:
    """A mirror's figures, one file per mirror journal (the Mirror calls it)."""

    def __init__(self, root: Path, stream: str = "") -> None:
        self.root = root
        self.stream = stream
        self.files: dict[str, ReplicationMetrics] = {}
        self._missing: set[str] = set()
        self._state: ConnectionState | None = None

    def _file(self, journal: str) -> ReplicationMetrics | None:
        metrics = self.files.get(journal)
        if metrics is None:
            metrics = _open(self.root / journal, Role.MIRROR, self.stream)
            if metrics is not None:
                self.files[journal] = metrics
                if self._state is not None:  # born connected, not at the next tick
                    _connection(metrics, self._state)
        return metrics

    def applied(self, run: Run, outcome: str, sequence: int) -> None:
        metrics = self._file(run.journal)
        if metrics is None:
            return
        if outcome == "appended":
            now = time.time_ns()
            metrics.add(Word.RECORDS_TOTAL, run.records)
            metrics.add(Word.MESSAGES_TOTAL)
            metrics.add(Word.BYTES_TOTAL, run.end - run.start)
            _position(metrics, run, sequence)
            metrics.set(Word.LAST_MESSAGE_NS, now)
            metrics.set(Word.LATENCY_NS, now - run.last_time_ns)
        elif outcome == "duplicate":
            metrics.add(Word.DUPLICATES_TOTAL)

    def replaced(self, journal: str) -> None:
        """The mirror journal was removed to start a new incarnation: so was its file."""
        metrics = self.files.pop(journal, None)
        if metrics is not None:
            metrics.close()

    def redelivered(self, run: Run) -> None:
        if (metrics := self._file(run.journal)) is not None:
            metrics.add(Word.REDELIVERIES_TOTAL)

    def skipped(self, journal: str, records: int) -> None:
        """Records a new copy could not start with, never copied (said once the copy
        exists, its file with it)."""
        if (metrics := self._file(journal)) is not None:
            metrics.add(Word.SKIPPED_RECORDS_TOTAL, records)

    def lag(self, journal: str, records: int, ns: int) -> None:
        """What the stream held of ``journal`` beyond the copy, read just now."""
        if (metrics := self._file(journal)) is not None:
            metrics.set(Word.LAG_RECORDS, records)
            metrics.set(Word.LAG_NS, ns)
            metrics.set(Word.LAG_CHECKED_NS, time.time_ns())

    def rewound(self) -> None:
        for metrics in self.files.values():
            metrics.add(Word.REWINDS_TOTAL)

    def gap(self, run: Run) -> None:
        if (metrics := self._file(run.journal)) is not None:
            metrics.add(Word.GAPS_TOTAL)

    def dropped(self, run: Run) -> None:
        self.gap(run)

    def connection(self, state: Any) -> None:
        self._state = state
        for metrics in self.files.values():
            _connection(metrics, state)

    def pending(self, messages: int, unacknowledged: int) -> None:
        for metrics in self.files.values():
            metrics.set(Word.PENDING_MESSAGES, messages)

    def close(self) -> None:
        for metrics in self.files.values():
            metrics.close()
        self.files.clear()
