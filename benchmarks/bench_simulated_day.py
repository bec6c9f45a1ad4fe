"""How fast `smallbms simulate` runs one simulated day of a 1-battery bank at 1 s steps.

Prints the CPU time (and wall time) of the whole run (physics + core + JSON lines, as
``smallbms simulate`` does it, output to memory), of the simulated bank alone (physics and
readings, every output high), of the core alone *as the loop calls it* (``Bms.step`` replayed
over the readings, inputs and times the closed loop produced, from the same start), and what
is left (the loop and its output lines).  Beside them, measured in the same run, a baseline: a
minimal coulomb counter with one threshold check over the same readings; each figure is also
given as CPU per step in multiples of the baseline's.  Best of three runs: the machine may be
shared.

Goal (issue 14): the whole run <= 1.7 s CPU on the machine where the baseline took 0.43 us per
step, i.e. <= 46x the baseline per step.

    .venv/bin/python benchmarks/bench_simulated_day.py
"""

from __future__ import annotations

import io
import json
import time

from bms_daemon import simulate
from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Inputs, Outputs, Readings, Status
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
BASELINE_US_ISSUE = 16.5 / 38
GOAL_CPU_S_ISSUE = 1.7
GOAL_RATIO = GOAL_CPU_S_ISSUE / SECONDS_PER_DAY * 1e6 / BASELINE_US_ISSUE

Call = tuple[Readings | None, Inputs, float]


class RecordingBms(Bms):
    """The core, keeping every call the loop makes (to replay them through a fresh core)."""

    calls: list[Call]

    def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status:
        self.calls.append((readings, inputs, now))
        return super().step(readings, inputs, now)


def whole(scenario: Scenario) -> tuple[float, float, int]:
    """The run as `smallbms simulate` does it, JSON lines written to memory."""
    out = io.StringIO()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run_scenario(scenario, dt=1.0, every=60.0,
                          sink=lambda line: out.write(json.dumps(line) + "\n"))
    return time.perf_counter() - wall, time.process_time() - cpu, result.ticks


def bank_only(scenario: Scenario) -> float:
    """The simulated bank alone: read + apply_outputs at every step, outputs always high."""
    bank = SimulatedBank(scenario.bank)
    high = Outputs(load=True, charger=True)
    cpu = time.process_time()
    t = 0
    bank.read(0.0)
    for step in scenario.steps:
        _enter(bank, step)
        for _ in range(int(step.duration)):
            t += 1
            bank.read(float(t))
            bank.apply_outputs(high)
    return time.process_time() - cpu


def recorded_calls(scenario: Scenario) -> list[Call]:
    """The core's calls in a real run (closed loop)."""
    calls: list[Call] = []

    def make(settings: Settings) -> Bms:
        bms = RecordingBms(settings=settings)
        bms.calls = calls
        return bms

    original = simulate.Bms
    simulate.Bms = make  # type: ignore[assignment,misc]
    try:
        run_scenario(scenario, dt=1.0, every=60.0, sink=lambda line: None)
    finally:
        simulate.Bms = original  # type: ignore[misc]
    return calls


def core_only(scenario: Scenario, calls: list[Call]) -> float:
    """The core alone, as the loop calls it: the recorded calls through a fresh core."""
    bms = Bms(scenario.settings)
    if scenario.known_soc:
        bms.command("set_soc", round(min(100.0, SimulatedBank(scenario.bank).true_soc), 3))
    step = bms.step
    cpu = time.process_time()
    for readings, inputs, now in calls:
        step(readings, inputs, now)
    return time.process_time() - cpu


def baseline(calls: list[Call]) -> float:
    """A minimal coulomb counter and a low-cell check over the same readings."""
    soc, last = 80.0, 0.0
    cpu = time.process_time()
    for readings, _, now in calls:
        if readings is not None:
            soc += readings.bank_current * (now - last) / 3600.0 / 200.0 * 100.0
            last = now
            _ = min(min(b.cell_voltages) for b in readings.batteries) >= 2.8
    return time.process_time() - cpu


def main() -> None:
    scenario = parse_scenario(DAY, "bench")
    calls = recorded_calls(scenario)
    wall, cpu, ticks = min((whole(scenario) for _ in range(RUNS)), key=lambda r: r[1])
    bank_cpu = min(bank_only(scenario) for _ in range(RUNS))
    core_cpu = min(core_only(scenario, calls) for _ in range(RUNS))
    base_cpu = min(baseline(calls) for _ in range(RUNS))
    rest = cpu - bank_cpu - core_cpu
    base_us = base_cpu / ticks * 1e6

    def line(name: str, seconds: float) -> str:
        us = seconds / ticks * 1e6
        return (f"  {name:<44} CPU {seconds:5.2f} s  {us:6.1f} us/step  "
                f"{us / base_us:6.1f}x baseline")

    print(f"one simulated day, 1 x 12.8V-200Ah, dt = 1 s: {ticks} steps "
          f"(best of {RUNS}; baseline {base_us:.2f} us/step)")
    print(line("whole run (smallbms simulate, JSON lines)", cpu)
          + f"  wall {wall:.2f} s, {SECONDS_PER_DAY / cpu:,.0f}x real time (CPU)")
    print(line("simulated bank alone", bank_cpu))
    print(line("core alone, as the loop calls it", core_cpu))
    print(line("the rest (loop, output lines)", rest))
    print(line("baseline (minimal coulomb counter)", base_cpu))
    ratio = cpu / ticks * 1e6 / base_us
    verdict = "met" if ratio <= GOAL_RATIO else "MISSED"
    print(f"  goal: whole run <= {GOAL_RATIO:.0f}x baseline per step (1.7 s CPU on the issue's "
          f"machine): {ratio:.1f}x, {verdict}")


if __name__ == "__main__":
    main()
