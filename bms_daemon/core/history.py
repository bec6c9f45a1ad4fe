"""The history page [5.1] and its counting rules (SPEC §2, BMV/SmartShunt definitions).

- deepest discharge: the largest consumed Ah ever; last discharge: the largest since the last
  synchronisation; cumulative Ah drawn and the energies count every discharge/charge sample;
- a charge cycle counts when SOC drops below 65 % and later rises above 90 %;
- a synchronisation counts only if SOC had dropped below 90 % since the last counted one;
- a full discharge counts when SOC reaches 0 %; it re-arms once SOC is back above
  ``FULL_DISCHARGE_REARM_SOC`` (ours), so a SOC hovering at 0 % counts once;
- time since the last full charge accumulates the control loop's ``dt``: no wall clock is
  needed, and time the daemon was not running is not counted (there is no clock to trust).

The counting-rule memory (below 65 %, below 90 %, at 0 %) lives in ``History`` itself so that it
is persisted with the counters and a restart does not miscount.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bms_daemon.core.errors import SnapshotError
from bms_daemon.core.types import History

CYCLE_LOW_SOC = 65.0  # %: a cycle starts when SOC drops below this ...
CYCLE_HIGH_SOC = 90.0  # % ... and counts when SOC later rises above this
SYNC_COUNT_BELOW_SOC = 90.0  # %: a sync counts only if SOC was below this since the last one
FULL_DISCHARGE_SOC = 0.0  # %
FULL_DISCHARGE_REARM_SOC = 10.0  # % (ours)
JOULES_PER_KWH = 3.6e6
SECONDS_PER_HOUR = 3600.0


class HistoryTracker:
    """Owns a ``History`` and applies the counting rules to it."""

    __slots__ = ("history",)

    def __init__(self, history: History | None = None) -> None:
        self.history = history if history is not None else History()

    def sample(
        self,
        *,
        voltage: float,
        current: float,
        dt: float,
        min_cell: float,
        max_cell: float,
        min_temperature: float,
        max_temperature: float,
    ) -> None:
        """One fresh battery sample: energies, Ah drawn, extremes.  ``current`` is zero-banded."""
        h = self.history
        if dt > 0.0 and current:
            if current < 0.0:
                h.cumulative_ah_drawn += -current * dt / SECONDS_PER_HOUR
                h.discharged_energy_kwh += -current * voltage * dt / JOULES_PER_KWH
            else:
                h.charged_energy_kwh += current * voltage * dt / JOULES_PER_KWH
        if h.min_bank_voltage is None or voltage < h.min_bank_voltage:
            h.min_bank_voltage = voltage
        if h.max_bank_voltage is None or voltage > h.max_bank_voltage:
            h.max_bank_voltage = voltage
        if h.min_cell_voltage is None or min_cell < h.min_cell_voltage:
            h.min_cell_voltage = min_cell
        if h.max_cell_voltage is None or max_cell > h.max_cell_voltage:
            h.max_cell_voltage = max_cell
        if h.min_temperature is None or min_temperature < h.min_temperature:
            h.min_temperature = min_temperature
        if h.max_temperature is None or max_temperature > h.max_temperature:
            h.max_temperature = max_temperature

    def elapse(self, dt: float) -> None:
        """Time passes (every control step, data or not)."""
        if self.history.seconds_since_full_charge is not None and dt > 0.0:
            self.history.seconds_since_full_charge += dt

    def soc(self, soc: float, consumed_ah: float | None) -> None:
        """The known SOC of this step: discharge depths and the cycle / full-discharge rules."""
        h = self.history
        if consumed_ah is not None:
            h.deepest_discharge_ah = max(h.deepest_discharge_ah, consumed_ah)
            h.last_discharge_ah = max(h.last_discharge_ah, consumed_ah)
        if soc < CYCLE_LOW_SOC:
            h.below_65_since_cycle = True
        elif soc > CYCLE_HIGH_SOC and h.below_65_since_cycle:
            h.charge_cycles += 1
            h.below_65_since_cycle = False
        if soc < SYNC_COUNT_BELOW_SOC:
            h.below_90_since_sync = True
        if soc <= FULL_DISCHARGE_SOC:
            if not h.at_zero:
                h.full_discharges += 1
                h.at_zero = True
        elif soc > FULL_DISCHARGE_REARM_SOC:
            h.at_zero = False

    def synchronised(self) -> None:
        """An automatic synchronisation fired: the battery is full."""
        h = self.history
        if h.below_90_since_sync:
            h.synchronisations += 1
            h.below_90_since_sync = False
        h.seconds_since_full_charge = 0.0
        h.last_discharge_ah = 0.0

    def reset(self) -> None:
        """The reset-history command: every counter and extreme back to its initial value."""
        self.history = History()

    def copy(self) -> History:
        """A copy a caller may keep or change."""
        return dataclasses.replace(self.history, extra=dict(self.history.extra))

    # --- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """JSON-ready mapping of every History field."""
        data = dataclasses.asdict(self.history)
        return data

    @classmethod
    def restore(cls, data: object) -> HistoryTracker:
        """From ``snapshot()``; ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise SnapshotError("history: expected a table")
        fields = {f.name: f for f in dataclasses.fields(History)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise SnapshotError(f"history: unknown field {unknown[0]!r}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = getattr(History(), name)
            if name == "extra":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and _is_number(v) for k, v in value.items()
                ):
                    raise SnapshotError("history: extra must map names to numbers")
                values[name] = {k: float(v) for k, v in value.items()}
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise SnapshotError(f"history: {name} must be true or false")
                values[name] = value
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise SnapshotError(f"history: {name} must be a count")
                values[name] = value
            elif value is None and (default is None):
                values[name] = None
            elif _is_number(value):
                values[name] = float(value)
            else:
                raise SnapshotError(f"history: {name} must be a number, not {value!r}")
        return cls(History(**values))


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
