"""The exchange's own book of one market, and the flows of changes that move it.

A fake exchange is a small live market: it holds the whole book (every level, prices
and quantities kept as the venue's own text so that what it sends is what a venue
would send), applies each update to it as it publishes the update, and answers a
snapshot request from it. ``SyntheticFlow`` continues a market once its recorded
capture runs out, with changes that can never cross the book: every price it sets
on a side is one that side held at the start, and the start was not crossed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

Side = Literal["bids", "asks"]
Change = tuple[Side, str, str]
"""One level set: side, price text, quantity text (quantity 0 removes the level)."""


def decimals_of(text: str) -> int:
    """Digits after the point in a decimal text ("0.35130000" -> 8, "12" -> 0)."""
    _, point, fraction = text.partition(".")
    return len(fraction) if point else 0


class LevelBook:
    """Every level of one market's book, keyed by exact decimal price."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    @classmethod
    def from_levels(
        cls, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]
    ) -> LevelBook:
        book = cls()
        for price, quantity in bids:
            book.set("bids", price, quantity)
        for price, quantity in asks:
            book.set("asks", price, quantity)
        return book

    def side(self, side: Side) -> dict[Decimal, tuple[str, str]]:
        return self.bids if side == "bids" else self.asks

    def set(self, side: Side, price: str, quantity: str) -> None:
        """The venue's rule for an absolute quantity: 0 removes the level."""
        levels = self.side(side)
        key = Decimal(price)
        if Decimal(quantity) == 0:
            levels.pop(key, None)
        else:
            levels[key] = (price, quantity)

    def apply(self, changes: Iterable[Change]) -> None:
        for side, price, quantity in changes:
            self.set(side, price, quantity)

    def top(self, side: Side, count: int | None = None) -> list[tuple[str, str]]:
        """Best first: bids descending, asks ascending; all levels when count is None."""
        levels = self.side(side)
        prices = sorted(levels, reverse=side == "bids")
        if count is not None:
            prices = prices[:count]
        return [levels[price] for price in prices]

    def copy(self) -> LevelBook:
        book = LevelBook()
        book.bids = dict(self.bids)
        book.asks = dict(self.asks)
        return book

    def crossed(self) -> bool:
        return bool(self.bids and self.asks and max(self.bids) >= min(self.asks))


def synthetic_book(
    mid: Decimal, tick: Decimal, levels: int, rng: random.Random, quantity_decimals: int = 4
) -> LevelBook:
    """A book around ``mid``: ``levels`` prices a tick apart on each side, spread 2 ticks."""
    places = max(0, -int(tick.as_tuple().exponent))
    book = LevelBook()
    for index in range(levels):
        for side, sign in (("bids", -1), ("asks", 1)):
            price = mid + sign * tick * (index + 1)
            quantity = Decimal(rng.randint(1, 5000)) / Decimal(10**quantity_decimals) + 1
            book.set(side, f"{price:.{places}f}", f"{quantity:.{quantity_decimals}f}")  # type: ignore[arg-type]
    return book


class SyntheticFlow:
    """Changes that keep a book moving near its top and never cross it.

    Each step sets 1 to 3 levels: mostly a new quantity for one of the best 12 levels
    of a side, sometimes removing one of the best 10 (while the side keeps more than
    ``min_levels``), sometimes restoring a price the side held at the start.
    """

    def __init__(self, book: LevelBook, rng: random.Random, min_levels: int = 12) -> None:
        self.book = book
        self.rng = rng
        self.min_levels = min_levels
        self.pool: dict[Side, dict[Decimal, str]] = {
            side: {key: text for key, (text, _) in book.side(side).items()}
            for side in ("bids", "asks")
        }
        sample = next(iter(book.bids.values()), ("0", "1.0000"))[1]
        self.quantity_decimals = decimals_of(sample)

    def quantity(self) -> str:
        scale = Decimal(10) ** self.quantity_decimals
        value = Decimal(self.rng.randint(1, 50_000 * 10**self.quantity_decimals)) / scale
        return f"{value:.{self.quantity_decimals}f}"

    def step(self) -> list[Change]:
        """The next update's changes (not applied: the caller applies and publishes)."""
        changes: list[Change] = []
        touched: set[tuple[Side, Decimal]] = set()
        for _ in range(self.rng.randint(1, 3)):
            side: Side = self.rng.choice(("bids", "asks"))
            levels = self.book.side(side)
            best = sorted(levels, reverse=side == "bids")
            roll = self.rng.random()
            absent = [key for key in self.pool[side] if key not in levels]
            if roll < 0.15 and len(levels) > self.min_levels:
                key = self.rng.choice(best[:10])
                change: Change = (side, levels[key][0], "0")
            elif roll < 0.30 and absent:
                key = self.rng.choice(absent)
                change = (side, self.pool[side][key], self.quantity())
            elif best:
                key = self.rng.choice(best[:12])
                change = (side, levels[key][0], self.quantity())
            else:
                continue
            if (side, key) not in touched:  # one change per level per update
                touched.add((side, key))
                changes.append(change)
        return changes
