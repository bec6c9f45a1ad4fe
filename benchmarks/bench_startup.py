"""Start-up cost of the two command lines, against starting Python itself, in CPU time.

Each command runs ``--runs`` times, interleaved with the baselines (``python -c pass`` of the
same virtual environment, and ``python -c "import bleak"`` for scale), and the median CPU time
(user + system, of the child process) of each is printed with its ratio to ``python -c pass``.
CPU time rather than wall time: the machine may be shared.  Goal: ``--help`` of both commands
within 2x ``python -c pass`` (a Pi is 5-10x slower than a desktop at importing).

    .venv/bin/python benchmarks/bench_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL_RATIO = 2.0
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    'python -c "import bleak"': [sys.executable, "-c", "import bleak"],
    "smallbms --help": [str(BIN / "smallbms"), "--help"],
    "smallbms simulate --help": [str(BIN / "smallbms"), "simulate", "--help"],
    "smallbms-client --help": [str(BIN / "smallbms-client"), "--help"],
    "smallbms-client status --help": [str(BIN / "smallbms-client"), "status", "--help"],
}
GOALS = ("smallbms --help", "smallbms-client --help")


def cpu_of(command: list[str]) -> float:
    """CPU seconds (user + system) that one run of ``command`` took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():
        cpu_of(command)  # warm the page cache and the bytecode cache
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            samples[name].append(cpu_of(command))
    base = statistics.median(samples["python -c pass"])
    print(f"start-up CPU time, median of {args.runs} interleaved runs (user + system):")
    for name, values in samples.items():
        median = statistics.median(values)
        ratio = median / base
        verdict = ""
        if name in GOALS:
            verdict = "  goal met" if ratio <= GOAL_RATIO else "  GOAL MISSED"
            verdict += f" (goal <= {GOAL_RATIO:g}x)"
        print(f"  {name:<30} {median * 1e3:6.1f} ms  {ratio:4.1f}x python -c pass{verdict}")


if __name__ == "__main__":
    main()
