"""When the state is saved: bounded rate, at once on request, never stalling, on shutdown."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from structlog.testing import capture_logs

from bms_daemon.persistence import Change, Persister, change
from bms_daemon.store import MemoryStore, StoreError


class Snapshot:
    def __init__(self) -> None:
        self.value: dict[str, Any] = {"soc": 50.0}

    def __call__(self) -> dict[str, Any]:
        return dict(self.value)


async def _settle(persister: Persister) -> None:
    if persister._writing is not None:
        await persister._writing


async def test_changes_are_saved_at_most_once_per_interval() -> None:
    store, snap = MemoryStore(), Snapshot()
    persister = Persister(store, snap, interval_s=60.0)
    persister.tick(0.0)
    await _settle(persister)
    assert store.saves == 1
    for t in range(1, 60):
        snap.value = {"soc": 50.0 - t / 100}
        persister.tick(float(t))
        await _settle(persister)
    assert store.saves == 1
    persister.tick(60.0)
    await _settle(persister)
    assert store.saves == 2
    assert store.load("bms") == {"soc": 50.0 - 59 / 100}


async def test_nothing_changed_nothing_written() -> None:
    store, snap = MemoryStore(), Snapshot()
    persister = Persister(store, snap, interval_s=10.0)
    persister.mark_saved(snap())
    for t in range(0, 100, 5):
        persister.tick(float(t))
        await _settle(persister)
    assert store.saves == 0


async def test_a_request_saves_at_the_next_tick() -> None:
    store, snap = MemoryStore(), Snapshot()
    persister = Persister(store, snap, interval_s=60.0)
    persister.tick(0.0)
    await _settle(persister)
    snap.value = {"soc": 50.0, "settings": {"discharge_floor": 20}}
    persister.request("setting discharge_floor")
    persister.tick(1.0)
    await _settle(persister)
    assert store.saves == 2
    assert store.load("bms") == snap.value


class BrokenStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.attempts = 0

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        self.attempts += 1
        if self.broken:
            raise StoreError("cannot write /state/bms.json: No space left on device")
        super().save(name, data, secret=secret)


async def test_failing_disk_is_logged_once_and_retried() -> None:
    store, snap = BrokenStore(), Snapshot()
    persister = Persister(store, snap, interval_s=1.0)
    with capture_logs() as logs:
        for t in range(5):
            snap.value = {"soc": float(t)}
            persister.tick(float(t))
            await _settle(persister)
        store.broken = False
        persister.tick(5.0)
        await _settle(persister)
    events = [entry["event"] for entry in logs]
    assert events.count("state_save_failed") == 1
    assert "state_save_recovered" in events
    assert store.attempts == 6
    assert store.load("bms") == {"soc": 4.0}


async def test_the_write_runs_off_the_event_loop() -> None:
    """A slow disk must not block the loop: the save runs in a worker thread."""
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    entered = asyncio.Event()

    class SlowStore(MemoryStore):
        def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
            loop.call_soon_threadsafe(entered.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
            super().save(name, data, secret=secret)

    store = SlowStore()
    persister = Persister(store, Snapshot(), interval_s=1.0)
    persister.tick(0.0)
    await asyncio.wait_for(entered.wait(), 10)
    # the loop is free while the disk is "slow": this coroutine runs, ticks are skipped
    persister.tick(5.0)
    assert store.saves == 0
    release.set()
    await asyncio.wait_for(_settle(persister), 10)
    assert store.saves == 1


async def test_flush_saves_the_latest_state() -> None:
    store, snap = MemoryStore(), Snapshot()
    persister = Persister(store, snap, interval_s=60.0)
    persister.tick(0.0)
    snap.value = {"soc": 12.5}
    assert await persister.flush() is True
    assert store.load("bms") == {"soc": 12.5}
    saves = store.saves
    assert await persister.flush() is True
    assert store.saves == saves


async def test_flush_says_when_the_state_could_not_be_saved() -> None:
    persister = Persister(BrokenStore(), Snapshot(), interval_s=60.0)
    assert await persister.flush() is False


@pytest.mark.parametrize("interval", [5.0, 60.0])
async def test_due(interval: float) -> None:
    persister = Persister(MemoryStore(), Snapshot(), interval_s=interval)
    assert persister.due(0.0)
    persister.tick(0.0)
    assert not persister.due(interval - 0.1)
    assert persister.due(interval)
    await _settle(persister)


# --- what is worth a write (issue 14: SD-card wear) --------------------------------------------
def _counters() -> dict[str, Any]:
    """The counters document of a BMS with a known SOC that has seen one sample."""
    return {
        "version": 1,
        "soc": {"soc": 80.0, "source": "set"},
        "history": {"cumulative_ah_drawn": 12.0, "charge_cycles": 3, "min_bank_voltage": 12.9,
                    "min_temperature": 18.0, "seconds_since_full_charge": 3600.0,
                    "below_65_since_cycle": False},
        "balancer": {"seconds_since_full_charge": 3600.0, "serials": ["HQ1"]},
        "protection": {"cold": False},
    }


class Counters:
    def __init__(self) -> None:
        self.value = _counters()

    def __call__(self) -> dict[str, Any]:
        return copy.deepcopy(self.value)


async def _day(persister: Persister, counters: Counters, change: Any, seconds: int) -> None:
    for t in range(1, seconds + 1):
        change(counters.value, t)
        persister.tick(float(t))
        await _settle(persister)


async def test_an_idle_bank_writes_nothing() -> None:
    """Time passes and the figures drift below what anyone can see: no write all day."""
    store, counters = MemoryStore(), Counters()
    persister = Persister(store, counters, interval_s=1800.0)
    persister.mark_saved(counters())

    def idle(c: dict[str, Any], t: int) -> None:
        c["history"]["seconds_since_full_charge"] = 3600.0 + t
        c["balancer"]["seconds_since_full_charge"] = 3600.0 + t
        c["history"]["min_bank_voltage"] = 12.9 - 2e-7 * t / 3600
        c["soc"]["soc"] = 80.0 - 0.05 * t / (6 * 3600)

    await _day(persister, counters, idle, 6 * 3600)
    assert store.saves == 0
    assert await persister.flush() is True  # at shutdown the time counters are saved too
    assert store.load("bms")["history"]["seconds_since_full_charge"] == 3600.0 + 6 * 3600


async def test_a_moving_soc_is_saved_once_per_interval_bounding_a_power_cut() -> None:
    store, counters = MemoryStore(), Counters()
    persister = Persister(store, counters, interval_s=1800.0)
    persister.mark_saved(counters())

    def discharge(c: dict[str, Any], t: int) -> None:
        c["soc"]["soc"] = 80.0 - t * 0.004  # 30 A on a 750 Ah bank
        saved = store.load("bms")
        lost = (saved or _counters())["soc"]["soc"] - c["soc"]["soc"]
        assert lost <= 0.004 * (1800 + 5)  # a power cut now loses at most one interval

    await _day(persister, counters, discharge, 6 * 3600)
    assert 11 <= store.saves <= 13  # one per 30 min


async def test_an_event_is_saved_within_seconds_whatever_the_interval() -> None:
    store, counters = MemoryStore(), Counters()
    persister = Persister(store, counters, interval_s=1800.0)
    persister.mark_saved(counters())
    persister.tick(0.0)

    def cycle_at_100s(c: dict[str, Any], t: int) -> None:
        if t == 100:
            c["history"]["charge_cycles"] = 4

    await _day(persister, counters, cycle_at_100s, 106)
    assert store.saves == 1
    assert store.load("bms")["history"]["charge_cycles"] == 4


@pytest.mark.parametrize(
    ("section", "name", "value", "expected"),
    [
        ("soc", "soc", 80.09, Change.NONE),
        ("soc", "soc", 79.9, Change.FIGURES),
        ("soc", "source", "synchronised", Change.EVENT),
        ("history", "min_temperature", 17.5, Change.NONE),
        ("history", "min_temperature", 17.0, Change.FIGURES),
        ("history", "seconds_since_full_charge", 7200.0, Change.NONE),
        ("history", "seconds_since_full_charge", 0.0, Change.EVENT),  # a full charge
        ("balancer", "serials", ["HQ1", "HQ2"], Change.EVENT),
        ("protection", "cold", True, Change.EVENT),
        ("bank", "batteries", ["HQ1"], Change.FIGURES),  # a section the policy does not know
    ],
)
def test_what_counts_as_a_change(section: str, name: str, value: object, expected: Change) -> None:
    now = _counters()
    now.setdefault(section, {})[name] = value
    assert change(_counters(), now) == expected
