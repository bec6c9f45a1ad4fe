"""The core with real banks: DIY packs, extremes-only cells, two temperatures per battery,
a battery that disappears (also after a restart), the bank-change confirmation, comms delays."""

from __future__ import annotations

import pytest
from core_helpers import Driver, bank

from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import SettingError
from bms_daemon.core.types import BatteryModel, BatteryReading, Code, Readings, Reason

PACK_16S = BatteryModel("EVE LF280K 16S", 51.2, 280.0, 16)


def pack(
    *,
    low: float = 3.30,
    high: float = 3.32,
    cold: float = 20.0,
    warm: float = 22.0,
    current: float = -10.0,
    model: BatteryModel = PACK_16S,
    serial: str = "can:bms",
) -> Readings:
    """One DIY pack as a CAN BMS reports it: extremes only, two temperatures."""
    voltage = (low + high) / 2 * model.cells
    battery = BatteryReading(
        serial=serial, model=model.name, firmware="", voltage=voltage, current=current,
        temperature=warm, cell_voltages=(), min_temperature=cold, min_cell_voltage=low,
        max_cell_voltage=high, description=model,
    )
    return Readings((battery,), voltage, current)


def run(driver: Driver, readings: Readings | None, seconds: float) -> None:
    for _ in range(round(seconds / driver.tick)):
        driver.step(readings)


def test_a_16_cell_280ah_pack_is_a_valid_48v_bank() -> None:
    driver = Driver(soc=50.0)
    status = driver.step(pack())
    assert status.errors == ()
    assert status.bank is not None
    assert (status.bank.model, status.bank.capacity_ah, status.bank.series) == (
        "EVE LF280K 16S", 280.0, 1)
    assert status.outputs.load
    assert status.outputs.charger
    assert (status.bank.min_cell_voltage, status.bank.max_cell_voltage) == (3.30, 3.32)


def test_a_15_cell_pack_is_not_a_system_voltage_e_b05() -> None:
    odd = BatteryModel("15S", 48.0, 100.0, 15)
    status = Driver(soc=50.0).step(pack(model=odd))
    assert Code.E_B05 in status.errors
    assert not status.outputs.load
    assert not status.outputs.charger


def test_a_pack_without_any_cell_figure_is_e_b05() -> None:
    readings = pack()
    battery = readings.batteries[0]
    bare = BatteryReading(battery.serial, battery.model, "", battery.voltage, battery.current,
                          20.0, (), description=PACK_16S)
    status = Driver(soc=50.0).step(Readings((bare,), readings.bank_voltage, -1.0))
    assert Code.E_B05 in status.errors


def test_lowest_cell_of_the_extremes_raises_pre_alarm_then_floats_load_30_s_later() -> None:
    driver = Driver(soc=50.0)
    driver.step(pack())
    status = driver.step(pack(low=2.79))
    assert status.outputs.prealarm
    assert status.outputs.load
    run(driver, pack(low=2.79), 29.0)
    assert driver.bms.status.outputs.load
    status = driver.step(pack(low=2.79))
    assert not status.outputs.load
    assert Code.A_B01 in status.alarms


def test_the_cold_rule_uses_the_coldest_sensor_and_the_hot_rule_the_warmest() -> None:
    driver = Driver(soc=50.0)
    status = driver.step(pack(cold=4.0, warm=20.0))
    assert status.charge_reason is Reason.COLD
    assert not status.outputs.charger
    status = driver.step(pack(cold=20.0, warm=51.0))
    assert status.charge_reason is Reason.HOT
    assert Code.A_B09 in status.alarms
    assert status.bank is not None
    assert (status.bank.min_temperature, status.bank.max_temperature) == (20.0, 51.0)
    assert status.bank.battery_list[0].min_temperature == 20.0


