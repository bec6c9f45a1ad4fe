"""`smallbms simulate` as a person at a terminal meets it: its help and its progress line."""

from __future__ import annotations

import argparse
import io

import pytest

from bms_daemon import simulate
from bms_daemon.config import load
from bms_daemon.scenario import parse_scenario
from bms_daemon.simulate import run_scenario
from bms_daemon.ui.progress import Progress


def test_help_states_the_daemon_rate_it_really_runs_at() -> None:
    parser = argparse.ArgumentParser()
    simulate.configure(parser)
    text = " ".join(parser.format_help().split())
    period = 1 / load(None).bms.rate_hz  # the embedded default, 2 Hz
    assert f"the daemon steps every {period:g} s" in text
    assert "rate is 1 s" not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(stream: io.StringIO, clock: list[float], **kwargs: object) -> Progress:
    return Progress(86400.0 * 30, lambda s: f"{s / 86400:g} d", stream,
                    label="smallbms simulate", clock=lambda: clock[0], **kwargs)  # type: ignore[arg-type]


def test_progress_line_on_a_terminal_after_two_seconds_then_erased(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    clock = [0.0]
    terminal = _Terminal()
    progress = _progress(terminal, clock)
    progress.update(86400.0)
    assert terminal.getvalue() == ""  # a short run says nothing
    clock[0] = 5.0
    progress.update(86400.0 * 3)
    shown = "smallbms simulate: 3 d of 30 d (10%), about 45 s left"
    assert terminal.getvalue() == "\r" + shown
    clock[0] = 5.1
    progress.update(86400.0 * 4)
    assert terminal.getvalue() == "\r" + shown  # at most twice a second
    progress.finish()
    assert terminal.getvalue().endswith("\r" + " " * len(shown) + "\r")


def test_no_progress_in_a_pipe_nor_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    pipe = io.StringIO()
    piped = _progress(pipe, clock)
    monkeypatch.setenv("CI", "true")
    terminal = _Terminal()
    in_ci = _progress(terminal, clock)
    clock[0] = 200.0
    for progress in (piped, in_ci):
        progress.update(86400.0)
        progress.finish()
    assert pipe.getvalue() == terminal.getvalue() == ""


def test_simulate_reports_progress_while_it_runs() -> None:
    calls: list[float] = []
    scenario = parse_scenario('[bank]\nsoc = 80\n[[step]]\nduration = "2h"\nload = 10\n', "s.toml")
    run_scenario(scenario, sink=lambda line: None, progress=calls.append)
    assert calls
    assert calls == sorted(calls)
    assert calls[-1] <= scenario.duration
