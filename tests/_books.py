"""Valid order books for the encoder and verifier tests: strategies, builders, readers.

``books()`` draws books the encoder must accept; ``official_values``,
``journal_values`` and ``flatc_values`` turn a record, read three independent ways,
into the same comparable form (floats as their IEEE-754 bit patterns, so equality
is bit-exact and -0.0 differs from 0.0).
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
from hypothesis import strategies as st
from OrderBookData import OrderBook as OrderBookModule
from OrderBookData import PriceLevel as PriceLevelModule
from OrderBookData.OrderBook import OrderBook

import journal
from journal import _decode
from tests.conftest import REPO

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MAX_NAME_BYTES = 64
MAX_LEVELS = 10
FLATC = REPO / ".venv" / "bin" / "flatc"
SCHEMA = REPO / "schema" / "orderbook.fbs"
IDENTIFIER = b"OBK1"

Pairs = list[tuple[float, float]]


def bits(value: float) -> int:
    """The IEEE-754 bit pattern of a double: equal bits, equal doubles (and -0.0 != 0.0)."""
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def level_bits(levels: Any) -> list[tuple[int, int]]:
    return [(bits(float(price)), bits(float(quantity))) for price, quantity in levels]


@dataclass(frozen=True)
class Book:
    """One valid book, and how its levels are handed to the encoder."""

    exchange_name: str
    symbol: str
    timestamp: int
    sequence: int
    bids: Pairs
    asks: Pairs
    local_timestamp_ns: int
    forms: tuple[str, str] = ("list", "list")
    extra: dict[str, Any] = field(default_factory=dict)

    def side(self, name: str) -> Any:
        """The levels of side ``name`` in this book's input form."""
        levels = self.bids if name == "bids" else self.asks
        form = self.forms[0 if name == "bids" else 1]
        if form == "list":
            return [[price, quantity] for price, quantity in levels]
        if form == "tuple":
            return tuple((price, quantity) for price, quantity in levels)
        assert form == "numpy"
        return np.array(levels, dtype=np.float64).reshape(len(levels), 2)

    def args(self) -> tuple[Any, ...]:
        """``append_orderbook``/``encode`` positional arguments."""
        return (
            self.exchange_name,
            self.symbol,
            self.timestamp,
            self.sequence,
            self.side("bids"),
            self.side("asks"),
            self.local_timestamp_ns,
        )

    def encode(self, encoder: journal.OrderBookEncoder | None = None) -> bytes:
        return (encoder or journal.OrderBookEncoder()).encode(*self.args())

    def expected(self) -> dict[str, Any]:
        return {
            "exchange_name": self.exchange_name,
            "symbol": self.symbol,
            "timestamp": self.timestamp,
            "sequence": self.sequence,
            "local_timestamp_ns": self.local_timestamp_ns,
            "bids": level_bits(self.bids),
            "asks": level_bits(self.asks),
        }


def _fit(text: str, max_bytes: int = MAX_NAME_BYTES) -> str:
    """Drop characters from the end until the UTF-8 form fits (never empties it)."""
    while len(text.encode("utf-8")) > max_bytes:
        text = text[:-1]
    return text


NAME_CHARACTERS = st.characters(exclude_categories=("Cs", "Cc"))  # control characters refused
names = st.text(NAME_CHARACTERS, min_size=1, max_size=MAX_NAME_BYTES).map(_fit)
int64s = st.integers(INT64_MIN, INT64_MAX)
prices = st.floats(min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False)
# Finite and >= 0 (with -0.0, which compares equal to 0.0), up to the largest double.
quantities = st.one_of(
    st.just(-0.0),
    st.floats(min_value=0.0, allow_nan=False, allow_infinity=False),
)
forms = st.sampled_from(["list", "tuple", "numpy"])


