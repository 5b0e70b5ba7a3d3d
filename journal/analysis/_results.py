"""The radar's results (``RDR1``, schema/radar.fbs) from its results journals and their
archives into numpy columns, as load_books reads books.

    results = load_results(["/dev/shm/radar-results", "archive/radar-results"])
    results.edge_bps                      # float64, NaN where no direction fills
    results.names[results.base_code[i]]   # "BTC"
    results.to_polars()                   # or to_pandas(), to_arrow()

Sources are what load_books takes (archive files, ``ARCHIVE/<stream>`` and archive
root directories, live journal directories), read the same way: every segment of a
journal mapped and checked as one cut (journal._inspect), a stream's segments
checked for ones missing between others (MissingSegmentsError, or ``allow_gaps``),
a segment present both in an archive and in tmpfs read once, corrupt bytes raised
with their file and offset. The time range is on ``timestamp_ns`` (the radar's clock
when it computed the result: the results journal's time, which the archive's index
covers, so frames outside the range are not decompressed).

Decoding is vectorised, not a Python loop per record. The radar's records come from
the C++ FlatBufferBuilder, whose layout depends only on which fields are present
(defaults are not stored) and on the strings; so the records are grouped by every
byte but their scalar values (and by where those are), each group's first record is
checked by the schema's verifier (journal._verify) and its strings decoded, and the
verdict and the strings hold for every record of the group (equal on every byte the
verifier reads). The scalars are then gathered for all records at once. A record
whose offsets point outside it, or whose scalars would overlap its own structure, is
verified and decoded alone (and raises if it is corrupt).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from journal import _layout as F
from journal._decode import read_table
from journal._errors import CorruptArchiveError, JournalError
from journal._inspect import chain_break, load_states, open_segments
from journal._verify import RADAR_RESULT_SCHEMA, VerificationError, verify_size_prefixed
from journal.analysis._load import (
    MissingSegmentsError,
    SegmentGap,
    _distinct,
    _Names,
    _Origin,
    _stream_gaps,
    _walk,
    _words_at,
    source_parts,
)
from journal.analysis._table import PANDAS_EXTRA, PARQUET_EXTRA, POLARS_EXTRA, needs
from journal.archive._archive import ArchiveReader
from journal.archive._layout import END_MARKER_OFFSET_OFFSET

__all__ = ["Results", "load_results"]

SCHEMA: Final = RADAR_RESULT_SCHEMA
PAYLOAD_ID: Final = SCHEMA.payload_id
STRING_FIELDS: Final = tuple(f.name for f in SCHEMA.fields if f.kind == "string")
"""base, krw_exchange, usdt_exchange, buy_exchange, sell_exchange: codes into names."""
SCALAR_FIELDS: Final = tuple(f for f in SCHEMA.fields if f.kind == "scalar")
_DTYPES: Final = {"q": np.dtype("<i8"), "d": np.dtype("<f8"), "?": np.dtype("u1")}
_BLOCK: Final = 32768
"""Records decoded at once (temporaries of a few MB)."""
_PREFIX_AND_ROOT: Final = F.SIZE_PREFIX_SIZE + 4
"""The size prefix and the root offset: the bytes before any table of a record."""


@dataclass
class Results:
    """Radar results as columns; row ``i`` is one result (schema/radar.fbs).

    ``timestamp_ns`` (radar clock when computed) and ``source_local_timestamp_ns``
    (the triggering book's local time): int64. ``fx``, ``kimchi_premium``,
    ``edge_bps``, ``fill_base_quantity``, ``notional_krw``: float64, NaN where the
    radar had none (no FX yet, no direction fills). ``stale``: bool. ``*_code``:
    int32 indices into ``names``, one list for every string column, so codes compare
    across columns (``buy_exchange_code == krw_exchange_code``); ``""`` is the name
    of no venue (``buy_exchange`` when nothing fills). ``segment``/``offset``: where
    each record is. ``gaps``: segments missing in a stream, read around.
    """

    timestamp_ns: np.ndarray
    source_local_timestamp_ns: np.ndarray
    base_code: np.ndarray
    krw_exchange_code: np.ndarray
    usdt_exchange_code: np.ndarray
    buy_exchange_code: np.ndarray
    sell_exchange_code: np.ndarray
    fx: np.ndarray
    kimchi_premium: np.ndarray
    edge_bps: np.ndarray
    fill_base_quantity: np.ndarray
    notional_krw: np.ndarray
    stale: np.ndarray
    segment: np.ndarray
    offset: np.ndarray
    names: list[str] = field(default_factory=list)
    gaps: tuple[SegmentGap, ...] = ()

    COLUMNS: Final = (  # type: ignore[misc]
        "timestamp_ns",
        "source_local_timestamp_ns",
        "base_code",
        "krw_exchange_code",
        "usdt_exchange_code",
        "buy_exchange_code",
        "sell_exchange_code",
        "fx",
        "kimchi_premium",
        "edge_bps",
        "fill_base_quantity",
        "notional_krw",
        "stale",
        "segment",
        "offset",
    )

    def __len__(self) -> int:
        return len(self.timestamp_ns)

    def name(self, column: str) -> np.ndarray:
        """The strings of a string column (``"base"``, ``"krw_exchange"`` ...), as an
        object array."""
        if column not in STRING_FIELDS:
            raise ValueError(f"column={column!r}: one of {', '.join(STRING_FIELDS)}")
        return np.array(self.names, dtype=object)[getattr(self, f"{column}_code")]

    def select(self, rows: np.ndarray) -> Results:
        """The results at ``rows`` (a boolean mask or indices); names are shared."""
        columns = {name: getattr(self, name)[rows] for name in self.COLUMNS}
        return Results(**columns, names=self.names, gaps=self.gaps)

    def where(
        self,
        base: str | None = None,
        krw_exchange: str | None = None,
        usdt_exchange: str | None = None,
    ) -> Results:
        """The results of one base and/or venue."""
        mask = np.ones(len(self), dtype=bool)
        for column, value in (
            ("base", base),
            ("krw_exchange", krw_exchange),
            ("usdt_exchange", usdt_exchange),
        ):
            if value is not None:
                code = self.names.index(value) if value in self.names else -1
                mask &= getattr(self, f"{column}_code") == code
        return self.select(mask)

    # -- as a table ------------------------------------------------------------------------

    def to_arrow(self) -> Any:
        """A pyarrow Table: ``time`` and ``source_local_time`` (timestamp[ns, UTC]), the
        names as dictionary strings (``buy_exchange``/``sell_exchange`` null when no
        direction fills), the figures as doubles (null where NaN: unknown), ``stale``.
        Needs pyarrow."""
        pa = needs("pyarrow", PARQUET_EXTRA, "Results.to_arrow()")
        names = pa.array(self.names, pa.string())
        empty = self.names.index("") if "" in self.names else -1
        columns: dict[str, Any] = {
            "time": pa.array(self.timestamp_ns, pa.timestamp("ns", tz="UTC")),
            "source_local_time": pa.array(
                self.source_local_timestamp_ns, pa.timestamp("ns", tz="UTC")
            ),
        }
        for column in STRING_FIELDS:
            codes = getattr(self, f"{column}_code")
            mask = codes == empty if column in ("buy_exchange", "sell_exchange") else None
            columns[column] = pa.DictionaryArray.from_arrays(
                pa.array(codes, pa.int32(), mask=mask), names
            )
        for column in ("fx", "kimchi_premium", "edge_bps", "fill_base_quantity", "notional_krw"):
            values = getattr(self, column)
            columns[column] = pa.array(values, pa.float64(), mask=np.isnan(values))
        columns["stale"] = pa.array(self.stale, pa.bool_())
        metadata = {"journal.gaps": json.dumps([str(gap) for gap in self.gaps])}
        return pa.table(columns).replace_schema_metadata(metadata)

    def to_pandas(self) -> Any:
        """A pandas DataFrame of to_arrow's columns (tz-aware UTC times, categorical
        names, nullable Float64 figures). Needs the ``pandas`` extra."""
        from journal.analysis._table import arrow_to_pandas

        needs("pandas", PANDAS_EXTRA, "Results.to_pandas()")
        needs("pyarrow", PANDAS_EXTRA, "Results.to_pandas()")
        return arrow_to_pandas(self.to_arrow())

    def to_polars(self) -> Any:
        """A Polars DataFrame of to_arrow's columns, built without pyarrow: Datetime
        ("ns", "UTC"), Categorical names, Float64 with nulls where NaN. Needs the
        ``polars`` extra."""
        pl = needs("polars", POLARS_EXTRA, "Results.to_polars()")
        names = pl.Series(self.names, dtype=pl.Categorical)
        empty = self.names.index("") if "" in self.names else -1
        columns = [
            pl.Series("time", self.timestamp_ns).cast(pl.Datetime("ns", "UTC")),
            pl.Series("source_local_time", self.source_local_timestamp_ns).cast(
                pl.Datetime("ns", "UTC")
            ),
        ]
        for column in STRING_FIELDS:
            codes = getattr(self, f"{column}_code")
            series = names.gather(codes).alias(column)
            if column in ("buy_exchange", "sell_exchange") and (codes == empty).any():
                series = series.scatter(np.flatnonzero(codes == empty), None)
            columns.append(series)
        for column in ("fx", "kimchi_premium", "edge_bps", "fill_base_quantity", "notional_krw"):
            columns.append(pl.Series(column, getattr(self, column)).fill_nan(None))
        columns.append(pl.Series("stale", self.stale))
        return pl.DataFrame(columns)


# -- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """A live segment's committed records."""

    u8: np.ndarray
    origin: _Origin
    check_seal: Any  # SegmentState.check_seal


