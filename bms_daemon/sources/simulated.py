"""A simulated bank of Lithium NG batteries: the default battery source (SPEC §7, §8).

It closes the loop with the BMS: ``read(now)`` integrates the physics up to ``now`` and reports
what the batteries would send, ``apply_outputs`` lets the loads draw only while LOAD is high and
the charger charge only while CHARGER is high.  What the batteries report is exact; what the BMS
measures for the bank current goes through a current sensor with offset, gain error and noise,
because those errors are what a coulomb counter has to live with.

The environment (load and charge currents, ambient temperature, battery communication, cell
faults) is set with ``set_environment``; a scenario changes it at each step, the daemon leaves
the ``[source]`` table's values.  Randomness (cell spread, sensor noise) comes from one seeded
generator, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import structlog

from bms_daemon.core.bank import MODELS
from bms_daemon.core.types import BatteryReading, Outputs, Readings
from bms_daemon.sources.config import SimulatedBankConfig
from bms_daemon.sources.physics import BankPhysics, BatteryParams, Spread
from bms_daemon.sources.profile import Period, load_factor, period_at

log = structlog.get_logger("smallbms.simulated")

SIMULATED_FIRMWARE = "v1.10-sim"  # what a simulated battery reports as its firmware
SERIAL_PREFIX = "HQSIM"  # + a 4-digit battery number


class CurrentSensor:
    """The bank current as the BMS measures it: gain error, offset, Gaussian noise."""

    def __init__(self, offset: float, gain_error: float, noise: float, rng: random.Random) -> None:
        self.offset = offset
        self.gain = 1.0 + gain_error
        self.noise = noise
        self._gauss = rng.gauss

    def measure(self, true_current: float) -> float:
        """What the sensor reads for ``true_current`` (A, positive = charging)."""
        reading = true_current * self.gain + self.offset
        if self.noise:
            reading += self._gauss(0.0, self.noise)
        return reading


class SimulatedBank:
    """A BatterySource backed by :class:`BankPhysics`."""

    def __init__(self, config: SimulatedBankConfig) -> None:
        self.config = config
        rng = random.Random(config.seed)  # noqa: S311 - reproducible physics, not secrets
        params = [
            BatteryParams(m, MODELS[m].cells, MODELS[m].capacity_ah, MODELS[m].nominal_voltage)
            for m in config.models()
        ]
        self.physics = BankPhysics(
            params,
            config.series,
            soc=config.soc,
            temperature=config.temperature,
            spread=Spread(
                config.capacity_spread, config.self_discharge, config.self_discharge_spread
            ),
            thermal_time_constant_s=config.thermal_time_constant,
            rng=rng,
        )
        self.sensor = CurrentSensor(
            config.current_offset, config.current_gain_error, config.current_noise, rng
        )
        self.physics.charge_voltage = config.default_charge_voltage()
        self.physics.load_a = config.load
        self.physics.charge_a = config.charge
        self.comms = True
        self._reporting = [i for i in range(len(params)) if i + 1 not in config.missing]
        self._serials = [f"{SERIAL_PREFIX}{i + 1:04d}" for i in range(len(params))]
        self._models = [p.model for p in params]
        self._last: float | None = None
        self._first: float | None = None  # `now` of the first read: the profile's start
        self._period: Period | None = None
        self._capacity_ah = MODELS[config.model].capacity_ah * config.parallel

    @property
    def initial_soc(self) -> float | None:
        """The SOC a first start of the daemon gives the BMS ([source] known_soc), or None."""
        return self.config.soc if self.config.known_soc else None

    def _follow_profile(self, now: float) -> None:
        """Set the loads and the charger of the daily profile in force at ``now``."""
        if self._first is None:
            self._first = now
        time_of_day = self.config.start + (now - self._first)
        period = period_at(time_of_day)
        self.physics.load_a = period.load_c * self._capacity_ah * load_factor(time_of_day)
        self.physics.charge_a = period.charge_c * self._capacity_ah
        if self._period is None or period.name != self._period.name:
            self._period = period
            log.info("simulated_day", period=period.name,
                     loads_a=round(period.load_c * self._capacity_ah, 1),
                     charger_a=round(self.physics.charge_a, 1))

    # --- BatterySource ---------------------------------------------------------------------
    def read(self, now: float) -> Readings | None:
        """Integrate up to ``now`` and report, or None while battery communication is off."""
        if self._last is not None and now > self._last:
            self.physics.advance(now - self._last)
        if self.config.profile == "daily":
            self._follow_profile(now)
        if self._last is None or now > self._last:
            self._last = now
        if not self.comms:
            return None
        physics = self.physics
        cells = physics.cell_voltages()
        temperature = physics.temperature
        batteries = []
        for i in self._reporting:
            span = physics.battery_cells(i)
            voltages = tuple(cells[span.start : span.stop])
            batteries.append(
                BatteryReading(  # positional: this runs for every battery at every step
                    self._serials[i],
                    self._models[i],
                    SIMULATED_FIRMWARE,
                    sum(voltages),
                    physics.battery_current(i),
                    temperature[i],
                    voltages,
                )
            )
        return Readings(
            batteries=tuple(batteries),
            bank_voltage=physics.bus_voltage,
            bank_current=self.sensor.measure(physics.bank_current),
        )

    def apply_outputs(self, outputs: Outputs) -> None:
        """Loads draw only while LOAD is high; the charger charges only while CHARGER is high."""
        self.physics.load_on = outputs.load
        self.physics.charger_on = outputs.charger

    # --- environment (scenarios) -----------------------------------------------------------
    def set_environment(
        self,
        *,
        load: float | None = None,
        charge: float | None = None,
        ambient: float | None = None,
        comms: bool | None = None,
        charge_voltage: float | None = None,
        cell_offsets: Mapping[tuple[int, int], float] | None = None,
    ) -> None:
        """Change what the bank's surroundings do; None leaves a quantity as it is.

        ``cell_offsets`` maps (battery, cell), both from 1, to volts added to that cell.
        """
        physics = self.physics
        if load is not None:
            physics.load_a = load
        if charge is not None:
            physics.charge_a = charge
        if ambient is not None:
            physics.ambient_c = ambient
        if comms is not None:
            self.comms = comms
        if charge_voltage is not None:
            physics.charge_voltage = charge_voltage
        if cell_offsets is not None:
            physics.set_cell_offsets({(b - 1, c - 1): v for (b, c), v in cell_offsets.items()})

    # --- truth (what the simulator knows and the BMS does not) -------------------------------
    @property
    def true_soc(self) -> float:
        """The bank's real state of charge, %."""
        return self.physics.true_soc()

    @property
    def true_current(self) -> float:
        """The bank's real current, A, positive = charging."""
        return self.physics.bank_current
