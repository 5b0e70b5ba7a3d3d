"""The archive: sealed segments as verified zstd files, and the compactor that makes
them (docs/FORMAT.md, "Archive files").

``journal.archive._archive`` is the file format (writing, reading, a stream's
segments across incarnations); ``journal.archive.compact`` is ``journal compact`` /
``tools/compact``. Above the core (it reads and removes segments through it); the
core's Reader reads archives only through the narrow interface registered here.
"""

from __future__ import annotations

from pathlib import Path

from journal import _archived
from journal.archive._archive import ArchiveReader, stream_segments


class _ReaderAccess:
    """What journal._archived asks of the archive for the core Reader."""

    def stream_segments(
        self, archive_dir: Path, journal_dir: Path
    ) -> list[_archived.StreamSegment]:
        return stream_segments(archive_dir, journal_dir)

    def open(self, path: Path) -> ArchiveReader:
        return ArchiveReader(path)


_archived.register(_ReaderAccess())
