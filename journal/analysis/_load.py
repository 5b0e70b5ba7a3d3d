"""Offline analysis: order books from archives and journals into numpy columns.

    books = load_books(["archive/upbit", "/dev/shm/books/binance"],
                       start_ns=t0, end_ns=t1, symbols=["BTC-KRW", "BTC-USDT"])
    books.bid_price[:, 0]            # best bid of every book, float64
    books.exchanges[books.exchange_code[i]]

Millions of records a second, every record checked, and no Python loop per record:

* **Output allocated once.** Every live segment is walked (its record boundaries
  found and checked) and every archive's index read before the first decoded block
  is written, so the output columns are allocated once for all the rows: growing
  them as records come costs as much as decoding. An archive's record counts are
  only its own claim (a hostile index can claim billions), so they size the output
  up to one record per compressed byte; past that the columns grow as records are
  actually found.
* **Buffers.** A buffer is the committed part of a live segment, or consecutive
  zstd frames of an archive decompressed into one buffer (a few MiB, so that the
  numpy calls of a block are spread over thousands of records).
* **Walked with numpy.** Record boundaries are found from the payload identifier
  every record carries (at ``RECORD_PAYLOAD_ID_OFFSET``) and checked to chain from
  size prefix to size prefix (journal._frames' rules record by record only when they
  do not, which then finds the records or the first bad frame). Each zstd frame is
  walked on its own, its record and value counts checked against its index entry.
* **Grouped by shape.** Records in the writer's own layout (journal._orderbook_layout)
  are grouped by every byte but their values (timestamps, sequence, the levels'
  doubles): size and offsets, vector lengths, names, padding. One record of each
  shape is checked by journal._decode's own-layout reader, whose verdict then holds
  for every record equal to it on those bytes, and its names decoded once a load;
  each record is compared with its shape's record, word for word. Levels and values
  are then gathered for thousands of records at a time. Records in another layout
  (the official builder's, via ``Writer.append``) go through the verifying decoder
  one by one, as journal.Reader reads them.
* **Threads.** zstd and numpy's bulk copies and comparisons run without the GIL.
  While this thread finds shapes and names, worker threads walk live segments and
  decompress archive frames (each into its place in its buffer, walked there, the
  version-2 value planes turned back into values) a few buffers ahead, and a writer
  thread gathers a live block's levels and values into the columns while the next
  block is decoded. ``threads=0`` does it all in the calling thread, with the same
  result.

Corrupt bytes raise CorruptSegmentError / CorruptArchiveError with their position.
So does a journal whose segments do not chain: each must be sealed but the newest
(and the open one before an empty newest: a roll under way), else the one left open
had its commit cut short, and reading up to it would skip records without a word;
likewise an archive of an unsealed segment.
A stream's segments are checked together, wherever they come from (archives and its
live journal): a segment missing between two that are there (the compactor keeps a
segment it could not archive in tmpfs, so a hole in the archive that tmpfs fills is
none) would drop its books without a word, so it raises MissingSegmentsError unless
``allow_gaps=True``, which reads around it and lists it in ``Books.gaps``.
The time range ``[start_ns, end_ns)`` is on ``local_timestamp_ns`` (the collector
clock, which the archive's time index covers). Rows come in source order, each source
in segment order; a segment present both in an archive and in tmpfs (the compactor
keeps the newest sealed ones) is read once.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from journal import _layout as F
from journal import _orderbook_layout as OB
from journal._decode import OrderBookRecord, _read_own_layout, read_orderbook
from journal._errors import CorruptArchiveError, CorruptSegmentError, JournalError
from journal._inspect import SegmentState, chain_break, load_states, open_segments
from journal._segment import segment_indices
from journal._verify import RADAR_RESULT_SCHEMA, VerificationError
from journal.archive._archive import ArchiveReader, FrameEntry, archive_files, plane_values
from journal.archive._layout import (
    ARCHIVE_SUFFIX,
    END_MARKER_OFFSET_OFFSET,
    MIN_VALUE_FRAME,
    VALUE_WORDS,
)

__all__ = ["DEFAULT_DEPTH", "Books", "MissingSegmentsError", "SegmentGap", "load_books"]

DEFAULT_DEPTH: Final = 10
_BLOCK: Final = 32768
"""Records decoded at once: few enough for temporaries of a few MB, enough that the
per-block work (grouping shapes, a few dozen numpy calls) is spread thin."""
_CHUNK_BYTES: Final = 4 << 20
"""Raw bytes of consecutive archive frames decoded as one buffer (a frame larger
than this is a buffer of its own)."""
_WRITES_AHEAD: Final = 2
"""Blocks whose columns the writer thread has yet to write while the next is decoded."""
_MAX_THREADS: Final = 4
"""Default workers: one CPU short of the machine's (this thread decodes, the writer
writes), at most this many."""
_QUEUED_MAX: Final = 4
"""Blocks decoded while the workers still walk later segments, before the output is
allocated (their columns are written then)."""

_MOVED_SIZE: Final = MIN_VALUE_FRAME - F.SIZE_PREFIX_SIZE - (F.RECORD_ALIGNMENT - 1)
"""The smallest size prefix of a record frame (padded to 8 bytes) of MIN_VALUE_FRAME
bytes or more: one whose values an archive moves to its value planes."""

# Records are read as u64 words (journal._orderbook_layout names them): a record at
# word ``slot`` of a buffer has its word ``w`` at ``slot + w``.
_WORD: Final = OB.WORD_SIZE
_WORD_SHIFT: Final = _WORD.bit_length() - 1
"""``n >> _WORD_SHIFT == n // _WORD`` (a word is a power of two bytes), the faster on
arrays."""
assert 1 << _WORD_SHIFT == _WORD
_U32_SIZE: Final = np.dtype("<u4").itemsize
_U32_PER_WORD: Final = _WORD // _U32_SIZE
_ID_WORD: Final = OB.word(F.RECORD_PAYLOAD_ID_OFFSET)
"""The identifier is the low half of this word of a record (u32 ``2 slot + 2``)."""
assert OB.word_shift(F.RECORD_PAYLOAD_ID_OFFSET) == 0
_HEAD_WORDS: Final = OB.HEAD_WORDS
"""The head of the writer's own layout, through len(bids) (OB.HEAD_STRUCT): the size
prefix and root offset, OB.FIXED_WORDS (identifier and vtable, the same in every
record), the table's soffset and the exchange name's offset, OB.VALUE_WORDS
(timestamp, sequence, local_timestamp_ns), the symbol's and the bids' offsets, the
asks' offset and len(bids)."""
_HEAD_SIZE: Final = OB.HEAD_SIZE
_FIXED_WORDS: Final = np.frombuffer(OB.FIXED_WORDS_BYTES, "<u8")
"""OB.FIXED_WORDS of every record in the writer's layout: identifier, vtable, padding."""
_VALUES: Final = slice(OB.VALUE_WORDS[0], OB.VALUE_WORDS[-1] + 1)
_KEY_HEAD_WORDS: Final = tuple(
    w for w in range(_HEAD_WORDS) if w not in OB.FIXED_WORDS and w not in OB.VALUE_WORDS
)
"""The head words that tell shapes apart (_shapes): the size prefix and root offset,
the exchange name's offset, the symbol's, the bids' and the asks' offsets, len(bids)."""
_KEY_FIXED_COLUMNS: Final = len(_KEY_HEAD_WORDS) + 1
"""Key columns before the tail words: the head's, then the word holding len(asks)."""


def _high_u32(pos: int) -> tuple[int, np.uint64]:
    """The word holding the u32 at record byte ``pos`` and the shift that brings it
    down: it is the word's high half, so no mask is needed."""
    shift = OB.word_shift(pos)
    assert shift + 8 * OB.UOFFSET_SIZE == 8 * _WORD
    return OB.word(pos), np.uint64(shift)


