"""The Victron Bluetooth feed on an in-memory radio: what the BMS reads, and bad input."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
import structlog

from bms_daemon.sources import create_source
from bms_daemon.sources.base import Quantity
from bms_daemon.sources.combined import CombinedSource
from bms_daemon.sources.spec import BatteryDescription, FeedConfig, battery_description
from bms_daemon.sources.victron import encode, feed
from bms_daemon.sources.victron.radio import MemoryRadio

KEYS = [bytes([k]) + bytes.fromhex("f4d0395b7d1a876c0c33ecb9e70dcd") for k in (0x11, 0x22, 0x33)]
ADDRESSES = ["D8:1A:00:00:00:01", "D8:1A:00:00:00:02", "C1:3E:00:00:00:03"]
CELLS = [3.30, 3.31, 3.29, 3.30]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "victron-ble",
        "battery": {"name": "Smart Lithium 12.8V/100Ah", "cells": 4, "capacity_ah": 100},
        "batteries": [
            {"name": "house-1", "address": ADDRESSES[0].lower(), "key": KEYS[0].hex()},
            {"name": "house-2", "address": ADDRESSES[1], "key": KEYS[1].hex()},
        ],
        "monitor": {"address": ADDRESSES[2], "key": KEYS[2].hex()},
    }
    base.update(overrides)
    return base


def build(clock: Clock, **overrides: Any) -> tuple[feed.VictronFeed, MemoryRadio]:
    radio = MemoryRadio()
    t = table(**overrides)
    description = battery_description(t["battery"], "[source]", "x") if "battery" in t else None
    common = FeedConfig("source", "[source]", 3.0, description)
    made = feed.from_table(t, common, radio=radio)
    made.clock = clock
    return made, radio


class Bank:
    """Two batteries and a shunt that send through the radio."""

    def __init__(self, radio: MemoryRadio) -> None:
        self.radio = radio
        self.batteries = [encode.DeviceEncoder.battery(KEYS[0], nonce=500),
                          encode.DeviceEncoder.battery(KEYS[1], nonce=9000)]
        self.shunt = encode.DeviceEncoder.monitor(KEYS[2])

    def send(self, cells: list[float] = CELLS, current: float = -5.0, **kw: Any) -> None:
        for address, device in zip(ADDRESSES, self.batteries, strict=False):
            self.radio.send(address, device.frame(encode.lithium_record(cells, **kw)))
        self.radio.send(ADDRESSES[2], self.shunt.frame(
            encode.monitor_record(voltage=13.2, current=current, soc=80.0, consumed_ah=20.0)))


@contextlib.asynccontextmanager
async def running(made: feed.VictronFeed) -> Any:
    task = asyncio.create_task(made.run())
    try:
        for _ in range(100):
            if made.stats.connected:
                break
            await asyncio.sleep(0.01)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_batteries_and_shunt_make_a_reading() -> None:
    clock = Clock()
    made, radio = build(clock)
    source = CombinedSource({"source": made}, dict.fromkeys(Quantity, "source"))
    async with running(made):
        Bank(radio).send()
    readings = source.read(clock.now)
    assert readings is not None
    assert [b.cell_voltages for b in readings.batteries] == [tuple(CELLS)] * 2
    assert [b.serial for b in readings.batteries] == ["house-1", "house-2"]
    assert readings.batteries[0].description is not None
    assert readings.bank_current == -5.0
    assert readings.bank_voltage == 13.2
    assert readings.notes == ()


async def test_a_silent_battery_makes_the_reading_stale() -> None:
    clock = Clock()
    made, radio = build(clock)
    source = CombinedSource({"source": made}, dict.fromkeys(Quantity, "source"))
    bank = Bank(radio)
    async with running(made):
        bank.send()
        clock.now += 8.0
        # house-2 goes silent; house-1 and the shunt go on
        radio.send(ADDRESSES[0], bank.batteries[0].frame(encode.lithium_record(CELLS)))
        radio.send(ADDRESSES[2], bank.shunt.frame(encode.monitor_record(voltage=13.2,
                                                                       current=-5.0)))
        assert source.read(clock.now) is not None  # 8 s: within the radio's 10 s
        clock.now += 2.5
        assert source.read(clock.now) is None  # house-2 last heard 10.5 s ago


async def test_repeated_frames_keep_an_idle_bank_fresh() -> None:
    clock = Clock()
    made, radio = build(clock)
    source = CombinedSource({"source": made}, dict.fromkeys(Quantity, "source"))
    frames = []
    bank = Bank(radio)
    async with running(made):
        bank.send()
        for device, address in zip(bank.batteries, ADDRESSES, strict=False):
            frames.append((address, device.frame(encode.lithium_record(CELLS))))
        frames.append((ADDRESSES[2], bank.shunt.frame(
            encode.monitor_record(voltage=13.2, current=0.0))))
        for _ in range(6):  # a minute of the same frames, repeated every 10 s
            clock.now += 9.0
            for address, data in frames:
                radio.send(address, data)
            assert source.read(clock.now) is not None
    assert made.devices(clock.now)[0]["repeated"] == 5


async def test_battery_flags_and_shunt_alarms_are_notes_not_orders() -> None:
    clock = Clock()
    made, radio = build(clock)
    source = CombinedSource({"source": made}, dict.fromkeys(Quantity, "source"))
    bank = Bank(radio)
    flags = encode.bms_flags(allowed_to_discharge=False, alarms=("low_voltage",))
    with structlog.testing.capture_logs() as logs:
        async with running(made):
            bank.send(flags=flags, balancer=3)
            bank.send(flags=flags, balancer=3)
    readings = source.read(clock.now)
    assert readings is not None
    assert "house-1: BMS alarm low_voltage" in readings.notes
    assert "house-2: battery BMS does not allow discharging" in readings.notes
    assert "house-1: cell imbalance" in readings.notes
    assert [e["event"] for e in logs].count("victron_device_alarms") == 1


async def test_other_devices_and_garbage_never_make_a_reading() -> None:
    clock = Clock()
    made, radio = build(clock)
    source = CombinedSource({"source": made}, dict.fromkeys(Quantity, "source"))
    bank = Bank(radio)
    async with running(made):
        radio.send("AA:BB:CC:DD:EE:FF", bank.batteries[0].frame(encode.lithium_record(CELLS)))
        radio.send(ADDRESSES[0], b"\x10\x02")
        radio.send(ADDRESSES[0], bank.batteries[0].frame(encode.lithium_record(CELLS))[:-3])
        # the shunt's key on a battery's address: wrong key
        radio.send(ADDRESSES[1], bank.shunt.frame(encode.lithium_record(CELLS)))
        assert source.read(clock.now) is None
        for _ in range(2000):  # a flood from 200 devices nobody configured
            radio.send(f"AA:BB:CC:DD:{_ % 200 // 16:02X}:{_ % 16:02X}", b"\x10" * 24)
    rows = {row["name"]: row for row in made.devices(clock.now)}
    assert rows["house-1"]["not_victron"] == 1
    assert rows["house-1"]["truncated"] == 1
    assert rows["house-2"]["other_record"] == 1
    assert rows["house-1"]["age_s"] is None


def test_what_the_feed_provides_depends_on_its_devices() -> None:
    t = table()
    del t["monitor"]
    assert feed.provides_for(t) == {Quantity.CELLS}
    t2 = table(batteries=[])
    assert feed.provides_for(t2) == {Quantity.CURRENT, Quantity.VOLTAGE}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batteries": [{"address": "nope", "key": KEYS[0].hex()}]}, "not a Bluetooth address"),
        ({"batteries": [{"address": ADDRESSES[0], "key": "12"}]}, "32 hexadecimal digits"),
        ({"batteries": [{"address": ADDRESSES[0]}]}, "key: missing; VictronConnect"),
        ({"batteries": [{"address": ADDRESSES[2], "key": KEYS[0].hex()}]}, "listed twice"),
        ({"batteries": "x"}, "must be a list"),
        ({"scan": "loud"}, "scan"),
        ({"adapter": "usb0"}, "not an adapter name"),
        ({"batteries": [{"address": ADDRESSES[0], "key": KEYS[0].hex(), "pin": 1}]}, "pin"),
    ],
)
def test_bad_configuration_is_refused_with_the_key_named(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        create_source(table(**change))


def test_the_source_is_made_from_the_config_with_radio_defaults() -> None:
    source = create_source(table())
    assert isinstance(source, CombinedSource)
    (made,) = source.feeds.values()
    assert isinstance(made, feed.VictronFeed)
    assert made.max_age == feed.RADIO_MAX_AGE_S
    assert isinstance(made.description, BatteryDescription)
    explicit = create_source(table(max_age="4s"))
    assert isinstance(explicit, CombinedSource)
    assert [f.max_age for f in explicit.feeds.values()] == [4.0]


def test_the_logged_configuration_summary_hides_the_keys() -> None:
    from bms_daemon import config  # noqa: PLC0415

    text = config.summary(config.from_table({"source": table()}, "<test>"))
    assert "house-1" in text
    assert "<hidden>" in text
    for key in KEYS:
        assert key.hex() not in text


async def test_a_device_that_goes_silent_is_said_once_and_its_return_too() -> None:
    clock = Clock()
    made, radio = build(clock)
    bank = Bank(radio)
    with structlog.testing.capture_logs() as logs:
        async with running(made):
            bank.send()
            clock.now += 11.0
            made._say_silent(clock.now)
            made._say_silent(clock.now + 5)
            bank.send()
            made._say_silent(clock.now)
    events = [(e["event"], e.get("device")) for e in logs if "device" in e]
    assert events.count(("victron_device_silent", "house-1")) == 1
    assert ("victron_device_heard_again", "house-1") in events
