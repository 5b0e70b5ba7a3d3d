"""The compiled Reader (journal._creader) against the pure-Python one, on real journals.

``journal.Reader(...)`` is the compiled reader when the extension is there; a
subclass of Reader keeps the pure-Python step (``PureReader`` below), so both read
the same files in one process. They must deliver the same records (values, sizes,
positions, level views of the same bytes with the same flags), end at the same
position, store the same reader counters, and fail on damaged segments with the same
exception, message, file and offset. Journals come from hypothesis (books in the
encoder's layout and in the official builder's, rolls across segments, the last
segment open), damage from tests/test_verify.py's cases and from fuzzed bytes.

Under JOURNAL_PURE_PYTHON=1 (``make test``'s second run) only the first test runs:
``journal.Reader`` is then the pure one.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import pickle
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import journal
from journal import _decode, _native, _verify
from journal import _layout as F
from journal import _metrics_layout as M
from journal import _orderbook_layout as OB
from journal._reader import Reader, _CompiledReader
from journal._segment import segment_indices, segment_path
from tests._books import FIELDS, Book, bits, books, build_official
from tests.conftest import ASKS, BIDS, REPO
from tests.test_verify import CHAIN_DAMAGE, GOOD_ARGS, SEGMENT_DAMAGE, write_chain

SEGMENT_SIZE = 64 * 1024
COMPILED = _native.creader is not None
compiled_only = pytest.mark.skipif(not COMPILED, reason=f"pure Python: {_native.describe()}")


class PureReader(Reader):
    """The pure-Python Reader: Reader.__new__ gives subclasses their own class."""


def test_reader_is_compiled_exactly_when_the_extension_is_in_use(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        writer.append_orderbook(*GOOD_ARGS)
    with journal.Reader(journal_dir, metrics=False) as reader:
        assert isinstance(reader, Reader)
        assert (type(reader) is _CompiledReader) == COMPILED
        assert reader.try_next() is not None
    with PureReader(journal_dir, metrics=False) as pure:
        assert type(pure) is PureReader


READER_LAYOUT_H = REPO / "journal" / "_c" / "reader_layout.h"


@compiled_only
def test_reader_layout_constants_match_python() -> None:
    """reader_layout.h, name for name: ML_ the metrics layout's, FB_ the verifier's."""
    assert _native.creader is not None
    layout = _native.creader.LAYOUT
    defined = re.findall(r"^#define ((?:ML|FB)_\w+)\s", READER_LAYOUT_H.read_text(), re.M)
    assert set(layout) == set(defined), "READER_LAYOUT_CONSTANTS must list every #define"
    python = {"ML": M, "FB": _verify}
    for name, value in layout.items():
        prefix, _, python_name = name.partition("_")
        if prefix == "FB":
            python_name = "_" + python_name
        assert getattr(python[prefix], python_name) == value, name
    assert layout["ML_READER_SEGMENT_OFFSET"] == M.METRICS_COUNTERS_OFFSET == 128


# -- what a reader delivers, comparably ----------------------------------------------------


def side_description(side: np.ndarray) -> tuple[Any, ...]:
    """A level view as values (bit patterns) and as a view: where in the mapping, flags."""
    if side is _decode._NO_LEVELS:
        return ("no levels",)
    flags = side.flags
    base = side.base
    assert isinstance(base, np.ndarray) and base.dtype == np.uint8 and base.ndim == 1
    at = side.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    return (
        side.dtype.str,
        side.shape,
        side.strides,
        at,
        len(base),
        flags.writeable,
        flags.c_contiguous,
        flags.f_contiguous,
        flags.aligned,
        flags.owndata,
        [(bits(price), bits(quantity)) for price, quantity in side.tolist()],
    )


def describe(record: Any) -> tuple[Any, ...]:
    if isinstance(record, _decode.TableRecord):
        return ("table", record.position, record.size, repr(record.fields))
    assert isinstance(record, _decode.OrderBookRecord)
    assert type(record) in (
        _decode.OrderBookRecord,
        getattr(_native.creader, "OrderBookRecord", None),
    )
    for name in ("exchange_name", "symbol"):
        assert type(getattr(record, name)) is str
    for name in ("timestamp", "sequence", "local_timestamp_ns", "size"):
        assert type(getattr(record, name)) is int
    assert type(record.position) is tuple and all(type(part) is int for part in record.position)
    return (
        record.position,
        record.size,
        record.exchange_name,
        record.symbol,
        record.timestamp,
        record.sequence,
        record.local_timestamp_ns,
        side_description(record.bids),
        side_description(record.asks),
    )


def error_description(error: BaseException) -> tuple[Any, ...]:
    return (
        "error",
        type(error),
        str(error),
        getattr(error, "path", None),
        getattr(error, "offset", None),
        type(error.__cause__),
        error.__suppress_context__,
    )


def outcomes(path: Path, compiled: bool, **options: Any) -> list[tuple[Any, ...]]:
    """Everything a reader of ``path`` delivers through ``available()``, then its
    position, or the error it stops with."""
    options.setdefault("metrics", False)
    kind = Reader if compiled else PureReader
    seen: list[tuple[Any, ...]] = []
    try:
        with kind(path, **options) as reader:
            assert (type(reader) is _CompiledReader) == compiled
            for record in reader.available():
                seen.append(describe(record))
            seen.append(("end", reader.position))
    except Exception as error:
        seen.append(error_description(error))
    return seen


def same_outcomes(path: Path, **options: Any) -> list[tuple[Any, ...]]:
    pure = outcomes(path, False, **options)
    compiled = outcomes(path, True, **options)
    assert compiled == pure
    return pure


# -- journals hypothesis writes -------------------------------------------------------------

entries = st.lists(
    st.one_of(
        st.tuples(st.just("own"), books()),
        st.tuples(
            st.just("builder"),
            books(max_levels=4),
            # Writer.append refuses a book without its names.
            st.sets(st.sampled_from(FIELDS)).map(lambda s: s | {"exchange_name", "symbol"}),
            st.permutations(FIELDS),
        ),
        st.tuples(st.just("filler"), st.integers(1, 200)),
    ),
    min_size=1,
    max_size=12,
)


def write_entries(path: Path, chosen: list[tuple[Any, ...]]) -> None:
    with journal.Writer(path, segment_size=SEGMENT_SIZE) as writer:
        for entry in chosen:
            if entry[0] == "own":
                writer.append_orderbook(*entry[1].args())
            elif entry[0] == "builder":
                _, book, present, order = entry
                writer.append(build_official(book, frozenset(present), tuple(order)))
            else:
                for sequence in range(entry[1]):
                    writer.append_orderbook("upbit", "BTC-KRW", 1, sequence, BIDS, ASKS, 7)


@compiled_only
def test_generated_journals_read_alike(shm_dir: Path) -> None:
    count = 0

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(entries, st.data())
    def check(chosen: list[tuple[Any, ...]], data: st.DataObject) -> None:
        nonlocal count
        count += 1
        path = shm_dir / f"generated-{count}"
        write_entries(path, chosen)
        try:
            seen = same_outcomes(path)
            assert seen[-1][0] == "end", seen[-1]
            same_outcomes(path, verify=False)
            # Resumed at a saved position, and started at a time.
            records = [entry for entry in seen if entry[0] != "end"]
            resume = data.draw(st.sampled_from(records))
            same_outcomes(path, start=resume[0])
            same_outcomes(path, start=data.draw(st.sampled_from(records))[6])
        finally:
            for index in segment_indices(path):
                segment_path(path, index).unlink()
            with contextlib.suppress(OSError):
                for leftover in path.iterdir():
                    leftover.unlink()
                path.rmdir()

    check()


@compiled_only
def test_rolls_sealed_and_open_segments_read_alike(journal_dir: Path) -> None:
    write_entries(journal_dir, [("filler", 700)])
    indices = segment_indices(journal_dir)
    assert len(indices) >= 4  # sealed ones, the open one (and the prepared one, empty)
    seen = same_outcomes(journal_dir)
    assert [entry[5] for entry in seen[:-1]] == list(range(700))
    assert {entry[0][0] for entry in seen[:-1]} <= set(indices)
    same_outcomes(journal_dir, start="end")


@compiled_only
def test_radar_results_are_read_by_the_python_step(journal_dir: Path) -> None:
    import flatbuffers
    from RadarData import RadarResult as RR

    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE, payload_id=b"RDR1") as writer:
        for i in range(400):
            builder = flatbuffers.Builder(128)
            base = builder.CreateString("BTC")
            RR.Start(builder)
            RR.AddTimestampNs(builder, 5_000 + i)
            RR.AddBase(builder, base)
            RR.AddEdgeBps(builder, float(i))
            builder.FinishSizePrefixed(RR.End(builder), file_identifier=b"RDR1")
            writer.append(bytes(builder.Output()))
    seen = same_outcomes(journal_dir)
    assert len(seen) == 401 and seen[0][0] == "table"


@compiled_only
def test_views_outlive_the_reader_and_point_into_its_mapping(journal_dir: Path) -> None:
    write_entries(journal_dir, [("filler", 3)])
    with journal.Reader(journal_dir, metrics=False) as reader:
        record = reader.try_next()
        assert record is not None
        assert record.bids.base is reader._pinned and record.asks.base is reader._pinned
        with pytest.raises(ValueError, match="read-only"):
            record.bids[0, 0] = 1.0
    assert record.bids.tolist() == BIDS and record.asks.tolist() == ASKS
    del reader
    assert record.bids.tolist() == BIDS


# -- the reader's counters -------------------------------------------------------------------


def counters(reader: Reader) -> tuple[int, ...]:
    path = reader._metrics.path
    assert path is not None
    words = struct.unpack_from("<QQQqq", path.read_bytes(), M.READER_SEGMENT_OFFSET)
    return words[:4]


@compiled_only
def test_counters_are_stored_alike(journal_dir: Path) -> None:
    write_entries(journal_dir, [("filler", 400)])
    stored = []
    polls: list[int] = []
    for kind, name in ((PureReader, "pure"), (Reader, "compiled")):
        with kind(journal_dir, name=name) as reader:
            records = list(reader.available())
            stored.append(counters(reader))
            assert reader._metrics._records == len(records) == 400
            for _ in range(3):
                assert reader.try_next() is None
            polls.append(reader._metrics._empty_polls)
            last_poll = struct.unpack_from(
                "<q", reader._metrics.path.read_bytes(), M.READER_LAST_POLL_NS_OFFSET
            )[0]
            assert abs(last_poll - time.time_ns()) < 60e9
    assert stored[0] == stored[1]
    assert polls[0] == polls[1] == 5  # two at the end of available(), then these three
    assert stored[1][2] == 400 and stored[1][3] == 7


# -- damaged segments ---------------------------------------------------------------------------


def poke(path: Path, index: int, at: int, value: bytes) -> None:
    fd = os.open(segment_path(path, index), os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, value, at)
    finally:
        os.close(fd)


@compiled_only
@pytest.mark.parametrize(
    ("at", "value"),
    [case[1:3] for case in SEGMENT_DAMAGE],
    ids=[case[0] for case in SEGMENT_DAMAGE],
)
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_damaged_records_fail_alike(
    at: int, value: bytes, verify: bool, journal_dir: Path, shm_dir: Path
) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        positions = [writer.append_orderbook(*GOOD_ARGS) for _ in range(3)]
        # The same book in the builder's layout: damage hits the verifier's path there.
        builder = [writer.append(build_official(book_of_good())) for _ in range(3)]
    poke(journal_dir, 0, positions[1][1] + at, value)
    poke(journal_dir, 0, builder[1][1] + at, value)
    seen = same_outcomes(journal_dir, verify=verify)
    assert seen[0][0] == positions[0]


def book_of_good() -> Book:
    exchange, symbol, timestamp, sequence, bids, asks, local = GOOD_ARGS
    return Book(
        exchange,
        symbol,
        timestamp,
        sequence,
        [tuple(level) for level in bids],
        [tuple(level) for level in asks],
        local,
    )


@compiled_only
@pytest.mark.parametrize(
    "damage", [case[1] for case in CHAIN_DAMAGE], ids=[case[0] for case in CHAIN_DAMAGE]
)
def test_broken_chains_fail_alike(
    damage: Callable[[Path, list[tuple[int, int]]], tuple[int, int]], journal_dir: Path
) -> None:
    # Some of these only `journal verify` reports; a reader may end quietly. Alike.
    damage(journal_dir, write_chain(journal_dir))
    same_outcomes(journal_dir)


@compiled_only
def test_commit_and_frames_out_of_bounds_fail_alike(journal_dir: Path) -> None:
    positions = write_chain(journal_dir)
    last = segment_indices(journal_dir)[-1]
    for at, value in (
        (F.COMMIT_OFFSET_OFFSET, struct.pack("<Q", 1 << 40)),  # past the file
        (F.COMMIT_OFFSET_OFFSET, struct.pack("<Q", positions[-1][1] + 3)),  # not aligned
        (positions[-1][1], struct.pack("<I", 0xFFFFFFFF)),  # an end marker, header open
        (positions[-1][1], struct.pack("<I", 0)),  # a size prefix of 0
    ):
        index = positions[-1][0] if at != F.COMMIT_OFFSET_OFFSET else last
        with open(segment_path(journal_dir, index), "rb") as segment:
            segment.seek(at)
            original = segment.read(len(value))
        poke(journal_dir, index, at, value)
        try:
            seen = same_outcomes(journal_dir)
            assert seen[-1][0] in ("error", "end")
        finally:
            poke(journal_dir, index, at, original)


@compiled_only
def test_fuzzed_segments_read_alike(journal_dir: Path) -> None:
    """Bytes of committed records changed at random: whatever the pure reader makes
    of them (records, or an error at some point), the compiled one makes the same."""
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        positions = [writer.append_orderbook(*GOOD_ARGS) for _ in range(3)]
        positions += [
            writer.append(build_official(book_of_good(), frozenset(present), order))
            for present, order in (
                (FIELDS, FIELDS),
                (set(FIELDS) - {"timestamp", "bids"}, tuple(reversed(FIELDS))),
                (set(FIELDS) - {"asks", "sequence"}, FIELDS),
            )
        ]
        positions.append(writer.append_orderbook("e", "s", 0, 0, [], [], 0))
    path = segment_path(journal_dir, 0)
    original = path.read_bytes()
    commit = struct.unpack_from("<Q", original, F.COMMIT_OFFSET_OFFSET)[0]
    starts = [offset for _, offset in positions]

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(range(len(starts))),
                st.integers(0, 120),
                st.one_of(
                    st.sampled_from([0, 1, 2, 4, 7, 8, 0x10, 0x7F, 0x80, 0xFE, 0xFF]),
                    st.integers(0, 255),
                ),
            ),
            min_size=1,
            max_size=4,
        ),
        st.booleans(),
    )
    def check(flips: list[tuple[int, int, int]], verify: bool) -> None:
        for record, at, value in flips:
            where = min(starts[record] + at, commit - 1)
            poke(journal_dir, 0, where, bytes([value]))
        try:
            same_outcomes(journal_dir, verify=verify)
        finally:
            poke(journal_dir, 0, F.HEADER_SIZE, original[F.HEADER_SIZE : commit])

    check()


# -- live: a writer process, the compiled reader iterating --------------------------------------

WRITER = """
import sys, journal
path, count = sys.argv[1], int(sys.argv[2])
bids = [[100.0 - i, 1.0 + i] for i in range(10)]
asks = [[101.0 + i, 1.0 + i] for i in range(10)]
with journal.Writer(path, segment_size=65536) as writer:
    for i in range(count):
        writer.append_orderbook("upbit", "BTC-KRW", i, i, bids, asks)
