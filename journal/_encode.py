"""Validate an order book and lay it out as a size-prefixed FlatBuffer: bytes in, bytes out.

Per record, the interpreter's work is what costs, so the hot path is one function
per book shape (depth of bids, depth of asks), generated once like ``dataclasses``
generates ``__init__``: it unpacks the levels into locals in one statement, checks
them with chained comparisons (NaN and inf fail them), and writes the whole record
with one ``struct.pack_into``. The bytes that depend only on names and depths
(vtable, offsets, the two strings) are packed once per shape and cached.

The fast check takes Python floats only (one ``type(...) is`` chain over every
value): any other number (an int, a numpy scalar, a Decimal) goes to
``validate_slowly``, which converts each value to float64 first and checks what
will be stored: a bool is refused by type, an int that no double holds exactly, or
a value that overflows to inf, is refused, and order and crossing are checked on
the converted values (two ints 1 apart above 2**53 would be one price). Then the
converted book is written by the fast path. When a check fails, it names the
first bad field and value. Nothing is written before every check has passed.
"""

from __future__ import annotations

import decimal
import linecache
import math
import numbers
import struct
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import gt, lt
from typing import Any, Final

import numpy as np

from journal import _orderbook_layout as L
from journal._errors import InvalidRecordError
from journal._layout import RECORD_ALIGNMENT, SIZE_PREFIX_SIZE

DEFAULT_MAX_LEVELS: Final = 10
MAX_LEVELS: Final = 10_000
"""The most ``max_levels`` may be: the deepest side a writer accepts."""
DEFAULT_MAX_NAME_BYTES: Final = 64
_SHAPE_CACHE_LIMIT: Final = 4096
_GENERATED_MAX_LEVELS: Final = 64
"""Deeper books get a loop instead of generated code (see _loop_write)."""
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

Levels = Sequence[Sequence[float]] | np.ndarray
WriteFunction = Callable[[Any, int, int, int, int, Any, Any], None]
_FLOAT64_INTEGERS: Final = 1 << 53
"""Every int of at most this magnitude is exactly a double."""
_LEVEL_DOUBLES: Final = L.LEVEL_SIZE // struct.calcsize("d")
"""A level's price and quantity."""


@dataclass(frozen=True, slots=True)
class EncoderLimits:
    """What the encoder accepts; a journal's writer enforces the same for every record."""

    max_levels: int = DEFAULT_MAX_LEVELS
    max_name_bytes: int = DEFAULT_MAX_NAME_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.max_levels <= MAX_LEVELS:
            raise ValueError(f"max_levels={self.max_levels} must be in 1..{MAX_LEVELS}")
        if not 1 <= self.max_name_bytes <= 4096:
            raise ValueError(f"max_name_bytes={self.max_name_bytes} must be in 1..4096")


@dataclass(frozen=True, slots=True)
class BookShape:
    """One (exchange_name, symbol, depth of bids, depth of asks): its size and writer.

    ``write(buffer, offset, timestamp, sequence, local_timestamp_ns, bids, asks)``
    validates the levels and values, then writes ``size`` bytes at ``offset``.
    """

    size: int
    write: WriteFunction


def _pad(n: int, alignment: int) -> int:
    return -n % alignment


_WRITE_TEMPLATE = """
def write(buffer, offset, timestamp, sequence, local_timestamp_ns, bids, asks):
    try:
        {unpack_levels}
        {unpack_pairs}
        valid = (
            {same_pair_type}
            and {all_floats}
            and {bids_descending}
            and {asks_ascending}
            and {not_crossed}
            and {quantities_signed}
            and {quantities_finite}
            and type(timestamp) is int and type(sequence) is int
            and type(local_timestamp_ns) is int
        )
    except (TypeError, ValueError, ArithmeticError):  # Decimal NaN: InvalidOperation
        valid = False
    if not valid:
        # Raises for a bad book; a good one comes back as the floats and ints to store.
        timestamp, sequence, local_timestamp_ns, bids, asks = validate_slowly(
            bids, asks, timestamp, sequence, local_timestamp_ns)
        {unpack_levels}
        {unpack_pairs}
    try:
        pack_into(buffer, offset, head, timestamp, sequence, local_timestamp_ns, middle,
                  {bid_values}asks_count, {ask_values}tail)
    except (struct_error, OverflowError):
        # A value beyond its field (an int64 out of range, an int no double holds):
        # leave no partial record behind, and name the value.
        buffer[offset:offset + size] = zeros
        validate_slowly(bids, asks, timestamp, sequence, local_timestamp_ns)
        raise
"""


