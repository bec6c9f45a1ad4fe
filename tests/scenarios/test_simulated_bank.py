"""The simulated bank: closed loop, physics a BMS can rely on, reproducibility, create_source."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bms_daemon.core.types import Outputs, Readings
from bms_daemon.sources import BatterySource, create_source
from bms_daemon.sources.config import SimulatedBankConfig
from bms_daemon.sources.ocv import ocv, soc_at_rest
from bms_daemon.sources.simulated import SimulatedBank

BOTH = Outputs(load=True, charger=True)
NONE = Outputs(load=False, charger=False)
HOUR = 3600


def bank(**table: Any) -> SimulatedBank:
    return SimulatedBank(SimulatedBankConfig.from_table(table, "[test]"))


def run(
    b: SimulatedBank, seconds: int, outputs: Outputs = BOTH, start: int = 0, every: int = 1
) -> Readings:
    """Step the bank every ``every`` s (1 s: like the control loop); returns the last readings."""
    b.apply_outputs(outputs)
    last = b.read(float(start))
    for t in [*range(start + every, start + seconds, every), start + seconds]:
        last = b.read(float(t))
    assert last is not None
    return last


def test_loads_draw_only_while_load_is_high() -> None:
    b = bank(soc=80, load=20, self_discharge=0, self_discharge_spread=0)
    before = b.true_soc
    readings = run(b, HOUR, Outputs(load=False, charger=True))
    assert readings.bank_current == 0.0
    assert b.true_soc == pytest.approx(before)
    readings = run(b, HOUR, BOTH, start=HOUR)
    assert readings.bank_current == pytest.approx(-20.0)
    assert b.true_soc == pytest.approx(before - 20.0, abs=0.01)  # 20 Ah of a 100 Ah battery


def test_charger_charges_only_while_charger_is_high() -> None:
    b = bank(soc=50, charge=30, self_discharge=0, self_discharge_spread=0)
    before = b.true_soc
    assert run(b, 600, Outputs(load=True, charger=False)).bank_current == 0.0
    assert b.true_soc == pytest.approx(before)
    assert run(b, 600, BOTH, start=600).bank_current == pytest.approx(30.0)
    assert b.true_soc > before + 4.9


def test_charger_supplies_the_loads_first() -> None:
    b = bank(soc=50, charge=30, load=10)
    assert run(b, 10).bank_current == pytest.approx(20.0)


@settings(max_examples=40, deadline=None)
@given(
    soc=st.floats(min_value=0.0, max_value=100.0),
    charge=st.floats(min_value=1.0, max_value=150.0),
    load=st.floats(min_value=0.0, max_value=50.0),
    seconds=st.integers(min_value=1, max_value=600),
)
def test_cc_cv_charger_never_exceeds_its_current_or_voltage(
    soc: float, charge: float, load: float, seconds: int
) -> None:
    b = bank(soc=soc, charge=charge, load=load, capacity_spread=0)
    readings = run(b, seconds, every=5)
    current = readings.bank_current
    assert current <= charge - load + 1e-9
    if current > 0.0:  # the charger pushes current in: never above its CV voltage
        assert readings.bank_voltage <= 14.2 + 1e-9
    if -load + 1e-6 < current < charge - load - 1e-6:
        assert readings.bank_voltage == pytest.approx(14.2)  # CV phase: voltage held
    if current < -load + 1e-6:  # the charger gives nothing: the battery is above its voltage
        assert readings.bank_voltage >= 14.2 - 1e-9


@settings(max_examples=30, deadline=None)
@given(
    currents=st.lists(st.floats(min_value=-100.0, max_value=100.0), min_size=1, max_size=5),
    seconds=st.integers(min_value=1, max_value=900),
)
def test_charge_is_conserved(currents: list[float], seconds: int) -> None:
    """True SOC moves by exactly the Ah that flowed (charge efficiency 99.5 % on charge)."""
    b = bank(soc=50, capacity_spread=0, self_discharge=0, self_discharge_spread=0)
    expected = b.true_soc
    t = 0
    for current in currents:
        b.set_environment(load=max(0.0, -current), charge=max(0.0, current), charge_voltage=60)
        run(b, seconds, BOTH, start=t, every=10)
        t += seconds
        ah = current * seconds / HOUR
        expected += (ah * 0.995 if ah > 0 else ah)  # % of 100 Ah
        expected = min(max(expected, 0.0), 101.0)
    assert b.true_soc == pytest.approx(expected, abs=1e-6)


def test_parallel_strings_share_one_bus_and_the_current() -> None:
    b = bank(model="12.8V-100Ah", series=2, parallel=3, load=60, capacity_spread=0.05)
    readings = run(b, 600)
    strings = [readings.batteries[i : i + 2] for i in range(0, 6, 2)]
    for string in strings:
        assert sum(x.voltage for x in string) == pytest.approx(readings.bank_voltage)
        assert string[0].current == string[1].current
    assert sum(s[0].current for s in strings) == pytest.approx(-60.0)
    assert len({round(s[0].current, 6) for s in strings}) > 1  # uneven cells, uneven share


def test_voltage_sags_under_load_and_recovers_at_rest() -> None:
    b = bank(soc=60, load=50)
    rest = run(b, 1, NONE).bank_voltage
    loaded = run(b, 300, BOTH, start=1).bank_voltage
    recovered = run(b, 1800, NONE, start=301).bank_voltage
    assert loaded < rest - 0.05
    assert recovered == pytest.approx(rest, abs=0.03)


def test_cold_raises_the_sag() -> None:
    def sag(temperature: float) -> float:
        b = bank(soc=60, load=50, temperature=temperature, thermal_time_constant=0)
        b.set_environment(ambient=temperature)
        return run(b, 1, NONE).bank_voltage - run(b, 1, BOTH, start=1).bank_voltage

    assert sag(0.0) > 1.5 * sag(25.0)


def test_battery_temperature_follows_the_ambient_with_its_time_constant() -> None:
    b = bank(temperature=20, thermal_time_constant="1h")
    b.set_environment(ambient=30)
    readings = run(b, HOUR, NONE)
    assert readings.batteries[0].temperature == pytest.approx(20 + 10 * (1 - 0.3679), abs=0.1)


def test_imbalance_develops_from_self_discharge_spread() -> None:
    b = bank(soc=90, self_discharge=0.03, self_discharge_spread=0.01)
    start = b.physics.charge[:]
    b.read(0.0)
    b.read(30 * 86400.0)  # a month on the shelf
    drift = [a - c for a, c in zip(start, b.physics.charge, strict=True)]
    assert max(drift) - min(drift) > 0.5  # Ah between cells of a 100 Ah battery


def test_balancer_bleeds_high_cells_at_the_top_of_charge() -> None:
    b = bank(soc=97, charge=20, capacity_spread=0, self_discharge=0, self_discharge_spread=0)
    b.physics.charge[0] -= 1.0  # one cell 1 Ah (1 %) behind
    run(b, 4 * HOUR, every=5)
    charge = b.physics.charge
    assert max(charge) - min(charge) < 0.3  # the high cells were bled towards the low one
    assert b.true_soc > 99.0


def test_current_sensor_gain_offset_and_noise() -> None:
    exact = run(bank(soc=50, load=10, current_gain_error=0.01, current_offset=0.1), 5)
    assert exact.bank_current == pytest.approx(-10 * 1.01 + 0.1)
    noisy = [run(bank(soc=50, load=10, current_noise=0.5, seed=s), 5).bank_current
             for s in range(20)]
    assert len(set(noisy)) > 1
    assert sum(noisy) / len(noisy) == pytest.approx(-10, abs=0.5)


def test_same_seed_same_run() -> None:
    def trace(seed: int) -> list[float]:
        b = bank(soc=50, load=30, current_noise=0.2, seed=seed)
        return [run(b, 60, BOTH, start=60 * i).bank_current for i in range(5)]

    assert trace(7) == trace(7)
    assert trace(7) != trace(8)


def test_comms_off_gives_no_readings_but_time_goes_on() -> None:
    b = bank(soc=50, load=20, self_discharge=0, self_discharge_spread=0)
    b.apply_outputs(BOTH)
    b.read(0.0)
    b.set_environment(comms=False)
    assert b.read(1800.0) is None
    assert b.true_soc == pytest.approx(40.0, abs=0.2)
    b.set_environment(comms=True)
    assert b.read(1801.0) is not None


def test_cell_offset_shows_on_that_cell_only() -> None:
    b = bank(soc=50, series=2)
    before = run(b, 1, NONE)
    b.set_environment(cell_offsets={(2, 3): -0.4})
    after = run(b, 1, NONE, start=1)
    moved = [
        (i, j)
        for i, (x, y) in enumerate(zip(before.batteries, after.batteries, strict=True))
        for j, (u, v) in enumerate(zip(x.cell_voltages, y.cell_voltages, strict=True))
        if abs(u - v) > 0.3
    ]
    assert moved == [(1, 2)]


def test_missing_batteries_do_not_report() -> None:
    readings = run(bank(series=2, parallel=2, missing=[3]), 1)
    assert [x.serial for x in readings.batteries] == ["HQSIM0001", "HQSIM0002", "HQSIM0004"]


def test_ocv_curve_is_monotonic_and_places_the_thresholds() -> None:
    socs = [i / 10 for i in range(-10, 1011)]
    volts = [ocv(s) for s in socs]
    assert all(b >= a for a, b in itertools.pairwise(volts))
    assert 3.25 <= ocv(20) <= ocv(90) <= 3.35  # the flat middle
    assert soc_at_rest(3.10) < 5
    assert soc_at_rest(2.80) < 1
    assert ocv(100.5) > 3.75  # an over-charged cell trips the over-voltage rule
    for soc in (1.0, 10.0, 50.0, 99.0):
        assert soc_at_rest(ocv(soc)) == pytest.approx(soc, abs=0.01)


def test_create_source_builds_a_simulated_bank() -> None:
    source = create_source({"type": "simulated", "model": "25.6V-200Ah", "soc": 40, "load": 5})
    assert isinstance(source, BatterySource)
    source.apply_outputs(BOTH)
    readings = source.read(0.0)
    assert readings is not None
    assert readings.batteries[0].model == "25.6V-200Ah"
    assert len(readings.batteries[0].cell_voltages) == 8
    assert create_source({}).read(0.0) is not None  # every key has a default


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "simulated", "sooc": 40}, "[source] sooc: unknown key"),
        ({"type": "simulated", "soc": "full"}, "[source] soc: must be a number, not 'full'"),
        ({"type": "simulated", "series": 0}, "[source] series: must be between 1 and"),
        ({"type": "simulated", "model": "LFP"}, "[source] model: must be one of"),
        ({"type": "simulated", "missing": [9]}, "[source] missing: must be a list of battery"),
        ({"type": "simulated", "thermal_time_constant": "soon"},
         "[source] thermal_time_constant: must be a duration"),
        ({"type": "can-bus"}, "[source] type: unknown source type 'can-bus'"),
    ],
)
def test_create_source_names_the_bad_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        create_source(table)
    assert message in str(caught.value)


def test_a_full_battery_relaxes_from_the_absorption_voltage_once_the_charger_stops() -> None:
    b = bank(soc=97, charge=30)
    held = run(b, 2 * HOUR, every=5)
    assert held.bank_voltage == pytest.approx(14.2)  # CV: held at the absorption voltage
    assert held.bank_current < 1.0  # ... with the current tapered off
    rested = run(b, 2 * HOUR, Outputs(load=True, charger=False), start=2 * HOUR, every=5)
    assert 13.6 < rested.bank_voltage < 13.9  # about 3.45 V per cell, like a rested full LFP
    assert bank(soc=100).read(0.0) is not None
    assert run(bank(soc=100), 1, NONE).bank_voltage == pytest.approx(13.8, abs=0.05)
