"""Device1 objects and the LE link between a central adapter and a peripheral adapter.

A :class:`Device` is a remote adapter as one local adapter sees it: on the central, the
advertiser (created by discovery, connected by ``Connect``); on the peripheral, the central that
connected.  A :class:`Link` exists while the two are connected; it owns the central's mirror of
the peripheral's GATT database and applies the ATT rules on every request: permissions, the
security the link has reached (pairing), the MTU, long reads, and the error translation
app -> ATT -> central of :mod:`gatt.virtual.errors`.
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from gatt.virtual import errors
from gatt.virtual.acquire import AcquiredSocket
from gatt.virtual.dbus_types import (
    DEVICE,
    GATT_CHARACTERISTIC,
    GATT_DESCRIPTOR,
    Bool,
    Int16,
    ManufacturerData,
    ObjPath,
    Options,
    Str,
    StrList,
)
from gatt.virtual.gatt_mirror import (
    _NOTIFY_SECURITY,
    _READ_SECURITY,
    _WRITE_SECURITY,
    INDICATE_FLAGS,
    NOTIFY_FLAGS,
    NOTIFY_ONLY_FLAGS,
    READ_FLAGS,
    WRITE_FLAGS,
    Application,
    Attribute,
    CharacteristicMirror,
    DescriptorMirror,
    ServiceMirror,
    mirror_path,
    required_security,
    security_error,
)

if TYPE_CHECKING:
    from gatt.virtual.adapter import Adapter as AdapterT
    from gatt.virtual.world import World

log = logging.getLogger("smallbms.virtual")
READ = PropertyAccess.READ

ATT_MAX_VALUE = 512
"""Longest attribute value ATT allows (Core Vol 3 Part F 3.2.9)."""
ATT_TIMEOUT = 30.0
"""Seconds an ATT request may wait for the application before the link is dropped."""


def device_path(adapter_path: str, address: str) -> str:
    return f"{adapter_path}/dev_{address.replace(':', '_')}"


class Device(ServiceInterface):
    """Device1: ``peer`` as seen from ``local``."""

    def __init__(self, world: "World", local: "AdapterT", peer: "AdapterT") -> None:
        super().__init__(DEVICE)
        self.world = world
        self.local = local
        self.peer = peer
        self.path = device_path(local.path, peer.address)
        self.remote_name = ""
        self.uuids: list[str] = []
        self.manufacturer_data: dict[int, bytes] = {}
        self.service_data: dict[str, bytes] = {}
        self.rssi = -127
        self.connected = False
        self.services_resolved = False
        self.paired = False
        self.trusted = False
        self.link: Link | None = None

    @dbus_property(access=READ)
    def Address(self) -> Str:
        return self.peer.address

    @dbus_property(access=READ)
    def AddressType(self) -> Str:
        return "public"

    @dbus_property(access=READ)
    def Name(self) -> Str:
        return self.remote_name

    @dbus_property(access=READ)
    def Alias(self) -> Str:
        return self.remote_name or self.peer.address.replace(":", "-")

    @dbus_property(access=READ)
    def Adapter(self) -> ObjPath:
        return self.local.path

    @dbus_property(access=READ)
    def Paired(self) -> Bool:
        return self.paired

    @dbus_property(access=READ)
    def Bonded(self) -> Bool:
        return self.paired

    @dbus_property()
    def Trusted(self) -> Bool:
        return self.trusted

    @Trusted.setter  # type: ignore[no-redef]
    def Trusted(self, value: Bool) -> None:
        self.trusted = bool(value)

    @dbus_property(access=READ)
    def Blocked(self) -> Bool:
        return False

    @dbus_property(access=READ)
    def LegacyPairing(self) -> Bool:
        return False

    @dbus_property(access=READ)
    def Connected(self) -> Bool:
        return self.connected

    @dbus_property(access=READ)
    def ServicesResolved(self) -> Bool:
        return self.services_resolved

    @dbus_property(access=READ)
    def RSSI(self) -> Int16:
        return self.rssi

    @dbus_property(access=READ)
    def UUIDs(self) -> StrList:
        return list(self.uuids)

    @dbus_property(access=READ)
    def ManufacturerData(self) -> ManufacturerData:
        return {k: Variant("ay", v) for k, v in self.manufacturer_data.items()}

    @dbus_property(access=READ)
    def ServiceData(self) -> Options:
        return {k: Variant("ay", v) for k, v in self.service_data.items()}

    def set_state(self, **changes: Any) -> None:
        """Change attributes and announce the D-Bus properties that follow them."""
        names = {
            "connected": "Connected",
            "services_resolved": "ServicesResolved",
            "paired": "Paired",
        }
        for attr, value in changes.items():
            setattr(self, attr, value)
        emitted: dict[str, Any] = {names[a]: v for a, v in changes.items() if a in names}
        if "paired" in changes:
            emitted["Bonded"] = changes["paired"]
        self.emit_properties_changed(emitted)

    @dbus_method()
    async def Connect(self) -> None:
        await self.world.connect(self)

    @dbus_method()
    async def Disconnect(self) -> None:
        if self.link is not None:
            self.world.disconnect(self.link, "local")

    @dbus_method()
    async def Pair(self) -> None:
        await self.world.pair(self)

    @dbus_method()
    async def CancelPairing(self) -> None:
        raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")


class Link:
    """A connection between ``central`` (a Device on the central adapter) and ``peripheral``."""

    def __init__(self, world: "World", central: Device, peripheral: Device, security: int) -> None:
        self.world = world
        self.central = central
        self.peripheral = peripheral
        self.security = security
        self.mtu = world.config.mtu
        self.objects: list[tuple[str, ServiceInterface, Attribute]] = []
        self.by_remote: dict[tuple[str, str], CharacteristicMirror] = {}
        self.up = True

    # -- mirror ---------------------------------------------------------------------------

    def mirror(self, app: Application) -> None:
        """Export ``app``'s attributes under the central's device (InterfacesAdded each)."""
        base = self.central.path
        for attr in app.attributes:
            path = mirror_path(base, attr)
            obj: ServiceInterface
            if attr.kind == "service":
                obj = ServiceMirror(attr, base)
            elif attr.kind == "characteristic":
                assert attr.parent is not None
                chrc = CharacteristicMirror(attr, self, mirror_path(base, attr.parent))
                self.by_remote[(attr.owner, attr.remote_path)] = chrc
                obj = chrc
            else:
                assert attr.parent is not None
                obj = DescriptorMirror(attr, self, mirror_path(base, attr.parent))
            self.world.bus.export(path, obj)
            self.objects.append((path, obj, attr))

    def unmirror(self, app: Application | None) -> None:
        """Remove the mirror of one application's attributes (all of them when ``app`` is None)."""
        ids = None if app is None else {id(a) for a in app.attributes}
        keep: list[tuple[str, ServiceInterface, Attribute]] = []
        for path, obj, attr in reversed(self.objects):
            if ids is not None and id(attr) not in ids:
                keep.append((path, obj, attr))
                continue
            if isinstance(obj, CharacteristicMirror):
                self.by_remote.pop((attr.owner, attr.remote_path), None)
                for acquired in (obj.write_socket, obj.notify_socket):
                    if acquired is not None:
                        acquired.close()
                obj.write_socket = obj.notify_socket = None
                for who in list(obj.sessions):
                    self.disable_notifications(obj, who)
            self.world.bus.unexport(path)
        self.objects = list(reversed(keep))

    def close_sockets(self) -> None:
        """Close acquired write/notify sockets without telling anyone (bluetoothd going away)."""
        for _, obj, _attr in self.objects:
            if isinstance(obj, CharacteristicMirror):
                for acquired in (obj.write_socket, obj.notify_socket):
                    if acquired is not None:
                        acquired.close()
                obj.write_socket = obj.notify_socket = None

    def characteristic_for(self, ccc: Attribute) -> CharacteristicMirror | None:
        for _, obj, attr in self.objects:
            if isinstance(obj, CharacteristicMirror) and attr is ccc.parent:
                return obj
        return None

    def ccc_value(self, ccc: Attribute) -> bytes:
        chrc = self.characteristic_for(ccc)
        if chrc is None or not chrc.sessions:
            return b"\x00\x00"
        flags = set(chrc.attr.flags)
        indicate_only = bool(INDICATE_FLAGS & flags) and not NOTIFY_ONLY_FLAGS & flags
        return b"\x02\x00" if indicate_only else b"\x01\x00"

    # -- ATT ------------------------------------------------------------------------------

    def _options(self, offset: int = 0) -> dict[str, Variant]:
        """What BlueZ's gatt-database passes to the application (append_options)."""
        options = {
            "device": Variant("o", self.peripheral.path),
            "link": Variant("s", "LE"),
            "mtu": Variant("q", self.mtu),
        }
        if offset:
            options["offset"] = Variant("q", offset)
        return options

    def _raise_att(self, code: int) -> None:
        err = errors.central_error_for_att(code)
        raise DBusError(err.name, err.text)

    def _check_up(self) -> None:
        if not self.up:
            raise DBusError(errors.FAILED, "Not connected")

    def _interface(self, attr: Attribute) -> str:
        return GATT_CHARACTERISTIC if attr.kind == "characteristic" else GATT_DESCRIPTOR

    async def _call_app(
        self, attr: Attribute, member: str, signature: str, body: list[Any], *, writing: bool
    ) -> Message:
        msg = Message(
            destination=attr.owner,
            path=attr.remote_path,
            interface=self._interface(attr),
            member=member,
            signature=signature,
            body=body,
        )
        try:
            reply = await asyncio.wait_for(self.world.bus.call(msg), ATT_TIMEOUT)
        except TimeoutError:
            log.warning(
                "ATT timeout: %s %s did not answer; dropping the link", attr.remote_path, member
            )
            self.world.disconnect(self, "timeout")
            raise DBusError(errors.FAILED, "Operation failed with ATT error: 0x0e") from None
        self._check_up()
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            code = errors.att_code_for_app_error(reply.error_name, text, writing=writing)
            log.info(
                "%s %s -> %s %r -> ATT 0x%02x",
                attr.remote_path,
                member,
                reply.error_name,
                text,
                code,
            )
            self._raise_att(code)
        return reply

    async def read(self, attr: Attribute, offset: int = 0) -> bytes:
        """A (long) read: ATT Read then Read Blob while the chunk fills the MTU."""
        self._check_up()
        flags = set(attr.flags)
        if attr.kind == "characteristic" and not flags & READ_FLAGS:
            self._raise_att(errors.Att.READ_NOT_PERMITTED)
        if attr.kind == "descriptor" and flags and not flags & READ_FLAGS:
            self._raise_att(errors.Att.READ_NOT_PERMITTED)
        need = required_security(flags, _READ_SECURITY)
        if self.security < need:
            self._raise_att(security_error(need))
        chunk_max = self.mtu - 1
        value = b""
        pos = offset
        while True:
            reply = await self._call_app(
                attr, "ReadValue", "a{sv}", [self._options(pos)], writing=False
            )
            chunk = bytes(reply.body[0])[:chunk_max]
            value += chunk
            pos += len(chunk)
            if len(chunk) < chunk_max or pos >= ATT_MAX_VALUE:
                return value[: ATT_MAX_VALUE - offset]

    async def write(self, attr: Attribute, value: bytes, kind: str | None, offset: int = 0) -> None:
        """Write request (long writes are reassembled by BlueZ before the app sees them) or
        write command (no response: BlueZ does not wait for the app, errors are lost)."""
        self._check_up()
        flags = set(attr.flags)
        if kind is None:
            if "write" in flags or flags & WRITE_FLAGS:
                kind = "request"
            elif "write-without-response" in flags:
                kind = "command"
            else:
                raise DBusError(errors.NOT_SUPPORTED, "Operation is not supported")
        if kind not in ("request", "command", "reliable"):
            raise DBusError(errors.INVALID_ARGUMENTS, "Invalid arguments in method call")
        body: list[Any] = [value, self._options(offset)]
        if kind == "command":
            if len(value) > self.mtu - 3:
                raise DBusError(errors.FAILED, "Failed to initiate write")
            need = required_security(flags, _WRITE_SECURITY)
            if "write-without-response" in flags and self.security >= need:
                self.world.send_to_app(
                    attr.owner,
                    attr.remote_path,
                    self._interface(attr),
                    "WriteValue",
                    signature="aya{sv}",
                    body=body,
                )
            else:
                log.info("write command to %s dropped by the server", attr.remote_path)
            return
        if attr.kind == "characteristic" and not flags & WRITE_FLAGS:
            self._raise_att(errors.Att.WRITE_NOT_PERMITTED)
        if attr.kind == "descriptor" and flags and not flags & WRITE_FLAGS:
            self._raise_att(errors.Att.WRITE_NOT_PERMITTED)
        need = required_security(flags, _WRITE_SECURITY)
        if self.security < need:
            self._raise_att(security_error(need))
        if offset + len(value) > ATT_MAX_VALUE:
            self._raise_att(errors.Att.INVALID_ATTRIBUTE_VALUE_LENGTH)
        await self._call_app(attr, "WriteValue", "aya{sv}", body, writing=True)

    # -- notifications ---------------------------------------------------------------------

    async def enable_notifications(self, chrc: CharacteristicMirror, who: str) -> None:
        """A CCC write from this central; the first one for the characteristic on this link
        counts towards BlueZ's per-characteristic counter (the app hears StartNotify once)."""
        self._check_up()
        need = required_security(chrc.attr.flags, _NOTIFY_SECURITY)
        if self.security < need:
            self._raise_att(security_error(need))
        first_on_link = not chrc.sessions
        chrc.sessions.add(who)
        if first_on_link:
            self.world.notify_subscribe(self.peripheral.local, chrc.attr)

    def disable_notifications(self, chrc: CharacteristicMirror, who: str) -> None:
        chrc.sessions.discard(who)
        if not chrc.sessions:
            self.world.notify_unsubscribe(self.peripheral.local, chrc.attr)

    def notify(self, owner: str, remote_path: str, value: bytes) -> None:
        chrc = self.by_remote.get((owner, remote_path))
        if chrc is None or not chrc.sessions or not NOTIFY_FLAGS & set(chrc.attr.flags):
            return
        value = value[: self.mtu - 3]  # a notification PDU carries at most MTU-3 bytes
        if chrc.notify_socket is not None:
            chrc.notify_socket.send(value)
        else:
            chrc.store(value)

    # -- AcquireWrite / AcquireNotify ------------------------------------------------------

    def acquire_write(self, chrc: CharacteristicMirror) -> list[int]:
        self._check_up()
        if "write-without-response" not in chrc.attr.flags:
            raise DBusError(errors.NOT_SUPPORTED, "Operation is not supported")
        if chrc.write_socket is not None:
            raise DBusError(errors.NOT_PERMITTED, "Write acquired")
        need = required_security(chrc.attr.flags, _WRITE_SECURITY)
        if self.security < need:
            self._raise_att(security_error(need))
        attr = chrc.attr

        def on_packet(data: bytes) -> None:
            if self.up and len(data) <= self.mtu - 3:
                self.world.send_to_app(
                    attr.owner,
                    attr.remote_path,
                    GATT_CHARACTERISTIC,
                    "WriteValue",
                    signature="aya{sv}",
                    body=[data, self._options()],
                )

        def on_closed() -> None:
            chrc.write_socket = None
            chrc.emit_properties_changed({"WriteAcquired": False})

        acquired = AcquiredSocket(self.mtu, on_packet, on_closed)
        chrc.write_socket = acquired
        chrc.emit_properties_changed({"WriteAcquired": True})
        self.world.after_reply(acquired.handed_over)
        return [acquired.client_fd, self.mtu]

    def acquire_notify(self, chrc: CharacteristicMirror) -> list[int]:
        self._check_up()
        if not NOTIFY_FLAGS & set(chrc.attr.flags):
            raise DBusError(errors.NOT_SUPPORTED, "Operation is not supported")
        if chrc.notify_socket is not None:
            raise DBusError(errors.NOT_PERMITTED, "Notify acquired")
        need = required_security(chrc.attr.flags, _NOTIFY_SECURITY)
        if self.security < need:
            self._raise_att(security_error(need))
        key = f"acquired:{id(chrc)}"

        def on_closed() -> None:
            chrc.notify_socket = None
            self.disable_notifications(chrc, key)
            chrc.emit_properties_changed({"NotifyAcquired": False, "Notifying": False})

        acquired = AcquiredSocket(self.mtu, lambda _data: None, on_closed)
        chrc.notify_socket = acquired
        chrc.sessions.add(key)
        self.world.notify_subscribe(self.peripheral.local, chrc.attr)
        chrc.emit_properties_changed({"NotifyAcquired": True, "Notifying": True})
        self.world.after_reply(acquired.handed_over)
        return [acquired.client_fd, self.mtu]

    def drop_sender(self, who: str) -> None:
        for _, obj, _attr in self.objects:
            if isinstance(obj, CharacteristicMirror) and who in obj.sessions:
                self.disable_notifications(obj, who)
                if not obj.sessions:
                    obj.emit_properties_changed({"Notifying": False})
