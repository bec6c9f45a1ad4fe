"""``[source]`` for real banks: the forms check-config accepts and the ones it refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bms_daemon.config import check_source, parse
from bms_daemon.sources import comms_delays, create_source
from bms_daemon.sources.base import Quantity
from bms_daemon.sources.combined import CombinedSource

PACK = 'battery = { name = "EVE 280 16S", cells = 16, capacity_ah = 280 }\n'
CAN = '[source]\ntype = "can"\nchannel = "can0"\n' + PACK
COMBINED = (
    '[source]\ntype = "combined"\ncells = "bms"\ncurrent = "shunt"\n'
    '[source.bms]\ntype = "can"\n' + PACK +
    '[source.shunt]\ntype = "vedirect"\ndevice = "/dev/ttyUSB0"\n'
)


def problem(text: str) -> str | None:
    return check_source(parse(text, "smallbms.toml"))


def test_a_can_bms_alone_provides_everything() -> None:
    source = create_source(parse(CAN).source)
    assert isinstance(source, CombinedSource)
    assert set(source.providers.values()) == {"can"}


def test_combined_takes_current_from_the_shunt_and_voltage_from_the_bms_by_default() -> None:
    source = create_source(parse(COMBINED).source)
    assert isinstance(source, CombinedSource)
    assert source.providers == {Quantity.CELLS: "bms", Quantity.CURRENT: "shunt",
                                Quantity.VOLTAGE: "bms"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[source]\ntype = "vedirect"\ndevice = "/dev/ttyUSB0"\n',
         "a vedirect source gives no cells"),
        ('[source]\ntype = "can"\n', "[source] battery: missing"),
        (CAN.replace("cells = 16", "cells = 15"), "not a 12, 24 or 48 V system"),
        (CAN + 'bitrat = 500000\n', "[source] bitrat: unknown key"),
        (COMBINED.replace('cells = "bms"', 'cells = "shunt"'),
         "[source] cells: the vedirect feed 'shunt' gives no cell voltages"),
        (COMBINED.replace('current = "shunt"\n', ""), "[source] current: missing"),
        (COMBINED.replace('current = "shunt"', 'current = "shunty"'),
         "'shunty' is not a feed of this source"),
        (COMBINED.replace('current = "shunt"', 'current = "bms"'),
         "[source.shunt]: provides nothing to the BMS"),
        (COMBINED.replace('device = "/dev/ttyUSB0"\n', ""), "[source.shunt] device: missing"),
        (COMBINED + '[source.shunt.battery]\nname = "x"\n', "reports no batteries"),
        (CAN + 'comms_alarm = "90s"\n', "out of the safe range 10-60 s"),
        (CAN + 'comms_warning = "1s"\n', "out of the safe range 2-30 s"),
        (CAN + 'comms_warning = "15s"\ncomms_alarm = "12s"\n', "must be longer than"),
        ('[source]\ntype = "simulated"\ncomms_alarm = "2m"\n', "out of the safe range"),
        ('[source]\ntype = "combined"\n', "needs its feeds as tables"),
    ],
)
def test_check_config_refuses_what_cannot_protect_a_bank(text: str, expected: str) -> None:
    found = problem(text)
    assert found is not None
    assert expected in found, found
    assert found.startswith("smallbms.toml: [source")


def test_comms_delays_default_to_5_and_20_s_and_a_radio_may_wait_longer() -> None:
    assert comms_delays({"type": "can"}) == (5.0, 20.0)
    assert comms_delays({"type": "can", "comms_warning": "10s", "comms_alarm": 45}) == (10.0,
                                                                                        45.0)


def test_check_config_command_prints_the_source_and_exits_2_on_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(COMBINED)
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\ntype = "vedirect"\ndevice = "/dev/ttyUSB0"\n')
    run = [sys.executable, "-m", "bms_daemon.cli", "check-config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "battery source:  combined" in ok.stdout
    refused = subprocess.run([*run, str(bad)], capture_output=True, text=True, check=False)
    assert refused.returncode == 2
    assert "gives no cells" in refused.stderr
    assert "Traceback" not in refused.stderr
