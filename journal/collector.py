"""The collector's side of the journal: ``OrderBookV2.to_dict()`` in, a committed record out.

The collector used to put every updated book on an ``asyncio.Queue`` as a dict
(``exchangename``, ``symbol``, ``bids``/``asks`` as ``[[price, qty], ...]``,
``timestamp`` in ms, ``sequence``: None until the venue's first update id arrives,
journaled as 0, "none sent", journal.feeds.NONE_SENT). ``BookPublisher.publish``
takes that same dict, normalises the names (``KRW-BTC`` on upbit -> ``BTC-KRW``,
journal.symbols) and appends it to a journal.Writer, which stamps
``local_timestamp_ns`` just before the commit unless the dict carries one::

    with BookPublisher("/dev/shm/books/upbit") as publisher:
        publisher.publish(book.to_dict())   # from plain or asyncio code

Inline, not a thread. ``publish`` appends on the caller's thread, inside the event
loop when called from a coroutine: ~0.3 µs a book compiled (~4-5 µs on the
pure-Python path, about what ``json.loads`` of the websocket message costs); the
append that rolls to a new 64 MiB segment (one in ~150,000 books) ~170 µs, since
the writer's own thread prepares the next segment.
Handing the dict to a thread would save the loop those µs but add ~150 µs (a
thread wake-up, the GIL passed back and forth) to every book's way to the radar,
which reads it 1-10 µs after the commit; and the levels would need a deep copy.
docs/COLLECTOR.md has the measurement.

A book the journal cannot take never raises into the collector: it is refused,
nothing of it is written, and it is counted by ``Refusal`` in ``stats``. The first
refusals of each kind are logged with their full error, later ones in a summary
at most every ``summary_interval_s``. A full tmpfs (JournalFullError) is counted
as ``journal_full`` and logged as an error; books are then refused without
touching the filesystem for ``full_retry_s`` (a failing segment creation must not
be paid for every book), after which the next book retries.

Compiled (journal._native), ``publish`` is journal._cwriter's PublisherCore.publish:
the dict goes straight to the writer's compiled append (names through the same
cache, a sequence of None journaled as 0), and anything it does not take (a name not
seen yet, a book to refuse, a full tmpfs, a removed journal) goes to
``_publish_python`` below, the reference, which decides and counts as it always has.

What raises: opening (WriterLockedError, UnsupportedPlatformError, OSError...),
publishing after ``close`` (JournalError: a programming error), and
``close(seal=True)`` when the seal cannot be written. ``publish`` itself never
raises into the collector's loop: any other failure (an I/O error, a damaged
journal) is logged with its traceback and counted as ``unexpected_error``. A
publisher belongs to one thread at a time, like its writer.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import numbers
import os
import reprlib
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import numpy as np

from journal._decode import Position
from journal._encode import DEFAULT_MAX_LEVELS
from journal._errors import InvalidRecordError, JournalError, JournalFullError, JournalGoneError
from journal._native import cwriter
from journal._writer import DEFAULT_SEGMENT_SIZE, Writer
from journal.feeds._sequences import NONE_SENT
from journal.symbols import UnknownNameError, normalize

log = logging.getLogger("journal.collector")

BOOK_KEYS: Final = ("exchangename", "symbol", "timestamp", "sequence", "bids", "asks")
"""The keys of ``OrderBookV2.to_dict()``; ``local_timestamp_ns`` is optional."""
_BOOK_KEYS_TEXT: Final = ", ".join(BOOK_KEYS)

_NAME_CACHE_LIMIT: Final = 4096
_BOOK_ERRORS: Final = (
    InvalidRecordError,
    UnknownNameError,
    JournalFullError,
    JournalGoneError,
    LookupError,  # KeyError; IndexError from a sequence or an array given as a book
    TypeError,
    AttributeError,
)
"""What a bad book (or a full tmpfs) raises on the way in; anything else propagates."""


class Refusal(enum.StrEnum):
    """Why a book was not written; the keys of ``PublishStats.refused``."""

    WRONG_TYPE = "wrong_type"
    """Not a mapping, or a name, number, side or level of the wrong type."""
    MISSING_KEY = "missing_key"
    """One of BOOK_KEYS is absent."""
    UNKNOWN_NAME = "unknown_name"
    """An exchange or symbol journal.symbols cannot normalise."""
    INVALID_BOOK = "invalid_book"
    """Values the journal refuses: NaN or non-positive price, negative quantity,
    unsorted or duplicate levels, crossed, too deep, name too long, out of range."""
    JOURNAL_FULL = "journal_full"
    """No room in the tmpfs for the next segment: not the book's fault, but lost."""
    UNEXPECTED = "unexpected_error"
    """Neither the book's fault nor a known state of the journal (an I/O error, a
    bug): logged with its traceback, counted, and the loop goes on."""
    JOURNAL_GONE = "journal_gone"
    """The journal was removed under the publisher and could not be created again
    yet (tried at most every ``full_retry_s``): lost."""


