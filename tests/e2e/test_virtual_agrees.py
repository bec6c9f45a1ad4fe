"""The virtual BlueZ must answer as real BlueZ did in the e2e tier (tests/e2e/run.sh).

Same probe code as the e2e probe case (guest/advert.py), run against the virtual bus instead
of bluetoothd in qemu; the expected answers are real BlueZ's, recorded in guest/real_bluez.py
and re-checked against real BlueZ by every e2e run.
"""

from __future__ import annotations

import asyncio

import pytest
from advert import READOUT_LAYOUT, VICTRON_COMPANY_ID, Advertisement, register
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from real_bluez import TOO_LONG_ERROR, TOO_LONG_MESSAGE

pytestmark = pytest.mark.ble

SERVICE = "5b1e0000-0000-4e2e-9000-000000000001"
SCAN_TIMEOUT_S = 10.0


async def test_readout_next_to_a_128_bit_uuid_is_refused_like_real_bluez(
    virtual_bus: object,
) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        adv = Advertisement(service_uuids=[SERVICE],
                            manufacturer_data={VICTRON_COMPANY_ID: READOUT_LAYOUT},
                            local_name="too-long")
        with pytest.raises(DBusError) as refused:
            await register(bus, "hci0", "/e2e/adv/too_long", adv)
        assert refused.value.type == TOO_LONG_ERROR
        assert refused.value.text == TOO_LONG_MESSAGE
    finally:
        bus.disconnect()


async def test_readout_alone_fits_and_arrives_intact_like_real_bluez(virtual_bus: object) -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        adv = Advertisement(service_uuids=[],
                            manufacturer_data={VICTRON_COMPANY_ID: READOUT_LAYOUT},
                            local_name="readout")
        await register(bus, "hci0", "/e2e/adv/readout", adv)
        seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def on_advert(_: BLEDevice, data: AdvertisementData) -> None:
            value = data.manufacturer_data.get(VICTRON_COMPANY_ID)
            if value is not None and not seen.done():
                seen.set_result(value)

        async with BleakScanner(on_advert, bluez={"adapter": "hci1"}):
            assert await asyncio.wait_for(seen, SCAN_TIMEOUT_S) == READOUT_LAYOUT
    finally:
        bus.disconnect()


async def test_pairing_with_no_agent_is_refused_like_real_bluez(virtual_bus: object) -> None:
    """Real BlueZ 5.66 logs "No agent available for request type 2" and answers Pair() with
    AuthenticationFailed when nobody registered an agent (gatt/agent.py is ours)."""
    from gatt.virtual.bus import VirtualBus  # noqa: PLC0415

    assert isinstance(virtual_bus, VirtualBus)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        adv = Advertisement(service_uuids=[], manufacturer_data={VICTRON_COMPANY_ID: b"\x10"},
                            local_name="pairable")
        await register(bus, "hci0", "/e2e/adv/pairable", adv)
        device = f"/org/bluez/hci1/dev_{virtual_bus.address_of('hci0').replace(':', '_')}"
        found = await BleakScanner.find_device_by_address(
            virtual_bus.address_of("hci0"), timeout=SCAN_TIMEOUT_S, bluez={"adapter": "hci1"})
        assert found is not None
        reply = await bus.call(Message(destination="org.bluez", path=device,
                                       interface="org.bluez.Device1", member="Pair"))
        assert reply is not None
        assert reply.message_type == MessageType.ERROR
        assert reply.error_name == "org.bluez.Error.AuthenticationFailed"
    finally:
        bus.disconnect()


async def test_an_unpaired_subscription_is_answered_like_real_bluez(virtual_bus: object) -> None:
    """The e2e ccc case's application, on the virtual bus: an unpaired central may subscribe
    to encrypt-read + notify, not to encrypt-notify (issue 16, finding 2)."""
    from bleak import BleakClient  # noqa: PLC0415
    from ccc_periph import CHARS, ROOT, App, Characteristic, Service  # noqa: PLC0415
    from real_bluez import CCC_UNPAIRED  # noqa: PLC0415

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        events: list[str] = []
        chars = [Characteristic(name, f"{ROOT}/service0/char{i}", events)
                 for i, name in enumerate(CHARS)]
        for ch in chars:
            bus.export(ch.path, ch)
        bus.export(ROOT + "/service0", Service())
        bus.export(ROOT, App(chars))
        reply = await bus.call(Message(destination="org.bluez", path="/org/bluez/hci0",
                                       interface="org.bluez.GattManager1",
                                       member="RegisterApplication", signature="oa{sv}",
                                       body=[ROOT, {}]))
        assert reply is not None
        assert reply.message_type == MessageType.METHOD_RETURN
        await register(bus, "hci0", "/e2e/ccc/adv",
                       Advertisement(service_uuids=[], manufacturer_data={}, local_name="ccc"))
        address = (await _first("ccc")).address
        async with BleakClient(address, bluez={"adapter": "hci1"}, timeout=10.0) as client:
            for name, (uuid, _flags, _acq) in CHARS.items():
                try:
                    await client.start_notify(uuid, lambda _c, _d: None)
                    outcome = "subscribed"
                except Exception as exc:
                    outcome = f"refused: {exc}"
                assert outcome.startswith(CCC_UNPAIRED[name]), (name, outcome)
    finally:
        bus.disconnect()


async def _first(name: str) -> BLEDevice:
    async with asyncio.timeout(SCAN_TIMEOUT_S), BleakScanner(bluez={"adapter": "hci1"}) as sc:
        async for found, adv in sc.advertisement_data():
            if adv.local_name == name:
                return found
    raise AssertionError("no advertisement")  # pragma: no cover
