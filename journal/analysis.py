"""Offline analysis: order books from archives and journals into numpy columns.

    books = load_books(["archive/upbit", "/dev/shm/books/binance"],
                       start_ns=t0, end_ns=t1, symbols=["BTC-KRW", "BTC-USDT"])
    books.bid_price[:, 0]            # best bid of every book, float64
    books.exchanges[books.exchange_code[i]]

Decoding is vectorised: a buffer of records (a zstd frame of an archive, or the
committed part of a live segment) is viewed as numpy uint8 / uint32 / uint64 /
float64 arrays; the record boundaries are found from the payload identifier that
every record carries at ``+8`` and checked to chain from size prefix to size
prefix; records in the writer's own layout (journal._orderbook_layout) are checked
field by field with the same bounds as journal._decode's fast path, and their
columns pulled out with fancy indexing, thousands at a time. Only records in
another layout (the official builder's, via ``Writer.append``) go through the
generic decoder one by one, verified as journal.Reader verifies them. Corrupt
bytes raise CorruptSegmentError / CorruptArchiveError with their position.

The time range ``[start_ns, end_ns)`` is on ``local_timestamp_ns`` (the collector
clock, which the archive's time index covers). Rows come in source order, each
source in segment order; a segment present both in an archive and in tmpfs (the
compactor keeps the newest sealed ones) is read once.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import zstandard

from journal import _layout as F
from journal import _orderbook_layout as OB
from journal._archive import ARCHIVE_SUFFIX, ArchiveReader, archive_files
from journal._decode import read_orderbook
from journal._errors import CorruptArchiveError, CorruptSegmentError, JournalError
from journal._frames import check_commit
from journal._segment import MappedSegment, segment_indices
from journal._verify import VerificationError

__all__ = ["DEFAULT_DEPTH", "Books", "load_books"]

DEFAULT_DEPTH: Final = 10
_BLOCK: Final = 8192
"""Records decoded at once: the temporaries stay in the CPU caches."""
_MAX_FAST_NAME: Final = 200
"""Names longer than this (the encoder allows 64 bytes) take the generic decoder."""

_M32: Final = np.uint64(0xFFFF_FFFF)
_S32: Final = np.uint64(32)
_PAYLOAD_U32: Final = struct.unpack("<I", OB.PAYLOAD_ID)[0]

# The first 40 bytes of a record in the writer's own layout, as five u64 words:
# word 0 = size | root offset << 32, words 1-3 = identifier and vtable, word 4 =
# the table's soffset | exchange_name offset << 32. Words 1-3 are fixed, and so are
# the high half of word 0 and the low half of word 4.
_HEAD: Final = bytes(4) + OB.FIXED_HEAD + bytes(4)
_HEAD_WORDS: Final = struct.unpack("<5Q", _HEAD)
_ROOT_WORD: Final = np.uint64(_HEAD_WORDS[0] >> 32)
_FIXED_WORDS: Final = tuple(np.uint64(w) for w in _HEAD_WORDS[1:4])
_SOFFSET_WORD: Final = np.uint64(_HEAD_WORDS[4] & 0xFFFF_FFFF)
_MIN_OWN_SIZE: Final = OB.BIDS_VECTOR_POS + 4  # through len(bids): 80 bytes
_BIDS_AT: Final = OB.BIDS_VECTOR_POS + 4
_ASKS_LEN_AT: Final = OB.BIDS_VECTOR_POS + 8  # len(asks) when there are no bids
_EXCHANGE_FIELD_AT: Final = OB.TABLE_POS + OB.EXCHANGE_NAME_FIELD
_SYMBOL_FIELD_AT: Final = OB.TABLE_POS + OB.SYMBOL_FIELD
_ASKS_FIELD_AT: Final = OB.TABLE_POS + OB.ASKS_FIELD
_BIDS_OFFSET: Final = OB.BIDS_VECTOR_POS - (OB.TABLE_POS + OB.BIDS_FIELD)


@dataclass
class Books:
    """Order books as columns; row ``i`` is one book.

    ``timestamp`` (exchange time, ms), ``local_timestamp_ns`` (collector time),
    ``sequence``: int64. ``exchange_code``/``symbol_code``: int32 indices into
    ``exchanges``/``symbols``. ``bid_price``, ``bid_qty``, ``ask_price``,
    ``ask_qty``: (n, depth) float64, best level first, NaN beyond a book's depth.
    ``segment``/``offset``: where each record is (its ``position``).
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
        return Books(**columns, exchanges=self.exchanges, symbols=self.symbols)

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


