"""SOC counting, synchronisation, the rest-voltage estimate and time to go (SPEC §4)."""

from __future__ import annotations

import pytest
from core_helpers import Driver, bank
from hypothesis import given, settings
from hypothesis import strategies as st

from bms_daemon.core.soc import (
    CHARGE_EFFICIENCY,
    PEUKERT_EXPONENT,
    REST_TIME_S,
    SocCounter,
    peukert_current,
    rest_estimate,
)
from bms_daemon.core.types import Code
from bms_daemon.sources.ocv import ocv

FULL = 14.0  # default charged voltage of one 12.8 V battery (3.50 V x 4)


def test_soc_is_unknown_until_synchronised_or_set() -> None:
    d = Driver()
    status = d.run(bank(current=-20.0), 60)
    assert status.soc is None
    assert not status.soc_synchronised
    assert status.consumed_ah is None
    assert status.ttg_min is None


def test_discharge_at_the_20_hour_rate_counts_plain_ampere_hours() -> None:
    d = Driver(soc=50, tick=10)
    d.prime(bank(current=-5.0))
    status = d.run(bank(current=-5.0), 3600)  # 5 A = C/20 for 100 Ah: Peukert factor 1
    assert status.soc == pytest.approx(45.0)
    assert status.consumed_ah == pytest.approx(55.0)


def test_peukert_makes_a_fast_discharge_cost_more() -> None:
    d = Driver(soc=100, tick=10)
    d.prime(bank(current=-50.0))
    status = d.run(bank(current=-50.0), 3600)
    expected = 50.0 * (50.0 / 5.0) ** (PEUKERT_EXPONENT - 1)  # ~56.1 Ah
    assert status.soc == pytest.approx(100.0 - expected)
    assert expected > 56.0


def test_charge_counts_at_99_percent_efficiency() -> None:
    d = Driver(soc=50, tick=10)
    d.prime(bank(current=10.0))
    status = d.run(bank(current=10.0), 3600)
    assert status.soc == pytest.approx(50.0 + 10.0 * CHARGE_EFFICIENCY)


@pytest.mark.parametrize("current", [0.09, -0.09, 0.0])
def test_currents_under_0_1_a_count_as_zero(current: float) -> None:
    d = Driver(soc=50, tick=60)
    status = d.run(bank(current=current), 2 * 24 * 3600)
    assert status.soc == 50.0


def test_soc_is_clamped_to_0_and_100() -> None:
    d = Driver(soc=99, tick=10)
    assert d.run(bank(current=50.0), 3600).soc == 100.0
    d.bms.command("set_soc", 1, d.now)
    assert d.run(bank(current=-50.0), 3600).soc == 0.0


def test_parallel_banks_count_against_the_whole_capacity() -> None:
    d = Driver(soc=50, tick=10)
    d.prime(bank("12.8V-100Ah", 1, 2, current=-10.0))
    status = d.run(bank("12.8V-100Ah", 1, 2, current=-10.0), 3600)  # C/20 of 200 Ah
    assert status.soc == pytest.approx(45.0)


def test_sync_after_the_detection_time_at_charged_voltage_and_tail_current() -> None:
    d = Driver(tick=1)  # unknown SOC: a sync makes it known
    readings = bank(cell=FULL / 4, current=3.9)  # tail = 4 % of 100 Ah = 4 A
    d.prime(readings)
    status = d.run(readings, 179)
    assert status.soc is None
    status = d.step(readings)
    assert status.soc == 100.0
    assert status.soc_synchronised
    assert status.consumed_ah == 0.0
    assert d.bms.history().synchronisations == 1


@pytest.mark.parametrize(
    ("cell", "current"),
    [
        (FULL / 4 - 0.01, 1.0),  # under the charged voltage
        (FULL / 4, 4.0),  # at the tail current: not under it
        (FULL / 4, -1.0),  # discharging
    ],
)
def test_no_sync_when_a_condition_fails(cell: float, current: float) -> None:
    d = Driver(soc=80)
    status = d.run(bank(cell=cell, current=current), 3600)
    assert status.soc != 100.0
    assert d.bms.history().synchronisations == 0


def test_the_conditions_must_hold_continuously() -> None:
    d = Driver(soc=90)
    d.prime(bank(cell=3.5, current=2.0))
    d.run(bank(cell=3.5, current=2.0), 170)
    d.step(bank(cell=3.5, current=6.0))  # one sample over the tail current restarts the time
    status = d.run(bank(cell=3.5, current=2.0), 170)
    assert status.soc != 100.0
    assert d.run(bank(cell=3.5, current=2.0), 10).soc == 100.0


def test_changing_a_sync_setting_restarts_the_detection_time() -> None:
    d = Driver(soc=90)
    d.prime(bank(cell=3.5, current=2.0))
    d.run(bank(cell=3.5, current=2.0), 170)
    d.bms.set_setting("tail_current", 5)
    assert d.run(bank(cell=3.5, current=2.0), 170).soc != 100.0
    assert d.run(bank(cell=3.5, current=2.0), 10).soc == 100.0


def test_sync_uses_a_custom_charged_voltage_and_detection_time() -> None:
    d = Driver(soc=90)
    d.bms.set_setting("charged_voltage", 14.2)
    d.bms.set_setting("charge_detection_time", 1)
    assert d.run(bank(cell=3.5, current=1.0), 600).soc != 100.0
    assert d.run(bank(cell=3.55, current=1.0), 60).soc == 100.0


def test_time_to_go_to_the_discharge_floor() -> None:
    d = Driver(soc=50)
    status = d.run(bank(current=-5.0), 1)
    # 40 % of 100 Ah above the 10 % floor at 5 A (the 20-hour rate): 8 h
    assert status.ttg_min == pytest.approx(480.0, rel=1e-3)
    d.bms.set_setting("low_soc_warning", 0)
    d.bms.set_setting("discharge_floor", 0)
    status = d.step(bank(current=-5.0))
    assert status.ttg_min == pytest.approx(600.0, rel=1e-3)


