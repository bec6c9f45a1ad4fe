"""`smallbms-client` and the client library without a device: command line, messages, output.

These run in milliseconds (no bus); the behaviour over Bluetooth is in the other modules.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.core.types import (
    BalancerState,
    BankStatus,
    BatteryStatus,
    Code,
    History,
    Leds,
    Outputs,
    Reason,
)
from gatt import client_cli, codec, profile
from gatt.client import (
    DeviceNotFound,
    LinkLost,
    NoBluetooth,
    NotAuthenticated,
    RejectedValue,
    _parse_setting,
    translate,
)
from gatt.client_format import (
    format_bank,
    format_history,
    format_settings,
    format_status,
    to_jsonable,
)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "SMALLBMS_PIN"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "gatt.client_cli", *args], env=full,
                          capture_output=True, text=True, timeout=60, check=False)


def test_no_bus_explains_how_to_start_the_demo() -> None:
    result = run_cli("status", env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert result.returncode == 7
    assert result.stderr.startswith("smallbms-client: cannot reach the D-Bus system bus")
    assert "smallbms run" in result.stderr
    assert "smallbms virtual-bus" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_key_is_a_usage_error() -> None:
    result = run_cli("scan", "--key", "abc", env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/x"})
    assert result.returncode == 2
    assert "32 hexadecimal digits" in result.stderr


def test_help_lists_every_command_and_the_exit_statuses() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("scan", "status", "watch", "bank", "history", "get", "set", "command", "key"):
        assert f"    {command} " in result.stdout
    assert "exit status:" in result.stdout
    assert "SMALLBMS_PIN" in result.stdout


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert client_cli.main([]) == 2
    assert "usage: smallbms-client" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--pin", "1", "--device", "D", "status"], ("1", "D", False)),
        (["status", "--pin", "1", "--device", "D", "--json"], ("1", "D", True)),
        (["--pin", "1", "status", "--device", "D"], ("1", "D", False)),
    ],
)
def test_global_options_before_or_after_the_command(
    argv: list[str], expected: tuple[str, str, bool]
) -> None:
    args = client_cli.build_parser().parse_args(argv)
    assert (args.pin, args.device, getattr(args, "json", False)) == expected


def test_translate_gives_each_failure_its_type() -> None:
    assert isinstance(translate(FileNotFoundError(2, "x"), doing="d"), NoBluetooth)
    assert isinstance(
        translate(BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), doing="d"),
        NoBluetooth,
    )
    assert isinstance(translate(BleakDeviceNotFoundError("AA"), doing="d"), DeviceNotFound)
    auth = BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION)
    assert isinstance(translate(auth, doing="d"), NotAuthenticated)
    rejected = translate(BleakGATTProtocolError(profile.ATT_VALUE_REJECTED), doing="d")
    assert isinstance(rejected, RejectedValue)
    assert "value rejected by the BMS" in str(rejected)
    assert isinstance(translate(BleakError("Not connected"), doing="d"), LinkLost)
    assert isinstance(translate(TimeoutError(), doing="d"), LinkLost)


@given(st.text(max_size=12))
def test_parse_setting_never_raises_anything_but_a_rejection(text: str) -> None:
    for name in codec.SETTING_CODECS:
        try:
            value = _parse_setting(name, text)
        except RejectedValue:
            continue
        assert value is None or isinstance(value, bool) or math.isfinite(value)


def test_parse_setting_accepts_units_and_words() -> None:
    assert _parse_setting("charged_voltage", "14.2V") == 14.2
    assert _parse_setting("charged_voltage", "auto") is None
    assert _parse_setting("tail_current", "4%") == 4.0
    assert _parse_setting("mode", "off") is False
    assert _parse_setting("bluetooth", "ON") is True


def _status() -> codec.StatusView:
    return codec.StatusView(
        soc=55.5, soc_synchronised=True, mode=True, remote=True, voltage=13.21, current=-4.95,
        power=-65.4, consumed_ah=44.5, ttg_min=545.0, temperature=25.0,
        allowed_to_charge=False, charge_reason=Reason.COLD, allowed_to_discharge=True,
        discharge_reason=Reason.LOW_SOC, outputs=Outputs(load=True, charger=False, prealarm=True),
        leds=Leds(), warnings=(Code.W_B07,), alarms=(), errors=(),
    )


def test_status_text_shows_what_the_manual_shows() -> None:
    text = "\n".join(format_status(_status()))
    assert "State of charge     55.5 %" in text
    assert "Time to go          9h 05m" in text
    assert "Allowed to charge   no (battery too cold)" in text
    assert "Allowed to discharge pre-alarm (low SOC)" in text
    assert "Warning             W-B07 Low SOC: " in text


def test_status_text_shows_the_battery_sources_own_alarms() -> None:
    quiet = "\n".join(format_status(_status()))
    assert "Battery source says" not in quiet
    noted = dataclasses.replace(_status(), source_notes=("alarm: battery low voltage",))
    text = "\n".join(format_status(noted))
    assert "Battery source says alarm: battery low voltage (shown, not obeyed" in text


def test_status_json_is_plain_json() -> None:
    data = json.loads(json.dumps(to_jsonable(_status())))
    assert data["charge_reason"] == "battery too cold"
    assert data["outputs"]["prealarm"] is True
    assert to_jsonable(float("nan")) is None


def test_bank_history_and_settings_text() -> None:
    battery = BatteryStatus("HQ1", "12.8V-100Ah", 100.0, "v1", 13.2, -5.0, 25.0,
                            (3.301, 3.302, 3.303, 3.304))
    bank = BankStatus("12.8V-100Ah", 1, 4, 1, 1, 100.0, 3.301, 3.304, 25.0, 25.0,
                      BalancerState.BALANCED, (battery,))
    assert "cells: 3.301 3.302 3.303 3.304" in "\n".join(format_bank(bank))
    history = "\n".join(format_history(History(charge_cycles=3)))
    assert "Charge cycles           3" in history
    assert "Since last full charge  never" in history
    assert format_settings({"discharge_floor": 10.0, "mode": True, "charged_voltage": None}) == [
        "discharge_floor         10 %",
        "mode                    on",
        "charged_voltage         default",
    ]


def test_bank_text_and_json_show_a_diy_pack_for_what_it_is() -> None:
    pack = BankStatus("Garage pack", 1, 16, 1, 1, 280.0, 3.30, 3.31, 20.0, 20.0,
                      BalancerState.BALANCED)
    bank = codec.decode_bank(codec.encode_bank(pack))
    assert bank is not None
    record = codec.decode_battery(codec.encode_battery(0, (BatteryStatus(
        "G1", "Garage pack", 280.0, "", 53.0, 1.0, 20.0, (3.3,) * 16),)))
    assert record.battery is not None
    bank = codec.with_batteries(bank, (record.battery,))
    text = "\n".join(format_bank(bank))
    assert "Model               custom (16 cells, 280 Ah)" in text
    assert "serial G1  custom (16 cells, 280 Ah) 280 Ah" in text
    data = json.loads(json.dumps(to_jsonable(bank)))
    assert data["model"] == "custom (16 cells, 280 Ah)"
    assert data["battery_list"][0]["model"] == "custom (16 cells, 280 Ah)"


@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
def test_bus_without_bluez_says_so() -> None:
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        result = run_cli("status", env={"DBUS_SYSTEM_BUS_ADDRESS": address})
    finally:
        bus.terminate()
        bus.wait(timeout=10)
    assert result.returncode == 7
    assert result.stderr.startswith("smallbms-client: BlueZ is not running on the system bus;")
    assert "smallbms virtual-bus" in result.stderr
