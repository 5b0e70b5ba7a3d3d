"""Real writer and reader processes on real tmpfs segments (tests/_procs.py runs them).

Every book is a pure function of its sequence number (``_procs.book``), so readers
check each record's values, not only its sequence; journals live under the
``shm_dir`` fixture and every child is SIGKILLed and reaped at teardown.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

import journal
import journal._reader
from journal import _layout as F
from tests._procs import Child, Children, book, check

SMALL_SEGMENT = 64 * 1024
END_MARKER = struct.pack("<II", F.END_OF_SEGMENT, 0)


# -- reading segment files directly (an independent walk of docs/FORMAT.md) -------------


def segment_indices(path: Path) -> list[int]:
    if not path.exists():
        return []
    return sorted(
        int(name[:8])
        for name in os.listdir(path)
        if name.endswith(F.SEGMENT_SUFFIX) and name[:8].isdigit() and len(name) == 16
    )


def segment_bytes(path: Path, index: int) -> bytes:
    fd = os.open(path / F.segment_name(index), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def commit_of(data: bytes) -> int:
    return struct.unpack_from("<Q", data, F.COMMIT_OFFSET_OFFSET)[0]


def walk(data: bytes) -> tuple[int, bool]:
    """(records, sealed) below the commit offset of a segment's bytes."""
    commit = commit_of(data)
    (marker,) = struct.unpack_from("<Q", data, F.END_MARKER_OFFSET_OFFSET)
    offset, records = F.HEADER_SIZE, 0
    while offset < commit:
        (size,) = struct.unpack_from("<I", data, offset)
        if size == F.END_OF_SEGMENT:
            assert offset + 8 == commit, f"end marker at {offset}, commit {commit}"
            assert marker == offset, f"end marker at {offset}, end_marker_offset={marker}"
            return records, True
        records += 1
        offset = F.align_record(offset + 4 + size)
    assert offset == commit, f"frames end at {offset}, commit {commit}"
    return records, False


def read_all(reader: journal.Reader, first_seq: int, count: int, timeout: float = 5.0) -> None:
    """``count`` books from ``reader``, checked against ``book(first_seq + k)``."""
    for seq in range(first_seq, first_seq + count):
        record = reader.poll(timeout)
        assert record is not None, f"no book {seq} within {timeout} s"
        problem = check(record, seq)
        assert not problem, problem


# -- one million books, reader before writer ---------------------------------------------

MILLION = 1_000_000


@pytest.mark.slow
def test_million_books_reach_a_reader_started_before_the_writer(
    journal_dir: Path, children: Children
) -> None:
    reader = children.spawn("read", journal_dir, MILLION, 1, 150)
    assert reader.read_json(30) == {"waiting": True}
    assert not journal_dir.exists()

    writer = children.spawn("stream", journal_dir, MILLION, 1 << 20, 1000)
    written = writer.read_json(150)
    assert writer.wait(30) == 0, writer.stderr_text()
    assert written["done"] == MILLION
    assert written["singles"] == MILLION // 2  # half through append_orderbook

    result = reader.read_json(150)
    assert reader.wait(30) == 0, (result, reader.stderr_text())
    assert result["ok"], result["error"]
    assert result["read"] == MILLION
    # Many rolls, and the reader followed every one of them.
    assert result["first_segment"] == 0
    assert result["last_segment"] == written["position"][0]
    assert result["segments"] == written["position"][0] + 1 > 100


def test_books_stay_valid_after_the_reader_moves_on(journal_dir: Path, children: Children) -> None:
    """A book's bids/asks are views of the mapped segment; keeping the book must keep
    them valid when the reader opens later segments or closes (OrderBookRecord's
    promise). Run in a child: a dangling view can crash the process (SIGSEGV)."""
    writer = children.spawn("stream", journal_dir, 1000, SMALL_SEGMENT, 100)
    writer.read_json(60)
    assert writer.wait(10) == 0
    collector = children.spawn("collect", journal_dir)
    status = collector.wait(60)
    assert status == 0, (
        f"the reader process died with status {status} (-11: SIGSEGV) touching the "
        f"levels of books from segments it had closed:\n{collector.stderr_text()[-2000:]}"
    )
    result = collector.read_json(5)
    assert result["count"] == 1000 and len(result["segments"]) >= 3, result
    assert result["moved_on"] == [], (
        f"books read from segments the reader has since left show other bytes: {result}"
    )
    assert result["closed"] == [], result


