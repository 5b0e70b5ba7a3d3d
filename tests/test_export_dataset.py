"""``journal export``: a hive-partitioned Parquet dataset that DuckDB (the issue's query,
without casts), Polars, pyarrow.dataset and Spark (where pyspark and Java are
installed: not in CI) read as one table; its schema, nulls past a book's depth, the
market column on real captures, refusals (an empty selection among them), re-runs,
all-or-nothing publishing and progress. Real journals written by the real writer in
/dev/shm, the real command in its own process."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import journal
from journal.analysis import _dataset, load_books
from tests.conftest import CAPTURES
from tests.test_analysis import archive_sealed

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


def imported_captures(root: Path, *names: str) -> Path:
    """The capture files ``names`` (tests/data/exchange-captures) imported by ``journal
    import-captures`` into a journal under ``root``."""
    path = root / "captures"
    command = [sys.executable, "-m", "journal.cli", "import-captures", "--journal", str(path)]
    command += [str(CAPTURES / name) for name in names]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return path


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


@pytest.mark.slow
def test_the_real_captures_markets_are_their_streams(shm_dir: Path) -> None:
    """The review's case: Bybit's v2 inverse contracts (BTCUSD, quantities in USD)
    journaled as bybit by journal import-captures were exported as spot."""
    captures = imported_captures(
        shm_dir,
        "BINANCE.ws.1.0", "BINANCE.http.0.0", "BINANCE_FUTURES.ws.1.0",
        "BINANCE_FUTURES.http.0.0", "BYBIT.ws.26.0", "UPBIT.ws.62.0",
    )  # fmt: skip
    out = shm_dir / "export"
    exported(captures, "--parquet", out)
    rows = duckdb.sql(
        f"select exchange, market, list(distinct symbol order by symbol), count(*) "
        f"from '{out}/**/*.parquet' group by all order by all"
    ).fetchall()
    assert rows == [
        ("binance", "spot", ["BLZ-ETH", "LRC-BTC", "NKN-USDT", "RUNE-EUR"], 172),
        ("binance-futures", "linear_perpetual",
         ["AKRO-USDT", "CTK-USDT", "KEEP-USDT", "SUSHI-USDT"], 752),
        ("bybit", "inverse_perpetual", ["BTC-USD", "EOS-USD"], 1018),
        ("upbit", "spot", ["ITAM-BTC", "LAMB-KRW", "PAX-BTC", "WAVES-KRW", "XTZ-BTC"], 145),
    ]  # fmt: skip
    # Upbit's builder journals the count of the stream's messages: a sequence, not null.
    nulls = duckdb.sql(
        f"select count(*) - count(sequence) from '{out}/**/*.parquet' where exchange = 'upbit'"
    ).fetchall()
    assert nulls == [(0,)]


def test_a_v2_capture_of_a_usdt_contract_is_refused_not_journaled_as_spot(shm_dir: Path) -> None:
    """Only the inverse perpetuals are read from Bybit's v2 captures: a USDT one would
    be journaled as bybit, whose other books are v5 spot, and export as spot."""
    lines = (CAPTURES / "BYBIT.ws.26.0").read_text().splitlines()[:8]
    capture = shm_dir / "BYBIT.ws.9.0"
    capture.write_text("\n".join(line.replace("EOSUSD", "EOSUSDT") for line in lines) + "\n")
    command = [sys.executable, "-m", "journal.cli", "import-captures", str(capture)]
    done = subprocess.run(
        [*command, "--journal", str(shm_dir / "j")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done
    assert f"{capture}:8: bybit orderBookL2_25 EOS-USDT: not an inverse perpetual" in done.stderr
    assert not (shm_dir / "j").exists()


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


# -- local time in microseconds, and Spark ---------------------------------------------------------


def test_local_time_in_microseconds_and_one_unit_a_dataset(market: Path, shm_dir: Path) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out, "--local-time-unit", "us")
    for path in out.rglob("*.parquet"):
        assert pq.read_schema(path).field("local_time").type == pa.timestamp("us", tz="UTC")
    books = load_books(market)
    micros = dataset_table(out)["local_time"].cast(pa.int64()).to_pylist()
    assert sorted(micros) == sorted((books.local_timestamp_ns // 1000).tolist())
    assert len(duckdb.sql(ISSUE_QUERY.format(out=out)).fetchall()) == 40  # 4 exchanges x 10 s
    before = listing(shm_dir)
    done = export(market, "--parquet", out, "--replace-partitions", "--exchange", "upbit")
    assert done.returncode == 2 and not done.stdout
    assert done.stderr.startswith(
        f"journal export: --parquet {out}: its files have local_time timestamp[us, tz=UTC], "
        "this export's timestamp[ns, tz=UTC] (date=2023-11-14/exchange=binance-futures/"
        "part-00000.parquet); --replace-partitions would mix two schemas"
    ), done.stderr
    assert listing(shm_dir) == before
    wide = ["--layout", "wide", "--local-time-unit", "us"]
    done = export(market, "--parquet", out, "--replace-partitions", *wide)
    assert done.returncode == 2 and "its files have bid_price_0 missing, this export's double" in (
        done.stderr
    )
    exported(market, "--parquet", out, "--overwrite")  # the whole dataset: another unit is fine


def spark_blocks() -> str:
    """docs/ANALYSIS.md's ``python spark`` blocks, in order."""
    text = (Path(__file__).parent.parent / "docs" / "ANALYSIS.md").read_text()
    found = re.findall(r"^```python spark\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    assert found, "docs/ANALYSIS.md lost its Spark example"
    return "\n".join(found)


def spark_missing() -> str | None:
    """Why Spark cannot run here (pyspark or Java missing), None if it can."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (not a test extra: CI skips this)"
    if shutil.which("java") is None and "JAVA_HOME" not in os.environ:
        return "no Java for pyspark"
    return None


@pytest.mark.slow
@pytest.mark.skipif(spark_missing() is not None, reason=str(spark_missing()))
def test_spark_reads_both_datasets_as_the_docs_say(market: Path, shm_dir: Path) -> None:
    """The docs' Spark code run as written on both datasets (ns with nanosAsLong, us as
    it is): the mid per exchange and second equal DuckDB's; and the ns dataset is
    refused without the setting, as the docs say."""
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    exported(market, "--parquet", f"{out}-us", "--local-time-unit", "us")
    expected = {
        (exchange, second): mid
        for exchange, second, mid in duckdb.sql(
            "select exchange, epoch_us(date_trunc('second', local_time)), "
            f"avg((bid_price[1] + ask_price[1]) / 2) from '{out}/**/*.parquet' group by all"
        ).fetchall()
    }
    namespace: dict[str, object] = {"__name__": "analysis_docs_spark"}
    try:
        exec(compile(spark_blocks().replace("/data/export", str(out)), "ANALYSIS.md", "exec"),
             namespace)  # fmt: skip
        for name in ("mids", "mids_us"):
            frame = namespace[name].selectExpr("exchange", "unix_micros(second)", "mid")  # type: ignore[attr-defined]
            got = {(row[0], row[1]): row[2] for row in frame.collect()}
            assert got.keys() == expected.keys(), name
            for key, mid in expected.items():
                assert got[key] == pytest.approx(mid, rel=1e-12, nan_ok=True), (name, key)
        spark = namespace["spark"]
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "false")  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"Illegal Parquet type: INT64 \(TIMESTAMP\(NANOS"):
            spark.read.parquet(str(out)).collect()  # type: ignore[attr-defined]
    finally:
        if "spark" in namespace:
            namespace["spark"].stop()  # type: ignore[attr-defined]


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


def test_a_selection_of_no_book_is_refused_naming_what_the_sources_hold(
    market: Path, shm_dir: Path
) -> None:
    """The review's case: ``--exchange Upbit`` with --overwrite emptied the dataset,
    exit 0. Nothing is written or replaced; the line shows the typo."""
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    before = listing(shm_dir)
    held = (
        "the sources hold exchanges binance-futures, bybit, otc-desk, upbit; symbols "
        "BTC-KRW, BTC-USDT, ETH-USDT; local times 2023-11-14T23:59:55Z .. "
        "2023-11-15T00:00:04Z; nothing written\n"
    )
    done = export(market, "--parquet", out, "--overwrite", "--exchange", "Upbit")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "journal export: no books selected by --exchange Upbit (--exchange Upbit: upbit "
        f"is held: names are as journaled); {held}"
    )
    assert listing(shm_dir) == before
    # A range beside the data, into a new OUT: not made.
    done = export(market, "--parquet", shm_dir / "new", "--from", "2024-01-01T00:00:00+00:00")
    assert (done.returncode, done.stdout) == (2, "")
    assert (
        done.stderr == f"journal export: no books selected by --from 2024-01-01T00:00:00Z; {held}"
    )
    assert listing(shm_dir) == before
    # From archives, frames outside the range are not read: the range is the index's.
    archive = archive_sealed(market, shm_dir / "archive")
    done = export(archive, "--parquet", shm_dir / "new", "--to", str(MIDNIGHT_NS - 6 * 10**9))
    assert done.returncode == 2
    assert done.stderr.startswith(
        "journal export: no books selected by --to 2023-11-14T23:59:54Z; "
    )
    assert "local times 2023-11-14T23:59:55Z .. 2023-11-15T00:00:0" in done.stderr
    assert not (shm_dir / "new").exists()
    with journal.Writer(shm_dir / "empty"):
        pass
    done = export(shm_dir / "empty", "--parquet", shm_dir / "new")
    assert done.stderr == (
        "journal export: no books selected: the sources hold no books; nothing written\n"
    )


@pytest.mark.slow
def test_bad_option_values_are_refused(market: Path, shm_dir: Path) -> None:
    for args, why in (
        (["--overwrite", "--replace-partitions"], "not allowed with argument"),
        (["--layout", "tall"], "invalid choice: 'tall'"),
        (["--progress-interval", "-1"], "--progress-interval -1: give 0 or more seconds"),
        (["--progress-interval", "nan"], "--progress-interval nan: give 0 or more seconds"),
        (["--progress-interval", "inf"], "--progress-interval inf: give 0 or more seconds"),
        (["--local-time-unit", "ms"], "invalid choice: 'ms'"),
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


# -- publishing: the old dataset or the new one, whole ------------------------------------------


def inodes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_ino for p in out.rglob("*.parquet")}


UPBIT_FILES = [
    "date=2023-11-14/exchange=upbit/part-00000.parquet",
    "date=2023-11-15/exchange=upbit/part-00000.parquet",
]


def test_replace_partitions_links_the_others_and_swaps_once(
    market: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    before = inodes(out)
    flags: list[int] = []
    rename = _dataset._rename

    def recorded(parent: object, old: str, new: str, flag: int, old_fd: int | None = None) -> None:
        flags.append(flag)
        rename(parent, old, new, flag, old_fd)  # type: ignore[arg-type]

    monkeypatch.setattr(_dataset, "_rename", recorded)
    _dataset.write_dataset(load_books(market, exchanges=["upbit"]), out, "replace_partitions")
    assert flags == [_dataset._RENAME_EXCHANGE]  # the whole directory, once
    after = inodes(out)
    assert after.keys() == before.keys()
    assert sorted(name for name in after if after[name] != before[name]) == UPBIT_FILES
    assert dataset_table(out).num_rows == BOOKS
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]


def test_ctrl_c_before_the_swap_changes_nothing(
    market: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT while the kept partitions are linked: noted, raised before the swap."""
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    before, handler = listing(shm_dir), signal.getsignal(signal.SIGINT)
    link = os.link

    def link_then_ctrl_c(*args: object, **kwargs: object) -> None:
        link(*args, **kwargs)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "link", link_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _dataset.write_dataset(load_books(market, exchanges=["upbit"]), out, "replace_partitions")
    assert listing(shm_dir) == before
    assert signal.getsignal(signal.SIGINT) is handler


