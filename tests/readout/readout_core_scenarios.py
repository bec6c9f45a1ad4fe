"""The issue's scenarios as the real core reports them (normal, pre-alarm, load disconnect, cold,
comms lost): a ``Bms`` stepped with hand-made readings of one 12.8 V battery."""

from __future__ import annotations

from collections.abc import Iterator

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import BatteryReading, Inputs, Readings, Status

SCENARIO_NAMES = ("normal", "pre-alarm", "load disconnect", "cold", "comms lost")
TICK_S = 1.0
COMMS_LOST_AFTER_S = 25  # past the core's 20 s alarm delay (SPEC §4)


def readings(
    *, cell: float = 3.30, low_cell: float | None = None, current: float = -5.0,
    temperature: float = 25.0,
) -> Readings:
    """One 12.8V-100Ah battery (4 cells), optionally with one low cell."""
    cells = (low_cell if low_cell is not None else cell, cell, cell, cell)
    battery = BatteryReading(
        serial="HQ0001", model="12.8V-100Ah", firmware="v1.07", voltage=sum(cells),
        current=current, temperature=temperature, cell_voltages=cells,
    )
    return Readings((battery,), sum(cells), current)


def samples(name: str) -> Iterator[Readings | None]:
    """What the battery source delivers, tick by tick, for a scenario (endless)."""
    if name == "pre-alarm":
        fresh = readings(low_cell=3.05)
    elif name == "cold":
        fresh = readings(temperature=3.0)
    else:
        fresh = readings()
    for tick in range(10**9):
        if name == "comms lost" and tick > 2:
            yield None
        else:
            yield fresh


def initial_soc(name: str) -> float:
    return 9.0 if name == "load disconnect" else 80.0  # 9 % is under the 10 % discharge floor


def settle(name: str) -> tuple[Bms, Status]:
    """A core that has run the scenario long enough for its verdict to be in force."""
    bms = Bms()
    bms.command("set_soc", initial_soc(name), 0.0)
    source = samples(name)
    now = 0.0
    status = bms.step(next(source), Inputs(), now)
    for _ in range(COMMS_LOST_AFTER_S + 5):
        now += TICK_S
        status = bms.step(next(source), Inputs(), now)
    return bms, status
