"""What a new user of the radar trips on (issue #10), against the real radar process:
numeric options out of range, journal paths that can never be a journal, fees for
venues that do not exist or never show up. Each is refused at once (exit 2, a
message naming the option or path and what is wrong) or said in the summary."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

import journal
import journal.symbols
from tests import _cpp
from tests._cpp import program
from tests.conftest import ASKS, BIDS

EXIT_AT_ONCE_S = 10.0  # a refusal takes milliseconds; this only bounds a broken radar
DEADLINE_S = 20.0  # for the radar to say or do something; never reached when it works


def radar(
    *args: str, build: str = "release", timeout: float = EXIT_AT_ONCE_S
) -> subprocess.CompletedProcess[str]:
    return _cpp.radar(*args, build=build, timeout=timeout)


# (option, value): infinite, NaN, huge, zero or negative where the option must be
# positive, not a whole number where it must be one.
BAD_NUMBERS = [
    ("--duration", "inf"),
    ("--duration", "1e300"),
    ("--duration", "nan"),
    ("--duration", "0"),
    ("--duration", "-1"),
    ("--notional-krw", "inf"),
    ("--notional-krw", "1e300"),
    ("--notional-krw", "0"),
    ("--notional-krw", "-10000000"),
    ("--fx", "inf"),
    ("--fx", "1e300"),
    ("--fx", "0"),
    ("--fx", "-1400"),
    ("--stale-ms", "inf"),
    ("--stale-ms", "1e300"),
    ("--stale-ms", "0"),
    ("--stale-ms", "-5"),
    ("--max-records", "-5"),
    ("--max-records", "0"),
    ("--max-records", "1.5"),
    ("--max-records", "1e300"),
    ("--max-records", "99999999999999999999"),
    ("--fee", "upbit=inf"),
    ("--fee", "upbit=1e300"),
    ("--fee", "upbit=-10000"),
    ("--fee", "upbit=nan"),
]


@pytest.mark.parametrize(("option", "value"), BAD_NUMBERS)
def test_numeric_option_out_of_range_is_refused_naming_option_and_value(
    shm_dir: Path, option: str, value: str
) -> None:
    # --duration first: a radar that took the bad value would stop on its own.
    refused = radar("--journal", str(shm_dir / "books"), "--duration", "0.5", option, value)
    assert refused.returncode == 2, refused.stderr
    assert f"radar: {option} {value}: " in refused.stderr
    assert "radar summary" not in refused.stderr


def test_numeric_options_in_range_are_taken(shm_dir: Path) -> None:
    taken = radar(
        *("--journal", str(shm_dir / "books"), "--duration", "0.05", "--max-records", "1"),
        *("--stale-ms", "0.5", "--fx", "1400", "--notional-krw", "1e6", "--fee", "upbit=-2.5"),
    )
    assert taken.returncode == 0, taken.stderr
    assert "radar summary: 0 books" in taken.stderr


@pytest.mark.parametrize("value", ["1e300", "inf", "-1e300"])
def test_out_of_range_duration_is_refused_before_any_conversion(shm_dir: Path, value: str) -> None:
    # Under UBSan: the value is refused, never converted to an integer.
    refused = radar("--journal", str(shm_dir / "books"), "--duration", value, build="sanitize")
    assert refused.returncode == 2, refused.stderr
    assert f"radar: --duration {value}: " in refused.stderr
    assert "runtime error" not in refused.stderr


# -- journal paths ---------------------------------------------------------------------


def stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The child's stderr, line by line, read by a thread (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str | None], text: str, seen: list[str]) -> None:
    """Until a line containing ``text`` (every line read goes to ``seen``)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no {text!r} from the radar in {DEADLINE_S} s: {''.join(seen)}")
        if line is None:
            pytest.fail(f"the radar ended without saying {text!r}: {''.join(seen)}")
        seen.append(line)
        if text in line:
            return


