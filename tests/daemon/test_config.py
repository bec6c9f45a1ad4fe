"""The configuration file and `smallbms check-config`."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon import config as cfg
from bms_daemon.config import ConfigError, load, parse
from bms_daemon.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "systemd" / "smallbms.toml"


def _check(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cfg.configure(parser)
    return cfg.main(parser.parse_args(argv))


def test_defaults_are_simulated_bank_memory_gpio_virtual_ble_auto() -> None:
    config = load(None)
    assert config.source == {"type": "simulated", "profile": "daily", "start": "18:00",
                             "soc": 22.0, "known_soc": True}  # the demo (simulated-source.md)
    assert config.gpio.backend == "memory"
    assert config.ble == cfg.BleConfig()
    assert config.ble.virtual == "auto"
    assert config.bms.rate_hz == 2.0
    assert set(config.gpio.outputs()) == {"load", "charger", "prealarm", "led_blue", "led_red"}
    assert config.gpio.remote is None


def test_a_file_only_lists_what_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[bms]\nrate_hz = 4\n[gpio.lines]\nload = "GPIO5"\nremote = 23\n')
    config = load(path)
    assert config.bms.rate_hz == 4.0
    assert config.gpio.lines["load"].line == "GPIO5"
    assert config.gpio.lines["charger"].line == 27
    assert config.gpio.remote is not None
    assert config.origin == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[gpio]\nbakend = 'memory'", "[gpio] bakend: unknown key; did you mean 'backend'?"),
        ("[loging]\nlevel = 'info'", "[loging]: unknown table; did you mean 'logging'?"),
        ("[bluetooth]\nenabled = true", "[bluetooth]: unknown table; known: bms, source, gpio"),
        ("[bms]\nrate_hz = 'fast'", "[bms] rate_hz: must be a number, not 'fast'"),
        ("[bms]\nrate_hz = 100", "[bms] rate_hz: 100 Hz is out of range"),
        ("[ble]\nvirtual = 'yes'", "[ble] virtual: 'yes' is not one of auto, on, off"),
        ("[ble]\nproduct_id = 70000", "[ble] product_id: 70000 does not fit 16 bits"),
        ("[ble]\nname = 'a very long bluetooth name'", "[ble] name: must be 1 to 20 bytes"),
        ("[ble]\nadapter = 'wlan0'", "[ble] adapter: 'wlan0' is not an adapter name"),
        ("[ble]\nenabled = 1", "[ble] enabled: must be true or false"),
        ("[gpio.lines]\nload = ''", "[gpio.lines] load: the load output must be connected"),
        ("[gpio.lines]\nremote = 17", "[gpio.lines] remote: line 17 is already used by load"),
        ("[gpio.lines]\nload = -1", "[gpio.lines] load: line offset -1 is negative"),
        ("[gpio]\nactive_low = ['lod']", "[gpio] active_low: 'lod' is not a line; did you mean"),
        ("[gpio]\nremote_bias = 'up'", "[gpio] remote_bias: 'up' is not one of"),
        ("[settings]\ndischarge_floor = 150", "[settings] discharge_floor 150% is out of range"),
        ("[settings]\nflor = 1", "[settings] unknown setting 'flor'"),
        ("[settings]\ncharged_voltage = 20.0", "[settings] charged_voltage 20 V fits no bank"),
        ("[source]\ntype = ''", "[source] type: missing"),
        ("[logging]\nlevel = 'loud'", "[logging] level: 'loud' is not one of"),
        ("bms = 3", "[bms]: must be a table"),
        ("rate_hz = 3", "rate_hz: unknown key outside any table; it belongs in [bms]"),
        ("[bms\n", "invalid TOML"),
    ],
)
def test_bad_files_name_the_table_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "my.toml")
    assert str(info.value).startswith("my.toml: ")
    assert message in str(info.value)


@given(st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_any_unknown_key_is_an_error_naming_it(key: str) -> None:
    known = set(cfg.default_table()["bms"])
    if key in known:
        assert parse(f"[bms]\n{key} = {cfg.default_table()['bms'][key]!r}".replace("'", '"'))
        return
    with pytest.raises(ConfigError, match=f"\\[bms\\] {key}: unknown key"):
        parse(f"[bms]\n{key} = 1")


def test_settings_seeds_are_validated_together_and_used_for_a_first_start() -> None:
    config = parse("[settings]\ndischarge_floor = 30\nlow_soc_warning = 40\npin = '123456'")
    seeds = config.seed_settings()
    assert (seeds.discharge_floor, seeds.low_soc_warning, seeds.pin) == (30.0, 40.0, "123456")
    with pytest.raises(ConfigError, match="low_soc_warning"):
        parse("[settings]\ndischarge_floor = 30\nlow_soc_warning = 20")


def test_source_table_is_passed_whole_to_the_source() -> None:
    config = parse('[source]\ntype = "simulated"\nsoc = 42\n')
    assert config.source == {"type": "simulated", "soc": 42}
    # without `type`, the table changes the embedded demo bank
    demo = load(None).source
    assert parse("[source]\nsoc = 42\n").source == {**demo, "soc": 42}


def test_state_directory_choice(tmp_path: Path) -> None:
    assert parse(f'[bms]\nstate_directory = "{tmp_path}/x"').state_directory() == tmp_path / "x"
    config = load(None)
    systemd_env = {"STATE_DIRECTORY": f"{tmp_path}/a:{tmp_path}/b", "HOME": str(tmp_path)}
    assert config.state_directory(systemd_env) == tmp_path / "a"
    home_env = {"HOME": str(tmp_path)}
    assert config.state_directory(home_env) == tmp_path / ".local" / "state" / "smallbms"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    assert config.state_directory({"HOME": str(blocked)}) == Path.cwd() / "state"


def test_example_config_is_valid_and_shows_every_key() -> None:
    config = load(EXAMPLE)
    assert config.gpio.backend == "gpiod"
    example = tomllib.loads(EXAMPLE.read_text())
    defaults = cfg.default_table()
    for table, keys in defaults.items():
        for key, value in keys.items():
            if isinstance(value, dict):
                assert set(example[table][key]) == set(value), f"[{table}.{key}]"
            else:
                assert key in example[table], f"[{table}] {key} missing from the example"
    commented = EXAMPLE.read_text()
    for setting in Settings.names():
        assert f"# {setting} = " in commented


def test_check_config_ok_prints_a_summary(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[bms]\nstate_directory = "{tmp_path}"\n[ble]\nenabled = false\n')
    assert _check([str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {path}\n")
    assert f"state directory: {tmp_path}" in out
    assert "bluetooth:       disabled" in out
    assert "memory backend" in out


def test_check_config_error_exit_2_one_line(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[gpio]\nbackend = 'gpoid'\n")
    assert _check([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"smallbms: error: {path}: [gpio] backend: 'gpoid' is not one of memory, gpiod; "
        "did you mean 'gpiod'?\n"
    )


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _check([str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def test_check_config_reports_a_bad_source_key(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[source]\ntype = "simulated"\nno_such_key = 1\n')
    assert _check([str(path)]) == 2
    err = capsys.readouterr().err
    assert "[source]" in err
    assert "no_such_key" in err
    assert "[source] [source]" not in err


def test_the_vereg_service_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "smallbms.toml"
    path.write_text("[ble]\nvereg = false\n")
    assert load(path).ble.vereg is False
    assert cfg.BleConfig().vereg is True