_EXCHANGE_WORD, _EXCHANGE_SHIFT = _high_u32(OB.EXCHANGE_NAME_POS)
"""The exchange name's offset (from OB.EXCHANGE_NAME_POS)."""
_N_BIDS_WORD, _N_BIDS_SHIFT = _high_u32(OB.BIDS_VECTOR_POS)
"""len(bids)."""
_ASKS_LENGTH_WORD: Final = OB.word(OB.asks_vector_pos(0))
"""The word holding len(asks) in a record without bids; OB.LEVEL_WORDS more per bid."""
_BIDS_WORD: Final = OB.word(OB.BIDS_LEVELS_POS)
"""The first bid level."""
_MAX_TAIL_WORDS: Final = 32
"""Words from the exchange name's length to a record's end (names, NULs, padding)
compared for grouping; records with longer names are read by the verifying decoder."""
_HASH: Final = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93]
    + [0xFF51AFD7ED558CCD + 2 * k for k in range(_MAX_TAIL_WORDS + 1)],
    np.uint64,
)
"""Odd multipliers, one per key word: a key's hash is the XOR of word * multiplier."""
_BUCKET_BITS: Final = 12
"""Hashes are first grouped by their top bits (a bincount, no sort)..."""
_FEW_GROUPS: Final = 32
"""...when there are at most this many (each costs a pass to find its first)."""


@dataclass(frozen=True)
class SegmentGap:
    """Segments ``first..last`` of one incarnation of a stream, absent from every source
    although segments before and after them are there: their books are not loaded.
    ``stream``: the journal's name (the archive's ``ARCHIVE/<stream>`` directory)."""

    stream: str
    incarnation_ns: int
    first: int
    last: int

    def __str__(self) -> str:
        which = f"{self.first}" if self.first == self.last else f"{self.first}..{self.last}"
        plural = "" if self.first == self.last else "s"
        return f"stream {self.stream}: segment{plural} {which} missing"


class MissingSegmentsError(JournalError):
    """Segments of a stream are missing between others loaded (``gaps``)."""

    def __init__(self, gaps: Sequence[SegmentGap]) -> None:
        super().__init__(
            "; ".join(map(str, gaps))
            + " (neither archived nor in the live journal among the sources): their books "
            "would be skipped. Add the archive or journal that holds them, or read around "
            "them with allow_gaps=True (journal analyze/export --allow-gaps)"
        )
        self.gaps = tuple(gaps)


@dataclass
class Books:
    """Order books as columns; row ``i`` is one book.

    ``timestamp`` (exchange time, ms), ``local_timestamp_ns`` (collector time),
    ``sequence``: int64. ``exchange_code``/``symbol_code``: int32 indices into
    ``exchanges``/``symbols``. ``bid_price``, ``bid_qty``, ``ask_price``,
    ``ask_qty``: (n, depth) float64, best level first, NaN beyond a book's depth.
    ``segment``/``offset``: where each record is (its ``position``). ``gaps``: the
    segments missing in the middle of a stream, read around (``allow_gaps=True``).
    """

    timestamp: np.ndarray
    local_timestamp_ns: np.ndarray
    sequence: np.ndarray
    exchange_code: np.ndarray
    symbol_code: np.ndarray
    bid_price: np.ndarray
    bid_qty: np.ndarray
    ask_price: np.ndarray
    ask_qty: np.ndarray
    segment: np.ndarray
    offset: np.ndarray
    exchanges: list[str] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)
    gaps: tuple[SegmentGap, ...] = ()

    COLUMNS: Final = (  # type: ignore[misc]
        "timestamp",
        "local_timestamp_ns",
        "sequence",
        "exchange_code",
        "symbol_code",
        "bid_price",
        "bid_qty",
        "ask_price",
        "ask_qty",
        "segment",
        "offset",
    )

    def __len__(self) -> int:
        return len(self.timestamp)

    @property
    def depth(self) -> int:
        return self.bid_price.shape[1]

    def select(self, rows: np.ndarray) -> Books:
        """The books at ``rows`` (a boolean mask or indices); names lists are shared."""
        columns = {name: getattr(self, name)[rows] for name in self.COLUMNS}
        return Books(**columns, exchanges=self.exchanges, symbols=self.symbols, gaps=self.gaps)

    def where(self, exchange: str | None = None, symbol: str | None = None) -> Books:
        """The books of one exchange and/or symbol."""
        mask = np.ones(len(self), dtype=bool)
        if exchange is not None:
            code = self.exchanges.index(exchange) if exchange in self.exchanges else -1
            mask &= self.exchange_code == code
        if symbol is not None:
            code = self.symbols.index(symbol) if symbol in self.symbols else -1
            mask &= self.symbol_code == code
        return self.select(mask)

    @property
    def mid(self) -> np.ndarray:
        """(best bid + best ask) / 2; NaN when a side is empty."""
        return (self.bid_price[:, 0] + self.ask_price[:, 0]) / 2

    @property
    def spread_bps(self) -> np.ndarray:
        """(best ask - best bid) / mid in basis points; NaN when a side is empty."""
        mid = self.mid
        return (self.ask_price[:, 0] - self.bid_price[:, 0]) / mid * 1e4

    # -- as a table (journal.analysis._table: the columns journal export writes) ----------

    def to_arrow(self, layout: str = "list") -> Any:
        """A pyarrow Table: exchange, symbol, market, exchange_time, local_time,
        sequence and the levels (``layout="list"``: list<double> columns of each
        book's own levels; ``"wide"``: ``bid_price_0`` ... null past its depth).
        Needs pyarrow (``pip install 'orderbook-journal[parquet]'``)."""
        from journal.analysis._table import books_arrow

        return books_arrow(self, layout=layout)

    def to_pandas(self, layout: str = "list") -> Any:
        """A pandas DataFrame of to_arrow's columns: timestamps tz-aware UTC, names
        categorical, ``sequence`` nullable Int64, lists as ``pd.ArrowDtype``
        (``layout="wide"``: nullable Float64 columns). Needs the ``pandas`` extra."""
        from journal.analysis._table import books_pandas

        return books_pandas(self, layout)

    def to_polars(self, layout: str = "list") -> Any:
        """A Polars DataFrame of to_arrow's columns (built without pyarrow): names
        Categorical, ``market`` an Enum, Datetime in UTC, List(Float64) levels (or
        ``layout="wide"``). Needs the ``polars`` extra."""
        from journal.analysis._table import books_polars

        return books_polars(self, layout)


# -- where records come from ---------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    """Where a buffer of records is, for positions and error messages: a live segment,
    or consecutive zstd frames of an archive (``frames``: where each starts in the
    buffer, its index in the archive and its file offset, in buffer order)."""

    path: str
    segment_index: int
    segment_offset: int  # of the buffer's first byte
    frames: tuple[tuple[int, int, int], ...] = ()

    def corrupt(self, message: str, local: int) -> JournalError:
        """The error for bytes at ``local`` in the buffer, named by segment offset (and,
        in an archive, by zstd frame and that frame's file offset)."""
        at = self.segment_offset + local
        if not self.frames:
            return CorruptSegmentError(message, path=self.path, offset=at)
        k = max(bisect.bisect_right([begin for begin, _, _ in self.frames], local) - 1, 0)
        _, index, file_offset = self.frames[k]
        return CorruptArchiveError(
            f"zstd frame {index}: {message} at segment offset {at}",
            path=self.path,
            offset=file_offset,
        )


class _Names:
    """Name codes, in order of first appearance, with an optional filter; the names
    it leaves out are kept too (``refused``), to say what the sources hold."""

    def __init__(self, allowed: Iterable[str] | None = None) -> None:
        self.allowed = None if allowed is None else set(allowed)
        self.names: list[str] = []
        self.codes: dict[str, int] = {}
        self.refused: set[str] = set()

    def code(self, name: str) -> int:
        """The code of ``name``, or -1 if the filter leaves it out."""
        if self.allowed is not None and name not in self.allowed:
            self.refused.add(name)
            return -1
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    @property
    def held(self) -> tuple[str, ...]:
        """Every name met, kept or left out, sorted."""
        return tuple(sorted({*self.names, *self.refused}))


@dataclass(frozen=True)
class SourceContents:
    """What a load met in its sources, whatever its filters kept: to say why a
    selection is empty. ``exchanges``/``symbols``: the names of the records read
    (an archive's frames outside the time range are not read, so with ``--from``/
    ``--to`` these may lack some); ``first_ns``/``last_ns``: the local time range of
    every record, read or (an archive's) in its index; None if there is none."""

    exchanges: tuple[str, ...]
    symbols: tuple[str, ...]
    first_ns: int | None
    last_ns: int | None


@dataclass
class _Walking:
    """A live segment's buffer being walked (_walk) by a worker."""

    u8: np.ndarray
    origin: _Origin
    walk: concurrent.futures.Future[tuple[np.ndarray, np.ndarray, bool]]

    def result(self) -> _Walked:
        starts, sizes, _ = self.walk.result()
        return _Walked(self.u8, self.origin, starts, sizes)


@dataclass
class _Walked:
    """A buffer of records with its record offsets and size prefixes (from _walk);
    ``values``: their timestamp, sequence and local_timestamp_ns rows when they come
    from an archive's value planes (else they are in the records)."""

    u8: np.ndarray
    origin: _Origin
    starts: np.ndarray
    sizes: np.ndarray
    values: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.starts)


