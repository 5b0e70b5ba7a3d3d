"""``journal export``: a hive-partitioned Parquet dataset that DuckDB (the issue's query,
without casts), Polars and pyarrow.dataset read as one table; its schema, nulls past
a book's depth, the market column, refusals, re-runs and progress. Real journals
written by the real writer in /dev/shm, the real command in its own process."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import journal
from journal.analysis import load_books

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
ds = pytest.importorskip("pyarrow.dataset")
duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")

MIDNIGHT_NS = 1_700_006_400 * 1_000_000_000  # 2023-11-15 00:00:00 UTC
STEP_NS = 25_000_000
# (exchange, symbol, best bid, tick, sends a sequence)
STREAMS = (
    ("upbit", "BTC-KRW", 50_000_000.0, 1_000.0, False),
    ("binance-futures", "BTC-USDT", 37_000.0, 0.1, True),
    ("bybit", "ETH-USDT", 2_000.0, 0.01, True),
    ("otc-desk", "BTC-KRW", 50_010_000.0, 1_000.0, False),
)
PER_STREAM = 100
BOOKS = PER_STREAM * len(STREAMS)
ISSUE_QUERY = (
    "select exchange, date_trunc('second', local_time), avg((bid_price[1]+ask_price[1])/2) "
    "from '{out}/**/*.parquet' group by all"
)


def write_market(path: Path) -> None:
    """PER_STREAM books of each stream, interleaved, STEP_NS apart, across UTC
    midnight (5 s before to 5 s after); every 7th book has 3 bids, every 11th of
    bybit's no asks."""
    with journal.Writer(path, segment_size=64 * 1024) as writer:
        for i in range(PER_STREAM):
            for k, (exchange, symbol, best, tick, sequenced) in enumerate(STREAMS):
                local = MIDNIGHT_NS - 5_000_000_000 + (i * len(STREAMS) + k) * STEP_NS
                bid = best + tick * (i % 5)
                bids = [[bid - tick * n, 1.0 + n] for n in range(3 if i % 7 == 0 else 10)]
                asks = [[bid + tick * (n + 1), 2.0 + n] for n in range(10)]
                if exchange == "bybit" and i % 11 == 0:
                    asks = []
                sequence = 1000 + i if sequenced else 0
                writer.append_orderbook(
                    exchange, symbol, local // 1_000_000 - 3, sequence, bids, asks, local
                )


@pytest.fixture
def market(journal_dir: Path) -> Path:
    write_market(journal_dir)
    return journal_dir


def export(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``journal export ARGS`` in its own process, run to its end."""
    command = [sys.executable, "-m", "journal.cli", "export", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def exported(*args: str | Path) -> subprocess.CompletedProcess[str]:
    done = export(*args)
    assert done.returncode == 0, done.stderr
    return done


def files_of(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def listing(root: Path) -> list[tuple[str, int]]:
    """Every path under ``root`` with its size (0 for directories): to see that
    nothing changed."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else 0) for p in root.rglob("*")
    )


def dataset_table(out: Path) -> pa.Table:
    return ds.dataset(out, format="parquet", partitioning="hive").to_table()


def plain(table: pa.Table) -> pa.Table:
    """``table`` with its dictionary columns as plain strings (to sort and compare)."""
    for k, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(k, column.name, table[column.name].cast(pa.string()))
    return table


# -- what DuckDB, Polars and pyarrow read ------------------------------------------------------