def test_time_to_go_averages_the_current_over_3_minutes() -> None:
    d = Driver(soc=50)
    d.run(bank(current=-5.0), 600)
    status = d.step(bank(current=-10.0))  # the current doubles ...
    assert status.soc is not None
    assert status.ttg_min is not None
    at_5_a = (status.soc - 10.0) / 100 * 100 / 5.0 * 60
    assert status.ttg_min > 0.95 * at_5_a  # ... time to go barely moves at first
    status = d.run(bank(current=-10.0), 900)  # five averaging periods later
    assert status.soc is not None
    expected = (status.soc - 10.0) / 100 * 100 / peukert_current(10.0, 100.0) * 60
    assert status.ttg_min == pytest.approx(expected, rel=0.02)


def test_time_to_go_of_a_discharge_that_follows_idle_minutes_uses_the_discharge_current() -> None:
    d = Driver(soc=50)
    d.run(bank(current=0.0), 600)  # idle: loads off
    status = d.step(bank(current=-5.0))  # the loads come on
    # 40 % of 100 Ah above the floor at 5 A: 8 h, not the days an average with the idle zeros gives
    assert status.ttg_min == pytest.approx(480.0, rel=1e-2)


@pytest.mark.parametrize("current", [5.0, 0.0])
def test_no_time_to_go_while_not_discharging(current: float) -> None:
    d = Driver(soc=50)
    assert d.run(bank(current=current), 300).ttg_min is None


def test_rest_voltage_estimate_at_the_steep_low_end() -> None:
    d = Driver(tick=10)
    d.prime(bank(cell=3.10))
    status = d.run(bank(cell=3.10), REST_TIME_S - 10)
    assert status.soc is None
    status = d.run(bank(cell=3.10), 10)
    assert status.soc == pytest.approx(2.5)
    assert status.soc_synchronised
    assert status.alarms == (Code.A_B07,)  # the floor now acts on the estimate


def test_no_estimate_on_the_flat_part_of_the_curve_or_while_current_flows() -> None:
    d = Driver(tick=10)
    assert d.run(bank(cell=3.30), 3 * REST_TIME_S).soc is None
    d2 = Driver(tick=10)
    d2.run(bank(cell=3.10, current=-2.0), REST_TIME_S - 10)
    assert d2.run(bank(cell=3.10), REST_TIME_S - 10).soc is None  # the rest time restarted


def test_rest_curve_lookup() -> None:
    assert rest_estimate(2.4) == 0.0
    assert rest_estimate(3.15) == pytest.approx(3.5)
    assert rest_estimate(3.215) == pytest.approx(9.25)
    assert rest_estimate(3.229) is not None
    assert rest_estimate(3.23) is None  # the flat part starts
    assert rest_estimate(3.38) is None  # nor the top
    assert rest_estimate(3.30) is None
    assert rest_estimate(3.50) is None


def test_the_rest_estimate_errs_low_against_the_simulated_cells() -> None:
    """Across the whole curve (0.1 % steps) the estimate is below the simulator's true SOC by
    at least 0.3 % (or 0 %), never above; and it is made only at the steep low end."""
    estimated = []
    for tenths in range(1001):
        true_soc = tenths / 10
        estimate = rest_estimate(ocv(true_soc, rested=True))
        if estimate is not None:
            estimated.append(true_soc)
            assert estimate <= max(0.0, true_soc - 0.3), true_soc
    assert max(estimated) < 16.0


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(0, 100),
    samples=st.lists(
        st.tuples(st.floats(-500, 500, allow_nan=False), st.floats(0.01, 60)), max_size=50
    ),
)
def test_soc_always_stays_within_0_and_100(
    start: float, samples: list[tuple[float, float]]
) -> None:
    counter = SocCounter()
    counter.set(start)
    for current, dt in samples:
        counter.count(current, dt, 100.0)
        value = counter.value()
        assert value is not None
        assert 0.0 <= value <= 100.0


@settings(max_examples=100, deadline=None)
@given(
    low=st.floats(0.2, 100),
    high=st.floats(0.2, 100),
)
def test_peukert_is_monotonic_and_never_cheaper_above_the_20_hour_rate(
    low: float, high: float
) -> None:
    low, high = sorted((low, high))
    assert peukert_current(low, 100.0) <= peukert_current(high, 100.0)
    if high >= 5.0:
        assert peukert_current(high, 100.0) >= high


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(
        st.tuples(
            st.floats(13.5, 14.5),  # bank voltage around the charged voltage
            st.floats(-3.0, 8.0),  # current around the tail current
            st.floats(1.0, 30.0),  # seconds since the previous sample
        ),
        max_size=60,
    )
)
def test_a_sync_fires_only_after_the_conditions_held_for_the_detection_time(
    samples: list[tuple[float, float, float]],
) -> None:
    """No false 100 %: a sync needs V >= 14.0 V and 0 <= I < 4 A over the whole 180 s."""
    counter = SocCounter()
    counter.set(60.0)
    held = 0.0
    for voltage, current, dt in samples:
        ok = voltage >= 14.0 and 0.0 <= current < 4.0
        held = held + dt if ok else 0.0
        fired = counter.check_sync(
            voltage=voltage,
            current=current,
            dt=dt,
            charged_voltage=14.0,
            tail_current_a=4.0,
            detection_s=180.0,
        )
        if fired:
            assert held >= 180.0
            assert counter.value() == 100.0
        elif held >= 180.0:
            assert counter.sync_fired  # it fired earlier in this same period
