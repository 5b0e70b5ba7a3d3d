"""``journal analyze`` and ``journal export``: summaries, charts and Parquet from
journal.analysis.load_books.

What a trader reads off them has to be true: sequence gaps are counted only where the
venue makes its sequence contiguous (journal.feeds.venue_sequence; elsewhere a
sequence that goes back or repeats is counted instead), the header describes the
books in range, and the kimchi premium is shown against UTC clock time beside the
executable edge (from the radar's results journal when one is among the sources,
else from the books for a notional, without fees, and labelled so).

Outputs appear whole or not at all: each chart is written under a temporary name and
renamed, the export's dataset in a staging directory published by renames
(journal.analysis._dataset), so Ctrl-C (exit 130, "interrupted") or an error leaves
no partial file.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np

from journal._errors import JournalError
from journal._paths import replaceable_file_problem
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._verify import RADAR_RESULT_SCHEMA
from journal.analysis import DEFAULT_DEPTH, Books, load_books, load_results
from journal.analysis._dataset import ROW_GROUP_ROWS, dataset_problem, write_dataset
from journal.analysis._load import SourceContents, load_books_with_contents, source_parts
from journal.analysis._progress import Progress
from journal.analysis._table import book_schema, books_arrow, parquet_options
from journal.archive._archive import ArchiveReader
from journal.feeds import SequenceRule, venue_sequence

KRW, USDT = "KRW", "USDT"
FX_SYMBOL = "USDT-KRW"
EDGE_NOTIONAL_KRW: Final = 10_000_000.0
"""The notional of the executable edge computed from the books: the radar's default
(``--notional-krw``), so that the two can be compared."""
CHART_BUCKETS: Final = 1500
"""Time buckets a chart line is drawn with at most (about one per pixel): a bucket
keeps its lowest and highest value, so no spike is lost and a day of updates draws
as fast as a minute."""
INTERRUPTED: Final = 130
"""Exit status after Ctrl-C, as a shell reports a process killed by SIGINT."""


# -- per exchange and symbol ------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceCheck:
    """One stream's sequence, checked by its venue's rule (journal.feeds.venue_sequence).

    ``steps``: pairs of consecutive books that both carry a sequence (0 is none).
    ``gaps``: steps of more than 1, None where the venue's sequence is not contiguous
    (a larger step is normal there). ``backwards``: steps below 0 (out of order);
    ``repeated``: steps of 0.
    """

    rule: SequenceRule
    steps: int
    gaps: int | None
    backwards: int
    repeated: int


def check_sequence(exchange: str, sequence: np.ndarray) -> SequenceCheck:
    """The steps of ``sequence`` (one stream's, in time order) under the venue's rule."""
    rule = venue_sequence(exchange).rule
    both = (sequence[1:] != 0) & (sequence[:-1] != 0)
    step = np.diff(sequence)[both]
    gaps = int(np.count_nonzero(step > 1)) if rule is SequenceRule.CONTIGUOUS else None
    return SequenceCheck(
        rule, len(step), gaps, int(np.count_nonzero(step < 0)), int(np.count_nonzero(step == 0))
    )


@dataclass
class SeriesStats:
    """One stream's figures: books, their rate, spread (bps), sequence, delay (ms)."""

    exchange: str
    symbol: str
    books: int
    seconds: float
    rate_per_s: float
    spread_median_bps: float
    spread_p99_bps: float
    sequence: SequenceCheck
    delay_p50_ms: float
    delay_p99_ms: float
    delay_max_ms: float


def _percentile(values: np.ndarray, q: float) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _streams(books: Books) -> list[tuple[int, int]]:
    """The (exchange code, symbol code) of every stream that has books (the names of
    records filtered out or out of range are in ``books.exchanges``/``symbols`` too)."""
    pairs = np.unique(np.stack([books.exchange_code, books.symbol_code], axis=1), axis=0)
    return [(int(e), int(s)) for e, s in pairs.tolist()]


def _stream_rows(books: Books, exchange_code: int, symbol_code: int) -> np.ndarray:
    """The rows of one stream in local time order (rows come in source order)."""
    rows = np.flatnonzero(
        (books.exchange_code == exchange_code) & (books.symbol_code == symbol_code)
    )
    return rows[np.argsort(books.local_timestamp_ns[rows], kind="stable")]


def series_stats(books: Books) -> list[SeriesStats]:
    """Update rate, spread, sequence check and exchange-to-local delay per series, in
    the order exchange, then symbol."""
    result = []
    for exchange_code, symbol_code in _streams(books):
        rows = _stream_rows(books, exchange_code, symbol_code)
        local = books.local_timestamp_ns[rows]
        seconds = (int(local[-1]) - int(local[0])) / 1e9
        spread = books.select(rows).spread_bps
        delay_ms = (local - books.timestamp[rows] * 1_000_000) / 1e6
        exchange = books.exchanges[exchange_code]
        result.append(
            SeriesStats(
                exchange,
                books.symbols[symbol_code],
                len(rows),
                seconds,
                (len(rows) - 1) / seconds if seconds > 0 else float("nan"),
                _percentile(spread, 50),
                _percentile(spread, 99),
                check_sequence(exchange, books.sequence[rows]),
                _percentile(delay_ms, 50),
                _percentile(delay_ms, 99),
                float(delay_ms.max()),
            )
        )
    return sorted(result, key=lambda s: (s.exchange, s.symbol))


# -- kimchi premium and executable edge ---------------------------------------------------------


@dataclass
class Premium:
    """One base asset on one (KRW venue, USDT venue) pair, at every update of either
    book (local time, ns): ``premium`` = mid_KRW / (mid_USDT * fx) - 1 and ``edge``,
    the executable edge of those books (executable_edge, no fees), both fractions."""

    base: str
    krw_exchange: str
    usdt_exchange: str
    time_ns: np.ndarray
    premium: np.ndarray
    edge: np.ndarray

    def summary(self) -> dict[str, float]:
        p = self.premium * 100
        return {
            "mean_pct": float(np.mean(p)),
            "median_pct": float(np.median(p)),
            "min_pct": float(np.min(p)),
            "max_pct": float(np.max(p)),
            "last_pct": float(p[-1]),
            **_edge_summary(self.time_ns, self.edge),
        }


def _edge_summary(time_ns: np.ndarray, edge: np.ndarray) -> dict[str, float]:
    """Median and highest edge (%), and the share of the time (%) it was positive:
    each value holds until the next one (the series' last instant counts for none)."""
    filled = np.isfinite(edge)
    held = np.diff(time_ns, append=time_ns[-1]).astype(np.float64)
    total = held.sum()
    positive = held[filled & (edge > 0)].sum()
    e = edge[filled] * 100
    return {
        "edge_median_pct": float(np.median(e)) if len(e) else float("nan"),
        "edge_max_pct": float(e.max()) if len(e) else float("nan"),
        "edge_positive_time_pct": float(100 * positive / total) if total > 0 else float("nan"),
    }


def _stream(
    books: Books, mid: np.ndarray, exchange: str, symbol: str
) -> tuple[np.ndarray, np.ndarray]:
    """(local times, rows) of one stream's two-sided books (those with a mid), in time
    order."""
    rows = _stream_rows(books, books.exchanges.index(exchange), books.symbols.index(symbol))
    rows = rows[np.isfinite(mid[rows])]
    return books.local_timestamp_ns[rows], rows


def _as_of(times: np.ndarray, series_time: np.ndarray) -> np.ndarray:
    """For each of ``times``, the index of the series' latest point at or before it
    (-1 before its first)."""
    return np.searchsorted(series_time, times, side="right") - 1


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
    """Premium and executable edge (for EDGE_NOTIONAL_KRW) per base asset and (KRW
    venue, USDT venue) pair, aligned by local time: at every update of either book,
    the latest books of both and the latest fx. Returns them and where fx came from."""
    if not len(books):
        return [], "no books"
    mid = books.mid
    if fixed_fx is not None:
        fx_time, fx_values = np.array([np.iinfo(np.int64).min]), np.array([fixed_fx])
        fx_text = f"fixed {fixed_fx:g} KRW/USDT"
    else:
        venue = fx_source(books)
        if venue is None:
            return [], f"no {FX_SYMBOL} book on a KRW venue (give --fx)"
        fx_time, fx_rows = _stream(books, mid, venue, FX_SYMBOL)
        fx_values = mid[fx_rows]
        fx_text = f"{FX_SYMBOL} mid on {venue}"
    present = [(books.exchanges[e], books.symbols[s]) for e, s in _streams(books)]
    krw = sorted((_split(s)[0], e) for e, s in present if _split(s)[1] == KRW)
    usdt = sorted((_split(s)[0], e) for e, s in present if _split(s)[1] == USDT)
    result = []
    for base, krw_exchange in krw:
        for usdt_exchange in (e for b, e in usdt if b == base and base != USDT):
            k_time, k_rows = _stream(books, mid, krw_exchange, f"{base}-{KRW}")
            u_time, u_rows = _stream(books, mid, usdt_exchange, f"{base}-{USDT}")
            times = np.union1d(k_time, u_time)
            k, u, f = _as_of(times, k_time), _as_of(times, u_time), _as_of(times, fx_time)
            fx = np.where(f >= 0, fx_values[np.maximum(f, 0)], np.nan)
            valid = (k >= 0) & (u >= 0) & np.isfinite(fx)
            if not valid.any():
                continue
            k, u, fx = k_rows[k[valid]], u_rows[u[valid]], fx[valid]
            premium = mid[k] / (mid[u] * fx) - 1
            edge = executable_edge(books, k, u, fx, EDGE_NOTIONAL_KRW)
            result.append(Premium(base, krw_exchange, usdt_exchange, times[valid], premium, edge))
    return result, fx_text


def executable_edge(
    books: Books, krw_rows: np.ndarray, usdt_rows: np.ndarray, fx: np.ndarray, notional_krw: float
) -> np.ndarray:
    """The radar's executable edge (radar_reader/include/radar_reader/engine.hpp) with
    no fees, a fraction, for each pair of books: buy ``notional_krw`` walking one
    venue's asks, sell that quantity (or what the other's bids hold) into the other's
    bids, USDT prices times ``fx``; the better of the two directions, NaN when
    neither fills. Only the levels loaded (``depth``) are walked."""
    k_bid = (books.bid_price[krw_rows], books.bid_qty[krw_rows])
    k_ask = (books.ask_price[krw_rows], books.ask_qty[krw_rows])
    u_bid = (books.bid_price[usdt_rows] * fx[:, None], books.bid_qty[usdt_rows])
    u_ask = (books.ask_price[usdt_rows] * fx[:, None], books.ask_qty[usdt_rows])
    return np.fmax(_edge(u_ask, k_bid, notional_krw), _edge(k_ask, u_bid, notional_krw))


def _edge(
    asks: tuple[np.ndarray, np.ndarray], bids: tuple[np.ndarray, np.ndarray], notional: float
) -> np.ndarray:
    """(proceeds - cost) / cost of buying with ``notional`` on ``asks`` and selling the
    same quantity into ``bids``, each side (prices, quantities), NaN past its depth."""
    ask_price, ask_qty = _levels_there(*asks)
    bid_price, bid_qty = _levels_there(*bids)
    cost = ask_price * ask_qty
    spent_before = np.cumsum(cost, axis=1) - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        affordable = np.where(ask_qty > 0, (notional - spent_before) / ask_price, 0.0)
        quantity = np.minimum(np.clip(affordable, 0, ask_qty).sum(axis=1), bid_qty.sum(axis=1))
        paid = _walk(ask_price, ask_qty, quantity)
        edge = (_walk(bid_price, bid_qty, quantity) - paid) / paid
    return np.where(quantity > 0, edge, np.nan)


def _levels_there(price: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The levels with zeros where there is none (NaN price or quantity)."""
    there = np.isfinite(price) & np.isfinite(qty)
    return np.where(there, price, 0.0), np.where(there, qty, 0.0)


def _walk(price: np.ndarray, qty: np.ndarray, quantity: np.ndarray) -> np.ndarray:
    """The value of ``quantity`` (per row) taken from the best level on."""
    before = np.cumsum(qty, axis=1) - qty
    return (np.clip(quantity[:, None] - before, 0, qty) * price).sum(axis=1)


# -- the radar's results ------------------------------------------------------------------------


@dataclass
class RadarEdge:
    """The radar's results for one pair: ``edge`` after the taker fees it was run with
    (``radar --fee``), a fraction, NaN when stale or unfilled, for ``notional_krw``,
    at the local time of the book that triggered each result."""

    base: str
    krw_exchange: str
    usdt_exchange: str
    time_ns: np.ndarray
    edge: np.ndarray
    notional_krw: float

    def summary(self) -> dict[str, float]:
        return _edge_summary(self.time_ns, self.edge)


def is_results_journal(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` holds the radar's results (payload RDR1): a journal
    directory, an archive file or an archive stream directory (judged by its first
    segment or archive; load_books or load_results says what is wrong with the rest)."""
    try:
        parts = source_parts(Path(source))
        journal_dir, archive = parts[0]
        if journal_dir is not None:
            newest = segment_indices(journal_dir)[-1]
            with MappedSegment(segment_path(journal_dir, newest)) as segment:
                payload_id = segment.header.payload_id
        else:
            with ArchiveReader(archive) as reader:  # type: ignore[arg-type]
                payload_id = reader.header.payload_id
    except (OSError, JournalError, IndexError):  # load_books says what is wrong with it
        return False
    return payload_id == RADAR_RESULT_SCHEMA.payload_id


def radar_edges(
    paths: Iterable[str | os.PathLike[str]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    exchanges: Iterable[str] | None = None,
) -> list[RadarEdge]:
    """The results journals' (and archives') edges per pair (load_results), in the
    time range (on the triggering book's local time) and, given ``exchanges``, for
    the pairs of those venues; each pair's results in local time order."""
    results = load_results(list(paths), exchanges=exchanges)
    local = results.source_local_timestamp_ns
    keep = np.ones(len(results), dtype=bool)
    if start_ns is not None:
        keep &= local >= start_ns
    if end_ns is not None:
        keep &= local < end_ns
    results = results.select(keep)
    codes = np.stack(
        [results.base_code, results.krw_exchange_code, results.usdt_exchange_code], axis=1
    )
    pairs = np.unique(codes, axis=0) if len(results) else np.zeros((0, 3), np.int32)
    names = results.names
    found = []
    for base, krw, usdt in pairs.tolist():
        rows = np.flatnonzero((codes == (base, krw, usdt)).all(axis=1))
        rows = rows[np.argsort(results.source_local_timestamp_ns[rows], kind="stable")]
        found.append(
            RadarEdge(
                names[base],
                names[krw],
                names[usdt],
                results.source_local_timestamp_ns[rows],
                results.edge_bps[rows] / 1e4,
                float(results.notional_krw[rows[0]]),
            )
        )
    return sorted(found, key=lambda e: (e.base, e.krw_exchange, e.usdt_exchange))


# -- the report ----------------------------------------------------------------------------------


def _time_text(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], left: int = 2) -> list[str]:
    """Lines of a text table, each column as wide as its widest cell; the first
    ``left`` columns aligned left, the others right."""
    cells = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
    return [
        "  ".join(
            cell.ljust(width) if c < left else cell.rjust(width)
            for c, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def _gaps_text(books: Books) -> str:
    return "segments missing, read around (--allow-gaps): " + "; ".join(map(str, books.gaps))


def _number(value: float, digits: int) -> str:
    return "-" if not np.isfinite(value) else f"{value:,.{digits}f}"


def _count(value: int | None, checked: bool) -> str:
    return "-" if value is None or not checked else f"{value:,}"


def _sequence_notes(stats: list[SeriesStats]) -> list[str]:
    """Per venue, what its sequence is and so what the seq columns count."""
    lines = []
    venues = sorted({s.exchange for s in stats})
    width = max(map(len, venues))
    for venue in venues:
        known = venue_sequence(venue)
        if not any(s.sequence.steps for s in stats if s.exchange == venue):
            what = "no sequence in these books (0): not checked"
        elif known.rule is SequenceRule.CONTIGUOUS:
            what = f"{known.stored}: contiguous, a step of more than 1 is a gap"
        else:
            what = f"{known.stored}: not contiguous, gaps not counted"
        lines.append(f"  {venue.ljust(width)}  {what}")
    return lines


def print_summary(
    books: Books,
    stats: list[SeriesStats],
    premiums: list[Premium],
    fx_text: str,
    out: TextIO,
    radar: Sequence[RadarEdge] = (),
) -> None:
    """The text report: the books in range (header, a row per stream, what each
    venue's sequence is, the kimchi premiums), then the radar's results if any."""
    write = out.write
    if len(books):
        _print_books(books, stats, premiums, fx_text, write)
    else:
        write("no books in the sources for this range and filter\n")
    if radar:
        _print_radar(radar, write)


def _print_books(
    books: Books,
    stats: list[SeriesStats],
    premiums: list[Premium],
    fx_text: str,
    write: Callable[[str], Any],
) -> None:
    local = books.local_timestamp_ns
    write(
        f"{len(books):,} books, {_time_text(int(local.min()))} .. {_time_text(int(local.max()))}"
        f", {len(np.unique(books.exchange_code))} exchanges, "
        f"{len(np.unique(books.symbol_code))} symbols\n"
    )
    if books.gaps:
        write(_gaps_text(books) + "\n")
    header = ("exchange", "symbol", "books", "rate/s", "spread bps", "p99 bps")
    header += ("seq gaps", "seq back", "seq repeat", "delay p50 ms", "p99 ms", "max ms")
    rows = []
    for s in stats:
        checked = s.sequence.steps > 0
        rows.append(
            (
                s.exchange,
                s.symbol,
                f"{s.books:,}",
                _number(s.rate_per_s, 2),
                _number(s.spread_median_bps, 3),
                _number(s.spread_p99_bps, 3),
                _count(s.sequence.gaps, checked),
                _count(s.sequence.backwards, checked),
                _count(s.sequence.repeated, checked),
                _number(s.delay_p50_ms, 3),
                _number(s.delay_p99_ms, 3),
                _number(s.delay_max_ms, 3),
            )
        )
    write("\n" + "\n".join(_table(header, rows)) + "\n")
    write(
        "\nsequence per venue (seq back: lower than the book before, out of order; seq "
        "repeat: the same; -: not counted):\n" + "\n".join(_sequence_notes(stats)) + "\n"
    )
    write(f"\nkimchi premium, % (fx: {fx_text})\n")
    if not premiums:
        write("  none: needs a BASE-KRW and a BASE-USDT book of the same base asset\n")
    else:
        _print_premiums(premiums, write)


def _print_premiums(premiums: list[Premium], write: Callable[[str], Any]) -> None:
    header = ("base", "KRW venue / USDT venue", "points", "mean", "median", "min", "max")
    header += ("last", "edge p50", "edge max", "edge>0 time")
    rows = []
    for p in premiums:
        s = p.summary()
        rows.append(
            (
                p.base,
                f"{p.krw_exchange} / {p.usdt_exchange}",
                f"{len(p.premium):,}",
                *(
                    _signed(s[key])
                    for key in ("mean_pct", "median_pct", "min_pct", "max_pct", "last_pct")
                ),
                _signed(s["edge_median_pct"]),
                _signed(s["edge_max_pct"]),
                _number(s["edge_positive_time_pct"], 1),
            )
        )
    write("\n".join("  " + line for line in _table(header, rows)) + "\n")
    write(
        f"  edge: executable edge from the books for {EDGE_NOTIONAL_KRW:,.0f} KRW, the better "
        "direction, NO FEES (the radar's definition); edge>0 time: % of the time it was "
        "positive\n"
    )


def _signed(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:+.3f}"


def _print_radar(radar: Sequence[RadarEdge], write: Callable[[str], Any]) -> None:
    header = ("base", "KRW venue / USDT venue", "results", "no edge", "edge p50", "edge max")
    header += ("edge>0 time", "notional KRW")
    rows = []
    for r in radar:
        s = r.summary()
        rows.append(
            (
                r.base,
                f"{r.krw_exchange} / {r.usdt_exchange}",
                f"{len(r.edge):,}",
                f"{int(np.count_nonzero(~np.isfinite(r.edge))):,}",
                _signed(s["edge_median_pct"]),
                _signed(s["edge_max_pct"]),
                _number(s["edge_positive_time_pct"], 1),
                f"{r.notional_krw:,.0f}",
            )
        )
    write("\nradar results: executable edge after the radar's taker fees, %\n")
    write("\n".join("  " + line for line in _table(header, rows)) + "\n")
    write("  no edge: stale books or fx, or no fill (the radar's NaN)\n")


# -- charts ---------------------------------------------------------------------------------------


_STYLE: Final = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 11,
    "figure.titlesize": 14,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "timezone": "UTC",
}


def write_charts(
    books: Books,
    stats: list[SeriesStats],
    premiums: list[Premium],
    directory: Path,
    *,
    radar: Sequence[RadarEdge] = (),
    fx_text: str | None = None,
) -> list[Path]:
    """kimchi.png (premium and executable edge over UTC time; only if there is a
    premium), spread.png and delay.png (per stream). Raises ImportError without
    matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context(_STYLE):
        if premiums:
            figure = _kimchi_figure(plt, premiums, radar, fx_text)
            written.append(_save(plt, figure, directory / "kimchi.png"))
        if stats:
            spread = [(s.spread_median_bps, s.spread_p99_bps, np.nan) for s in stats]
            figure = _dot_figure(
                plt,
                stats,
                spread,
                "Bid-ask spread per stream: median (dot) to p99 (bar end)",
                "spread, bps (log scale)",
                log=True,
            )
            written.append(_save(plt, figure, directory / "spread.png"))
            delay = [(s.delay_p50_ms, s.delay_p99_ms, s.delay_max_ms) for s in stats]
            figure = _dot_figure(
                plt,
                stats,
                delay,
                "Exchange time to local receive time: p50 (dot) to p99 (bar end), max (x)",
                "delay, ms (negative: the clocks disagree)",
                log=False,
            )
            written.append(_save(plt, figure, directory / "delay.png"))
    return written


def _kimchi_figure(
    plt: Any, premiums: list[Premium], radar: Sequence[RadarEdge], fx_text: str | None
) -> Any:
    """A row per base asset: the mid premium on the left, the executable edge on the
    right (the radar's if given, else the books'), both in % on one scale so that the
    two compare at a glance, against UTC time; one colour per venue pair."""
    pairs = sorted({(p.krw_exchange, p.usdt_exchange) for p in premiums})
    pairs += sorted({(r.krw_exchange, r.usdt_exchange) for r in radar} - set(pairs))
    palette = plt.get_cmap("tab10" if len(pairs) <= 10 else "tab20").colors
    colour = {pair: palette[k % len(palette)] for k, pair in enumerate(pairs)}
    bases = sorted({p.base for p in premiums})
    figure, panels = plt.subplots(
        len(bases),
        2,
        figsize=(15, 1.6 + 2.7 * len(bases)),
        sharex=True,
        sharey="row",
        squeeze=False,
    )
    if radar:
        notional = ", ".join(sorted({f"{r.notional_krw:,.0f}" for r in radar}))
        edge_title = f"Executable edge after the radar's taker fees, {notional} KRW (radar)"
        edges: Sequence[Premium | RadarEdge] = radar
    else:
        edge_title = f"Executable edge for {EDGE_NOTIONAL_KRW:,.0f} KRW, NO FEES (from the books)"
        edges = premiums
    for row, base in zip(panels, bases, strict=True):
        left, right = row
        for p in (p for p in premiums if p.base == base):
            _line(left, p.time_ns, p.premium * 100, colour[p.krw_exchange, p.usdt_exchange])
        for e in (e for e in edges if e.base == base):
            _line(right, e.time_ns, e.edge * 100, colour[e.krw_exchange, e.usdt_exchange])
        low, high = right.get_ylim()
        if low < 0 < high:  # break-even, where it is in view (not squeezing the lines)
            right.axhline(0, color="black", lw=1.0, ls="--")
            right.set_ylim(low, high)
        left.set_ylabel(f"{base}, %", fontsize=13, fontweight="bold")
        right.tick_params(labelleft=True)
    panels[0, 0].set_title("Kimchi premium, mid: KRW mid / (USDT mid x fx) - 1")
    panels[0, 1].set_title(edge_title)
    times = np.concatenate([p.time_ns[[0, -1]] for p in premiums])
    for axes in panels[-1]:
        _time_axis(axes, times)
    handles = [
        plt.Line2D([], [], color=colour[pair], lw=3, label=f"{pair[0]} / {pair[1]}")
        for pair in pairs
    ]
    title = "Kimchi premium per base asset, KRW venue / USDT venue: " + _span_text(times)
    figure.suptitle(title + (f"  (fx: {fx_text})" if fx_text else ""))
    figure.legend(
        handles=handles,
        loc="upper center",
        ncol=min(len(handles), 6),
        bbox_to_anchor=(0.5, 1 - 0.45 / figure.get_figheight()),
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.75 / figure.get_figheight()))
    return figure


def _span_text(times: np.ndarray) -> str:
    """``2026-12-04 21:14:34 .. 21:15:04 UTC`` (the end's date only if another day, ms
    if the span is under a minute)."""
    first, last = (datetime.fromtimestamp(int(t) / 1e9, UTC) for t in (times.min(), times.max()))
    cut = -3 if (last - first).total_seconds() < 60 else -7
    end = last.strftime("%H:%M:%S.%f" if last.date() == first.date() else "%Y-%m-%d %H:%M:%S.%f")
    return f"{first:%Y-%m-%d %H:%M:%S.%f}"[:cut] + f" .. {end[:cut]} UTC"


def _line(axes: Any, time_ns: np.ndarray, values: np.ndarray, colour: Any) -> None:
    """A series against UTC time, as a step line (each value holds until the next),
    thinned to CHART_BUCKETS buckets keeping each one's low and high."""
    time_ns, values = _thin(time_ns, values, CHART_BUCKETS)
    x = time_ns.astype("datetime64[ns]")
    axes.plot(x, values, color=colour, lw=1.0, alpha=0.85, drawstyle="steps-post")


def _thin(time_ns: np.ndarray, values: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """The points of the lowest and highest value of each of ``buckets`` equal time
    buckets, and the first NaN of each run of them (so a series that goes dark shows
    a hole), in time order."""
    if len(time_ns) <= 2 * buckets:
        return time_ns, values
    span = max(int(time_ns[-1]) - int(time_ns[0]), 1)
    bucket = ((time_ns - time_ns[0]) * (buckets / span)).astype(np.int64)
    finite = np.isfinite(values)
    keep = ~finite & np.append(True, finite[:-1])
    points = np.flatnonzero(finite)
    by_value = points[np.lexsort((values[points], bucket[points]))]  # in each bucket
    lowest = np.flatnonzero(np.diff(bucket[by_value], prepend=-1))
    highest = np.append(lowest[1:], len(by_value)) - 1
    keep[by_value[lowest]] = keep[by_value[highest]] = True
    return time_ns[keep], values[keep]


def _time_axis(axes: Any, times: np.ndarray) -> None:
    """Clock times as a trader reads them (``21:14:35``; ms under a 5 s span, the
    date at each tick across days), the day in the label."""
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter

    first, last = (datetime.fromtimestamp(int(t) / 1e9, UTC) for t in (times.min(), times.max()))
    seconds = (last - first).total_seconds()
    if first.date() != last.date():
        text, label = "%m-%d %H:%M", "time, UTC"
    else:
        text = "%H:%M:%S.%f" if seconds < 5 else "%H:%M:%S" if seconds < 3 * 3600 else "%H:%M"
        label = f"time, UTC, {first:%Y-%m-%d}"
    cut = -3 if text.endswith("%f") else None  # microseconds to milliseconds
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=4, maxticks=8))
    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: mdates.num2date(x, UTC).strftime(text)[:cut])
    )
    axes.set_xlabel(label)


