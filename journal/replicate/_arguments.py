"""The ``journal replicate`` and ``journal mirror`` command lines: their arguments.

Apart from the commands themselves (journal.replicate._run) so that building the
``journal`` parser, for any command, imports neither asyncio nor nats-py.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from journal._arguments import positive_int, positive_number
from journal._reader import IDLE_STRATEGIES
from journal.replicate import _scheme
from journal.replicate._urls import shown


def parse_urls(text: str) -> list[str]:
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
        type=parse_urls,
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
        "--replicas",
        type=int,
        choices=range(1, 6),
        default=1,
        metavar="N",
        help="JetStream replicas, 1 to 5 (default 1)",
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
        type=_checked(_scheme.check_stream),
        metavar="NAME",
        help="the durable consumer's name (default: mirror-HOST-XXXXXXXX, of this host "
        "and the --journal-root: the same for every restart of this mirror, another for "
        "any other); two mirrors given one name share its messages and neither copy is "
        "whole",
    )
