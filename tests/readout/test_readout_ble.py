"""End to end over the virtual BlueZ: BleService advertises, bleak scans on hci1, victron-ble
decodes; the figures are the core's own status, scenario by scenario; PIN change rotates the
key; a restart moves the nonce on; the advertisement fits BlueZ's 31-byte budget."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from readout_core_scenarios import SCENARIO_NAMES, settle
from readout_helpers import victron_decode
from test_readout_core_scenarios import assert_matches
from victron_ble.devices import LynxSmartBMS
from victron_ble.exceptions import AdvertisementKeyMismatchError

from bms_daemon.config import BleConfig
from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import History, Status
from bms_daemon.device import StatusListener
from bms_daemon.store import MemoryStore
from gatt.readout import VICTRON_COMPANY_ID, decode_manufacturer_data, parse_header
from gatt.readout_keys import read_key

pytestmark = pytest.mark.ble

FRAME_TIMEOUT_S = 20.0  # a frame follows a change within ~1 s; generous for a loaded machine
LEGACY_ADVERTISING_BYTES = 31


class ScenarioDevice:
    """DeviceControl over a real core that a test switches from scenario to scenario."""

    def __init__(self, bms: Bms) -> None:
        self.bms = bms
        self._listeners: list[StatusListener] = []

    def switch(self, bms: Bms) -> None:
        self.bms = bms
        for listener in tuple(self._listeners):
            listener(bms.status)

    def status(self) -> Status:
        return self.bms.status

    def history(self) -> History:
        return self.bms.history()

    def settings(self) -> Settings:
        return self.bms.settings

    def set_setting(self, name: str, value: object) -> Settings:
        settings = self.bms.set_setting(name, value)
        self.switch(self.bms)
        return settings

    def command(self, name: str, argument: float | None = None) -> str:
        return self.bms.command(name, argument, self.bms.status.t)

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


class Frames:
    """Manufacturer data for 0x02E1 as a bleak scanner on hci1 sees it, newest last."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self.without_readout = asyncio.Event()  # set by a report with no 0x02E1 data
        self._changed = asyncio.Condition()

    def on_advertisement(self, _device: Any, advertisement: Any) -> None:
        data = advertisement.manufacturer_data.get(VICTRON_COMPANY_ID)
        if data is None:
            self.without_readout.set()
            return
        self.without_readout.clear()
        if self.seen and self.seen[-1] == data:
            return
        self.seen.append(bytes(data))
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, accept: Callable[[bytes], bool], what: str) -> bytes:
        """The first frame (already seen or coming) that ``accept`` takes."""
        checked = 0
        try:
            async with asyncio.timeout(FRAME_TIMEOUT_S), self._changed:
                while True:
                    for frame in self.seen[checked:]:
                        if accept(frame):
                            return frame
                    checked = len(self.seen)
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no advertisement {what} within {FRAME_TIMEOUT_S} s "
                                 f"({len(self.seen)} frames seen)") from None


@contextlib.asynccontextmanager
async def scanning() -> AsyncIterator[Frames]:
    from bleak import BleakScanner  # noqa: PLC0415

    frames = Frames()
    scanner = BleakScanner(frames.on_advertisement, bluez={"adapter": "hci1"})
    await scanner.start()
    try:
        yield frames
    finally:
        await scanner.stop()