def test_missing_journal_is_waited_for_and_said_once(shm_dir: Path) -> None:
    path = shm_dir / "not-yet" / "books"  # its parent is missing too: the writer makes both
    proc = subprocess.Popen(
        [
            *(str(program("radar")), "--journal", str(path), "--start", "beginning"),
            *("--quiet", "--max-records", "3", "--duration", str(DEADLINE_S)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines, seen = stderr_lines(proc), []
        wait_for_line(lines, f"radar: waiting for {path} to be created by its writer", seen)
        with journal.Writer(path) as writer:
            for seq in range(3):
                writer.append_orderbook("upbit", "BTC-KRW", seq, seq + 1, BIDS, ASKS)
        assert proc.wait(timeout=DEADLINE_S) == 0, "".join(seen)
        while (line := lines.get(timeout=DEADLINE_S)) is not None:
            seen.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(seen)
    assert stderr.count("waiting for") == 1, stderr
    assert "radar summary: 3 books" in stderr
    assert "waited for the whole run" not in stderr


def test_empty_journal_directory_is_waited_for_and_said_once(shm_dir: Path) -> None:
    waited = radar("--journal", str(shm_dir), "--duration", "0.2")
    assert waited.returncode == 0, waited.stderr
    assert f"radar: waiting for the writer of {shm_dir}: no segment in it yet" in waited.stderr
    assert waited.stderr.count("waiting for") == 1
    assert f"  {shm_dir}: waited for the whole run, no writer created a segment in it\n" in (
        waited.stderr
    )


def test_regular_file_as_journal_is_refused_at_once(shm_dir: Path) -> None:
    path = shm_dir / "00000000.journal"
    with journal.Writer(shm_dir / "books") as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    shutil.copy(shm_dir / "books" / "00000000.journal", path)  # a segment, not its journal
    for where in (path, path / "books"):  # the file itself, and a path through it
        refused = radar("--journal", str(where), "--duration", "0.5")
        assert refused.returncode == 2, refused.stderr
        assert f"radar: --journal {where}: " in refused.stderr
        assert "not a directory" in refused.stderr or "a regular file" in refused.stderr
        assert "radar summary" not in refused.stderr and "waiting" not in refused.stderr


@pytest.mark.parametrize(("bits", "what"), [(0o3, "cannot read"), (0o4, "cannot search")])
def test_journal_directory_that_cannot_be_read_is_refused_at_once(
    shm_dir: Path, bits: int, what: str
) -> None:
    path = shm_dir / "books"
    with journal.Writer(path) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    shm_dir.chmod(0o711)  # reachable by anyone
    if os.geteuid() == 0:
        # root reads any directory: the radar runs as nobody, for whom `bits` are
        # the "others" permissions.
        path.chmod(0o700 | bits)
        run_as: dict = {"user": 65534, "group": 65534, "extra_groups": []}
    else:
        path.chmod(bits << 6)
        run_as = {}
    refused = subprocess.run(
        [str(program("radar")), "--journal", str(path), "--duration", "0.5", "--no-metrics"],
        capture_output=True,
        text=True,
        timeout=EXIT_AT_ONCE_S,
        check=False,
        **run_as,
    )
    path.chmod(0o700)
    assert refused.returncode == 2, refused.stderr
    assert f"radar: --journal {path}: is a directory the radar {what}" in refused.stderr
    assert "radar summary" not in refused.stderr


# -- fees --------------------------------------------------------------------------------


def test_known_venues_in_cpp_are_journal_symbols_venues() -> None:
    printed = radar("--print-venues")
    assert printed.returncode == 0, printed.stderr
    names = printed.stdout.split()
    assert sorted(names) == sorted(journal.symbols.VENUES)
    assert len(set(names)) == len(names)


def test_bybit_futures_is_paired_like_binance_futures(shm_dir: Path) -> None:
    """A USDT venue the radar pairs with the KRW venues by base and quote; its fee taken."""
    path, results = shm_dir / "books", shm_dir / "results"

    def levels(mid: float, tick: float, side: int) -> list[list[float]]:
        return [[mid + side * tick * (k + 1), 1.0 + k] for k in range(10)]

    with journal.Writer(path) as writer:
        for i in range(1, 4):
            for exchange, symbol, mid, tick in (
                ("bybit-futures", "BTC-USDT", 100_000.0, 0.1),
                ("upbit", "USDT-KRW", 1400.0, 1.0),
                ("upbit", "BTC-KRW", 141_400_000.0, 1000.0),
            ):
                bids, asks = levels(mid, tick, -1), levels(mid, tick, 1)
                writer.append_orderbook(exchange, symbol, i, i, bids, asks)
    done = _cpp.radar(
        *("--journal", str(path), "--results", str(results), "--start", "beginning"),
        *("--quiet", "--max-records", "9", "--fx", "1400", "--stale-ms", "600000"),
        *("--fee", "bybit-futures=10"),
    )
    assert done.returncode == 0, done.stderr
    with journal.Reader(results) as reader:
        records = [record.to_dict() for record in reader.available()]
    assert records, done.stderr
    last = records[-1]
    assert (last["usdt_exchange"], last["buy_exchange"]) == ("bybit-futures", "bybit-futures")
    assert last["kimchi_premium"] == pytest.approx(0.01, abs=1e-12)
    cost = 100_000.1 * 1400 * (1 + 10e-4)
    proceeds = 141_399_000.0
    assert last["edge_bps"] == pytest.approx((proceeds - cost) / cost * 1e4, rel=1e-9)


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("upbt=5", "did you mean upbit?"),
        ("Upbit=5", "did you mean upbit?"),
        ("binance_futures=4", "did you mean binance-futures?"),
        ("bybit_futures=4", "did you mean bybit-futures?"),
        ("okx=8", ""),
    ],
)
def test_fee_for_an_unknown_venue_is_refused_with_the_known_names(
    shm_dir: Path, spec: str, hint: str
) -> None:
    refused = radar("--journal", str(shm_dir / "books"), "--duration", "0.5", "--fee", spec)
    assert refused.returncode == 2, refused.stderr
    venue = spec.partition("=")[0]
    first = refused.stderr.splitlines()[0]
    assert first.startswith(f"radar: --fee {spec}: {venue} is not a venue the journals use")
    assert ", ".join(sorted(journal.symbols.VENUES)) in first
    assert hint in first
    assert "did you mean" in first or not hint


def test_fee_given_twice_for_one_venue_is_refused(shm_dir: Path) -> None:
    refused = radar(
        *("--journal", str(shm_dir / "books"), "--duration", "0.5"),
        *("--fee", "upbit=5", "--fee", "upbit=10"),
    )
    assert refused.returncode == 2, refused.stderr
    assert "radar: --fee upbit=10: upbit's fee was given already (5)" in refused.stderr


def test_fee_for_a_venue_never_read_is_said_in_the_summary(shm_dir: Path) -> None:
    path = shm_dir / "books"
    with journal.Writer(path) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
        writer.append_orderbook("binance", "BTC-USDT", 1, 1, BIDS, ASKS)
    done = radar(
        *("--journal", str(path), "--start", "beginning", "--quiet", "--max-records", "2"),
        *("--fee", "upbit=5", "--fee", "bithumb=4", "--fee", "binance=10"),
    )
    assert done.returncode == 0, done.stderr
    assert "fee for bithumb given but no bithumb book was read" in done.stderr
    assert "fee for upbit" not in done.stderr and "fee for binance" not in done.stderr


@pytest.mark.parametrize(
    ("journals", "said"),
    [([""], "give a journal directory"), (["/dev/shm/x", "/dev/shm/x"], "given twice")],
)
def test_an_empty_or_repeated_journal_is_refused(journals: list[str], said: str) -> None:
    """An empty path waited forever and exited 0; a journal given twice counted every
    book twice."""
    args = [arg for journal_path in journals for arg in ("--journal", journal_path)]
    done = radar(*args)
    assert done.returncode == 2 and said in done.stderr


def test_a_journal_under_another_users_directory_or_link_is_refused(shm_dir: Path) -> None:
    """Records under a directory another user controls could be planted (issue #9):
    a journal reached through nobody's symlink, or inside nobody's directory."""
    from tests._users import NOBODY, as_nobody, shared_directory

    shared = shared_directory(shm_dir)
    with journal.Writer(shm_dir / "real", segment_size=64 * 1024) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, BIDS, ASKS)
    as_nobody("ln", "-s", shm_dir / "real", shared / "link")
    as_nobody("mkdir", "-m", "0755", shared / "theirs")
    shutil.copytree(shm_dir / "real", shared / "theirs" / "books")
    for path in (shared / "link", shared / "theirs" / "books"):
        done = radar("--journal", str(path), "--start", "beginning", "--duration", "1")
        assert done.returncode == 2, done
        assert f"uid={NOBODY}" in done.stderr, done.stderr
    # Our own link to our own journal is fine.
    (shm_dir / "mine").symlink_to(shm_dir / "real")
    done = radar(
        "--journal", str(shm_dir / "mine"), "--start", "beginning", "--duration", "0.5", "--quiet"
    )
    assert done.returncode == 0, done.stderr
