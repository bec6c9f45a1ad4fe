"""How fast `smallbms simulate` runs one simulated day of a 1-battery bank at 1 s steps.

Target < 5 s, aim 2 s (86 400 control steps).  Prints the wall and CPU time of the whole run
(physics + core + output), then of the simulated bank alone (physics and readings, replaying
the outputs the BMS chose), so the core's share is the difference.  Best of three runs: the
machine may be shared.

    .venv/bin/python benchmarks/bench_simulated_day.py
"""

from __future__ import annotations

import time
from typing import Any

from bms_daemon.core.types import Outputs
from bms_daemon.scenario import Scenario, parse_scenario
from bms_daemon.simulate import _enter, run_scenario
from bms_daemon.sources.simulated import SimulatedBank

DAY = """
[scenario]
description = "one day, 1 battery"
[bank]
model = "12.8V-200Ah"
soc = 95
current_gain_error = 0.005
current_offset = 0.05
current_noise = 0.05
[[step]]
duration = "6h"
load = 15
[[step]]
duration = "8h"
load = 4
[[step]]
duration = "5h"
load = 2
charge = 40
[[step]]
duration = "5h"
load = 1
"""
RUNS = 3
SECONDS_PER_DAY = 86400


def whole(scenario: Scenario) -> tuple[float, float, int, list[Outputs]]:
    outputs: list[Outputs] = []
    lines: list[dict[str, Any]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_scenario(scenario, dt=1.0, every=60.0, sink=lines.append)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    outputs = [Outputs(x["load"], x["charger"], x["prealarm"]) for x in lines]
    return wall, cpu, result.ticks, outputs


def bank_only(scenario: Scenario) -> tuple[float, float]:
    """The simulated bank alone: read + apply_outputs at every step, outputs always high."""
    bank = SimulatedBank(scenario.bank)
    high = Outputs(load=True, charger=True)
    wall, cpu = time.perf_counter(), time.process_time()
    t = 0
    bank.read(0.0)
    for step in scenario.steps:
        _enter(bank, step)
        for _ in range(int(step.duration)):
            t += 1
            bank.read(float(t))
            bank.apply_outputs(high)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    scenario = parse_scenario(DAY, "bench")
    best = min((whole(scenario) for _ in range(RUNS)), key=lambda r: r[1])
    wall, cpu, ticks, _ = best
    print(f"one simulated day, 1 x 12.8V-200Ah, dt = 1 s: {ticks} steps")
    print(
        f"  whole run:   wall {wall:.2f} s, CPU {cpu:.2f} s  "
        f"({cpu / ticks * 1e6:.1f} us/step CPU, {SECONDS_PER_DAY / wall:,.0f}x real time)"
    )
    bank_wall, bank_cpu = min((bank_only(scenario) for _ in range(RUNS)), key=lambda r: r[1])
    print(
        f"  bank alone:  wall {bank_wall:.2f} s, CPU {bank_cpu:.2f} s  "
        f"({bank_cpu / ticks * 1e6:.1f} us/step CPU)"
    )
    core = cpu - bank_cpu
    print(f"  core + loop: CPU {core:.2f} s  ({core / ticks * 1e6:.1f} us/step)")
    print(
        f"  target < 5 s, aim 2 s: {'met' if cpu < 5 else 'MISSED'} (CPU), "
        f"{'met' if wall < 5 else 'missed'} (wall)"
    )


if __name__ == "__main__":
    main()
