"""A hand-made LEAdvertisement1 exported with dbus-fast, as the daemon registers its own.

(No ``from __future__ import annotations`` here: dbus-fast reads ``-> None`` literally.)
"""

from dbus_fast import Variant
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual.dbus_types import ManufacturerData, Str, StrList

VICTRON = 0x02E1


class Advert(ServiceInterface):
    """Connectable advertisement: one 128-bit service UUID and Victron manufacturer data."""

    def __init__(self, service: str, data: bytes) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.service = service
        self.data = data

    @dbus_property()
    def Type(self) -> Str:
        return "peripheral"

    @Type.setter  # type: ignore[no-redef]
    def Type(self, value: Str) -> None:
        pass

    @dbus_property()
    def ServiceUUIDs(self) -> StrList:
        return [self.service]

    @ServiceUUIDs.setter  # type: ignore[no-redef]
    def ServiceUUIDs(self, value: StrList) -> None:
        pass

    @dbus_property()
    def ManufacturerData(self) -> ManufacturerData:
        return {VICTRON: Variant("ay", self.data)}

    @ManufacturerData.setter  # type: ignore[no-redef]
    def ManufacturerData(self, value: ManufacturerData) -> None:
        pass

    def update(self, data: bytes) -> None:
        self.data = data
        self.emit_properties_changed({"ManufacturerData": {VICTRON: Variant("ay", data)}})

    @dbus_method()
    def Release(self) -> None:
        pass
