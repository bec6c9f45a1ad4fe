"""BleService through real D-Bus: bless <-> the virtual BlueZ <-> bleak (no Bluetooth needed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from ble_server_fakes import Clock, FakeConfig, FakeDevice, sample_status
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZClientArgs, BlueZScannerArgs
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError, BleakGATTProtocolError

from bms_daemon.store import MemoryStore
from gatt import codec, profile, security
from gatt.service import BLUETOOTH_ON_AT_START_S, BleService
from gatt.virtual.bus import VirtualBus, start_virtual_bus
from gatt.virtual.config import WorldConfig

pytestmark = pytest.mark.ble
SCAN_ON: BlueZScannerArgs = {"adapter": "hci1"}
CENTRAL: BlueZClientArgs = {"adapter": "hci1"}
SECOND: BlueZClientArgs = {"adapter": "hci2"}
WAIT_S = 10.0


@contextlib.asynccontextmanager
async def serving(device: FakeDevice) -> AsyncIterator[BleService]:
    service = BleService(device, FakeConfig(), MemoryStore())
    task = asyncio.create_task(service.run())
    try:
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def first_advertisement() -> tuple[BLEDevice, AdvertisementData]:
    async with asyncio.timeout(WAIT_S), BleakScanner(bluez=SCAN_ON) as scanner:
        async for found, adv in scanner.advertisement_data():
            if adv.local_name == "smallBMS NG":
                return found, adv
    raise AssertionError("no advertisement")  # pragma: no cover - the loop only ends by return


async def login(client: BleakClient, pin: str = "000000") -> security.ClientSession:
    challenge = security.decode_challenge(await client.read_gatt_char(profile.uuid_of("auth")))
    response, session = security.answer_challenge(pin, challenge)
    await client.write_gatt_char(profile.uuid_of("auth"), response, response=True)
    return session


async def test_advertisement_fits_the_readout_and_names_the_device(
        virtual_bus: VirtualBus) -> None:
    async with serving(FakeDevice()):
        _, adv = await first_advertisement()
    assert list(adv.manufacturer_data) == [0x02E1]
    payload = adv.manufacturer_data[0x02E1]
    assert payload[:2] == b"\x10\x02"
    assert len(payload) == 8 + 16  # header + a full 0x0A record: the 31-byte budget
    assert adv.service_uuids == []


async def test_a_central_pairs_authenticates_reads_writes_and_gets_results(
        virtual_bus: VirtualBus) -> None:
    device = FakeDevice()
    async with serving(device) as service:
        found, _ = await first_advertisement()
        async with BleakClient(found, bluez=CENTRAL, timeout=WAIT_S) as client:
            async with asyncio.timeout(WAIT_S):
                while not service.connected:  # noqa: ASYNC110 - Device1 signal, no event here
                    await asyncio.sleep(0.01)
            uuids = {s.uuid for s in client.services}
            assert {s.uuid for s in profile.SERVICES} <= uuids
            assert await client.read_gatt_char(profile.uuid_of("model")) == b"smallBMS NG"
            with pytest.raises(BleakDBusError, match="Not paired"):
                await client.read_gatt_char(profile.uuid_of("status"))
            await client.pair()  # no agent of ours: the daemon's Just Works agent answers
            with pytest.raises(BleakGATTProtocolError) as refused:
                await client.read_gatt_char(profile.uuid_of("status"))
            assert refused.value.code == profile.ATT_INSUFFICIENT_AUTHORIZATION
            session = await login(client)
            for ch in profile.CHARACTERISTICS.values():
                if ch.readable:
                    value = await client.read_gatt_char(ch.uuid)
                    # the battery source's own alarms: empty when it reports none
                    assert value or ch.key == "source_notes", ch.key
            view = codec.decode_status(await client.read_gatt_char(profile.uuid_of("status")))
            assert view.soc == device.status().soc

            results: asyncio.Queue[codec.CommandResult] = asyncio.Queue()
            await client.start_notify(profile.uuid_of("control_point"),
                                      lambda _c, data: results.put_nowait(
                                          codec.decode_result(bytes(data))))
            # the data is masked for the session that asked (docs/security.md)
            floor = profile.uuid_of("setting.discharge_floor")
            body = codec.SETTING_CODECS["discharge_floor"].encode(15.0)
            await client.write_gatt_char(floor, security.seal(session.key, floor, 1, body),
                                         response=True)
            assert device.settings().discharge_floor == 15.0
            bad = codec.SETTING_CODECS["discharge_floor"].encode(50.0)  # above the warning
            with pytest.raises(BleakGATTProtocolError) as rejected:
                await client.write_gatt_char(floor, security.seal(session.key, floor, 2, bad),
                                             response=True)
            assert rejected.value.code == profile.ATT_VALUE_REJECTED
            explained = await asyncio.wait_for(results.get(), WAIT_S)
            assert explained.seq == 2
            message = security.mask_result(session.key, 2, explained.data).decode()
            assert "low_soc_warning" in message
            assert device.settings().discharge_floor == 15.0

            cp = profile.uuid_of("control_point")
            await client.write_gatt_char(
                cp, security.seal(session.key, cp, 3, codec.encode_set_soc(40)), response=True)
            done = await asyncio.wait_for(results.get(), WAIT_S)
            assert (done.seq, done.ok) == (3, True)
            assert device.status().soc == 40


async def test_status_notifications_follow_the_bms(virtual_bus: VirtualBus) -> None:
    device = FakeDevice()
    async with serving(device):
        found, _ = await first_advertisement()
        async with BleakClient(found, bluez=CENTRAL, timeout=WAIT_S) as client:
            await client.pair()
            await login(client)
            seen: asyncio.Queue[float | None] = asyncio.Queue()
            await client.start_notify(profile.uuid_of("status"),
                                      lambda _c, data: seen.put_nowait(
                                          codec.decode_status(bytes(data)).soc))
            for soc in (61.0, 62.5, 63.0):
                device.publish(sample_status(soc=soc))
                async with asyncio.timeout(WAIT_S):
                    while await seen.get() != soc:
                        pass


async def test_bluez_restarting_while_connected_reregisters_within_seconds(
        virtual_bus: VirtualBus) -> None:
    device = FakeDevice()
    async with serving(device) as service:
        found, _ = await first_advertisement()
        client = BleakClient(found, bluez=CENTRAL, timeout=WAIT_S)
        await client.connect()
        await virtual_bus.restart_bluetoothd()
        with contextlib.suppress(BleakError, EOFError, OSError):
            await client.disconnect()
        async with asyncio.timeout(WAIT_S):
            while not service.advertising or service.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        found, _ = await first_advertisement()
        async with BleakClient(found, bluez=CENTRAL, timeout=WAIT_S) as again:
            await again.pair()
            await login(again)
            view = codec.decode_status(await again.read_gatt_char(profile.uuid_of("status")))
            assert view.soc == device.status().soc


async def refused_soon(client: BleakClient, uuid: str) -> int:
    """The ATT error of the first refused read: sessions close as soon as the daemon sees
    BlueZ's Device1.Connected change, which travels separately from our reads."""
    async with asyncio.timeout(WAIT_S):
        while True:
            try:
                await client.read_gatt_char(uuid)
            except BleakGATTProtocolError as err:
                return int(err.code)


