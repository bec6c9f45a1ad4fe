"""The simulated bank's parameters, read from a TOML table, with messages that name the key.

One parser serves both places a simulated bank is described: the daemon's ``[source]`` table
and a scenario's ``[bank]`` table, so the two cannot drift apart.  Durations accept "2h",
"30m", "45s", "1d", combinations such as "1h30m", or a number of seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from bms_daemon.core.bank import MODELS
from bms_daemon.sources.physics import (
    CAPACITY_SPREAD_DEFAULT,
    SELF_DISCHARGE_DEFAULT,
    SELF_DISCHARGE_SPREAD_DEFAULT,
)
from bms_daemon.sources.profile import PROFILES, parse_time_of_day

# Defaults of a simulated bank (ours).
DEFAULT_MODEL = "12.8V-100Ah"
DEFAULT_SOC = 80.0  # %
DEFAULT_TEMPERATURE = 25.0  # °C
DEFAULT_SEED = 1
DEFAULT_CAPACITY_SPREAD = CAPACITY_SPREAD_DEFAULT
DEFAULT_SELF_DISCHARGE = SELF_DISCHARGE_DEFAULT
DEFAULT_SELF_DISCHARGE_SPREAD = SELF_DISCHARGE_SPREAD_DEFAULT
DEFAULT_THERMAL_TIME_CONSTANT_S = 3600.0  # battery temperature follows the ambient in ~1 h
CHARGE_VOLTAGE_PER_CELL = 3.55  # V: 14.2 V per 12.8 V battery, the NG absorption voltage
MAX_SIMULATED_BATTERIES = 64  # more than the BMS accepts (50), so "too many" can be shown
TEMPERATURE_RANGE = (-40.0, 90.0)  # °C a simulated battery or ambient may be given

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from "2h", "30m", "45s", "1d", "1h30m" or a number of seconds (>= 0).

    Raises ValueError with a message that shows the accepted forms.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = value.strip().lower().replace(" ", "") if isinstance(value, str) else ""
        if not text or _DURATION_RE.sub("", text):
            raise ValueError(
                f"must be a duration such as \"2h\", \"30m\", \"45s\", \"1d\", \"1h30m\" or a "
                f"number of seconds, not {value!r}"
            )
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_RE.findall(text))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"must be a duration of zero or more seconds, not {value!r}")
    return seconds


@dataclass(frozen=True, slots=True)
class SimulatedBankConfig:
    """Everything that describes a simulated bank before it starts."""

    model: str = DEFAULT_MODEL
    series: int = 1
    parallel: int = 1
    soc: float = DEFAULT_SOC  # true initial SOC, %
    temperature: float = DEFAULT_TEMPERATURE  # °C, batteries and ambient at the start
    battery_models: tuple[str, ...] = ()  # per battery (string after string); () = all `model`
    missing: tuple[int, ...] = ()  # battery numbers (from 1) whose data never arrives
    seed: int = DEFAULT_SEED
    capacity_spread: float = DEFAULT_CAPACITY_SPREAD
    self_discharge: float = DEFAULT_SELF_DISCHARGE
    self_discharge_spread: float = DEFAULT_SELF_DISCHARGE_SPREAD
    thermal_time_constant: float = DEFAULT_THERMAL_TIME_CONSTANT_S  # s; 0 = follows the ambient
    current_offset: float = 0.0  # A added by the bank current sensor
    current_gain_error: float = 0.0  # relative, e.g. 0.005 = reads 0.5 % high
    current_noise: float = 0.0  # A, standard deviation of the sensor's noise
    charge_voltage: float | None = None  # V of the charger's CV phase; None = 3.55 V per cell
    load: float = 0.0  # A the loads draw while LOAD is high (daemon use; scenarios set it per step)
    charge: float = 0.0  # A the charger offers while CHARGER is high (idem)
    # daemon use (docs/simulated-source.md); scenarios set loads per step and know_soc apart
    profile: str = "constant"  # "daily": load and charge follow profile.DAILY
    start: float = 0.0  # s after midnight: the profile's time of day when the daemon starts
    known_soc: bool = False  # a first start (no saved state) sets the BMS's SOC to the true one

    @property
    def batteries(self) -> int:
        """Number of batteries wired (reporting or not)."""
        return self.series * self.parallel

    def models(self) -> tuple[str, ...]:
        """The model of every battery, string after string."""
        return self.battery_models or (self.model,) * self.batteries

    def default_charge_voltage(self) -> float:
        """The charger's CV voltage: configured, else 3.55 V per cell of the first string."""
        if self.charge_voltage is not None:
            return self.charge_voltage
        cells = sum(MODELS[m].cells for m in self.models()[: self.series])
        return CHARGE_VOLTAGE_PER_CELL * cells

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Every key a table may hold."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_table(
        cls, table: Mapping[str, Any], where: str, *, ignore: frozenset[str] = frozenset()
    ) -> SimulatedBankConfig:
        """Build from a TOML table; ``where`` prefixes messages (e.g. "[source]").

        Raises ValueError naming the first bad key.  Keys in ``ignore`` belong to the caller.
        """
        known = set(cls.keys()) | ignore
        for key in table:
            if key not in known:
                raise ValueError(
                    f"{where} {key}: unknown key; known keys: {', '.join(sorted(known))}"
                )
        get = Getter(table, where)
        model = get.choice("model", DEFAULT_MODEL, MODELS)
        series = get.integer("series", 1, 1, MAX_SIMULATED_BATTERIES)
        parallel = get.integer("parallel", 1, 1, MAX_SIMULATED_BATTERIES)
        if series * parallel > MAX_SIMULATED_BATTERIES:
            raise ValueError(
                f"{where} parallel: {series} x {parallel} = {series * parallel} batteries; the "
                f"simulator holds at most {MAX_SIMULATED_BATTERIES}"
            )
        battery_models = get.models("battery_models", series * parallel)
        missing = get.battery_numbers("missing", series * parallel)
        charge_voltage = (
            None if table.get("charge_voltage") is None
            else get.number("charge_voltage", 0.0, 1.0, 100.0)
        )
        return cls(
            model=model,
            series=series,
            parallel=parallel,
            soc=get.number("soc", DEFAULT_SOC, 0.0, 100.0),
            temperature=get.number("temperature", DEFAULT_TEMPERATURE, *TEMPERATURE_RANGE),
            battery_models=battery_models,
            missing=missing,
            seed=get.integer("seed", DEFAULT_SEED, 0, 2**63),
            capacity_spread=get.number("capacity_spread", DEFAULT_CAPACITY_SPREAD, 0.0, 0.2),
            self_discharge=get.number("self_discharge", DEFAULT_SELF_DISCHARGE, 0.0, 0.5),
            self_discharge_spread=get.number(
                "self_discharge_spread", DEFAULT_SELF_DISCHARGE_SPREAD, 0.0, 0.5
            ),
            thermal_time_constant=get.duration(
                "thermal_time_constant", DEFAULT_THERMAL_TIME_CONSTANT_S
            ),
            current_offset=get.number("current_offset", 0.0, -100.0, 100.0),
            current_gain_error=get.number("current_gain_error", 0.0, -0.5, 0.5),
            current_noise=get.number("current_noise", 0.0, 0.0, 100.0),
            charge_voltage=charge_voltage,
            load=get.number("load", 0.0, 0.0, 10_000.0),
            charge=get.number("charge", 0.0, 0.0, 10_000.0),
            profile=get.choice("profile", "constant", dict.fromkeys(PROFILES)),
            start=_wrap(where, "start", parse_time_of_day, table["start"])
            if "start" in table else 0.0,
            known_soc=get.boolean("known_soc", False),
        )


