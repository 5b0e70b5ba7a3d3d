"""Books as a table: the columns ``journal export`` writes to Parquet and
``Books.to_arrow()`` / ``to_pandas()`` / ``to_polars()`` return, defined here once.

One row per book, in this order (the ``list`` layout):

    column         Arrow type                 what
    exchange       dictionary<int32, string>  venue, as journaled (``upbit``)
    symbol         dictionary<int32, string>  ``BASE-QUOTE`` (``BTC-KRW``)
    market         dictionary<int8, string>   MARKETS; null: a venue not in VENUE_MARKETS
    exchange_time  timestamp[ms, tz=UTC]      the venue's time; null where the record has 0
    local_time     timestamp[ns, tz=UTC]      the collector's clock when it published
    sequence       int64                      the venue's sequence; null where it sends none (0)
    bid_price ...  list<double>               bid_price, bid_qty, ask_price, ask_qty: the
                                              book's own levels, best first

A side's list is as long as the book's side (at most the ``depth`` loaded), so
``bid_price[10]`` of a 5-level book is NULL in DuckDB (``list.get(9,
null_on_oob=True)`` in Polars), never a NaN that averages silently. The ``wide``
layout has ``bid_price_0 .. bid_price_{depth-1}`` (and the three others) as double
columns instead, null past a book's depth; benchmarks/bench_export.py measures both
(docs/ANALYSIS.md has the figures and why the export writes ``list``).

``market`` is there because a quantity means different things on different markets:
spot and linear (USDT-margined) contracts count the base asset, inverse contracts
count USD; a query that sums ``bid_qty`` across markets must say which it means.

Why the zeros are nulls: the journal stores 0 for "none" (FORMAT.md: Upbit and
Bithumb send no sequence; a record of another builder may lack the exchange time),
and a 0 that reads as 1970 or as sequence 0 would be data.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from journal.symbols import VENUES

if TYPE_CHECKING:
    from journal.analysis._load import Books

MARKETS: Final = (
    "spot",
    "linear_perpetual",
    "inverse_perpetual",
    "linear_future",
    "inverse_future",
)
"""What a ``market`` value can be (its dictionary, in this order: Polars' Enum)."""
VENUE_MARKETS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "binance": "spot",
        "binance-futures": "linear_perpetual",  # USDⓈ-M perpetuals: quantity in the base asset
        "bybit": "spot",
        "bybit-futures": "linear_perpetual",  # v5 linear USDT perpetuals: base asset
        "upbit": "spot",
        "bithumb": "spot",
    }
)
"""The market of each venue the journal knows (journal.symbols.VENUES; a test keeps
the two in step): a venue name is one market here (the collector's venues are)."""
assert set(VENUE_MARKETS) == set(VENUES) and set(VENUE_MARKETS.values()) <= set(MARKETS)

LEVEL_COLUMNS: Final = ("bid_price", "bid_qty", "ask_price", "ask_qty")
LAYOUTS: Final = ("list", "wide")
NAME_COLUMNS: Final = ("exchange", "symbol", "market")
PARQUET_EXTRA = "parquet"
PANDAS_EXTRA = "pandas"
POLARS_EXTRA = "polars"


def market_of(exchange: str) -> str | None:
    """The market of a venue (VENUE_MARKETS), None for a venue not known."""
    return VENUE_MARKETS.get(exchange)


def needs(module: str, extra: str, what: str) -> Any:
    """``module`` imported, or ImportError naming the pip extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{what} needs {module.partition('.')[0]}: pip install 'orderbook-journal[{extra}]' "
            f"({error})"
        ) from error


def wide_names(depth: int) -> list[str]:
    """The wide layout's level columns: ``bid_price_0``, ..., in LEVEL_COLUMNS order."""
    return [f"{name}_{k}" for name in LEVEL_COLUMNS for k in range(depth)]


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: give one of {', '.join(map(repr, LAYOUTS))}")


