"""``journal replicate``: tail journals and publish their records to JetStream.

Per journal, one asyncio task on the NATS connection's loop reads (a journal.Reader,
with the archive when one is given) and publishes, **one message in flight at a
time**. Records are taken while there are any; only a journal with nothing to read
waits, on its futex: in a thread of its own (the GIL released) that hands the next
record back to the loop, or, for a journal alone in its process, on the loop's own
thread for at most 2 ms at a time (one wake-up less on a book's way: 10-20% of the
end-to-end p50 here). A busy journal so costs no thread hop at all.

* A message is a run of whole record frames of one segment, cut when it reaches
  ``max_bytes``, when ``max_delay`` has passed since its first record, or when the
  journal has nothing more to read right now (so a quiet journal ships a book at
  once, and a busy one ships what accumulated while the previous message was in
  flight: batching grows with the load, latency does not).
* It carries ``Nats-Msg-Id`` (journal, incarnation, segment, start offset) and
  ``Nats-Expected-Last-Subject-Sequence`` (the stream sequence of the journal's
  previous message): JetStream stores it only right after that message, and drops a
  second copy of it within the duplicate window. So the subject never has a gap, a
  duplicate or a reordering, whatever fails and whoever else publishes it
  (docs/REPLICATION.md, "Exactly once").
* When the reader passes the end marker of a segment, an empty message at the next
  segment's start tells the mirror to seal its copy there.
* Where to start is read back from JetStream (the subject's last message, by the
  stream's last-message-by-subject API), never from a local file: the journal goes
  on after that message's end. Any doubt (a duplicate acknowledged, the expected
  sequence refused) is settled the same way: read the last message again and go
  on after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from journal import _layout as F
from journal._decode import Record
from journal._errors import JournalError
from journal._reader import IdleName, Reader, Start
from journal._segment import incarnation_now
from journal.replicate import _scheme
from journal.replicate._nats import Retries, Stopped, StreamOptions, import_nats
from journal.replicate._scheme import Run

log = logging.getLogger("journal.replicate")

WRONG_LAST_SEQUENCE: Final = 10071
"""JetStream's error code for a Nats-Expected-Last-Subject-Sequence that does not hold."""
NO_MESSAGE_FOUND: Final = 10037
LOOP_WAIT_S: Final = 0.002
"""A journal alone in its process waits this long at most on its futex with the
event loop held (the loop then runs what arrived: pings, a signal, and back)."""


@dataclass(frozen=True)
class BatchLimits:
    """When a message is cut (whichever comes first)."""

    max_bytes: int = 512 * 1024
    max_delay_s: float = 0.001
    """A batch is shipped at most this long after its first record was read, even if
    records keep coming (a quiet journal ships at once: nothing more to read)."""
    max_records: int = 0  # 0: no limit; 1: one book per message (the benchmark's baseline)


class Resync(Exception):
    """What is stored for the journal is not what this replicator thought: read it back."""


