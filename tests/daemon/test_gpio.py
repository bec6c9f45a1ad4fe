"""GPIO: the memory backend, the output driver (E-B11 latch, LEDs) and gpiod line settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gpiod.line import Bias, Direction, Drive, Value
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.config import parse
from bms_daemon.core.types import Leds, LedState, Outputs
from bms_daemon.gpio import GpioError, float_outputs, open_port
from bms_daemon.gpio.base import GpioConfig, LineSpec
from bms_daemon.gpio.driver import BLINK_HALF_PERIOD_S, OutputDriver, blink_phase, next_blink_edge
from bms_daemon.gpio.gpiod import line_settings
from bms_daemon.gpio.memory import MemoryPort


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_memory_outputs_start_floating_and_are_observable(tmp_path: Path) -> None:
    port = open_port(GpioConfig(), tmp_path)
    observed = json.loads((tmp_path / "gpio-memory.json").read_text())
    assert observed == {"load": False, "charger": False, "prealarm": False, "remote": True}
    port.set_output("load", True)
    assert json.loads((tmp_path / "gpio-memory.json").read_text())["load"] is True
    port.close()
    assert not any(json.loads((tmp_path / "gpio-memory.json").read_text())[n]
                   for n in ("load", "charger", "prealarm"))


def test_a_faulty_line_fails_on_read_back() -> None:
    port = MemoryPort()
    port.fail("charger")
    with pytest.raises(GpioError, match="charger reads back floating after being set high"):
        port.set_output("charger", True)


def test_releasing_a_line_never_reads_it_back() -> None:
    # A released line shows the wiring's level, not ours: no E-B11 for it (found on gpio-sim).
    port = MemoryPort()
    port.fail("charger")
    port.set_output("charger", False)
    assert port.levels["charger"] is False


def test_remote_is_debounced() -> None:
    clock = Clock()
    port = MemoryPort(debounce_s=0.02, clock=clock)
    assert port.read_remote() is True
    port.set_remote(False)
    clock.t += 0.01
    assert port.read_remote() is True  # still bouncing
    port.set_remote(True)
    port.set_remote(False)  # bounce restarts the debounce period
    clock.t += 0.015
    assert port.read_remote() is True
    clock.t += 0.01
    assert port.read_remote() is False


@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 0.05)), max_size=30))
def test_remote_changes_only_to_a_level_held_for_the_debounce_period(
    changes: list[tuple[bool, float]],
) -> None:
    debounce = 0.02
    clock = Clock()
    port = MemoryPort(debounce_s=debounce, clock=clock)
    raw, raw_since, previous = True, clock.t, True
    for level, wait in changes:
        port.set_remote(level)
        if level != raw:
            raw, raw_since = level, clock.t
        clock.t += wait
        value = port.read_remote()
        held = clock.t - raw_since
        if value != previous:
            assert value == raw
            assert held >= debounce
        if held >= debounce:
            assert value == raw
        previous = value


def test_remote_file_opens_and_closes_the_loop(tmp_path: Path) -> None:
    config = GpioConfig(remote_file="remote", remote_debounce_ms=0.0)
    port = open_port(config, tmp_path)
    assert port.read_remote() is True
    (tmp_path / "remote").write_text("off\n")
    assert port.read_remote() is False
    (tmp_path / "remote").write_text("on\n")
    assert port.read_remote() is True


def test_unconnected_remote_is_on() -> None:
    port = MemoryPort(remote_connected=False)
    port.fail("remote")
    assert port.read_remote() is True


def test_driver_latches_a_hardware_fault_and_floats_everything() -> None:
    port = MemoryPort()
    driver = OutputDriver(port)
    driven = driver.apply(Outputs(load=True, charger=True, prealarm=False), Leds(), 0.0)
    assert driven == Outputs(load=True, charger=True, prealarm=False)
    port.fail("prealarm")
    driven = driver.apply(Outputs(load=True, charger=True, prealarm=True), Leds(), 1.0)
    assert driven == Outputs.safe()
    assert not driver.hardware_ok
    assert not any(port.levels.values())
    # latched: even a healthy verdict is not applied until restart
    port.faulty.clear()
    assert driver.apply(Outputs(load=True, charger=True), Leds(), 2.0) == Outputs.safe()
    assert not any(port.levels.values())


def test_driver_without_port_is_in_fault() -> None:
    driver = OutputDriver(None, "cannot request GPIO lines")
    assert not driver.hardware_ok
    assert driver.read_remote() is False
    assert driver.apply(Outputs(load=True), Leds(), 0.0) == Outputs.safe()


def test_remote_read_failure_is_a_hardware_fault() -> None:
    port = MemoryPort()
    port.fail("remote")
    driver = OutputDriver(port)
    assert driver.read_remote() is False
    assert not driver.hardware_ok


def test_leds_solid_and_blinking() -> None:
    port = MemoryPort()
    driver = OutputDriver(port)
    driver.apply(Outputs(), Leds(blue=LedState.BLINK, red=LedState.ON), 0.0)
    assert driver.blinking
    assert port.levels["led_red"] is True
    assert port.levels["led_blue"] is True
    driver.blink(BLINK_HALF_PERIOD_S * 1.5)
    assert port.levels["led_blue"] is False
    assert port.levels["led_red"] is True
    driver.apply(Outputs(), Leds(), 3.0)
    assert not driver.blinking
    assert not port.levels["led_blue"]
    assert not port.levels["led_red"]


@given(st.floats(0, 1e6))
def test_blink_edges(now: float) -> None:
    edge = next_blink_edge(now)
    assert 0 < edge <= BLINK_HALF_PERIOD_S
    assert blink_phase(now + edge + 1e-6) != blink_phase(now + edge - 1e-3) or edge < 1e-3


def test_float_outputs_command_for_the_memory_backend(tmp_path: Path) -> None:
    (tmp_path / "gpio-memory.json").write_text(
        '{"load": true, "charger": true, "prealarm": true, "remote": true}'
    )
    float_outputs(GpioConfig(), tmp_path)
    state = json.loads((tmp_path / "gpio-memory.json").read_text())
    assert state == {"load": False, "charger": False, "prealarm": False, "remote": True}


# --- gpiod backend: what we ask of the kernel (the package builds settings without hardware) ---
def test_gpiod_outputs_are_open_source_and_start_inactive() -> None:
    settings = line_settings("load", LineSpec(17), GpioConfig())
    assert settings.direction == Direction.OUTPUT
    assert settings.drive == Drive.OPEN_SOURCE
    assert settings.output_value == Value.INACTIVE
    low = line_settings("load", LineSpec(17, active_low=True), GpioConfig())
    assert low.drive == Drive.OPEN_DRAIN  # active-low: still released when inactive
    assert low.active_low is True


def test_gpiod_remote_has_bias_and_kernel_debounce() -> None:
    config = parse('[gpio]\nremote_bias = "pull_up"\nremote_debounce_ms = 15\n'
                   '[gpio.lines]\nremote = "GPIO23"').gpio
    assert config.remote is not None
    settings = line_settings("remote", config.remote, config)
    assert settings.direction == Direction.INPUT
    assert settings.bias == Bias.PULL_UP
    assert settings.debounce_period.total_seconds() == pytest.approx(0.015)


def test_gpiod_missing_chip_is_a_gpio_error(tmp_path: Path) -> None:
    config = GpioConfig(backend="gpiod", chip=str(tmp_path / "gpiochip99"))
    with pytest.raises(GpioError, match="cannot request GPIO lines"):
        open_port(config, tmp_path)
    with pytest.raises(GpioError, match="cannot release GPIO lines"):
        float_outputs(config, tmp_path)


@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.booleans(),
                  st.sampled_from([None, "load", "charger", "prealarm", "remote"])),
        min_size=1, max_size=25,
    )
)
def test_after_a_fault_shows_every_output_stays_floating(
    steps: list[tuple[bool, bool, bool, str | None]],
) -> None:
    port = MemoryPort()
    driver = OutputDriver(port)
    faulted = False
    faulty: set[str] = set()
    for load, charger, prealarm, fault in steps:
        if fault is not None:
            port.fail(fault)
            faulty.add(fault)
        driver.read_remote()
        driven = driver.apply(Outputs(load, charger, prealarm), Leds(), 0.0)
        # A fault shows when the remote is read or a faulty line is driven: a released line
        # is not read back (its level is the wiring's).
        wanted = {"remote": True, "load": load, "charger": charger, "prealarm": prealarm}
        faulted = faulted or any(wanted[name] for name in faulty)
        if faulted:
            assert driven == Outputs.safe()
            assert not driver.hardware_ok
            assert not any(port.levels.values())
        else:
            assert driven == Outputs(load, charger, prealarm)
            assert (port.levels["load"], port.levels["charger"], port.levels["prealarm"]) == (
                load, charger, prealarm)
