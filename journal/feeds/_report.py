"""What an import did, per stream, as a table a person reads."""

from __future__ import annotations

from dataclasses import dataclass

from journal.feeds._book import StreamStats

# (heading, width, value of a stream); the column meanings are in docs/FEEDS.md.
_COLUMNS = (
    ("books", 6, lambda s: s.books),
    ("msgs", 6, lambda s: s.messages),
    ("applied", 7, lambda s: s.applied),
    ("stale", 5, lambda s: s.stale),
    ("unsynced", 8, lambda s: s.unsynced),
    ("snapshots", 9, lambda s: s.snapshots),
    ("gaps", 4, lambda s: s.gaps),
    ("crossed", 7, lambda s: s.crossed),
    ("resyncs", 7, lambda s: s.resyncs),
)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """Per stream what its builder did; per (exchange, type) the messages left aside."""

    journal: str
    streams: list[StreamStats]
    ignored: dict[tuple[str, str], int]

    @property
    def books(self) -> int:
        return sum(stream.books for stream in self.streams)

    def table(self) -> str:
        exchange_width = max([len("exchange"), *(len(s.exchange) for s in self.streams)])
        symbol_width = max([len("symbol"), *(len(s.symbol) for s in self.streams)])
        rows = [
            f"{'exchange':<{exchange_width}}  {'symbol':<{symbol_width}}  "
            + "  ".join(f"{heading:>{width}}" for heading, width, _ in _COLUMNS)
            + "  synced"
        ]
        for stream in self.streams:
            rows.append(
                f"{stream.exchange:<{exchange_width}}  {stream.symbol:<{symbol_width}}  "
                + "  ".join(f"{value(stream):>{width}}" for _, width, value in _COLUMNS)
                + ("  yes" if stream.synced else "  NO")
            )
        if self.ignored:
            rows.append("\nnot order-book data, counted by type and not used:")
        for exchange in sorted({exchange for exchange, _ in self.ignored}):
            kinds = sorted(
                (kind, n) for (venue, kind), n in self.ignored.items() if venue == exchange
            )
            rows.append(f"  {exchange}: " + ", ".join(f"{kind} {n}" for kind, n in kinds))
        unsynced = [f"{s.exchange} {s.symbol}" for s in self.streams if not s.synced]
        if unsynced:
            rows.append(
                "ended unsynced (no snapshot after their last gap or crossing, or none at "
                "all): " + ", ".join(unsynced)
            )
        rows.append(f"{self.books} books of {len(self.streams)} streams written to {self.journal}")
        return "\n".join(rows)
