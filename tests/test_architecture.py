"""The layers of journal/ import one way (issue #11):

    core (journal._*)  <-  archive, collectors (collector, symbols, feeds, collect),
                           replicate
                       <-  analysis, monitor  <-  demo, cli

Every import counts, those inside functions too. ``journal/__init__.py`` is the
public API, not a layer: it gathers the core and registers the archive's narrow
interface (journal._archived), which is how the core Reader reads archives
without importing the archive package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "journal"
LAYERS = {
    "core": 0,
    "archive": 1,
    "collectors": 1,
    "replicate": 1,
    "analysis": 2,
    "monitor": 2,
    "demo": 3,
    "cli": 3,
}
MAY_IMPORT = {
    "core": {"core"},
    "archive": {"core", "archive"},
    "collectors": {"core", "collectors"},
    # journal replicate / mirror: the core's Reader and Writer (archives through
    # Reader(archive=)) and nats-py; nothing of the collectors or the monitor.
    "replicate": {"core", "archive", "replicate"},
    "analysis": {"core", "archive", "collectors", "analysis"},
    "monitor": {"core", "archive", "collectors", "monitor"},
    "demo": {"core", "archive", "collectors", "analysis", "monitor", "demo"},
    "cli": set(LAYERS),
}


def layer_of(module: str) -> str | None:
    """The layer of a ``journal...`` module; None for the package's own __init__."""
    parts = module.split(".")
    if parts[0] != "journal":
        raise ValueError(module)
    if len(parts) == 1:
        return None
    first = parts[1]
    if first.startswith("_"):
        return "core"
    if first in ("collector", "symbols", "feeds", "collect"):
        return "collectors"
    if first in LAYERS:
        return first
    raise AssertionError(f"{module}: no layer; add journal.{first} to tests/test_architecture.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every journal module ``path`` imports, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if node.module == "journal":  # from journal import _layout: the submodules
                found += [(node.lineno, f"journal.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "journal"]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_imports_run_one_way(path: Path) -> None:
    layer = layer_of(module_name(path))
    if layer is None:
        return
    wrong = []
    for line, imported in imports_of(path):
        target = layer_of(imported)
        if target is not None and target not in MAY_IMPORT[layer]:
            wrong.append(f"{path.relative_to(REPO)}:{line} ({layer}) imports {imported} ({target})")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_core_module_importing_the_archive(tmp_path: Path) -> None:
    """What the test above must catch, so that it cannot pass by seeing nothing."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from journal.archive import _archive\n")
    [(line, imported)] = imports_of(planted)
    assert (line, imported) == (2, "journal.archive")
    assert layer_of(imported) not in MAY_IMPORT["core"]


def test_ls_journal_shows_the_layers() -> None:
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert subpackages == [
        "analysis",
        "archive",
        "cli",
        "collect",
        "demo",
        "feeds",
        "monitor",
        "replicate",
    ]
    public = sorted(p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("_"))
    assert public == ["collector.py", "symbols.py"]