def writer_source(n_bids: int, n_asks: int) -> str:
    """The Python source of the write function generated for books of ``n_bids`` x
    ``n_asks`` levels, for reading and debugging: ``python -c "from journal._encode
    import writer_source; print(writer_source(10, 10))"``. Tracebacks through a
    generated writer show its lines: the source is registered with linecache under
    the function's file name, as dataclasses and attrs register theirs."""
    bid_levels = [f"b{i}" for i in range(n_bids)]
    ask_levels = [f"a{i}" for i in range(n_asks)]
    levels = bid_levels + ask_levels
    quantities = [f"{level}q" for level in levels]
    bid_prices = [f"{level}p" for level in bid_levels]
    ask_prices = [f"{level}p" for level in ask_levels]

    def unpack(names: list[str], side: str) -> str:
        return ", ".join(names) + f", = {side}" if names else f"if {side}: raise ValueError"

    source = _WRITE_TEMPLATE.format(
        unpack_levels=unpack(bid_levels, "bids") + "\n        " + unpack(ask_levels, "asks"),
        unpack_pairs="\n        ".join(f"{n}p, {n}q = {n}" for n in levels) or "pass",
        # Every level a list, or every level a tuple (mixed ones take the slow path).
        same_pair_type=(
            f"(type({levels[0]}) is list or type({levels[0]}) is tuple)"
            + (" and " + " is ".join(f"type({n})" for n in levels) if len(levels) > 1 else "")
            if levels
            else "True"
        ),
        # Python floats only: any other number is converted and checked slowly.
        all_floats=" is ".join([*(f"type({n}p) is type({n}q)" for n in levels), "float"])
        if levels
        else "True",
        bids_descending=" > ".join(["INF", *bid_prices, "0.0"]) if bid_prices else "True",
        asks_ascending=" < ".join(["0.0", *ask_prices, "INF"]) if ask_prices else "True",
        not_crossed="b0p < a0p" if bid_prices and ask_prices else "True",
        # min() can step over a NaN, but then the sum is NaN: together they check
        # every quantity in two calls. A sum that overflows takes the slow path.
        quantities_signed=(
            f"min({', '.join(quantities)}) >= 0.0"
            if len(quantities) > 1
            else f"{quantities[0]} >= 0.0"
            if quantities
            else "True"
        ),
        quantities_finite=f"{' + '.join(quantities)} < INF" if quantities else "True",
        bid_values="".join(f"{n}p, {n}q, " for n in bid_levels),
        ask_values="".join(f"{n}p, {n}q, " for n in ask_levels),
    )
    return source


def _generate_write(
    n_bids: int,
    n_asks: int,
    size: int,
    pack_into: Callable[..., None],
    constants: dict[str, bytes],
) -> WriteFunction:
    """One shape's write function, compiled from ``writer_source``; see the module
    docstring for why."""
    source = writer_source(n_bids, n_asks)
    filename = f"<order book writer {n_bids}x{n_asks}>"
    # One entry per shape (the same source for every book of it), mtime None: never
    # checked against a file, never dropped by linecache.checkcache.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {
        "pack_into": pack_into,
        "validate_slowly": validate_slowly,
        "struct_error": struct.error,
        "INF": math.inf,
        "size": size,
        "zeros": bytes(size),
        **constants,
    }
    exec(compile(source, filename, "exec"), namespace)
    write: WriteFunction = namespace["write"]
    return write


