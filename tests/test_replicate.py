"""journal replicate -> NATS JetStream -> journal mirror, with real nats-server processes.

A mirror journal must be its source byte for byte: the same records at the same
positions, in segments carrying the source's incarnation; the radar on it computes
what it computes on the source. Where to go on is read back from the stream (the
replicator) and from the mirror journal itself (the mirror).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import nats
import pytest
from prometheus_client.metrics_core import Metric

import journal
from journal import _layout as F
from journal._replication_metrics import (
    MIRROR_LAG_STALE_NS,
    ReplicationFigures,
    Role,
    Word,
    read_replication_metrics,
)
from journal._segment import incarnation_now
from journal.replicate import _scheme
from journal.replicate._mirror import ConsumerOptions, Mirror, MirrorJournal, NoMirrorStats
from journal.replicate._nats import NatsOptions, StreamOptions, ensure_stream
from tests import _cpp
from tests._replication import (
    JOURNAL,
    Process,
    end_of,
    incarnation_of,
    mirror,
    records_of,
    replicate,
    wait_for,
    writer,
)
from tests._running import Started
from tests.nats_server import NatsServer, nats_server  # noqa: F401  (a fixture)
from tests.test_metrics_http import families, serve, value
from tests.test_radar_replay import HOUR_NS, write_old_journals

SEGMENT = 1 << 20


# -- the scheme, without a server ---------------------------------------------------------


def test_a_run_survives_its_headers() -> None:
    run = _scheme.Run(
        "upbit.spot", 17, 3, 4096, 4096 + 864, 2, (2, 999_992), SEGMENT, b"OBK1", 5, "h:/a", 40
    )
    headers = run.headers()
    assert headers["Nats-Msg-Id"] == "upbit.spot:17:3:4096:4960"
    assert headers["Journal-First-Record"] == "40"
    assert _scheme.parse_run(headers, 864) == run
    assert run.next_record == 42
    assert _scheme.subject("journal", "upbit.spot") == "journal.upbit%2Espot"
    # A replicator before Journal-First-Record: the count is not known.
    older = dataclasses.replace(run, first_record=-1)
    assert "Journal-First-Record" not in older.headers()
    assert _scheme.parse_run(older.headers(), 864).next_record == -1


def test_the_header_table_is_the_schemes() -> None:
    """docs/REPLICATION.md's header table names every header the scheme has, no other."""
    text = (Path(__file__).parents[1] / "docs" / "REPLICATION.md").read_text()
    table = text.split("| header | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {
        name
        for row in table.splitlines()[2:]
        for name in re.findall(r"`([\w-]+)`", row.split("|")[1])
    }
    constants = {
        value
        for value in vars(_scheme).values()
        if isinstance(value, str) and re.fullmatch(r"(Nats|Journal)-[A-Za-z-]+", value)
    }
    assert documented == constants
    run = _scheme.Run("feed", 1, 0, 4096, 4104, 1, None, SEGMENT, b"OBK1", 5, "h:/feed", 0)
    sent = {*run.headers(), _scheme.EXPECTED_LAST_SUBJECT_SEQUENCE}  # the replicator adds it
    assert sent == constants


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda h: h.pop("Journal-End"), "Journal-End missing"),
        (lambda h: h.update({"Journal-Start": "x"}), "does not parse"),
        (lambda h: h.update({"Nats-Msg-Id": "other"}), "does not name"),
        (lambda h: h.update({"Journal-Name": "../etc"}), "does not parse"),
        (lambda h: h.update({"Journal-First-Record": "-2"}), "first record >= 0"),
    ],
)
def test_headers_that_are_not_the_scheme_are_refused(spoil: object, message: str) -> None:
    headers = _scheme.Run("upbit", 1, 0, 4096, 4104, 1, None, SEGMENT, b"OBK1", 5).headers()
    spoil(headers)  # type: ignore[operator]
    with pytest.raises(_scheme.BadHeaders, match=message):
        _scheme.parse_run(headers, 8)


def test_a_payload_of_another_size_is_refused() -> None:
    headers = _scheme.Run("upbit", 1, 0, 4096, 4104, 1, None, SEGMENT, b"OBK1", 5).headers()
    with pytest.raises(_scheme.BadHeaders, match="payload holds 16"):
        _scheme.parse_run(headers, 16)


def small_journal(path: Path, books: int) -> list[tuple[tuple[int, int], bytes]]:
    """A journal at ``path`` of ``books`` one-level books (0, 1, ...), its records."""
    with journal.Writer(path, segment_size=SEGMENT) as writing:
        for i in range(books):
            writing.append_orderbook("upbit", "BTC-KRW", i, i, [[1.0, 1.0]], [[2.0, 1.0]])
    return records_of(path)


def run_of(source: Path, records: list[tuple[tuple[int, int], bytes]], first: int) -> _scheme.Run:
    """The message ``journal replicate`` would send of ``records`` (consecutive, of one
    segment of ``source``), the ``first``-th of its incarnation on."""
    (segment, start), payload = records[0][0], _payload(records)
    with journal.Reader(source, metrics=False) as reader:
        times = [r.local_timestamp_ns for r in reader.available()]
    return _scheme.Run(
        source.name,
        incarnation_of(source),
        segment,
        start,
        start + len(payload),
        len(records),
        None,
        SEGMENT,
        b"OBK1",
        times[first + len(records) - 1],
        "h:/feed",
        first,
    )


