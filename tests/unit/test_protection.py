"""Every protection rule of SPEC §4 trips and clears, with its code, reason and output."""

from __future__ import annotations

import dataclasses

import pytest
from core_helpers import Driver, bank

from bms_daemon.core.protection import PREALARM_LEAD_S
from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Code, Inputs, Outputs, Readings, Reason, Status

HEALTHY = bank()


def low_cell(volts: float) -> Readings:
    """One cell of the first battery at ``volts``, the rest healthy."""
    return bank(faults={(0, 1): volts})


def normal(status: Status) -> bool:
    return (
        status.outputs == Outputs(load=True, charger=True, prealarm=False)
        and status.codes == ()
        and status.charge_reason is None
        and status.discharge_reason is None
    )


@pytest.fixture
def d() -> Driver:
    driver = Driver(soc=80)
    assert normal(driver.run(HEALTHY, 2))
    return driver


def test_before_any_data_everything_floats_with_reason_starting() -> None:
    d = Driver()
    status = d.bms.status
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == status.charge_reason == Reason.STARTING
    status = d.step(None)
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == Reason.STARTING


def test_cell_pre_alarm_trips_under_3_10_and_clears_at_3_20(d: Driver) -> None:
    status = d.run(low_cell(3.11), 5)
    assert normal(status)
    status = d.run(low_cell(3.09), 1)
    assert status.warnings == (Code.W_B01,)
    assert status.outputs == Outputs(load=True, charger=True, prealarm=True)
    assert status.allowed_to_discharge
    assert status.discharge_reason == Reason.CELL_PRE_ALARM
    status = d.run(low_cell(3.19), 60)  # hysteresis: still on
    assert status.outputs.prealarm
    assert status.warnings == (Code.W_B01,)
    assert normal(d.run(low_cell(3.20), 1))


def test_cell_under_voltage_after_a_long_pre_alarm_floats_load_at_once(d: Driver) -> None:
    d.run(low_cell(3.0), 40)  # pre-alarm high for 40 s already
    status = d.run(low_cell(2.79), 1)
    assert Code.A_B01 in status.alarms
    assert Code.W_B01 not in status.warnings  # the alarm replaces its warning
    assert status.outputs == Outputs(load=False, charger=True, prealarm=True)
    assert status.discharge_reason == Reason.CELL_UNDER_VOLTAGE
    assert status.leds.red.value == "on"
    status = d.run(low_cell(3.19), 120)  # recovered a little: still disconnected
    assert not status.outputs.load
    assert Code.A_B01 in status.alarms
    assert normal(d.run(low_cell(3.20), 1))


def test_under_voltage_without_pre_alarm_waits_the_full_lead() -> None:
    """A sudden drop from 3.30 V to 2.75 V: PRE-ALARM now, LOAD only 30 s later."""
    d = Driver(soc=80, tick=0.5)
    d.run(HEALTHY, 2)
    first = d.step(low_cell(2.75))
    assert first.outputs == Outputs(load=True, charger=True, prealarm=True)
    rose = d.now
    took, status = d.run_until(low_cell(2.75), lambda s: not s.outputs.load, 120)
    assert d.now - rose == pytest.approx(PREALARM_LEAD_S)
    assert status.alarms == (Code.A_B01,)
    assert took == pytest.approx(PREALARM_LEAD_S)


def test_below_2_60_floats_load_immediately(d: Driver) -> None:
    status = d.step(low_cell(2.59))
    assert not status.outputs.load
    assert status.alarms == (Code.A_B01,)
    assert status.outputs.prealarm


def test_a_brief_dip_under_2_80_that_recovers_does_not_disconnect(d: Driver) -> None:
    d.run(low_cell(2.75), 20)
    status = d.run(low_cell(2.9), 60)
    assert status.outputs.load
    assert status.alarms == ()
    assert status.warnings == (Code.W_B01,)


