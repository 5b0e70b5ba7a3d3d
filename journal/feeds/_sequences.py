"""What each venue's journaled ``sequence`` is, and so what a step between two books of
one stream means.

A gap can only be told where the venue makes consecutive books' sequences differ by
exactly 1. Most do not: a Binance diff carries the range ``U..u`` of the updates it
holds and the book stores ``u``, so consecutive books step by the number of updates;
the legacy Bybit v2 ``cross_seq`` is the matching engine's and skips numbers. Their
builders check contiguity on fields the journal does not keep (``U``, ``pu``, the
levels' ids), so in the journal their sequence can only be checked to increase.

Bybit v5 (``bybit`` spot, ``bybit-futures`` linear) journals ``u``, the topic's update
id, which its builder checks to be contiguous; in the journal it is still only
checked to increase: it restarts at 1 when Bybit's service restarts, the journal
name ``bybit`` also holds legacy v2 imports (``cross_seq``), and the user's own
collector publishes these names with sequences of its own. ``seq`` (the cross
sequence, "internal" in Bybit's words, shared by all depths of a symbol) is not
journaled. docs/FEEDS.md has the rules; ``journal analyze`` reads this table.

Sequence 0 means "none sent" and is never checked: the collector convention the demo
feed follows for Upbit and Bithumb, and what ``journal.collector.BookPublisher``
journals for a book whose ``sequence`` is None (a venue's first update id not
arrived yet).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from journal.feeds._binance import BinanceFuturesBook, BinanceSpotBook
from journal.feeds._bithumb import BithumbBook
from journal.feeds._bybit import BybitLinearBook, BybitSpotBook
from journal.feeds._upbit import UpbitBook

NONE_SENT: Final = 0
"""The journaled sequence of a book that came with none (``sequence: None``)."""


class SequenceRule(enum.Enum):
    CONTIGUOUS = "contiguous"
    """Consecutive books of a stream differ by 1: a larger step is a gap."""
    INCREASING = "increasing"
    """Only increases, by any step: a step of 0 repeats a book's sequence, a negative
    one is out of order; a larger step says nothing."""


@dataclass(frozen=True, slots=True)
class VenueSequence:
    rule: SequenceRule
    stored: str
    """What the journaled ``sequence`` holds for this venue, for people reading a report."""


VENUE_SEQUENCES: Final[Mapping[str, VenueSequence]] = MappingProxyType(
    {
        BinanceSpotBook.EXCHANGE: VenueSequence(
            SequenceRule.INCREASING, "the diff's last update id u (a diff spans U..u)"
        ),
        BinanceFuturesBook.EXCHANGE: VenueSequence(
            SequenceRule.INCREASING, "the diff's last update id u (a diff spans U..u)"
        ),
        BybitSpotBook.EXCHANGE: VenueSequence(
            SequenceRule.INCREASING,
            "v5: the topic's update id u (1 again after a service restart); legacy v2 "
            "imports: cross_seq, which skips numbers",
        ),
        BybitLinearBook.EXCHANGE: VenueSequence(
            SequenceRule.INCREASING,
            "the topic's update id u (1 again after a service restart)",
        ),
        UpbitBook.EXCHANGE: VenueSequence(
            SequenceRule.CONTIGUOUS,
            "the count of the stream's order-book messages (Upbit sends no sequence)",
        ),
        BithumbBook.EXCHANGE: VenueSequence(
            SequenceRule.CONTIGUOUS,
            "the count of the stream's order-book messages (Bithumb sends no sequence)",
        ),
    }
)
"""By exchange name as journaled: each builder's ``EXCHANGE``, what it stores as the
sequence (the journal's collector may store the same, or 0 for none)."""

UNKNOWN_VENUE: Final = VenueSequence(
    SequenceRule.INCREASING, "not known to journal.feeds: only checked to increase"
)


def venue_sequence(exchange: str) -> VenueSequence:
    """The venue's sequence semantics; a venue not in VENUE_SEQUENCES is not assumed
    contiguous (a gap claimed on a sequence that skips by design is a false alarm)."""
    return VENUE_SEQUENCES.get(exchange, UNKNOWN_VENUE)