def _dot_figure(
    plt: Any,
    stats: list[SeriesStats],
    values: list[tuple[float, float, float]],
    title: str,
    xlabel: str,
    *,
    log: bool,
) -> Any:
    """A row per stream, grouped by symbol: a dot at the typical value, a bar to the
    p99, an x at the extreme (NaN: none), coloured by venue, the typical and p99
    values written beside them. Horizontal, so that the names stay readable however
    many streams there are."""
    order = sorted(range(len(stats)), key=lambda k: (stats[k].symbol, stats[k].exchange))
    venues = sorted({s.exchange for s in stats})
    palette = plt.get_cmap("tab10").colors
    colour = {venue: palette[k % len(palette)] for k, venue in enumerate(venues)}
    figure, axes = plt.subplots(figsize=(12, 1.4 + 0.5 * len(stats)))
    for y, k in enumerate(order):
        typical, tail, extreme = values[k]
        c = colour[stats[k].exchange]
        if log and not typical > 0:
            axes.annotate("0 or none", (1, y), xycoords=("axes fraction", "data"), ha="right")
            continue
        axes.plot([typical, tail], [y, y], color=c, lw=4, alpha=0.45, solid_capstyle="butt")
        axes.plot([typical], [y], "o", color=c, ms=8)
        if np.isfinite(extreme):
            axes.plot([extreme], [y], "x", color=c, ms=8, mew=2)
        axes.annotate(
            _short(typical), (typical, y), xytext=(0, 5), textcoords="offset points", ha="center"
        )
        if np.isfinite(tail):
            axes.annotate(
                f"p99 {_short(tail)}",
                (tail, y),
                xytext=(0, -6),
                textcoords="offset points",
                ha="center",
                va="top",
                color="dimgrey",
                fontsize=9,
            )
    labels = [f"{stats[k].symbol}  {stats[k].exchange}" for k in order]
    axes.set_yticks(range(len(order)), labels)
    for y in range(1, len(order)):
        if stats[order[y]].symbol != stats[order[y - 1]].symbol:
            axes.axhline(y - 0.5, color="grey", lw=0.8)
    axes.set_ylim(len(order) - 0.5, -0.7)
    axes.margins(x=0.06)  # room for the labels at the ends
    if log:
        from matplotlib.ticker import FuncFormatter

        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.set_xlabel(xlabel)
    axes.set_title(title, pad=34)
    axes.grid(axis="y", visible=False)
    handles = [plt.Line2D([], [], color=colour[v], marker="o", lw=0, label=v) for v in venues]
    axes.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=len(venues),
        frameon=False,
    )
    figure.tight_layout()
    return figure


