"""Recorded traces of the core: random scenarios, what ``Bms`` did at each step.

``test_core_equivalence.py`` replays the recorded inputs through today's core and compares
every step with the recording, so that a speed-up of the core cannot change what it decides.
The traces were recorded from the core *before* its hot path was restructured (issue 14).

A scenario is a list of events: a control step (time, readings or none, inputs), a command or
a setting change.  The generator walks a bank through what the rules look at: cells across
every threshold, temperatures across cold and hot, currents around the zero band and towards a
synchronisation, comms gaps, NaN readings, time jumps, mixed or missing batteries, remote and
Mode toggles, a hardware fault.  Each step records the whole ``Status`` (as JSON);
every ``SNAPSHOT_EVERY`` steps and at the end, ``snapshot()`` and ``history()`` too.  The
fixture keeps those records whole and a digest of the others (see ``canonical``).

Re-record (only when a deliberate behaviour change of the core changes the traces; say which
one in the commit message):

    .venv/bin/python tests/unit/core_trace.py
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import math
import operator
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import SettingError
from bms_daemon.core.types import BatteryReading, Inputs, Readings

TRACES = Path(__file__).parent / "fixtures" / "core_traces.json.gz"
SEED = 14
SCENARIOS = 40
STEPS = 400
SNAPSHOT_EVERY = 25

Event = dict[str, Any]

_BANKS = (  # (model, cells per battery, series, parallel)
    ("12.8V-100Ah", 4, 1, 1),
    ("12.8V-200Ah", 4, 1, 3),
    ("12.8V-100Ah", 4, 2, 2),
    ("12.8V-300Ah", 4, 4, 1),
    ("25.6V-200Ah", 8, 1, 2),
    ("51.2V-100Ah", 16, 1, 1),
    ("12.8V-100Ah", 4, 1, 12),
)


def _reading(
    rng: random.Random, model: str, cells: int, serial: str, cell: float, current: float,
    temperature: float,
) -> dict[str, Any]:
    voltages = [round(cell + rng.uniform(-0.02, 0.02), 3) for _ in range(cells)]
    return {
        "serial": serial,
        "model": model,
        "firmware": "v1.07",
        "voltage": round(_plain_sum(voltages), 4),
        "current": current,
        "temperature": temperature,
        "cell_voltages": voltages,
    }


def _plain_sum(values: list[float]) -> float:
    """Left-to-right float addition, as ``sum`` did before Python 3.12 (3.12 compensates the
    rounding), so that the generated scenarios, and their digests, are the same on 3.11 and
    3.13."""
    return functools.reduce(operator.add, values, 0.0)


def generate(rng: random.Random) -> list[Event]:
    """One random scenario."""
    model, cells, series, parallel = rng.choice(_BANKS)
    count = series * parallel
    serials = [f"HQ{rng.randrange(10**8):08d}" for _ in range(count)]
    cell = rng.uniform(2.7, 3.5)
    temperature = rng.uniform(0.0, 52.0)
    current = 0.0
    now = rng.uniform(0.0, 1000.0)
    remote = True
    fault_at = rng.randrange(STEPS * 10)  # a hardware fault (E-B11, latched) in 1 of 10
    events: list[Event] = []
    if rng.random() < 0.5:
        events.append({"command": "set_soc", "argument": round(rng.uniform(0.0, 100.0), 1)})
    if rng.random() < 0.5:  # a short detection time lets a synchronisation happen in the trace
        events.append({"setting": "charge_detection_time", "value": 1})
    for k in range(STEPS):
        r = rng.random()
        now += 0.0 if r < 0.02 else (rng.uniform(20.0, 90.0) if r < 0.04 else 1.0)
        mood = rng.random()
        if mood < 0.05:
            current = rng.choice((0.0, 0.05, -0.05, 0.5, 2.0, -1.0, -30.0, 40.0, -150.0))
        elif mood < 0.10:
            cell = rng.choice((2.55, 2.75, 2.9, 3.05, 3.15, 3.21, 3.3, 3.45, 3.55, 3.7, 3.8))
        elif mood < 0.13:
            temperature = rng.choice((-5.0, 4.0, 5.5, 7.0, 25.0, 46.0, 49.0, 51.0, 60.0))
        cell = min(3.9, max(2.4, cell + rng.gauss(0.0, 0.004) + current * 2e-5))
        temperature += rng.gauss(0.0, 0.05)
        event: Event = {"now": now, "inputs": [remote, k != fault_at,
                                               rng.random() < 0.5, rng.random() < 0.2]}
        kind = rng.random()
        if kind < 0.03:
            event["readings"] = None
        elif kind < 0.05:
            # a comms gap: several steps without data
            for _ in range(rng.randrange(3, 30)):
                now += 1.0
                events.append({"now": now, "inputs": event["inputs"], "readings": None})
            event["now"] = now = now + 1.0
            event["readings"] = None
        else:
            batteries = [
                _reading(rng, model, cells, serial, cell, current / parallel,
                         round(temperature + rng.uniform(-1.0, 1.0), 2))
                for serial in serials
            ]
            oddity = rng.random()
            if oddity < 0.01:
                batteries[0]["voltage"] = math.nan
            elif oddity < 0.02:
                batteries[-1]["model"] = "12.8V-150Ah"
            elif oddity < 0.03:
                batteries[0]["cell_voltages"] = []
            elif oddity < 0.035:
                batteries = batteries[:-1]
            elif oddity < 0.04:
                batteries = []
            bank_voltage = (_plain_sum([b["voltage"] for b in batteries[:series]])
                            if batteries else 0.0)
            if oddity > 0.995:
                bank_voltage = 70.0
            measured = current * (1.0 + rng.gauss(0.0, 0.01)) + rng.gauss(0.0, 0.03)
            event["readings"] = {"batteries": batteries, "bank_voltage": bank_voltage,
                                 "bank_current": measured}
        events.append(event)
        action = rng.random()
        if action < 0.004:
            remote = not remote
        elif action < 0.006:
            events.append({"setting": "mode", "value": rng.random() < 0.5})
        elif action < 0.008:
            events.append({"command": rng.choice(("synchronise", "reset_history",
                                                  "factory_reset"))})
        elif action < 0.010:
            events.append({"setting": rng.choice(("discharge_floor", "low_soc_warning")),
                           "value": rng.choice((0, 10, 20, 50, 80))})
        elif action < 0.011:
            events.append({"command": "set_soc", "argument": round(rng.uniform(0.0, 100.0), 1)})
    return events


def _readings(data: dict[str, Any] | None) -> Readings | None:
    if data is None:
        return None
    batteries = tuple(
        BatteryReading(**{**b, "cell_voltages": tuple(b["cell_voltages"])})
        for b in data["batteries"]
    )
    return Readings(batteries, data["bank_voltage"], data["bank_current"])


def replay(events: list[Event]) -> list[dict[str, Any]]:
    """Run a scenario through a fresh ``Bms``; one record per event (JSON-ready)."""
    bms = Bms()
    records: list[dict[str, Any]] = []
    steps = 0
    for event in events:
        if "now" in event:
            remote, hardware_ok, advertising, connected = event["inputs"]
            inputs = Inputs(remote, hardware_ok, advertising, connected)
            status = bms.step(_readings(event["readings"]), inputs, event["now"])
            record: dict[str, Any] = {"status": status}
            steps += 1
            if steps % SNAPSHOT_EVERY == 0:
                record["snapshot"] = bms.snapshot()
                record["history"] = bms.history()
        else:
            try:
                if "command" in event:
                    result = bms.command(event["command"], event.get("argument"))
                else:
                    result = repr(bms.set_setting(event["setting"], event["value"]))
            except SettingError as exc:
                result = f"rejected: {exc}"
            record = {"result": result}
        records.append(record)
    records.append({"snapshot": bms.snapshot(), "history": bms.history()})
    return records


def canonical(record: dict[str, Any]) -> dict[str, Any]:
    """What the fixture keeps of one record: the full record every ``SNAPSHOT_EVERY`` steps and
    for commands, otherwise a digest of its canonical JSON (the fixture stays small).  NaN is
    written as NaN, so a NaN extreme compares equal to itself."""
    if "status" in record and "snapshot" not in record:
        return {"digest": digest(record)}
    parsed: dict[str, Any] = json.loads(json.dumps(record, default=_fields))
    return parsed


def scenarios() -> list[list[Event]]:
    """The scenarios, generated again from ``SEED`` (the fixture keeps a digest of each, so a
    change of the generator is caught rather than compared against the wrong recording)."""
    rng = random.Random(SEED)
    return [generate(rng) for _ in range(SCENARIOS)]


def _fields(value: object) -> dict[str, Any] | list[Any]:
    """A dataclass as JSON sees it (like ``dataclasses.asdict``, one level at a time); any
    other sequence (the bank page's lazy battery list) as a list."""
    if isinstance(value, Sequence):
        return list(value)
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"not JSON: {value!r}")
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def digest(value: object) -> str:
    """A short digest of ``value``'s canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_fields)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load() -> list[dict[str, Any]]:
    """The recorded traces: ``[{"events": digest, "records": [...]}, ...]``, one per scenario."""
    with gzip.open(TRACES, "rt", encoding="utf-8") as f:
        traces: list[dict[str, Any]] = json.load(f)
    return traces


def record() -> None:
    """Generate the scenarios, run them through the core of this checkout, write the traces."""
    traces = [
        {"events": digest(events), "records": [canonical(r) for r in replay(events)]}
        for events in scenarios()
    ]
    TRACES.parent.mkdir(exist_ok=True)
    with gzip.GzipFile(TRACES, "wb", mtime=0) as f:
        f.write(json.dumps(traces, separators=(",", ":")).encode())
    events = sum(len(t["records"]) - 1 for t in traces)
    print(f"{TRACES}: {len(traces)} scenarios, {events} events, {TRACES.stat().st_size} bytes")


if __name__ == "__main__":
    record()