def book_schema(depth: int, layout: str = "list", *, exchange: bool = True) -> Any:
    """The pyarrow schema of books_arrow (``exchange=False``: the Parquet files of a
    dataset partitioned by exchange, whose directory names it)."""
    pa = needs("pyarrow", PARQUET_EXTRA, "the Arrow table of books")
    _check_layout(layout)
    names = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field("exchange", names)] if exchange else []
    fields += [
        pa.field("symbol", names),
        pa.field("market", pa.dictionary(pa.int8(), pa.string())),
        pa.field("exchange_time", pa.timestamp("ms", tz="UTC")),
        pa.field("local_time", pa.timestamp("ns", tz="UTC")),
        pa.field("sequence", pa.int64()),
    ]
    if layout == "list":
        fields += [pa.field(name, pa.list_(pa.float64())) for name in LEVEL_COLUMNS]
    else:
        fields += [pa.field(name, pa.float64()) for name in wide_names(depth)]
    return pa.schema(fields)


def parquet_options(schema: Any) -> dict[str, Any]:
    """pyarrow.parquet writer options for a table of ``schema``: zstd, and dictionary
    encoding for the names only. Dictionaries of prices and quantities grow past
    pyarrow's limit and fall back to plain within a row group anyway; trying costs
    the write 1.6x and the read 3.5x, and the file is larger (250,000 books of
    benchmarks/bench_export.py: 221 against 364 ms, 42.1 against 44.6 MB)."""
    return {
        "compression": "zstd",
        "use_dictionary": [name for name in NAME_COLUMNS if name in schema.names],
    }


def side_lengths(price: np.ndarray) -> np.ndarray:
    """Levels each book has on a side: its finite prices (the writer refuses NaN
    prices, so a NaN is load_books' padding past the book's depth)."""
    return np.count_nonzero(np.isfinite(price), axis=1)


def _market_codes(books: Books) -> np.ndarray:
    """MARKETS index of each exchange name, -1 where unknown."""
    return np.array(
        [MARKETS.index(m) if (m := market_of(e)) else -1 for e in books.exchanges] or [-1],
        np.int8,
    )


def books_arrow(
    books: Books, rows: np.ndarray | None = None, *, layout: str = "list", exchange: bool = True
) -> Any:
    """A pyarrow Table of ``books`` (the rows at ``rows``, in their order, if given) in
    the schema book_schema; metadata: book_metadata."""
    pa = needs("pyarrow", PARQUET_EXTRA, "the Arrow table of books")
    schema = book_schema(books.depth, layout, exchange=exchange)

    def column(name: str) -> np.ndarray:
        values = getattr(books, name)
        return values if rows is None else values[rows]

    exchange_code = column("exchange_code")
    symbol_code = column("symbol_code")
    market = _market_codes(books)[exchange_code] if len(books.exchanges) else np.zeros(0, np.int8)
    timestamp, sequence = column("timestamp"), column("sequence")
    arrays = []
    if exchange:
        arrays.append(_dictionary(pa, exchange_code, books.exchanges))
    arrays += [
        _dictionary(pa, symbol_code, books.symbols),
        pa.DictionaryArray.from_arrays(
            pa.array(market, mask=market < 0), pa.array(MARKETS, pa.string())
        ),
        pa.array(timestamp, pa.timestamp("ms", tz="UTC"), mask=timestamp == 0),
        pa.array(column("local_timestamp_ns"), pa.timestamp("ns", tz="UTC")),
        pa.array(sequence, pa.int64(), mask=sequence == 0),
    ]
    for side in ("bid", "ask"):
        price, qty = column(f"{side}_price"), column(f"{side}_qty")
        if layout == "list":
            arrays += _lists(pa, price, qty)
    if layout == "wide":
        for name in LEVEL_COLUMNS:
            values = column(name)
            missing = ~np.isfinite(column(name.replace("_qty", "_price")))
            arrays += [
                pa.array(values[:, k], pa.float64(), mask=missing[:, k]) for k in range(books.depth)
            ]
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata(book_metadata(books)))


def book_metadata(books: Books) -> dict[str, str]:
    """The key-value metadata of a table (and Parquet file) of books: the depth
    loaded, and the segments missing in the middle of a stream (read around)."""
    import json

    return {
        "journal.depth": str(books.depth),
        "journal.gaps": json.dumps([str(gap) for gap in books.gaps]),
    }


def _dictionary(pa: Any, codes: np.ndarray, names: list[str]) -> Any:
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string()))


