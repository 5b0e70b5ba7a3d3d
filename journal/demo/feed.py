"""A synthetic multi-exchange feed for the demo: the books a kimchi-premium collector sees.

Binance and Bybit quote BTC, ETH, XRP and SOL in USDT; Upbit and Bithumb quote
them in KRW and also trade USDT-KRW, whose mid is the radar's KRW price of USDT.
Every venue follows one USD price per asset (a random walk), the KRW venues
through an FX rate and a kimchi premium: a slow mean-reverting walk around +2%
that jumps by about 1% every ~10 s on average (towards +2% three times out of
four). USDT-KRW trades at the FX rate, so the premium the radar computes is the
feed's premium, plus a few bps per venue.

Books are the collector's ``OrderBookV2.to_dict()``, each venue spelling its
markets its own way (``KRW-BTC``, ``BTC_KRW``, ``BTCUSDT``) so that the
publisher's normalisation is exercised. Ten levels a side, prices on the venue's
tick grid, quantities in its lot size, never crossed. Like a real book, an update
changes little: the touch follows the fair price (levels it passes are consumed
or added), then one or two quantities change; the rest stay, objects included.

Sequence numbers: Binance's ``lastUpdateId`` grows by a few per update, Bybit's
update id by one. Upbit and Bithumb send none, and the journal's convention for
that is 0: the radar and ``journal analyze`` skip sequence 0, where a made-up
counter would hide lost messages and the exchange timestamp (repeated within a
millisecond) would show as out of order. Exchange timestamps trail the feed
clock by each venue's few ms of latency and never go back per market.

Tick sizes (approximate; the venues change them): Upbit's KRW table as published
from 31 July 2025 (``>= 1,000,000``: 1000, ``500,000``: 500, ``100,000``: 100,
``50,000``: 50, ``10,000``: 10, ``5,000``: 5, ``100``: 1; below 100 the older
table's 0.01..0.0001), with USDT-KRW at 0.5 in ``1,000..10,000``; Bithumb
assumed to use the same table (USDT-KRW at 1). Binance spot: 0.01 for BTC, ETH
and SOL, 0.0001 for XRP; Bybit spot the same; lot sizes as those venues list
them, 1e-8 on Upbit, 1e-4 on Bithumb.

``DemoFeed(seed).books(rate, start_ns)`` is deterministic for tests;
``run_feed`` publishes through journal.collector at a paced rate until a duration
passes or SIGINT/SIGTERM; ``python -m journal.demo.feed --journal DIR --rate R
--duration S`` runs it. With one journal per venue (``--per-venue``, as ``journal
collect`` writes them) each journal also gets the collector's feed metrics
(``collector.metrics``, journal._feed_metrics): every symbol LIVE while the feed
runs, its messages, books and refusals counted, the time of its last message and
the synthetic exchange-to-local delay, STOPPED at the end; so ``journal top`` and
``journal metrics`` show the demo as they show a live collector.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from operator import gt, lt
from typing import Any, Final

from journal._feed_metrics import FeedCounter, FeedMetricsWriter, FeedState, StreamMetrics
from journal._names import stream_path
from journal._writer import DEFAULT_SEGMENT_SIZE
from journal.collector import BookPublisher, Refusal
from journal.symbols import normalize

DEPTH: Final = 10
"""Levels a side, as the collector sends them."""
LEVEL_SPACING_BPS: Final = 0.2
"""Mean distance between levels where the tick allows it: ~2 bps for ten levels."""
QUANTITY_SPREAD: Final = 0.8
"""Sigma of the lognormal notional of one level around its asset's median."""
_NOTIONAL_FACTORS: Final = 4096
"""Lognormal factors drawn once per feed and picked at random: a draw costs ~2 µs."""
WALK_STEP_S: Final = 0.001
"""Prices move at most once per ms of feed time: books between share them."""


