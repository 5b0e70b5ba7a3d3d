"""Value types for the command-line options that every command shares (argparse
``type=``): one check, one message, in ``journal``, ``journal top`` and the rest."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """A whole number of 1 or more (``--limit``, ``--rate``, ``--max-batch-records``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


def positive_number(text: str) -> float:
    """A finite number above 0 (``--duration``, ``--interval``, ``--fx``): 0 or less
    would never wait or price nothing, and time.sleep refuses infinity."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number above 0")
    return value
