"""`smallbms run --demo-speed N` and the demo's known SOC: bounded, refused for a real
battery, marked where a person looks (status line, logs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon_harness import RUN

from bms_daemon.config import parse
from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Outputs
from bms_daemon.daemon import build, status_line
from bms_daemon.sources.demo import check_demo_speed, demo_clock
from bms_daemon.store import FileStore


def test_demo_speed_is_bounded_by_what_one_control_step_may_cover() -> None:
    assert check_demo_speed(120, 2.0, "simulated") is None
    assert check_demo_speed(1, 2.0, "simulated") is None
    problem = check_demo_speed(121, 2.0, "simulated")
    assert problem == ("--demo-speed must be from 1 to 120 at [bms] rate_hz = 2 (one control "
                       "step covers at most 60 simulated seconds), not 121")
    assert check_demo_speed(600, 10.0, "simulated") is None
    assert check_demo_speed(0.5, 2.0, "simulated") is not None


def test_demo_speed_is_refused_for_any_real_source() -> None:
    problem = check_demo_speed(10, 2.0, "can")
    assert problem is not None
    assert "only with the simulated source" in problem


def test_demo_clock_runs_n_times_faster_from_now() -> None:
    now = [1000.0]
    clock = demo_clock(60.0, base=lambda: now[0])
    assert clock() == 1000.0
    now[0] += 2.0
    assert clock() == 1120.0


def test_status_line_says_demo() -> None:
    line = status_line(Bms().status, Outputs(load=True, charger=True), 120.0)
    assert line == "DEMO 120x real time, SOC unknown, load on, charger on"


def test_run_refuses_a_demo_speed_out_of_bounds_before_starting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-c", RUN, "--state-directory", str(state), "--demo-speed", "1000"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("smallbms: error: --demo-speed must be from 1 to 120")
    assert not state.exists()


def _config(tmp_path: Path) -> str:
    return (f'[bms]\nstate_directory = "{tmp_path}"\n[ble]\nenabled = false\n'
            '[source]\nsoc = 55.0\n')  # no type: the embedded demo bank, at 55 %


async def test_a_first_start_of_the_demo_knows_its_soc(tmp_path: Path) -> None:
    daemon = build(parse(_config(tmp_path)), tmp_path)
    assert daemon.tick().soc == 55.0


async def test_a_restart_keeps_the_saved_soc_not_the_simulated_one(tmp_path: Path) -> None:
    saved = Bms()
    saved.command("set_soc", 70.0, 0.0)
    FileStore(tmp_path).save("bms", saved.snapshot())
    daemon = build(parse(_config(tmp_path)), tmp_path)
    soc = daemon.tick().soc
    assert soc is not None
    assert abs(soc - 70.0) < 0.5


async def test_a_plain_simulated_bank_starts_with_soc_unknown(tmp_path: Path) -> None:
    config = parse(f'[bms]\nstate_directory = "{tmp_path}"\n[ble]\nenabled = false\n'
                   '[source]\ntype = "simulated"\n')
    assert build(config, tmp_path).tick().soc is None