class Getter:
    """Typed reads from a TOML table with messages of the form "[bank] soc: ..."."""

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        self.table = table
        self.where = where

    def _bad(self, key: str, what: str) -> ValueError:
        return ValueError(f"{self.where} {key}: {what}, not {self.table[key]!r}")

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(key, "must be a number")
        if not (math.isfinite(value) and lo <= value <= hi):
            raise self._bad(key, f"must be between {lo:g} and {hi:g}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, bool):
            raise self._bad(key, "must be true or false")
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "must be a whole number")
        if not lo <= value <= hi:
            raise self._bad(key, f"must be between {lo} and {hi}")
        return value

    def choice(self, key: str, default: str, allowed: Mapping[str, object]) -> str:
        if key not in self.table:
            return default
        value = self.table[key]
        if value not in allowed:
            raise self._bad(key, f"must be one of {', '.join(allowed)}")
        return str(value)

    def duration(self, key: str, default: float) -> float:
        if key not in self.table:
            return default
        return _wrap(self.where, key, parse_duration, self.table[key])

    def text(self, key: str, default: str, max_length: int = 200) -> str:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, str) or not value.strip() or len(value) > max_length:
            raise self._bad(key, f"must be a non-empty string of at most {max_length} characters")
        return value

    def unknown_keys(self, known: frozenset[str] | set[str]) -> None:
        """Refuse a key that is not in ``known`` (a typo must not be silently ignored)."""
        for key in self.table:
            if key not in known:
                raise ValueError(
                    f"{self.where} {key}: unknown key; known keys: {', '.join(sorted(known))}"
                )

    def models(self, key: str, count: int) -> tuple[str, ...]:
        if key not in self.table:
            return ()
        value = self.table[key]
        if not isinstance(value, list) or len(value) != count:
            raise self._bad(key, f"must be a list of {count} model names, one per battery")
        for item in value:
            if item not in MODELS:
                raise ValueError(
                    f"{self.where} {key}: {item!r} is not a model; models: {', '.join(MODELS)}"
                )
        return tuple(value)

    def battery_numbers(self, key: str, count: int) -> tuple[int, ...]:
        if key not in self.table:
            return ()
        value = self.table[key]
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= count for i in value
        ):
            raise self._bad(key, f"must be a list of battery numbers from 1 to {count}")
        return tuple(sorted(set(value)))


def _wrap(where: str, key: str, parse: Callable[[object], float], value: object) -> float:
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{where} {key}: {exc}") from None