async def test_a_second_central_neither_shares_nor_ends_the_first_ones_session(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with start_virtual_bus(WorldConfig(adapters=3)) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        async with serving(FakeDevice()) as service:
            found, _ = await first_advertisement()
            status = profile.uuid_of("status")
            async with BleakClient(found, bluez=CENTRAL, timeout=WAIT_S) as first:
                await first.pair()
                await login(first)
                assert await first.read_gatt_char(status)
                second = BleakClient(bus.address_of("hci0"), bluez=SECOND, timeout=WAIT_S)
                await second.connect()
                try:
                    # unpaired: it may not even subscribe (encrypt-notify, as real BlueZ)
                    with pytest.raises(BleakError):
                        await second.start_notify(status, lambda _c, _d: None)
                    await second.pair()
                    with pytest.raises(BleakGATTProtocolError) as refused:
                        await second.read_gatt_char(status)  # paired, but no PIN
                    assert refused.value.code == profile.ATT_INSUFFICIENT_AUTHORIZATION
                    assert service.connected
                    assert await first.read_gatt_char(status)  # the owner's session stays
                finally:
                    await second.disconnect()
                assert await first.read_gatt_char(status)


async def test_bluetooth_off_the_window_starts_when_bluez_appears_and_a_central_finishes_the_job(
        virtual_bus: VirtualBus) -> None:
    """Bluetooth off in the settings, bluetoothd missing at start and back only when the
    daemon's clock says 40 s: the 30 s re-enable window starts then (§4.5), and a central that
    connects in it is not dropped at 30 s: it logs in and switches Bluetooth on again."""
    device = FakeDevice()
    device.set_setting("bluetooth", False)
    clock = Clock()
    restart = asyncio.create_task(virtual_bus.restart_bluetoothd(down=5.0))
    async with asyncio.timeout(WAIT_S):
        while await virtual_bus.bluez_owner():  # noqa: ASYNC110 - polled over D-Bus
            await asyncio.sleep(0.01)
    service = BleService(device, FakeConfig(), MemoryStore(), clock=clock)
    task = asyncio.create_task(service.run())
    clock.now += 40.0  # bluetoothd is still away: no window has been spent on it
    try:
        await restart
        found, _ = await first_advertisement()  # the window is open now
        async with BleakClient(found, bluez=CENTRAL, timeout=WAIT_S) as client:
            async with asyncio.timeout(WAIT_S):
                while not service.connected:  # noqa: ASYNC110 - Device1 signal, no event here
                    await asyncio.sleep(0.01)
            levels: asyncio.Queue[int] = asyncio.Queue()
            await client.start_notify(profile.uuid_of("battery_level"),
                                      lambda _c, data: levels.put_nowait(data[0]))
            clock.now += BLUETOOTH_ON_AT_START_S + 10  # the window is over, the job is not
            device.publish(sample_status(soc=55.0))
            async with asyncio.timeout(WAIT_S):  # the service has looked at its clock since
                while await levels.get() != 55:
                    pass
            assert service.advertising
            await client.pair()
            session = await login(client)
            uuid = profile.uuid_of("setting.bluetooth")
            body = codec.SETTING_CODECS["bluetooth"].encode(True)
            await client.write_gatt_char(uuid, security.seal(session.key, uuid, 1, body),
                                         response=True)
            assert device.settings().bluetooth is True
        assert service.advertising
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
