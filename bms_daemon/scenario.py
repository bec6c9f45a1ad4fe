"""Scenario files for ``smallbms simulate`` (SPEC §8): parsing and validation.

A scenario describes a bank, the BMS settings and a list of steps (load, charger, temperature,
remote, battery communication, cell faults), run one after another.  Every problem is reported
as one ``ScenarioError`` line naming the file, the line, the table and the key, e.g.
``day.toml:14: [[step]] 2 load: must be a number of amperes >= 0, not "lots"``, because the
person reading it is editing that file.

Keys beyond SPEC §8 (ours): ``[scenario] description`` and ``repeat`` (run the step list that
many times, e.g. 30 days of one daily cycle); in ``[bank]`` every key of the simulated bank
(``bms_daemon.sources.config``: sensor errors, spreads, ``battery_models`` and ``missing`` for
invalid banks, ``seed``...); in a step ``charge_voltage`` (the charger's CV voltage) and
``label`` (a name echoed in the output).  ``cell_offset`` may also be a list of such tables.
Values left out of a step: ``load`` and ``charge`` 0, ``remote`` and ``comms`` true, no cell
fault, the charge voltage unchanged, and the ambient ``temperature`` stays what it was (at first
the bank's ``temperature``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bms_daemon.core.bank import MODELS
from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.sources.config import (
    TEMPERATURE_RANGE,
    SimulatedBankConfig,
    parse_duration,
)
from bms_daemon.ui.toml_errors import explain as explain_toml

MAX_REPEAT = 10_000
MAX_CURRENT_A = 10_000.0  # a load or charger current above this is surely a typo
CELL_OFFSET_RANGE_V = (-3.0, 3.0)
KNOWN_SOC_DEFAULT = True  # ours: most scenarios exercise rules that need a known SOC

_TABLES = ("scenario", "bank", "settings", "step")
_SCENARIO_KEYS = ("description", "repeat")
_STEP_KEYS = (
    "duration", "load", "charge", "temperature", "remote", "comms", "cell_offset",
    "charge_voltage", "label",
)
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")


class ScenarioError(ValueError):
    """A scenario that cannot run; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class CellOffset:
    """A fault: ``volts`` added to one cell's voltage (battery and cell counted from 1)."""

    battery: int
    cell: int
    volts: float


@dataclass(frozen=True, slots=True)
class Step:
    """One stretch of time with a fixed environment."""

    number: int  # from 1, as the user counts [[step]] tables
    duration: float  # s
    load: float = 0.0  # A drawn while LOAD is high
    charge: float = 0.0  # A offered by the charger while CHARGER is high
    temperature: float | None = None  # ambient °C; None = unchanged
    remote: bool = True
    comms: bool = True
    cell_offsets: tuple[CellOffset, ...] = ()
    charge_voltage: float | None = None  # V; None = unchanged
    label: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, validated scenario."""

    bank: SimulatedBankConfig
    known_soc: bool
    settings: Settings
    steps: tuple[Step, ...]
    repeat: int = 1
    description: str = ""
    origin: str = "<scenario>"

    @property
    def duration(self) -> float:
        """Total simulated seconds."""
        return self.repeat * sum(step.duration for step in self.steps)


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError with one clear line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a text file (expected UTF-8 TOML)") from None
    return parse_scenario(text, str(path))


def parse_scenario(text: str, origin: str = "<scenario>") -> Scenario:
    """Validate a scenario given as TOML text; ``origin`` names it in messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{origin}: not valid TOML: {explain_toml(exc, text)}") from None
    lines = _Lines(text, origin)
    for key in data:
        if key not in _TABLES:
            raise lines.error(
                None, None, f"unknown table or key {key!r}; a scenario has "
                "[scenario], [bank], [settings] and [[step]] tables", key
            )
    scenario_table = _table(data, "scenario", lines)
    bank_table = _table(data, "bank", lines)
    settings_table = _table(data, "settings", lines)

    for key in scenario_table:
        if key not in _SCENARIO_KEYS:
            raise lines.error("scenario", None, f"unknown key; known: {', '.join(_SCENARIO_KEYS)}",
                              key)
    repeat = scenario_table.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise lines.error("scenario", None, f"must be a whole number from 1 to {MAX_REPEAT}, "
                          f"not {repeat!r}", "repeat")
    description = str(scenario_table.get("description", ""))

    try:
        bank = SimulatedBankConfig.from_table(
            bank_table, "[bank]", ignore=frozenset({"known_soc"})
        )
    except ValueError as exc:
        raise lines.error_for_message("bank", str(exc), bank_table) from None
    for daemon_only in ("profile", "start"):  # the daemon's day; scenarios have [[step]]s
        if daemon_only in bank_table:
            raise lines.error("bank", None, "is for the daemon's [source]; a scenario sets "
                              "loads and the charger in each [[step]]", daemon_only)
    known_soc = bank_table.get("known_soc", KNOWN_SOC_DEFAULT)
    if not isinstance(known_soc, bool):
        raise lines.error("bank", None, f"must be true or false, not {known_soc!r}", "known_soc")

    cells_in_series = sum(MODELS[m].cells for m in bank.models()[: bank.series])
    try:
        settings = Settings().with_values(dict(settings_table), cells_in_series=cells_in_series)
    except SettingError as exc:
        raise lines.error_for_message("settings", f"[settings] {exc}", settings_table) from None

    raw_steps = data.get("step")
    if raw_steps is None:
        raise ScenarioError(f"{origin}: no [[step]] table; add at least one, e.g. "
                            "[[step]] duration = \"1h\" load = 10")
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        raise ScenarioError(f"{origin}: step must be written as [[step]] tables")
    steps = tuple(_step(i + 1, raw, bank, lines) for i, raw in enumerate(raw_steps))
    return Scenario(
        bank=bank,
        known_soc=known_soc,
        settings=settings,
        steps=steps,
        repeat=repeat,
        description=description,
        origin=origin,
    )


