"""The radio edge: Victron manufacturer data heard on one adapter, through bleak and BlueZ.

The daemon's own adapter keeps advertising the BMS's readout and serving its GATT service
while it scans: BlueZ allows both at once.  Two ways to scan (``scan`` in the config):

* ``passive``: an AdvertisementMonitor1 with the pattern "manufacturer data starting
  E1 02 10" (Victron's company id, then "product advertisement").  No scan requests go out,
  so the radio spends less air time and the devices' batteries nothing; BlueZ 5.66 offers it
  only when bluetoothd runs with ``--experimental`` (docs/sources.md, Bluetooth).
* ``active``: an ordinary discovery session (StartDiscovery); works on every BlueZ.
* ``auto`` (the default): passive when BlueZ offers it, else active, said once in the log.

Everything else (which device, which nonce, which key) is decided by the caller's
``on_advert``; this module only turns bleak's callbacks into ``(address, data, rssi)``.
:class:`MemoryRadio` is the in-memory implementation the unit tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import structlog

from gatt.readout import VICTRON_COMPANY_ID

log = structlog.get_logger("smallbms.source.victron")

SCAN_MODES = ("auto", "passive", "active")
STOP_TIMEOUT_S = 5.0
PATTERN = b"\xe1\x02\x10"  # company 0x02E1 little-endian, then 0x10 "product advertisement"

OnAdvert = Callable[[str, bytes, "int | None"], None]
"""``on_advert(address, manufacturer_data, rssi)``: address upper-case "AA:BB:…", the data
for company 0x02E1 without the company id, RSSI in dBm when BlueZ gives one."""


class Radio(Protocol):
    """Where advertisements come from: BlueZ through bleak, or memory in tests."""

    def listen(self, on_advert: OnAdvert) -> contextlib.AbstractAsyncContextManager[str]:
        """Scan while the context is open; it yields the mode used ("passive"/"active")
        and raises (BleakError, a D-Bus error, OSError) when scanning cannot start."""
        ...


class BleakRadio:
    """Scans ``adapter`` with bleak's BlueZ backend."""

    def __init__(self, adapter: str, mode: str = "auto") -> None:
        if mode not in SCAN_MODES:
            raise ValueError(f"scan mode {mode!r} is not one of {', '.join(SCAN_MODES)}")
        self.adapter = adapter
        self.mode = mode
        self._passive_refused = False

    @contextlib.asynccontextmanager
    async def listen(self, on_advert: OnAdvert) -> AsyncIterator[str]:
        from bleak import BleakScanner  # noqa: PLC0415 (heavy; only a Bluetooth source needs it)
        from bleak.args.bluez import OrPattern  # noqa: PLC0415
        from bleak.assigned_numbers import AdvertisementDataType  # noqa: PLC0415
        from bleak.backends.device import BLEDevice  # noqa: PLC0415
        from bleak.backends.scanner import AdvertisementData  # noqa: PLC0415
        from bleak.exc import BleakError  # noqa: PLC0415

        def callback(device: BLEDevice, adv: AdvertisementData) -> None:
            data = adv.manufacturer_data.get(VICTRON_COMPANY_ID)
            if data is not None:
                on_advert(device.address.upper(), bytes(data), adv.rssi)

        scanner: BleakScanner | None = None
        used = "active"
        if self.mode in ("auto", "passive") and not self._passive_refused:
            scanner = BleakScanner(
                callback,
                scanning_mode="passive",
                bluez={"adapter": self.adapter,
                       "or_patterns": [OrPattern(
                           0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, PATTERN)]},
            )
            try:
                await scanner.start()
                used = "passive"
            except BleakError as exc:
                if self.mode == "passive":
                    raise
                self._passive_refused = True
                scanner = None
                log.info("victron_scan_active", adapter=self.adapter,
                         reason=f"passive scanning unavailable ({exc})")
        if scanner is None:
            scanner = BleakScanner(callback, bluez={"adapter": self.adapter})
            await scanner.start()
        try:
            yield used
        finally:
            # BlueZ may be gone already; never let a stop that hangs hold up a shutdown
            with contextlib.suppress(Exception):
                await asyncio.wait_for(scanner.stop(), STOP_TIMEOUT_S)


class MemoryRadio:
    """The in-memory radio: tests call ``send`` while a listener is open."""

    def __init__(self, mode: str = "passive") -> None:
        self.mode = mode
        self._listeners: list[OnAdvert] = []
        self.fail: BaseException | None = None

    @contextlib.asynccontextmanager
    async def listen(self, on_advert: OnAdvert) -> AsyncIterator[str]:
        if self.fail is not None:
            raise self.fail
        self._listeners.append(on_advert)
        try:
            yield self.mode
        finally:
            self._listeners.remove(on_advert)

    def send(self, address: str, data: bytes, rssi: int | None = -70) -> None:
        for listener in list(self._listeners):
            listener(address.upper(), data, rssi)

    @property
    def listening(self) -> bool:
        return bool(self._listeners)
