"""``--help`` of both command lines imports only what it shows (start-up time on a Pi).

Start-up is measured by benchmarks/bench_startup.py; this checks the cause: which modules a
``--help`` loads, in a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("bleak", "asyncio", "dbus_fast", "bms_daemon.core.bms", "structlog", "cryptography")

PROBE = """
import contextlib, io, sys
from {module} import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main({argv!r})
print(" ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _loaded(module: str, argv: list[str]) -> str:
    code = PROBE.format(module=module, argv=argv, heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


@pytest.mark.parametrize("module", ["bms_daemon.cli", "gatt.client_cli"])
def test_help_loads_no_heavy_module(module: str) -> None:
    assert _loaded(module, ["--help"]) == ""


def test_a_subcommand_loads_what_it_needs_only() -> None:
    loaded = _loaded("bms_daemon.cli", ["simulate", "--help"])
    assert "bms_daemon.core.bms" in loaded
    assert "bleak" not in loaded