@dataclass(frozen=True)
class _ArchivePlan:
    """An archive to read: its index as planned, its buffers (lists of consecutive
    zstd frames) and the rows its index lets us reserve for it (``rows``, _claim)."""

    path: Path
    index: tuple[FrameEntry, ...]
    chunks: tuple[tuple[int, ...], ...]
    rows: int


@dataclass(frozen=True)
class _FrameRecords:
    """A zstd frame's records, walked and checked against the index (_inflate):
    offsets in the frame, size prefixes, and values (version 2: (3, n) from the value
    planes, zero for the records too small to have had them moved; else None)."""

    starts: np.ndarray
    sizes: np.ndarray
    values: np.ndarray | None


@dataclass
class _Chunk:
    """A buffer of an archive being filled by a decompression worker: its future
    gives each frame's records once their raw bytes are in ``u8`` at their place."""

    reader: ArchiveReader
    frames: tuple[int, ...]
    u8: np.ndarray
    future: concurrent.futures.Future[list[_FrameRecords]]


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each task at once in the calling thread (``threads=0``): the same code
    path as the workers', in one thread. A task's error is raised by ``result()``, as
    a worker's would be; a KeyboardInterrupt (Ctrl-C) is the caller's, not the task's,
    and is raised at once (kept in the future, it could land after the result was set
    and the future refuse it: InvalidStateError instead of the interrupt)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            future.set_exception(error)
        else:
            future.set_result(result)
        return future


_INLINE: Final = _InlineExecutor()


@contextlib.contextmanager
def _executor(threads: int, name: str) -> Iterator[concurrent.futures.Executor]:
    """``threads`` worker threads (none: _InlineExecutor); on exit, the tasks not
    started are cancelled and the running ones waited for."""
    if not threads:
        yield _INLINE
        return
    executor = concurrent.futures.ThreadPoolExecutor(threads, name)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


# -- sources ----------------------------------------------------------------------------------


def source_parts(path: Path) -> list[tuple[Path | None, Path | None]]:
    """What one source names, in load order: ``(journal directory, None)`` or ``(None,
    archive file)`` pairs. A source is an archive file, a live journal directory, an
    archive stream directory (``ARCHIVE/<stream>``, its files) or an archive root
    (every stream in it); anything else raises JournalError saying what it is."""
    if path.is_file():
        if not path.name.endswith(ARCHIVE_SUFFIX):
            raise JournalError(f"{path}: not an archive file (*{ARCHIVE_SUFFIX})")
        return [(None, path)]
    if not path.is_dir():
        raise JournalError(f"{path}: no such file or directory")
    if segment_indices(path):
        return [(path, None)]
    if archives := archive_files(path):
        return [(None, file) for file in archives]
    streams = [p for p in sorted(path.iterdir()) if p.is_dir() and archive_files(p)]
    if not streams:
        raise JournalError(f"{path}: no journal segments or archive files")
    return [(None, file) for stream in streams for file in archive_files(stream)]


def not_books(payload_id: bytes) -> str:
    """What load_books says of a journal or archive of another payload."""
    radar = payload_id == RADAR_RESULT_SCHEMA.payload_id
    hint = " (the radar's results: load_results reads them)" if radar else ""
    return f"payload_id={payload_id!r}, not order books{hint}"


# -- the loader --------------------------------------------------------------------------------


