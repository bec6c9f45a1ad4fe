"""The bless adapter: the only module that imports bless or dbus-next, or touches their insides.

bless 0.3.0 has gaps that this adapter closes in one place (research/bluez-dbus.md §1):
- no manufacturer-data API and an advertisement that cannot fit the instant readout (it always
  carries the first service's 128-bit UUID): we do not let bless advertise; we register our own
  ``LEAdvertisement1`` (flags + manufacturer data; the local name goes to the scan response) and
  announce changes with ``PropertiesChanged`` so BlueZ refreshes it without re-registering;
- only the first service is primary: every service is made primary, or a central would not
  discover Device Information, Battery Service or VE-Reg;
- synchronous callbacks that can only fail by raising: our handlers raise ``AttError`` and the
  adapter turns it into the D-Bus error BlueZ maps to that ATT code;
- no connected centrals: we watch BlueZ's ``Device1.Connected`` under our adapter ourselves;
- no notice when bluetoothd goes away: we watch ``NameOwnerChanged`` for ``org.bluez``;
- no pairing agent: we register gatt/agent.py's Just Works agent with each registration.

bless and dbus-next are imported inside functions so that ``smallbms --help`` stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from gatt import profile
from gatt.profile import Characteristic, Prop

log = structlog.get_logger("smallbms.ble")

BLUEZ = "org.bluez"
DEVICE_IFACE = "org.bluez.Device1"
OBJECT_ROOT = "/org/smallbms/gatt"  # our GATT objects (bless's default is under /org/bluez)
ADVERTISEMENT_PATH = "/org/smallbms/advertisement0"
AGENT_PATH = "/org/smallbms/daemon_agent"  # the Just Works agent of gatt/agent.py
START_TIMEOUT_S = 10.0  # registering with BlueZ takes milliseconds; more means it is stuck
STOP_TIMEOUT_S = 3.0
APP_NAME = "smallbms"  # bless's application name (the adapter alias is set separately)

ReadHandler = Callable[[str], bytes]
WriteHandler = Callable[[str, bytes], None]
ConnectionsHandler = Callable[[frozenset[str]], None]


def _mod(name: str) -> Any:
    """Import bless / dbus-next lazily and untyped (neither ships usable type hints)."""
    return importlib.import_module(name)


class AttError(Exception):
    """Raised by a read/write handler: answer the central with ATT error ``code``."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or profile.ATT_ERROR_MESSAGES.get(code, f"ATT 0x{code:02x}"))
        self.code = code


def _quiet_att_errors(record: logging.LogRecord) -> bool:
    """dbus-next logs every error a method handler raises at ERROR level, with a traceback;
    an ATT error we answer on purpose (wrong PIN, value out of range) is not one."""
    text = record.getMessage()
    return not (text.startswith("got unexpected error processing a message")
                and "dbus_next.errors.DBusError" in text)


def _install_log_filter() -> None:
    root = logging.getLogger()
    if _quiet_att_errors not in root.filters:
        root.addFilter(_quiet_att_errors)


def _dbus_error(err: AttError) -> Any:
    """The D-Bus error BlueZ's gatt-database maps to ``err.code``."""
    DBusError = _mod("dbus_next.errors").DBusError  # noqa: N806

    if err.code == profile.ATT_INSUFFICIENT_AUTHORIZATION:
        return DBusError("org.bluez.Error.NotAuthorized", str(err))
    if err.code == profile.ATT_INVALID_VALUE_LENGTH:
        return DBusError("org.bluez.Error.InvalidValueLength", str(err))
    if 0x80 <= err.code <= 0x9F:
        # BlueZ reads the application error code from the message (strtol, base 0)
        return DBusError("org.bluez.Error.Failed", f"0x{err.code:02x}")
    return DBusError("org.bluez.Error.Failed", str(err))


