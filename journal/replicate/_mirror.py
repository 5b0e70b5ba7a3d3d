"""``journal mirror``: a durable JetStream consumer that appends the replicated
records to local journals, byte for byte, at their source positions.

A mirror journal is the source journal's copy: the same records at the same
``(segment, offset)`` in segments of the source's size that carry the source's
``incarnation_ns`` (journal.Writer's ``append_frames``, ``roll``, ``incarnation_ns``
and ``first_segment``). So the mirror journal itself says how far it is: a message
that ends at or before its position is a duplicate (acknowledged, nothing written),
one that starts at its position is appended, then acknowledged (never before the
commit), and anything else is a gap, never written.

A gap (a message lost on its way to this consumer, a restart of the mirror with
messages still unacknowledged) is answered by a *rewind*: the durable consumer is
made again, starting right after its acknowledgement floor, so that every message not
acknowledged comes again, in stream order, at once (rather than one by one as their
acknowledgement timeouts expire). A gap that a rewind does not fill is data the
stream no longer holds: that journal stops, said with what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from journal import _layout as F
from journal._encode import MAX_LEVELS
from journal._errors import JournalError
from journal._names import check_stream_name
from journal._segment import segment_indices, segment_path
from journal._writer import Writer
from journal.replicate import _scheme
from journal.replicate._nats import (
    ConnectionState,
    NatsOptions,
    Retries,
    Stopped,
    StreamOptions,
    connect,
    import_nats,
)
from journal.replicate._scheme import Run

log = logging.getLogger("journal.mirror")
_U32: Final = struct.Struct("<I")

APPENDED: Final = "appended"
DUPLICATE: Final = "duplicate"
GAP: Final = "gap"
SKIPPED: Final = "skipped"
LAG_INTERVAL_S: Final = 1.0
"""How often a mirror measures each copy's lag (and how long it waits for an answer)."""


MARKER: Final = "mirror.source"
"""In a mirror journal's directory, written before its first segment: the mirror
removes a copy for a new incarnation only where it finds this (never a journal it
did not make). It says where the copy comes from (its ``SOURCE_LINE``: the source
journal's identity, which every message of the copy must carry); positions are never
read from it."""
SOURCE_LINE: Final = "source-journal: "
SOURCE_LIMITS: Final[dict[str, Any]] = {"max_levels": MAX_LEVELS, "max_name_bytes": 4096}
"""A copy takes every book its source's writer took, whatever limits that writer had
(the default 10 levels refused a source written with more)."""


REPLACED: Final = ".replaced-"
"""A copy of an incarnation the source replaced is renamed ``.<name>.replaced-...``
before it is removed (readers see the path empty, never half removed)."""