# -- one writer ----------------------------------------------------------------------------


@pytest.mark.slow
def test_second_writer_is_refused_until_the_first_is_killed(
    journal_dir: Path, children: Children
) -> None:
    holder = children.spawn("hold", journal_dir, stdin=True)
    ready = holder.read_json(30)
    assert ready["pid"] == holder.pid

    # From this process...
    with pytest.raises(journal.WriterLockedError, match=f"pid={holder.pid}"):
        journal.Writer(journal_dir, segment_size=SMALL_SEGMENT)
    # ...and from another one, while the first is alive.
    other = children.spawn("try-open", journal_dir)
    attempt = other.read_json(30)
    assert other.wait(10) == 0
    assert attempt["result"] == "locked", attempt
    assert f"pid={holder.pid}" in attempt["error"]
    # The refused writers changed nothing: the lock still names the holder.
    assert f"pid={holder.pid} " in (journal_dir / F.LOCK_FILE_NAME).read_text()

    holder.proc.send_signal(signal.SIGKILL)
    assert holder.proc.wait(10) == -signal.SIGKILL

    with journal.Writer(journal_dir, segment_size=SMALL_SEGMENT) as writer:
        report = writer.recovery
        assert not report.created
        assert report.cleared_bytes == 0
        held = tuple(ready["position"])
        # Even with the next segment prepared, writing resumes in the open one.
        assert (report.segment, report.commit_offset) == held
        assert report.records_in_segment == 10
        writer.append_orderbook(*book(10))
        # While this process holds it, another process is refused in turn.
        again = children.spawn("try-open", journal_dir)
        assert again.read_json(30)["result"] == "locked"
        assert again.wait(10) == 0
    with journal.Reader(journal_dir) as reader:
        read_all(reader, 0, 11)
        assert reader.try_next() is None

    # Closed cleanly: another process may take over.
    last = children.spawn("try-open", journal_dir)
    opened = last.read_json(30)
    assert last.wait(10) == 0
    assert opened["result"] == "opened", opened
    assert opened["recovery"]["cleared_bytes"] == 0


def test_recovery_clears_torn_bytes_and_resumes_in_the_open_segment(
    journal_dir: Path, children: Children
) -> None:
    """A writer killed mid-record, with the next segment already prepared: reopening
    clears the torn bytes and resumes in the open segment; the prepared one waits for
    the next roll; the report says so."""
    holder = children.spawn("hold", journal_dir, stdin=True)
    segment, commit = holder.read_json(30)["position"]
    prepared = journal_dir / F.segment_name(segment + 1)
    deadline = time.monotonic() + 10
    while not prepared.exists():
        assert time.monotonic() < deadline, "the writer never prepared the next segment"
        time.sleep(0.01)
    # The first 100 bytes of the record it was writing: past the commit, uncommitted.
    torn = journal.OrderBookEncoder().encode(*book(10))[:100]
    fd = os.open(journal_dir / F.segment_name(segment), os.O_WRONLY | os.O_NOFOLLOW)
    try:
        os.pwrite(fd, torn, commit)
    finally:
        os.close(fd)
    holder.proc.send_signal(signal.SIGKILL)
    assert holder.proc.wait(10) == -signal.SIGKILL

    with journal.Writer(journal_dir, segment_size=SMALL_SEGMENT) as writer:
        report = writer.recovery
        data = segment_bytes(journal_dir, segment)
        assert walk(data) == (10, False)  # the 10 books, still open
        assert not data[commit:].strip(b"\0")  # the torn bytes are gone
        assert commit_of(segment_bytes(journal_dir, segment + 1)) == F.HEADER_SIZE
        assert writer.append_orderbook(*book(10)) == (segment, commit)
    assert (report.segment, report.commit_offset) == (segment, commit)
    assert report.records_in_segment == 10
    assert report.cleared_bytes == len(torn.rstrip(b"\0"))
    with journal.Reader(journal_dir) as reader:
        read_all(reader, 0, 11)