@dataclass
class _Loader:
    """One load: plans the sources, then decodes them in order into ``out``.

    ``plan``: the sources' buffers in order (a live segment being walked, an archive
    to decompress, or once decoded just its row count), decoded up to ``cut`` (where
    ``failure``, raised at the end, was met). ``filled``: the output rows given to
    the blocks decoded so far; ``queued``: blocks waiting for the output columns to be
    allocated (once every walk is done: allocated once, for all the rows), each with
    the executor that writes it (``writes``: the blocks being written). ``streams``:
    every segment planned, by stream name, as ``(created_ns, index, incarnation_ns)``,
    to find the ones missing (_stream_gaps); ``gaps``: those read around.
    """

    start_ns: int | None
    end_ns: int | None
    depth: int
    exchanges: _Names
    symbols: _Names
    threads: int
    allow_gaps: bool
    progress: Callable[[int, int | None], None] | None = None
    read: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    streams: dict[str, set[tuple[int, int, int]]] = field(default_factory=dict)
    gaps: tuple[SegmentGap, ...] = ()
    out: dict[str, np.ndarray] = field(default_factory=dict)
    filled: int = 0
    seen: set[tuple[int, ...]] = field(default_factory=set)
    known: dict[bytes, _Shape | None] = field(default_factory=dict)  # see _BlockDecoder
    walkers: concurrent.futures.Executor = _INLINE
    inflaters: concurrent.futures.Executor = _INLINE
    writer: concurrent.futures.Executor = _INLINE
    plan: list[_Walking | _ArchivePlan | int] = field(default_factory=list)
    cut: int = 0
    failure: Exception | None = None
    queued: deque[tuple[_BlockDecoder, np.ndarray, int, int, concurrent.futures.Executor]] = field(
        default_factory=deque
    )
    writes: deque[concurrent.futures.Future[None]] = field(default_factory=deque)

    def load(self, sources: Sequence[str | os.PathLike[str]]) -> None:
        """Plan every source (stopping at the first that fails), decode in order, then
        raise the failure if there was one: an error is raised after the sources
        before it are read, as in source order.

        While this thread decodes, ``walkers`` walk the live segments, ``inflaters``
        decompress the archives' frames (``threads`` of them: the decoding keeps up
        with no more on two CPUs), and ``writer`` writes a live segment's block's
        columns while the next is decoded (an archive's are written here: the
        inflaters keep the other CPUs busy)."""
        extra = min(self.threads, 1)
        with contextlib.ExitStack() as stack:
            self.walkers = stack.enter_context(_executor(self.threads + extra, "load_books_walk"))
            self.inflaters = stack.enter_context(_executor(self.threads, "load_books_zstd"))
            self.writer = stack.enter_context(_executor(extra, "load_books_write"))
            try:
                for source in sources:
                    self._plan_source(Path(source), stack)
            except Exception as error:  # raised below, after the sources before it
                self.failure = error
            else:  # (a failed plan lacks the sources after it: no gaps to tell)
                self.gaps = _stream_gaps(self.streams)
                if self.gaps and not self.allow_gaps:
                    raise MissingSegmentsError(self.gaps)
            self.cut = len(self.plan)
            self._decode_plan()
        if self.failure is not None:
            raise self.failure

    # -- planning ---------------------------------------------------------------------------

    def _plan_source(self, path: Path, stack: contextlib.ExitStack) -> None:
        for journal_dir, archive in source_parts(path):
            if journal_dir is not None:
                self._plan_journal(journal_dir, stack)
            else:
                assert archive is not None
                self._plan_archive(archive)

    def _first_time(self, key: tuple[int, ...], stream: str, incarnation_ns: int) -> bool:
        """Whether the segment ``key`` (index, created_ns, writer) is new to this load;
        recorded as a segment of ``stream`` either way."""
        self.streams.setdefault(stream, set()).add((key[1], key[0], incarnation_ns))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def _plan_journal(self, directory: Path, stack: contextlib.ExitStack) -> None:
        """Map every segment (kept mapped until the load ends), walked by a worker.

        Every segment but the newest must be sealed (the one before it may be open if
        the newest is empty: a roll under way), else its records would be read short
        of where they end (journal._inspect.chain_break). The headers are loaded as one
        cut of the journal (load_states), so a live writer's roll is no hole.
        """
        opened, failure = open_segments(directory, stack)
        states = load_states(opened)
        broken = chain_break(states)
        for position, state in enumerate(states):
            state.check_commit()
            self._plan_segment(state, directory.name)
            if broken is not None and broken[0] == position:
                raise broken[1]  # after the walks before it: their errors come first
        if failure is not None:
            raise failure

    def _plan_segment(self, state: SegmentState, stream: str) -> None:
        """A segment of ``stream`` walked by a worker, unless an archive planned gave
        its records."""
        segment = state.segment
        header = segment.header
        if header.payload_id != OB.PAYLOAD_ID:
            raise JournalError(f"{segment.path}: {not_books(header.payload_id)}")
        key = (segment.index, header.created_ns, header.writer.pid, header.writer.started_ns)
        if not self._first_time(key, stream, header.incarnation_ns):
            return
        u8 = np.frombuffer(segment.map, np.uint8, state.commit - F.HEADER_SIZE, F.HEADER_SIZE)
        origin = _Origin(str(segment.path), segment.index, F.HEADER_SIZE)
        walk = self.walkers.submit(_walk_segment, u8, origin, state)
        self.plan.append(_Walking(u8, origin, walk))

    def _plan_archive(self, path: Path) -> None:
        """Read the archive's index: which frames to decompress, in which buffers. Its
        stream is its directory's name (the compactor's ``ARCHIVE/<stream>``)."""
        with ArchiveReader(path) as reader:
            header = reader.header
            if header.payload_id != OB.PAYLOAD_ID:
                raise JournalError(f"{path}: {not_books(header.payload_id)}")
            key = (
                header.segment_index,
                header.created_ns,
                header.writer_pid,
                header.writer_started_ns,
            )
            if not self._first_time(key, path.parent.name, header.incarnation_ns):
                return
            if not header.sealed:
                raise CorruptArchiveError(
                    f"end_marker_offset=0: the archive of an unsealed segment (its records "
                    f"up to commit_offset={header.commit_offset} when it was copied); the "
                    "compactor archives sealed segments only: archive it again once sealed",
                    path=str(path),
                    offset=END_MARKER_OFFSET_OFFSET,
                )
            timed = [entry for entry in reader.frames if entry.record_count]
            if timed:
                self._met(min(e.min_time_ns for e in timed), max(e.max_time_ns for e in timed))
            frames = reader.frames_overlapping(self.start_ns, self.end_ns)
            chunks = _chunk_frames(reader, frames)
            self.plan.append(_ArchivePlan(path, reader.frames, chunks, _claim(reader, frames)))

    # -- decoding ---------------------------------------------------------------------------

    def _decode_plan(self) -> None:
        """Decode the planned sources in order, each live segment once it is walked,
        an archive's buffers as the workers fill them; a decoded source is left in
        the plan as its row count only (so a segment's mapping can be closed)."""
        archives = [unit for unit in self.plan if isinstance(unit, _ArchivePlan)]
        chunks = _filled_chunks(archives, self.inflaters, max(1, self.threads))
        try:
            k = 0
            while k < self.cut:
                unit = self.plan[k]
                if isinstance(unit, _Walking):
                    try:
                        walked = unit.result()
                    except Exception as error:  # raised after the sources before it
                        self.cut, self.failure = k, error
                        break
                    self.decode(walked, None, self.writer)
                    self.plan[k] = walked.rows
                elif isinstance(unit, _ArchivePlan):
                    for _ in unit.chunks:
                        self._decode_chunk(next(chunks))
                k += 1
            self._write_queued(force=True)
            while self.writes:
                self.writes.popleft().result()
        finally:
            chunks.close()  # waits for what it submitted, then closes the archives
            concurrent.futures.wait(self.writes)  # on an error: before the buffers go

    def _decode_chunk(self, chunk: _Chunk) -> None:
        """Decode a filled buffer of zstd frames (each already walked and checked by
        its worker), checking every record's time against its frame's index entry."""
        reader, entries = chunk.reader, [chunk.reader.frames[i] for i in chunk.frames]
        frames = chunk.future.result()  # a worker's error, in order
        begins = np.cumsum([0] + [entry.raw_size for entry in entries[:-1]])
        origin = _Origin(
            reader.path,
            reader.header.segment_index,
            entries[0].segment_offset,
            tuple(
                (int(begin), i, entry.file_offset)
                for begin, i, entry in zip(begins, chunk.frames, entries, strict=True)
            ),
        )
        starts = np.concatenate([f.starts + b for f, b in zip(frames, begins, strict=True)])
        sizes = np.concatenate([f.sizes for f in frames])
        planes = [f.values for f in frames if f.values is not None]
        values = np.concatenate(planes, axis=1) if len(planes) == len(frames) else None
        counts = [len(f.starts) for f in frames]
        low = np.repeat([entry.min_time_ns for entry in entries], counts)
        high = np.repeat([entry.max_time_ns for entry in entries], counts)
        # Written here, not by the writer: the workers are busy decompressing.
        self.decode(_Walked(chunk.u8, origin, starts, sizes, values), (low, high), _INLINE)

    def decode(
        self,
        walked: _Walked,
        time_bounds: tuple[np.ndarray, np.ndarray] | None,
        writer: concurrent.futures.Executor,
    ) -> None:
        """Decode every record of a walked buffer, a block at a time; keep those that
        pass the filters, their columns written by ``writer``. ``time_bounds``: each
        record's time must lie in them (an archive's index), else it is corrupt."""
        for block in range(0, walked.rows, _BLOCK):
            part = slice(block, block + _BLOCK)
            bounds = None if time_bounds is None else (time_bounds[0][part], time_bounds[1][part])
            values = None if walked.values is None else walked.values[:, part]
            self._decode_block(
                walked, walked.starts[part], walked.sizes[part], values, bounds, writer
            )
            if self.progress is not None:
                self.read += len(walked.starts[part])
                self.progress(self.read, self._planned_records())

    def _decode_block(
        self,
        walked: _Walked,
        starts: np.ndarray,
        sizes: np.ndarray,
        values: np.ndarray | None,
        time_bounds: tuple[np.ndarray, np.ndarray] | None,
        writer: concurrent.futures.Executor,
    ) -> None:
        """Decode the records at ``starts`` (size prefixes ``sizes``; ``values`` from
        value planes, if any) and keep those that pass the filters (_BlockDecoder)."""
        block = _BlockDecoder(walked.u8, walked.origin, starts, sizes, self.known, values)
        block.find_shapes()
        block.read_others()
        block.assign_names(self.exchanges, self.symbols)
        _, _, lts = block.values  # OB.VALUE_WORDS: timestamp, sequence, local_timestamp_ns
        if time_bounds is not None:
            block.check_times(lts, *time_bounds)
        if len(lts):
            self._met(int(lts.min()), int(lts.max()))
        keep = (block.exchange_code >= 0) & (block.symbol_code >= 0)
        if self.start_ns is not None:
            keep &= lts >= self.start_ns
        if self.end_ns is not None:
            keep &= lts < self.end_ns
        kept = int(np.count_nonzero(keep))
        if kept:
            self.queued.append((block, keep, kept, self.filled, writer))
            self.filled += kept
            self._write_queued(force=False)

    def _met(self, first_ns: int, last_ns: int) -> None:
        """Records from ``first_ns`` to ``last_ns`` are in the sources (contents)."""
        self.first_ns = first_ns if self.first_ns is None else min(self.first_ns, first_ns)
        self.last_ns = last_ns if self.last_ns is None else max(self.last_ns, last_ns)

    def contents(self) -> SourceContents:
        return SourceContents(self.exchanges.held, self.symbols.held, self.first_ns, self.last_ns)

    def _write_queued(self, *, force: bool) -> None:
        """Hand the queued blocks to the writer, once the output columns exist: they
        are allocated when every planned walk is done (or ``force``, or too many
        blocks wait), for all the planned rows; grown if an archive holds more."""
        if not self.queued:
            return
        if not self.out:
            if not force and len(self.queued) < _QUEUED_MAX and not self._walks_done():
                return
            self._reserve_plan()
        while self.queued:
            block, keep, kept, n, writer = self.queued.popleft()
            if n + kept > len(self.out["timestamp"]):
                self._grow(n + kept, written=n)
            while len(self.writes) >= _WRITES_AHEAD:
                self.writes.popleft().result()
            self.writes.append(writer.submit(block.write, self.out, n, keep, kept))

    def _planned_records(self) -> int | None:
        """The records of every source to read (live segments' walked, archives'
        claimed, _claim), once every walk is done; None before."""
        total = 0
        for unit in self.plan[: self.cut]:
            if isinstance(unit, _Walking):
                if not unit.walk.done() or unit.walk.exception() is not None:
                    return None
                total += len(unit.walk.result()[0])
            else:
                total += unit if isinstance(unit, int) else unit.rows
        return total

    def _walks_done(self) -> bool:
        return all(unit.walk.done() for unit in self.plan if isinstance(unit, _Walking))

    def _reserve_plan(self) -> None:
        """Allocate the output for every planned row: live segments' records, archives'
        claims (_claim); up to the first segment whose walk failed (the failure to
        raise once the sources before it are decoded)."""
        rows = 0
        for k, unit in enumerate(self.plan[: self.cut]):
            if isinstance(unit, _Walking):
                try:
                    rows += unit.result().rows
                except Exception as error:  # raised after the sources before it
                    self.cut, self.failure = k, error
                    break
            else:
                rows += unit if isinstance(unit, int) else unit.rows
        self._grow(max(rows, self.filled), written=0)

    def _grow(self, rows: int, *, written: int) -> None:
        """Output columns for at least ``rows`` rows (twice as many as before if more
        are needed: an archive that holds more records than its claim), the
        ``written`` rows copied once the writer is done with them."""
        have = len(self.out["timestamp"]) if self.out else 0
        size = rows if not have else max(rows, 2 * have)
        while self.writes:
            self.writes.popleft().result()
        grown = {}
        for name in Books.COLUMNS:
            if name.endswith(("_price", "_qty")):
                grown[name] = np.empty((size, self.depth), np.float64)
            else:
                dtype = np.int32 if name.endswith("_code") else np.int64
                grown[name] = np.empty(size, dtype)
            if written:
                grown[name][:written] = self.out[name][:written]
        self.out = grown

    def books(self) -> Books:
        if self.filled:
            n, size = self.filled, len(self.out["timestamp"])
            columns = {
                name: column if n == size else column[:n].copy()
                for name, column in self.out.items()
            }
        else:
            columns = {name: np.zeros(0, np.int64) for name in Books.COLUMNS}
            columns["exchange_code"] = columns["symbol_code"] = np.zeros(0, np.int32)
            for name in ("bid_price", "bid_qty", "ask_price", "ask_qty"):
                columns[name] = np.zeros((0, self.depth))
        return Books(
            **columns, exchanges=self.exchanges.names, symbols=self.symbols.names, gaps=self.gaps
        )