def test_low_pack_voltage_keeps_the_pre_alarm_lead_then_floats_load_until_3_20(
    d: Driver,
) -> None:
    """The whole pack sagging under 2.80 V per cell: PRE-ALARM first, LOAD 30 s later."""
    low = bank(bank_voltage=11.19)  # under 2.80 V x 4 cells, cells read 3.30 V
    first = d.step(low)
    assert first.outputs == Outputs(load=True, charger=True, prealarm=True)
    assert first.discharge_reason == Reason.LOW_PACK_VOLTAGE
    assert first.alarms == ()
    rose = d.now
    _, status = d.run_until(low, lambda s: not s.outputs.load, 120)
    assert d.now - rose == pytest.approx(PREALARM_LEAD_S)
    assert status.alarms == (Code.A_B08,)
    assert status.outputs.charger
    assert status.discharge_reason == Reason.LOW_PACK_VOLTAGE
    assert not d.run(bank(bank_voltage=12.79), 1).outputs.load
    assert normal(d.run(bank(bank_voltage=12.80), 1))


def test_low_pack_voltage_under_2_60_per_cell_floats_load_at_once(d: Driver) -> None:
    status = d.step(bank(bank_voltage=10.39))  # under 2.60 V x 4 cells: cells in danger
    assert status.alarms == (Code.A_B08,)
    assert not status.outputs.load
    assert status.outputs.prealarm


def test_low_pack_voltage_after_a_long_pre_alarm_floats_load_at_once(d: Driver) -> None:
    d.run(low_cell(3.0), 40)
    status = d.step(bank(bank_voltage=11.19, faults={(0, 1): 3.0}))
    assert Code.A_B08 in status.alarms
    assert not status.outputs.load


def test_low_pack_voltage_scales_with_cells_in_series() -> None:
    d = Driver(soc=80)
    status = d.run(bank("12.8V-100Ah", 2, 1, bank_voltage=22.3), PREALARM_LEAD_S + 1)  # < 2.8 x 8
    assert status.alarms == (Code.A_B08,)


def test_cell_over_voltage_floats_charger_without_a_code(d: Driver) -> None:
    status = d.run(bank(faults={(0, 2): 3.76}), 1)
    assert status.outputs == Outputs(load=True, charger=False, prealarm=False)
    assert status.charge_reason == Reason.CELL_OVER_VOLTAGE
    assert status.codes == ()
    assert not d.run(bank(faults={(0, 2): 3.60}), 1).outputs.charger
    assert normal(d.run(bank(faults={(0, 2): 3.59}), 1))


def test_cold_floats_charger_under_5_and_clears_at_6(d: Driver) -> None:
    status = d.run(bank(temperature=4.9), 1)
    assert status.outputs == Outputs(load=True, charger=False, prealarm=False)
    assert status.charge_reason == Reason.COLD
    assert status.codes == ()
    assert not d.run(bank(temperature=5.9), 1).outputs.charger
    assert normal(d.run(bank(temperature=6.0), 1))


def test_one_cold_battery_is_enough() -> None:
    d = Driver(soc=80)
    status = d.run(bank("12.8V-100Ah", 1, 3, temperatures={2: 3.0}), 1)
    assert status.charge_reason == Reason.COLD
    assert status.temperature == 25.0


def test_hot_raises_a_b09_and_floats_charger_until_45(d: Driver) -> None:
    status = d.run(bank(temperature=50.1), 1)
    assert status.alarms == (Code.A_B09,)
    assert status.outputs == Outputs(load=True, charger=False, prealarm=False)
    assert status.charge_reason == Reason.HOT
    assert status.temperature == 50.1
    assert not d.run(bank(temperature=45.1), 1).outputs.charger
    assert normal(d.run(bank(temperature=45.0), 1))


def test_low_soc_warning_raises_pre_alarm_and_clears_3_percent_higher() -> None:
    d = Driver(soc=20.5)
    status = d.run(bank(current=-50.0), 1)
    assert normal(status)
    _, status = d.run_until(bank(current=-50.0), lambda s: s.soc <= 20.0, 3600)
    assert status.warnings == (Code.W_B07,)
    assert status.outputs == Outputs(load=True, charger=True, prealarm=True)
    assert status.discharge_reason == Reason.LOW_SOC
    d.bms.command("set_soc", 22.9, d.now)
    assert d.step(HEALTHY).outputs.prealarm
    d.bms.command("set_soc", 23.0, d.now)
    assert normal(d.step(HEALTHY))


