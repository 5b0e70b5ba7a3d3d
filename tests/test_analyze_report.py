"""What ``journal analyze`` prints and draws: a header of the books in range, a table
whose columns fit their content, no empty kimchi chart, charts a trader reads at a
glance (UTC time, a colour per venue pair, the executable edge beside the premium, a
log spread axis), and the radar's edge after fees from its results journal."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import journal
from journal.analysis import load_books
from journal.analysis._report import (
    _dot_figure,
    _kimchi_figure,
    executable_edge,
    kimchi_premiums,
    series_stats,
)
from tests._cpp import program
from tests._procs import LOCAL_NS0
from tests.test_analysis import premium_row, write_market

SECOND = 1_000_000_000


def journal_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "journal.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def levels(mid: float, spread_bps: float, qty: float = 1.0) -> tuple[list[list[float]], ...]:
    half = mid * spread_bps / 2e4
    return (
        [[mid - half * (1 + k), qty] for k in range(3)],
        [[mid + half * (1 + k), qty] for k in range(3)],
    )


def write_streams(path: Path, streams: dict[tuple[str, str], tuple[float, float, int]]) -> None:
    """Per (exchange, symbol): ten books a second apart from ``LOCAL_NS0 + start``
    seconds, mid ``mid`` and spread ``bps`` (``(mid, bps, start)``)."""
    with journal.Writer(path) as writer:
        for (exchange, symbol), (mid, bps, start) in streams.items():
            for i in range(10):
                local = LOCAL_NS0 + (start + i) * SECOND
                writer.append_orderbook(
                    exchange, symbol, local // 1_000_000 - 7, 0, *levels(mid, bps), local
                )


def test_the_header_counts_only_the_books_in_range(journal_dir: Path) -> None:
    """--from/--to: the header named every exchange and symbol loaded, in range or not
    ("2 exchanges, 2 symbols" for the books of one)."""
    write_streams(
        journal_dir,
        {("upbit", "BTC-KRW"): (1.4e8, 1, 0), ("binance-futures", "SOL-USDT"): (150, 2, 20)},
    )
    analyzed = journal_cli("analyze", journal_dir, "--from", str(LOCAL_NS0 + 20 * SECOND))
    assert analyzed.returncode == 0, analyzed.stderr
    first = analyzed.stdout.splitlines()[0]
    assert first.startswith("10 books, ") and first.endswith(", 1 exchanges, 1 symbols"), first
    assert "upbit" not in analyzed.stdout


def test_the_columns_fit_their_content(journal_dir: Path) -> None:
    """binance-futures (15 characters) pushed its row out of the 10-wide column."""
    write_streams(
        journal_dir,
        {("upbit", "BTC-KRW"): (1.4e8, 1, 0), ("binance-futures", "SOL-USDT"): (150, 2, 0)},
    )
    lines = journal_cli("analyze", journal_dir).stdout.splitlines()
    header = next(line for line in lines if line.startswith("exchange "))
    rows = [line for line in lines if line.startswith(("upbit ", "binance-futures "))]
    assert len(rows) == 2
    for name in ("books", "spread bps", "seq gaps", "max ms"):  # right-aligned
        end = header.index(name) + len(name)
        for row in rows:
            assert row[end - 1] != " " and row[end : end + 2] in ("  ", ""), (name, row)
    for row in rows:
        assert row.index(row.split()[1]) == header.index("symbol"), row


@pytest.mark.slow
def test_no_premium_no_kimchi_chart(journal_dir: Path, shm_dir: Path) -> None:
    """Without a KRW and a USDT book of one asset, kimchi.png was an empty 0..1 chart;
    now stdout says so and no file is written."""
    pytest.importorskip("matplotlib", reason="matplotlib (extra 'analysis') is not installed")
    write_streams(journal_dir, {("binance", "BTC-USDT"): (1e5, 0.01, 0)})
    charts = shm_dir / "charts"
    analyzed = journal_cli("analyze", journal_dir, "--charts", charts)
    assert analyzed.returncode == 0, analyzed.stderr
    assert "kimchi.png not written: no kimchi premium to draw" in analyzed.stdout
    assert sorted(p.name for p in charts.iterdir()) == ["delay.png", "spread.png"]


def four_pairs(path: Path) -> None:
    """BTC on two KRW venues (+1% and +2% over binance) and two USDT venues, fx 1400."""
    write_streams(
        path,
        {
            ("upbit", "USDT-KRW"): (1400, 5, 0),
            ("upbit", "BTC-KRW"): (1.414e8, 1, 0),
            ("bithumb", "BTC-KRW"): (1.428e8, 1, 0),
            ("binance", "BTC-USDT"): (1e5, 0.01, 0),
            ("bybit", "BTC-USDT"): (1e5, 0.01, 0),
        },
    )


def test_the_kimchi_chart_reads_at_a_glance(journal_dir: Path) -> None:
    """Clock time in UTC (it was seconds from the first point), one colour per venue
    pair with a legend, the executable edge beside the premium (labelled: from the
    books, no fees), units on the axes, readable font sizes."""
    plt = pytest.importorskip("matplotlib.pyplot")
    four_pairs(journal_dir)
    premiums, fx_text = kimchi_premiums(load_books(journal_dir))
    assert len(premiums) == 4
    figure = _kimchi_figure(plt, premiums, (), fx_text)
    try:
        (premium, edge) = figure.axes[:2]
        assert (
            "UTC" in figure.axes[-1].get_xlabel() and "2023-11-14" in figure.axes[-1].get_xlabel()
        )
        assert premium.get_ylabel() == "BTC, %"
        assert "NO FEES (from the books)" in edge.get_title()
        (legend,) = figure.legends
        names = [text.get_text() for text in legend.get_texts()]
        assert names == ["bithumb / binance", "bithumb / bybit", "upbit / binance", "upbit / bybit"]
        colours = {tuple(line.get_color()) for line in legend.get_lines()}
        assert len(colours) == 4
        assert {tuple(line.get_color()) for line in premium.get_lines()} == colours
        figure.canvas.draw()
        for axes in figure.axes:
            for label in axes.get_xticklabels() + axes.get_yticklabels():
                assert label.get_fontsize() >= 10
            assert all(
                re.fullmatch(r"\d\d:\d\d:\d\d", t.get_text())
                for t in axes.get_xticklabels()
                if t.get_text()
            )
        upbit = next(p for p in premiums if p.krw_exchange == "upbit")
        assert upbit.premium == pytest.approx(0.01)
    finally:
        plt.close(figure)


def test_the_spread_chart_reads_at_a_glance(journal_dir: Path) -> None:
    """A linear axis made BTC's 0.001 bps invisible next to 50 bps, the names were 7
    points: now a log axis, a row per stream named in full, grouped by symbol."""
    plt = pytest.importorskip("matplotlib.pyplot")
    write_streams(
        journal_dir,
        {
            ("binance", "BTC-USDT"): (1e5, 0.001, 0),
            ("bybit", "BTC-USDT"): (1e5, 0.002, 0),
            ("upbit", "LAMB-KRW"): (30, 50, 0),
        },
    )
    stats = series_stats(load_books(journal_dir))
    values = [(s.spread_median_bps, s.spread_p99_bps, math.nan) for s in stats]
    figure = _dot_figure(plt, stats, values, "spread", "spread, bps (log scale)", log=True)
    try:
        (axes,) = figure.axes
        assert axes.get_xscale() == "log" and "bps" in axes.get_xlabel()
        names = [label.get_text() for label in axes.get_yticklabels()]
        assert names == ["BTC-USDT  binance", "BTC-USDT  bybit", "LAMB-KRW  upbit"]
        low, high = axes.get_xlim()
        assert low <= 0.001 and high >= 50
        assert min(label.get_fontsize() for label in axes.get_yticklabels()) >= 10
    finally:
        plt.close(figure)


def test_the_executable_edge_by_hand(journal_dir: Path) -> None:
    """10,000,000 KRW buys BTC on binance's asks (0.03 at 100,000 USDT, then at
    100,010; fx 1400) and sells it into upbit's bids (0.05 at 141,400,000 KRW, then
    at 141,300,000); no fees. An empty side leaves the direction that walks it NaN."""
    with journal.Writer(journal_dir) as writer:
        writer.append_orderbook(
            "upbit", "BTC-KRW", 1, 0,
            [[141_400_000.0, 0.05], [141_300_000.0, 1.0]], [[141_500_000.0, 1.0]], LOCAL_NS0,
        )  # fmt: skip
        writer.append_orderbook(
            "binance", "BTC-USDT", 1, 0,
            [[99_990.0, 1.0]], [[100_000.0, 0.03], [100_010.0, 1.0]], LOCAL_NS0 + 1,
        )  # fmt: skip
    books = load_books(journal_dir)
    fx = np.array([1400.0])
    edge = executable_edge(books, np.array([0]), np.array([1]), fx, 10_000_000.0)
    first = 100_000.0 * 1400 * 0.03  # KRW
    quantity = 0.03 + (10_000_000 - first) / (100_010.0 * 1400)
    proceeds = 141_400_000.0 * 0.05 + 141_300_000.0 * (quantity - 0.05)
    assert edge[0] == pytest.approx(proceeds / 10_000_000 - 1, rel=1e-12)
    books.bid_price[0] = np.nan  # upbit without bids: buying on upbit is all that is left
    edge = executable_edge(books, np.array([0]), np.array([1]), fx, 10_000_000.0)
    bought = 10_000_000 / 141_500_000.0
    assert edge[0] == pytest.approx(99_990.0 * 1400 * bought / 10_000_000 - 1, rel=1e-12)
    books.bid_price[1] = np.nan
    assert np.isnan(executable_edge(books, np.array([0]), np.array([1]), fx, 1e7)[0])


@pytest.mark.slow
def test_the_radar_results_give_the_edge_after_fees(shm_dir: Path) -> None:
    """A results journal among the sources: its edges (after the radar's fees) are
    summed up and drawn beside the premium; the books' edge stays labelled no fees."""
    sources = write_market(shm_dir)
    results = shm_dir / "results"
    radar = subprocess.run(
        [
            str(program("radar")),
            *(arg for path in sources for arg in ("--journal", str(path))),
            *("--results", str(results), "--start", "beginning", "--quiet"),
            *("--max-records", "400", "--stale-ms", "9e12", "--no-metrics"),
            *("--fee", "upbit=5", "--fee", "binance=10"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert radar.returncode == 0, radar.stderr
    charts = shm_dir / "charts"
    analyzed = journal_cli("analyze", *sources, results, "--charts", charts)
    assert analyzed.returncode == 0, analyzed.stderr
    out = analyzed.stdout
    # upbit bid 140,692,965 KRW; binance ask 100,005 USDT at 1400 KRW/USDT
    no_fees = 140_692_965.0 / (100_005.0 * 1400) - 1
    assert premium_row(out, "BTC", "upbit / binance")["edge p50"] == f"{100 * no_fees:+.3f}"
    after_fees = 140_692_965.0 * (1 - 5e-4) / (100_005.0 * 1400 * (1 + 10e-4)) - 1
    lines = out.splitlines()
    start = lines.index("radar results: executable edge after the radar's taker fees, %")
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    row = dict(zip(header, re.split(r"\s{2,}", lines[start + 2].strip()), strict=True))
    assert row["KRW venue / USDT venue"] == "upbit / binance"
    assert row["edge p50"] == f"{100 * after_fees:+.3f}" and row["notional KRW"] == "10,000,000"
    assert (charts / "kimchi.png").stat().st_size > 10_000
