"""``journal export``: books as a Parquet dataset, partitioned hive style by date and
exchange, that DuckDB, Polars, pyarrow.dataset and Spark read as one table.

    OUT/date=2026-12-04/exchange=upbit/part-00000.parquet

* **Partitions.** ``date`` is the UTC date of the book's ``local_time`` (the
  collector's clock: every book has one, it is what ``--from``/``--to`` select on and
  what the archive's time index covers; a venue's own time can be missing or
  skewed). ``exchange`` is the venue name (percent-encoded if it holds anything but
  letters, digits, ``.``, ``_`` and ``-``; the collector's never do). As Spark and
  pyarrow.dataset write them, the partition columns live in the directory names
  only: a file holds the other columns (journal.analysis._table, ``exchange=False``),
  and every reader adds ``date`` and ``exchange`` from the path.
* **Files.** zstd, rows sorted by symbol then local time, ROW_GROUP_ROWS rows a row
  group (a check for Ctrl-C and a progress step between two), at most FILE_ROWS rows
  a file, named ``part-00000.parquet`` on: the same export gives the same names.
* **Whole or not at all.** Everything is written into a staging directory beside
  OUT (``.OUT.export-PID``, never inside it, where a reader's ``OUT/**`` glob would
  see it), then published by one rename: a new OUT appears whole (rename, no
  replace); ``overwrite`` swaps the whole directory at once (renameat2
  RENAME_EXCHANGE); ``replace_partitions`` first fills the staging tree with hard
  links to the files of every partition of OUT it does not write (a copy where the
  filesystem refuses a link), then swaps it in the same way, so a reader sees the
  whole old dataset or the whole new one, and a kill at any moment, even SIGKILL,
  leaves one of the two. Publishers to one OUT take turns (flock on OUT's parent
  directory), so two exports replacing different partitions both land. Ctrl-C or an
  error before the swap removes the staging directory and changes nothing; from the
  swap on, Ctrl-C is held until the export ends (it has published). What a killed
  export left beside OUT is removed by the next export to OUT. Where the filesystem
  cannot exchange two directories (ENOSYS/EINVAL: e.g. NFS), OUT is moved to
  ``.OUT.export-PID.old`` and the new dataset to OUT: a reader may find no OUT for
  that instant, and a kill between the two renames leaves the old dataset at that
  name, which the next export to OUT refuses to pass by (it says how to put it back).
* **Twice.** A partition is only ever replaced whole, never appended to: exporting
  the same books twice gives the same dataset, not duplicate rows, and a partition
  written again holds exactly the second export's books of that date and exchange
  (so ``--replace-partitions`` with a ``--from`` in the middle of a day drops that
  day's earlier books for the exchanges it wrote: export whole days).
* **Refusals.** An OUT that exists and is not empty is refused unless ``overwrite``
  or ``replace_partitions`` is given, and even then if it holds anything an export
  does not write (so ``--overwrite`` cannot empty a home directory by a typo); an OUT
  that is a file, a symbolic link or anything else is refused; so is
  ``replace_partitions`` into a dataset whose files have another schema (another
  layout, local time unit or wide depth: the partitions would not read as one table).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import os
import re
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import numpy as np

from journal._errors import JournalError
from journal._libc import libc
from journal._paths import CheckedDirectory, open_directory
from journal.analysis._load import Books
from journal.analysis._table import (
    LOCAL_TIME_UNITS,
    PARQUET_EXTRA,
    book_metadata,
    book_schema,
    books_arrow,
    needs,
    parquet_options,
)

ROW_GROUP_ROWS: Final = 1 << 17
"""Rows per row group: ~40 MB of ten-level books before compression, enough for
DuckDB and Polars to read a group at full speed and to parallelise over several in
a file of a busy day."""
FILE_ROWS: Final = 1 << 23
"""Rows per file at most (64 row groups): a partition of more is several files."""
NS_PER_DAY: Final = 86_400 * 1_000_000_000
MODES: Final = ("new", "overwrite", "replace_partitions")
PART_NAME: Final = re.compile(r"part-\d{5}\.parquet")
DATE_DIR: Final = re.compile(r"date=\d{4}-\d{2}-\d{2}")
EXCHANGE_DIR: Final = re.compile(r"exchange=[^/]+")
_STAGING: Final = re.compile(r"\.(?P<name>.+)\.export-(?P<pid>\d+)(?P<old>\.old)?")
_RENAME_NOREPLACE: Final = 1
_RENAME_EXCHANGE: Final = 2
_AT_FDCWD: Final = -100


@dataclass(frozen=True)
class Partition:
    """One ``date=/exchange=`` directory and the books in it (``rows``: indices into
    the Books, sorted by symbol then local time)."""

    date: dt.date
    exchange: str
    rows: np.ndarray

    @property
    def directory(self) -> str:
        return f"date={self.date.isoformat()}/exchange={quote(self.exchange, safe='')}"


@dataclass(frozen=True)
class Written:
    """What an export wrote: books, partitions, files, and their bytes."""

    books: int
    partitions: int
    files: int
    bytes: int


def dataset_problem(out: Path, mode: str, schema: Any = None) -> str | None:
    """Why the dataset cannot be written to ``out`` in ``mode``, checked before
    anything is loaded (and again before publishing); None if it can. ``schema``:
    the files' (book_schema with ``exchange=False``), which the files of a dataset
    whose partitions ``replace_partitions`` keeps must have too (checked if given)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: one of {', '.join(MODES)}")
    parent = out.parent
    if not out.name or out.name in (".", ".."):
        return f"{out}: give the dataset directory's own name (e.g. {out.resolve() / 'books'})"
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        return f"{out}: {parent} {what}; create the directory or write elsewhere"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{out}: cannot write in {parent}; give a path you can write to"
    try:
        info = os.lstat(out)
    except FileNotFoundError:
        if stranded := _stranded(parent, out.name):
            return (
                f"{out}: missing, and {parent / stranded} holds the dataset an export "
                "killed while publishing had moved aside: put it back (mv "
                f"{parent / stranded} {out}) or remove it, then export again"
            )
        return None
    if stat.S_ISLNK(info.st_mode):
        return (
            f"{out}: a symbolic link; the dataset is published by renaming a directory "
            "over the path, which would replace the link: give the directory itself"
        )
    if not stat.S_ISDIR(info.st_mode):
        return (
            f"{out}: exists and is not a directory; journal export writes a dataset "
            "directory (OUT/date=.../exchange=.../part-*.parquet): give a new path"
        )
    entries = os.listdir(out)
    if not entries:
        return None
    if mode == "new":
        return (
            f"{out}: exists and is not empty; give a new directory, or --overwrite to "
            "replace the dataset there whole, or --replace-partitions to replace only "
            "the date/exchange partitions this export writes"
        )
    if stranger := _foreign_entry(out):
        return (
            f"{out}: holds {stranger}, which journal export does not write: not "
            "replaced; give a new directory, or remove what is not a dataset"
        )
    if mode == "replace_partitions" and schema is not None:
        return _schema_problem(out, schema)
    return None


