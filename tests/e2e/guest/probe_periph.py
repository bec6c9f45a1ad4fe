"""Probe case, peripheral side: the advertisement byte budget, then a minimal bless server.

Checks what real BlueZ accepts in one connectable legacy advertisement (the instant readout
layout with and without a 128-bit service UUID), then serves one read/write/notify
characteristic with bless for the central's bleak client, until the central is done.
"""

from __future__ import annotations

import asyncio
import sys

from advert import READOUT_LAYOUT, VICTRON_COMPANY_ID, Advertisement, register, unregister
from bless import (  # type: ignore[attr-defined]
    BlessGATTCharacteristic,
    BlessServer,
    GATTAttributePermissions,
    GATTCharacteristicProperties,
)
from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from e2elib import Results, await_flag, log, signal
from real_bluez import TOO_LONG_ERROR, TOO_LONG_MESSAGE

SERVICE = "5b1e0000-0000-4e2e-9000-000000000001"
CHARACTERISTIC = "5b1e0000-0000-4e2e-9000-000000000002"
INITIAL = b"hello-from-bless"
NOTIFY_PERIOD_S = 0.5
CENTRAL_TIMEOUT_S = 240.0
ADAPTER = "hci0"


async def advert_budget(bus: MessageBus, results: Results) -> None:
    """Real BlueZ's verdict on the readout layout next to a 128-bit UUID, and alone."""
    too_long = Advertisement(service_uuids=[SERVICE],
                             manufacturer_data={VICTRON_COMPANY_ID: READOUT_LAYOUT},
                             local_name="e2e-too-long")
    try:
        await register(bus, ADAPTER, "/e2e/adv/too_long", too_long)
    except DBusError as e:  # the refusal is the expected outcome
        results.check("readout layout + 128-bit service UUID is refused", True,
                      f"{e.type}: {e.text}")
        results.check("... with the error recorded in real_bluez.py (the virtual bus's model)",
                      (e.type, e.text) == (TOO_LONG_ERROR, TOO_LONG_MESSAGE),
                      f"{e.type}: {e.text}")
    else:
        results.check("readout layout + 128-bit service UUID is refused", False,
                      "BlueZ accepted 3 + 18 + 28 bytes in a 31-byte advertisement")
        await unregister(bus, ADAPTER, "/e2e/adv/too_long")
    fits = Advertisement(service_uuids=[],
                         manufacturer_data={VICTRON_COMPANY_ID: READOUT_LAYOUT},
                         local_name="e2e-readout")
    try:
        await register(bus, ADAPTER, "/e2e/adv/readout", fits)
    except Exception as e:
        results.check("readout layout alone (flags + 28 bytes) is accepted", False,
                      f"{type(e).__name__}: {e}")
    else:
        results.check("readout layout alone (flags + 28 bytes) is accepted", True,
                      "registered; the central checks it arrives intact")


async def main() -> int:
    results = Results("probe")
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    await advert_budget(bus, results)

    value = bytearray(INITIAL)

    def on_read(characteristic: BlessGATTCharacteristic, **_: object) -> bytearray:
        return value

    def on_write(characteristic: BlessGATTCharacteristic, data: bytearray, **_: object) -> None:
        value[:] = data
        characteristic.value = bytearray(data)
        log("write <-", bytes(data))

    server = BlessServer(name="e2e-probe", adapter=ADAPTER)
    server.read_request_func = on_read
    server.write_request_func = on_write
    await server.add_new_service(SERVICE)
    props = (GATTCharacteristicProperties.read | GATTCharacteristicProperties.write
             | GATTCharacteristicProperties.notify)
    perms = GATTAttributePermissions.readable | GATTAttributePermissions.writeable
    await server.add_new_characteristic(SERVICE, CHARACTERISTIC, props, bytearray(INITIAL), perms)
    await server.start()
    advertising = await server.is_advertising()
    results.check("bless server registered and advertising", advertising, f"adapter {ADAPTER}")
    signal("probe.periph.ready")

    async def tick() -> None:
        n = 0
        while True:
            await asyncio.sleep(NOTIFY_PERIOD_S)
            n += 1
            server.get_characteristic(CHARACTERISTIC).value = bytearray(b"tick-%d" % n)
            server.update_value(SERVICE, CHARACTERISTIC)

    ticker = asyncio.create_task(tick())
    done = await await_flag("probe.central.done", CENTRAL_TIMEOUT_S)
    ticker.cancel()
    results.check("central finished", done, "" if done else "no probe.central.done flag")
    await server.stop()
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
