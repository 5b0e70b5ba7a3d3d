"""Progress of a long command on stderr, as a terminal user and a log reader want it.

On a terminal: one live line, redrawn in place at most TERMINAL_REDRAW_S apart and
wiped when the command ends, so the scrollback keeps only the results. Elsewhere (a
log, a pipe, cron): a whole line at most every ``interval`` seconds (none for a
command that ends sooner) and, for a step that printed one, a line when it ends; so
a short export prints nothing extra and a long one shows it is alive. ``quiet``:
nothing.

    progress = Progress("journal export", stream=sys.stderr, interval=10.0)
    progress.update("loading", done, total, "records")   # called as often as you like
    progress.end("loaded 1,234 books")                    # the step ends
    progress.close()                                      # wipes the live line
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TextIO

TERMINAL_REDRAW_S: Final = 0.1
DEFAULT_INTERVAL_S: Final = 10.0
_WIPE: Final = "\r\x1b[K"


class Progress:
    """Where a command is, on ``stream`` (module docstring)."""

    def __init__(
        self,
        command: str,
        *,
        stream: TextIO,
        interval: float = DEFAULT_INTERVAL_S,
        quiet: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = command
        self.stream = stream
        self.quiet = quiet
        self.live = not quiet and _is_terminal(stream)
        self.interval = TERMINAL_REDRAW_S if self.live else interval
        self.clock = clock
        self._step_started = clock()
        self._step: str | None = None
        # On a terminal the first update is drawn at once (then redrawn at most
        # every TERMINAL_REDRAW_S); a log's first line waits an interval.
        self._last_shown = -float("inf") if self.live else clock()
        self._shown_in_step = False
        self._drawn = False

    def update(self, step: str, done: int, total: int | None, unit: str) -> None:
        """``done`` of ``total`` (None: not known yet) ``unit`` in ``step``, shown if
        it is time to (cheap otherwise: one clock read)."""
        if self.quiet:
            return
        now = self.clock()
        if step != self._step:
            self._step, self._step_started, self._shown_in_step = step, now, False
            if not self.live:
                self._last_shown = now  # a step's first line comes after an interval
        if now - self._last_shown < self.interval:
            return
        self._last_shown = now
        self._shown_in_step = True
        self._show(f"{step}: {_amount(done, total, unit)}{_rate(done, now - self._step_started)}")

    def end(self, text: str) -> None:
        """The step ends with ``text`` (shown on a log only if the step showed a line)."""
        if not self.quiet and not self.live and self._shown_in_step:
            self._show(text)
        self._step, self._shown_in_step = None, False

    def close(self) -> None:
        """Wipe the live line (a terminal keeps no progress behind)."""
        if self._drawn:
            self.stream.write(_WIPE)
            self.stream.flush()
            self._drawn = False

    def _show(self, text: str) -> None:
        if self.live:
            self.stream.write(f"{_WIPE}{self.command}: {text}")
            self._drawn = True
        else:
            self.stream.write(f"{self.command}: {text}\n")
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def _amount(done: int, total: int | None, unit: str) -> str:
    if total is None or total <= 0:
        return f"{done:,} {unit}"
    return f"{done:,} of {total:,} {unit} ({min(100.0, 100 * done / total):.0f}%)"


def _rate(done: int, seconds: float) -> str:
    if seconds <= 0 or not done:
        return ""
    rate = done / seconds
    return f", {rate / 1e6:.2f} M/s" if rate >= 1e5 else f", {rate:,.0f}/s"
