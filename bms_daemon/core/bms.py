"""The BMS: one object that turns battery readings and inputs into a status, step by step.

``Bms.step(readings, inputs, now)`` is the whole control loop's work: detect the bank, count
SOC, keep history, apply the protection rules, light the LEDs, and return a ``Status`` whose
``outputs`` the GPIO edge drives.  It is pure: no I/O, no clock (``now`` is monotonic seconds
passed in), so the daemon, the simulator and the tests all run the same logic.

What survives a restart goes through ``snapshot()`` / ``Bms(saved=...)``: settings, SOC and
where it came from, history, the balancer's last-full-charge memory and the latched protection
states (an under-voltage stays latched until every cell is back at 3.20 V, restart or not).
Timers (pre-alarm lead, sync detection, rest detection, comms) are deliberately not saved: each
restarts, which is the safe direction (LOAD waits a full 30 s after a restart, a sync needs a
full detection time).

Readings holding a NaN or an infinity are treated as no fresh data (a NaN compares false with
every threshold, so it would silently disable the protection): the comms rules take over,
W-B05 after 5 s and A-B05 with both outputs floating after 20 s (the delays a source's
configuration may set, within ``protection.COMMS_*_RANGE_S``).

**A battery that disappears.**  The bank's batteries (their serials) are remembered, across
restarts too (the snapshot's ``bank`` section).  Readings that lack a battery seen before are
*incomplete*: they still feed the cell, pack and temperature rules of the batteries that do
report, and SOC keeps counting against the remembered bank's capacity (not the capacity of
what is left, which would make SOC run twice as fast in a 2-parallel bank), but they are not
fresh data for the comms rules: W-B05, then A-B05 with both outputs floating.  New batteries
join the memory by themselves once the bank they make is valid; a battery that is gone for
good (a deliberate bank change) is forgotten only by the ``confirm_bank`` command, never by a
guess.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from bms_daemon.core.balancer import Balancer
from bms_daemon.core.bank import Topology, TopologyDetector, voltage_error
from bms_daemon.core.errors import SnapshotError
from bms_daemon.core.history import HistoryTracker
from bms_daemon.core.leds import leds
from bms_daemon.core.protection import (
    COMMS_ALARM_S,
    COMMS_WARNING_S,
    Measurements,
    Protection,
    Verdict,
)
from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.core.soc import SocCounter, SocSource, zero_band
from bms_daemon.core.types import (
    BalancerState,
    BankStatus,
    BatteryList,
    BatteryReading,
    Code,
    History,
    Inputs,
    Leds,
    Outputs,
    Readings,
    Reason,
    Status,
)

SNAPSHOT_VERSION = 1
# (ours) The longest gap between two fresh samples that is still integrated (SOC, energy, sync
# timer): past it, the current of the new sample says nothing about the time in between.
MAX_INTEGRATION_GAP_S = 60.0
COMMANDS = ("set_soc", "synchronise", "reset_history", "factory_reset", "confirm_bank")
_SYNC_SETTINGS = ("charged_voltage", "tail_current", "charge_detection_time")
_NO_CODES: tuple[Code, ...] = ()
_FACTORY_SETTINGS = Settings()


def _finite(readings: Readings) -> bool:
    """Every number of the readings is finite (NaN and infinities propagate through a sum)."""
    batteries = readings.batteries
    total = readings.bank_voltage + readings.bank_current
    total += sum([b.voltage + b.current + b.temperature for b in batteries])
    total += sum(map(sum, [b.cell_voltages for b in batteries]))
    total += sum(
        [b.coldest + (b.min_cell_voltage or 0.0) + (b.max_cell_voltage or 0.0) for b in batteries]
    )
    return math.isfinite(total)


def _restore_bank(data: object) -> tuple[frozenset[str], float]:
    """The remembered bank from the snapshot's ``bank`` section; SnapshotError when unusable."""
    if not isinstance(data, dict):
        raise SnapshotError("snapshot: bank must be a table")
    serials = data.get("batteries", [])
    capacity = data.get("capacity_ah", 0.0)
    if not isinstance(serials, list) or not all(isinstance(s, str) for s in serials):
        raise SnapshotError("snapshot: bank batteries must be a list of serial numbers")
    if (
        isinstance(capacity, bool)
        or not isinstance(capacity, int | float)
        or not math.isfinite(capacity)
        or capacity < 0
    ):
        raise SnapshotError("snapshot: bank capacity_ah must be a number of Ah")
    return frozenset(serials), float(capacity)


