"""Bluetooth and MQTT name the same device from the very first start.

A fresh install (an empty state directory) with both enabled: the serial Home Assistant's
discovery shows (and the default base topic ``smallbms/<serial>`` carries) is the Device
Information serial a phone reads over Bluetooth, the daemon's real GATT server on the virtual
BlueZ and a real Mosquitto in between; and both survive a restart unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from broker import Mosquitto, Received, Spy, mqtt_table, needs_mosquitto
from daemon_harness import DaemonProcess, write_config

from gatt.client import SmallBmsClient
from gatt.virtual.bus import VirtualBus

pytestmark = [needs_mosquitto, pytest.mark.ble, pytest.mark.slow]

CONNECT_TIMEOUT_S = 30.0


def _device_config(message: Received) -> bool:
    return message.topic.startswith("homeassistant/") and bool(message.payload) and (
        "device" in message.json())


async def _serials(virtual_bus: VirtualBus, spy: Spy, daemon: DaemonProcess) -> tuple[str, str]:
    """(the serial in HA's device block, the Device Information serial read over BLE)."""
    config = (await asyncio.to_thread(spy.wait, None, _device_config)).json()
    device = config["device"]
    async with SmallBmsClient(virtual_bus.address_of("hci0"), adapter="hci1", pin=None,
                              timeout=CONNECT_TIMEOUT_S) as client:
        info = await client.device_information()
    assert device["identifiers"] == [f"smallbms_{device['serial_number']}"]
    assert config["availability_topic"] == f"smallbms/{device['serial_number']}/status"
    assert daemon.proc.poll() is None
    return device["serial_number"], info["serial"]


async def test_a_fresh_install_has_one_serial_for_bluetooth_and_home_assistant(
    virtual_bus: VirtualBus, broker: Mosquitto, make_spy: Callable[..., Spy], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "both.toml", state,
        '[ble]\nenabled = true\nadapter = "hci0"\nvirtual = "off"\n'
        + mqtt_table(broker, base_topic=""))
    serials: list[tuple[str, str]] = []
    for run in range(2):  # the first start on an empty directory, then a restart
        spy = make_spy(broker, ("homeassistant/#",))
        daemon = DaemonProcess(state, config, tmp_path / f"notify-{run}")
        try:
            await asyncio.to_thread(daemon.wait_log, "mqtt_discovery_published")
            serials.append(await _serials(virtual_bus, spy, daemon))
            assert await asyncio.to_thread(daemon.terminate) == 0
        finally:
            daemon.close()
    (mqtt_serial, ble_serial), again = serials
    assert mqtt_serial == ble_serial
    assert mqtt_serial.startswith("SB")
    assert again == (mqtt_serial, ble_serial)  # the device never changes
