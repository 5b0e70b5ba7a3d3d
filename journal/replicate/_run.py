"""The ``journal replicate`` and ``journal mirror`` commands: arguments and startup.

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
import urllib.parse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from journal._arguments import positive_int, positive_number
from journal._errors import JournalError
from journal._reader import IDLE_STRATEGIES
from journal.replicate import _scheme
from journal.replicate._nats import (
    ConnectionState,
    NatsOptions,
    Stopped,
    StreamOptions,
    UsageError,
    connect,
    ensure_stream,
    import_nats,
    shown,
)

HEADROOM = 16 * 1024
"""Kept below NATS's message size limit for the headers."""

log = logging.getLogger("journal.replicate")


def _urls(text: str) -> list[str]:
    urls = [url.strip() for url in text.split(",") if url.strip()]
    for url in urls:
        try:
            parsed = urllib.parse.urlsplit(url)
            port = parsed.port
        except ValueError:
            parsed, port = None, None
        if (
            parsed is None
            or parsed.scheme not in ("nats", "tls", "ws", "wss")
            or not parsed.hostname
            or (port is not None and not 0 < port < 65536)
        ):
            raise argparse.ArgumentTypeError(
                f"{shown(url)!r}: give a NATS URL such as nats://127.0.0.1:4222 (tls:// for TLS)"
            )
    if not urls:
        raise argparse.ArgumentTypeError(f"{text!r}: no NATS URL")
    return urls


def _checked(check: Callable[[str], str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _byte_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    number, unit = (text[:-1], units[text[-1].lower()]) if text[-1:].lower() in units else (text, 1)
    try:
        value = int(float(number) * unit)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r}: a size such as 512k, 64m or 10g") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give more than 0")
    if value >= 1 << 62:
        raise argparse.ArgumentTypeError(f"{text!r}: too large")
    return value


ENVIRONMENT = {
    "nats": "NATS_URL",
    "user": "NATS_USER",
    "password": "NATS_PASSWORD",
    "token": "NATS_TOKEN",
    "creds": "NATS_CREDS",
    "nkey": "NATS_NKEY",
}
"""The default of each option: the variables the official ``nats`` CLI reads (and
NATS_TOKEN, which it does not: it takes a token as a NATS_USER without a password), so
that a host set up for it is set up for these commands. A secret in the environment is
readable by its process's user and root only (/proc/PID/environ is mode 0400); one on
the command line, by every user of the host (/proc/PID/cmdline)."""

SECRET_FILE_LIMIT = 64 * 1024
"""More than this in a --password-file or --token-file is not a secret (/dev/zero, a
log file given by mistake): refused rather than read forever."""


def add_nats_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "NATS",
        "An option not given is taken from its variable (NATS_URL, NATS_USER, NATS_PASSWORD, "
        "NATS_TOKEN, NATS_CREDS, NATS_NKEY). Give secrets in a file or a "
        "variable: every user of the host can read the command line.",
    )
    group.add_argument(
        "--nats",
        type=_urls,
        action="extend",
        metavar="URL[,URL...]",
        help="NATS server URL(s); several (comma-separated or repeated) for failover, "
        "e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222 (default: $NATS_URL)",
    )
    group.add_argument(
        "--stream",
        type=_checked(_scheme.check_stream),
        default=_scheme.DEFAULT_STREAM,
        help=f"the JetStream stream (default {_scheme.DEFAULT_STREAM})",
    )
    group.add_argument(
        "--subject-prefix",
        type=_checked(_scheme.check_subject_prefix),
        default=_scheme.DEFAULT_SUBJECT_PREFIX,
        metavar="PREFIX",
        help="journal NAME goes to subject PREFIX.NAME (default "
        f"{_scheme.DEFAULT_SUBJECT_PREFIX}; docs/REPLICATION.md)",
    )
    group.add_argument(
        "--user", metavar="NAME", help="NATS user, with a password (default: $NATS_USER)"
    )
    group.add_argument(
        "--password",
        metavar="PASS",
        help="NATS password; every user of the host can read it in the process list: "
        "use --password-file or $NATS_PASSWORD instead",
    )
    group.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="the NATS password is this file's content, less one trailing newline",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help="NATS authentication token; every user of the host can read it in the process "
        "list: use --token-file or $NATS_TOKEN instead",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="the NATS token is this file's content, less one trailing newline",
    )
    group.add_argument(
        "--creds",
        type=Path,
        metavar="FILE",
        help="a NATS .creds file (JWT, NKey; default: $NATS_CREDS)",
    )
    group.add_argument(
        "--nkey", type=Path, metavar="FILE", help="a NATS NKey seed file (default: $NATS_NKEY)"
    )
    group.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA certificates for TLS")
    group.add_argument("--tls-cert", type=Path, metavar="FILE", help="client certificate (mTLS)")
    group.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    group.add_argument("--tls-hostname", metavar="NAME", help="the server name TLS expects")
    parser.add_argument(
        "--duration",
        type=positive_number,
        metavar="SECONDS",
        help="stop after this long (default: until SIGINT or SIGTERM)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens in detail")


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
        return tuple(_urls(text))
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
            raise UsageError(f"{setting.where} {setting.value} {what}")
    if user is None and password is not None:
        raise UsageError(
            f"--user and --password go together: {password.where} gives a password without "
            "a user; give --user NAME or set NATS_USER"
        )
    if user is not None and password is None:
        raise UsageError(
            f"--user and --password go together: {user.where} gives a user without a "
            "password; give --password-file FILE or set NATS_PASSWORD"
        )
    if user is not None and token is not None:
        # nats-py would send the user and drop the token without a word.
        variables = [s.where for s in (user, token) if s.where in ENVIRONMENT.values()]
        unset = f" (unset {' or '.join(variables)})" if variables else ""
        raise UsageError(
            f"a user ({user.where}) and a token ({token.where}): NATS authenticates with one "
            f"of them; give one{unset}"
        )
    if args.tls_key is not None and args.tls_cert is None:
        raise UsageError("--tls-key is the key of --tls-cert: give both")
    if args.tls_hostname is not None and args.tls_ca is None and args.tls_cert is None:
        raise UsageError("--tls-hostname applies to TLS made with --tls-ca or --tls-cert")

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


