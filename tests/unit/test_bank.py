"""Topology detection and configuration errors (SPEC §1, E-B01 / E-B05 / E-B09)."""

from __future__ import annotations

import dataclasses

import pytest
from core_helpers import Driver, bank
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.core.bank import MODELS, TopologyDetector, detect_topology, voltage_error
from bms_daemon.core.types import BatteryReading, Code, Readings, Reason


def test_models_are_the_lithium_ng_range() -> None:
    assert set(MODELS) == {
        "12.8V-100Ah",
        "12.8V-150Ah",
        "12.8V-200Ah",
        "12.8V-300Ah",
        "25.6V-100Ah",
        "25.6V-200Ah",
        "25.6V-300Ah",
        "51.2V-100Ah",
    }
    for name, model in MODELS.items():
        assert model.name == name
        assert model.cells == {12.8: 4, 25.6: 8, 51.2: 16}[model.nominal_voltage]


@pytest.mark.parametrize(
    ("model", "series", "parallel", "cells_in_series", "capacity"),
    [
        ("12.8V-100Ah", 1, 1, 4, 100.0),
        ("12.8V-200Ah", 1, 3, 4, 600.0),
        ("12.8V-100Ah", 2, 2, 8, 200.0),  # 24 V
        ("12.8V-100Ah", 4, 4, 16, 400.0),  # 16 x 12.8 V as 4S4P, a 48 V bank
        ("12.8V-300Ah", 1, 50, 4, 15000.0),  # the 50-battery limit of a 12 V bank
        ("25.6V-300Ah", 1, 2, 8, 600.0),
        ("25.6V-100Ah", 2, 1, 16, 100.0),  # 48 V from two 25.6 V
        ("51.2V-100Ah", 1, 25, 16, 2500.0),  # the 25-battery limit of a 48 V bank
    ],
)
def test_valid_banks_are_detected(
    model: str, series: int, parallel: int, cells_in_series: int, capacity: float
) -> None:
    readings = bank(model, series, parallel)
    topology = detect_topology(readings.batteries, readings.bank_voltage)
    assert topology.error is None, topology.problem
    assert (topology.series, topology.parallel) == (series, parallel)
    assert topology.batteries == series * parallel
    assert topology.cells == series * parallel * MODELS[model].cells
    assert topology.cells_in_series == cells_in_series
    assert topology.capacity_ah == capacity


def test_series_detection_tolerates_unequal_batteries() -> None:
    """Batteries of one string at different voltages still make a whole series count."""
    readings = bank("12.8V-100Ah", 4, 1, faults={(0, 0): 3.1, (2, 3): 3.4})
    topology = detect_topology(readings.batteries, readings.bank_voltage)
    assert (topology.series, topology.parallel, topology.error) == (4, 1, None)


def _mixed() -> tuple[tuple[BatteryReading, ...], float]:
    a = bank("12.8V-100Ah", 1, 2)
    other = dataclasses.replace(a.batteries[1], model="12.8V-200Ah")
    return (a.batteries[0], other), a.bank_voltage


@pytest.mark.parametrize(
    ("readings", "code", "words"),
    [
        (bank("12.8V-100Ah", 1, 51), Code.E_B01, "at most 50"),
        (bank("51.2V-100Ah", 1, 26), Code.E_B01, "at most 25"),
        (bank("12.8V-100Ah", 4, 7), Code.E_B01, "at most 25"),  # 28 batteries in a 48 V bank
        (bank("12.8V-100Ah", 3, 1), Code.E_B05, "not a 12, 24 or 48 V"),
        (bank("25.6V-100Ah", 3, 1), Code.E_B05, "not a 12, 24 or 48 V"),
        (bank("51.2V-100Ah", 2, 1), Code.E_B05, "not a 12, 24 or 48 V"),
    ],
)
def test_invalid_banks(readings: Readings, code: Code, words: str) -> None:
    topology = detect_topology(readings.batteries, readings.bank_voltage)
    assert topology.error == code
    assert words in topology.problem
    assert topology.model is None
    assert topology.capacity_ah == 0.0