@contextlib.asynccontextmanager
async def serving(device: ScenarioDevice, store: MemoryStore) -> AsyncIterator[None]:
    from gatt.service import BleService  # noqa: PLC0415

    service = BleService(device, BleConfig(), store)
    task = asyncio.create_task(service.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def figures_of(status: Status, key: bytes) -> Callable[[bytes], bool]:
    """Accept a frame whose decoded record is the one ``status`` gives (same key)."""
    from gatt.readout import pack_record, readout_from_status  # noqa: PLC0415

    wanted = readout_from_status(status)
    expected = pack_record(wanted)

    def accept(frame: bytes) -> bool:
        if frame[7] != key[0]:
            return False
        return pack_record(decode_manufacturer_data(frame, key)) == expected

    return accept


async def test_scenarios_over_the_air_decode_in_victron_ble_like_the_core_status(
    virtual_bus: Any,
) -> None:
    store = MemoryStore()
    first_bms, _ = settle(SCENARIO_NAMES[0])
    device = ScenarioDevice(first_bms)
    async with scanning() as frames, serving(device, store):
        nonces: list[int] = []
        for name in SCENARIO_NAMES:
            bms, status = settle(name)
            device.switch(bms)
            key = await _key(store)
            frame = await frames.wait_for(figures_of(status, key), f"for {name!r}")
            assert_matches(status, frame, key)  # victron-ble reads the core's figures
            nonces.append(parse_header(frame).nonce)
        assert nonces == sorted(set(nonces))  # one new nonce per change, increasing

        # the advertisement as BlueZ counts it: flags + manufacturer data within 31 bytes,
        # connectable, name in the scan response, one manufacturer-data entry
        ads = await virtual_bus.advertisements()
        ours = [ad for ad in ads if "E102" in str(ad.get("adv_data", "")).upper()]
        assert ours, ads
        advert = ours[-1]
        assert not advert.get("last_error"), advert
        adv_data = bytes.fromhex(advert["adv_data"])
        assert len(adv_data) <= LEGACY_ADVERTISING_BYTES
        assert adv_data[:3] == bytes.fromhex("020106")  # flags first
        assert adv_data.count(bytes.fromhex("1bffe102")) == 1  # one 28-byte manufacturer AD
        assert advert["connectable"] is True
        assert b"smallBMS NG" in bytes.fromhex(advert["scan_response"])


async def test_pin_change_rotates_the_key_on_air(virtual_bus: Any) -> None:
    store = MemoryStore()
    bms, status = settle("normal")
    device = ScenarioDevice(bms)
    async with scanning() as frames, serving(device, store):
        old_key = await _key(store)
        before = await frames.wait_for(figures_of(status, old_key), "with the first key")
        device.set_setting("pin", "975310")
        after = await frames.wait_for(lambda f: f[7] != old_key[0], "with a new key byte")
        new_key = read_key(store)
        assert new_key is not None
        assert new_key[0] != old_key[0]
        assert after[7] == new_key[0]
        with pytest.raises(AdvertisementKeyMismatchError):
            LynxSmartBMS(old_key.hex()).parse(after)
        decoded = victron_decode(after, new_key)
        assert decoded.get_soc() == pytest.approx(status.soc, abs=0.05 + 1e-9)
        assert parse_header(after).nonce > parse_header(before).nonce


async def test_restart_keeps_the_key_and_moves_the_nonce_on(virtual_bus: Any) -> None:
    store = MemoryStore()
    bms, status = settle("normal")
    device = ScenarioDevice(bms)
    async with scanning() as frames:
        async with serving(device, store):
            key = await _key(store)
            before = await frames.wait_for(figures_of(status, key), "before the restart")
        frames.seen.clear()
        async with serving(device, store):
            after = await frames.wait_for(
                lambda f: parse_header(f).nonce != parse_header(before).nonce,
                "after the restart")
    assert after[7] == key[0]
    assert parse_header(after).nonce > parse_header(before).nonce
    assert_matches(status, after, key)


async def test_readout_off_removes_the_data_but_keeps_advertising(virtual_bus: Any) -> None:
    store = MemoryStore()
    bms, status = settle("normal")
    device = ScenarioDevice(bms)
    async with scanning() as frames, serving(device, store):
        key = await _key(store)
        await frames.wait_for(figures_of(status, key), "before switching it off")
        device.set_setting("instant_readout", False)
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            await frames.without_readout.wait()  # a scan report without the readout
        ads = await virtual_bus.advertisements()
        assert all("E102" not in str(ad.get("adv_data", "")).upper() for ad in ads)
        assert ads  # still advertising without the readout ...
        assert all(ad["connectable"] for ad in ads)  # ... and still connectable


async def _key(store: MemoryStore) -> bytes:
    """The key BleService made (it creates it at construction)."""
    key = read_key(store)
    assert key is not None
    return key
