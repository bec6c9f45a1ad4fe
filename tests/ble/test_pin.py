"""The PIN: wrong PINs refused, rate-limited, never on the bus (and so never on the air) in clear.

The daemon starts with PIN 482913 (a seed setting) so that the eavesdropping test can look for
those digits in everything that crosses the bus.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from ble_harness import DaemonUnderTest, running_daemon, until

from gatt.client import NotAuthenticated, WrongPin
from gatt.security import FREE_ATTEMPTS

pytestmark = pytest.mark.ble

PIN = "482913"
DAEMON_SETTINGS = {"pin": PIN}


def test_wrong_pin_is_refused_and_the_right_one_still_works(bms: DaemonUnderTest) -> None:
    with bms.session(pin="000000") as c, pytest.raises(WrongPin, match="wrong PIN"):
        bms.run(c.status())
    with bms.session(pin=PIN) as c:
        assert bms.run(c.status()).voltage is not None


def test_cli_wrong_and_missing_pin(bms: DaemonUnderTest) -> None:
    wrong = bms.cli("status", pin="111111")
    assert wrong.returncode == 4
    assert wrong.stderr == "smallbms-client: wrong PIN for smallBMS NG\n"
    missing = bms.cli("status", pin=None)
    assert missing.returncode == 4
    assert "PIN" in missing.stderr
    assert "SMALLBMS_PIN" in missing.stderr
    right = bms.cli("status", "--json", pin=PIN)  # also clears the wrong-PIN count
    assert right.returncode == 0, right.stderr


def test_no_pin_client_is_told_what_to_do(bms: DaemonUnderTest) -> None:
    with bms.session(pin=None) as c, pytest.raises(NotAuthenticated, match="--pin"):
        bms.run(c.set_setting("mode", "off"))


@pytest.mark.skipif(shutil.which("dbus-monitor") is None, reason="needs dbus-monitor")
def test_pin_never_crosses_the_bus_in_clear(bms: DaemonUnderTest, tmp_path: Path) -> None:
    """Eavesdrop on everything on the bus (what BlueZ would put on the air) while a client
    authenticates and changes the PIN; neither PIN's digits may appear."""
    new_pin = "917364"
    capture = tmp_path / "bus.bin"
    with capture.open("wb") as out:
        monitor = subprocess.Popen(["dbus-monitor", "--address", bms.bus.address, "--binary"],
                                   stdout=out, stderr=subprocess.DEVNULL)
    try:

        async def monitoring() -> bool:
            await bms.bus.bluez_owner()  # a GetNameOwner call the monitor must see
            return b"GetNameOwner" in capture.read_bytes()

        bms.run(until(monitoring, within=10, what="dbus-monitor capturing"))
        with bms.session(pin=PIN) as c:
            bms.run(c.command("change_pin", new_pin))
            bms.run(c.status())  # re-authenticates with the new PIN
            bms.run(c.command("change_pin", PIN))
            bms.run(c.status())
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    seen = capture.read_bytes()
    assert b"WriteValue" in seen  # the writes were captured...
    assert PIN.encode() not in seen  # ...and held neither PIN
    assert new_pin.encode() not in seen


def test_wrong_pins_lock_out_even_the_right_one(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as bms:
        with bms.session(pin="999999") as c:
            for _ in range(FREE_ATTEMPTS):
                with pytest.raises(WrongPin, match="wrong PIN"):
                    bms.run(c.authenticate())
            with pytest.raises(WrongPin, match="too many wrong ones"):
                bms.run(c.authenticate("000000"))  # the daemon's real PIN
        with bms.session(pin="000000") as c, pytest.raises(WrongPin, match="too many"):
            bms.run(c.status())
        bms.assert_alive()
