"""Victron Smart Lithium batteries and a SmartShunt / BMV heard over Bluetooth (``victron-ble``).

Each device advertises its figures, encrypted with its own key, several times a second; the
daemon's adapter hears them without a connection while it keeps advertising and serving its
own GATT service.  One feed listens for every configured device::

    [source]
    type = "victron-ble"
    battery = { name = "Smart Lithium 12.8V/200Ah", cells = 4, capacity_ah = 200 }
    batteries = [
        { name = "house-1", address = "D8:1A:…", key = "0df4d039…" },
        { name = "house-2", address = "E4:7B:…", key = "9a1c…" },
    ]
    monitor = { address = "C1:3E:…", key = "aff4…" }    # optional: a SmartShunt or BMV

What it provides: with batteries and a monitor, everything (cells and temperatures from the
batteries; bank current and voltage from the monitor); batteries alone give the cells (take
current and voltage from another feed, e.g. the shunt on VE.Direct); a monitor alone gives the
current and voltage (the cells from another feed, e.g. a BMS on CAN).  Record 0x05 has no
current: each battery's own current shows 0 A (not measured).

Radio defaults: ``max_age`` 10 s (a lost advertisement is normal; the devices repeat every
second or so), so the comms rules count from 10 s after the last frame heard: W-B05 15 s and
A-B05 30 s after a battery goes silent with the default 5 s / 20 s delays (docs/sources.md has
the trade-off).  The batteries' own BMS flags, error flags and balancer state are shown (log
on change, status notes, ``source-check``), never obeyed: smallbms's rules decide the outputs.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bms_daemon.core.types import BatteryReading
from bms_daemon.sources.base import Feed, Quantity, Sample
from bms_daemon.sources.config import Getter
from bms_daemon.sources.spec import FeedConfig
from bms_daemon.sources.victron.frames import DeviceFrames
from bms_daemon.sources.victron.radio import SCAN_MODES, BleakRadio, Radio
from bms_daemon.sources.victron.records import (
    RECORD_BATTERY_MONITOR,
    RECORD_SMART_LITHIUM,
    LithiumRecord,
    MonitorRecord,
)
from gatt.readout import parse_key

KIND = "victron-ble"
KEYS = frozenset({"adapter", "scan", "batteries", "monitor"})
RADIO_MAX_AGE_S = 10.0
MAX_BATTERIES = 50  # the BMS's own limit for a 12/24 V bank
SILENCE_RESTART_S = 60.0
"""(ours) Nothing heard from any configured device for this long: the scan is restarted (a
bluetoothd restart ends bleak's scan silently)."""
WATCH_INTERVAL_S = 5.0
_ADDRESS_RE = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_AUX_UNITS = {"starter_voltage": "V", "midpoint_voltage": "V", "temperature": "°C"}
_MONITOR_ALARMS = {
    1: "low voltage", 2: "high voltage", 4: "low SOC", 8: "low starter voltage",
    16: "high starter voltage", 32: "low temperature", 64: "high temperature",
    128: "mid voltage", 256: "overload", 512: "DC ripple", 1024: "low V AC out",
    2048: "high V AC out", 4096: "short circuit", 8192: "BMS lockout",
}


class SilenceError(RuntimeError):
    """No configured device was heard for a while: restart the scan."""


@dataclass
class Device:
    """A configured device and the judgement of its frames."""

    name: str
    address: str
    frames: DeviceFrames


class VictronFeed(Feed):
    """Batteries (record 0x05) and an optional battery monitor (record 0x02)."""

    kind = KIND
    provides = frozenset(Quantity)

    def __init__(
        self,
        name: str,
        batteries: list[Device],
        monitor: Device | None,
        *,
        radio: Radio,
        battery: Any = None,
        max_age: float = RADIO_MAX_AGE_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, max_age=max_age, **kwargs)
        self.batteries = batteries
        self.monitor = monitor
        self.radio = radio
        self.description = battery  # BatteryDescription | None (None: no cells provided)
        self.by_address = {d.address: d for d in [*batteries, *([monitor] if monitor else [])]}
        self.scan_mode = ""
        self._notes: tuple[str, ...] = ()
        self._silent: set[str] = set()

    def describe_device(self) -> str:
        monitor = " and a battery monitor" if self.monitor else ""
        where = getattr(self.radio, "adapter", "memory")
        return f"{len(self.batteries)} batteries{monitor} heard on {where}"

    # --- the radio's side -------------------------------------------------------------------
    def hear(self, address: str, data: bytes, rssi: int | None) -> None:
        """One advertisement of company 0x02E1 (bleak's callback, in the event loop)."""
        device = self.by_address.get(address)
        if device is None:
            return  # another Victron device nearby: not ours
        if device.frames.offer(data, self.clock(), rssi) is not None:
            self._assemble()

    def _assemble(self) -> None:
        """Publish a sample once every device has a frame; it is as old as its oldest part."""
        devices = [*self.batteries, *([self.monitor] if self.monitor else [])]
        times = [d.frames.last_at for d in devices]
        if any(t is None for t in times):
            return
        batteries: list[BatteryReading] = []
        notes: list[str] = []
        extra: list[tuple[str, float | str]] = []
        for device in self.batteries:
            frame = device.frames.last_frame
            assert frame is not None
            record = frame.record
            assert isinstance(record, LithiumRecord)
            reading = self._battery(device, record)
            if reading is None:
                self.drop("incomplete record", f"{device.name}: no cell voltage or temperature")
                return
            batteries.append(reading)
            notes += _battery_notes(device.name, record)
            if record.balancer is not None:
                extra.append((f"{device.name} balancer", record.balancer))
        voltage = current = None
        if self.monitor is not None:
            frame = self.monitor.frames.last_frame
            assert frame is not None
            record = frame.record
            assert isinstance(record, MonitorRecord)
            voltage, current = record.voltage, record.current
            notes += _monitor_notes(self.monitor.name, record)
            extra += _monitor_extra(record)
        self._log_notes(tuple(notes))
        oldest = min(t for t in times if t is not None)
        self.publish(Sample(at=oldest, batteries=tuple(batteries), voltage=voltage,
                            current=current, notes=tuple(notes), extra=tuple(extra)))

    def _battery(self, device: Device, record: LithiumRecord) -> BatteryReading | None:
        cells = record.cells
        if not cells or record.temperature is None or self.description is None:
            return None
        model = self.description.model
        return BatteryReading(
            serial=device.name,
            model=model.name,
            firmware=KIND,
            voltage=record.voltage if record.voltage is not None else round(sum(cells), 2),
            current=0.0,  # not in record 0x05: the bank current comes from the monitor
            temperature=record.temperature,
            cell_voltages=cells,
            description=model,
        )

    def _log_notes(self, notes: tuple[str, ...]) -> None:
        if notes != self._notes:
            if notes:
                self.log.warning("victron_device_alarms", notes=list(notes),
                                 note="shown, not obeyed: smallbms's rules decide the outputs")
            elif self._notes:
                self.log.info("victron_device_alarms_cleared")
            self._notes = notes

    # --- the reader -------------------------------------------------------------------------
    async def session(self) -> None:
        async with self.radio.listen(self.hear) as mode:
            if mode != self.scan_mode:
                self.log.info("victron_listening", scan=mode, devices=len(self.by_address))
            self.scan_mode = mode
            self.connected()
            started = self.clock()
            while True:
                await asyncio.sleep(WATCH_INTERVAL_S)
                self._say_silent(self.clock())
                heard = [d.frames.last_at for d in self.by_address.values()]
                last = max([started, *(t for t in heard if t is not None)])
                if self.clock() - last > SILENCE_RESTART_S:
                    raise SilenceError(
                        f"no configured device heard for {SILENCE_RESTART_S:g} s"
                    )

    def _say_silent(self, now: float) -> None:
        """One log line when a device heard before goes silent, one when it is back."""
        for device in self.by_address.values():
            age = device.frames.age(now)
            if age is None:
                continue
            if age > self.max_age and device.address not in self._silent:
                self._silent.add(device.address)
                self.log.warning("victron_device_silent", device=device.name,
                                 address=device.address, last_heard_s=round(age, 1),
                                 note="its data is missing data: the comms rules act")
            elif age <= self.max_age and device.address in self._silent:
                self._silent.discard(device.address)
                self.log.info("victron_device_heard_again", device=device.name)

    # --- source-check -----------------------------------------------------------------------
    def devices(self, now: float) -> list[dict[str, Any]]:
        """Each device as ``source-check`` shows it: RSSI, last frame age, counts, figures."""
        out = []
        for device in self.by_address.values():
            frames = device.frames
            age = frames.age(now)
            row: dict[str, Any] = {
                "name": device.name,
                "address": device.address,
                "rssi": frames.rssi,
                "age_s": None if age is None else round(age, 1),
                "nonce": frames.last_nonce,
                **{k: v for k, v in vars(frames.counters).items() if v},
            }
            frame = frames.last_frame
            if frame is not None:
                row["figures"] = _figures(frame.record)
            out.append(row)
        return out


class VictronBatteriesFeed(VictronFeed):
    provides = frozenset({Quantity.CELLS})


class VictronMonitorFeed(VictronFeed):
    provides = frozenset({Quantity.CURRENT, Quantity.VOLTAGE})


def _figures(record: LithiumRecord | MonitorRecord) -> dict[str, Any]:
    """The decoded figures as ``source-check`` shows them (what is not there is left out)."""
    if isinstance(record, LithiumRecord):
        flags = record.flags
        shown: dict[str, Any] = {"cells": list(record.cells), "voltage": record.voltage,
                                 "temperature": record.temperature, "balancer": record.balancer}
        if flags.alarms:
            shown["bms_alarms"] = list(flags.alarms)
        if flags.warnings:
            shown["bms_warnings"] = list(flags.warnings)
        if not flags.allowed_to_charge:
            shown["bms_allows_charging"] = False
        if not flags.allowed_to_discharge:
            shown["bms_allows_discharging"] = False
        if record.error_flags:
            shown["error_flags"] = f"{record.error_flags:#06x}"
        return shown
    shown = {"voltage": record.voltage, "current": record.current, "soc": record.soc,
             "consumed_ah": record.consumed_ah, "ttg_min": record.ttg_min}
    if record.alarm:
        shown["alarms"] = _alarm_names(record.alarm)
    return shown


def _alarm_names(bits: int) -> list[str]:
    return [name for bit, name in _MONITOR_ALARMS.items() if bits & bit] + (
        [f"bits {bits & ~sum(_MONITOR_ALARMS):#x}"] if bits & ~sum(_MONITOR_ALARMS) else []
    )


def _battery_notes(name: str, record: LithiumRecord) -> list[str]:
    flags = record.flags
    notes = [f"{name}: BMS alarm {a}" for a in flags.alarms]
    notes += [f"{name}: BMS warning {w}" for w in flags.warnings]
    if not flags.allowed_to_charge:
        notes.append(f"{name}: battery BMS does not allow charging")
    if not flags.allowed_to_discharge:
        notes.append(f"{name}: battery BMS does not allow discharging")
    if record.error_flags:
        notes.append(f"{name}: battery error flags {record.error_flags:#06x}")
    if record.balancer == "imbalance":
        notes.append(f"{name}: cell imbalance")
    return notes


def _monitor_notes(name: str, record: MonitorRecord) -> list[str]:
    return [f"{name}: alarm {a}" for a in _alarm_names(record.alarm)]


def _monitor_extra(record: MonitorRecord) -> list[tuple[str, float | str]]:
    extra: list[tuple[str, float | str]] = []
    for label, value in (("shunt SOC %", record.soc), ("consumed Ah", record.consumed_ah),
                         ("TTG min", record.ttg_min)):
        if value is not None:
            extra.append((label, value))
    unit = _AUX_UNITS.get(record.aux_mode)
    if unit is not None and record.aux is not None:
        extra.append((f"aux {record.aux_mode.replace('_', ' ')} {unit}", record.aux))
    return extra


# --- configuration --------------------------------------------------------------------------

def _device(value: object, where: str, default_name: str, record_type: int) -> Device:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a table such as "  # noqa: TRY004 (config problem)
                         "{ address = \"D8:1A:2B:3C:4D:5E\", key = \"<32 hex digits>\" }")
    get = Getter(value, where)
    get.unknown_keys({"address", "key", "name"})
    for key in ("address", "key"):
        if key not in value:
            raise ValueError(f"{where} {key}: missing; VictronConnect shows both (docs/victron-"
                             "bluetooth.md, where to find each key)")
    address = get.text("address", "", 17).upper()
    if not _ADDRESS_RE.match(address):
        raise ValueError(f"{where} address: {address!r} is not a Bluetooth address like "
                         "D8:1A:2B:3C:4D:5E")
    try:
        secret = parse_key(get.text("key", "", 64))
    except ValueError as exc:
        raise ValueError(f"{where} key: {exc}") from None
    name = get.text("name", default_name, 40) or default_name
    return Device(name, address, DeviceFrames(name, secret, record_type, resync_after=0.0))


