"""The ``journal replicate`` and ``journal mirror`` commands: their options resolved
(journal.replicate._arguments defines them) and startup.

Startup refuses what cannot work before anything connects (a journal path that is not
a directory, a bad stream or subject name, a NATS URL without a scheme: exit 2). Then
they run until SIGINT/SIGTERM or ``--duration``; a journal that cannot go on (its
source gone past the archive, a copy the stream can no longer fill) is said and makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from journal._errors import JournalError
from journal.replicate import _scheme
from journal.replicate._arguments import ENVIRONMENT, SECRET_FILE_LIMIT, parse_urls
from journal.replicate._nats import (
    ConnectionState,
    NatsOptions,
    Stopped,
    StreamOptions,
    UsageError,
    connect,
    ensure_stream,
    import_nats,
)

HEADROOM = 16 * 1024
"""Kept below NATS's message size limit for the headers."""

log = logging.getLogger("journal.replicate")


@dataclasses.dataclass(frozen=True)
class _Given:
    """A setting and where it came from (``--token-file /etc/nats/token``,
    ``NATS_USER``): an error names where to fix it, never the secret itself."""

    value: str
    where: str


def _given(args: argparse.Namespace, option: str) -> _Given | None:
    """``--OPTION`` if given, else its variable. An empty variable counts as unset, as
    ``NATS_TOKEN= journal mirror ...`` means in a shell."""
    value = getattr(args, option)
    if value is not None:
        return _Given(str(value), f"--{option}")
    variable = ENVIRONMENT[option]
    text = os.environ.get(variable)
    return _Given(text, variable) if text else None


def _secret(args: argparse.Namespace, option: str) -> _Given | None:
    """``--OPTION``, ``--OPTION-file`` or ``NATS_OPTION``, the first given; the two
    options together are refused, since either could be the one meant."""
    text, path = getattr(args, option), getattr(args, f"{option}_file")
    if text is not None and path is not None:
        raise UsageError(
            f"--{option} and --{option}-file {path} both give the {option}: give "
            f"--{option}-file alone (other users of the host can read --{option})"
        )
    if path is not None:
        where = f"--{option}-file {path}"
        return _Given(_read_secret(path, where, option), where)
    return _given(args, option)


def _read_secret(path: Path, where: str, what: str) -> str:
    """The file's content less one trailing newline, LF or CRLF (``echo TOKEN > FILE``
    writes one that is no part of the secret). Any readable file will do, a pipe too
    (``--token-file <(pass show nats)``)."""
    try:
        with path.open("rb") as file:
            data = file.read(SECRET_FILE_LIMIT + 1)
    except FileNotFoundError:
        raise UsageError(f"{where} does not exist: give the file that holds the {what}") from None
    except IsADirectoryError:
        raise UsageError(f"{where} is a directory: give the file that holds the {what}") from None
    except OSError as error:
        raise UsageError(
            f"{where} cannot be read ({error.strerror}): give a file this user can read"
        ) from None
    if len(data) > SECRET_FILE_LIMIT:
        raise UsageError(
            f"{where} holds more than {SECRET_FILE_LIMIT} bytes: give the file that holds "
            f"the {what} alone"
        )
    data = data.removesuffix(b"\n").removesuffix(b"\r") if data.endswith(b"\n") else data
    if not data:
        raise UsageError(f"{where} is empty: write the {what} in it")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UsageError(f"{where} is not UTF-8 text: write the {what} in it as text") from None


def _servers(args: argparse.Namespace) -> tuple[str, ...]:
    """``--nats``, else ``NATS_URL`` (parsed as ``--nats`` is, its errors naming it)."""
    if args.nats is not None:
        return tuple(args.nats)
    text = os.environ.get(ENVIRONMENT["nats"])
    if not text:
        raise UsageError(
            "no NATS server: give --nats URL (e.g. nats://127.0.0.1:4222) or set NATS_URL"
        )
    try:
        return tuple(parse_urls(text))
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"NATS_URL {error}; or give --nats URL") from None