# -- prices on a venue's grid ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickTable:
    """A venue's price grid: ``bands`` of ``(lowest price, tick)``, ascending.

    A price is valid when it is a multiple of the tick of its own band. Every band
    boundary is a multiple of the tick below it, so stepping up by the tick of a
    price's band lands in that band or on the next boundary, never off the grid.
    """

    bands: tuple[tuple[float, float], ...]
    _lows: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _decimals: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lows = tuple(low for low, _ in self.bands)
        if not lows or lows[0] != 0 or list(lows) != sorted(set(lows)):
            raise ValueError(f"bands={self.bands}: lowest prices must start at 0 and ascend")
        object.__setattr__(self, "_lows", lows)
        object.__setattr__(self, "_decimals", tuple(_decimals(tick) for _, tick in self.bands))

    @classmethod
    def constant(cls, tick: float) -> TickTable:
        return cls(((0.0, tick),))

    def tick_at(self, price: float) -> float:
        """The tick of the band ``price`` lies in."""
        return self.bands[bisect.bisect_right(self._lows, price) - 1][1]

    def floor(self, price: float) -> float:
        """The highest valid price at or below ``price``."""
        band = bisect.bisect_right(self._lows, price) - 1
        tick = self.bands[band][1]
        steps = round(price / tick)
        if steps * tick > price + tick * 1e-6:
            steps -= 1
        return round(steps * tick, self._decimals[band])

    def ceil(self, price: float) -> float:
        """The lowest valid price at or above ``price``."""
        band = bisect.bisect_right(self._lows, price) - 1
        tick = self.bands[band][1]
        steps = round(price / tick)
        if steps * tick < price - tick * 1e-6:
            steps += 1
        return round(steps * tick, self._decimals[band])  # at most the next band's lowest

    def up(self, price: float, ticks: int) -> float:
        """``ticks`` ticks above the valid ``price`` (snapped up where a band changes)."""
        return self.ceil(price + ticks * self.tick_at(price))

    def down(self, price: float, ticks: int) -> float:
        """``ticks`` ticks below the valid ``price``, in the band just under it."""
        below = self.bands[bisect.bisect_left(self._lows, price) - 1][1]
        return self.floor(price - ticks * below)