def build_shape(exchange: bytes, symbol: bytes, n_bids: int, n_asks: int) -> BookShape:
    """Lay out a record of this shape and generate its write function."""
    asks_len_pos = L.asks_vector_pos(n_bids)
    exchange_pos = asks_len_pos + L.UOFFSET_SIZE + L.LEVEL_SIZE * n_asks
    exchange_block = struct.pack("<I", len(exchange)) + exchange + b"\0"
    exchange_block += b"\0" * _pad(len(exchange_block), L.UOFFSET_SIZE)
    symbol_pos = exchange_pos + len(exchange_block)
    symbol_block = struct.pack("<I", len(symbol)) + symbol + b"\0"
    size = symbol_pos + len(symbol_block)
    symbol_block += b"\0" * _pad(size, RECORD_ALIGNMENT)
    size += _pad(size, RECORD_ALIGNMENT)

    head = (
        struct.pack("<I", size - SIZE_PREFIX_SIZE)
        + L.FIXED_HEAD
        + struct.pack("<I", exchange_pos - L.EXCHANGE_NAME_POS)
    )
    middle = struct.pack(
        "<IIII",
        symbol_pos - L.SYMBOL_POS,
        L.BIDS_VECTOR_POS - L.BIDS_POS,
        asks_len_pos - L.ASKS_POS,
        n_bids,
    )
    # head, the three values, middle: the record up to its first bid level.
    assert len(head) == L.VALUES_POS and L.VALUES_END + len(middle) == L.BIDS_LEVELS_POS
    asks_count = struct.pack(f"<{L.ASKS_PADDING}xI", n_asks)
    tail = exchange_block + symbol_block
    packer = struct.Struct(
        f"@{len(head)}sqqq{len(middle)}s{_LEVEL_DOUBLES * n_bids}d{len(asks_count)}s"
        f"{_LEVEL_DOUBLES * n_asks}d{len(tail)}s"
    )
    assert packer.size == size, (packer.size, size)
    constants = {
        "head": head,
        "middle": middle,
        "asks_count": asks_count,
        "tail": tail,
    }
    if max(n_bids, n_asks) > _GENERATED_MAX_LEVELS:
        return BookShape(size, _loop_write(size, packer.pack_into, constants))
    return BookShape(size, _generate_write(n_bids, n_asks, size, packer.pack_into, constants))


def _loop_write(
    size: int, pack_into: Callable[..., None], constants: dict[str, bytes]
) -> WriteFunction:
    """The write function for deep books: the same checks, one value at a time.

    Generated code for thousands of levels would be too deep for the compiler, and
    such books are not the hot path.
    """
    head, middle, asks_count, tail = (
        constants[name] for name in ("head", "middle", "asks_count", "tail")
    )

    def write(
        buffer: Any, offset: int, timestamp: int, sequence: int, local_ns: int, bids: Any, asks: Any
    ) -> None:
        timestamp, sequence, local_ns, bids, asks = validate_slowly(
            bids, asks, timestamp, sequence, local_ns
        )
        values = [head, timestamp, sequence, local_ns, middle]
        for price, quantity in bids:
            values += (price, quantity)
        values.append(asks_count)
        for price, quantity in asks:
            values += (price, quantity)
        values.append(tail)
        try:
            pack_into(buffer, offset, *values)
        except (struct.error, OverflowError) as error:
            buffer[offset : offset + size] = bytes(size)  # no partial record left behind
            raise InvalidRecordError(f"a value does not fit its field: {error}") from None

    return write


