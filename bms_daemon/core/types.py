"""The vocabulary shared by the core, the edges and the BLE side.

Everything that crosses a boundary (battery source -> core, core -> GPIO/BLE/store) is one of
these frozen dataclasses, so that the core stays pure: it receives readings and a time, and
returns a status.  Names follow the smallBMS NG manual: *load disconnect* (LOAD, allowed to
discharge), *charger disconnect* (CHARGER, allowed to charge), *pre-alarm*, *discharge floor*.

Units are SI-ish and fixed here once: volts, amperes (positive = charging), ampere-hours,
degrees Celsius, seconds, percent (0-100).  Fields may be added; none may be renamed or removed
without updating every user (the GATT codecs and the simulator's JSON output depend on them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True)
def step_value(cls: type[_T]) -> type[_T]:
    """A dataclass for what the core builds at every step (the status and its parts).

    Immutable by contract, and checked: mypy sees it frozen, so assigning a field is a type
    error (CI runs mypy --strict).  At run time it is a plain slotted dataclass, because a
    frozen one assigns each field through ``object.__setattr__`` in ``__init__``: building the
    21-field ``Status`` of every step cost ten times as much (a fifth of a step).  Hashable
    like a frozen one.
    """
    built: Any = dataclass(slots=True, unsafe_hash=True)(cls)
    return built  # type: ignore[no-any-return]


class Code(StrEnum):
    """Warning, alarm and error codes of the manual [5.2]."""

    W_B01 = "W-B01"  # low cell voltage (cell pre-alarm)
    W_B05 = "W-B05"  # battery communication lost
    W_B07 = "W-B07"  # low SOC
    A_B01 = "A-B01"  # low cell voltage (cell under-voltage, LOAD floats)
    A_B05 = "A-B05"  # battery communication lost (LOAD and CHARGER float)
    A_B07 = "A-B07"  # low SOC (discharge floor reached, LOAD floats)
    A_B08 = "A-B08"  # low pack voltage
    A_B09 = "A-B09"  # high battery temperature
    E_B01 = "E-B01"  # invalid battery configuration
    E_B05 = "E-B05"  # invalid battery configuration
    E_B09 = "E-B09"  # battery voltage not allowed
    E_B11 = "E-B11"  # hardware error

    @property
    def kind(self) -> str:
        """``"warning"``, ``"alarm"`` or ``"error"``, from the code's letter."""
        return {"W": "warning", "A": "alarm", "E": "error"}[self.value[0]]

    @property
    def number(self) -> int:
        """The numeric part (``E-B09`` -> 9), as sent in the instant readout's error field."""
        return int(self.value.split("B")[1])


class LedState(StrEnum):
    """What a LED shows [5.2]: off, blinking or solid."""

    OFF = "off"
    BLINK = "blink"
    ON = "on"


class BalancerState(StrEnum):
    """Balancer status shown over Bluetooth (SPEC §4)."""

    UNKNOWN = "unknown"
    BALANCING = "balancing"
    IMBALANCE = "imbalance"
    BALANCED = "balanced"


class Reason(StrEnum):
    """Why LOAD or CHARGER floats (or why the pre-alarm is high); shown next to ATC/ATD."""

    CELL_UNDER_VOLTAGE = "cell under-voltage"
    CELL_PRE_ALARM = "cell pre-alarm"
    LOW_PACK_VOLTAGE = "low pack voltage"
    DISCHARGE_FLOOR = "discharge floor reached"
    LOW_SOC = "low SOC"
    CELL_OVER_VOLTAGE = "cell over-voltage"
    COLD = "battery too cold"
    HOT = "battery too hot"
    REMOTE_OFF = "remote off"
    MODE_OFF = "mode off"
    COMMS_LOST = "battery communication lost"
    CONFIGURATION = "invalid battery configuration"
    VOLTAGE_NOT_ALLOWED = "battery voltage not allowed"
    HARDWARE = "hardware error"
    STARTING = "starting"


