"""Which BlueZ the BLE side talks to: the system's, or a virtual one started for us.

On a Raspberry Pi, bluetoothd owns ``org.bluez`` on the system bus and bless talks to it.  On a
laptop, in a container or in CI there is no BlueZ (often no system bus at all); rather than
running without Bluetooth, the daemon can start the project's virtual BlueZ (``gatt.virtual``,
a private dbus-daemon with an emulated ``org.bluez``) and point ``DBUS_SYSTEM_BUS_ADDRESS`` at
it, so bless (and ``smallbms-client`` given the same address) work unchanged.  ``[ble] virtual``:
``auto`` does that only when no ``org.bluez`` is found, ``on`` always, ``off`` never.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import structlog

from bms_daemon.config import BleConfig

log = structlog.get_logger("smallbms.ble")

BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
BLUEZ_NAME = "org.bluez"
BLUEZ_PROBE_TIMEOUT_S = 3.0  # a hung system bus must not hold the BLE start forever


class BleUnavailableError(RuntimeError):
    """BLE cannot run here at all (a module is missing): the daemon stops trying."""


async def bluez_present() -> bool:
    """Whether a process owns ``org.bluez`` on the system bus (False when there is no bus)."""
    try:
        from dbus_fast import BusType, Message  # noqa: PLC0415
        from dbus_fast.aio import MessageBus  # noqa: PLC0415
    except ImportError:
        return False
    try:
        async with asyncio.timeout(BLUEZ_PROBE_TIMEOUT_S):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bus.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="NameHasOwner",
                        signature="s",
                        body=[BLUEZ_NAME],
                    )
                )
            finally:
                bus.disconnect()
    except Exception as exc:  # OSError, a timeout, or dbus_fast's own (auth refused ...)
        log.info("system_bus_unavailable", error=f"{type(exc).__name__}: {exc}")
        return False
    return bool(reply is not None and reply.body and reply.body[0])


def _virtual_bus_factory() -> Any:
    """``gatt.virtual.bus.start_virtual_bus`` (the "virtual-bluez" engineer's launcher)."""
    if shutil.which("dbus-daemon") is None:
        raise BleUnavailableError(
            "no BlueZ on the system bus and no dbus-daemon to start the virtual one "
            "(apt-get install dbus)"
        )
    try:
        module = importlib.import_module("gatt.virtual.bus")
    except ImportError as exc:
        raise BleUnavailableError(
            f"the virtual BlueZ (gatt.virtual.bus) is not available: {exc}"
        ) from exc
    factory = getattr(module, "start_virtual_bus", None)
    if factory is None:
        raise BleUnavailableError("gatt.virtual.bus offers no start_virtual_bus")
    return factory


@contextlib.asynccontextmanager
async def ble_environment(config: BleConfig) -> AsyncIterator[str | None]:
    """Yield the system bus address to use (None = the real one), virtual BlueZ started if
    needed; the virtual bus is stopped and the environment restored on exit."""
    if config.virtual == "off":
        yield None
        return
    if config.virtual == "auto" and await bluez_present():
        log.info("bluez_found", bus="system")
        yield None
        return
    factory = _virtual_bus_factory()
    previous = os.environ.get(BUS_ENV)
    async with factory() as bus:
        address = str(bus.address)
        os.environ[BUS_ENV] = address
        log.info("virtual_bluez_started", address=address, adapter=config.adapter,
                 hint=f"client: {BUS_ENV}='{address}' smallbms-client ...")
        try:
            yield address
        finally:
            if previous is None:
                os.environ.pop(BUS_ENV, None)
            else:
                os.environ[BUS_ENV] = previous
            log.info("virtual_bluez_stopped")