def test_the_issue_query_runs_on_the_dataset_without_casts(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    done = exported(market, "--parquet", out)
    assert done.stdout.startswith(f"{BOOKS:,} books -> {out} (8 partitions, 8 files, ")
    assert not done.stderr  # a short export to a pipe says nothing more
    rows = duckdb.sql(ISSUE_QUERY.format(out=out)).fetchall()
    books = load_books(market)
    mids: dict[tuple[str, dt.datetime], list[float]] = {}
    for i in range(len(books)):
        second = dt.datetime.fromtimestamp(int(books.local_timestamp_ns[i]) // 10**9, dt.UTC)
        key = (books.exchanges[books.exchange_code[i]], second)
        mid = (books.bid_price[i, 0] + books.ask_price[i, 0]) / 2
        mids.setdefault(key, [])
        if np.isfinite(mid):  # no asks: a NULL mid, which avg leaves out
            mids[key].append(float(mid))
    got = {(exchange, second): mean for exchange, second, mean in rows}
    assert set(got) == set(mids)
    for key, values in mids.items():
        assert got[key] == pytest.approx(np.mean(values), rel=1e-12), key


def test_partitions_are_hive_directories_by_utc_date_and_exchange(
    market: Path, shm_dir: Path
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    exchanges = sorted(s[0] for s in STREAMS)
    assert files_of(out) == [
        f"date={day}/exchange={exchange}/part-00000.parquet"
        for day in ("2023-11-14", "2023-11-15")
        for exchange in exchanges
    ]
    books = load_books(market)
    for path in out.rglob("*.parquet"):
        day = dt.date.fromisoformat(path.parent.parent.name.removeprefix("date="))
        exchange = path.parent.name.removeprefix("exchange=")
        table = pq.read_table(path, partitioning=None)
        assert "exchange" not in table.column_names and "date" not in table.column_names
        local = table["local_time"].cast(pa.int64()).to_numpy()
        assert all(dt.datetime.fromtimestamp(t / 1e9, dt.UTC).date() == day for t in local)
        code = books.exchanges.index(exchange)
        in_day = (books.local_timestamp_ns // 86_400_000_000_000) == (
            day - dt.date(1970, 1, 1)
        ).days
        assert len(table) == np.count_nonzero((books.exchange_code == code) & in_day)
        keys = list(zip(table["symbol"].to_pylist(), local.tolist(), strict=True))
        assert keys == sorted(keys)  # symbol, then local time


def test_the_files_schema(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out, "--depth", "10")
    path = next(out.rglob("*.parquet"))
    schema = pq.read_schema(path)
    names = pa.dictionary(pa.int32(), pa.string())
    expected = pa.schema(
        [
            ("symbol", names),
            ("market", pa.dictionary(pa.int8(), pa.string())),
            ("exchange_time", pa.timestamp("ms", tz="UTC")),
            ("local_time", pa.timestamp("ns", tz="UTC")),
            ("sequence", pa.int64()),
            ("bid_price", pa.list_(pa.float64())),
            ("bid_qty", pa.list_(pa.float64())),
            ("ask_price", pa.list_(pa.float64())),
            ("ask_qty", pa.list_(pa.float64())),
        ]
    )
    assert schema.remove_metadata() == expected
    assert schema.metadata[b"journal.depth"] == b"10"
    assert schema.metadata[b"journal.gaps"] == b"[]"
    metadata = pq.ParquetFile(path).metadata
    parquet_schema = pq.ParquetFile(path).schema
    for column, unit in ((2, "milliseconds"), (3, "nanoseconds")):
        logical = json.loads(parquet_schema.column(column).logical_type.to_json())
        assert logical["Type"] == "Timestamp" and logical["isAdjustedToUTC"] is True
        assert logical["timeUnit"] == unit
    for group in range(metadata.num_row_groups):
        for column in range(metadata.num_columns):
            chunk = metadata.row_group(group).column(column)
            assert chunk.compression == "ZSTD"
            if chunk.path_in_schema in ("symbol", "market"):
                assert "RLE_DICTIONARY" in chunk.encodings
    # DuckDB's types, from the files and the directory names: no casts needed.
    types = dict(
        (name, kind)
        for name, kind, *_ in duckdb.sql(f"describe select * from '{out}/**/*.parquet'").fetchall()
    )
    assert types["local_time"] == "TIMESTAMPTZ_NS"
    assert types["exchange_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["bid_price"] == "DOUBLE[]" and types["sequence"] == "BIGINT"
    assert types["exchange"] == "VARCHAR" and types["date"] == "DATE"


def test_levels_are_each_books_own_with_nulls_past_its_depth(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    glob = f"'{out}/**/*.parquet'"
    shallow = duckdb.sql(
        f"select count(*), count(bid_price[4]), count(bid_price[10]), min(len(bid_price)), "
        f"max(len(bid_price)) from {glob} where len(bid_price) < 10"
    ).fetchall()[0]
    assert shallow == (len(STREAMS) * len(range(0, PER_STREAM, 7)), 0, 0, 3, 3)
    no_asks = duckdb.sql(
        f"select count(*), count(ask_price[1]) from {glob} where len(ask_price) = 0"
    ).fetchall()[0]
    assert no_asks == (len(range(0, PER_STREAM, 11)), 0)
    nans = duckdb.sql(
        f"select count(*) from (select unnest(bid_price || ask_price || bid_qty || ask_qty) v "
        f"from {glob}) where isnan(v)"
    ).fetchall()[0]
    assert nans == (0,)
    frame = pl.scan_parquet(f"{out}/**/*.parquet", hive_partitioning=True).collect()
    tenth = frame["bid_price"].list.get(9, null_on_oob=True)
    assert tenth.null_count() == shallow[0]
    assert frame["bid_qty"].list.len().to_list() == frame["bid_price"].list.len().to_list()


def test_duckdb_polars_and_pyarrow_read_every_row_as_the_books(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    assert duckdb.sql(f"select count(*) from '{out}/**/*.parquet'").fetchall()[0] == (BOOKS,)
    scanned = pl.scan_parquet(f"{out}/**/*.parquet", hive_partitioning=True)
    assert scanned.select(pl.len()).collect().item() == BOOKS
    assert set(scanned.collect_schema().names()) >= {"date", "exchange", "local_time"}
    table = dataset_table(out)
    assert table.num_rows == BOOKS
    books = load_books(market).to_arrow()
    order = [(c, "ascending") for c in ("exchange", "symbol", "local_time")]
    mine, theirs = (plain(t).sort_by(order) for t in (books, table))
    for name in books.column_names:
        left = mine[name].to_pylist()
        right = theirs[name].to_pylist()
        assert left == right, name


def test_market_tells_spot_from_linear_and_an_unknown_venue_is_null(
    market: Path, shm_dir: Path
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    rows = duckdb.sql(
        f"select distinct exchange, market from '{out}/**/*.parquet' order by exchange"
    ).fetchall()
    assert rows == [
        ("binance-futures", "linear_perpetual"),
        ("bybit", "spot"),
        ("otc-desk", None),
        ("upbit", "spot"),
    ]
    nulls = duckdb.sql(
        f"select exchange, count(*) - count(sequence), count(*) - count(exchange_time) "
        f"from '{out}/**/*.parquet' group by all order by exchange"
    ).fetchall()
    # Upbit and the desk send no sequence (0 in the journal): null, never a sequence 0.
    assert nulls == [
        ("binance-futures", 0, 0),
        ("bybit", 0, 0),
        ("otc-desk", PER_STREAM, 0),
        ("upbit", PER_STREAM, 0),
    ]


def test_the_wide_layout(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out, "--layout", "wide", "--depth", "5")
    schema = pq.read_schema(next(out.rglob("*.parquet")))
    assert schema.names[5:] == [
        f"{name}_{k}" for name in ("bid_price", "bid_qty", "ask_price", "ask_qty") for k in range(5)
    ]
    assert all(schema.field(name).type == pa.float64() for name in schema.names[5:])
    counts = duckdb.sql(
        f"select count(*), count(bid_price_2), count(bid_price_3), count(ask_price_0) "
        f"from '{out}/**/*.parquet'"
    ).fetchall()[0]
    shallow = len(STREAMS) * len(range(0, PER_STREAM, 7))
    assert counts == (BOOKS, BOOKS, BOOKS - shallow, BOOKS - len(range(0, PER_STREAM, 11)))


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        ("dataset", "exists and is not empty; give a new directory, or --overwrite"),
        ("file", "exists and is not a directory"),
        ("symlink", ": a symbolic link; the dataset is published by renaming"),
        ("missing-parent", "does not exist; create the directory"),
        ("parent-is-a-file", "is not a directory; create the directory"),
        ("foreign-overwrite", "holds notes.txt, which journal export does not write"),
        ("foreign-replace", "holds date=2023-11-14/exchange=upbit/x.csv, which"),
    ],
)
def test_an_out_that_cannot_be_written_is_one_line_and_changes_nothing(
    market: Path, shm_dir: Path, make: str, expected: str
) -> None:
    out = shm_dir / "export"
    extra: list[str] = []
    if make == "dataset":
        exported(market, "--parquet", out)
    elif make == "file":
        out.write_text("an old single-file export")
    elif make == "symlink":
        (shm_dir / "elsewhere").mkdir()
        out.symlink_to(shm_dir / "elsewhere")
    elif make == "missing-parent":
        out = shm_dir / "missing" / "export"
    elif make == "parent-is-a-file":
        (shm_dir / "a-file").write_text("")
        out = shm_dir / "a-file" / "export"
    elif make == "foreign-overwrite":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        extra = ["--overwrite"]
    else:
        exported(market, "--parquet", out)
        (out / "date=2023-11-14" / "exchange=upbit" / "x.csv").write_text("mine")
        extra = ["--replace-partitions"]
    before = listing(shm_dir)
    done = export(market, "--parquet", out, *extra)
    assert done.returncode == 2 and not done.stdout, done
    assert done.stderr.startswith(f"journal export: --parquet {out}: "), done.stderr
    assert expected in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert listing(shm_dir) == before


def test_a_bad_source_is_said_and_no_dataset_is_made(shm_dir: Path) -> None:
    out = shm_dir / "export"
    done = export(shm_dir / "no-such-journal", "--parquet", out)
    assert done.returncode == 2 and not done.stdout
    assert (
        done.stderr == f"journal export: {shm_dir / 'no-such-journal'}: no such file or directory\n"
    )
    assert os.listdir(shm_dir) == []


@pytest.mark.slow
def test_bad_option_values_are_refused(market: Path, shm_dir: Path) -> None:
    for args, why in (
        (["--overwrite", "--replace-partitions"], "not allowed with argument"),
        (["--layout", "tall"], "invalid choice: 'tall'"),
        (["--progress-interval", "-1"], "--progress-interval -1: give 0 or more seconds"),
    ):
        done = export(market, "--parquet", shm_dir / "export", *args)
        assert done.returncode == 2 and why in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert os.listdir(shm_dir) == ["books"]


# -- existing datasets, re-runs -------------------------------------------------------------------


def test_an_empty_directory_is_filled(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    out.mkdir()
    exported(market, "--parquet", out)
    assert len(files_of(out)) == 8


@pytest.mark.slow
def test_overwrite_replaces_the_dataset_whole_and_twice_is_the_same(
    market: Path, shm_dir: Path
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    exported(market, "--parquet", out, "--exchange", "upbit", "--overwrite")
    assert files_of(out) == [
        "date=2023-11-14/exchange=upbit/part-00000.parquet",
        "date=2023-11-15/exchange=upbit/part-00000.parquet",
    ]
    first = dataset_table(out).to_pylist()
    exported(market, "--parquet", out, "--exchange", "upbit", "--overwrite")
    assert dataset_table(out).to_pylist() == first  # the same rows, not twice as many
    assert len(first) == PER_STREAM
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]  # no staging left


@pytest.mark.slow
def test_replace_partitions_replaces_those_it_writes_and_keeps_the_others(
    market: Path, shm_dir: Path
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out, "--exchange", "upbit", "--exchange", "bybit")
    before = {path: path.stat().st_ino for path in out.rglob("*.parquet")}
    whole = dataset_table(out).num_rows
    # Midnight on: only the 2023-11-15 partitions; the desk's are new to the dataset.
    args = ["--from", str(MIDNIGHT_NS), "--exchange", "upbit", "--exchange", "otc-desk"]
    for _ in range(2):  # twice: the same dataset, no duplicate rows
        exported(market, "--parquet", out, *args, "--replace-partitions")
        after = {path: path.stat().st_ino for path in out.rglob("*.parquet")}
        replaced = sorted(str(p.relative_to(out)) for p in after if before.get(p) != after[p])
        assert replaced == [
            "date=2023-11-15/exchange=otc-desk/part-00000.parquet",
            "date=2023-11-15/exchange=upbit/part-00000.parquet",
        ]
        assert dataset_table(out).num_rows == whole + PER_STREAM // 2
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]


def test_a_killed_exports_staging_directory_is_removed_by_the_next(
    market: Path, shm_dir: Path
) -> None:
    """SIGKILL leaves the staging directory beside OUT (never inside it); the next
    export to OUT removes it, but not one of a live export."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = shm_dir / f".export.export-{gone.pid}"
    (dead / "date=2023-11-14" / "exchange=upbit").mkdir(parents=True)
    (dead / "date=2023-11-14" / "exchange=upbit" / "part-00000.parquet").write_text("half")
    alive = shm_dir / f".export.export-{os.getpid()}"
    alive.mkdir()
    exported(market, "--parquet", shm_dir / "export")
    assert sorted(os.listdir(shm_dir)) == sorted(["books", "export", alive.name])


# -- progress ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_progress_lines_when_stderr_is_not_a_terminal(market: Path, shm_dir: Path) -> None:
    done = exported(market, "--parquet", shm_dir / "export", "--progress-interval", "0")
    lines = done.stderr.splitlines()
    assert lines[0].startswith("journal export: reading: ")
    assert f"journal export: read {BOOKS:,} books" in lines
    assert any(line.startswith(f"journal export: writing: {BOOKS:,} of {BOOKS:,} books (100%)")
               for line in lines)  # fmt: skip
    assert lines[-1] == f"journal export: wrote {BOOKS:,} books"
    assert all(line.startswith("journal export: ") for line in lines)
    quiet = exported(market, "--parquet", shm_dir / "again", "--progress-interval", "0", "--quiet")
    assert quiet.stderr == ""


def read_pty(fd: int, process: subprocess.Popen[bytes]) -> bytes:
    """Everything written to the terminal until the process exits."""
    data = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other side closed: the process is gone
                break
            data += chunk
        elif process.poll() is not None:
            break
    return data


def test_progress_on_a_terminal_is_one_live_line_wiped_at_the_end(
    market: Path, shm_dir: Path
) -> None:
    primary, secondary = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "journal.cli", "export", str(market), "--parquet",
             str(shm_dir / "export")],
            stdout=subprocess.PIPE,
            stderr=secondary,
        )  # fmt: skip
        os.close(secondary)
        shown = read_pty(primary, process)
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(primary)
    assert process.returncode == 0
    assert stdout.decode().startswith(f"{BOOKS:,} books -> ")
    # Redrawn in place (carriage return, erase line), never a new line, wiped last.
    assert b"\n" not in shown
    assert shown.startswith(b"\r\x1b[Kjournal export: ") and shown.endswith(b"\r\x1b[K")
