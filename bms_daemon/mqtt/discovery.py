"""Home Assistant MQTT discovery: one device, every figure, code and setting as an entity.

Each entity has a retained config on ``<prefix>/<component>/<node>/<key>/config`` (node = the
serial, lower case), a unique id ``smallbms_<serial>_<key>``, the device block (identifiers from
the serial, manufacturer, model, software version), the availability topic, and a value
template reading its field from one of the JSON state topics.  Entity names never repeat the
device name (Home Assistant prefixes it).  Pure: builds dictionaries, publishes nothing.

Per-battery and per-cell entities follow the bank's shape (largest seen while running).  With
control allowed, settings are ``number``/``switch`` entities and commands ``button``s; without,
the same settings are read-only sensors, and the other variant's configs are removed (an empty
retained config deletes an entity), so toggling ``allow_control`` leaves no duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bms_daemon.core.codes import TITLES
from bms_daemon.core.settings import (
    CHARGE_DETECTION_TIME_RANGE,
    CHARGED_VOLTAGE_PER_CELL_RANGE,
    PERCENT_SETTING_RANGE,
    TAIL_CURRENT_RANGE,
)
from bms_daemon.core.types import BalancerState, Code
from bms_daemon.mqtt import topics as t
from bms_daemon.mqtt.topics import Topics

MANUFACTURER = "Victron Energy (smallbms emulation)"  # as gatt.service.MANUFACTURER
MODEL = "smallBMS NG"
PRESS = "PRESS"  # Home Assistant's default button payload; commands without value need it
DIAGNOSTIC = "diagnostic"
CONFIG = "config"

Config = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Device:
    """What Home Assistant shows on the device card."""

    serial: str
    name: str
    sw_version: str

    def block(self) -> Config:
        return {
            "identifiers": [f"smallbms_{self.serial}"],
            "name": self.name,
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "serial_number": self.serial,
            "sw_version": self.sw_version,
        }


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovered entity before the common keys are added."""

    component: str
    key: str
    fields: Config


def _on_off(field: str) -> str:
    return f"{{{{ 'ON' if value_json.{field} else 'OFF' }}}}"


def _value(field: str) -> str:
    return f"{{{{ value_json.{field} }}}}"


def _sensor(
    key: str, name: str, topic: str, *, field: str | None = None, unit: str | None = None,
    device_class: str | None = None, state_class: str | None = "measurement",
    category: str | None = None, icon: str | None = None, template: str | None = None,
    **extra: Any,
) -> Entity:
    fields: Config = {
        "name": name,
        "state_topic": topic,
        "value_template": template or _value(field or key),
    }
    if unit is not None:
        fields["unit_of_measurement"] = unit
    # "measurement" by default for figures with a unit; counters give theirs explicitly
    if state_class is not None and (unit is not None or state_class != "measurement"):
        fields["state_class"] = state_class
    for name_, value in (("device_class", device_class), ("entity_category", category),
                         ("icon", icon)):
        if value is not None:
            fields[name_] = value
    fields.update(extra)
    return Entity("sensor", key, fields)


def _binary(key: str, name: str, topic: str, *, template: str | None = None,
            device_class: str | None = None, category: str | None = None) -> Entity:
    fields: Config = {"name": name, "state_topic": topic,
                      "value_template": template or _on_off(key)}
    if device_class is not None:
        fields["device_class"] = device_class
    if category is not None:
        fields["entity_category"] = category
    return Entity("binary_sensor", key, fields)


