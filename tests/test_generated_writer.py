"""The generated per-shape writers can be read and debugged (issue #11): their
source is printable, and a traceback through one shows its lines."""

from __future__ import annotations

import traceback

import pytest

from journal._encode import OrderBookEncoder, writer_source
from tests.conftest import ASKS, BIDS


def test_the_source_of_a_shape_can_be_printed() -> None:
    source = writer_source(10, 10)
    assert source.lstrip().startswith("def write(buffer, offset, timestamp, sequence")
    assert "b9p, b9q = b9" in source and "a9p, a9q = a9" in source
    compile(source, "<check>", "exec")


def test_a_traceback_through_a_generated_writer_shows_its_line() -> None:
    shape = OrderBookEncoder().shape("upbit", "BTC-KRW", len(BIDS), len(ASKS))
    with pytest.raises(Exception) as caught:  # a buffer too small for the record
        shape.write(memoryview(bytearray(16)), 0, 1, 2, 3, BIDS, ASKS)
    text = "".join(traceback.format_exception(caught.value))
    assert 'File "<order book writer 10x10>"' in text
    assert "pack_into(buffer, offset, head, timestamp, sequence" in text, text
