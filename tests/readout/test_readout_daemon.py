"""The whole daemon on the virtual BlueZ: the simulated bank runs, the readout on air is the
daemon's own status (decoded by victron-ble), and the nonce survives a restart and a SIGKILL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from readout_helpers import victron_decode
from test_readout_ble import Frames, scanning

from bms_daemon import config as config_module
from bms_daemon.core.types import Status
from bms_daemon.daemon import Daemon, build
from bms_daemon.store import FileStore
from gatt.readout import decode_manufacturer_data, pack_record, parse_header, readout_from_status
from gatt.readout_keys import read_key

pytestmark = [pytest.mark.ble, pytest.mark.slow]

FRAMES_TO_CHECK = 3
STOP_TIMEOUT_S = 15.0
# a bank under load with a noisy current sensor: a figure changes every control tick
SOURCE = {"type": "simulated", "load": 20.0, "current_noise": 0.5}


def daemon_config(state: Path) -> config_module.Config:
    # virtual = "off": use the system bus as found, i.e. the fixture's private bus
    return config_module.from_table(
        {"bms": {"state_directory": str(state)}, "ble": {"virtual": "off"}, "source": SOURCE},
        "<test>",
    )


@contextlib.asynccontextmanager
async def running(state: Path) -> AsyncIterator[tuple[Daemon, list[Status]]]:
    daemon = build(daemon_config(state), state)
    statuses: list[Status] = []
    daemon.controller.subscribe(statuses.append)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        yield daemon, statuses
    finally:
        stop.set()
        async with asyncio.timeout(STOP_TIMEOUT_S):
            await task


def status_behind(frame: bytes, key: bytes, statuses: list[Status]) -> Status:
    """The status (among those the daemon computed) whose record the frame carries."""
    record = pack_record(decode_manufacturer_data(frame, key))
    for status in reversed(statuses):
        if pack_record(readout_from_status(status)) == record:
            return status
    raise AssertionError("the frame on air is none of the daemon's statuses")


async def test_running_daemon_broadcasts_its_own_status(
    virtual_bus: Any, tmp_path: Path
) -> None:
    async with scanning() as frames, running(tmp_path) as (_, statuses):
        seen = await _frames(frames, FRAMES_TO_CHECK)
        key = read_key(FileStore(tmp_path))
        assert key is not None
        for frame in seen:
            status = status_behind(frame, key, statuses)
            decoded = victron_decode(frame, key)
            if status.soc is not None:
                assert decoded.get_soc() == pytest.approx(status.soc, abs=0.05 + 1e-9)
            if status.voltage is not None:
                assert decoded.get_voltage() == pytest.approx(status.voltage, abs=0.005 + 1e-9)
            if status.current is not None:
                assert decoded.get_current() == pytest.approx(status.current, abs=0.05 + 1e-9)
    nonces = [parse_header(f).nonce for f in seen]
    assert nonces == sorted(set(nonces))

    # a clean restart: same key, the nonce moves on
    async with scanning() as frames, running(tmp_path):
        again = await _frames(frames, 1)
    assert again[0][7] == key[0]
    assert parse_header(again[0]).nonce > max(nonces)


async def test_sigkilled_daemon_never_repeats_a_nonce(
    virtual_bus: Any, tmp_path: Path
) -> None:
    config = tmp_path / "smallbms.toml"
    config.write_text(
        f'[bms]\nstate_directory = "{tmp_path}"\n[ble]\nvirtual = "off"\n'
        f'[source]\ntype = "simulated"\nload = {SOURCE["load"]}\n'
        f'current_noise = {SOURCE["current_noise"]}\n'
    )
    argv = (sys.executable, "-m", "bms_daemon.cli", "run", "--config", str(config))
    seen: list[int] = []
    earlier: set[bytes] = set()  # BlueZ may still report the killed daemon's last frame
    for _ in range(2):
        async with scanning() as frames:
            daemon = await virtual_bus.spawn(*argv, stdout=asyncio.subprocess.DEVNULL,
                                             stderr=asyncio.subprocess.DEVNULL)
            try:
                await frames.wait_for(
                    lambda _f: len([f for f in frames.seen if f not in earlier]) >= 2,
                    "from this run")
                got = [f for f in frames.seen if f not in earlier]
                earlier.update(frames.seen)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(daemon.pid, signal.SIGKILL)
                await daemon.wait()
        nonces = [parse_header(f).nonce for f in got]
        assert nonces
        if seen:
            assert min(nonces) > max(seen)
        seen.extend(nonces)
        document = FileStore(tmp_path).load("readout")
        assert document is not None
        assert document["reserved"] > max(seen)  # the next run starts above all of them
    assert seen == sorted(set(seen))


async def _frames(frames: Frames, count: int) -> list[bytes]:
    """The first ``count`` distinct frames the scanner sees."""
    await frames.wait_for(lambda _f: len(frames.seen) >= count, f"number {count}")
    return frames.seen[:count]
