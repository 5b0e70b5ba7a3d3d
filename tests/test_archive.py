"""Archive files: the layout pinned against docs/FORMAT.md, bit-identical round trips,
time-range reads that touch only the frames they need, and corrupt, truncated or
hostile archives refused with CorruptArchiveError (never a crash or a huge allocation)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import flatbuffers
import numpy as np
import pytest
import zstandard
from RadarData import RadarResult as RR

import journal
from journal import _layout as F
from journal import _orderbook_layout as OB
from journal._segment import MappedSegment, segment_indices, segment_path
from journal.archive import _archive as A
from journal.archive import _layout as AL
from tests._books import Book, build_official
from tests._procs import LOCAL_NS0, book
from tests.conftest import REPO

SEGMENT = 64 * 1024
SMALL_FRAMES = 4096


# -- helpers ------------------------------------------------------------------------------


def official(seq: int, present: set[str] | None = None) -> bytes:
    """Book ``seq`` laid out by the official builder (not the writer's own layout)."""
    exchange, symbol, timestamp, sequence, bids, asks, local_ns = book(seq)
    value = Book(exchange, symbol, timestamp, sequence, bids, asks, local_ns)
    if present is None:
        return build_official(value)
    return build_official(value, present)


def write_books(path: Path, count: int) -> None:
    """``count`` books (tests._procs.book), by every append path: single appends,
    batches, and buffers of the official builder; several segments of 64 KiB."""
    with journal.Writer(path, segment_size=SEGMENT) as writer:
        seq = 0
        while seq < count:
            kind = (seq // 40) % 3
            if kind == 0:
                writer.append_orderbook(*book(seq))
                seq += 1
            elif kind == 1:
                batch = min(40, count - seq)
                writer.append_many([book(s) for s in range(seq, seq + batch)])
                seq += batch
            else:
                writer.append(official(seq))
                seq += 1


def sealed_segments(path: Path) -> list[Path]:
    result = []
    for index in segment_indices(path):
        with MappedSegment(segment_path(path, index)) as segment:
            if segment.is_sealed():
                result.append(segment.path)
    return result


def archive(segment_file: Path, directory: Path, **options: int) -> Path:
    directory.mkdir(exist_ok=True)
    with MappedSegment(segment_file) as segment:
        target = directory / A.archive_name_for(segment, segment.load_commit_acquire())
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            A.write_archive(fd, segment, **options)
        finally:
            os.close(fd)
    return target


def committed(segment_file: Path) -> bytes:
    with MappedSegment(segment_file) as segment:
        commit = segment.load_commit_acquire()
        return A.committed_header(segment.map) + bytes(segment.map[F.HEADER_SIZE : commit])


def read_all(path: Path, **options: int) -> bytes:
    """Open, check everything, and rebuild the segment's bytes."""
    with A.ArchiveReader(path, **options) as reader:
        reader.verify()
        data = reader.segment_bytes()
        list(reader.records())
        return data


@pytest.fixture
def books_journal(journal_dir: Path) -> Path:
    write_books(journal_dir, 1500)
    return journal_dir


@pytest.fixture
def one_archive(books_journal: Path, shm_dir: Path) -> tuple[Path, bytes]:
    """The archive of segment 0 in small frames, and the segment's committed bytes."""
    first = sealed_segments(books_journal)[0]
    return archive(first, shm_dir / "archive", frame_size=SMALL_FRAMES), committed(first)


# -- the layout against docs/FORMAT.md ----------------------------------------------------


def _doc_tables() -> list[list[tuple[int, int, str]]]:
    text = (REPO / "docs" / "FORMAT.md").read_text()
    section = text.split("## Archive files")[1].split("\n## ")[0]
    tables = []
    for block in section.split("```")[1::2]:
        if not block.lstrip().startswith("offset size field"):
            continue
        rows = []
        for line in block.splitlines():
            match = re.match(r"\s*(\d+)\s+(\d+)\s+(\w+)", line)
            if match:
                rows.append((int(match[1]), int(match[2]), match[3]))
        tables.append(rows)
    return tables


@pytest.mark.parametrize(
    ("table", "fields", "struct_", "total"),
    [
        (0, AL.HEADER_FIELDS, AL.HEADER_STRUCT, AL.ARCHIVE_HEADER_SIZE),
        (1, AL.INDEX_ENTRY_FIELDS, AL.INDEX_ENTRY_STRUCT, AL.INDEX_ENTRY_SIZE),
        (2, AL.TRAILER_FIELDS, AL.TRAILER_STRUCT, AL.TRAILER_SIZE),
    ],
    ids=["header", "index entry", "trailer"],
)
def test_format_md_tables_match_the_constants(
    table: int, fields: tuple[tuple[str, int, int], ...], struct_: struct.Struct, total: int
) -> None:
    rows = _doc_tables()[table]
    documented = [(name, offset, size) for offset, size, name in rows if name != "reserved"]
    assert documented == list(fields)
    for (offset, size, _), (next_offset, _, _) in itertools.pairwise(rows):
        assert offset + size == next_offset  # no gap, no overlap
    assert rows[-1][0] + rows[-1][1] == total
    # The struct's items sit exactly where the table's rows are (reserved ones too).
    items, at = [], 0
    for code in re.findall(r"\d*[a-zA-Z]", struct_.format.lstrip("<")):
        size = struct.calcsize("<" + code)
        if code[-1] != "x":
            items.append((at, size))
        at += size
    assert at == struct_.size <= total
    assert items == [(offset, size) for offset, size, _ in rows if offset < struct_.size]


_NAMED_FIELDS: dict[str, dict[str, tuple[int, int]]] = {
    "header": {
        "magic": (AL.MAGIC_OFFSET, len(AL.ARCHIVE_MAGIC)),
        "archive_version": (AL.ARCHIVE_VERSION_OFFSET, 4),
        "header_size": (AL.HEADER_SIZE_OFFSET, 4),
        "payload_id": (AL.PAYLOAD_ID_OFFSET, F.PAYLOAD_ID_SIZE),
        "segment_format_version": (AL.SEGMENT_FORMAT_VERSION_OFFSET, 4),
        "segment_index": (AL.SEGMENT_INDEX_OFFSET, 8),
        "segment_size": (AL.SEGMENT_SIZE_OFFSET, 8),
        "created_ns": (AL.CREATED_NS_OFFSET, 8),
        "writer_pid": (AL.WRITER_PID_OFFSET, 4),
        "writer_started_ns": (AL.WRITER_STARTED_NS_OFFSET, 8),
        "writer_host": (AL.WRITER_HOST_OFFSET, F.WRITER_HOST_SIZE),
        "commit_offset": (AL.COMMIT_OFFSET_OFFSET, 8),
        "end_marker_offset": (AL.END_MARKER_OFFSET_OFFSET, 8),
        "frame_size": (AL.FRAME_SIZE_OFFSET, 4),
        "zstd_level": (AL.ZSTD_LEVEL_OFFSET, 4),
        "incarnation_ns": (AL.INCARNATION_NS_OFFSET, 8),
    },
    "index entry": {
        "file_offset": (AL.ENTRY_FILE_OFFSET_OFFSET, 8),
        "compressed_size": (AL.ENTRY_COMPRESSED_SIZE_OFFSET, 8),
        "segment_offset": (AL.ENTRY_SEGMENT_OFFSET_OFFSET, 8),
        "raw_size": (AL.ENTRY_RAW_SIZE_OFFSET, 8),
        "record_count": (AL.ENTRY_RECORD_COUNT_OFFSET, 4),
        "value_count": (AL.ENTRY_VALUE_COUNT_OFFSET, 4),
        "min_time_ns": (AL.ENTRY_MIN_TIME_NS_OFFSET, 8),
        "max_time_ns": (AL.ENTRY_MAX_TIME_NS_OFFSET, 8),
    },
    "trailer": {
        "index_offset": (AL.TRAILER_INDEX_OFFSET_OFFSET, 8),
        "frame_count": (AL.TRAILER_FRAME_COUNT_OFFSET, 8),
        "record_count": (AL.TRAILER_RECORD_COUNT_OFFSET, 8),
        "min_time_ns": (AL.TRAILER_MIN_TIME_NS_OFFSET, 8),
        "max_time_ns": (AL.TRAILER_MAX_TIME_NS_OFFSET, 8),
        "header_crc32": (AL.TRAILER_HEADER_CRC32_OFFSET, 4),
        "index_crc32": (AL.TRAILER_INDEX_CRC32_OFFSET, 4),
        "trailer_crc32": (AL.TRAILER_CRC32_OFFSET, 4),
        "end_magic": (AL.TRAILER_END_MAGIC_OFFSET, len(AL.ARCHIVE_END_MAGIC)),
    },
}
"""Every field of the archive tables of docs/FORMAT.md, by the name of its offset in
journal/archive/_layout.py (as tests/test_layout.py names the segment header's)."""
_RESERVED: dict[str, list[tuple[int, int]]] = {
    "header": [
        (AL.HEADER_RESERVED_OFFSET, 4),
        (AL.HEADER_STRUCT_END, AL.ARCHIVE_HEADER_SIZE - AL.HEADER_STRUCT_END),
    ],
    "index entry": [],
    "trailer": [(AL.TRAILER_RESERVED_OFFSET, 4)],
}


@pytest.mark.parametrize("table", list(_NAMED_FIELDS))
def test_format_md_tables_match_the_named_offsets(table: str) -> None:
    """Each documented field at the offset and of the size the layout module names,
    the reserved rows where the module says; and the module's field tuples (which the
    reader and writer use) are these names."""
    rows = _doc_tables()[list(_NAMED_FIELDS).index(table)]
    documented = {name: (offset, size) for offset, size, name in rows if name != "reserved"}
    assert documented == _NAMED_FIELDS[table]
    assert [(offset, size) for offset, size, name in rows if name == "reserved"] == (
        _RESERVED[table]
    )
    fields = {"header": AL.HEADER_FIELDS, "index entry": AL.INDEX_ENTRY_FIELDS}.get(
        table, AL.TRAILER_FIELDS
    )
    assert {name: (offset, size) for name, offset, size in fields} == _NAMED_FIELDS[table]


def test_value_planes_are_named_from_the_record_layout() -> None:
    """The words an archive moves are the order-book record's value fields, by name."""
    assert AL.VALUE_WORDS.tolist() == [
        OB.word(OB.TIMESTAMP_POS),
        OB.word(OB.SEQUENCE_POS),
        OB.word(OB.LOCAL_TIMESTAMP_NS_POS),
    ]
    assert AL.MIN_VALUE_FRAME == OB.LOCAL_TIMESTAMP_NS_POS + 8 == OB.VALUES_END
    assert AL.VALUE_BYTES == OB.VALUES_END - OB.VALUES_POS
    section = (REPO / "docs" / "FORMAT.md").read_text().split("## Archive files")[1]
    assert (
        f"of {AL.MIN_VALUE_FRAME} bytes or more, bytes {OB.VALUES_POS}..{OB.VALUES_END}"
        in " ".join(section.split())
    )
    words = ", ".join(str(w) for w in OB.VALUE_WORDS[:-1]) + f", {OB.VALUE_WORDS[-1]}"
    assert f"for word `w` of {words}" in section


def test_format_md_names_the_constants() -> None:
    section = (REPO / "docs" / "FORMAT.md").read_text().split("## Archive files")[1]
    assert f'"{AL.ARCHIVE_MAGIC.decode()}"' in section
    assert f'"{AL.ARCHIVE_END_MAGIC.decode()}"' in section
    assert AL.ARCHIVE_SUFFIX in section
    assert f"archive_version        {AL.ARCHIVE_VERSION}" in section
    assert f"header_size            {AL.ARCHIVE_HEADER_SIZE}" in section
    assert f"trailer bytes 0..{AL.TRAILER_CRC_COVERS - 1}" in section
    assert AL.NO_TIME_MIN == 2**63 - 1 and AL.NO_TIME_MAX == -(2**63)
    assert "2^63-1 if no record" in section and "-2^63 if no record" in section


def test_pinned_constants() -> None:
    assert AL.ARCHIVE_MAGIC == b"OBJARCHV"
    assert AL.ARCHIVE_END_MAGIC == b"OBJAREND"
    assert AL.ARCHIVE_VERSION == 2 and AL.READABLE_VERSIONS == (1, 2)
    assert (AL.VALUE_BYTES, AL.MIN_VALUE_FRAME) == (24, 64)
    assert AL.VALUE_WORDS.tolist() == [5, 6, 7]
    assert (AL.ARCHIVE_HEADER_SIZE, AL.INDEX_ENTRY_SIZE, AL.TRAILER_SIZE) == (256, 56, 64)
    assert AL.ARCHIVE_SUFFIX == ".jzst"
    assert issubclass(journal.CorruptArchiveError, journal.JournalError)
    assert {"CorruptArchiveError", "ArchiveFullError"} <= set(journal.__all__)


def test_names_sort_by_time_then_index_and_tell_incarnations_apart() -> None:
    created = 1_699_999_999_000_000_001
    name = A.archive_name(1_700_000_000_123_456_789, 7, created)
    assert name == f"20231114T221320.123456Z-00000007-{created:016x}.jzst"
    assert A.parse_archive_name(name) == ("20231114T221320.123456Z", 7, created)
    assert A.parse_archive_name(".x.jzst.tmp") is None
    assert A.parse_archive_name("00000007.journal") is None
    # The names of the first archive builds, without -<created>: still archives.
    assert A.parse_archive_name("20231114T221320.123456Z-00000007.jzst") == (
        "20231114T221320.123456Z",
        7,
        None,
    )
    times = [0, 1000, 1_000_000_000, 1_700_000_000_000_000_000, 1_700_000_000_000_001_000]
    names = [A.archive_name(t, 100 - i, created) for i, t in enumerate(times)]
    assert names == sorted(names)
    assert A.archive_name(-(2**63), 1, created).startswith("1677")  # any int64 has a name
    assert A.archive_name(2**63 - 1, 1, created).startswith("2262")
    for any_created in (-(2**63), -1, 0, 2**63 - 1):
        parsed = A.parse_archive_name(A.archive_name(0, 3, any_created))
        assert parsed is not None and parsed.created_ns == any_created
    # One index, one first record time, two incarnations: two names.
    assert A.archive_name(5, 0, created) != A.archive_name(5, 0, created + 1)


# -- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("frame_size", [A.MIN_FRAME_SIZE, SMALL_FRAMES, A.DEFAULT_FRAME_SIZE])
def test_every_committed_byte_comes_back(
    books_journal: Path, shm_dir: Path, frame_size: int
) -> None:
    segments = sealed_segments(books_journal)
    assert len(segments) >= 3
    out = shm_dir / f"archive-{frame_size}"
    records = 0
    for segment_file in segments:
        path = archive(segment_file, out, frame_size=frame_size)
        assert read_all(path) == committed(segment_file)
        with A.ArchiveReader(path) as reader, MappedSegment(segment_file) as segment:
            reader.verify(segment.map)
            records += reader.record_count
            if frame_size < SEGMENT:
                assert len(reader.frames) > 1
                assert all(e.raw_size <= frame_size for e in reader.frames[:-1])
            else:
                assert len(reader.frames) == 1
            assert reader.header.sealed
            assert reader.header.host == segment.header.writer.host
            assert reader.frames[0].segment_offset == F.HEADER_SIZE
    with journal.Reader(books_journal, start="beginning") as live:
        in_sealed = sum(1 for r in live.available() if r.position[0] < len(segments))
    assert records == in_sealed


def test_incarnation_ns_is_archived_and_put_back(books_journal: Path, shm_dir: Path) -> None:
    """The stamp every segment of an incarnation carries (segment 0's created_ns) is in
    the archive header and in the rebuilt segment header; an archive written before the
    field existed (zero there) of a segment written before it (zero too) rebuilds it."""
    segments = sealed_segments(books_journal)
    with MappedSegment(segments[0]) as first:
        stamp = first.header.created_ns
    for segment_file in segments[:2]:
        path = archive(segment_file, shm_dir / "archive")
        with A.ArchiveReader(path) as reader, MappedSegment(segment_file) as segment:
            assert reader.header.incarnation_ns == segment.header.incarnation_ns == stamp != 0
            rebuilt = reader.header.segment_header()
            assert struct.unpack_from("<q", rebuilt, F.INCARNATION_NS_OFFSET)[0] == stamp
            reader.verify(segment.map)

    # A segment and its archive from before the field: zero in both, verified alike.
    old_segment = shm_dir / "old.journal"
    data = bytearray(segments[0].read_bytes())
    struct.pack_into("<q", data, F.INCARNATION_NS_OFFSET, 0)
    old_segment.write_bytes(data)
    path = archive(old_segment, shm_dir / "old")
    raw = bytearray(path.read_bytes())
    assert struct.unpack_from("<q", raw, AL.INCARNATION_NS_OFFSET)[0] == 0
    assert not any(raw[AL.INCARNATION_NS_OFFSET : AL.ARCHIVE_HEADER_SIZE])
    with A.ArchiveReader(path) as reader, MappedSegment(old_segment) as segment:
        assert reader.header.incarnation_ns == 0
        reader.verify(segment.map)
    assert read_all(path) == committed(old_segment)

    # The archive of another incarnation's segment (same bytes but the stamp) does not
    # verify against it: the compactor never counts it as this segment's archive.
    with (
        A.ArchiveReader(archive(segments[0], shm_dir / "new")) as reader,
        MappedSegment(old_segment) as segment,
        pytest.raises(journal.CorruptArchiveError, match="segment offset 136 differs"),
    ):
        reader.verify(segment.map)


def test_records_decode_as_the_live_reader_decodes_them(books_journal: Path, shm_dir: Path) -> None:
    segments = sealed_segments(books_journal)
    from_archives = []
    for segment_file in segments:
        with A.ArchiveReader(archive(segment_file, shm_dir / "a", frame_size=SMALL_FRAMES)) as r:
            from_archives += [record.to_dict() for record in r.records()]
    with journal.Reader(books_journal, start="beginning") as live:
        expected = [r.to_dict() for r in live.available() if r.position[0] < len(segments)]
    assert from_archives == expected
    # Books of the official builder's layout are there too, and decode the same.
    assert any(record["sequence"] % 120 == 80 for record in from_archives)


def test_radar_results_round_trip(journal_dir: Path, shm_dir: Path) -> None:
    """Another payload (RDR1): its time field is timestamp_ns, read via the vtable."""

    def result(i: int) -> bytes:
        builder = flatbuffers.Builder(128)
        base = builder.CreateString("BTC")
        krw = builder.CreateString("upbit")
        usdt = builder.CreateString("binance")
        RR.Start(builder)
        RR.AddTimestampNs(builder, 5_000_000_000 + 1000 * i)
        RR.AddBase(builder, base)
        RR.AddKrwExchange(builder, krw)
        RR.AddUsdtExchange(builder, usdt)
        RR.AddKimchiPremium(builder, 0.01 * (i % 7))
        RR.AddEdgeBps(builder, float(i))
        builder.FinishSizePrefixed(RR.End(builder), file_identifier=b"RDR1")
        return bytes(builder.Output())

    with journal.Writer(journal_dir, segment_size=SEGMENT, payload_id=b"RDR1") as writer:
        for i in range(1200):
            writer.append(result(i))
    segments = sealed_segments(journal_dir)
    assert segments
    path = archive(segments[0], shm_dir / "a", frame_size=SMALL_FRAMES)
    assert read_all(path) == committed(segments[0])
    with A.ArchiveReader(path) as reader:
        records = list(reader.records())
        assert reader.min_time_ns == 5_000_000_000
        assert [r.timestamp_ns for r in records] == [
            5_000_000_000 + 1000 * i for i in range(len(records))
        ]
        assert records[3].edge_bps == 3.0 and records[3].base == "BTC"


def test_records_without_a_time_field_have_time_zero(journal_dir: Path, shm_dir: Path) -> None:
    present = {"exchange_name", "symbol", "timestamp", "sequence", "bids", "asks"}
    with journal.Writer(journal_dir, segment_size=SEGMENT) as writer:
        for seq in range(500):
            writer.append(official(seq, present))
    path = archive(sealed_segments(journal_dir)[0], shm_dir / "a")
    with A.ArchiveReader(path) as reader:
        assert (reader.min_time_ns, reader.max_time_ns) == (0, 0)
        assert path.name.startswith("19700101T000000.000000Z-")
        assert len(list(reader.records(0, 1))) == reader.record_count


# -- time ranges --------------------------------------------------------------------------


def test_a_time_range_decompresses_only_the_frames_it_overlaps(
    one_archive: tuple[Path, bytes],
) -> None:
    path, _ = one_archive
    with A.ArchiveReader(path) as reader:
        frames = reader.frames
        assert len(frames) >= 8
        assert reader.min_time_ns == LOCAL_NS0  # book(seq) is at LOCAL_NS0 + 1000 seq
        middle = frames[len(frames) // 2]
        start, end = middle.min_time_ns + 1000, middle.max_time_ns  # inside one frame
        got = list(reader.records(start, end))
        assert reader.frames_decompressed == 1
        assert [r.local_timestamp_ns for r in got] == list(range(start, end, 1000))

        # Across a frame boundary: exactly two frames.
        before = reader.frames_decompressed
        boundary = frames[2].max_time_ns
        got = list(reader.records(boundary, boundary + 2000))
        assert reader.frames_decompressed - before == 2
        assert [r.local_timestamp_ns for r in got] == [boundary, boundary + 1000]

        # Outside every frame: nothing read at all.
        before = reader.frames_decompressed
        assert list(reader.records(reader.max_time_ns + 1, None)) == []
        assert list(reader.records(None, reader.min_time_ns)) == []
        assert reader.frames_decompressed == before

        # Unbounded: every record, each frame once.
        before = reader.frames_decompressed
        assert len(list(reader.records())) == reader.record_count
        assert reader.frames_decompressed - before == len(frames)


# -- corrupt, truncated and hostile archives ----------------------------------------------


def test_every_truncation_is_refused(one_archive: tuple[Path, bytes], shm_dir: Path) -> None:
    path, _ = one_archive
    data = path.read_bytes()
    cut = shm_dir / "cut.jzst"
    for length in sorted({*range(0, len(data), 97), *range(len(data) - 80, len(data))}):
        cut.write_bytes(data[:length])
        with pytest.raises(journal.CorruptArchiveError) as caught:
            read_all(cut)
        assert str(cut) in str(caught.value) and caught.value.offset is not None


def test_flipped_bits_are_refused_or_harmless(
    one_archive: tuple[Path, bytes], shm_dir: Path
) -> None:
    """A flipped bit anywhere: CorruptArchiveError, or (in bits zstd does not use)
    the very same segment bytes; never different bytes, never another exception."""
    path, original = one_archive
    data = path.read_bytes()
    damaged = shm_dir / "damaged.jzst"
    refused = 0
    positions = sorted(
        {
            *range(0, len(data), 13),
            *range(AL.ARCHIVE_HEADER_SIZE + 20),
            *range(len(data) - 200, len(data)),
        }
    )
    for position in positions:
        copy = bytearray(data)
        copy[position] ^= 1 << (position % 8)
        damaged.write_bytes(copy)
        try:
            assert read_all(damaged) == original, f"flip at {position} changed the bytes"
        except journal.CorruptArchiveError as error:
            assert error.offset is not None and 0 <= error.offset < len(data)
            refused += 1
    assert refused >= 0.95 * len(positions)


def _assemble(path: Path, header: A.ArchiveHeader, frames: list[tuple[bytes, int, int]]) -> Path:
    """An archive with valid CRCs around ``frames``: (zstd bytes, raw_size, records)."""
    packed = header.pack()
    entries = []
    position, segment_at = len(packed), F.HEADER_SIZE
    for compressed, raw_size, records in frames:
        low, high = (LOCAL_NS0, LOCAL_NS0) if records else (AL.NO_TIME_MIN, AL.NO_TIME_MAX)
        entries.append(
            A.FrameEntry(position, len(compressed), segment_at, raw_size, records, low, high)
        )
        position += len(compressed)
        segment_at += raw_size
    body = b"".join(compressed for compressed, _, _ in frames)
    path.write_bytes(packed + body + A.pack_index_and_trailer(packed, entries, position))
    return path


def _header(commit: int, segment_size: int = F.MAX_SEGMENT_SIZE) -> A.ArchiveHeader:
    return A.ArchiveHeader(
        b"OBK1", 1, 0, segment_size, 1, 2, 3, b"h".ljust(64, b"\0"), commit, commit - 8, 4096, 3
    )


def _marker_frame(size: int) -> bytes:
    """``size`` raw bytes: zero padding that ends with an end marker (no records)."""
    return bytes(size - 8) + struct.pack("<II", F.END_OF_SEGMENT, 0)


GIB3 = 3 << 30


def test_hostile_sizes_are_refused_before_any_allocation(shm_dir: Path) -> None:
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    small = _marker_frame(4096)

    # The index declares a 3 GiB frame (a 4 GiB segment): over max_frame_size, refused
    # when the archive is opened, before any decompression.
    bomb = compressor.compress(bytes(1 << 20))  # 1 MiB of zeros in a few hundred bytes
    path = _assemble(shm_dir / "big.jzst", _header(F.HEADER_SIZE + GIB3), [(bomb, GIB3, 0)])
    with pytest.raises(journal.CorruptArchiveError, match=r"outside 1\.\.max_frame_size"):
        A.ArchiveReader(path)

    # The zstd frame header claims 3 GiB of content, the index 4096 bytes.
    honest = compressor.compress(small)
    header_size = zstandard.frame_header_size(honest)
    lying = bytearray(honest[:header_size])
    lying[4] = (lying[4] & 0x3F) | 0xC0 | 0x20  # 8-byte Frame_Content_Size, single segment
    lying_frame = bytes(lying[:5]) + struct.pack("<Q", GIB3) + honest[header_size:]
    assert zstandard.get_frame_parameters(lying_frame).content_size == GIB3
    path = _assemble(shm_dir / "lie.jzst", _header(F.HEADER_SIZE + 4096), [(lying_frame, 4096, 0)])
    with (
        A.ArchiveReader(path) as reader,
        pytest.raises(
            journal.CorruptArchiveError,
            match="content size 3221225472 in its header, 4096 in the index",
        ),
    ):
        reader.read_frame(0)

    # No content size, or no checksum: refused.
    for name, maker, message in (
        (
            "nosize",
            zstandard.ZstdCompressor(write_checksum=True, write_content_size=False),
            "no content size",
        ),
        ("nosum", zstandard.ZstdCompressor(write_checksum=False), "no content checksum"),
    ):
        frame = maker.compress(small) if name == "nosum" else _streamed(maker, small)
        path = _assemble(
            shm_dir / f"{name}.jzst", _header(F.HEADER_SIZE + 4096), [(frame, 4096, 0)]
        )
        with (
            A.ArchiveReader(path) as reader,
            pytest.raises(journal.CorruptArchiveError, match=message),
        ):
            reader.read_frame(0)

    # Bytes after the zstd frame inside its compressed_size: refused.
    path = _assemble(
        shm_dir / "extra.jzst", _header(F.HEADER_SIZE + 4096), [(honest + b"\0" * 8, 4096, 0)]
    )
    with (
        A.ArchiveReader(path) as reader,
        pytest.raises(journal.CorruptArchiveError, match="unused"),
    ):
        reader.read_frame(0)

    # A frame count far beyond what the file holds: refused from the trailer alone.
    path = _assemble(shm_dir / "ok.jzst", _header(F.HEADER_SIZE + 4096), [(honest, 4096, 0)])
    data = bytearray(path.read_bytes())
    trailer_at = len(data) - AL.TRAILER_SIZE
    struct.pack_into("<Q", data, trailer_at + 8, 1 << 60)
    crc = zlib.crc32(data[trailer_at : trailer_at + AL.TRAILER_CRC_COVERS])
    struct.pack_into("<I", data, trailer_at + AL.TRAILER_CRC_COVERS, crc)
    path.write_bytes(data)
    with pytest.raises(journal.CorruptArchiveError, match="do not fill the file"):
        A.ArchiveReader(path)


def _streamed(compressor: zstandard.ZstdCompressor, data: bytes) -> bytes:
    """A frame without a content size (as a streaming compressor writes it)."""
    chunker = compressor.compressobj()
    return chunker.compress(data) + chunker.flush()


def test_records_that_break_the_framing_or_the_index_are_refused(shm_dir: Path) -> None:
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    record = journal.OrderBookEncoder().encode(*book(3))
    padded = record + bytes(-len(record) % 8)
    # A size prefix running past the frame.
    broken = struct.pack("<I", 10_000) + padded[4:]
    raw = broken + _marker_frame(8)
    path = _assemble(
        shm_dir / "framing.jzst",
        _header(F.HEADER_SIZE + len(raw)),
        [(compressor.compress(raw), len(raw), 1)],
    )
    with (
        A.ArchiveReader(path) as reader,
        pytest.raises(journal.CorruptArchiveError, match="runs past"),
    ):
        reader.read_frame(0)
    # A wrong record count in the index.
    raw = padded + _marker_frame(8)
    path = _assemble(
        shm_dir / "count.jzst",
        _header(F.HEADER_SIZE + len(raw)),
        [(compressor.compress(raw), len(raw), 2)],
    )
    with (
        A.ArchiveReader(path) as reader,
        pytest.raises(journal.CorruptArchiveError, match="the index says 2"),
    ):
        reader.read_frame(0)
    # Times outside the index's range (it says LOCAL_NS0, the record has LOCAL_NS0 + 3000).
    path = _assemble(
        shm_dir / "times.jzst",
        _header(F.HEADER_SIZE + len(raw)),
        [(compressor.compress(raw), len(raw), 1)],
    )
    with A.ArchiveReader(path) as reader:
        with pytest.raises(journal.CorruptArchiveError, match="outside the index"):
            list(reader.records())
        with pytest.raises(journal.CorruptArchiveError, match="the index says"):
            reader.verify()
    # No end marker in an archive of a sealed segment.
    path = _assemble(
        shm_dir / "nomarker.jzst",
        _header(F.HEADER_SIZE + len(padded)),
        [(compressor.compress(padded), len(padded), 1)],
    )
    with (
        A.ArchiveReader(path) as reader,
        pytest.raises(journal.CorruptArchiveError, match="end-of-segment"),
    ):
        reader.read_frame(0)


def test_an_archive_that_does_not_match_its_segment_is_reported(
    books_journal: Path, shm_dir: Path
) -> None:
    first, second = sealed_segments(books_journal)[:2]
    path = archive(first, shm_dir / "a")
    with (
        A.ArchiveReader(path) as reader,
        MappedSegment(second) as other,
        pytest.raises(journal.CorruptArchiveError, match="does not reproduce the segment header"),
    ):
        reader.verify(other.map)


def test_not_an_archive(shm_dir: Path) -> None:
    path = shm_dir / "x.jzst"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(journal.CorruptArchiveError, match="end_magic"):
        A.ArchiveReader(path)
    (shm_dir / "dir.jzst").mkdir()
    with pytest.raises(journal.JournalError, match="not a regular file"):
        A.ArchiveReader(shm_dir / "dir.jzst")
    with pytest.raises(journal.JournalError, match="cannot open archive"):
        A.ArchiveReader(shm_dir / "missing.jzst")


def test_a_frame_of_millions_of_tiny_records_is_walked_in_bounded_memory(shm_dir: Path) -> None:
    """4 MiB of 16-byte records (the smallest a frame can hold) whose count the index
    gets wrong: refused after the walk, which must not have listed every record
    (a list of 262,144 tuples alone is ~25 MB)."""
    import tracemalloc

    tiny = struct.pack("<II", F.MIN_RECORD_SIZE, 4) + b"OBK1" + bytes(4)
    records = (4 << 20) // len(tiny) - 1
    raw = tiny * records + _marker_frame(8)
    raw_size = len(raw)
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(raw)
    path = _assemble(
        shm_dir / "tiny.jzst",
        _header(F.HEADER_SIZE + raw_size),
        [(compressed, raw_size, records - 1)],
    )
    with A.ArchiveReader(path) as reader:
        tracemalloc.start()
        try:
            with pytest.raises(journal.CorruptArchiveError, match=f"{records} records, the index"):
                reader.read_frame(0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 2 * raw_size, f"peak {peak:,} bytes to walk a frame of {raw_size:,}"


def test_record_time_of_the_writers_own_layout_needs_no_verifier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compactor reads every record's time: records journal.Writer laid out are
    read at the fixed place (the verifier costs ~40 us a record, 2/3 of compaction)."""
    from journal._verify import SCHEMAS

    record = journal.OrderBookEncoder().encode(*book(3))

    def refuse(*args: object) -> None:
        raise AssertionError("the verifier ran on a record of the writer's own layout")

    monkeypatch.setattr(A, "verify_size_prefixed", refuse)
    assert A.record_time(record, 0, len(record), SCHEMAS[b"OBK1"]) == LOCAL_NS0 + 3000


def test_versions_one_and_two_are_read_and_others_refused(shm_dir: Path) -> None:
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    record = journal.OrderBookEncoder().encode(*book(0))  # at LOCAL_NS0, as _assemble says
    raw = record + bytes(-len(record) % 8) + _marker_frame(8)
    frames = [(compressor.compress(raw), len(raw), 1)]
    v1 = dataclasses.replace(_header(F.HEADER_SIZE + len(raw)), archive_version=1)
    path = _assemble(shm_dir / "v1.jzst", v1, frames)
    with A.ArchiveReader(path) as reader:  # frames of plain segment bytes
        assert reader.header.archive_version == 1
        assert reader.read_frame(0) == raw
        assert [r.sequence for r in reader.records()] == [0]
    for version in (0, 3, 99):
        odd = dataclasses.replace(v1, archive_version=version)
        path = _assemble(shm_dir / f"v{version}.jzst", odd, frames)
        with pytest.raises(
            journal.CorruptArchiveError,
            match=f"archive_version={version}: this reader knows versions 1 and 2",
        ):
            A.ArchiveReader(path)


def test_value_planes_restore_every_byte_and_their_count_is_checked(
    books_journal: Path, shm_dir: Path
) -> None:
    segment_file = sealed_segments(books_journal)[0]
    path = archive(segment_file, shm_dir / "a", frame_size=SMALL_FRAMES)
    with A.ArchiveReader(path) as reader:
        assert reader.header.archive_version == AL.ARCHIVE_VERSION == 2
        entry = reader.frames[0]
        assert entry.value_count == entry.record_count > 0
        content = reader.decompress_frame(0)
        assert len(content) == entry.raw_size + AL.VALUE_BYTES * entry.value_count
        # The records in the content have their values zeroed; the frame has them back.
        original = committed(segment_file)[
            entry.segment_offset : entry.segment_offset + entry.raw_size
        ]
        assert content[: entry.raw_size] != original
        assert reader.read_frame(0) == original
    # An index whose value_count disagrees with the records (CRCs made right): refused.
    data = bytearray(path.read_bytes())
    trailer_at = len(data) - AL.TRAILER_SIZE
    index_offset = struct.unpack_from("<Q", data, trailer_at)[0]
    struct.pack_into("<I", data, index_offset + 36, entry.value_count - 1)
    index = data[index_offset:trailer_at]
    struct.pack_into("<I", data, trailer_at + 44, zlib.crc32(index))
    crc = zlib.crc32(data[trailer_at : trailer_at + AL.TRAILER_CRC_COVERS])
    struct.pack_into("<I", data, trailer_at + AL.TRAILER_CRC_COVERS, crc)
    damaged = shm_dir / "values.jzst"
    damaged.write_bytes(data)
    with (
        A.ArchiveReader(damaged) as reader,
        pytest.raises(journal.CorruptArchiveError, match="content size"),
    ):
        reader.read_frame(0)


def test_frames_are_decompressed_by_several_threads_at_once(
    one_archive: tuple[Path, bytes],
) -> None:
    """journal.analysis decompresses frames in worker threads: one reader, each thread
    with its own zstd context, the same bytes, every frame counted."""
    path, _ = one_archive
    with A.ArchiveReader(path) as reader:
        count = len(reader.frames)
        alone = [reader.decompress_frame(i) for i in range(count)]
        with ThreadPoolExecutor(4) as pool:
            for _ in range(3):
                assert list(pool.map(reader.decompress_frame, range(count))) == alone
        assert reader.frames_decompressed == 4 * count


def test_plane_values_are_the_values_split_values_moved() -> None:
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 1 << 63, 64, dtype=np.uint64).view(np.uint8)
    starts = np.array([0, 64, 200, 360], np.int64)
    original = frame.view("<u8")[starts[:, None] // 8 + AL.VALUE_WORDS].T.copy()
    planes = A.split_values(frame, starts)
    assert not frame.view("<u8")[starts[:, None] // 8 + AL.VALUE_WORDS].any()
    assert np.array_equal(A.plane_values(planes, len(starts)), original)
    A.restore_values(frame, planes, starts)
    assert np.array_equal(frame.view("<u8")[starts[:, None] // 8 + AL.VALUE_WORDS].T, original)