@st.composite
def books(draw: st.DrawFn, max_levels: int = MAX_LEVELS) -> Book:
    """A book the encoder must accept: bids strictly descending below strictly
    ascending asks, all prices positive and finite, quantities finite and >= 0."""
    n_bids = draw(st.integers(0, max_levels))
    n_asks = draw(st.integers(0, max_levels))
    ladder = sorted(
        draw(st.lists(prices, min_size=n_bids + n_asks, max_size=n_bids + n_asks, unique=True))
    )
    bid_prices = ladder[:n_bids][::-1]
    ask_prices = ladder[n_bids:]
    bid_quantities = draw(st.lists(quantities, min_size=n_bids, max_size=n_bids))
    ask_quantities = draw(st.lists(quantities, min_size=n_asks, max_size=n_asks))
    return Book(
        exchange_name=draw(names),
        symbol=draw(names),
        timestamp=draw(int64s),
        sequence=draw(int64s),
        bids=list(zip(bid_prices, bid_quantities, strict=True)),
        asks=list(zip(ask_prices, ask_quantities, strict=True)),
        local_timestamp_ns=draw(int64s),
        forms=(draw(forms), draw(forms)),
    )


EDGE_BOOKS = [
    Book("u", "s", 0, 0, [], [], 0),
    Book(
        "x" * 64,
        "\u00e9" * 32,
        INT64_MAX,
        INT64_MIN,
        [(0.30000000000000004, -0.0), (5e-324, 1e-20)],
        [(1e300, 1.7976931348623157e308), (1.7976931348623157e308, 2.2250738585072014e-308)],
        INT64_MIN,
    ),
    Book(
        '\U0001f600\u4e2d"\\\u00e9\u200b',  # quote, backslash, accent, zero-width space
        "BTC-KRW",
        -1,
        1,
        [(2.0**-13, 0.1), (2.0**-1074, 0.0)],
        [(2.0**53 + 2, 1 / 3)],
        INT64_MAX,
        forms=("numpy", "tuple"),
    ),
]


# -- three independent ways to read a record back -------------------------------------


def official_values(buf: bytes, *, exact_prefix: bool = True) -> dict[str, Any]:
    """Read a size-prefixed record with the generated code of the official runtime."""
    if exact_prefix:
        assert flatbuffers.util.GetSizePrefix(buf, 0) == len(buf) - 4
    assert flatbuffers.util.GetBufferIdentifier(buf, 0, size_prefixed=True) == IDENTIFIER
    assert OrderBook.OrderBookBufferHasIdentifier(buf, 0, size_prefixed=True)
    book = OrderBook.GetRootAs(buf, 4)

    def text(value: bytes | None) -> str:
        return "" if value is None else value.decode("utf-8")

    def levels(length: int, get: Any) -> list[tuple[int, int]]:
        return [(bits(get(i).Price()), bits(get(i).Quantity())) for i in range(length)]

    return {
        "exchange_name": text(book.ExchangeName()),
        "symbol": text(book.Symbol()),
        "timestamp": book.Timestamp(),
        "sequence": book.Sequence(),
        "local_timestamp_ns": book.LocalTimestampNs(),
        "bids": levels(book.BidsLength(), book.Bids),
        "asks": levels(book.AsksLength(), book.Asks),
    }


def journal_values(record: journal.OrderBookRecord) -> dict[str, Any]:
    assert record.bids.shape == (len(record.bids), 2)
    assert record.asks.shape == (len(record.asks), 2)
    assert record.bids.dtype == np.float64 and record.asks.dtype == np.float64
    return {
        "exchange_name": record.exchange_name,
        "symbol": record.symbol,
        "timestamp": record.timestamp,
        "sequence": record.sequence,
        "local_timestamp_ns": record.local_timestamp_ns,
        "bids": level_bits(record.bids.tolist()),
        "asks": level_bits(record.asks.tolist()),
    }


def decoded_values(buf: bytes) -> list[dict[str, Any]]:
    """The record decoded by journal._decode: its public entry point (which takes the
    fast path for the encoder's layout) and the vtable-following decoder."""
    end = len(buf)
    fast = _decode.read_orderbook(buf, 0, end, (0, 0), True)
    assert fast.size == end
    assert fast.position == (0, 0)
    generic = _decode._decode_any_layout(buf, 0, None)
    assert generic.size == end
    return [journal_values(fast), journal_values(generic)]