def nats_options(args: argparse.Namespace, name: str) -> NatsOptions:
    """The options, their variables and secret files resolved: everything a deployer
    can get wrong is said here, before anything connects (exit status 2)."""
    servers = _servers(args)
    user = _given(args, "user")
    password = _secret(args, "password")
    token = _secret(args, "token")
    paths = {option: _given(args, option) for option in ("creds", "nkey")}
    for option in ("tls_ca", "tls_cert", "tls_key"):
        value = getattr(args, option)
        given = f"--{option.replace('_', '-')}"
        paths[option] = None if value is None else _Given(str(value), given)
    for setting in paths.values():
        if setting is not None and not Path(setting.value).is_file():
            what = "is not a file" if Path(setting.value).exists() else "does not exist"
            raise UsageError(f"{setting.where} {setting.value} {what}: give the file's path")
    if user is not None and token is not None:
        # nats-py would send the user and drop the token without a word.
        variables = [s.where for s in (user, token) if s.where in ENVIRONMENT.values()]
        unset = f" (unset {' or '.join(variables)})" if variables else ""
        raise UsageError(
            f"a user ({user.where}) and a token ({token.where}): NATS authenticates with one "
            f"of them; give one{unset}"
        )
    if user is None and password is not None:
        raise UsageError(
            f"--user and --password go together: {password.where} gives a password without "
            "a user; give --user NAME or set NATS_USER"
        )
    if user is not None and password is None:
        # The nats CLI reads a NATS_USER without a password as a token: say where it goes.
        token_too = (
            "; a token (as the nats CLI takes a NATS_USER alone) goes in NATS_TOKEN or --token-file"
            if user.where == ENVIRONMENT["user"]
            else ""
        )
        raise UsageError(
            f"--user and --password go together: {user.where} gives a user without a "
            f"password; give --password-file FILE or set NATS_PASSWORD{token_too}"
        )
    if args.tls_key is not None and args.tls_cert is None:
        raise UsageError("--tls-key is the key of --tls-cert: give both")
    tls = (
        args.tls_ca or args.tls_cert or any(url.startswith(("tls://", "wss://")) for url in servers)
    )
    if args.tls_hostname is not None and not tls:
        raise UsageError("--tls-hostname applies to TLS: a tls:// URL, --tls-ca or --tls-cert")

    def path(option: str) -> Path | None:
        setting = paths[option]
        return None if setting is None else Path(setting.value)

    return NatsOptions(
        servers=servers,
        name=name,
        user=None if user is None else user.value,
        password=None if password is None else password.value,
        token=None if token is None else token.value,
        creds=path("creds"),
        nkey_seed=path("nkey"),
        tls_ca=path("tls_ca"),
        tls_cert=path("tls_cert"),
        tls_key=path("tls_key"),
        tls_hostname=args.tls_hostname,
    )


def _checked_nats_options(args: argparse.Namespace, command: str) -> NatsOptions | None:
    """The connection options, or None once what is wrong with them (or a missing
    nats-py) is said on stderr (the command's exit status 2)."""
    try:
        options = nats_options(args, command)
        import_nats()
    except UsageError as error:
        print(f"{command}: {error}", file=sys.stderr)
        return None
    return options