def _measurements(topics: Topics) -> Iterator[Entity]:
    state = topics(t.STATE)
    yield _sensor("soc", "State of charge", state, unit="%", device_class="battery")
    yield _sensor("voltage", "Voltage", state, unit="V", device_class="voltage")
    yield _sensor("current", "Current", state, unit="A", device_class="current")
    yield _sensor("power", "Power", state, unit="W", device_class="power")
    yield _sensor("temperature", "Battery temperature", state, unit="°C",
                  device_class="temperature")
    yield _sensor("min_temperature", "Lowest battery temperature", state, unit="°C",
                  device_class="temperature", category=DIAGNOSTIC)
    yield _sensor("max_temperature", "Highest battery temperature", state, unit="°C",
                  device_class="temperature", category=DIAGNOSTIC)
    yield _sensor("ttg_min", "Time to go", state, unit="min", device_class="duration")
    yield _sensor("consumed_ah", "Consumed", state, unit="Ah", icon="mdi:battery-minus")
    yield _sensor("min_cell_voltage", "Lowest cell voltage", state, unit="V",
                  device_class="voltage")
    yield _sensor("max_cell_voltage", "Highest cell voltage", state, unit="V",
                  device_class="voltage")


def _outputs(topics: Topics) -> Iterator[Entity]:
    out = topics(t.OUTPUTS)
    yield _binary("allowed_to_discharge", "Load output (allowed to discharge)", out,
                  device_class="power")
    yield _binary("allowed_to_charge", "Charger output (allowed to charge)", out,
                  device_class="power")
    yield _binary("prealarm", "Pre-alarm", out, device_class="problem")
    yield _binary("remote", "Remote on/off", out)
    yield _binary("soc_known", "State of charge known", out, category=DIAGNOSTIC)
    yield _binary("soc_synchronised", "State of charge synchronised", out, category=DIAGNOSTIC)
    none_if_empty = "{{{{ value_json.{0} if value_json.{0} else 'none' }}}}"
    yield _sensor("discharge_reason", "Load disconnect reason", out, state_class=None,
                  icon="mdi:power-plug-off", template=none_if_empty.format("discharge_reason"))
    yield _sensor("charge_reason", "Charger disconnect reason", out, state_class=None,
                  icon="mdi:power-plug-off", template=none_if_empty.format("charge_reason"))
    yield _sensor("balancer", "Balancer", out, state_class=None, device_class="enum",
                  options=[str(state) for state in BalancerState])
    yield _sensor("bank_model", "Battery model", out, state_class=None, category=DIAGNOSTIC,
                  template=none_if_empty.format("bank_model"))
    yield _sensor("batteries", "Batteries in the bank", out, category=DIAGNOSTIC,
                  state_class=None)
    yield _sensor("capacity_ah", "Bank capacity", out, unit="Ah", state_class=None,
                  category=DIAGNOSTIC)


def _codes(topics: Topics) -> Iterator[Entity]:
    codes = topics(t.CODES)
    yield _sensor("active_codes", "Active codes", codes, field="summary", state_class=None,
                  icon="mdi:alert-circle-outline", json_attributes_topic=codes)
    for kind in ("warning", "alarm", "error"):
        yield _binary(f"any_{kind}", kind.capitalize(), codes, device_class="problem",
                      template=_on_off(f"{kind}s"))
    for code in Code:
        key = "code_" + code.value.lower().replace("-", "_")
        yield _binary(key, f"{code.value} {TITLES[code]}", codes, device_class="problem",
                      category=DIAGNOSTIC,
                      template=f"{{{{ 'ON' if '{code.value}' in value_json.active else 'OFF' }}}}")


def _cells(topics: Topics, shape: tuple[int, ...]) -> Iterator[Entity]:
    cells = topics(t.CELLS)
    for i, count in enumerate(shape):
        n = i + 1
        guard = f"value_json.batteries|length > {i}"

        def battery(field: str, i: int = i, guard: str = guard) -> str:
            return f"{{{{ value_json.batteries[{i}].{field} if {guard} else None }}}}"

        yield _sensor(f"battery{n}_voltage", f"Battery {n} voltage", cells, unit="V",
                      device_class="voltage", template=battery("voltage"))
        yield _sensor(f"battery{n}_current", f"Battery {n} current", cells, unit="A",
                      device_class="current", category=DIAGNOSTIC, template=battery("current"))
        yield _sensor(f"battery{n}_temperature", f"Battery {n} temperature", cells, unit="°C",
                      device_class="temperature", category=DIAGNOSTIC,
                      template=battery("temperature"))
        if not count:  # only its lowest and highest cell are reported
            for field, word in (("min_cell_voltage", "lowest"), ("max_cell_voltage", "highest")):
                yield _sensor(f"battery{n}_{field}", f"Battery {n} {word} cell voltage", cells,
                              unit="V", device_class="voltage", category=DIAGNOSTIC,
                              template=battery(field))
        for j in range(count):
            template = (f"{{{{ value_json.batteries[{i}].cells[{j}] if {guard} and "
                        f"value_json.batteries[{i}].cells|length > {j} else None }}}}")
            yield _sensor(f"battery{n}_cell{j + 1}_voltage", f"Battery {n} cell {j + 1} voltage",
                          cells, unit="V", device_class="voltage", category=DIAGNOSTIC,
                          template=template)


