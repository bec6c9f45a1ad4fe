"""The Lithium NG battery models and the bank topology the BMS detects from them (SPEC §1).

The user never types the topology: like the real smallBMS NG, we derive it from what the
batteries report.  Series count = bank voltage / average battery voltage (rounded); parallel
count = batteries / series.  A bank that cannot be a valid 12/24/48 V system is a configuration
error (E-B01 / E-B05, both outputs float); a bank voltage outside 9-60 V is E-B09.

Which configuration problem gets which of the two codes is our choice (ours; the manual gives
both the same text): **E-B01** when the batteries themselves do not belong together or are
too many (unknown or mixed models, more than 50 batteries in a 12/24 V bank or 25 in a 48 V
bank, no battery at all); **E-B05** when the wiring does not make a valid bank (incomplete
strings, a series count that does not give 12, 24 or 48 V, a battery reporting the wrong number
of cells).

A DIY pack (a battery that is not a Lithium NG model) carries its own description in its
readings (``BatteryReading.description``: name, cells in series, capacity); the same rules
apply to it, so one 16-cell 280 Ah pack is a valid 48 V bank and a 15-cell pack is E-B05.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bms_daemon.core.types import BatteryModel, BatteryReading, Code

__all__ = ["MODELS", "BatteryModel", "Topology", "detect_topology", "voltage_error"]


def _model(nominal: float, capacity: int, cells: int) -> BatteryModel:
    return BatteryModel(f"{nominal:.1f}V-{capacity}Ah", nominal, float(capacity), cells)


MODELS: dict[str, BatteryModel] = {
    m.name: m
    for m in (
        _model(12.8, 100, 4),
        _model(12.8, 150, 4),
        _model(12.8, 200, 4),
        _model(12.8, 300, 4),
        _model(25.6, 100, 8),
        _model(25.6, 200, 8),
        _model(25.6, 300, 8),
        _model(51.2, 100, 16),
    )
}

# Limits of a bank (SPEC §1, from the VE.Bus BMS NG / Lithium NG datasheets).
MAX_BATTERIES_12_24V = 50
MAX_BATTERIES_48V = 25
SYSTEM_NOMINAL_VOLTAGES = (12.8, 25.6, 51.2)  # the 12, 24 and 48 V systems the BMS supports
SYSTEM_48V_NOMINAL = 51.2
NOMINAL_MATCH_V = 0.05  # float tolerance when comparing nominal voltages (12.8 x 4 = 51.2)
# E-B09 "battery voltage not allowed" window [5.2].
BANK_VOLTAGE_MIN = 9.0  # V
BANK_VOLTAGE_MAX = 60.0  # V


@dataclass(frozen=True, slots=True)
class Topology:
    """What the BMS detected.  ``error`` is None for a valid bank; then ``model`` is set."""

    model: BatteryModel | None
    batteries: int
    series: int
    parallel: int
    cells_in_series: int  # of the whole bank (series batteries x cells per battery)
    error: Code | None = None
    problem: str = ""  # in words, for logs and the bank page

    @property
    def cells(self) -> int:
        """Total cells in the bank."""
        return self.batteries * self.model.cells if self.model else 0

    @property
    def capacity_ah(self) -> float:
        """Bank capacity: parallel strings add up, series batteries do not."""
        return self.model.capacity_ah * self.parallel if self.model else 0.0

    @property
    def nominal_voltage(self) -> float:
        """Nominal bank voltage (12.8, 25.6 or 51.2 V for a valid bank)."""
        return self.model.nominal_voltage * self.series if self.model else 0.0


def _invalid(code: Code, problem: str, batteries: int, series: int = 0) -> Topology:
    parallel = batteries // series if series else 0
    return Topology(None, batteries, series, parallel, 0, code, problem)


def detect_topology(batteries: Sequence[BatteryReading], bank_voltage: float) -> Topology:
    """Detect series/parallel from the batteries' reports and validate the bank.

    Series = round(bank voltage / mean battery voltage): batteries in one string share the
    bank voltage equally, whatever their state of charge, so the ratio is an integer up to
    measurement error.  Validation order goes from "wrong batteries" to "wrong wiring".
    """
    count = len(batteries)
    if count == 0:
        return _invalid(Code.E_B01, "no battery reports on the BMS cables", 0)
    models = [b.model for b in batteries]
    first = models[0]
    if models.count(first) != count:
        names = sorted(set(models))
        return _invalid(
            Code.E_B01, f"mixed battery models {', '.join(names)}: use one model only", count
        )
    model = MODELS.get(first) or batteries[0].description
    if model is None:
        return _invalid(Code.E_B01, f"unknown battery model {first!r}", count)
    if [len(b.cell_voltages) for b in batteries].count(model.cells) != count and not all(
        _cells_ok(b, model.cells) for b in batteries
    ):
        return _invalid(
            Code.E_B05, f"a battery does not report {model.cells} cells like a {model.name}", count
        )
    series = _series(batteries, bank_voltage)
    system = model.nominal_voltage * series
    if not any(abs(system - v) < NOMINAL_MATCH_V for v in SYSTEM_NOMINAL_VOLTAGES):
        return _invalid(
            Code.E_B05,
            f"{series} x {model.nominal_voltage:g} V in series = {system:g} V is not a 12, 24 "
            "or 48 V system",
            count,
            series,
        )
    is_48v = system >= SYSTEM_48V_NOMINAL - NOMINAL_MATCH_V
    limit = MAX_BATTERIES_48V if is_48v else MAX_BATTERIES_12_24V
    if count > limit:
        return _invalid(
            Code.E_B01,
            f"{count} batteries; a {system:g} V bank takes at most {limit} batteries",
            count,
            series,
        )
    if count % series:
        return _invalid(
            Code.E_B05,
            f"{count} batteries cannot form complete strings of {series} in series",
            count,
            series,
        )
    return Topology(model, count, series, count // series, series * model.cells)


def _cells_ok(battery: BatteryReading, cells: int) -> bool:
    """The battery reports its ``cells`` cells one by one, or (a protocol that gives only the
    extremes) its lowest and highest cell."""
    reported = battery.cell_voltages
    if reported:
        return len(reported) == cells
    return battery.min_cell_voltage is not None and battery.max_cell_voltage is not None


class TopologyDetector:
    """``detect_topology`` with a memory of the last bank it saw.

    A bank's topology changes when a battery is added, removed or swapped, not from one sample
    to the next; detecting it afresh at every step was a fixed cost of every step.  The answer
    depends on the batteries' models and cell counts and on the series count (from the
    voltages): the same of all three gives the same topology.  ``_shape`` lists what
    ``detect_topology`` looks at besides the voltages: extend it along with that function.
    """

    __slots__ = ("_key", "_topology")

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._topology: Topology | None = None

    def detect(self, batteries: Sequence[BatteryReading], bank_voltage: float) -> Topology:
        """The same result as ``detect_topology(batteries, bank_voltage)``."""
        key = (_shape(batteries), _series(batteries, bank_voltage))
        topology = self._topology
        if topology is None or key != self._key:
            topology = self._topology = detect_topology(batteries, bank_voltage)
            self._key = key
        return topology


def _shape(batteries: Sequence[BatteryReading]) -> tuple[object, ...]:
    """What the topology depends on besides the voltages: each battery's model and cells (or,
    for a battery that reports only its extremes, whether it does) and a DIY description."""
    shape: tuple[object, ...] = (
        *[b.model for b in batteries], *[len(b.cell_voltages) for b in batteries]
    )
    if not all(b.cell_voltages for b in batteries):
        shape += (*[b.min_cell_voltage is None or b.max_cell_voltage is None
                    for b in batteries],)
    if batteries and batteries[0].description is not None:
        shape += (batteries[0].description,)
    return shape


def _series(batteries: Sequence[BatteryReading], bank_voltage: float) -> int:
    """Batteries in series: the bank voltage over the mean battery voltage, rounded (>= 1)."""
    if not batteries:
        return 1
    mean_battery_voltage = sum([b.voltage for b in batteries]) / len(batteries)
    series = round(bank_voltage / mean_battery_voltage) if mean_battery_voltage > 0 else 1
    return max(1, series)


def voltage_error(bank_voltage: float) -> Code | None:
    """E-B09 when the bank voltage is outside the window the BMS accepts [5.2]."""
    if bank_voltage < BANK_VOLTAGE_MIN or bank_voltage > BANK_VOLTAGE_MAX:
        return Code.E_B09
    return None