def _stream_gaps(streams: dict[str, set[tuple[int, int, int]]]) -> tuple[SegmentGap, ...]:
    """The segments missing from each stream's ``(created_ns, index, incarnation_ns)``.

    In creation order a stream's segments are its incarnations one after the other
    (a journal made again starts at segment 0; journal._archived.StreamSegment), each
    a run of increasing indices. A new incarnation starts where the index does not
    increase or the incarnation_ns (0: unknown, in older archives) changes. Missing
    are the indices skipped inside a run, and the first ones of every incarnation
    but the stream's first (before that, the stream's history simply starts later:
    the compactor removed it, or the caller did not ask for it).
    """
    gaps = []
    for stream, found in sorted(streams.items()):
        before: tuple[int, int, int] | None = None
        for created, index, incarnation in sorted(found):
            if before is not None:
                last, was = before[1], before[2]
                if index > last and not (incarnation and was and incarnation != was):
                    if index > last + 1:
                        gaps.append(SegmentGap(stream, incarnation or was, last + 1, index - 1))
                elif index:
                    gaps.append(SegmentGap(stream, incarnation, 0, index - 1))
            before = (created, index, incarnation)
    return tuple(gaps)


# -- archives: planning, decompressing, checking against the index ----------------------------


def _claim(reader: ArchiveReader, frames: list[int]) -> int:
    """Rows to reserve for ``frames``: their index's record counts, each at most the
    frame's compressed size. The counts are only the file's claim (a 34 KB file can
    claim billions of records); capped so, what a hostile file makes us reserve is
    bounded by its size, and real archives (tens of bytes a record) are reserved in
    full. The counts themselves are checked once the frames are walked."""
    return sum(min(reader.frames[i].record_count, reader.frames[i].compressed_size) for i in frames)


def _chunk_frames(reader: ArchiveReader, frames: list[int]) -> tuple[tuple[int, ...], ...]:
    """``frames`` in buffers: runs of consecutive frames of up to _CHUNK_BYTES raw bytes
    (at least one frame each), so that one buffer is contiguous segment bytes."""
    chunks: list[list[int]] = []
    raw = 0
    for i in frames:
        size = reader.frames[i].raw_size
        if chunks and chunks[-1][-1] == i - 1 and raw + size <= _CHUNK_BYTES:
            chunks[-1].append(i)
            raw += size
        else:
            chunks.append([i])
            raw = size
    return tuple(tuple(chunk) for chunk in chunks)


def _filled_chunks(
    archives: list[_ArchivePlan], executor: concurrent.futures.Executor, ahead: int
) -> Iterator[_Chunk]:
    """Every buffer of ``archives`` in order, its decompression submitted ``ahead``
    buffers before it is yielded (so as many workers are busy while the caller
    decodes one; the memory stays a few buffers). A buffer stays pending while the
    caller decodes it (it has waited for it when it asks for the next one); an
    archive is open from its first buffer's submission until its last is decoded.
    On an early exit the work submitted is cancelled or waited for, then the archives
    still open are closed."""
    pending: deque[_Chunk] = deque()
    readers: list[ArchiveReader] = []
    try:
        for plan in archives:
            if not plan.chunks:
                continue
            readers.append(ArchiveReader(plan.path))
            if readers[-1].frames != plan.index:  # the plan's frame numbers would be wrong
                raise JournalError(f"{plan.path}: the archive changed while it was being read")
            for frames in plan.chunks:
                pending.append(_submit(readers[-1], frames, executor))
                if len(pending) > ahead:
                    yield pending[0]
                    _decoded(pending, readers)
        while pending:
            yield pending[0]
            _decoded(pending, readers)
    finally:
        for chunk in pending:
            chunk.future.cancel()
        concurrent.futures.wait([chunk.future for chunk in pending])
        for reader in readers:
            reader.close()


def _decoded(pending: deque[_Chunk], readers: list[ArchiveReader]) -> None:
    """Drop the buffer just decoded; close its archive unless a pending buffer is of it."""
    reader = pending.popleft().reader
    if all(chunk.reader is not reader for chunk in pending):
        readers.remove(reader)
        reader.close()


def _submit(
    reader: ArchiveReader, frames: tuple[int, ...], executor: concurrent.futures.Executor
) -> _Chunk:
    """A buffer for ``frames`` (their raw sizes from the index, each at most the
    reader's max_frame_size), their decompression submitted as one task."""
    u8 = np.empty(sum(reader.frames[i].raw_size for i in frames), np.uint8)
    return _Chunk(reader, frames, u8, executor.submit(_inflate_chunk, reader, frames, u8))


def _inflate_chunk(
    reader: ArchiveReader, frames: tuple[int, ...], u8: np.ndarray
) -> list[_FrameRecords]:
    """Each of ``frames`` decompressed into its place in ``u8`` (_inflate), in order:
    the first bad one raises. Runs in a worker thread."""
    records = []
    at = 0
    for i in frames:
        size = reader.frames[i].raw_size
        records.append(_inflate(reader, i, u8[at : at + size]))
        at += size
    return records


def _inflate(reader: ArchiveReader, i: int, into: np.ndarray) -> _FrameRecords:
    """Decompress frame ``i`` (checked: ArchiveReader.decompress_frame) into ``into``
    and walk its records, checked against its index entry: the end marker only at the
    end of a sealed segment's last frame, the record count, and (version 2) the count
    of records whose values are in the planes."""
    content = reader.decompress_frame(i)
    entry = reader.frames[i]
    into[:] = np.frombuffer(content, np.uint8, entry.raw_size)
    origin = _Origin(
        reader.path, reader.header.segment_index, entry.segment_offset, ((0, i, entry.file_offset),)
    )
    sealed_end = i == len(reader.frames) - 1 and reader.header.sealed
    starts, sizes, marker = _walk(into, origin, marker_allowed=sealed_end)
    if sealed_end and not marker:
        raise origin.corrupt(
            "the archive is of a sealed segment but its last frame does not end with the "
            "end-of-segment marker",
            len(into),
        )
    if len(starts) != entry.record_count:
        raise origin.corrupt(f"{len(starts)} records, the index says {entry.record_count}", 0)
    if reader.header.archive_version < 2:  # no value planes
        return _FrameRecords(starts, sizes, None)
    moved = sizes >= _MOVED_SIZE
    count = int(np.count_nonzero(moved))
    if count != entry.value_count:
        raise origin.corrupt(
            f"{count} records of {MIN_VALUE_FRAME} bytes or more, the index says "
            f"value_count={entry.value_count}",
            0,
        )
    planes = plane_values(memoryview(content)[entry.raw_size :], count).view(np.int64)
    if count == len(starts):
        return _FrameRecords(starts, sizes, planes)
    values = np.zeros((len(VALUE_WORDS), len(starts)), np.int64)
    values[:, moved] = planes
    return _FrameRecords(starts, sizes, values)