def _history(topics: Topics) -> Iterator[Entity]:
    hist = topics(t.HISTORY)
    for key, name in (("charged_energy_kwh", "Charged energy"),
                      ("discharged_energy_kwh", "Discharged energy")):
        yield _sensor(key, name, hist, unit="kWh", device_class="energy",
                      state_class="total_increasing")
    yield _sensor("cumulative_ah_drawn", "Cumulative Ah drawn", hist, unit="Ah",
                  state_class="total_increasing", category=DIAGNOSTIC)
    for key, name in (("deepest_discharge_ah", "Deepest discharge"),
                      ("last_discharge_ah", "Last discharge")):
        yield _sensor(key, name, hist, unit="Ah", category=DIAGNOSTIC)
    for key, name in (("synchronisations", "Synchronisations"),
                      ("charge_cycles", "Charge cycles"),
                      ("full_discharges", "Full discharges")):
        yield _sensor(key, name, hist, state_class="total_increasing",
                      category=DIAGNOSTIC, icon="mdi:counter")
    yield _sensor("seconds_since_full_charge", "Time since last full charge", hist, unit="s",
                  device_class="duration", category=DIAGNOSTIC)
    for key, name, unit, device_class in (
        ("min_bank_voltage", "Lowest bank voltage recorded", "V", "voltage"),
        ("max_bank_voltage", "Highest bank voltage recorded", "V", "voltage"),
        ("min_cell_voltage", "Lowest cell voltage recorded", "V", "voltage"),
        ("max_cell_voltage", "Highest cell voltage recorded", "V", "voltage"),
        ("min_temperature", "Lowest temperature recorded", "°C", "temperature"),
        ("max_temperature", "Highest temperature recorded", "°C", "temperature"),
    ):
        yield _sensor(f"history_{key}", name, hist, field=key, unit=unit,
                      device_class=device_class, category=DIAGNOSTIC)


# (key, name, unit, (min, max), step, device_class) of the numeric settings
_NUMBERS: tuple[tuple[str, str, str, tuple[float, float], float, str | None], ...] = (
    ("tail_current", "Tail current", "%", TAIL_CURRENT_RANGE, 0.1, None),
    ("charge_detection_time", "Charge detection time", "min", CHARGE_DETECTION_TIME_RANGE, 1.0,
     "duration"),
    ("low_soc_warning", "Low SOC warning", "%", PERCENT_SETTING_RANGE, 1.0, None),
    ("discharge_floor", "Discharge floor", "%", PERCENT_SETTING_RANGE, 1.0, None),
)
_SWITCHES = (("bluetooth", "Bluetooth", CONFIG), ("instant_readout", "Instant readout", CONFIG),
             ("mode", "Mode", None))
_BUTTONS = (("synchronise", "Synchronise (SOC to 100 %)", None),
            ("reset_history", "Reset history", CONFIG),
            ("factory_reset", "Factory reset (settings)", CONFIG))


def _charged_voltage_range(series: int) -> tuple[float, float]:  # cells in series
    lo, hi = CHARGED_VOLTAGE_PER_CELL_RANGE
    cells = (series, series) if series else (4, 16)
    return round(lo * cells[0], 2), round(hi * cells[1], 2)


