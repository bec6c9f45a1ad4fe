"""Bluetooth off, inside the 30 s after start-up during which Bluetooth stays on anyway.

The manual lets a user switch Bluetooth off; for 30 s after start-up it stays on regardless,
so whoever switched it off by mistake can power-cycle and switch it on again.  This module's
daemon is fresh, so its single test runs inside that window.
"""

from __future__ import annotations

import pytest
from ble_harness import DaemonUnderTest

pytestmark = pytest.mark.ble

WINDOW_S = 30.0  # gatt.service.BLUETOOTH_ON_AT_START_S, SPEC §6


def test_bluetooth_off_then_on_again_inside_the_start_window(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    answer = bms.run(c.command("bluetooth_off"))
    assert answer.startswith("Bluetooth off in ")  # "... in N s (it stays on for 30 s ...)"
    assert "30 s" in answer
    try:
        assert bms.run(c.get_setting("bluetooth")) is False
        assert bms.run(c.status()).voltage is not None  # still served during the window
    finally:
        assert bms.run(c.set_setting("bluetooth", "on")) == {"bluetooth": True}
    again = bms.cli("get", "bluetooth", "--json")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "true"
