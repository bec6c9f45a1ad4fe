"""More of `smallbms run` as a process: watchdog, STATUS, SIGKILL + float-outputs, E-B11, BLE."""

from __future__ import annotations

import argparse
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import write_config

from bms_daemon import floatcmd

TERMINALS = ("load", "charger", "prealarm")


def test_watchdog_is_pinged_from_the_control_loop(start_daemon: Any) -> None:
    daemon = start_daemon(env={"WATCHDOG_USEC": "400000"})  # 0.4 s: ping every 0.2 s
    daemon.wait_notify("READY=1")
    for _ in range(3):
        assert "WATCHDOG=1" in daemon.wait_notify("WATCHDOG=1")
    assert daemon.terminate() == 0


def test_status_tells_soc_and_outputs(start_daemon: Any) -> None:
    daemon = start_daemon()
    message = daemon.wait_notify("READY=1")
    status = next(line for line in message.splitlines() if line.startswith("STATUS="))
    # the embedded demo bank starts at a known 22 % (docs/simulated-source.md)
    assert status.startswith("STATUS=SOC 22%, load ")
    assert "charger " in status
    assert daemon.terminate() == 0
    assert "STOPPING=1" in daemon.wait_notify("STOPPING=1")


def test_after_sigkill_float_outputs_releases_what_the_daemon_left(
    start_daemon: Any, tmp_path: Path, daemon_config: Path
) -> None:
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    daemon.wait_log("outputs", load="high")
    assert daemon.terminate(signum=signal.SIGKILL) == -signal.SIGKILL
    assert daemon.outputs()["load"] is True  # what a kernel that keeps outputs would show
    parser = argparse.ArgumentParser()
    floatcmd.configure(parser)
    assert floatcmd.main(parser.parse_args(["--config", str(daemon_config)])) == 0
    assert not any(daemon.outputs()[name] for name in TERMINALS)


def test_gpio_lines_that_cannot_be_had_give_e_b11_not_a_crash(
    start_daemon: Any, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "gpiod.toml", tmp_path / "state",
        f'[ble]\nenabled = false\n[gpio]\nbackend = "gpiod"\nchip = "{tmp_path}/gpiochip9"\n',
    )
    daemon = start_daemon(config)
    daemon.wait_notify("READY=1")
    assert "cannot request GPIO lines" in daemon.wait_log("hardware_error")["problem"]
    daemon.wait_log("code_raised", code="E-B11")
    entry = daemon.wait_log("outputs")
    assert (entry["load"], entry["charger"]) == ("floating", "floating")
    assert daemon.terminate() == 0


@pytest.mark.ble
@pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon")
def test_virtual_bluez_is_started_when_asked_and_stopped_on_exit(
    start_daemon: Any, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "ble.toml", tmp_path / "state", '[ble]\nvirtual = "on"\n')
    daemon = start_daemon(config)
    daemon.wait_notify("READY=1")
    started = daemon.wait_log("virtual_bluez_started")
    assert started["address"].startswith("unix:")
    assert daemon.terminate() == 0
    events = [entry["event"] for entry in daemon.log]
    assert "virtual_bluez_stopped" in events
    assert events.index("stopping") < events.index("virtual_bluez_stopped")


def test_an_unusable_state_directory_does_not_stop_protection(
    start_daemon: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    config = write_config(tmp_path / "ro.toml", blocker / "state", "[ble]\nenabled = false\n")
    daemon = start_daemon(config)
    daemon.wait_notify("READY=1")
    entry = daemon.wait_log("state_directory_unusable")
    assert "cannot create it" in entry["problem"]
    daemon.wait_log("outputs")
    assert daemon.terminate() == 0
    events = [e["event"] for e in daemon.log]
    assert "state_save_failed" in events
    assert "state_not_saved_on_exit" in events
    assert "state_saved" not in events


def test_sighup_is_a_clean_stop_too(start_daemon: Any) -> None:
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    assert daemon.terminate(signum=signal.SIGHUP) == 0
    assert not any(daemon.outputs()[name] for name in TERMINALS)
    assert "state_saved" in [entry["event"] for entry in daemon.log]


def test_a_stored_charged_voltage_the_bank_does_not_allow_is_logged_not_silently_replaced(
    start_daemon: Any, tmp_path: Path
) -> None:
    """28.4 V fits a 24 V bank, so check-config takes it; the simulated bank is 12 V."""
    config = write_config(
        tmp_path / "cv.toml", tmp_path / "state",
        "[ble]\nenabled = false\n[settings]\ncharged_voltage = 28.4\n",
    )
    daemon = start_daemon(config)
    daemon.wait_notify("READY=1")
    entry = daemon.wait_log("setting_not_used")
    assert entry["problem"].startswith("charged_voltage 28.4 V does not fit this bank of 4 cells")
    assert entry["level"] == "warning"
    assert daemon.terminate() == 0
