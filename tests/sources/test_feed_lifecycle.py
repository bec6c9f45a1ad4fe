"""The source lifecycle: reader tasks on python-can's virtual bus, reconnection with backoff,
``read(now)`` that never waits, stale data that counts as missing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import can
import pytest

from bms_daemon.core.types import BatteryModel, Outputs
from bms_daemon.sources import base
from bms_daemon.sources.base import Feed, Quantity, Sample
from bms_daemon.sources.can import CanFeed, frames_for
from bms_daemon.sources.combined import CombinedSource
from bms_daemon.sources.spec import BatteryDescription

PACK = BatteryDescription(BatteryModel("Test 16S", 51.2, 100.0, 16), "can:test")
HEALTHY = {"voltage": 53.0, "current": -12.0, "temperature": 21.0, "min_cell_voltage": 3.30,
           "max_cell_voltage": 3.33, "min_cell_temperature": 293.15 - 273.15,
           "max_cell_temperature": 295.15 - 273.15, "soc": 80, "modules_online": 1}
_channels = itertools.count()


async def eventually(check: Callable[[], bool], within: float = 20.0) -> None:
    """Wait (without a timed assertion) until ``check()`` holds; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def send_burst(bus: can.BusABC, values: dict[str, float]) -> None:
    for frame, data in frames_for(values):
        bus.send(can.Message(arbitration_id=frame, data=data, is_extended_id=False))


async def test_a_can_feed_reads_the_virtual_bus_and_read_never_waits() -> None:
    channel = f"lifecycle-{next(_channels)}"
    feed = CanFeed("bms", PACK, interface="virtual", channel=channel, bitrate=None)
    source = CombinedSource({"bms": feed}, dict.fromkeys(Quantity, "bms"))
    task = asyncio.create_task(source.run())
    try:
        await eventually(lambda: feed.stats.connected)
        with can.Bus(interface="virtual", channel=channel) as sender:
            send_burst(sender, HEALTHY)
            await eventually(lambda: source.read(time.monotonic()) is not None)
        readings = source.read(time.monotonic())
        assert readings is not None
        assert readings.bank_voltage == pytest.approx(53.0)
        assert readings.bank_current == pytest.approx(-12.0)
        assert readings.batteries[0].min_cell_voltage == pytest.approx(3.30)
        source.apply_outputs(Outputs.safe())  # a real bank is not driven: nothing happens
        assert source.read(time.monotonic() + feed.max_age + 0.1) is None  # stale = missing
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not feed.stats.connected


async def test_a_flood_of_frames_is_decoded_without_loss_of_the_latest() -> None:
    channel = f"flood-{next(_channels)}"
    feed = CanFeed("bms", PACK, interface="virtual", channel=channel, bitrate=None)
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: feed.stats.connected)
        with can.Bus(interface="virtual", channel=channel) as sender:
            for i in range(2000):
                sender.send(can.Message(arbitration_id=0x7A0 + i % 16, data=b"\xff" * 8,
                                        is_extended_id=False))
            send_burst(sender, {**HEALTHY, "min_cell_voltage": 3.01})
            await eventually(lambda: (s := feed.last_sample()) is not None
                             and s.batteries[0].min_cell_voltage == pytest.approx(3.01))
        assert feed.stats.dropped == {"unknown frame id": 2000}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class FlakyFeed(Feed):
    """A device that fails to open ``failures`` times, then delivers one sample."""

    kind = "flaky"
    provides = frozenset({Quantity.CURRENT, Quantity.VOLTAGE})

    def __init__(self, failures: int) -> None:
        super().__init__("flaky")
        self.failures = failures
        self.opened = 0

    async def session(self) -> None:
        self.opened += 1
        if self.opened <= self.failures:
            raise OSError(19, "No such device")
        self.connected()
        self.publish(Sample(at=self.clock(), voltage=13.0, current=1.0))
        await asyncio.Event().wait()


async def test_a_device_that_is_missing_is_retried_with_backoff_and_said_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(base, "RECONNECT_FIRST_S", 0.01)
    warnings: list[tuple[str, dict[str, object]]] = []
    feed = FlakyFeed(failures=4)
    monkeypatch.setattr(feed, "log", _Recorder(warnings))
    task = asyncio.create_task(feed.run())
    try:
        await eventually(lambda: feed.latest(time.monotonic()) is not None)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert feed.opened == 5
    unavailable = [fields for event, fields in warnings if event == "source_unavailable"]
    assert len(unavailable) == 1  # the same problem four times: said once
    assert unavailable[0]["problem"] == "OSError: [Errno 19] No such device"
    assert [e for e, _ in warnings].count("source_connected") == 1
    assert feed.stats.connects == 1


class _Recorder:
    def __init__(self, into: list[tuple[str, dict[str, object]]]) -> None:
        self.into = into

    def _log(self, event: str, **fields: object) -> None:
        self.into.append((event, fields))

    warning = info = error = _log
