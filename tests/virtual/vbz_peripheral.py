"""A minimal bless GATT server for the virtual BlueZ conformance tests.

Used in-process (class :class:`Peripheral`) and as a child process
(``python tests/virtual/vbz_peripheral.py``), which prints READY and then obeys one command per
line on stdin: ``notify HEX``, ``burst N``, ``mfr HEX``, ``quit`` (answering OK).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bless import BlessServer  # type: ignore[attr-defined]
from bless import GATTAttributePermissions as Perm  # type: ignore[attr-defined]
from bless import GATTCharacteristicProperties as Prop  # type: ignore[attr-defined]
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.signature import Variant

SERVICE = "12345678-1234-5678-1234-56789abcdef0"
READ_CHAR = "12345678-1234-5678-1234-56789abcdef1"
WRITE_CHAR = "12345678-1234-5678-1234-56789abcdef2"
NOTIFY_CHAR = "12345678-1234-5678-1234-56789abcdef3"
SECRET_CHAR = "12345678-1234-5678-1234-56789abcdef4"
LONG_CHAR = "12345678-1234-5678-1234-56789abcdef5"
COMPANY = 0xFFFF
NAME = "VBZTest"
BURST_CHUNK = 32
"""Notifications emitted between two flushes (see Peripheral.flush)."""


class Peripheral:
    """bless server with read, write (+ without response), notify and encrypted characteristics.

    Writing b"BAD" is refused with InvalidValueLength, b"BOOM" raises a plain exception,
    b"APP" answers with application error 0x80.
    """

    def __init__(self, name: str = NAME, adapter: str = "hci0") -> None:
        self.name = name
        self.adapter = adapter
        self.values: dict[str, bytes] = {
            READ_CHAR: b"hello",
            WRITE_CHAR: b"",
            NOTIFY_CHAR: b"\x00",
            SECRET_CHAR: b"secret",
            LONG_CHAR: bytes(range(256)) + bytes(range(44)),
        }
        self.writes: list[tuple[str, bytes]] = []
        self.written = asyncio.Event()
        self.notify_started = asyncio.Event()
        """Set when the app hears StartNotify (BlueZ sends it without waiting for a reply)."""
        self.notify_stopped = asyncio.Event()
        self.server: Any = None

    def _read(self, characteristic: Any, **_: Any) -> bytearray:
        return bytearray(self.values[str(characteristic.uuid).lower()])

    def _write(self, characteristic: Any, value: Any, **_: Any) -> None:
        data = bytes(value)
        if data == b"BAD":
            raise DBusError("org.bluez.Error.InvalidValueLength", "too long")  # type: ignore[no-untyped-call]
        if data == b"BOOM":
            raise ValueError("plain exception")
        if data == b"APP":
            raise DBusError("org.bluez.Error.Failed", "0x80")  # type: ignore[no-untyped-call]
        uuid = str(characteristic.uuid).lower()
        self.values[uuid] = data
        self.writes.append((uuid, data))
        self.written.set()

    async def start(self, manufacturer: bytes | None = None) -> None:
        server = BlessServer(name=self.name, adapter=self.adapter)
        server.read_request_func = self._read
        server.write_request_func = self._write
        await server.add_new_service(SERVICE)
        rw = Perm.readable | Perm.writeable
        await server.add_new_characteristic(
            SERVICE, READ_CHAR, Prop.read, bytearray(b"hello"), Perm.readable
        )
        await server.add_new_characteristic(
            SERVICE, WRITE_CHAR, Prop.write | Prop.write_without_response, None, Perm.writeable
        )
        await server.add_new_characteristic(
            SERVICE, NOTIFY_CHAR, Prop.notify | Prop.read, bytearray(b"\x00"), Perm.readable
        )
        await server.add_new_characteristic(
            SERVICE,
            SECRET_CHAR,
            Prop.read | Prop.write,
            None,
            Perm.read_encryption_required | Perm.write_encryption_required | rw,
        )
        await server.add_new_characteristic(SERVICE, LONG_CHAR, Prop.read, None, Perm.readable)
        self.server = server
        await server.start()
        # bless calls these before updating its subscription list (same synchronous call)
        server.app.StartNotify = lambda _char: self.notify_started.set()
        server.app.StopNotify = lambda _char: self.notify_stopped.set()
        if manufacturer is not None:
            self.set_manufacturer_data(manufacturer)

    def set_manufacturer_data(self, data: bytes, company: int = COMPANY) -> None:
        """bless 0.3.0 has no API for it: set the property and announce it (research 1.7)."""
        adv = self.server.app.advertisements[0]
        adv._manufacturer_data = {company: Variant("ay", data)}
        adv.emit_properties_changed({"ManufacturerData": adv._manufacturer_data})

    def notify(self, value: bytes) -> None:
        self.values[NOTIFY_CHAR] = value
        self.server.get_characteristic(NOTIFY_CHAR).value = bytearray(value)
        self.server.update_value(SERVICE, NOTIFY_CHAR)

    async def flush(self) -> None:
        """A round trip to the bus daemon, so that every signal emitted before is written.

        dbus-next 0.2.3 gives up its connection when the socket buffer is full
        (BlockingIOError in ``_MessageWriter.write_callback``): a few hundred signals emitted
        in one go kill bless's connection, on hardware as here.  Pace bursts with this.
        """
        await self.server.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus.Peer",
                member="Ping",
            )
        )

    async def subscribed(self) -> bool:
        return bool(await self.server.is_connected())

    async def stop(self) -> None:
        if self.server is not None:
            try:
                await self.server.stop()
            finally:
                self.server.bus.disconnect()
                self.server = None


async def _child(manufacturer: bytes | None) -> None:
    periph = Peripheral()
    await periph.start(manufacturer)
    print(f"READY {periph.server.bus.unique_name}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        cmd, _, arg = line.partition(" ")
        if cmd == "notify":
            periph.notify(bytes.fromhex(arg))
        elif cmd == "burst":  # N notifications as fast as bless can safely emit them
            for i in range(int(arg)):
                periph.notify(i.to_bytes(4, "little"))
                if i % BURST_CHUNK == BURST_CHUNK - 1:
                    await periph.flush()
        elif cmd == "mfr":
            periph.set_manufacturer_data(bytes.fromhex(arg))
        elif cmd == "quit":
            break
        print("OK", flush=True)
    await periph.stop()


if __name__ == "__main__":
    asyncio.run(_child(bytes.fromhex(sys.argv[1]) if len(sys.argv) > 1 else None))
