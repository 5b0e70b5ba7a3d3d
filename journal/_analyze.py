"""``journal analyze`` and ``journal export``: summaries, charts and Parquet from
journal.analysis.load_books."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from journal.analysis import DEFAULT_DEPTH, Books, load_books

KRW, USDT = "KRW", "USDT"
FX_SYMBOL = "USDT-KRW"


# -- per exchange and symbol ------------------------------------------------------------------


@dataclass
class SeriesStats:
    exchange: str
    symbol: str
    books: int
    seconds: float
    rate_per_s: float
    spread_median_bps: float
    spread_p99_bps: float
    sequence_gaps: int
    delay_p50_ms: float
    delay_p99_ms: float
    delay_max_ms: float


def _percentile(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")


def series_stats(books: Books) -> list[SeriesStats]:
    """Update rate, spread, sequence gaps and exchange-to-local delay per series."""
    result = []
    pairs = np.unique(np.stack([books.exchange_code, books.symbol_code], axis=1), axis=0)
    for exchange_code, symbol_code in pairs.tolist():
        rows = np.flatnonzero(
            (books.exchange_code == exchange_code) & (books.symbol_code == symbol_code)
        )
        rows = rows[np.argsort(books.local_timestamp_ns[rows], kind="stable")]
        local = books.local_timestamp_ns[rows]
        seconds = (int(local[-1]) - int(local[0])) / 1e9
        spread = books.select(rows).spread_bps
        sequence = books.sequence[rows]
        both = (sequence[1:] != 0) & (sequence[:-1] != 0)
        gaps = int(np.count_nonzero(both & (np.diff(sequence) != 1)))
        delay_ms = (local - books.timestamp[rows] * 1_000_000) / 1e6
        result.append(
            SeriesStats(
                books.exchanges[exchange_code],
                books.symbols[symbol_code],
                len(rows),
                seconds,
                (len(rows) - 1) / seconds if seconds > 0 else float("nan"),
                _percentile(spread, 50),
                _percentile(spread, 99),
                gaps,
                _percentile(delay_ms, 50),
                _percentile(delay_ms, 99),
                float(delay_ms.max()),
            )
        )
    return result


# -- kimchi premium ----------------------------------------------------------------------------


@dataclass
class Premium:
    """``mid_KRW / (mid_USDT * fx) - 1`` of one base asset on one venue pair, over time."""

    base: str
    krw_exchange: str
    usdt_exchange: str
    time_ns: np.ndarray
    premium: np.ndarray

    def summary(self) -> dict[str, float]:
        p = self.premium * 100
        return {
            "mean_pct": float(np.mean(p)),
            "median_pct": float(np.median(p)),
            "min_pct": float(np.min(p)),
            "max_pct": float(np.max(p)),
            "last_pct": float(p[-1]),
        }


def _mid_series(books: Books, exchange: str, symbol: str) -> tuple[np.ndarray, np.ndarray]:
    """(local times, mids) of one series in time order, books without a mid left out."""
    one = books.where(exchange, symbol)
    order = np.argsort(one.local_timestamp_ns, kind="stable")
    time_ns, mid = one.local_timestamp_ns[order], one.mid[order]
    finite = np.isfinite(mid)
    return time_ns[finite], mid[finite]


def _as_of(times: np.ndarray, series: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The series' latest value at or before each of ``times`` (NaN before its first)."""
    series_time, value = series
    index = np.searchsorted(series_time, times, side="right") - 1
    return np.where(index >= 0, value[np.maximum(index, 0)], np.nan)


