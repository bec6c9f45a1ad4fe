"""Every protection rule of SPEC §4 trips and clears, as seen in `smallbms simulate`'s lines."""

from __future__ import annotations

import pytest
from sim_helpers import codes, first, simulate

UNDER_VOLTAGE_LEAD_S = 30.0


def test_slow_discharge_raises_prealarm_at_least_30_s_before_load_floats() -> None:
    lines = simulate("""
        [bank]
        soc = 6
        [settings]
        discharge_floor = 0
        low_soc_warning = 0
        [[step]]
        duration = "30m"
        load = 15
        [[step]]
        duration = "30m"
        charge = 30
        """)
    warned = first(lines, lambda x: x["prealarm"])
    assert "W-B01" in warned["warnings"]
    assert warned["load"]
    assert warned["min_cell"] < 3.10
    cut = first(lines, lambda x: not x["load"])
    assert cut["alarms"] == ["A-B01"]
    assert cut["min_cell"] < 2.80
    assert cut["t"] - warned["t"] >= UNDER_VOLTAGE_LEAD_S
    # while LOAD floats the load draws nothing: the measured current is zero
    resting = first(lines, lambda x: not x["load"] and x["t"] >= cut["t"] + 60)
    assert resting["current"] == 0.0
    # charging lifts every cell to 3.20 V: LOAD high again, pre-alarm released, no codes
    back = first(lines, lambda x: x["load"], after=cut["t"])
    assert back["min_cell"] >= 3.20
    assert not back["prealarm"]
    assert codes(back) == []
    assert back["step"] == 2


def test_sudden_under_voltage_raises_prealarm_now_and_cuts_30_s_later() -> None:
    lines = simulate("""
        [bank]
        soc = 50
        [[step]]
        duration = "1m"
        load = 10
        [[step]]
        duration = "2m"
        load = 10
        cell_offset = { battery = 1, cell = 3, volts = -0.55 }
        [[step]]
        duration = "1m"
        """)
    warned = first(lines, lambda x: x["prealarm"])
    assert warned["t"] == 61
    assert warned["load"]
    assert warned["min_cell"] < 2.80
    cut = first(lines, lambda x: not x["load"])
    assert "A-B01" in cut["alarms"]
    assert UNDER_VOLTAGE_LEAD_S <= cut["t"] - warned["t"] <= UNDER_VOLTAGE_LEAD_S + 1
    assert lines[-1]["load"]
    assert codes(lines[-1]) == []


def test_cell_below_2_60_v_floats_load_at_once() -> None:
    lines = simulate("""
        [bank]
        soc = 50
        [[step]]
        duration = "1m"
        load = 10
        [[step]]
        duration = "1m"
        load = 10
        cell_offset = { battery = 1, cell = 1, volts = -0.8 }
        """)
    cut = first(lines, lambda x: not x["load"])
    assert cut["t"] == 61
    assert cut["prealarm"]
    assert "A-B01" in cut["alarms"]


def test_low_pack_voltage_keeps_the_pre_alarm_lead_and_clears_above_3_20_v_per_cell() -> None:
    """The whole pack sagging at once (identical cells): PRE-ALARM 30 s before LOAD floats."""
    lines = simulate("""
        [bank]
        soc = 1.5
        capacity_spread = 0
        [settings]
        discharge_floor = 0
        low_soc_warning = 0
        [[step]]
        duration = "2m"
        load = 100
        [[step]]
        duration = "20m"
        charge = 30
        """)
    warned = first(lines, lambda x: x["prealarm"])
    assert warned["load"]
    cut = first(lines, lambda x: "A-B08" in x["alarms"])
    assert not cut["load"]
    assert cut["voltage"] < 11.2
    assert cut["t"] - warned["t"] >= UNDER_VOLTAGE_LEAD_S
    assert all(x["prealarm"] for x in lines if warned["t"] <= x["t"] <= cut["t"])
    back = first(lines, lambda x: "A-B08" not in x["alarms"], after=cut["t"])
    assert back["voltage"] >= 12.8


def _toggled(seconds_off: int, cycles: int) -> str:
    """A cell pulled to about 2.75 V under load; every 30 s the remote goes off for
    ``seconds_off`` seconds and back on."""
    steps = []
    for _ in range(cycles):
        for seconds, remote in ((30 - seconds_off, "true"), (seconds_off, "false")):
            steps.append(f"""
                [[step]]
                duration = "{seconds}s"
                load = 10
                remote = {remote}
                cell_offset = {{ battery = 1, cell = 3, volts = -0.55 }}
                """)
    return "".join(steps)


