"""The radio edge on the virtual BlueZ: bleak hears Victron data on the daemon's adapter."""

from __future__ import annotations

import asyncio

import pytest
from bleak.exc import BleakError

from bms_daemon.sources.victron.radio import BleakRadio
from gatt.virtual.beacon import Beacon
from gatt.virtual.bus import VirtualBus
from gatt.virtual.config import WorldConfig

pytestmark = pytest.mark.ble

VICTRON = 0x02E1
DATA = b"\x10\x02\xe5\xa0\x05\x01\x00\x11" + bytes(16)


async def heard_with(radio: BleakRadio, address: str) -> tuple[str, list[tuple[str, bytes]]]:
    heard: list[tuple[str, bytes]] = []
    got = asyncio.Event()

    def on_advert(addr: str, data: bytes, rssi: int | None) -> None:
        assert rssi is not None
        heard.append((addr, data))
        if addr == address:
            got.set()

    async with radio.listen(on_advert) as mode, asyncio.timeout(20):
        await got.wait()
    return mode, heard


@pytest.mark.parametrize(
    ("virtual_bus", "mode"),
    [(WorldConfig(adapters=4, experimental=True), "passive"), (WorldConfig(adapters=4), "active")],
    indirect=["virtual_bus"],
)
async def test_auto_scans_passively_when_bluez_offers_it(
    virtual_bus: VirtualBus, mode: str
) -> None:
    victron = await Beacon("hci2", VICTRON, DATA).start()
    other = await Beacon("hci3", 0x004C, b"\x02\x15" + bytes(8)).start()
    try:
        used, heard = await heard_with(BleakRadio("hci0"), virtual_bus.address_of("hci2"))
    finally:
        await victron.stop()
        await other.stop()
    assert used == mode
    assert (virtual_bus.address_of("hci2"), DATA) in heard
    assert all(addr != virtual_bus.address_of("hci3") for addr, _ in heard)


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=3)], indirect=True)
async def test_passive_only_says_why_it_cannot_scan(virtual_bus: VirtualBus) -> None:
    with pytest.raises(BleakError, match="experimental"):
        await heard_with(BleakRadio("hci0", "passive"), virtual_bus.address_of("hci2"))


def test_unknown_scan_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="loud"):
        BleakRadio("hci0", "loud")
