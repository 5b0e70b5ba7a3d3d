"""NATS secrets for ``journal replicate`` and ``journal mirror`` without the command line.

Every user of a host can read a process's command line (/proc/PID/cmdline), so a
``--password`` or ``--token`` there is everyone's. The secret can come from a file
(``--password-file``, ``--token-file``) or from the NATS_* variables
(``NATS_URL``, ``NATS_USER``, ``NATS_PASSWORD``, ``NATS_TOKEN``, ``NATS_CREDS``,
``NATS_NKEY``); an option given wins over its variable. Checked against real
nats-server processes that ask for a user and password, or for a token.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._replication import JOURNAL, Process, killed_all, mirror, replicate, wait_for, writer
from tests.nats_server import NatsServer
from tests.test_replicate import SEGMENT, assert_mirrors, caught_up

VARIABLES = ("NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_CREDS", "NATS_NKEY")


@pytest.fixture(autouse=True)
def no_nats_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands run here inherit this environment: a developer's own NATS_* must
    not decide what they are given (each test sets what it means)."""
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@dataclass(frozen=True)
class Auth:
    """A server that asks for ``kind`` ("user": user desk and a password; "token")."""

    kind: str
    secret: str
    server: NatsServer

    def file_options(self, path: Path) -> tuple[str, ...]:
        """The options that give the secret in ``path``."""
        if self.kind == "user":
            return ("--user", "desk", "--password-file", str(path))
        return ("--token-file", str(path))

    def variables(self, secret: str) -> dict[str, str]:
        """The variables that give ``secret``."""
        if self.kind == "user":
            return {"NATS_USER": "desk", "NATS_PASSWORD": secret}
        return {"NATS_TOKEN": secret}


@pytest.fixture(params=["user", "token"])
def auth(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Auth]:
    """A started nats-server that refuses clients without its credentials."""
    secret = f"s3cret-{secrets.token_hex(8)}"
    kind = request.param
    extra = ("--user", "desk", "--pass", secret) if kind == "user" else ("--auth", secret)
    server = NatsServer(tmp_path / f"nats-{kind}", extra=extra)
    server.start()
    try:
        yield Auth(kind, secret, server)
    finally:
        server.kill()
        shutil.rmtree(server.store, ignore_errors=True)
        server.log.unlink(missing_ok=True)


