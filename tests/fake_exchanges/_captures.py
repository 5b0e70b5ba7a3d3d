"""The recorded captures (tests/data/exchange-captures) as the fakes replay them.

Binance spot and USDT-M futures and Upbit are replayed as recorded: the REST depth
snapshot is the fake's starting book and the diffs that follow it are its first
updates. Bybit's capture is of its retired v2 inverse API (``orderBookL2_25``:
levels keyed by id, ``delete``/``update``/``insert``); v5's ``orderbook.{depth}.{symbol}``
sends ``[price, size]`` levels with size 0 for a removed level and a per-topic update
id ``u``, so the v2 messages are converted: the snapshot's levels become ``b``/``a``,
each delta's deletes become size 0, its updates and inserts ``[price, size]``, and
``cross_seq`` becomes ``seq``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journal.feeds import read_capture

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "exchange-captures"


@dataclass
class DepthCapture:
    """A Binance market as recorded: its REST snapshot and the diffs after it."""

    symbol: str
    snapshot: dict[str, Any]
    diffs: list[dict[str, Any]]


def _payloads(name: str) -> Iterator[tuple[str | None, Any]]:
    for line in read_capture(CAPTURES / name):
        yield line.url, line.payload


def binance_captures(futures: bool) -> dict[str, DepthCapture]:
    """Per symbol: the snapshot and the diffs a client synced to it applies next
    (spot: from the diff with ``U <= lastUpdateId + 1 <= u``; futures: from the one
    with ``U <= lastUpdateId <= u``), as the documentation says to sync."""
    prefix = "BINANCE_FUTURES" if futures else "BINANCE"
    snapshots: dict[str, dict[str, Any]] = {}
    for url, payload in _payloads(f"{prefix}.http.0.0"):
        assert url is not None
        symbol = url.partition("symbol=")[2].partition("&")[0]
        snapshots[symbol] = payload
    diffs: dict[str, list[dict[str, Any]]] = {symbol: [] for symbol in snapshots}
    for _, payload in _payloads(f"{prefix}.ws.1.0"):
        if isinstance(payload, dict) and str(payload.get("stream", "")).endswith("@depth@100ms"):
            data = payload["data"]
            diffs.setdefault(data["s"], []).append(data)
    captures = {}
    for symbol, snapshot in snapshots.items():
        last = snapshot["lastUpdateId"]
        after = [d for d in diffs[symbol] if (d["u"] >= last if futures else d["u"] > last)]
        if after:
            first = after[0]
            target = last if futures else last + 1
            assert first["U"] <= target <= first["u"], f"{symbol}: capture does not sync"
        captures[symbol] = DepthCapture(symbol, snapshot, after)
    return captures


@dataclass
class BybitCapture:
    """A Bybit topic converted to v5: the snapshot's levels and the deltas after it."""

    symbol: str
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    seq: int
    ts_ms: int
    deltas: list[dict[str, Any]]  # {"b", "a", "seq", "ts"}


def bybit_v5_captures(rename: dict[str, str] | None = None) -> dict[str, BybitCapture]:
    """BYBIT.ws.26.0 converted to v5 messages' content, per symbol (``rename``d: the
    v2 inverse BTCUSD becomes e.g. the v5 spot BTCUSDT the test subscribes to)."""
    rename = rename or {}
    captures: dict[str, BybitCapture] = {}
    for _, payload in _payloads("BYBIT.ws.26.0"):
        if not isinstance(payload, dict) or not str(payload.get("topic", "")).startswith(
            "orderBookL2_25."
        ):
            continue
        v2_symbol = payload["topic"].partition(".")[2]
        symbol = rename.get(v2_symbol, v2_symbol)
        ts_ms = payload["timestamp_e6"] // 1000
        if payload["type"] == "snapshot":
            levels = payload["data"]
            bids = sorted(
                ((lv["price"], str(lv["size"])) for lv in levels if lv["side"] == "Buy"),
                key=lambda level: -float(level[0]),
            )
            asks = sorted(
                ((lv["price"], str(lv["size"])) for lv in levels if lv["side"] == "Sell"),
                key=lambda level: float(level[0]),
            )
            captures[symbol] = BybitCapture(symbol, bids, asks, payload["cross_seq"], ts_ms, [])
        elif symbol in captures:
            data = payload["data"]
            changes: dict[str, list[list[str]]] = {"b": [], "a": []}
            for level in data["delete"]:
                changes["b" if level["side"] == "Buy" else "a"].append([level["price"], "0"])
            for level in data["update"] + data["insert"]:
                key = "b" if level["side"] == "Buy" else "a"
                changes[key].append([level["price"], str(level["size"])])
            captures[symbol].deltas.append(
                {"b": changes["b"], "a": changes["a"], "seq": payload["cross_seq"], "ts": ts_ms}
            )
    return captures


def upbit_books(code: str) -> list[dict[str, Any]]:
    """UPBIT.ws.62.0's whole books of ``code`` (SIMPLE format: ``tms``, ``obu``)."""
    return [
        payload
        for _, payload in _payloads("UPBIT.ws.62.0")
        if isinstance(payload, dict) and payload.get("ty") == "orderbook" and payload["cd"] == code
    ]