def _split(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("-")
    return base, quote


def fx_source(books: Books) -> str | None:
    """The KRW venue whose USDT-KRW book gives the fx rate: the one with most updates."""
    if FX_SYMBOL not in books.symbols:
        return None
    code = books.symbols.index(FX_SYMBOL)
    counts = np.bincount(
        books.exchange_code[books.symbol_code == code], minlength=len(books.exchanges)
    )
    return books.exchanges[int(np.argmax(counts))] if counts.any() else None


def kimchi_premiums(books: Books, fixed_fx: float | None = None) -> tuple[list[Premium], str]:
    """Premium per base asset and (KRW venue, USDT venue) pair, aligned by local time:
    at every update of either book, the as-of mids of both and of the fx book.
    Returns the premiums and where fx came from."""
    if fixed_fx is not None:
        fx_series = (np.array([np.iinfo(np.int64).min]), np.array([fixed_fx]))
        fx_text = f"fixed {fixed_fx:g} KRW/USDT"
    else:
        venue = fx_source(books)
        if venue is None:
            return [], f"no {FX_SYMBOL} book on a KRW venue (give --fx)"
        fx_series = _mid_series(books, venue, FX_SYMBOL)
        fx_text = f"{FX_SYMBOL} mid on {venue}"
    present = {
        (books.exchanges[e], books.symbols[s])
        for e, s in set(zip(books.exchange_code.tolist(), books.symbol_code.tolist(), strict=True))
    }
    krw = sorted((e, _split(s)[0]) for e, s in present if _split(s)[1] == KRW)
    usdt = sorted((e, _split(s)[0]) for e, s in present if _split(s)[1] == USDT)
    result = []
    for krw_exchange, base in krw:
        if base == USDT:
            continue
        for usdt_exchange, other in usdt:
            if other != base:
                continue
            k = _mid_series(books, krw_exchange, f"{base}-{KRW}")
            u = _mid_series(books, usdt_exchange, f"{base}-{USDT}")
            times = np.union1d(k[0], u[0])
            premium = _as_of(times, k) / (_as_of(times, u) * _as_of(times, fx_series)) - 1
            valid = np.isfinite(premium)
            if valid.any():
                result.append(
                    Premium(base, krw_exchange, usdt_exchange, times[valid], premium[valid])
                )
    return result, fx_text


# -- the report ----------------------------------------------------------------------------------


def _time_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def print_summary(
    books: Books, stats: list[SeriesStats], premiums: list[Premium], fx_text: str, out: TextIO
) -> None:
    write = out.write
    if not len(books):
        write("no books in the sources for this range and filter\n")
        return
    local = books.local_timestamp_ns
    write(
        f"{len(books):,} books, {_time_text(int(local.min()))} .. {_time_text(int(local.max()))}"
        f", {len(books.exchanges)} exchanges, {len(books.symbols)} symbols\n\n"
    )
    write(
        f"{'exchange':<10} {'symbol':<12} {'books':>9} {'rate/s':>9} {'spread bps':>11} "
        f"{'p99 bps':>9} {'seq gaps':>9} {'delay p50 ms':>13} {'p99 ms':>9} {'max ms':>9}\n"
    )
    for s in stats:
        write(
            f"{s.exchange:<10} {s.symbol:<12} {s.books:>9,} {s.rate_per_s:>9.2f} "
            f"{s.spread_median_bps:>11.3f} {s.spread_p99_bps:>9.3f} {s.sequence_gaps:>9,} "
            f"{s.delay_p50_ms:>13.3f} {s.delay_p99_ms:>9.3f} {s.delay_max_ms:>9.3f}\n"
        )
    write(f"\nkimchi premium (fx: {fx_text})\n")
    if not premiums:
        write("  none: needs a BASE-KRW and a BASE-USDT book of the same base asset\n")
    for p in premiums:
        s = p.summary()
        write(
            f"  {p.base:<6} {p.krw_exchange}/{p.usdt_exchange:<10} points={len(p.premium):>8,} "
            f"mean={s['mean_pct']:+.3f}% median={s['median_pct']:+.3f}% "
            f"min={s['min_pct']:+.3f}% max={s['max_pct']:+.3f}% last={s['last_pct']:+.3f}%\n"
        )


def write_charts(
    books: Books, stats: list[SeriesStats], premiums: list[Premium], directory: Path
) -> list[Path]:
    """kimchi.png (premium over time), spread.png and delay.png (per series).
    Raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []

    # One panel per base asset, a line per (KRW venue, USDT venue): sixteen lines
    # on one panel hide the one that moves.
    bases = sorted({p.base for p in premiums}) or [""]
    start_ns = min((int(p.time_ns[0]) for p in premiums), default=0)
    figure, panels = plt.subplots(
        len(bases), 1, figsize=(11, 2.2 + 2.2 * len(bases)), sharex=True, squeeze=False
    )
    for axes, base in zip(panels[:, 0], bases, strict=True):
        for p in (p for p in premiums if p.base == base):
            axes.plot(
                (p.time_ns - start_ns) / 1e9,
                p.premium * 100,
                lw=0.8,
                label=f"{p.krw_exchange}/{p.usdt_exchange}",
            )
        axes.set(ylabel=f"{base} premium %")
        axes.grid(alpha=0.3)
        if premiums:
            axes.legend(fontsize=7, loc="upper left", ncol=4)
    panels[0, 0].set_title("Kimchi premium per base asset (KRW venue / USDT venue)")
    panels[-1, 0].set_xlabel("seconds from the first point")
    written.append(_save(figure, directory / "kimchi.png", plt))

    labels = [f"{s.exchange}\n{s.symbol}" for s in stats]
    figure, axes = plt.subplots(figsize=(max(6, len(stats) * 0.9), 5))
    x = np.arange(len(stats))
    axes.bar(x - 0.2, [s.spread_median_bps for s in stats], 0.4, label="median")
    axes.bar(x + 0.2, [s.spread_p99_bps for s in stats], 0.4, label="p99")
    axes.set_xticks(x, labels, fontsize=7)
    axes.set(ylabel="spread bps", title="Spread per exchange and symbol")
    axes.legend()
    written.append(_save(figure, directory / "spread.png", plt))

    figure, axes = plt.subplots(figsize=(max(6, len(stats) * 0.9), 5))
    axes.bar(x - 0.2, [s.delay_p50_ms for s in stats], 0.4, label="p50")
    axes.bar(x + 0.2, [s.delay_p99_ms for s in stats], 0.4, label="p99")
    axes.set_xticks(x, labels, fontsize=7)
    axes.set(ylabel="ms", title="Exchange-to-local delay")
    axes.legend()
    written.append(_save(figure, directory / "delay.png", plt))
    return written


def _save(figure: Any, path: Path, plt: Any) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# -- Parquet -----------------------------------------------------------------------------------


LEVEL_COLUMNS = ("bid_price", "bid_qty", "ask_price", "ask_qty")


def to_arrow(books: Books) -> Any:
    """A pyarrow Table of the columns; the (n, depth) arrays as list<double> columns
    (NaN where a book has fewer levels), names as dictionary-encoded strings next to
    their codes. Raises ImportError without pyarrow."""
    import pyarrow as pa

    n, depth = len(books), books.depth
    offsets = pa.array(np.arange(0, n * depth + 1, depth, dtype=np.int32))
    columns = {
        "timestamp": pa.array(books.timestamp),
        "local_timestamp_ns": pa.array(books.local_timestamp_ns),
        "sequence": pa.array(books.sequence),
        "exchange_code": pa.array(books.exchange_code),
        "symbol_code": pa.array(books.symbol_code),
        "exchange": pa.DictionaryArray.from_arrays(
            pa.array(books.exchange_code), pa.array(books.exchanges, pa.string())
        ),
        "symbol": pa.DictionaryArray.from_arrays(
            pa.array(books.symbol_code), pa.array(books.symbols, pa.string())
        ),
    }
    for name in LEVEL_COLUMNS:
        values = pa.array(np.ascontiguousarray(getattr(books, name)).reshape(-1))
        columns[name] = pa.ListArray.from_arrays(offsets, values)
    metadata = {
        "journal.depth": str(depth),
        "journal.exchanges": json.dumps(books.exchanges),
        "journal.symbols": json.dumps(books.symbols),
    }
    return pa.table(columns).replace_schema_metadata(metadata)


def write_parquet(books: Books, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(books), path, compression="zstd")


# -- the commands --------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Books:
    return load_books(
        args.sources,
        start_ns=args.start,
        end_ns=args.end,
        exchanges=args.exchange,
        symbols=args.symbol,
        depth=args.depth,
    )


def run_analyze(args: argparse.Namespace) -> int:
    books = _load(args)
    stats = series_stats(books) if len(books) else []
    premiums, fx_text = kimchi_premiums(books, args.fx) if len(books) else ([], "")
    print_summary(books, stats, premiums, fx_text, sys.stdout)
    if args.charts:
        try:
            written = write_charts(books, stats, premiums, Path(args.charts))
        except ImportError:
            print(
                "\ncharts not written: matplotlib is not installed "
                "(pip install 'orderbook-journal[analysis]')"
            )
            return 0
        print("\ncharts: " + ", ".join(str(path) for path in written))
    return 0


def run_export(args: argparse.Namespace) -> int:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print(
            "journal export: pyarrow is not installed (pip install 'orderbook-journal[parquet]')",
            file=sys.stderr,
        )
        return 2
    books = _load(args)
    write_parquet(books, Path(args.parquet))
    print(f"{len(books):,} books -> {args.parquet}")
    return 0


def add_source_arguments(parser: argparse.ArgumentParser, parse_time: Any) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="archive files, ARCHIVE/<stream> or ARCHIVE directories, journal directories",
    )
    parser.add_argument(
        "--from",
        dest="start",
        type=parse_time,
        help="first local time (ns since the epoch or ISO-8601 with zone)",
    )
    parser.add_argument(
        "--to", dest="end", type=parse_time, help="end of the range (exclusive), as --from"
    )
    parser.add_argument("--exchange", action="append", help="only this exchange (repeatable)")
    parser.add_argument(
        "--symbol", action="append", help="only this symbol, e.g. BTC-KRW (repeatable)"
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=DEFAULT_DEPTH,
        help=f"levels per side (default {DEFAULT_DEPTH})",
    )
