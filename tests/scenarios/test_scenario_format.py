"""The scenario format (SPEC §8) and `smallbms simulate`'s command line, as a user meets them."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon import simulate
from bms_daemon.scenario import ScenarioError, parse_scenario
from bms_daemon.sources.config import parse_duration

SPEC_KEYS = {
    "t", "soc", "true_soc", "voltage", "current", "min_cell", "max_cell", "temperature", "load",
    "charger", "prealarm", "warnings", "alarms", "errors", "ttg_min", "consumed_ah", "balancer",
}

GOOD = """\
[bank]
model = "12.8V-100Ah"
series = 1
parallel = 1
soc = 80
temperature = 25
known_soc = true

[settings]
discharge_floor = 10

[[step]]
duration = "2m"
load = 50
charge = 0
temperature = 25
remote = true
comms = true
cell_offset = { battery = 1, cell = 1, volts = -0.1 }
"""


def run_cli(tmp_path: Path, text: str, *options: str) -> tuple[int, str, str]:
    path = tmp_path / "s.toml"
    path.write_text(text, encoding="utf-8")
    return run_cli_path(str(path), *options)


def run_cli_path(path: str, *options: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    simulate.configure(parser)
    args = parser.parse_args([path, *options])
    return simulate.main(args), "", ""


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("30m", 1800), ("45s", 45), ("1d", 86400), ("1h30m", 5400), (90, 90),
     (2.5, 2.5), ("0.5h", 1800)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["2x", "", "h", "1h 2", True, -5, "-1h", [1]])
def test_bad_durations_are_refused_with_examples(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from("smhd"))
def test_duration_units(count: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{count}{unit}") == count * factor


def test_the_spec_example_is_accepted() -> None:
    scenario = parse_scenario(GOOD, "good.toml")
    assert scenario.duration == 120
    assert scenario.settings.discharge_floor == 10
    assert scenario.steps[0].cell_offsets[0].volts == -0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("load = 50", "loads = 50"), "good.toml:14: [[step]] 1 loads: unknown key"),
        (GOOD.replace("load = 50", 'load = "lots"'),
         "good.toml:14: [[step]] 1 load: must be a number of amperes"),
        (GOOD.replace('duration = "2m"', 'duration = "2 weeks"'),
         "good.toml:13: [[step]] 1 duration: must be a duration"),
        (GOOD.replace('model = "12.8V-100Ah"', 'model = "12V-100Ah"'),
         "good.toml:2: [bank] model: must be one of 12.8V-100Ah"),
        (GOOD.replace("soc = 80", "soc = 120"),
         "good.toml:5: [bank] soc: must be between 0 and 100"),
        (GOOD.replace("discharge_floor = 10", "discharge_floor = 150"),
         "good.toml:10: [settings] discharge_floor 150% is out of range"),
        (GOOD.replace("discharge_floor = 10", "discharge_flor = 10"),
         "good.toml:10: [settings] unknown setting 'discharge_flor'"),
        (GOOD.replace("known_soc = true", "known_soc = 1"),
         "good.toml:7: [bank] known_soc: must be true or false"),
        (GOOD.replace("cell = 1,", "cell = 5,"),
         "good.toml:19: [[step]] 1 cell_offset: cell must be a number from 1 to 4"),
        (GOOD.replace("remote = true", 'remote = "yes"'),
         "good.toml:17: [[step]] 1 remote: must be true or false"),
        (GOOD + '\n[[step]]\nload = 3\n', "good.toml:21: [[step]] 2 duration: missing"),
        (GOOD.split("[[step]]", maxsplit=1)[0], "good.toml: no [[step]] table"),
        (GOOD + "\n[banks]\n", "unknown table or key 'banks'"),
        (GOOD.replace("series = 1", "series = 2\nbattery_models = [\"12.8V-100Ah\"]"),
         "[bank] battery_models: must be a list of 2 model names"),
        ("[bank\nmodel = 1", "good.toml: not valid TOML"),
    ],
)
def test_bad_scenarios_name_the_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "good.toml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_cli_prints_json_lines_with_the_spec_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, _ = run_cli(tmp_path, GOOD, "--every", "30")
    assert status == 0
    out, err = capsys.readouterr()
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["t"] for x in lines] == [0, 30, 60, 90, 120]
    for line in lines:
        assert set(line) >= SPEC_KEYS
    assert "simulated" in err


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        (GOOD.replace("load = 50", "load = -5"), (), "[[step]] 1 load"),
        (GOOD, ("--dt", "0"), "--dt must be"),
        (GOOD, ("--every", "-1"), "--every must be"),
        (GOOD, ("--plot", "out.txt"), "use a .png, .svg or .pdf"),
        (GOOD, ("--plot", "/nonexistent/dir/x.png"), "does not exist"),
    ],
)
def test_cli_refuses_bad_input_with_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, options: tuple[str, ...],
    message: str,
) -> None:
    status, _, _ = run_cli(tmp_path, text, *options)
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, _ = run_cli_path(str(tmp_path / "nope.toml"))
    assert status == 2
    assert "cannot read the scenario" in capsys.readouterr().err


def test_plot_draws_a_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "run.png"
    status, _, _ = run_cli(tmp_path, GOOD, "--plot", str(target))
    assert status == 0, capsys.readouterr().err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_plot_without_matplotlib_says_how_to_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    status, _, _ = run_cli(tmp_path, GOOD, "--plot", str(tmp_path / "x.png"))
    err = capsys.readouterr().err
    assert status == 2
    assert "pip install 'smallbms[plot]'" in err
    assert not (tmp_path / "x.png").exists()


def test_a_line_at_every_change_and_every_period_otherwise() -> None:
    from sim_helpers import simulate as run  # noqa: PLC0415

    lines = run(textwrap.dedent("""
        [bank]
        soc = 50
        [[step]]
        duration = "95s"
        load = 5
        [[step]]
        duration = "100s"
        load = 5
        remote = false
        """), every=30)
    times = [x["t"] for x in lines]
    # periodic lines, the change at 96 s (remote off) and the end
    assert times == [0, 30, 60, 90, 96, 120, 150, 180, 195]
    for previous, line in itertools.pairwise(lines):
        changed = (previous["load"], previous["charger"], previous["prealarm"],
                   previous["warnings"], previous["alarms"], previous["errors"]) != (
            line["load"], line["charger"], line["prealarm"], line["warnings"], line["alarms"],
            line["errors"])
        assert changed or line["t"] % 30 == 0 or line is lines[-1]


def test_smallbms_simulate_through_the_dispatcher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bms_daemon.cli import main  # noqa: PLC0415

    path = tmp_path / "s.toml"
    path.write_text(GOOD, encoding="utf-8")
    assert main(["simulate", str(path), "--every", "60"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["t"] for x in lines] == [0, 60, 120]


def test_the_line_is_the_bad_keys_even_when_the_message_names_another() -> None:
    text = GOOD.replace("series = 1", 'series = 1\nbattery_models = ["LFP"]')
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "good.toml")
    assert str(caught.value).startswith("good.toml:4: [bank] battery_models:")
