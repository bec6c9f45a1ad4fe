"""Notifications while the simulated bank changes, and two centrals at once.

The bank draws 60 A with a noisy current sensor, so every control-loop tick changes the
status; the daemon notifies a change as it happens (at most once per tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import sys

import pytest
from ble_harness import SECOND_CENTRAL, DaemonUnderTest

from gatt import codec, profile
from gatt.client import SmallBmsClient

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"soc": 80.0, "load": 60.0, "current_noise": 0.2}
WANTED = 5  # statuses to collect


async def collect(c: SmallBmsClient, count: int) -> list[codec.StatusView]:
    seen: list[codec.StatusView] = []
    async for status in c.watch():
        seen.append(status)
        if len(seen) >= count:
            break
    return seen


def test_status_notifications_follow_the_bank(bms: DaemonUnderTest) -> None:
    c = bms.shared()

    async def notified() -> list[codec.StatusView]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        uuid = profile.uuid_of("status")
        await c.status()  # opens the PIN session: status notifications need one
        await c.bleak.start_notify(uuid, lambda _ch, data: queue.put_nowait(bytes(data)))
        try:
            async with asyncio.timeout(15):
                return [codec.decode_status(await queue.get()) for _ in range(WANTED)]
        finally:
            await c.bleak.stop_notify(uuid)

    seen = bms.run(notified())
    currents = [s.current for s in seen]
    assert len(set(currents)) >= WANTED - 1, currents  # the noise makes each one different
    assert all(cur is not None and -61.5 < cur < -58.5 for cur in currents)


def test_watch_yields_the_changing_status(bms: DaemonUnderTest) -> None:
    seen = bms.run(collect(bms.shared(), WANTED))
    assert len({s.current for s in seen}) >= WANTED - 1


def test_two_centrals_are_notified_together(bms: DaemonUnderTest) -> None:
    """One central in this process (hci1), another as a `smallbms-client watch` process
    (hci2).  Each connection closes every PIN session; each client re-authenticates."""
    c = bms.shared()

    async def both() -> tuple[list[codec.StatusView], bytes, bytes, int]:
        env = bms.bus.env()
        env["SMALLBMS_PIN"] = "000000"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatt.client_cli", "--device", bms.address,
            "--adapter", SECOND_CENTRAL, "watch", "--count", str(WANTED), "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        mine: list[codec.StatusView] = []
        arrivals: asyncio.Queue[None] = asyncio.Queue()

        async def follow() -> None:
            async for status in c.watch():
                mine.append(status)
                arrivals.put_nowait(None)

        follower = asyncio.ensure_future(follow())
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 45)
            # and this central still hears the bank after the other one came and went
            while not arrivals.empty():
                arrivals.get_nowait()
            async with asyncio.timeout(15):
                for _ in range(2):
                    await arrivals.get()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        assert proc.returncode is not None
        return mine, out, err, proc.returncode

    mine, out, err, code = bms.run(both(), timeout=90)
    assert code == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert len(lines) == WANTED
    assert len({line["current"] for line in lines}) >= WANTED - 1
    assert len(mine) >= WANTED


def test_vereg_notifies_while_kept_alive(bms: DaemonUnderTest) -> None:
    """Victron readers subscribe and send a keep-alive; the figures then keep coming."""
    c = bms.shared()

    async def listen() -> list[bytes]:
        got: list[bytes] = []
        enough = asyncio.Event()

        def on_value(_char: object, data: bytearray) -> None:
            got.append(bytes(data))
            if len(got) >= 3:
                enough.set()

        uuid = profile.uuid_of("vereg.current")
        await c.keep_alive(30_000)  # as ESPHome does, every 20 s
        await c.bleak.start_notify(uuid, on_value)
        try:
            await asyncio.wait_for(enough.wait(), 15)
        finally:
            await c.bleak.stop_notify(uuid)
        return got

    values = bms.run(listen())
    amps = [codec.decode_vereg("i", 0.001, v) for v in values]
    assert all(a is not None and -61.5 < a < -58.5 for a in amps)


def test_battery_level_notifies_without_a_pin(bms: DaemonUnderTest) -> None:
    async def listen(c: SmallBmsClient) -> int:
        got: asyncio.Queue[int] = asyncio.Queue()
        uuid = profile.uuid_of("battery_level")
        await c.bleak.start_notify(uuid, lambda _ch, d: got.put_nowait(d[0]))
        await c.command("set_soc", 33)  # a level change to notify
        try:
            async with asyncio.timeout(15):
                while (level := await got.get()) != 33:
                    pass
        finally:
            await c.bleak.stop_notify(uuid)
        return level

    with bms.session() as c:
        assert bms.run(listen(c)) == 33


def test_cli_watch_prints_plain_lines_when_piped(bms: DaemonUnderTest) -> None:
    result = bms.cli("watch", "--count", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.startswith("soc=") and " current=-" in line for line in lines)
    assert "\x1b[" not in result.stdout


def test_cli_watch_redraws_in_place_on_a_terminal(bms: DaemonUnderTest) -> None:
    async def on_a_pty() -> tuple[int, bytes]:
        leader, follower = pty.openpty()
        env = bms.bus.env()
        env["SMALLBMS_PIN"] = "000000"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatt.client_cli", "--device", bms.address,
            "--adapter", SECOND_CENTRAL, "watch", "--count", "2",
            env=env, stdout=follower, stderr=asyncio.subprocess.PIPE,
        )
        os.close(follower)
        code = await asyncio.wait_for(proc.wait(), 45)
        output = b""
        with contextlib.suppress(OSError):  # EIO once the child's side is closed and drained
            while chunk := os.read(leader, 65536):
                output += chunk
        os.close(leader)
        return code, output

    code, output = bms.run(on_a_pty(), timeout=60)
    assert code == 0
    assert output.count(b"\x1b[H\x1b[J") == 2  # cursor home + clear, once per update
    assert b"State of charge" in output
