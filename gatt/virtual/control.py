"""The test-only control API: ``org.smallbms.VirtualBlueZ1`` at ``/org/bluez``, and its client.

Tests drive what no BlueZ client can cause on real hardware (bluetoothd restarting, link loss,
pairing outcome) through a private interface on the same bus, so a test in one process can act
on a daemon and a bleak client running in others.  Results that are structures travel as JSON
strings, which keeps the D-Bus signatures trivial.
"""

# ruff: noqa: N802  (D-Bus member names are BlueZ's CamelCase)

import json
from typing import TYPE_CHECKING, Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, dbus_method

from gatt.virtual import errors
from gatt.virtual.dbus_types import (
    BLUEZ,
    CONTROL,
    CONTROL_PATH,
    Json,
    ObjPath,
    Str,
    UInt32,
    caller,
)

if TYPE_CHECKING:
    from gatt.virtual.world import World

MAX_RESTART_DOWN_MS = 60_000


class Control(ServiceInterface):
    """org.smallbms.VirtualBlueZ1."""

    def __init__(self, world: "World") -> None:
        super().__init__(CONTROL)
        self.world = world

    @dbus_method()
    def RestartBluetoothd(self, down_ms: UInt32) -> None:
        """After the reply, org.bluez leaves the bus; ``down_ms`` later a fresh one takes it."""
        if down_ms > MAX_RESTART_DOWN_MS:
            raise DBusError(errors.INVALID_ARGUMENTS, f"down_ms must be <= {MAX_RESTART_DOWN_MS}")
        self.world.request_stop(down_ms / 1000)

    @dbus_method()
    def DropLink(self, target: Str) -> UInt32:
        """Link loss on the links ``target`` names (device path, adapter, address; "" = all)."""
        return self.world.drop_links(target)

    @dbus_method()
    def SetPairingMode(self, mode: Str) -> None:
        from gatt.virtual.config import PAIRING_MODES  # noqa: PLC0415

        if mode not in PAIRING_MODES:
            raise DBusError(
                errors.INVALID_ARGUMENTS, f"mode must be one of {', '.join(PAIRING_MODES)}"
            )
        self.world.pairing = mode

    @dbus_method()
    def ListAdvertisements(self) -> Json:
        return json.dumps([ad for a in self.world.adapters for ad in a.advertising.describe()])

    @dbus_method()
    def ListRefusals(self) -> Json:
        """Refused RegisterAdvertisement calls with the reason (BlueZ only logs it)."""
        return json.dumps([r for a in self.world.adapters for r in a.advertising.refusals])

    @dbus_method()
    def ListLinks(self) -> Json:
        return json.dumps(self.world.describe_links())

    @dbus_method()
    def ListApplications(self) -> Json:
        return json.dumps(self.world.describe_applications())


class AgentManager(ServiceInterface):
    """AgentManager1: remembers who registered an agent, because real BlueZ refuses to pair
    when no agent can confirm a Just Works pairing (found by the e2e tier, docs/testing.md);
    the pairing outcome otherwise is set by SetPairingMode.  The agent itself is never called."""

    def __init__(self, agents: dict[str, str] | None = None) -> None:
        super().__init__("org.bluez.AgentManager1")
        self.agents = agents if agents is not None else {}  # owner -> agent path

    @dbus_method()
    def RegisterAgent(self, agent: ObjPath, capability: Str) -> None:
        owner = caller()
        if owner in self.agents:
            raise DBusError(errors.ALREADY_EXISTS, "Already Exists")
        self.agents[owner] = agent

    @dbus_method()
    def UnregisterAgent(self, agent: ObjPath) -> None:
        if self.agents.get(caller()) != agent:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")
        del self.agents[caller()]

    @dbus_method()
    def RequestDefaultAgent(self, agent: ObjPath) -> None:
        if self.agents.get(caller()) != agent:
            raise DBusError(errors.DOES_NOT_EXIST, "Does Not Exist")


class ControlError(RuntimeError):
    """A control call failed; the message carries the emulator's error text."""


class ControlClient:
    """Calls org.smallbms.VirtualBlueZ1 over an existing dbus-fast connection."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls, address: str) -> "ControlClient":
        return cls(await MessageBus(bus_address=address).connect())

    def close(self) -> None:
        self.bus.disconnect()

    async def _call(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        reply = await self.bus.call(
            Message(
                destination=BLUEZ,
                path=CONTROL_PATH,
                interface=CONTROL,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else ""
            raise ControlError(f"{member}: {reply.error_name}: {text}")
        return reply.body[0] if reply.body else None

    async def restart_bluetoothd(self, down: float = 0.0) -> None:
        """Ask for a restart; returns once the request is accepted (see VirtualBus for waiting)."""
        await self._call("RestartBluetoothd", "u", [round(down * 1000)])

    async def drop_link(self, target: str = "") -> int:
        return int(await self._call("DropLink", "s", [target]))

    async def set_pairing_mode(self, mode: str) -> None:
        await self._call("SetPairingMode", "s", [mode])

    async def advertisements(self) -> list[dict[str, Any]]:
        return list(json.loads(await self._call("ListAdvertisements")))

    async def refusals(self) -> list[dict[str, Any]]:
        return list(json.loads(await self._call("ListRefusals")))

    async def links(self) -> list[dict[str, Any]]:
        return list(json.loads(await self._call("ListLinks")))

    async def applications(self) -> list[dict[str, Any]]:
        return list(json.loads(await self._call("ListApplications")))
