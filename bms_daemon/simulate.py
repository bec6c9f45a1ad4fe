"""``smallbms simulate SCENARIO.toml``: run a scenario through the real BMS core, fast.

The loop is the daemon's control loop without the clock: at each tick of ``--dt`` simulated
seconds the simulated bank integrates its physics and reports, the core ``Bms`` steps, and its
outputs go back to the bank (loads draw only while LOAD is high, the charger charges only while
CHARGER is high).  Stdout gets one JSON object per line (SPEC §8): at the start, at every change
of an output, warning, alarm or error, every ``--every`` simulated seconds otherwise, and at the
end.  A bad scenario exits 2 with one line on stderr; a summary goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bms_daemon.config import BmsConfig
from bms_daemon.core.bms import Bms
from bms_daemon.core.settings import SettingError
from bms_daemon.core.types import Inputs, Status
from bms_daemon.scenario import Scenario, ScenarioError, Step, load_scenario
from bms_daemon.sources.simulated import SimulatedBank
from bms_daemon.ui.progress import Progress

DEFAULT_EVERY_S = 60.0
DEFAULT_DT_S = 1.0
DAEMON_RATE_HZ = BmsConfig().rate_hz  # the daemon's default control loop rate, for --help
MAX_DT_S = 60.0  # coarser ticks would blur the 5 s comms and 30 s pre-alarm rules
PLOT_POINTS = 4000  # samples kept for --plot, spread over the run (plus every change)
ROUND = 4  # decimals kept in the JSON lines
PROGRESS_EVERY_MASK = 0x3FF  # the progress callback runs every 1024 steps (and it is cheap)

Sink = Callable[[dict[str, Any]], None]


@dataclass(slots=True)
class Sample:
    """One point of the run, kept for the plot."""

    t: float
    soc: float | None
    true_soc: float
    voltage: float | None
    current: float | None
    load: bool
    charger: bool
    prealarm: bool
    min_cell: float | None = None
    max_cell: float | None = None
    codes: tuple[str, ...] = ()  # active warnings, alarms and errors, e.g. ("W-B07",)
    synchronisations: int = 0  # the history counter: a rise marks a synchronisation


@dataclass(slots=True)
class RunResult:
    """What a run produced besides its lines."""

    ticks: int
    simulated_s: float
    wall_s: float
    lines: int
    samples: list[Sample]
    bms: Bms
    bank: SimulatedBank


def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms simulate``."""
    parser.description = (
        "Run a scenario file (SPEC §8: [bank], [settings], [[step]] tables) through the BMS "
        "core with a closed-loop simulated bank, faster than real time, and print one JSON "
        "object per line: at every change of an output, warning, alarm or error, and every "
        "--every simulated seconds otherwise.  Exit status 2 for a bad scenario."
    )
    parser.epilog = (
        "Example: smallbms simulate scenarios/full_discharge.toml --every 600 --plot run.png.  "
        "The format, the output keys and the shipped scenarios are described in "
        "scenarios/README.md."
    )
    parser.add_argument("scenario", type=Path, metavar="SCENARIO.toml", help="the scenario file")
    parser.add_argument(
        "--every", type=float, default=DEFAULT_EVERY_S, metavar="SECONDS",
        help=f"print a line at least every SECONDS of simulated time (default {DEFAULT_EVERY_S:g})",
    )
    parser.add_argument(
        "--dt", type=float, default=DEFAULT_DT_S, metavar="SECONDS",
        help=f"simulated seconds per control step (default {DEFAULT_DT_S:g}, at most "
        f"{MAX_DT_S:g}; the daemon steps every {1 / DAEMON_RATE_HZ:g} s, [bms] rate_hz = "
        f"{DAEMON_RATE_HZ:g})",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="also draw SOC, voltage, current and the three outputs over time (needs matplotlib)",
    )


