"""Balancer states (SPEC §4), LEDs and code texts (SPEC §5)."""

from __future__ import annotations

import pytest
from core_helpers import Driver, bank

from bms_daemon.core.balancer import UNKNOWN_AFTER_S
from bms_daemon.core.codes import ADVICE, TITLES, describe
from bms_daemon.core.leds import blue_led, red_led
from bms_daemon.core.types import BalancerState, Code, Inputs, LedState, Status


def balancer(status: Status) -> BalancerState:
    assert status.bank is not None
    return status.bank.balancer


def charged(d: Driver) -> None:
    """Charge to a synchronisation (with these batteries)."""
    d.run_until(bank(cell=3.5, current=1.0), lambda s: s.soc == 100.0 and s.soc_synchronised, 600)


def test_unknown_until_the_first_full_charge() -> None:
    d = Driver()
    assert balancer(d.run(bank(), 2)) == BalancerState.UNKNOWN
    d2 = Driver(soc=80)  # a set SOC is no full charge
    assert balancer(d2.run(bank(), 2)) == BalancerState.UNKNOWN


def test_balanced_balancing_and_imbalance() -> None:
    d = Driver(soc=90)
    charged(d)
    assert balancer(d.step(bank(cell=3.3))) == BalancerState.BALANCED
    spread_20mv = {(0, 0): 3.52}
    status = d.step(bank(cell=3.5, current=5.0, faults=spread_20mv))
    assert balancer(status) == BalancerState.BALANCING
    status = d.step(bank(cell=3.5, current=-5.0, faults=spread_20mv))  # not charging
    assert balancer(status) == BalancerState.BALANCED
    status = d.step(bank(cell=3.3, current=-5.0, faults={(0, 0): 3.36}))
    assert balancer(status) == BalancerState.IMBALANCE


def test_unknown_after_30_days_without_a_full_charge() -> None:
    d = Driver(soc=90)
    charged(d)
    d.tick = 3600.0  # readings once an hour: the comms rules do not matter here
    status = d.run(bank(), UNKNOWN_AFTER_S - 3600)
    assert balancer(status) == BalancerState.BALANCED
    status = d.run(bank(), 7200)
    assert balancer(status) == BalancerState.UNKNOWN


def test_unknown_when_a_battery_is_added_until_the_next_full_charge() -> None:
    d = Driver(soc=90)
    charged(d)
    two = bank("12.8V-100Ah", 1, 2)
    assert balancer(d.step(two)) == BalancerState.UNKNOWN
    assert balancer(d.run(bank("12.8V-100Ah", 1, 2, current=-10.0), 400)) == (
        BalancerState.UNKNOWN
    )
    d.run_until(
        bank("12.8V-100Ah", 1, 2, cell=3.5, current=1.0),
        lambda s: balancer(s) == BalancerState.BALANCED,
        600,
    )  # ... and the next full charge counts the new battery in


def test_history_reset_does_not_make_the_balancer_forget() -> None:
    d = Driver(soc=90)
    charged(d)
    d.bms.command("reset_history", None, d.now)
    assert balancer(d.step(bank())) == BalancerState.BALANCED


@pytest.mark.parametrize(
    ("inputs", "led"),
    [
        (Inputs(), LedState.OFF),
        (Inputs(ble_advertising=True), LedState.BLINK),
        (Inputs(ble_advertising=True, ble_connected=True), LedState.ON),
        (Inputs(ble_connected=True), LedState.ON),
    ],
)
def test_blue_led_shows_bluetooth(inputs: Inputs, led: LedState) -> None:
    assert blue_led(inputs) == led
    d = Driver(soc=80)
    assert d.step(bank(), inputs).leds.blue == led


def test_red_led_off_blinking_solid() -> None:
    assert red_led((), (), ()) == LedState.OFF
    assert red_led((Code.W_B01,), (), ()) == LedState.BLINK
    assert red_led((Code.W_B01,), (Code.A_B01,), ()) == LedState.ON
    assert red_led((), (), (Code.E_B11,)) == LedState.ON
    d = Driver(soc=80)
    assert d.step(bank()).leds.red == LedState.OFF
    assert d.step(bank(faults={(0, 0): 3.0})).leds.red == LedState.BLINK
    assert d.step(bank(temperature=55)).leds.red == LedState.ON
    assert d.step(bank(bank_voltage=70)).leds.red == LedState.ON


def test_every_code_has_a_title_and_advice() -> None:
    for code in Code:
        assert TITLES[code]
        assert ADVICE[code].endswith(".")
    assert describe(Code.W_B05) == (
        "W-B05 Battery communication lost: Check the cables between the BMS and the batteries."
    )
    assert "Victron dealer" in describe(Code.E_B11)
