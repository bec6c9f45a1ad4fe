"""The scenarios shipped in scenarios/ parse, run, and show what their comments promise."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bms_daemon.scenario import load_scenario
from bms_daemon.simulate import run_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
Line = dict[str, Any]


def _ever(code: str) -> Callable[[list[Line]], bool]:
    return lambda lines: any(code in [*x["warnings"], *x["alarms"], *x["errors"]] for x in lines)


def _synced_once(lines: list[Line]) -> bool:
    return bool(lines[-1]["synchronisations"] == 1 and lines[-1]["soc"] == 100.0)


def _charger_only(reason: str) -> Callable[[list[Line]], bool]:
    return lambda lines: any(
        not x["charger"] and x["load"] and x["charge_reason"] == reason for x in lines
    )


# file -> (what it must show, simulated seconds per step).  Steps of 2-4 s (10 s for 16 batteries)
# keep the suite fast where no 1-second timing is at stake; the rules' timings are tested at 1 s
# in test_scenario_rules.py.
EXPECTED: dict[str, tuple[Callable[[list[Line]], bool], float]] = {
    "full_discharge": (lambda ls: _ever("W-B07")(ls) and _ever("A-B07")(ls), 4.0),
    "cell_undervoltage": (lambda ls: _ever("W-B01")(ls) and _ever("A-B01")(ls), 1.0),
    "recharge_sync": (_synced_once, 2.0),
    "cold_morning": (_charger_only("battery too cold"), 2.0),
    "hot_battery": (_ever("A-B09"), 2.0),
    "comms_loss": (lambda ls: _ever("W-B05")(ls) and _ever("A-B05")(ls), 1.0),
    "remote_off": (lambda ls: any(x["discharge_reason"] == "remote off" for x in ls), 1.0),
    "cell_overvoltage": (_charger_only("cell over-voltage"), 2.0),
    "low_pack_voltage": (_ever("A-B08"), 1.0),
    "invalid_bank_mixed": (_ever("E-B01"), 1.0),
    "invalid_bank_incomplete": (_ever("E-B05"), 1.0),
    "bank_48v_16_batteries": (
        lambda ls: _synced_once(ls) and all(x["errors"] == [] for x in ls), 10.0
    ),
}
TOO_LONG_FOR_TESTS = {"month_daily_cycling"}  # run by benchmarks/bench_soc_accuracy.py


def test_every_shipped_scenario_is_listed_here() -> None:
    names = {p.stem for p in SCENARIOS.glob("*.toml")}
    assert names == set(EXPECTED) | TOO_LONG_FOR_TESTS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_scenario_shows_what_it_says(name: str) -> None:
    check, dt = EXPECTED[name]
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.description
    lines: list[Line] = []
    run_scenario(scenario, dt=dt, every=600, sink=lambda x: lines.append(json.loads(json.dumps(x))))
    assert lines[-1]["t"] == scenario.duration
    assert check(lines)


def test_the_month_parses_to_thirty_days() -> None:
    scenario = load_scenario(SCENARIOS / "month_daily_cycling.toml")
    assert scenario.duration == 30 * 86400
    assert scenario.bank.current_gain_error == 0.005
    assert scenario.bank.current_offset == 0.05


def test_counted_soc_follows_the_truth_through_a_day_of_cycling() -> None:
    """One day of the month scenario (sensor 0.5 % gain error, 0.05 A offset): the BMS's SOC
    stays within 2 % of the truth and synchronises once; the 30 days are benchmarked."""
    scenario = load_scenario(SCENARIOS / "month_daily_cycling.toml")
    lines: list[Line] = []
    # 5 s steps: SOC counting and the sync do not need the daemon's 1 s rate, the suite's time does
    run_scenario(
        dataclasses.replace(scenario, repeat=1), dt=5.0, every=600, sink=lines.append
    )
    errors = [abs(x["soc"] - x["true_soc"]) for x in lines]
    assert max(errors) < 2.0
    assert lines[-1]["synchronisations"] == 1
    assert min(x["soc"] for x in lines) < 40.0  # it did cycle