def test_incomplete_string_is_e_b05() -> None:
    """Five 12.8 V batteries on a 24 V bank: one string is missing a battery."""
    full = bank("12.8V-100Ah", 2, 3)
    batteries = full.batteries[:5]
    topology = detect_topology(batteries, full.bank_voltage)
    assert topology.error == Code.E_B05
    assert "complete strings" in topology.problem


def test_mixed_models_unknown_model_wrong_cells_and_no_battery() -> None:
    batteries, voltage = _mixed()
    mixed = detect_topology(batteries, voltage)
    assert mixed.error == Code.E_B01
    assert "mixed" in mixed.problem
    one = bank().batteries[0]
    unknown = detect_topology([dataclasses.replace(one, model="12.8V-999Ah")], 13.2)
    assert unknown.error == Code.E_B01
    assert "unknown battery model" in unknown.problem
    short = detect_topology([dataclasses.replace(one, cell_voltages=(3.3,) * 3)], 13.2)
    assert short.error == Code.E_B05
    assert detect_topology([], 13.2).error == Code.E_B01


@pytest.mark.parametrize(
    ("volts", "error"),
    [(8.99, Code.E_B09), (9.0, None), (13.2, None), (60.0, None), (60.01, Code.E_B09)],
)
def test_voltage_window(volts: float, error: Code | None) -> None:
    assert voltage_error(volts) == error


def test_configuration_error_floats_both_outputs_until_fixed() -> None:
    d = Driver(soc=80)
    status = d.run(bank("12.8V-100Ah", 3, 1), 2)
    assert Code.E_B05 in status.errors
    assert not status.outputs.load
    assert not status.outputs.charger
    assert status.discharge_reason == status.charge_reason == Reason.CONFIGURATION
    assert status.bank is not None
    assert status.bank.model is None
    status = d.run(bank("12.8V-100Ah", 4, 1), 1)
    assert status.errors == ()
    assert status.outputs.load
    assert status.outputs.charger
    assert status.bank is not None
    assert (status.bank.series, status.bank.parallel, status.bank.cells) == (4, 1, 16)


def test_voltage_not_allowed_floats_both_outputs() -> None:
    d = Driver(soc=80)
    status = d.run(bank(bank_voltage=8.5), 1)
    assert status.errors == (Code.E_B09,)
    assert status.discharge_reason == status.charge_reason == Reason.VOLTAGE_NOT_ALLOWED
    assert not status.outputs.load
    assert not status.outputs.charger
    status = d.run(bank(), 1)
    assert status.errors == ()
    assert status.outputs.load


_battery = st.builds(
    BatteryReading,
    serial=st.sampled_from(["A", "B", "C"]),
    model=st.sampled_from(["12.8V-100Ah", "12.8V-200Ah", "25.6V-200Ah", "unknown"]),
    firmware=st.just("v1"),
    voltage=st.sampled_from([0.0, 12.8, 13.3, 25.6, 26.6]),
    current=st.just(0.0),
    temperature=st.just(25.0),
    cell_voltages=st.sampled_from([(), (3.3,) * 4, (3.3,) * 8]),
)


@given(st.lists(st.tuples(st.lists(_battery, max_size=6),
                          st.sampled_from([0.0, 12.8, 13.3, 26.6, 53.2, 70.0])), max_size=12))
def test_the_remembered_topology_is_the_one_detected_afresh(
    samples: list[tuple[list[BatteryReading], float]],
) -> None:
    """The topology detector that skips detection for an unchanged bank answers like a fresh
    detection at every sample, through additions, removals, swaps and voltage changes."""
    detector = TopologyDetector()
    for batteries, bank_voltage in samples:
        assert detector.detect(batteries, bank_voltage) == detect_topology(batteries, bank_voltage)
