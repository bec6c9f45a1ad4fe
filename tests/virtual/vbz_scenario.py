"""The full scenario through the virtual BlueZ, shared by the test suite (run once) and
benchmarks/loop_virtual_bus.py (run 50 times): advertise with live manufacturer data, scan,
connect, discover, read, write both ways, errors, notify, pair, disconnect, bluetoothd restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZClientArgs
from bleak.exc import BleakDBusError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from vbz_peripheral import (
    COMPANY,
    NAME,
    NOTIFY_CHAR,
    READ_CHAR,
    SECRET_CHAR,
    WRITE_CHAR,
    Peripheral,
)

from gatt.agent import just_works_agent
from gatt.virtual.bus import VirtualBus

STEP_TIMEOUT = 10.0
CENTRAL: BlueZClientArgs = {"adapter": "hci1"}


async def _error_of(awaitable: Awaitable[object]) -> Exception:
    try:
        await awaitable
    except (BleakGATTProtocolError, BleakDBusError) as exc:
        return exc
    raise AssertionError("the request should have failed")


async def _scan_for(value: bytes) -> None:
    async with BleakScanner(bluez={"adapter": "hci1"}) as scanner, asyncio.timeout(STEP_TIMEOUT):
        async for _device, adv in scanner.advertisement_data():
            if adv.local_name == NAME and adv.manufacturer_data.get(COMPANY) == value:
                return


async def full_scenario(bus: VirtualBus) -> None:
    """Raises on any deviation; the caller sets DBUS_SYSTEM_BUS_ADDRESS to ``bus.address``
    and bounds the whole run with a timeout."""
    assert os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") == bus.address
    periph = Peripheral()
    await periph.start(manufacturer=b"\x01")
    try:
        await _scan_for(b"\x01")
        periph.set_manufacturer_data(b"\x02")
        await _scan_for(b"\x02")
        address = bus.address_of("hci0")
        async with BleakClient(address, bluez=CENTRAL, timeout=STEP_TIMEOUT) as client:
            assert await client.read_gatt_char(READ_CHAR) == b"hello"
            await client.write_gatt_char(WRITE_CHAR, b"abc", response=True)
            periph.written.clear()
            await client.write_gatt_char(WRITE_CHAR, b"xyz", response=False)
            await asyncio.wait_for(periph.written.wait(), STEP_TIMEOUT)
            assert periph.writes == [(WRITE_CHAR, b"abc"), (WRITE_CHAR, b"xyz")]
            refused = await _error_of(client.write_gatt_char(WRITE_CHAR, b"BAD", response=True))
            assert isinstance(refused, BleakGATTProtocolError)
            assert refused.code == BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH
            got: asyncio.Queue[bytes] = asyncio.Queue()
            await client.start_notify(NOTIFY_CHAR, lambda _c, data: got.put_nowait(bytes(data)))
            periph.notify(b"\x2a")
            assert await asyncio.wait_for(got.get(), STEP_TIMEOUT) == b"\x2a"
            await client.stop_notify(NOTIFY_CHAR)
            unpaired = await _error_of(client.read_gatt_char(SECRET_CHAR))
            assert isinstance(unpaired, BleakDBusError)
            assert unpaired.dbus_error_details == "Not paired"
            async with just_works_agent():  # real BlueZ refuses to pair with no agent
                await client.pair()
            assert await client.read_gatt_char(SECRET_CHAR) == b"secret"
        assert await bus.links() == []
        await bus.restart_bluetoothd()
        assert await bus.applications() == []
    finally:
        try:
            await periph.stop()
        except Exception:
            if periph.server is not None:
                periph.server.bus.disconnect()