def test_ctrl_c_from_the_swap_on_is_held_and_the_export_ends_as_done(
    market: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    rename = _dataset._rename

    def swap_then_ctrl_c(
        parent: object, old: str, new: str, flag: int, old_fd: int | None = None
    ) -> None:
        rename(parent, old, new, flag, old_fd)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(_dataset, "_rename", swap_then_ctrl_c)
    written = _dataset.write_dataset(load_books(market, exchanges=["upbit"]), out, "overwrite")
    assert written.books == PER_STREAM and files_of(out) == UPBIT_FILES
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]  # the old tree removed too


def test_without_rename_exchange_a_kill_between_the_two_renames_is_said(
    market: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem without RENAME_EXCHANGE: OUT moved aside, the new one moved in. A
    kill between the two leaves OUT missing and the old dataset at ``.OUT.export-PID
    .old``: the next export says so and touches neither."""
    out = shm_dir / "export"
    exported(market, "--parquet", out)
    rename = _dataset._rename

    def no_exchange(
        parent: object, old: str, new: str, flag: int, old_fd: int | None = None
    ) -> None:
        if flag == _dataset._RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        rename(parent, old, new, flag, old_fd)  # type: ignore[arg-type]

    monkeypatch.setattr(_dataset, "_rename", no_exchange)
    _dataset.write_dataset(load_books(market, exchanges=["upbit"]), out, "replace_partitions")
    assert dataset_table(out).num_rows == BOOKS
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]

    gone = subprocess.Popen(["true"])
    gone.wait()
    stranded = shm_dir / f".export.export-{gone.pid}.old"
    out.rename(stranded)  # as the kill left it
    before = listing(shm_dir)
    done = export(market, "--parquet", out)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"journal export: --parquet {out}: missing, and {stranded} holds the dataset an "
        f"export killed while publishing had moved aside: put it back (mv {stranded} {out}) "
        "or remove it, then export again\n"
    )
    assert listing(shm_dir) == before
    stranded.rename(out)
    shutil.copytree(out, stranded)  # a dead export's .old beside a whole OUT: removed
    exported(market, "--parquet", out, "--overwrite")
    assert sorted(os.listdir(shm_dir)) == ["books", "export"]


def blocked_on_flock(pid: int) -> bool:
    """Whether ``pid`` waits for a flock (a ``->`` line of /proc/locks)."""
    return any(
        "->" in line and line.split()[5] == str(pid)
        for line in Path("/proc/locks").read_text().splitlines()
    )


@pytest.mark.slow
def test_publishers_to_one_directory_take_turns(market: Path, shm_dir: Path) -> None:
    """An export waits for the publisher before it (flock on OUT's parent) and then
    builds on what it published: two --replace-partitions both land."""
    out = shm_dir / "export"
    exported(market, "--parquet", out, "--exchange", "upbit")
    fd = os.open(shm_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)  # as a publisher in its turn
        command = [sys.executable, "-m", "journal.cli", "export", str(market), "--parquet",
                   str(out), "--replace-partitions", "--exchange", "bybit"]  # fmt: skip
        waiting = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not blocked_on_flock(waiting.pid):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the export never waited for its turn"
            time.sleep(0.01)
        assert files_of(out) == UPBIT_FILES  # nothing published while it waits
        (shm_dir / "elsewhere").mkdir()
        exported(market, "--parquet", shm_dir / "elsewhere" / "out")  # another parent: no wait
    finally:
        os.close(fd)  # the turn passes
    assert waiting.wait(timeout=60) == 0, waiting.communicate()
    assert [name.split("/")[1] for name in files_of(out)] == [
        "exchange=bybit", "exchange=upbit", "exchange=bybit", "exchange=upbit",
    ]  # fmt: skip


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
