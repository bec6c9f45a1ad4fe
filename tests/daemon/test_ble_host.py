"""Choosing the BlueZ, and a BLE side that is missing altogether."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bms_daemon import ble_host
from bms_daemon.config import BleConfig, load
from bms_daemon.daemon import build


async def test_virtual_off_uses_the_system_bus_untouched() -> None:
    before = os.environ.get(ble_host.BUS_ENV)
    async with ble_host.ble_environment(BleConfig(virtual="off")) as address:
        assert address is None
        assert os.environ.get(ble_host.BUS_ENV) == before


async def test_no_system_bus_means_no_bluez(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv(ble_host.BUS_ENV, f"unix:path={tmp_path}/no-bus")
    assert await ble_host.bluez_present() is False


@pytest.mark.ble
@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
async def test_auto_starts_a_virtual_bluez_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ble_host.BUS_ENV, f"unix:path={tmp_path}/no-bus")
    async with ble_host.ble_environment(BleConfig(virtual="auto")) as address:
        assert address is not None
        assert os.environ[ble_host.BUS_ENV] == address
        assert await ble_host.bluez_present() is True  # the virtual org.bluez answers
    assert os.environ[ble_host.BUS_ENV] == f"unix:path={tmp_path}/no-bus"


async def test_missing_ble_module_is_logged_and_protection_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gatt.service", None)  # import fails
    daemon = build(load(None), tmp_path)
    stop = asyncio.Event()
    reached = asyncio.Event()
    daemon.controller.subscribe(lambda _: reached.set() if daemon.ticks >= 2 else None)
    with capture_logs() as logs:
        runner = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(reached.wait(), 30)
        for _ in range(100):  # let the BLE task run to its end
            if any(entry["event"] == "ble_unavailable" for entry in logs):
                break
            await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(runner, 30)
    unavailable = next(entry for entry in logs if entry["event"] == "ble_unavailable")
    assert "gatt.service is not available" in unavailable["problem"]
    assert daemon.ticks >= 3