# -- where records come from ---------------------------------------------------------------


@dataclass
class _Origin:
    """Where a buffer of records is, for positions and error messages."""

    path: str
    segment_index: int
    segment_offset: int  # of the buffer's first byte
    archive: bool = False
    file_offset: int | None = None  # of the zstd frame, for archives
    frame: int = 0

    def corrupt(self, message: str, local: int) -> JournalError:
        at = self.segment_offset + local
        if self.archive:
            return CorruptArchiveError(
                f"zstd frame {self.frame}: {message} at segment offset {at}",
                path=self.path,
                offset=self.file_offset,
            )
        return CorruptSegmentError(message, path=self.path, offset=at)


class _Names:
    """Global name codes, in order of first appearance, with an optional filter."""

    def __init__(self, allowed: Iterable[str] | None) -> None:
        self.allowed = None if allowed is None else set(allowed)
        self.names: list[str] = []
        self.codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        """The code of ``name``, or -1 if the filter leaves it out."""
        if self.allowed is not None and name not in self.allowed:
            return -1
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code


@dataclass
class _Loader:
    start_ns: int | None
    end_ns: int | None
    depth: int
    exchanges: _Names
    symbols: _Names
    out: dict[str, np.ndarray] = field(default_factory=dict)
    filled: int = 0
    seen: set[tuple[int, ...]] = field(default_factory=set)
    records_decoded: int = 0

    # -- sources ----------------------------------------------------------------------

    def load_source(self, source: str | os.PathLike[str]) -> None:
        path = Path(source)
        if path.is_file():
            if not path.name.endswith(ARCHIVE_SUFFIX):
                raise JournalError(f"{path}: not an archive file (*{ARCHIVE_SUFFIX})")
            self.load_archive(path)
        elif path.is_dir():
            if segment_indices(path):
                self.load_journal(path)
            elif archives := archive_files(path):
                for file in archives:
                    self.load_archive(file)
            else:  # an archive root: one directory per stream
                streams = [p for p in sorted(path.iterdir()) if p.is_dir() and archive_files(p)]
                if not streams:
                    raise JournalError(f"{path}: no journal segments or archive files")
                for stream in streams:
                    for file in archive_files(stream):
                        self.load_archive(file)
        else:
            raise JournalError(f"{path}: no such file or directory")

    def _first_time(self, key: tuple[int, ...]) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def load_journal(self, directory: Path) -> None:
        """Walk every segment first (to size the output once), then decode them; an
        error while walking is raised after the segments before it are decoded."""
        buffers: list[tuple[np.ndarray, _Origin, np.ndarray, bool]] = []
        failure: Exception | None = None
        with contextlib.ExitStack() as stack:
            for index in segment_indices(directory):
                try:
                    try:
                        segment = MappedSegment.open_checked(directory, index, None)
                    except FileNotFoundError:
                        continue  # removed by the compactor meanwhile: its archive has it
                    stack.enter_context(segment)
                    header = segment.header
                    if header.payload_id != OB.PAYLOAD_ID:
                        raise JournalError(
                            f"{segment.path}: payload_id={header.payload_id!r}, not order books"
                        )
                    key = (index, header.created_ns, header.writer.pid, header.writer.started_ns)
                    if not self._first_time(key):
                        continue
                    commit = segment.load_commit_acquire()
                    check_commit(commit, len(segment.map), str(segment.path))
                    data = np.frombuffer(
                        segment.map, np.uint8, commit - F.HEADER_SIZE, F.HEADER_SIZE
                    )
                    origin = _Origin(str(segment.path), index, F.HEADER_SIZE)
                    starts, marker = self.walk(data, origin, marker_allowed=True)
                    buffers.append((data, origin, starts, marker))
                except Exception as error:  # raised below, after the segments before it
                    failure = error
                    break
            self.reserve(sum(len(starts) for _, _, starts, _ in buffers))
            while buffers:
                data, origin, starts, marker = buffers.pop(0)
                self.decode_walked(data, origin, starts, marker, None)
                del data
        if failure is not None:
            raise failure

    def load_archive(self, path: Path) -> None:
        with ArchiveReader(path) as reader:
            header = reader.header
            if header.payload_id != OB.PAYLOAD_ID:
                raise JournalError(f"{path}: payload_id={header.payload_id!r}, not order books")
            key = (
                header.segment_index,
                header.created_ns,
                header.writer_pid,
                header.writer_started_ns,
            )
            if not self._first_time(key):
                return
            last = len(reader.frames) - 1
            overlapping = reader.frames_overlapping(self.start_ns, self.end_ns)
            # No reserve from the index's record counts: a hostile index could ask for
            # billions of rows; each frame reserves what its walk actually found.
            for i in overlapping:
                entry = reader.frames[i]
                data = np.frombuffer(_decompress(reader, i), np.uint8)
                origin = _Origin(
                    reader.path,
                    header.segment_index,
                    entry.segment_offset,
                    True,
                    entry.file_offset,
                    i,
                )
                count = self.decode(
                    data,
                    origin,
                    marker_allowed=i == last,
                    time_bounds=(entry.min_time_ns, entry.max_time_ns),
                )
                if count != entry.record_count:
                    raise origin.corrupt(f"{count} records, the index says {entry.record_count}", 0)
                if i == last and header.sealed and not self._ended_with_marker:
                    raise origin.corrupt(
                        "the archive is of a sealed segment but its last frame does not end "
                        "with the end-of-segment marker",
                        len(data),
                    )

    # -- one buffer of records --------------------------------------------------------------

    _ended_with_marker = False

    def decode(
        self,
        u8: np.ndarray,
        origin: _Origin,
        *,
        marker_allowed: bool,
        time_bounds: tuple[int, int] | None = None,
    ) -> int:
        """Decode every record of ``u8`` (whole frames from a record boundary); keep
        those that pass the filters. Returns the number of records in the buffer."""
        starts, marker = self.walk(u8, origin, marker_allowed=marker_allowed)
        return self.decode_walked(u8, origin, starts, marker, time_bounds)

    def walk(
        self, u8: np.ndarray, origin: _Origin, *, marker_allowed: bool
    ) -> tuple[np.ndarray, bool]:
        """The record offsets of ``u8`` and whether it ends with the marker (_walk)."""
        if len(u8) % 8:
            raise origin.corrupt(f"{len(u8)} bytes of records, not a multiple of 8", 0)
        return _walk(u8, u8.view("<u4"), origin, marker_allowed)

    def decode_walked(
        self,
        u8: np.ndarray,
        origin: _Origin,
        starts: np.ndarray,
        marker: bool,
        time_bounds: tuple[int, int] | None,
    ) -> int:
        """decode() of a buffer already walked."""
        words = u8.view("<u8")
        u32 = u8.view("<u4")
        self._ended_with_marker = marker
        self.reserve(len(starts))
        self.records_decoded += len(starts)
        for block in range(0, len(starts), _BLOCK):
            self._decode_block(u8, words, u32, starts[block : block + _BLOCK], origin, time_bounds)
        return len(starts)

    def _decode_block(
        self,
        u8: np.ndarray,
        words: np.ndarray,
        u32: np.ndarray,
        starts: np.ndarray,
        origin: _Origin,
        time_bounds: tuple[int, int] | None,
    ) -> None:
        """Decode the records at ``starts`` and keep those that pass the filters."""
        slots = starts // 8
        size = u32[2 * slots].astype(np.int64) + F.SIZE_PREFIX_SIZE
        own, cols = _own_layout(u8, words, u32, starts, slots, size)
        ts, seq, lts, ex_key, sy_key, nb, na, bids_at, asks_at = cols
        others = np.flatnonzero(~own)
        generic = {}
        for j in others.tolist():  # records not in the writer's layout: one by one
            at = int(starts[j])
            position = (origin.segment_index, origin.segment_offset + at)
            try:
                generic[j] = record = read_orderbook(u8, at, at + int(size[j]), position)
            except (VerificationError, UnicodeDecodeError) as error:
                raise origin.corrupt(f"record does not decode: {error}", at) from None
            ts[j], seq[j], lts[j] = record.timestamp, record.sequence, record.local_timestamp_ns
        if time_bounds is not None:
            low, high = time_bounds
            outside = np.flatnonzero((lts < low) | (lts > high))
            if len(outside):
                j = int(outside[0])
                raise origin.corrupt(
                    f"record has time {int(lts[j])}, outside the index's {low}..{high}",
                    int(starts[j]),
                )
        ex_code = _codes(u8, ex_key, own, self.exchanges, origin, starts)
        sy_code = _codes(u8, sy_key, own, self.symbols, origin, starts)
        for j, record in generic.items():
            ex_code[j] = self.exchanges.code(record.exchange_name)
            sy_code[j] = self.symbols.code(record.symbol)
        keep = (ex_code >= 0) & (sy_code >= 0)
        if self.start_ns is not None:
            keep &= lts >= self.start_ns
        if self.end_ns is not None:
            keep &= lts < self.end_ns
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        n, k = self.filled, len(rows)
        out = self.out
        every = k == len(starts)
        for at, count, price, qty in (
            (bids_at, nb, out["bid_price"], out["bid_qty"]),
            (asks_at, na, out["ask_price"], out["ask_qty"]),
        ):
            _levels(
                u8,
                at if every else at[rows],
                count if every else count[rows],
                price[n : n + k],
                qty[n : n + k],
            )
        bid_price, bid_qty = out["bid_price"][n : n + k], out["bid_qty"][n : n + k]
        ask_price, ask_qty = out["ask_price"][n : n + k], out["ask_qty"][n : n + k]
        kept_generic = np.flatnonzero(~own[rows])
        for r in kept_generic.tolist():
            record = generic[int(rows[r])]
            for side, (price, qty) in (
                (record.bids, (bid_price, bid_qty)),
                (record.asks, (ask_price, ask_qty)),
            ):
                d = min(len(side), self.depth)
                price[r, :d] = side[:d, 0]
                qty[r, :d] = side[:d, 1]
        for name, column in (
            ("timestamp", ts),
            ("local_timestamp_ns", lts),
            ("sequence", seq),
            ("exchange_code", ex_code),
            ("symbol_code", sy_code),
        ):
            np.take(column, rows, out=out[name][n : n + k])
        out["segment"][n : n + k] = origin.segment_index
        np.add(np.take(starts, rows), origin.segment_offset, out=out["offset"][n : n + k])
        self.filled = n + k

    def reserve(self, count: int) -> None:
        """Room in the output columns for ``count`` more rows (grown by doubling)."""
        need = self.filled + count
        have = len(self.out["timestamp"]) if self.out else 0
        if need <= have:
            return
        size = max(need, 2 * have)
        grown = {}
        for name in Books.COLUMNS:
            if name.endswith(("_price", "_qty")):
                grown[name] = np.empty((size, self.depth), np.float64)
            else:
                dtype = np.int32 if name.endswith("_code") else np.int64
                grown[name] = np.empty(size, dtype)
            if self.filled:
                grown[name][: self.filled] = self.out[name][: self.filled]
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
        return Books(**columns, exchanges=self.exchanges.names, symbols=self.symbols.names)