@pytest.mark.parametrize("seconds_off", [1, 5])
def test_toggling_the_remote_does_not_defeat_the_under_voltage(seconds_off: int) -> None:
    """Off 1 s every 30 s used to restart the pre-alarm lead and keep the loads on forever."""
    lines = simulate("""
        [bank]
        soc = 50
        [settings]
        discharge_floor = 0
        low_soc_warning = 0
        """ + _toggled(seconds_off, 6))
    warned = first(lines, lambda x: x["prealarm"])
    assert warned["min_cell"] < 2.80
    cut = first(lines, lambda x: "A-B01" in x["alarms"])
    assert cut["t"] - warned["t"] <= UNDER_VOLTAGE_LEAD_S + seconds_off
    assert not any(x["load"] for x in lines if x["t"] >= cut["t"])


def test_cell_over_voltage_floats_charger_only() -> None:
    lines = simulate("""
        [bank]
        soc = 94
        [[step]]
        duration = "30m"
        charge = 30
        load = 2
        cell_offset = { battery = 1, cell = 2, volts = 0.3 }
        [[step]]
        duration = "5m"
        charge = 30
        """)
    cut = first(lines, lambda x: not x["charger"])
    assert cut["max_cell"] > 3.75
    assert cut["load"]
    assert codes(cut) == []
    assert cut["charge_reason"] == "cell over-voltage"
    back = first(lines, lambda x: x["charger"], after=cut["t"])
    assert back["max_cell"] < 3.60
    assert back["step"] == 2


def test_below_5_c_charger_floats_while_load_stays_high() -> None:
    lines = simulate("""
        [bank]
        soc = 60
        temperature = 8
        thermal_time_constant = "5m"
        [[step]]
        duration = "30m"
        temperature = 0
        load = 5
        charge = 20
        [[step]]
        duration = "40m"
        temperature = 15
        load = 5
        charge = 20
        """)
    cold = first(lines, lambda x: not x["charger"])
    assert cold["temperature"] < 5.0
    assert cold["load"]
    assert codes(cold) == []
    assert cold["charge_reason"] == "battery too cold"
    assert all(x["load"] for x in lines)
    warm = first(lines, lambda x: x["charger"], after=cold["t"])
    assert warm["temperature"] >= 6.0
    assert warm["step"] == 2


def test_hot_battery_raises_a_b09_and_floats_charger_until_45_c() -> None:
    lines = simulate("""
        [bank]
        soc = 50
        temperature = 45
        thermal_time_constant = "5m"
        [[step]]
        duration = "20m"
        temperature = 60
        load = 5
        charge = 20
        [[step]]
        duration = "30m"
        temperature = 25
        load = 5
        charge = 20
        """)
    hot = first(lines, lambda x: "A-B09" in x["alarms"])
    assert hot["temperature"] > 50.0
    assert not hot["charger"]
    assert hot["load"]
    cool = first(lines, lambda x: "A-B09" not in x["alarms"], after=hot["t"])
    assert cool["temperature"] <= 45.0
    assert cool["charger"]


def test_low_soc_warning_and_discharge_floor() -> None:
    lines = simulate("""
        [bank]
        soc = 22
        [settings]
        low_soc_warning = 20
        discharge_floor = 10
        [[step]]
        duration = "25m"
        load = 40
        [[step]]
        duration = "25m"
        charge = 40
        """)
    warned = first(lines, lambda x: "W-B07" in x["warnings"])
    assert warned["soc"] <= 20.0
    assert warned["prealarm"]
    assert warned["load"]
    floor = first(lines, lambda x: "A-B07" in x["alarms"])
    assert floor["soc"] <= 10.0
    assert not floor["load"]
    assert floor["t"] > warned["t"]
    # nothing is drawn at the floor: the SOC stays put until the charger comes
    during = [x for x in lines if x["step"] == 1 and x["t"] > floor["t"]]
    assert during
    assert all(abs(x["soc"] - floor["soc"]) < 0.05 for x in during)
    # floor clears at floor + 3 %, the warning at warning + 3 %
    floor_clear = first(lines, lambda x: "A-B07" not in x["alarms"], after=floor["t"])
    assert floor_clear["soc"] >= 13.0
    assert floor_clear["load"]
    warn_clear = first(lines, lambda x: "W-B07" not in x["warnings"], after=floor_clear["t"])
    assert warn_clear["soc"] >= 23.0
    assert not warn_clear["prealarm"]


def test_comms_loss_warns_after_5_s_then_floats_both_after_20_s() -> None:
    lines = simulate("""
        [bank]
        soc = 70
        [[step]]
        duration = "1m"
        load = 10
        [[step]]
        duration = "1m"
        load = 10
        comms = false
        [[step]]
        duration = "30s"
        load = 10
        """)
    warned = first(lines, lambda x: "W-B05" in x["warnings"])
    assert warned["t"] == 65
    assert warned["load"]
    assert warned["charger"]
    # no figure of the bank is shown as if it were fresh: cells go unknown with the voltage
    for key in ("voltage", "current", "temperature", "min_cell", "max_cell", "ttg_min"):
        assert warned[key] is None, key
    lost = first(lines, lambda x: "A-B05" in x["alarms"])
    assert lost["t"] == 80
    assert not lost["load"]
    assert not lost["charger"]
    back = first(lines, lambda x: codes(x) == [], after=lost["t"])
    assert back["t"] <= 121
    assert back["load"]
    assert back["charger"]


