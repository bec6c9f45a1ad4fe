"""Finding smallbms devices: scanning (with the instant readout decoded when the key is
given), and picking the one device a command talks to.

Every scan is bounded in time, also when BlueZ itself never answers, and reports failures
as the typed errors of ``gatt.client_errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData

from gatt import readout
from gatt.client_defaults import SCAN_TIMEOUT_DEFAULT
from gatt.client_errors import NO_BLUEZ_HINT, ClientError, DeviceNotFound, NoBluetooth, translating

# Our own choices, in one place (documented in docs/client.md).
AMBIGUITY_GRACE_S = 1.0  # s to keep listening after a first smallbms, to notice a second one
BLUEZ_ANSWER_TIMEOUT_S = 10.0  # s for BlueZ to answer the first calls of a scan
VICTRON_COMPANY_ID = 0x02E1
VIRTUAL_BLUEZ_INTERFACE = "org.smallbms.VirtualBlueZ1"  # gatt/virtual's control interface
VIRTUAL_CENTRAL_ADAPTER = "hci1"  # on the virtual BlueZ, hci0 is the daemon's peripheral
_PROBE_TIMEOUT_S = 2.0  # s to ask org.bluez whether it is the virtual one
_ADDRESS_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScanResult:
    """One device seen while scanning; ``readout`` is the decoded instant readout if any."""

    address: str
    name: str | None
    rssi: int
    smallbms: bool
    readout: dict[str, Any] | None = None
    readout_note: str | None = None  # why the readout is not shown (no key, wrong key...)


def bluez_args(adapter: str | None) -> dict[str, Any]:
    """bleak's BlueZ arguments for an adapter name (None: bleak chooses)."""
    return {"adapter": adapter} if adapter else {}


async def default_adapter() -> str | None:
    """The adapter to use when the user names none: ``hci1`` on the virtual BlueZ (whose
    ``hci0`` is the daemon's own, and which bleak would otherwise pick), else None (bleak's
    choice).  Any problem reaching the bus answers None: bleak then reports it properly."""
    from dbus_fast import BusType, Message, MessageType  # noqa: PLC0415
    from dbus_fast.aio import MessageBus  # noqa: PLC0415

    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.bluez",
                        path="/org/bluez",
                        interface="org.freedesktop.DBus.Introspectable",
                        member="Introspect",
                    )
                )
            finally:
                bus.disconnect()
    except Exception:  # any failure means "not the virtual bus"
        return None
    if reply is None or reply.message_type != MessageType.METHOD_RETURN or not reply.body:
        return None
    return VIRTUAL_CENTRAL_ADAPTER if VIRTUAL_BLUEZ_INTERFACE in str(reply.body[0]) else None


@contextlib.asynccontextmanager
async def _bluez_answers(listening: float) -> AsyncIterator[None]:
    """Bound a scan: a bus whose org.bluez never answers (a wedged bluetoothd, a bus that
    cannot activate it) would otherwise hang the command forever."""
    try:
        async with asyncio.timeout(listening + BLUEZ_ANSWER_TIMEOUT_S):
            yield
    except TimeoutError:
        raise NoBluetooth(
            f"BlueZ did not answer on the system bus within {BLUEZ_ANSWER_TIMEOUT_S:g} s; "
            f"is bluetoothd running (systemctl status bluetooth)? Or {NO_BLUEZ_HINT}"
        ) from None


def is_address(text: str) -> bool:
    """``AA:BB:CC:DD:EE:FF``, as opposed to an advertised name."""
    return bool(_ADDRESS_RE.match(text))


def _looks_like_smallbms(name: str | None, adv: AdvertisementData) -> bool:
    """A smallbms advertises the Victron BMS readout record, or its (default) name."""
    data = adv.manufacturer_data.get(VICTRON_COMPANY_ID)
    if data is not None and readout.is_bms_readout(bytes(data)):
        return True
    return bool(name) and "smallbms" in (name or "").lower()


def _scan_result(device: BLEDevice, adv: AdvertisementData, key: bytes | None) -> ScanResult:
    name = adv.local_name or device.name
    data = adv.manufacturer_data.get(VICTRON_COMPANY_ID)
    decoded: dict[str, Any] | None = None
    note: str | None = None
    if data is None or not readout.is_bms_readout(bytes(data)):
        note = "none (instant readout off?)" if _looks_like_smallbms(name, adv) else None
    elif key is None:
        note = "encrypted (give --key, see `smallbms-client key`)"
    else:
        try:
            record = readout.decode_manufacturer_data(bytes(data), key)
        except readout.ReadoutError as exc:
            note = str(exc)
        else:
            decoded = record.as_dict()
    return ScanResult(
        address=device.address,
        name=name,
        rssi=adv.rssi,
        smallbms=_looks_like_smallbms(name, adv),
        readout=decoded,
        readout_note=note,
    )


async def scan(
    *,
    duration: float | None = None,
    adapter: str | None = None,
    key: bytes | None = None,
    all_devices: bool = False,
) -> list[ScanResult]:
    """Listen for ``duration`` seconds; every smallbms heard (or every device with
    ``all_devices``), strongest first, with the instant readout decoded when ``key`` fits."""
    seen: dict[str, tuple[BLEDevice, AdvertisementData]] = {}

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        seen[device.address] = (device, adv)

    listen = duration if duration is not None else SCAN_TIMEOUT_DEFAULT
    async with _bluez_answers(listen), translating("scanning"):
        scanner = BleakScanner(on_advertisement, bluez=bluez_args(adapter))  # type: ignore[arg-type]
        async with scanner:
            await asyncio.sleep(listen)
    results = [_scan_result(d, a, key) for d, a in seen.values()]
    if not all_devices:
        results = [r for r in results if r.smallbms]
    return sorted(results, key=lambda r: -r.rssi)


async def find_device(
    device: str | None, *, wait_s: float | None = None, adapter: str | None = None
) -> BLEDevice:
    """The advertising device named ``device`` (a name or an address), or, when ``device`` is
    None, the only smallbms in range.  Raises ``DeviceNotFound`` (or ``ClientError`` when
    several smallbms answer and none was named)."""
    wait = wait_s if wait_s is not None else SCAN_TIMEOUT_DEFAULT
    found: dict[str, BLEDevice] = {}
    first = asyncio.Event()

    def matches(d: BLEDevice, adv: AdvertisementData) -> bool:
        name = adv.local_name or d.name
        if device is None:
            return _looks_like_smallbms(name, adv)
        if is_address(device):
            return d.address.lower() == device.lower()
        return name == device

    def on_advertisement(d: BLEDevice, adv: AdvertisementData) -> None:
        if matches(d, adv):
            found[d.address] = d
            first.set()

    scanner = BleakScanner(on_advertisement, bluez=bluez_args(adapter))  # type: ignore[arg-type]
    async with _bluez_answers(wait + AMBIGUITY_GRACE_S), translating("looking for the device"), \
            scanner:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.wait(), wait)
        if device is None and found:
            # a moment more to notice a second smallbms, so we never pick one at random
            await asyncio.sleep(AMBIGUITY_GRACE_S)
    if not found:
        what = f"no device {device!r}" if device else "no smallbms"
        raise DeviceNotFound(
            f"{what} found within {wait:g} s; is it powered, in range and advertising "
            "(Bluetooth on)? `smallbms-client scan` lists what is in range"
        )
    if len(found) > 1 and (device is None or not is_address(device)):
        raise ClientError(
            f"{len(found)} devices match: {', '.join(sorted(found))}; choose one with "
            "--device ADDRESS"
        )
    return next(iter(found.values()))
