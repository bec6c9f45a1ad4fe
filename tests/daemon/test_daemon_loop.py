"""The daemon in-process: verdict to pins, E-B11, listeners, BLE isolation, clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import SettingError
from bms_daemon.core.types import Code, Inputs, Outputs, Readings, Status
from bms_daemon.daemon import Daemon, status_line
from bms_daemon.gpio.driver import OutputDriver
from bms_daemon.gpio.memory import MemoryPort
from bms_daemon.sources import create_source
from bms_daemon.store import MemoryStore


class RecordingBms:
    """The real core, with a record of what the daemon gave it."""

    def __init__(self) -> None:
        self.core = Bms()
        self.steps: list[tuple[Readings | None, Inputs]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    @property
    def status(self) -> Status:
        return self.core.status

    @property
    def settings(self) -> Any:
        return self.core.settings

    def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status:
        self.steps.append((readings, inputs))
        return self.core.step(readings, inputs, now)


class RecordingPort(MemoryPort):
    """Memory pins that remember every set, and how many core steps preceded it."""

    def __init__(self, bms: RecordingBms) -> None:
        super().__init__()
        self.bms = bms
        self.sets: list[tuple[str, bool, int]] = []

    def set_output(self, name: str, active: bool) -> None:
        self.sets.append((name, active, len(self.bms.steps)))
        super().set_output(name, active)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def _daemon(**kwargs: Any) -> tuple[Daemon, RecordingBms, RecordingPort, MemoryStore]:
    bms = RecordingBms()
    port = RecordingPort(bms)
    store = MemoryStore()
    options: dict[str, Any] = {
        "bms": bms,
        "source": create_source({"type": "simulated"}),
        "driver": OutputDriver(port),
        "store": store,
        "clock": Clock(),
    }
    options.update(kwargs)
    return Daemon(**options), bms, port, store


async def test_no_output_is_asserted_before_the_core_has_decided() -> None:
    daemon, _, port, _ = _daemon()
    assert not any(port.levels.values())
    daemon.tick()
    assert port.sets, "the first tick drives the pins"
    assert all(steps >= 1 for name, active, steps in port.sets if active)
    assert daemon.ready.is_set()


async def test_outputs_follow_the_core_verdict() -> None:
    daemon, bms, port, _ = _daemon()
    status = daemon.tick()
    assert (port.levels["load"], port.levels["charger"], port.levels["prealarm"]) == (
        status.outputs.load, status.outputs.charger, status.outputs.prealarm)
    daemon.controller.set_setting("mode", False)
    status = daemon.tick()
    assert not status.outputs.load
    assert not port.levels["load"]
    assert not port.levels["charger"]
    assert bms.steps[-1][1].remote is True


async def test_a_line_that_fails_read_back_gives_e_b11_and_floats_everything() -> None:
    daemon, bms, port, _ = _daemon()
    daemon.tick()
    port.fail("load")
    with capture_logs() as logs:
        daemon.tick()
        status = daemon.tick()
    assert bms.steps[-1][1].hardware_ok is False
    assert Code.E_B11 in status.errors
    assert status.outputs == Outputs.safe()
    assert not any(port.levels.values())
    assert next(e for e in logs if e["event"] == "hardware_error")["code"] == "E-B11"


async def test_a_failing_source_is_no_fresh_data_and_logged_once() -> None:
    class Broken:
        def read(self, now: float) -> Readings | None:
            raise OSError("battery cable unplugged")

        def apply_outputs(self, outputs: Outputs) -> None:
            pass

    daemon, bms, _, _ = _daemon(source=Broken())
    with capture_logs() as logs:
        for _ in range(5):
            daemon.tick()
    assert [readings for readings, _ in bms.steps] == [None] * 5
    assert [e["event"] for e in logs].count("source_failed") == 1


async def test_listeners_hear_every_status_and_a_bad_one_cannot_break_the_loop() -> None:
    daemon, _, _, _ = _daemon()
    heard: list[Status] = []

    def bad(status: Status) -> None:
        raise RuntimeError("listener bug")

    unsubscribe = daemon.controller.subscribe(heard.append)
    daemon.controller.subscribe(bad)
    with capture_logs() as logs:
        daemon.tick()
        daemon.tick()
    unsubscribe()
    daemon.tick()
    assert len(heard) == 2
    assert all(isinstance(status, Status) for status in heard)
    assert any(e["event"] == "status_listener_failed" for e in logs)


async def test_settings_and_commands_are_saved_at_the_next_tick() -> None:
    daemon, _, _, store = _daemon()
    daemon.tick()
    await daemon.persister.flush()
    saves = store.saves
    assert daemon.controller.command("set_soc", 42.0) == "SOC set to 42%"
    daemon.tick()
    await daemon.persister.flush()
    assert store.saves == saves + 1
    saved = store.load("bms")
    assert saved is not None
    assert Bms(saved=saved).status.soc == pytest.approx(42.0, abs=0.5)
    with pytest.raises(SettingError):
        daemon.controller.set_setting("discharge_floor", 500)


def test_status_line() -> None:
    status = Bms().status
    assert status_line(status, Outputs(load=True, charger=False, prealarm=True)) == (
        "SOC unknown, load on, charger off, pre-alarm")


async def _run_until(daemon: Daemon, ticks: int) -> asyncio.Event:
    stop = asyncio.Event()
    reached = asyncio.Event()
    daemon.controller.subscribe(lambda _: reached.set() if daemon.ticks + 1 >= ticks else None)
    runner = asyncio.create_task(daemon.run(stop))
    await asyncio.wait_for(reached.wait(), 30)
    stop.set()
    await asyncio.wait_for(runner, 30)
    return stop


async def test_stop_floats_outputs_and_saves() -> None:
    daemon, _, port, store = _daemon(rate_hz=20.0)
    await _run_until(daemon, 3)
    assert not any(port.levels.values())
    assert port.closed
    assert store.load("bms") is not None


async def test_a_failing_ble_side_never_stops_protection() -> None:
    attempts = 0

    async def broken_ble(controller: Controller) -> AsyncIterator[None]:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("org.bluez went away")
        yield None  # pragma: no cover

    daemon, _, _, _ = _daemon(rate_hz=20.0, ble=broken_ble)
    with capture_logs() as logs:
        await _run_until(daemon, 10)
    assert attempts >= 1
    assert daemon.ticks >= 10
    assert any(e["event"] == "ble_failed" for e in logs)


async def test_ble_state_reaches_the_core_for_the_blue_led() -> None:
    class Service:
        advertising = True
        connected = False

    async def ble(controller: Controller) -> AsyncIterator[None]:
        daemon.ble_service = Service()
        yield None
        await asyncio.Event().wait()

    daemon, bms, _, _ = _daemon(rate_hz=20.0, ble=ble)
    await _run_until(daemon, 5)
    assert any(inputs.ble_advertising for _, inputs in bms.steps)


async def test_a_core_failure_floats_the_outputs_and_ends_the_run() -> None:
    """A bug in the core must not leave outputs asserted: float, save what we can, exit."""

    class Exploding(RecordingBms):
        def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status:
            if len(self.steps) >= 2:
                raise ZeroDivisionError("core bug")
            return super().step(readings, inputs, now)

    bms = Exploding()
    port = RecordingPort(bms)
    daemon = Daemon(bms=bms, source=create_source({"type": "simulated"}),
                    driver=OutputDriver(port), store=MemoryStore(), rate_hz=20.0)
    with pytest.raises(ZeroDivisionError):
        await asyncio.wait_for(daemon.run(asyncio.Event()), 30)
    assert any(active for _, active, _ in port.sets)  # it did drive before the failure
    assert not any(port.levels.values())
    assert port.closed


async def test_logs_changes_not_samples() -> None:
    daemon, _, _, _ = _daemon()
    with capture_logs() as logs:
        for _ in range(3):
            daemon.tick()
        settled = len(logs)
        for _ in range(40):  # 20 s of a quiet bank at 2 Hz
            daemon.tick()
        assert len(logs) == settled
        daemon.controller.set_setting("mode", False)
        daemon.tick()
    events = {entry["event"]: entry for entry in logs[settled:]}
    assert events["setting_changed"]["setting"] == "mode"
    assert events["mode"]["mode"] == "off"
    assert events["outputs"]["load"] == "floating"
    assert events["outputs"]["discharge_reason"] == "mode off"


async def test_the_pin_is_never_logged() -> None:
    daemon, _, _, _ = _daemon()
    with capture_logs() as logs:
        daemon.controller.set_setting("pin", "424242")
    assert "424242" not in repr(logs)
    assert daemon.controller.settings().pin == "424242"
