"""One writer per state directory: a second daemon, or float-outputs or reset-pin under a
running daemon, refuses with a message naming the holder, and touches nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import RUN

from bms_daemon.state.lock import LOCK_NAME, StateDirectoryBusyError, StateLock

FLOAT = (
    "import argparse, sys\n"
    "from bms_daemon import floatcmd\n"
    "parser = argparse.ArgumentParser()\n"
    "floatcmd.configure(parser)\n"
    "sys.exit(floatcmd.main(parser.parse_args(sys.argv[1:])))\n"
)


RESET_PIN = FLOAT.replace("bms_daemon import floatcmd", "bms_daemon.state import resetpin").replace(
    "floatcmd.", "resetpin."
)


def _run(code: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "STATE_DIRECTORY")}
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )


def test_a_second_lock_on_the_same_directory_is_refused_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    first = StateLock(tmp_path)
    first.acquire("smallbms run")
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"{os.getpid()} smallbms run")
    with pytest.raises(StateDirectoryBusyError, match=rf"pid {os.getpid()}: smallbms run"):
        StateLock(tmp_path).acquire()
    first.release()
    with StateLock(tmp_path) as again:
        assert again.held
    assert (tmp_path / LOCK_NAME).exists()  # never removed: removing a lock file races


def test_a_second_daemon_on_the_same_state_directory_refuses_and_writes_nothing(
    start_daemon: Any, tmp_path: Path, daemon_config: Path
) -> None:
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    state = tmp_path / "state"
    deadline = time.monotonic() + 60
    while not (state / "bms.json").exists():  # the first daemon's first save
        assert time.monotonic() < deadline, "the first daemon never saved its state"
        time.sleep(0.05)
    before = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    second = _run(RUN, daemon_config)
    assert second.returncode == 3
    assert "Traceback" not in second.stderr
    assert (
        f"smallbms: error: state directory {state} is in use by another smallbms "
        f"(pid {daemon.proc.pid}: smallbms run)"
    ) in second.stderr
    assert "Stop the other one first" in second.stderr
    assert '"state_fresh"' not in second.stderr  # it stopped before reading the state
    assert '"ready"' not in second.stderr
    after = {p.name: p.read_bytes() for p in state.iterdir() if p.is_file()}
    assert set(after) == set(before)
    assert after[LOCK_NAME] == before[LOCK_NAME]
    # float-outputs refuses too while the daemon runs: the outputs are the daemon's
    floated = _run(FLOAT, daemon_config)
    assert floated.returncode == 1
    assert "in use by another smallbms" in floated.stderr
    # and so does reset-pin: the daemon would overwrite the settings it writes
    reset = _run(RESET_PIN, daemon_config, "--pin", "246810")
    assert reset.returncode == 1
    assert "in use by another smallbms" in reset.stderr
    assert daemon.proc.poll() is None  # the first daemon carries on
    assert daemon.terminate() == 0
    # once it has stopped, both work again
    assert _run(FLOAT, daemon_config).returncode == 0
