"""The hand-laid encoder: what it writes every reader reads back bit for bit, and what
it refuses it refuses before writing a byte, naming the field and the value."""

from __future__ import annotations

import contextlib
import math
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import journal
from journal import _layout as F
from journal._segment import segment_indices, segment_path
from journal._verify import ORDERBOOK_SCHEMA, verify_size_prefixed
from tests._books import (
    EDGE_BOOKS,
    FIELDS,
    FLATC,
    INT64_MAX,
    INT64_MIN,
    Book,
    bits,
    books,
    build_official,
    decoded_values,
    expected_from_builder,
    flatc_double_text,
    flatc_json,
    flatc_tolerance,
    journal_values,
    official_values,
)
from tests.conftest import ASKS, BIDS, SHM, ten_levels

SEGMENT_SIZE = 64 * 1024
GOOD = ("upbit", "BTC-KRW", 1_700_000_000_000, 42, BIDS, ASKS, 1_700_000_000_000_000_123)


@contextlib.contextmanager
def scratch_journal() -> Iterator[Path]:
    """A journal directory in /dev/shm for tests run by hypothesis (no fixtures there)."""
    parent = SHM / f"journal-test-{uuid.uuid4().hex[:12]}"
    parent.mkdir(mode=0o700)
    try:
        yield parent / "books"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def assert_valid_record(buf: bytes, expected: dict[str, Any]) -> None:
    """``buf`` is a verified size-prefixed OBK1 record that every reader reads as ``expected``."""
    assert len(buf) % 8 == 0
    assert struct.unpack_from("<I", buf)[0] == len(buf) - 4
    verify_size_prefixed(buf, 0, len(buf), ORDERBOOK_SCHEMA)
    assert official_values(buf) == expected
    fast, generic = decoded_values(buf)
    assert fast == expected
    assert generic == expected


# -- valid books read back bit-exactly ---------------------------------------------------


@settings(max_examples=250, deadline=None)
@given(books())
def test_encoded_books_read_back_bit_exactly(book: Book) -> None:
    buf = book.encode()
    assert_valid_record(buf, book.expected())
    # A fresh encoder (no cached shape) lays out the same bytes.
    assert journal.OrderBookEncoder().encode(*book.args()) == buf


@pytest.mark.parametrize("book", EDGE_BOOKS, ids=["empty", "extremes", "unicode-numpy"])
def test_edge_books_read_back_bit_exactly(book: Book) -> None:
    assert_valid_record(book.encode(), book.expected())


def test_level_inputs_of_every_numeric_kind() -> None:
    """Arrays of any real dtype and layout, tuples, ints and numpy scalars: what is
    stored is the double each value converts to."""
    bids = np.array([[100, 3], [99, 2], [98, 1]])
    asks = np.array([[101.25, 0.5], [102.5, 1.5]])
    expected = {
        "bids": [(float(p), float(q)) for p, q in bids.tolist()],
        "asks": [(float(p), float(q)) for p, q in asks.tolist()],
    }
    variants = [
        (bids, asks),
        (bids.astype(np.int32), asks.astype(np.float32)),
        (bids.astype(np.uint64), asks.astype(np.float16)),
        (np.asfortranarray(bids.astype(np.float64)), asks),
        (_strided(bids), asks[::-1][::-1]),  # non-contiguous views
        (bids.tolist(), tuple(map(tuple, asks.tolist()))),
        ([(np.float64(p), np.int64(q)) for p, q in bids.tolist()], asks),
    ]
    encoder = journal.OrderBookEncoder()
    for variant_bids, variant_asks in variants:
        buf = encoder.encode("upbit", "BTC-KRW", 1, 2, variant_bids, variant_asks, 3)
        values = official_values(buf)
        assert values["bids"] == [tuple(map(_bits, level)) for level in expected["bids"]]
        assert values["asks"] == [tuple(map(_bits, level)) for level in expected["asks"]]
        assert decoded_values(buf) == [values, values]


def _strided(levels: np.ndarray) -> np.ndarray:
    big = np.zeros((2 * len(levels), 4))
    big[::2, 1:3] = levels
    view = big[::2, 1:3]
    assert not view.flags.c_contiguous
    return view


