"""Victron case, central side: a Smart Lithium battery on the air (gatt.virtual.beacon on real
BlueZ), its cells set by the peripheral's flags: healthy, one cell under 3.10 V, one under
2.80 V, then silence."""

from __future__ import annotations

import asyncio
import sys

from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus
from e2elib import Results, await_flag, log, signal, work

from bms_daemon.sources.victron import encode
from gatt.virtual.beacon import Beacon

KEY = bytes.fromhex("3cf4d0395b7d1a876c0c33ecb9e70dcd")
HEALTHY = [3.30, 3.31, 3.29, 3.30]
STEPS = {  # flag from the peripheral -> the cells from then on
    "victron.prealarm": [3.30, 3.05, 3.29, 3.30],
    "victron.undervoltage": [3.30, 2.75, 3.29, 3.30],
    "victron.recover": HEALTHY,
}
SEND_PERIOD_S = 0.5
PERIPH_TIMEOUT_S = 600.0


async def adapter_property(interface: str, name: str) -> object:
    """One property of this guest's hci0 in bluetoothd (None when it cannot be read)."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(
            destination="org.bluez", path="/org/bluez/hci0",
            interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
            body=[interface, name]))
    finally:
        bus.disconnect()
    if reply is None or not reply.body or not hasattr(reply.body[0], "value"):
        return None
    return reply.body[0].value


async def main() -> int:
    results = Results("victron")
    address = str(await adapter_property("org.bluez.Adapter1", "Address"))
    (work() / "victron.central.address").write_text(address)
    results.fact("battery address", address)
    battery = encode.DeviceEncoder.battery(KEY, nonce=1000)
    cells = HEALTHY
    beacon = await Beacon("hci0", 0x02E1, battery.frame(encode.lithium_record(cells))).start()
    results.check("battery frames on the air (real BlueZ accepted the advertisement)", True,
                  address)
    signal("victron.central.ready")
    pending = dict(STEPS)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PERIPH_TIMEOUT_S
    while loop.time() < deadline:
        for flag in list(pending):
            if (work() / "flags" / flag).exists():
                cells = pending.pop(flag)
                log("cells now", cells)
        if (work() / "flags" / "victron.silence").exists():
            await beacon.stop()
            log("battery silenced")
            break
        beacon.update(battery.frame(encode.lithium_record(cells)))
        await asyncio.sleep(SEND_PERIOD_S)
    done = await await_flag("victron.periph.done", PERIPH_TIMEOUT_S)
    results.check("peripheral finished", done)
    await beacon.stop()
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