def _schema_problem(out: Path, schema: Any) -> str | None:
    """Why the partitions kept from ``out`` would not read as one table with files of
    ``schema`` (the first file's schema, field by field), None if they would."""
    pq = needs("pyarrow.parquet", PARQUET_EXTRA, "journal export")
    first = next(iter(sorted(out.glob("date=*/exchange=*/part-*.parquet"))), None)
    if first is None:
        return None
    try:
        theirs = pq.read_schema(first)
    except Exception as error:  # pyarrow's ArrowInvalid or OSError: a damaged file
        return f"{out}: {first.relative_to(out)} is not a Parquet file pyarrow reads ({error})"
    if theirs.remove_metadata().equals(schema.remove_metadata()):
        return None
    mine = {field.name: field.type for field in schema}
    there = {field.name: field.type for field in theirs}
    name = next((n for n in (*mine, *there) if mine.get(n) != there.get(n)), "the columns' order")
    return (
        f"{out}: its files have {name} {there.get(name, 'missing')}, this export's "
        f"{mine.get(name, 'none')} ({first.relative_to(out)}); --replace-partitions would "
        "mix two schemas in one dataset: export with the dataset's --layout, "
        "--local-time-unit (and, wide, --depth), or replace it whole with --overwrite"
    )


def _foreign_entry(out: Path) -> str | None:
    """The first entry of ``out`` that an export does not write (relative), or None:
    an export writes ``date=YYYY-MM-DD`` directories of ``exchange=NAME`` directories
    of ``part-NNNNN.parquet`` files, nothing else and no links."""

    def entries(path: str) -> list[os.DirEntry[str]]:
        with os.scandir(path) as scan:
            return sorted(scan, key=lambda e: e.name)

    for date in entries(str(out)):
        if not date.is_dir(follow_symlinks=False) or not DATE_DIR.fullmatch(date.name):
            return date.name
        for exchange in entries(date.path):
            where = f"{date.name}/{exchange.name}"
            if not exchange.is_dir(follow_symlinks=False) or not EXCHANGE_DIR.fullmatch(
                exchange.name
            ):
                return where
            for part in entries(exchange.path):
                if not part.is_file(follow_symlinks=False) or not PART_NAME.fullmatch(part.name):
                    return f"{where}/{part.name}"
    return None


