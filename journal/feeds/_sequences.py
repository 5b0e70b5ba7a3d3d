"""What each venue's journaled ``sequence`` is, and so what a step between two books of
one stream means.

A gap can only be told where the venue makes consecutive books' sequences differ by
exactly 1. Most do not: a Binance diff carries the range ``U..u`` of the updates it
holds and the book stores ``u``, so consecutive books step by the number of updates;
Bybit's ``cross_seq`` is the matching engine's and skips numbers. Their builders
check contiguity on fields the journal does not keep (``U``, ``pu``, the levels' ids),
so in the journal their sequence can only be checked to increase. docs/FEEDS.md has
the rules; ``journal analyze`` reads this table.

Sequence 0 means "none sent" (the collector convention the demo feed follows for
Upbit and Bithumb) and is never checked.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from journal.feeds._binance import BinanceFuturesBook, BinanceSpotBook
from journal.feeds._bybit import BybitBook
from journal.feeds._upbit import UpbitBook


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
        BybitBook.EXCHANGE: VenueSequence(
            SequenceRule.INCREASING, "cross_seq, the matching engine's, which skips numbers"
        ),
        UpbitBook.EXCHANGE: VenueSequence(
            SequenceRule.CONTIGUOUS,
            "the count of the stream's order-book messages (Upbit sends no sequence)",
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