def test_remote_off_floats_both_and_releases_prealarm() -> None:
    lines = simulate("""
        [bank]
        soc = 18
        [[step]]
        duration = "2m"
        load = 5
        [[step]]
        duration = "2m"
        load = 5
        remote = false
        [[step]]
        duration = "1m"
        load = 5
        """)
    assert lines[0]["prealarm"]
    assert lines[0]["load"]
    off = first(lines, lambda x: not x["load"])
    assert off["t"] == 121
    assert not off["charger"]
    assert not off["prealarm"]
    assert off["discharge_reason"] == "remote off"
    on = first(lines, lambda x: x["load"], after=off["t"])
    assert on["t"] == 241
    assert on["charger"]
    assert on["prealarm"]


def test_mode_off_floats_both() -> None:
    lines = simulate("""
        [bank]
        soc = 50
        [settings]
        mode = false
        [[step]]
        duration = "1m"
        load = 5
        """)
    assert all(not x["load"] and not x["charger"] for x in lines)
    assert lines[-1]["discharge_reason"] == "mode off"


def test_mixed_models_incomplete_strings_and_too_many_are_configuration_errors() -> None:
    mixed = simulate("""
        [bank]
        series = 2
        parallel = 2
        battery_models = ["12.8V-100Ah", "12.8V-100Ah", "12.8V-100Ah", "12.8V-200Ah"]
        [[step]]
        duration = "30s"
        load = 10
        """)
    assert all(x["errors"] == ["E-B01"] and not x["load"] and not x["charger"] for x in mixed)
    incomplete = simulate("""
        [bank]
        series = 2
        parallel = 2
        missing = [4]
        [[step]]
        duration = "30s"
        """)
    assert all(x["errors"] == ["E-B05"] and not x["load"] for x in incomplete)
    too_many = simulate("""
        [bank]
        parallel = 51
        [[step]]
        duration = "5s"
        """)
    assert all(x["errors"] == ["E-B01"] for x in too_many)
    thirty_six_volts = simulate("""
        [bank]
        series = 3
        [[step]]
        duration = "30s"
        """)
    assert all(x["errors"] == ["E-B05"] for x in thirty_six_volts)


def test_bank_voltage_out_of_range_is_e_b09_and_clears() -> None:
    lines = simulate("""
        [bank]
        soc = 50
        [[step]]
        duration = "30s"
        cell_offset = [
            { battery = 1, cell = 1, volts = -1.2 }, { battery = 1, cell = 2, volts = -1.2 },
            { battery = 1, cell = 3, volts = -1.2 }, { battery = 1, cell = 4, volts = -1.2 },
        ]
        [[step]]
        duration = "30s"
        """)
    bad = first(lines, lambda x: "E-B09" in x["errors"])
    assert bad["voltage"] < 9.0
    assert not bad["load"]
    assert not bad["charger"]
    good = first(lines, lambda x: "E-B09" not in x["errors"], after=bad["t"])
    assert good["t"] == 31


def test_cc_cv_recharge_synchronises_once_after_the_detection_time() -> None:
    lines = simulate("""
        [bank]
        soc = 93
        known_soc = false
        [[step]]
        duration = "50m"
        charge = 50
        """, every=10)
    assert lines[0]["soc"] is None
    # CC first: the full 50 A; then CV: the voltage is held at 14.2 V and the current tapers
    assert any(x["current"] == 50.0 for x in lines)
    cv = [x for x in lines if x["voltage"] is not None and abs(x["voltage"] - 14.2) < 0.01]
    assert cv
    assert cv[-1]["current"] < cv[0]["current"]
    assert all(x["voltage"] <= 14.2 + 1e-6 for x in lines)
    synced = first(lines, lambda x: x["synchronisations"] == 1)
    assert synced["soc"] == 100.0
    # the conditions (>= 14.0 V, 0 <= I < 4 A) held for the 3 min before the sync
    window = [x for x in lines if synced["t"] - 180 <= x["t"] < synced["t"] - 10]
    assert window
    assert all(x["voltage"] >= 14.0 and 0 <= x["current"] < 4.0 for x in window)
    before = [x for x in lines if x["t"] < synced["t"] - 190]
    assert all(x["soc"] is None for x in before)
    assert lines[-1]["synchronisations"] == 1
    assert abs(lines[-1]["true_soc"] - 100.0) < 1.0
