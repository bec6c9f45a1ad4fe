"""Probe case, central side: bleak against the peripheral's bless server and readout advert.

Scans until both the service advertisement and the readout-layout manufacturer data have been
seen, checks the manufacturer data arrived byte for byte, then connects, reads, writes, reads
back and collects two notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from advert import READOUT_LAYOUT, VICTRON_COMPANY_ID
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from e2elib import Results, await_flag, log, signal
from probe_periph import CHARACTERISTIC, INITIAL, SERVICE

ADAPTER = "hci0"
PERIPH_READY_TIMEOUT_S = 240.0
SCAN_TIMEOUT_S = 60.0  # BlueZ restarts LE discovery about every 10 s; the emulator reports
                       # adverts only on scan/advertise enable events, so leave room for several
STEP_TIMEOUT_S = 30.0
NOTIFICATIONS_WANTED = 2


async def scan(results: Results) -> BLEDevice | None:
    found_service: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
    readout: list[bytes] = []

    def seen(device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.manufacturer_data.get(VICTRON_COMPANY_ID)
        if data is not None and not readout:
            readout.append(data)
            log("readout advert from", device.address, data.hex())
        if SERVICE in adv.service_uuids and not found_service.done():
            log("service advert from", device.address, adv.local_name)
            found_service.set_result(device)

    scanner = BleakScanner(seen, bluez={"adapter": ADAPTER})
    await scanner.start()
    device: BLEDevice | None = None
    try:
        device = await asyncio.wait_for(found_service, SCAN_TIMEOUT_S)
        for _ in range(int(SCAN_TIMEOUT_S * 10)):
            if readout:
                break
            await asyncio.sleep(0.1)
    except TimeoutError:
        pass
    finally:
        await scanner.stop()
    results.check("service advertisement seen by bleak", device is not None)
    results.check("readout-layout manufacturer data (24 B after 0x02E1) arrives intact",
                  readout == [READOUT_LAYOUT], readout[0].hex() if readout else "not seen")
    return device


async def session(device: BLEDevice, results: Results) -> None:
    client = BleakClient(device, timeout=STEP_TIMEOUT_S, bluez={"adapter": ADAPTER})
    await client.connect()
    results.check("connect (first attempt, no retry)", client.is_connected)
    try:
        first = await asyncio.wait_for(client.read_gatt_char(CHARACTERISTIC), STEP_TIMEOUT_S)
        results.check("read", bytes(first) == INITIAL, bytes(first))
        await asyncio.wait_for(
            client.write_gatt_char(CHARACTERISTIC, b"written-by-bleak", response=True),
            STEP_TIMEOUT_S)
        back = await asyncio.wait_for(client.read_gatt_char(CHARACTERISTIC), STEP_TIMEOUT_S)
        results.check("write then read back", bytes(back) == b"written-by-bleak", bytes(back))
        got: list[bytes] = []
        enough = asyncio.Event()

        def on_notify(_: object, data: bytearray) -> None:
            got.append(bytes(data))
            if len(got) >= NOTIFICATIONS_WANTED:
                enough.set()

        await client.start_notify(CHARACTERISTIC, on_notify)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), STEP_TIMEOUT_S)
        await client.stop_notify(CHARACTERISTIC)
        results.check("notifications arrive", len(got) >= NOTIFICATIONS_WANTED, got)
    finally:
        await client.disconnect()
    results.check("disconnect", not client.is_connected)


async def main() -> int:
    results = Results("probe")
    try:
        if not await await_flag("probe.periph.ready", PERIPH_READY_TIMEOUT_S):
            results.check("peripheral ready", False, "no probe.periph.ready flag")
            return 1
        device = await scan(results)
        if device is not None:
            await session(device, results)
    except Exception as e:
        results.check("probe session completes", False, f"{type(e).__name__}: {e}")
    finally:
        signal("probe.central.done")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