def _decimals(tick: float) -> int:
    """Decimal places of ``tick``, to round multiples of it to their shortest repr."""
    exponent = Decimal(repr(tick)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


UPBIT_KRW_TICKS: Final = TickTable(
    (
        (0.0, 0.0001),
        (1.0, 0.001),
        (10.0, 0.01),
        (100.0, 1.0),
        (5_000.0, 5.0),
        (10_000.0, 10.0),
        (50_000.0, 50.0),
        (100_000.0, 100.0),
        (500_000.0, 500.0),
        (1_000_000.0, 1000.0),
    )
)
UPBIT_USDT_KRW_TICKS: Final = TickTable(
    (
        (0.0, 0.0001),
        (1.0, 0.001),
        (10.0, 0.01),
        (100.0, 1.0),
        (1_000.0, 0.5),
        (10_000.0, 10.0),
    )
)
"""Upbit's exception for USDT-KRW and USDC-KRW (since 21 March 2025)."""


# -- what is traded, where -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asset:
    """A base asset: where its USD price starts, how fast it moves, how deep a level is."""

    usd_price: float
    volatility_per_sqrt_s: float
    level_usd: float
    """Median notional of one book level, in USD."""
    weight: float
    """Share of the updates of its markets (BTC books update most)."""


ASSETS: Final = {
    "BTC": Asset(96_500.0, 1.0e-4, 30_000.0, 3.0),
    "ETH": Asset(3_500.0, 1.3e-4, 20_000.0, 2.0),
    "XRP": Asset(2.30, 2.0e-4, 10_000.0, 1.0),
    "SOL": Asset(190.0, 2.0e-4, 10_000.0, 1.0),
    "USDT": Asset(1.0, 0.0, 20_000.0, 1.5),  # only against KRW: the FX books
}


@dataclass(frozen=True, slots=True)
class Venue:
    """An exchange as the feed plays it."""

    name: str
    quote: str
    spelling: str
    """``str.format`` pattern of a market's native name, from ``base`` and ``quote``."""
    latency_ms: float
    """Typical exchange-to-collector delay; each book adds an exponential jitter of 1 ms."""
    sequence_step: int
    """Largest increment of the sequence per update; 0: the venue sends none."""


VENUES: Final = (
    Venue("binance", "USDT", "{base}{quote}", 4.0, 12),
    Venue("bybit", "USDT", "{base}{quote}", 6.0, 1),
    Venue("upbit", "KRW", "{quote}-{base}", 3.0, 0),
    Venue("bithumb", "KRW", "{base}_{quote}", 5.0, 0),
)

# USDT venue, base -> (tick, lot size).
_USDT_GRIDS: Final = {
    ("binance", "BTC"): (0.01, 0.00001),
    ("binance", "ETH"): (0.01, 0.0001),
    ("binance", "XRP"): (0.0001, 0.1),
    ("binance", "SOL"): (0.01, 0.001),
    ("bybit", "BTC"): (0.01, 0.000001),
    ("bybit", "ETH"): (0.01, 0.00001),
    ("bybit", "XRP"): (0.0001, 0.01),
    ("bybit", "SOL"): (0.01, 0.001),
}
# KRW venue -> (ticks of its coins, ticks of USDT-KRW, lot size).
_KRW_GRIDS: Final = {
    "upbit": (UPBIT_KRW_TICKS, UPBIT_USDT_KRW_TICKS, 1e-8),
    "bithumb": (UPBIT_KRW_TICKS, TickTable.constant(1.0), 1e-4),
}


@dataclass(frozen=True, slots=True)
class Market:
    """One book of the feed."""

    venue: Venue
    base: str
    symbol: str
    """The venue's own spelling: ``KRW-BTC`` (upbit), ``BTC_KRW`` (bithumb), ``BTCUSDT``."""
    ticks: TickTable
    lot: float

    @property
    def exchange(self) -> str:
        return self.venue.name

    @property
    def quote(self) -> str:
        return self.venue.quote


def _markets() -> tuple[Market, ...]:
    markets = []
    for venue in VENUES:
        bases = [base for base in ASSETS if base != "USDT"]
        if venue.quote == "KRW":
            bases.append("USDT")
        for base in bases:
            if venue.quote == "USDT":
                tick, lot = _USDT_GRIDS[venue.name, base]
                ticks = TickTable.constant(tick)
            else:
                coin_ticks, usdt_ticks, lot = _KRW_GRIDS[venue.name]
                ticks = usdt_ticks if base == "USDT" else coin_ticks
            symbol = venue.spelling.format(base=base, quote=venue.quote)
            markets.append(Market(venue, base, symbol, ticks, lot))
    return tuple(markets)


MARKETS: Final = _markets()

FX_KRW_PER_USD: Final = 1_390.0
PREMIUM_MEAN: Final = 0.02
PREMIUM_JUMP: Final = 0.01
PREMIUM_JUMPS_PER_S: Final = 0.1
PREMIUM_LIMITS: Final = (-0.01, 0.05)
"""Hard bounds on the premium: a demo must not wander off to implausible values."""


# -- the prices behind the books -------------------------------------------------------


class _Walk:
    """A mean-reverting random walk (Ornstein-Uhlenbeck; ``reversion`` 0: a plain
    random walk), with optional jumps, advanced lazily to the time it is read.

    Each step draws from the exact transition (not an Euler step), so the path's
    statistics do not depend on how often books sample it.
    """

    __slots__ = (
        "jump_rate",
        "jump_size",
        "limits",
        "mean",
        "noise",
        "reversion",
        "rng",
        "t",
        "value",
    )

    def __init__(
        self,
        rng: random.Random,
        value: float,
        *,
        noise: float,
        mean: float | None = None,
        reversion: float = 0.0,
        jump_rate: float = 0.0,
        jump_size: float = 0.0,
        limits: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        self.rng = rng
        self.value = value
        self.mean = value if mean is None else mean
        self.noise = noise
        self.reversion = reversion
        self.jump_rate = jump_rate
        self.jump_size = jump_size
        self.limits = limits
        self.t: float | None = None

    def at(self, t: float) -> float:
        """The value at time ``t`` (seconds), moved in steps of at least WALK_STEP_S."""
        if self.t is None:
            self.t = t
        if t - self.t < WALK_STEP_S:
            return self.value
        dt = t - self.t
        self.t = t
        rng = self.rng
        if self.reversion:
            decay = math.exp(-self.reversion * dt)
            spread = self.noise * math.sqrt((1 - decay * decay) / (2 * self.reversion))
            value = self.mean + (self.value - self.mean) * decay + spread * rng.gauss(0.0, 1.0)
        else:
            value = self.value + self.noise * math.sqrt(dt) * rng.gauss(0.0, 1.0)
        if self.jump_rate and rng.random() < -math.expm1(-self.jump_rate * dt):
            toward_mean = 1.0 if value < self.mean else -1.0
            value += self.jump_size * (toward_mean if rng.random() < 0.75 else -toward_mean)
        low, high = self.limits
        self.value = min(max(value, low), high)
        return self.value


class _Book:
    """A market's live book: its levels, sequence and last exchange timestamp."""

    __slots__ = ("asks", "bids", "last_ms", "market", "max_gap", "notional", "sequence")

    def __init__(self, market: Market, rng: random.Random) -> None:
        self.market = market
        self.bids: list[list[float]] = []
        self.asks: list[list[float]] = []
        self.last_ms = 0
        # Venues with sequence numbers start from a live-looking id.
        self.sequence = rng.randrange(10**9, 10**11) if market.venue.sequence_step else 0
        asset = ASSETS[market.base]
        krw = FX_KRW_PER_USD if market.quote == "KRW" else 1.0
        price = asset.usd_price * krw
        tick = market.ticks.tick_at(price)
        self.max_gap = max(1, round(2 * LEVEL_SPACING_BPS * 1e-4 * price / tick))
        self.notional = asset.level_usd * krw


class DemoFeed:
    """Order-book updates of every market in MARKETS, deterministic given ``seed``.

    ``next_book(now_ns)`` moves the prices to feed time ``now_ns`` (ns since the
    epoch, never going back) and returns one market's updated book, chosen at
    random by ASSETS weight; ``books`` yields them at a steady rate of feed time.
    """

    def __init__(self, seed: int = 7, markets: Sequence[Market] = MARKETS) -> None:
        self.markets = tuple(markets)
        self._rng = rng = random.Random(seed)
        self._start_ns: int | None = None
        self._usd = {
            base: _Walk(rng, math.log(asset.usd_price), noise=asset.volatility_per_sqrt_s)
            for base, asset in ASSETS.items()
        }
        self._fx = _Walk(rng, math.log(FX_KRW_PER_USD), noise=2e-5, reversion=1 / 600)
        self._premium = _Walk(
            rng,
            PREMIUM_MEAN,
            noise=5e-4,
            reversion=1 / 20,
            jump_rate=PREMIUM_JUMPS_PER_S,
            jump_size=PREMIUM_JUMP,
            limits=PREMIUM_LIMITS,
        )
        # A venue's own few bps off the common price (its flow, its fees).
        self._offsets = {
            venue.name: _Walk(rng, 0.0, noise=5e-5, reversion=1 / 20) for venue in VENUES
        }
        self._books = [_Book(market, rng) for market in self.markets]
        self._notional_factors = [
            rng.lognormvariate(0.0, QUANTITY_SPREAD) for _ in range(_NOTIONAL_FACTORS)
        ]
        cumulative = 0.0
        self._cumulative: list[float] = []
        for market in self.markets:
            cumulative += ASSETS[market.base].weight
            self._cumulative.append(cumulative)

    def books(
        self, rate: float, start_ns: int, count: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """``count`` books (None: endless), one every ``1/rate`` s of feed time from
        ``start_ns``: the same books for the same seed, rate and start."""
        if not rate > 0:
            raise ValueError(f"rate={rate}: books per second of feed time must be > 0")
        period = 1e9 / rate
        index = 0
        while count is None or index < count:
            yield self.next_book(start_ns + round(index * period))
            index += 1

    def next_book(self, now_ns: int) -> dict[str, Any]:
        """One market's book updated to feed time ``now_ns``, as ``OrderBookV2.to_dict()``."""
        if self._start_ns is None:
            self._start_ns = now_ns
        t = (now_ns - self._start_ns) / 1e9
        rng = self._rng
        book = self._books[
            bisect.bisect_right(self._cumulative, rng.random() * self._cumulative[-1])
        ]
        market = book.market
        venue = market.venue
        self._move_touch(book, self._fair(market, t))
        self._change_quantities(book)
        delay_ms = venue.latency_ms + rng.expovariate(1.0)
        book.last_ms = max(book.last_ms, (now_ns // 1000 - round(delay_ms * 1000)) // 1000)
        if venue.sequence_step:
            book.sequence += 1 + int(rng.random() * venue.sequence_step)
        return {
            "exchangename": venue.name,
            "symbol": market.symbol,
            "bids": list(book.bids),  # levels are replaced, never changed in place
            "asks": list(book.asks),
            "timestamp": book.last_ms,
            "sequence": book.sequence,
        }

    def _fair(self, market: Market, t: float) -> float:
        """The market's fair mid at ``t``: the asset's USD price through FX and the
        premium for a KRW market, each venue a few bps off."""
        offset = self._offsets[market.venue.name].at(t)
        if market.quote == "USDT":
            return math.exp(self._usd[market.base].at(t)) * (1.0 + offset)
        fx = math.exp(self._fx.at(t))
        if market.base == "USDT":
            return fx * (1.0 + offset)
        premium = self._premium.at(t)
        return math.exp(self._usd[market.base].at(t)) * fx * (1.0 + premium + offset)

    def _move_touch(self, book: _Book, fair: float) -> None:
        """Once ``fair`` leaves the spread, put the best bid and ask on either side of
        it (one tick apart when the grid allows), consuming the levels the price went
        through and adding new ones, then fill each side back to DEPTH levels."""
        if book.bids and book.asks and book.bids[0][0] <= fair <= book.asks[0][0]:
            return  # inside the spread: the touch stays, as in ~90% of real updates
        ticks = book.market.ticks
        best_bid = ticks.floor(fair)
        best_ask = ticks.ceil(fair)
        if best_ask <= best_bid:
            best_ask = ticks.up(best_bid, 1)
        self._reprice(book, book.bids, best_bid, ticks.down, gt)
        self._reprice(book, book.asks, best_ask, ticks.up, lt)

    def _reprice(
        self,
        book: _Book,
        levels: list[list[float]],
        best: float,
        away: Callable[[float, int], float],
        better: Callable[[float, float], bool],
    ) -> None:
        """One side: ``best`` its new top, ``away`` steps deeper, ``better`` orders it."""
        if len(levels) == DEPTH and levels[0][0] == best:
            return  # the touch stays: most updates
        rng = self._rng
        consumed = 0
        while consumed < len(levels) and better(levels[consumed][0], best):
            consumed += 1
        del levels[:consumed]
        top = levels[0][0] if levels else None
        added = []
        price = best
        while (top is None or better(price, top)) and len(added) < DEPTH and price > 0:
            added.append([price, self._quantity(book, price)])
            price = away(price, 1 + int(rng.random() * book.max_gap))
        levels[:0] = added
        while len(levels) < DEPTH:
            price = away(levels[-1][0], 1 + int(rng.random() * book.max_gap))
            if price <= 0:
                break
            levels.append([price, self._quantity(book, price)])
        del levels[DEPTH:]

    def _change_quantities(self, book: _Book) -> None:
        """One or two levels get a new quantity, as orders come and go."""
        rng = self._rng
        for _ in range(1 + (rng.random() < 0.5)):
            levels = book.bids if rng.random() < 0.5 else book.asks
            index = int(rng.random() * len(levels))
            price = levels[index][0]
            levels[index] = [price, self._quantity(book, price)]

    def _quantity(self, book: _Book, price: float) -> float:
        """A lognormal notional around the asset's median, in whole lots (at least one)."""
        lot = book.market.lot
        factors = self._notional_factors
        notional = book.notional * factors[int(self._rng.random() * len(factors))]
        return round(max(1, int(notional / price / lot)) * lot, 10)


# -- publishing it ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedReport:
    """What ``run_feed`` published: books per venue, refusals, time taken."""

    books: Mapping[str, int]
    refused: Mapping[Refusal, int]
    elapsed_s: float
    journals: tuple[str, ...]

    @property
    def published(self) -> int:
        return sum(self.books.values())

    @property
    def rate(self) -> float:
        return self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        venues = ", ".join(f"{venue} {n:,}" for venue, n in sorted(self.books.items()))
        refused = sum(self.refused.values())
        reasons = ", ".join(f"{reason}={n}" for reason, n in self.refused.items() if n)
        return (
            f"published {self.published:,} books in {self.elapsed_s:.1f} s "
            f"({self.rate:,.0f} books/s): {venues or 'none'}; refused {refused}"
            + (f" ({reasons})" if reasons else "")
            + f"; journal{'s' if len(self.journals) > 1 else ''}: {', '.join(self.journals)}"
        )


_CHECK_EVERY: Final = 256
"""Books published between looks at the clock, the deadline and the stop flag."""


def run_feed(
    journal_dir: str | os.PathLike[str],
    rate: float = 2_000.0,
    duration_s: float | None = None,
    seed: int = 7,
    *,
    per_venue: bool = False,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    seal: bool = False,
    stop: threading.Event | None = None,
) -> FeedReport:
    """Publish DemoFeed books to ``journal_dir`` at ``rate`` books/s (0: as fast as
    possible) for ``duration_s`` seconds (None: until stopped).

    Paced against the monotonic clock on an absolute schedule (book i is due at
    start + i/rate), so sleeping late never makes the feed drift: a late book goes
    at once. Feed time (hence exchange timestamps) is the schedule on the wall
    clock, so the same seed and rate give the same books. ``per_venue``: one
    journal per exchange, ``journal_dir/<exchange>``, as one collector per exchange
    would write; otherwise all books go to ``journal_dir``.

    Stops at the end of ``duration_s``, when ``stop`` is set, or, when called on
    the main thread, at SIGINT or SIGTERM (the previous handlers are restored);
    the writers are closed (``seal`` passed on) before it returns the counts.
    """
    if rate < 0 or (duration_s is not None and duration_s < 0):
        raise ValueError(f"rate={rate}, duration_s={duration_s}: neither may be negative")
    stop = stop or threading.Event()
    feed = DemoFeed(seed)
    books: Counter[str] = Counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_stopping_on_signals(stop))
        publishers = _open_publishers(stack, journal_dir, per_venue, segment_size)
        unique = list({id(publisher): publisher for publisher in publishers.values()}.values())
        streams = _open_feed_metrics(stack, publishers) if per_venue else {}

        def publish(now_ns: int) -> None:
            book = feed.next_book(now_ns)
            exchange = book["exchangename"]
            published = publishers[exchange].publish(book) is not None
            if published:
                books[exchange] += 1
            stream = streams.get((exchange, book["symbol"]))
            if stream is not None:  # the collector's counters, as journal collect keeps them
                stream.message(now_ns, book["timestamp"])
                stream.add(_BOOKS if published else _REFUSED)

        started = time.monotonic_ns()
        wall_start = time.time_ns()
        limit = math.inf if duration_s is None else duration_s * 1e9
        last_book = math.inf if duration_s is None or not rate else math.ceil(duration_s * rate)
        index = 0
        while not stop.is_set():
            elapsed = time.monotonic_ns() - started
            if elapsed >= limit or index >= last_book:
                break
            if not rate:
                for _ in range(_CHECK_EVERY):
                    publish(time.time_ns())
                continue
            due = min(int(elapsed * rate / 1e9) + 1, index + _CHECK_EVERY, last_book)
            if index >= due:
                stop.wait((index * 1e9 / rate - elapsed) / 1e9)  # until book ``index`` is due
                continue
            for i in range(index, due):
                publish(wall_start + round(i * 1e9 / rate))
            index = due
        elapsed_s = (time.monotonic_ns() - started) / 1e9
        for publisher in unique:
            publisher.close(seal=seal)
    refused: Counter[Refusal] = Counter()
    for publisher in unique:
        refused.update(publisher.stats.refused)
    return FeedReport(
        dict(books),
        {reason: refused[reason] for reason in Refusal},
        elapsed_s,
        tuple(str(publisher.path) for publisher in unique),
    )


def _open_publishers(
    stack: contextlib.ExitStack,
    journal_dir: str | os.PathLike[str],
    per_venue: bool,
    segment_size: int,
) -> dict[str, BookPublisher]:
    """The publisher of each venue: its own journal, or one shared by all."""
    if per_venue:
        return {
            venue.name: stack.enter_context(
                BookPublisher(stream_path(journal_dir, venue.name), segment_size=segment_size)
            )
            for venue in VENUES
        }
    shared = stack.enter_context(BookPublisher(journal_dir, segment_size=segment_size))
    return {venue.name: shared for venue in VENUES}


_BOOKS: Final = FeedCounter.BOOKS
_REFUSED: Final = FeedCounter.REFUSED


def _open_feed_metrics(
    stack: contextlib.ExitStack, publishers: Mapping[str, BookPublisher]
) -> dict[tuple[str, str], StreamMetrics]:
    """A ``collector.metrics`` in each venue's journal, every symbol LIVE (closed, so
    STOPPED, when the feed ends); the slot of each (venue, market as the venue spells
    it)."""
    streams: dict[tuple[str, str], StreamMetrics] = {}
    for venue in VENUES:
        markets = {
            m.symbol: normalize(venue.name, m.symbol)[1] for m in MARKETS if m.venue is venue
        }
        metrics = stack.enter_context(
            FeedMetricsWriter(publishers[venue.name].path, venue.name, list(markets.values()))
        )
        for native, symbol in markets.items():
            stream = metrics.stream(symbol)
            stream.set_state(FeedState.LIVE)
            streams[venue.name, native] = stream
    return streams


@contextlib.contextmanager
def _stopping_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` while inside; only the main thread may do this."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        handlers[number] = signal.signal(number, lambda *_: stop.set())
    try:
        yield
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m journal.demo.feed",
        description="Publish synthetic Binance, Bybit, Upbit and Bithumb books to a journal.",
    )
    parser.add_argument("--journal", required=True, help="journal directory (created)")
    parser.add_argument(
        "--rate", type=float, default=2_000.0, help="books/s, 0: as fast as possible"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds (default: until SIGINT/SIGTERM)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--per-venue", action="store_true", help="one journal per exchange: JOURNAL/<exchange>"
    )
    parser.add_argument(
        "--segment-size", type=int, default=DEFAULT_SEGMENT_SIZE, help="bytes per segment"
    )
    parser.add_argument(
        "--seal", action="store_true", help="seal the last segment for the compactor at exit"
    )
    args = parser.parse_args(argv)
    if args.rate < 0 or (args.duration is not None and args.duration < 0):
        parser.error("--rate and --duration must not be negative")
    pace = f"at {args.rate:,.0f} books/s" if args.rate else "as fast as possible"
    until = f"for {args.duration:g} s" if args.duration is not None else "until SIGINT/SIGTERM"
    print(f"demo feed: publishing to {args.journal} {pace} {until}", flush=True)
    report = run_feed(
        args.journal,
        args.rate,
        args.duration,
        args.seed,
        per_venue=args.per_venue,
        segment_size=args.segment_size,
        seal=args.seal,
    )
    print(f"demo feed: {report.summary()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
