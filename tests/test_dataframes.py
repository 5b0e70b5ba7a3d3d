"""Books and Results into dataframes in one call: ``to_pandas()`` / ``to_polars()``
(and ``to_arrow()``) with the exported Parquet's columns and types, values equal to
the numpy columns, nulls where a book has no level or a figure is unknown, and a
missing extra said with the pip command that installs it."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import journal
from journal.analysis import MARKETS, VENUE_MARKETS, load_books, load_results, market_of
from journal.symbols import VENUES
from tests.test_export_dataset import (
    BOOKS,
    PER_STREAM,
    STREAMS,
    exported,
    imported_captures,
    write_market,
)
from tests.test_load_results import typical, write_results

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

LEVELS = ("bid_price", "bid_qty", "ask_price", "ask_qty")


@pytest.fixture
def books(journal_dir: Path) -> journal.analysis.Books:
    write_market(journal_dir)
    return load_books(journal_dir)


def own_levels(values: np.ndarray, price: np.ndarray) -> list[list[float]]:
    """Each row's levels where its price is finite: what a list column holds."""
    return [row[np.isfinite(p)].tolist() for row, p in zip(values, price, strict=True)]


def test_every_venue_has_a_market() -> None:
    assert set(VENUE_MARKETS) == set(VENUES)
    assert {m for quotes in VENUE_MARKETS.values() for m in quotes.values()} <= set(MARKETS)


@pytest.mark.parametrize(
    ("exchange", "symbol", "market"),
    [
        ("bybit", "BTC-USD", "inverse_perpetual"),  # v2 inverse, imported from captures
        ("bybit", "ETH-USDT", "spot"),  # v5 spot
        ("bybit", "BTC-EUR", "spot"),
        ("bybit-futures", "BTC-USDT", "linear_perpetual"),
        ("bybit-futures", "BTC-USD", None),  # not a contract journaled there: no guess
        ("binance", "NKN-USDT", "spot"),
        ("binance-futures", "AKRO-USDT", "linear_perpetual"),
        ("binance-futures", "BTC-USD", None),  # COIN-M is not journaled as binance-futures
        ("upbit", "BTC-KRW", "spot"),
        ("bithumb", "BTC-KRW", "spot"),
        ("otc-desk", "BTC-KRW", None),  # a venue the table does not know
        ("binance", "BTC", None),  # not BASE-QUOTE
    ],
)
def test_the_market_is_the_streams_venue_and_quote(
    exchange: str, symbol: str, market: str | None
) -> None:
    assert market_of(exchange, symbol) == market


@pytest.mark.slow
def test_the_real_bybit_inverse_capture_is_inverse_in_every_frame(shm_dir: Path) -> None:
    """BYBIT.ws.26.0 holds v2 inverse perpetuals (BTCUSD, EOSUSD: quantities in USD
    contracts), journaled as bybit like v5 spot: the frames must not call them spot."""
    books = load_books(imported_captures(shm_dir, "BYBIT.ws.26.0"))
    assert books.exchanges == ["bybit"] and sorted(books.symbols) == ["BTC-USD", "EOS-USD"]
    df = books.to_pandas()
    assert set(df["market"].astype(str)) == {"inverse_perpetual"}
    assert books.to_polars()["market"].unique().to_list() == ["inverse_perpetual"]
    assert books.to_arrow()["market"].unique().to_pylist() == ["inverse_perpetual"]


def test_to_pandas_types_and_values(books: journal.analysis.Books) -> None:
    df = books.to_pandas()
    assert list(df.columns) == [
        "exchange", "symbol", "market", "exchange_time", "local_time", "sequence", *LEVELS,
    ]  # fmt: skip
    assert {name: str(df[name].dtype) for name in df.columns} == {
        "exchange": "category",
        "symbol": "category",
        "market": "category",
        "exchange_time": "datetime64[ms, UTC]",
        "local_time": "datetime64[ns, UTC]",
        "sequence": "Int64",
        **{name: "list<item: double>[pyarrow]" for name in LEVELS},
    }
    assert len(df) == BOOKS
    np.testing.assert_array_equal(df["local_time"].astype("int64"), books.local_timestamp_ns)
    np.testing.assert_array_equal(df["exchange_time"].astype("int64"), books.timestamp)  # ms
    assert df["exchange"].tolist() == [books.exchanges[c] for c in books.exchange_code]
    sequence = df["sequence"]
    assert sequence.isna().tolist() == (books.sequence == 0).tolist()
    assert sequence.dropna().tolist() == books.sequence[books.sequence != 0].tolist()
    markets = df.drop_duplicates("exchange").set_index("exchange")["market"]
    assert markets[["binance-futures", "bybit", "upbit"]].tolist() == [
        "linear_perpetual", "spot", "spot",
    ]  # fmt: skip
    assert pd.isna(markets["otc-desk"])
    for name in LEVELS:
        price = getattr(books, name.replace("_qty", "_price"))
        assert [list(v) for v in df[name]] == own_levels(getattr(books, name), price), name


