"""How fast `smallbms simulate` runs one simulated day of a 1-battery bank at 1 s steps.

Target < 5 s, aim 2 s (86 400 control steps).  Prints the wall and CPU time of the whole run
(physics + core + output), of the simulated bank alone (physics and readings, every output
high), of the core alone (``Bms.step`` over readings recorded beforehand), and what is left (the
simulate loop and its output lines).  Best of three runs: the machine may be shared.

    .venv/bin/python benchmarks/bench_simulated_day.py
"""

from __future__ import annotations

import time
from typing import Any

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Inputs, Outputs, Readings
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


def core_only(scenario: Scenario) -> tuple[float, int]:
    """The core alone: Bms.step over a day of readings recorded beforehand."""
    bank = SimulatedBank(scenario.bank)
    bank.apply_outputs(Outputs(load=True, charger=True))
    recorded: list[Readings | None] = [bank.read(0.0)]
    t = 0
    for step in scenario.steps:
        _enter(bank, step)
        for _ in range(int(step.duration)):
            t += 1
            recorded.append(bank.read(float(t)))
    bms = Bms(scenario.settings)
    inputs = Inputs()
    cpu = time.process_time()
    for i, readings in enumerate(recorded):
        bms.step(readings, inputs, float(i))
    return time.process_time() - cpu, len(recorded)


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
    core_cpu, steps = min((core_only(scenario) for _ in range(RUNS)), key=lambda r: r[0])
    print(f"  core alone:  CPU {core_cpu:.2f} s  ({core_cpu / steps * 1e6:.1f} us/step, Bms.step "
          "over recorded readings)")
    rest = cpu - bank_cpu - core_cpu
    print(f"  the rest (simulate loop, output lines): CPU {rest:.2f} s  "
          f"({rest / ticks * 1e6:.1f} us/step)")
    verdict = "aim met" if cpu < 2 else ("target met, aim not" if cpu < 5 else "TARGET MISSED")
    print(f"  target < 5 s, aim 2 s: {verdict} (CPU {cpu:.2f} s, wall {wall:.2f} s)")


if __name__ == "__main__":
    main()