# -- one block of records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the own-layout reader found in the first record of a shape: the same for
    every record of that shape (_shapes)."""

    n_bids: int
    n_asks: int
    exchange_name: str
    symbol: str


class _BlockDecoder:
    """The records of one block: their shapes, names, values, and what goes out.

    ``group[j]``: the shape of record ``j`` (an index into ``shapes``), -1 for a record
    the verifying decoder reads (``others``). ``known``: the verdicts on the shapes
    seen so far in this load, by their key's bytes (None: not the writer's layout),
    so that a shape is checked and its names decoded once per load.
    """

    def __init__(
        self,
        u8: np.ndarray,
        origin: _Origin,
        starts: np.ndarray,
        sizes: np.ndarray,
        known: dict[bytes, _Shape | None],
        planes: np.ndarray | None,
    ) -> None:
        self.u8, self.origin, self.starts, self.known = u8, origin, starts, known
        self.totals = sizes.astype(np.int64) + F.SIZE_PREFIX_SIZE
        k = len(starts)
        self.group = np.full(k, -1, np.int64)
        self.shapes: list[tuple[int, _Shape]] = []  # (first row, shape)
        self.others: dict[int, OrderBookRecord] = {}
        self.exchange_code = np.empty(k, np.int32)
        self.symbol_code = np.empty(k, np.int32)
        self.planes = planes  # the values from an archive's value planes, if any
        # timestamp, sequence, local_timestamp_ns of each record (OB.VALUE_WORDS)
        self.values = np.empty((len(OB.VALUE_WORDS), k), np.int64) if planes is None else planes

    def find_shapes(self) -> None:
        """Group the records that have a head (_HEAD_SIZE bytes or more) by shape
        (_shapes); the values of every headed record come from its head."""
        headed = np.flatnonzero(self.totals >= _HEAD_SIZE)
        every = len(headed) == len(self.starts)
        slots = self.starts // _WORD if every else self.starts[headed] // _WORD
        head = _head(self.u8, slots)
        if self.planes is not None:
            pass  # the values are the planes'; zero in the records
        elif every:  # the usual block: no index arrays, values a view of the heads
            self.values = head[_VALUES].view(np.int64)
        else:
            self.values[:, headed] = head[_VALUES].view(np.int64)
        totals = self.totals if every else self.totals[headed]
        group, firsts, keys = _shapes(self.u8, slots, totals, head)
        renumber = np.full(len(firsts) + 1, -1, np.int64)  # [-1] stays -1
        for g, (row, key) in enumerate(zip(firsts.tolist(), keys, strict=True)):
            shape = self.known.get(key, _UNSEEN)
            if shape is _UNSEEN:
                shape = self.known[key] = self._read_shape(
                    int(slots[row]) * _WORD, int(totals[row])
                )
            if shape is not None:  # else not the writer's layout: the decoder says what
                renumber[g] = len(self.shapes)
                self.shapes.append((int(row if every else headed[row]), shape))
        group = renumber[group]
        if every:
            self.group = group
        else:
            self.group[headed] = group

    def _read_shape(self, at: int, total: int) -> _Shape | None:
        """The own-layout reader's verdict on the record at ``at`` (None: not that
        layout), which holds for every record of its shape."""
        try:
            record = _read_own_layout(self.u8, at, at + total, None)
        except UnicodeDecodeError as error:
            raise self.origin.corrupt(f"record does not decode: {error}", at) from None
        if record is None:
            return None
        return _Shape(len(record.bids), len(record.asks), record.exchange_name, record.symbol)

    def read_others(self) -> None:
        """Decode the records outside every shape one by one, verified (their values
        first put back from the planes, if they were moved there)."""
        u8, origin = self.u8, self.origin
        for j in np.flatnonzero(self.group < 0).tolist():
            at = int(self.starts[j])
            if self.planes is not None and F.align_record(self.totals[j]) >= MIN_VALUE_FRAME:
                u8.view("<u8")[at // _WORD + VALUE_WORDS] = self.planes[:, j]
            position = (origin.segment_index, origin.segment_offset + at)
            try:
                record = read_orderbook(u8, at, at + int(self.totals[j]), position)
            except (VerificationError, UnicodeDecodeError) as error:
                raise origin.corrupt(f"record does not decode: {error}", at) from None
            self.others[j] = record
            self.values[:, j] = record.timestamp, record.sequence, record.local_timestamp_ns

    def assign_names(self, exchanges: _Names, symbols: _Names) -> None:
        """Name codes, given in order of first appearance (shapes and other records)."""
        named: list[tuple[int, int, _Shape | OrderBookRecord]] = [
            (row, g, shape) for g, (row, shape) in enumerate(self.shapes)
        ]
        named += [(j, -1, record) for j, record in self.others.items()]
        exchange_of = np.empty(len(self.shapes), np.int32)
        symbol_of = np.empty(len(self.shapes), np.int32)
        for row, g, names in sorted(named, key=lambda item: item[0]):
            exchange, symbol = exchanges.code(names.exchange_name), symbols.code(names.symbol)
            if g >= 0:
                exchange_of[g], symbol_of[g] = exchange, symbol
            else:
                self.exchange_code[row], self.symbol_code[row] = exchange, symbol
        if self.shapes:
            mine = self.group >= 0
            every = not self.others
            group = self.group if every else self.group[mine]
            for column, table in ((self.exchange_code, exchange_of), (self.symbol_code, symbol_of)):
                if every:
                    np.take(table, group, out=column)
                else:
                    column[mine] = table[group]

    def check_times(self, lts: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
        """Every record's time within its zstd frame's range in the index."""
        outside = np.flatnonzero((lts < low) | (lts > high))
        if len(outside):
            j = int(outside[0])
            raise self.origin.corrupt(
                f"record has time {int(lts[j])}, outside the index's {int(low[j])}..{int(high[j])}",
                int(self.starts[j]),
            )

    def write(self, out: dict[str, np.ndarray], n: int, keep: np.ndarray, kept: int) -> None:
        """Write the kept records to rows ``n..n + kept`` of the output columns."""
        every = kept == len(keep)
        rows = slice(n, n + kept)
        destination = None if every else np.cumsum(keep) - 1 + n
        self._write_levels(out, keep, rows, destination)
        ts, seq, lts = self.values
        columns = (
            ("timestamp", ts),
            ("local_timestamp_ns", lts),
            ("sequence", seq),
            ("exchange_code", self.exchange_code),
            ("symbol_code", self.symbol_code),
        )
        kept_rows = None if every else np.flatnonzero(keep)
        for name, column in columns:
            out[name][rows] = column if kept_rows is None else column[kept_rows]
        out["segment"][rows] = self.origin.segment_index
        starts = self.starts if kept_rows is None else self.starts[kept_rows]
        np.add(starts, self.origin.segment_offset, out=out["offset"][rows])

    def _write_levels(
        self,
        out: dict[str, np.ndarray],
        keep: np.ndarray,
        rows: slice,
        destination: np.ndarray | None,
    ) -> None:
        """The levels of the kept records: gathered for all records of one depth pair
        at once (their bids and asks at the same places), the others' one by one."""
        bid_price, bid_qty = out["bid_price"], out["bid_qty"]
        ask_price, ask_qty = out["ask_price"], out["ask_qty"]
        by_depths: dict[tuple[int, int], list[int]] = {}
        for g, (_, shape) in enumerate(self.shapes):
            by_depths.setdefault((shape.n_bids, shape.n_asks), []).append(g)
        whole = destination is None and not self.others and len(by_depths) == 1
        for (n_bids, n_asks), groups in by_depths.items():
            if whole:  # every record, one depth pair: rows in order
                mine, to = self.starts // _WORD, rows
            else:
                members = np.flatnonzero(np.isin(self.group, groups) & keep)
                mine = self.starts[members] // _WORD
                to = destination[members] if destination is not None else members + rows.start
            _levels(self.u8, mine + _BIDS_WORD, n_bids, bid_price, bid_qty, to)
            asks_word = OB.word(OB.asks_vector_pos(n_bids) + OB.UOFFSET_SIZE)
            _levels(self.u8, mine + asks_word, n_asks, ask_price, ask_qty, to)
        for j, record in self.others.items():
            if keep[j]:
                r = int(destination[j]) if destination is not None else rows.start + j
                for side, price, qty in (
                    (record.bids, bid_price, bid_qty),
                    (record.asks, ask_price, ask_qty),
                ):
                    d = min(len(side), price.shape[1])
                    price[r, :d], qty[r, :d] = side[:d, 0], side[:d, 1]
                    price[r, d:] = qty[r, d:] = np.nan


