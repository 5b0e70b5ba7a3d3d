"""Child processes for the multi-process tests: real writers and readers, one per process.

Run by path (``python tests/_procs.py COMMAND ...``); every command prints JSON lines
on stdout, flushed, so the test can follow it. The books are a pure function of
their sequence number (``book``), so any process can check any record it reads
(``check``) without being told what was written.

Commands:

    stream PATH N SEGMENT_SIZE BATCH   append N books (alternating append_many
                                       batches of BATCH and append_orderbook runs)
    read PATH N VERIFY TIMEOUT         a Reader from "beginning", started before the
                                       journal exists; checks every book, N of them
    collect PATH                       keep every book, check them after reading all
    hold PATH                          open a Writer, append a few books, wait on stdin
    try-open PATH                      try to open a Writer, report how it went
    torture PATH ACKS FIRST_SEQ SEGMENT_SIZE SEED
                                       append forever; after each append write an ack
                                       line to the file ACKS: ``S seq segment offset``
                                       (append_orderbook's position) or ``B last_seq
                                       segment commit`` (append_many, writer.position)
    serve PATH SEGMENT_SIZE            a writer driven by JSON commands on stdin
    fill PATH SEGMENT_SIZE HOW         append until JournalFullError
    fill-then-free PATH SEGMENT_SIZE   fill, free the oldest segment, write on
    follow PATH IDLE ARCHIVE           a Reader from "beginning" (ARCHIVE "-": none):
                                       a line per book, its sequence and the reader's
                                       incarnations count, forever
    append-until-gone PATH SEGMENT_SIZE
                                       append 10 books, say ready, wait for a line
                                       on stdin, then append until an error, say which
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import faulthandler
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import journal
import journal._layout
import journal._lock
import journal._segment
import journal._writer

EXCHANGES = ("upbit", "binance", "bybit")
SYMBOLS = ("BTC-KRW", "ETH-KRW", "XRP-USDT", "SOL-USDT")
TIMESTAMP_MS0 = 1_700_000_000_000
LOCAL_NS0 = 1_700_000_000_000_000_000


def book(seq: int, local_timestamp_ns: int | None = None) -> tuple[Any, ...]:
    """The ``append_orderbook`` arguments of the book with sequence ``seq``.

    ``local_timestamp_ns`` defaults to a deterministic value derived from ``seq``
    (so a record's bytes depend on ``seq`` alone); pass ``-1`` for "now".
    """
    n_bids = 1 + seq % 4
    n_asks = 1 + (seq // 4) % 3
    best = 1000.0 + (seq % 10_007) * 0.5
    bids = [[best - 0.5 * k, 1.0 + k] for k in range(n_bids)]
    asks = [[best + 0.5 + 0.5 * k, 2.0 + k] for k in range(n_asks)]
    if local_timestamp_ns is None:
        local_timestamp_ns = LOCAL_NS0 + seq * 1000
    elif local_timestamp_ns < 0:
        local_timestamp_ns = time.time_ns()
    return (
        EXCHANGES[seq % 3],
        SYMBOLS[seq % 4],
        TIMESTAMP_MS0 + seq,
        seq,
        bids,
        asks,
        local_timestamp_ns,
    )


def check(record: journal.OrderBookRecord, seq: int, *, deterministic_time: bool = True) -> str:
    """Why ``record`` is not the book with sequence ``seq`` ("" if it is)."""
    if record.sequence != seq:
        return f"sequence={record.sequence}, expected {seq} at {record.position}"
    exchange, symbol, timestamp, _, bids, asks, local_ns = book(seq)
    problems = []
    if record.exchange_name != exchange or record.symbol != symbol:
        problems.append(f"names={record.exchange_name}/{record.symbol}")
    if record.timestamp != timestamp:
        problems.append(f"timestamp={record.timestamp}")
    if deterministic_time and record.local_timestamp_ns != local_ns:
        problems.append(f"local_timestamp_ns={record.local_timestamp_ns}")
    if record.bids.tolist() != bids:
        problems.append(f"bids={record.bids.tolist()}")
    if record.asks.tolist() != asks:
        problems.append(f"asks={record.asks.tolist()}")
    if problems:
        return f"seq={seq} at {record.position}: " + ", ".join(problems)
    return ""


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` (every 5 ms) until it is true: the readiness signal of another
    process or thread, with a deadline instead of a sleep that hopes it was long
    enough. AssertionError naming ``what`` if it is not true within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(0.005)


def reader_registered(journal_dir: Path, pid: int) -> bool:
    """Whether process ``pid`` has a Reader registered in ``journal_dir/readers``: made
    on its first record or empty poll, so after the reader opened at its start."""
    return any((journal_dir / "readers").glob(f"*-{pid}.metrics"))


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def recovery_dict(writer: journal.Writer) -> dict[str, Any]:
    report = writer.recovery
    return {
        "segment": report.segment,
        "commit_offset": report.commit_offset,
        "records_in_segment": report.records_in_segment,
        "created": report.created,
        "cleared_bytes": report.cleared_bytes,
        "removed_unfinished": list(report.removed_unfinished),
    }


# -- commands ----------------------------------------------------------------------


def cmd_stream(path: str, count: str, segment_size: str, batch: str) -> int:
    """Append ``count`` books: even chunks with append_many, odd ones one by one."""
    n, chunk = int(count), int(batch)
    started = time.perf_counter()
    singles = 0
    with journal.Writer(path, segment_size=int(segment_size)) as writer:
        append = writer.append_orderbook
        for first in range(0, n, chunk):
            last = min(first + chunk, n)
            if (first // chunk) % 2 == 0:
                appended = writer.append_many([book(seq) for seq in range(first, last)])
                assert appended == last - first, appended
            else:
                for seq in range(first, last):
                    append(*book(seq))
                singles += last - first
        position = writer.position
    emit(
        done=n,
        singles=singles,
        position=list(position),
        seconds=round(time.perf_counter() - started, 3),
    )
    return 0


def cmd_read(path: str, count: str, verify: str, timeout: str) -> int:
    """Read ``count`` books from the beginning of a journal that may not exist yet."""
    n = int(count)
    deadline = time.monotonic() + float(timeout)
    reader = journal.Reader(path, start="beginning", verify=verify == "1", idle="backoff")
    if reader.try_next() is not None or reader.position is not None:
        emit(ok=False, error="the journal existed before the reader started")
        return 1
    emit(waiting=True)
    started = None
    segments = set()
    expected = 0
    poll = reader.poll
    while expected < n:
        record = poll(0.5)
        if record is None:
            if time.monotonic() > deadline:
                emit(ok=False, error=f"timed out after {expected} books", read=expected)
                return 1
            continue
        if started is None:
            started = time.perf_counter()
        if record.sequence != expected:
            emit(
                ok=False,
                error=f"sequence={record.sequence} expected {expected} at {record.position}",
                read=expected,
            )
            return 1
        problem = check(record, expected)
        if problem:
            emit(ok=False, error=problem, read=expected)
            return 1
        segments.add(record.position[0])
        expected += 1
    # The writer closes after its last book: nothing may follow it. Once its lock is
    # free it has closed, so anything it could still have published is committed.
    wait_until(
        lambda: not journal._lock.writer_alive(Path(path)),
        max(deadline - time.monotonic(), 10.0),
        "the writer closing its journal",
    )
    extra = reader.try_next()
    emit(
        ok=extra is None,
        error="" if extra is None else f"unexpected extra book {extra!r}",
        read=expected,
        segments=len(segments),
        first_segment=min(segments),
        last_segment=max(segments),
        seconds=round(time.perf_counter() - (started or time.perf_counter()), 3),
    )
    return 0 if extra is None else 1


def cmd_collect(path: str) -> int:
    """Keep every book of the journal, then check them: after the reader moved on to
    later segments, and again after it closed (the views must stay valid)."""
    reader = journal.Reader(path, start="beginning")
    records = list(reader.available())
    segments = sorted({record.position[0] for record in records})
    sys.stdout.flush()
    moved_on = [p for seq, r in enumerate(records) if (p := check(r, seq))]
    reader.close()
    closed = [p for seq, r in enumerate(records) if (p := check(r, seq))]
    emit(count=len(records), segments=segments, moved_on=moved_on[:5], closed=closed[:5])
    return 0


def cmd_hold(path: str) -> int:
    writer = journal.Writer(path, segment_size=64 * 1024)
    for seq in range(10):
        writer.append_orderbook(*book(seq))
    emit(ready=True, pid=os.getpid(), position=list(writer.position))
    sys.stdin.read()  # until the test closes stdin or kills us
    writer.close()
    return 0


def cmd_try_open(path: str) -> int:
    try:
        writer = journal.Writer(path, segment_size=64 * 1024)
    except journal.WriterLockedError as error:
        emit(result="locked", error=str(error))
        return 0
    except Exception as error:
        emit(result="error", error=f"{type(error).__name__}: {error}")
        return 1
    emit(result="opened", recovery=recovery_dict(writer))
    writer.close()
    return 0


def cmd_torture(path: str, acks: str, first_seq: str, segment_size: str, seed: str) -> int:
    rng = random.Random(int(seed))
    writer = journal.Writer(path, segment_size=int(segment_size))
    ack_fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    emit(ready=True, recovery=recovery_dict(writer), position=list(writer.position))
    seq = int(first_seq)
    write = os.write
    while True:
        if rng.random() < 0.4:
            count = rng.randint(1, 200)
            writer.append_many([book(s) for s in range(seq, seq + count)])
            seq += count
            segment, commit = writer.position
            write(ack_fd, f"B {seq - 1} {segment} {commit}\n".encode())
        else:
            for _ in range(rng.randint(1, 200)):
                segment, offset = writer.append_orderbook(*book(seq))
                write(ack_fd, f"S {seq} {segment} {offset}\n".encode())
                seq += 1


def cmd_serve(path: str, segment_size: str) -> int:
    """A writer driven by one JSON command per stdin line; one JSON reply each.

    {"op": "publish", "count": k, "delay": s, "local_ns": [...] | "now"}: sleep
    ``delay`` then append the next ``k`` books (``local_ns`` gives their
    local_timestamp_ns, "now" the clock; default: derived from seq);
    {"op": "fill"}: append until the next book would not fit in this segment;
    {"op": "quit"}.
    """
    size = int(segment_size)
    writer = journal.Writer(path, segment_size=size)
    encoder = journal.OrderBookEncoder()
    seq = 0
    emit(ready=True, position=list(writer.position))
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            break
        positions = []
        first = seq
        if op == "publish":
            time.sleep(command.get("delay", 0))  # asked for: a reader is left waiting
            local = command.get("local_ns")
            for k in range(command["count"]):
                if local == "now":
                    args = book(seq, -1)
                elif local is not None:
                    args = book(seq, local[k])
                else:
                    args = book(seq)
                positions.append(list(writer.append_orderbook(*args)))
                seq += 1
        elif op == "fill":
            while True:
                framed = (len(encoder.encode(*book(seq))) + 7) & ~7
                offset = writer.position[1]
                if offset + framed > size - 8:
                    break
                positions.append(list(writer.append_orderbook(*book(seq))))
                seq += 1
        else:
            emit(error=f"unknown op {op!r}")
            continue
        emit(
            first=first,
            last=seq - 1,
            positions=positions,
            position=list(writer.position),
            published_ns=time.time_ns(),
        )
    writer.close()
    return 0


def cmd_fill(path: str, segment_size: str, how: str) -> int:
    """Append until the filesystem is full (``how``: "single" or "batch" of 50);
    report the error, and that the next append fails the same way, writing nothing."""
    writer = journal.Writer(path, segment_size=int(segment_size))
    seq = 0
    try:
        while True:
            if how == "single":
                writer.append_orderbook(*book(seq))
                seq += 1
            else:
                seq += writer.append_many([book(s) for s in range(seq, seq + 50)])
            if seq > 10_000_000:
                emit(error="never became full")
                return 2
    except journal.JournalFullError as error:
        first_error = error
    position_at_error = list(writer.position)
    try:
        writer.append_orderbook(*book(seq))
        again = "appended"
    except journal.JournalFullError:
        again = "JournalFullError"
    except Exception as error:  # reported to the test
        again = f"{type(error).__name__}: {error}"
    emit(
        appended=seq,
        position_at_error=position_at_error,
        position_after_retry=list(writer.position),
        error_type=type(first_error).__name__,
        is_oserror=isinstance(first_error, OSError),
        errno=first_error.errno,
        message=str(first_error),
        again=again,
    )
    writer.close()
    return 0


def cmd_fill_then_free(path: str, segment_size: str) -> int:
    """Write until the segment prepared for the next roll could not be created, then
    free room as the compactor would (delete the oldest segment) and write on past
    the roll. Reports any JournalFullError seen after the room was freed."""
    size = int(segment_size)
    root = Path(path)
    writer = journal.Writer(path, segment_size=size)

    def free() -> int:
        info = os.statvfs(root)
        return info.f_bavail * info.f_frsize

    def next_prepared(index: int) -> bool:
        """Whether segment index+1 got created (False: there was no room for it)."""
        # The roll (or the opening) handed the preparation to the writer's worker: once
        # that is done, "no file, no .creating, no room" means it failed.
        preparation = writer._preparation
        if preparation is not None:
            concurrent.futures.wait([preparation], timeout=10)
            assert preparation.done(), "the writer never finished preparing the next segment"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (root / journal._layout.segment_name(index + 1)).exists():
                return True
            creating = any(name.endswith(".creating") for name in os.listdir(root))
            if not creating and free() < size:
                return False
            time.sleep(0.01)
        raise AssertionError("the next segment was neither created nor refused")

    seq = 0
    while next_prepared(writer.position[0]):
        index = writer.position[0]
        while writer.position[0] == index:
            writer.append_orderbook(*book(seq))
            seq += 1
            if seq > 1_000_000:
                emit(error="never became full")
                return 2
    full_at = list(writer.position)
    oldest = min(journal._segment.segment_indices(root))
    os.unlink(root / journal._layout.segment_name(oldest))
    freed = free()
    errors = []
    index = writer.position[0]
    while writer.position[0] == index:
        try:
            writer.append_orderbook(*book(seq))
            seq += 1
        except journal.JournalFullError as error:
            errors.append(str(error))
            if len(errors) > 3:
                break
    emit(
        full_at=full_at,
        removed=oldest,
        free_after_removing=freed,
        errors_after_freeing=errors,
        position=list(writer.position),
        appended=seq,
    )
    writer.close()
    return 0


def cmd_follow(path: str, idle: str, archive: str) -> int:
    reader = journal.Reader(
        path, start="beginning", idle=idle, archive=None if archive == "-" else archive
    )
    emit(waiting=True)
    for record in reader:
        emit(seq=record.sequence, incarnations=reader.incarnations)
    return 0


def cmd_append_until_gone(path: str, segment_size: str) -> int:
    writer = journal.Writer(path, segment_size=int(segment_size))
    for seq in range(10):
        writer.append_orderbook(*book(seq))
    emit(ready=True, segment=str(journal._segment.segment_path(writer.path, writer.position[0])))
    sys.stdin.readline()
    # Let the writer's check interval pass (a duration the writer measures, not a wait
    # for another process): its next appends check the journal before they write.
    time.sleep(journal._writer.JOURNAL_CHECK_INTERVAL_NS / 1e9)
    seq = 10
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            writer.append_orderbook(*book(seq))
        except Exception as error:
            emit(error=type(error).__name__, message=str(error), appended=seq)
            return 0
        seq += 1
    emit(error=None, appended=seq)
    return 1


# -- for the tests: spawning children and talking to them --------------------------

SCRIPT = Path(__file__).resolve()
REPO = SCRIPT.parent.parent


class Child:
    """A child process whose stdout lines and stderr are collected by threads."""

    def __init__(self, args: list[str], stdin: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            cwd=REPO,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.args = args
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_json(self, timeout: float) -> dict[str, Any]:
        """The next JSON line; AssertionError with the child's stderr if none comes."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.kill()
            raise AssertionError(
                f"child {self.args} sent no line within {timeout} s (exit status "
                f"{self.proc.returncode}); stderr:\n{self.stderr_text()}"
            )
        return json.loads(line)

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        """Exit status; kills the child and fails if it does not exit in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"child {self.args} still running after {timeout} s; stderr:\n{self.stderr_text()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL (if still running) and reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stderr_text(self) -> str:
        for thread in self._threads:
            thread.join(timeout=2 if self.proc.poll() is not None else 0)
        return "".join(self.stderr)

    def close(self) -> None:
        self.kill()
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Children:
    """The child processes of one test; ``close_all`` (SIGKILL) leaves none behind."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def spawn(self, *args: object, stdin: bool = False) -> Child:
        child = Child([str(arg) for arg in args], stdin)
        self.children.append(child)
        return child

    def close_all(self) -> None:
        for child in self.children:
            child.close()


COMMANDS = {
    "stream": cmd_stream,
    "read": cmd_read,
    "collect": cmd_collect,
    "hold": cmd_hold,
    "try-open": cmd_try_open,
    "torture": cmd_torture,
    "serve": cmd_serve,
    "fill": cmd_fill,
    "fill-then-free": cmd_fill_then_free,
    "follow": cmd_follow,
    "append-until-gone": cmd_append_until_gone,
}

if __name__ == "__main__":
    faulthandler.enable()  # a crash in a child shows its Python stack on stderr
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