class Bms:
    """The smallBMS NG logic.  Not thread-safe: the daemon calls it from its control loop."""

    def __init__(
        self,
        settings: Settings = _FACTORY_SETTINGS,
        saved: dict[str, Any] | None = None,
        *,
        comms_warning_s: float = COMMS_WARNING_S,
        comms_alarm_s: float = COMMS_ALARM_S,
    ) -> None:
        self._settings = settings
        self._soc = SocCounter()
        self._history = HistoryTracker()
        self._balancer = Balancer()
        self._protection = Protection()
        self._known: frozenset[str] = frozenset()  # serials of the bank's batteries, remembered
        self._known_capacity_ah = 0.0  # capacity of the remembered bank
        if saved is not None:
            self._restore(saved)
        self._comms_warning_s = comms_warning_s
        self.set_comms_delays(comms_warning_s, comms_alarm_s)
        self._present: frozenset[str] = frozenset()  # serials of the last readings
        self._last_sample: float | None = None  # last readings, complete or not (SOC gap)
        self._topology: Topology | None = None
        self._detector = TopologyDetector()
        self._capacity_ah = self._known_capacity_ah  # of the last valid bank; SOC keeps
        # counting through an error and through a missing battery
        self._first_now: float | None = None
        self._last_now: float | None = None
        self._last_fresh: float | None = None
        self._hardware_fault = False
        self._error_cache: dict[tuple[Code | None, Code | None, bool], tuple[Code, ...]] = {}
        # figures of the last fresh sample, reused while no fresh data arrives
        self._measurements: Measurements | None = None
        self._voltage: float | None = None
        self._current: float | None = None
        self._ttg: float | None = None
        self._bank: BankStatus | None = None
        self._stale_bank: tuple[BankStatus, BankStatus] | None = None  # (fresh, its stale view)
        self._status = Status(
            t=0.0,
            soc=self._soc.value(),
            soc_synchronised=self._soc.known,
            mode=self._settings.mode,
            remote=True,
            voltage=None,
            current=None,
            power=None,
            consumed_ah=None,
            ttg_min=None,
            allowed_to_charge=False,
            charge_reason=Reason.STARTING,
            allowed_to_discharge=False,
            discharge_reason=Reason.STARTING,
            outputs=Outputs.safe(),
            leds=Leds(),
        )

    # --- queries ---------------------------------------------------------------------------------
    @property
    def status(self) -> Status:
        """The status of the last step (before the first: everything floating, STARTING)."""
        return self._status

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        return self._settings

    @property
    def topology(self) -> Topology | None:
        """The bank as last detected (None before the first readings)."""
        return self._topology

    def history(self) -> History:
        """A copy of the history counters."""
        return self._history.copy()

    # --- the control step ------------------------------------------------------------------------
    def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status:
        """One control step at monotonic time ``now``; ``readings`` None = no fresh data."""
        last = self._last_now
        dt = now - last if last is not None and now > last else 0.0
        if last is None or now > last:
            self._last_now = now
        if self._first_now is None:
            self._first_now = now
        if not inputs.hardware_ok:
            self._hardware_fault = True  # E-B11 clears only with a restart (SPEC §4)

        self._history.elapse(dt)  # before a sync in this step resets the time to zero
        self._balancer.elapse(dt)
        if readings is not None and not _finite(readings):
            readings = None  # a NaN would silently pass every threshold: treat it as no data
        if readings is not None:
            previous = self._last_sample
            gap = 0.0 if previous is None else min(max(now - previous, 0.0), MAX_INTEGRATION_GAP_S)
            self._last_sample = now
            complete = self._complete(readings)
            if complete:
                self._last_fresh = now
            self._ingest(readings, gap, complete)
        age = now - (self._last_fresh if self._last_fresh is not None else self._first_now)
        stale = age >= self._comms_warning_s
        if stale:
            self._soc.reset_sync_timer()

        topology = self._topology
        errors = self._errors(
            topology.error if topology is not None else None,
            voltage_error(self._voltage) if self._voltage is not None else None,
        )
        soc = self._soc.value()
        settings = self._settings
        verdict: Verdict = self._protection.evaluate(
            now=now,
            m=self._measurements if readings is not None else None,
            data_age=age,
            soc=soc,
            low_soc_warning=settings.low_soc_warning,
            discharge_floor=settings.discharge_floor,
            remote=inputs.remote,
            mode=settings.mode,
            errors=errors,
            started=self._last_fresh is not None,
        )
        voltage, current = (None, None) if stale else (self._voltage, self._current)
        measured = self._measurements
        temperature = measured.max_temperature if measured is not None and not stale else None
        outputs = verdict.outputs
        self._status = Status(
            t=now,
            soc=soc,
            soc_synchronised=self._soc.known,
            mode=settings.mode,
            remote=inputs.remote,
            voltage=voltage,
            current=current,
            power=voltage * current if voltage is not None and current is not None else None,
            consumed_ah=self._soc.consumed_ah(self._capacity_ah),
            ttg_min=None if stale else self._ttg,
            allowed_to_charge=outputs.charger,
            charge_reason=verdict.charge_reason,
            allowed_to_discharge=outputs.load,
            discharge_reason=verdict.discharge_reason,
            outputs=outputs,
            leds=leds(inputs, verdict.warnings, verdict.alarms, errors),
            warnings=verdict.warnings,
            alarms=verdict.alarms,
            errors=errors,
            bank=self._stale_view(self._bank) if stale else self._bank,
            temperature=temperature,
            source_notes=readings.notes if readings is not None else self._status.source_notes,
            setting_problems=self.setting_problems(),
        )
        return self._status

    def _stale_view(self, bank: BankStatus | None) -> BankStatus | None:
        """The bank page once data is 5 s old: the cell and temperature extremes go unknown
        with the voltage, current and temperature (the topology and batteries stay shown)."""
        if bank is None:
            return None
        cached = self._stale_bank
        if cached is None or cached[0] is not bank:
            stale = dataclasses.replace(
                bank,
                min_cell_voltage=None,
                max_cell_voltage=None,
                min_temperature=None,
                max_temperature=None,
            )
            cached = self._stale_bank = (bank, stale)
        return cached[1]

    def _complete(self, readings: Readings) -> bool:
        """Every remembered battery reports (see the module doc: a battery that disappears)."""
        present = self._present
        batteries = readings.batteries
        if len(present) != len(batteries) or not all(
            b.serial in present for b in batteries
        ):
            present = self._present = frozenset([b.serial for b in batteries])
        known = self._known
        return not known or known <= present

    def _remember(self, topology: Topology) -> None:
        """A valid bank that holds every remembered battery becomes the remembered bank."""
        present = self._present
        if self._known <= present:
            self._known = present
            self._known_capacity_ah = topology.capacity_ah

    def set_comms_delays(self, warning_s: float, alarm_s: float) -> None:
        """The comms-loss delays (seconds without fresh data before W-B05, A-B05): the battery
        source's configuration, not a setting (docs/sources.md)."""
        self._comms_warning_s = warning_s
        self._protection.comms_warning_s = warning_s
        self._protection.comms_alarm_s = alarm_s

    @property
    def known_batteries(self) -> frozenset[str]:
        """Serials of the remembered bank (empty before the first valid bank)."""
        return self._known

    @property
    def missing_batteries(self) -> frozenset[str]:
        """Remembered batteries absent from the last readings."""
        return self._known - self._present

    def _errors(self, topology_error: Code | None, voltage: Code | None) -> tuple[Code, ...]:
        key = (topology_error, voltage, self._hardware_fault)
        cached = self._error_cache.get(key)
        if cached is None:
            found = [c for c in (topology_error, voltage) if c is not None]
            if self._hardware_fault:
                found.append(Code.E_B11)
            cached = self._error_cache[key] = tuple(sorted(found)) if found else _NO_CODES
        return cached

    def _ingest(self, readings: Readings, gap: float, complete: bool = True) -> None:
        """Everything a sample changes: topology, SOC, sync, history, bank page.

        An incomplete sample (a remembered battery is missing) keeps the remembered topology
        and capacity: the batteries left do not make the bank the user built.
        """
        batteries = readings.batteries
        voltage = readings.bank_voltage
        remembered = self._topology
        if complete or remembered is None:
            topology = self._detector.detect(batteries, voltage)
            self._topology = topology
            if topology.error is None and complete:
                self._capacity_ah = topology.capacity_ah
                self._remember(topology)
        else:
            topology = remembered
        serials = self._present  # of these readings (see _complete)
        valid = topology.error is None
        capacity = self._capacity_ah
        current = zero_band(readings.bank_current)
        self._voltage = voltage
        self._current = readings.bank_current

        soc = self._soc
        soc.count(current, gap, capacity)
        charged_voltage = math.inf
        if valid:
            settings = self._settings
            charged_voltage = self._charged_voltage(topology.cells_in_series)
            tail_a = settings.tail_current / 100.0 * capacity
            if soc.check_sync(
                voltage=voltage,
                current=current,
                dt=gap,
                charged_voltage=charged_voltage,
                tail_current_a=tail_a,
                detection_s=settings.charge_detection_time * 60.0,
            ):
                self._history.synchronised()
                self._balancer.full_charge(serials)
            soc.check_rest(current, gap, voltage / topology.cells_in_series)
        value = soc.value()
        if value is not None:
            self._history.soc(value, soc.consumed_ah(capacity))
        self._ttg = soc.time_to_go_min(current, capacity, self._settings.discharge_floor)

        if not batteries:
            self._measurements = None
            self._bank = BankStatus(
                None, 0, 0, 0, 0, 0.0, None, None, None, None, BalancerState.UNKNOWN
            )
            return
        cell_lists = [b.cell_voltages for b in batteries]
        if all(cell_lists):
            min_cell = min(map(min, cell_lists))
            max_cell = max(map(max, cell_lists))
        else:  # extremes only (CAN), or a battery without cells (E-B05): what there is
            lows = [x for x in [b.lowest_cell for b in batteries] if x is not None]
            highs = [x for x in [b.highest_cell for b in batteries] if x is not None]
            min_cell = min(lows) if lows else math.nan
            max_cell = max(highs) if highs else math.nan
        max_t = max([b.temperature for b in batteries])
        min_t = min([b.coldest for b in batteries])
        m = Measurements(
            min_cell, max_cell, voltage, min_t, max_t, topology.cells_in_series if valid else 0
        )
        self._measurements = m
        self._history.sample(
            voltage=voltage,
            current=current,
            dt=gap,
            min_cell=min_cell,
            max_cell=max_cell,
            min_temperature=min_t,
            max_temperature=max_t,
        )
        balancer = self._balancer.state(
            soc.known,
            serials,
            current > 0.0,
            voltage >= charged_voltage,
            max_cell - min_cell,
        )
        self._bank = self._bank_status(topology, batteries, m, balancer)

    def _bank_status(
        self,
        topology: Topology,
        batteries: Sequence[BatteryReading],
        m: Measurements,
        balancer: BalancerState,
    ) -> BankStatus:
        model = topology.model
        capacity = model.capacity_ah if model is not None else 0.0
        return BankStatus(
            model=model.name if model is not None else None,
            batteries=topology.batteries,
            cells=topology.cells if model is not None else sum(
                len(b.cell_voltages) for b in batteries
            ),
            series=topology.series,
            parallel=topology.parallel,
            capacity_ah=topology.capacity_ah,
            min_cell_voltage=m.min_cell,
            max_cell_voltage=m.max_cell,
            min_temperature=m.min_temperature,
            max_temperature=m.max_temperature,
            balancer=balancer,
            battery_list=BatteryList(tuple(batteries), capacity),
        )

    def _charged_voltage(self, cells_in_series: int) -> float:
        """The charged voltage for this bank.  A value set for another bank (3.40-3.60 V per
        cell no longer holds after the bank changed) falls back to the default per cell."""
        settings = self._settings
        if settings.charged_voltage_problem(cells_in_series) is not None:
            return _FACTORY_SETTINGS.charged_voltage_for(cells_in_series)
        return settings.charged_voltage_for(cells_in_series)

    def setting_problems(self) -> tuple[str, ...]:
        """Stored settings the detected bank makes invalid, each with what is used instead
        (shown in the status, by the client and in the log; they block no other change)."""
        cells = self._cells_in_series()
        if cells is None:
            return ()
        problem = self._settings.charged_voltage_problem(cells)
        return () if problem is None else (problem,)

    # --- settings and commands ---------------------------------------------------------------
    def _cells_in_series(self) -> int | None:
        topology = self._topology
        if topology is None or topology.error is not None:
            return None
        return topology.cells_in_series

    def set_setting(self, name: str, value: object) -> Settings:
        """Change one setting; ``SettingError`` (nothing changed) when rejected.

        A change is judged on what it changes: the charged voltage is checked per cell against
        the detected bank (3.40-3.60 V per cell in series) only when it is the setting being
        changed, so a stored value the bank no longer allows (see ``setting_problems``) never
        blocks Mode, the floor, Bluetooth or the PIN.  Changing a synchronisation setting
        restarts the detection time.
        """
        new = self._settings.with_value(name, value, cells_in_series=self._cells_in_series())
        self._apply(new)
        return new

    def _apply(self, new: Settings) -> None:
        old = self._settings
        if any(getattr(old, n) != getattr(new, n) for n in _SYNC_SETTINGS):
            self._soc.reset_sync_timer()
        self._settings = new

    def command(self, name: str, argument: float | None = None, now: float | None = None) -> str:
        """Run a command; returns a confirmation for the user, ``SettingError`` when rejected.

        Commands take effect from the next step (``now`` is accepted for the interface's sake:
        none of the commands depends on time).
        """
        del now
        if name == "set_soc":
            if (
                argument is None
                or isinstance(argument, bool)
                or not isinstance(argument, int | float)
                or not math.isfinite(argument)
            ):
                raise SettingError("set_soc needs a state of charge in percent, 0-100")
            if not 0.0 <= argument <= 100.0:
                raise SettingError(f"set_soc {argument:g}% is out of range 0-100%")
            self._soc.set(float(argument))
            return f"SOC set to {argument:g}%"
        if argument is not None:
            raise SettingError(f"{name} takes no value")
        if name == "synchronise":
            self._soc.set(100.0, SocSource.MANUAL_SYNC)
            return "SOC synchronised to 100%"
        if name == "reset_history":
            self._history.reset()
            return "history reset"
        if name == "confirm_bank":
            return self._confirm_bank()
        if name == "factory_reset":
            self._apply(self._settings.factory_reset())
            return (
                "settings reset to factory defaults (PIN, Mode, history and SOC kept)"
            )
        raise SettingError(f"unknown command {name!r}; known commands: {', '.join(COMMANDS)}")

    def _confirm_bank(self) -> str:
        """The batteries reporting now become the bank (a deliberate change: one removed)."""
        present = self._present
        if not present:
            raise SettingError("confirm_bank: no battery reports yet; nothing to confirm")
        forgotten = sorted(self._known - present)
        added = sorted(present - self._known)
        self._known = present  # the next readings are complete: detected and remembered afresh
        return (
            f"bank confirmed: {len(present)} batteries"
            + (f"; forgotten: {', '.join(forgotten)}" if forgotten else "")
            + (f"; added: {', '.join(added)}" if added else "")
        )

    # --- persistence ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything that must survive a restart, JSON-serialisable."""
        return {
            "version": SNAPSHOT_VERSION,
            "settings": self._settings.as_dict(),
            "soc": self._soc.snapshot(),
            "history": self._history.snapshot(),
            "balancer": self._balancer.snapshot(),
            "protection": self._protection.snapshot(),
            "bank": {"batteries": sorted(self._known), "capacity_ah": self._known_capacity_ah},
        }

    def _restore(self, saved: object) -> None:
        """Load a snapshot; ValueError (a SettingError for settings) naming what is wrong.

        Missing sections keep their defaults, unknown top-level keys are ignored (a newer
        snapshot may add some), a newer version is refused.
        """
        if not isinstance(saved, dict):
            raise SnapshotError("snapshot: expected a table")
        version = saved.get("version", SNAPSHOT_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or not (
            1 <= version <= SNAPSHOT_VERSION
        ):
            raise SnapshotError(f"snapshot: unsupported version {version!r}")
        if "settings" in saved:
            values = saved["settings"]
            if not isinstance(values, dict):
                raise SnapshotError("snapshot: settings must be a table")
            try:
                self._settings = Settings().with_values(values)
            except SettingError as exc:
                raise SnapshotError(f"snapshot: settings: {exc}") from None
        if "soc" in saved:
            self._soc = SocCounter.restore(saved["soc"])
        if "history" in saved:
            self._history = HistoryTracker.restore(saved["history"])
        if "balancer" in saved:
            self._balancer = Balancer.restore(saved["balancer"])
        if "protection" in saved:
            self._protection = Protection.restore(saved["protection"])
        if "bank" in saved:
            self._known, self._known_capacity_ah = _restore_bank(saved["bank"])
