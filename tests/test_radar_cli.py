"""What a new user of the radar trips on (issue #10), against the real radar process:
numeric options out of range, journal paths that can never be a journal, fees for
venues that do not exist or never show up. Each is refused at once (exit 2, a
message naming the option or path and what is wrong) or said in the summary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests._cpp import program

EXIT_AT_ONCE_S = 10.0  # a refusal takes milliseconds; this only bounds a broken radar


def radar(*args: str, build: str = "release", timeout: float = EXIT_AT_ONCE_S):
    return subprocess.run(
        [str(program("radar", build)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# (option, value): infinite, NaN, huge, zero or negative where the option must be
# positive, not a whole number where it must be one.
BAD_NUMBERS = [
    ("--duration", "inf"),
    ("--duration", "1e300"),
    ("--duration", "nan"),
    ("--duration", "0"),
    ("--duration", "-1"),
    ("--notional-krw", "inf"),
    ("--notional-krw", "1e300"),
    ("--notional-krw", "0"),
    ("--notional-krw", "-10000000"),
    ("--fx", "inf"),
    ("--fx", "1e300"),
    ("--fx", "0"),
    ("--fx", "-1400"),
    ("--stale-ms", "inf"),
    ("--stale-ms", "1e300"),
    ("--stale-ms", "0"),
    ("--stale-ms", "-5"),
    ("--max-records", "-5"),
    ("--max-records", "0"),
    ("--max-records", "1.5"),
    ("--max-records", "1e300"),
    ("--max-records", "99999999999999999999"),
    ("--fee", "upbit=inf"),
    ("--fee", "upbit=1e300"),
    ("--fee", "upbit=-10000"),
    ("--fee", "upbit=nan"),
]


@pytest.mark.parametrize(("option", "value"), BAD_NUMBERS)
def test_numeric_option_out_of_range_is_refused_naming_option_and_value(
    shm_dir: Path, option: str, value: str
) -> None:
    # --duration first: a radar that took the bad value would stop on its own.
    refused = radar("--journal", str(shm_dir / "books"), "--duration", "0.5", option, value)
    assert refused.returncode == 2, refused.stderr
    assert f"radar: {option} {value}: " in refused.stderr
    assert "radar summary" not in refused.stderr


def test_numeric_options_in_range_are_taken(shm_dir: Path) -> None:
    taken = radar(
        *("--journal", str(shm_dir / "books"), "--duration", "0.05", "--max-records", "1"),
        *("--stale-ms", "0.5", "--fx", "1400", "--notional-krw", "1e6", "--fee", "upbit=-2.5"),
    )
    assert taken.returncode == 0, taken.stderr
    assert "radar summary: 0 books" in taken.stderr


@pytest.mark.parametrize("value", ["1e300", "inf", "-1e300"])
def test_out_of_range_duration_is_refused_before_any_conversion(shm_dir: Path, value: str) -> None:
    # Under UBSan: the value is refused, never converted to an integer.
    refused = radar("--journal", str(shm_dir / "books"), "--duration", value, build="sanitize")
    assert refused.returncode == 2, refused.stderr
    assert f"radar: --duration {value}: " in refused.stderr
    assert "runtime error" not in refused.stderr
