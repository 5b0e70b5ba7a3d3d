"""Offline analysis: journals and their archives into numpy columns, dataframes and
Parquet, and what a trader reads from them.

``load_books`` (journal.analysis._load) decodes archives and live segments of order
books in bulk into ``Books`` columns; ``load_results`` (journal.analysis._results)
the radar's results journals into ``Results`` columns; both turn into pyarrow, pandas
and Polars tables (``to_arrow``, ``to_pandas``, ``to_polars``: the columns of
journal.analysis._table). ``journal analyze`` and ``journal export``
(journal.analysis._report, journal.analysis._dataset) print the summary, draw the
charts and write the Parquet dataset from them. Above the core and the archive: it
reads both, and nothing below imports it. docs/ANALYSIS.md shows them at work.
"""

from journal.analysis._load import (
    DEFAULT_DEPTH,
    Books,
    MissingSegmentsError,
    SegmentGap,
    load_books,
)
from journal.analysis._results import Results, load_results
from journal.analysis._table import ANY_QUOTE, MARKETS, VENUE_MARKETS, market_of

__all__ = [
    "ANY_QUOTE",
    "DEFAULT_DEPTH",
    "MARKETS",
    "VENUE_MARKETS",
    "Books",
    "MissingSegmentsError",
    "Results",
    "SegmentGap",
    "load_books",
    "load_results",
    "market_of",
]
