"""Run scenarios in-process and look at their JSON lines as a user would."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from bms_daemon.scenario import parse_scenario
from bms_daemon.simulate import run_scenario

Line = dict[str, Any]


def simulate(toml: str, *, dt: float = 1.0, every: float = 60.0) -> list[Line]:
    """The lines `smallbms simulate` would print for this scenario text (round-tripped
    through JSON, so what the test sees is exactly what a user's tool would parse)."""
    lines: list[Line] = []
    scenario = parse_scenario(textwrap.dedent(toml), "test.toml")
    run_scenario(scenario, dt=dt, every=every, sink=lambda line: lines.append(
        json.loads(json.dumps(line))))
    return lines


def codes(line: Line) -> list[str]:
    """Every active code of a line."""
    return [*line["warnings"], *line["alarms"], *line["errors"]]


def first(lines: list[Line], predicate: Any, after: float = -1.0) -> Line:
    """The first line after time ``after`` that satisfies ``predicate``; fails the test if none."""
    for line in lines:
        if line["t"] > after and predicate(line):
            return line
    raise AssertionError("no line matches")