# -- the vectorised steps -------------------------------------------------------------------


def _walk(
    u8: np.ndarray, u32: np.ndarray, origin: _Origin, marker_allowed: bool
) -> tuple[np.ndarray, bool]:
    """Byte offsets of the records of a buffer, and whether it ends with the marker.

    Candidates are the 8-aligned places whose bytes ``+8..+12`` are the payload
    identifier; they are the records exactly when the first is at 0 and each size
    prefix leads to the next, the last to the end (or to the end-of-segment marker).
    Otherwise (corrupt bytes, or an identifier inside a record's data) the frames are
    walked one by one, which finds the records or raises at the first bad frame.
    """
    n8 = len(u8) // 8
    if n8 == 0:
        return np.zeros(0, np.int64), False
    slots = np.flatnonzero(u32[2::2] == _PAYLOAD_U32)
    sizes = u32[2 * slots].astype(np.int64)
    following = slots + (F.SIZE_PREFIX_SIZE + sizes + 7) // 8
    marker = False
    if len(slots):
        last = int(following[-1])
        if last == n8 - 1 and marker_allowed:
            marker = bool(u32[2 * last] == F.END_OF_SEGMENT and u32[2 * last + 1] == 0)
        chained = (
            slots[0] == 0
            and (last == n8 or marker)
            and np.array_equal(following[:-1], slots[1:])
            and sizes.min() >= F.MIN_RECORD_SIZE
        )
    else:
        marker = marker_allowed and n8 == 1 and bool(u32[0] == F.END_OF_SEGMENT and u32[1] == 0)
        chained = marker
    if chained:
        return slots * 8, marker
    return _walk_slowly(u8, u32, origin, marker_allowed)


