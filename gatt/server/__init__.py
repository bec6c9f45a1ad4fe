"""The BlueZ adapter: our GATT application, advertisement and connection watch on dbus-fast.

Why not bless any more: bless 0.3.0 drops the ``options`` of BlueZ's ``ReadValue`` /
``WriteValue`` calls, and with them the ``device`` that names the central asking.  Without it
the server cannot tell centrals apart, so one central's PIN session let every other connected
central read protected values (issue 16).  BlueZ's own D-Bus API (doc/org.bluez.GattManager.rst,
GattCharacteristic.rst) is small, so this module implements it directly with dbus-fast (already a
dependency; bless's dbus-next is unmaintained), and keeps every BlueZ quirk here:

- every read and write reaches the handlers with the central's Device1 object path;
- characteristics that need pairing declare ``encrypt-read`` / ``encrypt-write`` *and*
  ``encrypt-notify`` / ``encrypt-indicate``: BlueZ gives the CCC descriptor the permissions of
  the notify flags only, so with a plain ``notify`` an unpaired central can subscribe to a value
  it may not read (confirmed on real BlueZ by the e2e ``ccc`` case; tests/e2e/guest/real_bluez.py);
- notifications are ``PropertiesChanged(Value)`` (StartNotify): BlueZ sends them to *every*
  subscribed central, so the caller decides whether a value may go out at all (gatt/service.py
  sends PIN-protected values only while every connected central holds a session).  BlueZ 5.69+
  could deliver per central through ``AcquireNotify``, but 5.66 (Debian 12, Raspberry Pi OS
  Bookworm) hands one socket per characteristic to all subscribers, so we do not rely on it;
- a handler fails by raising ``AttError``; we answer with the D-Bus error BlueZ maps back to
  that ATT code (``org.bluez.Error.Failed`` with the code as text for application errors);
- an advertisement of our own (flags + manufacturer data; the name goes to the scan response),
  refreshed with ``PropertiesChanged``;
- connected centrals from ``Device1.Connected`` under our adapter, bluetoothd going away from
  ``NameOwnerChanged``, and gatt/agent.py's Just Works agent registered with each start.

dbus-fast is imported inside functions so that ``smallbms --help`` stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from gatt import profile
from gatt.profile import Characteristic, Prop

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

log = structlog.get_logger("smallbms.ble")

BLUEZ = "org.bluez"
DEVICE_IFACE = "org.bluez.Device1"
ADAPTER_IFACE = "org.bluez.Adapter1"
OBJECT_ROOT = "/org/smallbms/gatt"  # our GATT application
ADVERTISEMENT_PATH = "/org/smallbms/advertisement0"
AGENT_PATH = "/org/smallbms/daemon_agent"  # the Just Works agent of gatt/agent.py
START_TIMEOUT_S = 10.0  # registering with BlueZ takes milliseconds; more means it is stuck
STOP_TIMEOUT_S = 3.0
UNKNOWN_DEVICE = ""  # a call without the ``device`` option (not BlueZ's way, but possible)

ReadHandler = Callable[[str, str], bytes]  # (characteristic key, central) -> value
WriteHandler = Callable[[str, bytes, str], None]  # (characteristic key, value, central)
ConnectionsHandler = Callable[[frozenset[str]], None]


class AttError(Exception):
    """Raised by a read/write handler: answer the central with ATT error ``code``."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or profile.ATT_ERROR_MESSAGES.get(code, f"ATT 0x{code:02x}"))
        self.code = code


def dbus_error_for(err: AttError) -> tuple[str, str]:
    """The D-Bus error (name, text) that BlueZ's gatt-database maps back to ``err.code``."""
    if err.code == profile.ATT_INSUFFICIENT_AUTHORIZATION:
        return "org.bluez.Error.NotAuthorized", str(err)
    if err.code == profile.ATT_INVALID_VALUE_LENGTH:
        return "org.bluez.Error.InvalidValueLength", str(err)
    if 0x80 <= err.code <= 0x9F:
        # BlueZ reads the application error code from the message (strtol, base 0)
        return "org.bluez.Error.Failed", f"0x{err.code:02x}"
    return "org.bluez.Error.Failed", str(err)


def flags_of(ch: Characteristic) -> list[str]:
    """BlueZ's Flags for ``ch`` (see the module docstring for the encrypt-notify reason)."""
    enc = "encrypt-" if ch.encrypted else ""
    flags: list[str] = []
    for prop, name in ((Prop.READ, "read"), (Prop.WRITE, "write"),
                       (Prop.NOTIFY, "notify"), (Prop.INDICATE, "indicate")):
        if prop in ch.props:
            flags.append(enc + name)
    if Prop.WRITE_WITHOUT_RESPONSE in ch.props:
        flags.append("write-without-response")
        if ch.encrypted and Prop.WRITE not in ch.props:
            flags.append("encrypt-write")  # the encryption requirement covers both kinds
    return flags