class OrderBookEncoder:
    """Validates order books and lays them out; one per writer, since it caches shapes.

    ``shape(...)`` is the writer's hot path (it needs the size before it writes);
    ``encode(...)`` returns the record as bytes, for tests, tools and batching.
    """

    __slots__ = ("_limits", "_shapes")

    def __init__(self, limits: EncoderLimits | None = None) -> None:
        self._limits = limits or EncoderLimits()
        self._shapes: dict[tuple[Any, Any, int, int], BookShape] = {}

    @property
    def limits(self) -> EncoderLimits:
        return self._limits

    @property
    def known_shapes(self) -> dict[tuple[Any, Any, int, int], BookShape]:
        """The cache behind ``shape``, keyed ``(exchange_name, symbol, n_bids, n_asks)``:
        a hot path may look a shape up here first. Read it, never write it."""
        return self._shapes

    def shape(self, exchange_name: str, symbol: str, n_bids: int, n_asks: int) -> BookShape:
        """The cached shape for these names and depths, validating them on first use."""
        key = (exchange_name, symbol, n_bids, n_asks)
        try:
            shape = self._shapes.get(key)
        except TypeError:  # an unhashable name: _new_shape says what is wrong with it
            shape = None
        if shape is None:
            shape = self._new_shape(exchange_name, symbol, n_bids, n_asks)
            if len(self._shapes) >= _SHAPE_CACHE_LIMIT:
                self._shapes.clear()
            self._shapes[key] = shape
        return shape

    def encode(
        self,
        exchange_name: str,
        symbol: str,
        timestamp: int,
        sequence: int,
        bids: Levels,
        asks: Levels,
        local_timestamp_ns: int | None = None,
    ) -> bytes:
        """Validate one book and return its size-prefixed record.

        For many books, ``Writer.append_orderbook`` writes straight into the mapped
        segment instead, without this copy.
        """
        bids = as_levels("bids", bids)
        asks = as_levels("asks", asks)
        shape = self.shape(exchange_name, symbol, len(bids), len(asks))
        if local_timestamp_ns is None:
            local_timestamp_ns = time.time_ns()
        record = bytearray(shape.size)
        shape.write(record, 0, timestamp, sequence, local_timestamp_ns, bids, asks)
        return bytes(record)

    def _new_shape(self, exchange_name: Any, symbol: Any, n_bids: int, n_asks: int) -> BookShape:
        limits = self._limits
        exchange = _encode_name("exchange_name", exchange_name, limits.max_name_bytes)
        symbol_bytes = _encode_name("symbol", symbol, limits.max_name_bytes)
        for side, n in (("bids", n_bids), ("asks", n_asks)):
            if n > limits.max_levels:
                raise InvalidRecordError(
                    f"{side}: {n} levels, more than max_levels={limits.max_levels}; "
                    "send the top levels only or raise the writer's max_levels"
                )
        return build_shape(exchange, symbol_bytes, n_bids, n_asks)


def as_levels(side: str, levels: Any) -> Any:
    """Levels as a sequence of pairs: lists and tuples pass as they are, arrays are
    checked for shape (n, 2) and converted; anything else is refused."""
    kind = type(levels)
    if kind is list or kind is tuple:
        return levels
    if isinstance(levels, np.ndarray):
        if levels.ndim != 2 or levels.shape[1] != 2:
            raise InvalidRecordError(
                f"{side}: numpy array of shape {levels.shape}, expected (n, 2) of price, quantity"
            )
        if levels.dtype.kind not in "fiu":
            raise InvalidRecordError(f"{side}: numpy dtype {levels.dtype} is not numeric")
        return levels.tolist()
    if isinstance(levels, str | bytes) or not isinstance(levels, Sequence):
        raise InvalidRecordError(
            f"{side}: expected a list of (price, quantity) pairs or an (n, 2) array, "
            f"got {kind.__name__}"
        )
    return levels


