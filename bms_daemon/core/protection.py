"""The protection rules of SPEC §4: which output floats, why, and which code is shown.

Every rule trips at one threshold and clears at another (hysteresis), so an output does not
chatter around a limit.  Cell thresholds belong to the battery model (values of the
predecessor Lithium Battery Smart; research/ng-manuals.md B22-B27), not to the user settings.

The pre-alarm promise of the manual [2.2]: PRE-ALARM is high at least ``PREALARM_LEAD_S``
before LOAD floats for a low voltage.  Both low-voltage disconnects keep that lead: the cell
under-voltage (A-B01, a cell under 2.80 V) and the low pack voltage (A-B08, the bank under
2.80 V per cell in series; the whole pack sagging at once is exactly when the warning matters).
The pack, like a cell, raises PRE-ALARM under 3.10 V per cell in series (ours; with readings
that agree, a cell is then under 3.10 V anyway).  A low voltage with no pre-alarm raises it at
once and LOAD waits 30 s.  Only where waiting
damages cells is the cut immediate (ours): a cell under 2.60 V, or the bank under 2.60 V per
cell in series.

Switching off does not buy time.  Remote off and Mode off release the PRE-ALARM output (the
manual's rule), but the time spent under 2.80 V is not forgotten: it adds up until the cells
are back at 3.20 V (the pack: 3.20 V per cell in series), whatever the remote and Mode do, and
once it reaches 30 s the alarm latches even with the system off.  So LOAD floats either when
PRE-ALARM has been high for 30 s in one go, or when the voltage has been low for 30 s in all;
toggling the remote every 29 s no longer keeps the loads on a cell at 2.70 V.

State lives in ``Protection``; ``evaluate`` is called once per control step with the latest
measurements (None when there is no fresh battery data) and returns a ``Verdict``.  The latched
rule states are persisted (a restart must not reconnect the loads on cells still under 3.20 V
after an under-voltage); the timers are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from bms_daemon.core.errors import SnapshotError
from bms_daemon.core.types import Code, Outputs, Reason, step_value

# Cell voltage rules (V per cell).
CELL_PREALARM_V = 3.10  # W-B01 and PRE-ALARM when the lowest cell is under this
CELL_UV_V = 2.80  # A-B01, LOAD floats (after the pre-alarm lead)
CELL_UV_IMMEDIATE_V = 2.60  # (ours) A-B01 at once, no lead: waiting would damage the cell
CELL_UV_RELEASE_V = 3.20  # pre-alarm and under-voltage clear when every cell is at least this
PREALARM_LEAD_S = 30.0  # PRE-ALARM high at least this long before LOAD floats for cell UV
CELL_OV_V = 3.75  # CHARGER floats when the highest cell is over this (no code)
CELL_OV_RELEASE_V = 3.60  # ... until every cell is under this
# Pack voltage rule (A-B08), per cell in series (ours: the NG end-of-discharge 2.8 V/cell).
LOW_PACK_PREALARM_PER_CELL_V = 3.10  # (ours) PRE-ALARM, like a cell under 3.10 V
LOW_PACK_PER_CELL_V = 2.80  # A-B08 after the pre-alarm lead
LOW_PACK_IMMEDIATE_PER_CELL_V = 2.60  # (ours) A-B08 at once, no lead
LOW_PACK_RELEASE_PER_CELL_V = 3.20
# Temperature rules (°C).
COLD_C = 5.0  # CHARGER floats under this (no code)
COLD_RELEASE_C = 6.0  # (ours)
HOT_C = 50.0  # (ours) A-B09, CHARGER floats over this
HOT_RELEASE_C = 45.0  # (ours)
# SOC rules: the low-SOC warning (W-B07) and the discharge floor (A-B07) clear this much higher.
SOC_RELEASE_MARGIN = 3.0  # % (ours)
# Battery communication (ours): no fresh data this long -> W-B05, then A-B05 (both outputs float).
# The defaults; a real source may set others within COMMS_*_RANGE_S ([source] comms_warning /
# comms_alarm: a radio source that drops a broadcast now and then may need longer).
COMMS_WARNING_S = 5.0
COMMS_ALARM_S = 20.0
COMMS_WARNING_RANGE_S = (2.0, 30.0)
COMMS_ALARM_RANGE_S = (10.0, 60.0)  # longer would leave LOAD up a minute on a bank nobody sees

_ERROR_REASONS = {
    Code.E_B11: Reason.HARDWARE,
    Code.E_B01: Reason.CONFIGURATION,
    Code.E_B05: Reason.CONFIGURATION,
    Code.E_B09: Reason.VOLTAGE_NOT_ALLOWED,
}
_ERROR_ORDER = (Code.E_B11, Code.E_B01, Code.E_B05, Code.E_B09)
_LATCHES = ("cell_prealarm", "cell_uv", "low_pack", "cell_ov", "cold", "hot", "low_soc", "floor")
_OUTPUTS = {
    (load, charger, pre): Outputs(load, charger, pre)
    for load in (False, True)
    for charger in (False, True)
    for pre in (False, True)
}


@step_value
class Measurements:
    """The figures the rules look at, extracted once per step from the readings."""

    min_cell: float
    max_cell: float
    bank_voltage: float
    min_temperature: float
    max_temperature: float
    cells_in_series: int  # 0 when the topology is invalid (the pack rule then waits)


@step_value
class Verdict:
    """Outputs, reasons and codes of one step."""

    outputs: Outputs
    charge_reason: Reason | None
    discharge_reason: Reason | None
    warnings: tuple[Code, ...]
    alarms: tuple[Code, ...]


def _release_level(level: float) -> float:
    """Where a SOC rule clears: 3 % above its level, but reachable (at most 100 %)."""
    return min(level + SOC_RELEASE_MARGIN, 100.0)


@dataclass(slots=True)
class Protection:
    """Latched rule states; only timers and latches, nothing persisted (see module doc)."""

    cell_prealarm: bool = False
    cell_uv: bool = False
    low_pack: bool = False
    cell_ov: bool = False
    cold: bool = False
    hot: bool = False
    low_soc: bool = False
    floor: bool = False
    prealarm_since: float | None = None  # when PRE-ALARM last went high (None = floating)
    uv_pending: bool = False  # a cell is under 2.80 V and LOAD waits for the pre-alarm lead
    pack_prealarm: bool = False  # the bank under 3.10 V per cell, until 3.20 V (not persisted)
    pack_pending: bool = False  # the bank is under 2.80 V per cell, LOAD waits likewise
    uv_seconds: float = 0.0  # time spent with a cell under 2.80 V since cells were last >= 3.20 V
    pack_seconds: float = 0.0  # time spent with the pack under 2.80 V/cell since >= 3.20 V/cell
    last_now: float | None = None
    # comms-loss delays: configuration ([source] comms_warning / comms_alarm), not persisted
    comms_warning_s: float = COMMS_WARNING_S
    comms_alarm_s: float = COMMS_ALARM_S

    def evaluate(
        self,
        *,
        now: float,
        m: Measurements | None,
        data_age: float,
        soc: float | None,
        low_soc_warning: float,
        discharge_floor: float,
        remote: bool,
        mode: bool,
        errors: tuple[Code, ...],
        started: bool,
    ) -> Verdict:
        """Apply every rule once.

        ``m`` None = no fresh battery data this step: the cell, pack and temperature latches keep
        their last state.  ``data_age`` = seconds since the last fresh data.  ``started`` False =
        no battery data was ever received: both outputs float with the reason STARTING.
        """
        last = self.last_now
        dt = now - last if last is not None and now > last else 0.0
        if last is None or now > last:
            self.last_now = now
        # Time under 2.80 V adds up whatever the remote and Mode do (with no fresh data, the
        # last reading stands), so switching off and on does not restart the count.
        if self.uv_pending:
            self.uv_seconds += dt
        if self.pack_pending:
            self.pack_seconds += dt
        if m is not None:
            self._battery_rules(m)
        self._soc_rules(soc, low_soc_warning, discharge_floor)

        active = remote and mode
        prealarm = active and (
            self.cell_prealarm or self.low_soc or self.uv_pending or self.pack_prealarm
        )
        if prealarm:
            if self.prealarm_since is None:
                self.prealarm_since = now
        else:
            self.prealarm_since = None
        lead_done = (
            self.prealarm_since is not None and now - self.prealarm_since >= PREALARM_LEAD_S
        )
        if self.uv_pending and (lead_done or self.uv_seconds >= PREALARM_LEAD_S):
            self.cell_uv = True
        if self.pack_pending and (lead_done or self.pack_seconds >= PREALARM_LEAD_S):
            self.low_pack = True

        comms_alarm = data_age >= self.comms_alarm_s
        discharge_reason = self._discharge_reason(errors, comms_alarm, started, remote, mode)
        charge_reason = self._charge_reason(errors, comms_alarm, started, remote, mode)
        load = discharge_reason is None
        if load and prealarm:
            discharge_reason = (
                Reason.CELL_PRE_ALARM
                if self.cell_prealarm
                else Reason.LOW_PACK_VOLTAGE
                if self.pack_prealarm
                else Reason.LOW_SOC
            )

        warnings: list[Code] = []
        if self.cell_prealarm and not self.cell_uv:
            warnings.append(Code.W_B01)
        if self.comms_warning_s <= data_age < self.comms_alarm_s:
            warnings.append(Code.W_B05)
        if self.low_soc and not self.floor:
            warnings.append(Code.W_B07)
        alarms: list[Code] = []
        if self.cell_uv:
            alarms.append(Code.A_B01)
        if comms_alarm:
            alarms.append(Code.A_B05)
        if self.floor:
            alarms.append(Code.A_B07)
        if self.low_pack:
            alarms.append(Code.A_B08)
        if self.hot:
            alarms.append(Code.A_B09)
        return Verdict(
            _OUTPUTS[(load, charge_reason is None, prealarm)],
            charge_reason,
            discharge_reason,
            tuple(warnings),
            tuple(alarms),
        )

    # --- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, bool]:
        """The latched rule states, so that a restart inside a hysteresis band does not, e.g.,
        reconnect the loads on cells at 3.0 V after an under-voltage.  Timers are left out."""
        return {name: bool(getattr(self, name)) for name in _LATCHES}

    @classmethod
    def restore(cls, data: object) -> Protection:
        """From ``snapshot()``; SnapshotError naming the bad entry."""
        if not isinstance(data, dict):
            raise SnapshotError("protection: expected a table")
        protection = cls()
        for name, value in data.items():
            if name not in _LATCHES:
                raise SnapshotError(f"protection: unknown rule {name!r}")
            if not isinstance(value, bool):
                raise SnapshotError(f"protection: {name} must be true or false")
            setattr(protection, name, value)
        return protection

    # --- the rules -----------------------------------------------------------------------------
    def _battery_rules(self, m: Measurements) -> None:
        min_cell = m.min_cell
        if min_cell >= CELL_UV_RELEASE_V:
            self.cell_prealarm = self.cell_uv = False
            self.uv_seconds = 0.0
        elif min_cell < CELL_PREALARM_V:
            self.cell_prealarm = True
        self.uv_pending = min_cell < CELL_UV_V
        if min_cell < CELL_UV_IMMEDIATE_V:
            self.cell_uv = True
        cells = m.cells_in_series
        if cells:  # 0 = topology invalid: the pack rule keeps its last state
            bank = m.bank_voltage
            self.pack_pending = bank < LOW_PACK_PER_CELL_V * cells
            if bank < LOW_PACK_IMMEDIATE_PER_CELL_V * cells:
                self.low_pack = True
            if bank < LOW_PACK_PREALARM_PER_CELL_V * cells:
                self.pack_prealarm = True
            elif bank >= LOW_PACK_RELEASE_PER_CELL_V * cells:
                self.pack_prealarm = self.low_pack = False
                self.pack_seconds = 0.0
        if m.max_cell > CELL_OV_V:
            self.cell_ov = True
        elif m.max_cell < CELL_OV_RELEASE_V:
            self.cell_ov = False
        if m.min_temperature < COLD_C:
            self.cold = True
        elif m.min_temperature >= COLD_RELEASE_C:
            self.cold = False
        if m.max_temperature > HOT_C:
            self.hot = True
        elif m.max_temperature <= HOT_RELEASE_C:
            self.hot = False

    def _soc_rules(self, soc: float | None, warning: float, floor: float) -> None:
        """Neither SOC rule acts on an unknown SOC, and a level of 0 disables its rule."""
        if soc is None or warning <= 0.0:
            self.low_soc = False
        elif soc <= warning:
            self.low_soc = True
        elif soc >= _release_level(warning):
            self.low_soc = False
        if soc is None or floor <= 0.0:
            self.floor = False
        elif soc <= floor:
            self.floor = True
        elif soc >= _release_level(floor):
            self.floor = False

    def _common_reason(
        self, errors: tuple[Code, ...], comms_alarm: bool, started: bool, remote: bool, mode: bool
    ) -> Reason | None:
        """Reasons that float both outputs, most fundamental first."""
        if errors:
            for code in _ERROR_ORDER:
                if code in errors:
                    return _ERROR_REASONS[code]
        if comms_alarm:
            return Reason.COMMS_LOST
        if not started:
            return Reason.STARTING
        if not remote:
            return Reason.REMOTE_OFF
        if not mode:
            return Reason.MODE_OFF
        return None

    def _discharge_reason(
        self, errors: tuple[Code, ...], comms_alarm: bool, started: bool, remote: bool, mode: bool
    ) -> Reason | None:
        reason = self._common_reason(errors, comms_alarm, started, remote, mode)
        if reason is not None:
            return reason
        if self.cell_uv:
            return Reason.CELL_UNDER_VOLTAGE
        if self.low_pack:
            return Reason.LOW_PACK_VOLTAGE
        if self.floor:
            return Reason.DISCHARGE_FLOOR
        return None

    def _charge_reason(
        self, errors: tuple[Code, ...], comms_alarm: bool, started: bool, remote: bool, mode: bool
    ) -> Reason | None:
        reason = self._common_reason(errors, comms_alarm, started, remote, mode)
        if reason is not None:
            return reason
        if self.cell_ov:
            return Reason.CELL_OVER_VOLTAGE
        if self.cold:
            return Reason.COLD
        if self.hot:
            return Reason.HOT
        return None