@dataclass(frozen=True)
class _Archive:
    path: Path
    frames: tuple[int, ...]


@dataclass
class _Plan:
    """The sources' segments in load order, and every segment seen, by stream (for
    the gaps, journal.analysis._load._stream_gaps)."""

    units: list[_Segment | _Archive] = field(default_factory=list)
    streams: dict[str, set[tuple[int, int, int]]] = field(default_factory=dict)
    seen: set[tuple[int, ...]] = field(default_factory=set)

    def first_time(self, key: tuple[int, ...], stream: str, incarnation_ns: int) -> bool:
        self.streams.setdefault(stream, set()).add((key[1], key[0], incarnation_ns))
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _not_results(payload_id: bytes) -> str:
    hint = " (order books: load_books reads them)" if payload_id == b"OBK1" else ""
    return f"payload_id={payload_id!r}, not radar results{hint}"


def _plan_journal(plan: _Plan, directory: Path, stack: contextlib.ExitStack) -> None:
    """Every segment of a live journal, mapped (until the load ends) as one cut (a
    live segment has no time index: every record is read, then filtered)."""
    opened, failure = open_segments(directory, stack)
    states = load_states(opened)
    broken = chain_break(states)
    for position, state in enumerate(states):
        state.check_commit()
        segment, header = state.segment, state.segment.header
        if header.payload_id != PAYLOAD_ID:
            raise JournalError(f"{segment.path}: {_not_results(header.payload_id)}")
        key = (segment.index, header.created_ns, header.writer.pid, header.writer.started_ns)
        if plan.first_time(key, directory.name, header.incarnation_ns):
            u8 = np.frombuffer(segment.map, np.uint8, state.commit - F.HEADER_SIZE, F.HEADER_SIZE)
            origin = _Origin(str(segment.path), segment.index, F.HEADER_SIZE)
            plan.units.append(_Segment(u8, origin, state.check_seal))
        if broken is not None and broken[0] == position:
            raise broken[1]
    if failure is not None:
        raise failure