def _settings_read_only(topics: Topics) -> Iterator[Entity]:
    sets = topics(t.SETTINGS)
    yield _sensor("charged_voltage", "Charged voltage", sets, field="charged_voltage_in_force",
                  unit="V", device_class="voltage", state_class=None, category=DIAGNOSTIC)
    for key, name, unit, _range, _step, device_class in _NUMBERS:
        yield _sensor(key, name, sets, unit=unit, device_class=device_class, state_class=None,
                      category=DIAGNOSTIC)
    for key, name, category in _SWITCHES:
        yield _binary(key, name, sets, category=DIAGNOSTIC if category else None)


def _settings_control(topics: Topics, series: int) -> Iterator[Entity]:
    sets = topics(t.SETTINGS)
    lo, hi = _charged_voltage_range(series)
    numbers = (("charged_voltage", "Charged voltage", "V", (lo, hi), 0.01, "voltage"),
               *_NUMBERS)
    for key, name, unit, (low, high), step, device_class in numbers:
        field = "charged_voltage_in_force" if key == "charged_voltage" else key
        fields: Config = {
            "name": name, "state_topic": sets, "value_template": _value(field),
            "command_topic": topics.setting(key), "min": low, "max": high, "step": step,
            "unit_of_measurement": unit, "mode": "box", "entity_category": CONFIG,
        }
        if device_class is not None:
            fields["device_class"] = device_class
        yield Entity("number", key, fields)
    for key, name, category in _SWITCHES:
        fields = {"name": name, "state_topic": sets, "value_template": _on_off(key),
                  "command_topic": topics.setting(key), "payload_on": "ON",
                  "payload_off": "OFF", "state_on": "ON", "state_off": "OFF"}
        if category is not None:
            fields["entity_category"] = category
        yield Entity("switch", key, fields)
    yield Entity("number", "set_soc", {
        "name": "Set state of charge", "state_topic": topics(t.STATE),
        "value_template": _value("soc"), "command_topic": topics.command("set_soc"),
        "min": 0, "max": 100, "step": 1, "unit_of_measurement": "%", "mode": "box",
        "entity_category": CONFIG,
    })
    for key, name, category in _BUTTONS:
        fields = {"name": name, "command_topic": topics.command(key), "payload_press": PRESS}
        if category is not None:
            fields["entity_category"] = category
        yield Entity("button", key, fields)
    yield _sensor("command_result", "Last command result", topics(t.RESULT), field="message",
                  state_class=None, category=DIAGNOSTIC, icon="mdi:console",
                  json_attributes_topic=topics(t.RESULT))


def entities(topics: Topics, shape: tuple[int, ...], allow_control: bool,
             series: int = 0) -> list[Entity]:
    """Every entity of the device in force."""
    settings = _settings_control(topics, series) if allow_control else _settings_read_only(topics)
    return [*_measurements(topics), *_outputs(topics), *_codes(topics), *_cells(topics, shape),
            *_history(topics), *settings]


def config_topic(prefix: str, device: Device, entity: Entity) -> str:
    return f"{prefix}/{entity.component}/{device.serial.lower()}/{entity.key}/config"


def configs(topics: Topics, device: Device, shape: tuple[int, ...], allow_control: bool,
            series: int = 0) -> dict[str, Config | None]:
    """Discovery topic -> config; ``None`` = remove (the other control variant's entities)."""
    prefix = topics.discovery_prefix
    origin = {"name": "smallbms", "sw_version": device.sw_version}
    result: dict[str, Config | None] = {}
    for other in entities(topics, (), not allow_control, series):
        result[config_topic(prefix, device, other)] = None
    for entity in entities(topics, shape, allow_control, series):
        config = dict(entity.fields)
        config["unique_id"] = f"smallbms_{device.serial}_{entity.key}"
        config["availability_topic"] = topics.availability
        config["device"] = device.block()
        config["origin"] = origin
        result[config_topic(prefix, device, entity)] = config
    return result
