"""The peripheral's attribute database and its mirror on the central side.

On the peripheral, BlueZ turns each registered GATT application into attributes with handles
(``src/gatt-database.c``): a service declaration, two handles per characteristic (declaration
and value), one per descriptor, plus a Client Characteristic Configuration descriptor that BlueZ
adds to every notify/indicate characteristic.  On the central, BlueZ discovers those attributes
and exports them under the device with paths named after the handles
(``…/dev_XX/service000a/char000b/desc000d``); bleak derives handles from those paths and the
owning device from ``path[:-21]``, so the naming is part of the contract.

The mirror objects forward ``ReadValue``/``WriteValue`` to the application through the link
(:class:`gatt.virtual.device.Link`), which applies ATT rules: MTU, permissions, pairing.
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual import errors
from gatt.virtual.acquire import AcquiredSocket
from gatt.virtual.dbus_types import (
    GATT_CHARACTERISTIC,
    GATT_DESCRIPTOR,
    GATT_SERVICE,
    Bool,
    Bytes,
    ObjPath,
    ObjPaths,
    Options,
    Str,
    StrList,
    UInt16,
    caller,
)

FdAndMtu = Annotated[list[int], DBusSignature("hq")]

if TYPE_CHECKING:
    from gatt.virtual.device import Link

READ = PropertyAccess.READ

FIRST_APP_HANDLE = 0x0010
"""BlueZ's own GAP and GATT services occupy the first handles of the peripheral's database."""
CCC_UUID = "00002902-0000-1000-8000-00805f9b34fb"

READ_FLAGS = frozenset({"read", "encrypt-read", "encrypt-authenticated-read", "secure-read"})
WRITE_FLAGS = frozenset({"write", "encrypt-write", "encrypt-authenticated-write", "secure-write"})
NOTIFY_ONLY_FLAGS = frozenset({"notify", "encrypt-notify", "encrypt-authenticated-notify",
                               "secure-notify"})
INDICATE_FLAGS = frozenset({"indicate", "encrypt-indicate", "encrypt-authenticated-indicate",
                            "secure-indicate"})
# every flag that gives the characteristic a CCC (BlueZ parse_chrc_flags: the encrypt-*/secure-*
# notify and indicate flags set the property too, and only they make the CCC need security)
NOTIFY_FLAGS = NOTIFY_ONLY_FLAGS | INDICATE_FLAGS

SECURITY_NONE = 0
SECURITY_ENCRYPTED = 1
SECURITY_AUTHENTICATED = 2

_READ_SECURITY = {
    "encrypt-read": SECURITY_ENCRYPTED,
    "encrypt-authenticated-read": SECURITY_AUTHENTICATED,
    "secure-read": SECURITY_AUTHENTICATED,
}
_WRITE_SECURITY = {
    "encrypt-write": SECURITY_ENCRYPTED,
    "encrypt-authenticated-write": SECURITY_AUTHENTICATED,
    "secure-write": SECURITY_AUTHENTICATED,
}
_NOTIFY_SECURITY = {
    "encrypt-notify": SECURITY_ENCRYPTED,
    "encrypt-indicate": SECURITY_ENCRYPTED,
    "encrypt-authenticated-notify": SECURITY_AUTHENTICATED,
    "encrypt-authenticated-indicate": SECURITY_AUTHENTICATED,
    "secure-notify": SECURITY_AUTHENTICATED,
    "secure-indicate": SECURITY_AUTHENTICATED,
}


def central_flags(flags: Iterable[str]) -> list[str]:
    """The Flags a central's BlueZ shows for a remote characteristic: its properties only
    (gatt-client.c builds them from the declaration; the security flags stay on the server)."""
    shown: list[str] = []
    for flag in flags:
        if flag in READ_FLAGS:
            name = "read"
        elif flag in WRITE_FLAGS:
            name = "write"
        elif flag in NOTIFY_ONLY_FLAGS:
            name = "notify"
        elif flag in INDICATE_FLAGS:
            name = "indicate"
        elif flag == "authorize":
            continue
        else:
            name = flag
        if name not in shown:
            shown.append(name)
    return shown


def required_security(flags: Iterable[str], table: Mapping[str, int]) -> int:
    """The link security level the flags demand (0 none, 1 encrypted, 2 authenticated)."""
    return max((table.get(f, SECURITY_NONE) for f in flags), default=SECURITY_NONE)


def security_error(required: int) -> int:
    """ATT code for a link below ``required``: what BlueZ's gatt-server check_permissions sends."""
    if required >= SECURITY_AUTHENTICATED:
        return int(errors.Att.INSUFFICIENT_AUTHENTICATION)
    return int(errors.Att.INSUFFICIENT_ENCRYPTION)