def test_to_polars_types_and_values(books: journal.analysis.Books) -> None:
    frame = books.to_polars()
    assert frame.schema == pl.Schema(
        {
            "exchange": pl.Categorical(),
            "symbol": pl.Categorical(),
            "market": pl.Enum(MARKETS),
            "exchange_time": pl.Datetime("ms", "UTC"),
            "local_time": pl.Datetime("ns", "UTC"),
            "sequence": pl.Int64,
            **{name: pl.List(pl.Float64) for name in LEVELS},
        }
    )
    assert frame["local_time"].dt.epoch("ns").to_list() == books.local_timestamp_ns.tolist()
    assert frame["exchange_time"].dt.epoch("ms").to_list() == books.timestamp.tolist()
    assert frame["sequence"].null_count() == 2 * PER_STREAM  # upbit's and the desk's
    assert frame["market"].null_count() == PER_STREAM  # the desk: no known market
    for name in LEVELS:
        price = getattr(books, name.replace("_qty", "_price"))
        assert frame[name].to_list() == own_levels(getattr(books, name), price), name
    assert frame["bid_price"].list.get(9, null_on_oob=True).null_count() == len(STREAMS) * len(
        range(0, PER_STREAM, 7)
    )


def test_the_wide_layout_has_nulls_past_each_books_depth(books: journal.analysis.Books) -> None:
    frame = books.to_polars("wide")
    df = books.to_pandas("wide")
    for k in range(books.depth):
        for name in LEVELS:
            column = f"{name}_{k}"
            values = getattr(books, name)[:, k]
            missing = ~np.isfinite(getattr(books, name.replace("_qty", "_price"))[:, k])
            assert frame[column].is_null().to_list() == missing.tolist()
            assert str(df[column].dtype) == "Float64"
            assert df[column].isna().tolist() == missing.tolist()
            np.testing.assert_array_equal(frame[column].drop_nulls().to_numpy(), values[~missing])
    with pytest.raises(ValueError, match="layout='tall'"):
        books.to_polars("tall")


@pytest.mark.slow
def test_the_dataframes_hold_what_the_exported_dataset_holds(
    books: journal.analysis.Books, journal_dir: Path, shm_dir: Path
) -> None:
    """The same columns, types and rows as Polars reads from the export (there the
    exchange comes from the directory names, as a string, and a date is added)."""
    out = shm_dir / "export"
    exported(journal_dir, "--parquet", out)
    scanned = pl.scan_parquet(f"{out}/**/*.parquet", hive_partitioning=True).collect()
    mine = books.to_polars()
    order = ["exchange", "symbol", "local_time"]

    def comparable(frame: pl.DataFrame) -> pl.DataFrame:
        return (
            frame.select(mine.columns)
            .with_columns(pl.col("exchange", "symbol", "market").cast(pl.String))
            .sort(order)
        )

    assert comparable(scanned).equals(comparable(mine))
    for name in ("symbol", "exchange_time", "local_time", "sequence", *LEVELS):
        assert scanned.schema[name] == mine.schema[name], name
    assert scanned.schema["date"] == pl.Date
    assert mine.to_arrow().num_rows == books.to_arrow().num_rows == BOOKS


def test_no_books_give_empty_frames_of_the_same_types(journal_dir: Path) -> None:
    with journal.Writer(journal_dir):
        pass
    empty = load_books(journal_dir)
    assert len(empty.to_pandas()) == 0 and str(empty.to_pandas()["local_time"].dtype) == (
        "datetime64[ns, UTC]"
    )
    assert empty.to_polars().schema["bid_price"] == pl.List(pl.Float64)
    assert empty.to_arrow().num_rows == 0


@pytest.mark.parametrize(
    ("missing", "call", "extra"),
    [
        ("pandas", "to_pandas", "pandas"),
        ("pyarrow", "to_pandas", "pandas"),
        ("polars", "to_polars", "polars"),
        ("pyarrow", "to_arrow", "parquet"),
    ],
)
def test_a_missing_extra_is_an_import_error_naming_it(
    books: journal.analysis.Books,
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
    call: str,
    extra: str,
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # import fails
    with pytest.raises(ImportError, match=f"pip install 'orderbook-journal\\[{extra}\\]'"):
        getattr(books, call)()


# -- results -----------------------------------------------------------------------------------


def test_results_into_dataframes(journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_results(journal_dir, [typical(i) for i in range(300)])
    results = load_results(journal_dir)
    df = results.to_pandas()
    assert {name: str(df[name].dtype) for name in ("time", "base", "fx", "stale")} == {
        "time": "datetime64[ns, UTC]",
        "base": "category",
        "fx": "Float64",
        "stale": "boolean",
    }
    assert df["fx"].isna().tolist() == np.isnan(results.fx).tolist()
    assert df["buy_exchange"].isna().tolist() == (results.name("buy_exchange") == "").tolist()
    frame = results.to_polars()
    assert frame.schema["time"] == pl.Datetime("ns", "UTC")
    assert frame.schema["krw_exchange"] == pl.Categorical()
    assert frame["edge_bps"].null_count() == int(np.isnan(results.edge_bps).sum())
    assert frame["time"].dt.epoch("ns").to_list() == results.timestamp_ns.tolist()
    assert frame["stale"].to_list() == [typical(i)["stale"] for i in range(300)]
    assert [x for x in frame["kimchi_premium"].to_list()] == [
        typical(i)["kimchi_premium"] for i in range(300)
    ]
    assert not any(math.isnan(x) for x in frame["fx"].drop_nulls().to_list())
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(ImportError, match=r"pip install 'orderbook-journal\[polars\]'"):
        results.to_polars()
