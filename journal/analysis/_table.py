"""Books as a table: the columns ``journal export`` writes to Parquet and
``Books.to_arrow()`` / ``to_pandas()`` / ``to_polars()`` return, defined here once.

One row per book, in this order (the ``list`` layout):

    column         Arrow type                 what
    exchange       dictionary<int32, string>  venue, as journaled (``upbit``)
    symbol         dictionary<int32, string>  ``BASE-QUOTE`` (``BTC-KRW``)
    market         dictionary<int8, string>   MARKETS, of the stream (market_of); null:
                                              a venue or quote VENUE_MARKETS cannot place
    exchange_time  timestamp[ms, tz=UTC]      the venue's time; null where the record has 0
    local_time     timestamp[ns, tz=UTC]      the collector's clock when it published
                                              (``local_time_unit="us"``: floored to us)
    sequence       int64                      as journaled (Upbit, Bithumb: the builder's
                                              count of the stream's messages); null where
                                              the record has 0 (none)
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
count USD; a query that sums ``bid_qty`` across markets must say which it means. It
is a stream's (venue and symbol), not a venue's: ``bybit`` journals v5 spot books
(``BTC-USDT``) and, imported from captures of the retired v2 API, inverse perpetuals
quoted in USD (``BTC-USD``, quantities in USD contracts).

Why the zeros are nulls: the journal stores 0 for "none" (a record of another writer
may lack the exchange time or the sequence), and a 0 that reads as 1970 or as
sequence 0 would be data. The collector's builders always journal a sequence: the
venue's, or for Upbit and Bithumb, which send none, the count of the stream's
messages (1, 2, ...).
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
ANY_QUOTE: Final = "*"
"""A VENUE_MARKETS key: every quote the venue's entry does not name."""
VENUE_MARKETS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "binance": {ANY_QUOTE: "spot"},
        # USDⓈ-M perpetuals, quantity in the base asset (COIN-M is not journaled: its
        # BTCUSD_PERP is no BASE-QUOTE name).
        "binance-futures": {q: "linear_perpetual" for q in ("USDT", "USDC", "BUSD")},
        # v5 spot; BASE-USD: the v2 inverse perpetuals that journal import-captures
        # journals as bybit (journal.feeds._bybit_legacy), quantity in USD contracts.
        "bybit": {"USD": "inverse_perpetual", ANY_QUOTE: "spot"},
        # v5 linear perpetuals, quantity in the base asset.
        "bybit-futures": {q: "linear_perpetual" for q in ("USDT", "USDC")},
        "upbit": {ANY_QUOTE: "spot"},
        "bithumb": {ANY_QUOTE: "spot"},
    }
)
"""The market of a stream, by venue then by the symbol's quote asset (ANY_QUOTE:
the others). A venue not here, or a quote its entry does not name (``BTC-USD`` on
``binance-futures``: a contract the collector does not journal there), has no market
(null): a wrong guess would mix quantities of different units. The venues are
journal.symbols.VENUES (a test keeps the two in step)."""
assert set(VENUE_MARKETS) == set(VENUES)
assert {m for quotes in VENUE_MARKETS.values() for m in quotes.values()} <= set(MARKETS)

LEVEL_COLUMNS: Final = ("bid_price", "bid_qty", "ask_price", "ask_qty")
LAYOUTS: Final = ("list", "wide")
LOCAL_TIME_UNITS: Final = ("ns", "us")
"""``local_time``'s unit: ns, the collector's clock as journaled, or us, the finest
Spark reads as a timestamp (it refuses TIMESTAMP(NANOS); docs/ANALYSIS.md)."""
NAME_COLUMNS: Final = ("exchange", "symbol", "market")
PARQUET_EXTRA = "parquet"
PANDAS_EXTRA = "pandas"
POLARS_EXTRA = "polars"


