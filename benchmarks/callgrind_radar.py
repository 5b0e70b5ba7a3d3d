"""The radar's replay in instructions per book, counted by callgrind: what the README's
instruction counts (the engine, the Verifier, publishing radar.metrics) come from.

    .venv/bin/python benchmarks/callgrind_radar.py [--books N]

Needs valgrind and the release build of the radar (``make cpp``). The books are
bench_radar's (``write_replay``: 10x10 books over a dozen venue/symbol pairs, one
journal), replayed as bench_radar's replay runs them (``--start beginning --fx 1400``,
every pair computed on every book) in the same variants: as deployed (registered as
the journal's reader, publishing radar.metrics with ``--metrics-file``), with
``--no-verify``, registered without radar.metrics, and ``--no-metrics``.

Each variant runs twice under ``valgrind --tool=callgrind``, over the first N/5 books
and over N, and a figure per book is the difference of the two counts divided by the
difference of the books: start-up, creating radar.metrics and the summary at the end
cancel out, what is left is the per-book path. Callgrind counts instructions, not
time (no cache misses, no stores to shared memory made slower by a reader): the
replay rates of bench_radar.py say what they cost in time. Everything is made in one
directory in /dev/shm, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import commit, cpu_model
from bench_radar import DEPLOYED, FX, RADAR, REPLAY_VARIANTS, WITHOUT_FILE, Replay, write_replay

SHM = Path("/dev/shm")
TOTAL = re.compile(r"^summary: (\d+)$", re.MULTILINE)
RESULTS = re.compile(r"results: (\d+) \(")
# The engine's entry point (engine.hpp), its inclusive count per book.
ENGINE_FUNCTION = "radar::Engine::update("


def callgrind(work: Path, books: int, variant: Replay, name: str) -> tuple[int, int, int]:
    """The radar replaying ``books`` books under callgrind: its total instructions,
    those inside Engine::update (0 if callgrind names no such function), its results."""
    out = work / f"{name}.callgrind"
    argv = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        str(RADAR), "--journal", str(work / "books"), "--start", "beginning", "--quiet",
        "--idle", "spin", "--max-records", str(books), "--stale-ms", "100000000000",
        "--fx", str(FX), *variant.options,
    ]  # fmt: skip
    if variant.radar_metrics:
        argv += ["--metrics-file", str(work / "radar.metrics")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the radar under callgrind exited {done.returncode}:\n{done.stderr}")
    if f"radar summary: {books} books" not in done.stderr:
        raise SystemExit(f"the radar did not replay {books} books:\n{done.stderr}")
    results = RESULTS.search(done.stderr)
    total = TOTAL.search(out.read_text())
    if results is None or total is None:
        raise SystemExit(f"no result count or no callgrind summary in {out}:\n{done.stderr}")
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out)],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    engine = next(
        (int(line.split()[0].replace(",", "")) for line in annotated.splitlines()
         if ENGINE_FUNCTION in line),
        0,
    )  # fmt: skip
    return int(total[1]), engine, int(results[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--books", type=int, default=100_000, help="books of the longer run (default 100,000)"
    )
    args = parser.parse_args()
    if not RADAR.exists():
        sys.exit(f"{RADAR} is missing: run `make cpp` first")
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        sys.exit("valgrind is missing: apt-get install valgrind")
    long_run, short_run = args.books, args.books // 5
    print(f"# callgrind_radar: {cpu_model()}; at {commit('radar_reader/')}")
    print(f"# {short_run:,} and {long_run:,} books per variant; per book: the difference\n")
    work = Path(tempfile.mkdtemp(prefix="callgrind-radar-", dir=SHM))
    try:
        write_replay(work / "books", long_run)
        per_book: dict[str, float] = {}
        print(f"{'variant':<42} {'instructions/book':>17} {'Engine::update':>15} {'results':>8}")
        for index, (label, variant) in enumerate(REPLAY_VARIANTS.items()):
            short = callgrind(work, short_run, variant, f"{index}-short")
            long = callgrind(work, long_run, variant, f"{index}-long")
            books = long_run - short_run
            per_book[label] = (long[0] - short[0]) / books
            engine = f"{(long[1] - short[1]) / books:,.0f}" if long[1] else "-"
            results = (long[2] - short[2]) / books
            print(f"{label:<42} {per_book[label]:>17,.0f} {engine:>15} {results:>8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nradar.metrics ('{DEPLOYED}' - '{WITHOUT_FILE}'): "
        f"{per_book[DEPLOYED] - per_book[WITHOUT_FILE]:+,.0f} instructions/book"
    )
    print(
        f"the Verifier ('{DEPLOYED}' - '--no-verify'): "
        f"{per_book[DEPLOYED] - per_book['--no-verify']:+,.0f} instructions/book"
    )
    print(
        f"the reader registration ('{WITHOUT_FILE}' - 'verified, --no-metrics'): "
        f"{per_book[WITHOUT_FILE] - per_book['verified, --no-metrics']:+,.0f} instructions/book"
    )
    print(f"# /dev/shm cleaned up: {not os.path.exists(work)}")


if __name__ == "__main__":
    main()