def main(args: argparse.Namespace) -> int:
    """Run ``args.scenario``; 0 when it ran, 2 for a bad scenario or option."""
    every: float = args.every
    dt: float = args.dt
    if not (math.isfinite(every) and every > 0):
        return _fail(f"--every must be a number of seconds > 0, not {every:g}")
    if not (math.isfinite(dt) and 0 < dt <= MAX_DT_S):
        return _fail(f"--dt must be a number of seconds > 0 and <= {MAX_DT_S:g}, not {dt:g}")
    plot_path: Path | None = args.plot
    if plot_path is not None:
        from bms_daemon.plot import PlotError, check_plotting  # noqa: PLC0415

        try:
            check_plotting(plot_path)
        except PlotError as exc:
            return _fail(str(exc))
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _fail(str(exc))

    out = sys.stdout

    def emit(line: dict[str, Any]) -> None:
        out.write(json.dumps(line) + "\n")

    progress = Progress(scenario.duration, _rounded, sys.stderr, label="smallbms simulate")
    try:
        result = run_scenario(scenario, dt=dt, every=every, sink=emit,
                              keep_samples=bool(plot_path), progress=progress.update)
    except ScenarioError as exc:
        progress.finish()
        return _fail(str(exc))
    except BrokenPipeError:  # `| head`: the reader has seen enough
        sys.stderr.close()
        return 0
    out.flush()
    if plot_path is not None:
        from bms_daemon.plot import PlotError, plot_run  # noqa: PLC0415

        progress.show(f"smallbms simulate: drawing {plot_path}")
        try:
            plot_run(result.samples, plot_path, title=scenario.description or str(args.scenario),
                     settings=result.bms.settings)
        except PlotError as exc:
            progress.finish()
            return _fail(str(exc))
    progress.finish()
    speed = result.simulated_s / result.wall_s if result.wall_s > 0 else math.inf
    print(
        f"smallbms simulate: {_human(result.simulated_s)} simulated in {result.wall_s:.2f} s "
        f"({speed:,.0f}x real time), {result.ticks} steps, {result.lines} lines",
        file=sys.stderr,
    )
    return 0


def run_scenario(
    scenario: Scenario,
    *,
    dt: float = DEFAULT_DT_S,
    every: float = DEFAULT_EVERY_S,
    sink: Sink,
    keep_samples: bool = False,
    progress: Callable[[float], None] | None = None,
) -> RunResult:
    """Run the scenario, calling ``sink`` with each output line; raises ScenarioError when the
    core rejects something the scenario asks (e.g. its initial SOC)."""
    started = time.perf_counter()
    bank = SimulatedBank(scenario.bank)
    bms = Bms(settings=scenario.settings)
    if scenario.known_soc:
        try:
            bms.command("set_soc", round(min(100.0, bank.true_soc), 3), 0.0)
        except SettingError as exc:
            raise ScenarioError(f"{scenario.origin}: [bank] soc: {exc}") from None
    emitter = _Emitter(
        sink,
        every=every,
        bms=bms,
        bank=bank,
        duration=scenario.duration,
        keep_samples=keep_samples,
    )

    first = scenario.steps[0]
    _enter(bank, first)
    inputs = Inputs(remote=first.remote)
    status = bms.step(bank.read(0.0), inputs, 0.0)
    bank.apply_outputs(status.outputs)
    emitter.consider(0.0, status, first, force=True)

    ticks = 1
    start = 0.0
    for _ in range(scenario.repeat):
        for step in scenario.steps:
            _enter(bank, step)
            inputs = Inputs(remote=step.remote)
            count = max(1, math.ceil(step.duration / dt - 1e-9))
            end = start + step.duration
            read = bank.read
            bms_step = bms.step
            apply = bank.apply_outputs
            consider = emitter.consider
            for i in range(1, count + 1):
                t = end if i == count else start + i * dt
                status = bms_step(read(t), inputs, t)
                apply(status.outputs)
                consider(t, status, step)
                if progress is not None and not i & PROGRESS_EVERY_MASK:
                    progress(t)
            ticks += count
            start = end
    emitter.finish(start, status, scenario.steps[-1])
    return RunResult(
        ticks=ticks,
        simulated_s=start,
        wall_s=time.perf_counter() - started,
        lines=emitter.lines,
        samples=emitter.samples,
        bms=bms,
        bank=bank,
    )