def _bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def test_names_and_depths_at_the_limits_are_accepted() -> None:
    for name in ("x" * 64, "\u00e9" * 32, "\U0001f600" * 16, "\u4e2d" * 21 + "a"):
        assert len(name.encode()) == 64
        book = Book(name, name, 1, 1, [(1.0, 1.0)], [(2.0, 1.0)], 1)
        assert_valid_record(book.encode(), book.expected())
    book = Book("upbit", "BTC-KRW", 1, 1, [tuple(level) for level in BIDS], [], 1)
    assert_valid_record(book.encode(), book.expected())
    small = journal.OrderBookEncoder(journal.EncoderLimits(max_levels=1, max_name_bytes=1))
    buf = small.encode("u", "s", 1, 1, [[1.0, 1.0]], [[2.0, 1.0]], 1)
    assert official_values(buf)["exchange_name"] == "u"


def test_encoder_limits_are_bounded() -> None:
    for bad in ({"max_levels": 0}, {"max_levels": 10_001}, {"max_name_bytes": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            journal.EncoderLimits(**bad)


def test_local_timestamp_defaults_to_now() -> None:
    before = time.time_ns()
    buf = journal.OrderBookEncoder().encode("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    after = time.time_ns()
    assert before <= official_values(buf)["local_timestamp_ns"] <= after


def test_quantities_as_large_as_a_double_are_kept() -> None:
    """Each quantity is checked on its own: finite ones whose sum would overflow a
    double are valid and read back exactly."""
    buf = journal.OrderBookEncoder().encode(
        "upbit", "BTC-KRW", 1, 1, [[2.0, 1e308]], [[3.0, 1.7976931348623157e308]], 1
    )
    values = official_values(buf)
    assert values["bids"] == [(bits(2.0), bits(1e308))]
    assert values["asks"] == [(bits(3.0), bits(1.7976931348623157e308))]


@settings(max_examples=20, deadline=None)
@given(st.lists(books(), min_size=1, max_size=12))
def test_writer_and_reader_agree_with_the_encoder(batch: list[Book]) -> None:
    """append_orderbook, append_many and append(encoded bytes) store the encoder's bytes."""
    with scratch_journal() as path, journal.Writer(path, segment_size=SEGMENT_SIZE) as writer:
        half = len(batch) // 2
        for book in batch[:half]:
            writer.append_orderbook(*book.args())
        writer.append_many([book.args() for book in batch[half:]])
        for book in batch:
            writer.append(book.encode())
        with journal.Reader(path) as reader:
            # Read the values while the reader is open: its views die with it
            # (test_record_views_outlive_the_reader).
            values = [journal_values(record) for record in reader.available()]
    assert values == [book.expected() for book in batch + batch]


def test_record_views_outlive_the_reader(tmp_path: Path) -> None:
    """OrderBookRecord: the level views "stay valid as long as they are referenced, even
    after the reader moves on or closes". Run in a child: a dangling view segfaults."""
    script = tmp_path / "outlive.py"
    script.write_text(
        "import sys, journal\n"
        "path = sys.argv[1]\n"
        "with journal.Writer(path, segment_size=65536) as writer:\n"
        "    writer.append_orderbook('upbit', 'BTC-KRW', 1, 2, [[100.0, 1.0]], [[101.0, 2.0]], 3)\n"
        "with journal.Reader(path) as reader:\n"
        "    record = reader.try_next()\n"
        "print(record.bids.tolist(), record.asks.tolist(), flush=True)\n"
    )
    with scratch_journal() as path:
        done = subprocess.run(
            [sys.executable, str(script), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, f"child died with {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split("\n")[0] == "[[100.0, 1.0]] [[101.0, 2.0]]"


# -- flatc reads the same books ----------------------------------------------------------


def test_flatc_cannot_print_doubles_exactly(tmp_path: Path) -> None:
    """Why the flatc comparison below is not bit-exact: flatc prints a double with
    FloatToString(value, 12) (std::fixed, 12 decimals; flatbuffers/util.h), and its
    --help offers no option to change that."""
    help_text = subprocess.run(
        [str(FLATC), "--help"], capture_output=True, text=True, check=False
    ).stdout
    assert "precision" not in help_text.lower()
    bids = [[0.30000000000000004, 1e-20]]
    buf = journal.OrderBookEncoder().encode("upbit", "BTC-KRW", 1, 1, bids, [], 1)
    (printed,) = flatc_json([buf], tmp_path)
    level = printed["bids"][0]
    assert level == {"price": Decimal("0.3"), "quantity": Decimal("0.0")}
    assert float(level["price"]) != 0.30000000000000004
    assert float(level["quantity"]) != 1e-20


@pytest.mark.slow
def test_flatc_prints_what_was_encoded(tmp_path: Path) -> None:
    generated: list[Book] = []

    @settings(
        max_examples=200,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(books())
    def collect(book: Book) -> None:
        generated.append(book)

    collect()
    batch = EDGE_BOOKS + generated
    assert len(batch) >= 150
    printed = flatc_json([book.encode() for book in batch], tmp_path)
    for book, text in zip(batch, printed, strict=True):
        assert set(text) == set(FIELDS)
        for name in ("exchange_name", "symbol", "timestamp", "sequence", "local_timestamp_ns"):
            assert text[name] == getattr(book, name), name
        for side in ("bids", "asks"):
            levels = getattr(book, side)
            assert len(text[side]) == len(levels)
            for level, (price, quantity) in zip(text[side], levels, strict=True):
                assert set(level) == {"price", "quantity"}
                for printed_value, value in (
                    (level["price"], price),
                    (level["quantity"], quantity),
                ):
                    # Exactly the text flatc's formatting gives for the stored double,
                    assert printed_value == flatc_double_text(value), (side, value)
                    # hence within its proven precision of the stored value.
                    assert abs(float(printed_value) - value) <= flatc_tolerance(value)


# -- records of the official builder ---------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    books(),
    st.sets(st.sampled_from(FIELDS)),
    st.permutations(FIELDS),
    st.booleans(),
)
def test_official_builder_layouts_decode_identically(
    book: Book, present: set[str], order: list[str], force_defaults: bool
) -> None:
    buf = build_official(book, present, tuple(order), force_defaults=force_defaults)
    verify_size_prefixed(buf, 0, len(buf), ORDERBOOK_SCHEMA)
    expected = expected_from_builder(book, present)
    assert official_values(buf) == expected
    assert decoded_values(buf) == [expected, expected]


def test_official_builder_records_go_through_the_writer(journal_dir: Path) -> None:
    """Any valid layout is stored as given; fields the builder left out read as defaults."""
    book = EDGE_BOOKS[1]
    layouts = [
        (frozenset(FIELDS), FIELDS),
        (frozenset(FIELDS), tuple(reversed(FIELDS))),
        (frozenset({"exchange_name", "symbol", "asks"}), FIELDS),
        (
            frozenset({"bids", "local_timestamp_ns", "exchange_name", "symbol"}),
            FIELDS[::2] + FIELDS[1::2],
        ),
        (frozenset({"exchange_name", "symbol"}), FIELDS),
    ]
    buffers = [build_official(book, present, order) for present, order in layouts]
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        positions = [writer.append(buf) for buf in buffers]
        positions.append(writer.append_orderbook(*book.args()))
    with journal.Reader(journal_dir) as reader:
        records = list(reader.available())
        assert [record.position for record in records] == positions
        values = [journal_values(record) for record in records]
    expected = [expected_from_builder(book, present) for present, _ in layouts]
    assert values == [*expected, book.expected()]


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (frozenset(FIELDS) - {"exchange_name"}, "exchange_name"),
        (frozenset({"exchange_name", "asks"}), "symbol"),
        (frozenset(), "exchange_name"),
    ],
)
def test_official_builder_records_without_names_are_refused(
    present: frozenset[str], missing: str, journal_dir: Path
) -> None:
    """append() holds records built elsewhere to append_orderbook's rules: names required."""
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        before = writer.position
        with pytest.raises(journal.InvalidRecordError, match=f"{missing} is empty"):
            writer.append(build_official(EDGE_BOOKS[1], present, FIELDS))
        assert writer.position == before
    assert_nothing_readable(journal_dir, [])


def test_writer_append_enforces_the_writer_limits(journal_dir: Path) -> None:
    """EncoderLimits: "a journal's writer enforces the same for every record". A record
    built elsewhere and passed to Writer.append is one of them."""
    deep = Book("upbit", "BTC-KRW", 1, 1, [(100.0 - i, 1.0) for i in range(11)], [], 1)
    long_name = Book("x" * 65, "BTC-KRW", 1, 1, [(100.0, 1.0)], [], 1)
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        for book, fragment in ((deep, "11 levels"), (long_name, "65 UTF-8 bytes")):
            before = writer.position
            with pytest.raises(journal.InvalidRecordError, match=fragment):
                writer.append(build_official(book))
            assert writer.position == before
    assert_nothing_readable(journal_dir, [])


# -- invalid books: refused with the field and value named, nothing written ------------


def with_level(levels: list[list[float]], index: int, *, price: Any = None, quantity: Any = None):
    changed = [list(level) for level in levels]
    if price is not None:
        changed[index][0] = price
    if quantity is not None:
        changed[index][1] = quantity
    return changed


def replaced(levels: list[Any], index: int, level: Any) -> list[Any]:
    changed = [list(level) for level in levels]
    changed[index] = level
    return changed


def swapped(levels: list[list[float]], i: int, j: int) -> list[list[float]]:
    changed = [list(level) for level in levels]
    changed[i], changed[j] = changed[j], changed[i]
    return changed


NAN, INF = math.nan, math.inf
HUGE_INT = 10**400  # a Python int no double can hold


@dataclass(frozen=True)
class Bad:
    id: str
    changes: dict[str, Any]
    fragments: tuple[str, ...]
    limits: journal.EncoderLimits | None = None

    def args(self) -> tuple[Any, ...]:
        return tuple(
            self.changes.get(name, value) for name, value in zip(FIELDS, GOOD, strict=True)
        )


BAD_BOOKS = [
    # prices
    Bad("bid-price-nan", {"bids": with_level(BIDS, 3, price=NAN)}, ("bids[3].price=nan", "finite")),
    Bad("ask-price-nan", {"asks": with_level(ASKS, 0, price=NAN)}, ("asks[0].price=nan", "finite")),
    Bad("bid-price-inf", {"bids": with_level(BIDS, 0, price=INF)}, ("bids[0].price=inf", "finite")),
    Bad("ask-price-inf", {"asks": with_level(ASKS, 9, price=INF)}, ("asks[9].price=inf", "finite")),
    Bad("bid-price--inf", {"bids": with_level(BIDS, 9, price=-INF)}, ("bids[9].price=-inf",)),
    Bad("bid-price-zero", {"bids": with_level(BIDS, 9, price=0.0)}, ("bids[9].price=0.0", "> 0")),
    Bad("bid-price--zero", {"bids": with_level(BIDS, 9, price=-0.0)}, ("bids[9].price=-0.0",)),
    Bad("ask-price-zero", {"asks": with_level(ASKS, 0, price=0.0)}, ("asks[0].price=0.0", "> 0")),
    Bad("bid-price-negative", {"bids": with_level(BIDS, 5, price=-1.0)}, ("bids[5].price=-1.0",)),
    Bad("ask-price-negative", {"asks": with_level(ASKS, 3, price=-5.0)}, ("asks[3].price=-5.0",)),
    Bad("int-price-zero", {"asks": [[0, 1.0]]}, ("asks[0].price=0", "> 0")),
    # quantities
    Bad(
        "bid-qty-negative", {"bids": with_level(BIDS, 2, quantity=-1.0)}, ("bids[2].quantity=-1.0",)
    ),
    Bad("ask-qty-tiny-neg", {"asks": with_level(ASKS, 7, quantity=-5e-324)}, ("asks[7].quantity",)),
    Bad("bid-qty-nan", {"bids": with_level(BIDS, 4, quantity=NAN)}, ("bids[4].quantity=nan",)),
    Bad("ask-qty-inf", {"asks": with_level(ASKS, 1, quantity=INF)}, ("asks[1].quantity=inf",)),
    Bad("bid-qty--inf", {"bids": with_level(BIDS, 0, quantity=-INF)}, ("bids[0].quantity=-inf",)),
    # order within a side
    Bad("bids-unsorted", {"bids": swapped(BIDS, 3, 4)}, ("bids[4].price=98.5 after 98.0", "desc")),
    Bad("bids-ascending", {"bids": BIDS[::-1]}, ("bids[1].price=96.0 after 95.5",)),
    Bad(
        "bids-duplicate",
        {"bids": with_level(BIDS, 6, price=BIDS[5][0])},
        ("bids[6].price=97.5 after 97.5", "duplicates"),
    ),
    Bad("asks-unsorted", {"asks": swapped(ASKS, 0, 1)}, ("asks[1].price=100.5 after 101.0", "asc")),
    Bad("asks-descending", {"asks": ASKS[::-1]}, ("asks[1].price=104.5 after 105.0",)),
    Bad(
        "asks-duplicate",
        {"asks": with_level(ASKS, 9, price=ASKS[8][0])},
        ("asks[9].price=104.5 after 104.5", "duplicates"),
    ),
    # crossed
    Bad(
        "crossed-equal",
        {"bids": with_level(BIDS, 0, price=100.5)},
        ("crossed", "best bid 100.5 >= best ask 100.5"),
    ),
    Bad(
        "crossed-over",
        {"asks": ten_levels(99.0, 0.5, "asks")},
        ("crossed", "best bid 100.0 >= best ask 99.0"),
    ),
    # depth
    Bad("bids-11-levels", {"bids": [*ten_levels(100.0, 0.5, "bids"), [1.0, 1.0]]}, ("bids: 11",)),
    Bad("asks-11-levels", {"asks": [*ASKS, [200.0, 1.0]]}, ("asks: 11 levels", "max_levels=10")),
    Bad(
        "custom-max-levels",
        {},
        ("bids: 10 levels", "max_levels=3"),
        journal.EncoderLimits(max_levels=3),
    ),
    # names
    Bad("exchange-empty", {"exchange_name": ""}, ("exchange_name is empty",)),
    Bad("symbol-empty", {"symbol": ""}, ("symbol is empty",)),
    Bad("exchange-65-bytes", {"exchange_name": "x" * 65}, ("exchange_name='xx", "65 UTF-8 bytes")),
    Bad("symbol-66-bytes", {"symbol": "\u00e9" * 33}, ("symbol='\u00e9", "66 UTF-8 bytes", "=64")),
    Bad(
        "custom-max-name-bytes",
        {"symbol": "BTC-KRW-X"},
        ("symbol='BTC-KRW-X'", "9 UTF-8 bytes", "max_name_bytes=8"),
        journal.EncoderLimits(max_name_bytes=8),
    ),
    Bad("exchange-nul", {"exchange_name": "up\0bit"}, ("exchange_name='up\\x00bit'", "NUL")),
    Bad("symbol-nul", {"symbol": "\0"}, ("symbol='\\x00'", "NUL")),
    Bad("exchange-bytes", {"exchange_name": b"upbit"}, ("exchange_name=b'upbit'", "got bytes")),
    Bad("symbol-int", {"symbol": 42}, ("symbol=42", "expected str, got int")),
    Bad("exchange-none", {"exchange_name": None}, ("exchange_name=None", "got NoneType")),
    Bad("exchange-list", {"exchange_name": ["upbit"]}, ("exchange_name=['upbit']", "got list")),
    # timestamps and sequence
    Bad("timestamp-float", {"timestamp": 1.0}, ("timestamp=1.0", "expected int, got float")),
    Bad("timestamp-str", {"timestamp": "1700000000000"}, ("timestamp='1700000000000'", "got str")),
    Bad("timestamp-none", {"timestamp": None}, ("timestamp=None", "got NoneType")),
    Bad("timestamp-bool", {"timestamp": True}, ("timestamp=True", "got bool")),
    Bad("sequence-float", {"sequence": 42.0}, ("sequence=42.0", "got float")),
    Bad("sequence-str", {"sequence": "42"}, ("sequence='42'", "got str")),
    Bad("sequence-none", {"sequence": None}, ("sequence=None", "got NoneType")),
    Bad("local-ns-float", {"local_timestamp_ns": 1.5}, ("local_timestamp_ns=1.5", "got float")),
    Bad("local-ns-str", {"local_timestamp_ns": "1"}, ("local_timestamp_ns='1'", "got str")),
    Bad(
        "timestamp-2**63", {"timestamp": INT64_MAX + 1}, ("timestamp=9223372036854775808", "int64")
    ),
    Bad("sequence-below", {"sequence": INT64_MIN - 1}, ("sequence=-9223372036854775809", "int64")),
    Bad("local-ns-2**64", {"local_timestamp_ns": 1 << 64}, ("local_timestamp_ns=1844674407",)),
    # levels that are not (price, quantity) pairs
    Bad("bid-one-item", {"bids": replaced(BIDS, 0, [100.0])}, ("bids[0]=[100.0]", "got 1 items")),
    Bad(
        "ask-three-items",
        {"asks": replaced(ASKS, 2, [101.5, 1.0, 7.0])},
        ("asks[2]=[101.5, 1.0, 7.0]", "got 3 items"),
    ),
    Bad("bid-scalar", {"bids": replaced(BIDS, 1, 99.5)}, ("bids[1]=99.5", "pair")),
    Bad("bid-none", {"bids": replaced(BIDS, 0, None)}, ("bids[0]=None", "pair")),
    Bad("ask-dict", {"asks": [{100.5: "a", 1.0: "b"}]}, ("asks[0]={", "pair")),
    Bad("bid-price-str", {"bids": with_level(BIDS, 0, price="100.0")}, ("bids[0].price='100.0'",)),
    Bad("ask-qty-str", {"asks": with_level(ASKS, 0, quantity="1")}, ("asks[0].quantity='1'",)),
    Bad("bid-price-complex", {"bids": [[1j, 1.0]]}, ("bids[0].price=1j", "expected a number")),
    # strings (and other non-sequences) as levels
    Bad("bids-str", {"bids": "100.0,1.0"}, ("bids: expected a list", "got str")),
    Bad("asks-bytes", {"asks": b"\x01\x02"}, ("asks: expected a list", "got bytes")),
    Bad("bids-dict", {"bids": {"100.0": 1.0}}, ("bids: expected a list", "got dict")),
    Bad("bids-none", {"bids": None}, ("bids: expected a list", "got NoneType")),
    Bad("asks-float", {"asks": 100.5}, ("asks: expected a list", "got float")),
    Bad("bid-level-str", {"bids": ["ab"]}, ("bids[0]='ab'", "pair")),
    Bad("bid-level-str-2", {"bids": ["10"]}, ("bids[0]='10'", "pair")),
    Bad("bid-level-bytes", {"bids": [b"d\x01"]}, ("bids[0]=b'd\\x01'", "pair")),
    # numpy arrays of the wrong shape or dtype
    Bad("np-1d", {"bids": np.zeros(10)}, ("bids: numpy array of shape (10,)", "(n, 2)")),
    Bad("np-3-columns", {"asks": np.ones((10, 3))}, ("asks: numpy array of shape (10, 3)",)),
    Bad("np-transposed", {"bids": np.array(BIDS).T}, ("bids: numpy array of shape (2, 10)",)),
    Bad("np-3d", {"bids": np.ones((2, 5, 2))}, ("bids: numpy array of shape (2, 5, 2)",)),
    Bad("np-0d", {"asks": np.array(1.0)}, ("asks: numpy array of shape ()",)),
    Bad("np-object", {"bids": np.array(BIDS, dtype=object)}, ("bids: numpy dtype object",)),
    Bad("np-complex", {"asks": np.array(ASKS, dtype=complex)}, ("asks: numpy dtype complex128",)),
    Bad("np-str", {"bids": np.array(BIDS).astype(str)}, ("bids: numpy dtype <U", "not numeric")),
    Bad("np-bool", {"asks": np.ones((2, 2), dtype=bool)}, ("asks: numpy dtype bool",)),
    Bad("np-nan", {"bids": np.array(with_level(BIDS, 1, price=NAN))}, ("bids[1].price=nan",)),
    Bad("np-unsorted", {"asks": np.array(swapped(ASKS, 4, 5))}, ("asks[5].price=102.5 after",)),
    # numbers no double can hold
    Bad("ask-price-huge-int", {"asks": with_level(ASKS, 9, price=HUGE_INT)}, ("asks[9].price",)),
    Bad(
        "ask-qty-huge-int", {"asks": with_level(ASKS, 3, quantity=HUGE_INT)}, ("asks[3].quantity",)
    ),
]


def assert_nothing_after_commit(path: Path) -> None:
    """Every segment holds zeros after its commit offset: no byte of a refused record."""
    for index in segment_indices(path):
        data = segment_path(path, index).read_bytes()
        commit = struct.unpack_from("<Q", data, F.COMMIT_OFFSET_OFFSET)[0]
        tail = np.frombuffer(data, np.uint8, offset=commit)
        written = np.flatnonzero(tail)
        assert not len(written), (
            f"segment {index}: {len(written)} nonzero bytes after commit_offset={commit}, "
            f"first at {commit + int(written[0])}: {bytes(tail[written[0] : written[0] + 32])!r}"
        )


def assert_nothing_readable(path: Path, positions: list[tuple[int, int]]) -> None:
    """A reader from the beginning finds exactly the records at ``positions``."""
    with journal.Reader(path) as reader:
        assert [record.position for record in reader.available()] == positions
    assert_nothing_after_commit(path)


def writer_for(path: Path, limits: journal.EncoderLimits | None) -> journal.Writer:
    limits = limits or journal.EncoderLimits()
    return journal.Writer(
        path,
        segment_size=SEGMENT_SIZE,
        max_levels=limits.max_levels,
        max_name_bytes=limits.max_name_bytes,
    )


def as_dict(args: tuple[Any, ...]) -> dict[str, Any]:
    keys = ("exchangename", "symbol", "timestamp", "sequence", "bids", "asks", "local_timestamp_ns")
    return dict(zip(keys, args, strict=True))


def refused(
    call: Callable[[], Any], fragments: tuple[str, ...], prefix: str = ""
) -> journal.InvalidRecordError:
    with pytest.raises(journal.InvalidRecordError) as caught:
        call()
    error = caught.value
    assert isinstance(error, ValueError)
    message = str(error)
    assert message.startswith(prefix), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return error


@pytest.mark.parametrize("bad", BAD_BOOKS, ids=[bad.id for bad in BAD_BOOKS])
def test_invalid_book_is_refused_and_nothing_is_written(bad: Bad, journal_dir: Path) -> None:
    args = bad.args()
    refused(lambda: journal.OrderBookEncoder(bad.limits).encode(*args), bad.fragments)

    good = (*GOOD[:4], [[100.0, 1.0]], [[101.0, 1.0]], GOOD[6])
    with writer_for(journal_dir, bad.limits) as writer, journal.Reader(journal_dir, "end") as tail:
        assert tail.try_next() is None  # placed at the end
        first = writer.append_orderbook(*good)
        assert tail.try_next().position == first
        before = writer.position

        refused(lambda: writer.append_orderbook(*args), bad.fragments)
        assert writer.position == before
        assert tail.try_next() is None
        assert_nothing_readable(journal_dir, [first])

        refused(lambda: writer.append_dict(as_dict(args)), bad.fragments)
        assert writer.position == before

        batch = [good, as_dict(good), args, good]
        refused(lambda: writer.append_many(batch), bad.fragments, prefix="books[2]: ")
        dicts = [as_dict(good), as_dict(good), as_dict(args), as_dict(good)]
        refused(lambda: writer.append_many(dicts), bad.fragments, prefix="books[2]: ")
        assert writer.position == before
        assert tail.try_next() is None
        assert_nothing_readable(journal_dir, [first])

        # The writer is unharmed: the next good book goes where the bad one would have.
        assert writer.append_orderbook(*good) == before
        assert tail.try_next() is not None


def test_refused_book_leaves_no_bytes_in_the_segment(journal_dir: Path) -> None:
    """Whatever the error, a refused append writes nothing past the commit: a
    validation that passes and a pack that then fails would leave half a record."""
    asks = with_level(ASKS, 9, price=HUGE_INT)  # passes the checks, then fails to pack
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        before = writer.position
        with pytest.raises(Exception):  # noqa: B017 - any error; the bytes are the point
            writer.append_orderbook("upbit", "BTC-KRW", 7, 8, BIDS, asks, 9)
        assert writer.position == before
        assert_nothing_readable(journal_dir, [])


def test_bad_book_at_the_end_of_a_segment_does_not_roll(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        positions = []
        size = len(journal.OrderBookEncoder().encode(*GOOD))
        while writer.position[1] + size <= SEGMENT_SIZE - F.END_MARKER_SIZE:
            positions.append(writer.append_orderbook(*GOOD))
        before = writer.position
        bad = with_level(ASKS, 9, price=NAN)
        refused(lambda: writer.append_orderbook(*GOOD[:5], bad, GOOD[6]), ("asks[9].price=nan",))
        refused(
            lambda: writer.append_many([GOOD, (*GOOD[:5], bad, 1)]), ("asks[9]",), prefix="books[1]"
        )
        assert writer.position == before
        assert_nothing_readable(journal_dir, positions)
        assert writer.append_orderbook(*GOOD)[0] == 1  # a good one rolls


MISSING_KEYS = ["exchangename", "symbol", "timestamp", "sequence", "bids", "asks"]


@pytest.mark.parametrize("key", MISSING_KEYS)
def test_append_dict_without_a_key_is_refused(key: str, journal_dir: Path) -> None:
    book = as_dict(GOOD)
    del book[key]
    fragment = f"order-book dict has no key {key!r}"
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        before = writer.position
        refused(lambda: writer.append_dict(book), (fragment,))
        refused(lambda: writer.append_many([GOOD, GOOD, book, GOOD]), (fragment,), "books[2]: ")
        assert writer.position == before
    assert_nothing_readable(journal_dir, [])


def test_append_dict_of_the_wrong_kind_is_refused(journal_dir: Path) -> None:
    renamed = as_dict(GOOD)
    renamed["exchange_name"] = renamed.pop("exchangename")
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        before = writer.position
        refused(lambda: writer.append_dict(renamed), ("no key 'exchangename'",))
        refused(lambda: writer.append_dict(list(GOOD)), ("expected an order-book dict, got list",))
        refused(lambda: writer.append_dict(None), ("got NoneType",))
        for short in (GOOD[:5], (*GOOD, 1), ()):
            refused(
                lambda short=short: writer.append_many([GOOD, short, GOOD]),
                ("exchange_name, symbol", f"got {len(short)} items"),
                prefix="books[1]: ",
            )
        assert writer.position == before
    assert_nothing_readable(journal_dir, [])


def _corrupt(buf: bytes, at: int, value: bytes) -> bytes:
    return buf[:at] + value + buf[at + len(value) :]


GOOD_RECORD = journal.OrderBookEncoder().encode(*GOOD)
BAD_BUFFERS = [
    ("wrong-identifier", _corrupt(GOOD_RECORD, 8, b"OBK2"), ("file_identifier=b'OBK2'",)),
    ("no-identifier", _corrupt(GOOD_RECORD, 8, b"\0\0\0\0"), ("file_identifier=b'\\x00",)),
    ("truncated", GOOD_RECORD[:-8], (f"size prefix={len(GOOD_RECORD) - 4}",)),
    ("truncated-to-prefix", GOOD_RECORD[:4], ("record of 4 bytes is too short",)),
    ("empty", b"", ("record of 0 bytes",)),
    ("padded", GOOD_RECORD + bytes(8), ("size prefix=", "holds")),
    (
        "prefix-too-large",
        _corrupt(GOOD_RECORD, 0, struct.pack("<I", len(GOOD_RECORD))),
        (f"size prefix={len(GOOD_RECORD)}",),
    ),
    (
        "prefix-too-small",
        _corrupt(GOOD_RECORD, 0, struct.pack("<I", len(GOOD_RECORD) - 12)),
        (f"size prefix={len(GOOD_RECORD) - 12}",),
    ),
    ("prefix-max", _corrupt(GOOD_RECORD, 0, b"\xff\xff\xff\xff"), ("size prefix=4294967295",)),
    (
        "root-out-of-range",
        _corrupt(GOOD_RECORD, 4, struct.pack("<I", 1 << 20)),
        ("fails verification", "root table"),
    ),
    ("vtable-odd", _corrupt(GOOD_RECORD, 12, struct.pack("<H", 17)), ("vtable size=17",)),
    ("not-bytes", "not a buffer", ("expected a bytes-like", "got str")),
    ("none", None, ("expected a bytes-like", "got NoneType")),
]


@pytest.mark.parametrize(
    ("record", "fragments"),
    [case[1:] for case in BAD_BUFFERS],
    ids=[case[0] for case in BAD_BUFFERS],
)
def test_append_of_a_bad_buffer_is_refused(
    record: Any, fragments: tuple[str, ...], journal_dir: Path
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        first = writer.append(GOOD_RECORD)
        before = writer.position
        refused(lambda: writer.append(record), fragments)
        assert writer.position == before
        assert_nothing_readable(journal_dir, [first])
