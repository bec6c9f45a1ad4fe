"""Settings and commands through the Bms, and the snapshot that carries state over a restart."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from core_helpers import Driver, bank

from bms_daemon.core.bms import Bms
from bms_daemon.core.protection import PREALARM_LEAD_S
from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.core.types import BalancerState, Code, History, Inputs, Reason


def test_charged_voltage_is_checked_against_the_detected_bank() -> None:
    d = Driver(soc=80)
    d.step(bank("12.8V-100Ah", 2, 1))  # 24 V: 8 cells in series
    with pytest.raises(SettingError, match=r"8 cells in series; allowed: 27\.20-28\.80 V"):
        d.bms.set_setting("charged_voltage", 14.0)
    assert d.bms.settings.charged_voltage is None  # nothing changed
    assert d.bms.set_setting("charged_voltage", "28.4 V").charged_voltage == 28.4


def test_before_detection_a_value_for_any_12_24_or_48_v_bank_is_accepted() -> None:
    bms = Bms()
    for volts in (13.6, 14.4, 28.4, 56.8):
        assert bms.set_setting("charged_voltage", volts).charged_voltage == volts
    with pytest.raises(SettingError, match="outside"):
        bms.set_setting("charged_voltage", 60.0)
    for volts in (20.0, 40.0, 14.5):  # between the banks: fits none, so it is refused now
        with pytest.raises(SettingError, match=r"fits no bank: .*13\.60-14\.40 V \(12 V bank\)"):
            bms.set_setting("charged_voltage", volts)
    assert bms.settings.charged_voltage == 56.8


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("tail_current", 11, "out of range 0.5-10%"),
        ("charge_detection_time", 0, "out of range 1-50 min"),
        ("discharge_floor", 30, "at least the discharge floor"),
        ("pin", "12345", "6 digits"),
        ("mode", "maybe", "on or off"),
        ("colour", 1, "unknown setting 'colour'"),
    ],
)
def test_rejected_settings_change_nothing_and_say_why(name: str, value: Any, words: str) -> None:
    bms = Bms()
    before = bms.settings
    with pytest.raises(SettingError, match=words):
        bms.set_setting(name, value)
    assert bms.settings == before


def test_a_charged_voltage_set_for_another_bank_falls_back_to_the_default() -> None:
    """Set for a 12 V bank, then the bank becomes 24 V: 14.2 V would never sync."""
    d = Driver(soc=90)
    d.step(bank())
    d.bms.set_setting("charged_voltage", 14.2)
    readings = bank("12.8V-100Ah", 2, 1, cell=3.5, current=1.0)  # 28.0 V = 3.50 V x 8
    d.prime(readings)
    assert d.run(readings, 180).soc == 100.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("mode", False),
        ("discharge_floor", 15),
        ("low_soc_warning", 30),
        ("bluetooth", False),
        ("instant_readout", False),
        ("pin", "123456"),
        ("tail_current", 2),
    ],
)
def test_a_stored_charged_voltage_the_bank_no_longer_allows_blocks_no_other_change(
    name: str, value: Any
) -> None:
    """20 V was stored by an older version (which took any 4-16 cell value before any battery
    data), or 28.4 V for a 24 V bank that became 12 V: Mode off (the one-tap system off) and
    every other setting must still be changeable."""
    bms = Bms(Settings(charged_voltage=20.0))
    status = bms.step(bank(), Inputs(), 0.0)
    assert status.setting_problems == (
        "charged_voltage 20 V does not fit this bank of 4 cells in series (allowed "
        "13.60-14.40 V); 14.00 V is used until it is set again",
    )
    assert getattr(bms.set_setting(name, value), name) == value
    assert bms.settings.charged_voltage == 20.0  # kept: reported, not silently replaced
    with pytest.raises(SettingError, match=r"allowed: 13\.60-14\.40 V"):
        bms.set_setting("charged_voltage", 20.0)  # setting it again is judged on the bank
    assert bms.set_setting("charged_voltage", None).charged_voltage is None
    assert bms.step(bank(), Inputs(), 1.0).setting_problems == ()


def test_no_setting_problem_before_the_bank_is_known_or_while_it_is_invalid() -> None:
    bms = Bms(Settings(charged_voltage=20.0))
    assert bms.status.setting_problems == ()
    invalid = bank("12.8V-100Ah", 3, 1)  # 38.4 V: E-B05
    assert bms.step(invalid, Inputs(), 0.0).setting_problems == ()


@pytest.mark.parametrize(
    ("argument", "words"),
    [(None, "needs a state of charge"), (101, "out of range"), (float("nan"), "needs")],
)
def test_set_soc_rejects_bad_values(argument: float | None, words: str) -> None:
    bms = Bms()
    with pytest.raises(SettingError, match=words):
        bms.command("set_soc", argument, 0.0)
    assert bms.status.soc is None


def test_commands() -> None:
    d = Driver()
    assert d.bms.command("set_soc", 42, d.now) == "SOC set to 42%"
    assert d.step(bank()).soc == 42
    assert d.bms.command("synchronise", None, d.now) == "SOC synchronised to 100%"
    status = d.step(bank())
    assert status.soc == 100
    assert status.soc_synchronised
    with pytest.raises(SettingError, match="known commands: set_soc, synchronise"):
        d.bms.command("explode", None, d.now)
    with pytest.raises(SettingError, match="takes no value"):
        d.bms.command("synchronise", 5, d.now)


def test_factory_reset_restores_the_monitor_settings_and_keeps_pin_soc_history() -> None:
    d = Driver(soc=50)
    d.run(bank(current=-20.0), 60)
    for name, value in [
        ("tail_current", 2),
        ("discharge_floor", 5),
        ("low_soc_warning", 7),
        ("bluetooth", False),
        ("instant_readout", False),
        ("pin", "123456"),
    ]:
        d.bms.set_setting(name, value)
    history = d.bms.history()
    message = d.bms.command("factory_reset", None, d.now)
    assert "factory defaults" in message
    assert d.bms.settings == Settings(pin="123456")
    assert d.bms.history() == history
    assert d.step(bank()).soc == pytest.approx(49.6, abs=0.1)


def full_state() -> Bms:
    d = Driver(soc=90)
    d.bms.set_setting("discharge_floor", 15)
    d.bms.set_setting("pin", "654321")
    d.run_until(bank(cell=3.5, current=1.0), lambda s: s.soc == 100.0, 600)
    d.run(bank(current=-50.0), 3600)
    return d.bms


@functools.cache
def full_snapshot() -> str:
    """One full state's snapshot as JSON, computed once for the tests that spoil a copy."""
    return json.dumps(full_state().snapshot())


