"""The NATS side: connection options as a deployer gives them, and the stream.

nats-py is asyncio: the replicator's tasks and the mirror run on the loop of their
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journal._errors import JournalError
from journal.replicate import _scheme
from journal.replicate._urls import shown

log = logging.getLogger("journal.nats")


def _host_port(url: Any) -> str:
    """``host:port`` of a parsed URL (nats-py's ``connected_url``), no credentials."""
    if url is None or not url.hostname:
        return ""
    return f"{url.hostname}:{url.port}" if url.port else str(url.hostname)


def _said(failures: int, every: int = 20) -> bool:
    """Whether the ``failures``-th failure in a row is said: the first and every
    ``every``-th (the others are debug lines: an outage is a line now and then, not
    thousands)."""
    return failures == 1 or failures % every == 0


class UsageError(ValueError):
    """An argument that cannot work, said before anything connects (exit status 2)."""


def import_nats() -> Any:
    """nats-py, or an error that says how to install it (the ``replicate`` extra)."""
    try:
        import nats
        import nats.js.api
        import nats.js.errors
    except ImportError as error:
        raise UsageError(
            f"needs nats-py, which is not installed ({error}): pip install "
            "'orderbook-journal[replicate]'"
        ) from None
    return nats


@dataclass(frozen=True)
class NatsOptions:
    """How to reach NATS: every server URL (the client fails over between them), and
    credentials or TLS passed to nats-py as they are."""

    servers: tuple[str, ...]
    name: str = "journal"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    creds: Path | None = None
    """A .creds file (JWT and NKey seed), nats-py's ``user_credentials``."""
    nkey_seed: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_hostname: str | None = None
    connect_timeout: float = 5.0
    reconnect_wait: float = 0.25
    """Between attempts to reconnect: short, since a replica set fails over in seconds."""

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "name": self.name,
            "connect_timeout": self.connect_timeout,
            "reconnect_time_wait": self.reconnect_wait,
            "max_reconnect_attempts": -1,  # forever: a journal outlives a NATS outage
            "allow_reconnect": True,
            # Publishes made while reconnecting wait in this buffer (bytes).
            "pending_size": 64 * 1024 * 1024,
        }
        if self.user is not None:
            kwargs["user"] = self.user
            kwargs["password"] = self.password
        if self.token is not None:
            kwargs["token"] = self.token
        if self.creds is not None:
            kwargs["user_credentials"] = str(self.creds)
        if self.nkey_seed is not None:
            kwargs["nkeys_seed"] = str(self.nkey_seed)
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=str(self.tls_ca) if self.tls_ca else None
            )
            if self.tls_cert:
                context.load_cert_chain(str(self.tls_cert), str(self.tls_key or self.tls_cert))
            kwargs["tls"] = context
        if self.tls_hostname:
            kwargs["tls_hostname"] = self.tls_hostname
        return kwargs


@dataclass(frozen=True)
class StreamOptions:
    """The stream journals are replicated to, created if missing with these limits.

    ``duplicate_window``: how long JetStream remembers a message id; a publish retried
    within it is dropped as a duplicate (docs/REPLICATION.md says why the protocol
    stays exactly-once past it too)."""

    name: str = _scheme.DEFAULT_STREAM
    subject_prefix: str = _scheme.DEFAULT_SUBJECT_PREFIX
    replicas: int = 1
    max_age_s: float = 0.0  # 0: no age limit
    max_bytes: int = -1  # -1: no size limit
    duplicate_window_s: float = 120.0
    max_message_bytes: int = 1 << 20


