"""The layout tables of docs/FORMAT.md, read for the tests that hold them to the code."""

from __future__ import annotations

import itertools
import re

from tests.conftest import REPO


def format_md_rows(heading: str, table: int = 0) -> list[tuple[int, int, str]]:
    """(offset, size, name) rows of the ``table``-th layout block (from 0) of FORMAT.md's
    section ``## {heading}``."""
    text = (REPO / "docs" / "FORMAT.md").read_text()
    section = text.split(f"## {heading}")[1].split("\n## ")[0]
    block = section.split("```")[1 + 2 * table]
    rows = []
    for line in block.splitlines():
        match = re.match(r"\s*(\d+)\s+(\d+)\s+(\w+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), match[3]))
    return rows


def check_table(
    rows: list[tuple[int, int, str]], expected: dict[str, tuple[int, int]], size: int
) -> None:
    """The table names ``expected``'s fields at their places (apart from "reserved"
    rows) and covers ``size`` bytes from 0 without gaps or overlaps."""
    fields = {name: (offset, width) for offset, width, name in rows if name != "reserved"}
    assert fields == expected
    for (offset, width, _), (next_offset, _, _) in itertools.pairwise(rows):
        assert offset + width == next_offset
    assert rows[0][0] == 0 and rows[-1][0] + rows[-1][1] == size
