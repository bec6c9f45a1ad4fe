"""BLE figures on the virtual BlueZ (no Bluetooth needed); prints them, asserts nothing.

1. start-up: time from launching `smallbms run` to the first advertisement a scanner sees
   (median of --starts runs; the scanner is already scanning);
2. status read latency: p50 / p99 of --reads reads of the status characteristic by a paired,
   authenticated bleak client of that daemon;
3. notifications: a BleService in this process whose device publishes a new status --rate
   times a second for --duration seconds (default 10 s; `--duration 600` is the 10-minute run);
   every status carries a sequence number, so each lost notification is counted.

Usage: .venv/bin/python benchmarks/bench_ble.py [--starts 3] [--reads 500] [--rate 20]
                                                [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bleak import BleakClient, BleakScanner

from bms_daemon.config import BleConfig
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import History, Leds, Outputs, Status
from bms_daemon.store import MemoryStore
from gatt import codec, profile, security
from gatt.service import BleService
from gatt.virtual.bus import start_virtual_bus

NAME = "smallBMS NG"
CENTRAL = {"adapter": "hci1"}
RUN = (
    "import argparse, sys\n"
    "from bms_daemon import daemon\n"
    "parser = argparse.ArgumentParser()\n"
    "daemon.configure(parser)\n"
    "sys.exit(daemon.main(parser.parse_args(sys.argv[1:])))\n"
)


async def first_advertisement(within: float = 30.0) -> tuple[object, float]:
    async with asyncio.timeout(within), BleakScanner(bluez=CENTRAL) as scanner:  # type: ignore[arg-type]
        async for found, adv in scanner.advertisement_data():
            if adv.local_name == NAME:
                return found, time.perf_counter()
    raise RuntimeError("no advertisement")


async def start_daemon(state: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN,
        "--state-directory",
        str(state),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def login(client: BleakClient) -> None:
    await client.pair()
    challenge = security.decode_challenge(await client.read_gatt_char(profile.uuid_of("auth")))
    response, _ = security.answer_challenge(Settings().pin, challenge)
    await client.write_gatt_char(profile.uuid_of("auth"), response, response=True)


async def bench_daemon(starts: int, reads: int) -> None:
    times: list[float] = []
    latencies: list[float] = []
    for run in range(starts):
        async with start_virtual_bus() as bus:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
            with tempfile.TemporaryDirectory() as tmp:
                scan = asyncio.create_task(first_advertisement())
                await asyncio.sleep(0.5)  # the scanner is scanning before the daemon starts
                t0 = time.perf_counter()
                proc = await start_daemon(Path(tmp) / "state")
                try:
                    found, seen = await scan
                    times.append(seen - t0)
                    if run == 0 and reads:
                        async with BleakClient(found, bluez=CENTRAL, timeout=20) as client:  # type: ignore[arg-type]
                            await login(client)
                            uuid = profile.uuid_of("status")
                            for _ in range(reads):
                                r0 = time.perf_counter()
                                codec.decode_status(await client.read_gatt_char(uuid))
                                latencies.append(time.perf_counter() - r0)
                finally:
                    await stop(proc)
    print(
        f"daemon start -> first advertisement seen: median {statistics.median(times):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in times)})"
    )
    if latencies:
        q = statistics.quantiles(latencies, n=100)
        print(
            f"status read latency over {len(latencies)} reads: p50 {q[49] * 1000:.1f} ms, "
            f"p99 {q[98] * 1000:.1f} ms"
        )


class Publisher:
    """A DeviceControl whose status changes on demand (consumed Ah = sequence / 10)."""

    def __init__(self) -> None:
        self._status = Status(
            t=0,
            soc=50.0,
            soc_synchronised=True,
            mode=True,
            remote=True,
            voltage=13.2,
            current=-1.0,
            power=-13.2,
            consumed_ah=0.0,
            ttg_min=None,
            allowed_to_charge=True,
            charge_reason=None,
            allowed_to_discharge=True,
            discharge_reason=None,
            outputs=Outputs(True, True, False),
            leds=Leds(),
        )
        self._listeners: list[Callable[[Status], None]] = []

    def status(self) -> Status:
        return self._status

    def history(self) -> History:
        return History()

    def settings(self) -> Settings:
        return Settings()

    def set_setting(self, name: str, value: object) -> Settings:
        raise NotImplementedError

    def command(self, name: str, argument: float | None = None) -> str:
        raise NotImplementedError

    def subscribe(self, listener: Callable[[Status], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, sequence: int) -> None:
        self._status = dataclasses.replace(self._status, consumed_ah=sequence / 10)
        for listener in list(self._listeners):
            listener(self._status)


async def bench_notifications(rate: float, duration: float) -> None:
    async with start_virtual_bus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        device = Publisher()
        service = BleService(device, BleConfig(name=NAME), MemoryStore())
        task = asyncio.create_task(service.run())
        try:
            found, _ = await first_advertisement()
            async with BleakClient(found, bluez=CENTRAL, timeout=20) as client:  # type: ignore[arg-type]
                await login(client)
                received: set[int] = set()
                last = asyncio.Event()
                expected = [0]

                def on_status(_: object, data: bytearray) -> None:
                    consumed = codec.decode_status(bytes(data)).consumed_ah
                    if consumed is not None:
                        received.add(round(consumed * 10))
                        if round(consumed * 10) == expected[0]:
                            last.set()

                await client.start_notify(profile.uuid_of("status"), on_status)
                sent = 0
                period = 1 / rate
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < duration:
                    sent += 1
                    device.publish(sent)
                    await asyncio.sleep(max(0.0, t0 + sent * period - time.perf_counter()))
                elapsed = time.perf_counter() - t0
                expected[0] = sent
                if sent in received:
                    last.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await last.wait()
                lost = len(set(range(1, sent + 1)) - received)
                print(
                    f"status notifications: {sent} published at {rate:g}/s for {elapsed:.0f} s,"
                    f" {len(received & set(range(1, sent + 1)))} received "
                    f"({len(received) / elapsed:.1f}/s), {lost} lost"
                )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def main(args: argparse.Namespace) -> None:
    await bench_daemon(args.starts, args.reads)
    await bench_notifications(args.rate, args.duration)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="daemon starts to time")
    parser.add_argument("--reads", type=int, default=500, help="status reads to time")
    parser.add_argument("--rate", type=float, default=20.0, help="statuses published per second")
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of notifications (600 = the 10-minute run)",
    )
    asyncio.run(main(parser.parse_args()))