def _short(value: float) -> str:
    """3 significant digits, whole numbers from 100 on (1,470, not 1.47e+03)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _save(plt: Any, figure: Any, path: Path) -> Path:
    try:
        with _replacing(path) as temporary:
            figure.savefig(temporary, dpi=110, format="png")
    finally:
        plt.close(figure)
    return path


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to; renamed to ``path`` once written,
    removed if anything (Ctrl-C included) stops the writing: ``path`` is the whole
    new file, or what it was."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Made here, new, not through a link planted at its name; the writers reopen it.
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- Parquet -----------------------------------------------------------------------------------


def write_parquet(books: Books, path: Path) -> None:
    """One zstd Parquet file of books_arrow's columns (``journal export`` writes a
    partitioned dataset, journal.analysis._dataset; this one file is for a script or
    a benchmark), a row group at a time, under a temporary name until complete."""
    import pyarrow.parquet as pq

    table = books_arrow(books)
    with (
        _replacing(path) as temporary,
        pq.ParquetWriter(temporary, table.schema, **parquet_options(table.schema)) as writer,
    ):
        for start in range(0, max(len(books), 1), ROW_GROUP_ROWS):
            writer.write_table(table.slice(start, ROW_GROUP_ROWS))


# -- the commands --------------------------------------------------------------------------------


def _load(
    args: argparse.Namespace,
    sources: Sequence[str],
    progress: Callable[[int, int | None], None] | None = None,
) -> Books:
    return load_books(
        sources,
        start_ns=args.start,
        end_ns=args.end,
        exchanges=args.exchange,
        symbols=args.symbol,
        depth=args.depth,
        allow_gaps=args.allow_gaps,
        progress=progress,
    )


def _interruptible(command: str, run: Callable[[], int]) -> int:
    """``run()``, or after Ctrl-C one line and INTERRUPTED: the loader's threads are
    stopped and the partial outputs removed by then (load_books, _replacing)."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"journal {command}: interrupted", file=sys.stderr)
        return INTERRUPTED


