"""The compiled writer (journal._cwriter) against the pure-Python one, its reference.

For every book hypothesis draws, valid or not (NaN, inf, zero or negative prices,
negative quantities, unsorted, duplicate or crossed levels, too many levels, names
empty, too long, with control characters or not encodable, ints, bools, Decimals,
numpy values, wrong shapes, integers out of range...), the compiled appends and the
Python ones (``_append_orderbook_python`` and the like, what ``JOURNAL_PURE_PYTHON=1``
runs) give the same outcome: the same record, byte for byte except the
local_timestamp_ns stamp, at the same position; or the same exception with the same
message. Likewise ``append_dict``, ``append_many`` and ``BookPublisher.publish`` (the
same position or refusal, counted the same way). And the compiled path really is
taken for the books it is meant for: a test counts its fallbacks.
"""

from __future__ import annotations

import contextlib
import decimal
import fractions
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import journal
from journal import _layout as F
from journal import _native
from journal import _orderbook_layout as OB
from journal._publish import require_supported_platform
from journal.collector import BookPublisher
from tests._books import Book, books
from tests.conftest import ASKS, BIDS, SHM

pytestmark = pytest.mark.skipif(not _native.NATIVE, reason="the compiled extension is not in use")

SEGMENT_SIZE = 64 * 1024
MAX_LEVELS = 10
HYPOTHESIS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextlib.contextmanager
def two_writers(**options: Any) -> Iterator[tuple[journal.Writer, journal.Writer]]:
    """Two fresh journals in /dev/shm: one written by the compiled appends, one by the
    Python ones; they start at the same position."""
    parent = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    parent.mkdir(mode=0o700)
    options = {"segment_size": SEGMENT_SIZE, "max_levels": MAX_LEVELS, **options}
    try:
        with (
            journal.Writer(parent / "compiled", **options) as compiled,
            journal.Writer(parent / "python", **options) as python,
        ):
            yield compiled, python
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def dirty(*writers: journal.Writer) -> None:
    """Fill the next few KiB after the commit with garbage, so a byte an append leaves
    unwritten (a padding byte, say) shows: records are compared whole. (A journal has
    zeros there, which would hide it.)"""
    for writer in writers:
        offset = writer.position[1]
        end = min(offset + 4096, writer.segment_size - F.END_MARKER_SIZE)
        writer._map[offset:end] = b"\xa5" * (end - offset)


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return ("ok", call(*args, **kwargs))
    except Exception as error:  # the comparison is the point: any exception, any type
        return (type(error).__name__, str(error))


def record_at(writer: journal.Writer, position: tuple[int, int], stamped: bool) -> bytes:
    """The record at ``position`` (in the writer's open segment), its stamp zeroed if
    the writer stamped it (after checking the stamp is the clock's)."""
    segment, offset = position
    assert segment == writer.position[0]
    size = int.from_bytes(writer._map[offset : offset + 4], "little") + F.SIZE_PREFIX_SIZE
    record = bytearray(writer._map[offset : offset + size])
    if stamped:
        at = OB.LOCAL_TIMESTAMP_NS_POS
        stamp = int.from_bytes(record[at : at + 8], "little", signed=True)
        assert abs(stamp - time.time_ns()) < 60e9, stamp
        record[at : at + 8] = bytes(8)
    return bytes(record)


def assert_same(
    compiled: journal.Writer,
    python: journal.Writer,
    got: tuple[str, Any],
    expected: tuple[str, Any],
    stamped: bool,
) -> None:
    assert got == expected if got[0] != "ok" or expected[0] != "ok" else got[1] == expected[1]
    if got[0] == "ok" and isinstance(got[1], tuple):
        assert record_at(compiled, got[1], stamped) == record_at(python, expected[1], stamped)
    assert compiled.position == python.position


# -- books, valid or not -------------------------------------------------------------------