def _plan_archive(plan: _Plan, path: Path, start_ns: int | None, end_ns: int | None) -> None:
    with ArchiveReader(path) as reader:
        header = reader.header
        if header.payload_id != PAYLOAD_ID:
            raise JournalError(f"{path}: {_not_results(header.payload_id)}")
        key = (header.segment_index, header.created_ns, header.writer_pid, header.writer_started_ns)
        if not plan.first_time(key, path.parent.name, header.incarnation_ns):
            return
        if not header.sealed:
            raise CorruptArchiveError(
                f"end_marker_offset=0: the archive of an unsealed segment (its records up "
                f"to commit_offset={header.commit_offset} when it was copied); the compactor "
                "archives sealed segments only: archive it again once sealed",
                path=str(path),
                offset=END_MARKER_OFFSET_OFFSET,
            )
        plan.units.append(_Archive(path, tuple(reader.frames_overlapping(start_ns, end_ns))))


# -- decoding ----------------------------------------------------------------------------------


@dataclass
class _Columns:
    """Decoded blocks, concatenated at the end."""

    parts: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {name: [] for name in Results.COLUMNS}
    )

    def add(self, block: dict[str, np.ndarray]) -> None:
        for name, values in block.items():
            self.parts[name].append(values)

    def results(self, names: list[str], gaps: tuple[SegmentGap, ...]) -> Results:
        columns = {}
        for name in Results.COLUMNS:
            dtype = _column_dtype(name)
            parts = self.parts[name]
            columns[name] = (
                np.concatenate(parts).astype(dtype, copy=False) if parts else (np.zeros(0, dtype))
            )
        return Results(**columns, names=names, gaps=gaps)


