"""load_books and Ctrl-C: an interrupt stops the load at once, in any thread mode."""

from __future__ import annotations

import pytest

from journal.analysis import _INLINE


def test_ctrl_c_in_a_one_thread_load_is_raised_at_once() -> None:
    """threads=0 runs the tasks in the calling thread: a KeyboardInterrupt there is
    the caller's, raised at once, not kept in the task's future (from which it could
    come back as InvalidStateError, when it landed after the result was set)."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _INLINE.submit(interrupted)
    failed = _INLINE.submit(int, "x")  # a task's own error still waits for result()
    with pytest.raises(ValueError):
        failed.result()
