"""Physics of a simulated bank of LiFePO4 batteries: cells, strings, loads, a CC/CV charger.

Pure and clock-free: ``BankPhysics.advance(seconds)`` integrates the bank over that many
seconds with the environment in force (load, charger, ambient temperature, which outputs let
them act); the simulated source decides when to call it.  Everything the BMS reacts to comes out
of here, so the model aims at the shapes a BMS must cope with rather than at cell chemistry:

* each cell has an LFP rest-voltage curve (``ocv.py``), an ohmic resistance and one RC
  polarisation branch, so the voltage sags under load, recovers at rest and tapers in CV;
* cells differ in capacity and self-discharge, so a bank drifts out of balance; each battery
  bleeds its high cells near the top of charge, as the batteries' own balancers do;
* parallel strings share the bank current so that their terminal voltages are equal (one bus);
* a battery warms with I²R and relaxes to the ambient temperature (first order), and its
  resistance rises in the cold;
* the charger is an ideal CC/CV source on the same bus as the loads: it supplies the loads and
  charges the batteries with at most its CC current, never above its CV voltage, never backwards.

Every number of the model that is our choice is a named constant below.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bms_daemon.sources.ocv import HYSTERESIS_BELOW_SOC, ocv_many

# --- model constants (ours; typical LFP values, see research/ng-manuals.md B16) -------------
R0_CELL_OHM_AT_100AH = 0.0005  # ohmic resistance of a 100 Ah cell: 4 cells = 2 mΩ (datasheet)
R1_CELL_OHM_AT_100AH = 0.0010  # polarisation resistance of a 100 Ah cell (sag after minutes)
POLARISATION_TAU_S = 300.0  # time constant of the polarisation branch
# Near full, diffusion limits how fast a cell accepts charge: the polarisation resistance grows
# linearly from POLARISATION_KNEE_SOC to (1 + POLARISATION_FULL_GAIN) times at 100 %, which is
# what makes the CV phase taper over tens of minutes instead of seconds.
POLARISATION_KNEE_SOC = 90.0
# Near full, a cell moves between the charge and rest branches of its OCV (ocv.py): quickly to
# the charge branch while charging, slowly back to the rest branch (a full battery relaxes from
# its absorption voltage over an hour or so once the charger is off).
CHARGE_BRANCH_TAU_S = 60.0
REST_BRANCH_TAU_S = 1800.0
CV_HELD_TOLERANCE_V = 0.001  # a bank within this of the charger's CV voltage is "on charge"
POLARISATION_FULL_GAIN = 4.0
COLD_RESISTANCE_PER_DEGREE = 0.03  # resistance rises 3 % per °C below REFERENCE_TEMPERATURE_C
REFERENCE_TEMPERATURE_C = 25.0
CHARGE_EFFICIENCY = 0.995  # coulombic efficiency of the cells on charge (LFP: 99.5-99.9 %)
BALANCE_START_V = 3.45  # a battery bleeds cells above this voltage ...
BALANCE_DELTA_V = 0.010  # ... that are this much above the battery's lowest cell ...
BALANCE_CURRENT_A = 0.5  # ... with this current (passive balancer)
HEAT_CAPACITY_J_PER_K_PER_WH = 9.0  # about 11.5 kJ/K for a 12.8 V 100 Ah battery (~11 kg)
SECONDS_PER_MONTH = 30 * 86400.0
OVERCHARGE_LIMIT = 1.01  # a cell never holds more than 101 % of its capacity
MAX_SUBSTEP_S = 5.0  # longer gaps are integrated in sub-steps so CV charging stays stable
MAX_SUBSTEP_NO_CHARGER_S = 60.0  # without a charger the current is set by the loads: coarser
SECONDS_PER_HOUR = 3600.0
# Spread between cells (defaults of a simulated bank; scenario keys can change them).
CAPACITY_SPREAD_DEFAULT = 0.01  # standard deviation of cell capacity, relative (1 %)
SELF_DISCHARGE_DEFAULT = 0.02  # per 30 days, fraction of capacity (LFP: 1-3 %/month)
SELF_DISCHARGE_SPREAD_DEFAULT = 0.005  # standard deviation of the above, between cells
MIN_CAPACITY_FRACTION = 0.5  # a drawn cell capacity never falls below half the nominal


@dataclass(frozen=True, slots=True)
class BatteryParams:
    """What the physics needs to know about one battery (from its model)."""

    model: str
    cells: int
    capacity_ah: float
    nominal_voltage: float


@dataclass(frozen=True, slots=True)
class Spread:
    """Manufacturing spread and ageing: what makes cells drift apart."""

    capacity: float = CAPACITY_SPREAD_DEFAULT  # standard deviation of cell capacity, relative
    self_discharge: float = SELF_DISCHARGE_DEFAULT  # mean per 30 days, fraction of capacity
    self_discharge_spread: float = SELF_DISCHARGE_SPREAD_DEFAULT  # its standard deviation


class BankPhysics:
    """The state of every cell and battery of a bank, and how it evolves.

    Batteries are numbered string by string: battery ``i`` is in string ``i // series``.
    The environment (``load_a``, ``charge_a``, ``charge_voltage``, ``ambient_c``, ``load_on``,
    ``charger_on``, ``cell_offsets``) is plain attributes, set by the source between calls.
    """

    def __init__(
        self,
        batteries: Sequence[BatteryParams],
        series: int,
        *,
        soc: float,
        temperature: float,
        spread: Spread,
        thermal_time_constant_s: float,
        rng: random.Random,
    ) -> None:
        if series < 1 or not batteries or len(batteries) % series:
            raise ValueError("the batteries must fill whole strings of `series` batteries")
        self.batteries = tuple(batteries)
        self.series = series
        self.parallel = len(batteries) // series
        self.thermal_time_constant_s = thermal_time_constant_s
        # environment
        self.load_a = 0.0
        self.charge_a = 0.0
        self.charge_voltage = 0.0
        self.ambient_c = temperature
        self.load_on = False
        self.charger_on = False
        self.cell_offsets: dict[tuple[int, int], float] = {}  # (battery, cell) -> V, 0-based

        # per battery
        self.temperature = [float(temperature)] * len(batteries)
        self._heat_capacity = [
            HEAT_CAPACITY_J_PER_K_PER_WH * b.nominal_voltage * b.capacity_ah for b in batteries
        ]
        self._battery_first_cell: list[int] = []
        # per cell (flat, battery after battery)
        self._cell_battery: list[int] = []
        self.capacity: list[float] = []
        self.charge: list[float] = []  # Ah stored
        self._r0: list[float] = []
        self._r1: list[float] = []
        self._self_discharge: list[float] = []  # Ah per second
        self.polarisation: list[float] = []  # V across the RC branch
        self.charge_branch: list[float] = []  # 0 = on the OCV's rest branch, 1 = charge branch
        self._offset: list[float] = []
        for index, battery in enumerate(batteries):
            self._battery_first_cell.append(len(self.capacity))
            scale = 100.0 / battery.capacity_ah
            for _ in range(battery.cells):
                cap = battery.capacity_ah * max(
                    MIN_CAPACITY_FRACTION, 1.0 + rng.gauss(0.0, spread.capacity)
                )
                self._cell_battery.append(index)
                self.capacity.append(cap)
                # top-balanced: every cell lacks the same Ah from full, as after a full charge
                missing = (1.0 - soc / 100.0) * battery.capacity_ah
                self.charge.append(max(0.0, cap - missing))
                self._r0.append(R0_CELL_OHM_AT_100AH * scale)
                self._r1.append(R1_CELL_OHM_AT_100AH * scale)
                rate = max(0.0, rng.gauss(spread.self_discharge, spread.self_discharge_spread))
                self._self_discharge.append(cap * rate / SECONDS_PER_MONTH)
                self.polarisation.append(0.0)
                self.charge_branch.append(0.0)  # a bank starts rested
                self._offset.append(0.0)
        self._battery_first_cell.append(len(self.capacity))
        self._battery_r0 = [
            sum(self._r0[k] for k in self.battery_cells(b)) for b in range(len(batteries))
        ]
        cells_per_string = [
            self._battery_first_cell[(j + 1) * series] - self._battery_first_cell[j * series]
            for j in range(self.parallel)
        ]
        self._string_cells = [
            range(self._battery_first_cell[j * series], self._battery_first_cell[j * series]
                  + cells_per_string[j])
            for j in range(self.parallel)
        ]
        self._string_nominal_ah = [batteries[j * series].capacity_ah for j in range(self.parallel)]
        self._inv_capacity = [100.0 / c for c in self.capacity]
        self._capacity_max = [c * OVERCHARGE_LIMIT for c in self.capacity]
        self._cell_nominal_ah = [batteries[b].capacity_ah for b in self._cell_battery]
        self._bleeding = [False] * len(self.capacity)
        self._r1_now = self._r1  # polarisation resistance at the present SOC
        self._r0_now = self._r0  # ohmic resistance at the present temperature
        self._any_bleeding = False
        self._ocv = [0.0] * len(self.capacity)
        self._emf = [0.0] * self.parallel  # per string: Σ rest voltage + offset + polarisation
        self._resistance = [0.0] * self.parallel  # per string: Σ ohmic resistance
        self._decay_for: tuple[float, float, float, float] = (-1.0, 0.0, 0.0, 0.0)
        self._warm_factors = [1.0] * len(batteries)  # no battery below 25 °C
        self._rf = self._warm_factors  # resistance factors at the present temperatures
        self._solved_for: tuple[bool, bool, float, float, float] | None = None
        self.string_current = [0.0] * self.parallel
        self.bank_current = 0.0
        self.bus_voltage = 0.0
        self._refresh()

    # --- queries ------------------------------------------------------------------------------
    def true_soc(self) -> float:
        """The bank's real state of charge, %: charge stored over nominal capacity.

        A string's state is the mean of its cells' charge over their battery's nominal
        capacity (its cells carry the same current); parallel strings add up, weighted by their
        nominal capacity.  This is what the BMS's counted SOC should follow; it is not clamped
        to 100 % so that over-charge shows.
        """
        total = 0.0
        charge = self.charge
        nominal = self._cell_nominal_ah
        for j, cells in enumerate(self._string_cells):
            fraction = sum(charge[k] / nominal[k] for k in cells) / len(cells)
            total += fraction * self._string_nominal_ah[j]
        return max(0.0, 100.0 * total / sum(self._string_nominal_ah))

    def cell_voltages(self) -> list[float]:
        """Terminal voltage of every cell now (rest voltage, offset, polarisation, I·R)."""
        self._solve()
        out = [0.0] * len(self.capacity)
        ocv_, offset, pol, r0 = self._ocv, self._offset, self.polarisation, self._r0_now
        for j, cells in enumerate(self._string_cells):
            i = self.string_current[j]
            a, b = cells.start, cells.stop
            out[a:b] = [
                o + f + p + i * r
                for o, f, p, r in zip(ocv_[a:b], offset[a:b], pol[a:b], r0[a:b], strict=True)
            ]
        return out

    def battery_cells(self, battery: int) -> range:
        """Indices (in ``cell_voltages()``) of this battery's cells."""
        return range(self._battery_first_cell[battery], self._battery_first_cell[battery + 1])

    def battery_current(self, battery: int) -> float:
        """Current through this battery (its string's), A, positive = charging."""
        return self.string_current[battery // self.series]

    # --- evolution ----------------------------------------------------------------------------
    def set_cell_offsets(self, offsets: dict[tuple[int, int], float]) -> None:
        """Faults: add ``volts`` to cell (battery, cell) (0-based) until changed again."""
        self._offset = [0.0] * len(self.capacity)
        for (battery, cell), volts in offsets.items():
            if not (0 <= battery < len(self.batteries)
                    and 0 <= cell < self.batteries[battery].cells):
                raise ValueError(f"no cell {cell + 1} in battery {battery + 1}")
            self._offset[self._battery_first_cell[battery] + cell] = volts
        self.cell_offsets = dict(offsets)
        self._refresh()

    def advance(self, seconds: float) -> None:
        """Integrate the bank over ``seconds`` with the environment in force."""
        if seconds <= 0.0:
            return
        longest = MAX_SUBSTEP_S if self.charger_on and self.charge_a > 0.0 else (
            MAX_SUBSTEP_NO_CHARGER_S
        )
        if self.thermal_time_constant_s > 0.0:  # keep the explicit thermal step stable
            longest = min(longest, max(MAX_SUBSTEP_S, self.thermal_time_constant_s / 4.0))
        if seconds <= longest:  # the usual case: one control step, one sub-step
            self._substep(seconds)
        else:
            steps = math.ceil(seconds / longest - 1e-9)
            h = seconds / steps
            for _ in range(steps):
                self._substep(h)
        self._update_balancers()

    # --- internals ----------------------------------------------------------------------------
    def _resistance_factors(self) -> list[float]:
        """Per battery: how much the cold raises its resistance (1 at and above 25 °C)."""
        return [
            1.0 + COLD_RESISTANCE_PER_DEGREE * max(0.0, REFERENCE_TEMPERATURE_C - t)
            for t in self.temperature
        ]

    def _refresh(self) -> None:
        """Recompute rest voltages and string EMF/resistance from the state (once per step)."""
        cold = min(self.temperature) < REFERENCE_TEMPERATURE_C
        self._rf = rf = self._resistance_factors() if cold else self._warm_factors
        self._solved_for = None
        socs = [q * i for q, i in zip(self.charge, self._inv_capacity, strict=True)]
        ocv_ = ocv_many(socs)
        if max(socs) > HYSTERESIS_BELOW_SOC:  # near full: blend in the rest branch
            rest = ocv_many(socs, rested=True)
            ocv_ = [
                r + w * (c - r)
                for c, r, w in zip(ocv_, rest, self.charge_branch, strict=True)
            ]
        self._ocv = ocv_
        if max(socs) > POLARISATION_KNEE_SOC:
            knee = POLARISATION_KNEE_SOC
            gain = POLARISATION_FULL_GAIN / (100.0 - POLARISATION_KNEE_SOC)
            self._r1_now = [
                r * (1.0 + gain * (min(soc, 100.0) - knee)) if soc > knee else r
                for r, soc in zip(self._r1, socs, strict=True)
            ]
        else:
            self._r1_now = self._r1
        if cold:
            cb = self._cell_battery
            self._r0_now = [r * rf[cb[k]] for k, r in enumerate(self._r0)]
        else:
            self._r0_now = self._r0
        offset = self._offset
        pol = self.polarisation
        r0_now = self._r0_now
        for j, cells in enumerate(self._string_cells):
            a, b = cells.start, cells.stop
            self._emf[j] = sum(ocv_[a:b]) + sum(offset[a:b]) + sum(pol[a:b])
            self._resistance[j] = sum(r0_now[a:b])

    def _solve(self) -> None:
        """Bank and string currents and the bus voltage for the present environment."""
        key = (self.load_on, self.charger_on, self.load_a, self.charge_a, self.charge_voltage)
        if key == self._solved_for:
            return  # neither the state nor the environment changed since the last solve
        self._solved_for = key
        conductance = 0.0
        weighted = 0.0
        for emf, res in zip(self._emf, self._resistance, strict=True):
            conductance += 1.0 / res
            weighted += emf / res
        draw = self.load_a if self.load_on else 0.0
        if self.charger_on and self.charge_a > 0.0:
            into_batteries_at_cv = self.charge_voltage * conductance - weighted
            current = max(-draw, min(self.charge_a - draw, into_batteries_at_cv))
        else:
            current = -draw
        bus = (current + weighted) / conductance
        self.bank_current = current
        self.bus_voltage = bus
        for j in range(self.parallel):
            self.string_current[j] = (bus - self._emf[j]) / self._resistance[j]

    def _substep(self, h: float) -> None:
        self._solve()
        if self._decay_for[0] != h:
            self._decay_for = (
                h,
                math.exp(-h / POLARISATION_TAU_S),
                1.0 - math.exp(-h / CHARGE_BRANCH_TAU_S),
                1.0 - math.exp(-h / REST_BRANCH_TAU_S),
            )
        _, decay, to_charge, to_rest = self._decay_for
        branch = self.charge_branch
        charge = self.charge
        cap_max = self._capacity_max
        pol = self.polarisation
        r1 = self._r1_now
        sd = self._self_discharge
        bleeding = self._bleeding
        bleed_ah = BALANCE_CURRENT_A * h / SECONDS_PER_HOUR
        held_at_cv = (
            self.charger_on and self.charge_a > 0.0
            and self.bus_voltage >= self.charge_voltage - CV_HELD_TOLERANCE_V
        )
        for j, cells in enumerate(self._string_cells):
            current = self.string_current[j]
            on_charge = current > 0.0 or held_at_cv
            branch_target, rate = (1.0, to_charge) if on_charge else (0.0, to_rest)
            dq = current * h / SECONDS_PER_HOUR
            if dq > 0.0:
                dq *= CHARGE_EFFICIENCY
            for k in cells:
                q = charge[k] + dq - sd[k] * h
                if bleeding[k]:
                    q -= bleed_ah
                if q < 0.0:
                    q = 0.0
                elif q > cap_max[k]:
                    q = cap_max[k]
                charge[k] = q
                target = r1[k] * current
                pol[k] = target + (pol[k] - target) * decay
                w = branch[k]
                branch[k] = w + (branch_target - w) * rate
        self._thermal(h)
        self._refresh()

    def _thermal(self, h: float) -> None:
        tau = self.thermal_time_constant_s
        rf = self._rf
        for b in range(len(self.batteries)):
            if tau <= 0.0:
                self.temperature[b] = self.ambient_c
                continue
            current = self.string_current[b // self.series]
            heat_w = current * current * self._battery_r0[b] * rf[b]
            t = self.temperature[b]
            t += h * ((self.ambient_c - t) / tau + heat_w / self._heat_capacity[b])
            self.temperature[b] = t

    def _update_balancers(self) -> None:
        """Each battery bleeds its cells that are high and above its lowest cell.

        Decided once per ``advance`` (about once a second: a balancer is slow anyway), on the
        rest voltages, without the ``cell_offset`` faults: a faulty reading must
        not drain a healthy cell.
        """
        ocv_ = self._ocv
        if not self._any_bleeding and max(ocv_) <= BALANCE_START_V:
            return  # nobody is near the top of charge: nothing to bleed, nothing to stop
        bleeding = self._bleeding
        for b in range(len(self.batteries)):
            a, z = self._battery_first_cell[b], self._battery_first_cell[b + 1]
            threshold = max(BALANCE_START_V, min(ocv_[a:z]) + BALANCE_DELTA_V)
            for k in range(a, z):
                bleeding[k] = ocv_[k] > threshold
        self._any_bleeding = any(bleeding)