def _column_dtype(name: str) -> np.dtype[Any]:
    if name.endswith("_code"):
        return np.dtype(np.int32)
    if name == "stale":
        return np.dtype(bool)
    if name in ("timestamp_ns", "source_local_timestamp_ns", "segment", "offset"):
        return np.dtype(np.int64)
    return np.dtype(np.float64)


class _Block:
    """The records at ``starts`` of one buffer, decoded (module docstring)."""

    def __init__(
        self, u8: np.ndarray, origin: _Origin, starts: np.ndarray, sizes: np.ndarray, names: _Names
    ) -> None:
        self.u8, self.origin, self.starts, self.sizes, self.names = u8, origin, starts, sizes, names

    def decode(self) -> dict[str, np.ndarray]:
        m = len(self.starts)
        out: dict[str, np.ndarray] = {
            name: np.zeros(m, _column_dtype(name))
            for name in Results.COLUMNS
            if name not in ("segment", "offset")
        }
        words = (F.SIZE_PREFIX_SIZE + self.sizes + 7) >> 3
        for width in np.unique(words).tolist():
            self._decode_rows(np.flatnonzero(words == width), int(width), out)
        out["segment"] = np.full(m, self.origin.segment_index, np.int64)
        out["offset"] = self.starts + self.origin.segment_offset
        return out

    def _decode_rows(self, rows: np.ndarray, width: int, out: dict[str, np.ndarray]) -> None:
        """The records at ``rows`` whose frames are ``width`` words: grouped by their
        skeleton (size, table, vtable and where every field is), then within each by
        every byte but the scalars' (at the same places there), each group verified
        once (its first record); the scalars read as columns of the skeleton's."""
        rb = _words_at(self.u8, self.starts[rows] >> 3, width).view(np.uint8)
        limit = F.SIZE_PREFIX_SIZE + self.sizes[rows]
        skeleton, good = _skeleton(rb, limit)
        slow = [int(r) for r in rows[~good]]
        fast = np.flatnonzero(good)
        if len(fast):
            every = len(fast) == len(rows)
            firsts, kind = _distinct(skeleton if every else [c[fast] for c in skeleton])
            for k in range(len(firsts)):
                members = fast[kind == k] if len(firsts) > 1 else fast
                slow += self._decode_skeleton(rb, members, rows, out)
        for r in sorted(slow):
            self._decode_alone(r, out)

    def _decode_skeleton(
        self, rb: np.ndarray, members: np.ndarray, rows: np.ndarray, out: dict[str, np.ndarray]
    ) -> list[int]:
        """Records of one skeleton (rows ``members`` of ``rb``): the scalars read, the
        strings of each group of equal other bytes from its verified first record.
        Returns the block rows to decode alone (scalars over the structure)."""
        first = int(members[0])
        record = rb[first]
        table = _PREFIX_AND_ROOT - 4 + int(record[4:8].view("<u4")[0])
        vtable = table - int(record[table : table + 4].view("<i4")[0])
        vsize = int(record[vtable : vtable + 2].view("<u2")[0])
        places = []  # (field, byte offset) of each scalar present
        for scalar in SCALAR_FIELDS:
            entry = 4 + 2 * scalar.slot
            at = (
                int(record[vtable + entry : vtable + entry + 2].view("<u2")[0])
                if entry < vsize
                else 0
            )
            if at:
                places.append((scalar, table + at))
        group_rb = rb[members]
        masked = group_rb.copy()
        for scalar, pos in places:
            masked[:, pos : pos + scalar.size] = 0
        columns = list(np.ascontiguousarray(masked.view("<u8").T))
        firsts, group = _distinct(columns)
        slow: list[int] = []
        for g, j in enumerate(firsts.tolist()):
            these = rows[members[group == g]] if len(firsts) > 1 else rows[members]
            where = int(self.starts[these[0]])
            strings = self._representative(group_rb[j], where, places)
            if strings is None:  # scalars over the structure: each record alone
                slow += these.tolist()
                continue
            for column, text in strings.items():
                out[f"{column}_code"][these] = self.names.code(text)
        for scalar, pos in places:
            raw = np.ascontiguousarray(group_rb[:, pos : pos + scalar.size])
            values = raw.view(_DTYPES[scalar.format]).reshape(-1)
            out[scalar.name][rows[members]] = values != 0 if scalar.format == "?" else values
        return slow

    def _representative(
        self, record: np.ndarray, where: int, places: list[tuple[Any, int]]
    ) -> dict[str, str] | None:
        """The strings of one record (its frame's bytes, at buffer offset ``where``),
        verified; None if one of its scalars (``places``) lies over its structure
        (then records equal but for their scalars need not be equal)."""
        data = record.tobytes()
        end = F.SIZE_PREFIX_SIZE + int.from_bytes(data[:4], "little")
        try:
            verify_size_prefixed(data, 0, end, SCHEMA)
            decoded = read_table(data, 0, end, (0, 0), SCHEMA, verify=False)
        except (VerificationError, UnicodeDecodeError) as error:
            raise self.origin.corrupt(f"record does not decode: {error}", where) from None

        def u16(pos: int) -> int:
            return int.from_bytes(data[pos : pos + 2], "little")

        def u32(pos: int) -> int:
            return int.from_bytes(data[pos : pos + 4], "little")

        table = _PREFIX_AND_ROOT - 4 + u32(4)
        vtable = table - int.from_bytes(data[table : table + 4], "little", signed=True)
        vsize = u16(vtable)
        structure = [(0, _PREFIX_AND_ROOT), (table, table + 4), (vtable, vtable + vsize)]
        for f in SCHEMA.fields:
            entry = 4 + 2 * f.slot
            if f.kind == "string" and entry < vsize and (slot := u16(vtable + entry)):
                body = table + slot + u32(table + slot)
                structure += [(table + slot, table + slot + 4), (body, body + 5 + u32(body))]
        for scalar, low in places:
            if any(low < b and a < low + scalar.size for a, b in structure):
                return None
        return {column: decoded.fields[column] for column in STRING_FIELDS}

    def _decode_alone(self, r: int, out: dict[str, np.ndarray]) -> None:
        """Record ``r`` of the block verified and decoded by itself (raising with its
        place if it is corrupt)."""
        start = int(self.starts[r])
        end = start + F.SIZE_PREFIX_SIZE + int(self.sizes[r])
        data = self.u8[start:end].tobytes()
        try:
            record = read_table(data, 0, len(data), (0, 0), SCHEMA, verify=True)
        except (VerificationError, UnicodeDecodeError) as error:
            raise self.origin.corrupt(f"record does not decode: {error}", start) from None
        for column in STRING_FIELDS:
            out[f"{column}_code"][r] = self.names.code(record.fields[column])
        for scalar in SCALAR_FIELDS:
            out[scalar.name][r] = record.fields[scalar.name]