def _remove_replaced(root: Path) -> None:
    """What a mirror stopped between renaming a replaced copy and removing it left."""
    for leftover in root.glob(f".*{REPLACED}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            log.info("removing %s, a replaced copy a mirror before this one left", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _frames_in(payload: bytes) -> int | None:
    """How many whole record frames ``payload`` is, None if it is not whole frames."""
    count, at = 0, 0
    while at + F.SIZE_PREFIX_SIZE <= len(payload):
        at = F.align_record(at + F.SIZE_PREFIX_SIZE + _U32.unpack_from(payload, at)[0])
        count += 1
    return count if at == len(payload) else None


class MirrorJournal:
    """One source journal's copy under the journal root."""

    def __init__(self, root: Path, name: str, stats: Any, source: str = "") -> None:
        self.name = check_stream_name(name)
        self.path = root / name
        self.stats = stats
        self.source = source
        self.writer: Writer | None = None
        self.failed: str | None = None
        self.gap_at: tuple[int, int] | None = None
        """The copy's position when a message last did not continue it (a rewind
        followed); a second gap there is data the stream no longer holds, unless the
        stream says it still holds it (``retries_at_gap``: how often it did)."""
        self.retries_at_gap = 0
        self.skipped: list[Any] = []
        """Messages skipped before the copy could start (``[messages, records, first
        (segment, start), last (segment, end)]``): said when it starts."""
        self.identity: str | None = None
        """The source journal's identity (``Journal-Source``) this copy is of; None:
        not read from the marker yet, "": not known (a copy of an older replicator)."""
        self.next_record = -1
        """``Journal-First-Record`` of the message that would continue the copy (-1:
        not known, nothing appended since the mirror started)."""
        self.last_time_ns = 0
        """The time field of the copy's last record (0: not known)."""

    def apply(self, run: Run, payload: bytes) -> str:
        """Append ``run`` if it continues the copy; say what was done."""
        self._check_source(run)
        writer = self.writer
        if writer is None:
            if segment_indices(self.path):
                if not (self.path / MARKER).exists():
                    raise JournalError(
                        f"{self.path} holds a journal this mirror did not make (no {MARKER}): "
                        "not mixing the source's records with it; move it away and restart"
                    )
                writer = self.writer = Writer(
                    self.path,
                    segment_size=run.segment_size,
                    payload_id=run.payload_id,
                    **SOURCE_LIMITS,
                )
                log.info("%s: mirror journal at %s", self.name, writer.position)
            elif run.first_of_segment:
                return self._start(run, payload)
            else:
                return self._skip(run)  # a new copy starts at a segment's start
        if run.incarnation_ns < writer.incarnation_ns:
            return DUPLICATE  # of an incarnation this copy is past
        if run.incarnation_ns > writer.incarnation_ns:
            if not run.first_of_segment:
                return GAP
            log.warning(
                "%s: the source journal was recreated (incarnation %d, was %d): the copy is too",
                self.name,
                run.incarnation_ns,
                writer.incarnation_ns,
            )
            self._replace()
            return self._start(run, payload)
        segment, offset = writer.position
        if (run.segment, run.end) <= (segment, offset):
            return DUPLICATE
        if run.segment == segment and run.start == offset:
            return self._append(writer, run, payload)
        if run.segment == segment and run.start < offset < run.end:
            return self._append_overlapping(writer, run, payload)
        if run.segment > segment and run.first_of_segment and run.previous == (segment, offset):
            while writer.position[0] < run.segment:  # where the source rolled
                writer.roll()
            return self._append(writer, run, payload)
        return GAP

    def _skip(self, run: Run) -> str:
        if self.skipped and (run.segment, run.end) <= self.skipped[3]:
            return SKIPPED  # delivered again (a rewind): counted once
        if not self.skipped:
            log.warning(
                "%s: the stream's first message of this journal, (%d, %d..%d), does not "
                "start a segment (its limits dropped the journal's beginning): the copy "
                "starts at the next segment start; the records before it are not copied",
                self.name,
                run.segment,
                run.start,
                run.end,
            )
            self.skipped = [0, 0, (run.segment, run.start), None]
        self.skipped[0] += 1
        self.skipped[1] += run.records
        self.skipped[3] = (run.segment, run.end)
        return SKIPPED

    def _check_source(self, run: Run) -> None:
        """A run of another journal of the same name (another host, another
        directory) never goes into this copy."""
        if not run.source:
            return
        if self.identity is None:
            self.identity = ""
            with contextlib.suppress(OSError):
                for line in (self.path / MARKER).read_text().splitlines():
                    if line.startswith(SOURCE_LINE):
                        self.identity = line[len(SOURCE_LINE) :]
        if self.identity and self.identity != run.source:
            raise JournalError(
                f"{self.path} is the copy of {self.identity}, but {run.source} publishes "
                f"{run.journal} too: two journals of one name on one subject; give each "
                "host a --stream and a --subject-prefix of its own (docs/REPLICATION.md)"
            )

    def _append_overlapping(self, writer: Writer, run: Run, payload: bytes) -> str:
        """A run that starts before the copy's end and ends after it (the source sent
        again, cut at other boundaries: its subject emptied by the stream's limits and
        the replicator restarted at its beginning): the part after the copy's end is
        appended, once the part before is found to be the copy's own bytes, whole
        records."""
        segment, offset = writer.position
        cut = offset - run.start
        with open(segment_path(self.path, segment), "rb") as file:
            file.seek(run.start)
            own = file.read(cut)
        records = _frames_in(payload[:cut])
        if own != payload[:cut] or records is None:
            raise JournalError(
                f"{self.name}: message ({run.segment}, {run.start}..{run.end}) overlaps the "
                f"copy's end {writer.position} with other bytes: the copy no longer "
                f"matches its source; remove {self.path} to copy it again"
            )
        log.info(
            "%s: message (%d, %d..%d) sent again cut elsewhere: appending what follows %d",
            self.name,
            run.segment,
            run.start,
            run.end,
            offset,
        )
        return self._append(writer, run, payload[cut:], run.records - records)

    def _append(self, writer: Writer, run: Run, payload: bytes, records: int = -1) -> str:
        records = run.records if records < 0 else records
        if _frames_in(payload) != records:  # checked before anything is committed
            raise JournalError(
                f"{self.name}: message ({run.segment}, {run.start}..{run.end}) says "
                f"{records} records, its payload does not hold that many whole frames: not "
                "written; the copy stops here"
            )
        count = writer.append_frames(payload)
        if count != records or writer.position != (run.segment, run.end):
            raise JournalError(
                f"{self.name}: message of {records} records ending at "
                f"({run.segment}, {run.end}) appended {count} ending at {writer.position}: "
                "the copy no longer matches its source"
            )
        self.next_record = run.next_record
        if run.records:
            self.last_time_ns = run.last_time_ns
        return APPENDED

    def lag(self, last: Run) -> tuple[int, int] | None:
        """Records and time field the stream's last message of this journal, ``last``,
        is ahead of the copy; None while that cannot be told (no copy yet, nothing
        appended since the mirror started, a message that does not count its records)."""
        writer = self.writer
        if writer is None:
            return None
        if last.incarnation_ns == writer.incarnation_ns and (last.segment, last.end) <= (
            writer.position
        ):
            return 0, 0  # caught up (or the copy moved on while the stream was asked)
        if self.next_record < 0 or last.next_record < 0 or not self.last_time_ns:
            return None
        records = last.next_record
        if last.incarnation_ns == writer.incarnation_ns:
            records -= self.next_record
        # (else a newer incarnation: its records, at least, are to be copied)
        return max(records, 0), max(last.last_time_ns - self.last_time_ns, 0)

    def _start(self, run: Run, payload: bytes) -> str:
        """A new copy (or a new incarnation of it) at the run's segment."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker = self.path / MARKER
        if not marker.exists():
            temporary = self.path / f".{MARKER}.{os.getpid()}"
            temporary.write_text(
                f"journal mirror of {run.journal} from {self.source}, incarnation "
                f"{run.incarnation_ns}\n{SOURCE_LINE}{run.source}\n"
            )
            self.identity = run.source
            os.replace(temporary, marker)
        self.writer = Writer(
            self.path,
            segment_size=run.segment_size,
            payload_id=run.payload_id,
            incarnation_ns=run.incarnation_ns,
            first_segment=run.segment,
            **SOURCE_LIMITS,
        )
        if self.writer.incarnation_ns != run.incarnation_ns:
            raise JournalError(
                f"{self.path}: a journal appeared there meanwhile (incarnation "
                f"{self.writer.incarnation_ns}); not mixing it with the source's"
            )
        log.info(
            "%s: mirror journal %s started at segment %d (incarnation %d)",
            self.name,
            self.path,
            run.segment,
            run.incarnation_ns,
        )
        if self.skipped:
            messages, records, first, last = self.skipped
            self.stats.skipped(self.name, records)
            log.warning(
                "%s: the copy starts after %d messages (%d records, %s to %s) it could not "
                "start with: not copied",
                self.name,
                messages,
                records,
                first,
                last,
            )
            self.skipped = []
        return self._append(self.writer, run, payload)

    def _replace(self) -> None:
        """Remove this copy's incarnation: the directory goes away whole (renamed
        first, so readers see the path empty, never half removed), as the source's did."""
        assert self.writer is not None
        if not (self.path / MARKER).exists():
            raise JournalError(
                f"{self.path} holds a journal this mirror did not make (no {MARKER}): not "
                f"removing it for the source's new incarnation; move it away and restart"
            )
        self.writer.close()
        self.writer = None
        self.stats.replaced(self.name)
        hidden = self.path.with_name(f".{self.name}{REPLACED}{os.getpid()}-{time.time_ns()}")
        os.rename(self.path, hidden)
        shutil.rmtree(hidden, ignore_errors=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass(frozen=True)
class ConsumerOptions:
    durable: str = "mirror"
    batch: int = 512
    """Messages asked for in one pull request; another is sent when half of them (or
    half of ``max_bytes``) arrived."""
    max_bytes: int = 16 << 20
    """Bytes asked for in one pull request: 512 messages of 1 MiB (a backlog of large
    books) would be more than nats-server lets wait for one client (64 MiB: past it,
    "Slow Consumer" and deliveries dropped) and more than the subscription holds."""
    pending_bytes: int = 256 << 20
    """nats-py's buffer of the subscription, above what two pull requests can bring
    (its callback moves each message on at once: what waits to be handled is bounded
    by the pulls, the next asked for only once half of the last was handled)."""
    expires_s: float = 5.0
    ack_wait_s: float = 30.0
    max_ack_pending: int = 10_000


class Mirror:
    """Consumes the stream's journal subjects into ``root/<journal>``."""

    def __init__(
        self,
        root: Path,
        nats_options: NatsOptions,
        stream: StreamOptions,
        consumer: ConsumerOptions = ConsumerOptions(),
        stats: Any = None,
    ) -> None:
        self.root = root
        self.nats_options = nats_options
        self.stream = stream
        self.consumer = consumer
        self.stats = stats if stats is not None else NoMirrorStats()
        self.state = ConnectionState()
        self.journals: dict[str, MirrorJournal] = {}
        self._nats = import_nats()
        self.nc: Any = None
        self.js: Any = None
        self._sub: Any = None
        self._received: asyncio.Queue[Any] = asyncio.Queue()
        """What the current subscription delivered, in order (None: look at the state:
        a rewind wanted, stop). A queue of its own per subscription: what an older one
        delivered is never read."""
        self._inbox = ""
        self._requested_since_pull = 0
        self._bytes_since_pull = 0
        self._floor = 0
        """The consumer's acknowledgement floor when it was last made."""
        self._last_pull = 0.0
        self._last_message = time.monotonic()
        self._rewind_wanted = False
        self._stop: asyncio.Event | None = None

    async def run(self, stop: asyncio.Event) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        _remove_replaced(self.root)
        self._stop = stop
        try:
            self.nc = await connect(self.nats_options, self.state, stop)
        except Stopped:
            return 0
        self.stats.connection(self.state)  # a mirror journal's file is born knowing it
        self.js = self.nc.jetstream(timeout=5.0)
        try:
            await self._wait_for_stream(stop)
            await self._rewind(first=True)
            helpers = [
                asyncio.create_task(self._keep_pulling(stop)),
                asyncio.create_task(self._keep_measuring_lag(stop)),
                asyncio.create_task(self._wake_when(stop)),
            ]
            try:
                while not stop.is_set():
                    if self._rewind_wanted:
                        # Then look again: a stop or a rewind wanted meanwhile put its
                        # wake-up in the queue this one replaced.
                        await self._rewind()
                        continue
                    # A message waiting is taken at once, else awaited (no task, no
                    # timer a message: nats-py's next_msg makes both).
                    received = self._received
                    msg = received.get_nowait() if received.qsize() else await received.get()
                    if msg is not None:
                        await self._handle(msg)
            except Stopped:
                pass
            finally:
                for helper in helpers:
                    helper.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await helper
        except Stopped:
            pass
        finally:
            for journal in self.journals.values():
                journal.close()
            await self.state.close(self.nc)
        return 1 if any(j.failed for j in self.journals.values()) else 0

    # -- the consumer --------------------------------------------------------------------

    async def _wait_for_stream(self, stop: asyncio.Event) -> None:
        said = False
        while not stop.is_set():
            try:
                info = await self.js.stream_info(self.stream.name)
            except self._nats.js.errors.NotFoundError:
                if not said:
                    log.warning(
                        "stream %s does not exist yet; waiting for journal replicate to make it",
                        self.stream.name,
                    )
                    said = True
            except (TimeoutError, self._nats.errors.Error) as error:
                log.debug("stream info: %s", error)
            else:
                subjects = _scheme.stream_subjects(self.stream.subject_prefix)
                if subjects not in (info.config.subjects or []):
                    raise JournalError(
                        f"stream {self.stream.name} holds subjects {info.config.subjects}, "
                        f"not {subjects}: nothing of --subject-prefix "
                        f"{self.stream.subject_prefix} is in it; give the --stream and "
                        "--subject-prefix its journal replicate was given"
                    )
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def _rewind(self, first: bool = False) -> None:
        """(Re)make the durable consumer right after its acknowledgement floor and
        subscribe a fresh inbox: messages delivered to the old one are never read
        (a subscription receives what its own pull requests brought)."""
        self._rewind_wanted = False
        api = self._nats.js.api
        name = self.consumer.durable
        floor = 0
        # A consumer's leader elected after a node's loss: seconds.
        retries = Retries(log, self._stop, lambda _: 0.25, say_every=40)
        while True:
            try:
                info = await self.js.consumer_info(self.stream.name, name)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                await self.js.delete_consumer(self.stream.name, name)
            except self._nats.js.errors.NotFoundError:
                # Gone (a delete that timed out here and was done later, while the
                # cluster elected a leader): not back to the stream's first message,
                # but to the floor this mirror knew, if the stream still goes that far.
                floor = await self._known_floor()
            except (TimeoutError, self._nats.errors.Error) as error:
                await retries.after(f"rewinding consumer {name}", error)
                continue
            config = api.ConsumerConfig(
                durable_name=name,
                name=name,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.consumer.ack_wait_s,
                max_ack_pending=self.consumer.max_ack_pending,
                filter_subject=_scheme.stream_subjects(self.stream.subject_prefix),
                max_waiting=512,
            )
            if floor:
                config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = floor + 1
            else:
                config.deliver_policy = api.DeliverPolicy.ALL
            try:
                await self.js.add_consumer(self.stream.name, config=config)
                break
            except (TimeoutError, self._nats.errors.Error) as error:
                await retries.after(f"creating consumer {name}", error)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._inbox = self.nc.new_inbox()
        self._floor = floor
        received = self._received = asyncio.Queue()

        async def deliver(msg: Any) -> None:
            received.put_nowait(msg)

        self._sub = await self.nc.subscribe(
            self._inbox,
            cb=deliver,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=self.consumer.pending_bytes,
        )
        self._requested_since_pull = 0
        await self._pull()
        if not first:
            self.stats.rewound()
        log.info(
            "consumer %s of %s %s from stream sequence %d",
            name,
            self.stream.name,
            "starts" if first else "rewound",
            floor + 1,
        )

    async def _known_floor(self) -> int:
        """The acknowledgement floor the consumer had when this mirror last made it,
        or 0 if the stream no longer reaches it (made again since) or cannot say."""
        if not self._floor:
            return 0
        try:
            info = await self.js.stream_info(self.stream.name)
        except (TimeoutError, self._nats.errors.Error) as error:
            log.debug("stream info: %s", error)
            return 0
        return self._floor if (info.state.last_seq or 0) >= self._floor else 0

    def _wake(self) -> None:
        """The loop waiting for a message looks at the state (a rewind wanted, stop)."""
        self._received.put_nowait(None)

    async def _wake_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake()

    async def _pull(self) -> None:
        request = {
            "batch": self.consumer.batch,
            "max_bytes": self.consumer.max_bytes,
            "expires": int(self.consumer.expires_s * 1e9),
        }
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream.name}.{self.consumer.durable}"
        try:
            await self.nc.publish(subject, json.dumps(request).encode(), reply=self._inbox)
        except self._nats.errors.Error as error:
            log.debug("pull request: %s", error)
        self._requested_since_pull = 0
        self._bytes_since_pull = 0
        self._last_pull = time.monotonic()

    async def _delivery_lost(self, journal: MirrorJournal) -> bool:
        """Whether a gap seen twice at one place is a delivery lost again (a slow
        consumer's drops, a connection lost) rather than data the stream dropped: the
        stream still holds every message after the consumer's acknowledgement floor
        (and the subject never has a gap). A few times per place, then it is loss."""
        journal.retries_at_gap += 1
        if journal.retries_at_gap > 5:
            return False
        try:
            info = await self.js.stream_info(self.stream.name)
        except (TimeoutError, self._nats.errors.Error) as error:
            log.debug("stream info: %s", error)
            return True  # cannot tell: rewind again rather than give the copy up
        held = (info.state.first_seq or 0) <= self._floor + 1
        if held:
            log.warning(
                "%s: the stream still holds everything after sequence %d: a delivery was "
                "lost, not the data; rewinding again",
                journal.name,
                self._floor,
            )
        return held

    async def _keep_pulling(self, stop: asyncio.Event) -> None:
        """A fresh pull request before the last one expires (and after a reconnect);
        once a second, the consumer's state: what is pending (the mirror's lag), and
        messages delivered but never received (lost with a connection or a server:
        nothing after them reveals a gap), which a rewind brings again at once."""
        reconnects = self.state.reconnects
        next_info = time.monotonic() + 1.0
        while not stop.is_set():
            await asyncio.sleep(0.1)
            now = time.monotonic()
            stale = now - self._last_pull > self.consumer.expires_s / 2
            if stale or reconnects != self.state.reconnects:
                reconnects = self.state.reconnects
                await self._pull()
            self.stats.connection(self.state)
            if now < next_info:
                continue
            next_info = now + 1.0
            try:
                info = await self.js.consumer_info(self.stream.name, self.consumer.durable)
            except (TimeoutError, self._nats.errors.Error) as error:
                log.debug("consumer info: %s", error)
                continue
            self.stats.pending(info.num_pending or 0, info.num_ack_pending or 0)
            idle = now - self._last_message > 1.0
            # (A stopped journal's messages stay unacknowledged on purpose.)
            failed = any(journal.failed for journal in self.journals.values())
            if idle and not failed and (info.num_ack_pending or 0) > 0 and not self._rewind_wanted:
                log.warning(
                    "%d messages delivered to this consumer never arrived; rewinding",
                    info.num_ack_pending,
                )
                self._rewind_wanted = True
                self._wake()

    async def _keep_measuring_lag(self, stop: asyncio.Event) -> None:
        """Once a second, each copy's lag: what the stream's last message of its
        journal holds beyond it (``Journal-First-Record`` counts the records; the
        consumer's pending count is of every journal together). A task of its own,
        the journals at once: a slow answer never holds up the pulls. A copy that
        stopped is measured too: its lag is what it stopped short of."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LAG_INTERVAL_S)
                return
            journals = [j for j in self.journals.values() if j.writer is not None]
            await asyncio.gather(*(self._measure_lag(journal) for journal in journals))

    async def _measure_lag(self, journal: MirrorJournal) -> None:
        subject = _scheme.subject(self.stream.subject_prefix, journal.name)
        try:
            message = await asyncio.wait_for(
                self.js.get_last_msg(self.stream.name, subject), LAG_INTERVAL_S
            )
            last = _scheme.parse_run(message.headers, len(message.data or b""))
        except (TimeoutError, self._nats.errors.Error, _scheme.BadHeaders) as error:
            log.debug("%s: the stream's last message: %s", journal.name, error)
            return
        lag = journal.lag(last)
        if lag is not None:
            self.stats.lag(journal.name, *lag)

    async def _handle(self, msg: Any) -> None:
        self._last_message = time.monotonic()
        if not msg.data and msg.headers and "Status" in msg.headers:
            status = msg.headers.get("Status")
            description = msg.headers.get("Description", "")
            if status == "409" and "Deleted" in description:
                self._rewind_wanted = True
            elif status == "409" and "MaxBytes" in description:
                await self._pull()  # that request is done: its bytes arrived
            return
        self._requested_since_pull += 1
        self._bytes_since_pull += len(msg.data)
        if (
            self._requested_since_pull >= self.consumer.batch // 2
            or self._bytes_since_pull >= self.consumer.max_bytes // 2
        ):
            await self._pull()
        try:
            run = _scheme.parse_run(msg.headers, len(msg.data))
            if msg.subject != _scheme.subject(self.stream.subject_prefix, run.journal):
                raise _scheme.BadHeaders(f"journal {run.journal!r} on subject {msg.subject}")
        except _scheme.BadHeaders as error:
            log.error(
                "stream %s: a message that is not a journal run (%s): ignored",
                self.stream.name,
                error,
            )
            await msg.term()
            return
        metadata = msg.metadata
        if metadata.num_delivered > 1:
            self.stats.redelivered(run)
        journal = self.journals.get(run.journal)
        if journal is None:
            journal = self.journals[run.journal] = MirrorJournal(
                self.root, run.journal, self.stats, f"stream {self.stream.name}"
            )
        if journal.failed:
            # Never acknowledged: after the operator's fix and a restart, the rewind
            # to the acknowledgement floor brings these messages again.
            self.stats.dropped(run)
            return
        try:
            outcome = journal.apply(run, msg.data)
        except (JournalError, OSError, ValueError) as error:  # tmpfs full, not its own, damage
            journal.failed = str(error)
            log.error("%s: mirror of this journal stopped: %s", run.journal, error)
            self.stats.dropped(run)
            return
        if outcome == GAP:
            position = journal.writer.position if journal.writer else None
            if journal.gap_at == position and await self._delivery_lost(journal):
                journal.gap_at = None  # the stream holds it still: rewind again
            if journal.gap_at == position:
                journal.failed = (
                    f"the stream holds ({run.segment}, {run.start}) of incarnation "
                    f"{run.incarnation_ns} next, the copy is at {position}: the records "
                    "between are no longer in the stream (its limits dropped them?); "
                    f"remove {journal.path} to start the copy again at the next segment "
                    "start the stream holds (the records before it are not copied)"
                )
                log.error("%s: mirror stopped: %s", run.journal, journal.failed)
                self.stats.dropped(run)
                return
            journal.gap_at = position
            self.stats.gap(run)
            log.warning(
                "%s: message (%d, %d..%d) does not continue the copy at %s; rewinding the consumer",
                run.journal,
                run.segment,
                run.start,
                run.end,
                position,
            )
            self._rewind_wanted = True
            return
        if outcome == APPENDED:
            journal.gap_at = None
            journal.retries_at_gap = 0
        self.stats.applied(run, outcome, metadata.sequence.stream)
        await msg.ack()  # after the commit: a crash before it redelivers, a duplicate


class NoMirrorStats:
    def applied(self, run: Run, outcome: str, sequence: int) -> None:
        pass

    def redelivered(self, run: Run) -> None:
        pass

    def skipped(self, journal: str, records: int) -> None:
        pass

    def lag(self, journal: str, records: int, ns: int) -> None:
        pass

    def rewound(self) -> None:
        pass

    def gap(self, run: Run) -> None:
        pass

    def dropped(self, run: Run) -> None:
        pass

    def connection(self, state: ConnectionState) -> None:
        pass

    def replaced(self, journal: str) -> None:
        pass

    def pending(self, messages: int, unacknowledged: int) -> None:
        pass