"""


@contextlib.contextmanager
def writer_process(path: Path, count: int) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(count)])
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


@compiled_only
@pytest.mark.parametrize("idle", ["spin", "futex"])
def test_a_live_writer_is_followed_across_rolls(journal_dir: Path, idle: str) -> None:
    count = 3000
    with Reader(journal_dir, idle=idle) as reader, writer_process(journal_dir, count) as child:
        assert type(reader) is _CompiledReader
        got = []
        deadline = time.monotonic() + 60
        for record in reader:
            assert record.sequence == len(got), record
            got.append(describe(record))
            if len(got) == count:
                break
            assert time.monotonic() < deadline
        assert child.wait(timeout=30) == 0
    assert got[-1][0][0] >= 10  # rolled across many segments
    assert same_outcomes(journal_dir)[:-1] == got


@compiled_only
def test_empty_and_missing_sides_are_the_shared_empty_view(journal_dir: Path) -> None:
    with journal.Writer(journal_dir, segment_size=SEGMENT_SIZE) as writer:
        writer.append_orderbook("e", "s", 0, 0, [], [], 0)
        writer.append(build_official(book_of_good(), frozenset(FIELDS) - {"bids", "asks"}))
    with Reader(journal_dir, metrics=False) as reader:
        for record in reader.available():
            assert record.bids is _decode._NO_LEVELS and record.asks is _decode._NO_LEVELS
    assert OB.PAYLOAD_ID == b"OBK1"


# -- the compiled records: level views made on first use ---------------------------------------


def first_records(path: Path) -> tuple[Any, Any]:
    with PureReader(path, metrics=False) as pure, Reader(path, metrics=False) as compiled:
        return pure.try_next(), compiled.try_next()


@compiled_only
def test_compiled_records_are_order_book_records(journal_dir: Path) -> None:
    write_entries(journal_dir, [("filler", 2)])
    pure, compiled = first_records(journal_dir)
    assert _native.creader is not None
    assert type(compiled) is _native.creader.OrderBookRecord
    assert isinstance(compiled, journal.OrderBookRecord)
    assert type(compiled).__mro__[1] is journal.OrderBookRecord
    assert repr(compiled) == repr(pure) and compiled.to_dict() == pure.to_dict()
    assert compiled.bids is compiled.bids  # made once, then kept
    with pytest.raises(AttributeError):
        compiled.other = 1  # no __dict__, as the base


@compiled_only
@pytest.mark.parametrize("side", ["bids", "asks"])
def test_level_views_set_or_deleted_before_use_behave_as_slots(
    journal_dir: Path, side: str
) -> None:
    write_entries(journal_dir, [("filler", 2)])
    for record in first_records(journal_dir):
        setattr(record, side, "mine")
        assert getattr(record, side) == "mine"
    for record in first_records(journal_dir):
        delattr(record, side)
        with pytest.raises(
            AttributeError, match=f"'OrderBookRecord' object has no attribute '{side}'"
        ):
            getattr(record, side)
        with pytest.raises(AttributeError, match=side):
            delattr(record, side)
        setattr(record, side, 1)
        assert getattr(record, side) == 1


@compiled_only
@pytest.mark.parametrize(
    "copy_it",
    [
        lambda record: pickle.loads(pickle.dumps(record)),
        copy.copy,
        copy.deepcopy,
    ],
    ids=["pickle", "copy", "deepcopy"],
)
def test_compiled_records_copy_and_pickle_as_the_python_ones(
    journal_dir: Path, copy_it: Callable[[Any], Any]
) -> None:
    write_entries(journal_dir, [("filler", 2)])
    pure, compiled = first_records(journal_dir)
    copies = copy_it(pure), copy_it(compiled)
    assert type(copies[0]) is type(copies[1]) is journal.OrderBookRecord
    assert copies[0].to_dict() == copies[1].to_dict() == pure.to_dict()

    def views(record: Any) -> list[tuple[Any, ...]]:
        return [
            (side.tolist(), side.flags.writeable, side.flags.owndata, side.base is None)
            for side in (record.bids, record.asks)
        ]

    assert views(copies[0]) == views(copies[1])


@compiled_only
def test_views_made_after_the_reader_closed_read_the_record(journal_dir: Path) -> None:
    """A record holds the mapping until its views are made, as its views would."""
    write_entries(journal_dir, [("filler", 200)])
    with Reader(journal_dir, metrics=False) as reader:
        records = list(reader.available())
    del reader
    for path in sorted(journal_dir.glob("*.journal")):
        path.unlink()  # gone from the directory: the mappings stay while referenced
    assert all(record.bids.tolist() == BIDS and record.asks.tolist() == ASKS for record in records)
    assert [record.sequence for record in records] == list(range(200))


@compiled_only
def test_a_compiled_record_in_a_cycle_is_collected(journal_dir: Path) -> None:
    write_entries(journal_dir, [("filler", 2)])
    kind = type(first_records(journal_dir)[1])

    def alive() -> int:
        return sum(type(thing) is kind for thing in gc.get_objects())

    gc.collect()
    before = alive()
    _, compiled = first_records(journal_dir)
    compiled.position = compiled  # a cycle through a slot: only the collector frees it
    assert alive() == before + 1
    del compiled
    gc.collect()
    assert alive() == before
