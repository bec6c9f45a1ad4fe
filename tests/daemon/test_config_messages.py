"""Configuration mistakes as a first-time user makes them: each message names the line, shows
the text and says the likely fix; nothing is logged as started or created before the file is
known good."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import RUN

from bms_daemon import floatcmd
from bms_daemon.config import ConfigError, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[source]\ntype = simulated\n',
         'c.toml: invalid TOML: line 2: invalid value: `type = simulated`; text values need '
         'quotes: type = "simulated"'),
        ('[bms]\nrate_hz = 2.0\n[source\ntype = "simulated"\n',
         "c.toml: invalid TOML: line 3: expected ']' at the end of a table declaration: "
         "`[source`; a table header needs its closing bracket: [source]"),
        ('[source]\ntype = "simulated"\n[source]\nload = 3\n',
         "c.toml: invalid TOML: line 3: table [source] declared twice: `[source]`; keep one "
         "and put its keys together"),
        ('[ble]\nenabled = True\n',
         "c.toml: invalid TOML: line 2: invalid value: `enabled = True`; true and false are "
         "written in lower case: enabled = true"),
        ('[gpio]\nactive_low = [remote]\n',
         'c.toml: invalid TOML: line 2: invalid value: `active_low = [remote]`; text in a list '
         'needs quotes: active_low = ["remote"]'),
        ('[bms]\nrate_hz = 2,5\n',
         "c.toml: invalid TOML: line 2: expected newline or end of document after a statement: "
         "`rate_hz = 2,5`; numbers take a decimal point: rate_hz = 2.5"),
        ('[source]\ntype = "simulated\n',
         "c.toml: invalid TOML: line 2: illegal character '\\n': `type = \"simulated`; the "
         'string is not closed: type = "simulated"'),
        ('[source]\ntype: "simulated"\n',
         "c.toml: invalid TOML: line 2: expected '=' after a key in a key/value pair: "
         '`type: "simulated"`; write key = value, with "=" (not ":"), and quote text values'),
        # a key outside its table is valid TOML: the check of the keys names its table
        ('rate_hz = 4.0\n', "c.toml: rate_hz: unknown key outside any table; it belongs in [bms]"),
    ],
)
def test_syntax_errors_name_the_line_the_text_and_the_likely_fix(
    text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(text, "c.toml")
    assert str(raised.value) == expected


def test_run_with_a_bad_source_key_starts_nothing_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = tmp_path / "c.toml"
    path.write_text(f'[bms]\nstate_directory = "{state}"\n[source]\ntype = "simulated"\n'
                    "lode = 5\n")
    result = subprocess.run([sys.executable, "-c", RUN, "--config", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"smallbms: error: {path}: [source] lode: unknown key")
    assert result.stderr.count("\n") == 1  # no "starting", no config summary before it
    assert result.stdout == ""
    assert not state.exists()


def test_float_outputs_says_which_state_directory_it_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    floatcmd.configure(parser)
    assert floatcmd.main(parser.parse_args(["--state-directory", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert f"(memory backend, state directory {tmp_path}): load, charger" in out