def test_snapshot_round_trip_keeps_settings_soc_history_and_balancer() -> None:
    bms = full_state()
    saved = json.loads(json.dumps(bms.snapshot()))  # what the store writes and reads back
    restored = Bms(saved=saved)
    assert restored.settings == bms.settings
    assert restored.history() == bms.history()
    assert restored.status.soc == bms.status.soc
    assert restored.status.soc_synchronised
    assert restored.snapshot() == saved
    status = restored.step(bank(current=-50.0), Driver().inputs, 1000.0)
    assert status.consumed_ah == pytest.approx(bms.status.consumed_ah)
    assert status.bank is not None
    assert status.bank.balancer == BalancerState.BALANCED  # remembers the last full charge


def test_an_under_voltage_stays_latched_over_a_restart() -> None:
    """Cells at 3.0 V after an under-voltage: a restart must not reconnect the loads."""
    d = Driver(soc=30)
    d.run(bank(faults={(0, 0): 2.5}), 2)
    assert d.bms.status.alarms == (Code.A_B01,)
    restarted = Driver(Bms(saved=json.loads(json.dumps(d.bms.snapshot()))))
    status = restarted.run(bank(faults={(0, 0): 3.0}), 60)
    assert not status.outputs.load
    assert status.alarms == (Code.A_B01,)
    assert restarted.step(bank()).outputs.load


def test_the_first_status_after_a_restart_shows_the_saved_mode() -> None:
    bms = Bms()
    bms.set_setting("mode", False)
    restored = Bms(saved=bms.snapshot())
    assert restored.status.mode is False
    assert restored.status.discharge_reason == Reason.STARTING


def test_an_unknown_soc_stays_unknown_after_a_restart() -> None:
    bms = Bms()
    restored = Bms(saved=bms.snapshot())
    assert restored.status.soc is None
    assert restored.snapshot()["soc"]["source"] == "unknown"


def test_the_pre_alarm_lead_restarts_after_a_restart() -> None:
    """Timers are not persisted: after a restart, LOAD waits a full 30 s again (safe side)."""
    d = Driver(soc=80)
    d.run(bank(faults={(0, 0): 3.0}), 60)
    restarted = Driver(Bms(saved=d.bms.snapshot()))
    low = bank(faults={(0, 0): 2.75})
    assert restarted.step(low).outputs.load
    took, status = restarted.run_until(low, lambda s: not s.outputs.load, 60)
    assert took == pytest.approx(PREALARM_LEAD_S)
    assert status.alarms == (Code.A_B01,)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: s.update(version=99), "unsupported version"),
        (lambda s: s["settings"].update(tail_current=50), "settings: tail_current"),
        (lambda s: s.update(settings=[1]), "settings must be a table"),
        (lambda s: s["soc"].update(soc=150), "not a percentage"),
        (lambda s: s["soc"].update(source="guess"), "unknown source"),
        (lambda s: s["history"].update(charge_cycles=-1), "charge_cycles must be a count"),
        (lambda s: s["history"].update(min_cell_voltage="low"), "min_cell_voltage"),
        (lambda s: s["history"].update(bogus=1), "unknown field 'bogus'"),
        (lambda s: s["balancer"].update(serials="HQ1"), "serials"),
        (lambda s: s["balancer"].update(seconds_since_full_charge=-5), "seconds"),
        (lambda s: s["protection"].update(cell_uv="yes"), "cell_uv must be true or false"),
        (lambda s: s["protection"].update(melted=True), "unknown rule 'melted'"),
    ],
)
def test_a_bad_snapshot_raises_value_error_naming_the_problem(change: Any, words: str) -> None:
    saved = json.loads(full_snapshot())
    change(saved)
    with pytest.raises(ValueError, match=words):
        Bms(saved=saved)


def test_a_snapshot_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a table"):
        Bms(saved=[1, 2])  # type: ignore[arg-type]


def test_missing_sections_keep_defaults_and_unknown_keys_are_ignored() -> None:
    bms = Bms(Settings(discharge_floor=5), saved={"version": 1, "future": True})
    assert bms.settings.discharge_floor == 5
    assert bms.history() == History()