def _table(data: Mapping[str, Any], name: str, lines: _Lines) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise lines.error(None, None, f"must be a table [{name}]", name)
    return value


def _step(number: int, raw: Mapping[str, Any], bank: SimulatedBankConfig, lines: _Lines) -> Step:
    def bad(key: str, what: str) -> ScenarioError:
        return lines.error("step", number, f"{what}, not {raw[key]!r}", key)

    for key in raw:
        if key not in _STEP_KEYS:
            raise lines.error("step", number, f"unknown key; known: {', '.join(_STEP_KEYS)}", key)
    if "duration" not in raw:
        raise lines.error("step", number, "missing; e.g. duration = \"2h\"", "duration")
    try:
        duration = parse_duration(raw["duration"])
    except ValueError as exc:
        raise lines.error("step", number, str(exc), "duration") from None
    if duration <= 0:
        raise bad("duration", "must be longer than 0 s")

    def amperes(key: str) -> float:
        value = raw.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0.0 <= value <= MAX_CURRENT_A
        ):
            raise bad(key, f"must be a number of amperes from 0 to {MAX_CURRENT_A:g}")
        return float(value)

    def flag(key: str) -> bool:
        value = raw.get(key, True)
        if not isinstance(value, bool):
            raise bad(key, "must be true or false")
        return value

    temperature: float | None = None
    if "temperature" in raw:
        value = raw["temperature"]
        lo, hi = TEMPERATURE_RANGE
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise bad("temperature", f"must be a number of °C from {lo:g} to {hi:g}")
        temperature = float(value)
    charge_voltage: float | None = None
    if "charge_voltage" in raw:
        value = raw["charge_voltage"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 100:
            raise bad("charge_voltage", "must be a number of volts from 1 to 100")
        charge_voltage = float(value)
    offsets = _cell_offsets(raw.get("cell_offset"), bank, lambda what: bad("cell_offset", what))
    return Step(
        number=number,
        duration=duration,
        load=amperes("load"),
        charge=amperes("charge"),
        temperature=temperature,
        remote=flag("remote"),
        comms=flag("comms"),
        cell_offsets=offsets,
        charge_voltage=charge_voltage,
        label=str(raw.get("label", "")),
    )


def _cell_offsets(
    value: object, bank: SimulatedBankConfig, bad: Callable[[str], ScenarioError]
) -> tuple[CellOffset, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    shape = "must be { battery = 1, cell = 1, volts = -0.4 } or a list of those"
    models = bank.models()
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"battery", "cell", "volts"}:
            raise bad(shape)
        battery, cell, volts = item["battery"], item["cell"], item["volts"]
        if isinstance(battery, bool) or not isinstance(battery, int) or not (
            1 <= battery <= len(models)
        ):
            raise bad(f"battery must be a number from 1 to {len(models)}")
        cells = MODELS[models[battery - 1]].cells
        if isinstance(cell, bool) or not isinstance(cell, int) or not 1 <= cell <= cells:
            raise bad(f"cell must be a number from 1 to {cells}")
        lo, hi = CELL_OFFSET_RANGE_V
        if isinstance(volts, bool) or not isinstance(volts, int | float) or not lo <= volts <= hi:
            raise bad(f"volts must be a number from {lo:g} to {hi:g}")
        out.append(CellOffset(battery, cell, float(volts)))
    return tuple(out)


class _Lines:
    """Best-effort line numbers for messages: TOML parsers do not keep them."""

    def __init__(self, text: str, origin: str) -> None:
        self.origin = origin
        self.lines = text.splitlines()

    def find(self, table: str | None, occurrence: int | None, key: str | None) -> int | None:
        """Line (from 1) of ``key`` in ``[table]`` (the n-th ``[[table]]``), else the header's."""
        current: str | None = None
        seen = 0
        header_line: int | None = None
        key_re = re.compile(rf"^\s*{re.escape(key)}\s*=") if key else None
        for number, line in enumerate(self.lines, start=1):
            match = _HEADER_RE.match(line)
            if match and not line.lstrip().startswith("#"):
                current = match.group(2)
                if current == table:
                    seen += 1
                    if occurrence is None or seen == occurrence:
                        header_line = number
                continue
            in_place = current == table and (occurrence is None or seen == occurrence)
            if key_re and in_place and key_re.match(line):
                return number
        return header_line

    def error(
        self, table: str | None, occurrence: int | None, what: str, key: str | None = None
    ) -> ScenarioError:
        line = self.find(table, occurrence, key)
        where = f"{self.origin}:{line}" if line else self.origin
        if table == "step":
            name = f"[[step]] {occurrence}"
        elif table:
            name = f"[{table}]"
        else:
            name = ""
        subject = " ".join(p for p in (name, key) if p)
        return ScenarioError(f"{where}: {subject}: {what}")

    def error_for_message(
        self, table: str, message: str, values: Mapping[str, Any]
    ) -> ScenarioError:
        """Place a message from another validator at the line of the key it names."""
        named = re.match(r"^\[\w+\] (\w+)", message)  # "[bank] soc: ..." names its key
        key = named.group(1) if named and named.group(1) in values else next(
            (k for k in values if re.search(rf"\b{re.escape(k)}\b", message)), None
        )
        line = self.find(table, None, key)
        where = f"{self.origin}:{line}" if line else self.origin
        return ScenarioError(f"{where}: {message}")
