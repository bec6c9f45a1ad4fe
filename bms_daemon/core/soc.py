"""State of charge: coulomb counting, synchronisation, a rest-voltage estimate, time to go.

The counter keeps SOC in percent, not in ampere-hours, so that it survives a change of the
detected bank (a battery added in parallel) and a restart before the first readings arrive;
ampere-hours are converted with the bank capacity of the moment.

Rules (SPEC §4), with the battery-monitor family's numbers (BMV/SmartShunt):
- currents within +-0.1 A count as zero, so a sensor offset does not drift SOC for weeks;
- charge is counted at 99 % efficiency (LFP), discharge through Peukert 1.05 referred to the
  20-hour rate (ours, LFP values); SOC is clamped to 0-100 %;
- synchronisation to 100 % when V >= charged voltage and 0 <= I < tail current, continuously for
  the charge detection time; it fires once per continuous period;
- until a first synchronisation, a manual set or a rest-voltage estimate, SOC is unknown.

Rest-voltage estimate (ours): the LFP rest curve is flat (about 3.25-3.34 V from 20 to 90 %), so a
voltage only tells SOC where the curve is steep.  We estimate only at the low end: after the
current has stayed in the zero band for ``REST_TIME_S`` and the average rested cell voltage lies
where the curve falls at least ``REST_ESTIMATE_MIN_SLOPE`` per percent (below 3.23 V, i.e.
at most 11 % by our curve).  The estimate errs low on purpose, which only makes the discharge
floor act earlier: our curve sits about 30 % below a typical one, and a battery still recovering
after a discharge reads lower still.  The high end is not
estimated: a rested full LFP cell and one at 90 % differ by a few tens of millivolts, less than
what temperature and relaxation move it.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Any

from bms_daemon.core.errors import SnapshotError

ZERO_CURRENT_BAND = 0.1  # A: |I| below this counts as zero (BMV "current threshold")
CHARGE_EFFICIENCY = 0.99  # (ours, LFP)
PEUKERT_EXPONENT = 1.05  # (ours, LFP; BMV manual suggests 1.05 for Li-ion)
PEUKERT_RATED_HOURS = 20.0  # the capacity is rated at the 20-hour rate
TTG_AVERAGING_S = 180.0  # time to go averages the discharge current over 3 min (BMV default)
REST_TIME_S = 600.0  # (ours) current in the zero band this long = the battery is at rest
REST_ESTIMATE_MIN_SLOPE = 0.005  # V per % (ours): estimate only where 10 mV moves SOC <= 2 %
SOC_FULL = 100.0
SECONDS_PER_HOUR = 3600.0

# Rested LFP cell voltage (V) against SOC (%), 25 °C (ours).  Deliberately pessimistic: at every
# voltage it gives about 70 % of the SOC of a typical published pseudo-OCV table (the one the
# simulator uses, bms_daemon/sources/ocv.py, research/ecosystem.md §1.6), at least half a
# percent less, so that a cell a little below the typical curve still reads low, never high.
LFP_REST_CURVE: tuple[tuple[float, float], ...] = (
    (2.80, 0.0),
    (2.95, 0.5),
    (3.05, 1.5),
    (3.15, 3.5),
    (3.20, 7.5),
    (3.23, 11.0),
    (3.25, 16.0),
    (3.27, 25.0),
    (3.29, 40.0),
    (3.30, 50.0),
    (3.32, 70.0),
    (3.34, 85.0),
    (3.36, 93.0),
    (3.40, 100.0),
)
_CURVE_V = tuple(v for v, _ in LFP_REST_CURVE)


class SocSource:
    """Where the SOC in force came from (shown in logs; persisted)."""

    UNKNOWN = "unknown"
    SYNC = "synchronised"
    SET = "set"
    MANUAL_SYNC = "manual synchronisation"
    ESTIMATE = "rest-voltage estimate"
    ALL = (UNKNOWN, SYNC, SET, MANUAL_SYNC, ESTIMATE)


def zero_band(current: float) -> float:
    """The current as the counter sees it: within +-0.1 A it is zero."""
    return 0.0 if -ZERO_CURRENT_BAND < current < ZERO_CURRENT_BAND else current


def peukert_current(discharge_a: float, capacity_ah: float) -> float:
    """Effective discharge current (A, >= 0) for a discharge of ``discharge_a`` amperes (> 0).

    I_eff = I * (I / I20) ** (n - 1): above the 20-hour rate a battery gives less, below it more.
    """
    if discharge_a <= 0.0 or capacity_ah <= 0.0:
        return 0.0
    i20 = capacity_ah / PEUKERT_RATED_HOURS
    factor: float = (discharge_a / i20) ** (PEUKERT_EXPONENT - 1.0)
    return discharge_a * factor


def _estimate_ceiling() -> float:
    """The voltage where the curve first turns flatter than ``REST_ESTIMATE_MIN_SLOPE``: the
    estimate is made only below it (the steep low end), never in the flat middle or the top."""
    for (v0, s0), (v1, s1) in itertools.pairwise(LFP_REST_CURVE):
        if (v1 - v0) / (s1 - s0) < REST_ESTIMATE_MIN_SLOPE:
            return v0
    return LFP_REST_CURVE[-1][0]


REST_ESTIMATE_CEILING_V = _estimate_ceiling()  # 3.23 V with our curve


def rest_estimate(cell_voltage: float) -> float | None:
    """SOC (%) from a rested average cell voltage, or None where the curve is too flat."""
    if not math.isfinite(cell_voltage) or cell_voltage >= REST_ESTIMATE_CEILING_V:
        return None
    if cell_voltage <= _CURVE_V[0]:
        return 0.0
    i = bisect.bisect_right(_CURVE_V, cell_voltage)
    (v0, s0), (v1, s1) = LFP_REST_CURVE[i - 1], LFP_REST_CURVE[i]
    return float(s0 + (cell_voltage - v0) / (v1 - v0) * (s1 - s0))


@dataclass(slots=True)
class SocCounter:
    """The counter's state.  ``soc`` is meaningful only when ``source`` is not UNKNOWN."""

    soc: float = SOC_FULL
    source: str = SocSource.UNKNOWN
    sync_timer: float = 0.0  # s the sync condition has held continuously
    sync_fired: bool = False  # the sync already fired in this continuous period
    rest_timer: float = 0.0  # s the current has stayed in the zero band
    average_current: float | None = None  # A, the present discharge's exponential average

    # --- queries -------------------------------------------------------------------------------
    @property
    def known(self) -> bool:
        """SOC came from a sync, a set or an estimate."""
        return self.source != SocSource.UNKNOWN

    def value(self) -> float | None:
        """SOC in percent, None while unknown."""
        return self.soc if self.source != SocSource.UNKNOWN else None

    def consumed_ah(self, capacity_ah: float) -> float | None:
        """Ah taken out since the battery was last full (None while SOC is unknown)."""
        if self.source == SocSource.UNKNOWN or capacity_ah <= 0.0:
            return None
        return (SOC_FULL - self.soc) / SOC_FULL * capacity_ah

    def time_to_go_min(
        self, current: float, capacity_ah: float, discharge_floor: float
    ) -> float | None:
        """Minutes until the discharge floor (0 % when the floor is disabled) at the averaged
        discharge current; None while not discharging or while SOC is unknown."""
        average = self.average_current
        if (
            self.source == SocSource.UNKNOWN
            or average is None
            or current >= 0.0
            or average > -ZERO_CURRENT_BAND
            or capacity_ah <= 0.0
        ):
            return None
        remaining_ah = max(self.soc - discharge_floor, 0.0) / SOC_FULL * capacity_ah
        return remaining_ah / peukert_current(-average, capacity_ah) * 60.0

    # --- counting ------------------------------------------------------------------------------
    def count(self, current: float, dt: float, capacity_ah: float) -> None:
        """Integrate one sample (``current`` already through the zero band) over ``dt`` s."""
        average = self.average_current
        if current >= 0.0:
            # Time to go averages the *present discharge* only: idle or charging samples end it,
            # so the next discharge starts afresh at its own current.  Otherwise the minutes of
            # a short charge (or of idle) would drag the average towards zero and make time to
            # go show hours too many until the average caught up (about 5 min).
            self.average_current = None
        elif average is None:
            self.average_current = current
        elif dt > 0.0:
            self.average_current = average + dt / (TTG_AVERAGING_S + dt) * (current - average)
        if dt <= 0.0 or self.source == SocSource.UNKNOWN or capacity_ah <= 0.0 or current == 0.0:
            return
        if current > 0.0:
            ah = current * CHARGE_EFFICIENCY * dt / SECONDS_PER_HOUR
        else:
            ah = -peukert_current(-current, capacity_ah) * dt / SECONDS_PER_HOUR
        soc = self.soc + ah / capacity_ah * SOC_FULL
        self.soc = SOC_FULL if soc > SOC_FULL else (0.0 if soc < 0.0 else soc)

    def check_sync(
        self,
        *,
        voltage: float,
        current: float,
        dt: float,
        charged_voltage: float,
        tail_current_a: float,
        detection_s: float,
    ) -> bool:
        """Advance the synchronisation timer; True on the step the sync fires (SOC -> 100 %)."""
        if voltage >= charged_voltage and 0.0 <= current < tail_current_a:
            self.sync_timer += dt
            if self.sync_timer >= detection_s and not self.sync_fired:
                self.sync_fired = True
                self.soc = SOC_FULL
                self.source = SocSource.SYNC
                return True
        else:
            self.sync_timer = 0.0
            self.sync_fired = False
        return False

    def reset_sync_timer(self) -> None:
        """Start the detection time over (a sync setting changed, or data went missing)."""
        self.sync_timer = 0.0
        self.sync_fired = False

    def check_rest(self, current: float, dt: float, cell_voltage: float) -> bool:
        """While SOC is unknown, estimate it from the rest voltage; True when it did."""
        if self.source != SocSource.UNKNOWN:
            return False
        if current != 0.0:
            self.rest_timer = 0.0
            return False
        self.rest_timer += dt
        if self.rest_timer < REST_TIME_S:
            return False
        estimate = rest_estimate(cell_voltage)
        if estimate is None:
            return False
        self.soc = estimate
        self.source = SocSource.ESTIMATE
        return True

    # --- commands ------------------------------------------------------------------------------
    def set(self, soc: float, source: str = SocSource.SET) -> None:
        """A manual set (or manual synchronisation at 100 %)."""
        self.soc = min(max(soc, 0.0), SOC_FULL)
        self.source = source

    # --- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What must survive a restart: the value and where it came from, not the timers."""
        return {"soc": self.soc, "source": self.source}

    @classmethod
    def restore(cls, data: object) -> SocCounter:
        """From ``snapshot()``; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise SnapshotError("soc: expected a table")
        soc, source = data.get("soc"), data.get("source")
        if isinstance(soc, bool) or not isinstance(soc, int | float) or not 0 <= soc <= SOC_FULL:
            raise SnapshotError(f"soc: value {soc!r} is not a percentage")
        if source not in SocSource.ALL:
            raise SnapshotError(f"soc: unknown source {source!r}")
        return cls(soc=float(soc), source=str(source))
