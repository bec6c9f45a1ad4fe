"""The D-Bus objects BlueZ calls: our GATT application (ObjectManager, services,
characteristics, descriptors) and advertisement, as dbus-fast interfaces.

Only gatt/server/__init__.py uses them; they carry no policy: a read or a write goes to the
handlers with its ``options`` (BlueZ's ``device``, ``mtu``, ``link``, ``offset``), and an
``AttError`` from a handler becomes the D-Bus error BlueZ maps back to that ATT code.
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)


from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_property, method

from gatt import profile
from gatt.profile import Characteristic

Str = Annotated[str, DBusSignature("s")]
Bool = Annotated[bool, DBusSignature("b")]
Bytes = Annotated[bytes, DBusSignature("ay")]
ObjPath = Annotated[str, DBusSignature("o")]
StrList = Annotated[list[str], DBusSignature("as")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
ManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]
Managed = Annotated[dict[str, dict[str, dict[str, Variant]]], DBusSignature("a{oa{sa{sv}}}")]
Nothing = Annotated[None, DBusSignature("")]
READ = PropertyAccess.READ

GATT_SERVICE = "org.bluez.GattService1"
GATT_CHARACTERISTIC = "org.bluez.GattCharacteristic1"
GATT_DESCRIPTOR = "org.bluez.GattDescriptor1"

ReadCall = Callable[[str, Mapping[str, Any]], bytes]
WriteCall = Callable[[str, bytes, Mapping[str, Any]], None]


def _answer(call: Callable[[], Any]) -> Any:
    """Run a handler; an AttError becomes BlueZ's D-Bus error for its code."""
    from gatt.server import AttError, dbus_error_for  # noqa: PLC0415 - no import circle

    try:
        return call()
    except AttError as err:
        name, text = dbus_error_for(err)
        raise DBusError(name, text) from None


def _offset(value: bytes, options: Mapping[str, Any]) -> bytes:
    """A long read continues at ``offset`` (BlueZ's Read Blob)."""
    offset = options.get("offset")
    return value[int(offset.value):] if offset is not None else value


class GattService(ServiceInterface):
    def __init__(self, uuid: str) -> None:
        super().__init__(GATT_SERVICE)
        self.uuid = uuid

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.uuid

    @dbus_property(access=READ)
    def Primary(self) -> Bool:
        return True  # every one: a central discovers only primary services by default

    def props(self) -> dict[str, Variant]:
        return {"UUID": Variant("s", self.uuid), "Primary": Variant("b", True)}


class GattCharacteristic(ServiceInterface):
    def __init__(self, ch: Characteristic, service_path: str, flags: list[str],
                 on_read: ReadCall, on_write: WriteCall) -> None:
        super().__init__(GATT_CHARACTERISTIC)
        self.ch = ch
        self.service_path = service_path
        self.flags = flags
        self.value = b""
        self._on_read = on_read
        self._on_write = on_write

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.ch.uuid

    @dbus_property(access=READ)
    def Service(self) -> ObjPath:
        return self.service_path

    @dbus_property(access=READ)
    def Flags(self) -> StrList:
        return self.flags

    @dbus_property(access=READ)
    def Value(self) -> Bytes:
        return self.value

    @method()
    def ReadValue(self, options: Options) -> Bytes:
        value: bytes = _answer(lambda: self._on_read(self.ch.key, options))
        return _offset(value, options)

    @method()
    def WriteValue(self, value: Bytes, options: Options) -> Nothing:
        _answer(lambda: self._on_write(self.ch.key, bytes(value), options))

    @method()
    def StartNotify(self) -> Nothing:
        """BlueZ calls it on the first subscription; values go out as PropertiesChanged."""

    @method()
    def StopNotify(self) -> Nothing:
        """BlueZ calls it when the last subscriber left."""

    def set_value(self, value: bytes) -> None:
        """The new value, emitted: BlueZ notifies (or indicates) it to every subscriber."""
        self.value = bytes(value)
        self.emit_properties_changed({"Value": self.value})

    def props(self) -> dict[str, Variant]:
        return {"UUID": Variant("s", self.ch.uuid), "Service": Variant("o", self.service_path),
                "Flags": Variant("as", self.flags)}


