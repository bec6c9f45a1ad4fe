"""Records 0x05 and 0x02: our encoder agrees with victron-ble, and victron-ble's faults are fixed.

Every frame the test broadcasters send is built by bms_daemon.sources.victron.encode; these
tests decode such frames with victron-ble itself (what Home Assistant reads) and with the
product's decoder, and pin down the four faults of victron-ble 0.9.3 the product works around.
"""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from victron_ble.devices import BatteryMonitor, SmartLithium, detect_device_type

from bms_daemon.sources.victron import encode, records

KEY = bytes.fromhex("0df4d0395b7d1a876c0c33ecb9e70dcd")
OTHER_KEY = bytes.fromhex("aff4d0995b7d1e176c0c33ecb9e70dcd")


def lithium_frame(cells: list[float | None], nonce: int = 0x1234, **kw: object) -> bytes:
    plain = encode.lithium_record(cells, **kw)  # type: ignore[arg-type]
    return encode.manufacturer_data(
        records.RECORD_SMART_LITHIUM, plain, KEY, nonce, encode.PRODUCT_SMART_LITHIUM
    )


def monitor_frame(nonce: int = 0x40B0, **kw: object) -> bytes:
    plain = encode.monitor_record(**kw)  # type: ignore[arg-type]
    return encode.manufacturer_data(
        records.RECORD_BATTERY_MONITOR, plain, KEY, nonce, encode.PRODUCT_SMARTSHUNT
    )


def test_real_smartshunt_capture_decodes() -> None:
    """The capture in victron-ble's own tests (a SmartShunt, 15-byte record)."""
    adv = bytes.fromhex("100289a302b040af925d09a4d89aa0128bdef48c6298a9")
    frame = records.decode(adv, OTHER_KEY)
    assert isinstance(frame.record, records.MonitorRecord)
    assert frame.record.voltage == 12.53
    assert frame.record.current == 0.0
    assert frame.record.soc == 50.0
    assert frame.record.consumed_ah == 50.0
    assert frame.nonce == 0x40B0
    assert frame.product_id == 0xA389


def test_lithium_record_round_trips_through_victron_ble() -> None:
    cells = [3.31, 3.30, 3.12, 3.33]
    adv = lithium_frame(cells, temperature=23, balancer=2)
    theirs = detect_device_type(adv)
    assert theirs is SmartLithium
    parsed = SmartLithium(KEY.hex()).parse(adv)
    assert parsed.get_cell_voltages()[:4] == cells
    assert parsed.get_cell_voltages()[4:] == [None] * 4
    assert parsed.get_battery_voltage() == 13.06
    assert parsed.get_battery_temperature() == 23
    assert parsed.get_model_name() == "Smart Lithium Battery 12.8V/100Ah"
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.LithiumRecord)
    assert ours.cells == tuple(cells)
    assert ours.voltage == 13.06
    assert ours.temperature == 23.0
    assert ours.balancer == "balancing"
    assert ours.flags.allowed_to_charge
    assert ours.flags.allowed_to_discharge


def test_monitor_record_round_trips_through_victron_ble() -> None:
    adv = monitor_frame(voltage=13.21, current=-12.345, soc=87.5, consumed_ah=12.5, ttg_min=600)
    assert detect_device_type(adv) is BatteryMonitor
    parsed = BatteryMonitor(KEY.hex()).parse(adv)
    assert (parsed.get_voltage(), parsed.get_current(), parsed.get_soc()) == (13.21, -12.345, 87.5)
    assert parsed.get_consumed_ah() == -12.5  # victron-ble's sign; ours is a magnitude
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.MonitorRecord)
    assert (ours.voltage, ours.current, ours.soc, ours.consumed_ah, ours.ttg_min) == (
        13.21, -12.345, 87.5, 12.5, 600,
    )


@given(
    cells=st.lists(st.floats(2.61, 3.85).map(lambda v: round(v, 2)), min_size=1, max_size=8),
    temperature=st.integers(-40, 86),
)
def test_any_lithium_record_reads_the_same_in_victron_ble_and_here(
    cells: list[float], temperature: int
) -> None:
    adv = lithium_frame(list(cells), temperature=temperature)
    theirs = SmartLithium(KEY.hex()).parse(adv)
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.LithiumRecord)
    assert list(ours.cells) == theirs.get_cell_voltages()[: len(cells)] == cells
    assert ours.temperature == theirs.get_battery_temperature() == temperature


