"""SOC accuracy of the core against the simulator's truth over 30 days of daily cycling.

The bank is scenarios/month_daily_cycling.toml: a 12.8 V 200 Ah battery, 15 A in the evening,
4 A at night, a morning CC/CV charge to synchronisation, 1 A in the afternoon; the current sensor
reads 0.5 % high (gain error) with a 0.05 A offset and 0.05 A of noise.  Every simulated minute
the BMS's SOC is compared with the true SOC (charge stored over nominal capacity).

Prints the max and mean absolute error and the error just before each daily synchronisation;
``--compare`` adds the same run with a perfect sensor (what is left is the core's own model:
Peukert and charge efficiency against the physics), ``--peukert N`` re-runs the core with another
Peukert exponent (a what-if, in this process only).  Targets: max < 2 %, aim 1 %.

    .venv/bin/python benchmarks/bench_soc_accuracy.py [--days N] [--dt S] [--compare] [--peukert N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from bms_daemon.scenario import Scenario, load_scenario
from bms_daemon.simulate import run_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "month_daily_cycling.toml"


def measure(scenario: Scenario, dt: float) -> dict[str, Any]:
    errors: list[float] = []
    worst: dict[str, Any] = {}
    before_sync: list[float] = []
    state = {"syncs": 0, "last_error": 0.0}

    def sink(line: dict[str, Any]) -> None:
        if line["soc"] is None:
            return
        error = line["soc"] - line["true_soc"]
        if line["synchronisations"] > state["syncs"]:
            state["syncs"] = line["synchronisations"]
            before_sync.append(state["last_error"])
        state["last_error"] = error
        errors.append(abs(error))
        if abs(error) >= worst.get("abs", -1.0):
            worst.update(
                abs=abs(error),
                t=line["t"],
                soc=line["soc"],
                true=line["true_soc"],
                step=line.get("label", line["step"]),
            )

    started = time.perf_counter()
    result = run_scenario(scenario, dt=dt, every=60.0, sink=sink)
    return {
        "max": max(errors),
        "mean": sum(errors) / len(errors),
        "worst": worst,
        "before_sync": before_sync,
        "syncs": state["syncs"],
        "wall": time.perf_counter() - started,
        "ticks": result.ticks,
    }


def report(name: str, figures: dict[str, Any]) -> None:
    w = figures["worst"]
    pre = figures["before_sync"]
    print(f"{name}:")
    print(
        f"  max |SOC error|  {figures['max']:.2f} %  (at day {w['t'] / 86400:.2f}, "
        f"{w['step']}: BMS {w['soc']:.2f} % vs true {w['true']:.2f} %)"
    )
    print(f"  mean |SOC error| {figures['mean']:.2f} %")
    if pre:
        print(
            f"  error just before each sync: min {min(pre):+.2f} %, max {max(pre):+.2f} % "
            f"({figures['syncs']} syncs)"
        )
    print(f"  {figures['ticks']} steps in {figures['wall']:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dt", type=float, default=1.0)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also run with a perfect sensor: what is left is the core's own model",
    )
    parser.add_argument(
        "--peukert",
        type=float,
        metavar="N",
        help="what-if: run the core with this Peukert exponent instead of its own (the core's "
        "module constant is overridden in this process only)",
    )
    args = parser.parse_args()
    if args.peukert is not None:
        from bms_daemon.core import soc  # noqa: PLC0415

        print(f"what-if: core Peukert exponent {soc.PEUKERT_EXPONENT} -> {args.peukert}")
        soc.PEUKERT_EXPONENT = args.peukert
    scenario = load_scenario(SCENARIO)
    scenario = dataclasses.replace(scenario, repeat=args.days)
    report("sensor 0.5 % gain error, 0.05 A offset, 0.05 A noise", measure(scenario, args.dt))
    if args.compare:
        perfect = dataclasses.replace(
            scenario.bank, current_gain_error=0.0, current_offset=0.0, current_noise=0.0
        )
        report("perfect sensor", measure(dataclasses.replace(scenario, bank=perfect), args.dt))


if __name__ == "__main__":
    main()