def flatc_json(buffers: list[bytes], directory: Path) -> list[dict[str, Any]]:
    """Every buffer printed by one ``flatc --json`` run, doubles parsed as Decimal (the
    exact text flatc printed)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, buf in enumerate(buffers):
        path = directory / f"book{index:05d}.bin"
        path.write_bytes(buf)
        paths.append(path)
    out = directory / "json"
    command = [
        str(FLATC),
        "--json",
        "--strict-json",
        "--defaults-json",
        "--size-prefixed",
        "-o",
        str(out),
        str(SCHEMA),
        "--",
        *map(str, paths),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [
        json.loads((out / f"{path.stem}.json").read_text("utf-8"), parse_float=Decimal)
        for path in paths
    ]


def flatc_double_text(value: float) -> Decimal:
    """What flatc prints for a double: FloatToString(value, 12) in flatbuffers/util.h,
    i.e. std::fixed with 12 decimals, correctly rounded (as Python's ``.12f`` is)."""
    return Decimal(f"{value:.12f}")


def flatc_tolerance(value: float) -> float:
    """How far the double parsed from flatc's text may be from ``value``: half a unit of
    the 12th decimal from printing, plus at most one ulp from parsing it back."""
    return 5e-13 + math.ulp(value)


# -- records laid out by the official builder ---------------------------------------

FIELDS = (
    "exchange_name",
    "symbol",
    "timestamp",
    "sequence",
    "bids",
    "asks",
    "local_timestamp_ns",
)
_ADD = {
    "exchange_name": OrderBookModule.AddExchangeName,
    "symbol": OrderBookModule.AddSymbol,
    "timestamp": OrderBookModule.AddTimestamp,
    "sequence": OrderBookModule.AddSequence,
    "bids": OrderBookModule.AddBids,
    "asks": OrderBookModule.AddAsks,
    "local_timestamp_ns": OrderBookModule.AddLocalTimestampNs,
}
_START_VECTOR = {
    "bids": OrderBookModule.StartBidsVector,
    "asks": OrderBookModule.StartAsksVector,
}


def build_official(
    book: Book,
    present: frozenset[str] | set[str] = frozenset(FIELDS),
    order: tuple[str, ...] = FIELDS,
    *,
    force_defaults: bool = False,
    identifier: bytes = IDENTIFIER,
) -> bytes:
    """``book`` laid out by flatbuffers.Builder with the fields in ``present``, the
    strings and vectors created in ``order`` and the fields added in reverse ``order``."""
    builder = flatbuffers.Builder(256)
    builder.ForceDefaults(force_defaults)
    offsets: dict[str, int] = {}
    for name in order:
        if name not in present:
            continue
        if name in ("exchange_name", "symbol"):
            offsets[name] = builder.CreateString(getattr(book, name))
        elif name in ("bids", "asks"):
            levels = getattr(book, name)
            _START_VECTOR[name](builder, len(levels))
            for price, quantity in reversed(levels):
                PriceLevelModule.CreatePriceLevel(builder, price, quantity)
            offsets[name] = builder.EndVector()
    OrderBookModule.Start(builder)
    for name in reversed(order):
        if name in present:
            _ADD[name](builder, offsets.get(name, getattr(book, name, None)))
    root = OrderBookModule.End(builder)
    builder.FinishSizePrefixed(root, file_identifier=identifier)
    return bytes(builder.Output())


def expected_from_builder(book: Book, present: frozenset[str] | set[str]) -> dict[str, Any]:
    """What any reader must see in ``build_official(book, present, ...)``: absent
    strings read as empty, absent scalars as 0, absent vectors as no levels."""
    values = book.expected()
    defaults: dict[str, Any] = {
        "exchange_name": "",
        "symbol": "",
        "timestamp": 0,
        "sequence": 0,
        "local_timestamp_ns": 0,
        "bids": [],
        "asks": [],
    }
    return {name: values[name] if name in present else defaults[name] for name in FIELDS}