def _walk_slowly(
    u8: np.ndarray, u32: np.ndarray, origin: _Origin, marker_allowed: bool
) -> tuple[np.ndarray, bool]:
    """journal._frames' rules, record by record, raising at the first bad frame."""
    starts = []
    offset, end = 0, len(u8)
    while offset < end:
        size = int(u32[offset // 4])
        if size == F.END_OF_SEGMENT:
            if not marker_allowed or offset + F.END_MARKER_SIZE != end or u32[offset // 4 + 1]:
                raise origin.corrupt("end-of-segment marker that is not the end", offset)
            return np.array(starts, np.int64), True
        if size < F.MIN_RECORD_SIZE or offset + F.SIZE_PREFIX_SIZE + size > end:
            raise origin.corrupt(f"size prefix={size} runs past the end of the records", offset)
        identifier = bytes(u8[offset + 8 : offset + 12])
        if identifier != OB.PAYLOAD_ID:
            raise origin.corrupt(f"file_identifier={identifier!r}, expected b'OBK1'", offset)
        starts.append(offset)
        offset = F.align_record(offset + F.SIZE_PREFIX_SIZE + size)
    return np.array(starts, np.int64), False


def _own_layout(
    u8: np.ndarray,
    words: np.ndarray,
    u32: np.ndarray,
    starts: np.ndarray,
    slots: np.ndarray,
    size: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Which records are in the writer's own layout, and their fields.

    The checks are journal._decode._read_own_layout's, for all records at once; each
    read is guarded by the checks before it (a failed record reads offset 0 instead).
    Returns ``own`` and (timestamp, sequence, local_timestamp_ns, exchange name key,
    symbol name key, n_bids, n_asks, byte offset of the bids, of the asks).
    """
    n8 = len(words)
    own = size >= _MIN_OWN_SIZE

    def word(k: int) -> np.ndarray:
        return words[np.where(own, slots + k, 0) if k else slots]

    def u32_at(byte_offset: np.ndarray) -> np.ndarray:
        return u32[np.where(own, byte_offset // 4, 0)].astype(np.int64)

    own &= slots + 10 <= n8
    w0 = word(0)
    own &= (w0 >> _S32) == _ROOT_WORD
    for k, fixed in enumerate(_FIXED_WORDS, start=1):
        own &= word(k) == fixed
    w4 = word(4)
    own &= (w4 & _M32) == _SOFFSET_WORD
    w8, w9 = word(8), word(9)
    own &= (w8 >> _S32) == _BIDS_OFFSET
    signed = words.view("<i8")
    ts = signed[np.where(own, slots + 5, 0)]
    seq = signed[np.where(own, slots + 6, 0)]
    lts = signed[np.where(own, slots + 7, 0)]
    nb = (w9 >> _S32).astype(np.int64)
    asks_len_at = _ASKS_LEN_AT + 16 * nb
    own &= asks_len_at + 4 <= size
    na = u32_at(starts + asks_len_at)
    exchange_at = asks_len_at + 4 + 16 * na
    own &= (
        ((w9 & _M32).astype(np.int64) == asks_len_at - _ASKS_FIELD_AT)
        & ((w4 >> _S32).astype(np.int64) == exchange_at - _EXCHANGE_FIELD_AT)
        & (exchange_at + 4 <= size)
    )
    ex_len = u32_at(starts + exchange_at)
    exchange_end = exchange_at + 4 + ex_len
    symbol_at = _SYMBOL_FIELD_AT + (w8 & _M32).astype(np.int64)
    own &= (symbol_at > exchange_end) & (symbol_at & 3 == 0) & (symbol_at + 4 <= size)
    sy_len = u32_at(starts + symbol_at)
    symbol_end = symbol_at + 4 + sy_len
    own &= (symbol_end < size) & (ex_len <= _MAX_FAST_NAME) & (sy_len <= _MAX_FAST_NAME)
    own &= (u8[np.where(own, starts + exchange_end, 0)] == 0) & (
        u8[np.where(own, starts + symbol_end, 0)] == 0
    )
    # Records that are not ours read as empty: their fields come from the decoder.
    zero = ~own
    for column in (ts, seq, lts, nb, na, ex_len, sy_len):
        column[zero] = 0
    ex_key = (np.where(own, starts + exchange_at + 4, 0), ex_len)
    sy_key = (np.where(own, starts + symbol_at + 4, 0), sy_len)
    bids_at = starts + _BIDS_AT
    asks_at = starts + asks_len_at + 4
    return own, (ts, seq, lts, ex_key, sy_key, nb, na, bids_at, asks_at)


def _codes(
    u8: np.ndarray,
    key: tuple[np.ndarray, np.ndarray],
    own: np.ndarray,
    names: _Names,
    origin: _Origin,
    starts: np.ndarray,
) -> np.ndarray:
    """Global codes of the names at ``key`` (byte offsets, lengths); -1 if filtered out
    (and for records not in the writer's layout, which the caller fills in).

    A name's bytes start 4-aligned: each is copied as one block of whole u64 words,
    the bytes past its length zeroed. Equal names are grouped by a hash of
    (length, words), and the grouping checked word for word against each group's
    first row, so a collision cannot merge two names.
    """
    at, length = key
    codes = np.full(len(at), -1, np.int32)
    rows = np.flatnonzero(own)
    if not len(rows):
        return codes
    at, length = at[rows], length[rows]
    n_words = max(1, (int(length.max()) + 7) // 8)
    raw = _gather(u8, at, 8 * n_words, 4)
    raw = np.where(np.arange(8 * n_words) < length[:, None], raw, np.uint8(0))
    grid = raw.view("<u8")  # (n, n_words): the name's bytes, zero past its length
    hashes = length.astype(np.uint64) * _HASH_SEED
    for column in grid.T:
        hashes = (hashes ^ column) * _HASH_PRIME
    first, inverse = _group(hashes)
    if not (
        np.array_equal(grid, grid[first][inverse])
        and np.array_equal(length, length[first][inverse])
    ):
        keyed = np.concatenate([length[:, None].astype(np.uint64), grid], axis=1)
        _, first, inverse = np.unique(keyed, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
    table = np.empty(len(first), np.int32)
    for u, r in enumerate(first.tolist()):
        raw = grid[r].astype("<u8").tobytes()[: int(length[r])]
        try:
            table[u] = names.code(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise origin.corrupt(f"record does not decode: {error}", int(starts[rows[r]])) from None
    codes[rows] = table[inverse]
    return codes


_HASH_SEED: Final = np.uint64(0x9E37_79B9_7F4A_7C15)
_HASH_PRIME: Final = np.uint64(0x0000_0100_0000_01B3)
_FEW_GROUPS: Final = 16


def _group(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first row of each distinct value, group of each row)``: a few vectorised
    comparisons when there are few distinct values (one stream's names), a sort if many."""
    inverse = np.full(len(values), -1, np.int64)
    first: list[int] = []
    remaining = 0
    while len(first) < _FEW_GROUPS:
        left = np.flatnonzero(inverse[remaining:] < 0)
        if not len(left):
            return np.array(first, np.int64), inverse
        remaining += int(left[0])
        inverse[values == values[remaining]] = len(first)
        first.append(remaining)
    _, first_many, inverse_many = np.unique(values, return_index=True, return_inverse=True)
    return first_many, inverse_many.reshape(-1)


def _gather(u8: np.ndarray, at: np.ndarray, nbytes: int, step: int) -> np.ndarray:
    """(n, nbytes) uint8: the bytes ``[at, at + nbytes)`` of ``u8`` for each row (``at``
    a multiple of ``step``), one block copy per row; bytes past the buffer read as 0."""
    limit = (len(u8) - nbytes) // step  # the last row start that fits, in steps
    row = at // step
    if limit < 0:
        inside = np.zeros(len(at), bool)
    else:
        # Overlapping rows of nbytes, one every ``step`` bytes: a void element each.
        window = np.ndarray((limit + 1,), np.dtype(f"V{nbytes}"), u8, 0, (step,))
        inside = row <= limit
        if inside.all():
            return window[row].view(np.uint8).reshape(len(at), nbytes)
    grid = np.zeros((len(at), nbytes), np.uint8)
    if inside.any():
        grid[inside] = window[row[inside]].view(np.uint8).reshape(-1, nbytes)
    for r in np.flatnonzero(~inside).tolist():
        start = int(at[r])
        tail = u8[start : start + nbytes]
        grid[r, : len(tail)] = tail
    return grid


def _levels(
    u8: np.ndarray, at: np.ndarray, count: np.ndarray, price: np.ndarray, qty: np.ndarray
) -> None:
    """Prices and quantities of the level vectors at byte offsets ``at`` (8-aligned)
    into ``price``/``qty`` (n, depth): one block copy of ``depth`` levels per book (what
    lies past the buffer reads as 0), then NaN over the levels a book does not have."""
    depth = price.shape[1]
    pairs = _gather(u8, at, 16 * depth, 8).view("<f8").reshape(len(at), depth, 2)
    np.copyto(price, pairs[:, :, 0])
    np.copyto(qty, pairs[:, :, 1])
    short = np.flatnonzero(count < depth)
    if len(short):
        absent = np.arange(depth) >= count[short, None]
        price[short] = np.where(absent, np.nan, price[short])
        qty[short] = np.where(absent, np.nan, qty[short])


def _decompress(reader: ArchiveReader, i: int) -> bytes:
    """Zstd frame ``i`` of an archive, with ArchiveReader's bounds (content size in
    the frame header equal to the index's and below ``max_frame_size``, a checksum,
    an output buffer of exactly that size); the framing is checked by ``_walk``
    vectorised, instead of ArchiveReader's record-by-record walk."""
    entry = reader.frames[i]
    compressed = reader._pread(entry.compressed_size, entry.file_offset)

    def bad(message: str) -> CorruptArchiveError:
        return CorruptArchiveError(
            f"zstd frame {i}: {message}", path=reader.path, offset=entry.file_offset
        )

    try:
        params = zstandard.get_frame_parameters(compressed)
    except zstandard.ZstdError as error:
        raise bad(f"bad frame header ({error})") from None
    if params.content_size != entry.raw_size:
        raise bad(
            f"content size {params.content_size} in its header, {entry.raw_size} in the index"
        )
    if not params.has_checksum:
        raise bad("no content checksum")
    try:
        data = zstandard.ZstdDecompressor().decompress(
            compressed, max_output_size=entry.raw_size, allow_extra_data=False
        )
    except zstandard.ZstdError as error:
        raise bad(str(error)) from None
    if len(data) != entry.raw_size:
        raise bad(f"decompressed to {len(data)} bytes, expected {entry.raw_size}")
    reader.frames_decompressed += 1
    return data


# -- the entry point -------------------------------------------------------------------------


def load_books(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    exchanges: Iterable[str] | None = None,
    symbols: Iterable[str] | None = None,
    depth: int = DEFAULT_DEPTH,
) -> Books:
    """Load order books into numpy columns (see Books).

    ``sources``: archive files (``*.jzst``), archive stream directories
    (``ARCHIVE/<stream>``), archive roots (``ARCHIVE``, every stream in it) and live
    journal directories, in any mix. ``start_ns``/``end_ns``: keep books whose
    ``local_timestamp_ns`` is in ``[start_ns, end_ns)`` (archive frames outside are
    not even decompressed). ``exchanges``/``symbols``: keep only these names
    (``symbols`` as stored, e.g. ``BTC-KRW``). ``depth``: levels per side kept;
    deeper books are cut, shallower ones padded with NaN.
    """
    if depth < 1:
        raise ValueError(f"depth={depth}: must be at least 1")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    loader = _Loader(start_ns, end_ns, depth, _Names(exchanges), _Names(symbols))
    for source in sources:
        loader.load_source(source)
    return loader.books()
