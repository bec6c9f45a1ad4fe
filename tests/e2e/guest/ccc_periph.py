"""CCC case, peripheral side: a plain dbus-fast GATT application with two notifying
characteristics whose reads need encryption, to see which ones an unpaired central can
subscribe to, and how BlueZ tells the application (StartNotify, or AcquireNotify with the
device in its options).

    plain      encrypt-read + notify                      (what bless could declare)
    enc        encrypt-read + encrypt-notify              (what gatt/server.py declares)

(An earlier version also had both with NotifyAcquired: BlueZ 5.66 called AcquireNotify with the
unpaired central as ``device``, and when that call failed, bluetoothd crashed (SIGSEGV) at the
next connection.  gatt/server/ does not use AcquireNotify; the class is kept for a rerun.)

Every 0.3 s each characteristic's value changes (PropertiesChanged for the first two, a packet
on every acquired socket for the others); the central counts what reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import Annotated, Any

from advert import Advertisement, register
from dbus_fast import BusType, Message, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method
from e2elib import Results, await_flag, log, signal
from real_bluez import CCC_UNPAIRED

SERVICE = "5b1e0000-0000-4e2e-9000-0000000000c0"
CHARS = {
    "plain": ("5b1e0000-0000-4e2e-9000-0000000000c1", ["encrypt-read", "notify"], False),
    "enc": ("5b1e0000-0000-4e2e-9000-0000000000c2", ["encrypt-read", "encrypt-notify"], False),
}
ROOT = "/e2e/ccc"
ADAPTER_PATH = "/org/bluez/hci0"
CENTRAL_TIMEOUT_S = 240.0
PERIOD_S = 0.3

Str = Annotated[str, DBusSignature("s")]
Bool = Annotated[bool, DBusSignature("b")]
Bytes = Annotated[bytes, DBusSignature("ay")]
Path_ = Annotated[str, DBusSignature("o")]
StrList = Annotated[list[str], DBusSignature("as")]
Options = Annotated[dict[str, Variant], DBusSignature("a{sv}")]
FdMtu = Annotated[list[Any], DBusSignature("hq")]
Nothing = Annotated[None, DBusSignature("")]
Managed = Annotated[dict[str, dict[str, dict[str, Variant]]], DBusSignature("a{oa{sa{sv}}}")]


class Service(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.bluez.GattService1")

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> Str:
        return SERVICE

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> Bool:
        return True


class Characteristic(ServiceInterface):
    def __init__(self, name: str, path: str, events: list[str]) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.label = name
        self.uuid, self.flags, self.acquire = CHARS[name]
        self.path = path
        self.events = events
        self.value = b"\x00"
        self.sockets: list[socket.socket] = []

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> Str:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> Path_:
        return ROOT + "/service0"

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> StrList:
        return self.flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> Bytes:
        return self.value

    @method()
    def ReadValue(self, options: Options) -> Bytes:
        self.events.append(f"{self.label}: ReadValue {_device(options)}")
        return self.value

    @method()
    def StartNotify(self) -> Nothing:
        self.events.append(f"{self.label}: StartNotify")

    @method()
    def StopNotify(self) -> Nothing:
        self.events.append(f"{self.label}: StopNotify")

    def props(self) -> dict[str, Variant]:
        props = {"UUID": Variant("s", self.uuid), "Service": Variant("o", ROOT + "/service0"),
                 "Flags": Variant("as", self.flags)}
        if self.acquire:
            props["NotifyAcquired"] = Variant("b", False)
        return props


class AcquiringCharacteristic(Characteristic):
    @dbus_property(access=PropertyAccess.READ)
    def NotifyAcquired(self) -> Bool:
        return bool(self.sockets)

    @method()
    def AcquireNotify(self, options: Options) -> FdMtu:
        self.events.append(f"{self.label}: AcquireNotify {_device(options)}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.sockets.append(ours)
        return [theirs.fileno(), 23]


def _device(options: dict[str, Variant]) -> str:
    device = options.get("device")
    return str(device.value) if device is not None else "(no device)"


class App(ServiceInterface):
    def __init__(self, chars: list[Characteristic]) -> None:
        super().__init__("org.freedesktop.DBus.ObjectManager")
        self.chars = chars

    @method()
    def GetManagedObjects(self) -> Managed:
        objects: dict[str, dict[str, dict[str, Variant]]] = {
            ROOT + "/service0": {"org.bluez.GattService1": {
                "UUID": Variant("s", SERVICE), "Primary": Variant("b", True)}},
        }
        for ch in self.chars:
            objects[ch.path] = {"org.bluez.GattCharacteristic1": ch.props()}
        return objects


async def main() -> int:
    results = Results("ccc")
    events: list[str] = []
    bus = await MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    chars: list[Characteristic] = []
    for i, name in enumerate(CHARS):
        cls = AcquiringCharacteristic if CHARS[name][2] else Characteristic
        ch = cls(name, f"{ROOT}/service0/char{i}", events)
        bus.export(ch.path, ch)
        chars.append(ch)
    bus.export(ROOT + "/service0", Service())
    bus.export(ROOT, App(chars))
    reply = await bus.call(Message(destination="org.bluez", path=ADAPTER_PATH,
                                   interface="org.bluez.GattManager1",
                                   member="RegisterApplication", signature="oa{sv}",
                                   body=[ROOT, {}]))
    results.check("application registered", reply is not None and not reply.error_name,
                  reply.error_name if reply is not None else "no reply")
    await register(bus, "hci0", "/e2e/ccc/adv",
                   Advertisement(service_uuids=[SERVICE], manufacturer_data={},
                                 local_name="e2e-ccc"))
    signal("ccc.periph.ready")
    done = asyncio.ensure_future(await_flag("ccc.central.done", CENTRAL_TIMEOUT_S))
    counter = 0
    while not done.done():
        counter += 1
        value = counter.to_bytes(2, "little")
        for ch in chars:
            if ch.acquire:
                for sock in ch.sockets:
                    with contextlib.suppress(OSError):
                        sock.send(value)
            else:
                ch.value = value
                ch.emit_properties_changed({"Value": value})
        await asyncio.sleep(PERIOD_S)
    for line in events:
        log("event", line)
    for name in CHARS:
        seen = [e.split(": ", 1)[1] for e in events if e.startswith(name + ":")]
        results.fact(f"{name}: what the application heard", "; ".join(seen) or "nothing")
        subscribed = any(e.startswith(("StartNotify", "AcquireNotify")) for e in seen)
        # the application's own view: BlueZ asks it to start notifying only when it accepted
        # the unpaired central's CCC write
        expected = CCC_UNPAIRED[name] == "subscribed"
        results.check(f"{name}: BlueZ {'asks' if expected else 'never asks'} the application "
                      "to notify the unpaired central", subscribed == expected, seen)
    bus.disconnect()
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