@functools.cache
def _advertisement_class() -> type:
    """Our LEAdvertisement1 (built lazily: dbus-next reads the annotations as signatures)."""
    service = _mod("dbus_next.service")
    Variant = _mod("dbus_next.signature").Variant  # noqa: N806
    dbus_property, method = service.dbus_property, service.method

    base: Any = service.ServiceInterface

    class Advertisement(base):  # type: ignore[misc]
        """Flags + manufacturer data; LocalName is put in the scan response by BlueZ."""

        def __init__(self, name: str) -> None:
            super().__init__("org.bluez.LEAdvertisement1")
            self.local_name = name
            self.manufacturer: dict[int, Any] = {}

        def set_manufacturer(self, company_id: int, data: bytes | None) -> None:
            self.manufacturer = {} if data is None else {company_id: Variant("ay", data)}

        @method()  # type: ignore[untyped-decorator]
        def Release(self) -> "":  # type: ignore[valid-type]  # noqa: N802, F722
            log.info("ble_advertisement_released")

        @dbus_property(access=_read_only())  # type: ignore[untyped-decorator]
        def Type(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802, UP037
            return "peripheral"

        @dbus_property(access=_read_only())  # type: ignore[untyped-decorator]
        def LocalName(self) -> "s":  # type: ignore[name-defined]  # noqa: F821, N802, UP037
            return self.local_name

        @dbus_property(access=_read_only())  # type: ignore[untyped-decorator]
        def Discoverable(self) -> "b":  # type: ignore[name-defined]  # noqa: F821, N802, UP037
            return True

        @dbus_property(access=_read_only())  # type: ignore[untyped-decorator]
        def ManufacturerData(self) -> "a{qv}":  # type: ignore[valid-type]  # noqa: F722, N802
            return self.manufacturer

    return Advertisement


def _read_only() -> Any:
    return _mod("dbus_next.constants").PropertyAccess.READ


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
        self._server: Any = None
        self._adv: Any = None
        self._adapter_path = ""
        self._devices: dict[str, bool] = {}  # Device1 path under our adapter -> Connected
        self._advertising = False
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
        bless = _mod("bless")
        GATTAttributePermissions = bless.GATTAttributePermissions  # noqa: N806
        GATTCharacteristicProperties = bless.GATTCharacteristicProperties  # noqa: N806
        DescriptorFlags = _mod("bless.backends.bluezdbus.dbus.descriptor").DescriptorFlags  # noqa: N806

        _install_log_filter()
        server = bless.BlessServer(name=APP_NAME, adapter=self._adapter_name)
        self._server = server
        server.read_request_func = self._read
        server.write_request_func = self._write
        await server.setup_task
        # bless puts its objects under /org/bluez/<name>; every bleak client on the system bus
        # then takes them for BlueZ's own and logs KeyError('Device').  Ours live elsewhere.
        server.app.base_path = OBJECT_ROOT
        self._adapter_path = str(server.adapter.path)
        await self._watch_bluez(server.bus)
        for service in self._services:
            await server.add_new_service(service.uuid)
            server.services[service.uuid].gatt._primary = True  # bless: only the first is
            for ch in service.characteristics:
                await server.add_new_characteristic(
                    service.uuid, ch.uuid, _properties(ch, GATTCharacteristicProperties),
                    None, _permissions(ch, GATTAttributePermissions))
                # bless's add_new_descriptor files every descriptor under handle 0 and so
                # refuses a second one; its D-Bus object underneath takes any number.
                gatt_char = server.get_characteristic(ch.uuid).gatt
                for desc_uuid, value in (
                    (profile.USER_DESCRIPTION_UUID, ch.description.encode("utf-8")),
                    (profile.PRESENTATION_FORMAT_UUID, ch.presentation.encode()),
                ):
                    await gatt_char.add_descriptor(desc_uuid, [DescriptorFlags.READ], value)
        # bless's start() minus its advertisement (see the module docstring)
        server.bus.export(server.app.path, server.app)
        await server.app.register(server.adapter)
        await server.app.set_name(server.adapter, self._name)
        self._adv = _advertisement_class()(self._name)
        if manufacturer is not None:
            self._adv.set_manufacturer(*manufacturer)
        server.bus.export(ADVERTISEMENT_PATH, self._adv)
        manager = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        await manager.call_register_advertisement(ADVERTISEMENT_PATH, {})
        self._advertising = True
        await self._register_agent()
        log.info("ble_registered", adapter=self._adapter_path, name=self._name)

    async def _register_agent(self) -> None:
        """Best effort: real BlueZ refuses Just Works pairing from a phone when no agent is
        registered (gatt/agent.py says why); without ours, another agent may still answer."""
        from gatt.agent import JustWorksAgent  # noqa: PLC0415 - dbus-fast only when serving

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
        server = self._server
        if server is None:
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._unregister(server)
        except Exception as exc:  # BlueZ may be gone already: nothing to undo
            log.debug("ble_unregister_failed", error=repr(exc))
        try:
            bus = getattr(server, "bus", None)
            if bus is not None:
                bus.disconnect()
        except Exception as exc:  # the connection may be closed already
            log.debug("ble_disconnect_failed", error=repr(exc))
        if not server.setup_task.done():
            server.setup_task.cancel()
        self._devices.clear()

    async def _unregister(self, server: Any) -> None:
        if not server.setup_task.done() or server.setup_task.exception() is not None:
            return
        if self._adv is not None:
            manager = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
            await manager.call_unregister_advertisement(ADVERTISEMENT_PATH)
        await server.app.unregister(server.adapter)

    # --- what the service does ---------------------------------------------------------------
    def notify(self, key: str, value: bytes) -> None:
        """Set a characteristic's value and emit it (BlueZ forwards it to subscribers)."""
        server = self._server
        if server is None or self._stopped or not self._advertising:
            return
        ch = profile.CHARACTERISTICS[key]
        bless_char = server.get_characteristic(ch.uuid)
        if bless_char is None:
            return
        bless_char.value = bytearray(value)
        server.update_value(profile.SERVICE_OF[key].uuid, ch.uuid)

    def set_manufacturer_data(self, company_id: int, data: bytes | None) -> None:
        """Change the advertised manufacturer data (None removes it); BlueZ refreshes the
        advertisement on PropertiesChanged, without unregistering it."""
        adv = self._adv
        if adv is None or self._stopped:
            return
        adv.set_manufacturer(company_id, data)
        adv.emit_properties_changed({"ManufacturerData": adv.manufacturer})

    # --- bless callbacks ---------------------------------------------------------------------
    def _read(self, characteristic: Any, **_: Any) -> bytearray:
        key = profile.BY_UUID[str(characteristic.uuid).lower()].key
        try:
            return bytearray(self._on_read(key))
        except AttError as err:
            raise _dbus_error(err) from None

    def _write(self, characteristic: Any, value: Any, **_: Any) -> None:
        key = profile.BY_UUID[str(characteristic.uuid).lower()].key
        try:
            self._on_write(key, bytes(value))
        except AttError as err:
            raise _dbus_error(err) from None

    # --- BlueZ watching ----------------------------------------------------------------------
    async def _watch_bluez(self, bus: Any) -> None:
        dbus_next = _mod("dbus_next")
        Message, MessageType = dbus_next.Message, dbus_next.MessageType  # noqa: N806

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
        reply = await bus.call(Message(destination=BLUEZ, path="/",
                                       interface="org.freedesktop.DBus.ObjectManager",
                                       member="GetManagedObjects"))
        if reply is not None and reply.message_type == MessageType.METHOD_RETURN:
            for path, interfaces in reply.body[0].items():
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


def _properties(ch: Characteristic, flags: Any) -> Any:
    result = flags(0)
    for ours, theirs in (
        (Prop.READ, flags.read),
        (Prop.WRITE, flags.write),
        (Prop.WRITE_WITHOUT_RESPONSE, flags.write_without_response),
        (Prop.NOTIFY, flags.notify),
        (Prop.INDICATE, flags.indicate),
    ):
        if ours in ch.props:
            result |= theirs
    return result


def _permissions(ch: Characteristic, perms: Any) -> Any:
    result = perms.readable | perms.writeable
    if ch.encrypted:
        result |= perms.read_encryption_required | perms.write_encryption_required
    return result
