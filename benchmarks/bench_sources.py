"""The real sources: frames decoded per second, and from a frame to the outputs.

1. CAN decoding alone (``CanFeed.take`` on the BYD capture of docs/sources.md, the work the
   reader thread does per frame), and through python-can's virtual bus (send -> reader thread
   -> decoded), in frames per second.
2. VE.Direct parsing (``VeDirectFeed.take``, checksum included), in blocks and MB per second.
3. Frame to output: the daemon's control loop at its default 2 Hz with a CAN source; a frame
   that puts a cell under 2.60 V (LOAD floats at once) arrives at a random moment; the time until
   the LOAD output changes.  Goal: within one control step (0.5 s).

Run: .venv/bin/python benchmarks/bench_sources.py [--frames N] [--trials N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable
from functools import partial

import can
import structlog

from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.core.types import BatteryModel
from bms_daemon.daemon import Daemon
from bms_daemon.gpio.driver import OutputDriver
from bms_daemon.gpio.memory import MemoryPort
from bms_daemon.sources.base import Quantity
from bms_daemon.sources.can import CanFeed, encode
from bms_daemon.sources.combined import CombinedSource
from bms_daemon.sources.spec import BatteryDescription
from bms_daemon.sources.vedirect import VeDirectFeed
from bms_daemon.store import MemoryStore

PACK = BatteryDescription(BatteryModel("Bench 16S", 51.2, 280.0, 16), "can:bench")
CAPTURE = [(int(i, 16), bytes.fromhex(d)) for i, d in (
    ("351", "48 02 00 05 00 05 AE 01"), ("355", "43 00 64 00 00 00 00 00"),
    ("356", "BE 14 F9 FF 8C 00 00 00"), ("35E", "42 59 44 00 00 00 00 00"),
    ("372", "02 00 00 00 00 00 00 00"), ("373", "EA 0C 01 0D 1F 01 22 01"))]
HEALTHY = {"voltage": 53.0, "current": -12.0, "temperature": 21.0, "min_cell_voltage": 3.30,
           "max_cell_voltage": 3.33, "min_cell_temperature": 20.0, "max_cell_temperature": 22.0}
STEP_S = 0.5  # the daemon's default control step (2 Hz)


async def until(condition: Callable[[], bool], poll: float, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("bench_sources: a condition was not reached within 60 s")
        await asyncio.sleep(poll)


def decode_rate(frames: int) -> float:
    feed = CanFeed("bench", PACK, interface="virtual", channel="bench")
    take = feed.take
    t0 = time.perf_counter()
    for k in range(frames):
        frame, data = CAPTURE[k % len(CAPTURE)]
        take(frame, data, 1.0)
    return frames / (time.perf_counter() - t0)


def virtual_bus_rate(frames: int) -> float:
    async def run() -> float:
        feed = CanFeed("bench", PACK, interface="virtual", channel="bench-bus", bitrate=None)
        task = asyncio.create_task(feed.run())
        await until(lambda: feed.stats.connected, 0.01)
        with can.Bus(interface="virtual", channel="bench-bus") as bus:
            messages = [can.Message(arbitration_id=f, data=d, is_extended_id=False)
                        for f, d in CAPTURE]
            t0 = time.perf_counter()
            for k in range(frames):
                bus.send(messages[k % len(messages)])
            await until(lambda: feed.stats.frames >= frames, 0.001)
            elapsed = time.perf_counter() - t0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return frames / elapsed

    return asyncio.run(run())


def vedirect_rate(blocks: int) -> tuple[float, float]:
    fields = [("PID", "0xA389"), ("V", "53010"), ("I", "-48200"), ("P", "-2555"),
              ("CE", "-21000"), ("SOC", "790"), ("TTG", "1140"), ("Alarm", "OFF"), ("AR", "0"),
              ("BMV", "SmartShunt 500A/50mV"), ("FW", "0419"), ("MON", "0")]
    body = b"".join(b"\r\n" + k.encode() + b"\t" + v.encode() for k, v in fields)
    body += b"\r\nChecksum\t"
    block = body + bytes([(-sum(body)) % 256])
    data = block * 100
    feed = VeDirectFeed("bench", "/dev/null")
    t0 = time.perf_counter()
    for _ in range(blocks // 100):
        feed.take(data, 1.0)
    elapsed = time.perf_counter() - t0
    return feed.stats.frames / elapsed, len(data) * (blocks // 100) / elapsed / 1e6


def load_is(port: MemoryPort, level: bool) -> bool:
    return port.levels.get("load", False) is level


def frame_to_output(trials: int) -> list[float]:
    """Seconds from the limit-crossing frame to LOAD floating, per trial."""
    return asyncio.run(_frame_to_output(trials))


async def _frame_to_output(trials: int) -> list[float]:
    rng = random.Random(1)
    results = []
    for _ in range(trials):
        feed = CanFeed("bench", PACK, interface="virtual", channel="unused")
        source = CombinedSource({"bench": feed}, dict.fromkeys(Quantity, "bench"))
        port = MemoryPort()
        bms = Bms()
        bms.command("set_soc", 80.0, 0.0)
        daemon = Daemon(bms=bms, source=source, driver=OutputDriver(port), store=MemoryStore(),
                        rate_hz=1.0 / STEP_S)
        daemon.controller = Controller(bms, time.monotonic)
        stop = asyncio.Event()
        run = asyncio.create_task(daemon.run(stop))
        keep = threading.Event()

        def feed_healthy(feed: CanFeed = feed, keep: threading.Event = keep) -> None:
            while not keep.wait(0.1):  # a BMS sending its frames on its own clock
                for frame in (0x356, 0x373):
                    feed.take(frame, encode(frame, HEALTHY), time.monotonic())

        sender = threading.Thread(target=feed_healthy, daemon=True)
        sender.start()
        await until(partial(load_is, port, True), 0.01)
        keep.set()
        sender.join()
        await asyncio.sleep(rng.uniform(0.0, STEP_S))  # the frame comes at any moment
        crossed = time.monotonic()
        feed.take(0x373, encode(0x373, {**HEALTHY, "min_cell_voltage": 2.55}), crossed)
        feed.take(0x356, encode(0x356, HEALTHY), crossed)
        await until(partial(load_is, port, False), 0.001)
        results.append(time.monotonic() - crossed)
        stop.set()
        await run
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    print(f"CAN decode (reader-thread work): {decode_rate(args.frames):,.0f} frames/s")
    print(f"CAN through python-can's virtual bus: "
          f"{virtual_bus_rate(min(args.frames, 50_000)):,.0f} frames/s")
    blocks, mbps = vedirect_rate(20_000)
    print(f"VE.Direct parse (checksum included): {blocks:,.0f} blocks/s ({mbps:.2f} MB/s; "
          "a shunt sends 1-2 blocks/s)")
    latencies = sorted(frame_to_output(args.trials))
    p50 = statistics.median(latencies)
    worst = latencies[-1]
    verdict = "within one control step" if worst <= STEP_S else "SLOWER than one control step"
    print(f"frame crossing a limit -> LOAD floating, 2 Hz loop, {len(latencies)} trials: "
          f"median {p50 * 1e3:.0f} ms, max {worst * 1e3:.0f} ms ({verdict}, step "
          f"{STEP_S * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
