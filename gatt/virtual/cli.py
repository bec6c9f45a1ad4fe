"""``smallbms virtual-bus``: a private D-Bus with a virtual BlueZ, until interrupted.

The first line of output is ``DBUS_SYSTEM_BUS_ADDRESS=<address>``, ready for ``export`` (or
``eval``) in the shell that runs the daemon or the client.  Heavy imports happen in main(), so
``smallbms --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from gatt.virtual.config import add_world_options, config_from


def configure(parser: argparse.ArgumentParser) -> None:

    parser.description = (
        "Start a private dbus-daemon with an emulated org.bluez (adapters hci0 = peripheral, "
        "hci1.. = centrals) so that bless and bleak work without Bluetooth hardware. Prints "
        "DBUS_SYSTEM_BUS_ADDRESS=<address> first; set it in the environment of the daemon and "
        "of the client. Stops cleanly on Ctrl-C or SIGTERM."
    )
    add_world_options(parser)


def main(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from gatt.virtual.bus import VirtualBusError, start_virtual_bus  # noqa: PLC0415

    try:
        config = config_from(args)
    except ValueError as exc:
        print(f"smallbms virtual-bus: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with start_virtual_bus(config, log=sys.stderr, verbose=args.verbose) as bus:
            print(f"DBUS_SYSTEM_BUS_ADDRESS={bus.address}", flush=True)
            print(
                f"virtual BlueZ up: {config.adapters} adapters, peripheral hci0 "
                f"({bus.address_of('hci0')}), centrals {', '.join(bus.central_adapters)}; "
                "Ctrl-C stops it",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        return 0

    try:
        return asyncio.run(run())
    except VirtualBusError as exc:
        print(f"smallbms virtual-bus: {exc}", file=sys.stderr)
        return 1
