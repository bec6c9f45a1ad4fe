"""`smallbms-client` options as docs/client.md states them: `--json` global (before or after
the command), a malformed PIN refused locally (never sent, never counted as a wrong PIN)."""

from __future__ import annotations

import json

import pytest
from ble_harness import PIN, DaemonUnderTest
from test_client_offline import run_cli

from gatt.security import FREE_ATTEMPTS

pytestmark = pytest.mark.ble


def test_json_is_accepted_before_the_command(bms: DaemonUnderTest) -> None:
    before = bms.cli("--json", "status")
    assert before.returncode == 0, before.stderr
    assert "soc" in json.loads(before.stdout)
    after = bms.cli("status", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout).keys() == json.loads(before.stdout).keys()


def test_json_applies_to_set_and_command_too(bms: DaemonUnderTest) -> None:
    before = json.loads(bms.cli("--json", "get", "discharge_floor").stdout)
    result = bms.cli("--json", "set", "discharge_floor", "15")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"discharge_floor": 15}
    restored = bms.cli("set", "discharge_floor", f"{before:g}")
    assert restored.returncode == 0, restored.stderr
    result = bms.cli("--json", "command", "mode", "on")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["command"] == "mode"


def test_a_malformed_pin_is_refused_locally_and_never_counts(bms: DaemonUnderTest) -> None:
    for _ in range(FREE_ATTEMPTS + 2):  # more than the device would allow as wrong PINs
        result = bms.cli("--pin", "12", "status", pin=None)
        assert result.returncode == 2
        assert result.stderr == (
            "smallbms-client: the PIN is exactly 6 digits (the factory PIN is 000000), not "
            "'12'; nothing was sent to the device\n"
        )
    right = bms.cli("status", pin=PIN)  # not locked out: none of them reached the device
    assert right.returncode == 0, right.stderr


def test_a_malformed_pin_from_the_environment_is_refused_before_any_bluetooth() -> None:
    result = run_cli("status", env={"SMALLBMS_PIN": "1234567",
                                    "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert result.returncode == 2  # not 7 (no bus): the PIN was checked first
    assert "exactly 6 digits" in result.stderr


def test_top_level_help_names_json() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--json" in result.stdout