def test_cells_beyond_the_range_read_as_the_bound_not_infinity() -> None:
    """victron-ble says -inf/+inf; the limit the protection needs is on the bound's side."""
    adv = lithium_frame([2.41, 3.30, 3.30, 3.99])
    assert SmartLithium(KEY.hex()).parse(adv).get_cell_voltages()[0] == -math.inf
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.LithiumRecord)
    assert ours.cells == (2.60, 3.30, 3.30, 3.86)


def test_fault_1_short_record_is_refused_not_decoded_as_garbage() -> None:
    adv = monitor_frame(voltage=13.2, current=5.0, soc=87.5)[:-1]
    garbage = BatteryMonitor(KEY.hex()).parse(adv)  # victron-ble pads and decodes
    assert garbage.get_soc() != 87.5
    with pytest.raises(records.TruncatedError, match="14 bytes, its layout 15"):
        records.decode(adv, KEY)
    with pytest.raises(records.TruncatedError, match="13 bytes, its layout 16"):
        records.decode(lithium_frame([3.3] * 4)[:-3], KEY)


def test_fault_2_undefined_balancer_value_keeps_the_cells() -> None:
    adv = lithium_frame([3.3, 3.2, 3.3, 3.3], balancer=7)
    with pytest.raises(ValueError):
        SmartLithium(KEY.hex()).parse(adv)
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.LithiumRecord)
    assert ours.cells == (3.3, 3.2, 3.3, 3.3)
    assert ours.balancer == "undefined (7)"
    na = records.decode(lithium_frame([3.3], balancer=15), KEY).record
    assert isinstance(na, records.LithiumRecord)
    assert na.balancer is None


def test_fault_3_monitor_current_not_available_is_none() -> None:
    adv = monitor_frame(voltage=13.0, current=None)
    assert BatteryMonitor(KEY.hex()).parse(adv).get_current() == -0.001
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.MonitorRecord)
    assert ours.current is None


def test_fault_4_monitor_with_two_alarms_at_once_decodes() -> None:
    adv = monitor_frame(voltage=11.0, current=-3.0, alarm=0b101)  # low voltage + low SOC
    with pytest.raises(ValueError):
        BatteryMonitor(KEY.hex()).parse(adv)
    ours = records.decode(adv, KEY).record
    assert isinstance(ours, records.MonitorRecord)
    assert ours.alarm == 0b101
    assert ours.current == -3.0


def test_not_available_fields_are_none() -> None:
    ours = records.decode(lithium_frame([None] * 4, voltage=None, temperature=None), KEY).record
    assert isinstance(ours, records.LithiumRecord)
    assert ours.cells == ()
    assert ours.voltage is None
    assert ours.temperature is None
    mon = records.decode(monitor_frame(voltage=None, current=1.0), KEY).record
    assert isinstance(mon, records.MonitorRecord)
    assert mon.voltage is None
    assert mon.soc is None
    assert mon.ttg_min is None


def test_bms_flags_read_as_victron_reads_them() -> None:
    raw = encode.bms_flags(
        allowed_to_discharge=False, alarms=("low_voltage",), warnings=("high_temperature",)
    )
    flags = records.BmsFlags.from_raw(raw)
    assert flags.alarms == ("low_voltage",)
    assert flags.warnings == ("high_temperature",)
    assert flags.allowed_to_charge
    assert not flags.allowed_to_discharge
    adv = lithium_frame([3.3] * 4, flags=raw)
    assert SmartLithium(KEY.hex()).parse(adv).get_bms_flags() == raw


def test_wrong_key_other_records_and_foreign_data_are_refused() -> None:
    with pytest.raises(records.WrongKeyError, match="another key"):
        records.decode(lithium_frame([3.3] * 4), OTHER_KEY)
    lynx = encode.manufacturer_data(0x0A, bytes(16), KEY, 1, 0xA3E6)
    with pytest.raises(records.FrameError, match="Lynx Smart BMS"):
        records.decode(lynx, KEY)
    with pytest.raises(records.NotARecordError):
        records.decode(b"\x10\x02\x89\xa3", KEY)  # the 4-byte product-only form
    with pytest.raises(records.NotARecordError):
        records.decode(b"\x4c\x00" + bytes(22), KEY)


@given(data=st.binary(max_size=40))
def test_any_bytes_give_a_frame_or_a_frame_error(data: bytes) -> None:
    with contextlib.suppress(records.FrameError):
        records.decode(data, KEY)
