"""The Just Works agent (gatt/agent.py) that real BlueZ needs before it lets a headless
central pair: it registers as the default agent and answers BlueZ's calls as documented."""

from __future__ import annotations

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from gatt.agent import AGENT_PATH, just_works_agent, optional_just_works_agent

pytestmark = pytest.mark.ble

DEVICE = "/org/bluez/hci1/dev_00_AA_01_00_00_00"


async def _ask(bus: MessageBus, owner: str, member: str, signature: str,
               body: list[object]) -> Message:
    reply = await bus.call(Message(destination=owner, path=AGENT_PATH,
                                   interface="org.bluez.Agent1", member=member,
                                   signature=signature, body=body))
    assert reply is not None
    return reply


async def test_agent_accepts_just_works_and_refuses_codes(virtual_bus: object) -> None:
    async with just_works_agent() as agent:
        owner = (agent._bus.unique_name if agent._bus is not None else None) or ""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            accepted = await _ask(bus, owner, "RequestAuthorization", "o", [DEVICE])
            assert accepted.message_type == MessageType.METHOD_RETURN
            confirmed = await _ask(bus, owner, "RequestConfirmation", "ou", [DEVICE, 123456])
            assert confirmed.message_type == MessageType.METHOD_RETURN
            refused = await _ask(bus, owner, "RequestPasskey", "o", [DEVICE])
            assert refused.message_type == MessageType.ERROR
            assert refused.error_name == "org.bluez.Error.Rejected"
        finally:
            bus.disconnect()


async def test_optional_agent_steps_aside_without_bluez(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: object) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-such-bus")
    async with optional_just_works_agent() as agent:
        assert agent is None
