"""Run the full virtual-BlueZ scenario N times (default 50), each on a fresh private bus.

Prints one line per run and a summary (failures, hangs, durations).  A run that does not finish
within RUN_TIMEOUT seconds counts as a hang.  Exit status 1 if any run failed or hung.

    .venv/bin/python benchmarks/loop_virtual_bus.py [RUNS]
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "virtual"))

from vbz_scenario import full_scenario

from gatt.virtual.bus import start_virtual_bus

RUN_TIMEOUT = 60.0


async def one_run() -> None:
    async with start_virtual_bus() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
        try:
            await asyncio.wait_for(full_scenario(bus), RUN_TIMEOUT)
        finally:
            del os.environ["DBUS_SYSTEM_BUS_ADDRESS"]


def main() -> int:
    # bless/dbus-next log every refused write as an ERROR with a traceback: expected here
    logging.basicConfig(level=logging.CRITICAL)
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    durations: list[float] = []
    failures = hangs = 0
    for i in range(1, runs + 1):
        start = time.perf_counter()
        try:
            asyncio.run(one_run())
            status = "ok"
        except TimeoutError:
            hangs += 1
            status = "HANG"
            traceback.print_exc()
        except Exception:
            failures += 1
            status = "FAIL"
            traceback.print_exc()
        elapsed = time.perf_counter() - start
        durations.append(elapsed)
        print(f"run {i:3d}/{runs}: {status} in {elapsed:.2f} s", flush=True)
    print(
        f"{runs} runs: {runs - failures - hangs} ok, {failures} failed, {hangs} hung; "
        f"duration min {min(durations):.2f} s, median {statistics.median(durations):.2f} s, "
        f"max {max(durations):.2f} s"
    )
    return 1 if failures or hangs else 0


if __name__ == "__main__":
    sys.exit(main())