def _logging(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop where it is installed (the replicate extra brings it:
    it takes about a third off each message's round trip through the loop), else on
    asyncio's own loop; ``JOURNAL_ASYNCIO_LOOP=1`` forces the latter."""
    if not os.environ.get("JOURNAL_ASYNCIO_LOOP"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)  # type: ignore[no-any-return]
    return asyncio.run(main)


async def _until_stopped(stop: asyncio.Event, duration: float | None) -> None:
    """Set ``stop`` at SIGINT/SIGTERM or after ``duration``; a second signal ends at once."""
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        if stop.is_set():
            raise SystemExit(130)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping)
    if duration is not None:
        loop.call_later(duration, stop.set)


def run_replicate(args: argparse.Namespace) -> int:
    from journal.replicate._metrics import ReplicatorStats
    from journal.replicate._replicator import BatchLimits, JournalReplicator, Replication

    for path in args.journals:
        if path.exists() and not path.is_dir():
            print(f"journal replicate: {path} is not a directory (a journal is)", file=sys.stderr)
            return 2
    names = [path.name for path in args.journals]
    if len(set(names)) != len(names):
        print(
            "journal replicate: two journals of one name would share a subject: "
            + ", ".join(sorted({n for n in names if names.count(n) > 1})),
            file=sys.stderr,
        )
        return 2
    for path in args.journals:
        try:
            _scheme.subject(args.subject_prefix, path.name)
        except ValueError as error:
            print(f"journal replicate: {path}: {error}", file=sys.stderr)
            return 2
    if args.max_age and args.max_age < args.duplicate_window:
        print(
            f"journal replicate: --max-age {args.max_age:g} is shorter than "
            f"--duplicate-window {args.duplicate_window:g} (JetStream refuses that stream): "
            "give a --duplicate-window of at most the max age",
            file=sys.stderr,
        )
        return 2
    if args.archive is not None and not args.archive.is_dir():
        print(f"journal replicate: --archive {args.archive} is not a directory", file=sys.stderr)
        return 2
    options = _checked_nats_options(args, "journal replicate")
    if options is None:
        return 2
    _logging(args)
    stream = StreamOptions(
        name=args.stream,
        subject_prefix=args.subject_prefix,
        replicas=args.replicas,
        max_age_s=args.max_age,
        max_bytes=args.max_bytes or -1,
        duplicate_window_s=args.duplicate_window,
        max_message_bytes=args.max_batch_bytes,
    )
    limits = BatchLimits(
        max_bytes=args.max_batch_bytes,
        max_delay_s=args.max_batch_delay,
        max_records=args.max_batch_records or 0,
    )

    async def main() -> int:
        stop = asyncio.Event()
        await _until_stopped(stop, args.duration)
        state = ConnectionState()
        try:
            nc = await connect(options, state, stop)
        except Stopped:
            return 0
        stats = []
        try:
            js = nc.jetstream(timeout=5.0)
            try:
                info = await ensure_stream(js, stream, stop)
            except Stopped:
                return 0
            largest = (
                min(
                    nc.max_payload or limits.max_bytes,
                    (info.config.max_msg_size or 0)
                    if (info.config.max_msg_size or 0) > 0
                    else 1 << 62,
                )
                - HEADROOM
            )
            if limits.max_bytes > largest:
                log.warning(
                    "--max-batch-bytes %d is more than NATS takes in a message (server "
                    "max_payload %d, stream %s max_msg_size %s): messages of at most %d bytes",
                    limits.max_bytes,
                    nc.max_payload,
                    stream.name,
                    info.config.max_msg_size,
                    largest,
                )
            batch = dataclasses.replace(limits, max_bytes=max(min(limits.max_bytes, largest), 8))
            replicators = []
            for path in args.journals:
                journal_stats = ReplicatorStats.create(path, state, stream.name)
                stats.append(journal_stats)
                replicators.append(
                    JournalReplicator(
                        path,
                        js,
                        stream,
                        archive=args.archive,
                        limits=batch,
                        start=args.start,
                        idle=args.idle,
                        stats=journal_stats,
                    )
                )

            async def tick() -> None:
                while True:
                    await asyncio.sleep(0.5)
                    for journal_stats in stats:
                        journal_stats.tick()

            ticking = asyncio.create_task(tick())
            try:
                return await Replication(replicators).run(stop)
            finally:
                ticking.cancel()
        finally:
            for journal_stats in stats:
                journal_stats.close()
            await state.close(nc)

    try:
        return _run_loop(main())
    except JournalError as error:  # credentials or a stream configuration NATS refuses
        log.error("replication stopped: %s", error)
        return 1


def run_mirror(args: argparse.Namespace) -> int:
    from journal.replicate._metrics import MirrorStats
    from journal.replicate._mirror import ConsumerOptions, Mirror

    root = args.journal_root
    if root.exists() and not root.is_dir():
        print(f"journal mirror: --journal-root {root} is not a directory", file=sys.stderr)
        return 2
    options = _checked_nats_options(args, "journal mirror")
    if options is None:
        return 2
    _logging(args)
    stream = StreamOptions(name=args.stream, subject_prefix=args.subject_prefix)
    stats = MirrorStats(root, stream.name)
    mirror = Mirror(
        root,
        options,
        stream,
        ConsumerOptions(durable=args.durable or _scheme.default_durable(root)),
        stats=stats,
    )

    async def main() -> int:
        stop = asyncio.Event()
        await _until_stopped(stop, args.duration)
        return await mirror.run(stop)

    try:
        return _run_loop(main())
    except JournalError as error:  # a copy that cannot be written (tmpfs full, say)
        log.error("mirror stopped: %s", error)
        return 1
    finally:
        stats.close()
