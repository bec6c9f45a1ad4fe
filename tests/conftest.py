"""Shared fixtures: ``virtual_bus`` (a private D-Bus with the virtual BlueZ) and ``spawn``.

``virtual_bus`` starts a fresh dbus-daemon and emulator per test, points
DBUS_SYSTEM_BUS_ADDRESS at it for this test only (monkeypatch restores it), and stops and reaps
both afterwards, also when the test fails.  Use ``bluez={"adapter": "hci1"}`` in bleak, bless's
default adapter hci0 on the peripheral side.  ``spawn`` starts a child process on that bus (the
daemon under test, a second central); it is stopped and reaped with the bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gatt.virtual.bus import VirtualBus, start_virtual_bus
from gatt.virtual.config import WorldConfig


@pytest.fixture
async def virtual_bus(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[VirtualBus]:
    """Parametrize indirectly with a WorldConfig for other settings, e.g. three adapters:
    ``@pytest.mark.parametrize("virtual_bus", [WorldConfig(adapters=3)], indirect=True)``."""
    config = getattr(request, "param", None) or WorldConfig()
    async with start_virtual_bus(config) as bus:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        yield bus


@pytest.fixture
def spawn(virtual_bus: VirtualBus) -> Callable[..., Awaitable[asyncio.subprocess.Process]]:
    """``await spawn(sys.executable, "-m", "module", stdout=PIPE)``: a process on the bus."""

    async def _spawn(*argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        return await virtual_bus.spawn(*argv, **kwargs)

    return _spawn
