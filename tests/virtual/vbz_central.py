"""A bleak central in its own process: connects through hci1, subscribes to the notify
characteristic, prints READY then one hex line per notification; exits when stdin closes."""

from __future__ import annotations

import asyncio
import sys

from bleak import BleakClient
from vbz_peripheral import NOTIFY_CHAR


async def main(address: str) -> None:
    async with BleakClient(address, bluez={"adapter": "hci1"}, timeout=10) as client:
        await client.start_notify(
            NOTIFY_CHAR, lambda _c, data: print(bytes(data).hex(), flush=True)
        )
        print("READY", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        await reader.read()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