def secret_file(path: Path, content: str) -> Path:
    """``content`` and a newline (as ``echo`` writes it) in a file its owner alone reads."""
    path.touch(mode=0o600)
    path.write_text(content + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("given", ["file", "environment"])
def test_a_secret_not_on_the_command_line_replicates_and_mirrors(
    shm_dir: Path, auth: Auth, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By file (its trailing newline no part of the secret; wrong variables set too,
    which the options given override) or by the variables alone (NATS_URL in place of
    --nats): the journal is mirrored, and the secret is in neither process's
    command line."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror")]
    assert writer(source, 1, 500, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    if given == "file":
        options = auth.file_options(secret_file(shm_dir / "secret", auth.secret))
        monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")  # nothing listens there
        for variable, value in auth.variables("wrong").items():
            monkeypatch.setenv(variable, value)
        runs = [
            replicate(auth.server.url, [source], logs[1], *options),
            mirror(auth.server.url, copy.parent, logs[2], *options),
        ]
    else:
        monkeypatch.setenv("NATS_URL", auth.server.url)
        for variable, value in auth.variables(auth.secret).items():
            monkeypatch.setenv(variable, value)
        runs = [
            Process([str(JOURNAL), "replicate", str(source)], logs[1]),
            Process([str(JOURNAL), "mirror", "--journal-root", str(copy.parent)], logs[2]),
        ]
    try:
        for run in runs:
            run.start()
        wait_for(lambda: caught_up(source, copy), 30, "the mirror", logs)
        for run in runs:
            assert run.popen is not None
            command_line = Path(f"/proc/{run.popen.pid}/cmdline").read_bytes()
            assert b"journal" in command_line  # the process's own, still running
            assert auth.secret.encode() not in command_line
        codes = [run.terminate() for run in runs]
    finally:
        killed_all(runs)
    assert codes == [0, 0]
    assert_mirrors(source, copy)


@pytest.mark.slow
def test_a_wrong_secret_from_a_file_is_refused(shm_dir: Path, auth: Auth) -> None:
    """Said in the one line that says refused credentials, without the secret, and the
    command stops."""
    wrong = f"wrong-{secrets.token_hex(8)}"
    options = auth.file_options(secret_file(shm_dir / "wrong", wrong))
    for command in (
        ["replicate", str(shm_dir / "feed"), "--nats", auth.server.url, *options],
        ["mirror", "--nats", auth.server.url, "--journal-root", str(shm_dir / "m"), *options],
    ):
        done = subprocess.run([str(JOURNAL), *command], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, done.stderr
        said = [line for line in done.stderr.splitlines() if "refused the credentials" in line]
        assert len(said) == 1, done.stderr
        assert "Traceback" not in done.stderr and wrong not in done.stderr


def said_in_one_line(args: list[str], cwd: Path) -> str:
    """The one line a usage error is said in (status 2, no traceback)."""
    done = subprocess.run(
        [str(JOURNAL), *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


COMMANDS = {
    "replicate": ["replicate", "j", "--nats", "nats://127.0.0.1:1"],
    "mirror": ["mirror", "--journal-root", "r", "--nats", "nats://127.0.0.1:1"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("option", "content"),
    [
        ("--password-file", None),  # missing
        ("--password-file", "dir"),
        ("--password-file", ""),
        ("--token-file", None),
        ("--token-file", "dir"),
        ("--token-file", ""),
        ("--token-file", "\n"),  # empty once its newline is dropped
    ],
)
def test_a_secret_file_that_cannot_be_read_is_a_usage_error(
    shm_dir: Path, command: str, option: str, content: str | None
) -> None:
    path = shm_dir / "secret"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    user = ("--user", "desk") if option == "--password-file" else ()
    line = said_in_one_line([*COMMANDS[command], *user, option, str(path)], shm_dir)
    assert f"{option} {path} " in line
    expected = {None: "does not exist", "dir": "is a directory", "": "is empty", "\n": "is empty"}
    assert expected[content] in line


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "options",
    [
        ("--user", "desk", "--password", "p", "--password-file"),
        ("--token", "t", "--token-file"),
    ],
    ids=["password", "token"],
)
def test_a_secret_given_twice_is_a_usage_error(
    shm_dir: Path, command: str, options: tuple[str, ...]
) -> None:
    path = secret_file(shm_dir / "secret", "s3cret")
    line = said_in_one_line([*COMMANDS[command], *options, str(path)], shm_dir)
    assert f"{options[-3]} and {options[-1]} {path} both give" in line


@pytest.mark.parametrize("command", ["replicate", "mirror"])
@pytest.mark.parametrize(
    ("variables", "options", "message"),
    [
        ({}, (), "give --nats URL (e.g. nats://127.0.0.1:4222) or set NATS_URL"),
        ({"NATS_URL": "127.0.0.1:4222"}, (), "NATS_URL '127.0.0.1:4222': give a NATS URL"),
        (
            {"NATS_URL": "nats://h:1", "NATS_USER": "desk"},
            (),
            "NATS_USER gives a user without a password; give --password-file FILE or set "
            "NATS_PASSWORD; a token (as the nats CLI takes a NATS_USER alone) goes in NATS_TOKEN",
        ),
        ({"NATS_URL": "nats://h:1", "NATS_PASSWORD": "p"}, (), "NATS_PASSWORD gives a password"),
        ({"NATS_URL": "nats://h:1", "NATS_CREDS": "/nope"}, (), "NATS_CREDS /nope does not exist"),
        ({"NATS_URL": "nats://h:1", "NATS_NKEY": "/"}, (), "NATS_NKEY / is not a file"),
        (
            {"NATS_URL": "nats://h:1", "NATS_USER": "desk", "NATS_PASSWORD": "p"},
            ("--token", "t"),
            "a user (NATS_USER) and a token (--token)",
        ),
    ],
    ids=["no-url", "bad-url", "user-alone", "password-alone", "creds", "nkey", "user-and-token"],
)
def test_variables_that_cannot_work_are_usage_errors(
    shm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    variables: dict[str, str],
    options: tuple[str, ...],
    message: str,
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    args = ["replicate", "j"] if command == "replicate" else ["mirror", "--journal-root", "r"]
    assert message in said_in_one_line([*args, *options], shm_dir)


def test_the_help_says_where_else_a_secret_goes() -> None:
    """--password and --token say that other users see them, and what to use instead."""
    for command in ("replicate", "mirror"):
        done = subprocess.run(
            [str(JOURNAL), command, "--help"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        said = " ".join(done.stdout.split())
        for secret in ("password", "token"):
            assert (
                "every user of the host can read it in the process list: "
                f"use --{secret}-file or $NATS_{secret.upper()} instead"
            ) in said, said
        assert "(default: $NATS_URL)" in said


@pytest.mark.slow
def test_a_secret_in_the_url_is_in_no_log_line(shm_dir: Path, auth: Auth) -> None:
    """``nats://user:password@host`` (or ``token@host``) works, and the lines that name
    a server (cannot connect, reconnected) show ``***@`` or host:port, never the secret."""
    source, copy = shm_dir / "src" / "feed", shm_dir / "mirror" / "feed"
    logs = [shm_dir / f"{n}.log" for n in ("writer", "replicate", "mirror", "nowhere")]
    assert writer(source, 1, 500, 0, SEGMENT, logs[0]).start().line() == b"done\n"
    userinfo = f"desk:{auth.secret}" if auth.kind == "user" else auth.secret
    url = auth.server.url.replace("nats://", f"nats://{userinfo}@")
    runs = [replicate(url, [source], logs[1]), mirror(url, copy.parent, logs[2])]
    # Nothing listens there: the first failure's warning names the server.
    nowhere = replicate(f"nats://{userinfo}@127.0.0.1:1", [shm_dir / "other"], logs[3])
    try:
        for run in [*runs, nowhere]:
            run.start()
        wait_for(lambda: caught_up(source, copy), 30, "the mirror", logs)
        wait_for(lambda: "retrying" in logs[3].read_text(), 30, "the warning", logs)
        auth.server.kill()
        auth.server.start()  # the same port: both reconnect, and say where
        wait_for(
            lambda: all("reconnected to 127.0.0.1:" in log.read_text() for log in logs[1:3]),
            30,
            "both reconnected",
            logs,
        )
        codes = [run.terminate() for run in [*runs, nowhere]]
    finally:
        killed_all([*runs, nowhere])
    assert codes == [0, 0, 0]
    said = "".join(log.read_text() for log in logs)
    assert "NATS at nats://***@127.0.0.1:1: " in logs[3].read_text()
    assert auth.secret not in said
