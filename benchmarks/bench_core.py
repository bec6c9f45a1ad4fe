"""How long one ``Bms.step`` takes, up to the largest banks the BMS accepts.

50 batteries is the limit of a 12/24 V bank (25 for 48 V); the target is <= 0.2 ms per step for
a 50-battery bank of 200 cells.  Prints the median and p99 per step for each bank.

Run: .venv/bin/python benchmarks/bench_core.py [--steps N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import BatteryReading, Inputs, Readings

TARGET_MS = 0.2


def make_readings(
    model: str, cells: int, series: int, parallel: int, rng: random.Random, current: float
) -> Readings:
    """One fresh sample of a bank with slightly different cells (as a source would send)."""
    batteries = []
    for i in range(series * parallel):
        cell_voltages = tuple(3.30 + rng.uniform(-0.01, 0.01) for _ in range(cells))
        batteries.append(
            BatteryReading(
                serial=f"HQ{i:08d}",
                model=model,
                firmware="v1.07",
                voltage=sum(cell_voltages),
                current=current / parallel,
                temperature=25.0 + rng.uniform(-1, 1),
                cell_voltages=cell_voltages,
            )
        )
    bank_voltage = sum(b.voltage for b in batteries[:series])
    return Readings(tuple(batteries), bank_voltage, current)


def bench(name: str, model: str, cells: int, series: int, parallel: int, steps: int) -> None:
    rng = random.Random(1)
    samples = [make_readings(model, cells, series, parallel, rng, -40.0 + k) for k in range(64)]
    bms = Bms()
    bms.command("set_soc", 80.0, 0.0)
    inputs = Inputs()
    per_step: list[float] = []
    now = 0.0
    clock = time.perf_counter
    for k in range(steps):
        readings = samples[k % len(samples)]
        now += 1.0
        t0 = clock()
        bms.step(readings, inputs, now)
        per_step.append(clock() - t0)
    per_step.sort()
    median = statistics.median(per_step) * 1e3
    p99 = per_step[int(len(per_step) * 0.99)] * 1e3
    status = bms.status
    assert status.errors == (), f"{name}: the bench bank is invalid: {status.errors}"
    verdict = "ok" if median <= TARGET_MS else "OVER TARGET"
    print(
        f"{name:<26} {series * parallel:>3} batteries {series * parallel * cells:>4} cells: "
        f"median {median:.4f} ms  p99 {p99:.4f} ms per step  ({verdict}, target {TARGET_MS} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="steps per bank (default 20000)")
    args = parser.parse_args()
    bench("12.8V-100Ah 1S1P", "12.8V-100Ah", 4, 1, 1, args.steps)
    bench("12.8V-100Ah 4S6P (48 V)", "12.8V-100Ah", 4, 4, 6, args.steps)
    bench("12.8V-300Ah 1S50P (12 V)", "12.8V-300Ah", 4, 1, 50, args.steps)
    bench("12.8V-200Ah 2S25P (24 V)", "12.8V-200Ah", 4, 2, 25, args.steps)
    bench("25.6V-200Ah 1S50P (24 V)", "25.6V-200Ah", 8, 1, 50, args.steps)
    bench("51.2V-100Ah 1S25P (48 V)", "51.2V-100Ah", 16, 1, 25, args.steps)


if __name__ == "__main__":
    main()
