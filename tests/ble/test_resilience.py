"""What a user's radio does to the daemon: clients that vanish mid-write, links that drop,
bluetoothd restarting under a connected central.  The daemon must keep answering (and keep
protecting the battery: its process never exits), and the client must say what happened
instead of hanging.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest
from ble_harness import PIN, SECOND_CENTRAL, DaemonUnderTest

from gatt.client import LinkLost, SmallBmsClient, find_device

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"soc": 70.0, "load": 10.0, "current_noise": 0.05}
RECOVERY_LIMIT_S = 15.0  # bluetoothd back -> smallbms usable again ("within seconds")

# A separate central that writes settings and commands as fast as it can until killed.
HAMMER = """
import asyncio, sys
from gatt.client import SmallBmsClient

async def main(address, adapter):
    async with SmallBmsClient(address, adapter=adapter, pin="000000") as c:
        n = 0
        while True:
            await c.set_setting("discharge_floor", 11 + n % 2)
            await c.command("set_soc", 60 + n % 5)
            if n == 0:
                print("writing", flush=True)
            n += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_client_killed_mid_write_leaves_the_daemon_serving(bms: DaemonUnderTest) -> None:
    async def kill_mid_write() -> None:
        proc = await bms.bus.spawn(sys.executable, "-c", HAMMER, bms.address, SECOND_CENTRAL,
                                   stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"writing"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    bms.run(kill_mid_write())
    bms.assert_alive()
    with bms.session() as c:
        settings = bms.run(c.settings())
        assert settings["discharge_floor"] in (10.0, 11.0, 12.0)  # one write or another, whole
        bms.run(c.set_setting("discharge_floor", 10))
        assert bms.run(c.status()).voltage is not None


def test_link_lost_mid_operation_is_reported_not_hung(bms: DaemonUnderTest) -> None:
    async def write_until_dropped(c: SmallBmsClient) -> int:
        writes = 0
        dropper: asyncio.Future[int] | None = None
        try:
            while True:
                await c.set_setting("tail_current", 4.0)
                writes += 1
                if dropper is None:
                    dropper = asyncio.ensure_future(bms.bus.drop_link(c.address))
        finally:
            if dropper is not None:
                await dropper

    c = bms.connected()
    with pytest.raises(LinkLost, match="lost"):
        bms.run(write_until_dropped(c), timeout=30)
    assert not c.connected
    bms.assert_alive()
    with bms.session() as again:
        assert bms.run(again.settings())["tail_current"] == 4.0


def test_bluetoothd_restart_while_connected(bms: DaemonUnderTest) -> None:
    """The watching client learns the link is gone; the daemon re-registers its application
    and advertisement with the new bluetoothd, and a new connection works within seconds."""
    c = bms.connected()

    async def restart_under_watch() -> float:
        restarted_at = 0.0

        async def watch_through_restart() -> None:
            nonlocal restarted_at
            statuses = 0
            async for _ in c.watch():
                statuses += 1
                if statuses == 2:
                    await bms.bus.restart_bluetoothd(down=0.2)
                    restarted_at = time.monotonic()

        with pytest.raises(LinkLost):
            await watch_through_restart()
        await find_device(bms.address, wait_s=RECOVERY_LIMIT_S, adapter="hci1")
        fresh = SmallBmsClient(bms.address, adapter="hci1", pin=PIN, timeout=10)
        async with fresh:
            assert (await fresh.status()).voltage is not None
        return time.monotonic() - restarted_at

    recovered_in = bms.run(restart_under_watch(), timeout=60)
    print(f"bluetoothd back -> status read on a new connection: {recovered_in:.2f} s")
    assert recovered_in < RECOVERY_LIMIT_S
    bms.assert_alive()


def test_cli_watch_reports_a_lost_link(bms: DaemonUnderTest) -> None:
    async def watch_then_drop() -> tuple[int, bytes]:
        env = bms.bus.env()
        env["SMALLBMS_PIN"] = PIN
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gatt.client_cli", "--device", bms.address,
            "--adapter", SECOND_CENTRAL, "watch", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert first.startswith(b"soc=")
        await bms.bus.drop_link(SECOND_CENTRAL)
        err = await asyncio.wait_for(proc.stderr.read(), 30)
        return await proc.wait(), err

    code, err = bms.run(watch_then_drop())
    assert code == 6, err
    assert err.decode().startswith("smallbms-client: the Bluetooth link to ")
    assert "lost" in err.decode()
    assert b"Traceback" not in err
