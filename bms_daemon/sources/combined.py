"""``CombinedSource``: the ``BatterySource`` made of one or more feeds, each quantity from one.

A real installation takes its cells from a BMS (CAN, Bluetooth) and often its bank current
from a shunt (VE.Direct): the configuration names, per quantity, the feed that provides it.
``read(now)`` asks each of those feeds for its latest *fresh* sample; if any of the three
quantities is missing or stale the whole reading is None (rule 2 of ``sources.base``), so the
core's comms rules take over.  It never waits and never touches a device.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from bms_daemon.core.types import Outputs, Readings
from bms_daemon.sources.base import Feed, Quantity, Sample


class CombinedSource:
    """A ``LiveSource`` over ``feeds`` with ``providers[quantity]`` = the feed's name."""

    def __init__(self, feeds: Mapping[str, Feed], providers: Mapping[Quantity, str]) -> None:
        missing = [q for q in Quantity if q not in providers]
        if missing:
            raise ValueError(f"no feed provides {', '.join(missing)}")
        self.feeds = dict(feeds)
        self.providers = dict(providers)
        self._cells = self.feeds[providers[Quantity.CELLS]]
        self._current = self.feeds[providers[Quantity.CURRENT]]
        self._voltage = self.feeds[providers[Quantity.VOLTAGE]]

    def read(self, now: float) -> Readings | None:
        """The bank from the latest fresh samples, or None when a quantity is missing."""
        cells = self._cells.latest(now)
        if cells is None or not cells.batteries:
            return None
        current_sample = cells if self._current is self._cells else self._current.latest(now)
        voltage_sample = cells if self._voltage is self._cells else self._voltage.latest(now)
        if current_sample is None or voltage_sample is None:
            return None
        current = current_sample.current
        voltage = voltage_sample.voltage
        if current is None or voltage is None:
            return None
        notes = cells.notes
        if current_sample is not cells and current_sample.notes:
            notes = notes + current_sample.notes
        return Readings(cells.batteries, voltage, current, notes)

    def apply_outputs(self, outputs: Outputs) -> None:
        """Real batteries are not driven by the BMS's terminals: nothing to do."""
        del outputs

    def samples(self, now: float) -> dict[str, Sample | None]:
        """Each feed's latest fresh sample (``source-check`` shows them)."""
        return {name: feed.latest(now) for name, feed in self.feeds.items()}

    async def run(self) -> None:
        """Every feed's reader, until cancelled (each feed reconnects on its own)."""
        async with asyncio.TaskGroup() as group:
            for name, feed in self.feeds.items():
                group.create_task(feed.run(), name=f"source:{name}")
