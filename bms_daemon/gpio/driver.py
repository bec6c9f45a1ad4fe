"""From the core's verdict to the pins: outputs, LED blinking and hardware-fault handling.

The driver writes every output at every tick and reads each back, so a pin that stops obeying
(shorted, stolen by another process, chip gone) is noticed within one tick.  The first such
failure is *latched*: every output is released at once, and the daemon reports it to the core as
``Inputs(hardware_ok=False)``, which shows E-B11 and keeps LOAD and CHARGER floating until the
daemon restarts, as the manual says for a hardware error.

LEDs blink with a fixed half-period, driven by the daemon's LED task (``blink``) between ticks.
"""

from __future__ import annotations

import math

import structlog

from bms_daemon.core.types import Leds, LedState, Outputs
from bms_daemon.gpio.base import (
    CHARGER,
    LED_BLUE,
    LED_RED,
    LOAD,
    PREALARM,
    GpioError,
    GpioPort,
)

log = structlog.get_logger("smallbms.gpio")

BLINK_HALF_PERIOD_S = 0.5  # LED blink: 0.5 s on, 0.5 s off (ours)


def blink_phase(now: float) -> bool:
    """Whether a blinking LED is lit at ``now``."""
    return math.floor(now / BLINK_HALF_PERIOD_S) % 2 == 0


def next_blink_edge(now: float) -> float:
    """Seconds until the next blink edge (always > 0)."""
    return BLINK_HALF_PERIOD_S - math.fmod(now, BLINK_HALF_PERIOD_S) or BLINK_HALF_PERIOD_S


class OutputDriver:
    """Applies ``Outputs`` and ``Leds`` to a port; ``port`` None = the lines could not be had."""

    def __init__(self, port: GpioPort | None, fault: str | None = None) -> None:
        self.port = port
        self.fault: str | None = fault if port is not None else (fault or "no GPIO port")
        self.driven = Outputs.safe()
        self.leds = Leds()

    @property
    def hardware_ok(self) -> bool:
        """False once any line failed (latched until restart)."""
        return self.fault is None

    @property
    def blinking(self) -> bool:
        """Whether a LED needs the blink task."""
        return LedState.BLINK in (self.leds.blue, self.leds.red)

    def read_remote(self) -> bool:
        """The debounced remote input; a read failure latches the fault and reads "off"."""
        if self.port is None:
            return False
        try:
            return self.port.read_remote()
        except GpioError as exc:
            self._latch(str(exc))
            return False

    def apply(self, outputs: Outputs, leds: Leds, now: float) -> Outputs:
        """Drive the terminals and LEDs; returns what the terminals really are now."""
        self.leds = leds
        if self.fault is not None or self.port is None:
            self.driven = Outputs.safe()
            return self.driven
        wanted = {LOAD: outputs.load, CHARGER: outputs.charger, PREALARM: outputs.prealarm}
        try:
            for name, active in wanted.items():
                self.port.set_output(name, active)
        except GpioError as exc:
            self._latch(str(exc))
            return self.driven
        self.driven = outputs
        self.blink(now)
        return self.driven

    def blink(self, now: float) -> None:
        """Show the LEDs as they should be at ``now`` (blinking ones follow the phase)."""
        if self.port is None or self.fault is not None:
            return
        phase = blink_phase(now)
        for name, state in ((LED_BLUE, self.leds.blue), (LED_RED, self.leds.red)):
            if name not in self.port.outputs:
                continue
            lit = state is LedState.ON or (state is LedState.BLINK and phase)
            try:
                self.port.set_output(name, lit)
            except GpioError as exc:
                self._latch(str(exc))
                return

    def float_all(self) -> None:
        """Release every output (shutdown, fault); never raises."""
        self.driven = Outputs.safe()
        if self.port is not None:
            self.port.float_outputs()

    def _latch(self, problem: str) -> None:
        if self.fault is None:
            log.error("hardware_error", code="E-B11", problem=problem,
                      action="all outputs floating until restart")
        self.fault = self.fault or problem
        self.driven = Outputs.safe()
        if self.port is not None:
            self.port.float_outputs()
