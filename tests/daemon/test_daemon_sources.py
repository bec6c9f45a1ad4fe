"""The real daemon against real sources, without hardware: a CAN BMS behind a serial CAN
adapter (python-can's slcan on both ends of a pseudo-terminal pair, across the process
boundary) and a VE.Direct shunt on a pseudo-terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess
from source_peripherals import Port, PtyLink, Sender, SlcanBms, vedirect_block

pytestmark = pytest.mark.slow

HEALTHY = {"voltage": 53.0, "current": -12.0, "temperature": 21.0, "min_cell_voltage": 3.30,
           "max_cell_voltage": 3.33, "min_cell_temperature": 20.0,
           "max_cell_temperature": 22.0, "soc": 80, "modules_online": 1}
PACK = 'battery = { name = "Test 16S", cells = 16, capacity_ah = 100 }\n'


def can_table(channel: Path, name: str = "source") -> str:
    return (f'[{name}]\ntype = "can"\ninterface = "slcan"\nchannel = "{channel}"\n'
            'bitrate = 500000\noptions = { sleep_after_open = 0 }\nmax_age = "1s"\n' + PACK)


def stopped(daemon: DaemonProcess) -> int:
    """SIGTERM and the exit status; on a timeout, the daemon's last lines say where it was."""
    try:
        return daemon.terminate()
    except subprocess.TimeoutExpired:
        while not daemon.lines.empty():
            line = daemon.lines.get_nowait()
            if line is not None:
                daemon.raw.append(line)
        raise AssertionError("the daemon did not stop within 30 s after SIGTERM; its last "
                             "lines:\n" + "".join(daemon.raw[-40:])) from None


