"""The emulated ``bluetoothd``: adapters, the air between them, links, and clean-up.

One :class:`World` lives on one D-Bus connection that owns ``org.bluez``.  It routes what
BlueZ and the radio would route: advertising reports from a peripheral adapter to every
discovering central adapter, Connect/Pair into a :class:`~gatt.virtual.device.Link`, ATT
requests from the central's mirror objects to the peripheral's application, and the
application's ``PropertiesChanged(Value)`` back as notifications.  When a client's unique name
leaves the bus (``NameOwnerChanged``) its applications, advertisements, discovery and notify
sessions go with it, as BlueZ does.  A "bluetoothd restart" is a new World on a new connection
(see :mod:`gatt.virtual.service`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from dbus_fast import Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface

from gatt.virtual import air, errors
from gatt.virtual.adapter import Adapter
from gatt.virtual.config import WorldConfig
from gatt.virtual.dbus_types import (
    ADVERTISEMENT,
    BLUEZ,
    CONTROL_PATH,
    GATT_CHARACTERISTIC,
    OBJECT_MANAGER,
    PROPERTIES,
    SENDER,
)
from gatt.virtual.device import Device, Link, device_path
from gatt.virtual.gatt_mirror import (
    SECURITY_AUTHENTICATED,
    SECURITY_ENCRYPTED,
    Application,
    Attribute,
)

__all__ = ["Root", "World", "WorldConfig"]

log = logging.getLogger("smallbms.virtual")

DBUS = "org.freedesktop.DBus"
RSSI_JITTER = (0, -1, 1, -2)
"""Successive reports differ by a dB or two, as real ones do, so each one is a change."""


class Root(ServiceInterface):
    """Anything exported at "/" makes dbus-fast list ObjectManager in ``Introspect("/")``,
    which bless's dbus-next proxy requires before it calls GetManagedObjects."""

    def __init__(self) -> None:
        super().__init__("org.smallbms.VirtualRoot1")


