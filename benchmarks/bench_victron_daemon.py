"""CPU of `smallbms run` hearing 8 Smart Lithium batteries and a SmartShunt over Bluetooth.

On the virtual BlueZ: the daemon advertises and serves GATT on hci0 and scans there; nine test
broadcasters (hci2..hci10) send a new frame about once a second each (the devices' rate) and
the virtual BlueZ reports each of them ten times a second (every report a PropertiesChanged:
more than real BlueZ, which signals only changes; BENCH_REPORT_INTERVAL_S sets their period).
The daemon's CPU over BENCH_DURATION_S (default 30 s) after READY is printed next to the same
daemon on its simulated bank with BLE on, so the difference is what hearing the bank costs.
The virtual BlueZ's own processes are not counted.

Run: .venv/bin/python benchmarks/bench_victron_daemon.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench_daemon import RUN, cpu_seconds, peak_rss_mb

from bms_daemon.sources.victron import encode
from gatt.virtual.adapter import adapter_address
from gatt.virtual.beacon import Beacon
from gatt.virtual.bus import start_virtual_bus
from gatt.virtual.config import WorldConfig

DURATION_S = float(os.environ.get("BENCH_DURATION_S", "30"))
REPORT_INTERVAL_S = float(os.environ.get("BENCH_REPORT_INTERVAL_S", "0.1"))
BATTERIES = 8
FIRST = 2  # hci2..hci9 batteries, hci10 the shunt
KEY = bytes.fromhex("0df4d0395b7d1a876c0c33ecb9e70dcd")
VICTRON = 0x02E1


def config(state: Path, victron: bool) -> str:
    text = (f'[bms]\nstate_directory = "{state}"\n[ble]\nvirtual = "off"\n'
            '[gpio]\nremote_file = "remote"\n[logging]\nlevel = "warning"\n')
    if not victron:
        return text
    rows = ",\n".join(
        f'  {{ name = "b{i}", address = "{adapter_address(FIRST + i)}", key = "{KEY.hex()}" }}'
        for i in range(BATTERIES)
    )
    return text + (
        '[source]\ntype = "victron-ble"\n'
        'battery = { name = "Smart Lithium 12.8V/100Ah", cells = 4, capacity_ah = 100 }\n'
        f"batteries = [\n{rows}\n]\n"
        f'monitor = {{ address = "{adapter_address(FIRST + BATTERIES)}", key = "{KEY.hex()}" }}\n'
    )


async def measure(tmp: Path, victron: bool) -> tuple[float, float]:
    path = tmp / f"{victron}.toml"
    path.write_text(config(tmp / f"state-{victron}", victron))
    notify_path = tmp / f"notify-{victron}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.setblocking(False)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RUN, "--config", str(path),
        env=dict(os.environ, NOTIFY_SOCKET=str(notify_path)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(60):
            while b"READY=1" not in await loop.sock_recv(notify, 4096):
                pass
        await asyncio.sleep(3)  # the first frames, the first readings
        start_cpu, start = cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(DURATION_S)
        used = cpu_seconds(proc.pid) - start_cpu
        elapsed = time.monotonic() - start
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.wait()
        notify.close()
    return 100 * used / elapsed, rss


async def broadcast(beacons: list[Beacon], stop: asyncio.Event) -> int:
    """New frames at about one per second per device, staggered; returns how many."""
    encoders = [encode.DeviceEncoder.battery(KEY) for _ in range(BATTERIES)]
    shunt = encode.DeviceEncoder.monitor(KEY)
    sent = 0
    tick = 0
    while not stop.is_set():
        for i, beacon in enumerate(beacons):
            cells = [3.30 + ((tick + i) % 3) / 100] * 4
            if i < BATTERIES:
                beacon.update(encoders[i].frame(encode.lithium_record(cells)))
            else:
                beacon.update(shunt.frame(encode.monitor_record(voltage=13.2, current=-5.0
                                                                + tick % 7 / 10)))
            sent += 1
            await asyncio.sleep(1.0 / len(beacons))
        tick += 1
    return sent


async def main() -> int:
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        async with start_virtual_bus(WorldConfig(adapters=FIRST + BATTERIES + 1,
                                                  report_interval=REPORT_INTERVAL_S)) as bus:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
            base_cpu, base_rss = await measure(tmp, victron=False)
            beacons = [await Beacon(f"hci{FIRST + i}", VICTRON, b"\x10\x02").start()
                       for i in range(BATTERIES + 1)]
            stop = asyncio.Event()
            sender = asyncio.create_task(broadcast(beacons, stop))
            cpu, rss = await measure(tmp, victron=True)
            stop.set()
            sent = await sender
            for beacon in beacons:
                await beacon.stop()
    print(f"simulated bank, BLE on:          {base_cpu:.2f} % of one core, peak RSS "
          f"{base_rss:.1f} MB")
    print(f"8 batteries + shunt over BLE:    {cpu:.2f} % of one core, peak RSS {rss:.1f} MB "
          f"({sent} new frames sent, {1 / REPORT_INTERVAL_S:g} reports/s per device)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
