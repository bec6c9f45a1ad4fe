"""The battery-source contract: where the BMS core gets its readings from (read this first).

**What the daemon sees** is a ``BatterySource``: ``read(now)`` once per control tick, whose
result goes to ``Bms.step``, and ``apply_outputs`` after the outputs were driven (a simulated
bank closes its loop with it; a source that reads real batteries ignores it).  A source with
devices to read is also a ``LiveSource``: the daemon runs its ``run()`` coroutine as a task for
the daemon's whole life and cancels it on the way out.

**The rules every source follows** (the simulated bank trivially, the real ones by building
on ``Feed`` below):

1. ``read(now)`` never waits and never does I/O: it takes the latest data the reader tasks
   left behind and returns at once.  It never raises for a device problem (a bug that raises is
   logged by the daemon and counts as no data).
2. **Stale data is missing data.**  A figure older than its feed's ``max_age`` is not used;
   when the cells, the bank current or the bank voltage is missing, ``read`` returns ``None``
   and the core's comms rules protect the bank: W-B05 after ``comms_warning`` (5 s), A-B05 with
   both outputs floating after ``comms_alarm`` (20 s), counted from the last fresh data.  The
   effective delay after a sender goes silent is therefore ``max_age`` + the core's delay.
3. **A source never invents data.**  A protocol that gives only the lowest and highest cell
   fills ``BatteryReading.min_cell_voltage`` / ``max_cell_voltage`` and leaves
   ``cell_voltages`` empty; one temperature sensor leaves ``min_temperature`` None.  The core's
   rules work on the extremes (every cell rule is a min/max rule); the balancer's per-cell view
   and the per-cell list of the bank page stay empty (docs/sources.md, "what each protocol
   gives").  A source's own alarms and requests go into ``Readings.notes``: shown (log, status,
   ``source-check``), never obeyed: smallbms's own rules decide the outputs.
4. **Lifecycle.**  ``run()`` opens the device, reads in reader tasks (a thread for a blocking
   library such as pyserial or python-can, a callback for an async one such as bleak), and when
   the device disappears (USB adapter unplugged, interface down, radio off) closes it, says so
   once in the log, waits (1 s, doubling up to 30 s; back to 1 s after data flowed again) and
   reopens it.  It returns only when cancelled, and then leaves no thread or handle behind.
5. **Bad input** (malformed, short, unknown, bad checksum, garbage, a flood): never a crash;
   what cannot be trusted is dropped and counted in ``FeedStats``; the first drop of each kind
   is logged, the rest only counted (``smallbms source-check`` shows the counts).

**Writing a real source** (e.g. a Bluetooth one): subclass ``Feed``; set ``kind`` (the
``[source] type``) and ``provides`` (which ``Quantity`` it can give); implement ``session()``
(open, read until the device fails, ``publish`` each decoded ``Sample``, call
``self.connected()`` once the device is open); give the module a ``from_table(table, where,
battery)`` that builds it from its config table (see ``bms_daemon.sources.spec``) and register
its type in ``spec.FEED_TYPES``.  ``CombinedSource`` turns one or more feeds into the
``BatterySource`` the daemon reads, taking each quantity from the feed the configuration names
(``[source] cells / current / voltage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, runtime_checkable

import structlog

from bms_daemon.core.types import BatteryReading, Outputs, Readings

log = structlog.get_logger("smallbms.sources")

RECONNECT_FIRST_S = 1.0  # a device that went away is reopened after 1 s, doubling ...
RECONNECT_MAX_S = 30.0  # ... up to every 30 s
DEFAULT_MAX_AGE_S = 3.0  # (ours) data older than this is stale; BMSes and shunts send every ~1 s


@runtime_checkable
class BatterySource(Protocol):
    """Something that reports the bank's batteries to the BMS."""

    def read(self, now: float) -> Readings | None:
        """The bank as it is at ``now`` (monotonic seconds), or None when no fresh data came."""
        ...

    def apply_outputs(self, outputs: Outputs) -> None:
        """Tell the source what the BMS's LOAD, CHARGER and PRE-ALARM terminals now do."""
        ...


@runtime_checkable
class LiveSource(BatterySource, Protocol):
    """A source with devices to read: the daemon runs ``run()`` beside the control loop."""

    async def run(self) -> None:
        """Read the devices until cancelled; reconnect with backoff; never raise otherwise."""
        ...


class Quantity(StrEnum):
    """What a feed can provide; the configuration says which feed provides each."""

    CELLS = "cells"  # the batteries: cell voltages (or their extremes) and temperatures
    CURRENT = "current"  # the bank current (what SOC counts)
    VOLTAGE = "voltage"  # the bank voltage