def partitions(books: Books) -> list[Partition]:
    """The books by (UTC date of local time, exchange), each sorted by symbol name
    then local time (stable: books of one time keep their source order)."""
    if not len(books):
        return []
    day = books.local_timestamp_ns // NS_PER_DAY  # floor: before 1970 stays a past day
    symbol_rank = np.argsort(np.argsort(np.array(books.symbols, dtype=object), kind="stable"))
    exchange_rank = np.argsort(np.argsort(np.array(books.exchanges, dtype=object), kind="stable"))
    order = np.lexsort(
        (
            books.local_timestamp_ns,
            symbol_rank[books.symbol_code],
            exchange_rank[books.exchange_code],
            day,
        )
    )
    key_day = day[order]
    key_exchange = books.exchange_code[order]
    starts = np.flatnonzero(
        np.concatenate(([True], (np.diff(key_day) != 0) | (np.diff(key_exchange) != 0)))
    )
    ends = np.append(starts[1:], len(order))
    epoch = dt.date(1970, 1, 1)
    return [
        Partition(
            epoch + dt.timedelta(days=int(key_day[a])),
            books.exchanges[int(key_exchange[a])],
            order[a:b],
        )
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def write_dataset(
    books: Books,
    out: Path,
    mode: str = "new",
    progress: Callable[[int, int], None] | None = None,
    *,
    layout: str = "list",
    local_time_unit: str = "ns",
) -> Written:
    """Write ``books`` as a dataset at ``out`` (module docstring), ``progress(rows
    written, rows)`` after each row group; ``layout`` and ``local_time_unit``:
    journal.analysis._table's (the export writes ``list`` and ``ns`` unless told;
    benchmarks/bench_export.py compares ``wide``). Raises JournalError if ``out``
    cannot be written in ``mode`` (dataset_problem) or the filesystem refuses a step;
    nothing is left behind but what ``out`` was, or the whole new dataset."""
    pq = needs("pyarrow.parquet", PARQUET_EXTRA, "journal export")
    if local_time_unit not in LOCAL_TIME_UNITS:
        raise ValueError(f"local_time_unit={local_time_unit!r}: one of {LOCAL_TIME_UNITS}")
    schema = book_schema(books.depth, layout, exchange=False, local_time_unit=local_time_unit)
    if problem := dataset_problem(out, mode, schema):
        raise JournalError(problem)
    with open_directory(out.parent) as parent:
        _remove_stale_staging(parent, out.name)
        staging = f".{out.name}.export-{os.getpid()}"
        os.mkdir(staging, 0o755, dir_fd=parent.fd)
        try:
            written = _write_files(
                pq, books, parent.path / staging, progress, schema, layout, local_time_unit
            )
            with _interrupts_held() as check:
                with _publisher_turn(parent):
                    _publish(parent, staging, out, mode, schema, check)
                # Published: what it replaced, now at the staging name, is removed
                # with Ctrl-C still held.
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(staging, dir_fd=parent.fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(staging, dir_fd=parent.fd)
    return written


def _write_files(
    pq: Any,
    books: Books,
    root: Path,
    progress: Callable[[int, int], None] | None,
    schema: Any,
    layout: str,
    local_time_unit: str,
) -> Written:
    schema = schema.with_metadata(book_metadata(books))
    done = files = size = 0
    parts = partitions(books)
    for partition in parts:
        directory = root / partition.directory
        directory.mkdir(parents=True)
        for number, first in enumerate(range(0, len(partition.rows), FILE_ROWS)):
            rows = partition.rows[first : first + FILE_ROWS]
            path = directory / f"part-{number:05d}.parquet"
            with pq.ParquetWriter(path, schema, **parquet_options(schema)) as writer:
                for start in range(0, len(rows), ROW_GROUP_ROWS):
                    chunk = rows[start : start + ROW_GROUP_ROWS]
                    table = books_arrow(
                        books,
                        chunk,
                        layout=layout,
                        exchange=False,
                        local_time_unit=local_time_unit,
                    )
                    writer.write_table(table, row_group_size=len(chunk))
                    done += len(chunk)
                    if progress is not None:
                        progress(done, len(books))
            files += 1
            size += path.stat().st_size
    return Written(len(books), len(parts), files, size)


# -- publishing --------------------------------------------------------------------------------


def _rename(
    parent: CheckedDirectory, old: str, new: str, flags: int, old_fd: int | None = None
) -> None:
    """renameat2(2) of ``old`` (in ``old_fd``, default the parent) to ``new`` in the
    parent, with ``flags``; OSError on failure (ENOSYS/EINVAL where the kernel or the
    filesystem lacks the flag)."""
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    result = renameat2(
        parent.fd if old_fd is None else old_fd,
        os.fsencode(old),
        parent.fd,
        os.fsencode(new),
        ctypes.c_uint(flags),
    )
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error), new)


