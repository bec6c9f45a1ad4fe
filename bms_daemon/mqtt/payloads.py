"""The JSON published on each state topic, built from a status, the history and the settings.

Pure functions, no I/O.  Figures are rounded to what the sensors resolve (10 mV, 10 mA, 0.1 °C,
0.1 %), so sensor noise below that resolution does not produce a new message; ``None`` is JSON
``null`` (Home Assistant then shows "unknown").  The PIN is never published.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bms_daemon.core.codes import ADVICE, TITLES
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Code, History, Status
from bms_daemon.mqtt import topics

SECRET_SETTINGS = frozenset({"pin"})


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def state(status: Status) -> dict[str, Any]:
    """Measurements: published at most every ``interval_s``."""
    bank = status.bank
    return {
        "soc": _r(status.soc, 1),
        "voltage": _r(status.voltage, 2),
        "current": _r(status.current, 2),
        "power": _r(status.power, 0),
        "temperature": _r(status.temperature, 1),
        "min_temperature": _r(bank.min_temperature if bank else None, 1),
        "max_temperature": _r(bank.max_temperature if bank else None, 1),
        "ttg_min": _r(status.ttg_min, 0),
        "consumed_ah": _r(status.consumed_ah, 1),
        "min_cell_voltage": _r(bank.min_cell_voltage if bank else None, 3),
        "max_cell_voltage": _r(bank.max_cell_voltage if bank else None, 3),
    }


def outputs(status: Status) -> dict[str, Any]:
    """What changes seldom and matters at once: outputs, reasons, Mode, remote, SOC known."""
    bank = status.bank
    return {
        "load": status.outputs.load,
        "charger": status.outputs.charger,
        "prealarm": status.outputs.prealarm,
        "allowed_to_discharge": status.allowed_to_discharge,
        "allowed_to_charge": status.allowed_to_charge,
        "discharge_reason": None if status.discharge_reason is None
        else str(status.discharge_reason),
        "charge_reason": None if status.charge_reason is None else str(status.charge_reason),
        "mode": status.mode,
        "remote": status.remote,
        "soc_known": status.soc is not None,
        "soc_synchronised": status.soc_synchronised,
        "balancer": str(bank.balancer) if bank else "unknown",
        "bank_model": bank.model if bank else None,
        "batteries": bank.batteries if bank else 0,
        "series": bank.series if bank else 0,
        "parallel": bank.parallel if bank else 0,
        "capacity_ah": _r(bank.capacity_ah, 1) if bank else None,
    }


def _describe(code: Code) -> dict[str, str]:
    return {"code": code.value, "title": TITLES[code], "advice": ADVICE[code]}


def codes(status: Status) -> dict[str, Any]:
    """Every active warning, alarm and error with the manual's title and advice."""
    active = status.codes
    return {
        "active": [code.value for code in active],
        "summary": ", ".join(f"{code.value} {TITLES[code]}" for code in active) or "none",
        "warnings": [_describe(code) for code in status.warnings],
        "alarms": [_describe(code) for code in status.alarms],
        "errors": [_describe(code) for code in status.errors],
    }


def cells(status: Status) -> dict[str, Any]:
    """Each battery (in bank order) with its cell voltages."""
    bank = status.bank
    batteries = bank.battery_list if bank else ()
    return {
        "batteries": [
            {
                "serial": battery.serial,
                "model": battery.model,
                "voltage": _r(battery.voltage, 2),
                "current": _r(battery.current, 2),
                "temperature": _r(battery.temperature, 1),
                "min_temperature": _r(battery.min_temperature, 1),
                "cells": [_r(v, 3) for v in battery.cell_voltages],
                # a battery that reports only its extremes (a DIY pack over CAN) has no cells
                "min_cell_voltage": _r(min(battery.cell_voltages) if battery.cell_voltages
                                       else battery.min_cell_voltage, 3),
                "max_cell_voltage": _r(max(battery.cell_voltages) if battery.cell_voltages
                                       else battery.max_cell_voltage, 3),
            }
            for battery in batteries
        ],
    }


def history(counters: History) -> dict[str, Any]:
    """The history page; energy in kWh (Home Assistant's Energy dashboard takes it)."""
    return {
        "charged_energy_kwh": round(counters.charged_energy_kwh, 3),
        "discharged_energy_kwh": round(counters.discharged_energy_kwh, 3),
        "deepest_discharge_ah": round(counters.deepest_discharge_ah, 1),
        "last_discharge_ah": round(counters.last_discharge_ah, 1),
        "cumulative_ah_drawn": round(counters.cumulative_ah_drawn, 1),
        "synchronisations": counters.synchronisations,
        "charge_cycles": counters.charge_cycles,
        "full_discharges": counters.full_discharges,
        "seconds_since_full_charge": _r(counters.seconds_since_full_charge, -1),
        "min_bank_voltage": _r(counters.min_bank_voltage, 2),
        "max_bank_voltage": _r(counters.max_bank_voltage, 2),
        "min_cell_voltage": _r(counters.min_cell_voltage, 3),
        "max_cell_voltage": _r(counters.max_cell_voltage, 3),
        "min_temperature": _r(counters.min_temperature, 1),
        "max_temperature": _r(counters.max_temperature, 1),
    }


def settings(values: Settings, series: int) -> dict[str, Any]:  # series: cells in series
    """The settings in force, the PIN left out; ``charged_voltage_in_force`` resolves the
    default (3.50 V per cell in series) once the bank is known."""
    result = {k: v for k, v in values.as_dict().items() if k not in SECRET_SETTINGS}
    result["charged_voltage_in_force"] = (
        round(values.charged_voltage_for(series), 2) if series else values.charged_voltage
    )
    return result


def cells_in_series(status: Status) -> int:
    """Cells in series of the valid bank detected (0 while unknown or invalid)."""
    bank = status.bank
    if bank is None or bank.model is None or bank.parallel <= 0:
        return 0
    return bank.cells // bank.parallel


def for_status(status: Status, counters: History, values: Settings) -> dict[str, dict[str, Any]]:
    """Every state topic's payload (topic name -> JSON object)."""
    return {name: render(name, status, lambda: counters, lambda: values)
            for name in topics.STATE_TOPICS}


def render(name: str, status: Status, counters: Callable[[], History],
           values: Callable[[], Settings]) -> dict[str, Any]:
    """One state topic's payload; the history and settings are fetched only when needed."""
    if name == topics.STATE:
        return state(status)
    if name == topics.OUTPUTS:
        return outputs(status)
    if name == topics.CODES:
        return codes(status)
    if name == topics.CELLS:
        return cells(status)
    if name == topics.HISTORY:
        return history(counters())
    if name == topics.SETTINGS:
        return settings(values(), cells_in_series(status))
    raise ValueError(f"not a state topic: {name!r}")


def encode(payload: object) -> bytes:
    """Compact, stable JSON (sorted keys: an unchanged value gives identical bytes)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
