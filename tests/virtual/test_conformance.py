"""Conformance of the virtual BlueZ with a minimal bless server and a bleak client.

Each test gets a fresh private bus (the ``virtual_bus`` fixture).  Waiting is always on an
event or on bleak's own futures, with a timeout, never on a sleep.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZClientArgs
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from vbz_advert import Advert
from vbz_peripheral import (
    COMPANY,
    LONG_CHAR,
    NAME,
    NOTIFY_CHAR,
    READ_CHAR,
    SECRET_CHAR,
    SERVICE,
    WRITE_CHAR,
    Peripheral,
)
from vbz_scenario import full_scenario

from gatt.agent import just_works_agent
from gatt.virtual.bus import VirtualBus
from gatt.virtual.config import WorldConfig

pytestmark = pytest.mark.ble

TIMEOUT = 10.0
HCI0 = "00:00:00:00:00:01"
CENTRAL: BlueZClientArgs = {"adapter": "hci1"}
SECOND: BlueZClientArgs = {"adapter": "hci2"}
HERE = Path(__file__).parent


@pytest.fixture
async def peripheral(virtual_bus: VirtualBus) -> AsyncIterator[Peripheral]:
    periph = Peripheral()
    await periph.start(manufacturer=b"\x01")
    yield periph
    try:
        await periph.stop()
    except Exception:
        if periph.server is not None:
            periph.server.bus.disconnect()


async def scan_until(
    pred: Callable[[BLEDevice, AdvertisementData], bool], adapter: str = "hci1"
) -> AdvertisementData:
    async with BleakScanner(bluez={"adapter": adapter}) as scanner, asyncio.timeout(TIMEOUT):
        async for device, adv in scanner.advertisement_data():
            if pred(device, adv):
                return adv
    raise AssertionError("unreachable")


def notifications(
    client: BleakClient,
) -> tuple[asyncio.Queue[bytes], Callable[[Any, bytearray], None]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    return queue, lambda _char, data: queue.put_nowait(bytes(data))


async def device_property(path: str, name: str) -> Any:
    return await get_property(path, "org.bluez.Device1", name)


async def get_property(path: str, interface: str, name: str) -> Any:
    bus = await MessageBus(bus_address=os.environ["DBUS_SYSTEM_BUS_ADDRESS"]).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=path,
                interface="org.freedesktop.DBus.Properties",
                member="Get",
                signature="ss",
                body=[interface, name],
            )
        )
        assert reply is not None
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        return reply.body[0].value
    finally:
        bus.disconnect()


async def test_scan_with_a_service_uuid_filter(peripheral: Peripheral) -> None:
    async with (
        BleakScanner(service_uuids=[SERVICE], bluez={"adapter": "hci1"}) as scanner,
        asyncio.timeout(TIMEOUT),
    ):
        async for _device, adv in scanner.advertisement_data():
            assert SERVICE in adv.service_uuids
            break


async def test_full_scenario(virtual_bus: VirtualBus) -> None:
    """The scenario benchmarks/loop_virtual_bus.py repeats 50 times."""
    await asyncio.wait_for(full_scenario(virtual_bus), 60)


async def test_scan_sees_manufacturer_data_change_over_time(peripheral: Peripheral) -> None:
    for value in (b"\x01", b"\x02", b"\x03\x04"):
        peripheral.set_manufacturer_data(value)

        def carries(_device: BLEDevice, adv: AdvertisementData, value: bytes = value) -> bool:
            return adv.manufacturer_data.get(COMPANY) == value

        adv = await scan_until(carries)
        assert adv.local_name == NAME
        assert adv.service_uuids == [SERVICE]
        assert -60 < (adv.rssi or -127) < -40


async def test_connect_discover_read_write_notify_and_errors(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        service = client.services.get_service(SERVICE)
        assert service is not None
        char = service.get_characteristic(NOTIFY_CHAR)
        assert char is not None
        # BlueZ's paths: <device>/serviceXXXX/charYYYY (hex handles), plus the CCC it adds
        device = "/org/bluez/hci1/dev_00_00_00_00_00_01"
        path = f"{device}/service{service.handle:04x}/char{char.handle:04x}"
        assert await get_property(path, "org.bluez.GattCharacteristic1", "UUID") == NOTIFY_CHAR
        assert "00002902-0000-1000-8000-00805f9b34fb" in [d.uuid for d in char.descriptors]
        assert char.max_write_without_response_size == virtual_bus.config.mtu - 3

        assert await client.read_gatt_char(READ_CHAR) == b"hello"
        await client.write_gatt_char(WRITE_CHAR, b"abc", response=True)
        assert peripheral.writes == [(WRITE_CHAR, b"abc")]
        peripheral.written.clear()
        await client.write_gatt_char(WRITE_CHAR, b"xyz", response=False)
        await asyncio.wait_for(peripheral.written.wait(), TIMEOUT)
        assert peripheral.writes[-1] == (WRITE_CHAR, b"xyz")

        expected = {
            b"BAD": BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH,
            b"BOOM": BleakGATTProtocolErrorCode.UNLIKELY_ERROR,
            b"APP": 0x80,
        }
        for payload, code in expected.items():
            with pytest.raises(BleakGATTProtocolError) as info:
                await client.write_gatt_char(WRITE_CHAR, payload, response=True)
            assert int(info.value.code) == int(code)
        with pytest.raises(BleakGATTProtocolError) as info:
            await client.read_gatt_char(WRITE_CHAR)
        assert info.value.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as info:
            await client.write_gatt_char(READ_CHAR, b"x", response=True)
        assert info.value.code == BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        with pytest.raises(BleakDBusError, match="Failed to initiate write"):
            await client.write_gatt_char(WRITE_CHAR, bytes(virtual_bus.config.mtu), response=False)

        queue, callback = notifications(client)
        await client.start_notify(NOTIFY_CHAR, callback)
        await asyncio.wait_for(peripheral.notify_started.wait(), TIMEOUT)
        assert await peripheral.subscribed()
        peripheral.notify(b"\x2a")
        assert await asyncio.wait_for(queue.get(), TIMEOUT) == b"\x2a"
        ccc = char.get_descriptor("00002902-0000-1000-8000-00805f9b34fb")
        assert ccc is not None
        assert await client.read_gatt_descriptor(ccc.handle) == b"\x01\x00"
        # BlueZ re-emits Value after a read, so a read while subscribed also notifies
        assert await client.read_gatt_char(NOTIFY_CHAR) == b"\x2a"
        assert await asyncio.wait_for(queue.get(), TIMEOUT) == b"\x2a"
        await client.stop_notify(NOTIFY_CHAR)
        await client.read_gatt_char(READ_CHAR)  # StopNotify reached the app before this read
        assert not await peripheral.subscribed()
        peripheral.notify(b"\x2b")
        assert await client.read_gatt_char(READ_CHAR) == b"hello"
        assert queue.empty()


async def test_acquired_notify_and_write_sockets(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    """bleak's AcquireNotify path (use_start_notify=False) and _acquire_mtu (AcquireWrite)."""
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        await client._backend._acquire_mtu()  # type: ignore[attr-defined]
        assert client.mtu_size == virtual_bus.config.mtu
        queue, callback = notifications(client)
        await client.start_notify(NOTIFY_CHAR, callback, bluez={"use_start_notify": False})
        await asyncio.wait_for(peripheral.notify_started.wait(), TIMEOUT)
        peripheral.notify(b"\x33")
        assert await asyncio.wait_for(queue.get(), TIMEOUT) == b"\x33"
        await client.stop_notify(NOTIFY_CHAR)  # bleak closes its end of the socket
        await asyncio.wait_for(peripheral.notify_stopped.wait(), TIMEOUT)
        assert not await peripheral.subscribed()


