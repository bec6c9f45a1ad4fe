"""Fixtures for the daemon tests: a test config and daemon processes cleaned up after use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonProcess


@pytest.fixture
def daemon_config(tmp_path: Path) -> Path:
    """A config for tests: temporary state, no BLE, JSON logs, fast loop."""
    state = tmp_path / "state"
    path = tmp_path / "smallbms.toml"
    path.write_text(
        f'[bms]\nstate_directory = "{state}"\nrate_hz = 10.0\n'
        '[ble]\nenabled = false\n'
        '[gpio]\nremote_file = "remote"\nremote_debounce_ms = 0.0\n'
        '[logging]\nformat = "json"\nlevel = "info"\n'
    )
    return path


@pytest.fixture
def start_daemon(tmp_path: Path, daemon_config: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(config: Path | None = None, env: dict[str, str] | None = None) -> DaemonProcess:
        notify = tmp_path / f"notify-{len(started)}"
        process = DaemonProcess(tmp_path / "state", config or daemon_config, notify, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()