def _enter(bank: SimulatedBank, step: Step) -> None:
    """Set the bank's surroundings for a step (see scenario.py for what persists)."""
    bank.set_environment(
        load=step.load,
        charge=step.charge,
        ambient=step.temperature,
        comms=step.comms,
        charge_voltage=step.charge_voltage,
        cell_offsets={(o.battery, o.cell): o.volts for o in step.cell_offsets},
    )


class _Emitter:
    """Decides which ticks become output lines, and builds them."""

    def __init__(
        self,
        sink: Sink,
        *,
        every: float,
        bms: Bms,
        bank: SimulatedBank,
        duration: float,
        keep_samples: bool,
    ) -> None:
        self.sink = sink
        self.every = every
        self.bms = bms
        self.bank = bank
        self.lines = 0
        self.samples: list[Sample] = []
        self.keep_samples = keep_samples
        self.sample_every = max(duration / PLOT_POINTS, 1e-9)
        self._next_sample = 0.0
        self._next_line = 0.0
        self._last_key: tuple[Any, ...] | None = None
        self._last_t = -1.0

    def consider(self, t: float, status: Status, step: Step, *, force: bool = False) -> None:
        """Called at every step: keep it lean (plain tuple of booleans and code tuples)."""
        o = status.outputs
        key = (o.load, o.charger, o.prealarm, status.warnings, status.alarms, status.errors)
        changed = key != self._last_key
        if changed or force or t >= self._next_line:
            self._last_key = key
            self._emit(t, status, step)
        elif self.keep_samples and t >= self._next_sample:
            self._sample(t, status)

    def finish(self, t: float, status: Status, step: Step) -> None:
        if self._last_t != t:
            self._emit(t, status, step)

    def _sample(self, t: float, status: Status) -> None:
        o = status.outputs
        b = status.bank
        self.samples.append(
            Sample(t, status.soc, self.bank.true_soc, status.voltage, status.current,
                   o.load, o.charger, o.prealarm,
                   b.min_cell_voltage if b else None, b.max_cell_voltage if b else None,
                   tuple(c.value for c in status.codes),
                   self.bms.history().synchronisations)
        )
        self._next_sample = t + self.sample_every

    def _emit(self, t: float, status: Status, step: Step) -> None:
        self._next_line = (math.floor(t / self.every + 1e-9) + 1) * self.every
        self._last_t = t
        self.lines += 1
        if self.keep_samples:
            self._sample(t, status)
        self.sink(line_for(t, status, self.bms, self.bank, step))


def line_for(t: float, status: Status, bms: Bms, bank: SimulatedBank, step: Step) -> dict[str, Any]:
    """One output line (SPEC §8 keys first, then ours)."""
    b = status.bank
    history = bms.history()
    line: dict[str, Any] = {
        "t": _r(t),
        "soc": _r(status.soc),
        "true_soc": _r(bank.true_soc),
        "voltage": _r(status.voltage),
        "current": _r(status.current),
        "min_cell": _r(b.min_cell_voltage if b else None),
        "max_cell": _r(b.max_cell_voltage if b else None),
        "temperature": _r(status.temperature),
        "load": status.outputs.load,
        "charger": status.outputs.charger,
        "prealarm": status.outputs.prealarm,
        "warnings": [c.value for c in status.warnings],
        "alarms": [c.value for c in status.alarms],
        "errors": [c.value for c in status.errors],
        "ttg_min": _r(status.ttg_min),
        "consumed_ah": _r(status.consumed_ah),
        "balancer": b.balancer.value if b else "unknown",
        # ours
        "step": step.number,
        "true_current": _r(bank.true_current),
        "discharge_reason": status.discharge_reason.value if status.discharge_reason else None,
        "charge_reason": status.charge_reason.value if status.charge_reason else None,
        "soc_synchronised": status.soc_synchronised,
        "synchronisations": history.synchronisations,
        "charge_cycles": history.charge_cycles,
        "full_discharges": history.full_discharges,
    }
    if step.label:
        line["label"] = step.label
    return line


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, ROUND)


def _human(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def _rounded(seconds: float) -> str:
    """Simulated time for the progress line: "3.2 d", "5.5 h", "40 s"."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def _fail(message: str) -> int:
    print(f"smallbms simulate: {message}", file=sys.stderr)
    return 2