NOT_NUMBERS = [None, "1.0", b"1", [1.0], {}, object()]
SPECIAL_FLOATS = [
    float("nan"),
    float("inf"),
    float("-inf"),
    0.0,
    -0.0,
    -1.0,
    -5e-324,
    5e-324,
    1.7976931348623157e308,
]
ODD_NUMBERS = [
    True,
    np.bool_(False),
    1,
    2**53 + 1,
    -(2**70),
    decimal.Decimal("1.5"),
    decimal.Decimal("NaN"),
    fractions.Fraction(1, 3),
    np.float64(1.25),
    np.float32(0.1),
    np.int64(7),
    np.longdouble("1e400"),
    float("nan"),
    float("inf"),
    float("-inf"),
    0.0,
    -0.0,
    -1.0,
    5e-324,
    1.7976931348623157e308,
]
BAD_NAMES = [
    "x" * 64,
    "x" * 65,
    "\u00e9" * 32 + "x",  # 65 UTF-8 bytes
    "\u4e2d" * 21 + "x",  # 64
    "\u4e2d" * 21 + "\u00e9",  # 65
    "",
    "\0",
    "up\x1bbit",
    "BTC\x85",  # C1 control
    "BTC\x9f",
    "BTC\xa0",  # no-break space: not a control character, taken
    "\x7f",
    "x" * 65,
    "\u00e9" * 33,  # 66 UTF-8 bytes
    "\u00e9" * 32,  # 64: taken
    "BTC-\ud800",  # lone surrogate
    "\U0001f600" * 16,
    b"upbit",
    7,
    None,
]
ODD_INTEGERS = [
    True,
    1.0,
    2**63,
    -(2**63) - 1,
    2**63 - 1,
    -(2**63),
    np.int64(5),
    decimal.Decimal(3),
    "1",
    None,
]


def as_levels(levels: list[Any], form: str) -> Any:
    """The levels (pairs, and maybe an odd level left as it is) in an input form."""

    def pair(level: Any, kind: type) -> Any:
        return kind(level) if type(level) is tuple and len(level) == 2 else level

    if form == "tuple":
        return tuple(pair(level, tuple) for level in levels)
    if form == "mixed":
        return [pair(level, list if i % 2 else tuple) for i, level in enumerate(levels)]
    if form == "numpy":
        with np.errstate(over="ignore"):  # a long double beyond a double: inf, refused
            return np.array(levels, dtype=np.float64).reshape(len(levels), 2)
    return [pair(level, list) for level in levels]


@st.composite
def maybe_bad_books(draw: st.DrawFn) -> dict[str, Any]:
    """A to_dict() book: valid, or spoiled in one or two ways."""
    book: Book = draw(books(max_levels=MAX_LEVELS + 1))
    bids: list[Any] = list(book.bids)
    asks: list[Any] = list(book.asks)
    data: dict[str, Any] = {
        "exchangename": book.exchange_name,
        "symbol": book.symbol,
        "timestamp": book.timestamp,
        "sequence": book.sequence,
    }
    local: Any = draw(st.sampled_from([None, book.local_timestamp_ns]))
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        kind = draw(
            st.sampled_from(
                [
                    *("value", "value", "special", "special", "special", "swap", "duplicate"),
                    *("cross", "level", "name", "name", "integer"),
                ]
            )
        )
        side_name = draw(st.sampled_from(["bids", "asks"]))
        side = bids if side_name == "bids" else asks
        if not all(type(level) is tuple and len(level) == 2 for level in bids + asks):
            kind = "name"  # a level was spoiled already: spoil something else
        if kind in ("value", "special") and side:
            i = draw(st.integers(0, len(side) - 1))
            j = draw(st.integers(0, 1))
            value = draw(
                st.sampled_from(SPECIAL_FLOATS if kind == "special" else ODD_NUMBERS + NOT_NUMBERS)
            )
            pair = list(side[i])
            pair[j] = value
            side[i] = tuple(pair)
        elif kind == "swap" and len(side) >= 2:
            i = draw(st.integers(0, len(side) - 2))
            side[i], side[i + 1] = side[i + 1], side[i]
        elif kind == "duplicate" and len(side) >= 2:
            i = draw(st.integers(1, len(side) - 1))
            side[i] = (side[i - 1][0], side[i][1])
        elif kind == "cross" and bids and asks and type(asks[0][0]) is float:
            bids[0] = (asks[0][0] * draw(st.sampled_from([1.0, 2.0])), bids[0][1])
        # A value spoiled into a non-number leaves the pair a 2-tuple: still a level.
        elif kind == "level" and side:
            i = draw(st.integers(0, len(side) - 1))
            side[i] = draw(
                st.sampled_from(
                    [(1.0,), (1.0, 2.0, 3.0), "12", None, {"p": 1.0}, np.array([1.0, 2.0])]
                )
            )
        elif kind == "name":
            key = draw(st.sampled_from(["exchangename", "symbol"]))
            data[key] = draw(st.sampled_from(BAD_NAMES))
        elif kind == "integer":
            key = draw(st.sampled_from(["timestamp", "sequence", "local_timestamp_ns"]))
            value = draw(st.sampled_from(ODD_INTEGERS))
            if key == "local_timestamp_ns":
                local = value
            else:
                data[key] = value
    forms = st.sampled_from(["list", "tuple", "mixed", "numpy", "list", "list", "list", "tuple"])
    for name, levels in (("bids", bids), ("asks", asks)):
        form = draw(forms)
        try:
            data[name] = as_levels(levels, form)
        except (TypeError, ValueError, OverflowError):  # not numbers, not pairs: as lists
            data[name] = as_levels(levels, "list")
    if draw(st.booleans()) or local is not None:
        data["local_timestamp_ns"] = local
    return data