# -- kill -9 torture -------------------------------------------------------------------------

TORTURE_ITERATIONS = 30


class Follower:
    """Checks every book a Reader returns: consecutive sequences, expected values."""

    def __init__(self, reader: journal.Reader) -> None:
        self.reader = reader
        self.next_seq = 0
        self.per_segment: Counter[int] = Counter()
        self.positions: dict[tuple[int, int], int] = {}
        self.error: BaseException | None = None

    def take(self, record: journal.OrderBookRecord) -> None:
        problem = check(record, self.next_seq)
        assert not problem, problem
        self.per_segment[record.position[0]] += 1
        self.positions[record.position] = record.sequence
        self.next_seq += 1

    def follow(self, stop: threading.Event) -> None:
        """While the writer runs (a thread): poll until told to stop."""
        try:
            while not stop.is_set():
                record = self.reader.poll(0.02)
                if record is not None:
                    self.take(record)
        except BaseException as error:
            self.error = error

    def drain(self) -> int:
        count = 0
        for record in self.reader.available():
            self.take(record)
            count += 1
        return count


@dataclass
class Snapshot:
    """The journal's files as a reopening writer will find them."""

    indices: list[int]
    unfinished: list[str]
    last_two: dict[int, tuple[bytes, int]]  # index: (file bytes, commit)
    books_read: dict[int, int]  # of the last two, by the reader that drained them

    @classmethod
    def take(cls, journal_dir: Path, follower: Follower) -> Snapshot:
        indices = segment_indices(journal_dir)
        names = os.listdir(journal_dir) if journal_dir.exists() else []
        last_two = {}
        for index in indices[-2:]:
            data = segment_bytes(journal_dir, index)
            last_two[index] = (data, commit_of(data))
        return cls(
            indices,
            sorted(n for n in names if n.endswith(".creating")),
            last_two,
            {index: follower.per_segment[index] for index in indices[-2:]},
        )


def check_recovery(
    journal_dir: Path,
    report: journal.RecoveryReport,
    snapshot: Snapshot,
    stats: Counter[str],
    where: str,
    *,
    files: bool = True,
) -> None:
    """What a writer reopening after a SIGKILL reports (and, with ``files``, leaves in
    the files, checked before anything else is appended) from the files before.

    The newest segment is the one being written, or an empty one prepared for the
    next roll; in that case the one before is still open and writing resumes there.
    """
    assert sorted(report.removed_unfinished) == snapshot.unfinished, (where, report)
    stats["unfinished segments removed"] += bool(snapshot.unfinished)
    if not snapshot.indices:
        assert report.created, (where, report)
        assert (report.segment, report.commit_offset) == (0, F.HEADER_SIZE), (where, report)
        return
    resumed = last = snapshot.indices[-1]
    data, commit = snapshot.last_two[last]
    records, last_sealed = walk(data)
    assert not last_sealed, f"{where}: newest segment {last} is sealed"
    if len(snapshot.indices) > 1 and snapshot.indices[-2] == last - 1:
        previous, previous_commit = snapshot.last_two[last - 1]
        previous_records, previous_sealed = walk(previous)
        if not previous_sealed:
            # The newest is the empty segment prepared for the next roll.
            assert records == 0, f"{where}: segment {last - 1} open, {last} not empty"
            stats["resumed before a prepared segment"] += 1
            resumed, data, commit, records = last - 1, previous, previous_commit, previous_records
            if files:
                assert commit_of(segment_bytes(journal_dir, last)) == F.HEADER_SIZE, where
    dirty = len(data[commit:].rstrip(b"\0"))
    assert not report.created, (where, report)
    assert (report.segment, report.commit_offset) == (resumed, commit), (where, report)
    assert report.records_in_segment == records == snapshot.books_read[resumed], (where, report)
    assert report.cleared_bytes == dirty, (where, report, dirty)
    stats["torn tails cleared"] += bool(dirty)
    if files:
        after = segment_bytes(journal_dir, resumed)
        assert after[:commit] == data[:commit], f"{where}: committed bytes changed"
        assert not after[commit:].strip(b"\0"), f"{where}: uncommitted bytes left"


