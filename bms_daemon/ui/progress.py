"""A progress line on a terminal for commands that run longer than a couple of seconds.

Only on a terminal: in a pipe, a log file or CI (``$CI`` set) it writes nothing, so scripts
see the same output as before.  It says nothing for the first ``delay`` seconds (a short run
stays silent), then rewrites one line in place (carriage return) at most every ``interval``
seconds, and erases it at the end so the command's own last words stand alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TextIO

DELAY_S = 2.0  # a run shorter than this shows no progress at all
INTERVAL_S = 0.5  # the line is rewritten at most this often


class Progress:
    """``update(done)`` as work advances towards ``total``; ``finish()`` at the end."""

    def __init__(
        self,
        total: float,
        describe: Callable[[float], str],
        stream: TextIO,
        *,
        label: str,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool | None = None,
    ) -> None:
        self.total = total
        self.describe = describe
        self.stream = stream
        self.label = label
        self.clock = clock
        if enabled is None:
            enabled = stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.started = clock()
        self._next = self.started + DELAY_S
        self._width = 0  # of the line on screen, 0 = none

    def update(self, done: float) -> None:
        """Cheap when nothing is due: one clock read."""
        if not self.enabled:
            return
        now = self.clock()
        if now < self._next:
            return
        self._next = now + INTERVAL_S
        self.show(self.line(done, now - self.started))

    def line(self, done: float, elapsed: float) -> str:
        """E.g. "smallbms simulate: 3.2 d of 30 d (11 %), about 2 min left"."""
        fraction = min(max(done / self.total, 0.0), 1.0) if self.total > 0 else 0.0
        text = (f"{self.label}: {self.describe(done)} of {self.describe(self.total)} "
                f"({fraction:.0%})")
        if fraction > 0.0:
            text += f", about {_human(elapsed * (1.0 - fraction) / fraction)} left"
        return text

    def show(self, text: str) -> None:
        """Put ``text`` on the progress line (a phase without figures, e.g. "drawing ...")."""
        if not self.enabled:
            return
        pad = " " * max(0, self._width - len(text))
        self.stream.write(f"\r{text}{pad}")
        self.stream.flush()
        self._width = len(text)

    def finish(self) -> None:
        """Erase the line, if one was shown."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
