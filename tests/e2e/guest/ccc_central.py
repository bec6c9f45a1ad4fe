"""CCC case, central side: raw bleak, no pairing agent (so no pairing), subscribes to each of
the peripheral's two characteristics (ccc_periph.py) and counts what arrives.

StartNotify (bleak's default) is what a phone's CCC write looks like to the peripheral.  The
central registers no agent: real BlueZ then cannot pair (Just Works needs a confirmation, see
gatt/agent.py), so the link stays unencrypted and every answer below is the one an unpaired
central gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from ccc_periph import CHARS, SERVICE
from e2elib import Results, await_flag, log, signal
from real_bluez import CCC_UNPAIRED

ADAPTER = "hci0"
PERIPH_READY_TIMEOUT_S = 240.0
SCAN_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 40.0
LISTEN_S = 3.0
SETTLE_S = 2.0


async def connected(device: BLEDevice) -> BleakClient:
    """A connected client; one retry, as the link after a failed security raise can take a
    moment to go (a connection failure is not the outcome this case looks for)."""
    for attempt in (1, 2):
        client = BleakClient(device, timeout=STEP_TIMEOUT_S, bluez={"adapter": ADAPTER})
        try:
            await client.connect()
        except Exception as exc:
            log(f"connect attempt {attempt} failed: {type(exc).__name__}: {exc}")
            if attempt == 2:
                raise
            await asyncio.sleep(SETTLE_S)
        else:
            return client
    raise AssertionError("unreachable")


async def subscribe(client: BleakClient, name: str) -> str:
    """'refused: <error>' or 'subscribed, N notifications'."""
    uuid = CHARS[name][0]
    got: list[bytes] = []
    try:
        await asyncio.wait_for(client.start_notify(uuid, lambda _c, d: got.append(bytes(d))),
                               STEP_TIMEOUT_S)
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    await asyncio.sleep(LISTEN_S)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.stop_notify(uuid), STEP_TIMEOUT_S)
    return f"subscribed, {len(got)} notifications"


async def main() -> int:
    results = Results("ccc")
    try:
        if not await await_flag("ccc.periph.ready", PERIPH_READY_TIMEOUT_S):
            results.check("peripheral ready", False, "no ccc.periph.ready flag")
            return 1
        device = await BleakScanner.find_device_by_filter(
            lambda _d, adv: SERVICE in adv.service_uuids, timeout=SCAN_TIMEOUT_S,
            bluez={"adapter": ADAPTER})
        if not results.check("peripheral found", device is not None):
            return 1
        assert device is not None
        # a fresh connection for each: a refused CCC write makes the central's BlueZ try to
        # raise the link's security, which fails without an agent and may drop the link
        for name in CHARS:
            await asyncio.sleep(SETTLE_S)  # let the last link's teardown finish on both sides
            client = await connected(device)
            try:
                outcome = await subscribe(client, name)
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            log(name, outcome)
            results.fact(f"unpaired subscription to {name}", outcome)
            expected = CCC_UNPAIRED[name]
            results.check(f"{name}: unpaired subscription {expected}",
                          outcome.startswith(expected), outcome)
        await asyncio.sleep(SETTLE_S)
        try:
            client = await connected(device)
        except Exception as exc:  # after a failed security raise the device may be gone
            read = f"no connection: {type(exc).__name__}: {exc}"
        else:
            try:
                await asyncio.wait_for(client.read_gatt_char(CHARS["plain"][0]),
                                       STEP_TIMEOUT_S)
                read = "read allowed"
            except Exception as exc:
                read = f"refused: {type(exc).__name__}: {exc}"
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
        results.fact("unpaired read of an encrypt-read characteristic", read)
    except Exception as e:
        results.check("ccc session completes", False, f"{type(e).__name__}: {e}")
    finally:
        signal("ccc.central.done")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