def committed_digest(data: bytes, commit: int) -> str:
    return hashlib.blake2b(data[F.HEADER_SIZE : commit]).hexdigest()


def check_acks(journal_dir: Path, acks_path: Path, follower: Follower, where: str) -> int:
    """Every book a killed writer acknowledged was read, at the position append gave."""
    acks = acks_path.read_text().splitlines(keepends=True) if acks_path.exists() else []
    for line in acks:
        if not line.endswith("\n"):
            continue  # killed while writing the ack itself
        kind, seq, segment, offset = line.split()
        assert int(seq) < follower.next_seq, (where, line, follower.next_seq)
        if kind == "S":
            found = follower.positions.get((int(segment), int(offset)))
            assert found == int(seq), (where, line, found)
        else:
            data = segment_bytes(journal_dir, int(segment))
            assert commit_of(data) >= int(offset), (where, line)
    return len(acks)


@pytest.mark.slow
def test_kill9_torture_loses_no_acknowledged_book(
    journal_dir: Path, shm_dir: Path, children: Children
) -> None:
    """Kill -9 a writer process at random moments, over and over.

    After most kills this test reopens the journal itself and checks the recovery
    against the files it found; after the others the next writer process recovers
    the crashed state (and may itself be killed while starting or recovering).
    """
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    context = f"seed={seed}"
    acks_path = shm_dir / "acks"
    reader = journal.Reader(journal_dir, start="beginning", verify=True)
    follower = Follower(reader)
    sealed: dict[int, str] = {}  # digest of each sealed segment's records, never to change
    stats: Counter[str] = Counter()
    crashed = False  # the journal is as the last SIGKILL left it
    try:
        for iteration in range(TORTURE_ITERATIONS):
            where = f"{context} iteration={iteration}"
            acks_path.unlink(missing_ok=True)
            follower.positions.clear()
            first_seq = follower.next_seq
            before = Snapshot.take(journal_dir, follower) if crashed else None
            child = children.spawn(
                "torture", journal_dir, acks_path, first_seq, SMALL_SEGMENT, rng.randrange(1 << 30)
            )
            stop = threading.Event()
            thread = threading.Thread(target=follower.follow, args=(stop,))
            thread.start()
            try:
                if iteration and rng.random() < 0.15:
                    # While it starts up or recovers, sometimes.
                    stats["early kills"] += 1
                    time.sleep(rng.uniform(0.0, 0.4))  # a random moment to kill at, not a wait
                else:
                    ready = child.read_json(30)
                    report = journal.RecoveryReport(
                        **{
                            **ready["recovery"],
                            "removed_unfinished": tuple(ready["recovery"]["removed_unfinished"]),
                        }
                    )
                    if before is not None:
                        stats["recovered by the next writer"] += 1
                        check_recovery(journal_dir, report, before, stats, where, files=False)
                    elif iteration:  # this test closed the journal cleanly
                        assert report.cleared_bytes == 0, (where, report)
                        assert report.removed_unfinished == (), (where, report)
                    time.sleep(rng.uniform(0.0, 0.25))  # it appends meanwhile; then SIGKILL
                child.proc.send_signal(signal.SIGKILL)
                status = child.proc.wait(10)
            finally:
                stop.set()
                thread.join(10)
            assert status == -signal.SIGKILL, (where, status, child.stderr_text())
            if follower.error is not None:
                raise AssertionError(f"{where}: reader failed") from follower.error
            follower.drain()
            stats["books"] += follower.next_seq - first_seq
            stats["acks"] += check_acks(journal_dir, acks_path, follower, where)
            crashed = True
            if iteration < TORTURE_ITERATIONS - 1 and rng.random() < 0.3:
                continue  # the next writer process recovers this

            before = Snapshot.take(journal_dir, follower)
            for index in before.indices[:-2]:
                if index not in sealed:
                    data = segment_bytes(journal_dir, index)
                    assert walk(data)[1], f"{where}: segment {index} is not sealed"
                    sealed[index] = committed_digest(data, commit_of(data))
            with journal.Writer(journal_dir, segment_size=SMALL_SEGMENT) as writer:
                report = writer.recovery
                check_recovery(journal_dir, report, before, stats, where)
                if len(before.indices) > 1:
                    after = segment_bytes(journal_dir, before.indices[-2])
                    if walk(after)[1]:  # sealed (else it is the open one, resumed)
                        digest = committed_digest(after, commit_of(after))
                        assert sealed.setdefault(before.indices[-2], digest) == digest, where
                assert writer.position == (report.segment, report.commit_offset), where
                # Appending continues right after the last committed book.
                position = writer.append_orderbook(*book(follower.next_seq))
                assert position in {
                    (report.segment, report.commit_offset),
                    (report.segment + 1, F.HEADER_SIZE),
                }, (where, position, report)
            crashed = False
            assert follower.drain() == 1, where
            assert follower.positions[position] == follower.next_seq - 1
            assert not [n for n in os.listdir(journal_dir) if n.endswith(".creating")]
    finally:
        reader.close()

    # Nothing sealed ever changed afterwards, through all the recoveries.
    for index, digest in sealed.items():
        data = segment_bytes(journal_dir, index)
        assert committed_digest(data, commit_of(data)) == digest, f"{context} segment {index}"
    print(f"\nkill -9 torture ({context}): {dict(stats)}; {len(sealed)} sealed segments")
    assert stats["books"] > 10 * TORTURE_ITERATIONS, stats


