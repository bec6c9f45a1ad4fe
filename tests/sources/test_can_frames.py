"""Decoding the CAN-bus BMS frames, from captures of real BMSes and from the protocol tables.

The capture is the one published in dfch/BydCanProtocol (README.md, "BYD Communication"): a BYD
Battery-Box Premium LVS talking to a Victron GX; the Pylontech 0x359 / 0x35C layouts are those
of dalathegreat/Battery-Emulator (inverter/PYLON-LV-CAN.cpp).  See docs/sources.md.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.core.types import BatteryModel
from bms_daemon.sources.can import FIELDS, CanDecoder, CanFeed, encode
from bms_daemon.sources.spec import BatteryDescription

BYD = BatteryDescription(BatteryModel("BYD LVS", 51.2, 156.0, 16), "can:byd")
# id -> data, as captured (dfch/BydCanProtocol README)
BYD_CAPTURE = {
    0x351: "48 02 00 05 00 05 AE 01",
    0x355: "43 00 64 00 00 00 00 00",
    0x356: "BE 14 F9 FF 8C 00 00 00",
    0x35E: "42 59 44 00 00 00 00 00",
    0x372: "02 00 00 00 00 00 00 00",
    0x373: "EA 0C 01 0D 1F 01 22 01",
}


def feed() -> CanFeed:
    return CanFeed("bms", BYD, interface="virtual", channel="test")


def test_the_byd_capture_decodes_to_the_documented_figures() -> None:
    can = feed()
    for frame, data in BYD_CAPTURE.items():
        can.take(frame, bytes.fromhex(data), now=10.0)
    sample = can.latest(10.5)
    assert sample is not None
    battery = sample.batteries[0]
    assert sample.voltage == pytest.approx(53.10)
    assert sample.current == pytest.approx(-0.7)
    assert battery.min_cell_voltage == pytest.approx(3.306)
    assert battery.max_cell_voltage == pytest.approx(3.329)
    assert battery.coldest == pytest.approx(287 - 273.15)  # 0x373 Kelvin
    assert battery.temperature == pytest.approx(290 - 273.15)
    assert battery.cell_voltages == ()  # the protocol has no per-cell figures: none invented
    assert battery.firmware == "BYD"
    extra = dict(sample.extra)
    assert extra["soc"] == 67
    assert extra["soh"] == 100
    assert extra["charge_voltage_limit"] == pytest.approx(58.4)
    assert extra["charge_current_limit"] == pytest.approx(128.0)
    assert extra["discharge_voltage_limit"] == pytest.approx(43.0)
    assert extra["modules_online"] == 2
    assert can.stats.dropped == {}


def test_a_sample_needs_both_the_pack_frame_and_the_cell_frame() -> None:
    can = feed()
    can.take(0x356, bytes.fromhex(BYD_CAPTURE[0x356]), now=1.0)
    assert can.latest(1.0) is None
    can.take(0x373, bytes.fromhex(BYD_CAPTURE[0x373]), now=2.0)
    sample = can.latest(2.0)
    assert sample is not None
    assert sample.at == 1.0


def test_a_sample_is_stale_when_its_oldest_frame_is_too_old() -> None:
    can = feed()
    can.take(0x373, bytes.fromhex(BYD_CAPTURE[0x373]), now=0.0)
    for t in range(1, 6):  # the BMS keeps sending 0x356 but 0x373 stopped
        can.take(0x356, bytes.fromhex(BYD_CAPTURE[0x356]), now=float(t))
    assert can.latest(5.0) is None


@pytest.mark.parametrize(
    ("frame", "data", "reason"),
    [
        (0x356, "BE 14 F9", "short frame"),
        (0x373, "EA 0C", "short frame"),
        (0x373, "01 0D EA 0C 1F 01 22 01", "implausible value"),  # min above max
        (0x373, "FF FF FF FF 1F 01 22 01", "implausible value"),  # 65.5 V cells
        (0x356, "BE 14 F9 FF 8C 7F 00 00", "implausible value"),  # 3264 °C
        (0x123, "00", "unknown frame id"),
    ],
)
def test_frames_that_cannot_be_trusted_are_dropped_and_counted(
    frame: int, data: str, reason: str
) -> None:
    can = feed()
    for known, good in BYD_CAPTURE.items():
        can.take(known, bytes.fromhex(good), now=1.0)
    before = can.latest(1.0)
    can.take(frame, bytes.fromhex(data), now=2.0)
    assert can.stats.dropped == {reason: 1}
    assert can.latest(2.0) == before  # nothing of the bad frame was used


def test_extended_remote_and_error_frames_are_dropped() -> None:
    can = feed()
    can.take(0x356, b"\0" * 8, now=1.0, extended=True)
    can.take(0x356, b"", now=1.0, remote=True)
    can.take(0x0, b"", now=1.0, error=True)
    assert can.stats.dropped == {"extended identifier": 1, "error or remote frame": 2}
    assert can.decoder.values == {}


def test_an_implausible_optional_field_is_absent_not_used() -> None:
    can = feed()
    can.take(0x356, bytes.fromhex(BYD_CAPTURE[0x356]), now=1.0)
    can.take(0x373, bytes.fromhex("EA 0C 01 0D 00 00 00 00"), now=1.0)  # 0 K: no sensor
    sample = can.latest(1.0)
    assert sample is not None
    assert sample.batteries[0].coldest == pytest.approx(14.0)  # the pack's own 0x356 figure


def test_pylontech_protection_bits_and_requests_become_notes() -> None:
    can = feed()
    for frame, data in BYD_CAPTURE.items():
        can.take(frame, bytes.fromhex(data), now=1.0)
    can.take(0x359, bytes([0x04, 0x00, 0x10, 0x00, 0x01, 0x50, 0x4E]), now=1.0)
    can.take(0x35C, bytes([0x40, 0x00]), now=1.0)  # discharge only (Battery-Emulator: SOC max)
    can.take(0x356, bytes.fromhex(BYD_CAPTURE[0x356]), now=1.5)  # the next burst carries them
    sample = can.latest(1.5)
    assert sample is not None
    assert "protection: cell or module under-voltage" in sample.notes
    assert "warning: low temperature" in sample.notes
    assert "request: charge not allowed" in sample.notes
    assert "request: discharge not allowed" not in sample.notes


def test_victron_alarm_pairs_count_only_the_active_value() -> None:
    decoder = CanDecoder()
    # byte 0: general 01 (ok), high voltage 10 (alarm), low voltage 00 (n/a), high temp 11
    decoder.decode(0x35A, bytes([0b11_00_10_01, 0, 0, 0, 0, 0b10, 0, 0]), now=0.0)
    assert decoder.notes[0x35A] == ("alarm: battery high voltage", "warning: low temperature")


@given(
    voltage=st.floats(0.0, 100.0),
    current=st.floats(-3000.0, 3000.0),
    low=st.floats(0.5, 5.0),
    spread=st.floats(0.0, 0.5),
    temperature=st.floats(-49.0, 119.0),  # 1 K steps: the bounds themselves may round out
)
def test_every_field_round_trips_through_the_one_table(
    voltage: float, current: float, low: float, spread: float, temperature: float
) -> None:
    values = {"voltage": voltage, "current": current, "temperature": temperature,
              "min_cell_voltage": low, "max_cell_voltage": min(low + spread, 5.0),
              "min_cell_temperature": temperature, "max_cell_temperature": temperature}
    decoder = CanDecoder()
    for frame in (0x356, 0x373):
        assert decoder.decode(frame, encode(frame, values), now=0.0) is None
    for field in FIELDS:
        if field.name in values and field.frame in (0x356, 0x373):
            assert decoder.values[field.name] == pytest.approx(
                values[field.name], abs=field.scale / 2 + 1e-9)


def test_garbage_never_raises() -> None:
    can = feed()
    for frame in (0x351, 0x355, 0x356, 0x359, 0x35A, 0x35C, 0x35E, 0x372, 0x373, 0x7FF):
        for length in range(9):
            can.take(frame, bytes([0xFF] * length), now=1.0)
            can.take(frame, bytes(range(length)), now=1.0)
    assert can.stats.dropped_total > 0