def _lists(pa: Any, price: np.ndarray, qty: np.ndarray) -> list[Any]:
    """Price and quantity list arrays of one side, each book's list its own levels
    (side_lengths), sharing offsets; without copying when every book is full."""
    n, depth = price.shape
    lengths = side_lengths(price)
    if n and int(lengths.min()) == depth:
        bounds = np.arange(0, n * depth + 1, depth, dtype=np.int64)
        flat = [np.ascontiguousarray(v).reshape(-1) for v in (price, qty)]
    else:
        bounds = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=bounds[1:])
        there = np.arange(depth) < lengths[:, None]
        flat = [price[there], qty[there]]
    if bounds[-1] >= 2**31:
        raise ValueError(
            f"{n:,} books of {depth} levels: more levels than one Arrow list column holds "
            "(2**31); take fewer books at a time (Books.select)"
        )
    offsets = pa.array(bounds.astype(np.int32))
    return [pa.ListArray.from_arrays(offsets, pa.array(v, pa.float64())) for v in flat]


def arrow_to_pandas(table: Any) -> Any:
    """``table`` as a pandas DataFrame with the same columns and types as far as pandas
    has them: timestamps tz-aware UTC (ms and ns kept), names categorical, nullable
    Int64 and Float64 where Arrow has nulls, lists as ``pd.ArrowDtype(list<double>)``
    (``df.bid_price.list[0]``; pyarrow.compute.list_element on short lists raises, so
    a book with an empty side wants ``layout="wide"``)."""
    pd = needs("pandas", PANDAS_EXTRA, "to_pandas()")
    pa = needs("pyarrow", PANDAS_EXTRA, "to_pandas()")
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.list_(pa.float64()): pd.ArrowDtype(pa.list_(pa.float64())),
    }
    return table.to_pandas(types_mapper=mapping.get)


def books_pandas(books: Books, layout: str = "list") -> Any:
    """Books.to_pandas (arrow_to_pandas of books_arrow)."""
    needs("pandas", PANDAS_EXTRA, "Books.to_pandas()")
    needs("pyarrow", PANDAS_EXTRA, "Books.to_pandas()")
    return arrow_to_pandas(books_arrow(books, layout=layout))


def books_polars(books: Books, layout: str = "list") -> Any:
    """Books.to_polars: the columns of books_arrow built by Polars itself (no pyarrow
    needed): names Categorical, ``market`` an Enum of MARKETS, Datetime("ms"/"ns",
    "UTC"), lists List(Float64) of each book's own levels."""
    pl = needs("polars", POLARS_EXTRA, "Books.to_polars()")
    _check_layout(layout)
    markets = [market_of(e) for e in books.exchanges]
    columns = [
        pl.Series("exchange", books.exchanges, pl.Categorical).gather(books.exchange_code),
        pl.Series("symbol", books.symbols, pl.Categorical).gather(books.symbol_code),
        pl.Series("market", markets, pl.Enum(MARKETS)).gather(books.exchange_code),
        _nonzero(pl, "exchange_time", books.timestamp).cast(pl.Datetime("ms", "UTC")),
        pl.Series("local_time", books.local_timestamp_ns).cast(pl.Datetime("ns", "UTC")),
        _nonzero(pl, "sequence", books.sequence),
    ]
    if layout == "list":
        for name in LEVEL_COLUMNS:
            levels = getattr(books, name)
            series = pl.Series(name, levels, pl.Array(pl.Float64, books.depth)).arr.to_list()
            price = getattr(books, name.replace("_qty", "_price"))
            lengths = side_lengths(price)
            if len(books) and int(lengths.min()) < books.depth:
                head = pl.lit(series).list.head(pl.lit(pl.Series(lengths)))
                series = pl.select(head).to_series()
            columns.append(series.alias(name))
    else:
        for name in LEVEL_COLUMNS:
            missing = ~np.isfinite(getattr(books, name.replace("_qty", "_price")))
            for k in range(books.depth):
                values = np.where(missing[:, k], np.nan, getattr(books, name)[:, k])
                columns.append(pl.Series(f"{name}_{k}", values).fill_nan(None))
    return pl.DataFrame(columns)


def _nonzero(pl: Any, name: str, values: np.ndarray) -> Any:
    """An Int64 series of ``values`` with null where 0."""
    series = pl.Series(name, values)
    return series.scatter(np.flatnonzero(values == 0), None) if (values == 0).any() else series
