"""The capture line parser: each kind of line, exact times, and bad lines named by file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from journal.feeds import CaptureFormatError, LineKind, read_capture
from journal.feeds._capture import parse_line
from tests.conftest import CAPTURES


def test_each_kind_of_line() -> None:
    connected = parse_line("wss://stream.bybit.com/realtime <-> 1618677785.489609", "f", 1)
    assert (connected.kind, connected.url, connected.payload) == (
        LineKind.CONNECTED,
        "wss://stream.bybit.com/realtime",
        None,
    )
    assert connected.received_ns == 1_618_677_785_489_609_000

    sent = parse_line('wss://x/realtime <- 1618677786.5112152: {"op":"subscribe"}', "f", 2)
    assert (sent.kind, sent.payload) == (LineKind.SENT, {"op": "subscribe"})

    received = parse_line('1633998512.0633569: {"stream":"a@depth","data":{}}', "f", 3)
    assert (received.kind, received.url) == (LineKind.RECEIVED, None)
    assert received.received_ns == 1_633_998_512_063_356_900  # exact, not through a float
    assert received.payload == {"stream": "a@depth", "data": {}}

    response = parse_line(
        "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000 -> 1633998512.320639: "
        '{"lastUpdateId":1,"bids":[],"asks":[]}',
        "f",
        4,
    )
    assert response.kind is LineKind.RESPONSE
    assert response.url == "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"
    assert response.payload["lastUpdateId"] == 1
    assert (response.path, response.line_number) == ("f", 4)


def test_upbit_frames_are_bytes_literals_read_as_literals_only() -> None:
    line = parse_line("""1618678263.105828: b'{"ty":"orderbook","cd":"KRW-LAMB"}'""", "f", 1)
    assert line.payload == {"ty": "orderbook", "cd": "KRW-LAMB"}
    escaped = parse_line(r"""1.5: b'{"a":"\xc3\xa9"}'""", "f", 1)
    assert escaped.payload == {"a": "é"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("garbage", "not a capture line"),
        ("", "not a capture line"),
        ("1633998512.06 {}", "not a capture line"),
        ("wss://x <-> 1.5: {}", "nothing after"),
        ("wss://x <- 1.5", "': TEXT' after"),
        ("1.5: {not json", "not JSON"),
        ("1.5: __import__('os').system('true')", "not JSON"),
        ("1.5: b'{}' + b'{}'", "not a Python bytes literal"),
        ("1.5: b'__import__(\"os\")'", "not JSON"),
        ("1.5: b'\\xff'", "not UTF-8"),
        ("1.5: b'unterminated", "not a Python bytes literal"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(text: str, problem: str) -> None:
    with pytest.raises(CaptureFormatError, match=problem) as raised:
        parse_line(text, "captures/X.ws.1.0", 7)
    assert str(raised.value).startswith("captures/X.ws.1.0:7: ")
    assert (raised.value.path, raised.value.line_number) == ("captures/X.ws.1.0", 7)


def test_empty_lines_are_passed_over_and_line_numbers_stay_true(tmp_path: Path) -> None:
    capture = tmp_path / "X.ws.1.0"
    capture.write_bytes(b'wss://x <-> 1.0\n\n2.0: {"a":1}\n\n\n3.0: {broken\n')
    lines = read_capture(capture)
    assert [line.line_number for line in (next(lines), next(lines))] == [1, 3]
    with pytest.raises(
        CaptureFormatError, match=rf"^{re.escape(str(capture))}:6: message is not JSON"
    ):
        next(lines)


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    capture = tmp_path / "X.ws.1.0"
    capture.write_bytes(b'1.0: {"a":1}\n2.0: {"a":"\xff"}\n')
    with pytest.raises(CaptureFormatError, match=rf"^{re.escape(str(capture))}:2: not UTF-8"):
        list(read_capture(capture))


@pytest.mark.parametrize(
    "name",
    [
        "BINANCE.ws.1.0",
        "BINANCE.http.0.0",
        "BINANCE_FUTURES.ws.1.0",
        "BINANCE_FUTURES.http.0.0",
        "UPBIT.ws.62.0",
        "BYBIT.ws.26.0",
    ],
)
def test_every_real_capture_parses_in_time_order(name: str) -> None:
    path = CAPTURES / name
    lines = list(read_capture(path))
    assert len(lines) == sum(1 for text in path.read_text().splitlines() if text)
    times = [line.received_ns for line in lines]
    assert times == sorted(times)  # the importer's merge relies on it to keep time order
    kinds = {line.kind for line in lines}
    assert kinds == ({LineKind.RESPONSE} if ".http." in name else kinds - {LineKind.RESPONSE})