class ConnectionState:
    """Counts what nats-py reports about the connection, for the metrics files."""

    CONNECTING, CONNECTED, DISCONNECTED, CLOSED = 0, 1, 2, 3

    def __init__(self) -> None:
        self.state = self.CONNECTING
        self.reconnects = 0
        self.errors = 0
        self.server = ""
        self.closing = False
        """Set before the process closes its connection: that is no loss to report."""
        self.servers = ""
        """The servers it connects to, as they may be shown (``shown``)."""
        self._failures = 0  # errors since the connection was last up

    async def disconnected(self) -> None:
        self.state = self.DISCONNECTED
        if not self.closing:
            log.warning("NATS connection lost; reconnecting")

    def connected(self, nc: Any) -> None:
        self.state = self.CONNECTED
        self._failures = 0
        self.server = _host_port(getattr(nc, "connected_url", None))

    async def reconnected(self, nc: Any = None) -> None:
        self.connected(nc)
        self.reconnects += 1
        log.warning("NATS reconnected to %s", self.server or "?")

    async def close(self, nc: Any) -> None:
        """Drain and close ``nc`` (what it still has to send goes out first)."""
        self.closing = True
        with contextlib.suppress(Exception):
            await nc.drain()

    async def closed(self) -> None:
        self.state = self.CLOSED

    async def error(self, error: Exception) -> None:
        """nats-py's errors: while the connection is not up (it retries forever), the
        first and every 20th said (what is wrong: a server down, refused, a TLS
        mismatch), the rest for --verbose."""
        self.errors += 1
        if self.state != self.CONNECTED:
            self._failures += 1
            if _said(self._failures):
                log.warning(
                    "NATS at %s: %s: %s; retrying",
                    self.servers or "?",
                    type(error).__name__,
                    error,
                )
                return
        log.debug("NATS: %s", error)


class Stopped(Exception):
    """SIGINT/SIGTERM or --duration: what was waiting or retrying ends (connecting,
    the stream, a journal's task)."""


class Retries:
    """A step tried again until it works: a server restarting or a cluster electing its
    leader is seconds of failures. Each is a warning to ``logger`` when ``_said``
    (every ``say_every``-th), else a debug line, then a pause of ``pause(n)`` seconds
    after the n-th failure, cut short by ``stop`` (then Stopped)."""

    def __init__(
        self,
        logger: logging.Logger,
        stop: asyncio.Event | None,
        pause: Callable[[int], float],
        say_every: int = 20,
    ) -> None:
        self.logger = logger
        self.stop = stop
        self.pause = pause
        self.say_every = say_every
        self.failures = 0

    async def after(self, what: str, error: BaseException) -> None:
        """``what`` failed with ``error``: say so if it is its turn, then pause."""
        self.failures += 1
        self.logger.log(
            logging.WARNING if _said(self.failures, self.say_every) else logging.DEBUG,
            "%s failed (%s: %s); retrying",
            what,
            type(error).__name__,
            error,
        )
        seconds = self.pause(self.failures)
        if self.stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        if self.stop.is_set():
            raise Stopped