def test_discharge_floor_floats_load_at_once_and_clears_3_percent_higher() -> None:
    d = Driver(soc=10.4)
    _, status = d.run_until(bank(current=-50.0), lambda s: not s.outputs.load, 3600)
    assert status.soc is not None
    assert status.soc <= 10.0
    assert status.alarms == (Code.A_B07,)
    assert Code.W_B07 not in status.warnings  # the alarm replaces its warning
    assert status.discharge_reason == Reason.DISCHARGE_FLOOR
    assert status.outputs.prealarm  # SOC is under the warning level as well
    d.bms.command("set_soc", 12.9, d.now)
    assert not d.step(HEALTHY).outputs.load
    d.bms.command("set_soc", 13.0, d.now)
    status = d.step(HEALTHY)
    assert status.outputs.load
    assert status.alarms == ()
    assert status.warnings == (Code.W_B07,)


def test_zero_disables_the_low_soc_warning() -> None:
    d = Driver(soc=15, settings=Settings(low_soc_warning=0, discharge_floor=10))
    assert normal(d.run(HEALTHY, 2))


def test_zero_disables_the_discharge_floor() -> None:
    d = Driver(soc=0, settings=Settings(low_soc_warning=20, discharge_floor=0))
    status = d.run(HEALTHY, 2)
    assert status.outputs == Outputs(load=True, charger=True, prealarm=True)
    assert status.codes == (Code.W_B07,)


def test_soc_rules_do_not_act_on_an_unknown_soc() -> None:
    d = Driver()  # SOC unknown
    status = d.run(bank(current=-50.0), 60)
    assert status.soc is None
    assert normal(status)


def test_comms_lost_warns_at_5_s_and_floats_both_at_20_s(d: Driver) -> None:
    status = d.run(None, 4)
    assert normal(status)
    assert status.bank is not None
    assert status.bank.min_cell_voltage == 3.30
    status = d.step(None)  # 5 s without fresh data
    assert status.warnings == (Code.W_B05,)
    assert status.bank is not None  # the topology stays shown, the stale extremes do not
    assert status.bank.batteries == 1
    assert status.bank.min_cell_voltage is None
    assert status.bank.max_cell_voltage is None
    assert status.bank.min_temperature is None
    assert status.bank.max_temperature is None
    assert status.outputs.load
    assert status.outputs.charger
    assert status.voltage is None  # stale figures are not shown
    assert status.current is None
    assert status.temperature is None
    assert status.ttg_min is None
    status = d.run(None, 14)  # 19 s
    assert status.warnings == (Code.W_B05,)
    status = d.step(None)  # 20 s
    assert status.alarms == (Code.A_B05,)
    assert status.warnings == ()
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == status.charge_reason == Reason.COMMS_LOST
    assert normal(d.step(HEALTHY))


def test_comms_lost_from_start_up() -> None:
    d = Driver()
    status = d.run(None, 20)  # counted from the first step: 19 s
    assert status.warnings == (Code.W_B05,)
    status = d.step(None)
    assert status.alarms == (Code.A_B05,)
    assert status.discharge_reason == Reason.COMMS_LOST


def test_remote_off_floats_both_and_clears_the_pre_alarm(d: Driver) -> None:
    d.run(low_cell(3.0), 40)
    off = Inputs(remote=False)
    status = d.run(low_cell(3.0), 1, off)
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == status.charge_reason == Reason.REMOTE_OFF
    assert not status.remote
    assert status.warnings == (Code.W_B01,)
    status = d.step(low_cell(3.0))  # back on: the pre-alarm rises again
    assert status.outputs == Outputs(load=True, charger=True, prealarm=True)


