"""Every setting written over BLE: valid, out of range, wrong length, wrong PIN, no PIN.

A refused write must change nothing and say why (the BMS's own words come back as an
indication on the control point).  Every test restores what it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from ble_harness import CENTRAL, SECOND_CENTRAL, DaemonUnderTest, running_daemon, until

from gatt import codec
from gatt.client import NotAuthenticated, RejectedValue, SmallBmsClient, WrongPin, scan

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"soc": 70.0, "load": 5.0, "current_noise": 0.0}

# a value the BMS accepts, different from the default, for each setting (1 battery, 4 cells)
VALID = {
    "charged_voltage": 14.2,
    "tail_current": 2.5,
    "charge_detection_time": 10.0,
    "low_soc_warning": 30.0,
    "discharge_floor": 15.0,
    "instant_readout": False,
    "mode": False,
}
# out of range or inconsistent, and a word the reason must contain
INVALID = {
    "charged_voltage": (16.0, "charged_voltage"),
    "tail_current": (20.0, "out of range"),
    "charge_detection_time": (60.0, "out of range"),
    "low_soc_warning": (5.0, "discharge floor"),  # below the discharge floor (10 %)
    "discharge_floor": (50.0, "low_soc_warning"),  # above the low-SOC warning (20 %)
}


@contextlib.contextmanager
def restored(bms: DaemonUnderTest, c: SmallBmsClient) -> Iterator[dict[str, object]]:
    before = bms.run(c.settings())
    try:
        yield before
    finally:
        now = bms.run(c.settings())
        # the warning first when raising the floor back is never needed: restore in an order
        # that keeps low_soc_warning >= discharge_floor at every step
        for name in sorted(before, key=lambda n: n != "low_soc_warning"):
            if now[name] != before[name]:
                bms.run(c.set_setting(name, before[name]))
        assert bms.run(c.settings()) == before


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_value_is_stored(bms: DaemonUnderTest, name: str) -> None:
    with restored(bms, c := bms.shared()) as before:
        assert before[name] != VALID[name]
        assert bms.run(c.set_setting(name, VALID[name])) == {name: VALID[name]}
        after = bms.run(c.settings())
        assert after == {**before, name: VALID[name]}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_out_of_range_is_refused_with_the_reason(bms: DaemonUnderTest, name: str) -> None:
    value, word = INVALID[name]
    with restored(bms, c := bms.shared()) as before:
        with pytest.raises(RejectedValue) as refused:
            bms.run(c.set_setting(name, value))
        assert word in refused.value.reason
        assert str(refused.value).startswith(f"{name} = {value}: ")
        assert bms.run(c.settings()) == before


@pytest.mark.parametrize("name", sorted(codec.SETTING_CODECS))
def test_wrong_length_is_refused_and_changes_nothing(bms: DaemonUnderTest, name: str) -> None:
    size = codec.SETTING_CODECS[name].size
    with restored(bms, c := bms.shared()) as before:
        for body in (b"", bytes(size + 1), bytes(size + 7)):
            with pytest.raises(RejectedValue, match="wrong number of bytes"):
                bms.run(c.write_protected(f"setting.{name}", body))
        assert bms.run(c.settings()) == before


def test_boolean_setting_refuses_values_other_than_0_and_1(bms: DaemonUnderTest) -> None:
    with restored(bms, c := bms.shared()) as before:
        with pytest.raises(RejectedValue):
            bms.run(c.write_protected("setting.mode", b"\x02"))
        assert bms.run(c.settings()) == before


def test_wrong_pin_changes_nothing(tmp_path: Path) -> None:
    # a daemon of its own: a wrong PIN spends the global budget for five minutes
    with running_daemon(tmp_path) as bms:
        with bms.session() as good:
            before = bms.run(good.settings())
        with bms.session(pin="123456") as bad, pytest.raises(WrongPin, match="wrong PIN"):
            bms.run(bad.set_setting("discharge_floor", 15))
        with bms.session(adapter=SECOND_CENTRAL) as good:
            assert bms.run(good.settings()) == before


def test_no_pin_changes_nothing(bms: DaemonUnderTest) -> None:
    with bms.session() as good:
        before = bms.run(good.settings())
    with bms.session(pin=None) as anonymous:
        with pytest.raises(NotAuthenticated, match="PIN"):
            bms.run(anonymous.set_setting("discharge_floor", 15))
        # a write without the session envelope, as an app that skipped the PIN would send
        for body in (codec.SETTING_CODECS["discharge_floor"].encode(15.0), bytes(14)):
            with pytest.raises(NotAuthenticated):
                bms.run(anonymous.write_raw("setting.discharge_floor", body))
    with bms.session() as good:
        assert bms.run(good.settings()) == before


def test_mode_off_floats_both_outputs(bms: DaemonUnderTest) -> None:
    async def outputs(c: SmallBmsClient) -> object:
        s = await c.status()
        return None if s.allowed_to_discharge or s.allowed_to_charge else s

    with restored(bms, c := bms.shared()):
        bms.run(c.set_setting("mode", "off"))
        status = bms.run(until(lambda: outputs(c), within=10, what="both outputs floating"))
        assert status.mode is False
        assert status.discharge_reason is not None
        assert status.discharge_reason.value == "mode off"


def test_instant_readout_off_removes_it_from_the_advertisement(bms: DaemonUnderTest) -> None:
    async def readout_gone() -> bool:
        found = await scan(duration=0.5, adapter=CENTRAL)
        ours = [r for r in found if r.address == bms.address]
        return bool(ours) and ours[0].readout_note is not None and "none" in ours[0].readout_note

    with restored(bms, c := bms.shared()):
        bms.run(c.set_setting("instant_readout", "off"))
        bms.run(until(readout_gone, within=10, what="readout gone from the advertisement"))


def test_cli_set_and_refusal(bms: DaemonUnderTest) -> None:
    ok = bms.cli("set", "discharge_floor", "12")
    try:
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout.strip() == "discharge_floor = 12 %"
        refused = bms.cli("set", "tail_current", "25")
        assert refused.returncode == 5
        assert refused.stderr.strip() == (
            "smallbms-client: tail_current = 25: tail_current 25% is out of range 0.5-10%"
        )
        unknown = bms.cli("set", "colour", "blue")
        assert unknown.returncode == 5
        assert "unknown setting 'colour'" in unknown.stderr
    finally:
        back = bms.cli("set", "discharge_floor", "10")
        assert back.returncode == 0, back.stderr


def test_a_setting_acknowledged_over_ble_survives_a_kill_right_after(tmp_path: Path) -> None:
    """Finding 4 end to end (tests/daemon/test_durable_ack.py does hundreds of rounds below
    the D-Bus layer): SIGKILL 0, 0.3 and 0.8 s after the acknowledgement, then a restart."""
    for round_, (delay, floor) in enumerate(((0.0, 11), (0.3, 12), (0.8, 13))):
        with running_daemon(tmp_path) as bms:
            if round_:
                with bms.session() as c:
                    assert bms.run(c.get_setting("discharge_floor")) == floor - 1
            with bms.session() as c:
                bms.run(c.set_setting("discharge_floor", floor))  # returns on the ACK

                async def kill_after(seconds: float = delay) -> None:
                    await asyncio.sleep(seconds)
                    os.kill(bms.proc.pid, signal.SIGKILL)
                    await bms.proc.wait()

                bms.run(kill_after())
    with running_daemon(tmp_path) as bms, bms.session() as c:
        assert bms.run(c.get_setting("discharge_floor")) == 13
