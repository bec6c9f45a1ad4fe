"""`smallbms simulate` as a person at a terminal meets it: its help and its progress line."""

from __future__ import annotations

import argparse

from bms_daemon import simulate
from bms_daemon.config import load


def test_help_states_the_daemon_rate_it_really_runs_at() -> None:
    parser = argparse.ArgumentParser()
    simulate.configure(parser)
    text = " ".join(parser.format_help().split())
    period = 1 / load(None).bms.rate_hz  # the embedded default, 2 Hz
    assert f"the daemon steps every {period:g} s" in text
    assert "rate is 1 s" not in text
