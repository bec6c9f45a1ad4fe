"""The ``[source]`` table of a real bank: feeds, who provides what, the battery, comms delays.

Two forms (docs/sources.md has complete examples)::

    [source]                       # one feed gives everything (a CAN BMS)
    type = "can"
    channel = "can0"
    battery = { name = "EVE LF280K 16S", cells = 16, capacity_ah = 280 }

    [source]                       # cells from one feed, current (and voltage) from another
    type = "combined"
    cells = "bms"
    current = "shunt"
    voltage = "shunt"              # optional: default the cells feed when it measures voltage
    [source.bms]
    type = "can"
    ...
    [source.shunt]
    type = "vedirect"
    device = "/dev/ttyUSB0"

Every form is checked as a whole before anything starts (``check-config`` runs the same code):
a combination that leaves the BMS without cell voltages, without the bank current or without
the bank voltage is refused with a message that says what to add.  ``comms_warning`` and
``comms_alarm`` (durations, in ``[source]``) set the core's comms-loss delays within
``protection.COMMS_*_RANGE_S``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from bms_daemon.core.protection import (
    COMMS_ALARM_RANGE_S,
    COMMS_ALARM_S,
    COMMS_WARNING_RANGE_S,
    COMMS_WARNING_S,
)
from bms_daemon.core.types import BatteryModel
from bms_daemon.sources.base import DEFAULT_MAX_AGE_S, Feed, Quantity
from bms_daemon.sources.combined import CombinedSource
from bms_daemon.sources.config import Getter

FEED_TYPES: dict[str, str] = {  # [source] type -> module with from_table(table, where, common)
    "can": "bms_daemon.sources.can",
    "vedirect": "bms_daemon.sources.vedirect",
    "victron-ble": "bms_daemon.sources.victron.feed",
}
COMBINED = "combined"
NOMINAL_CELL_V = 3.2  # LiFePO4: 4 cells = 12.8 V
PACK_CELLS = (4, 8, 16)  # a pack that is a 12, 24 or 48 V system on its own
MAX_AGE_RANGE_S = (0.5, 30.0)
_COMMON_KEYS = frozenset({"type", "comms_warning", "comms_alarm"})
_FEED_COMMON_KEYS = frozenset({"type", "max_age", "battery"})


@dataclass(frozen=True, slots=True)
class CommsDelays:
    """The core's comms-loss delays (seconds without fresh data): W-B05, then A-B05."""

    warning_s: float = COMMS_WARNING_S
    alarm_s: float = COMMS_ALARM_S


@dataclass(frozen=True, slots=True)
class BatteryDescription:
    """A DIY pack: ``model`` for the core's rules, ``serial`` to remember it by."""

    model: BatteryModel
    serial: str


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """What every feed's ``from_table`` receives besides its own keys."""

    name: str
    where: str  # "[source]" or "[source.bms]", for messages
    max_age: float
    battery: BatteryDescription | None  # only for a feed that provides the cells


class _FeedModule(Protocol):
    KEYS: frozenset[str]
    PROVIDES: frozenset[Quantity]

    def from_table(self, table: Mapping[str, Any], common: FeedConfig) -> Feed: ...


def comms_delays(table: Mapping[str, Any]) -> CommsDelays:
    """``[source] comms_warning`` / ``comms_alarm``; ValueError naming the key."""
    get = Getter(table, "[source]")
    warning = get.duration("comms_warning", COMMS_WARNING_S)
    alarm = get.duration("comms_alarm", COMMS_ALARM_S)
    for key, value, (lo, hi) in (
        ("comms_warning", warning, COMMS_WARNING_RANGE_S),
        ("comms_alarm", alarm, COMMS_ALARM_RANGE_S),
    ):
        if not lo <= value <= hi:
            raise ValueError(f"[source] {key}: {value:g} s is out of the safe range "
                             f"{lo:g}-{hi:g} s (docs/sources.md, comms-loss delays)")
    if alarm <= warning:
        raise ValueError(f"[source] comms_alarm: {alarm:g} s must be longer than comms_warning "
                         f"({warning:g} s): the warning comes first")
    return CommsDelays(warning, alarm)


def battery_description(value: object, where: str, default_serial: str) -> BatteryDescription:
    """``battery = { name, cells, capacity_ah, serial }`` of a cell feed."""
    label = f"{where} battery"
    if not isinstance(value, dict):
        raise ValueError(f"{label}: must be a table such as "  # noqa: TRY004 (config problem)
                         "{ name = \"EVE 280Ah 16S\", cells = 16, capacity_ah = 280 }")
    get = Getter(value, label)
    get.unknown_keys({"name", "cells", "capacity_ah", "serial"})
    for key in ("name", "cells", "capacity_ah"):
        if key not in value:
            raise ValueError(f"{label}: {key} is missing (name, cells and capacity_ah describe "
                             "the pack)")
    name = get.text("name", "", 40)
    cells = get.integer("cells", 0, 1, 64)
    if cells not in PACK_CELLS:
        raise ValueError(
            f"{label} cells: {cells} cells in series make {cells * NOMINAL_CELL_V:g} V, not a "
            "12, 24 or 48 V system; the BMS takes packs of 4, 8 or 16 LiFePO4 cells"
        )
    capacity = get.number("capacity_ah", 0.0, 1.0, 20_000.0)
    serial = get.text("serial", default_serial, 40)
    model = BatteryModel(name, round(cells * NOMINAL_CELL_V, 1), capacity, cells)
    return BatteryDescription(model, serial)


