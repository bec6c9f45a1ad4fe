"""Passive scanning: AdvertisementMonitorManager1 and the monitors applications register.

bleak's ``scanning_mode="passive"`` (research/bluez-dbus.md 2.3) registers an application root
with ``RegisterMonitor(o)`` and exports an ``org.bluez.AdvertisementMonitor1`` object under it
(after the call, as bleak does).  BlueZ 5.66 reads the monitor's ``Type`` ("or_patterns", the
only type it has) and ``Patterns`` (``a(yyay)``: start position, AD type, content), calls
``Activate()``, then ``DeviceFound(o)`` the first time a device's advertising data matches one
pattern, and keeps the device's ``Device1`` properties (ManufacturerData, RSSI…) current from
every matching report, without a discovery session.  A passive scanner sends no scan request,
so it never sees the scan response (no name from a Victron device).  A monitor with a bad type
or pattern gets ``Release()`` and is not used.

The interface exists only with ``WorldConfig.experimental`` (bluetoothd ``--experimental``):
BlueZ 5.66 creates it only then (``adapter_register()`` in ``src/adapter.c``), and without it
bleak's RegisterMonitor call fails with UnknownMethod.  Not modelled: RSSI thresholds and
timeouts, ``DeviceLost`` (real BlueZ sends it after the device is unheard for a while),
hardware offloading.
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)
# (No ``from __future__ import annotations``: dbus-fast reads the hints at run time.)

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual import air, errors
from gatt.virtual.dbus_types import OBJECT_MANAGER, ObjPath, StrList, caller

if TYPE_CHECKING:
    from gatt.virtual.adapter import Adapter

log = logging.getLogger("smallbms.virtual")

MONITOR_MANAGER = "org.bluez.AdvertisementMonitorManager1"
MONITOR = "org.bluez.AdvertisementMonitor1"
OR_PATTERNS = "or_patterns"

# AD types BlueZ 5.66 accepts in a pattern (``parse_patterns()`` in src/adv_monitor.c checks
# the type against the ones it can match: 0x01..0x3F defined by the SIG, and 0xFF).
_MAX_AD_TYPE = 0x3F


@dataclass(frozen=True)
class Pattern:
    """One or-pattern: ``content`` at ``start`` in the payload of an AD structure of ``ad_type``."""

    start: int
    ad_type: int
    content: bytes

    def matches(self, adv_data: bytes) -> bool:
        for ad_type, payload in air.split_ad(adv_data):
            if ad_type == self.ad_type and (
                payload[self.start : self.start + len(self.content)] == self.content
            ):
                return True
        return False


def parse_patterns(value: Any) -> tuple[Pattern, ...]:
    """The ``Patterns`` property, or ValueError for what BlueZ refuses."""
    patterns = []
    for item in value:
        start, ad_type, content = int(item[0]), int(item[1]), bytes(item[2])
        if not (0 < ad_type <= _MAX_AD_TYPE or ad_type == air.AD_MANUFACTURER):
            raise ValueError(f"AD type {ad_type:#04x} cannot be matched")
        if not content or start + len(content) > air.LEGACY_AD_MAX:
            raise ValueError(f"pattern of {len(content)} bytes at {start} does not fit an AD")
        patterns.append(Pattern(start, ad_type, content))
    if not patterns:
        raise ValueError("no pattern")
    return tuple(patterns)


def parse_monitor(props: dict[str, Any]) -> tuple[Pattern, ...]:
    """A monitor's patterns from its properties, or ValueError for what BlueZ releases."""
    kind = _value(props.get("Type"))
    if kind != OR_PATTERNS:
        raise ValueError(f"monitor type {kind!r} is not supported")
    return parse_patterns(_value(props.get("Patterns", [])))


@dataclass
class Monitor:
    """An activated AdvertisementMonitor1 and the devices it has reported as found."""

    owner: str
    path: str
    patterns: tuple[Pattern, ...]
    found: set[str] = field(default_factory=set)

    def matches(self, adv_data: bytes) -> bool:
        return any(p.matches(adv_data) for p in self.patterns)