async def test_long_values_are_read_in_mtu_sized_pieces(peripheral: Peripheral) -> None:
    """Values up to MTU-1 bytes come back whole; longer ones need the app to honour the
    ``offset`` option, which bless 0.3.0 ignores (documented in the module docstring)."""
    peripheral.values[LONG_CHAR] = bytes(range(200))
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        assert await client.read_gatt_char(LONG_CHAR) == bytes(range(200))


async def test_encrypted_characteristics_need_pairing(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        with pytest.raises(BleakDBusError, match="Not paired"):
            await client.read_gatt_char(SECRET_CHAR)
        with pytest.raises(BleakDBusError, match="Not paired"):
            await client.write_gatt_char(SECRET_CHAR, b"x", response=True)
        async with just_works_agent():  # real BlueZ refuses to pair with no agent
            await client.pair()
        assert await client.read_gatt_char(SECRET_CHAR) == b"secret"
        await client.write_gatt_char(SECRET_CHAR, b"new", response=True)
        assert await device_property("/org/bluez/hci0/dev_00_00_00_00_00_02", "Paired") is True
    # the bond survives the disconnection; unpairing (RemoveDevice) forgets it
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        assert await client.read_gatt_char(SECRET_CHAR) == b"new"
        await client.unpair()
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        with pytest.raises(BleakDBusError, match="Not paired"):
            await client.read_gatt_char(SECRET_CHAR)


async def test_pairing_needs_an_agent_and_can_be_refused(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        with pytest.raises(BleakDBusError, match="AuthenticationFailed"):
            await client.pair()  # no agent: real BlueZ 5.66 refuses a Just Works pairing
        await virtual_bus.set_pairing_mode("reject")
        async with just_works_agent():
            with pytest.raises(BleakDBusError, match="AuthenticationFailed"):
                await client.pair()
        with pytest.raises(BleakDBusError, match="Not paired"):
            await client.read_gatt_char(SECRET_CHAR)


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=3)], indirect=True)
async def test_two_centrals_at_once(virtual_bus: VirtualBus, peripheral: Peripheral) -> None:
    async with (
        BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as first,
        BleakClient(HCI0, bluez=SECOND, timeout=TIMEOUT) as second,
    ):
        assert len(await virtual_bus.links()) == 2
        q1, cb1 = notifications(first)
        q2, cb2 = notifications(second)
        await first.start_notify(NOTIFY_CHAR, cb1)
        await second.start_notify(NOTIFY_CHAR, cb2)
        await asyncio.wait_for(peripheral.notify_started.wait(), TIMEOUT)
        peripheral.notify(b"\x07")
        assert await asyncio.wait_for(q1.get(), TIMEOUT) == b"\x07"
        assert await asyncio.wait_for(q2.get(), TIMEOUT) == b"\x07"
        await first.disconnect()
        peripheral.notify(b"\x08")
        assert await asyncio.wait_for(q2.get(), TIMEOUT) == b"\x08"
        await second.read_gatt_char(READ_CHAR)  # any StopNotify would have reached the app
        assert not peripheral.notify_stopped.is_set()  # the second central still listens
        assert await peripheral.subscribed()
        assert [link["central"] for link in await virtual_bus.links()] == ["/org/bluez/hci2"]


