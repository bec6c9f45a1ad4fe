"""Balancer status (SPEC §4): unknown, balancing, imbalance, balanced.

The cells balance at the top of charge, so what the balancer can say depends on how recently
the bank was fully charged, and with which batteries:
- **unknown**: SOC unknown, no full charge yet, the last one more than 30 days ago, or the set
  of batteries changed since it (a battery was just added or swapped);
- **balancing**: charging above the charged voltage with a cell spread over 10 mV (ours);
- **imbalance**: otherwise, a cell spread over 50 mV (ours);
- **balanced**: otherwise.

The memory (time since the last full charge, which batteries were there) is the balancer's own,
so resetting the history does not make the balancer forget, and it is persisted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bms_daemon.core.errors import SnapshotError
from bms_daemon.core.types import BalancerState

UNKNOWN_AFTER_S = 30 * 24 * 3600.0  # no full charge for 30 days -> unknown [5.1]
BALANCING_SPREAD_V = 0.010  # (ours)
IMBALANCE_SPREAD_V = 0.050  # (ours)


@dataclass(slots=True)
class Balancer:
    """Last-full-charge memory and the state rule."""

    seconds_since_full_charge: float | None = None
    serials: frozenset[str] = frozenset()  # the batteries present at the last full charge

    def full_charge(self, serials: frozenset[str]) -> None:
        """A synchronisation: the bank is full now, with these batteries."""
        self.seconds_since_full_charge = 0.0
        self.serials = serials

    def elapse(self, dt: float) -> None:
        """Time passes (every control step)."""
        if self.seconds_since_full_charge is not None and dt > 0.0:
            self.seconds_since_full_charge += dt

    def state(
        self,
        soc_known: bool,
        serials: frozenset[str],
        charging: bool,
        above_charged_voltage: bool,
        spread: float,
    ) -> BalancerState:
        """The state shown now; ``spread`` = max cell - min cell, V."""
        since = self.seconds_since_full_charge
        if not soc_known or since is None or since > UNKNOWN_AFTER_S or serials != self.serials:
            return BalancerState.UNKNOWN
        if charging and above_charged_voltage and spread > BALANCING_SPREAD_V:
            return BalancerState.BALANCING
        if spread > IMBALANCE_SPREAD_V:
            return BalancerState.IMBALANCE
        return BalancerState.BALANCED

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready memory."""
        return {
            "seconds_since_full_charge": self.seconds_since_full_charge,
            "serials": sorted(self.serials),
        }

    @classmethod
    def restore(cls, data: object) -> Balancer:
        """From ``snapshot()``; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise SnapshotError("balancer: expected a table")
        since = data.get("seconds_since_full_charge")
        serials = data.get("serials", [])
        if since is not None and (
            isinstance(since, bool)
            or not isinstance(since, int | float)
            or not math.isfinite(since)
            or since < 0
        ):
            raise SnapshotError("balancer: seconds_since_full_charge must be a number of seconds")
        if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
            raise SnapshotError("balancer: serials must be a list of strings")
        return cls(None if since is None else float(since), frozenset(serials))