def _device_of(options: Mapping[str, Any]) -> str:
    device = options.get("device")
    return str(device.value) if device is not None else UNKNOWN_DEVICE


class GattServer:
    """One registration of our GATT application and advertisement on one BlueZ adapter.

    Not restartable: after ``stop()`` (or BlueZ going away, reported through ``on_lost``) the
    caller makes a new one, which gives a fresh D-Bus connection and fresh registrations.
    """

    def __init__(
        self,
        *,
        name: str,
        adapter: str,
        on_read: ReadHandler,
        on_write: WriteHandler,
        on_connections: ConnectionsHandler,
        on_lost: Callable[[], None],
        services: tuple[profile.Service, ...] = profile.SERVICES,
    ) -> None:
        self._name = name
        self._adapter_name = adapter
        self._on_read = on_read
        self._on_write = on_write
        self._on_connections = on_connections
        self._on_lost = on_lost
        self._services = services
        self._bus: MessageBus | None = None
        self._adv: Any = None
        self._chars: dict[str, Any] = {}  # key -> our GattCharacteristic1 object
        self._adapter_path = f"/org/bluez/{adapter}"
        self._devices: dict[str, bool] = {}  # Device1 path under our adapter -> Connected
        self._advertising = False
        self._registered = False
        self._stopped = False
        self._agent: Any = None  # gatt.agent.JustWorksAgent once registered

    # --- state -------------------------------------------------------------------------------
    @property
    def advertising(self) -> bool:
        """Our advertisement is registered with BlueZ."""
        return self._advertising

    @property
    def connected(self) -> frozenset[str]:
        """Object paths of the centrals connected to our adapter."""
        return frozenset(p for p, c in self._devices.items() if c)

    # --- life cycle --------------------------------------------------------------------------
    async def start(self, manufacturer: tuple[int, bytes] | None = None) -> None:
        """Register the application and the advertisement; raises if BlueZ is not usable."""
        async with asyncio.timeout(START_TIMEOUT_S):
            await self._start(manufacturer)

    async def _start(self, manufacturer: tuple[int, bytes] | None) -> None:
        from dbus_fast import BusType, Variant  # noqa: PLC0415 - light --help
        from dbus_fast.aio import MessageBus  # noqa: PLC0415

        from gatt.server import objects as server_objects  # noqa: PLC0415

        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        self._bus = bus
        await self._watch_bluez(bus)
        app = server_objects.build_application(
            OBJECT_ROOT, self._services, flags_of, self._read, self._write)
        for path, obj in app.objects:
            bus.export(path, obj)
        self._chars = app.characteristics
        await self._call(bus, self._adapter_path, "org.freedesktop.DBus.Properties", "Set",
                         "ssv", body=[ADAPTER_IFACE, "Alias", Variant("s", self._name)])
        await self._call(bus, self._adapter_path, "org.bluez.GattManager1",
                         "RegisterApplication", "oa{sv}", body=[OBJECT_ROOT, {}])
        self._registered = True
        self._adv = server_objects.Advertisement(self._name)
        if manufacturer is not None:
            self._adv.set_manufacturer(*manufacturer)
        bus.export(ADVERTISEMENT_PATH, self._adv)
        await self._call(bus, self._adapter_path, "org.bluez.LEAdvertisingManager1",
                         "RegisterAdvertisement", "oa{sv}", body=[ADVERTISEMENT_PATH, {}])
        self._advertising = True
        await self._register_agent()
        log.info("ble_registered", adapter=self._adapter_path, name=self._name)

    @staticmethod
    async def _call(bus: MessageBus, path: str, interface: str, member: str,
                    signature: str = "", *, body: list[Any] | None = None) -> Any:
        from dbus_fast import Message, MessageType  # noqa: PLC0415
        from dbus_fast.errors import DBusError  # noqa: PLC0415

        reply = await bus.call(Message(destination=BLUEZ, path=path, interface=interface,
                                       member=member, signature=signature, body=body or []))
        if reply is None:
            raise RuntimeError(f"{interface}.{member}: no reply")
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise DBusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", text)
        return reply.body

    async def _register_agent(self) -> None:
        """Best effort: real BlueZ refuses Just Works pairing from a phone when no agent is
        registered (gatt/agent.py says why); without ours, another agent may still answer."""
        from gatt.agent import JustWorksAgent  # noqa: PLC0415

        agent = JustWorksAgent(AGENT_PATH)
        try:
            await agent.start()
        except Exception as exc:  # pairing is then up to another agent
            log.warning("ble_agent_not_registered", error=repr(exc))
            return
        self._agent = agent

    async def stop(self) -> None:
        """Unregister and close the D-Bus connection; best effort, never raises."""
        if self._stopped:
            return
        self._stopped = True
        self._advertising = False
        agent, self._agent = self._agent, None
        if agent is not None:
            with contextlib.suppress(Exception):
                await agent.stop()
        bus, self._bus = self._bus, None
        if bus is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._unregister(bus)
        except Exception as exc:  # BlueZ may be gone already: nothing to undo
            log.debug("ble_unregister_failed", error=repr(exc))
        with contextlib.suppress(Exception):  # the connection may be closed already
            bus.disconnect()
        self._devices.clear()

    async def _unregister(self, bus: MessageBus) -> None:
        if self._adv is not None:
            await self._call(bus, self._adapter_path, "org.bluez.LEAdvertisingManager1",
                             "UnregisterAdvertisement", "o", body=[ADVERTISEMENT_PATH])
        if self._registered:
            await self._call(bus, self._adapter_path, "org.bluez.GattManager1",
                             "UnregisterApplication", "o", body=[OBJECT_ROOT])

    # --- what the service does ---------------------------------------------------------------
    def notify(self, key: str, value: bytes) -> None:
        """Set a characteristic's value and emit it: BlueZ sends it to every central that
        subscribed (the caller decides whether it may go out)."""
        ch = self._chars.get(key)
        if ch is None or self._stopped or not self._advertising:
            return
        ch.set_value(value)

    def set_manufacturer_data(self, company_id: int, data: bytes | None) -> None:
        """Change the advertised manufacturer data (None removes it); BlueZ refreshes the
        advertisement on PropertiesChanged, without unregistering it."""
        adv = self._adv
        if adv is None or self._stopped:
            return
        adv.set_manufacturer(company_id, data)
        adv.emit_properties_changed({"ManufacturerData": adv.manufacturer})

    # --- D-Bus method calls from BlueZ -------------------------------------------------------
    def _read(self, key: str, options: Mapping[str, Any]) -> bytes:
        return self._on_read(key, _device_of(options))

    def _write(self, key: str, value: bytes, options: Mapping[str, Any]) -> None:
        self._on_write(key, value, _device_of(options))

    # --- BlueZ watching ----------------------------------------------------------------------
    async def _watch_bluez(self, bus: MessageBus) -> None:
        from dbus_fast import Message, MessageType  # noqa: PLC0415

        rules = (
            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
            "member='NameOwnerChanged',arg0='org.bluez'",
            f"type='signal',sender='{BLUEZ}',interface='org.freedesktop.DBus.Properties',"
            f"member='PropertiesChanged',path_namespace='{self._adapter_path}'",
            f"type='signal',sender='{BLUEZ}',interface='org.freedesktop.DBus.ObjectManager'",
        )
        for rule in rules:
            await bus.call(Message(destination="org.freedesktop.DBus",
                                   path="/org/freedesktop/DBus",
                                   interface="org.freedesktop.DBus", member="AddMatch",
                                   signature="s", body=[rule]))

        def handler(msg: Any) -> None:
            if msg.message_type == MessageType.SIGNAL:
                try:
                    self._on_signal(msg)
                except Exception as exc:  # a bad signal must not kill the bus
                    log.warning("ble_signal_ignored", member=msg.member, error=repr(exc))

        bus.add_message_handler(handler)
        body = await self._call(bus, "/", "org.freedesktop.DBus.ObjectManager",
                                "GetManagedObjects")
        objects = body[0]
        if self._adapter_path not in objects or ADAPTER_IFACE not in objects[self._adapter_path]:
            raise RuntimeError(f"BlueZ has no adapter {self._adapter_name}")
        for path, interfaces in objects.items():
            self._device_update(path, interfaces.get(DEVICE_IFACE))
        self._report()

    def _on_signal(self, msg: Any) -> None:
        if msg.member == "NameOwnerChanged":
            name, _old, new = msg.body
            if name == BLUEZ and not new and not self._stopped:
                log.warning("ble_bluez_gone")
                self._advertising = False
                self._devices.clear()
                self._report()
                self._on_lost()
            return
        if msg.member == "PropertiesChanged" and msg.body[0] == DEVICE_IFACE:
            if "Connected" in msg.body[1]:
                self._devices[msg.path] = bool(msg.body[1]["Connected"].value)
                self._report()
        elif msg.member == "InterfacesAdded":
            self._device_update(msg.body[0], msg.body[1].get(DEVICE_IFACE))
            self._report()
        elif msg.member == "InterfacesRemoved" and DEVICE_IFACE in msg.body[1]:
            self._devices.pop(msg.body[0], None)
            self._report()

    def _device_update(self, path: str, props: Mapping[str, Any] | None) -> None:
        if props is None or not path.startswith(self._adapter_path + "/"):
            return
        connected = props.get("Connected")
        self._devices[path] = bool(connected.value) if connected is not None else False

    def _report(self) -> None:
        self._on_connections(self.connected)
