"""A BlueZ pairing agent that accepts "Just Works" pairing, for both ends of smallbms.

Why it exists: with no agent registered, real BlueZ refuses LE pairing.  The kernel asks user
space to confirm a Just Works pairing (MGMT "User Confirmation Request" with the confirm hint),
bluetoothd forwards that to an agent, and with none it logs "No agent available for request
type 2" and the pairing fails with AuthenticationFailed, on the peripheral (a phone pairing
with a headless Pi) and on a headless central alike.  The e2e tier found this against real
BlueZ 5.66 (docs/testing.md); a desktop or a phone always has an agent, a Raspberry Pi OS
Lite image and a CI runner have none.

Accepting Just Works is the security design (docs/security.md): pairing only encrypts the
link; what protects the BMS is the PIN session on top.  The agent declares NoInputNoOutput,
so BlueZ never asks it for a passkey or a PIN code; if it did, the request is rejected.

It lives on its own dbus-fast connection: BlueZ routes an incoming pairing request to the
*default* agent, and an outgoing one (Device1.Pair) to the caller's agent or, failing that,
to the default one, so being the default agent is what makes it work for both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, method

# stdlib logging: silent unless configured, so smallbms-client output stays clean
log = logging.getLogger("smallbms.ble.agent")

AGENT_PATH = "/org/smallbms/agent"
CAPABILITY = "NoInputNoOutput"  # Just Works: the PIN session, not pairing, guards the BMS
_REJECTED = "org.bluez.Error.Rejected"
_BLUEZ = "org.bluez"
_AGENT_MANAGER = "org.bluez.AgentManager1"

ObjectPath = Annotated[str, DBusSignature("o")]
Str = Annotated[str, DBusSignature("s")]
UInt32 = Annotated[int, DBusSignature("u")]
UInt16 = Annotated[int, DBusSignature("q")]
Nothing = Annotated[None, DBusSignature("")]


class _Agent(ServiceInterface):
    """org.bluez.Agent1: yes to Just Works confirmations and authorisations, no to codes."""

    def __init__(self) -> None:
        super().__init__("org.bluez.Agent1")

    @method()
    def Release(self) -> Nothing:  # noqa: N802 (BlueZ's method names)
        log.debug("agent released")

    @method()
    def RequestPinCode(self, device: ObjectPath) -> Str:  # noqa: N802
        raise DBusError(_REJECTED, "no PIN code entry on this device")

    @method()
    def DisplayPinCode(self, device: ObjectPath, pincode: Str) -> Nothing:  # noqa: N802
        raise DBusError(_REJECTED, "no display on this device")

    @method()
    def RequestPasskey(self, device: ObjectPath) -> UInt32:  # noqa: N802
        raise DBusError(_REJECTED, "no passkey entry on this device")

    @method()
    def DisplayPasskey(self, device: ObjectPath, passkey: UInt32, entered: UInt16) -> Nothing:  # noqa: N802
        log.debug("passkey display for %s ignored", device)

    @method()
    def RequestConfirmation(self, device: ObjectPath, passkey: UInt32) -> Nothing:  # noqa: N802
        log.info("pairing with %s confirmed (Just Works)", device)

    @method()
    def RequestAuthorization(self, device: ObjectPath) -> Nothing:  # noqa: N802
        log.info("pairing with %s authorised (Just Works)", device)

    @method()
    def AuthorizeService(self, device: ObjectPath, uuid: Str) -> Nothing:  # noqa: N802
        log.debug("service %s authorised for %s", uuid, device)

    @method()
    def Cancel(self) -> Nothing:  # noqa: N802
        log.info("pairing cancelled")


async def _call(bus: MessageBus, member: str, signature: str, body: list[object]) -> None:
    reply = await bus.call(Message(destination=_BLUEZ, path="/org/bluez", interface=_AGENT_MANAGER,
                                   member=member, signature=signature, body=body))
    if reply is not None and reply.message_type == MessageType.ERROR:
        text = str(reply.body[0]) if reply.body else ""
        raise DBusError(reply.error_name or "org.bluez.Error.Failed", text)


class JustWorksAgent:
    """Registers the agent as BlueZ's default on ``start``; ``stop`` undoes it (best effort).

    It uses the system bus ($DBUS_SYSTEM_BUS_ADDRESS is honoured, so the virtual BlueZ works
    the same way).
    """

    def __init__(self, path: str = AGENT_PATH) -> None:
        self.path = path
        self._bus: MessageBus | None = None

    async def start(self) -> None:
        """Raises DBusError or OSError when BlueZ is not there or refuses the agent."""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            bus.export(self.path, _Agent())
            await _call(bus, "RegisterAgent", "os", [self.path, CAPABILITY])
            await _call(bus, "RequestDefaultAgent", "o", [self.path])
        except BaseException:
            bus.disconnect()
            raise
        self._bus = bus
        log.debug("agent %s registered (%s)", self.path, CAPABILITY)

    async def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is None:
            return
        with contextlib.suppress(Exception):  # bluetoothd may be gone: nothing to undo
            await _call(bus, "UnregisterAgent", "o", [self.path])
        bus.disconnect()


@contextlib.asynccontextmanager
async def just_works_agent(path: str = AGENT_PATH) -> AsyncIterator[JustWorksAgent]:
    """``async with just_works_agent(): await client.pair()``."""
    agent = JustWorksAgent(path)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@contextlib.asynccontextmanager
async def optional_just_works_agent(path: str = AGENT_PATH) -> AsyncIterator[JustWorksAgent | None]:
    """Like ``just_works_agent`` but yields None when BlueZ refuses the agent: pairing may
    still work through an agent already there (a desktop's or a phone's)."""
    agent = JustWorksAgent(path)
    try:
        await agent.start()
    except (DBusError, OSError, EOFError) as exc:
        log.debug("no agent of our own: %r", exc)
        yield None
        return
    try:
        yield agent
    finally:
        await agent.stop()
