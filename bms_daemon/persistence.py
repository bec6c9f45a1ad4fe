"""When to save the BMS counters: a policy between SD-card wear and what a power cut may lose.

SOC and history change a little at every tick; writing them at every change would wear the
card (each atomic, fsynced save costs some 20 KB at the block layer with ext4's journal), and
most of those changes are too small for anyone to see.  The policy, comparing the state now with
the state last saved:

- **events** (a count or a flag of the history, where the SOC came from, the balancer's
  batteries, a protection latch, the first extreme ever, a time counter reset by a full charge)
  are saved within ``CHECK_INTERVAL_S`` (5 s): they are rare, and a restart must not miscount
  them;
- **figures** (SOC, Ah, kWh, the history's extremes) are saved once they moved by at least what
  a user can see (``RESOLUTION``: 0.1 % SOC, 0.1 Ah, 0.01 kWh, 0.01 V, 1 °C), and then at most
  every ``interval_s`` (``[bms] save_interval_s``, default ``SAVE_INTERVAL_S`` = 45 min).  **A
  power cut therefore loses at most one interval of coulomb counting and history figures**,
  never an event, never a setting (45 min keeps a bank in use under 1 MB a day at the block
  layer: benchmarks/bench_flash_wear.py);
- the **time since the last full charge** (history and balancer) never causes a save by itself:
  it is saved along with the next save, so an idle bank (no current, steady figures) writes
  nothing at all, and after a power cut in a long idle spell that time resumes from the last
  save (it undercounts; it is not used by any protection rule);
- a command (``request``) is saved at the next tick, and everything at shutdown (``flush``).

The state is compared every ``CHECK_INTERVAL_S`` (or ``interval_s`` if shorter), not at every
tick: taking a snapshot is the only cost of the policy, and events may wait a few seconds.

Settings are not this module's business: the controller writes them (fsynced) before it
answers the client (``bms_daemon.state.layout.SettingsFile``).

The write itself (JSON, fsync, rename) runs in a worker thread: a slow SD card must never delay
the control loop, which alone drives the outputs and pings the watchdog.  One write at a time; a
request that arrives meanwhile is served by the next one.  A failed write is retried after
``interval_s``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from bms_daemon.store import Store

log = structlog.get_logger("smallbms.persistence")

STATE_NAME = "bms"  # the document holding the counters in the state directory
SAVE_INTERVAL_S = 2700.0  # default; [bms] save_interval_s
CHECK_INTERVAL_S = 5.0  # how often the state is compared with the last save
# What a user can see of each figure (VictronConnect's display): smaller moves are not saved.
RESOLUTION: dict[tuple[str, str], float] = {
    ("soc", "soc"): 0.1,  # %
    ("history", "deepest_discharge_ah"): 0.1,
    ("history", "last_discharge_ah"): 0.1,
    ("history", "cumulative_ah_drawn"): 0.1,
    ("history", "discharged_energy_kwh"): 0.01,
    ("history", "charged_energy_kwh"): 0.01,
    ("history", "min_bank_voltage"): 0.01,
    ("history", "max_bank_voltage"): 0.01,
    ("history", "min_cell_voltage"): 0.01,
    ("history", "max_cell_voltage"): 0.01,
    ("history", "min_temperature"): 1.0,
    ("history", "max_temperature"): 1.0,
}
# Time counters: saved with the rest, never a reason to save (except a reset, an event).
CLOCKS = frozenset({("history", "seconds_since_full_charge"),
                    ("balancer", "seconds_since_full_charge")})
# Sections whose other fields are events (counts, flags, sources, latches, battery serials).
EVENT_SECTIONS = frozenset({"soc", "history", "balancer", "protection"})


class Change(enum.IntEnum):
    """How much the state moved since the last save (ordered: the largest wins)."""

    NONE = 0  # nothing, or less than a user can see, or only time
    FIGURES = 1  # a figure moved by its resolution: saved within the interval
    EVENT = 2  # saved at the next tick


def change(saved: Mapping[str, Any] | None, now: Mapping[str, Any]) -> Change:
    """Classify the difference between the last saved counters and the counters ``now``.

    Fields this policy does not know (a section added later) count as figures: saved within
    the interval, never lost for more than that.
    """
    if saved is None:
        return Change.EVENT
    before, after = _fields(saved), _fields(now)
    if before.keys() - after.keys():
        return Change.EVENT  # a field disappeared (a reset to defaults)
    worst = Change.NONE
    for path, new in after.items():
        old = before.get(path, _MISSING)
        if old != new:
            worst = max(worst, _field_change(path, old, new))
            if worst == Change.EVENT:
                break
    return worst


_MISSING = object()


def _fields(document: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """``{(section, field): value}``; a top-level value that is not a table is ``(key, "")``."""
    flat: dict[tuple[str, str], Any] = {}
    for section, value in document.items():
        if isinstance(value, Mapping):
            for name, item in value.items():
                flat[(section, name)] = item
        else:
            flat[(section, "")] = value
    return flat


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_change(path: tuple[str, str], old: object, new: object) -> Change:
    if path in CLOCKS:
        if old is None or new is None or not (_number(old) and _number(new)):
            return Change.EVENT  # first full charge, or a reset to "never"
        return Change.EVENT if new < old else Change.NONE  # type: ignore[operator]
    resolution = RESOLUTION.get(path)
    if resolution is not None and _number(old) and _number(new):
        moved = abs(new - old) >= resolution * (1.0 - 1e-9)  # type: ignore[operator]
        return Change.FIGURES if moved else Change.NONE
    if path[0] in EVENT_SECTIONS and path[1]:
        return Change.EVENT
    return Change.FIGURES


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
        self._last_check: float | None = None
        self._check_s = min(CHECK_INTERVAL_S, interval_s)
        self._writing: asyncio.Task[None] | None = None
        self._failing = False

    def request(self, why: str = "") -> None:
        """Ask for a save at the next tick (a command ran: its effect is an event)."""
        del why
        self._urgent = True

    def due(self, now: float) -> bool:
        """Whether the interval lets changed figures be saved now (events do not wait)."""
        if self._urgent:
            return True
        return self._last_attempt is None or now - self._last_attempt >= self.interval_s

    def tick(self, now: float) -> None:
        """Called by the control loop: start a background save when the policy says so."""
        if self._writing is not None and not self._writing.done():
            return
        last = self._last_check
        if not self._urgent and last is not None and 0.0 <= now - last < self._check_s:
            return
        self._last_check = now
        data = self.snapshot()
        if self._urgent:
            self._urgent = False
            moved = Change.EVENT if data != self._last_saved else Change.NONE
        else:
            moved = change(self._last_saved, data)
        if moved == Change.NONE:
            return
        if (moved == Change.FIGURES or self._failing) and not self.due(now):
            return  # figures wait for the interval; a failing disk is retried once per interval
        self._last_attempt = now
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
