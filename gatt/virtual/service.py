"""The emulator process: ``python -m gatt.virtual.service --bus ADDRESS``.

Runs :class:`~gatt.virtual.world.World` on the given bus until SIGTERM/SIGINT or until the bus
goes away.  A ``RestartBluetoothd`` control call ends the current World (its connection closes,
so ``org.bluez`` and every object vanish at once, as when bluetoothd dies) and, after the
requested pause, starts a fresh one on a new connection.  Prints ``READY <unique name>`` on
stdout once ``org.bluez`` is owned, so a launcher can wait for it instead of sleeping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from dbus_fast import Message
from dbus_fast.aio import MessageBus

from gatt.virtual.config import WorldConfig, add_world_options, config_from
from gatt.virtual.world import World

log = logging.getLogger("smallbms.virtual")

READY = "READY"


async def _flush(bus: MessageBus) -> None:
    """A round trip to the bus daemon: everything queued before it has been written."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus.Peer",
                    member="Ping",
                )
            ),
            2.0,
        )


class _WaitWhenFull:
    """A socket whose ``send`` reports 0 bytes written instead of raising BlockingIOError.

    dbus-fast 5.2's writer (``dbus_fast.aio.message_bus._MessageWriter.write_callback``)
    treats EAGAIN from its non-blocking send as fatal and drops the connection, so a burst
    of signals (a central hammering writes, then vanishing) could kill org.bluez.  For a
    partial write it already waits until the socket is writable; 0 bytes takes that path.
    (Added by the "client" engineer; see the report.)"""

    def __init__(self, sock: object) -> None:
        self._sock = sock

    def send(self, data: bytes) -> int:
        try:
            return int(self._sock.send(data))  # type: ignore[attr-defined]
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


def _wait_when_socket_full(bus: MessageBus) -> None:
    writer = getattr(bus, "_writer", None)
    if writer is not None and hasattr(writer, "sock"):
        writer.sock = _WaitWhenFull(writer.sock)


async def serve(
    address: str, config: WorldConfig, ready: Callable[[str], None], stop: asyncio.Event
) -> int:
    """Serve org.bluez until ``stop`` is set (0) or the bus disappears (1)."""
    first = True
    while True:
        bus = await MessageBus(bus_address=address, negotiate_unix_fd=True).connect()
        _wait_when_socket_full(bus)
        world = World(bus, config)
        await world.start()
        if first:
            ready(bus.unique_name or "")
            first = False
        lost = asyncio.ensure_future(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({world.finished, lost, stopping}, return_when=asyncio.FIRST_COMPLETED)
        restart_after = world.finished.result() if world.finished.done() else None
        world.shutdown()
        if lost.done():
            stopping.cancel()
            if stop.is_set():
                return 0
            log.error("the bus went away; stopping")
            return 1
        await _flush(bus)
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(lost, 2.0)
        stopping.cancel()
        if restart_after is None or stop.is_set():
            return 0
        log.info("bluetoothd restart: org.bluez gone for %.3f s", restart_after)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), restart_after)
            return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gatt.virtual.service", description=__doc__)
    add_world_options(parser)
    parser.add_argument(
        "--bus",
        default=os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", ""),
        help="D-Bus address to serve on (default: $DBUS_SYSTEM_BUS_ADDRESS)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="virtual-bluez %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not args.bus:
        print("error: no bus address (--bus or DBUS_SYSTEM_BUS_ADDRESS)", file=sys.stderr)
        return 2
    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def ready(name: str) -> None:
        print(f"{READY} {name}", flush=True)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await serve(args.bus, config, ready, stop)

    try:
        return asyncio.run(run())
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