def _encode_name(field: str, value: Any, max_bytes: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidRecordError(f"{field}={value!r}: expected str, got {type(value).__name__}")
    if not value:
        raise InvalidRecordError(f"{field} is empty")
    if "\0" in value:
        raise InvalidRecordError(f"{field}={value!r}: contains a NUL character")
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:  # ESC, BEL, newline: a name reaches terminals and logs
        raise InvalidRecordError(
            f"{field}={value!r}: contains the control character {control!r} (U+{ord(control):04X})"
        )
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRecordError(
            f"{field}={value[:80]!r}: not encodable as UTF-8 ({error.reason} at "
            f"character {error.start})"
        ) from None
    if len(encoded) > max_bytes:
        raise InvalidRecordError(
            f"{field}={value[:80]!r}: {len(encoded)} UTF-8 bytes, more than "
            f"max_name_bytes={max_bytes}"
        )
    return encoded


def validate_slowly(
    bids: Any, asks: Any, timestamp: Any, sequence: Any, local_timestamp_ns: Any
) -> tuple[int, int, int, list[list[float]], list[list[float]]]:
    """Check a book one value at a time, on the values that will be stored: raise
    InvalidRecordError for the first bad field, or return the book as it will be
    written (``timestamp, sequence, local_timestamp_ns, bids, asks``: ints, and levels
    as float64 pairs) if it is valid after all (an int, Decimal or numpy number the
    fast check does not take)."""
    integers = []
    for field, value in (
        ("timestamp", timestamp),
        ("sequence", sequence),
        ("local_timestamp_ns", local_timestamp_ns),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InvalidRecordError(f"{field}={value!r}: expected int, got {type(value).__name__}")
        if not INT64_MIN <= int(value) <= INT64_MAX:
            raise InvalidRecordError(f"{field}={value}: outside the int64 range")
        integers.append(int(value))
    sides = []
    for side, levels, better in (("bids", bids, gt), ("asks", asks, lt)):
        previous = None
        converted = []
        for index, level in enumerate(levels):
            price, quantity = _pair(side, index, level)
            if price <= 0:
                raise InvalidRecordError(f"{side}[{index}].price={level[0]!r}: must be > 0")
            if quantity < 0:
                raise InvalidRecordError(f"{side}[{index}].quantity={level[1]!r}: must be >= 0")
            if previous is not None and not better(previous, price):
                order = (
                    "descending, best bid first" if side == "bids" else "ascending, best ask first"
                )
                raise InvalidRecordError(
                    f"{side}[{index}].price={_shown(level[0], price)} after {previous!r}: "
                    f"prices must be strictly {order}, without duplicates"
                )
            previous = price
            converted.append([price, quantity])
        sides.append(converted)
    bids_f, asks_f = sides
    if bids_f and asks_f and bids_f[0][0] >= asks_f[0][0]:
        raise InvalidRecordError(
            f"crossed book: best bid {_shown(bids[0][0], bids_f[0][0])} >= best ask "
            f"{_shown(asks[0][0], asks_f[0][0])}"
        )
    timestamp, sequence, local_timestamp_ns = integers
    return timestamp, sequence, local_timestamp_ns, bids_f, asks_f


def _shown(value: Any, double: float) -> str:
    """``value`` for a message, with the double it is stored as where that differs."""
    if type(value) is float or (type(value) is int and float(value) == value):
        return repr(value)
    return f"{value!r} (as a double {double!r})"


def _pair(side: str, index: int, level: Any) -> tuple[float, float]:
    """A level's price and quantity as the float64 values that will be stored."""
    if not isinstance(level, list | tuple | np.ndarray):
        raise InvalidRecordError(
            f"{side}[{index}]={level!r}: expected a (price, quantity) pair as a list, "
            f"tuple or array, got {type(level).__name__}"
        )
    if len(level) != 2:
        raise InvalidRecordError(
            f"{side}[{index}]={level!r}: expected a (price, quantity) pair, got {len(level)} items"
        )
    price, quantity = (
        _as_double(side, index, name, value)
        for name, value in zip(("price", "quantity"), level, strict=True)
    )
    return price, quantity


def _as_double(side: str, index: int, name: str, value: Any) -> float:
    """``value`` converted to the double that will be stored, refused if that double
    is not the value: a bool (by type), an int no double holds exactly, a number that
    overflows to inf or is NaN."""
    field = f"{side}[{index}].{name}={value!r}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real | decimal.Decimal):
        raise InvalidRecordError(f"{field}: expected a number, got {type(value).__name__}")
    try:
        double = float(value)
    except (OverflowError, ValueError, ArithmeticError) as error:  # Decimal('sNaN') too
        raise InvalidRecordError(f"{field}: not a double ({error})") from None
    if not math.isfinite(double):
        stored = "" if isinstance(value, float) else f" as a double ({double!r})"
        raise InvalidRecordError(f"{field}: not finite{stored}")
    if double == 0.0 and value != 0:
        raise InvalidRecordError(f"{field}: too small for a double (it would be stored as 0.0)")
    # An int, or a Decimal, Fraction or long double holding one: from 2**53 on no
    # double holds every such value, and two of them 1 apart would be one price.
    if (
        abs(double) >= _FLOAT64_INTEGERS
        and not isinstance(value, float)
        and _integral(value)
        and int(double) != int(value)  # type: ignore[arg-type]  # Decimal: int() takes it
    ):
        raise InvalidRecordError(
            f"{field}: no double holds this integer exactly (it would be stored as "
            f"{double!r}); send it as a float"
        )
    return double


def _integral(value: Any) -> bool:
    """Whether a finite number other than a float has an integer value."""
    try:
        return bool(int(value) == value)
    except (ValueError, OverflowError, ArithmeticError):
        return False
