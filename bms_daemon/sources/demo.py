"""``smallbms run --demo-speed N``: the simulated bank's day, N times faster than real time.

For demonstrations only, and only with the simulated source: the daemon's whole clock runs N
times faster (the control loop, the core's timers and coulomb counter, the simulated physics
all see the same time), so a day of the daily profile passes in 24/N hours and the pre-alarm,
the load disconnect, the charger and the synchronisation show within minutes.  A real battery
never runs on it: the core's timers (pre-alarm lead, comms loss) would be N times too short.

Bounded so that the core's arithmetic stays what it is at real time: one control step may not
cover more than the longest gap the coulomb counter integrates (``MAX_INTEGRATION_GAP_S``), so
``N / rate_hz <= 60 s``: 120x at the default 2 Hz.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bms_daemon.core.bms import MAX_INTEGRATION_GAP_S

MAX_DEMO_SPEED = 3600.0  # and within the per-step bound below


def check_demo_speed(speed: float, rate_hz: float, source_type: object) -> str | None:
    """A problem with ``--demo-speed speed`` for this configuration, or None."""
    if source_type != "simulated":
        return (f"--demo-speed runs only with the simulated source, not [source] type = "
                f"{source_type!r}: a real battery's timers must run at real time")
    limit = min(MAX_DEMO_SPEED, MAX_INTEGRATION_GAP_S * rate_hz)
    if not 1.0 <= speed <= limit:
        return (f"--demo-speed must be from 1 to {limit:g} at [bms] rate_hz = {rate_hz:g} (one "
                f"control step covers at most {MAX_INTEGRATION_GAP_S:g} simulated seconds), "
                f"not {speed:g}")
    return None


def demo_clock(speed: float, base: Callable[[], float] = time.monotonic) -> Callable[[], float]:
    """A monotonic clock that runs ``speed`` times faster than ``base`` from now on."""
    origin = base()

    def clock() -> float:
        return origin + (base() - origin) * speed

    return clock