class JournalReplicator:
    """Replicates journal ``path`` to its subject; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        path: Path,
        js: Any,
        stream: StreamOptions,
        *,
        archive: Path | None = None,
        limits: BatchLimits = BatchLimits(),
        start: Start = "beginning",
        idle: IdleName = "futex",
        ack_timeout_s: float = 2.0,
        stats: Any = None,
    ) -> None:
        self.path = path
        self.name = path.name
        self.js = js
        self.stream = stream
        self.subject = _scheme.subject(stream.subject_prefix, self.name)
        self.source = _scheme.source_identity(path)
        self.archive = archive
        self.limits = limits
        self.start = start
        self.idle = idle
        self.ack_timeout_s = ack_timeout_s
        self.stats = stats if stats is not None else NoStats()
        self.alone = False
        """The only journal of its process: it waits for records on the loop's thread."""
        self.last_sequence = 0  # of the subject's last message (0: none)
        self.last: Run | None = None  # the run of that message
        self.error: BaseException | None = None
        self._nats = import_nats()
        self._reader: Reader | None = None
        self._pending: Record | None = None  # read, not yet in a batch
        self._skip_before: tuple[int, int, int] | None = None
        # Where the reader waits on the journal's futex when it has nothing to read.
        self._waiter = ThreadPoolExecutor(1, thread_name_prefix=f"replicate-{self.name}")

    # -- the task ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read and publish until ``stop``; an error stops this journal (``error``)."""
        try:
            await self._resync(stop)
            while not stop.is_set():
                batch = await self._collect(stop)
                if batch is None:
                    continue
                run, payload = batch
                try:
                    await self._publish(run, payload, stop)
                except Resync as why:
                    log.warning("%s: %s; reading the subject's last message again", self.name, why)
                    self.stats.resynced()
                    await self._resync(stop)
        except Stopped:
            pass
        except Exception as error:
            self.error = error
            log.error("%s: replication stopped: %s", self.name, error)
        finally:
            self._waiter.shutdown(wait=True)  # a wait in progress ends within 0.1 s
            if self._reader is not None:
                self._reader.close()

    # -- where to go on from -----------------------------------------------------------

    async def _resync(self, stop: asyncio.Event) -> None:
        """Place the reader right after the subject's last message (or at ``start``)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pending = None
        self._skip_before = None
        found = await self._last_message(stop)
        if found is None and self.last is not None:
            # Published before, the subject empty now: the stream's limits (--max-age,
            # --max-bytes) or a purge dropped its messages. --start is for a journal
            # never replicated: go on after the last message, the first on the subject.
            log.warning(
                "%s: %s is empty (the stream's limits or a purge dropped its messages); "
                "going on after the last message published, at (%d, %d)",
                self.name,
                self.subject,
                self.last.segment,
                self.last.end,
            )
            found = (self.last, 0)
        if found is None:
            self.last, self.last_sequence = None, 0
            log.info("%s: nothing in %s yet, starting at %s", self.name, self.subject, self.start)
            self._reader = self._new_reader(self.start)
            return
        self.last, self.last_sequence = found
        run = self.last
        if self.last_sequence:
            self.stats.acknowledged(run, self.last_sequence)
        if incarnation_now(self.path) == run.incarnation_ns:
            log.info(
                "%s: going on after stream sequence %d, at (%d, %d)",
                self.name,
                self.last_sequence,
                run.segment,
                run.end,
            )
            self._reader = self._new_reader((run.segment, run.end))
            return
        # The journal was recreated since that message: the rest of its incarnation
        # (from the archive, if there is one), then the new one, skipping what was sent.
        log.warning(
            "%s: the journal is not the incarnation %d replicated last; reading the "
            "stream of incarnations%s from its oldest record",
            self.name,
            run.incarnation_ns,
            " (with the archive)" if self.archive else "",
        )
        self._skip_before = (run.incarnation_ns, run.segment, run.end)
        self._reader = self._new_reader("beginning")

    def _new_reader(self, start: Start) -> Reader:
        return Reader(
            self.path,
            start=start,
            archive=self.archive,
            idle=self.idle,
            name="replicate",
        )

    async def _last_message(self, stop: asyncio.Event) -> tuple[Run, int] | None:
        """The subject's last message, as stored (by the stream leader)."""
        errors = self._nats.errors
        retries = self._retries(stop)
        while True:
            _check_stop(stop)
            try:
                message = await self.js.get_last_msg(self.stream.name, self.subject)
            except self._nats.js.errors.NotFoundError:
                return None
            except self._nats.js.errors.APIError as error:
                if error.err_code == NO_MESSAGE_FOUND:
                    return None
                await self._retry(retries, "reading the last message", error)
                continue
            except (errors.Error, TimeoutError, OSError) as error:
                await self._retry(retries, "reading the last message", error)
                continue
            data = message.data or b""
            try:
                run = _scheme.parse_run(message.headers, len(data))
            except _scheme.BadHeaders as error:
                raise JournalError(
                    f"stream {self.stream.name} sequence {message.seq} on {self.subject}: "
                    f"{error}; something other than journal replicate publishes there"
                ) from None
            if run.source and run.source != self.source:
                raise JournalError(
                    f"{self.subject} holds journal {run.source}, not this one ({self.source}): "
                    "two journals of one name replicate to one stream; give each host (or "
                    "directory) a --stream and a --subject-prefix of its own, e.g. --stream "
                    'TOKYO --subject-prefix journal.tokyo (docs/REPLICATION.md, "Subjects '
                    'and messages"); a journal that moved: the same'
                )
            if run.journal != self.name:
                raise JournalError(
                    f"{self.subject} holds journal {run.journal!r}, not {self.name!r}: two "
                    "journals of one name replicate to one stream; give each a --stream "
                    "and a --subject-prefix of its own"
                )
            return run, int(message.seq)

    @staticmethod
    def _retries(stop: asyncio.Event) -> Retries:
        """10 ms after the first failure, doubling up to a second."""
        return Retries(log, stop, lambda n: min(0.01 * 2 ** (n - 1), 1.0))

    async def _retry(self, retries: Retries, what: str, error: BaseException) -> None:
        self.stats.retried()
        await retries.after(f"{self.name}: {what}", error)

    # -- reading a batch ------------------------------------------------------------------

    async def _collect(self, stop: asyncio.Event) -> tuple[Run, bytes] | None:
        """The next message's run and frames, or None (nothing to read in a while)."""
        reader = self._reader
        assert reader is not None
        record = self._pending
        self._pending = None
        if record is None:
            record = reader.try_next()
        if record is None and (sealed := self._seal_run(reader)) is not None:
            return sealed
        if record is None:
            record = await self._wait(reader)
            _check_stop(stop)
            if record is None:
                return None
        limits = self.limits
        payload = bytearray()
        count = 0
        started = time.monotonic()
        run_start: tuple[int, int] | None = None
        incarnation = 0
        last_time = 0
        time_field = reader.schema.time_field if reader.schema is not None else ""
        while record is not None:
            segment, offset = record.position
            if run_start is None:
                if self._skip(reader, record):
                    record = reader.try_next()
                    continue
                run_start = (segment, offset)
                incarnation = reader.incarnation_ns or 0
            elif (
                segment != run_start[0]
                or offset != run_start[1] + len(payload)
                or len(payload) + record.size > limits.max_bytes
                or count == limits.max_records
            ):
                self._pending = record  # the next message's first record
                break
            data = reader.record_bytes(record)
            payload += data
            padding = F.align_record(len(data)) - len(data)
            if padding:
                payload += bytes(padding)
            count += 1
            last_time = getattr(record, time_field)
            if not count & 63 and time.monotonic() - started >= limits.max_delay_s:
                break
            record = reader.try_next()
        if run_start is None:
            return None
        if incarnation <= 0:
            raise JournalError(
                f"{self.path} has no incarnation stamp (incarnation_ns 0): a mirror could "
                "not tell its incarnations apart; it cannot be replicated"
            )
        previous, first_record = self._follows(incarnation)
        run = Run(
            journal=self.name,
            incarnation_ns=incarnation,
            segment=run_start[0],
            start=run_start[1],
            end=run_start[1] + len(payload),
            records=count,
            previous=previous,
            segment_size=reader.segment_size or 0,
            payload_id=reader.payload_id or b"",
            last_time_ns=last_time,
            source=self.source,
            first_record=first_record,
        )
        return run, bytes(payload)

    def _follows(self, incarnation: int) -> tuple[tuple[int, int] | None, int]:
        """Where the subject's last message ended and how many records of
        ``incarnation`` the subject holds: ``(None, 0)`` for the first message of an
        incarnation (counted from there; a subject whose last message does not say,
        one of an older replicator, counts again from 0)."""
        last = self.last
        if last is None or last.incarnation_ns != incarnation:
            return None, 0
        return (last.segment, last.end), max(last.next_record, 0)

    async def _wait(self, reader: Reader) -> Record | None:
        """The next record once the writer commits one, or None after a while.

        The journal alone in its process (``alone``): on its futex right here, the loop
        blocked for at most ``LOOP_WAIT_S`` (nothing of it is in flight then: the last
        message was acknowledged), then free to run what came meanwhile: the book's way
        is one wake-up shorter than through a thread. Otherwise in the waiter thread,
        the loop free for the other journals."""
        if self.alone:
            record = reader.poll(LOOP_WAIT_S)
            if record is None:
                await asyncio.sleep(0)
            return record
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._waiter, reader.poll, 0.1)

    def _seal_run(self, reader: Reader) -> tuple[Run, bytes] | None:
        """An empty run at the start of the next segment once the reader went past the
        end marker of the last message's segment: the mirror seals its copy of that
        segment there and then (its compactor can archive it), not only when the next
        records come, which may be never (a writer that sealed and stopped)."""
        last, position = self.last, reader.position
        if (
            last is None
            or position is None
            or self._skip_before is not None
            or position != (last.segment + 1, F.HEADER_SIZE)
            or (reader.incarnation_ns or 0) != last.incarnation_ns
        ):
            return None
        previous, first_record = self._follows(last.incarnation_ns)
        run = Run(
            journal=self.name,
            incarnation_ns=last.incarnation_ns,
            segment=position[0],
            start=F.HEADER_SIZE,
            end=F.HEADER_SIZE,
            records=0,
            previous=previous,
            segment_size=last.segment_size,
            payload_id=last.payload_id,
            last_time_ns=last.last_time_ns,
            source=self.source,
            first_record=first_record,
        )
        return run, b""

    def _skip(self, reader: Reader, record: Record) -> bool:
        """After a journal was recreated: whether ``record`` was replicated already
        (an older incarnation, or this one before the last message's end)."""
        if self._skip_before is None:
            return False
        incarnation, segment, end = self._skip_before
        current = reader.incarnation_ns or 0
        if current < incarnation or (current == incarnation and record.position < (segment, end)):
            return True
        self._skip_before = None
        return False

    # -- publishing -------------------------------------------------------------------

    async def _publish(self, run: Run, payload: bytes, stop: asyncio.Event) -> None:
        """Publish until JetStream has it right after the subject's last message."""
        headers = run.headers()
        headers[_scheme.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(self.last_sequence)
        errors = self._nats.errors
        retries = self._retries(stop)
        started = time.perf_counter_ns()
        while True:
            _check_stop(stop)
            try:
                ack = await self.js.publish(
                    self.subject, payload, timeout=self.ack_timeout_s, headers=dict(headers)
                )
            except self._nats.js.errors.APIError as error:
                if error.err_code == WRONG_LAST_SEQUENCE:
                    raise Resync(
                        f"JetStream refused the expected sequence ({error.description})"
                    ) from None
                if error.code == 400:  # a message too large (10054), never taken
                    raise JournalError(
                        f"stream {self.stream.name} refused a message of {len(payload)} bytes "
                        f"at ({run.segment}, {run.start}): {error.description} (error "
                        f"{error.err_code}); lower --max-batch-bytes or raise the stream's "
                        "max_msg_size"
                    ) from None
                await self._retry(retries, "publishing", error)
                continue
            except errors.MaxPayloadError as error:
                raise JournalError(
                    f"a message of {len(payload)} bytes at ({run.segment}, {run.start}) is "
                    f"more than the NATS server takes ({error}); lower --max-batch-bytes "
                    "or raise the server's max_payload"
                ) from None
            except (errors.Error, TimeoutError, OSError) as error:
                await self._retry(retries, "publishing", error)
                continue
            if ack.duplicate:
                # Stored before (an earlier attempt whose acknowledgement was lost, or
                # another replicator): what is stored decides where to go on.
                raise Resync(f"stream sequence {ack.seq} already holds {headers[_scheme.MSG_ID]}")
            self.last, self.last_sequence = run, int(ack.seq)
            self.stats.published(run, len(payload), int(ack.seq), time.perf_counter_ns() - started)
            return


def _check_stop(stop: asyncio.Event) -> None:
    if stop.is_set():
        raise Stopped


class NoStats:
    """The replicator's counters, discarded (``stats=None``)."""

    def published(self, run: Run, size: int, sequence: int, latency_ns: int) -> None:
        pass

    def acknowledged(self, run: Run, sequence: int) -> None:
        pass

    def retried(self) -> None:
        pass

    def resynced(self) -> None:
        pass


@dataclass
class Replication:
    """Every journal of one ``journal replicate`` process, one task each."""

    replicators: list[JournalReplicator]

    async def run(self, stop: asyncio.Event) -> int:
        if len(self.replicators) == 1:
            self.replicators[0].alone = True
        tasks = [
            asyncio.create_task(r.run(stop), name=f"replicate-{r.name}") for r in self.replicators
        ]
        # One journal that fails (said in its log line) does not stop the others; the
        # process ends when they all have, status 1 if one failed.
        await asyncio.gather(*tasks)
        for replicator in self.replicators:
            if replicator.error is None and replicator.last is not None:
                last = replicator.last
                log.info(
                    "%s: stopped; JetStream holds it up to (%d, %d), stream sequence %d",
                    replicator.name,
                    last.segment,
                    last.end,
                    replicator.last_sequence,
                )
        return 1 if any(r.error is not None for r in self.replicators) else 0