def _feed(name: str, table: Mapping[str, Any], where: str) -> Feed:
    get = Getter(table, where)
    kind = table.get("type")
    if kind not in FEED_TYPES:
        hint = "" if kind != COMBINED else " (a feed of a combined source cannot be combined)"
        raise ValueError(f"{where} type: {kind!r} is not a feed type; feed types: "
                         f"{', '.join(FEED_TYPES)}{hint}")
    module = cast(_FeedModule, importlib.import_module(FEED_TYPES[kind]))
    get.unknown_keys(module.KEYS | _FEED_COMMON_KEYS)
    max_age = get.duration("max_age", DEFAULT_MAX_AGE_S)
    lo, hi = MAX_AGE_RANGE_S
    if not lo <= max_age <= hi:
        raise ValueError(f"{where} max_age: {max_age:g} s is out of range {lo:g}-{hi:g} s")
    battery = None
    # a module whose devices decide what it provides (victron-ble) says so for this table
    provides_for = getattr(module, "provides_for", None)
    provides = module.PROVIDES if provides_for is None else provides_for(table)
    if Quantity.CELLS not in provides:
        if "battery" in table:
            raise ValueError(f"{where} battery: a {kind} feed reports no batteries; describe "
                             "the battery in the feed that provides the cells")
    elif "battery" not in table:
        raise ValueError(f"{where} battery: missing; describe the pack the BMS manages, e.g. "
                         "battery = { name = \"EVE 280Ah 16S\", cells = 16, capacity_ah = 280 }")
    else:
        battery = battery_description(table["battery"], where, f"{kind}:{name}")
    return module.from_table(table, FeedConfig(name, where, max_age, battery))


def create_real_source(table: Mapping[str, Any]) -> CombinedSource:
    """The source of a real bank from its ``[source]`` table; ValueError naming the key."""
    kind = table.get("type")
    comms_delays(table)  # checked here too, so check-config refuses a bad delay
    if kind == COMBINED:
        return _combined(table)
    own = {k: v for k, v in table.items() if k not in ("comms_warning", "comms_alarm")}
    feed = _feed(str(kind), own, "[source]")
    lacking = [q for q in Quantity if q not in feed.provides]
    if lacking:
        raise ValueError(
            f"[source] type: a {kind} source gives no {' and no '.join(lacking)}; the BMS cannot "
            "protect a bank without them. Combine it with a source that has them: "
            "type = \"combined\" (docs/sources.md, combined sources)"
        )
    return CombinedSource({feed.name: feed}, dict.fromkeys(Quantity, feed.name))


def _combined(table: Mapping[str, Any]) -> CombinedSource:
    feeds: dict[str, Feed] = {}
    providers: dict[Quantity, str] = {}
    roles = {q.value for q in Quantity}
    for key, value in table.items():
        if isinstance(value, dict):
            feeds[key] = _feed(key, value, f"[source.{key}]")
        elif key not in _COMMON_KEYS and key not in roles:
            raise ValueError(f"[source] {key}: unknown key; a combined source has type, cells, "
                             "current, voltage, comms_warning, comms_alarm and one table per "
                             "feed ([source.NAME])")
    if not feeds:
        raise ValueError("[source] type: a combined source needs its feeds as tables, e.g. "
                         "[source.bms] type = \"can\" and [source.shunt] type = \"vedirect\"")
    for quantity in Quantity:
        name = table.get(quantity.value)
        if name is None and quantity is Quantity.VOLTAGE:
            name = _default_voltage(feeds, providers)
        if name is None:
            raise ValueError(f"[source] {quantity.value}: missing; name the feed that provides "
                             f"the {_WHAT[quantity]} (one of {', '.join(feeds)})")
        if name not in feeds:
            raise ValueError(f"[source] {quantity.value}: {name!r} is not a feed of this source; "
                             f"feeds: {', '.join(feeds)}")
        if quantity not in feeds[name].provides:
            raise ValueError(f"[source] {quantity.value}: the {feeds[name].kind} feed {name!r} "
                             f"gives no {_WHAT[quantity]}")
        providers[quantity] = name
    unused = sorted(set(feeds) - set(providers.values()))
    if unused:
        raise ValueError(f"[source.{unused[0]}]: provides nothing to the BMS; name it in "
                         "[source] cells, current or voltage, or remove it")
    return CombinedSource(feeds, providers)


_WHAT = {
    Quantity.CELLS: "cell voltages and temperatures",
    Quantity.CURRENT: "bank current",
    Quantity.VOLTAGE: "bank voltage",
}


def _default_voltage(feeds: Mapping[str, Feed], providers: Mapping[Quantity, str]) -> str | None:
    """The bank voltage from the cells feed when it measures it, else from the current feed."""
    for quantity in (Quantity.CELLS, Quantity.CURRENT):
        name = providers.get(quantity)
        if name is not None and Quantity.VOLTAGE in feeds[name].provides:
            return name
    return None