def test_a_copys_lag_is_what_the_stream_holds_beyond_it(shm_dir: Path) -> None:
    """Records: the stream's last message's end (Journal-First-Record + records) less
    the copy's; time: its last record's less the copy's last; 0 once caught up."""
    source = shm_dir / "feed"
    records = small_journal(source, 10)
    copy = MirrorJournal(shm_dir / "mirror", "feed", NoMirrorStats())
    try:
        first = run_of(source, records[:4], 0)
        assert copy.lag(first) is None  # no copy yet
        assert copy.apply(first, _payload(records[:4])) == "appended"
        ahead = dataclasses.replace(run_of(source, records[4:], 4), previous=(0, first.end))
        assert copy.lag(ahead) == (6, ahead.last_time_ns - first.last_time_ns)
        assert copy.lag(first) == (0, 0)
        assert copy.apply(ahead, _payload(records[4:])) == "appended"
        assert copy.lag(ahead) == (0, 0)
        newer = dataclasses.replace(ahead, incarnation_ns=ahead.incarnation_ns + 1)
        assert copy.lag(newer) == (10, 0)  # a new incarnation: its records at least
    finally:
        copy.close()


def _payload(records: list[tuple[tuple[int, int], bytes]]) -> bytes:
    return b"".join(data + bytes(F.align_record(len(data)) - len(data)) for _, data in records)


# -- with a server ------------------------------------------------------------------------


def assert_mirrors(source: Path, copy: Path) -> None:
    """Every record at the same position with the same bytes, and the same incarnation."""
    expected, got = records_of(source), records_of(copy)
    assert len(got) == len(expected)
    assert got == expected
    assert incarnation_of(copy) == incarnation_of(source)


def caught_up(source: Path, copy: Path) -> bool:
    return copy.exists() and end_of(copy) == end_of(source)


