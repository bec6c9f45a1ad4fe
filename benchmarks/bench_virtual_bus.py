"""Throughput and latency through the virtual BlueZ (figures are printed, never asserted).

A bless peripheral runs in its own process (tests/virtual/vbz_peripheral.py), the bleak central
in this one, as the daemon and a client would.  Prints: bus start-up time, connect time, read
round-trip latency (p50/p99), write-with-response latency, and notifications per second.

    .venv/bin/python benchmarks/bench_virtual_bus.py [READS] [NOTIFICATIONS]
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

from bleak import BleakClient

HERE = Path(__file__).resolve().parent
PERIPHERAL = HERE.parent / "tests" / "virtual" / "vbz_peripheral.py"
sys.path.insert(0, str(PERIPHERAL.parent))

from vbz_peripheral import NOTIFY_CHAR, READ_CHAR, WRITE_CHAR  # noqa: E402

from gatt.virtual.bus import start_virtual_bus  # noqa: E402

TIMEOUT = 30.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(reads: int, notifications: int) -> None:
    t0 = time.perf_counter()
    async with start_virtual_bus() as bus:
        print(f"bus start-up (dbus-daemon + emulator): {1000 * (time.perf_counter() - t0):.0f} ms")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        periph = await bus.spawn(
            sys.executable,
            str(PERIPHERAL),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert periph.stdout is not None
        assert periph.stdin is not None
        await asyncio.wait_for(periph.stdout.readline(), TIMEOUT)
        t0 = time.perf_counter()
        async with BleakClient(
            bus.address_of("hci0"), bluez={"adapter": "hci1"}, timeout=TIMEOUT
        ) as client:
            print(f"scan + connect + service discovery: {1000 * (time.perf_counter() - t0):.0f} ms")
            samples = []
            for _ in range(reads):
                t = time.perf_counter()
                await client.read_gatt_char(READ_CHAR)
                samples.append(1000 * (time.perf_counter() - t))
            print(
                f"read round trip over {reads} reads: p50 {statistics.median(samples):.2f} ms, "
                f"p99 {percentile(samples, 0.99):.2f} ms, max {max(samples):.2f} ms"
            )
            samples = []
            for i in range(reads // 2):
                t = time.perf_counter()
                await client.write_gatt_char(WRITE_CHAR, i.to_bytes(4, "little"), response=True)
                samples.append(1000 * (time.perf_counter() - t))
            print(
                f"write with response over {len(samples)} writes: "
                f"p50 {statistics.median(samples):.2f} ms, "
                f"p99 {percentile(samples, 0.99):.2f} ms"
            )

            received = 0
            last = asyncio.Event()
            final = (notifications - 1).to_bytes(4, "little")

            def on_value(_char: object, data: bytearray) -> None:
                nonlocal received
                received += 1
                if bytes(data) == final:
                    last.set()

            await client.start_notify(NOTIFY_CHAR, on_value)
            t0 = time.perf_counter()
            periph.stdin.write(f"burst {notifications}\n".encode())
            await periph.stdin.drain()
            try:
                await asyncio.wait_for(last.wait(), TIMEOUT)
            except TimeoutError:
                print(
                    f"notifications: only {received} of {notifications} arrived "
                    f"within {TIMEOUT:.0f} s"
                )
                raise
            elapsed = time.perf_counter() - t0
            print(
                f"notifications: {received} of {notifications} received in {elapsed:.2f} s = "
                f"{received / elapsed:.0f} per second"
            )
            await client.stop_notify(NOTIFY_CHAR)
        periph.stdin.write(b"quit\n")
        await periph.stdin.drain()
        await asyncio.wait_for(periph.wait(), TIMEOUT)


def main() -> int:
    logging.basicConfig(level=logging.CRITICAL)
    reads = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    notifications = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
    asyncio.run(bench(reads, notifications))
    return 0


if __name__ == "__main__":
    sys.exit(main())
