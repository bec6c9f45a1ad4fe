"""An adapter (``/org/bluez/hciN``): Adapter1, GattManager1 and LEAdvertisingManager1.

Every adapter can play both roles; by convention hci0 is the peripheral (bless's default) and
hci1.. are centrals (bleak with ``bluez={"adapter": "hci1"}``).  hci0 does not list the
"central" role, so bleak without an adapter argument picks a central adapter (hci1 when there
are two; with more, bleak's choice among them is arbitrary).  Registrations and discovery
sessions are keyed by the caller's unique bus name, as in BlueZ, so that a process that goes
away can be cleaned up (:meth:`gatt.virtual.world.World.forget_owner`).
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual import air, errors
from gatt.virtual.dbus_types import (
    ADAPTER,
    ADV_MANAGER,
    ADVERTISEMENT,
    GATT_MANAGER,
    OBJECT_MANAGER,
    PROPERTIES,
    Bool,
    Byte,
    ObjPath,
    Options,
    Str,
    StrList,
    UInt32,
    caller,
)
from gatt.virtual.device import Device
from gatt.virtual.gatt_mirror import FIRST_APP_HANDLE, Application, build_application
from gatt.virtual.monitor import MonitorManager

if TYPE_CHECKING:
    from gatt.virtual.world import World

log = logging.getLogger("smallbms.virtual")
READ = PropertyAccess.READ

SUPPORTED_INSTANCES = 5
"""Advertising instances a typical controller offers (a Pi's reports 5 on BlueZ 5.66)."""


def adapter_address(index: int) -> str:
    """hci0 -> 00:00:00:00:00:01, hci1 -> 00:00:00:00:00:02, …"""
    return f"00:00:00:00:{(index + 1) >> 8:02X}:{(index + 1) & 0xFF:02X}"


@dataclass
class DiscoveryFilter:
    """SetDiscoveryFilter of one client; only what changes which devices are reported."""

    uuids: tuple[str, ...] = ()
    rssi: int | None = None
    pattern: str = ""

    @classmethod
    def from_options(cls, options: dict[str, Variant]) -> "DiscoveryFilter":
        uuids = tuple(
            air.normalise_uuid(str(u)) for u in options.get("UUIDs", Variant("as", [])).value
        )
        rssi = options.get("RSSI")
        pattern = options.get("Pattern")
        return cls(
            uuids,
            int(rssi.value) if rssi is not None else None,
            str(pattern.value) if pattern else "",
        )

    def accepts(self, report: air.Report, address: str, rssi: int) -> bool:
        if self.uuids and not set(self.uuids) & set(report.uuids):
            return False
        if self.rssi is not None and rssi < self.rssi:
            return False
        return (
            not self.pattern
            or address.startswith(self.pattern)
            or (report.name or "").startswith(self.pattern)
        )


@dataclass
class Registration:
    """A registered LEAdvertisement1, with the bytes it currently puts on the air."""

    owner: str
    path: str
    props: dict[str, Variant]
    frame: air.AirFrame
    last_error: str | None = None
    updates: int = 0


@dataclass
class Discovery:
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class Adapter(ServiceInterface):
    """Adapter1 of ``/org/bluez/hci<index>``."""

    def __init__(self, world: "World", index: int) -> None:
        super().__init__(ADAPTER)
        self.world = world
        self.index = index
        self.path = f"/org/bluez/hci{index}"
        self.address = adapter_address(index)
        self.system_name = f"virtual-hci{index}"
        self.alias = self.system_name
        self.powered = True
        self.discoverable = False
        self.pairable = True
        self.discovery = Discovery()
        self.devices: dict[str, Device] = {}
        self.gatt = GattManager(self)
        self.advertising = AdvertisingManager(self)
        self.monitors = MonitorManager(self)
        self.next_handle = FIRST_APP_HANDLE

    @property
    def discovering(self) -> bool:
        return bool(self.discovery.sessions)

    @property
    def listening(self) -> bool:
        """Scanning for any reason: a discovery session (active) or a monitor (passive)."""
        return self.discovering or bool(self.monitors.active_monitors())

    def interfaces(self) -> list[ServiceInterface]:
        """What BlueZ exports at the adapter's path (the monitor manager only when
        experimental features are on, as bluetoothd ``-E``)."""
        found: list[ServiceInterface] = [self, self.gatt, self.advertising]
        if self.world.config.experimental:
            found.append(self.monitors)
        return found

    @dbus_property(access=READ)
    def Address(self) -> Str:
        return self.address

    @dbus_property(access=READ)
    def AddressType(self) -> Str:
        return "public"

    @dbus_property(access=READ)
    def Name(self) -> Str:
        return self.system_name

    @dbus_property()
    def Alias(self) -> Str:
        return self.alias

    @Alias.setter  # type: ignore[no-redef]
    def Alias(self, value: Str) -> None:
        self.alias = value or self.system_name  # "" restores the system name, as in BlueZ

    @dbus_property(access=READ)
    def Class(self) -> UInt32:
        return 0

    @dbus_property()
    def Powered(self) -> Bool:
        return self.powered

    @Powered.setter  # type: ignore[no-redef]
    def Powered(self, value: Bool) -> None:
        self.powered = bool(value)
        if not self.powered:
            self.world.adapter_powered_off(self)

    @dbus_property()
    def Discoverable(self) -> Bool:
        return self.discoverable

    @Discoverable.setter  # type: ignore[no-redef]
    def Discoverable(self, value: Bool) -> None:
        self.discoverable = bool(value)

    @dbus_property()
    def Pairable(self) -> Bool:
        return self.pairable

    @Pairable.setter  # type: ignore[no-redef]
    def Pairable(self, value: Bool) -> None:
        self.pairable = bool(value)

    @dbus_property(access=READ)
    def Discovering(self) -> Bool:
        return self.discovering

    @dbus_property(access=READ)
    def UUIDs(self) -> StrList:
        return []

    @dbus_property(access=READ)
    def Modalias(self) -> Str:
        return "usb:v1D6Bp0246d0542"

    @dbus_property(access=READ)
    def Roles(self) -> StrList:
        # hci0 does not offer "central", so that bleak's default adapter (the first powered
        # one with that role, in set order) is never the peripheral's own adapter.
        return ["peripheral"] if self.index == 0 else ["central", "peripheral"]

    @dbus_method()
    def SetDiscoveryFilter(self, options: Options) -> None:
        who = caller()
        if options:
            try:
                self.discovery.filters[who] = DiscoveryFilter.from_options(options)
            except (air.AdvertisementError, TypeError, ValueError) as exc:
                raise DBusError(errors.INVALID_ARGUMENTS, f"Invalid arguments: {exc}") from None
        else:
            self.discovery.filters.pop(who, None)

    @dbus_method()
    def StartDiscovery(self) -> None:
        who = caller()
        if not self.powered:
            raise DBusError(errors.NOT_READY, "Resource Not Ready")
        if who in self.discovery.sessions:
            raise DBusError(errors.IN_PROGRESS, "Operation already in progress")
        was = self.discovering
        self.discovery.sessions.add(who)
        log.info("%s starts discovery on %s", who, self.path)
        if not was:
            self.emit_properties_changed({"Discovering": True})
            # Reports start after this reply and repeat: bleak registers its callback only
            # once StartDiscovery has returned (research/bluez-dbus.md 2.3).
            self.world.listening_changed(self)

    @dbus_method()
    def StopDiscovery(self) -> None:
        who = caller()
        if who not in self.discovery.sessions:
            raise DBusError(errors.FAILED, "No discovery started")
        self.end_discovery(who)

    def end_discovery(self, who: str) -> None:
        self.discovery.sessions.discard(who)
        self.discovery.filters.pop(who, None)
        if not self.discovery.sessions:
            self.world.listening_changed(self)
            self.emit_properties_changed({"Discovering": False})

    @dbus_method()
    async def RemoveDevice(self, device: ObjPath) -> None:
        dev = self.devices.get(device)
        if dev is None:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")
        await self.world.remove_device(dev)

    @dbus_method()
    def GetDiscoveryFilters(self) -> StrList:
        return [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]


class GattManager(ServiceInterface):
    """GattManager1: applications registered on this adapter's local database."""

    def __init__(self, adapter: Adapter) -> None:
        super().__init__(GATT_MANAGER)
        self.adapter = adapter
        self.apps: dict[tuple[str, str], Application] = {}

    @dbus_method()
    async def RegisterApplication(self, application: ObjPath, options: Options) -> None:
        owner = caller()
        world = self.adapter.world
        if (owner, application) in self.apps:
            raise DBusError(errors.ALREADY_EXISTS, "Already Exists")
        reply = await world.bus.call(
            Message(
                destination=owner,
                path=application,
                interface=OBJECT_MANAGER,
                member="GetManagedObjects",
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise DBusError(errors.FAILED, f"Failed to read the application: {reply.error_name}")
        try:
            app = build_application(owner, application, reply.body[0], self.adapter.next_handle)
        except (ValueError, KeyError) as exc:
            raise DBusError(
                errors.INVALID_ARGUMENTS, f"Failed to register application: {exc}"
            ) from None
        self.adapter.next_handle = (
            max((a.handle for a in app.attributes), default=self.adapter.next_handle) + 1
        )
        self.apps[(owner, application)] = app
        await world.watch_owner(owner)
        log.info(
            "application %s of %s registered on %s: %d attributes",
            application,
            owner,
            self.adapter.path,
            len(app.attributes),
        )
        world.application_added(self.adapter, app)

    @dbus_method()
    def UnregisterApplication(self, application: ObjPath) -> None:
        app = self.apps.pop((caller(), application), None)
        if app is None:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")
        self.adapter.world.application_removed(self.adapter, app)


class AdvertisingManager(ServiceInterface):
    """LEAdvertisingManager1: advertisements, put on the air by :mod:`gatt.virtual.air`."""

    def __init__(self, adapter: Adapter) -> None:
        super().__init__(ADV_MANAGER)
        self.adapter = adapter
        self.ads: dict[tuple[str, str], Registration] = {}
        self.refusals: list[dict[str, str]] = []
        """Why RegisterAdvertisement failed (BlueZ only logs it; the control API shows it)."""

    @dbus_property(access=READ)
    def ActiveInstances(self) -> Byte:
        return len(self.ads)

    @dbus_property(access=READ)
    def SupportedInstances(self) -> Byte:
        return SUPPORTED_INSTANCES - len(self.ads)

    @dbus_property(access=READ)
    def SupportedIncludes(self) -> StrList:
        return list(air.INCLUDES)

    @dbus_property(access=READ)
    def SupportedSecondaryChannels(self) -> StrList:
        return []

    def frame_for(self, props: dict[str, Variant]) -> air.AirFrame:
        adv = air.advertisement_from_properties(props)
        return air.build_frame(
            adv, adapter_alias=self.adapter.alias, adapter_discoverable=self.adapter.discoverable
        )

    @dbus_method()
    async def RegisterAdvertisement(self, advertisement: ObjPath, options: Options) -> None:
        owner = caller()
        world = self.adapter.world
        if (owner, advertisement) in self.ads:
            raise DBusError(errors.ALREADY_EXISTS, "Already Exists")
        if len(self.ads) >= SUPPORTED_INSTANCES:
            raise DBusError(errors.NOT_PERMITTED, "Maximum advertisements reached")
        reply = await world.bus.call(
            Message(
                destination=owner,
                path=advertisement,
                interface=PROPERTIES,
                member="GetAll",
                signature="s",
                body=[ADVERTISEMENT],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise DBusError(errors.FAILED, "Failed to parse advertisement.")
        props: dict[str, Variant] = dict(reply.body[0])
        try:
            frame = self.frame_for(props)
        except air.AdvertisementError as exc:
            log.warning("advertisement %s of %s refused: %s", advertisement, owner, exc)
            self.refusals.append(
                {
                    "adapter": self.adapter.path,
                    "owner": owner,
                    "path": advertisement,
                    "reason": str(exc),
                }
            )
            # Real BlueZ 5.66 answers exactly this, with no detail (it only logs the reason);
            # the e2e tier checks both sides (tests/e2e/guest/real_bluez.py, docs/testing.md).
            raise DBusError(errors.FAILED, "Failed to register advertisement") from None
        # BlueZ watches PropertiesChanged on the advertisement and refreshes it.
        await world.watch_owner(owner)
        self.ads[(owner, advertisement)] = Registration(owner, advertisement, props, frame)
        log.info(
            "advertisement %s of %s registered on %s: adv %s scan %s",
            advertisement,
            owner,
            self.adapter.path,
            frame.adv_data.hex(),
            frame.scan_response.hex(),
        )
        self.emit_properties_changed({"ActiveInstances": len(self.ads)})

    @dbus_method()
    def UnregisterAdvertisement(self, advertisement: ObjPath) -> None:
        reg = self.ads.pop((caller(), advertisement), None)
        if reg is None:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")
        self.emit_properties_changed({"ActiveInstances": len(self.ads)})

    def update(
        self, owner: str, path: str, changed: dict[str, Variant], invalidated: list[str]
    ) -> None:
        """PropertiesChanged on a registered advertisement: refresh what goes on the air.

        A refresh that does not fit has nobody to reply to on BlueZ: it is logged and the
        previous data stays on the air (the control API shows ``last_error``).
        """
        reg = self.ads.get((owner, path))
        if reg is None:
            return
        props = dict(reg.props)
        props.update(changed)
        for name in invalidated:
            props.pop(name, None)
        try:
            frame = self.frame_for(props)
        except air.AdvertisementError as exc:
            reg.last_error = str(exc)
            log.warning(
                "advertisement %s refresh refused, old data stays on the air: %s", path, exc
            )
            return
        reg.props, reg.frame, reg.last_error = props, frame, None
        reg.updates += 1

    def remove_owner(self, owner: str) -> None:
        gone = [key for key in self.ads if key[0] == owner]
        for key in gone:
            del self.ads[key]
        if gone:
            self.emit_properties_changed({"ActiveInstances": len(self.ads)})

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for reg in self.ads.values():
            report = air.decode(reg.frame)
            out.append(
                {
                    "adapter": self.adapter.path,
                    "owner": reg.owner,
                    "path": reg.path,
                    "adv_data": reg.frame.adv_data.hex(),
                    "scan_response": reg.frame.scan_response.hex(),
                    "connectable": reg.frame.connectable,
                    "local_name": report.name,
                    "service_uuids": list(report.uuids),
                    "manufacturer_data": {
                        str(k): v.hex() for k, v in report.manufacturer_data.items()
                    },
                    "updates": reg.updates,
                    "last_error": reg.last_error,
                }
            )
        return out
