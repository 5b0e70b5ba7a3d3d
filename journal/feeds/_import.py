"""``journal import-captures FILE... --journal DIR``: real captures into a journal.

Every book a builder publishes is appended with the times and sequence it carries:
``timestamp`` the exchange's event time in ms (Binance ``E``, Upbit ``tms``, Bybit
``timestamp_e6 // 1000``), ``local_timestamp_ns`` the capture's receive EPOCH,
``sequence`` the venue's update id (Binance ``u``, Bybit ``cross_seq``, Upbit the
stream's message count, having none). The whole capture is replayed before anything
is written, so a damaged capture leaves no half-imported journal; the journal must be
new or empty, so that an import run twice does not journal every book twice (checked
before anything in it is touched, its writer.metrics included). The last segment is
sealed at the end, so ``journal compact`` archives the whole import at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from journal import _layout as F
from journal._errors import InvalidRecordError, JournalError
from journal._segment import MappedSegment, segment_indices, segment_path
from journal._writer import Writer
from journal.feeds._errors import CaptureFormatError, FeedError
from journal.feeds._replay import CaptureReplay
from journal.feeds._report import ImportReport


def import_captures(
    paths: Iterable[str | os.PathLike[str]], journal_dir: str | os.PathLike[str]
) -> ImportReport:
    """Replay capture files into the journal ``journal_dir`` (created if missing).

    FeedError (CaptureFormatError with file and line) for a bad capture, before
    anything is written; JournalError subclasses from the writer.
    """
    replay = CaptureReplay(paths)
    published = list(replay.books())
    _refuse_a_journal_with_records(Path(journal_dir))
    writer = Writer(journal_dir)
    try:
        if writer.recovery.segment or writer.recovery.records_in_segment:
            raise FeedError(  # records committed since the check above
                f"journal {journal_dir} already holds records: import into a new directory"
            )
        for line, book in published:
            try:
                writer.append_orderbook(
                    book.exchange,
                    book.symbol,
                    book.timestamp_ms,
                    book.sequence,
                    book.bids,
                    book.asks,
                    local_timestamp_ns=book.local_timestamp_ns,
                )
            except InvalidRecordError as error:
                raise CaptureFormatError(
                    line.path,
                    line.line_number,
                    f"the journal refused the {book.exchange} {book.symbol} book made here: "
                    f"{error}",
                ) from None
    except BaseException:
        writer.close()
        raise
    writer.close(seal=True)
    return ImportReport(os.fspath(journal_dir), replay.streams, dict(replay.ignored))


def _refuse_a_journal_with_records(journal_dir: Path) -> None:
    """FeedError if ``journal_dir`` holds records, read without writing anything."""
    for index in segment_indices(journal_dir):
        with MappedSegment(segment_path(journal_dir, index)) as segment:
            if index or segment.load_commit_acquire() > F.HEADER_SIZE:
                raise FeedError(
                    f"journal {journal_dir} already holds records (segment {index}): "
                    "import into a new directory; nothing in it was changed"
                )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``journal import-captures``."""
    parser.add_argument(
        "captures",
        nargs="+",
        metavar="FILE",
        help="capture files named as cryptofeed records them: EXCHANGE.ws.N.M, and for "
        "Binance also the EXCHANGE.http.N.M file with its REST depth snapshots",
    )
    parser.add_argument(
        "--journal",
        required=True,
        metavar="JOURNAL",
        help="the journal to write (created; an existing one must hold no records)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the per-stream table; exit 2 with the file and line of a bad capture (an
    OSError on a path goes to the journal command, which says it in one line)."""
    try:
        report = import_captures(args.captures, args.journal)
    except JournalError as error:
        print(f"journal import-captures: {error}", file=sys.stderr)
        return 2
    print(report.table())
    return 0
