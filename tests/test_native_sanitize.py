"""The C extensions under AddressSanitizer and UndefinedBehaviorSanitizer.

``make sanitize-ext`` builds them with -fsanitize=address,undefined into
build/sanitize-ext (as the radar has its sanitizer build); here a Python process
with libasan preloaded imports those builds in place of the normal ones and drives
them: appends of every kind (valid and refused books, deep books, non-ASCII names,
rolls across small segments, batches, the publisher), then reads everything back.
Any report aborts the process (halt_on_error, -fno-sanitize-recover).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SANITIZED = REPO / "build" / "sanitize-ext" / "journal"

DRIVER = r"""
import importlib.util, sys
from pathlib import Path

sanitized = Path(sys.argv[1])
for name in ("_cwriter", "_creader"):
    found = sorted(sanitized.glob(f"{name}.*.so"))
    if not found:
        continue
    spec = importlib.util.spec_from_file_location(f"journal.{name}", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[f"journal.{name}"] = module  # journal._native takes it from here

import journal
from journal import _native
from journal.collector import BookPublisher

assert _native.cwriter is not None and _native.cwriter.__file__.startswith(str(sanitized))
root = Path(sys.argv[2])
bids = [[100.0 - i, 1.0 + i] for i in range(10)]
asks = [[101.0 + i, 2.0 + i] for i in range(10)]
deep = ([[1e6 - i, 1.0] for i in range(500)], [[1e6 + 1 + i, 1.0] for i in range(500)])
written = 0
with journal.Writer(root / "books", segment_size=64 * 1024, max_levels=500) as writer:
    for i in range(300):
        writer.append_orderbook("upbit", "BTC-KRW", i, i, bids, asks)
        writer.append_orderbook("\u4e2d\u6587", "\u00e9" * 30, i, i, bids[:i % 11], asks[:3], i)
        writer.append_dict({"exchangename": "u", "symbol": "s", "timestamp": i,
                            "sequence": i, "bids": tuple(map(tuple, bids)), "asks": asks})
        written += 3
        for bad in ([[float("nan"), 1.0]], [[1.0, -1.0]], bids[::-1], [[1, 1]]):
            try:
                writer.append_orderbook("upbit", "BTC-KRW", i, i, bad, asks)
                written += 1  # ints are taken (by the Python path)
            except journal.InvalidRecordError:
                pass
        try:
            writer.append_orderbook("x" * 65, "BTC-KRW", i, i, bids, asks)
        except journal.InvalidRecordError:
            pass
        if i % 10 == 0:
            written += writer.append_many([("upbit", "BTC-KRW", i, i, bids, asks)] * 20)
            writer.append_orderbook("upbit", "BTC-KRW", i, i, *deep)
            written += 1
with BookPublisher(root / "published", segment_size=64 * 1024, log_first=0) as publisher:
    for i in range(300):
        publisher.publish({"exchangename": "upbit", "symbol": "KRW-BTC", "timestamp": i,
                           "sequence": None if i % 2 else i, "bids": bids, "asks": asks})
        publisher.publish({"exchangename": "upbit", "symbol": "KRW-BTC", "timestamp": i,
                           "sequence": i, "bids": asks, "asks": bids})
    assert publisher.stats.published == 300, publisher.stats
for name, expected in (("books", written), ("published", 300)):
    reader = journal.Reader(root / name, start="beginning", metrics=False)
    count = 0
    while reader.try_next() is not None:
        count += 1
    reader.close()
    assert count == expected, (name, count, expected)
print("ok", written)
"""


def _libasan() -> str | None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    found = subprocess.run(
        [compiler, "-print-file-name=libasan.so"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return found if os.path.isabs(found) and os.path.exists(found) else None


@pytest.mark.slow
def test_the_extensions_under_asan_and_ubsan(shm_dir: Path) -> None:
    if not sorted(SANITIZED.glob("_cwriter.*.so")):
        pytest.skip("no sanitizer build: make sanitize-ext (make test builds it)")
    libasan = _libasan()
    if libasan is None:
        pytest.skip("libasan not found")
    env = {
        **os.environ,
        "LD_PRELOAD": libasan,
        "ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1:abort_on_error=1",
        "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        "PYTHONPATH": str(REPO),
    }
    env.pop("JOURNAL_PURE_PYTHON", None)  # the sanitized extensions are the point
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(SANITIZED), str(shm_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    assert done.stdout.startswith("ok "), done.stdout
    assert "runtime error" not in done.stderr, done.stderr[-5000:]
    assert "AddressSanitizer" not in done.stderr, done.stderr[-5000:]