@contextlib.contextmanager
def _publisher_turn(parent: CheckedDirectory) -> Iterator[None]:
    """This process's turn to publish in ``parent`` (flock on it, waited for): an
    export that keeps partitions of OUT builds on the dataset it then swaps out, so
    two publishers at once would lose the first one's partitions. Held for the links
    and the swap (milliseconds to seconds), never while loading or writing; Ctrl-C
    while waiting for it stops the export once the turn comes (_interrupts_held)."""
    import fcntl

    fcntl.flock(parent.fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(parent.fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[Callable[[], None]]:
    """While inside, SIGINT (Ctrl-C) is noted instead of raising KeyboardInterrupt
    anywhere; ``check()`` raises it if one came. The publisher checks before its one
    swap, so Ctrl-C up to the swap stops the export with nothing changed, and after
    it (published) is dropped: the export ends as done. Outside the main thread
    (where Python raises no KeyboardInterrupt) nothing to hold."""
    came: list[int] = []

    def check() -> None:
        if came:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield check
        return
    previous = signal.signal(signal.SIGINT, lambda number, _frame: came.append(number))
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _publish(
    parent: CheckedDirectory,
    staging: str,
    out: Path,
    mode: str,
    schema: Any,
    check: Callable[[], None],
) -> None:
    """Put the staging directory's dataset at ``out`` (module docstring): one rename,
    after ``check()`` (module docstring: Ctrl-C). Checked again first, in this
    publisher's turn: ``out`` may have changed while the books were loaded."""
    if problem := dataset_problem(out, mode, schema):
        raise JournalError(problem)
    name = out.name
    try:
        info = os.lstat(name, dir_fd=parent.fd)
    except FileNotFoundError:
        info = None
    if info is None:
        check()
        try:
            _rename(parent, staging, name, _RENAME_NOREPLACE)
        except OSError as error:
            if error.errno not in (errno.ENOSYS, errno.EINVAL):
                raise JournalError(f"{out}: cannot publish the dataset: {error.strerror}") from None
            os.rename(staging, name, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        return
    if mode == "replace_partitions":
        _keep_partitions(parent, staging, out, check)
    check()
    _swap(parent, staging, name, out)


def _keep_partitions(
    parent: CheckedDirectory, staging: str, out: Path, check: Callable[[], None]
) -> None:
    """Every partition of ``out`` that the staging dataset lacks, linked into it: its
    files hard-linked (no bytes copied; the old tree's removal after the swap then
    only drops links), copied where the filesystem refuses (another user's files
    under fs.protected_hardlinks, a filesystem without links). ``check()`` after
    each partition: Ctrl-C here changes nothing."""
    source = os.path.join(parent.path, out.name)
    root = os.path.join(parent.path, staging)
    for date in sorted(os.listdir(source)):
        for exchange in sorted(os.listdir(os.path.join(source, date))):
            where = os.path.join(date, exchange)
            if os.path.lexists(os.path.join(root, where)):
                continue  # written by this export: replaced
            os.makedirs(os.path.join(root, where))
            for part in sorted(os.listdir(os.path.join(source, where))):
                old, new = os.path.join(source, where, part), os.path.join(root, where, part)
                try:
                    os.link(old, new, follow_symlinks=False)
                except OSError:
                    shutil.copyfile(old, new, follow_symlinks=False)
            check()


def _swap(parent: CheckedDirectory, new: str, target: str, out: Path) -> None:
    """``new`` (in the parent) takes ``target``'s place at once; what was there is
    then at ``new`` (removed by the caller). Where the filesystem cannot exchange,
    two renames through ``new.old`` (module docstring)."""
    try:
        _rename(parent, new, target, _RENAME_EXCHANGE)
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EINVAL):
            raise JournalError(f"{out}: cannot publish the dataset: {error.strerror}") from None
        old = f"{new}.old"
        os.rename(target, old, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        os.rename(new, target, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
        os.rename(old, new, src_dir_fd=parent.fd, dst_dir_fd=parent.fd)


def _remove_stale_staging(parent: CheckedDirectory, name: str) -> None:
    """Remove the staging directories of exports to ``name`` that were killed (their
    process is gone): what a SIGKILL or a power cut left beside the dataset. A
    ``.old`` one while ``name`` is missing is the dataset itself (_stranded): kept."""
    there = os.path.lexists(os.path.join(parent.path, name))
    for entry in os.listdir(parent.fd):
        match = _STAGING.fullmatch(entry)
        if not match or match["name"] != name:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _alive(pid) or (match["old"] and not there):
            continue
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(entry, dir_fd=parent.fd)


def _stranded(parent: Path, name: str) -> str | None:
    """The name of a dead export's ``.NAME.export-PID.old`` in ``parent``, if any:
    with ``name`` missing, the dataset that export moved aside to publish on a
    filesystem without RENAME_EXCHANGE, killed before the second rename."""
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir(parent)):
            match = _STAGING.fullmatch(entry)
            if match and match["old"] and match["name"] == name and not _alive(int(match["pid"])):
                return entry
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