def test_a_battery_that_disappears_from_a_parallel_bank_raises_the_comms_codes() -> None:
    driver = Driver(soc=80.0)
    full = bank(parallel=2, current=-20.0)
    run(driver, full, 3.0)
    half = Readings(full.batteries[:1], full.bank_voltage, full.bank_current)
    run(driver, half, 5.0)
    assert Code.W_B05 in driver.bms.status.warnings
    assert driver.bms.status.outputs.load  # the comms alarm waits for its delay
    run(driver, half, 15.0)
    status = driver.bms.status
    assert Code.A_B05 in status.alarms
    assert not status.outputs.load
    assert not status.outputs.charger
    assert status.errors == ()  # not a configuration error: a battery went silent
    assert driver.bms.missing_batteries == frozenset({"HQ0001"})
    run(driver, full, 1.0)
    assert driver.bms.status.alarms == ()
    assert driver.bms.status.outputs.load


def test_soc_counts_against_the_remembered_capacity_while_a_battery_is_missing() -> None:
    with_both, with_one = Driver(soc=80.0), Driver(soc=80.0)
    full = bank(parallel=2, current=-100.0)
    half = Readings(full.batteries[:1], full.bank_voltage, full.bank_current)
    for driver in (with_both, with_one):
        run(driver, full, 2.0)
    run(with_both, full, 36.0)
    run(with_one, half, 36.0)
    assert with_one.bms.status.soc == pytest.approx(with_both.bms.status.soc, abs=0.01)


def test_the_bank_is_remembered_across_a_restart() -> None:
    driver = Driver(soc=80.0)
    full = bank(parallel=2)
    run(driver, full, 2.0)
    saved = driver.bms.snapshot()
    restarted = Driver(Bms(saved=saved))
    half = Readings(full.batteries[:1], full.bank_voltage, full.bank_current)
    run(restarted, half, 21.0)
    status = restarted.bms.status
    assert Code.A_B05 in status.alarms
    assert not status.outputs.load
    assert restarted.bms.known_batteries == frozenset({"HQ0000", "HQ0001"})


def test_a_deliberate_bank_change_is_confirmed_by_command_not_guessed() -> None:
    driver = Driver(soc=80.0)
    full = bank(parallel=2)
    run(driver, full, 2.0)
    half = Readings(full.batteries[:1], full.bank_voltage, full.bank_current)
    run(driver, half, 30.0)
    assert Code.A_B05 in driver.bms.status.alarms
    message = driver.bms.command("confirm_bank")
    assert "forgotten: HQ0001" in message
    run(driver, half, 1.0)
    status = driver.bms.status
    assert status.alarms == ()
    assert status.outputs.load
    assert status.bank is not None
    assert status.bank.capacity_ah == 100.0
    saved = Bms(saved=driver.bms.snapshot())
    assert saved.known_batteries == frozenset({"HQ0000"})


def test_confirm_bank_before_any_battery_reports_is_refused() -> None:
    with pytest.raises(SettingError, match="no battery reports"):
        Bms().command("confirm_bank")


def test_a_battery_added_to_a_valid_bank_joins_the_memory() -> None:
    driver = Driver(soc=80.0)
    run(driver, bank(parallel=1), 2.0)
    run(driver, bank(parallel=2), 2.0)
    assert driver.bms.known_batteries == frozenset({"HQ0000", "HQ0001"})
    assert driver.bms.status.alarms == ()


@pytest.mark.parametrize(("warning", "alarm"), [(10.0, 40.0), (3.0, 12.0)])
def test_comms_delays_are_what_the_source_configures(warning: float, alarm: float) -> None:
    driver = Driver(Bms(comms_warning_s=warning, comms_alarm_s=alarm))
    driver.step(bank())
    run(driver, None, warning - 1.0)
    assert driver.bms.status.warnings == ()
    run(driver, None, 1.0)
    assert Code.W_B05 in driver.bms.status.warnings
    run(driver, None, alarm - warning - 1.0)
    assert driver.bms.status.outputs.load
    run(driver, None, 1.0)
    assert Code.A_B05 in driver.bms.status.alarms
    assert not driver.bms.status.outputs.load


def test_the_sources_own_alarms_are_shown_in_the_status_not_obeyed() -> None:
    readings = pack()
    noted = Readings(readings.batteries, readings.bank_voltage, readings.bank_current,
                     ("alarm: battery low voltage",))
    status = Driver(soc=50.0).step(noted)
    assert status.source_notes == ("alarm: battery low voltage",)
    assert status.outputs.load
    assert status.outputs.charger
