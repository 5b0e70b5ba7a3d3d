"""The radar's live view (issue #10), as a user sees it: a line per change when its
output is not a terminal, a table redrawn in place on a terminal (a pty here). No
"nan" anywhere (a value not computed yet is "-", with the reason at the end of the
row), a unit on every column header, the fees and settings in use on top, and an
age per pair: the age of the older of its two books, in ms.

The books are an hour old, so the radar replays them and measures ages on their own
clock: every age below is exact."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import journal
from tests._cpp import program

HOUR_NS = 3600 * 1_000_000_000
SECOND_NS = 1_000_000_000
DEADLINE_S = 20.0  # for the radar to finish; never reached when it works
NAN = re.compile(r"\bnan\b", re.IGNORECASE)  # "binance" holds "nan", not as a word
CLEAR = "\x1b[H\x1b[2J"
COLUMNS = ("fx KRW/USDT", "premium %", "edge bps", "fill (base)", "age ms")


def ladder(mid: float, tick: float, side: int) -> list[list[float]]:
    return [[mid + side * tick * (k + 1), 1.0 + k] for k in range(10)]


def write_books(path: Path) -> None:
    """upbit BTC-KRW at t; binance BTC-USDT at t + 2 s (a pair, no FX yet); upbit
    USDT-KRW at t + 2.5 s (FX: the pair is computed); upbit BTC-KRW again at t + 3 s."""
    t = time.time_ns() - HOUR_NS
    krw = (ladder(141_400_000.0, 1000.0, -1), ladder(141_400_000.0, 1000.0, 1))
    usdt = (ladder(100_000.0, 0.1, -1), ladder(100_000.0, 0.1, 1))
    fx = (ladder(1400.0, 0.5, -1), ladder(1400.0, 0.5, 1))
    krw_later = (ladder(141_500_000.0, 1000.0, -1), ladder(141_500_000.0, 1000.0, 1))
    with journal.Writer(path) as writer:
        writer.append_orderbook("upbit", "BTC-KRW", 1, 1, *krw, t)
        writer.append_orderbook("binance", "BTC-USDT", 1, 1, *usdt, t + 2 * SECOND_NS)
        writer.append_orderbook("upbit", "USDT-KRW", 1, 1, *fx, t + 5 * SECOND_NS // 2)
        writer.append_orderbook("upbit", "BTC-KRW", 2, 2, *krw_later, t + 3 * SECOND_NS)


ARGS = ("--start", "beginning", "--max-records", "4", "--fee", "upbit=5", "--fee", "binance=10")


def row(line: str) -> list[str]:
    """The cells of a result line: time, base, venues, fx, premium, edge, route
    (one cell), fill, age, and the reason a value is missing if any."""
    match = re.fullmatch(
        r"(\d+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(\S+) +(-|\S+ -> \S+) +(\S+) +(\S+)(?: +(.*))?",
        line,
    )
    assert match, line
    return [cell or "" for cell in match.groups()]


def test_lines_have_units_fees_ages_and_no_nan(shm_dir: Path) -> None:
    write_books(shm_dir / "books")
    done = subprocess.run(
        [str(program("radar")), "--journal", str(shm_dir / "books"), *ARGS],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert not NAN.search(done.stdout), done.stdout
    assert lines[0] == "fees (bps): upbit 5, binance 10"
    assert lines[1] == (
        "notional 10,000,000 KRW; fx from the USDT-KRW books; books older than 5,000 ms are stale"
    )
    header = lines[2]
    assert header.startswith("time (ns)")
    for column in ("KRW venue", "USDT venue", *COLUMNS):
        assert column in header, header
    no_fx, with_fx, later = (row(line) for line in lines[3:])
    # binance's book made the pair: no FX yet, nothing computed; upbit's book is 2 s older.
    assert no_fx[1:4] == ["BTC", "upbit", "binance"]
    assert no_fx[4:9] == ["-", "-", "-", "-", "-"]
    assert no_fx[9:] == ["2000", "no FX"]
    # The FX book came 0.5 s later: computed, and the older book (upbit's) is 2.5 s old.
    assert with_fx[4] == "1400.00"
    assert with_fx[5] == "1.000"  # 141,400,000 / (100,000 * 1400) - 1 = 1.000 %
    assert with_fx[7] == "binance -> upbit"
    assert with_fx[9:] == ["2500", ""]
    # upbit's new book: binance's (t + 2 s) is now the older, 1 s old.
    assert later[9:] == ["1000", ""]


def test_terminal_table_has_units_fees_ages_and_no_nan(shm_dir: Path) -> None:
    write_books(shm_dir / "books")
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(program("radar")), "--journal", str(shm_dir / "books"), *ARGS],
        stdout=terminal,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:  # until the radar closes the terminal
            ready, _, _ = select.select([controller], [], [], deadline - time.monotonic())
            try:
                chunk = os.read(controller, 65536) if ready else b""
            except OSError:  # EIO: no process holds the terminal any more
                break
            if not chunk:
                break
            shown += chunk
        _, stderr = proc.communicate(timeout=DEADLINE_S)
    finally:
        os.close(controller)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    text = shown.decode().replace("\r\n", "\n")
    assert CLEAR in text, text
    assert not NAN.search(text), text
    last = text.rsplit(CLEAR, 1)[1].splitlines()  # the table left on screen at the end
    assert last[0].startswith("radar  4 books  replay: data time "), last
    assert "(latency n/a)" in last[0]
    assert last[1] == "fees (bps): upbit 5, binance 10"
    assert last[2].startswith("notional 10,000,000 KRW;")
    header = next(line for line in last if line.startswith("base "))
    for column in ("KRW venue", "USDT venue", *COLUMNS):
        assert column in header, header
    rows = [line for line in last if line.startswith("BTC ")]
    assert len(rows) == 1, last
    cells = rows[0].split()
    # upbit's later book: premium 141,500,000 / 140,000,000 - 1 = 1.071 %; the
    # older book (binance's, t + 2 s) is 1 s behind the replay's clock (t + 3 s).
    assert cells[:5] == ["BTC", "upbit", "binance", "1400.00", "1.071"]
    assert cells[-1] == "1000"