def args_of(book: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("exchangename", "symbol", "timestamp", "sequence", "bids", "asks")
    return (*(book[key] for key in keys), book.get("local_timestamp_ns"))


# -- the comparisons ---------------------------------------------------------------------


@HYPOTHESIS
@given(st.lists(maybe_bad_books(), min_size=1, max_size=8))
def test_append_orderbook_compiled_and_python_agree(batch: list[dict[str, Any]]) -> None:
    with two_writers() as (compiled, python):
        for book in batch:
            args = args_of(book)
            dirty(compiled, python)
            got = outcome(compiled.append_orderbook, *args)
            expected = outcome(python._append_orderbook_python, *args)
            assert_same(compiled, python, got, expected, stamped=args[6] is None)


@HYPOTHESIS
@given(st.lists(maybe_bad_books(), min_size=1, max_size=8))
def test_append_dict_compiled_and_python_agree(batch: list[dict[str, Any]]) -> None:
    with two_writers() as (compiled, python):
        for book in batch:
            dirty(compiled, python)
            got = outcome(compiled.append_dict, book)
            expected = outcome(python._append_dict_python, book)
            stamped = book.get("local_timestamp_ns") is None
            assert_same(compiled, python, got, expected, stamped)


@HYPOTHESIS
@given(
    st.lists(
        st.lists(maybe_bad_books(), min_size=0, max_size=5).map(
            lambda books: [books[i] if i % 2 else args_of(books[i]) for i in range(len(books))]
        ),
        min_size=1,
        max_size=4,
    )
)
def test_append_many_compiled_and_python_agree(batches: list[list[Any]]) -> None:
    with two_writers() as (compiled, python):
        for batch in batches:
            dirty(compiled, python)
            got = outcome(compiled.append_many, batch)
            expected = outcome(python._append_many_python, batch)
            assert got == expected
            assert compiled.position == python.position
        # Every record alike, stamps zeroed (both journals hold the same records).
        for a, b in zip(records(compiled), records(python), strict=True):
            assert a == b


def records(writer: journal.Writer) -> list[bytes]:
    """The records of the writer's open segment, stamps zeroed."""
    out = []
    offset, end = F.HEADER_SIZE, writer.position[1]
    while offset < end:
        size = int.from_bytes(writer._map[offset : offset + 4], "little") + F.SIZE_PREFIX_SIZE
        record = bytearray(writer._map[offset : offset + size])
        record[OB.LOCAL_TIMESTAMP_NS_POS : OB.LOCAL_TIMESTAMP_NS_POS + 8] = bytes(8)
        out.append(bytes(record))
        offset += F.align_record(size)
    return out


@contextlib.contextmanager
def two_publishers() -> Iterator[tuple[BookPublisher, BookPublisher]]:
    parent = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    parent.mkdir(mode=0o700)
    try:
        with (
            BookPublisher(parent / "compiled", segment_size=SEGMENT_SIZE, log_first=0) as a,
            BookPublisher(parent / "python", segment_size=SEGMENT_SIZE, log_first=0) as b,
        ):
            yield a, b
    finally:
        shutil.rmtree(parent, ignore_errors=True)


COLLECTOR_NAMES = st.sampled_from(
    [("upbit", "KRW-BTC"), ("binance", "BTCUSDT"), ("bybit", "ETHUSDT"), ("nowhere", "BTC")]
)


@HYPOTHESIS
@given(st.lists(st.tuples(maybe_bad_books(), COLLECTOR_NAMES, st.booleans()), max_size=8))
def test_publish_compiled_and_python_agree(
    cases: list[tuple[dict[str, Any], tuple[str, str], bool]],
) -> None:
    with two_publishers() as (compiled, python):
        for book, (exchange, symbol), raw_names in cases:
            if raw_names:  # a collector's names, normalised (or refused) by the publisher
                book = {**book, "exchangename": exchange, "symbol": symbol}
            if book["sequence"] == 0:
                book["sequence"] = None  # journaled as 0, "none sent"
            dirty(compiled.writer, python.writer)
            got = compiled.publish(book)
            expected = python._publish_python(book)
            assert got == expected
            assert compiled.stats == python.stats
            if got is not None:
                stamped = book.get("local_timestamp_ns") is None
                assert record_at(compiled.writer, got, stamped) == record_at(
                    python.writer, expected, stamped
                )


# -- the compiled path is the one taken ------------------------------------------------


class CountingWriter(journal.Writer):
    """Counts the calls the compiled appends leave to the Python path: all of them
    (``fallbacks``), and those made while the writer's journal check was not due
    (``unexplained``): once JOURNAL_CHECK_INTERVAL_NS has passed the check is the
    Python path's by design, and a busy machine can stretch these loops past it."""

    __slots__ = ("fallbacks", "unexplained")

    def _count(self) -> None:
        self.fallbacks += 1
        if time.time_ns() < self._next_check_ns:
            self.unexplained += 1

    def _append_orderbook_python(self, *args: Any, **kwargs: Any) -> Any:
        self._count()
        return super()._append_orderbook_python(*args, **kwargs)

    def _append_many_python(self, books: Any) -> int:
        self._count()
        return super()._append_many_python(books)


@pytest.fixture
def counting(journal_dir: Path) -> Iterator[CountingWriter]:
    with CountingWriter(journal_dir, segment_size=16 * 1024 * 1024) as writer:
        writer.fallbacks = writer.unexplained = 0
        yield writer


def test_valid_float_books_never_leave_the_compiled_path(counting: CountingWriter) -> None:
    tuples = tuple(tuple(level) for level in BIDS), tuple(tuple(level) for level in ASKS)
    for i in range(10_000):
        counting.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS)
        counting.append_orderbook("upbit", "BTC-KRW", i, i, *tuples, i)
        counting.append_dict(
            {"exchangename": "upbit", "symbol": "BTC-KRW", "timestamp": i, "sequence": i}
            | {"bids": BIDS, "asks": ASKS}
        )
    counting.append_many([("upbit", "BTC-KRW", 1, 2, BIDS, ASKS)] * 100)
    assert counting.unexplained == 0


