"""The first minute of a new user: `smallbms run` on its embedded defaults is a BMS at work.

The default simulated bank follows the daily profile (docs/simulated-source.md) from an evening
on a low battery, with a known SOC; `--demo-speed` runs its day faster.  Seen over BLE through
the virtual BlueZ, as `smallbms-client watch` would."""

from __future__ import annotations

from pathlib import Path

import pytest
from ble_harness import running_daemon, until

from bms_daemon.core.types import Status

pytestmark = pytest.mark.ble

DEMO_SPEED = "120"  # the most at 2 Hz: 1 h of the demo day in 30 s


def test_the_embedded_default_daemon_moves(tmp_path: Path) -> None:
    run_args = ["--state-directory", str(tmp_path / "state"), "--demo-speed", DEMO_SPEED]
    with running_daemon(tmp_path, run_args=run_args) as bms, bms.session() as c:
        async def loads_drawing() -> Status | None:
            # The outputs start floating (loads off) until the core's first verdict, so the
            # very first status may show 0 A: wait for the evening loads instead.
            status = await c.status()
            return status if status.current is not None and status.current < -5.0 else None

        # the evening loads: 12 A on the default 100 Ah
        first: Status = bms.run(until(loads_drawing, within=20, what="the loads drawing"),
                                timeout=30)
        assert first.soc is not None  # known from the start, not "unknown"

        async def current_moved() -> Status | None:
            status = await c.status()  # the loads step every 5 simulated minutes
            return status if status.current not in (None, first.current) else None

        async def outputs_changed() -> Status | None:
            status = await c.status()
            return status if status.outputs != first.outputs else None

        bms.run(until(current_moved, within=45, what="the current moving"), timeout=60)
        # from 22 % at 12 A: PRE-ALARM at 20 % (~10 simulated minutes), LOAD floats at 10 %
        later: Status = bms.run(until(outputs_changed, within=60, what="an output switching"),
                                timeout=75)
        assert later.soc is not None
        assert later.soc < first.soc
        assert later.outputs.prealarm or not later.outputs.load
        log = bms.log_path.read_text()
        assert "demo_speed" in log  # marked in the logs
        assert "simulated_day" in log
    # the status line (systemd STATUS=) is marked too: tests/daemon/test_demo_speed.py