@dataclass
class Attribute:
    """One service, characteristic or descriptor of a registered application, with its handle."""

    kind: str  # "service" | "characteristic" | "descriptor" | "ccc"
    handle: int
    owner: str  # the application's unique bus name
    remote_path: str  # the application's object path ("" for the CCC BlueZ adds)
    props: dict[str, Variant]
    parent: "Attribute | None" = None

    @property
    def uuid(self) -> str:
        if self.kind == "ccc":
            return CCC_UUID
        return str(self.props["UUID"].value).lower()

    @property
    def flags(self) -> list[str]:
        flags = self.props.get("Flags")
        return [str(f) for f in flags.value] if flags is not None else []


@dataclass
class Application:
    """A GattManager1 registration: the app's objects turned into attributes."""

    owner: str
    path: str
    attributes: list[Attribute] = field(default_factory=list)


def build_application(
    owner: str, path: str, objects: Mapping[str, Mapping[str, Mapping[str, Variant]]], first: int
) -> Application:
    """Assign handles to the app's objects from ``first`` on, as BlueZ's database does.

    Raises ValueError with BlueZ-like text when the objects do not form a GATT tree.
    """
    services = sorted(p for p, ifaces in objects.items() if GATT_SERVICE in ifaces)
    if not services:
        raise ValueError("No object received")
    chars = {p: i[GATT_CHARACTERISTIC] for p, i in objects.items() if GATT_CHARACTERISTIC in i}
    descs = {p: i[GATT_DESCRIPTOR] for p, i in objects.items() if GATT_DESCRIPTOR in i}
    app = Application(owner, path)
    handle = first
    for spath in services:
        svc = Attribute("service", handle, owner, spath, dict(objects[spath][GATT_SERVICE]))
        app.attributes.append(svc)
        handle += 1
        for cpath in sorted(p for p, props in chars.items() if props["Service"].value == spath):
            chr_attr = Attribute("characteristic", handle, owner, cpath, dict(chars[cpath]), svc)
            app.attributes.append(chr_attr)
            handle += 2  # declaration + value
            own = sorted(p for p, props in descs.items() if props["Characteristic"].value == cpath)
            has_ccc = any(str(descs[p]["UUID"].value).lower() == CCC_UUID for p in own)
            if NOTIFY_FLAGS & set(chr_attr.flags) and not has_ccc:
                app.attributes.append(Attribute("ccc", handle, owner, "", {}, chr_attr))
                handle += 1
            for dpath in own:
                app.attributes.append(
                    Attribute("descriptor", handle, owner, dpath, dict(descs[dpath]), chr_attr)
                )
                handle += 1
    orphans = [p for p, props in chars.items() if props["Service"].value not in services]
    if orphans:
        raise ValueError(f"characteristic {orphans[0]} belongs to no service of the application")
    return app


def mirror_path(device_path: str, attr: Attribute) -> str:
    """The object path BlueZ gives ``attr`` on the central: ``…/serviceXXXX/charYYYY/descZZZZ``."""
    if attr.kind == "service":
        return f"{device_path}/service{attr.handle:04x}"
    assert attr.parent is not None
    parent = mirror_path(device_path, attr.parent)
    if attr.kind == "characteristic":
        return f"{parent}/char{attr.handle:04x}"
    return f"{parent}/desc{attr.handle:04x}"


class ServiceMirror(ServiceInterface):
    """GattService1 on the central."""

    def __init__(self, attr: Attribute, device_path: str) -> None:
        super().__init__(GATT_SERVICE)
        self.attr = attr
        self.device_path = device_path

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.attr.uuid

    @dbus_property(access=READ)
    def Primary(self) -> Bool:
        primary = self.attr.props.get("Primary")
        return bool(primary.value) if primary is not None else True

    @dbus_property(access=READ)
    def Device(self) -> ObjPath:
        return self.device_path

    @dbus_property(access=READ)
    def Includes(self) -> ObjPaths:
        return []