def test_what_the_compiled_path_leaves_to_python(counting: CountingWriter) -> None:
    counting.append_orderbook("upbit", "BTC-KRW", 1, 2, np.array(BIDS), ASKS)  # numpy
    counting.append_orderbook("upbit", "BTC-KRW", 1, 2, [[100, 1]], [[101, 1]])  # ints
    counting.append_orderbook("upbit", "BTC-KRW", 1, 2, BIDS, asks=ASKS)  # a keyword
    with pytest.raises(journal.InvalidRecordError):
        counting.append_orderbook("upbit", "BTC-KRW", 1, 2, ASKS, BIDS)  # crossed
    assert counting.fallbacks == 4


def read_all(path: Path) -> list[Any]:
    reader = journal.Reader(path, start="beginning", metrics=False)
    try:
        return list(iter(reader.try_next, None))
    finally:
        reader.close()


def test_keyword_arguments_reach_the_python_path(journal_dir: Path) -> None:
    with journal.Writer(journal_dir) as writer:
        position = writer.append_orderbook(
            exchange_name="upbit",
            symbol="BTC-KRW",
            timestamp=1,
            sequence=2,
            bids=BIDS,
            asks=ASKS,
            local_timestamp_ns=3,
        )
        with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
            writer.append_orderbook("upbit", "BTC-KRW", 1, 2, BIDS, ASKS, depth=3)
    [book] = read_all(journal_dir)
    assert book.position == position
    assert (book.timestamp, book.sequence, book.local_timestamp_ns) == (1, 2, 3)


