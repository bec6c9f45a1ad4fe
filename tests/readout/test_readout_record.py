"""The 0x0A record and its framing, checked against victron-ble (what Home Assistant runs)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from readout_helpers import KEY, SCENARIOS, make_status, victron_decode
from victron_ble.devices import LynxSmartBMS
from victron_ble.exceptions import AdvertisementKeyMismatchError

from bms_daemon.core.types import Code, Outputs, Reason
from gatt.readout import (
    SOC_SENT_WHEN_UNKNOWN,
    AlarmLevel,
    Alarms,
    IoStatus,
    KeyMismatchError,
    Readout,
    ReadoutError,
    decode_manufacturer_data,
    encode_manufacturer_data,
    is_bms_readout,
    pack_record,
    parse_header,
    parse_key,
    readout_from_status,
    unpack_record,
)

# The worked example of research/victron-ble.md §3.2 (values of a real Lynx Smart BMS capture).
EXAMPLE = Readout(
    error=0, ttg_min=14400, voltage=26.99, current=-0.6, io=IoStatus.from_raw(0x1595),
    alarms=Alarms.from_raw(0x1455), soc=99.5, consumed_ah=4.4, temperature=25,
)
EXAMPLE_PLAIN = "0040388b0afaff951555148ccf0200c1"
EXAMPLE_ADVERT = "1002eca30a34120d17f27d0951809ce46cfefc2d3371bd57"


def test_worked_example_is_byte_exact() -> None:
    assert pack_record(EXAMPLE).hex() == EXAMPLE_PLAIN
    assert encode_manufacturer_data(EXAMPLE, KEY, 0x1234).hex() == EXAMPLE_ADVERT


def test_our_decoder_reads_a_real_lynx_smart_bms_record() -> None:
    # plaintext from keshavdv/victron-ble tests (real device, temperature not available)
    readout = unpack_record(bytes.fromhex("0040388b0afaff951555148ccf0200ff"))
    assert readout == dataclasses.replace(EXAMPLE, temperature=None)
    assert readout.io.allowed_to_charge is True
    assert readout.alarms.battery_comms_lost is AlarmLevel.UNSUPPORTED


def test_header_is_what_every_decoder_checks() -> None:
    data = encode_manufacturer_data(EXAMPLE, KEY, 0xBEEF, product_id=0xA3E7)
    assert data[:2] == b"\x10\x02"
    header = parse_header(data)
    assert (header.product_id, header.record_type, header.nonce, header.key_byte) == (
        0xA3E7, 0x0A, 0xBEEF, KEY[0])
    assert len(data) == 24  # + 2 company id + 2 AD header = 28 bytes on air
    assert is_bms_readout(data)


def test_unused_last_bit_is_set_and_na_values_are_all_ones() -> None:
    plain = pack_record(Readout())
    bits = int.from_bytes(plain, "little")
    assert bits >> 127 == 1
    assert plain[1:3] == b"\xff\xff"  # time to go
    assert plain[3:5] == b"\xff\x7f"  # voltage 0x7FFF
    assert plain[5:7] == b"\xff\x7f"  # current 0x7FFF
    assert (bits >> 90) & 0x3FF == 0x3FF
    assert (bits >> 100) & 0xFFFFF == 0xFFFFF
    assert (bits >> 120) & 0x7F == 0x7F
    assert unpack_record(plain) == Readout()


def test_victron_ble_reads_not_available_as_none_except_soc() -> None:
    data = encode_manufacturer_data(Readout(), KEY, 1)
    decoded = victron_decode(data)
    assert decoded.get_voltage() is None
    assert decoded.get_current() is None
    assert decoded.get_remaining_mins() is None
    assert decoded.get_consumed_ah() is None
    assert decoded.get_battery_temperature() is None
    # the victron-ble 0.9.3 bug that makes us never send SOC "not available":
    assert decoded.get_soc() == pytest.approx(102.3)


def test_unknown_soc_is_sent_as_a_real_value() -> None:
    status = make_status(soc=None, soc_synchronised=False)
    decoded = victron_decode(encode_manufacturer_data(readout_from_status(status), KEY, 7))
    assert decoded.get_soc() == SOC_SENT_WHEN_UNKNOWN <= 100.0


def test_out_of_range_figures_are_clamped_not_wrapped() -> None:
    readout = Readout(voltage=400.0, current=-5000.0, ttg_min=10**6, soc=150.0,
                      consumed_ah=2e6, temperature=120)
    decoded = victron_decode(encode_manufacturer_data(readout, KEY, 2))
    assert decoded.get_voltage() == 327.66
    assert decoded.get_current() == -3276.8
    assert decoded.get_remaining_mins() == 0xFFFE
    assert decoded.get_soc() == 100.0
    assert decoded.get_consumed_ah() == (0xFFFFF - 1) / 10
    assert decoded.get_battery_temperature() == 86
    cold = victron_decode(encode_manufacturer_data(Readout(temperature=-60), KEY, 3))
    assert cold.get_battery_temperature() == -40


def test_non_finite_figures_are_sent_as_not_available() -> None:
    status = make_status(voltage=math.nan, current=math.inf, ttg_min=math.inf,
                         temperature=math.nan)
    decoded = victron_decode(encode_manufacturer_data(readout_from_status(status), KEY, 4))
    assert decoded.get_voltage() is None
    assert decoded.get_current() is None
    assert decoded.get_remaining_mins() is None
    assert decoded.get_battery_temperature() is None


def test_wrong_key_is_noticed_by_both_decoders() -> None:
    data = encode_manufacturer_data(EXAMPLE, KEY, 5)
    other = bytes([KEY[0] ^ 0xFF]) + KEY[1:]
    with pytest.raises(KeyMismatchError, match="smallbms key"):
        decode_manufacturer_data(data, other)
    with pytest.raises(AdvertisementKeyMismatchError):
        LynxSmartBMS(other.hex()).parse(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "too short"),
        (bytes.fromhex("1002eca3"), "too short"),  # the 4-byte form some products send when off
        (bytes.fromhex("1102eca30a3412") + KEY[:1] + bytes(16), "not 0x10"),
        (bytes.fromhex("1002eca3023412") + KEY[:1] + bytes(16), "not a BMS record"),
    ],
)
def test_foreign_manufacturer_data_is_rejected_with_a_reason(data: bytes, why: str) -> None:
    assert not is_bms_readout(data)
    with pytest.raises(ReadoutError, match=why.removeprefix("not ")):
        decode_manufacturer_data(data, KEY)


def test_short_ciphertext_is_rejected() -> None:
    data = encode_manufacturer_data(EXAMPLE, KEY, 9)[:-1]
    with pytest.raises(ReadoutError, match="16 bytes"):
        decode_manufacturer_data(data, KEY)


def test_parse_key_accepts_what_smallbms_key_prints_and_explains_mistakes() -> None:
    assert parse_key(KEY.hex()) == KEY
    assert parse_key(" " + KEY.hex().upper() + "\n") == KEY
    assert parse_key(":".join(f"{b:02x}" for b in KEY)) == KEY
    for bad in ("", "00", KEY.hex() + "00", "zz" * 16):
        with pytest.raises(ValueError, match="32 hexadecimal digits"):
            parse_key(bad)


# --- status -> record -> victron-ble, scenario by scenario ----------------------------------

@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_decode_in_victron_ble_like_the_status(name: str) -> None:
    status = SCENARIOS[name]
    data = encode_manufacturer_data(readout_from_status(status), KEY, 100)
    decoded = victron_decode(data)
    ours = decode_manufacturer_data(data, KEY)
    assert decoded.get_soc() == pytest.approx(status.soc, abs=0.05 + 1e-9)
    assert decoded.get_voltage() == (None if status.voltage is None
                                     else pytest.approx(status.voltage, abs=0.005 + 1e-9))
    assert decoded.get_current() == (None if status.current is None
                                     else pytest.approx(status.current, abs=0.05 + 1e-9))
    assert decoded.get_io_status() == ours.io.to_raw()
    assert decoded.get_alarm_flags() == ours.alarms.to_raw()
    assert ours.io.allowed_to_charge is status.outputs.charger
    assert ours.io.allowed_to_discharge is status.outputs.load
    assert ours.prealarm is status.outputs.prealarm
    assert ours.io.remote is status.remote


def _scenario(name: str) -> Readout:
    return readout_from_status(SCENARIOS[name])


def test_normal_has_every_supported_alarm_ok_and_no_error() -> None:
    readout = _scenario("normal")
    assert readout.error == 0
    for level in (readout.alarms.low_cell_voltage, readout.alarms.battery_comms_lost,
                  readout.alarms.load_disconnect, readout.alarms.low_soc,
                  readout.alarms.high_temperature):
        assert level is AlarmLevel.OK
    # fields smallbms does not have are "unsupported", so Venus OS shows nothing for them
    assert readout.alarms.high_current is AlarmLevel.UNSUPPORTED
    assert readout.io.contactor is None


def test_pre_alarm_warns_of_low_cells_and_coming_load_disconnect() -> None:
    readout = _scenario("pre-alarm")
    assert readout.alarms.low_cell_voltage is AlarmLevel.WARNING
    assert readout.alarms.load_disconnect is AlarmLevel.WARNING
    assert readout.prealarm is True
    assert readout.io.allowed_to_discharge is True


def test_discharge_floor_is_a_low_soc_and_load_disconnect_alarm() -> None:
    readout = _scenario("load disconnect")
    assert readout.alarms.low_soc is AlarmLevel.ALARM
    assert readout.alarms.load_disconnect is AlarmLevel.ALARM
    assert readout.io.allowed_to_discharge is False
    assert readout.ttg_min is None


def test_cold_stops_charging_without_an_alarm() -> None:
    readout = _scenario("cold")
    assert readout.io.allowed_to_charge is False
    assert readout.alarms.high_temperature is AlarmLevel.OK
    assert readout.temperature == 3


def test_comms_lost_is_an_alarm_with_figures_not_available() -> None:
    readout = _scenario("comms lost")
    assert readout.alarms.battery_comms_lost is AlarmLevel.ALARM
    assert readout.alarms.load_disconnect is AlarmLevel.ALARM
    assert (readout.voltage, readout.current, readout.temperature) == (None, None, None)


def test_remote_off_is_not_reported_as_an_alarm() -> None:
    status = make_status(remote=False, allowed_to_discharge=False, allowed_to_charge=False,
                         discharge_reason=Reason.REMOTE_OFF, charge_reason=Reason.REMOTE_OFF,
                         outputs=Outputs.safe())
    readout = readout_from_status(status)
    assert readout.alarms.load_disconnect is AlarmLevel.OK
    assert readout.io.remote is False


def test_errors_send_their_e_b_number_and_hot_is_an_alarm() -> None:
    status = make_status(errors=(Code.E_B09,), alarms=(Code.A_B09,), outputs=Outputs.safe(),
                         discharge_reason=Reason.VOLTAGE_NOT_ALLOWED)
    readout = readout_from_status(status)
    assert readout.error == 9
    assert readout.alarms.high_temperature is AlarmLevel.ALARM
    assert victron_decode(encode_manufacturer_data(readout, KEY, 1)).get_error_flags() == 9


# --- invariants ----------------------------------------------------------------------------

_opt = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
_levels = st.sampled_from(list(AlarmLevel))
_io = st.one_of(st.none(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    soc=st.floats(0, 100),
    voltage=st.one_of(st.none(), st.floats(-300, 300)),
    current=st.one_of(st.none(), st.floats(-3000, 3000)),
    ttg=st.one_of(st.none(), st.floats(0, 60000)),
    consumed=st.one_of(st.none(), st.floats(0, 100000)),
    temperature=st.one_of(st.none(), st.floats(-40, 86)),
    load=st.booleans(), charger=st.booleans(), prealarm=st.booleans(), remote=st.booleans(),
    codes=st.lists(st.sampled_from(list(Code)), unique=True, max_size=4),
    nonce=st.integers(0, 0xFFFF),
    key=st.binary(min_size=16, max_size=16),
)
def test_random_statuses_survive_victron_ble(
    soc: float, voltage: float | None, current: float | None, ttg: float | None,
    consumed: float | None, temperature: float | None, load: bool, charger: bool,
    prealarm: bool, remote: bool, codes: list[Code], nonce: int, key: bytes,
) -> None:
    status = make_status(
        soc=soc, voltage=voltage, current=current, ttg_min=ttg, consumed_ah=consumed,
        temperature=temperature, remote=remote,
        outputs=Outputs(load=load, charger=charger, prealarm=prealarm),
        warnings=tuple(c for c in codes if c.kind == "warning"),
        alarms=tuple(c for c in codes if c.kind == "alarm"),
        errors=tuple(c for c in codes if c.kind == "error"),
        discharge_reason=None if load else Reason.CELL_UNDER_VOLTAGE,
    )
    data = encode_manufacturer_data(readout_from_status(status), key, nonce)
    decoded = victron_decode(data, key)
    assert decoded.get_soc() == pytest.approx(soc, abs=0.05 + 1e-9)
    for got, want, tolerance in (
        (decoded.get_voltage(), voltage, 0.005),
        (decoded.get_current(), current, 0.05),
        (decoded.get_remaining_mins(), ttg, 0.5),
        (decoded.get_consumed_ah(), consumed, 0.05),
        (decoded.get_battery_temperature(), temperature, 0.5),
    ):
        if want is None:
            assert got is None
        else:
            assert got == pytest.approx(want, abs=tolerance + 1e-9)
    ours = decode_manufacturer_data(data, key)
    assert decoded.get_io_status() == ours.io.to_raw()
    assert decoded.get_alarm_flags() == ours.alarms.to_raw()
    assert decoded.get_error_flags() == ours.error
    expected_error = next((c.number for c in codes if c.kind == "error"), 0)
    assert ours.error == expected_error
    assert (ours.io.allowed_to_discharge, ours.io.allowed_to_charge, ours.prealarm,
            ours.io.remote) == (load, charger, prealarm, remote)


@settings(max_examples=300, deadline=None)
@given(
    error=st.integers(0, 255),
    ttg=st.one_of(st.none(), st.integers(0, 0xFFFE)),
    voltage=st.one_of(st.none(), st.integers(-0x8000, 0x7FFE)),
    current=st.one_of(st.none(), st.integers(-0x8000, 0x7FFE)),
    io=st.tuples(*[_io] * 7),
    alarms=st.tuples(*[_levels] * 9),
    soc=st.one_of(st.none(), st.integers(0, 1000)),
    consumed=st.one_of(st.none(), st.integers(0, 0xFFFFE)),
    temperature=st.one_of(st.none(), st.integers(-40, 86)),
)
def test_record_round_trips_exactly_at_its_resolution(
    error: int, ttg: int | None, voltage: int | None, current: int | None,
    io: tuple[bool | None, ...], alarms: tuple[AlarmLevel, ...], soc: int | None,
    consumed: int | None, temperature: int | None,
) -> None:
    readout = Readout(
        error=error, ttg_min=ttg,
        voltage=None if voltage is None else voltage / 100,
        current=None if current is None else current / 10,
        io=IoStatus(*io), alarms=Alarms(*alarms),
        soc=None if soc is None else soc / 10,
        consumed_ah=None if consumed is None else consumed / 10,
        temperature=temperature,
    )
    plain = pack_record(readout)
    assert len(plain) == 16
    assert plain[15] & 0x80
    assert unpack_record(plain) == readout
    assert pack_record(unpack_record(plain)) == plain
    # the same bits victron-ble reads
    raw = LynxSmartBMS(KEY.hex()).parse_decrypted(plain)
    assert raw["io_status"] == readout.io.to_raw()
    assert raw["alarm_flags"] == readout.alarms.to_raw()
    assert raw["remaining_mins"] == ttg


def test_as_dict_names_what_is_available_for_scripts() -> None:
    view = readout_from_status(SCENARIOS["pre-alarm"]).as_dict()
    assert view["soc"] == 80.0
    assert view["prealarm"] is True
    assert view["allowed_to_discharge"] is True
    assert "contactor" not in view  # not available on a smallbms
    assert view["alarms"]["low_cell_voltage"] == "warning"
    assert view["alarms"]["load_disconnect"] == "warning"
    assert "high_current" not in view["alarms"]  # unsupported


def test_our_decoder_tells_unknown_from_a_real_full_battery() -> None:
    status = make_status(soc=None, consumed_ah=None)
    unknown = decode_manufacturer_data(
        encode_manufacturer_data(readout_from_status(status), KEY, 3), KEY)
    assert unknown.soc == SOC_SENT_WHEN_UNKNOWN  # what other decoders show
    assert not unknown.soc_known
    assert unknown.as_dict()["soc"] is None
    full = decode_manufacturer_data(encode_manufacturer_data(
        readout_from_status(make_status(soc=100.0, consumed_ah=0.0)), KEY, 4), KEY)
    assert full.soc_known
    assert full.as_dict()["soc"] == 100.0