def _skeleton(rb: np.ndarray, limit: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Per record (row of ``rb``; ``limit``: its frame's bytes in use): its skeleton,
    the columns that place every byte (size prefix, table and vtable offsets, vtable
    and table sizes, each field's offset in the table, 0 where absent), and whether it
    all lies inside the record and no scalar runs past its table (else the record is
    decoded alone, by the verifier)."""
    m, stride = rb.shape  # a multiple of 8 bytes: each row's start is aligned
    flat = rb.reshape(-1)
    base = np.arange(m, dtype=np.int64) * stride
    views = {"<u2": flat.view("<u2"), "<u4": flat.view("<u4"), "<i4": flat.view("<i4")}

    def read(pos: np.ndarray, dtype: str) -> np.ndarray:
        """The value at ``pos`` of each row (aligned to its size: checked)."""
        return views[dtype][(base + pos) >> (1 if dtype == "<u2" else 2)].astype(np.int64)

    size = read(np.zeros(m, np.int64), "<u4")
    table = _PREFIX_AND_ROOT - 4 + read(np.full(m, F.SIZE_PREFIX_SIZE, np.int64), "<u4")
    good = (table >= _PREFIX_AND_ROOT) & (table + 4 <= limit) & (table % 4 == 0)
    table = np.where(good, table, _PREFIX_AND_ROOT)
    vtable = table - read(table, "<i4")
    good &= (vtable >= _PREFIX_AND_ROOT) & (vtable + 4 <= limit) & (vtable % 2 == 0)
    vtable = np.where(good, vtable, _PREFIX_AND_ROOT)
    vsize, tsize = read(vtable, "<u2"), read(vtable + 2, "<u2")
    good &= (vsize >= 4) & (vsize % 2 == 0) & (vtable + vsize <= limit) & (table + tsize <= limit)
    skeleton = [size, table, vtable, vsize, tsize]
    for f in SCHEMA.fields:
        entry = 4 + 2 * f.slot
        inside = good & (entry < vsize)
        at = np.where(inside, read(np.where(inside, vtable + entry, 0), "<u2"), 0)
        if f.kind == "scalar":
            good &= (at == 0) | ((at >= 4) & (at + f.size <= tsize))
        skeleton.append(at)
    return [column.view(np.uint64) for column in skeleton], good


# -- the entry point -----------------------------------------------------------------------


def load_results(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    start_ns: int | None = None,
    end_ns: int | None = None,
    bases: Iterable[str] | None = None,
    exchanges: Iterable[str] | None = None,
    *,
    allow_gaps: bool = False,
) -> Results:
    """Load the radar's results into numpy columns (see Results).

    ``sources``: results journal directories (the radar's ``--results DIR``), their
    archives (files, ``ARCHIVE/<stream>`` or ARCHIVE roots), in any mix, as load_books
    takes them. ``start_ns``/``end_ns``: results whose ``timestamp_ns`` (radar clock)
    is in ``[start_ns, end_ns)``. ``bases``: only these base assets. ``exchanges``:
    only pairs whose KRW and USDT venues are both among these. ``allow_gaps``: read
    around segments missing in the middle of a stream (listed in ``Results.gaps``)
    instead of raising MissingSegmentsError. Rows come in source order, each source
    in segment order.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    plan = _Plan()
    names = _Names()
    columns = _Columns()
    with contextlib.ExitStack() as stack:
        for source in sources:
            for journal_dir, archive in source_parts(Path(source)):
                if journal_dir is not None:
                    _plan_journal(plan, journal_dir, stack)
                else:
                    assert archive is not None
                    _plan_archive(plan, archive, start_ns, end_ns)
        gaps = _stream_gaps(plan.streams)
        if gaps and not allow_gaps:
            raise MissingSegmentsError(gaps)
        for unit in plan.units:
            if isinstance(unit, _Segment):
                starts, sizes, ended = _walk(
                    unit.u8, unit.origin, marker_allowed=True, payload_id=PAYLOAD_ID
                )
                unit.check_seal(ended)
                _decode_buffer(unit.u8, unit.origin, starts, sizes, names, columns, None)
            else:
                _decode_archive(unit, names, columns)
    results = columns.results(names.names, gaps)
    return _filtered(results, start_ns, end_ns, bases, exchanges)


def _decode_buffer(
    u8: np.ndarray,
    origin: _Origin,
    starts: np.ndarray,
    sizes: np.ndarray,
    names: _Names,
    columns: _Columns,
    time_bounds: tuple[np.ndarray, np.ndarray] | None,
) -> None:
    """Decode every record of a buffer a block at a time; ``time_bounds``: each
    record's time must lie in them (its archive frame's index entry)."""
    for first in range(0, len(starts), _BLOCK):
        part = slice(first, first + _BLOCK)
        block = _Block(u8, origin, starts[part], sizes[part], names).decode()
        if time_bounds is not None:
            time_ns = block["timestamp_ns"]
            low, high = time_bounds[0][part], time_bounds[1][part]
            outside = np.flatnonzero((time_ns < low) | (time_ns > high))
            if len(outside):
                j = int(outside[0])
                raise origin.corrupt(
                    f"record has time {int(time_ns[j])}, outside the index's "
                    f"{int(low[j])}..{int(high[j])}",
                    int(starts[part][j]),
                )
        columns.add(block)


def _decode_archive(unit: _Archive, names: _Names, columns: _Columns) -> None:
    """The frames of an archive that the time range overlaps, each decompressed,
    walked (its record count checked against the index) and decoded."""
    with ArchiveReader(unit.path) as reader:
        last = len(reader.frames) - 1
        for i in unit.frames:
            entry = reader.frames[i]
            data = reader.read_frame(i) if entry.value_count else reader.decompress_frame(i)
            u8 = np.frombuffer(data, np.uint8, entry.raw_size)
            origin = _Origin(
                reader.path,
                reader.header.segment_index,
                entry.segment_offset,
                ((0, i, entry.file_offset),),
            )
            starts, sizes, ended = _walk(
                u8, origin, marker_allowed=i == last, payload_id=PAYLOAD_ID
            )
            if len(starts) != entry.record_count or ended != (i == last):
                raise CorruptArchiveError(
                    f"zstd frame {i}: {len(starts)} records"
                    + ("" if ended == (i == last) else ", its end-of-segment marker misplaced")
                    + f", the index says {entry.record_count}",
                    path=reader.path,
                    offset=entry.file_offset,
                )
            bounds = (
                np.full(len(starts), entry.min_time_ns, np.int64),
                np.full(len(starts), entry.max_time_ns, np.int64),
            )
            _decode_buffer(u8, origin, starts, sizes, names, columns, bounds)


def _filtered(
    results: Results,
    start_ns: int | None,
    end_ns: int | None,
    bases: Iterable[str] | None,
    exchanges: Iterable[str] | None,
) -> Results:
    keep = np.ones(len(results), dtype=bool)
    if start_ns is not None:
        keep &= results.timestamp_ns >= start_ns
    if end_ns is not None:
        keep &= results.timestamp_ns < end_ns
    codes = np.arange(len(results.names))
    if bases is not None:
        allowed = np.isin(np.array(results.names, dtype=object), list(bases))
        keep &= allowed[results.base_code] if len(codes) else False
    if exchanges is not None:
        allowed = np.isin(np.array(results.names, dtype=object), list(exchanges))
        if len(codes):
            keep &= allowed[results.krw_exchange_code] & allowed[results.usdt_exchange_code]
        else:
            keep &= False
    return results if keep.all() else results.select(keep)
