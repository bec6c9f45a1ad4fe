"""The GPIO edge: what the daemon asks of the Pi's pins, whatever library drives them.

Outputs are *active* or *inactive*, never "high"/"low": inactive always means the pin is
released (floating), which the wiring's pull-downs turn into "disconnect".  That is the
smallBMS NG's own convention (LOAD and CHARGER are high when allowed and float otherwise), and it
makes every failure — a stopped daemon, a released line, a missing driver — land on the safe side.

Two backends implement ``GpioPort``: ``memory`` (the default; no hardware, observable from tests)
and ``gpiod`` (libgpiod 2.x on the Pi's character device).  Nothing outside ``bms_daemon.gpio``
imports a backend module directly; ``bms_daemon.gpio.open_port`` picks one from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

LOAD = "load"
CHARGER = "charger"
PREALARM = "prealarm"
LED_BLUE = "led_blue"
LED_RED = "led_red"
REMOTE = "remote"
TERMINALS = (LOAD, CHARGER, PREALARM)  # the three outputs of the manual, always present
LEDS = (LED_BLUE, LED_RED)  # optional indicator outputs
OUTPUT_NAMES = TERMINALS + LEDS
LINE_NAMES = (*OUTPUT_NAMES, REMOTE)

BIASES = ("pull_down", "pull_up", "disabled", "as_is")
DEFAULT_CHIP = "gpiochip0"
# BCM GPIO numbers >= 9 default to pull-down at power-on, so a Pi that is booting (no daemon yet)
# leaves these outputs low: the safe state.  17/27/22 are not alternate-function pins.
DEFAULT_LINES: dict[str, int | str] = {
    LOAD: 17,
    CHARGER: 27,
    PREALARM: 22,
    LED_BLUE: 24,
    LED_RED: 25,
    REMOTE: "",  # not connected: the remote is considered on (closed loop)
}
DEFAULT_REMOTE_BIAS = "pull_down"
DEFAULT_REMOTE_DEBOUNCE_MS = 20.0  # contact bounce of a switch or relay is a few ms
MAX_REMOTE_DEBOUNCE_MS = 10_000.0


class GpioError(RuntimeError):
    """A line could not be requested, driven or read back; the message names the line."""


@dataclass(frozen=True, slots=True)
class LineSpec:
    """One line: an offset on the chip (``17``) or a line name (``"GPIO17"``)."""

    line: int | str
    active_low: bool = False


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """The ``[gpio]`` table of the configuration, validated.

    ``lines`` holds only the connected lines (a ``""`` in the config leaves a LED or the remote
    out).  ``memory_file`` and ``remote_file`` are used by the memory backend only (see
    bms_daemon.gpio.memory), relative to the state directory unless absolute.
    """

    backend: str = "memory"
    chip: str = DEFAULT_CHIP
    lines: dict[str, LineSpec] = field(
        default_factory=lambda: {
            name: LineSpec(line) for name, line in DEFAULT_LINES.items() if line != ""
        }
    )
    remote_bias: str = DEFAULT_REMOTE_BIAS
    remote_debounce_ms: float = DEFAULT_REMOTE_DEBOUNCE_MS
    memory_file: str = "gpio-memory.json"
    remote_file: str = ""

    def outputs(self) -> dict[str, LineSpec]:
        """The connected output lines, terminals first."""
        return {name: spec for name, spec in self.lines.items() if name in OUTPUT_NAMES}

    @property
    def remote(self) -> LineSpec | None:
        """The remote input line, or None when not connected (remote always on)."""
        return self.lines.get(REMOTE)


class GpioPort(Protocol):
    """The pins as the daemon sees them.  Every method is quick and non-blocking."""

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the connected outputs (a subset of ``OUTPUT_NAMES``)."""
        ...

    def set_output(self, name: str, active: bool) -> None:
        """Drive (active) or release (inactive) one output; a driven output is read back.

        Raises ``GpioError`` when the line cannot be set, or when a driven line does not read
        back driven (shorted, overloaded): the daemon turns that into E-B11 (hardware error)
        and floats everything.  A released line is not read back: its level is the wiring's
        (a pull-down, the driver stage's input, cable capacitance still discharging), not
        ours, and a false E-B11 would keep loads off until restart.
        """
        ...

    def read_remote(self) -> bool:
        """The debounced remote input: True = loop closed (on).  Always True when no remote
        line is connected.  Raises ``GpioError`` when the line cannot be read."""
        ...

    def float_outputs(self) -> None:
        """Release every output, best effort, never raising: the last thing before exit."""
        ...

    def close(self) -> None:
        """Release the lines (the kernel floats them with ``dtparam=strict_gpiod``)."""
        ...