def _output_problem(path: Path, option: str, *, directory: bool) -> str | None:
    """Why ``path`` (a file to write, or a ``directory`` to write files in, made if
    missing) cannot be written, checked before anything is loaded; None if it can."""
    if directory:
        if path.exists() and not path.is_dir():
            return f"{option} {path}: not a directory; give a directory for the files"
        existing = next(p for p in (path, *path.parents) if p.exists())
    else:
        if path.is_dir():
            return f"{option} {path}: a directory; give a file, e.g. {path / 'books.parquet'}"
        if problem := replaceable_file_problem(path):
            return f"{option} {problem}"
        existing = path.parent
        if not existing.is_dir():
            what = "is not a directory" if existing.exists() else "does not exist"
            return f"{option} {path}: {existing} {what}; create the directory or write elsewhere"
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return f"{option} {path}: cannot write in {existing}; give a path you can write to"
    return None


def run_analyze(args: argparse.Namespace) -> int:
    if args.charts and (problem := _output_problem(Path(args.charts), "--charts", directory=True)):
        print(f"journal analyze: {problem}", file=sys.stderr)
        return 2
    return _interruptible("analyze", lambda: _analyze(args))


def _analyze(args: argparse.Namespace) -> int:
    results = [s for s in args.sources if is_results_journal(s)]
    sources = [s for s in args.sources if s not in results]
    books = _load(args, sources)
    radar = radar_edges(results, args.start, args.end, args.exchange) if results else []
    stats = series_stats(books) if len(books) else []
    premiums, fx_text = kimchi_premiums(books, args.fx)
    print_summary(books, stats, premiums, fx_text, sys.stdout, radar)
    if not args.charts:
        return 0
    if not len(books):
        print("\ncharts not written: no books to draw")
        return 0
    try:
        written = write_charts(
            books, stats, premiums, Path(args.charts), radar=radar, fx_text=fx_text
        )
    except ImportError:
        print(
            "\ncharts not written: matplotlib is not installed "
            "(pip install 'orderbook-journal[analysis]')"
        )
        return 0
    print("\ncharts: " + ", ".join(str(path) for path in written))
    if not premiums:
        print("kimchi.png not written: no kimchi premium to draw (see above)")
    return 0