@dataclass(frozen=True, slots=True)
class BatteryModel:
    """A battery model: a Lithium NG model of ``bank.MODELS`` or a DIY pack's description.

    ``nominal_voltage`` is 3.2 V per LiFePO4 cell in series (12.8 V for 4 cells), so a DIY
    pack of 16 cells is a 51.2 V battery and the manual's 12/24/48 V system rules apply to it.
    """

    name: str
    nominal_voltage: float  # V
    capacity_ah: float
    cells: int  # cells in series inside the battery


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """What one battery reports (SPEC §2, "per battery"): a Lithium NG battery over its BMS
    cable, or a DIY pack through its own BMS (CAN, Bluetooth).

    A source never invents data.  ``cell_voltages`` is empty when the protocol gives only the
    lowest and highest cell (``min_cell_voltage`` / ``max_cell_voltage``, then required);
    ``temperature`` is the warmest sensor and ``min_temperature`` the coldest (None = one
    sensor, the same figure).  ``description`` describes a battery that is not a Lithium NG
    model (its ``model`` is then the description's name).
    """

    serial: str
    model: str  # a key of bms_daemon.core.bank.MODELS, e.g. "12.8V-100Ah", or a DIY name
    firmware: str
    voltage: float  # battery terminal voltage, V
    current: float  # A through this battery, positive = charging
    temperature: float  # °C, the warmest sensor of the battery (the hot rule uses it)
    cell_voltages: tuple[float, ...]
    min_temperature: float | None = None  # °C, the coldest sensor (the cold rule); None = same
    min_cell_voltage: float | None = None  # V, when the cells are not reported one by one
    max_cell_voltage: float | None = None  # V, idem
    description: BatteryModel | None = None  # a DIY pack (not one of bank.MODELS)

    @property
    def coldest(self) -> float:
        """The coldest sensor, °C."""
        cold = self.min_temperature
        return self.temperature if cold is None else cold

    @property
    def lowest_cell(self) -> float | None:
        """The lowest cell, V (None when the battery reports no cell figure at all)."""
        cells = self.cell_voltages
        return min(cells) if cells else self.min_cell_voltage

    @property
    def highest_cell(self) -> float | None:
        """The highest cell, V (None when the battery reports no cell figure at all)."""
        cells = self.cell_voltages
        return max(cells) if cells else self.max_cell_voltage


