"""The core decides step by step exactly what it decided before its hot path was optimised.

The fixture was recorded by ``core_trace.py`` from the core as it was before (issue 14) over
random scenarios that cross every rule's thresholds; see that module for what the scenarios
cover and how to re-record after a deliberate behaviour change.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from core_trace import canonical, digest, load, replay, scenarios

RECORDED = load()
SCENARIOS = scenarios()


def _first_difference(expected: Any, actual: Any, path: str = "") -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                return f"{path}.{key}: only in {'the recording' if key in expected else 'now'}"
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return ""
    if json.dumps(expected) != json.dumps(actual):
        return f"{path}: recorded {expected!r}, now {actual!r}"
    return ""


def test_the_recording_covers_every_scenario() -> None:
    assert len(RECORDED) == len(SCENARIOS)


@pytest.mark.parametrize("number", range(len(RECORDED)))
def test_the_core_repeats_the_recorded_trace(number: int) -> None:
    events, recorded = SCENARIOS[number], RECORDED[number]
    assert digest(events) == recorded["events"], (
        "the scenario generator changed: re-record the traces (see core_trace.py)"
    )
    for step, (event, expected, record) in enumerate(
        zip([*events, None], recorded["records"], replay(events), strict=True)
    ):
        actual = canonical(record)
        if actual != expected and json.dumps(actual) != json.dumps(expected):
            detail = (
                f"status now {record['status']}"
                if "digest" in expected
                else _first_difference(expected, actual)
            )
            pytest.fail(f"scenario {number}, event {step} ({event}): {detail}")