def export_mode(args: argparse.Namespace) -> str:
    """journal.analysis._dataset's mode from ``--overwrite`` / ``--replace-partitions``."""
    if args.overwrite:
        return "overwrite"
    return "replace_partitions" if args.replace_partitions else "new"


def run_export(args: argparse.Namespace) -> int:
    if not math.isfinite(args.progress_interval) or args.progress_interval < 0:
        print(
            f"journal export: --progress-interval {args.progress_interval:g}: give 0 or "
            "more seconds (a finite number)",
            file=sys.stderr,
        )
        return 2
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        print(
            "journal export: pyarrow is not installed (pip install 'orderbook-journal[parquet]')",
            file=sys.stderr,
        )
        return 2
    schema = book_schema(
        args.depth, args.layout, exchange=False, local_time_unit=args.local_time_unit
    )
    if problem := dataset_problem(Path(args.parquet), export_mode(args), schema):
        print(f"journal export: --parquet {problem}", file=sys.stderr)
        return 2
    return _interruptible("export", lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    """Load, then write the dataset; progress on stderr (journal.analysis._progress).
    No book selected: exit 2 before anything is written or replaced, with what the
    sources hold (a misspelt name, a time range beside the data)."""
    out = Path(args.parquet)
    progress = Progress(
        "journal export", stream=sys.stderr, interval=args.progress_interval, quiet=args.quiet
    )
    try:
        books, contents = load_books_with_contents(
            args.sources,
            start_ns=args.start,
            end_ns=args.end,
            exchanges=args.exchange,
            symbols=args.symbol,
            depth=args.depth,
            allow_gaps=args.allow_gaps,
            progress=lambda done, total: progress.update("reading", done, total, "records"),
        )
        progress.end(f"read {len(books):,} books")
        if not len(books):
            progress.close()
            print(f"journal export: {nothing_selected(args, contents)}", file=sys.stderr)
            return 2
        if books.gaps:
            progress.close()
            print(f"journal export: {_gaps_text(books)}", file=sys.stderr)
        written = write_dataset(
            books,
            out,
            export_mode(args),
            lambda done, total: progress.update("writing", done, total, "books"),
            layout=args.layout,
            local_time_unit=args.local_time_unit,
        )
        progress.end(f"wrote {written.books:,} books")
    finally:
        progress.close()
    files = "file" if written.files == 1 else "files"
    partitions = "partition" if written.partitions == 1 else "partitions"
    print(
        f"{written.books:,} books -> {out} ({written.partitions} {partitions}, "
        f"{written.files} {files}, {_size_text(written.bytes)})"
    )
    return 0


NAMES_SHOWN: Final = 20
"""Symbols named at most in nothing_selected's line (then how many more)."""


def nothing_selected(args: argparse.Namespace, contents: SourceContents) -> str:
    """The line for an export that selected no book: the selection, and what the
    sources hold, so that a typo (``--exchange Upbit``) or a range beside the data
    shows at once; a name that differs from one held only in case is pointed at."""
    chosen = [f"--exchange {name}" for name in args.exchange or ()]
    chosen += [f"--symbol {name}" for name in args.symbol or ()]
    chosen += [
        f"{option} {_utc_text(value)}"
        for option, value in (("--from", args.start), ("--to", args.end))
        if value is not None
    ]
    head = "no books selected" + (f" by {' '.join(chosen)}" if chosen else "")
    if contents.first_ns is None:
        return f"{head}: the sources hold no books; nothing written"
    held = []
    if contents.exchanges:
        held.append("exchanges " + ", ".join(contents.exchanges))
    if contents.symbols:
        shown = ", ".join(contents.symbols[:NAMES_SHOWN])
        more = len(contents.symbols) - NAMES_SHOWN
        held.append("symbols " + shown + (f" and {more} more" if more > 0 else ""))
    assert contents.last_ns is not None
    held.append(f"local times {_utc_text(contents.first_ns)} .. {_utc_text(contents.last_ns)}")
    hints = [
        f"{option} {name}: {', '.join(alike)} is held"
        for option, asked, names in (
            ("--exchange", args.exchange, contents.exchanges),
            ("--symbol", args.symbol, contents.symbols),
        )
        for name in asked or ()
        if name not in names
        and (alike := [held_name for held_name in names if held_name.lower() == name.lower()])
    ]
    hint = f" ({'; '.join(hints)}: names are as journaled)" if hints else ""
    return f"{head}{hint}; the sources hold {'; '.join(held)}; nothing written"


def _utc_text(ns: int) -> str:
    """ns since the epoch as ``2021-04-17T16:43:05Z`` (floored to the second)."""
    return f"{datetime.fromtimestamp(ns // 1_000_000_000, UTC):%Y-%m-%dT%H:%M:%S}Z"


def _size_text(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def add_source_arguments(parser: argparse.ArgumentParser, parse_time: Any) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="archive files, ARCHIVE/<stream> or ARCHIVE directories, journal directories "
        "(analyze: also the radar's results journal, for its executable edges)",
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
    parser.add_argument(
        "--allow-gaps",
        action="store_true",
        help="read around segments missing in the middle of a stream (said in the output) "
        "instead of refusing",
    )