def test_every_compiled_method_takes_keywords_as_the_python_one(journal_dir: Path) -> None:
    book = {"exchangename": "upbit", "symbol": "KRW-BTC", "timestamp": 1, "sequence": None}
    book |= {"bids": BIDS, "asks": ASKS}
    normalised = {**book, "symbol": "BTC-KRW", "sequence": 1}
    with BookPublisher(journal_dir) as publisher:
        writer = publisher.writer
        assert publisher.publish(book=book) == (0, F.HEADER_SIZE)
        assert writer.append_dict(book=normalised)[0] == 0
        assert writer.append_many(books=[normalised, normalised]) == 2
        for method, python in (
            (writer.append_dict, writer._append_dict_python),
            (writer.append_many, writer._append_many_python),
            (publisher.publish, publisher._publish_python),
        ):
            for args, kwargs in (((), {}), ((book, book), {}), ((), {"bad": book})):
                expected = outcome(python, *args, **kwargs)
                assert expected[0] == "TypeError"
                assert outcome(method, *args, **kwargs) == expected
    assert len(read_all(journal_dir)) == 4


def test_a_roll_goes_through_the_python_path_and_back(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=F.MIN_SEGMENT_SIZE) as writer:
        positions = [
            writer.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS, i) for i in range(400)
        ]
    assert len({segment for segment, _ in positions}) >= 2
    read = [(book.timestamp, book.local_timestamp_ns) for book in read_all(journal_dir)]
    assert read == [(i, i) for i in range(400)]


def test_metrics_count_compiled_appends(journal_dir: Path) -> None:
    from journal import _metrics

    with journal.Writer(journal_dir) as writer:
        for i in range(1000):
            writer.append_orderbook("upbit", "BTC-KRW", i, i, BIDS, ASKS)
        writer.append_many([("upbit", "BTC-KRW", 1, 2, BIDS, ASKS)] * 24)
        assert writer._counters is not None
        counters = writer._counters
        assert counters[_metrics.RECORDS_WORD] == 1024
        assert abs(counters[_metrics.LAST_PUBLISH_WORD] - time.time_ns()) < 10e9
        sampled = sum(counters[_metrics._LATENCY_COUNTS_WORD :])
        assert sampled == 1000 // 16 - 1 or sampled == 1000 // 16  # one append in 16
        assert counters[_metrics._LATENCY_SUM_WORD] > 0


def test_the_latency_buckets_are_python_s() -> None:
    from journal._metrics_layout import latency_bucket

    assert _native.cwriter is not None
    for value in [*range(0, 5000), 2**20 + 12345, 2**35, 2**36 - 1, 2**36, 2**40, 2**63]:
        assert _native.cwriter.latency_bucket(value) == latency_bucket(value), value


# -- platforms ---------------------------------------------------------------------------


def test_aarch64_is_allowed_with_the_compiled_path_only() -> None:
    require_supported_platform("x86_64", native=False)
    require_supported_platform("x86_64", native=True)
    require_supported_platform("aarch64", native=True)
    with pytest.raises(journal.UnsupportedPlatformError, match="build the compiled extension"):
        require_supported_platform("aarch64", native=False)
    for machine in ("riscv64", "ppc64le", "armv7l"):
        with pytest.raises(journal.UnsupportedPlatformError, match=machine):
            require_supported_platform(machine, native=True)