def provides_for(table: Mapping[str, Any]) -> frozenset[Quantity]:
    """What a ``victron-ble`` table provides: it depends on the devices it lists."""
    has_batteries = bool(table.get("batteries"))
    has_monitor = "monitor" in table
    if has_batteries and has_monitor:
        return VictronFeed.provides
    if has_batteries:
        return VictronBatteriesFeed.provides
    return VictronMonitorFeed.provides


PROVIDES = VictronFeed.provides


def from_table(
    table: Mapping[str, Any], common: FeedConfig, radio: Radio | None = None
) -> VictronFeed:
    """The feed of a ``type = "victron-ble"`` table; ValueError naming the key."""
    where = common.where
    get = Getter(table, where)
    raw_batteries = table.get("batteries", [])
    if not isinstance(raw_batteries, list):
        raise ValueError(  # noqa: TRY004 (a configuration problem, said as such)
            f"{where} batteries: must be a list of tables, one per battery")
    if len(raw_batteries) > MAX_BATTERIES:
        raise ValueError(f"{where} batteries: {len(raw_batteries)} batteries; at most "
                         f"{MAX_BATTERIES}")
    if not raw_batteries and "monitor" not in table:
        raise ValueError(f"{where} batteries: none and no monitor; list the batteries "
                         "(batteries = [{ address = …, key = … }]) and/or the monitor")
    batteries = [
        _device(item, f"{where} batteries[{i}]", f"battery-{i + 1}", RECORD_SMART_LITHIUM)
        for i, item in enumerate(raw_batteries)
    ]
    monitor = None
    if "monitor" in table:
        monitor = _device(table["monitor"], f"{where} monitor", "monitor",
                          RECORD_BATTERY_MONITOR)
    devices = [*batteries, *([monitor] if monitor else [])]
    seen: set[str] = set()
    for device in devices:
        if device.address in seen:
            raise ValueError(f"{where}: {device.address} is listed twice")
        seen.add(device.address)
    max_age = common.max_age if "max_age" in table else RADIO_MAX_AGE_S
    for device in devices:
        device.frames.resync_after = max_age
    scan = get.choice("scan", "auto", dict.fromkeys(SCAN_MODES))
    adapter = get.text("adapter", "hci0", 16)
    if not re.match(r"^hci\d{1,3}$", adapter):
        raise ValueError(f"{where} adapter: {adapter!r} is not an adapter name like 'hci0'")
    provided = provides_for(table)
    cls = (VictronFeed if provided == VictronFeed.provides
           else VictronBatteriesFeed if Quantity.CELLS in provided else VictronMonitorFeed)
    return cls(
        common.name,
        batteries,
        monitor,
        radio=radio or BleakRadio(adapter, scan),
        battery=common.battery,
        max_age=max_age,
    )
