"""Victron's published VE-Reg GATT service: register values and the keep-alive (pure).

Existing readers of Victron battery monitors (batmon-ha, ESPHome ``victron_ble_connect``,
Signal K, Gadgetbridge) read each register once, subscribe, and write a keep-alive
(``6597ffff``, uint16 ms, 0xFFFF = forever) every 10-20 s; a SmartShunt drops the link one
minute after the last keep-alive (research/victron-ble.md §4.1).

smallbms cannot tell which central wrote a keep-alive (bless gives no peer address) and so
cannot drop the right link; instead the keep-alive gates the *notifications*: they flow while a
keep-alive is in force, and for ``DEFAULT_KEEP_ALIVE_S`` after a central connects, then stop.
Reads always answer.  The figures are the status characteristic's, in Victron's units, so a
reader of either service sees the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from bms_daemon.core.types import Status
from gatt import codec

DEFAULT_KEEP_ALIVE_S = 60.0  # Victron: "without a keep-alive the device disconnects after 1 min"


def register_values(status: Status) -> dict[str, bytes]:
    """Every VE-Reg characteristic's value (by profile key) for ``status``."""
    return {
        "vereg.soc": codec.vereg_soc(status.soc),
        "vereg.ttg": codec.vereg_ttg(status.ttg_min),
        "vereg.voltage": codec.vereg_voltage(status.voltage),
        "vereg.current": codec.vereg_current(status.current),
        "vereg.power": codec.vereg_power(status.power),
        "vereg.consumed_ah": codec.vereg_consumed_ah(status.consumed_ah),
        "vereg.temperature": codec.vereg_temperature(status.temperature),
    }


@dataclass(slots=True)
class KeepAlive:
    """When VE-Reg notifications stop: ``deadline`` None = never (keep-alive 0xFFFF)."""

    deadline: float | None = 0.0

    def connected(self, now: float) -> None:
        """A central connected: give it the default minute to send its first keep-alive."""
        if self.deadline is not None:
            self.deadline = max(self.deadline, now + DEFAULT_KEEP_ALIVE_S)

    def write(self, timeout_ms: int | None, now: float) -> None:
        """A keep-alive write: ``timeout_ms`` None = forever."""
        self.deadline = None if timeout_ms is None else now + timeout_ms / 1000

    def reset(self) -> None:
        """Nobody connected: the next central starts from the default again."""
        self.deadline = 0.0

    def active(self, now: float) -> bool:
        """VE-Reg notifications are wanted now."""
        return self.deadline is None or now < self.deadline
