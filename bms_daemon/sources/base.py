"""The battery-source interface: where the BMS core gets its readings from.

The core never asks how the numbers were obtained; the daemon and the simulator call
``read(now)`` once per control tick and pass the result to ``Bms.step``.  A source that has no
fresh data (a cable unplugged, a simulated comms loss) returns ``None``, which is what makes the
core raise W-B05 and then A-B05.  ``apply_outputs`` closes the loop for a simulated bank (its
loads draw only while LOAD is high, its charger charges only while CHARGER is high); a source
that reads real batteries cannot influence them and ignores it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bms_daemon.core.types import Outputs, Readings


@runtime_checkable
class BatterySource(Protocol):
    """Something that reports the bank's batteries to the BMS."""

    def read(self, now: float) -> Readings | None:
        """The bank as it is at ``now`` (monotonic seconds), or None when no fresh data came."""
        ...

    def apply_outputs(self, outputs: Outputs) -> None:
        """Tell the source what the BMS's LOAD, CHARGER and PRE-ALARM terminals now do."""
        ...
