"""Statuses computed by the real core, broadcast, and read back by victron-ble, per scenario."""

from __future__ import annotations

import pytest
from readout_core_scenarios import SCENARIO_NAMES, settle
from readout_helpers import victron_decode

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Code, Status
from bms_daemon.store import MemoryStore
from gatt.broadcaster import ReadoutBroadcaster
from gatt.readout import AlarmLevel, Readout, decode_manufacturer_data


def broadcast(bms: Bms) -> tuple[bytes, bytes]:
    """(manufacturer data, key) as BleService would advertise the core's status."""
    broadcaster = ReadoutBroadcaster.from_store(MemoryStore(), lambda: bms.settings)
    payload = broadcaster.payload_for(bms.status, 0.0)
    assert payload is not None
    return payload, broadcaster.keys.key


def assert_matches(status: Status, data: bytes, key: bytes) -> Readout:
    """victron-ble reads the status's figures within the record's resolution."""
    decoded = victron_decode(data, key)
    assert status.soc is not None
    assert decoded.get_soc() == pytest.approx(status.soc, abs=0.05 + 1e-9)
    for got, want, tolerance in (
        (decoded.get_voltage(), status.voltage, 0.005),
        (decoded.get_current(), status.current, 0.05),
        (decoded.get_remaining_mins(), status.ttg_min, 0.5),
        (decoded.get_consumed_ah(), status.consumed_ah, 0.05),
        (decoded.get_battery_temperature(), status.temperature, 0.5),
    ):
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, abs=tolerance + 1e-9)
    ours = decode_manufacturer_data(data, key)
    assert decoded.get_io_status() == ours.io.to_raw()
    assert decoded.get_alarm_flags() == ours.alarms.to_raw()
    assert ours.io.allowed_to_charge is status.outputs.charger
    assert ours.io.allowed_to_discharge is status.outputs.load
    assert ours.prealarm is status.outputs.prealarm
    assert ours.io.remote is status.remote
    return ours


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_core_scenario_reads_the_same_in_victron_ble(name: str) -> None:
    bms, status = settle(name)
    data, key = broadcast(bms)
    ours = assert_matches(status, data, key)
    alarms = ours.alarms
    if name == "normal":
        assert status.outputs.load
        assert status.outputs.charger
        assert alarms.low_cell_voltage is alarms.low_soc is AlarmLevel.OK
        assert alarms.load_disconnect is AlarmLevel.OK
    elif name == "pre-alarm":
        assert Code.W_B01 in status.warnings
        assert alarms.low_cell_voltage is AlarmLevel.WARNING
        assert ours.prealarm is True
    elif name == "load disconnect":
        assert Code.A_B07 in status.alarms
        assert alarms.low_soc is AlarmLevel.ALARM
        assert alarms.load_disconnect is AlarmLevel.ALARM
        assert ours.io.allowed_to_discharge is False
    elif name == "cold":
        assert ours.io.allowed_to_charge is False
        assert ours.io.allowed_to_discharge is True
        assert ours.temperature == 3
        assert alarms.high_temperature is AlarmLevel.OK
    elif name == "comms lost":
        assert Code.A_B05 in status.alarms
        assert alarms.battery_comms_lost is AlarmLevel.ALARM
        assert ours.voltage is None
        assert ours.current is None
        assert ours.io.allowed_to_charge is False
        assert ours.io.allowed_to_discharge is False
