"""Life cycle across processes: the launcher, the CLI, and centrals in separate processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from bleak import BleakClient
from vbz_peripheral import NOTIFY_CHAR, Peripheral

from gatt.virtual.bus import VirtualBus, start_virtual_bus

pytestmark = pytest.mark.ble

TIMEOUT = 10.0
HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_the_launcher_leaves_nothing_behind_and_does_not_touch_the_environment() -> None:
    before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    async with start_virtual_bus() as bus:
        assert os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") == before
        assert bus.address.startswith("unix:path=")
        assert all(alive(pid) for pid in bus.pids)
        directory = bus.directory
    assert not directory.exists()
    assert not any(alive(pid) for pid in bus.pids)


async def test_the_launcher_cleans_up_when_the_body_fails() -> None:
    pids: list[int] = []

    async def failing_body() -> None:
        async with start_virtual_bus() as bus:
            pids.extend(bus.pids)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_body()
    assert pids
    assert not any(alive(pid) for pid in pids)


CLI = (
    "import sys, argparse; from gatt.virtual import cli; p = argparse.ArgumentParser(); "
    "cli.configure(p); sys.exit(cli.main(p.parse_args(sys.argv[1:])))"
)


async def test_cli_prints_the_address_first_and_stops_cleanly_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        "--adapters",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().strip()
        assert first.startswith("DBUS_SYSTEM_BUS_ADDRESS=unix:path=")
        socket = Path(first.split("=", 2)[2].split(",")[0])
        assert await asyncio.to_thread(socket.exists)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, err.decode()
        assert "hci1, hci2" in err.decode()
        assert not await asyncio.to_thread(socket.parent.exists)  # gone with the daemon
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_refuses_bad_settings_with_a_message() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI,
        "--mtu",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2
    assert out == b""
    assert "mtu must be 23..517" in err.decode()
    assert "Traceback" not in err.decode()


async def test_two_central_processes_share_one_link(
    virtual_bus: VirtualBus, spawn: Callable[..., Awaitable[asyncio.subprocess.Process]]
) -> None:
    """bleak in another process on the same adapter: one LE link, notify sessions per client."""
    periph = Peripheral()
    await periph.start()
    try:
        other = await spawn(
            sys.executable,
            str(HERE / "vbz_central.py"),
            virtual_bus.address_of("hci0"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert other.stdout is not None
        assert await asyncio.wait_for(other.stdout.readline(), TIMEOUT) == b"READY\n"
        async with BleakClient(
            virtual_bus.address_of("hci0"), bluez={"adapter": "hci1"}, timeout=TIMEOUT
        ) as client:
            got: asyncio.Queue[bytes] = asyncio.Queue()
            await client.start_notify(NOTIFY_CHAR, lambda _c, data: got.put_nowait(bytes(data)))
            assert len(await virtual_bus.links()) == 1
            periph.notify(b"\x11")
            assert await asyncio.wait_for(got.get(), TIMEOUT) == b"\x11"
            line = await asyncio.wait_for(other.stdout.readline(), TIMEOUT)
            assert line == b"11\n"
            await client.stop_notify(NOTIFY_CHAR)
            # the other process still has its session, so the app still notifies; BlueZ
            # re-emits Value after any read, so the other process sees the read value too
            await client.read_gatt_char(NOTIFY_CHAR)
            assert await periph.subscribed()
            assert await asyncio.wait_for(other.stdout.readline(), TIMEOUT) == b"11\n"
            periph.notify(b"\x12")
            assert await asyncio.wait_for(other.stdout.readline(), TIMEOUT) == b"12\n"
            assert got.empty()
    finally:
        await periph.stop()


async def test_a_central_process_that_dies_loses_its_sessions_but_not_the_link(
    virtual_bus: VirtualBus, spawn: Callable[..., Awaitable[asyncio.subprocess.Process]]
) -> None:
    """BlueZ drops a vanished client's notify sessions; the LE link itself stays up."""
    periph = Peripheral()
    await periph.start()
    try:
        other = await spawn(
            sys.executable,
            str(HERE / "vbz_central.py"),
            virtual_bus.address_of("hci0"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert other.stdout is not None
        assert await asyncio.wait_for(other.stdout.readline(), TIMEOUT) == b"READY\n"
        await asyncio.wait_for(periph.notify_started.wait(), TIMEOUT)
        other.kill()
        await other.wait()
        await asyncio.wait_for(periph.notify_stopped.wait(), TIMEOUT)
        assert not await periph.subscribed()
        [link] = await virtual_bus.links()
        assert link["central"] == "/org/bluez/hci1"
        assert link["notifying"] == []
    finally:
        await periph.stop()
