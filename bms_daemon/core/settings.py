"""User settings of the manual [4.3]: defaults, ranges and cross-checks, in one place.

A change is validated as a whole (``Settings.with_value``): a value out of range, of the wrong
type, or inconsistent with another setting raises ``SettingError`` and the old settings stay in
force, so a half-applied change cannot exist.  A change is judged on what it changes: the
charged voltage is checked against the detected bank only when it is the value being changed.
A stored charged voltage that a later bank no longer allows (``charged_voltage_problem``) is
reported, and the default is used for it, but it never blocks a change of another
setting (Mode off, the discharge floor, Bluetooth, the PIN must always be possible).
Messages are written for the person who typed the value (they reach the command line and, as
ATT errors plus a text, the BLE client).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

# Defaults and ranges (SPEC §3).  Those marked (ours) are our own choices, documented there.
CHARGED_VOLTAGE_PER_CELL_DEFAULT = 3.50  # V per cell in series (ours: 14.0 V per 12.8 V battery)
CHARGED_VOLTAGE_PER_CELL_RANGE = (3.40, 3.60)
SYSTEM_CELLS_IN_SERIES = (4, 8, 16)  # 12, 24 and 48 V banks (the only ones E-B05 allows)
TAIL_CURRENT_DEFAULT = 4.0  # % of bank capacity
TAIL_CURRENT_RANGE = (0.5, 10.0)
CHARGE_DETECTION_TIME_DEFAULT = 3.0  # minutes
CHARGE_DETECTION_TIME_RANGE = (1.0, 50.0)
LOW_SOC_WARNING_DEFAULT = 20.0  # % (ours)
DISCHARGE_FLOOR_DEFAULT = 10.0  # % (ours)
PERCENT_SETTING_RANGE = (0.0, 99.0)
PIN_DEFAULT = "000000"
_PIN_RE = re.compile(r"^[0-9]{6}$")


class SettingError(ValueError):
    """A rejected setting or command; the message says why, in words for the user."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The settings in force.  ``charged_voltage`` None means "3.50 V per cell in series"."""

    charged_voltage: float | None = None  # V for the whole bank; None = default for the bank
    tail_current: float = TAIL_CURRENT_DEFAULT  # %
    charge_detection_time: float = CHARGE_DETECTION_TIME_DEFAULT  # min
    low_soc_warning: float = LOW_SOC_WARNING_DEFAULT  # %, 0 disables
    discharge_floor: float = DISCHARGE_FLOOR_DEFAULT  # %, 0 disables
    bluetooth: bool = True
    instant_readout: bool = True
    pin: str = PIN_DEFAULT
    mode: bool = True

    # --- queries -----------------------------------------------------------------------------
    def charged_voltage_for(self, cells_in_series: int) -> float:
        """The charged voltage in force for a bank with this many cells in series."""
        if self.charged_voltage is not None:
            return self.charged_voltage
        return CHARGED_VOLTAGE_PER_CELL_DEFAULT * cells_in_series

    @staticmethod
    def names() -> tuple[str, ...]:
        """Config names of every setting, in the manual's order."""
        return tuple(f.name for f in dataclasses.fields(Settings))

    def as_dict(self) -> dict[str, Any]:
        """JSON/TOML-ready mapping of config name to value."""
        return {name: getattr(self, name) for name in self.names()}

    # --- changes -----------------------------------------------------------------------------
    def with_value(
        self, name: str, value: object, *, cells_in_series: int | None = None
    ) -> Settings:
        """A copy with one setting changed, or ``SettingError`` and nothing changed.

        ``cells_in_series`` lets the charged voltage be checked per cell (3.40-3.60 V) once the
        bank is known; without it, the new value must fit a 12, 24 or 48 V bank
        (``check_charged_voltage_fits_a_bank``).
        """
        if name not in self.names():
            raise SettingError(
                f"unknown setting {name!r}; known settings: {', '.join(self.names())}"
            )
        new = self.with_values({name: value}, cells_in_series=cells_in_series)
        if name == "charged_voltage" and cells_in_series is None:
            new.check_charged_voltage_fits_a_bank()
        return new

    def check_charged_voltage_fits_a_bank(self) -> None:
        """``SettingError`` unless the charged voltage fits a 12, 24 or 48 V bank (3.40-3.60 V
        per cell of 4, 8 or 16 cells in series).  For new values given before the bank is
        known (a user's change, ``[settings]``): 20 V fits no bank and would only be reported
        as unused later.  Stored values are not judged by it (``validate`` accepts any value of
        4 to 16 cells), so a state file written before this check still loads."""
        value = self.charged_voltage
        if value is None:
            return
        lo, hi = CHARGED_VOLTAGE_PER_CELL_RANGE
        if any(lo * n <= value <= hi * n for n in SYSTEM_CELLS_IN_SERIES):
            return
        ranges = ", ".join(
            f"{lo * n:.2f}-{hi * n:.2f} V ({n // 4 * 12} V bank)" for n in SYSTEM_CELLS_IN_SERIES
        )
        raise SettingError(
            f"charged_voltage {value:g} V fits no bank: 3.40-3.60 V per cell in series is "
            f"{ranges}"
        )

    def with_values(
        self, values: dict[str, object], *, cells_in_series: int | None = None
    ) -> Settings:
        """A copy with several settings changed at once, validated together."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise SettingError(
                f"unknown setting {unknown[0]!r}; known settings: {', '.join(self.names())}"
            )
        coerced: dict[str, Any] = {k: _coerce(k, v) for k, v in values.items()}
        new = dataclasses.replace(self, **coerced)
        new.validate(cells_in_series=cells_in_series if "charged_voltage" in values else None)
        return new

    def charged_voltage_problem(self, cells_in_series: int) -> str | None:
        """Why the stored charged voltage does not fit this bank (None when it does, or when
        it is automatic).  The bank then uses 3.50 V per cell in series instead."""
        value = self.charged_voltage
        if value is None:
            return None
        lo, hi = CHARGED_VOLTAGE_PER_CELL_RANGE
        if lo * cells_in_series <= value <= hi * cells_in_series:
            return None
        default = CHARGED_VOLTAGE_PER_CELL_DEFAULT * cells_in_series
        return (
            f"charged_voltage {value:g} V does not fit this bank of {cells_in_series} cells in "
            f"series (allowed {lo * cells_in_series:.2f}-{hi * cells_in_series:.2f} V); "
            f"{default:.2f} V is used until it is set again"
        )

    def factory_reset(self) -> Settings:
        """Factory defaults for the battery monitor, Bluetooth and readout; keeps PIN and Mode."""
        return Settings(pin=self.pin, mode=self.mode)

    def validate(self, *, cells_in_series: int | None = None) -> None:
        """Raise ``SettingError`` if any value is out of range or inconsistent; with
        ``cells_in_series``, the charged voltage must also fit that bank."""
        _check_range("tail_current", self.tail_current, TAIL_CURRENT_RANGE, "%")
        _check_range(
            "charge_detection_time",
            self.charge_detection_time,
            CHARGE_DETECTION_TIME_RANGE,
            " min",
        )
        _check_range("low_soc_warning", self.low_soc_warning, PERCENT_SETTING_RANGE, "%")
        _check_range("discharge_floor", self.discharge_floor, PERCENT_SETTING_RANGE, "%")
        if self.low_soc_warning and self.low_soc_warning < self.discharge_floor:
            raise SettingError(
                f"low_soc_warning ({self.low_soc_warning:g}%) must be at least the discharge "
                f"floor ({self.discharge_floor:g}%) so the warning comes first; lower "
                "discharge_floor first, or set low_soc_warning to 0 to disable it"
            )
        if self.charged_voltage is not None:
            lo, hi = CHARGED_VOLTAGE_PER_CELL_RANGE
            if cells_in_series:
                per_cell = self.charged_voltage / cells_in_series
                if self.charged_voltage_problem(cells_in_series) is not None:
                    raise SettingError(
                        f"charged_voltage {self.charged_voltage:g} V is {per_cell:.3f} V per cell "
                        f"for this bank of {cells_in_series} cells in series; allowed: "
                        f"{lo * cells_in_series:.2f}-{hi * cells_in_series:.2f} V"
                    )
            elif not lo * 4 <= self.charged_voltage <= hi * 16:
                raise SettingError(
                    f"charged_voltage {self.charged_voltage:g} V is outside "
                    f"{lo * 4:.2f}-{hi * 16:.2f} V (3.40-3.60 V per cell, 4 to 16 cells)"
                )
        if not _PIN_RE.match(self.pin):
            raise SettingError("pin must be exactly 6 digits, e.g. 000000")


_BOOL_WORDS = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False,
               "yes": True, "no": False}


def _coerce(name: str, value: object) -> object:
    """Turn a value from TOML, JSON, the command line or BLE into the setting's type."""
    if name in ("bluetooth", "instant_readout", "mode"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise SettingError(f"{name} must be on or off, not {value!r}")
    if name == "pin":
        if isinstance(value, str):
            return value.strip()
        raise SettingError("pin must be a string of exactly 6 digits, e.g. \"000000\"")
    if name == "charged_voltage" and value is None:
        return None
    if isinstance(value, bool):
        raise SettingError(f"{name} must be a number, not {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%VvAa").strip())
        except ValueError:
            raise SettingError(f"{name} must be a number, not {value!r}") from None
    else:
        raise SettingError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(number):
        raise SettingError(f"{name} must be a finite number, not {value!r}")
    return number


def _check_range(name: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise SettingError(f"{name} {value:g}{unit} is out of range {lo:g}-{hi:g}{unit}")
