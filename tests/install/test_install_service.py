"""Installing without a git checkout: `smallbms install-service`, and the package's metadata."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import bms_daemon
from bms_daemon.cli import main as smallbms
from bms_daemon.config import load
from bms_daemon.install import CONFIG_NAME, UNIT_NAME, packaged_text

REPO = Path(__file__).resolve().parents[2]
Capture = pytest.CaptureFixture[str]


def _install(tmp_path: Path, *extra: str) -> int:
    return smallbms(["install-service", "--unit-dir", str(tmp_path / "unit"),
                     "--config-dir", str(tmp_path / "etc"), *extra])


def test_the_package_carries_the_repository_unit_and_example_config() -> None:
    assert packaged_text(UNIT_NAME) == (REPO / "systemd" / UNIT_NAME).read_text()
    assert packaged_text(CONFIG_NAME) == (REPO / "systemd" / CONFIG_NAME).read_text()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["bms_daemon"]
    assert f"install/{UNIT_NAME}" in data
    assert f"install/{CONFIG_NAME}" in data


def test_install_writes_a_unit_that_runs_this_installation(
    tmp_path: Path, capsys: Capture
) -> None:
    assert _install(tmp_path, "--executable", "/srv/venv/bin/smallbms") == 0
    unit = (tmp_path / "unit" / UNIT_NAME).read_text()
    config_path = tmp_path / "etc" / CONFIG_NAME
    assert f"ExecStart=/srv/venv/bin/smallbms run --config {config_path}\n" in unit
    assert f"ExecStopPost=/srv/venv/bin/smallbms float-outputs --config {config_path}\n" in unit
    assert "/opt/smallbms/venv" not in unit
    # the example configuration, valid as written
    assert config_path.read_text() == packaged_text(CONFIG_NAME)
    assert load(config_path).gpio.backend == "gpiod"
    out = capsys.readouterr().out
    assert "sudo systemctl enable --now smallbms" in out
    assert "adduser --system" in out


def test_install_never_replaces_an_existing_configuration(tmp_path: Path, capsys: Capture) -> None:
    mine = tmp_path / "etc" / CONFIG_NAME
    mine.parent.mkdir()
    mine.write_text("[gpio]\nbackend = \"memory\"\n")
    assert _install(tmp_path) == 0
    assert mine.read_text() == "[gpio]\nbackend = \"memory\"\n"
    assert "kept" in capsys.readouterr().out
    assert list(mine.parent.iterdir()) == [mine]  # no temporary left behind


def test_install_into_a_directory_it_cannot_write_says_so(tmp_path: Path, capsys: Capture) -> None:
    blocker = tmp_path / "unit"
    blocker.write_text("a file where the directory should be")
    assert _install(tmp_path) == 1
    err = capsys.readouterr().err
    assert err.startswith("smallbms install-service: cannot write")
    assert not (tmp_path / "etc").exists()  # nothing half done: the unit comes first


def test_print_shows_the_files_without_writing(tmp_path: Path, capsys: Capture) -> None:
    assert _install(tmp_path, "--print", "config") == 0
    assert capsys.readouterr().out == packaged_text(CONFIG_NAME)
    assert _install(tmp_path, "--print", "unit") == 0
    assert "ExecStart=" in capsys.readouterr().out
    assert not (tmp_path / "unit").exists()


def test_one_version_and_spdx_license_metadata() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in pyproject
    assert pyproject["dynamic"] == ["version"]
    assert pyproject["license"] == "MIT"  # an SPDX expression, not the deprecated table
    assert importlib.metadata.version("smallbms") == bms_daemon.__version__
    out = subprocess.run([sys.executable, "-m", "bms_daemon.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"smallbms {bms_daemon.__version__}"
