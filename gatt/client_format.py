"""How ``smallbms-client`` shows what it reads: text for a person, JSON for a program.

Pure functions of the decoded records (``codec.StatusView``, ``BankStatus``, ``History``,
settings), so the command line stays a thin shell and the output can be tested without a
device.  Fields are fetched by name with ``--`` for anything absent, so a profile that grows a
field never breaks the display.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, TextIO

from bms_daemon.core.codes import describe
from bms_daemon.core.types import Code
from gatt.client_scan import ScanResult


def to_jsonable(value: object) -> object:
    """Dataclasses, enums, tuples and bytes as plain JSON values; NaN/inf become null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(value: object, out: TextIO) -> None:
    print(json.dumps(to_jsonable(value), sort_keys=False), file=out, flush=True)


def _num(value: float | None, unit: str, digits: int = 2) -> str:
    if value is None:
        return "--"
    return f"{value:.{digits}f}{unit}"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _ttg(minutes: float | None) -> str:
    if minutes is None:
        return "--"
    total = round(minutes)
    days, rest = divmod(total, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {mins:02d}m"
    return f"{hours}h {mins:02d}m"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return _ttg(seconds / 60.0)


def _get(obj: object, name: str, default: Any = None) -> Any:
    """A field of a decoded record; the profile may grow, so absent fields show as '--'."""
    return getattr(obj, name, default)


def format_status(status: object) -> list[str]:
    """The status page [5.1] as lines for a person."""
    soc = _get(status, "soc")
    synced = _get(status, "soc_synchronised", True)
    soc_text = "unknown" if soc is None else f"{soc:.1f} %" + ("" if synced else " (estimated)")
    charge = _get(status, "allowed_to_charge", False)
    discharge = _get(status, "allowed_to_discharge", False)
    prealarm = bool(_get(_get(status, "outputs"), "prealarm", False))
    charge_reason = _get(status, "charge_reason")
    discharge_reason = _get(status, "discharge_reason")
    discharge_text = "pre-alarm" if (discharge and prealarm) else _yes_no(discharge)
    lines = [
        f"State of charge     {soc_text}",
        f"Voltage             {_num(_get(status, 'voltage'), ' V')}",
        f"Current             {_num(_get(status, 'current'), ' A')}",
        f"Power               {_num(_get(status, 'power'), ' W', 0)}",
        f"Consumed            {_num(_get(status, 'consumed_ah'), ' Ah', 1)}",
        f"Time to go          {_ttg(_get(status, 'ttg_min'))}",
        f"Temperature         {_num(_get(status, 'temperature'), ' °C', 1)}",
        f"Mode                {_on_off(bool(_get(status, 'mode', True)))}"
        f"   (remote {_on_off(bool(_get(status, 'remote', True)))})",
        "Allowed to charge   "
        + _yes_no(charge)
        + (f" ({_reason(charge_reason)})" if charge_reason else ""),
        "Allowed to discharge "
        + discharge_text
        + (f" ({_reason(discharge_reason)})" if discharge_reason else ""),
    ]
    for kind, label in (("warnings", "Warning"), ("alarms", "Alarm"), ("errors", "Error")):
        lines.extend(f"{label:<20}{_describe(code)}" for code in _get(status, kind, ()) or ())
    if not any(_get(status, k, ()) for k in ("warnings", "alarms", "errors")):
        lines.append("Warnings/alarms     none")
    lines.extend(f"Battery source says {note} (shown, not obeyed: the BMS's rules decide)"
                 for note in _get(status, "source_notes", ()) or ())
    if _get(status, "charged_voltage_not_used", False):
        lines.append("Setting not used    charged_voltage does not fit this bank (3.40-3.60 V "
                     "per cell); 3.50 V per cell is used until it is set again")
    return lines


def _describe(code: object) -> str:
    """The code with the manual's title and advice, e.g. "W-B07 Low SOC: Charge ..."."""
    try:
        return describe(Code(_reason(code)))
    except (ValueError, KeyError):
        return _reason(code)


def _reason(value: object) -> str:
    return str(value.value) if isinstance(value, Enum) else str(value)


def format_bank(bank: object) -> list[str]:
    """The bank page: topology, extremes, balancer and each battery with every cell."""
    lines = [
        f"Model               {_get(bank, 'model') or 'unknown'}",
        f"Batteries           {_get(bank, 'batteries')} "
        f"({_get(bank, 'series')} in series x {_get(bank, 'parallel')} in parallel)",
        f"Cells               {_get(bank, 'cells')}",
        f"Capacity            {_num(_get(bank, 'capacity_ah'), ' Ah', 0)}",
        f"Cell voltage        {_num(_get(bank, 'min_cell_voltage'), ' V', 3)} min / "
        f"{_num(_get(bank, 'max_cell_voltage'), ' V', 3)} max",
        f"Temperature         {_num(_get(bank, 'min_temperature'), ' °C', 1)} min / "
        f"{_num(_get(bank, 'max_temperature'), ' °C', 1)} max",
        f"Balancer            {_reason(_get(bank, 'balancer', 'unknown'))}",
    ]
    for index, battery in enumerate(_get(bank, "battery_list", ()) or (), start=1):
        cells = " ".join(f"{v:.3f}" for v in _get(battery, "cell_voltages", ()))
        lines.append(
            f"Battery {index:<3} serial {_get(battery, 'serial')}  "
            f"{_get(battery, 'model')} {_num(_get(battery, 'capacity_ah'), ' Ah', 0)}  "
            f"fw {_get(battery, 'firmware')}"
        )
        lines.append(
            f"  {_num(_get(battery, 'voltage'), ' V')}  {_num(_get(battery, 'current'), ' A')}  "
            f"{_num(_get(battery, 'temperature'), ' °C', 1)}  cells: {cells}"
        )
    return lines


_HISTORY_LABELS: tuple[tuple[str, str, str, int], ...] = (
    # field, label, unit, digits
    ("deepest_discharge_ah", "Deepest discharge", " Ah", 1),
    ("last_discharge_ah", "Last discharge", " Ah", 1),
    ("cumulative_ah_drawn", "Cumulative Ah drawn", " Ah", 1),
    ("discharged_energy_kwh", "Discharged energy", " kWh", 2),
    ("charged_energy_kwh", "Charged energy", " kWh", 2),
    ("synchronisations", "Synchronisations", "", 0),
    ("charge_cycles", "Charge cycles", "", 0),
    ("full_discharges", "Full discharges", "", 0),
    ("min_bank_voltage", "Min bank voltage", " V", 2),
    ("max_bank_voltage", "Max bank voltage", " V", 2),
    ("min_cell_voltage", "Min cell voltage", " V", 3),
    ("max_cell_voltage", "Max cell voltage", " V", 3),
    ("min_temperature", "Min temperature", " °C", 1),
    ("max_temperature", "Max temperature", " °C", 1),
)


def format_history(history: object) -> list[str]:
    """The history page [5.1]."""
    lines = []
    for name, label, unit, digits in _HISTORY_LABELS:
        value = _get(history, name)
        text = str(value) if digits == 0 and value is not None else _num(value, unit, digits)
        lines.append(f"{label:<24}{text}")
    since = _duration(_get(history, "seconds_since_full_charge"))
    lines.insert(8, f"{'Since last full charge':<24}{since}")
    return lines


def setting_text(value: object) -> str:
    if isinstance(value, bool):
        return _on_off(value)
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_SETTING_UNITS = {
    "charged_voltage": " V",
    "tail_current": " %",
    "charge_detection_time": " min",
    "low_soc_warning": " %",
    "discharge_floor": " %",
}


def format_settings(values: Mapping[str, object], *, assignment: bool = False) -> list[str]:
    """One line per setting with its unit: aligned columns, or ``name = value`` after a set."""
    def text(name: str, v: object) -> str:
        return setting_text(v) + (_SETTING_UNITS.get(name, "") if v is not None else "")

    if assignment:
        return [f"{name} = {text(name, v)}" for name, v in values.items()]
    return [f"{name:<24}{text(name, v)}" for name, v in values.items()]


def format_scan(results: Sequence[ScanResult]) -> list[str]:
    """One line per device found, plus its decoded instant readout when there is one."""
    if not results:
        return ["no smallbms found"]
    lines = []
    for r in results:
        lines.append(f"{r.address}  {r.name or '(no name)':<20} RSSI {r.rssi} dBm")
        if r.readout is not None:
            figures = {k: ("unknown" if k == "soc" and v is None else v)
                       for k, v in r.readout.items() if k != "alarms"}
            lines.append("  readout: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
            raised = {k: v for k, v in (r.readout.get("alarms") or {}).items() if v != "ok"}
            if raised:
                lines.append("  alarms: " + ", ".join(f"{k}={v}" for k, v in raised.items()))
        elif r.readout_note:
            lines.append(f"  readout: {r.readout_note}")
    return lines


def print_lines(lines: Sequence[str], out: TextIO) -> None:
    out.write("\n".join(lines) + "\n")
    out.flush()


def status_line(status: object) -> str:
    """One line per status for logs and pipes (``watch`` when stdout is not a terminal)."""
    soc = _get(status, "soc")
    codes = [
        _reason(c) for k in ("warnings", "alarms", "errors") for c in (_get(status, k, ()) or ())
    ]
    return (
        f"soc={'unknown' if soc is None else f'{soc:.1f}'} "
        f"voltage={_num(_get(status, 'voltage'), '')} "
        f"current={_num(_get(status, 'current'), '')} "
        f"charge={_yes_no(_get(status, 'allowed_to_charge', False))} "
        f"discharge={_yes_no(_get(status, 'allowed_to_discharge', False))} "
        f"codes={','.join(codes) or '-'}"
    )