class CharacteristicMirror(ServiceInterface):
    """GattCharacteristic1 on the central; notify sessions are kept per D-Bus sender."""

    def __init__(self, attr: Attribute, link: "Link", service_path: str) -> None:
        super().__init__(GATT_CHARACTERISTIC)
        self.attr = attr
        self.link = link
        self.service_path = service_path
        value = attr.props.get("Value")
        self.value = bytes(value.value) if value is not None else b""
        self.sessions: set[str] = set()
        self.write_socket: AcquiredSocket | None = None
        self.notify_socket: AcquiredSocket | None = None

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.attr.uuid

    @dbus_property(access=READ)
    def WriteAcquired(self) -> Bool:
        return self.write_socket is not None

    @dbus_property(access=READ)
    def NotifyAcquired(self) -> Bool:
        return self.notify_socket is not None

    @dbus_property(access=READ)
    def Service(self) -> ObjPath:
        return self.service_path

    @dbus_property(access=READ)
    def Flags(self) -> StrList:
        return central_flags(self.attr.flags)

    @dbus_property(access=READ)
    def Value(self) -> Bytes:
        return self.value

    @dbus_property(access=READ)
    def Notifying(self) -> Bool:
        return bool(self.sessions)

    @dbus_property(access=READ)
    def MTU(self) -> UInt16:
        return self.link.mtu

    def store(self, value: bytes) -> None:
        """BlueZ re-emits Value after every read and every notification, even if unchanged."""
        self.value = bytes(value)
        self.emit_properties_changed({"Value": self.value})

    @dbus_method()
    async def ReadValue(self, options: Options) -> Bytes:
        offset = int(options["offset"].value) if "offset" in options else 0
        value = await self.link.read(self.attr, offset)
        self.store(value)
        return value

    @dbus_method()
    async def WriteValue(self, value: Bytes, options: Options) -> None:
        kind = str(options["type"].value) if "type" in options else None
        offset = int(options["offset"].value) if "offset" in options else 0
        await self.link.write(self.attr, bytes(value), kind, offset)

    @dbus_method()
    async def StartNotify(self) -> None:
        who = caller()
        if not NOTIFY_FLAGS & set(self.attr.flags):
            raise DBusError(errors.NOT_SUPPORTED, "Operation is not supported")
        if who in self.sessions:
            raise DBusError(errors.IN_PROGRESS, "In Progress")
        if self.notify_socket is not None:
            raise DBusError(errors.NOT_PERMITTED, "Notify acquired")
        await self.link.enable_notifications(self, who)
        self.emit_properties_changed({"Notifying": True})

    @dbus_method()
    def AcquireWrite(self, options: Options) -> FdAndMtu:
        return self.link.acquire_write(self)

    @dbus_method()
    def AcquireNotify(self, options: Options) -> FdAndMtu:
        if self.sessions:
            raise DBusError(errors.IN_PROGRESS, "In Progress")
        return self.link.acquire_notify(self)

    @dbus_method()
    async def StopNotify(self) -> None:
        who = caller()
        if who not in self.sessions:
            raise DBusError(errors.FAILED, "No notify session started")
        self.link.disable_notifications(self, who)
        if not self.sessions:
            self.emit_properties_changed({"Notifying": False})


class DescriptorMirror(ServiceInterface):
    """GattDescriptor1 on the central (the CCC that BlueZ adds is answered locally)."""

    def __init__(self, attr: Attribute, link: "Link", characteristic_path: str) -> None:
        super().__init__(GATT_DESCRIPTOR)
        self.attr = attr
        self.link = link
        self.characteristic_path = characteristic_path
        value = attr.props.get("Value")
        self.value = bytes(value.value) if value is not None else b""

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.attr.uuid

    @dbus_property(access=READ)
    def Characteristic(self) -> ObjPath:
        return self.characteristic_path

    @dbus_property(access=READ)
    def Value(self) -> Bytes:
        return self.value

    @dbus_property(access=READ)
    def Flags(self) -> StrList:
        return self.attr.flags if self.attr.kind != "ccc" else ["read", "write"]

    @dbus_method()
    async def ReadValue(self, options: Options) -> Bytes:
        if self.attr.kind == "ccc":
            value = self.link.ccc_value(self.attr)
        else:
            offset = int(options["offset"].value) if "offset" in options else 0
            value = await self.link.read(self.attr, offset)
        self.value = value
        self.emit_properties_changed({"Value": self.value})
        return value

    @dbus_method()
    async def WriteValue(self, value: Bytes, options: Options) -> None:
        if self.attr.kind == "ccc":
            # BlueZ keeps the CCC to itself: clients use StartNotify/StopNotify.
            raise DBusError(errors.NOT_PERMITTED, "Write not permitted")
        offset = int(options["offset"].value) if "offset" in options else 0
        await self.link.write(self.attr, bytes(value), "request", offset)


def describe(attr: Attribute) -> dict[str, Any]:
    """A JSON-friendly summary for the control API."""
    return {"kind": attr.kind, "handle": attr.handle, "uuid": attr.uuid, "flags": attr.flags}
