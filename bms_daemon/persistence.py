"""When to save the BMS state: a policy between SD-card wear and what a power cut may lose.

SOC and history change a little at every tick; writing them twice a second would wear the card
and flood nothing useful.  So they are saved at most every ``interval_s`` (60 s by default) and
only if they changed; a setting change or a command is saved at once (the user just acted and
expects it to stick); and a last save happens on shutdown.  A power cut therefore loses at most
one interval of coulomb counting, never a setting.

The write itself (JSON, fsync, rename) runs in a worker thread: a slow SD card must never delay
the control loop, which alone drives the outputs and pings the watchdog.  One write at a time; a
request that arrives meanwhile is served by the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from bms_daemon.store import Store

log = structlog.get_logger("smallbms.persistence")

STATE_NAME = "bms"  # the document holding Bms.snapshot() in the state directory
SAVE_INTERVAL_S = 60.0  # default; [bms] save_interval_s


class Persister:
    """Saves ``snapshot()`` to ``store`` under ``STATE_NAME`` following the policy above."""

    def __init__(
        self,
        store: Store,
        snapshot: Callable[[], dict[str, Any]],
        *,
        interval_s: float = SAVE_INTERVAL_S,
        name: str = STATE_NAME,
    ) -> None:
        self.store = store
        self.snapshot = snapshot
        self.interval_s = interval_s
        self.name = name
        self.saves = 0
        self.failures = 0
        self._urgent = False
        self._last_saved: dict[str, Any] | None = None
        self._last_attempt: float | None = None
        self._writing: asyncio.Task[None] | None = None
        self._failing = False

    def request(self, why: str = "") -> None:
        """Ask for a save at the next tick (a setting changed, a command ran)."""
        del why
        self._urgent = True

    def due(self, now: float) -> bool:
        """Whether ``tick`` would start a save now."""
        if self._urgent:
            return True
        return self._last_attempt is None or now - self._last_attempt >= self.interval_s

    def tick(self, now: float) -> None:
        """Called by the control loop: start a background save if one is due and useful."""
        if self._writing is not None and not self._writing.done():
            return
        if not self.due(now):
            return
        self._last_attempt = now
        self._urgent = False
        data = self.snapshot()
        if data == self._last_saved:
            return
        self._writing = asyncio.get_running_loop().create_task(self._write(data))

    async def _write(self, data: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.store.save, self.name, data)
        except (OSError, ValueError, TypeError) as exc:
            self.failures += 1
            if not self._failing:  # log the first failure of a run of them, not every minute
                log.error("state_save_failed", error=str(exc),  # noqa: TRY400
                          action="protection goes on; will retry")
            self._failing = True
            return
        if self._failing:
            log.info("state_save_recovered")
        self._failing = False
        self._last_saved = data
        self.saves += 1

    async def flush(self) -> bool:
        """Save now if anything changed (shutdown); waits for a save in progress first.

        Returns True when the latest state is on disk.
        """
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        data = self.snapshot()
        if data != self._last_saved:
            await self._write(data)
        return data == self._last_saved

    def mark_saved(self, data: dict[str, Any] | None) -> None:
        """Record what is already on disk (the state loaded at start), to skip a useless save."""
        self._last_saved = data