@dataclass(frozen=True, slots=True)
class Sample:
    """What a feed last decoded.  ``at`` = monotonic time of its *oldest* part, so a sample
    assembled from several frames is as stale as its stalest frame."""

    at: float
    batteries: tuple[BatteryReading, ...] = ()
    voltage: float | None = None
    current: float | None = None
    notes: tuple[str, ...] = ()
    extra: tuple[tuple[str, float | str], ...] = ()  # shown by source-check (e.g. shunt SOC)


@dataclass(slots=True)
class FeedStats:
    """Counters a feed keeps for ``source-check`` and the logs (written by its reader)."""

    frames: int = 0  # decoded and used
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    connects: int = 0
    connected: bool = False
    problem: str = ""  # the last reason the device was not readable

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class Feed(ABC):
    """One device read by one protocol (a CAN bus, a VE.Direct port, a radio).  See the
    module doc for the contract; subclasses implement ``session``."""

    kind: ClassVar[str] = ""
    provides: ClassVar[frozenset[Quantity]] = frozenset()

    def __init__(
        self,
        name: str,
        *,
        max_age: float = DEFAULT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.max_age = max_age
        self.clock = clock
        self.stats = FeedStats()
        self._sample: Sample | None = None
        self._said: set[str] = set()
        self.log = log.bind(source=name, type=self.kind)

    # --- the control loop's side (never waits) --------------------------------------------------
    def latest(self, now: float) -> Sample | None:
        """The last sample if it is fresh at ``now``, else None."""
        sample = self._sample
        if sample is None or now - sample.at > self.max_age:
            return None
        return sample

    def last_sample(self) -> Sample | None:
        """The last sample, fresh or not (for ``source-check``)."""
        return self._sample

    # --- the reader's side ----------------------------------------------------------------------
    def publish(self, sample: Sample) -> None:
        """Make ``sample`` the latest (one reference swap: safe from a reader thread)."""
        self._sample = sample
        self.stats.frames += 1

    def drop(self, reason: str, detail: str = "") -> None:
        """Count an input that cannot be trusted; the first of each reason is logged."""
        dropped = self.stats.dropped
        dropped[reason] = dropped.get(reason, 0) + 1
        if reason not in self._said:
            self._said.add(reason)
            self.log.warning("source_input_dropped", reason=reason, detail=detail,
                             note="further drops of this kind are counted, not logged")

    def connected(self) -> None:
        """The device is open; called by ``session`` once."""
        stats = self.stats
        stats.connects += 1
        stats.connected = True
        if stats.problem:
            self.log.info("source_connected", after=stats.problem)
        else:
            self.log.info("source_connected")
        stats.problem = ""

    @abstractmethod
    async def session(self) -> None:
        """Open the device, read it until it fails (raise) or ends (return)."""

    async def run(self) -> None:
        """Sessions one after the other, with backoff between them; only cancelling ends it."""
        delay = RECONNECT_FIRST_S
        while True:
            frames_before = self.stats.frames
            try:
                await self.session()
                problem = "the device closed"
            except asyncio.CancelledError:
                self.stats.connected = False
                raise
            except Exception as exc:  # every device failure is a reconnect, never a crash
                problem = describe(exc)
            stats = self.stats
            stats.connected = False
            if stats.frames != frames_before:
                delay = RECONNECT_FIRST_S  # it worked for a while: retry quickly
            if problem != stats.problem:
                self.log.warning("source_unavailable", problem=problem, retry_in_s=delay)
            stats.problem = problem
            await asyncio.sleep(delay)
            delay = min(delay * 2.0, RECONNECT_MAX_S)


def describe(exc: BaseException) -> str:
    """An exception in one line for a log or a status (no traceback: a device problem)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def close_soon(close: Callable[[], object], name: str) -> None:
    """Close a device without blocking the loop: a driver's close may write to the device
    (slcan sends "C\\r") and a write to a port nobody reads can block.  Errors are ignored:
    the device is gone either way."""

    def target() -> None:
        with contextlib.suppress(Exception):
            close()

    threading.Thread(target=target, name=name, daemon=True).start()


async def in_thread(work: Callable[[], None], name: str) -> None:
    """Run blocking ``work`` in a thread of its own and wait for it without blocking the loop.

    ``work`` must return soon after its device is closed (blocking reads use a timeout and check
    a stop flag), because a cancelled wait leaves the thread running until it does.  Its
    exception is re-raised here.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # handed to the waiting task, whatever it is
            error = exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    await done