@dataclass
class MonitorApp:
    owner: str
    root: str
    monitors: dict[str, Monitor] = field(default_factory=dict)


class MonitorManager(ServiceInterface):
    """AdvertisementMonitorManager1 of one adapter."""

    def __init__(self, adapter: "Adapter") -> None:
        super().__init__(MONITOR_MANAGER)
        self.adapter = adapter
        self.apps: dict[tuple[str, str], MonitorApp] = {}

    @dbus_property(access=PropertyAccess.READ)
    def SupportedMonitorTypes(self) -> StrList:
        return [OR_PATTERNS]

    @dbus_property(access=PropertyAccess.READ)
    def SupportedFeatures(self) -> StrList:
        return []  # no controller offloading: the host filters, as on most adapters

    def active_monitors(self) -> list[Monitor]:
        return [m for app in self.apps.values() for m in app.monitors.values()]

    @dbus_method()
    async def RegisterMonitor(self, application: ObjPath) -> None:
        owner = caller()
        if (owner, application) in self.apps:
            raise DBusError(errors.ALREADY_EXISTS, "Already Exists")
        self.apps[(owner, application)] = MonitorApp(owner, application)
        world = self.adapter.world
        await world.watch_objects(owner)
        log.info("monitor application %s of %s registered on %s", application, owner,
                 self.adapter.path)
        # Monitors exported before the call count too (BlueZ reads the tree through its
        # ObjectManager client); bleak exports after it, which InterfacesAdded brings.
        world.after_reply(lambda: world.spawn(self._read_tree(owner, application)))

    @dbus_method()
    def UnregisterMonitor(self, application: ObjPath) -> None:
        app = self.apps.pop((caller(), application), None)
        if app is None:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")
        self.adapter.world.listening_changed(self.adapter)

    async def _read_tree(self, owner: str, root: str) -> None:
        reply = await self.adapter.world.bus.call(
            Message(destination=owner, path=root, interface=OBJECT_MANAGER,
                    member="GetManagedObjects")
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            return
        for path, interfaces in reply.body[0].items():
            self.interfaces_added(owner, path, interfaces)

    def interfaces_added(self, owner: str, path: str, interfaces: dict[str, Any]) -> None:
        """An application exported an object: a monitor under a registered root is read."""
        props = interfaces.get(MONITOR)
        if props is None:
            return
        for (app_owner, root), app in self.apps.items():
            if app_owner != owner or not (path == root or path.startswith(root.rstrip("/") + "/")):
                continue
            if path in app.monitors:
                return
            world = self.adapter.world
            try:
                patterns = parse_monitor(props)
            except (ValueError, TypeError, IndexError) as exc:
                log.warning("monitor %s of %s released: %s", path, owner, exc)
                world.send_to_app(owner, path, MONITOR, "Release")
                return
            app.monitors[path] = Monitor(owner, path, patterns)
            world.send_to_app(owner, path, MONITOR, "Activate")
            world.listening_changed(self.adapter)
            return

    def interfaces_removed(self, owner: str, path: str, interfaces: list[str]) -> None:
        if MONITOR not in interfaces:
            return
        for (app_owner, _), app in self.apps.items():
            if app_owner == owner:
                app.monitors.pop(path, None)
        self.adapter.world.listening_changed(self.adapter)

    def remove_owner(self, owner: str) -> None:
        for key in [k for k in self.apps if k[0] == owner]:
            del self.apps[key]

    def found(self, device_path: str, adv_data: bytes) -> None:
        """A report reached the adapter: DeviceFound for monitors that see this device anew."""
        world = self.adapter.world
        for monitor in self.active_monitors():
            if device_path not in monitor.found and monitor.matches(adv_data):
                monitor.found.add(device_path)
                world.send_to_app(monitor.owner, monitor.path, MONITOR, "DeviceFound",
                                  signature="o", body=[device_path])


def _value(value: Any) -> Any:
    return value.value if isinstance(value, Variant) else value