@dataclass(frozen=True, slots=True)
class PublishStats:
    """Books published and refused since the publisher opened; ``BookPublisher.stats``."""

    published: int
    refused: Mapping[Refusal, int]
    """Every Refusal, with 0 for the kinds never seen."""
    last_refusal: str | None
    """The message of the latest refusal, None if there was none."""
    recreated: int = 0
    """How many times the journal was removed under the publisher and created again
    (a new incarnation, docs/FORMAT.md), publishing going on in it."""

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


class _PurePublisherCore:
    """The publisher's hot state on the pure-Python path: plain slots. Compiled, the
    same attributes are journal._cwriter.PublisherCore's, with its publish()."""

    __slots__ = ("_fast_writer", "_names", "_published")
    _fast_writer: Writer | None
    """The writer publish() appends to directly (compiled), None when not normal."""
    _names: dict[tuple[Any, Any], tuple[str, str]]
    _published: int


_PublisherCore: Any = _PurePublisherCore if cwriter is None else cwriter.PublisherCore


class BookPublisher(_PublisherCore):  # type: ignore[misc]
    """Publishes collector dicts to the journal at ``path``, which it opens and owns.

    ``segment_size``, ``mode`` and ``max_levels`` go to the Writer. ``log_first``
    refusals of each kind are logged with their error; after that, one summary
    every ``summary_interval_s`` at most (written by the next refusal, or by
    ``close``). After a JournalFullError, books are refused for ``full_retry_s``
    before the journal is tried again.

    A journal removed under it (a wiped tmpfs, an operator's ``rm -rf``) is created
    again at once, as a new incarnation, and the book at hand goes there: the books
    lost are those published into the removed files before the writer noticed
    (within JOURNAL_CHECK_INTERVAL_NS). Said once in the log, counted in
    ``stats.recreated``; if it cannot be created again, books are refused (counted
    as ``journal_gone``) and creating it is retried every ``full_retry_s``.
    """

    __slots__ = (
        "_append",
        "_full_since",
        "_last_refusal",
        "_last_summary",
        "_logged",
        "_options",
        "_recreated",
        "_refused",
        "_reopen_at",
        "_retry_at",
        "_unlogged",
        "_writer",
        "full_retry_s",
        "log_first",
        "path",
        "summary_interval_s",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        mode: int = 0o600,
        max_levels: int = DEFAULT_MAX_LEVELS,
        log_first: int = 5,
        summary_interval_s: float = 60.0,
        full_retry_s: float = 1.0,
    ) -> None:
        if log_first < 0 or summary_interval_s < 0 or full_retry_s < 0:
            raise ValueError(
                f"log_first={log_first}, summary_interval_s={summary_interval_s}, "
                f"full_retry_s={full_retry_s}: none may be negative"
            )
        self._options: dict[str, int] = {
            "segment_size": segment_size,
            "mode": mode,
            "max_levels": max_levels,
        }
        self._writer: Writer | None = Writer(path, **self._options)
        self.path = self._writer.path
        self.log_first = log_first
        self.summary_interval_s = summary_interval_s
        self.full_retry_s = full_retry_s
        # The one call of the hot path, swapped while the tmpfs is full and after close.
        self._use_append(self._writer.append_orderbook)
        self._names = {}
        self._published = 0
        self._refused: Counter[Refusal] = Counter()
        self._logged: Counter[Refusal] = Counter()
        self._unlogged: Counter[Refusal] = Counter()
        self._last_refusal: str | None = None
        self._last_summary = time.monotonic()
        self._retry_at = 0.0
        self._full_since = 0  # JOURNAL_FULL refusals counted before this full spell
        self._recreated = 0
        self._reopen_at = 0.0

    def _publish_python(self, book: Mapping[str, Any]) -> Position | None:
        """Append one ``OrderBookV2.to_dict()`` book; its ``(segment, offset)``, or None
        if it was refused (counted in ``stats``, logged, nothing written).

        Never waits: no lock, no system call but the futex wake of a sleeping reader
        (and, once per segment, the roll to the segment prepared in the background).
        """
        try:
            try:
                exchange, symbol = self._names[book["exchangename"], book["symbol"]]
            except KeyError:  # a name not seen yet (or no such key: raised again below)
                exchange, symbol = self._learn_names(book)
            sequence = book["sequence"]
            position = self._append(
                exchange,
                symbol,
                book["timestamp"],
                NONE_SENT if sequence is None else sequence,
                book["bids"],
                book["asks"],
                book.get("local_timestamp_ns"),
            )
        except _BOOK_ERRORS as error:
            if isinstance(error, JournalGoneError) and self._append != self._while_gone:
                self._use_append(self._while_gone)  # creates the journal again, now
                return self._publish_python(book)
            self._refuse(book, error)
            return None
        except Exception as error:  # publish never raises into the collector's loop
            self._unexpected(book, error)
            return None
        self._published += 1
        return position

    if cwriter is None:
        # Compiled, PublisherCore's publish is this one's fast path, in C.
        publish = _publish_python

    def _use_append(self, append: Any) -> None:
        """The append of the hot path; the compiled publish appends directly only while
        it is the writer's own (not while the tmpfs is full, the journal gone, closed)."""
        self._append = append
        writer = self._writer
        plain = writer is not None and append == writer.append_orderbook
        self._fast_writer = writer if plain else None

    @property
    def stats(self) -> PublishStats:
        """A snapshot of the counts."""
        return PublishStats(
            self._published,
            {reason: self._refused[reason] for reason in Refusal},
            self._last_refusal,
            self._recreated,
        )

    @property
    def writer(self) -> Writer:
        """The journal's writer (``position``, ``recovery``); JournalError once closed."""
        if self._writer is None:
            raise JournalError(f"the publisher of {self.path} is closed")
        return self._writer

    @property
    def closed(self) -> bool:
        return self._writer is None

    def close(self, *, seal: bool = False) -> None:
        """Close the writer (``Writer.close(seal=seal)``) after logging what is left of
        the refusal summary. ``seal=True``: the segment is handed to the compactor now
        (see Writer.close). A second close does nothing; ``publish`` then raises."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._use_append(self._refuse_closed)
        self._log_summary(time.monotonic())
        writer.close(seal=seal)

    def __enter__(self) -> BookPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._writer is None else f"published={self._published}"
        return f"BookPublisher({str(self.path)!r}, {state})"

    # -- the slow paths ------------------------------------------------------------

    def _learn_names(self, book: Mapping[str, Any]) -> tuple[str, str]:
        """Normalise a name pair seen for the first time and remember it."""
        raw = (book["exchangename"], book["symbol"])
        names = normalize(*raw)
        if len(self._names) >= _NAME_CACHE_LIMIT:
            self._names.clear()
        self._names[raw] = names
        return names

    def _unexpected(self, book: Any, error: Exception) -> None:
        """Neither the book's fault nor a known state of the journal: logged with its
        traceback, counted as UNEXPECTED (the compiled publish calls it too)."""
        log.error("%s: unexpected error publishing %s", self.path, _describe(book), exc_info=error)
        self._refuse(book, error)

    def _refuse(self, book: Any, error: Exception) -> None:
        if self._writer is None:  # a bad book given to a closed publisher
            self._refuse_closed()
        reason = _reason(book, error)
        if reason is Refusal.JOURNAL_FULL and self._append == self._writer.append_orderbook:
            self._retry_at = time.monotonic() + self.full_retry_s
            self._full_since = self._refused[reason]
            self._use_append(self._while_full)
        self._refused[reason] += 1
        message = f"{_describe(book)}: {_explain(reason, book, error)}"
        self._last_refusal = message
        level = logging.ERROR if reason is Refusal.JOURNAL_FULL else logging.WARNING
        self._logged[reason] += 1
        if self._logged[reason] <= self.log_first:
            later = (
                f" (the next ones of this kind: in a summary every {self.summary_interval_s:g} s)"
                if self._logged[reason] == self.log_first
                else ""
            )
            log.log(level, "%s: refused %s (%s)%s", self.path, message, reason, later)
            return
        self._unlogged[reason] += 1
        now = time.monotonic()
        if now - self._last_summary >= self.summary_interval_s:
            self._log_summary(now)

    def _log_summary(self, now: float) -> None:
        """One line for the refusals not logged one by one since the last summary."""
        if self._unlogged.total():
            level = logging.ERROR if self._unlogged[Refusal.JOURNAL_FULL] else logging.WARNING
            counts = ", ".join(f"{reason}={n}" for reason, n in sorted(self._unlogged.items()))
            totals = ", ".join(f"{reason}={n}" for reason, n in sorted(self._refused.items()))
            log.log(
                level,
                "%s: refused %d more books in %.0f s (%s); since opening: %s; latest: %s",
                self.path,
                self._unlogged.total(),
                now - self._last_summary,
                counts,
                totals,
                self._last_refusal,
            )
            self._unlogged.clear()
        self._last_summary = now

    def _while_full(self, *args: Any) -> Position:
        """The append while the tmpfs is full: refuse at once until ``_retry_at``, then
        try the journal again (and go back to the plain append if it takes the book)."""
        assert self._writer is not None
        if time.monotonic() < self._retry_at:
            error = JournalFullError(
                errno.ENOSPC,
                f"the tmpfs under {self.path} had no room for the next segment less than "
                f"{self.full_retry_s:g} s ago: book refused without trying again; free "
                "room (run the compactor, grow the tmpfs) and the next try takes it",
            )
            self._writer.count_refusal(error)  # journal top counts every lost book
            raise error
        try:
            position = self._writer.append_orderbook(*args)
        except JournalFullError:
            self._retry_at = time.monotonic() + self.full_retry_s
            raise
        self._use_append(self._writer.append_orderbook)
        log.warning(
            "%s: the journal has room again; %d books were refused while the tmpfs was full",
            self.path,
            self._refused[Refusal.JOURNAL_FULL] - self._full_since,
        )
        return position

    def _while_gone(self, *args: Any) -> Position:
        """The append once the journal went under the writer: create it again (at most
        every ``full_retry_s``; a new incarnation) and append there."""
        assert self._writer is not None
        now = time.monotonic()
        if now < self._reopen_at:
            raise JournalGoneError(
                f"the journal {self.path} was removed and could not be created again less "
                f"than {self.full_retry_s:g} s ago: book refused; retried then"
            )
        self._reopen_at = now + self.full_retry_s
        with contextlib.suppress(JournalError, OSError):
            self._writer.close()  # the lock goes; its files went with the directory
        try:
            writer = Writer(self.path, **self._options)
        except (JournalError, OSError) as error:
            raise JournalGoneError(
                f"the journal {self.path} was removed and cannot be created again: "
                f"{error}; retried every {self.full_retry_s:g} s"
            ) from error
        self._writer = writer
        self._use_append(writer.append_orderbook)
        self._recreated += 1
        log.warning(
            "%s: the journal was removed or replaced under the publisher; created again "
            "as a new incarnation (readers follow it), publishing goes on there",
            self.path,
        )
        return writer.append_orderbook(*args)

    def _refuse_closed(self, *args: Any) -> NoReturn:
        raise JournalError(
            f"the publisher of {self.path} is closed: open a new BookPublisher to publish"
        )


def _reason(book: Any, error: Exception) -> Refusal:
    """Classify a refusal by looking at the book again (only refused books pay this)."""
    if isinstance(error, JournalFullError):
        return Refusal.JOURNAL_FULL
    if isinstance(error, JournalGoneError):
        return Refusal.JOURNAL_GONE
    if not isinstance(error, _BOOK_ERRORS):
        return Refusal.UNEXPECTED
    if not isinstance(book, Mapping):
        return Refusal.WRONG_TYPE
    if any(key not in book for key in BOOK_KEYS):
        return Refusal.MISSING_KEY
    if not (isinstance(book["exchangename"], str) and isinstance(book["symbol"], str)):
        return Refusal.WRONG_TYPE
    if isinstance(error, UnknownNameError):
        return Refusal.UNKNOWN_NAME
    if _has_wrong_type(book):
        return Refusal.WRONG_TYPE
    return Refusal.INVALID_BOOK


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _has_wrong_type(book: Mapping[str, Any]) -> bool:
    local = book.get("local_timestamp_ns")
    sequence = book["sequence"]
    if not (_is_int(book["timestamp"]) and (sequence is None or _is_int(sequence))):
        return True
    if local is not None and not _is_int(local):
        return True
    for side in ("bids", "asks"):
        levels = book[side]
        if isinstance(levels, np.ndarray):
            if levels.dtype.kind not in "fiu":
                return True
            continue
        if not isinstance(levels, list | tuple):
            return True
        for level in levels:
            if not isinstance(level, list | tuple | np.ndarray) or len(level) != 2:
                return True
            if not (_is_number(level[0]) and _is_number(level[1])):
                return True
    return False


_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40


def _describe(book: Any) -> str:
    """Which book: its names and exchange time when it has them."""
    if not isinstance(book, Mapping):
        return f"a {type(book).__name__} instead of an order-book dict"
    fields = ", ".join(
        f"{key}={_short.repr(book[key])}"
        for key in ("exchangename", "symbol", "timestamp", "sequence")
        if key in book
    )
    return f"book ({fields})"


def _explain(reason: Refusal, book: Any, error: Exception) -> str:
    """The error, with what to do where the journal's own message does not say it."""
    if reason is Refusal.WRONG_TYPE and not isinstance(book, Mapping):
        return f"publish() takes OrderBookV2.to_dict(): a mapping with keys {_BOOK_KEYS_TEXT}"
    if reason is Refusal.MISSING_KEY:
        missing = ", ".join(repr(key) for key in BOOK_KEYS if key not in book)
        return f"no key {missing}; OrderBookV2.to_dict() gives {_BOOK_KEYS_TEXT}"
    for key in ("exchangename", "symbol"):
        if not isinstance(book[key], str):
            return f"{key}={_short.repr(book[key])}: expected str, got {type(book[key]).__name__}"
    if isinstance(error, KeyError | TypeError | AttributeError):
        return f"{type(error).__name__}: {error}"
    return str(error)
