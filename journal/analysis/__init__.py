"""Offline analysis: journals and their archives into numpy columns, and what a
trader reads from them.

``load_books`` (journal.analysis._load) decodes archives and live segments in bulk
into ``Books`` columns; ``journal analyze`` and ``journal export`` (journal.analysis.
_report) print the summary, draw the charts and write Parquet from them. Above the
core and the archive: it reads both, and nothing below imports it.
"""

from journal.analysis._load import (
    DEFAULT_DEPTH,
    Books,
    MissingSegmentsError,
    SegmentGap,
    load_books,
)

__all__ = ["DEFAULT_DEPTH", "Books", "MissingSegmentsError", "SegmentGap", "load_books"]
