"""Scanning on the adapter that advertises and serves GATT, with several test broadcasters.

What the Victron Bluetooth source needs from the virtual BlueZ: the daemon's own adapter (hci0)
keeps advertising and serving its GATT application while bleak scans on it, actively
(StartDiscovery) or passively (AdvertisementMonitor1, bluetoothd --experimental), and hears
beacons that each advertise from their own adapter, with live updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.exc import BleakError
from vbz_peripheral import READ_CHAR, Peripheral

from gatt.virtual.beacon import Beacon
from gatt.virtual.bus import VirtualBus
from gatt.virtual.config import WorldConfig

pytestmark = pytest.mark.ble

VICTRON = 0x02E1
TIMEOUT = 20.0
VICTRON_PATTERN = OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\xe1\x02\x10")


def record(n: int) -> bytes:
    return b"\x10\x02\xe5\xa0\x05" + n.to_bytes(2, "little") + bytes(17)


@pytest.fixture
async def peripheral(virtual_bus: VirtualBus) -> AsyncIterator[Peripheral]:
    periph = Peripheral()
    await periph.start()
    try:
        yield periph
    finally:
        await periph.stop()


async def hear(scanner: BleakScanner, wanted: dict[str, bytes]) -> dict[str, tuple[bytes, int]]:
    """Wait until every address in ``wanted`` was heard with its data; address -> (data, rssi)."""
    heard: dict[str, tuple[bytes, int]] = {}
    async with asyncio.timeout(TIMEOUT):
        async for device, adv in scanner.advertisement_data():
            data = adv.manufacturer_data.get(VICTRON)
            if data is not None:
                heard[device.address] = (data, adv.rssi)
            if all(heard.get(a, (None,))[0] == d for a, d in wanted.items()):
                return heard
    raise AssertionError("unreachable")


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=5)], indirect=True)
async def test_active_scan_on_the_serving_adapter_hears_every_broadcaster(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    beacons = [await Beacon(f"hci{i}", VICTRON, record(i), name=f"B{i}").start()
               for i in (2, 3, 4)]
    wanted = {virtual_bus.address_of(f"hci{i}"): record(i) for i in (2, 3, 4)}
    try:
        async with BleakScanner(bluez={"adapter": "hci0"}) as scanner:
            heard = await hear(scanner, wanted)
            assert all(-60 < rssi < -40 for _, rssi in heard.values())
            # a beacon's new data reaches the scanner
            beacons[0].update(record(100))
            await hear(scanner, {virtual_bus.address_of("hci2"): record(100)})
            # meanwhile hci0 still advertises and serves: a central connects and reads
            async with BleakClient(virtual_bus.address_of("hci0"),
                                   bluez={"adapter": "hci1"}) as client:
                assert await client.read_gatt_char(READ_CHAR) == b"hello"
            # the scanner does not hear its own adapter's advertisement
            assert virtual_bus.address_of("hci0") not in heard
    finally:
        for beacon in beacons:
            await beacon.stop()


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=4, experimental=True)],
                         indirect=True)
async def test_passive_scan_reports_only_matching_broadcasters_without_names(
    virtual_bus: VirtualBus, peripheral: Peripheral
) -> None:
    victron = await Beacon("hci2", VICTRON, record(1), name="SmartLithium").start()
    other = await Beacon("hci3", 0x004C, b"\x02\x15" + bytes(8)).start()
    try:
        async with BleakScanner(
            scanning_mode="passive", bluez={"adapter": "hci0", "or_patterns": [VICTRON_PATTERN]}
        ) as scanner:
            address = virtual_bus.address_of("hci2")
            await hear(scanner, {address: record(1)})
            victron.update(record(2))
            await hear(scanner, {address: record(2)})
            seen = scanner.discovered_devices_and_advertisement_data
            assert virtual_bus.address_of("hci3") not in seen
            assert not seen[address][1].local_name  # no scan request, no scan response
    finally:
        await victron.stop()
        await other.stop()


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=3)], indirect=True)
async def test_passive_scan_needs_experimental_bluez(virtual_bus: VirtualBus) -> None:
    scanner = BleakScanner(
        scanning_mode="passive", bluez={"adapter": "hci0", "or_patterns": [VICTRON_PATTERN]}
    )
    with pytest.raises(BleakError, match="experimental"):
        await scanner.start()


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=3)], indirect=True)
async def test_silenced_beacon_is_no_longer_on_the_air(virtual_bus: VirtualBus) -> None:
    beacon = await Beacon("hci2", VICTRON, record(1)).start()
    assert [a["adapter"] for a in await virtual_bus.advertisements()] == ["/org/bluez/hci2"]
    await beacon.stop()
    assert await virtual_bus.advertisements() == []
