"""D-Bus signature annotations and the caller's identity, shared by the emulated interfaces.

dbus-fast reads D-Bus signatures from ``typing.Annotated`` hints, which keeps ``mypy --strict``
useful on the interface classes.  dbus-fast does not hand the message to ``@dbus_method``
handlers, yet BlueZ keys applications, advertisements, discovery and notify sessions by the
caller's unique bus name: a message hook stores the sender in a context variable, which the
task that dbus-fast creates for an ``async`` handler copies (see :func:`caller`).
"""

from __future__ import annotations

import contextvars
from typing import Annotated, Any

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature

Str = Annotated[str, DBusSignature("s")]
Bool = Annotated[bool, DBusSignature("b")]
Byte = Annotated[int, DBusSignature("y")]
Int16 = Annotated[int, DBusSignature("n")]
UInt16 = Annotated[int, DBusSignature("q")]
UInt32 = Annotated[int, DBusSignature("u")]
Bytes = Annotated[bytes, DBusSignature("ay")]
ObjPath = Annotated[str, DBusSignature("o")]
ObjPaths = Annotated[list[str], DBusSignature("ao")]
StrList = Annotated[list[str], DBusSignature("as")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
Json = Annotated[str, DBusSignature("s")]

PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
GATT_MANAGER = "org.bluez.GattManager1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"
GATT_SERVICE = "org.bluez.GattService1"
GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
GATT_DESCRIPTOR = "org.bluez.GattDescriptor1"
CONTROL = "org.smallbms.VirtualBlueZ1"
CONTROL_PATH = "/org/bluez"

SENDER: contextvars.ContextVar[str] = contextvars.ContextVar("sender", default="")


def caller() -> str:
    """Unique bus name of the peer whose method call is being handled ("" outside a call)."""
    return SENDER.get()


def plain(value: Any) -> Any:
    """A Variant's value, recursively, for logs and the JSON control API."""
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return value
