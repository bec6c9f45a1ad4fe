"""The shared codecs: what the server encodes, the client decodes to the same figures."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from ble_server_fakes import sample_status
from hypothesis import given, settings
from hypothesis import strategies as st

from bms_daemon.core.bank import MODELS
from bms_daemon.core.types import (
    BalancerState,
    BankStatus,
    BatteryStatus,
    Code,
    History,
    Leds,
    LedState,
    Outputs,
    Reason,
    Status,
)
from gatt import codec


def opt(s: st.SearchStrategy[float]) -> st.SearchStrategy[float | None]:
    return st.none() | s


def floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


statuses = st.builds(
    Status,
    t=st.just(0.0),
    soc=opt(floats(0, 100)),
    soc_synchronised=st.booleans(),
    mode=st.booleans(),
    remote=st.booleans(),
    voltage=opt(floats(0, 600)),
    current=opt(floats(-2000, 2000)),
    power=opt(floats(-100_000, 100_000)),
    consumed_ah=opt(floats(0, 15_000)),
    ttg_min=opt(floats(0, 65_000)),
    allowed_to_charge=st.booleans(),
    charge_reason=st.none() | st.sampled_from(Reason),
    allowed_to_discharge=st.booleans(),
    discharge_reason=st.none() | st.sampled_from(Reason),
    outputs=st.builds(Outputs, st.booleans(), st.booleans(), st.booleans()),
    leds=st.builds(Leds, st.sampled_from(LedState), st.sampled_from(LedState)),
    warnings=st.lists(st.sampled_from([c for c in Code if c.kind == "warning"]),
                      unique=True).map(tuple),
    alarms=st.lists(st.sampled_from([c for c in Code if c.kind == "alarm"]),
                    unique=True).map(tuple),
    errors=st.lists(st.sampled_from([c for c in Code if c.kind == "error"]),
                    unique=True).map(tuple),
    temperature=opt(floats(-40, 120)),
)


def close(a: float | None, b: float | None, resolution: float) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= resolution / 2 + 1e-9


@settings(deadline=None)
@given(statuses)
def test_status_round_trip_keeps_every_figure_to_its_resolution(status: Status) -> None:
    data = codec.encode_status(status)
    assert len(data) == codec.STATUS_SIZE
    view = codec.decode_status(data)
    assert close(view.soc, status.soc, 0.01)
    assert close(view.voltage, status.voltage, 0.01)
    assert close(view.current, status.current, 0.001)
    assert close(view.power, status.power, 0.1)
    assert close(view.consumed_ah, status.consumed_ah, 0.1)
    assert close(view.ttg_min, status.ttg_min, 1)
    assert close(view.temperature, status.temperature, 0.01)
    assert (view.mode, view.remote, view.soc_synchronised) == (
        status.mode, status.remote, status.soc_synchronised)
    assert view.allowed_to_charge == status.allowed_to_charge
    assert view.allowed_to_discharge == status.allowed_to_discharge
    assert view.charge_reason == status.charge_reason
    assert view.discharge_reason == status.discharge_reason
    assert view.outputs == status.outputs
    assert view.leds == status.leds
    assert set(view.codes) == set(status.codes)


def test_unknown_figures_travel_as_not_available() -> None:
    status = sample_status(soc=None, voltage=None, current=None, power=None, consumed_ah=None,
                           ttg_min=None, temperature=None)
    view = codec.decode_status(codec.encode_status(status))
    assert (view.soc, view.voltage, view.current, view.power, view.consumed_ah, view.ttg_min,
            view.temperature) == (None,) * 7


def test_out_of_range_figures_are_clamped_not_refused() -> None:
    view = codec.decode_status(codec.encode_status(sample_status(voltage=1e9, current=-1e12)))
    assert view.voltage == pytest.approx(655.34)
    assert view.current is not None
    assert view.current < -2_000_000


def test_a_newer_profile_version_is_refused_with_a_clear_message() -> None:
    data = bytearray(codec.encode_status(sample_status()))
    data[0] = 2
    with pytest.raises(codec.CodecError, match="version 2 is not supported"):
        codec.decode_status(bytes(data))


@pytest.mark.parametrize("decode", [codec.decode_status, codec.decode_bank,
                                    codec.decode_history, codec.decode_battery])
def test_truncated_records_are_length_errors(decode: object) -> None:
    with pytest.raises(codec.CodecError) as info:
        decode(b"\x01\x00")  # type: ignore[operator]
    assert info.value.length


batteries = st.builds(
    BatteryStatus,
    serial=st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", max_size=16),
    model=st.sampled_from(codec.MODEL_CODES[1:]),
    capacity_ah=st.sampled_from([100.0, 150.0, 200.0, 300.0]),
    firmware=st.text(alphabet="v0123456789.", max_size=8),
    voltage=floats(0, 65),
    current=floats(-500, 500),
    temperature=floats(-40, 100),
    cell_voltages=st.lists(floats(2.0, 4.2), min_size=4, max_size=16).map(tuple),
)


@settings(deadline=None)
@given(st.lists(batteries, min_size=1, max_size=5), st.data())
def test_battery_record_round_trip_with_every_cell(bats: list[BatteryStatus],
                                                   data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(bats) - 1))
    record = codec.decode_battery(codec.encode_battery(index, tuple(bats)))
    assert (record.index, record.count) == (index, len(bats))
    got, want = record.battery, bats[index]
    assert got is not None
    assert (got.serial, got.model, got.firmware) == (want.serial, want.model, want.firmware)
    assert len(got.cell_voltages) == len(want.cell_voltages)
    for a, b in zip(got.cell_voltages, want.cell_voltages, strict=True):
        assert close(a, b, 0.001)
    assert close(got.current, want.current, 0.001)
    assert close(got.temperature, want.temperature, 0.01)


def test_battery_past_the_end_says_how_many_there_are() -> None:
    bank = sample_status().bank
    assert bank is not None
    record = codec.decode_battery(codec.encode_battery(9, bank.battery_list))
    assert (record.index, record.count, record.battery) == (9, 4, None)


def test_a_16_cell_battery_fits_a_common_mtu() -> None:
    bat = BatteryStatus("S", "51.2V-100Ah", 100, "v1", 53.0, 1.0, 20.0, (3.3,) * 16)
    assert len(codec.encode_battery(0, (bat,))) == codec.BATTERY_MAX_SIZE <= 185 - 3


banks = st.builds(
    BankStatus,
    model=st.sampled_from(codec.MODEL_CODES[1:]),
    batteries=st.integers(1, 50),
    cells=st.integers(4, 800),
    series=st.integers(1, 4),
    parallel=st.integers(1, 50),
    capacity_ah=floats(0, 15_000),
    min_cell_voltage=opt(floats(2, 4.2)),
    max_cell_voltage=opt(floats(2, 4.2)),
    min_temperature=opt(floats(-40, 100)),
    max_temperature=opt(floats(-40, 100)),
    balancer=st.sampled_from(BalancerState),
)


@settings(deadline=None)
@given(banks)
def test_bank_round_trip(bank: BankStatus) -> None:
    got = codec.decode_bank(codec.encode_bank(bank))
    assert got is not None
    assert (got.model, got.batteries, got.cells, got.series, got.parallel, got.balancer) == (
        bank.model, bank.batteries, bank.cells, bank.series, bank.parallel, bank.balancer)
    assert close(got.capacity_ah, bank.capacity_ah, 0.1)
    assert close(got.min_cell_voltage, bank.min_cell_voltage, 0.001)
    assert close(got.max_temperature, bank.max_temperature, 0.01)


def test_no_bank_yet_decodes_as_none() -> None:
    assert codec.decode_bank(codec.encode_bank(None)) is None


histories = st.builds(
    History,
    deepest_discharge_ah=floats(-10_000, 10_000),
    last_discharge_ah=floats(-10_000, 10_000),
    cumulative_ah_drawn=floats(0, 1e6),
    discharged_energy_kwh=floats(0, 1e6),
    charged_energy_kwh=floats(0, 1e6),
    synchronisations=st.integers(0, 2**31),
    charge_cycles=st.integers(0, 2**31),
    full_discharges=st.integers(0, 2**31),
    seconds_since_full_charge=opt(floats(0, 4e9)),
    min_bank_voltage=opt(floats(0, 600)),
    max_bank_voltage=opt(floats(0, 600)),
    min_cell_voltage=opt(floats(0, 5)),
    max_cell_voltage=opt(floats(0, 5)),
    min_temperature=opt(floats(-40, 100)),
    max_temperature=opt(floats(-40, 100)),
)


@settings(deadline=None)
@given(histories)
def test_history_round_trip(h: History) -> None:
    got = codec.decode_history(codec.encode_history(h))
    assert close(got.deepest_discharge_ah, h.deepest_discharge_ah, 0.1)
    assert close(got.discharged_energy_kwh, h.discharged_energy_kwh, 0.001)
    assert (got.synchronisations, got.charge_cycles, got.full_discharges) == (
        h.synchronisations, h.charge_cycles, h.full_discharges)
    assert close(got.seconds_since_full_charge, h.seconds_since_full_charge, 1)
    assert close(got.min_cell_voltage, h.min_cell_voltage, 0.001)
    assert close(got.max_bank_voltage, h.max_bank_voltage, 0.01)


@pytest.mark.parametrize(("name", "value"), [
    ("charged_voltage", 28.4), ("charged_voltage", None), ("tail_current", 4.0),
    ("tail_current", 0.55), ("charge_detection_time", 3.0), ("low_soc_warning", 20.5),
    ("discharge_floor", 0.0), ("bluetooth", False), ("instant_readout", True), ("mode", False),
])
def test_setting_values_round_trip(name: str, value: object) -> None:
    c = codec.SETTING_CODECS[name]
    assert c.decode(c.encode(value)) == value


def test_boolean_settings_refuse_anything_but_0_and_1() -> None:
    with pytest.raises(codec.CodecError) as info:
        codec.SETTING_CODECS["mode"].decode(b"\x02")
    assert not info.value.length


def test_setting_of_the_wrong_size_is_a_length_error() -> None:
    with pytest.raises(codec.CodecError) as info:
        codec.SETTING_CODECS["tail_current"].decode(b"\x01\x02\x03")
    assert info.value.length


def test_commands_decode_with_their_argument_and_refuse_bad_lengths() -> None:
    cmd = codec.decode_command(codec.encode_set_soc(55.5))
    assert cmd.name == "set_soc"
    assert codec.decode_set_soc_argument(cmd.argument) == 55.5
    with pytest.raises(codec.CodecError) as info:
        codec.decode_command(bytes([codec.OP_SYNCHRONISE, 0]))
    assert info.value.length
    with pytest.raises(codec.CodecError, match="unknown command"):
        codec.decode_command(b"\x7f")
    with pytest.raises(codec.CodecError, match="out of range"):
        codec.decode_set_soc_argument(struct.pack("<H", 10001))


@settings(deadline=None)
@given(st.integers(0, 0xFF), st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2]),
       st.text(max_size=300))
def test_results_round_trip_and_fit_an_indication(op: int, seq: int, result: int,
                                                  message: str) -> None:
    res = codec.CommandResult(op, seq, result, codec.message_bytes(message))
    data = codec.encode_result(res)
    assert len(data) <= codec.RESULT_HEAD_SIZE + codec.RESULT_MAX_DATA
    got = codec.decode_result(data)
    assert (got.opcode, got.seq, got.result) == (op, seq, result)
    if len(message.encode()) <= codec.RESULT_MAX_DATA:
        assert got.message == message
    else:
        assert got.message.endswith("\u2026")
        assert message.startswith(got.message[:-1])


def test_a_long_refusal_is_cut_at_a_word_with_an_ellipsis() -> None:
    message = "charged_voltage must be between 13.60 and 14.40 V for this bank " * 4
    text = codec.message_bytes(message).decode()
    assert len(text.encode()) <= codec.RESULT_MAX_DATA
    assert text.endswith("\u2026")
    assert message.startswith(text[:-1])
    assert message[len(text) - 1] == " "  # the cut falls between two words


def test_vereg_values_use_victron_units() -> None:
    s = sample_status(soc=87.25, voltage=26.62, current=-10.0, power=-266.2, consumed_ah=52.0,
                      ttg_min=2400, temperature=22.5)
    assert struct.unpack("<H", codec.vereg_soc(s.soc))[0] == 8725
    assert struct.unpack("<h", codec.vereg_voltage(s.voltage))[0] == 2662
    assert struct.unpack("<i", codec.vereg_current(s.current))[0] == -10_000
    assert struct.unpack("<h", codec.vereg_power(s.power))[0] == -266
    assert struct.unpack("<i", codec.vereg_consumed_ah(s.consumed_ah))[0] == -520
    assert struct.unpack("<H", codec.vereg_ttg(s.ttg_min))[0] == 2400
    assert struct.unpack("<H", codec.vereg_temperature(s.temperature))[0] == 29565
    assert codec.vereg_soc(None) == b"\xff\xff"
    assert codec.vereg_consumed_ah(None) == b"\xff\xff\xff\x7f"


def test_battery_level_is_soc_rounded_and_zero_when_unknown() -> None:
    assert codec.decode_battery_level(codec.encode_battery_level(87.6)) == 88
    assert codec.encode_battery_level(None) == b"\x64"  # unknown: 100 %, as the readout
    assert codec.encode_battery_level(150) == b"\x64"


def test_reason_and_code_tables_cover_the_core_enums() -> None:
    # adding a member to a core enum must come with a wire code (append-only tables)
    assert set(codec.REASONS) == set(Reason)
    assert set(codec.CODES) == set(Code)
    assert set(codec.BALANCER_STATES) == set(BalancerState)
    assert set(codec.LED_STATES) == set(LedState)


def test_model_codes_match_the_core_models() -> None:
    assert set(codec.MODEL_CODES[1:]) == set(MODELS)


def test_text_fields_never_split_a_character() -> None:
    bat = dataclasses.replace(sample_status().bank.battery_list[0],  # type: ignore[union-attr]
                              serial="ééééééééé")  # 18 bytes in UTF-8
    record = codec.decode_battery(codec.encode_battery(0, (bat,)))
    assert record.battery is not None
    assert record.battery.serial == "éééééééé"


def test_a_stored_charged_voltage_the_bank_does_not_allow_is_flagged_in_the_status() -> None:
    from gatt.client_format import format_status  # noqa: PLC0415

    fine = codec.decode_status(codec.encode_status(sample_status()))
    assert not fine.charged_voltage_not_used
    assert not any("not used" in line for line in format_status(fine))
    problem = sample_status(setting_problems=("charged_voltage 20 V does not fit ...",))
    view = codec.decode_status(codec.encode_status(problem))
    assert view.charged_voltage_not_used
    assert any(line.startswith("Setting not used    charged_voltage does not fit")
               for line in format_status(view))


def test_a_diy_pack_reads_as_custom_and_old_clients_see_unknown() -> None:
    bank = BankStatus("Garage pack", 2, 32, 1, 2, 560.0, 3.30, 3.31, 20.0, 21.0,
                      BalancerState.BALANCED)
    data = codec.encode_bank(bank)
    assert data[2] == 0  # model code "unknown" for clients that predate BANK_CUSTOM
    got = codec.decode_bank(data)
    assert got is not None
    assert got.model == "custom (16 cells, 280 Ah)"
    assert (got.cells, got.capacity_ah) == (32, 560.0)
    battery = BatteryStatus("G1", "Garage pack", 280.0, "", 53.0, 1.0, 20.0, (3.3,) * 16)
    record = codec.decode_battery(codec.encode_battery(0, (battery, battery)))
    assert record.battery is not None
    assert record.battery.model == ""
    full = codec.with_batteries(got, (record.battery,) * 2)
    assert [b.model for b in full.battery_list] == ["custom (16 cells, 280 Ah)"] * 2