@pytest.mark.slow
def test_the_radar_on_the_mirror_computes_what_it_computes_on_the_source(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """writer -> replicate -> NATS -> mirror -> radar: equal books, equal results."""
    source, mirrored = shm_dir / "books", shm_dir / "mirror"
    upbit, binance = source / "upbit", source / "binance"
    books = write_old_journals(upbit, binance, time.time_ns() - HOUR_NS, 20)
    logs = [shm_dir / "replicate.log", shm_dir / "mirror.log"]
    runs = [
        replicate(nats_server.url, [upbit, binance], logs[0]).start(),
        mirror(nats_server.url, mirrored, logs[1]).start(),
    ]
    try:
        for name in ("upbit", "binance"):
            wait_for(lambda n=name: caught_up(source / n, mirrored / n), 30, name, logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    for name in ("upbit", "binance"):
        assert_mirrors(source / name, mirrored / name)
    results = {}
    for where in (source, mirrored):
        done = _cpp.radar(
            *("--journal", str(where / "upbit"), "--journal", str(where / "binance")),
            *("--results", str(where / "results"), "--start", "beginning", "--quiet"),
            *("--max-records", str(books), "--no-metrics"),
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        with journal.Reader(where / "results", metrics=False) as reader:
            # timestamp_ns is the radar's clock when it computed the result.
            results[where] = [
                {k: v for k, v in r.to_dict().items() if k not in ("timestamp_ns", "position")}
                for r in reader.available()
            ]
    assert len(results[source]) > 1000
    assert results[mirrored] == results[source]


@pytest.mark.slow
def test_restarts_go_on_from_the_stream_and_the_mirror_journal(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Stopped and started again (both sides), nothing is sent or appended twice: the
    stream's messages chain, each starting where the one before ended."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    for round_ in range(3):
        writing = writer(source, 1 + 5000 * round_, 5000, 0, SEGMENT, logs[0]).start()
        assert writing.line() == b"done\n"
        writing.wait(10)
        runs = [
            replicate(nats_server.url, [source], logs[1], "--max-batch-bytes", "16k").start(),
            mirror(nats_server.url, copy.parent, logs[2]).start(),
        ]
        try:
            wait_for(lambda: caught_up(source, copy), 30, f"round {round_}", logs)
        finally:
            assert [run.terminate() for run in runs] == [0, 0]
    assert_mirrors(source, copy)
    runs_of_stream = asyncio.run(stream_runs(nats_server.url, "journal.feed"))
    assert runs_of_stream[0].start == 4096 and runs_of_stream[0].previous is None
    for before, after in itertools.pairwise(runs_of_stream):
        assert after.previous == (before.segment, before.end)
        assert (after.segment, after.start) in (
            (before.segment, before.end),
            (before.segment + 1, 4096),
        )
    assert sum(run.records for run in runs_of_stream) == 15_000


def stream_records(url: str, subject: str) -> int:
    """Records in the subject's messages; 0 before the stream exists."""
    import nats.js.errors

    try:
        return sum(run.records for run in asyncio.run(stream_runs(url, subject)))
    except nats.js.errors.NotFoundError:
        return 0


async def stream_runs(url: str, subject: str) -> list[_scheme.Run]:
    """Every message of ``subject``, in stream order, as runs."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(_scheme.DEFAULT_STREAM)
        runs = []
        seq = info.state.first_seq
        while seq <= info.state.last_seq:
            try:
                message = await js.get_msg(_scheme.DEFAULT_STREAM, seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            runs.append(_scheme.parse_run(message.headers, len(message.data or b"")))
            seq = message.seq + 1
        return runs
    finally:
        await nc.close()


@pytest.mark.slow
def test_a_recreated_journal_is_mirrored_as_a_new_incarnation(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    # What a mirror killed while it removed a replaced copy left: removed at start.
    leftover = copy.parent / ".feed.replaced-999-1"
    (leftover / "old").mkdir(parents=True)
    runs: list[Process] = [
        replicate(nats_server.url, [source], logs[1]).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        writing = writer(source, 1, 3000, 0, SEGMENT, logs[0]).start()
        assert writing.line() == b"done\n"
        wait_for(lambda: caught_up(source, copy), 30, "the first incarnation", logs)
        assert not leftover.exists()
        first = incarnation_of(copy)
        shutil.rmtree(source)  # an operator's rm -rf, a wiped tmpfs
        writing = writer(source, 100_001, 2000, 0, SEGMENT, logs[0]).start()
        assert writing.line() == b"done\n"
        wait_for(
            lambda: incarnation_now(copy) not in (None, first) and caught_up(source, copy),
            30,
            "the second incarnation",
            logs,
        )
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    assert_mirrors(source, copy)  # the new incarnation alone, none of the old one's books
    assert [r.sequence for r in journal.Reader(copy, metrics=False).available()] == list(
        range(100_001, 102_001)
    )
    assert [p.name for p in copy.parent.iterdir()] == ["feed"]  # the old copy removed whole
    said = logs[1].read_text()
    assert "feed: stopped; JetStream holds it up to" in said, said
    assert "connection lost" not in said + logs[2].read_text()  # a clean stop is no loss


@pytest.mark.slow
def test_top_and_metrics_show_both_sides(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
    running: Started,
) -> None:
    """A real pair through nats-server: ``journal metrics --listen`` scraped over HTTP
    (parsed by prometheus_client, held to the naming conventions) shows the replicator
    and the mirror caught up, ``journal top`` shows both rows; once they stopped, the
    files stay with their last figures, their owners down."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    writing = writer(source, 1, 3000, 0, SEGMENT, logs[0]).start()
    assert writing.line() == b"done\n"
    copy.parent.mkdir()
    # Two journals named feed: labelled by their paths.
    sides = [
        {"journal": str(source), "role": "replicate", "stream": "JOURNAL"},
        {"journal": str(copy), "role": "mirror", "stream": "JOURNAL"},
    ]
    exporter = serve(running, source.parent, copy.parent)
    try:
        runs = [
            replicate(nats_server.url, [source], logs[1]).start(),
            mirror(nats_server.url, copy.parent, logs[2]).start(),
        ]
        pids = [str(run.popen.pid) for run in runs if run.popen is not None]
        try:
            wait_for(lambda: caught_up(source, copy), 30, "the mirror", logs)

            def settled() -> bool:  # the acknowledgements counted, the consumer's pending read
                found = exporter.families()
                return (
                    all(
                        _value(found, "journal_replication_records_total", side) == 3000
                        for side in sides
                    )
                    and _value(found, "journal_replication_pending_messages", sides[1]) == 0
                    # the mirror measured its lag from the stream's last message since
                    and _value(found, "journal_replication_lag_records", sides[1]) == 0
                )

            wait_for(settled, 30, "both sides' metrics at 3000 records", logs)
            found = exporter.families()
            infos = {s.labels["role"]: s.labels for s in found["journal_replication_info"].samples}
            for side, pid in zip(sides, pids, strict=True):
                assert value(found, "journal_replication_up", **side) == 1
                assert value(found, "journal_replication_nats_connected", **side) == 1
                assert value(found, "journal_replication_messages_total", **side) >= 1
                assert value(found, "journal_replication_delay_seconds", **side) > 0
                assert infos[side["role"]] == {**side, "pid": pid, "host": socket.gethostname()}
            replicating, mirroring = sides
            assert value(found, "journal_replication_lag_records", **replicating) == 0
            assert value(found, "journal_replication_lag_seconds", **replicating) == 0
            assert value(found, "journal_replication_stream_sequence", **replicating) == value(
                found, "journal_replication_stream_sequence", **mirroring
            )
            assert value(found, "journal_replication_bytes_total", **replicating) == value(
                found, "journal_replication_bytes_total", **mirroring
            )
            assert value(found, "journal_replication_lag_seconds", **mirroring) == 0
            for name in (
                "gaps_total",
                "duplicates_total",
                "redeliveries_total",
                "rewinds_total",
                "skipped_records_total",
            ):
                assert value(found, f"journal_replication_{name}", **mirroring) == 0
            # The replicator reads the source as a registered reader, too.
            reader = {"journal": str(source), "reader": "replicate"}
            assert value(found, "journal_reader_records_total", **reader) == 3000
            top = subprocess.run(
                [
                    str(JOURNAL),
                    "top",
                    "--once",
                    "--interval",
                    "0.1",
                    str(source.parent),
                    str(copy.parent),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert top.returncode == 0, top.stderr
            lines = [line for line in top.stdout.splitlines() if " replication=" in line]
            assert len(lines) == 2, top.stdout
            assert all("records_total=3000" in line and "nats_state=1" in line for line in lines)
            owners = [re.search(r" owner=alive,pid=(\d+) ", line) for line in lines]
            assert [owner[1] if owner else None for owner in owners] == pids, lines
        finally:
            assert [run.terminate() for run in runs] == [0, 0]
        # Closed: the files stay with their last figures, their owners no longer up.
        for found in (exporter.families(), exposition(source.parent, copy.parent)):
            for side in sides:
                assert value(found, "journal_replication_up", **side) == 0
                assert value(found, "journal_replication_nats_connected", **side) == 0
                assert value(found, "journal_replication_records_total", **side) == 3000
        exporter.stop()
    finally:
        exporter.kill()


def _value(found: dict[str, Metric], name: str, labels: dict[str, str]) -> float | None:
    """The sample, None while there is none."""
    try:
        return value(found, name, **labels)
    except (AssertionError, KeyError):
        return None


def exposition(*roots: Path) -> dict[str, Metric]:
    """``journal metrics ROOT...`` printed once, parsed."""
    done = subprocess.run(
        [str(JOURNAL), "metrics", *map(str, roots)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return families(done.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replicate", "/etc/passwd", "--nats", "nats://127.0.0.1:1"], "is not a directory"),
        (["replicate", "j", "--nats", "127.0.0.1:4222"], "give a NATS URL"),
        (["replicate", "j", "--nats", "nats://127.0.0.1:1", "--creds", "/nope"], "does not exist"),
        (["replicate", "j", "--nats", "nats://127.0.0.1:1", "--stream", "a.b"], "stream name"),
        (["replicate", "j", "--nats", "nats://127.0.0.1:1", "--user", "u"], "go together"),
        (["replicate", "a/j", "b/j", "--nats", "nats://127.0.0.1:1"], "share a subject"),
        (["replicate", "j", "--nats", "nats://127.0.0.1:1", "--archive", "/nope"], "--archive"),
        (["mirror", "--nats", "nats://127.0.0.1:1", "--journal-root", "/etc/passwd"], "not a dir"),
        (["mirror", "--nats", "nats://127.0.0.1:1"], "--journal-root"),
        (["replicate", "j", "--nats", "nats://h:99999"], "give a NATS URL"),
        (["replicate", "j", "--nats", "http://h:4222"], "give a NATS URL"),
        (["replicate", "j", "--nats", "nats://h:1", "--max-batch-bytes", "infk"], "a size"),
        (["replicate", "j", "--nats", "nats://h:1", "--max-batch-bytes", "1e400"], "a size"),
        (["replicate", "j", "--nats", "nats://h:1", "--max-batch-bytes", "1e30"], "too large"),
        (["replicate", "f e", "--nats", "nats://127.0.0.1:1"], "stream name"),
        (["replicate", "j", "--nats", "nats://h:1", "--max-age", "5"], "--duplicate-window"),
        (
            ["mirror", "--nats", "nats://h:1", "--journal-root", "r", "--tls-key", "/etc/passwd"],
            "both",
        ),
        (["mirror", "--nats", "nats://h:1", "--journal-root", "r", "--tls-hostname", "h"], "TLS"),
    ],
)
def test_bad_arguments_are_said_in_one_line_with_status_2(
    shm_dir: Path, args: list[str], message: str
) -> None:
    done = subprocess.run(
        [str(JOURNAL), *args], capture_output=True, text=True, timeout=60, cwd=shm_dir
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_segments_tmpfs_dropped_are_replicated_from_the_archive(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """The compactor took most segments out of tmpfs before the replicator started:
    it reads them from the archive, and the mirror holds every record."""
    source, copy, archive = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed", shm_dir / "a"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror", "compact")]
    small = 64 * 1024
    writing = writer(source, 1, 3000, 0, small, logs[0]).start()
    assert writing.line() == b"done\n"
    archive.mkdir()
    compact = subprocess.run(
        [str(JOURNAL), "compact", "--once", "--keep", "1", "--archive", str(archive), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compact.returncode == 0, compact.stderr
    assert min(int(p.name[:8]) for p in source.glob("*.journal")) >= 5  # archived only
    runs = [
        replicate(nats_server.url, [source], logs[1], "--archive", str(archive)).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        wait_for(lambda: caught_up(source, copy), 60, "the mirror", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    with journal.Reader(source, archive=archive, metrics=False) as reader:
        expected = [(r.position, reader.record_bytes(r)) for r in reader.available()]
    assert len(expected) == 3000
    assert records_of(copy) == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server_options", "client_options"),
    [
        (("--user", "desk", "--pass", "s3cret"), ("--user", "desk", "--password", "s3cret")),
        (("--auth", "t0ken"), ("--token", "t0ken")),
    ],
    ids=["user", "token"],
)
def test_credentials_are_passed_to_nats(
    shm_dir: Path, tmp_path: Path, server_options: tuple[str, ...], client_options: tuple[str, ...]
) -> None:
    server = NatsServer(tmp_path / "nats-auth", extra=server_options)
    server.start()
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    try:
        writing = writer(source, 1, 500, 0, SEGMENT, logs[0]).start()
        assert writing.line() == b"done\n"
        runs = [
            replicate(server.url, [source], logs[1], *client_options).start(),
            mirror(server.url, copy.parent, logs[2], *client_options).start(),
        ]
        try:
            wait_for(lambda: caught_up(source, copy), 30, "the mirror", logs)
        finally:
            assert [run.terminate() for run in runs] == [0, 0]
        assert_mirrors(source, copy)
    finally:
        server.kill()


@pytest.mark.slow
def test_refused_credentials_are_said_and_stop(shm_dir: Path, tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats-auth", extra=("--auth", "t0ken"))
    server.start()
    try:
        for command in (
            ["replicate", str(shm_dir / "feed"), "--nats", server.url, "--token", "wrong"],
            ["mirror", "--nats", server.url, "--journal-root", str(shm_dir), "--token", "wrong"],
        ):
            done = subprocess.run(
                [str(JOURNAL), *command], capture_output=True, text=True, timeout=60
            )
            assert done.returncode in (1, 2), done.stderr
            assert "refused the credentials" in done.stderr and "Traceback" not in done.stderr
    finally:
        server.kill()


@pytest.mark.slow
def test_a_journal_recreated_while_the_replicator_was_down_is_finished_from_the_archive(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Down, the replicator missed the end of an incarnation (archived by the
    compactor when it was sealed) and the start of the next: at start it sends the
    rest of the old one, then the new one, each record once."""
    source, copy, archive = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed", shm_dir / "a"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror", "compact")]
    archive.mkdir()
    small = 64 * 1024
    assert writer(source, 1, 1000, 0, small, logs[0]).start().line() == b"done\n"
    run = replicate(nats_server.url, [source], logs[1], "--archive", str(archive)).start()
    wait_for(
        lambda: stream_records(nats_server.url, "journal.feed") == 1000,
        30,
        "the first 1000 books in the stream",
        logs,
    )
    assert run.terminate() == 0
    # While it is down: 1000 more books, sealed and archived, then the journal is
    # removed and written again.
    assert writer(source, 1001, 1000, 0, small, logs[0]).start().line() == b"done\n"
    with journal.Writer(source, segment_size=small) as sealing:
        sealing.close(seal=True)
    compact = subprocess.run(
        [str(JOURNAL), "compact", "--once", "--keep", "0", "--archive", str(archive), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compact.returncode == 0, compact.stderr
    shutil.rmtree(source)
    assert writer(source, 100_001, 500, 0, small, logs[0]).start().line() == b"done\n"
    runs = [
        replicate(nats_server.url, [source], logs[1], "--archive", str(archive)).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        wait_for(lambda: caught_up(source, copy), 60, "the mirror", logs)
    finally:
        assert [r.terminate() for r in runs] == [0, 0]
    runs_of_stream = asyncio.run(stream_runs(nats_server.url, "journal.feed"))
    incarnations = sorted({r.incarnation_ns for r in runs_of_stream})
    assert len(incarnations) == 2
    per_incarnation = [
        sum(r.records for r in runs_of_stream if r.incarnation_ns == i) for i in incarnations
    ]
    assert per_incarnation == [2000, 500]
    assert_mirrors(source, copy)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed (openssl)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make test certificates")
    ca_key, ca, key, request, certificate = (
        directory / name for name in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    for command in (
        f"req -x509 -newkey rsa:2048 -nodes -keyout {ca_key} -out {ca} -days 1 "
        "-subj /CN=journal-test-ca",
        f"req -newkey rsa:2048 -nodes -keyout {key} -out {request} -subj /CN=127.0.0.1",
        f"x509 -req -in {request} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {certificate} "
        f"-days 1 -extfile {extensions}",
    ):
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True)
    return ca, certificate, key


@pytest.mark.slow
def test_tls_options_are_passed_to_nats(shm_dir: Path, tmp_path: Path) -> None:
    ca, certificate, key = make_certificates(tmp_path)
    server = NatsServer(
        tmp_path / "nats-tls", extra=("--tls", "--tlscert", str(certificate), "--tlskey", str(key))
    )
    server.start()
    url = server.url.replace("nats://", "tls://")
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    try:
        assert writer(source, 1, 500, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        runs = [
            replicate(url, [source], logs[1], "--tls-ca", str(ca)).start(),
            mirror(url, copy.parent, logs[2], "--tls-ca", str(ca)).start(),
        ]
        try:
            wait_for(lambda: caught_up(source, copy), 30, "the mirror over TLS", logs)
        finally:
            assert [run.terminate() for run in runs] == [0, 0]
        assert_mirrors(source, copy)
    finally:
        server.kill()


@pytest.mark.slow
def test_a_sealed_segment_is_sealed_in_the_mirror_without_more_records(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """A writer that seals its segment and stops: the mirror seals its copy too (an
    empty run), so the mirror host's compactor can archive it."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1, 700, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    with journal.Writer(source) as sealing:
        sealing.close(seal=True)
    assert end_of(source) == (1, 4096)
    runs = [
        replicate(nats_server.url, [source], logs[1]).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        wait_for(lambda: copy.exists() and end_of(copy) == (1, 4096), 30, "the seal", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    assert_mirrors(source, copy)
    runs_of_stream = asyncio.run(stream_runs(nats_server.url, "journal.feed"))
    assert (runs_of_stream[-1].segment, runs_of_stream[-1].records) == (1, 0)


@pytest.mark.slow
def test_a_journal_the_mirror_did_not_make_is_never_removed(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(copy, 1, 10, 0, SEGMENT, logs[0]).start().line() == b"done\n"  # someone's
    theirs = records_of(copy)
    assert writer(source, 1001, 300, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    runs = [
        replicate(nats_server.url, [source], logs[1]).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        wait_for(lambda: "did not make" in logs[2].read_text(errors="replace"), 30, "refusal", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 1]  # the mirror says a copy stopped
    assert records_of(copy) == theirs


async def last_run(
    url: str, subject: str, stream: str = _scheme.DEFAULT_STREAM
) -> _scheme.Run | None:
    """The run of the subject's last message; None before there is one."""
    import nats
    import nats.js.errors

    nc = await nats.connect(url)
    try:
        try:
            message = await nc.jetstream().get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        return _scheme.parse_run(message.headers, len(message.data or b""))
    finally:
        await nc.close()


def stream_end(url: str, subject: str) -> tuple[int, int] | None:
    run = asyncio.run(last_run(url, subject))
    return None if run is None else (run.segment, run.end)


@pytest.mark.slow
def test_a_mirror_behind_a_large_backlog_catches_up(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """More than 200 MB in the stream before the mirror starts, in messages near the
    batch limit: its pull requests are bounded in bytes, so nats-server never finds
    it a slow consumer (dropped deliveries, a gap seen twice, the copy given up)."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("replicate", "mirror")]
    bids = [[1000.0 - 0.5 * i, 1.0 + i] for i in range(10)]
    asks = [[1000.5 + 0.5 * i, 1.0 + i] for i in range(10)]
    books = 600_000
    with journal.Writer(source, segment_size=64 << 20) as writer_:
        for i in range(books):
            writer_.append_orderbook("upbit", "BTC-KRW", i, i, bids, asks)
    assert sum(p.stat().st_size for p in source.iterdir()) > 200 << 20
    replicating = replicate(nats_server.url, [source], logs[0]).start()
    try:
        wait_for(
            lambda: stream_end(nats_server.url, "journal.feed") == end_of(source),
            120,
            "replicated",
            logs,
        )
        mirroring = mirror(nats_server.url, copy.parent, logs[1]).start()
        try:
            wait_for(lambda: caught_up(source, copy), 120, "the mirror caught up", logs)
        finally:
            assert mirroring.terminate() == 0
    finally:
        assert replicating.terminate() == 0
    assert "Slow Consumer" not in logs[1].read_text(errors="replace")
    assert len(records_of(copy)) == books
    assert_mirrors(source, copy)


@pytest.mark.slow
def test_two_journals_of_one_name_never_mix(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """/a/feed and /b/feed (two hosts, in effect) on one subject: the second
    replicator refuses, said once, exit status 1; the first goes on; the mirror holds
    the first's records only."""
    first, second, copy = shm_dir / "a" / "feed", shm_dir / "b" / "feed", shm_dir / "m" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "a", "b", "mirror")]
    assert writer(first, 1, 3000, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    assert writer(second, 50_001, 2000, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    replicating = replicate(nats_server.url, [first], logs[1]).start()
    mirroring = mirror(nats_server.url, copy.parent, logs[3]).start()
    try:
        wait_for(lambda: caught_up(first, copy), 30, "the first journal mirrored", logs)
        refused = replicate(nats_server.url, [second], logs[2]).start()
        assert refused.wait(30) == 1
        assert writer(first, 3001, 1000, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        wait_for(lambda: caught_up(first, copy), 30, "the first journal goes on", logs)
    finally:
        assert [run.terminate() for run in (replicating, mirroring)] == [0, 0]
    said = logs[2].read_text()
    assert said.count(f"not this one ({socket.gethostname()}:{second}") == 1, said
    assert_mirrors(first, copy)
    assert (
        f"source-journal: {socket.gethostname()}:{first}\n" in (copy / "mirror.source").read_text()
    )


async def subject_messages(url: str, subject: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(_scheme.DEFAULT_STREAM, subjects_filter=subject)
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


@pytest.mark.slow
def test_a_subject_the_stream_emptied_goes_on_where_it_was(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """--max-age drops every message of a quiet journal: the replicator goes on after
    its last message (not at --start again: with ``end``, the books between were
    lost, with ``beginning`` sent again); restarted with --start beginning, it
    sends the journal again cut at other boundaries, and the mirror appends what
    follows its copy only."""
    source, copy = shm_dir / "src" / "quiet", shm_dir / "mirror" / "quiet"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    subject = "journal.quiet"
    options = ("--max-age", "1", "--duplicate-window", "0.5", "--start", "beginning")

    def emptied() -> bool:
        return asyncio.run(subject_messages(nats_server.url, subject)) == 0

    assert writer(source, 1, 500, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    runs = [
        replicate(nats_server.url, [source], logs[1], *options).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        assert writer(source, 501, 300, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        wait_for(lambda: caught_up(source, copy), 30, "mirrored", logs)
        wait_for(emptied, 30, "the stream's max age", logs)
        assert writer(source, 801, 200, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        wait_for(lambda: caught_up(source, copy), 30, "going on after max age", logs)
        assert runs[0].terminate() == 0
        wait_for(emptied, 30, "the stream's max age again", logs)
        assert writer(source, 1001, 200, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        runs[0] = replicate(
            nats_server.url, [source], logs[1], "--start", "beginning", "--max-batch-bytes", "3k"
        ).start()
        wait_for(lambda: caught_up(source, copy), 30, "sent again from the beginning", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    assert "going on after the last message published" in logs[1].read_text()
    assert "sent again cut elsewhere" in logs[2].read_text()
    assert len(records_of(copy)) == 1200
    assert_mirrors(source, copy)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda h: h.update({"Journal-Segment": "-1"}), "not a journal's"),
        (lambda h: h.update({"Journal-Segment-Size": "100"}), "not a journal's"),
        (lambda h: h.update({"Journal-Payload": "OB"}), "not a journal's"),
        (lambda h: h.update({"Journal-Incarnation": "0"}), "not a journal's"),
        (lambda h: h.update({"Journal-Records": "-3"}), "not a journal's"),
    ],
)
def test_headers_out_of_range_are_refused(spoil: object, message: str) -> None:
    headers = _scheme.Run("upbit", 1, 0, 4096, 4104, 1, None, SEGMENT, b"OBK1", 5).headers()
    spoil(headers)  # type: ignore[operator]
    if "Journal-Segment" in headers and headers["Journal-Segment"] == "-1":
        headers["Nats-Msg-Id"] = "upbit:1:-1:4096:4104"
    if headers["Journal-Incarnation"] == "0":
        headers["Nats-Msg-Id"] = "upbit:0:0:4096:4104"
    with pytest.raises(_scheme.BadHeaders, match=message):
        _scheme.parse_run(headers, 8)


async def publish_bad_runs(url: str) -> None:
    """A run on another journal's subject, one where the mirror finds a file in place
    of its journal directory, and one that says 2 records and holds 1."""
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        record = records_of_one()
        for name, subject in (
            ("evil", "journal.evil"),
            ("other", "journal.feed"),
            ("file", "journal.file"),
            ("liar", "journal.liar"),
        ):
            records = 2 if name == "liar" else 1
            run = _scheme.Run(
                name, 5, 0, 4096, 4096 + len(record), records, None, SEGMENT, b"OBK1", 3
            )
            await js.publish(subject, record, headers=run.headers())
    finally:
        await nc.close()


def records_of_one() -> bytes:
    record = bytes(
        journal.OrderBookEncoder().encode(
            "upbit", "BTC-KRW", 1, 2, [[100.0, 1.0]], [[101.0, 1.0]], 3
        )
    )
    return record + bytes(F.align_record(len(record)) - len(record))


@pytest.mark.slow
def test_a_bad_message_stops_its_journal_only(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """A message on another journal's subject is refused; a journal the mirror
    cannot write (a file where its directory goes) stops, said once without a
    traceback; the other journals are mirrored."""
    source, root = shm_dir / "src" / "feed", shm_dir / "mirror"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    root.mkdir()
    (root / "file").write_text("hello\n")
    assert writer(source, 1, 300, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    replicating = replicate(nats_server.url, [source], logs[1]).start()
    wait_for(
        lambda: stream_end(nats_server.url, "journal.feed") == end_of(source), 30, "sent", logs
    )
    assert replicating.terminate() == 0
    asyncio.run(publish_bad_runs(nats_server.url))
    mirroring = mirror(nats_server.url, root, logs[2]).start()
    try:
        wait_for(lambda: caught_up(source, root / "feed"), 30, "the good journal", logs)
        wait_for(
            lambda: "file: mirror of this journal stopped" in logs[2].read_text(),
            30,
            "the bad one said",
            logs,
        )
    finally:
        assert mirroring.terminate() == 1
    said = logs[2].read_text()
    assert "Traceback" not in said
    assert "journal 'other' on subject journal.feed" in said
    assert "says 2 records, its payload does not hold that many whole frames: not written" in said
    assert records_of(root / "liar") == []  # checked before the commit
    assert_mirrors(source, root / "feed")


@pytest.mark.slow
def test_a_journal_the_mirror_did_not_make_is_never_taken_for_its_copy(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Someone's journal of the source's name, newer than the source's incarnation,
    under the journal root: the mirror neither appends to it nor takes the source's
    messages for duplicates; it says so, exit status 1."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1001, 300, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    assert writer(copy, 1, 5, 0, SEGMENT, logs[0]).start().line() == b"done\n"  # newer
    theirs = records_of(copy)
    runs = [
        replicate(nats_server.url, [source], logs[1]).start(),
        mirror(nats_server.url, copy.parent, logs[2]).start(),
    ]
    try:
        wait_for(lambda: "did not make" in logs[2].read_text(errors="replace"), 30, "refusal", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 1]
    assert records_of(copy) == theirs
    assert not (copy / "mirror.source").exists()


async def delete_messages(url: str, sequences: range) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        for sequence in sequences:
            await nc.jetstream().delete_msg(_scheme.DEFAULT_STREAM, sequence)
    finally:
        await nc.close()


@pytest.mark.slow
def test_messages_a_new_copy_cannot_start_with_are_said(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """The stream lost a journal's first messages: a new copy starts at the next
    segment start, and the messages skipped before it are said (once, then summed)."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1, 3000, 0, 65536, logs[0]).start().line() == b"done\n"
    replicating = replicate(nats_server.url, [source], logs[1], "--max-batch-bytes", "4k").start()
    try:
        wait_for(
            lambda: stream_end(nats_server.url, "journal.feed") == end_of(source), 30, "sent", logs
        )
        asyncio.run(delete_messages(nats_server.url, range(1, 3)))
        mirroring = mirror(nats_server.url, copy.parent, logs[2]).start()
        try:
            wait_for(lambda: caught_up(source, copy), 30, "the copy from segment 1", logs)
        finally:
            assert mirroring.terminate() == 0
    finally:
        assert replicating.terminate() == 0
    said = logs[2].read_text()
    assert said.count("does not start a segment") == 1, said
    assert said.count("the copy starts after") == 1, said
    expected = [r for r in records_of(source) if r[0][0] >= 1]
    assert records_of(copy) == expected
    figures = read_replication_metrics(copy / "mirror.metrics")
    assert figures is not None
    # What the stream still held of segment 0 (the two messages deleted never came).
    said_skipped = re.search(r"the copy starts after \d+ messages \((\d+) records", said)
    assert said_skipped is not None
    skipped = int(said_skipped[1])
    assert figures[Word.SKIPPED_RECORDS_TOTAL] == skipped
    assert 0 < skipped < len(records_of(source)) - len(expected)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--replicas", "3"), "NATS refused stream"),
        (("--max-batch-bytes", "2m"), "more than NATS takes in a message"),
    ],
)
def test_what_nats_refuses_is_said_not_retried(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
    options: tuple[str, ...],
    message: str,
) -> None:
    """A stream configuration the server refuses stops the replicator (status 1), said
    with the server's reason; a batch size above the server's max_payload is lowered
    to it at start, so that books still go through."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1, 3000, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    replicating = replicate(nats_server.url, [source], logs[1], *options).start()
    if options[0] == "--replicas":
        assert replicating.wait(30) == 1
    else:
        mirroring = mirror(nats_server.url, copy.parent, logs[2]).start()
        try:
            wait_for(lambda: caught_up(source, copy), 30, "mirrored", logs)
        finally:
            assert [run.terminate() for run in (replicating, mirroring)] == [0, 0]
        assert_mirrors(source, copy)
    said = logs[1].read_text()
    assert message in said and "Traceback" not in said, said


@pytest.mark.slow
def test_sigterm_while_connecting_stops_at_once(shm_dir: Path) -> None:
    """A NATS server that never answers: SIGTERM ends both commands, status 0."""
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    port.listen(16)
    port.settimeout(0.01)
    url = f"nats://127.0.0.1:{port.getsockname()[1]}"  # accepts, never says INFO
    logs = [shm_dir / "replicate.log", shm_dir / "mirror.log"]
    accepted: list[socket.socket] = []

    def connecting() -> bool:
        with contextlib.suppress(TimeoutError):
            accepted.append(port.accept()[0])
            return True
        return False

    runs = [replicate(url, [shm_dir / "feed"], logs[0]).start()]
    try:
        wait_for(connecting, 30, "the replicator connecting", logs)
        runs.append(mirror(url, shm_dir / "mirror", logs[1]).start())
        wait_for(connecting, 30, "the mirror connecting", logs)
        started = time.monotonic()
        assert [run.terminate() for run in runs] == [0, 0]
        assert time.monotonic() - started < 5
    finally:
        for connection in accepted:
            connection.close()
        port.close()
        for run in runs:
            run.kill()


@pytest.mark.slow
def test_one_journal_that_fails_does_not_stop_the_others(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Journal b's subject holds another source's b: b stops, said; a goes on being
    replicated; the process says at its end that one failed (status 1)."""
    other, a, b = shm_dir / "x" / "b", shm_dir / "y" / "a", shm_dir / "y" / "b"
    copy = shm_dir / "mirror" / "a"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "other", "replicate", "mirror")]
    for path, first in ((other, 1), (a, 1001), (b, 5001)):
        assert writer(path, first, 200, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    first = replicate(nats_server.url, [other], logs[1]).start()
    wait_for(lambda: stream_end(nats_server.url, "journal.b") == end_of(other), 30, "b", logs)
    assert first.terminate() == 0
    runs = [
        replicate(nats_server.url, [a, b], logs[2]).start(),
        mirror(nats_server.url, copy.parent, logs[3]).start(),
    ]
    try:
        wait_for(lambda: "b: replication stopped" in logs[2].read_text(), 30, "b stopped", logs)
        assert writer(a, 1201, 300, 0, SEGMENT, logs[0]).start().line() == b"done\n"
        wait_for(lambda: caught_up(a, copy), 30, "a goes on", logs)
    finally:
        assert [run.terminate() for run in runs] == [1, 0]
    assert_mirrors(a, copy)


@pytest.mark.slow
def test_books_deeper_than_the_default_levels_are_mirrored(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """A source written with max_levels=100: its copy takes its books as they are."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("replicate", "mirror")]
    bids = [[1000.0 - 0.5 * i, 1.0 + i] for i in range(100)]
    asks = [[1000.5 + 0.5 * i, 1.0 + i] for i in range(100)]
    with journal.Writer(source, segment_size=SEGMENT, max_levels=100) as writer_:
        for i in range(500):
            writer_.append_orderbook("upbit", "BTC-KRW", i, i, bids, asks)
    runs = [
        replicate(nats_server.url, [source], logs[0]).start(),
        mirror(nats_server.url, copy.parent, logs[1]).start(),
    ]
    try:
        wait_for(lambda: caught_up(source, copy), 30, "mirrored", logs)
    finally:
        assert [run.terminate() for run in runs] == [0, 0]
    assert_mirrors(source, copy)


def test_a_mirrors_lag_is_left_out_before_it_measured_it_and_once_stale() -> None:
    """The exporter and journal top show a mirror's lag only while it is of now."""
    now = time.time_ns()

    def figures(role: Role, checked: int) -> ReplicationFigures:
        words = dict.fromkeys(Word, 0) | {
            Word.LAG_CHECKED_NS: checked,
            Word.LAG_RECORDS: 7,
            Word.LAG_NS: 900,
        }
        return ReplicationFigures(Path("m"), role, 1, "h", 0, "S", True, words)

    assert figures(Role.MIRROR, now - 1_000_000_000).mirror_lag(now) == (7, 900)
    assert figures(Role.MIRROR, 0).mirror_lag(now) is None  # never measured
    assert figures(Role.MIRROR, now - MIRROR_LAG_STALE_NS - 1).mirror_lag(now) is None
    assert figures(Role.REPLICATE, now).mirror_lag(now) is None


def test_a_message_a_new_copy_skips_is_counted_once(shm_dir: Path) -> None:
    """Delivered again (a rewind while the copy cannot start yet), it is not counted
    again among the records skipped."""
    source = shm_dir / "feed"
    records = small_journal(source, 6)
    copy = MirrorJournal(shm_dir / "mirror", "feed", NoMirrorStats())
    later = run_of(source, records[2:5], 2)  # not at a segment's start
    assert [copy.apply(later, _payload(records[2:5])) for _ in range(3)] == ["skipped"] * 3
    assert copy.skipped[:2] == [1, 3]
    assert not (shm_dir / "mirror" / "feed").exists()


@pytest.mark.slow
def test_a_stop_during_a_rewind_stops_the_mirror_at_once(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """SIGTERM while the consumer is being made again: the mirror ends then, not when
    the new pull request expires (nor never, if the server went away meanwhile)."""

    async def scenario() -> float:
        nats_options = NatsOptions(servers=(nats_server.url,))
        stream = StreamOptions()
        nc = await nats.connect(nats_server.url)
        await ensure_stream(nc.jetstream(), stream)
        await nc.close()
        mirroring = Mirror(shm_dir / "mirror", nats_options, stream, ConsumerOptions(expires_s=60))
        stop = asyncio.Event()
        task = asyncio.create_task(mirroring.run(stop))
        deadline = time.monotonic() + 10
        while mirroring._sub is None:  # subscribed: the first consumer is made
            assert time.monotonic() < deadline, "the mirror never subscribed"
            await asyncio.sleep(0.01)
        add_consumer = mirroring.js.add_consumer

        async def stopped_meanwhile(*args: object, **kwargs: object) -> object:
            stop.set()  # as SIGTERM's handler does, while the rewind waits on the server
            return await add_consumer(*args, **kwargs)

        mirroring.js.add_consumer = stopped_meanwhile
        mirroring._rewind_wanted = True
        mirroring._wake()
        started = time.monotonic()
        assert await asyncio.wait_for(task, 30) == 0
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5  # the pull asked for 60 s


def test_each_mirror_has_a_consumer_of_its_own_by_default(tmp_path: Path) -> None:
    """Named after the host and the journal root: the same for every restart, another
    for another root (one consumer's messages are shared by the mirrors pulling it)."""
    first = _scheme.default_durable(tmp_path / "mirror")
    assert first == _scheme.default_durable(tmp_path / "mirror")
    assert first != _scheme.default_durable(tmp_path / "other")
    assert _scheme.check_stream(first) == first and first.startswith("mirror-")


@pytest.mark.slow
def test_a_mirror_of_a_prefix_its_stream_does_not_hold_stops_and_says_so(
    shm_dir: Path,
    nats_server: NatsServer,  # noqa: F811
) -> None:
    """Not a consumer of nothing, silently: exit 1, naming what the stream holds."""
    source = shm_dir / "src" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1, 10, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    replicating = replicate(nats_server.url, [source], logs[1]).start()
    try:
        wait_for(lambda: "starting at" in logs[1].read_text(), 30, "the stream", logs)
        wrong = mirror(
            nats_server.url, shm_dir / "mirror", logs[2], "--subject-prefix", "journal.tokyo"
        ).start()
        assert wrong.wait(30) == 1
    finally:
        assert replicating.terminate() == 0
    said = logs[2].read_text()
    assert "holds subjects ['journal.*'], not journal.tokyo.*" in said, said
    assert "Traceback" not in said