class GattDescriptor(ServiceInterface):
    """A read-only descriptor (User Description, Presentation Format)."""

    def __init__(self, uuid: str, characteristic_path: str, value: bytes) -> None:
        super().__init__(GATT_DESCRIPTOR)
        self.uuid = uuid
        self.characteristic_path = characteristic_path
        self.value = value

    @dbus_property(access=READ)
    def UUID(self) -> Str:
        return self.uuid

    @dbus_property(access=READ)
    def Characteristic(self) -> ObjPath:
        return self.characteristic_path

    @dbus_property(access=READ)
    def Flags(self) -> StrList:
        return ["read"]

    @method()
    def ReadValue(self, options: Options) -> Bytes:
        return _offset(self.value, options)

    def props(self) -> dict[str, Variant]:
        return {"UUID": Variant("s", self.uuid),
                "Characteristic": Variant("o", self.characteristic_path),
                "Flags": Variant("as", ["read"])}


class Application(ServiceInterface):
    """The ObjectManager BlueZ reads our services from at RegisterApplication."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.DBus.ObjectManager")
        self.managed: dict[str, dict[str, dict[str, Variant]]] = {}

    @method()
    def GetManagedObjects(self) -> Managed:
        return self.managed


@dataclass
class BuiltApplication:
    """Every object to export, by path, and the characteristics by profile key."""

    objects: list[tuple[str, ServiceInterface]] = field(default_factory=list)
    characteristics: dict[str, GattCharacteristic] = field(default_factory=dict)


def build_application(root: str, services: tuple[profile.Service, ...],
                      flags_of: Callable[[Characteristic], list[str]],
                      on_read: ReadCall, on_write: WriteCall) -> BuiltApplication:
    """Our application's objects under ``root``, as BlueZ's GattManager1 expects them."""
    app = Application()
    built = BuiltApplication(objects=[(root, app)])
    for s_index, service in enumerate(services):
        s_path = f"{root}/service{s_index}"
        s_obj = GattService(service.uuid)
        app.managed[s_path] = {GATT_SERVICE: s_obj.props()}
        built.objects.append((s_path, s_obj))
        for c_index, ch in enumerate(service.characteristics):
            c_path = f"{s_path}/char{c_index}"
            c_obj = GattCharacteristic(ch, s_path, flags_of(ch), on_read, on_write)
            app.managed[c_path] = {GATT_CHARACTERISTIC: c_obj.props()}
            built.objects.append((c_path, c_obj))
            built.characteristics[ch.key] = c_obj
            for d_index, (uuid, value) in enumerate((
                (profile.USER_DESCRIPTION_UUID, ch.description.encode("utf-8")),
                (profile.PRESENTATION_FORMAT_UUID, ch.presentation.encode()),
            )):
                d_path = f"{c_path}/desc{d_index}"
                d_obj = GattDescriptor(uuid, c_path, value)
                app.managed[d_path] = {GATT_DESCRIPTOR: d_obj.props()}
                built.objects.append((d_path, d_obj))
    return built


class Advertisement(ServiceInterface):
    """Flags + manufacturer data; BlueZ puts LocalName in the scan response.  No service
    UUID: the instant readout's 28 bytes leave no room for one (31-byte legacy advert)."""

    def __init__(self, name: str) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self.local_name = name
        self.manufacturer: dict[int, Variant] = {}

    def set_manufacturer(self, company_id: int, data: bytes | None) -> None:
        self.manufacturer = {} if data is None else {company_id: Variant("ay", data)}

    @method()
    def Release(self) -> Nothing:
        """BlueZ dropped the advertisement (adapter off); a re-registration follows."""

    @dbus_property(access=READ)
    def Type(self) -> Str:
        return "peripheral"

    @dbus_property(access=READ)
    def LocalName(self) -> Str:
        return self.local_name

    @dbus_property(access=READ)
    def Discoverable(self) -> Bool:
        return True

    @dbus_property(access=READ)
    def ManufacturerData(self) -> ManufacturerData:
        return self.manufacturer
