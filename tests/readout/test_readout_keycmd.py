"""`smallbms key`: prints the key, and says what to do when it cannot."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from bms_daemon import keycmd
from bms_daemon.store import FileStore
from gatt.readout import parse_key
from gatt.readout_keys import ReadoutKeys


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="smallbms key")
    keycmd.configure(parser)
    return keycmd.main(parser.parse_args(list(argv)))


def test_prints_the_key_alone_so_it_can_be_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ReadoutKeys(FileStore(tmp_path))
    capsys.readouterr()
    assert run("--state-dir", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out == keys.key.hex() + "\n"
    assert parse_key(out) == keys.key  # what smallbms-client scan --key accepts


def test_follows_the_state_directory_of_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    keys = ReadoutKeys(FileStore(state))
    config = tmp_path / "smallbms.toml"
    config.write_text(f'[bms]\nstate_directory = "{state}"\n')
    capsys.readouterr()
    assert run("--config", str(config)) == 0
    assert capsys.readouterr().out.strip() == keys.key.hex()


def test_after_a_pin_change_prints_the_new_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ReadoutKeys(FileStore(tmp_path))
    keys.sync_pin("000000")
    keys.sync_pin("135790")
    capsys.readouterr()
    assert run("--state-dir", str(tmp_path)) == 0
    assert capsys.readouterr().out.strip() == keys.key.hex()


def test_no_key_yet_explains_when_it_appears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--state-dir", str(tmp_path / "empty")) == keycmd.EXIT_NO_KEY
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "first starts" in captured.err
    assert "Traceback" not in captured.err
    assert not (tmp_path / "empty").exists()  # it only reads


def test_corrupt_key_file_is_reported_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readout.json").write_text('{"key": "12')
    assert run("--state-dir", str(tmp_path)) == keycmd.EXIT_NO_KEY
    captured = capsys.readouterr()
    assert "does not hold a valid key" in captured.err
    assert captured.out == ""
    assert (tmp_path / "readout.json").read_text() == '{"key": "12'  # left for the daemon
    assert not list(tmp_path.glob("readout.json.corrupt-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file_suggests_sudo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ReadoutKeys(FileStore(tmp_path))
    (tmp_path / "readout.json").chmod(0)
    assert run("--state-dir", str(tmp_path)) == keycmd.EXIT_NO_KEY
    assert "sudo" in capsys.readouterr().err


def test_bad_config_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("--config", str(tmp_path / "missing.toml")) == keycmd.EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "no such file" in err
    assert "Traceback" not in err


def test_says_which_state_directory_it_read_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trap: `smallbms key -c FILE` of a file that sets no state directory reads this
    user's default one, i.e. maybe another daemon's key than the service's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    default = tmp_path / ".local" / "state" / "smallbms"
    keys = ReadoutKeys(FileStore(default))
    config = tmp_path / "smallbms.toml"
    config.write_text('[gpio]\nbackend = "memory"\n')
    capsys.readouterr()
    assert run("--config", str(config)) == 0
    captured = capsys.readouterr()
    assert captured.out == keys.key.hex() + "\n"  # still the key alone on stdout
    assert captured.err == (
        f"smallbms key: read from {default / 'readout.json'} ({config} sets no [bms] "
        "state_directory: this user's default; a systemd service keeps its own in "
        "/var/lib/smallbms)\n"
    )
    assert run("--state-dir", str(default)) == 0
    assert capsys.readouterr().err.endswith("(--state-directory)\n")