def config(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "real.toml"
    path.write_text(
        f'[bms]\nstate_directory = "{tmp_path / "state"}"\nrate_hz = 10.0\n'
        '[ble]\nenabled = false\n'
        '[gpio]\nremote_file = "remote"\nremote_debounce_ms = 0.0\n'
        '[logging]\nformat = "json"\nlevel = "info"\n' + source
    )
    return path


class Bms:
    """A CAN BMS on its own end of the link, sending its burst five times a second."""

    def __init__(self, link: PtyLink) -> None:
        self.values = dict(HEALTHY)
        self.raw: dict[int, bytes] = {}  # flag frames, sent with each burst
        self.bus = SlcanBms(link.b.path)
        self.sender = Sender(self.burst)

    def burst(self) -> None:
        self.bus.send(self.values)
        for frame, data in list(self.raw.items()):
            self.bus.send_raw(frame, data)

    def stop(self) -> None:
        self.sender.stop()
        self.bus.close()


def test_can_bms_pre_alarm_under_voltage_then_silence_w_b05_a_b05(
    start_daemon: Any, tmp_path: Path
) -> None:
    link = PtyLink(tmp_path / "ttyCAN", tmp_path / "ttyBMS")
    bms = Bms(link)
    source = can_table(link.a.path) + 'comms_warning = "2s"\ncomms_alarm = "10s"\n'
    daemon: DaemonProcess = start_daemon(config(tmp_path, source))
    try:
        daemon.wait_log("source_connected")
        daemon.wait_log("outputs", load="high", charger="high", prealarm="floating")
        bms.values["min_cell_voltage"] = 2.79
        entry = daemon.wait_log("outputs", load="high", prealarm="high")
        assert entry["discharge_reason"] == "cell pre-alarm"
        bms.raw[0x359] = bytes([0x04, 0, 0, 0, 1, 0x50, 0x4E])  # the BMS's own alarm
        entry = daemon.wait_log("source_notes")
        assert entry["notes"] == ["protection: cell or module under-voltage"]
        assert daemon.outputs()["load"] is True  # shown, not obeyed
        bms.values["min_cell_voltage"] = 2.55  # in danger: LOAD floats at once
        daemon.wait_log("outputs", load="floating", prealarm="high")
        daemon.wait_log("code_raised", code="A-B01")
        bms.values["min_cell_voltage"] = 3.30
        bms.sender.stop()  # the BMS goes silent
        daemon.wait_log("code_raised", code="W-B05")
        daemon.wait_log("code_raised", code="A-B05")
        entry = daemon.wait_log("outputs", load="floating", charger="floating")
        assert daemon.outputs()["load"] is False
        assert daemon.outputs()["charger"] is False
        assert daemon.proc.poll() is None
    finally:
        bms.stop()
        link.unplug()
    assert stopped(daemon) == 0


def test_the_adapter_unplugged_and_plugged_back_in(start_daemon: Any, tmp_path: Path) -> None:
    a, b = tmp_path / "ttyCAN", tmp_path / "ttyBMS"
    link = PtyLink(a, b)
    bms = Bms(link)
    fast = can_table(a) + 'comms_warning = "2s"\ncomms_alarm = "10s"\n'
    daemon: DaemonProcess = start_daemon(config(tmp_path, fast))
    try:
        daemon.wait_log("outputs", load="high", charger="high")
        bms.stop()
        link.unplug()  # the USB adapter is gone: reads fail, the path disappears
        daemon.wait_log("source_unavailable")
        daemon.wait_log("code_raised", code="A-B05", timeout=60)
        assert daemon.outputs()["load"] is False
        link = PtyLink(a, b)  # plugged back in (a new tty behind the same path)
        bms = Bms(link)
        daemon.wait_log("source_connected", timeout=60)
        daemon.wait_log("code_cleared", code="A-B05", timeout=60)
        daemon.wait_log("outputs", load="high", charger="high")
    finally:
        bms.stop()
        link.unplug()
    unavailable = [e for e in daemon.log if e.get("event") == "source_unavailable"]
    assert len({e["problem"] for e in unavailable}) == len(unavailable)  # each said once
    assert stopped(daemon) == 0


def test_combined_can_cells_and_vedirect_current_shunt_garbage_and_silence(
    start_daemon: Any, tmp_path: Path
) -> None:
    link = PtyLink(tmp_path / "ttyCAN", tmp_path / "ttyBMS")
    bms = Bms(link)
    shunt = Port(tmp_path / "ttyShunt")
    good = vedirect_block([("PID", "0xA389"), ("V", "53010"), ("I", "-48200"),
                           ("CE", "-21000"), ("SOC", "790"), ("Alarm", "OFF"), ("AR", "0")])
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    feeds = (
        '[source]\ntype = "combined"\ncells = "bms"\ncurrent = "shunt"\nvoltage = "shunt"\n'
        'comms_warning = "2s"\ncomms_alarm = "10s"\n'
        + can_table(link.a.path, "source.bms")
        + f'[source.shunt]\ntype = "vedirect"\ndevice = "{shunt.path}"\nmax_age = "1s"\n'
    )
    stream = {"data": good}
    sender = Sender(lambda: shunt.write(stream["data"]))
    daemon: DaemonProcess = start_daemon(config(tmp_path, feeds))
    try:
        daemon.wait_log("outputs", load="high", charger="high")
        stream["data"] = bytes(bad) * 3 + b"\xff\x00garbage\r\n\t\t:" * 20
        daemon.wait_log("source_input_dropped", reason="bad checksum")
        daemon.wait_log("code_raised", code="W-B05")  # cells still come; the current does not
        daemon.wait_log("code_raised", code="A-B05")
        assert daemon.outputs()["load"] is False
        stream["data"] = good
        daemon.wait_log("code_cleared", code="A-B05")
        daemon.wait_log("outputs", load="high", charger="high")
    finally:
        sender.stop()
        bms.stop()
        shunt.unplug()
        link.unplug()
    drops = [e for e in daemon.log if e.get("event") == "source_input_dropped"]
    assert len(drops) == len({e["reason"] for e in drops})  # once per kind, then counted
    assert stopped(daemon) == 0


def test_source_check_shows_what_the_bms_would_see(tmp_path: Path) -> None:
    link = PtyLink(tmp_path / "ttyCAN", tmp_path / "ttyBMS")
    bms = Bms(link)
    bms.values["min_cell_voltage"] = 3.101
    shunt = Port(tmp_path / "ttyShunt")
    good = vedirect_block([("V", "53010"), ("I", "-48200"), ("SOC", "790"), ("Alarm", "ON"),
                           ("AR", "1")])
    sender = Sender(lambda: shunt.write(good + good[:-1] + b"\x00"))  # one good, one bad
    feeds = (
        '[source]\ntype = "combined"\ncells = "bms"\ncurrent = "shunt"\n'
        + can_table(link.a.path, "source.bms")
        + f'[source.shunt]\ntype = "vedirect"\ndevice = "{shunt.path}"\n'
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bms_daemon.cli", "source-check", "-c",
             str(config(tmp_path, feeds)), "--seconds", "4", "--json"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        sender.stop()
        bms.stop()
        shunt.unplug()
        link.unplug()
    assert done.returncode == 0, done.stdout + done.stderr
    last = json.loads(done.stdout.strip().splitlines()[-1])
    readings = last["readings"]
    assert readings["bank_current"] == -48.2  # from the shunt, not the BMS's -12 A
    assert readings["batteries"][0]["lowest_cell"] == 3.101
    assert "shunt alarm: low voltage" in readings["notes"]
    assert last["feeds"]["shunt"]["dropped"]["bad checksum"] >= 1
    assert "373" in last["feeds"]["bms"]["can_frames"]
    assert not (tmp_path / "state").exists()  # no state touched, no output driven


def test_source_check_of_a_bms_that_is_not_there_exits_1(tmp_path: Path) -> None:
    source = can_table(tmp_path / "no-such-adapter")
    done = subprocess.run(
        [sys.executable, "-m", "bms_daemon.cli", "source-check", "-c",
         str(config(tmp_path, source)), "--seconds", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1
    assert "NOT CONNECTED" in done.stdout
    assert "NO FRESH READINGS" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
