"""Every control-point command over BLE, with its result indicated back.

set SOC, synchronise, Mode on/off, reset history, factory reset, change PIN, read the
instant-readout key, confirm the bank; plus what a malformed command gets.  (Bluetooth off has
its own module: it must run inside the daemon's first 30 s.)
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from ble_harness import CENTRAL, PIN, SECOND_CENTRAL, DaemonUnderTest, running_daemon, until

from bms_daemon.store import FileStore
from gatt import codec
from gatt.client import RejectedValue, SmallBmsClient, WrongPin, scan
from gatt.readout_keys import read_key

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"soc": 70.0, "load": 60.0, "current_noise": 0.0}


async def soc_is(c: SmallBmsClient, target: float) -> bool:
    status = await c.status()
    return status.soc is not None and abs(status.soc - target) < 0.2


def test_set_soc(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    answer = bms.run(c.command("set_soc", 42))
    assert "42" in answer
    bms.run(until(lambda: soc_is(c, 42), within=10, what="SOC 42 %"))
    with pytest.raises(RejectedValue, match="0-100"):
        bms.run(c.command("set_soc", 150))


def test_set_soc_out_of_range_on_the_wire_is_rejected_by_the_device(bms: DaemonUnderTest) -> None:
    """The client refuses 150 % itself; a raw command proves the device checks too."""
    c = bms.shared()
    before = bms.run(c.status()).soc
    result = bms.run(c.command_result(bytes([codec.OP_SET_SOC]) + struct.pack("<H", 15000)))
    assert result.result == codec.RESULT_REJECTED
    assert "out of range" in result.message
    after = bms.run(c.status()).soc
    assert (before is None) == (after is None)


def test_synchronise(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    bms.run(c.command("set_soc", 50))
    bms.run(until(lambda: soc_is(c, 50), within=10, what="SOC 50 %"))
    assert "100" in bms.run(c.command("synchronise"))
    bms.run(until(lambda: soc_is(c, 100), within=10, what="SOC 100 %"))
    status = bms.run(c.status())
    assert status.soc_synchronised
    assert status.consumed_ah is not None
    assert status.consumed_ah < 0.5


def test_reset_history(bms: DaemonUnderTest) -> None:
    c = bms.shared()

    async def drawn() -> bool:
        return (await c.history()).cumulative_ah_drawn >= 0.1

    # the 60 A load draws the 0.1 Ah the history characteristic resolves in 6 s
    bms.run(until(drawn, within=20, what="0.1 Ah drawn"))
    assert "history" in bms.run(c.command("reset_history")).lower()
    after = bms.run(c.history())
    assert after.cumulative_ah_drawn < 0.1
    assert after.synchronisations == 0
    assert after.charge_cycles == 0


def test_confirm_bank_over_ble(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    answer = bms.run(c.command("confirm_bank"))
    assert answer.startswith("bank confirmed: 1 batteries")


def test_mode_off_and_on(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    try:
        assert "off" in bms.run(c.command("mode", "off")).lower()

        async def floating() -> bool:
            s = await c.status()
            return not s.mode and not s.allowed_to_charge and not s.allowed_to_discharge

        bms.run(until(floating, within=10, what="Mode off floats both outputs"))
    finally:
        bms.run(c.command("mode", "on"))

    async def back() -> bool:
        s = await c.status()
        return s.mode and s.allowed_to_charge and s.allowed_to_discharge

    bms.run(until(back, within=10, what="Mode on drives both outputs again"))
    with pytest.raises(RejectedValue, match="on or off"):
        bms.run(c.command("mode", "sideways"))


def test_factory_reset_restores_settings_and_keeps_the_pin(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    defaults = bms.run(c.settings())
    bms.run(c.set_setting("tail_current", 7))
    bms.run(c.set_setting("discharge_floor", 5))
    assert bms.run(c.settings()) != defaults
    bms.run(c.command("factory_reset"))
    assert bms.run(c.settings()) == defaults
    with bms.session() as again:  # the PIN survived
        assert bms.run(again.settings()) == defaults


def test_change_pin_rotates_the_readout_key(tmp_path: Path) -> None:
    # a daemon of its own: the old PIN tried after the change spends the wrong-PIN budget
    with running_daemon(tmp_path) as bms:
        new_pin = "246810"
        with bms.session() as c:
            old_key = bms.run(c.readout_key())
            answer = bms.run(c.command("change_pin", new_pin))
            assert "PIN changed" in answer
            new_key = bms.run(c.readout_key())  # the client re-authenticates with the new PIN
        assert new_key != old_key
        assert new_key[0] != old_key[0]  # decoders notice a stale key by its first byte
        assert new_key == read_key(FileStore(bms.state_dir))
        with bms.session(pin=PIN, adapter=SECOND_CENTRAL) as old, pytest.raises(WrongPin):
            bms.run(old.status())
        with bms.session(pin=new_pin) as c:
            assert bms.run(c.status()).voltage is not None


def test_change_pin_refuses_a_malformed_pin(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    for bad in ("12345", "abcdef", ""):
        with pytest.raises(RejectedValue, match="6 digits"):
            bms.run(c.command("change_pin", bad))
    assert bms.run(c.status()).voltage is not None  # the PIN did not change


def test_key_decodes_the_advertised_readout(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    key = bms.run(c.readout_key())
    bms.run(c.command("set_soc", 64))
    bms.run(until(lambda: soc_is(c, 64), within=10, what="SOC 64 %"))

    async def readout_soc() -> float | None:
        found = await scan(duration=0.5, adapter=CENTRAL, key=key)
        ours = [r for r in found if r.address == bms.address and r.readout is not None]
        soc = ours[0].readout["soc"] if ours else None  # type: ignore[index]
        return soc if soc is not None and abs(soc - 64) < 0.5 else None

    assert bms.run(until(readout_soc, within=10, what="readout shows SOC 64 %"))


def test_unknown_and_malformed_commands_are_refused(bms: DaemonUnderTest) -> None:
    c = bms.shared()
    for body, reason in ((b"\x7f", "unknown command"),
                         (bytes([codec.OP_SET_SOC, 1]), "wrong number of bytes"),
                         (b"", "wrong number of bytes")):
        with pytest.raises(RejectedValue, match=reason):
            bms.run(c.write_protected("control_point", body))
    assert bms.run(c.status()).voltage is not None


def test_cli_command_and_key(bms: DaemonUnderTest) -> None:
    ok = bms.cli("command", "set_soc", "77")
    assert ok.returncode == 0, ok.stderr
    assert "77" in ok.stdout
    refused = bms.cli("command", "set_soc", "140")
    assert refused.returncode == 5
    assert "0-100" in refused.stderr
    key = bms.cli("key", "--json")
    assert key.returncode == 0, key.stderr
    stored = read_key(FileStore(bms.state_dir))
    assert stored is not None
    assert json.loads(key.stdout) == {"key": stored.hex()}
    usage = bms.cli("command", "explode")
    assert usage.returncode == 2
    assert "invalid choice" in usage.stderr
