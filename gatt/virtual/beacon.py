"""Test broadcasters: one adapter advertising one company's manufacturer data, nothing else.

What a Victron battery or SmartShunt looks like to a scanner, played by any BlueZ adapter
(the virtual BlueZ's hci2, hci3…, or a real one in the e2e tier's central guest): a
connectable ("peripheral") LEAdvertisement1 carrying the manufacturer data, as the devices
advertise (they accept VictronConnect's connections), updated live
through PropertiesChanged as the devices do when their figures change (BlueZ refreshes the
advertisement).  Each beacon has its own D-Bus connection, as a separate device would, so
several can share one process.  ``stop()`` silences it (the advertisement is unregistered).

Connectable, not "broadcast": for a non-connectable advertisement the Linux kernel uses a fresh
non-resolvable random address (``hci_get_random_address()``, privacy required when not
connectable), so a scanner would not see the adapter's address and no configured device would
match; found by the e2e tier's victron case.  No GATT application is registered behind it.

(No ``from __future__ import annotations``: dbus-fast reads the hints at run time.)
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)

import itertools

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual.dbus_types import ADV_MANAGER, ADVERTISEMENT, BLUEZ, ManufacturerData, Str

_PATHS = itertools.count(1)


class BeaconError(RuntimeError):
    """BlueZ refused the beacon's advertisement; the message is BlueZ's."""


class _Advertisement(ServiceInterface):
    def __init__(self, company: int, data: bytes, name: str) -> None:
        super().__init__(ADVERTISEMENT)
        self.company = company
        self.data = data
        self.local_name = name

    @dbus_property()
    def Type(self) -> Str:
        return "peripheral"

    @Type.setter  # type: ignore[no-redef]
    def Type(self, value: Str) -> None:
        pass

    @dbus_property()
    def ManufacturerData(self) -> ManufacturerData:
        return {self.company: Variant("ay", self.data)}

    @ManufacturerData.setter  # type: ignore[no-redef]
    def ManufacturerData(self, value: ManufacturerData) -> None:
        pass

    @dbus_property()
    def LocalName(self) -> Str:
        return self.local_name

    @LocalName.setter  # type: ignore[no-redef]
    def LocalName(self, value: Str) -> None:
        pass

    @dbus_method()
    def Release(self) -> None:
        pass


class Beacon:
    """``await Beacon("hci2", 0x02E1, data).start()``; then ``update(data)``, ``stop()``."""

    def __init__(self, adapter: str, company: int, data: bytes, name: str = "") -> None:
        self.adapter_path = f"/org/bluez/{adapter}"
        self.path = f"/org/smallbms/beacon{next(_PATHS)}"
        self._adv = _Advertisement(company, data, name)
        self._bus: MessageBus | None = None

    async def start(self) -> "Beacon":
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        bus.export(self.path, self._adv)
        reply = await bus.call(
            Message(destination=BLUEZ, path=self.adapter_path, interface=ADV_MANAGER,
                    member="RegisterAdvertisement", signature="oa{sv}", body=[self.path, {}])
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            bus.disconnect()
            detail = reply.body if reply is not None else "no reply"
            raise BeaconError(f"{self.adapter_path}: advertisement refused: {detail}")
        self._bus = bus
        return self

    def update(self, data: bytes) -> None:
        """New manufacturer data on the air (BlueZ refreshes the advertisement)."""
        self._adv.data = data
        if self._bus is not None:
            self._adv.emit_properties_changed(
                {"ManufacturerData": {self._adv.company: Variant("ay", data)}}
            )

    @property
    def on_air(self) -> bool:
        return self._bus is not None

    async def stop(self) -> None:
        """Silence: unregister the advertisement and leave the bus."""
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            await bus.call(
                Message(destination=BLUEZ, path=self.adapter_path, interface=ADV_MANAGER,
                        member="UnregisterAdvertisement", signature="o", body=[self.path])
            )
        finally:
            bus.disconnect()