class World:
    def __init__(self, bus: MessageBus, config: WorldConfig) -> None:
        self.bus = bus
        self.config = config
        self.pairing = config.pairing
        self.adapters = [Adapter(self, i) for i in range(config.adapters)]
        self.links: list[Link] = []
        self.bonds: dict[tuple[str, str], int] = {}
        self.agents: dict[str, str] = {}  # owner -> path of its pairing agent (AgentManager1)
        self.notify_counts: dict[tuple[str, str, str], int] = {}
        self.watched: set[str] = set()
        self.watched_objects: set[str] = set()
        self.ticks = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.finished: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        from gatt.virtual.control import AgentManager, Control  # noqa: PLC0415 (cycle)

        self.bus.add_message_handler(self._on_message)
        self.bus.export("/", Root())
        for adapter in self.adapters:
            for iface in adapter.interfaces():
                self.bus.export(adapter.path, iface)
        self.bus.export(CONTROL_PATH, AgentManager(self.agents))
        self.bus.export(CONTROL_PATH, Control(self))
        await self.add_match(f"type='signal',sender='{DBUS}',member='NameOwnerChanged'")
        reply = await self.bus.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
        if reply != RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"{BLUEZ} is already owned on this bus ({reply.name})")
        log.info("org.bluez up as %s with %d adapters", self.bus.unique_name, len(self.adapters))

    def request_stop(self, restart_after: float | None) -> None:
        """End this World; ``restart_after`` s later a new one takes org.bluez (None: stop)."""
        if not self.finished.done():
            self.finished.set_result(restart_after)

    def shutdown(self) -> None:
        """bluetoothd going away: links drop, nothing is told to the applications."""
        for adapter in self.adapters:
            if adapter.discovery.task is not None:
                adapter.discovery.task.cancel()
        for link in list(self.links):
            link.up = False
            link.close_sockets()
        self.links.clear()

    # -- D-Bus plumbing ---------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_CALL:
            SENDER.set(msg.sender or "")
        elif msg.message_type == MessageType.SIGNAL:
            if msg.member == "PropertiesChanged" and msg.interface == PROPERTIES and msg.sender:
                self._on_properties_changed(msg)
            elif msg.interface == OBJECT_MANAGER and msg.sender in self.watched_objects:
                self._on_object_manager(msg)
            elif msg.member == "NameOwnerChanged" and msg.sender == DBUS:
                name, _old, new = msg.body
                if not new and name.startswith(":"):
                    self.forget_owner(name)

    def _on_properties_changed(self, msg: Message) -> None:
        iface, changed, invalidated = msg.body
        sender, path = msg.sender, msg.path
        assert sender is not None
        assert path is not None
        if iface == ADVERTISEMENT:
            for adapter in self.adapters:
                adapter.advertising.update(sender, path, changed, invalidated)
        elif iface == GATT_CHARACTERISTIC and "Value" in changed:
            value = bytes(changed["Value"].value)
            for link in self.links:
                link.notify(sender, path, value)

    def _on_object_manager(self, msg: Message) -> None:
        """An application's objects come and go (bleak exports its monitor after
        RegisterMonitor): the adapters' monitor managers pick up or drop monitors."""
        sender = msg.sender or ""
        if msg.member == "InterfacesAdded":
            path, interfaces = msg.body
            for adapter in self.adapters:
                adapter.monitors.interfaces_added(sender, path, interfaces)
        elif msg.member == "InterfacesRemoved":
            path, names = msg.body
            for adapter in self.adapters:
                adapter.monitors.interfaces_removed(sender, path, names)

    async def watch_objects(self, owner: str) -> None:
        """Listen to an application's InterfacesAdded/Removed (advertisement monitors)."""
        if owner not in self.watched_objects:
            self.watched_objects.add(owner)
            await self.add_match(
                f"type='signal',sender='{owner}',interface='{OBJECT_MANAGER}'"
            )

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def add_match(self, rule: str) -> None:
        await self._dbus_call("AddMatch", rule)

    async def _dbus_call(self, member: str, rule: str) -> None:
        reply = await self.bus.call(
            Message(
                destination=DBUS,
                path="/org/freedesktop/DBus",
                interface=DBUS,
                member=member,
                signature="s",
                body=[rule],
            )
        )
        if reply is not None and reply.message_type == MessageType.ERROR:
            log.warning("%s %s failed: %s", member, rule, reply.body)

    def _owner_rule(self, owner: str) -> str:
        return f"type='signal',sender='{owner}',interface='{PROPERTIES}',member='PropertiesChanged'"

    async def watch_owner(self, owner: str) -> None:
        """Listen to an application's PropertiesChanged (advertisement updates, notifications)."""
        if owner not in self.watched:
            self.watched.add(owner)
            await self.add_match(self._owner_rule(owner))

    def send_to_app(
        self,
        owner: str,
        path: str,
        interface: str,
        member: str,
        *,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> None:
        """A call whose reply BlueZ does not wait for (write command, Start/StopNotify)."""
        msg = Message(
            destination=owner,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
            flags=MessageFlag.NO_REPLY_EXPECTED,
        )
        self.bus.send(msg)

    def after_reply(self, action: Callable[[], None]) -> None:
        """Run ``action`` once everything queued so far (the current reply) has been written:
        a round trip to the bus daemon comes back only after earlier messages went out."""

        async def later() -> None:
            await self._dbus_call("NameHasOwner", BLUEZ)
            action()

        self.spawn(later())

    # -- owners going away ------------------------------------------------------------------

    def forget_owner(self, owner: str) -> None:
        """A client left the bus: drop what it registered, as BlueZ's disconnect watches do."""
        self.agents.pop(owner, None)
        for adapter in self.adapters:
            for key, app in list(adapter.gatt.apps.items()):
                if key[0] == owner:
                    del adapter.gatt.apps[key]
                    self.application_removed(adapter, app, owner_gone=True)
            adapter.advertising.remove_owner(owner)
            if owner in adapter.discovery.sessions:
                adapter.end_discovery(owner)
            adapter.discovery.filters.pop(owner, None)
            adapter.monitors.remove_owner(owner)
            self.listening_changed(adapter)
        for link in self.links:
            link.drop_sender(owner)
        self.watched.discard(owner)  # the bus daemon drops match rules on a vanished sender
        self.watched_objects.discard(owner)

    # -- applications -----------------------------------------------------------------------

    def application_added(self, adapter: Adapter, app: Application) -> None:
        """Connected centrals see the new services (BlueZ: Service Changed, rediscovery)."""
        for link in self.links:
            if link.peripheral.local is adapter:
                link.mirror(app)

    def application_removed(
        self, adapter: Adapter, app: Application, *, owner_gone: bool = False
    ) -> None:
        for link in self.links:
            if link.peripheral.local is adapter:
                link.unmirror(app)
        for attr in app.attributes:
            self.notify_counts.pop((adapter.path, attr.owner, attr.remote_path), None)
        log.info(
            "application %s of %s removed from %s%s",
            app.path,
            app.owner,
            adapter.path,
            " (its owner left the bus)" if owner_gone else "",
        )

    def notify_subscribe(self, adapter: Adapter, attr: Attribute) -> None:
        """BlueZ counts CCC enables per characteristic; the app hears StartNotify on the first."""
        key = (adapter.path, attr.owner, attr.remote_path)
        self.notify_counts[key] = self.notify_counts.get(key, 0) + 1
        if self.notify_counts[key] == 1:
            self.send_to_app(attr.owner, attr.remote_path, GATT_CHARACTERISTIC, "StartNotify")

    def notify_unsubscribe(self, adapter: Adapter, attr: Attribute) -> None:
        key = (adapter.path, attr.owner, attr.remote_path)
        count = self.notify_counts.get(key, 0)
        if count <= 0:
            return
        if count == 1:
            del self.notify_counts[key]
            if any(a.owner == attr.owner for a in adapter.gatt.apps.values()):
                self.send_to_app(attr.owner, attr.remote_path, GATT_CHARACTERISTIC, "StopNotify")
        else:
            self.notify_counts[key] = count - 1

    # -- the air ----------------------------------------------------------------------------

    def listening_changed(self, adapter: Adapter) -> None:
        """Start the adapter's advertising reports when it begins to scan (actively or
        passively), stop them when it no longer does."""
        task = adapter.discovery.task
        if adapter.listening and task is None:
            adapter.discovery.task = asyncio.get_running_loop().create_task(
                self.report_loop(adapter)
            )
        elif not adapter.listening and task is not None:
            task.cancel()
            adapter.discovery.task = None

    async def report_loop(self, central: Adapter) -> None:
        while True:
            await asyncio.sleep(self.config.report_interval)
            try:
                self.report_to(central)
            except Exception:  # a bug here must not silently end the scan
                log.exception("advertising report to %s failed", central.path)

    def report_to(self, central: Adapter) -> None:
        """One round of advertising reports to a discovering central adapter."""
        self.ticks += 1
        rssi = self.config.rssi + RSSI_JITTER[self.ticks % len(RSSI_JITTER)]
        for peripheral in self.adapters:
            if peripheral is central or not peripheral.powered or not peripheral.advertising.ads:
                continue
            regs = list(peripheral.advertising.ads.values())
            reg = regs[self.ticks % len(regs)]  # several instances take turns on the air
            # Only an active scan (a discovery session) sends scan requests.
            report = air.decode(reg.frame, active=central.discovering)
            path = device_path(central.path, peripheral.address)
            if not self._heard(central, report, peripheral.address, rssi, reg.frame):
                continue
            dev = central.devices.get(path)
            fields = {
                "remote_name": report.name or (dev.remote_name if dev else ""),
                "uuids": list(report.uuids),
                "manufacturer_data": dict(report.manufacturer_data),
                "service_data": dict(report.service_data),
                "rssi": rssi,
            }
            if dev is None:
                dev = Device(self, central, peripheral)
                for key, value in fields.items():
                    setattr(dev, key, value)
                central.devices[path] = dev
                self.bus.export(path, dev)  # InterfacesAdded carries the report
                central.monitors.found(path, reg.frame.adv_data)
                continue
            for key, value in fields.items():
                setattr(dev, key, value)
            dev.emit_properties_changed(
                {
                    "RSSI": dev.rssi,
                    "Name": dev.remote_name,
                    "Alias": dev.remote_name or dev.peer.address.replace(":", "-"),
                    "UUIDs": dev.uuids,
                    "ManufacturerData": {
                        k: Variant("ay", v) for k, v in dev.manufacturer_data.items()
                    },
                    "ServiceData": {k: Variant("ay", v) for k, v in dev.service_data.items()},
                }
            )
            central.monitors.found(path, reg.frame.adv_data)

    @staticmethod
    def _heard(
        central: Adapter, report: air.Report, address: str, rssi: int, frame: air.AirFrame
    ) -> bool:
        """Does this report reach the central's applications: through a discovery session
        whose filter accepts it, or through a monitor whose pattern matches?"""
        if central.discovering:
            filters = [central.discovery.filters.get(s) for s in central.discovery.sessions]
            if not filters or any(
                f is None or f.accepts(report, address, rssi) for f in filters
            ):
                return True
        return any(m.matches(frame.adv_data) for m in central.monitors.active_monitors())

    def device_on(self, local: Adapter, peer: Adapter) -> Device:
        path = device_path(local.path, peer.address)
        dev = local.devices.get(path)
        if dev is None:
            dev = Device(self, local, peer)
            dev.remote_name = peer.alias
            local.devices[path] = dev
            self.bus.export(path, dev)
        return dev

    # -- links ------------------------------------------------------------------------------

    async def connect(self, device: Device) -> None:
        """LE connection, then service discovery; the reply comes after ServicesResolved,
        which bleak relies on (research/bluez-dbus.md 2.4)."""
        if device.connected:
            return
        central, peripheral = device.local, device.peer
        if not central.powered:
            raise DBusError(errors.NOT_READY, "Resource Not Ready")
        if not peripheral.powered or not any(
            r.frame.connectable for r in peripheral.advertising.ads.values()
        ):
            raise DBusError(errors.FAILED, "Software caused connection abort")
        peer_dev = self.device_on(peripheral, central)
        security = self.bonds.get((central.address, peripheral.address), 0)
        link = Link(self, device, peer_dev, security)
        device.link = peer_dev.link = link
        self.links.append(link)
        device.set_state(connected=True)
        peer_dev.set_state(connected=True)
        for app in peripheral.gatt.apps.values():
            link.mirror(app)
        device.set_state(services_resolved=True)
        log.info("%s connected to %s (security %d)", central.path, peripheral.path, security)

    def disconnect(self, link: Link, reason: str) -> None:
        if not link.up:
            return
        link.up = False
        if link in self.links:
            self.links.remove(link)
        link.unmirror(None)
        link.central.set_state(services_resolved=False)
        link.central.set_state(connected=False)
        link.central.link = None
        link.peripheral.set_state(connected=False)
        link.peripheral.link = None
        log.info(
            "%s disconnected from %s (%s)",
            link.central.local.path,
            link.peripheral.local.path,
            reason,
        )

    async def pair(self, device: Device) -> None:
        if device.paired:
            raise DBusError(errors.ALREADY_EXISTS, "Already Exists")
        if device.link is None:
            await self.connect(device)
        link = device.link
        assert link is not None
        if not self.agents:
            # Real BlueZ: the kernel asks user space to confirm a Just Works pairing, and
            # bluetoothd refuses it when no agent is registered ("No agent available for
            # request type 2"); docs/testing.md, virtual bus vs real BlueZ.
            log.warning("pairing %s refused: no agent registered", device.local.path)
            raise DBusError(errors.AUTHENTICATION_FAILED, "Authentication Failed")
        if (
            self.pairing == "reject"
            or not link.peripheral.local.pairable
            or not link.central.local.pairable
        ):
            raise DBusError(errors.AUTHENTICATION_FAILED, "Authentication Failed")
        level = SECURITY_AUTHENTICATED if self.pairing == "authenticated" else SECURITY_ENCRYPTED
        link.security = level
        self.bonds[(link.central.local.address, link.peripheral.local.address)] = level
        link.central.set_state(paired=True)
        link.peripheral.set_state(paired=True)
        log.info(
            "%s paired with %s (%s)",
            link.central.local.path,
            link.peripheral.local.path,
            self.pairing,
        )

    async def remove_device(self, dev: Device) -> None:
        if dev.link is not None:
            self.disconnect(dev.link, "device removed")
        self.bonds.pop((dev.local.address, dev.peer.address), None)
        self.bonds.pop((dev.peer.address, dev.local.address), None)
        dev.local.devices.pop(dev.path, None)
        self.bus.unexport(dev.path)

    def adapter_powered_off(self, adapter: Adapter) -> None:
        for link in list(self.links):
            if adapter in (link.central.local, link.peripheral.local):
                self.disconnect(link, "adapter powered off")
        for who in list(adapter.discovery.sessions):
            adapter.end_discovery(who)

    def drop_links(self, target: str) -> int:
        """Link loss (supervision timeout) on every link ``target`` names: a device path, an
        adapter path or name, or an address of either end; "" drops them all."""
        dropped = 0
        for link in list(self.links):
            names = {link.central.path, link.peripheral.path}
            for adapter in (link.central.local, link.peripheral.local):
                names |= {adapter.path, adapter.path.rsplit("/", 1)[-1], adapter.address}
            if not target or target in names or target.upper() in names:
                self.disconnect(link, "link loss")
                dropped += 1
        return dropped

    def describe_links(self) -> list[dict[str, Any]]:
        return [
            {
                "central": link.central.local.path,
                "peripheral": link.peripheral.local.path,
                "central_device": link.central.path,
                "peripheral_device": link.peripheral.path,
                "security": link.security,
                "mtu": link.mtu,
                "objects": len(link.objects),
                "notifying": sorted(
                    path for path, obj, _ in link.objects if getattr(obj, "sessions", None)
                ),
            }
            for link in self.links
        ]

    def describe_applications(self) -> list[dict[str, Any]]:
        from gatt.virtual.gatt_mirror import describe  # noqa: PLC0415

        return [
            {
                "adapter": a.path,
                "owner": app.owner,
                "path": app.path,
                "attributes": [describe(attr) for attr in app.attributes],
            }
            for a in self.adapters
            for app in a.gatt.apps.values()
        ]