def add_replicate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "journals",
        metavar="JOURNAL",
        nargs="+",
        type=Path,
        help="journal directories to replicate, e.g. /dev/shm/books/upbit (one need not "
        "exist yet: its writer creates it)",
    )
    add_nats_arguments(parser)
    parser.add_argument(
        "--archive",
        type=Path,
        metavar="DIR",
        help="the compactor's archive root: segments tmpfs no longer holds are read from it",
    )
    parser.add_argument(
        "--start",
        choices=("beginning", "end"),
        default="beginning",
        help="where a journal with nothing in the stream yet starts (default beginning; "
        "after that, always right after its last message in the stream)",
    )
    parser.add_argument(
        "--idle",
        choices=IDLE_STRATEGIES,
        default="futex",
        help="how a reader waits for records (default futex: woken by the writer)",
    )
    stream = parser.add_argument_group("batching")
    stream.add_argument(
        "--max-batch-bytes",
        type=_byte_size,
        default=512 * 1024,
        metavar="SIZE",
        help="largest message (default 512k; below the server's max_payload, 1m by default)",
    )
    stream.add_argument(
        "--max-batch-delay",
        type=positive_number,
        default=0.001,
        metavar="SECONDS",
        help="a batch ships at most this long after its first record (default 0.001); a "
        "journal with nothing more to read ships at once",
    )
    stream.add_argument(
        "--max-batch-records",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N records a message (default: no limit; 1 = one book per message)",
    )
    created = parser.add_argument_group("the stream, if it has to be created")
    created.add_argument(
        "--replicas", type=positive_int, default=1, help="JetStream replicas (1..5; default 1)"
    )
    created.add_argument(
        "--max-age",
        type=positive_number,
        default=0.0,
        metavar="SECONDS",
        help="drop messages older than this (default: no limit)",
    )
    created.add_argument(
        "--max-bytes",
        type=_byte_size,
        default=None,
        metavar="SIZE",
        help="drop the oldest messages past this size (default: no limit)",
    )
    created.add_argument(
        "--duplicate-window",
        type=positive_number,
        default=120.0,
        metavar="SECONDS",
        help="how long JetStream remembers message ids (default 120)",
    )


def add_mirror_arguments(parser: argparse.ArgumentParser) -> None:
    add_nats_arguments(parser)
    parser.add_argument(
        "--journal-root",
        type=Path,
        required=True,
        metavar="DIR",
        help="one mirror journal per source journal under DIR (DIR/<name>), e.g. /dev/shm/mirror",
    )
    parser.add_argument(
        "--durable",
        default="mirror",
        type=_checked(_scheme.check_stream),
        metavar="NAME",
        help="the durable consumer's name (default mirror): one per mirror host",
    )


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
        ConsumerOptions(durable=args.durable),
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
