"""The real daemon hearing Victron batteries and a SmartShunt on the virtual BlueZ.

Three test broadcasters, each on its own virtual adapter, send records 0x05 and 0x02 as the
devices do (checked against victron-ble in tests/sources/test_victron_records.py) while the
daemon advertises its own readout and serves GATT on hci0, the adapter it scans on.  The
daemon's status follows the batteries: a cell under 3.10 V raises PRE-ALARM, under 2.80 V LOAD
floats after the pre-alarm lead; a silenced battery raises W-B05 then A-B05.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from daemon_harness import DaemonProcess

from bms_daemon.core.protection import PREALARM_LEAD_S
from bms_daemon.sources.victron import encode
from bms_daemon.store import FileStore
from gatt.readout import decode_manufacturer_data
from gatt.readout_keys import read_key
from gatt.virtual.beacon import Beacon
from gatt.virtual.bus import VirtualBus
from gatt.virtual.config import WorldConfig

pytestmark = [pytest.mark.ble, pytest.mark.slow]

KEYS = [bytes([k]) + bytes.fromhex("f4d0395b7d1a876c0c33ecb9e70dcd") for k in (0x11, 0x22, 0x33)]
HEALTHY = [3.30, 3.31, 3.29, 3.30]
VICTRON = 0x02E1
SEND_PERIOD_S = 0.5
STEP_TIMEOUT_S = 90.0


class Device:
    """A Victron device on its own adapter: a new frame whenever its figures are set."""

    def __init__(self, bus: VirtualBus, adapter: str, encoder: encode.DeviceEncoder) -> None:
        self.address = bus.address_of(adapter)
        self.adapter = adapter
        self.encoder = encoder
        self.plain = b""
        self.override: bytes | None = None  # sent instead of a new frame (bad input)
        self.beacon: Beacon | None = None

    async def start(self, plain: bytes) -> None:
        self.plain = plain
        self.beacon = await Beacon(self.adapter, VICTRON, self.encoder.frame(plain)).start()

    def tick(self) -> None:
        if self.beacon is not None and self.beacon.on_air:
            data = self.override or self.encoder.frame(self.plain)
            self.beacon.update(data)

    async def stop(self) -> None:
        if self.beacon is not None:
            await self.beacon.stop()


@contextlib.asynccontextmanager
async def bank(bus: VirtualBus) -> AsyncIterator[list[Device]]:
    devices = [
        Device(bus, "hci2", encode.DeviceEncoder.battery(KEYS[0], nonce=100)),
        Device(bus, "hci3", encode.DeviceEncoder.battery(KEYS[1], nonce=40000)),
        Device(bus, "hci4", encode.DeviceEncoder.monitor(KEYS[2])),
    ]
    await devices[0].start(encode.lithium_record(HEALTHY, temperature=21))
    await devices[1].start(encode.lithium_record(HEALTHY, temperature=22))
    await devices[2].start(encode.monitor_record(voltage=13.2, current=-4.0, soc=80.0))

    async def send() -> None:
        while True:
            await asyncio.sleep(SEND_PERIOD_S)
            for device in devices:
                device.tick()

    sender = asyncio.create_task(send())
    try:
        yield devices
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        for device in devices:
            await device.stop()


def config(tmp_path: Path, devices: list[Device], max_age: str = "2s") -> Path:
    path = tmp_path / "victron.toml"
    path.write_text(
        f'[bms]\nstate_directory = "{tmp_path / "state"}"\nrate_hz = 10.0\n'
        '[ble]\nvirtual = "off"\n'
        '[gpio]\nremote_file = "remote"\nremote_debounce_ms = 0.0\n'
        '[logging]\nformat = "json"\nlevel = "info"\n'
        '[source]\ntype = "victron-ble"\n'
        f'max_age = "{max_age}"\n'
        'comms_warning = "2s"\ncomms_alarm = "10s"\n'
        'battery = { name = "Smart Lithium 12.8V/100Ah", cells = 4, capacity_ah = 100 }\n'
        "batteries = [\n"
        f'  {{ name = "house-1", address = "{devices[0].address}", key = "{KEYS[0].hex()}" }},\n'
        f'  {{ name = "house-2", address = "{devices[1].address}", key = "{KEYS[1].hex()}" }},\n'
        "]\n"
        f'monitor = {{ address = "{devices[2].address}", key = "{KEYS[2].hex()}" }}\n'
    )
    return path


async def readout_with_prealarm(address: str, key: bytes) -> None:
    """Scan from hci1 until the daemon's own readout says PRE-ALARM."""
    seen = asyncio.Event()

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.manufacturer_data.get(VICTRON)
        if device.address == address and data is not None:
            with contextlib.suppress(ValueError):
                if decode_manufacturer_data(data, key).prealarm:
                    seen.set()

    async with BleakScanner(on_advert, bluez={"adapter": "hci1"}), asyncio.timeout(30):
        await seen.wait()


