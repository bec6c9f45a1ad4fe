"""`smallbms run` as a process: READY, outputs, SIGTERM, restart, corrupt state, bad config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from daemon_harness import RUN

from bms_daemon.core.bms import Bms
from bms_daemon.store import FileStore

TERMINALS = ("load", "charger", "prealarm")


def test_ready_then_sigterm_floats_outputs_and_saves(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    message = daemon.wait_notify("READY=1")
    assert "STATUS=SOC " in message
    verdict = daemon.wait_log("ready")
    outputs = daemon.wait_log("outputs")
    assert outputs["load"] in ("high", "floating")
    assert daemon.log.index(outputs) < daemon.log.index(verdict)  # READY after the verdict
    assert daemon.terminate() == 0
    assert not any(daemon.outputs()[name] for name in TERMINALS)
    events = [entry["event"] for entry in daemon.log]
    assert events.index("stopping") < events.index("state_saved")
    assert (tmp_path / "state" / "bms.json").exists()


def test_remote_off_floats_load_and_charger(start_daemon: Any, tmp_path: Path) -> None:
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    (tmp_path / "state" / "remote").write_text("off")
    daemon.wait_log("remote", remote="off")
    entry = daemon.wait_log("outputs", load="floating", charger="floating")
    assert entry["discharge_reason"] == "remote off"
    assert daemon.outputs()["load"] is False
    assert daemon.outputs()["remote"] is False
    assert daemon.terminate() == 0


def test_restart_restores_soc_and_history(start_daemon: Any, tmp_path: Path) -> None:
    core = Bms()
    core.command("set_soc", 55.0)
    seeded = core.snapshot()
    seeded["history"].update(charge_cycles=7, synchronisations=3, deepest_discharge_ah=61.5)
    FileStore(tmp_path / "state").save("bms", seeded)

    first = start_daemon()
    restored = first.wait_log("state_restored")
    assert restored["soc"] == "55.0%"
    assert first.terminate() == 0
    saved = FileStore(tmp_path / "state").load("bms")
    assert saved is not None
    assert Bms(saved=saved).status.soc is not None
    assert abs(Bms(saved=saved).status.soc - 55.0) < 1.0  # type: ignore[operator]
    history = Bms(saved=saved).history()
    assert (history.charge_cycles, history.synchronisations) == (7, 3)
    assert history.deepest_discharge_ah >= 61.5

    second = start_daemon()
    assert second.wait_log("state_restored")["soc"].endswith("%")
    assert second.terminate() == 0


def test_corrupt_state_starts_with_soc_unknown_and_keeps_the_file(
    start_daemon: Any, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "bms.json").write_text('{"version": 1, "soc": {"val')
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    corrupt = daemon.wait_log("state_corrupt")
    assert corrupt["kept_aside"].startswith(str(state / "bms.json.corrupt-"))
    # an old-format file held the settings and the PIN too: their loss is loud, never the
    # factory PIN in silence
    assert "reset-pin" in daemon.wait_log("pin_state_lost")["action"]
    assert Path(corrupt["kept_aside"]).read_text() == '{"version": 1, "soc": {"val'
    assert daemon.terminate() == 0
    assert not (state / "settings.json").exists()


def test_a_snapshot_the_core_rejects_is_kept_aside_too(start_daemon: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "bms.json").write_text(json.dumps({"version": 999}))
    daemon = start_daemon()
    daemon.wait_notify("READY=1")
    assert "unsupported version 999" in daemon.wait_log("state_corrupt")["problem"]
    assert daemon.terminate() == 0
    assert list(state.glob("bms.json.corrupt-*"))


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_bad_config_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[bms]\nrate_hz = 0\n")
    result = _run(["--config", str(path)])
    assert result.returncode == 2
    assert result.stderr == (
        f"smallbms: error: {path}: [bms] rate_hz: 0 Hz is out of range 0.2-20 Hz\n"
    )
    assert not (tmp_path / "state").exists()


def test_bad_source_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[bms]\nstate_directory = "{tmp_path}/s"\n[source]\ntype = "canbus"\n'
                    '[logging]\nformat = "json"\n')
    result = _run(["--config", str(path)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"smallbms: error: {path}: [source] type: unknown source type 'canbus'" in result.stderr