async def test_disconnect_is_seen_on_both_sides(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    gone = asyncio.Event()
    client = BleakClient(
        HCI0, bluez=CENTRAL, timeout=TIMEOUT, disconnected_callback=lambda _c: gone.set()
    )
    await client.connect()
    central_side = "/org/bluez/hci0/dev_00_00_00_00_00_02"
    assert await device_property(central_side, "Connected") is True
    await client.disconnect()
    await asyncio.wait_for(gone.wait(), TIMEOUT)
    assert await device_property(central_side, "Connected") is False
    assert await virtual_bus.links() == []


async def test_link_loss(virtual_bus: VirtualBus, peripheral: Peripheral) -> None:
    gone = asyncio.Event()
    async with BleakClient(
        HCI0, bluez=CENTRAL, timeout=TIMEOUT, disconnected_callback=lambda _c: gone.set()
    ) as client:
        _, callback = notifications(client)
        await client.start_notify(NOTIFY_CHAR, callback)
        assert await virtual_bus.drop_link("hci1") == 1
        await asyncio.wait_for(gone.wait(), TIMEOUT)
        assert not client.is_connected
        # BlueZ clears the CCC of a non-bonded central: the app hears StopNotify
        await asyncio.wait_for(peripheral.notify_stopped.wait(), TIMEOUT)
        assert not await peripheral.subscribed()
    assert await virtual_bus.links() == []


async def test_peripheral_process_crash_is_cleaned_up(
    virtual_bus: VirtualBus, spawn: Callable[..., Awaitable[asyncio.subprocess.Process]]
) -> None:
    proc = await spawn(
        sys.executable,
        str(HERE / "vbz_peripheral.py"),
        "01",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    ready = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().split()
    assert ready[0] == "READY"
    owner = ready[1]
    async with BleakClient(HCI0, bluez=CENTRAL, timeout=TIMEOUT) as client:
        assert await client.read_gatt_char(READ_CHAR) == b"hello"
        proc.kill()
        await proc.wait()
        await virtual_bus.wait_name_gone(owner)
        assert await virtual_bus.applications() == []
        assert await virtual_bus.advertisements() == []
        with pytest.raises(BleakError):
            await client.read_gatt_char(READ_CHAR)
        [link] = await virtual_bus.links()  # the LE link itself survives the crash
        assert link["objects"] == 0
        # the restarted peripheral's services reach the still-connected central at once
        again = Peripheral(name="Again")
        await again.start()
        try:
            [link] = await virtual_bus.links()
            assert link["objects"] > 0
            [app] = await virtual_bus.applications()
            assert app["attributes"][0]["handle"] > 0x10  # new handles: Service Changed
        finally:
            await again.stop()


async def test_bluetoothd_restart_drops_registrations(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    before = await virtual_bus.bluez_owner()
    assert len(await virtual_bus.applications()) == 1
    await virtual_bus.restart_bluetoothd(down=0.05)
    assert await virtual_bus.bluez_owner() not in ("", before)
    assert await virtual_bus.applications() == []
    assert await virtual_bus.advertisements() == []
    # what the daemon does to recover: register again, and centrals find it again
    again = Peripheral(name="Again")
    await again.start(manufacturer=b"\x09")
    try:
        adv = await scan_until(lambda _d, a: a.local_name == "Again")
        assert adv.manufacturer_data == {COMPANY: b"\x09"}
    finally:
        await again.stop()


async def _register(bus: MessageBus, path: str) -> Message:
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path="/org/bluez/hci0",
            interface="org.bluez.LEAdvertisingManager1",
            member="RegisterAdvertisement",
            signature="oa{sv}",
            body=[path, {}],
        )
    )
    assert reply is not None
    return reply


async def test_advertisements_that_do_not_fit_are_refused(virtual_bus: VirtualBus) -> None:
    from gatt.virtual.control import ControlClient  # noqa: PLC0415

    bus = await MessageBus(bus_address=virtual_bus.address).connect()
    try:
        too_long = Advert(SERVICE, bytes(16))
        bus.export("/test/adv0", too_long)
        reply = await _register(bus, "/test/adv0")
        assert reply.message_type == MessageType.ERROR
        assert reply.error_name == "org.bluez.Error.Failed"
        assert reply.body[0] == "Failed to register advertisement"  # as real BlueZ 5.66 says
        [refusal] = await virtual_bus.advertisement_refusals()  # the reason bluetoothd logs
        assert refusal["path"] == "/test/adv0"
        assert "Advertising data too long: 41 > 31" in refusal["reason"]
        assert "manufacturer data 0x02E1 20" in refusal["reason"]

        fits = Advert(SERVICE, bytes(6))
        bus.export("/test/adv1", fits)
        assert (await _register(bus, "/test/adv1")).message_type == MessageType.METHOD_RETURN
        control = ControlClient(bus)  # same connection: the update below is seen first
        fits.update(bytes(16))
        [ad] = await control.advertisements()
        assert "too long" in ad["last_error"]
        assert ad["manufacturer_data"] == {str(0x02E1): bytes(6).hex()}  # the old data stays
        fits.update(b"\x01\x02")
        [ad] = await control.advertisements()
        assert ad["last_error"] is None
        assert ad["manufacturer_data"] == {str(0x02E1): "0102"}
    finally:
        bus.disconnect()
