"""A BlueZ LEAdvertisement1 of our own, registered with real BlueZ over D-Bus.

bless 0.3.0 always puts its first service's 128-bit UUID in the advertisement and has no API
for manufacturer data, so the advertisement byte budget is probed with this small object
instead: it lets a case choose exactly which fields go into one legacy (31-byte) PDU.
"""

from __future__ import annotations

from typing import Annotated

from dbus_fast import Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method

BLUEZ = "org.bluez"
VICTRON_COMPANY_ID = 0x02E1
# The instant-readout layout after the company id: 0x10 0x02, product id 0xA3EC (LE), record
# 0x0A, nonce (LE), key[0], then the 16-byte AES-CTR record: 24 bytes, so the AD element is
# 1 (length) + 1 (type 0xFF) + 2 (company) + 24 = 28 bytes, and with BlueZ's 3-byte flags
# element the legacy advertisement is exactly full (31 bytes).
READOUT_LAYOUT = bytes([0x10, 0x02, 0xEC, 0xA3, 0x0A, 0x01, 0x00, 0x5A]) + bytes(range(16))


class Advertisement(ServiceInterface):
    """The properties BlueZ reads when the advertisement is registered."""

    def __init__(self, *, service_uuids: list[str], manufacturer_data: dict[int, bytes],
                 local_name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._service_uuids = service_uuids
        self._manufacturer_data = manufacturer_data
        self._local_name = local_name
        self.released = False

    @method()
    def Release(self) -> Annotated[None, DBusSignature("")]:
        self.released = True

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> Annotated[str, DBusSignature("s")]:
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> Annotated[list[str], DBusSignature("as")]:
        return self._service_uuids

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> Annotated[dict[int, Variant], DBusSignature("a{qv}")]:
        return {k: Variant("ay", v) for k, v in self._manufacturer_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> Annotated[str, DBusSignature("s")]:
        return self._local_name


async def register(bus: MessageBus, adapter: str, path: str, adv: Advertisement) -> None:
    """Export ``adv`` at ``path`` and register it; raises dbus_fast's DBusError on refusal."""
    bus.export(path, adv)
    introspection = await bus.introspect(BLUEZ, f"/org/bluez/{adapter}")
    proxy = bus.get_proxy_object(BLUEZ, f"/org/bluez/{adapter}", introspection)
    manager = proxy.get_interface("org.bluez.LEAdvertisingManager1")
    try:
        await manager.call_register_advertisement(path, {})  # type: ignore[attr-defined]
    except Exception:
        bus.unexport(path)
        raise


async def unregister(bus: MessageBus, adapter: str, path: str) -> None:
    introspection = await bus.introspect(BLUEZ, f"/org/bluez/{adapter}")
    proxy = bus.get_proxy_object(BLUEZ, f"/org/bluez/{adapter}", introspection)
    manager = proxy.get_interface("org.bluez.LEAdvertisingManager1")
    await manager.call_unregister_advertisement(path)  # type: ignore[attr-defined]
    bus.unexport(path)
