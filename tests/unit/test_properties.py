"""Safety invariants over random histories of cells, current, temperature, remote and settings.

A hypothesis state machine drives a Bms with random steps (random time between steps, random
cells, currents, temperatures, missing data, remote and Mode changes, SOC sets, SOC levels) and
after every step checks, against conditions computed here from the raw inputs:
- LOAD is never high while a cell is under 2.60 V, the pack is under 2.60 V per cell, SOC is at
  or under the discharge floor, data is missing for 20 s, remote or Mode is off, or an error
  holds;
- LOAD is never high while a cell (or the pack, per cell in series) has been under 2.80 V for
  longer than the 30 s lead, whatever the remote and Mode did meanwhile;
- CHARGER is never high while a cell is over 3.75 V, a battery is under 5 °C or over 50 °C,
  data is missing for 20 s, remote or Mode is off, or an error holds;
- when LOAD floats for a cell under-voltage or a low pack voltage above 2.60 V per cell,
  PRE-ALARM has been high for 30 s, unless the system was switched off (remote or Mode) since
  the voltages were last healthy (switching off must not buy time);
- SOC stays within 0-100 %; the status agrees with its outputs;
- a charged voltage stored before the bank was known never blocks a Mode or level change, and
  is reported in the status exactly when the detected bank does not allow it;
- once data is 5 s old, the bank page shows no cell or temperature extremes.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bms_daemon.core.bank import MODELS
from bms_daemon.core.bms import Bms
from bms_daemon.core.protection import PREALARM_LEAD_S
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import BatteryReading, Code, Inputs, Readings, Reason, Status

TOPOLOGIES = [
    ("12.8V-100Ah", 1, 1),
    ("12.8V-200Ah", 4, 2),
    ("25.6V-100Ah", 1, 3),
    ("51.2V-100Ah", 1, 2),
    ("12.8V-100Ah", 3, 1),  # invalid: 38.4 V
]

cell_volts = st.floats(2.3, 3.95, allow_nan=False)
temperatures = st.floats(-15.0, 65.0, allow_nan=False)


class BmsMachine(RuleBasedStateMachine):
    """One Bms, stepped forward in time by random rules."""

    def __init__(self) -> None:
        super().__init__()
        self.bms = Bms()
        self.now = 0.0
        self.first: float | None = None
        self.last_fresh: Readings | None = None
        self.last_fresh_t: float | None = None
        self.hardware_fault = False
        self.prealarm_since: float | None = None
        self.previous: Status = self.bms.status
        self.cell_low_since: float | None = None  # first fresh reading of a run under 2.80 V
        self.pack_low_since: float | None = None  # the same for the pack, per cell in series
        self.off_since_healthy = False  # remote or Mode off since cells and pack were healthy
        self.model, self.series, self.parallel = TOPOLOGIES[0]

    @initialize(
        topology=st.sampled_from(TOPOLOGIES),
        soc=st.none() | st.floats(0, 100),
        charged_voltage=st.none() | st.floats(13.6, 57.6),
    )
    def start(
        self, topology: tuple[str, int, int], soc: float | None, charged_voltage: float | None
    ) -> None:
        # a charged voltage accepted before any battery data, which the bank may not allow:
        # it must never block another setting (the rules below change Mode and the levels)
        self.bms = Bms(Settings(charged_voltage=charged_voltage))
        self.previous = self.bms.status
        self.model, self.series, self.parallel = topology
        if soc is not None:
            self.bms.command("set_soc", soc, 0.0)

    # --- rules ---------------------------------------------------------------------------------
    @rule(
        dt=st.floats(0.2, 12.0),
        fresh=st.sampled_from([True, True, True, True, False]),
        base=cell_volts,
        spread=st.floats(0.0, 0.2),
        fault=st.none() | cell_volts,
        current=st.floats(-300.0, 300.0, allow_nan=False),
        temperature=temperatures,
        hot_or_cold=st.none() | temperatures,
        pack_factor=st.sampled_from([1.0, 1.0, 1.0, 0.85, 0.5, 1.3]),
        remote=st.sampled_from([True, True, True, False]),
        hardware_ok=st.sampled_from([True] * 30 + [False]),
    )
    def step(
        self,
        dt: float,
        fresh: bool,
        base: float,
        spread: float,
        fault: float | None,
        current: float,
        temperature: float,
        hot_or_cold: float | None,
        pack_factor: float,
        remote: bool,
        hardware_ok: bool,
    ) -> None:
        self.now += dt
        if self.first is None:
            self.first = self.now
        readings = (
            self._readings(base, spread, fault, current, temperature, hot_or_cold, pack_factor)
            if fresh
            else None
        )
        if readings is not None:
            self.last_fresh, self.last_fresh_t = readings, self.now
        self.hardware_fault |= not hardware_ok
        inputs = Inputs(remote=remote, hardware_ok=hardware_ok)
        status = self.bms.step(readings, inputs, self.now)
        self._check(status, inputs, readings)
        self.previous = status

    @rule(mode=st.booleans())
    def set_mode(self, mode: bool) -> None:
        self.bms.set_setting("mode", mode)

    @rule(soc=st.floats(0, 100))
    def set_soc(self, soc: float) -> None:
        self.bms.command("set_soc", soc, self.now)

    @rule(floor=st.sampled_from([0.0, 5.0, 10.0, 50.0]), margin=st.floats(0, 40))
    def set_levels(self, floor: float, margin: float) -> None:
        warning = min(floor + margin, 99.0)
        self.bms.set_setting("discharge_floor", 0.0)
        self.bms.set_setting("low_soc_warning", warning)
        self.bms.set_setting("discharge_floor", floor)

    # --- checks --------------------------------------------------------------------------------
    @invariant()
    def soc_within_bounds(self) -> None:
        soc = self.bms.status.soc
        assert soc is None or 0.0 <= soc <= 100.0

    def _readings(
        self,
        base: float,
        spread: float,
        fault: float | None,
        current: float,
        temperature: float,
        hot_or_cold: float | None,
        pack_factor: float,
    ) -> Readings:
        cells = MODELS[self.model].cells
        batteries = []
        for i in range(self.series * self.parallel):
            volts = tuple(
                base + spread * ((i + c) % 3 - 1) / 2 for c in range(cells)
            )
            if fault is not None and i == 0:
                volts = (fault, *volts[1:])
            batteries.append(
                BatteryReading(
                    f"S{i}",
                    self.model,
                    "1",
                    sum(volts),
                    current / self.parallel,
                    hot_or_cold if hot_or_cold is not None and i == 0 else temperature,
                    volts,
                )
            )
        bank_voltage = sum(b.voltage for b in batteries[: self.series]) * pack_factor
        return Readings(tuple(batteries), bank_voltage, current)

    def _check(self, status: Status, inputs: Inputs, readings: Readings | None) -> None:
        outputs = status.outputs
        assert outputs.load == status.allowed_to_discharge
        assert outputs.charger == status.allowed_to_charge
        assert (status.charge_reason is None) == outputs.charger
        if not outputs.load:
            assert status.discharge_reason is not None
        elif outputs.prealarm:
            assert status.discharge_reason in (
                Reason.CELL_PRE_ALARM,
                Reason.LOW_SOC,
                Reason.LOW_PACK_VOLTAGE,
            )
        else:
            assert status.discharge_reason is None

        # what must float both outputs
        assert self.first is not None
        since_data = self.now - (self.last_fresh_t if self.last_fresh_t is not None else self.first)
        # stale data shows no figure of the bank as if it were fresh
        if since_data >= 5.0 and status.bank is not None:
            bank = status.bank
            assert bank.min_cell_voltage is None
            assert bank.max_cell_voltage is None
            assert bank.min_temperature is None
            assert bank.max_temperature is None
        # a stored charged voltage the bank does not allow is reported, never silently used
        cv = self.bms.settings.charged_voltage
        topology_now = self.bms.topology
        if cv is not None and topology_now is not None and topology_now.error is None:
            n = topology_now.cells_in_series
            assert bool(status.setting_problems) == (not 3.40 * n <= cv <= 3.60 * n)
        both = [
            not inputs.remote,
            not self.bms.settings.mode,
            bool(status.errors),
            self.hardware_fault,
            since_data >= 20.0,
            self.last_fresh is None,
        ]
        r = self.last_fresh
        if r is not None:
            both.append(not 9.0 <= r.bank_voltage <= 60.0)
        if any(both):
            assert not outputs.load
            assert not outputs.charger
        if not inputs.remote or not self.bms.settings.mode:
            assert not outputs.prealarm
        if self.hardware_fault:
            assert Code.E_B11 in status.errors
        for code in (Code.A_B01, Code.A_B05, Code.A_B07, Code.A_B08):
            if code in status.alarms:
                assert not outputs.load, code
        for code in (Code.A_B05, Code.A_B09):
            if code in status.alarms:
                assert not outputs.charger, code

        if not inputs.remote or not self.bms.settings.mode:
            self.off_since_healthy = True
        topology = self.bms.topology
        series = topology.cells_in_series if topology is not None and topology.error is None else 0
        if r is not None:
            cells = [v for b in r.batteries for v in b.cell_voltages]
            temps = [b.temperature for b in r.batteries]
            if min(cells) < 2.60:
                assert not outputs.load
            if series and r.bank_voltage < 2.60 * series:
                assert not outputs.load
            if max(cells) > 3.75 or min(temps) < 5.0 or max(temps) > 50.0:
                assert not outputs.charger
            if r is readings:
                self._track_low_voltage(r, min(cells), series)
        floor = self.bms.settings.discharge_floor
        if status.soc is not None and floor > 0 and status.soc <= floor:
            assert not outputs.load

        # a low voltage for longer than the lead: LOAD floats, whatever remote and Mode did
        for since in (self.cell_low_since, self.pack_low_since):
            if since is not None and self.now - since >= PREALARM_LEAD_S + 1e-6:
                assert not outputs.load, f"low for {self.now - since:.1f} s"

        # the pre-alarm lead before a low-voltage disconnect
        if outputs.prealarm:
            if self.prealarm_since is None:
                self.prealarm_since = self.now
        else:
            self.prealarm_since = None
        if (
            self.previous.outputs.load
            and not outputs.load
            and status.discharge_reason
            in (Reason.CELL_UNDER_VOLTAGE, Reason.LOW_PACK_VOLTAGE)
            and r is not None
            and min(v for b in r.batteries for v in b.cell_voltages) >= 2.60
            and not (series and r.bank_voltage < 2.60 * series)
            and not self.off_since_healthy
        ):
            assert self.prealarm_since is not None
            assert self.now - self.prealarm_since >= PREALARM_LEAD_S

    def _track_low_voltage(self, r: Readings, min_cell: float, series: int) -> None:
        """Runs of fresh readings under 2.80 V (a reading at or above it ends the run)."""
        if min_cell < 2.80:
            if self.cell_low_since is None:
                self.cell_low_since = self.now
        else:
            self.cell_low_since = None
        if series:
            if r.bank_voltage < 2.80 * series:
                if self.pack_low_since is None:
                    self.pack_low_since = self.now
            else:
                self.pack_low_since = None
            if min_cell >= 3.20 and r.bank_voltage >= 3.20 * series:
                self.off_since_healthy = False


BmsMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
TestBmsInvariants = BmsMachine.TestCase


class UnderVoltageMachine(BmsMachine):
    """The same checks, with cells kept near the under-voltage thresholds and short steps,
    so the 30 s pre-alarm lead is exercised often."""

    @rule(
        dt=st.floats(0.5, 8.0),
        fault=st.floats(2.5, 3.25),
        remote=st.sampled_from([True] * 8 + [False]),
    )
    def low_cell_step(self, dt: float, fault: float, remote: bool) -> None:
        self.step(
            dt=dt,
            fresh=True,
            base=3.25,
            spread=0.0,
            fault=fault,
            current=-5.0,
            temperature=25.0,
            hot_or_cold=None,
            pack_factor=1.0,
            remote=remote,
            hardware_ok=True,
        )


UnderVoltageMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=50, deadline=None
)
TestUnderVoltageLead = UnderVoltageMachine.TestCase