async def wait_log(daemon: DaemonProcess, event: str, **fields: Any) -> dict[str, Any]:
    return await asyncio.to_thread(daemon.wait_log, event, STEP_TIMEOUT_S, **fields)


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=5)], indirect=True)
async def test_daemon_follows_bluetooth_batteries_while_it_advertises_and_serves(
    virtual_bus: VirtualBus, start_daemon: Any, tmp_path: Path
) -> None:
    async with bank(virtual_bus) as (house1, house2, shunt):
        daemon: DaemonProcess = start_daemon(config(tmp_path, [house1, house2, shunt]))
        await wait_log(daemon, "victron_listening")
        await wait_log(daemon, "outputs", load="high", charger="high", prealarm="floating")
        # a cell under 3.10 V: PRE-ALARM, LOAD still high
        fell = time.monotonic()
        house2.plain = encode.lithium_record([3.30, 3.05, 3.29, 3.30], temperature=22)
        await wait_log(daemon, "outputs", load="high", prealarm="high")
        # the daemon still advertises its own readout (PRE-ALARM on its IO line) and serves
        key = read_key(FileStore(tmp_path / "state"))
        assert key is not None
        await readout_with_prealarm(virtual_bus.address_of("hci0"), key)
        async with BleakClient(virtual_bus.address_of("hci0"),
                               bluez={"adapter": "hci1"}) as client:
            assert client.services.services
        # under 2.80 V: LOAD floats, not before the pre-alarm lead
        house2.plain = encode.lithium_record([3.30, 2.75, 3.29, 3.30], temperature=22)
        floated = await wait_log(daemon, "outputs", load="floating", prealarm="high")
        assert floated["discharge_reason"] == "cell under-voltage"
        # PRE-ALARM rose after ``fell``, LOAD floated at least the lead after it: a lower
        # bound that delays on a loaded machine can only lengthen
        assert time.monotonic() - fell >= PREALARM_LEAD_S
        # the cell recovers; then house-1 goes silent
        house2.plain = encode.lithium_record(HEALTHY, temperature=22)
        await house1.stop()
        await wait_log(daemon, "code_raised", code="W-B05")
        await wait_log(daemon, "code_raised", code="A-B05")
        await wait_log(daemon, "outputs", load="floating", charger="floating")
        assert daemon.proc.poll() is None
    assert daemon.terminate() == 0



async def source_check(path: Path, *options: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bms_daemon.cli", "source-check", "-c", str(path),
        "--seconds", "4", *options, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT_S)
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=5)], indirect=True)
async def test_source_check_shows_each_device_live(
    virtual_bus: VirtualBus, tmp_path: Path
) -> None:
    async with bank(virtual_bus) as devices:
        path = config(tmp_path, devices)
        code, out = await source_check(path, "--json")
        assert code == 0, out
        last = json.loads(out.strip().splitlines()[-1])
        (feed,) = last["feeds"].values()
        rows = {row["name"]: row for row in feed["devices"]}
        assert set(rows) == {"house-1", "house-2", "monitor"}
        for row in rows.values():
            assert -127 < row["rssi"] < 0
            assert row["age_s"] is not None
            assert row["accepted"] >= 1
        assert rows["house-1"]["figures"]["cells"] == HEALTHY
        assert rows["monitor"]["figures"]["current"] == -4.0
        assert last["readings"]["bank_current"] == -4.0
        assert not (tmp_path / "state").exists()  # no state touched, no output driven
        # a battery whose key changed (its PIN was changed): said, and no readings
        wrong = path.read_text().replace(KEYS[1].hex(), "99" + KEYS[1].hex()[2:])
        path.write_text(wrong)
        code, out = await source_check(path)
    assert code == 1, out
    assert "house-2" in out
    assert "wrong key" in out
    assert "NO FRESH READINGS" in out
    assert "RSSI" in out


@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=10)], indirect=True)
async def test_bad_radio_input_never_moves_the_outputs(
    virtual_bus: VirtualBus, start_daemon: Any, tmp_path: Path
) -> None:
    """Replayed and forged frames carrying dangerous cells, a short record, another key,
    another record type from a battery's address, and a flood of Victron-looking data from
    five other devices: no crash, no figure from any of it, the outputs stay as they were."""
    async with bank(virtual_bus) as (house1, house2, shunt):
        daemon: DaemonProcess = start_daemon(
            config(tmp_path, [house1, house2, shunt], max_age="8s"))
        await wait_log(daemon, "outputs", load="high", charger="high", prealarm="floating")
        first_bad = len(daemon.log)
        flood = [await Beacon(f"hci{i}", VICTRON, bytes(24)).start() for i in range(5, 10)]
        danger = encode.lithium_record([2.50, 2.50, 2.50, 2.50], temperature=22)
        current = house1.encoder.nonce
        forged_current = encode.manufacturer_data(  # the current nonce, other bytes
            0x05, danger, KEYS[0], current, encode.PRODUCT_SMART_LITHIUM)
        replayed = encode.manufacturer_data(  # an older nonce
            0x05, danger, KEYS[0], (current - 3) % 0x10000, encode.PRODUCT_SMART_LITHIUM)
        bad = [
            forged_current,
            replayed,
            encode.DeviceEncoder.battery(KEYS[0], nonce=current + 5).frame(danger)[:-3],
            encode.DeviceEncoder.battery(KEYS[1], nonce=current + 9).frame(danger),
            encode.DeviceEncoder.monitor(KEYS[0], nonce=current + 13).frame(
                encode.monitor_record(voltage=9.0, current=-300.0)),
        ]
        try:
            for n, frame in enumerate(bad):
                house1.override = frame
                for i, beacon in enumerate(flood):
                    beacon.update(bytes([0x10, 0x02, n, i, 0x05]) + bytes(19))
                await asyncio.sleep(1.0)
                house1.override = None
                await asyncio.sleep(1.0)
            await wait_log(daemon, "victron_truncated_record", device="house-1")
            await wait_log(daemon, "victron_wrong_key", device="house-1")
            await wait_log(daemon, "victron_other_record", device="house-1")
        finally:
            for beacon in flood:
                await beacon.stop()
        assert daemon.proc.poll() is None
    assert daemon.terminate() == 0
    during = [e for e in daemon.log[first_bad:] if e.get("event") in ("outputs", "code_raised")]
    # only the shutdown's own "outputs floating" may follow
    assert all(e.get("event") == "outputs" for e in during), during
    assert len(during) <= 1, during
