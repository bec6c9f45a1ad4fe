"""Builders for the core's unit tests: banks of readings and a driver that steps a Bms in time."""

from __future__ import annotations

from collections.abc import Mapping

from bms_daemon.core.bank import MODELS
from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import BatteryReading, Inputs, Readings, Status

CellFaults = Mapping[tuple[int, int], float]  # (battery index, cell index) -> volts


def bank(
    model: str = "12.8V-100Ah",
    series: int = 1,
    parallel: int = 1,
    *,
    cell: float = 3.30,
    current: float = 0.0,
    temperature: float = 25.0,
    faults: CellFaults | None = None,
    temperatures: Mapping[int, float] | None = None,
    bank_voltage: float | None = None,
    serial_prefix: str = "HQ",
) -> Readings:
    """Readings of a healthy bank at ``cell`` volts per cell, with optional per-cell faults.

    Batteries are numbered string by string: batteries 0..series-1 form the first string.
    """
    spec = MODELS[model]
    faults = faults or {}
    temperatures = temperatures or {}
    batteries = []
    for i in range(series * parallel):
        cells = tuple(faults.get((i, c), cell) for c in range(spec.cells))
        batteries.append(
            BatteryReading(
                serial=f"{serial_prefix}{i:04d}",
                model=model,
                firmware="v1.07",
                voltage=sum(cells),
                current=current / parallel,
                temperature=temperatures.get(i, temperature),
                cell_voltages=cells,
            )
        )
    if bank_voltage is None:
        bank_voltage = sum(b.voltage for b in batteries[:series])
    return Readings(tuple(batteries), bank_voltage, current)


class Driver:
    """Steps a Bms at a fixed tick, remembering the time, like the daemon's control loop."""

    def __init__(
        self,
        bms: Bms | None = None,
        *,
        soc: float | None = None,
        settings: Settings | None = None,
        tick: float = 1.0,
    ) -> None:
        self.bms = bms if bms is not None else Bms(settings or Settings())
        self.now = 0.0
        self.tick = tick
        self.inputs = Inputs()
        if soc is not None:
            self.bms.command("set_soc", soc, self.now)

    def step(self, readings: Readings | None, inputs: Inputs | None = None) -> Status:
        """One tick later."""
        self.now += self.tick
        return self.bms.step(readings, inputs or self.inputs, self.now)

    def prime(self, readings: Readings | None) -> Status:
        """A first sample at the present time: integration starts from here."""
        return self.bms.step(readings, self.inputs, self.now)

    def run(
        self, readings: Readings | None, seconds: float, inputs: Inputs | None = None
    ) -> Status:
        """Hold the same readings for ``seconds`` (at least one tick); the last status."""
        status = self.bms.status
        steps = max(1, round(seconds / self.tick))
        for _ in range(steps):
            status = self.step(readings, inputs)
        return status

    def run_until(
        self, readings: Readings | None, predicate: object, limit_s: float
    ) -> tuple[float, Status]:
        """Step until ``predicate(status)`` holds; (seconds it took, that status)."""
        assert callable(predicate)
        start = self.now
        status = self.bms.status
        while self.now - start < limit_s:
            status = self.step(readings)
            if predicate(status):
                return self.now - start, status
        raise AssertionError(f"condition not reached within {limit_s} s; last status {status}")