@dataclass(frozen=True, slots=True)
class Readings:
    """One fresh sample of the whole bank from a battery source.

    ``bank_voltage`` and ``bank_current`` are what the BMS measures for the bank as a whole
    (the current is what SOC counts; it carries the sensor's offset, gain error and noise).
    A source that has no fresh data returns ``None`` instead of a ``Readings``.
    """

    batteries: tuple[BatteryReading, ...]
    bank_voltage: float
    bank_current: float
    notes: tuple[str, ...] = ()  # the source's own alarms and requests, shown, never obeyed


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything the core needs besides the readings: the remote input, read from GPIO."""

    remote: bool = True  # the remote on/off loop is closed (on)
    hardware_ok: bool = True  # False when a GPIO line could not be driven or read back
    ble_advertising: bool = False  # the BLE side is advertising (blue LED blinks)
    ble_connected: bool = False  # a central is connected (blue LED solid)


@dataclass(frozen=True, slots=True)
class Outputs:
    """The three terminals, as booleans: True = driven high, False = floating.

    LOAD high = allowed to discharge; CHARGER high = allowed to charge; PRE-ALARM high = warning.
    The safe state (daemon dead, starting, or no verdict yet) is every output floating.
    """

    load: bool = False
    charger: bool = False
    prealarm: bool = False

    @classmethod
    def safe(cls) -> Outputs:
        """All outputs floating: loads and chargers off, pre-alarm released."""
        return cls(load=False, charger=False, prealarm=False)


@dataclass(frozen=True, slots=True)
class Leds:
    """The two LEDs of the manual [5.2]; optional GPIO outputs on the Pi."""

    blue: LedState = LedState.OFF
    red: LedState = LedState.OFF


@dataclass(frozen=True, slots=True)
class BatteryStatus:
    """One battery as shown on the bank page."""

    serial: str
    model: str
    capacity_ah: float
    firmware: str
    voltage: float
    current: float
    temperature: float
    cell_voltages: tuple[float, ...]
    min_temperature: float | None = None  # °C, the coldest sensor (None = one sensor)
    min_cell_voltage: float | None = None  # V, when no per-cell figures are reported
    max_cell_voltage: float | None = None  # V, idem


class BatteryList(Sequence[BatteryStatus]):
    """The bank page's batteries, built from the readings when someone reads them.

    The core steps once per sample (86 400 times in a simulated day) while the bank page is read
    at most about once a second (BLE, MQTT): building a ``BatteryStatus`` per battery at every
    step was 40 % of a 50-battery step, for nobody.  So the core hands over the readings it
    already holds and the statuses are built on first access, once.  Compares equal to a
    tuple of the same statuses (what a client decodes over BLE).
    """

    __slots__ = ("_built", "_capacity_ah", "_readings")

    def __init__(self, readings: tuple[BatteryReading, ...], capacity_ah: float) -> None:
        self._readings = readings
        self._capacity_ah = capacity_ah  # of one battery (its model's)
        self._built: tuple[BatteryStatus, ...] | None = None

    def _statuses(self) -> tuple[BatteryStatus, ...]:
        built = self._built
        if built is None:
            capacity = self._capacity_ah
            built = self._built = tuple(
                BatteryStatus(b.serial, b.model, capacity, b.firmware, b.voltage, b.current,
                              b.temperature, b.cell_voltages, b.min_temperature,
                              b.min_cell_voltage, b.max_cell_voltage)
                for b in self._readings
            )
        return built

    @overload
    def __getitem__(self, index: int) -> BatteryStatus: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[BatteryStatus, ...]: ...
    def __getitem__(self, index: int | slice) -> BatteryStatus | tuple[BatteryStatus, ...]:
        return self._statuses()[index]

    def __len__(self) -> int:
        return len(self._readings)

    def __iter__(self) -> Iterator[BatteryStatus]:
        return iter(self._statuses())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, BatteryList | tuple):
            return self._statuses() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._statuses())

    def __repr__(self) -> str:
        return repr(self._statuses())


@step_value
class BankStatus:
    """The bank page: topology as detected, extremes, balancer, and each battery."""

    model: str | None  # None while the configuration is invalid or unknown
    batteries: int
    cells: int
    series: int
    parallel: int
    capacity_ah: float  # of the whole bank (parallel strings add up)
    min_cell_voltage: float | None
    max_cell_voltage: float | None
    min_temperature: float | None
    max_temperature: float | None
    balancer: BalancerState
    battery_list: Sequence[BatteryStatus] = ()  # a BatteryList from the core


@step_value
class Status:
    """Everything the status page shows [5.1], as the core computed it at time ``t``."""

    t: float  # the core's time (seconds, monotonic) of this status
    soc: float | None  # %, None = unknown (never synchronised nor set)
    soc_synchronised: bool  # SOC came from a sync, a manual set or a rest-voltage estimate
    mode: bool  # the Mode setting (on/off)
    remote: bool  # the remote input (on/off)
    voltage: float | None  # bank voltage, V (None while no battery data)
    current: float | None  # A, positive = charging
    power: float | None  # W
    consumed_ah: float | None  # Ah taken since the last full charge, >= 0
    ttg_min: float | None  # time to go to the discharge floor, min; None when not discharging
    allowed_to_charge: bool  # = outputs.charger
    charge_reason: Reason | None  # why CHARGER floats, None when allowed
    allowed_to_discharge: bool  # = outputs.load
    discharge_reason: Reason | None  # why LOAD floats (or the pre-alarm cause while LOAD is high)
    outputs: Outputs
    leds: Leds
    warnings: tuple[Code, ...] = ()
    alarms: tuple[Code, ...] = ()
    errors: tuple[Code, ...] = ()
    bank: BankStatus | None = None
    temperature: float | None = None  # the battery temperature shown (max of the bank), °C
    # stored settings the detected bank makes invalid, each saying what is used instead
    setting_problems: tuple[str, ...] = ()
    source_notes: tuple[str, ...] = ()  # the battery source's own alarms/requests (shown only)

    @property
    def codes(self) -> tuple[Code, ...]:
        """Warnings, alarms and errors together, in that order."""
        return self.warnings + self.alarms + self.errors


@dataclass(slots=True)
class History:
    """The history page [5.1] with the counting rules of SPEC §2.  Mutable: the core owns it."""

    deepest_discharge_ah: float = 0.0
    last_discharge_ah: float = 0.0
    cumulative_ah_drawn: float = 0.0
    discharged_energy_kwh: float = 0.0
    charged_energy_kwh: float = 0.0
    synchronisations: int = 0
    charge_cycles: int = 0
    full_discharges: int = 0
    seconds_since_full_charge: float | None = None  # None = never fully charged
    min_bank_voltage: float | None = None
    max_bank_voltage: float | None = None
    min_cell_voltage: float | None = None
    max_cell_voltage: float | None = None
    min_temperature: float | None = None
    max_temperature: float | None = None
    # counting-rule memory (persisted with the rest so a restart does not miscount)
    below_65_since_cycle: bool = False
    below_90_since_sync: bool = True
    at_zero: bool = False
    extra: dict[str, float] = field(default_factory=dict)
