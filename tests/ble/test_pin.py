"""The PIN: wrong PINs refused, rate-limited, never on the bus (and so never on the air) in clear.

The daemon starts with PIN 482913 (a seed setting) so that the eavesdropping test can look for
those digits in everything that crosses the bus.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from ble_harness import (
    SECOND_CENTRAL,
    SHARED_CENTRAL,
    THIRD_CENTRAL,
    DaemonUnderTest,
    running_daemon,
    until,
)

from gatt.client import NotAuthenticated, WrongPin
from gatt.security import FREE_ATTEMPTS

pytestmark = pytest.mark.ble

PIN = "482913"
DAEMON_SETTINGS = {"pin": PIN}


# Wrong PINs spend the daemon's global budget (gatt/security.py Lockout) for five minutes, so
# the tests that send one have a daemon of their own (``fresh``), never the module's.


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[DaemonUnderTest]:
    with running_daemon(tmp_path, settings=DAEMON_SETTINGS) as daemon:
        yield daemon


def test_wrong_pin_is_refused_and_the_right_one_still_works(fresh: DaemonUnderTest) -> None:
    with fresh.session(pin="000000") as c, pytest.raises(WrongPin, match="wrong PIN"):
        fresh.run(c.status())
    # another central at once; the one that failed waits FIRST_LOCKOUT_S
    with fresh.session(pin=PIN, adapter=SECOND_CENTRAL) as c:
        assert fresh.run(c.status()).voltage is not None


def test_cli_wrong_and_missing_pin(fresh: DaemonUnderTest) -> None:
    wrong = fresh.cli("status", pin="111111")
    assert wrong.returncode == 4
    assert wrong.stderr == "smallbms-client: wrong PIN for smallBMS NG\n"
    missing = fresh.cli("status", pin=None, adapter=SECOND_CENTRAL)
    assert missing.returncode == 4
    assert "PIN" in missing.stderr
    assert "SMALLBMS_PIN" in missing.stderr
    right = fresh.cli("status", "--json", pin=PIN, adapter=SECOND_CENTRAL)
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


def test_wrong_pins_lock_out_even_the_right_one(fresh: DaemonUnderTest) -> None:
    with fresh.session(pin="999999") as c:
        with pytest.raises(WrongPin, match="wrong PIN"):
            fresh.run(c.authenticate())
        # the same central at once: refused, even with the right PIN, and told why
        with pytest.raises(WrongPin, match=r"refuses PINs for a while .* 5 s"):
            fresh.run(c.authenticate(PIN))
    # three wrong PINs from any centrals spend the global budget: then everyone waits
    for adapter in (SECOND_CENTRAL, SHARED_CENTRAL):
        with fresh.session(pin="999999", adapter=adapter) as c, \
                pytest.raises(WrongPin, match="wrong PIN"):
            fresh.run(c.authenticate())
    assert FREE_ATTEMPTS == 3
    with fresh.session(pin=PIN, adapter=THIRD_CENTRAL) as c, \
            pytest.raises(WrongPin, match="refuses PINs"):
        fresh.run(c.status())
    fresh.assert_alive()
