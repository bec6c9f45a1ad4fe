"""The in-memory GPIO backend: the default, for running and testing without a Raspberry Pi.

It behaves like the real pins where it matters to a user: outputs start floating, a driven
output is read back (a line marked faulty with ``fail`` reads back floating when driven, exactly
like a shorted pin, so E-B11 can be exercised), and the remote input is debounced in software
like gpiod's kernel debounce.

So that a person or a test can *see* the outputs of a running daemon, the backend rewrites a
small JSON file at every change of a terminal or of the remote input (``{"load": true,
"charger": true, "prealarm": false, "remote": true}``, True = driven high) when given
``outputs_file``.  The LEDs are left out of the file: a blinking LED would rewrite it twice a
second for nothing (their levels are in ``levels`` for in-process tests).

The remote input can be flipped from outside through ``remote_file``: a file
containing ``0``/``off``/``open`` opens the loop, anything else (or no file) closes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from bms_daemon.gpio.base import OUTPUT_NAMES, TERMINALS, GpioError

REMOTE_OFF_WORDS = frozenset({"0", "off", "open", "false", "no"})


class MemoryPort:
    """Pins in a dict.  ``clock`` gives monotonic seconds (injected in tests)."""

    def __init__(
        self,
        outputs: Iterable[str] = OUTPUT_NAMES,
        *,
        remote_connected: bool = True,
        debounce_s: float = 0.0,
        outputs_file: Path | None = None,
        remote_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._names = tuple(outputs)
        self.levels: dict[str, bool] = dict.fromkeys(self._names, False)
        self.faulty: set[str] = set()
        self.remote_connected = remote_connected
        self.debounce_s = debounce_s
        self.outputs_file = outputs_file
        self.remote_file = remote_file
        self.clock = clock
        self.closed = False
        self.remote_fault = False
        self.writes = 0  # number of output changes (a test can check that nothing toggles)
        self._raw_remote = True
        self._raw_since = clock()
        self._remote = True
        self._remote_file_stamp: tuple[int, int] | None = None
        self._publish()

    # --- test and operator hooks ------------------------------------------------------------
    def fail(self, name: str) -> None:
        """Make a line misbehave (reads back wrong, or the remote cannot be read)."""
        if name == "remote":
            self.remote_fault = True
        else:
            self.faulty.add(name)

    def set_remote(self, closed: bool) -> None:
        """Change the raw remote level; the debounced value follows after ``debounce_s``."""
        if closed != self._raw_remote:
            self._raw_remote = closed
            self._raw_since = self.clock()

    # --- GpioPort ---------------------------------------------------------------------------
    @property
    def outputs(self) -> tuple[str, ...]:
        return self._names

    def set_output(self, name: str, active: bool) -> None:
        if name not in self.levels:
            raise GpioError(f"output {name!r} is not connected")
        if self.closed:
            raise GpioError(f"output {name}: the GPIO lines are released")
        if self.levels[name] != active:
            self.levels[name] = active
            self.writes += 1
            if name in TERMINALS:
                self._publish()
        # Like the gpiod backend, only a driven line is read back (GpioPort.set_output).
        if active and name in self.faulty:
            raise GpioError(f"output {name} reads back floating after being set high")

    def read_remote(self) -> bool:
        if not self.remote_connected:
            return True
        if self.remote_fault:
            raise GpioError("remote input cannot be read")
        self._poll_remote_file()
        if (
            self._raw_remote != self._remote
            and self.clock() - self._raw_since >= self.debounce_s
        ):
            self._remote = self._raw_remote
            self._publish()
        return self._remote

    def float_outputs(self) -> None:
        changed = any(self.levels.values())
        for name in self.levels:
            self.levels[name] = False
        if changed:
            self.writes += 1
            self._publish()

    def close(self) -> None:
        self.float_outputs()
        self.closed = True

    # --- internals --------------------------------------------------------------------------
    def _poll_remote_file(self) -> None:
        if self.remote_file is None:
            return
        try:
            stat = self.remote_file.stat()
        except OSError:
            stamp = None
        else:
            stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._remote_file_stamp:
            return
        self._remote_file_stamp = stamp
        if stamp is None:
            self.set_remote(True)
            return
        try:
            word = self.remote_file.read_text(encoding="utf-8").strip().lower()
        except OSError:
            return
        self.set_remote(word not in REMOTE_OFF_WORDS)

    def _publish(self) -> None:
        if self.outputs_file is None:
            return
        state = {name: level for name, level in self.levels.items() if name in TERMINALS}
        state["remote"] = self._remote
        write_levels(self.outputs_file, state)


def write_levels(path: Path, state: dict[str, bool]) -> None:
    """Replace the observable outputs file in one rename (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        # The file is an observation aid, not the outputs themselves: never fail a set for it.
        with contextlib.suppress(OSError):
            tmp.unlink()


def float_file(path: Path) -> None:
    """The memory backend's ``float-outputs``: mark every output of a stopped daemon floating."""
    state: dict[str, bool] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            state = {str(k): bool(v) for k, v in loaded.items()}
    for name in TERMINALS:
        state[name] = False
    write_levels(path, state)
