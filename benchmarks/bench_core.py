"""How long one ``Bms.step`` takes, up to the largest banks the BMS accepts, in CPU time.

50 batteries is the limit of a 12/24 V bank (25 for 48 V).  Each step is timed in thread CPU
time (time preempted by other processes does not count: the machine may be shared), and beside
the core, in the same run and the same way, a baseline: a minimal hand-written coulomb counter
with one threshold check (what any BMS must do per sample).  Prints the median and p99 per step
and their ratio to the baseline's median.

Goals (issue 14, on the machine where the baseline took 0.43 us): 1 battery <= 6 us median
(14x the baseline); 50 batteries / 200 cells p99 <= 0.1 ms (230x).

Run: .venv/bin/python benchmarks/bench_core.py [--steps N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import BatteryReading, Inputs, Readings

BASELINE_US_ISSUE = 16.5 / 38  # the baseline on the machine of the issue's measurements
GOAL_1_BATTERY_MEDIAN_US = 6.0
GOAL_50_BATTERIES_P99_US = 100.0


class Baseline:
    """A minimal coulomb counter and a low-cell check: the least a BMS does per sample."""

    def __init__(self) -> None:
        self.soc = 80.0
        self.last: float | None = None

    def step(self, readings: Readings, now: float) -> bool:
        dt = 0.0 if self.last is None else now - self.last
        self.last = now
        self.soc += readings.bank_current * dt / 3600.0 / 100.0 * 100.0
        return min(min(b.cell_voltages) for b in readings.batteries) >= 2.8


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


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def bench(
    name: str, model: str, cells: int, series: int, parallel: int, steps: int
) -> tuple[float, float, float]:
    """(core median, core p99, baseline median) in microseconds of CPU per step."""
    rng = random.Random(1)
    samples = [make_readings(model, cells, series, parallel, rng, -40.0 + k) for k in range(64)]
    bms = Bms()
    bms.command("set_soc", 80.0, 0.0)
    baseline = Baseline()
    inputs = Inputs()
    core_ns: list[int] = []
    base_ns: list[int] = []
    clock = time.thread_time_ns
    now = 0.0
    for k in range(steps):
        readings = samples[k % len(samples)]
        now += 1.0
        t0 = clock()
        baseline.step(readings, now)
        t1 = clock()
        bms.step(readings, inputs, now)
        t2 = clock()
        base_ns.append(t1 - t0)
        core_ns.append(t2 - t1)
    overhead = min(base_ns + core_ns)  # the clock's own cost, taken off both
    core = [(x - overhead) / 1e3 for x in core_ns]
    base = [(x - overhead) / 1e3 for x in base_ns]
    assert bms.status.errors == (), f"{name}: the bench bank is invalid: {bms.status.errors}"
    median, p99, base_median = statistics.median(core), _percentile(core, 0.99), (
        max(statistics.median(base), 0.01))
    print(
        f"{name:<26} {series * parallel:>3} batteries {series * parallel * cells:>4} cells: "
        f"median {median:7.2f} us ({median / base_median:5.1f}x baseline), "
        f"p99 {p99:7.2f} us ({p99 / base_median:5.1f}x); baseline median {base_median:.2f} us"
    )
    return median, p99, base_median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="steps per bank (default 20000)")
    args = parser.parse_args()
    one, _, base = bench("12.8V-100Ah 1S1P", "12.8V-100Ah", 4, 1, 1, args.steps)
    bench("12.8V-100Ah 4S6P (48 V)", "12.8V-100Ah", 4, 4, 6, args.steps)
    _, p99, _ = bench("12.8V-300Ah 1S50P (12 V)", "12.8V-300Ah", 4, 1, 50, args.steps)
    bench("12.8V-200Ah 2S25P (24 V)", "12.8V-200Ah", 4, 2, 25, args.steps)
    bench("25.6V-200Ah 1S50P (24 V)", "25.6V-200Ah", 8, 1, 50, args.steps)
    bench("51.2V-100Ah 1S25P (48 V)", "51.2V-100Ah", 16, 1, 25, args.steps)
    goal_one = GOAL_1_BATTERY_MEDIAN_US / BASELINE_US_ISSUE
    goal_fifty = GOAL_50_BATTERIES_P99_US / BASELINE_US_ISSUE
    print(f"goal 1 battery median <= {goal_one:.0f}x baseline: {one / base:.1f}x "
          f"({'met' if one / base <= goal_one else 'MISSED'}); "
          f"goal 50 batteries/200 cells p99 <= {goal_fifty:.0f}x baseline: {p99 / base:.1f}x "
          f"({'met' if p99 / base <= goal_fifty else 'MISSED'}; ratios to the 1-battery "
          "baseline)")


if __name__ == "__main__":
    main()
