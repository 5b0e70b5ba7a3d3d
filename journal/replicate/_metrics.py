"""The counters of journal replicate and journal mirror (placeholder, in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from journal.replicate._scheme import Run


class ReplicatorStats:
    def __init__(self, path: Path, state: Any) -> None:
        self.path = path
        self.state = state
        self.records = 0
        self.messages = 0

    @classmethod
    def create(cls, path: Path, state: Any) -> ReplicatorStats:
        return cls(path, state)

    def published(self, run: Run, size: int, sequence: int, latency_ns: int) -> None:
        self.records += run.records
        self.messages += 1

    def acknowledged(self, run: Run, sequence: int) -> None:
        pass

    def retried(self) -> None:
        pass

    def resynced(self) -> None:
        pass

    def close(self) -> None:
        pass


class MirrorStats:
    def __init__(self, root: Path) -> None:
        self.root = root

    def applied(self, run: Run, outcome: str, sequence: int) -> None:
        pass

    def redelivered(self) -> None:
        pass

    def rewound(self) -> None:
        pass

    def gap(self, run: Run) -> None:
        pass

    def dropped(self, run: Run) -> None:
        pass

    def connection(self, state: Any) -> None:
        pass

    def pending(self, messages: int, unacknowledged: int) -> None:
        pass

    def close(self) -> None:
        pass