def market_of(exchange: str, symbol: str) -> str | None:
    """The market of the stream ``exchange``/``symbol`` (``BASE-QUOTE``) by
    VENUE_MARKETS, None where it cannot tell."""
    quotes = VENUE_MARKETS.get(exchange)
    base, dash, quote = symbol.rpartition("-")
    if quotes is None or not dash or not base:
        return None
    return quotes.get(quote, quotes.get(ANY_QUOTE))


def market_codes(books: Books, rows: np.ndarray | None = None) -> np.ndarray:
    """The MARKETS index of each book (of those at ``rows``, if given): market_of its
    stream, -1 where none; decided once per (exchange, symbol) pair, then gathered."""
    table = np.array(
        [
            [MARKETS.index(m) if (m := market_of(e, s)) else -1 for s in books.symbols]
            for e in books.exchanges
        ],
        np.int8,
    ).reshape(len(books.exchanges), len(books.symbols))
    exchange, symbol = books.exchange_code, books.symbol_code
    if rows is not None:
        exchange, symbol = exchange[rows], symbol[rows]
    return table[exchange, symbol] if len(exchange) else np.zeros(0, np.int8)


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


def book_schema(
    depth: int, layout: str = "list", *, exchange: bool = True, local_time_unit: str = "ns"
) -> Any:
    """The pyarrow schema of books_arrow (``exchange=False``: the Parquet files of a
    dataset partitioned by exchange, whose directory names it; ``local_time_unit``:
    LOCAL_TIME_UNITS)."""
    pa = needs("pyarrow", PARQUET_EXTRA, "the Arrow table of books")
    _check_layout(layout)
    if local_time_unit not in LOCAL_TIME_UNITS:
        raise ValueError(
            f"local_time_unit={local_time_unit!r}: give one of {', '.join(LOCAL_TIME_UNITS)}"
        )
    names = pa.dictionary(pa.int32(), pa.string())
    fields = [pa.field("exchange", names)] if exchange else []
    fields += [
        pa.field("symbol", names),
        pa.field("market", pa.dictionary(pa.int8(), pa.string())),
        pa.field("exchange_time", pa.timestamp("ms", tz="UTC")),
        pa.field("local_time", pa.timestamp(local_time_unit, tz="UTC")),
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


def books_arrow(
    books: Books,
    rows: np.ndarray | None = None,
    *,
    layout: str = "list",
    exchange: bool = True,
    local_time_unit: str = "ns",
) -> Any:
    """A pyarrow Table of ``books`` (the rows at ``rows``, in their order, if given) in
    the schema book_schema; metadata: book_metadata. ``local_time_unit="us"``: the
    local time floored to whole microseconds."""
    pa = needs("pyarrow", PARQUET_EXTRA, "the Arrow table of books")
    schema = book_schema(books.depth, layout, exchange=exchange, local_time_unit=local_time_unit)

    def column(name: str) -> np.ndarray:
        values = getattr(books, name)
        return values if rows is None else values[rows]

    exchange_code = column("exchange_code")
    symbol_code = column("symbol_code")
    market = market_codes(books, rows)
    timestamp, sequence = column("timestamp"), column("sequence")
    local = column("local_timestamp_ns")
    local = local // 1000 if local_time_unit == "us" else local
    arrays = []
    if exchange:
        arrays.append(_dictionary(pa, exchange_code, books.exchanges))
    arrays += [
        _dictionary(pa, symbol_code, books.symbols),
        pa.DictionaryArray.from_arrays(
            pa.array(market, mask=market < 0), pa.array(MARKETS, pa.string())
        ),
        pa.array(timestamp, pa.timestamp("ms", tz="UTC"), mask=timestamp == 0),
        pa.array(local, pa.timestamp(local_time_unit, tz="UTC")),
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
    market = market_codes(books)
    columns = [
        pl.Series("exchange", books.exchanges, pl.Categorical).gather(books.exchange_code),
        pl.Series("symbol", books.symbols, pl.Categorical).gather(books.symbol_code),
        pl.Series("market", [*MARKETS, None], pl.Enum(MARKETS)).gather(  # last: null
            np.where(market < 0, len(MARKETS), market)
        ),
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