async def connect(
    options: NatsOptions, state: ConnectionState, stop: asyncio.Event | None = None
) -> Any:
    """A connection that reconnects forever; the first connect is retried as well
    (until it works: a replicator started before its NATS server waits for it)."""
    nats = import_nats()
    holder: dict[str, Any] = {}

    async def reconnected() -> None:
        await state.reconnected(holder.get("nc"))

    refused: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def error(error: Exception) -> None:
        if "authorization violation" in str(error).lower():
            state.errors += 1  # said once, below, as what stops the command
            if not refused.done():
                refused.set_result(error)
            return
        await state.error(error)

    state.servers = ", ".join(map(shown, options.servers))
    retries = Retries(log, stop, lambda n: min(options.reconnect_wait * n, 2.0))
    while True:
        # nats-py retries inside connect (forever, as asked); credentials it is refused
        # do not get better by retrying: that is said through error_cb, and ends here.
        connecting = asyncio.ensure_future(
            nats.connect(
                **options.connect_kwargs(),
                disconnected_cb=state.disconnected,
                reconnected_cb=reconnected,
                closed_cb=state.closed,
                error_cb=error,
            )
        )
        stopping = asyncio.ensure_future(stop.wait() if stop is not None else asyncio.Future())
        await asyncio.wait({connecting, refused, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if stopping.done() and not stopping.cancelled() and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            raise Stopped
        if refused.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            raise JournalError(
                f"NATS at {', '.join(map(shown, options.servers))} refused the credentials "
                f"({refused.result()}): check --user/--password, --token, --creds or --nkey"
            )
        try:
            nc = connecting.result()
            break
        except (TimeoutError, OSError, nats.errors.Error) as failure:
            await retries.after(f"connecting to NATS at {state.servers}", failure)
    holder["nc"] = nc
    state.connected(nc)
    return nc


STREAM_NAME_IN_USE = 10058
"""add_stream's error for a stream made meanwhile (by another replicator)."""


async def ensure_stream(js: Any, options: StreamOptions, stop: asyncio.Event | None = None) -> Any:
    """The stream's info; created if it does not exist, never changed if it does (an
    existing stream's limits are the operator's: they are logged when they differ).
    A configuration the server refuses (max age below the duplicate window, more
    replicas than servers, subjects another stream holds) is a JournalError."""
    nats = import_nats()
    retries = Retries(log, stop, lambda n: min(0.1 * n, 1.0))
    while True:
        try:
            return await _ensure_stream(js, options)
        except nats.js.errors.APIError as error:
            if error.code in (400, 500) and error.err_code != STREAM_NAME_IN_USE:
                raise JournalError(
                    f"NATS refused stream {options.name} (subjects "
                    f"{_scheme.stream_subjects(options.subject_prefix)}): {error.description} "
                    f"(error {error.err_code}); change the option it names (--replicas, "
                    "--max-age, --duplicate-window, --subject-prefix, --stream) or make the "
                    "stream yourself"
                ) from None
            await retries.after(f"stream {options.name}", error)
        except (TimeoutError, nats.errors.Error) as error:
            await retries.after(f"stream {options.name}", error)


async def _ensure_stream(js: Any, options: StreamOptions) -> Any:
    nats = import_nats()
    api = nats.js.api
    subjects = [_scheme.stream_subjects(options.subject_prefix)]
    try:
        info = await js.stream_info(options.name)
    except nats.js.errors.NotFoundError:
        config = api.StreamConfig(
            name=options.name,
            subjects=subjects,
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=options.replicas,
            max_age=options.max_age_s or None,
            max_bytes=options.max_bytes,
            duplicate_window=options.duplicate_window_s,
            max_msg_size=options.max_message_bytes + 64 * 1024,  # the headers too
            discard=api.DiscardPolicy.OLD,
        )
        try:
            info = await js.add_stream(config)
            log.info(
                "created stream %s (subjects %s, %d replicas, max age %s s, max bytes %s)",
                options.name,
                subjects[0],
                options.replicas,
                options.max_age_s or "unlimited",
                options.max_bytes if options.max_bytes > 0 else "unlimited",
            )
        except nats.js.errors.BadRequestError as error:
            if error.err_code != STREAM_NAME_IN_USE:
                raise
            info = await js.stream_info(options.name)  # created meanwhile by another
    if subjects[0] not in (info.config.subjects or []):
        raise JournalError(
            f"stream {options.name} exists but does not hold subjects {subjects[0]} (it "
            f"holds {info.config.subjects}): choose another --stream or --subject-prefix"
        )
    config = info.config
    log.info(
        "stream %s: %s replicas, max age %s s, max bytes %s, duplicate window %s s (--replicas, "
        "--max-age, --max-bytes and --duplicate-window apply only to a stream this creates: "
        "change an existing one's with nats stream edit)",
        options.name,
        config.num_replicas or 1,
        config.max_age or "unlimited",
        config.max_bytes if (config.max_bytes or -1) > 0 else "unlimited",
        config.duplicate_window,
    )
    if (config.num_replicas or 1) != options.replicas:
        log.warning(
            "stream %s has %s replicas, --replicas %d applies only to a stream it creates",
            options.name,
            config.num_replicas,
            options.replicas,
        )
    return info