def test_a_cell_under_2_80_while_switched_off_latches_the_under_voltage(d: Driver) -> None:
    """The cell is under 2.80 V even with the loads off: switching on must not reconnect."""
    off = Inputs(remote=False)
    status = d.run(low_cell(2.75), PREALARM_LEAD_S + 1, off)
    assert status.alarms == (Code.A_B01,)
    assert status.outputs == Outputs.safe()
    status = d.step(low_cell(2.75))
    assert not status.outputs.load
    assert status.outputs.prealarm
    assert status.discharge_reason == Reason.CELL_UNDER_VOLTAGE
    assert not d.run(low_cell(3.19), 60).outputs.load
    assert normal(d.run(low_cell(3.20), 1))


@pytest.mark.parametrize("switch", ["remote", "mode"])
@pytest.mark.parametrize("rested", [2.75, 2.85])
def test_switching_off_for_a_second_every_30_s_does_not_defeat_the_under_voltage(
    d: Driver, switch: str, rested: float
) -> None:
    """On 29 s at 2.75 V under load, off 1 s (the cell reads ``rested``): A-B01 within 30 s of
    under-voltage, not never."""
    loaded_seconds = 0.0
    for _ in range(5):
        for _ in range(29):
            status = d.step(low_cell(2.75))
            if not status.outputs.load:
                break
            loaded_seconds += d.tick
        if not status.outputs.load:
            break
        if switch == "remote":
            d.step(low_cell(rested), Inputs(remote=False))
        else:
            d.bms.set_setting("mode", False)
            d.step(low_cell(rested))
            d.bms.set_setting("mode", True)
    assert status.alarms == (Code.A_B01,)
    assert status.discharge_reason == Reason.CELL_UNDER_VOLTAGE
    assert loaded_seconds <= PREALARM_LEAD_S


def test_mode_off_floats_both_like_remote_off(d: Driver) -> None:
    d.bms.set_setting("mode", "off")
    status = d.step(low_cell(3.0))
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == status.charge_reason == Reason.MODE_OFF
    assert not status.mode
    d.bms.set_setting("mode", True)
    assert d.step(HEALTHY).outputs.load


def test_hardware_error_latches_until_restart(d: Driver) -> None:
    status = d.step(HEALTHY, Inputs(hardware_ok=False))
    assert status.errors == (Code.E_B11,)
    assert status.outputs == Outputs.safe()
    assert status.discharge_reason == Reason.HARDWARE
    status = d.run(HEALTHY, 10)
    assert status.errors == (Code.E_B11,)
    assert not status.outputs.load


def test_several_causes_show_the_most_fundamental_reason(d: Driver) -> None:
    status = d.step(bank(temperature=60, faults={(0, 0): 2.5}), Inputs(remote=False))
    assert status.discharge_reason == Reason.REMOTE_OFF
    assert set(status.alarms) == {Code.A_B01, Code.A_B09}
    status = d.step(bank(temperature=60, faults={(0, 0): 2.5}))
    assert status.discharge_reason == Reason.CELL_UNDER_VOLTAGE
    assert status.charge_reason == Reason.HOT


def test_readings_with_nan_count_as_missing_data(d: Driver) -> None:
    """A NaN compares false with every threshold: it must not hide an under-voltage."""
    broken = bank(faults={(0, 0): float("nan")})
    status = d.run(broken, 5)
    assert status.warnings == (Code.W_B05,)
    status = d.run(broken, 15)
    assert status.alarms == (Code.A_B05,)
    assert status.outputs == Outputs.safe()
    assert normal(d.step(HEALTHY))


def test_a_battery_without_cells_is_a_configuration_error_not_a_crash(d: Driver) -> None:
    readings = bank("12.8V-100Ah", 1, 2)
    empty = dataclasses.replace(readings.batteries[1], cell_voltages=())
    status = d.step(dataclasses.replace(readings, batteries=(readings.batteries[0], empty)))
    assert status.errors == (Code.E_B05,)
    assert status.outputs.load is False
    assert status.bank is not None
    assert status.bank.min_cell_voltage == 3.30