_UNSEEN: Final = _Shape(-1, -1, "", "")
"""known.get's default: a shape not checked yet in this load."""


# -- the vectorised steps -------------------------------------------------------------------


def _walk_segment(
    u8: np.ndarray, origin: _Origin, state: SegmentState
) -> tuple[np.ndarray, np.ndarray, bool]:
    """_walk of a live segment's committed bytes, then its header's seal checked
    against them (SegmentState.check_seal)."""
    walked = _walk(u8, origin, marker_allowed=True)
    state.check_seal(walked[2])
    return walked


def _walk(
    u8: np.ndarray, origin: _Origin, *, marker_allowed: bool, payload_id: bytes = OB.PAYLOAD_ID
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Byte offsets and size prefixes of the records of a buffer, and whether it ends
    with the end-of-segment marker.

    Candidates are the 8-aligned places whose bytes at ``RECORD_PAYLOAD_ID_OFFSET``
    are the payload identifier; they are the records exactly when the first is at 0 and each size
    prefix leads to the next, the last to the end (or to the end-of-segment marker).
    First tried: the places where the identifier is followed by the writer's own
    vtable head (one comparison of whole words, the fastest); then any identifier;
    otherwise (corrupt bytes, or an identifier inside a record's data) the frames are
    walked one by one, which finds the records or raises at the first bad frame.
    ``payload_id``: the records' identifier (another than order books': no own layout).
    """
    if len(u8) % _WORD:
        raise origin.corrupt(f"{len(u8)} bytes of records, not a multiple of {_WORD}", 0)
    if not len(u8):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), False
    u32 = u8.view("<u4")
    chained = None
    if payload_id == OB.PAYLOAD_ID:
        first_fixed = OB.FIXED_WORDS[0]  # a hit at index k is word k + first_fixed: slot k
        own = np.flatnonzero(u8.view("<u8")[first_fixed:] == _FIXED_WORDS[0])
        chained = _chain(u32, own, marker_allowed)
    if chained is None:
        # The identifier is the low u32 of word _ID_WORD of a record at slot.
        hits = np.flatnonzero(u32 == struct.unpack("<I", payload_id)[0])
        slots = hits[hits % _U32_PER_WORD == 0] // _U32_PER_WORD - _ID_WORD
        chained = _chain(u32, slots[slots >= 0], marker_allowed)
    if chained is None:
        return _walk_slowly(u8, u32, origin, marker_allowed, payload_id)
    return chained


def _chain(
    u32: np.ndarray, slots: np.ndarray, marker_allowed: bool
) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``(offsets, size prefixes, marker)`` if the records at ``slots`` (8-byte words)
    chain from the buffer's start to its end (or its end marker), else None."""
    n8 = len(u32) // _U32_PER_WORD
    if not len(slots):
        if marker_allowed and n8 == 1 and _is_end_marker(u32, 0):
            return np.zeros(0, np.int64), np.zeros(0, np.int64), True
        return None
    sizes = u32[_U32_PER_WORD * slots].astype(np.int64)
    following = slots + ((sizes + (F.SIZE_PREFIX_SIZE + _WORD - 1)) >> _WORD_SHIFT)
    last = int(following[-1])
    marker = bool(marker_allowed and last == n8 - 1 and _is_end_marker(u32, last))
    if (
        slots[0] == 0
        and (last == n8 or marker)
        and np.array_equal(following[:-1], slots[1:])
        and sizes.min() >= F.MIN_RECORD_SIZE
    ):
        return slots * _WORD, sizes, marker
    return None


def _is_end_marker(u32: np.ndarray, slot: int) -> bool:
    """Whether word ``slot`` of the buffer (as u32s) is the end-of-segment marker."""
    first = _U32_PER_WORD * slot
    return bool(u32[first] == F.END_OF_SEGMENT and u32[first + 1] == 0)


def _walk_slowly(
    u8: np.ndarray,
    u32: np.ndarray,
    origin: _Origin,
    marker_allowed: bool,
    payload_id: bytes = OB.PAYLOAD_ID,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """journal._frames' rules, record by record, raising at the first bad frame."""
    starts = []
    offset, end = 0, len(u8)
    while offset < end:
        size = int(u32[offset // _U32_SIZE])
        if size == F.END_OF_SEGMENT:
            second = offset // _U32_SIZE + 1
            if not marker_allowed or offset + F.END_MARKER_SIZE != end or u32[second]:
                raise origin.corrupt("end-of-segment marker that is not the end", offset)
            return *_walked(starts, u32), True
        if size < F.MIN_RECORD_SIZE or offset + F.SIZE_PREFIX_SIZE + size > end:
            raise origin.corrupt(f"size prefix={size} runs past the end of the records", offset)
        at = offset + F.RECORD_PAYLOAD_ID_OFFSET
        identifier = bytes(u8[at : at + F.PAYLOAD_ID_SIZE])
        if identifier != payload_id:
            raise origin.corrupt(f"file_identifier={identifier!r}, expected {payload_id!r}", offset)
        starts.append(offset)
        offset = F.align_record(offset + F.SIZE_PREFIX_SIZE + size)
    return *_walked(starts, u32), False


def _walked(starts: list[int], u32: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.array(starts, np.int64)
    return offsets, u32[offsets // _U32_SIZE].astype(np.int64)


def _shapes(
    u8: np.ndarray, slots: np.ndarray, totals: np.ndarray, head: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """``(group of each record, first record of each group, its key's bytes)`` for
    the records at ``slots`` (words; ``totals``: their bytes; ``head``: their
    _HEAD_WORDS, _head); group -1 for a record that cannot be in the writer's layout.

    A record's key is every word journal._decode._read_own_layout reads but the
    values (timestamps, sequence) and the levels: the head's _KEY_HEAD_WORDS, the
    word holding len(asks) and every word from the exchange name's length to the
    frame's end (names, NULs, padding); OB.FIXED_WORDS must be the layout's fixed
    words.
    Records with equal keys are equal on every byte that reader checks, so its
    verdict on one record of a group (or a record of an earlier block with the same
    key) is its verdict on all of them. Keys are grouped by their hash, then each
    compared with its group's first, word for word (_distinct).
    """
    m = len(slots)
    frame_words = (totals + _WORD - 1) >> _WORD_SHIFT
    exchange_offset = (head[_EXCHANGE_WORD] >> _EXCHANGE_SHIFT).view(np.int64)
    exchange_word = (exchange_offset + OB.EXCHANGE_NAME_POS) >> _WORD_SHIFT
    tail_words = frame_words - exchange_word
    # The last T words of every frame are inside the buffer: slots[0] is the lowest.
    cap = min(_MAX_TAIL_WORDS, int(slots[0] + frame_words[0]))
    own = _own_candidates(head, tail_words, cap)
    rows = None if own is None else np.flatnonzero(own)
    if rows is not None:
        if not len(rows):
            return np.full(m, -1, np.int64), rows, []
        slots, frame_words, tail_words = slots[rows], frame_words[rows], tail_words[rows]
        head = head[:, rows]
    columns = _key_columns(u8, slots, frame_words, tail_words, head)
    firsts, inverse = _distinct(columns)
    fixed, tail = columns[:_KEY_FIXED_COLUMNS], columns[_KEY_FIXED_COLUMNS:]
    keys = [
        np.array([c[r] for c in fixed + tail[len(tail) - int(tail_words[r]) :]]).tobytes()
        for r in firsts.tolist()
    ]
    if rows is None:
        return inverse, firsts, keys
    group = np.full(m, -1, np.int64)
    group[rows] = inverse
    return group, rows[firsts], keys


def _own_candidates(head: np.ndarray, tail_words: np.ndarray, cap: int) -> np.ndarray | None:
    """Which records can be in the writer's layout: OB.FIXED_WORDS its fixed words, a
    tail of 1..``cap`` words. None when all can (the usual block: a few reductions)."""
    fixed = [(head[w], value) for w, value in zip(OB.FIXED_WORDS, _FIXED_WORDS, strict=True)]
    if (
        all(row.min() == value == row.max() for row, value in fixed)
        and tail_words.min() > 0
        and tail_words.max() <= cap
    ):
        return None
    own = (tail_words > 0) & (tail_words <= cap)
    for row, value in fixed:
        own &= row == value
    return own


def _key_columns(
    u8: np.ndarray,
    slots: np.ndarray,
    frame_words: np.ndarray,
    tail_words: np.ndarray,
    head: np.ndarray,
) -> list[np.ndarray]:
    """The words of every record's key (_shapes), one array per word: the head words
    _KEY_HEAD_WORDS, the word holding len(asks), then the frame's last T words (T: the
    longest tail), those before a record's own tail zeroed."""
    words = u8.view("<u8")
    n_bids = (head[_N_BIDS_WORD] >> _N_BIDS_SHIFT).view(np.int64)
    # Only a record of the writer's layout has len(asks) there; others read any word.
    asks = np.take(words, slots + _ASKS_LENGTH_WORD + OB.LEVEL_WORDS * n_bids, mode="clip")
    columns = [*(head[w] for w in _KEY_HEAD_WORDS), asks]
    end = slots + frame_words
    shortest = int(tail_words.min())
    for back in range(int(tail_words.max()), 0, -1):
        column = np.take(words, end - back)
        if back > shortest:  # not in every record's tail
            column *= tail_words >= back
        columns.append(column)
    return columns


def _head(u8: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """(_HEAD_WORDS, n) uint64: the head words of the records at word ``slots`` (each
    at least _HEAD_SIZE bytes), row ``j`` word ``j`` of every record: one block copy
    per record (the fastest gather), seen transposed."""
    return _words_at(u8, slots, _HEAD_WORDS).T


def _words_at(u8: np.ndarray, first_word: np.ndarray, count: int) -> np.ndarray:
    """(n, count) uint64: ``count`` words from word ``first_word[i]`` of ``u8`` (each
    block inside the buffer), one block copy per row."""
    nbytes = _WORD * count
    # Overlapping blocks of nbytes, one every word: a void element each.
    window = np.ndarray(((len(u8) - nbytes) // _WORD + 1,), np.dtype(f"V{nbytes}"), u8, 0, (_WORD,))
    return window[first_word].view("<u8").reshape(len(first_word), count)


def _distinct(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(first record of each distinct key, group of each record)``, groups numbered
    in order of first appearance, for keys given word by word (``columns``).

    A word equal in every record cannot tell keys apart (two reductions say so); the
    others are hashed to one word and grouped by it (_group), then the grouping is
    checked word for word against each group's first record, so a hash collision
    cannot merge two distinct keys (they are then sorted out exactly)."""
    varying = [column for column in columns if column.min() != column.max()]
    if not varying:
        return np.zeros(1, np.int64), np.zeros(len(columns[0]), np.int64)
    hashes = varying[0] * _HASH[0]
    scratch = np.empty_like(hashes)
    for j in range(1, len(varying)):
        hashes ^= np.multiply(varying[j], _HASH[j], out=scratch)
    first, inverse = _group(hashes)
    representative = first[inverse]
    if all(np.array_equal(column, column[representative]) for column in varying):
        return first, inverse
    rows = np.stack(columns, axis=1)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return _by_first_appearance(first, inverse.reshape(-1))


def _group(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first index of each distinct value, group of each value)``, in order of
    first appearance: by the values' top bits (a bincount, no sort) when they tell
    the few values of one stream's shapes apart, else by a sort (np.unique)."""
    bucket = (values >> np.uint64(64 - _BUCKET_BITS)).astype(np.intp)
    present = np.flatnonzero(np.bincount(bucket, minlength=1 << _BUCKET_BITS))
    if len(present) <= _FEW_GROUPS:
        first = np.array([np.argmax(bucket == b) for b in present.tolist()], np.intp)
        order = np.argsort(first)
        numbers = np.empty(1 << _BUCKET_BITS, np.intp)
        numbers[present[order]] = np.arange(len(order))
        first, inverse = first[order], numbers[bucket]
        if np.array_equal(values, values[first[inverse]]):
            return first, inverse
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    return _by_first_appearance(first, inverse.reshape(-1))


def _by_first_appearance(first: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The groups ``(first, inverse)`` renumbered in the order of their first index."""
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse]


def _levels(
    u8: np.ndarray,
    first_word: np.ndarray,
    count: int,
    price: np.ndarray,
    qty: np.ndarray,
    rows: slice | np.ndarray,
) -> None:
    """Copy ``count`` levels (f64 price, quantity pairs from word ``first_word`` of
    each record, inside the buffer) into ``price``/``qty`` at ``rows``, cut to the
    columns' depth, NaN past ``count``: one block copy of the levels per record."""
    depth = price.shape[1]
    d = min(count, depth)
    if d:
        words = _words_at(u8, first_word, OB.LEVEL_WORDS * d)
        pairs = words.view("<f8").reshape(len(first_word), d, 2)
        price[rows, :d] = pairs[:, :, 0]
        qty[rows, :d] = pairs[:, :, 1]
    if d < depth:
        price[rows, d:] = np.nan
        qty[rows, d:] = np.nan


# -- the entry point -------------------------------------------------------------------------


def load_books(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    exchanges: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
    depth: int = DEFAULT_DEPTH,
    *,
    threads: int | None = None,
    allow_gaps: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> Books:
    """Load order books into numpy columns (see Books).

    ``sources``: archive files (``*.jzst``), archive stream directories
    (``ARCHIVE/<stream>``), archive roots (``ARCHIVE``, every stream in it) and live
    journal directories, in any mix. ``start_ns``/``end_ns``: keep books whose
    ``local_timestamp_ns`` is in ``[start_ns, end_ns)`` (archive frames outside are
    not even decompressed). ``exchanges``/``symbols``: keep only these names
    (``symbols`` as stored, e.g. ``BTC-KRW``). ``depth``: levels per side kept;
    deeper books are cut, shallower ones padded with NaN. ``threads``: worker threads
    that walk live segments and decompress archive frames while this one decodes, one
    more writing the columns of live segments (default: one fewer than the CPUs, at
    least 1, at most 4; 0: everything in this thread); the result is the same.
    ``allow_gaps``: read around segments missing in the middle of a stream (listed in
    ``Books.gaps``) instead of raising MissingSegmentsError. ``progress``: called
    with ``(records read, records to read)`` after every block of records decoded
    (the total None until every live segment is walked; archives count what their
    index claims), e.g. for journal.analysis._progress.Progress.
    """
    books, _ = load_books_with_contents(
        sources,
        start_ns,
        end_ns,
        exchanges,
        symbols,
        depth,
        threads=threads,
        allow_gaps=allow_gaps,
        progress=progress,
    )
    return books


def load_books_with_contents(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    exchanges: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
    depth: int = DEFAULT_DEPTH,
    *,
    threads: int | None = None,
    allow_gaps: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[Books, SourceContents]:
    """load_books, and what the sources hold whatever the filters kept (SourceContents):
    ``journal export`` names it when a selection is empty, so a misspelt name or a
    time range beside the data is seen at once."""
    if depth < 1:
        raise ValueError(f"depth={depth}: must be at least 1")
    if threads is None:
        threads = max(1, min(_MAX_THREADS, (os.cpu_count() or 1) - 1))
    if threads < 0:
        raise ValueError(f"threads={threads}: must be 0 or more")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    loader = _Loader(
        start_ns, end_ns, depth, _Names(exchanges), _Names(symbols), threads, allow_gaps, progress
    )
    loader.load(sources)
    return loader.books(), loader.contents()
