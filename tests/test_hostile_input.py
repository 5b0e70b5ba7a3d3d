"""Values the writer must refuse, by every way in (issue #10): checked on the double
that would be stored, never by what the caller's type claims, with an
InvalidRecordError naming field and value; the publisher counts, never raises."""

from __future__ import annotations

import decimal
import fractions
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import journal
from journal.collector import BookPublisher, Refusal

BIG = 2**53
GOOD_ASKS = [[1e20, 1.0]]


def _book(**changes: Any) -> dict[str, Any]:
    book = {
        "exchangename": "upbit",
        "symbol": "BTC-KRW",
        "timestamp": 1_700_000_000_000,
        "sequence": 1,
        "bids": [[100.0, 1.0]],
        "asks": [[101.0, 1.0]],
    }
    book.update(changes)
    return book


BAD_BOOKS = {
    "bool levels": (_book(bids=[[True, True]]), "bids[0].price=True"),
    "bool quantity among floats": (_book(bids=[[100.0, True]]), "bids[0].quantity=True"),
    "numpy bool": (_book(asks=[[101.0, np.bool_(True)]]), "asks[0].quantity="),
    "ints that are one double": (
        _book(bids=[[BIG + 1, 1], [BIG, 1]], asks=GOOD_ASKS),
        f"bids[0].price={BIG + 1}",
    ),
    "ints that cross as doubles": (
        _book(bids=[[BIG + 3, 1]], asks=[[BIG + 4, 1]]),
        f"bids[0].price={BIG + 3}",
    ),
    "Decimal beyond a double": (
        _book(asks=[[decimal.Decimal("1e400"), 1.0]]),
        "asks[0].price=Decimal('1E+400')",
    ),
    "longdouble beyond a double": (
        _book(asks=[[101.0, np.longdouble("1e400")]]),
        "asks[0].quantity=",
    ),
    "Decimal NaN": (_book(bids=[[decimal.Decimal("NaN"), 1.0]]), "bids[0].price=Decimal('NaN')"),
    "Decimal sNaN": (_book(bids=[[100.0, decimal.Decimal("sNaN")]]), "bids[0].quantity="),
    "lone surrogate in the symbol": (_book(symbol="BTC-\ud800"), "symbol="),
}


@pytest.fixture
def writer(journal_dir: Path) -> Any:
    with journal.Writer(journal_dir, segment_size=64 * 1024) as writer:
        yield writer


def _append_orderbook(writer: journal.Writer, book: dict[str, Any]) -> Any:
    return writer.append_orderbook(
        book["exchangename"],
        book["symbol"],
        book["timestamp"],
        book["sequence"],
        book["bids"],
        book["asks"],
    )


WAYS_IN: dict[str, Callable[[journal.Writer, dict[str, Any]], Any]] = {
    "append_orderbook": _append_orderbook,
    "append_dict": lambda writer, book: writer.append_dict(book),
    "append_many": lambda writer, book: writer.append_many([_book(), book]),
}


@pytest.mark.parametrize("way", WAYS_IN)
@pytest.mark.parametrize("case", BAD_BOOKS)
def test_bad_values_are_refused_by_every_append(
    writer: journal.Writer, way: str, case: str
) -> None:
    book, named = BAD_BOOKS[case]
    before = writer.position
    with pytest.raises(journal.InvalidRecordError) as caught:
        WAYS_IN[way](writer, book)
    assert named in str(caught.value)
    assert writer.position == before, "a refused book wrote something"


@pytest.mark.parametrize("case", BAD_BOOKS)
def test_the_publisher_refuses_them_without_raising(journal_dir: Path, case: str) -> None:
    book, named = BAD_BOOKS[case]
    with BookPublisher(journal_dir, segment_size=64 * 1024) as publisher:
        before = publisher.writer.position
        assert publisher.publish(book) is None
        assert publisher.writer.position == before
        assert publisher.stats.refused_total == 1
        assert named in (publisher.stats.last_refusal or "")


@pytest.mark.parametrize(
    "thing", [np.zeros(3), np.zeros((2, 2)), 42, None, "upbit", [1, 2], b"book"]
)
def test_the_publisher_never_raises_on_what_is_not_a_book(journal_dir: Path, thing: Any) -> None:
    with BookPublisher(journal_dir, segment_size=64 * 1024) as publisher:
        assert publisher.publish(thing) is None
        assert publisher.stats.refused[Refusal.WRONG_TYPE] == 1


def test_values_a_double_holds_exactly_are_stored(writer: journal.Writer) -> None:
    """Ints within 2**53, Decimals, numpy numbers: converted, checked, stored."""
    writer.append_dict(
        _book(
            bids=[[BIG, 2], [decimal.Decimal("99.5"), np.float32(0.5)]],
            asks=[[np.int64(BIG + 2), np.longdouble(3)]],
            timestamp=np.int64(5),
        )
    )
    with journal.Reader(writer.path, metrics=False) as reader:
        [record] = list(reader.available())
    assert record.bids.tolist() == [[float(BIG), 2.0], [99.5, 0.5]]
    assert record.asks.tolist() == [[float(BIG + 2), 3.0]]
    assert record.timestamp == 5


def test_what_is_not_a_book_is_refused_by_append_dict_and_append_many(
    writer: journal.Writer,
) -> None:
    before = writer.position
    with pytest.raises(journal.InvalidRecordError, match="expected an order-book dict"):
        writer.append_dict(np.zeros(3))  # type: ignore[arg-type]
    with pytest.raises(journal.InvalidRecordError, match=r"books\[0\]: expected a to_dict"):
        writer.append_many(np.zeros(3))  # type: ignore[arg-type]
    assert writer.position == before


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("bids", [[decimal.Decimal(BIG + 1), 1.0], [1.0, 1.0]], "no double holds this integer"),
        ("bids", [[fractions.Fraction(BIG + 1), 1.0]], "no double holds this integer"),
        ("bids", [[100.0, decimal.Decimal("1e-400")]], "too small for a double"),
        ("symbol", "BTC-\x1b[2JKRW", "control character '\\x1b'"),
        ("symbol", "BTC\nKRW", "control character '\\n'"),
    ],
)
def test_values_that_change_on_the_way_in_are_refused(
    writer: journal.Writer, field: str, value: Any, named: str
) -> None:
    with pytest.raises(journal.InvalidRecordError, match=re.escape(named)):
        writer.append_dict(_book(**{field: value}, asks=GOOD_ASKS))