# -- idle strategies --------------------------------------------------------------------------


def sleepers_flag(journal_dir: Path, index: int) -> int:
    fd = os.open(journal_dir / F.segment_name(index), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return struct.unpack("<I", os.pread(fd, 4, F.FUTEX_SLEEPERS_OFFSET))[0]
    finally:
        os.close(fd)


@pytest.mark.slow
@pytest.mark.parametrize("idle", journal._reader.IDLE_STRATEGIES)
def test_idle_strategy_receives_every_book(
    journal_dir: Path, children: Children, idle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = children.spawn("serve", journal_dir, SMALL_SEGMENT, stdin=True)
    writer.read_json(30)
    with journal.Reader(journal_dir, start="beginning", idle=idle) as reader:
        # A stream, read while it is written.
        writer.send(op="publish", count=2000)
        read_all(reader, 0, 2000)
        published = writer.read_json(10)
        assert published["last"] == 1999
        assert published["position"][0] >= 3  # it crossed segments
        started = time.monotonic()
        assert reader.poll(0.2) is None
        assert 0.2 <= time.monotonic() - started < 1.5

        # One book after the reader has waited 0.5 s, a few times. For futex, the
        # reader's own re-check period is raised far above the poll timeout, so the
        # book arrives in time only if the writer's wake reaches the reader.
        if idle == "futex":
            monkeypatch.setattr(journal._reader, "_FUTEX_MAX_WAIT_S", 30.0)
        seq = 2000
        for _ in range(3 if idle == "futex" else 1):
            segment = reader.position[0]
            flags: list[int] = []
            probe = threading.Timer(
                0.3, lambda s=segment, out=flags: out.append(sleepers_flag(journal_dir, s))
            )
            probe.start()
            writer.send(op="publish", count=1, delay=0.5, local_ns="now")
            started = time.monotonic()
            record = reader.poll(10.0)
            waited = time.monotonic() - started
            probe.join()
            assert record is not None and record.sequence == seq, record
            assert not check(record, seq, deterministic_time=False)
            latency = time.time_ns() - record.local_timestamp_ns
            assert 0.4 < waited < 2.0, (waited, latency)
            writer.read_json(10)
            # Only a futex reader says it sleeps; the writer lowers the flag as it wakes.
            assert flags == [1 if idle == "futex" else 0]
            assert sleepers_flag(journal_dir, segment) == 0
            seq += 1
        monkeypatch.undo()

        # The same across a roll: the end marker's commit wakes the reader.
        writer.send(op="fill")
        filled = writer.read_json(10)
        read_all(reader, seq, filled["last"] - seq + 1)
        seq = filled["last"] + 1
        writer.send(op="publish", count=1, delay=0.5, local_ns="now")
        started = time.monotonic()
        record = reader.poll(10.0)
        waited = time.monotonic() - started
        rolled = writer.read_json(10)
        assert record is not None and record.sequence == seq, record
        assert record.position == (filled["position"][0] + 1, F.HEADER_SIZE)
        assert tuple(rolled["positions"][0]) == record.position
        assert 0.4 < waited < 2.0, waited
        assert reader.try_next() is None
    writer.send(op="quit")
    assert writer.wait(10) == 0


# -- start modes -----------------------------------------------------------------------------


def serve(children: Children, journal_dir: Path, count: int) -> tuple[Child, dict]:
    """A controlled writer that has already published ``count`` books."""
    writer = children.spawn("serve", journal_dir, SMALL_SEGMENT, stdin=True)
    writer.read_json(30)
    writer.send(op="publish", count=count)
    return writer, writer.read_json(30)


def test_start_end_sees_only_books_published_after_it_started(
    journal_dir: Path, children: Children
) -> None:
    writer, published = serve(children, journal_dir, 1000)
    assert published["position"][0] >= 2
    with journal.Reader(journal_dir, start="end") as reader:
        assert reader.try_next() is None
        assert reader.position == tuple(published["position"])
        writer.send(op="publish", count=50)
        read_all(reader, 1000, 50)
        writer.read_json(10)
        assert reader.poll(0.1) is None
    # Also when "end" is right where the next roll puts the end marker.
    writer.send(op="fill")
    filled = writer.read_json(10)
    with journal.Reader(journal_dir, start="end") as reader:
        assert reader.try_next() is None
        writer.send(op="publish", count=3)
        read_all(reader, filled["last"] + 1, 3)
        writer.read_json(10)
        assert reader.position[0] == filled["position"][0] + 1


def test_start_end_counts_from_construction(journal_dir: Path, children: Children) -> None:
    """Books published between ``Reader(start="end")`` and its first poll are "after"."""
    writer, _ = serve(children, journal_dir, 100)
    reader = journal.Reader(journal_dir, start="end")
    try:
        writer.send(op="publish", count=5)
        writer.read_json(10)
        record = reader.poll(1.0)
        assert record is not None, (
            'Reader(start="end") skipped the 5 books published after it was created '
            "(its end is fixed at the first poll, not at construction)"
        )
        assert record.sequence == 100
    finally:
        reader.close()


def test_start_end_before_the_journal_exists_sees_every_book(
    journal_dir: Path, children: Children
) -> None:
    """A reader started at the end before the writer exists: every book is after it."""
    reader = journal.Reader(journal_dir, start="end")
    try:
        assert reader.try_next() is None  # no journal yet: waiting for the writer
        serve(children, journal_dir, 20)
        record = reader.poll(1.0)
        assert record is not None, (
            'Reader(start="end") created before the journal existed skipped the 20 '
            "books its writer published (all of them after the reader started)"
        )
        assert record.sequence == 0
    finally:
        reader.close()


def test_saved_position_resumes_at_the_next_record(journal_dir: Path, children: Children) -> None:
    writer, published = serve(children, journal_dir, 1500)
    positions = [tuple(p) for p in published["positions"]]
    last_of_segment = [
        k for k in range(len(positions) - 1) if positions[k][0] != positions[k + 1][0]
    ]
    assert len(last_of_segment) >= 3
    stops = {1, 777, 1499, 1500, *last_of_segment[:3], *(k + 1 for k in last_of_segment[:3])}
    for stop in sorted(stops):
        with journal.Reader(journal_dir, start="beginning") as reader:
            read_all(reader, 0, stop)
            saved = reader.position
        if stop == 0 or stop - 1 not in last_of_segment:
            assert saved == [*positions, tuple(published["position"])][stop]
        else:  # on the end marker of the segment just finished
            assert saved[0] == positions[stop - 1][0] and saved[1] > positions[stop - 1][1]
        with journal.Reader(journal_dir, start=saved) as resumed:
            if stop == 1500:
                assert resumed.try_next() is None
            else:
                read_all(resumed, stop, min(5, 1500 - stop))
        # A record's own position starts at that record.
        if stop < 1500:
            with journal.Reader(journal_dir, start=positions[stop]) as again:
                read_all(again, stop, 1)

    # Saved at the live end, just where the next roll puts the end marker.
    writer.send(op="fill")
    filled = writer.read_json(10)
    with journal.Reader(journal_dir, start="beginning") as reader:
        read_all(reader, 0, filled["last"] + 1)
        saved = reader.position
    writer.send(op="publish", count=2)
    rolled = writer.read_json(10)
    assert rolled["positions"][0] == [saved[0] + 1, F.HEADER_SIZE]
    with journal.Reader(journal_dir, start=saved) as resumed:
        read_all(resumed, filled["last"] + 1, 2)

    with pytest.raises(journal.JournalError, match="not a record boundary"):
        journal.Reader(journal_dir, start=(positions[5][0], positions[5][1] + 8)).try_next()
    with pytest.raises(journal.JournalError, match="is not in"):
        journal.Reader(journal_dir, start=(999, F.HEADER_SIZE)).try_next()


def test_start_at_a_timestamp_across_segments(journal_dir: Path, children: Children) -> None:
    # Books 0..1499 carry local_timestamp_ns = LOCAL_NS0 + 1000 * seq.
    writer, published = serve(children, journal_dir, 1500)
    positions = [tuple(p) for p in published["positions"]]
    firsts = [k for k in range(1, 1500) if positions[k][0] != positions[k - 1][0]]
    assert len(firsts) >= 3
    t0 = book(0)[6]
    cases = {t0 - 5: 0, 0: 0, t0: 0, t0 + 1: 1, t0 + 1000 * 1499: 1499}
    for first in firsts[:3]:
        at = t0 + 1000 * first
        cases.update({at: first, at - 1: first, at + 1: first + 1, at - 1000: first - 1})
    for target, expected in sorted(cases.items()):
        with journal.Reader(journal_dir, start=target) as reader:
            read_all(reader, expected, min(3, 1500 - expected))
    # After the last book: nothing yet, then the first book published later.
    with journal.Reader(journal_dir, start=t0 + 1000 * 1499 + 1) as reader:
        assert reader.poll(0.1) is None
        writer.send(op="publish", count=2)
        writer.read_json(10)
        read_all(reader, 1500, 2)

    # With the real clock: only what was published after the moment.
    writer.send(op="publish", count=600, local_ns="now")
    writer.read_json(10)
    moment = time.time_ns()
    writer.send(op="publish", count=600, local_ns="now")
    later = writer.read_json(10)
    assert later["positions"][0][0] < later["positions"][-1][0]
    with journal.Reader(journal_dir, start=moment) as reader:
        for seq in range(2102, 2702):
            record = reader.poll(5.0)
            assert record is not None and record.sequence == seq, record
            assert record.local_timestamp_ns >= moment
        assert reader.try_next() is None
