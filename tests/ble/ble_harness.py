"""A running smallbms daemon on the virtual BlueZ, driven from synchronous tests.

Everything here goes through real D-Bus: the daemon (``smallbms run``, bless) is a child
process on a private bus with the virtual BlueZ, and the tests talk to it with bleak, through
``gatt.client``, exactly as a user's ``smallbms-client`` would.

Why a loop in a thread: a module shares one daemon (starting one costs seconds), bleak keeps
one D-Bus manager per event loop, and hypothesis needs synchronous test functions.  So the
bus, the daemon and the clients all live on one event loop running in a background thread,
and a test hands it coroutines with ``bms.run(coro)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gatt.client import SmallBmsClient, find_device
from gatt.virtual.bus import VirtualBus, start_virtual_bus
from gatt.virtual.world import WorldConfig

T = TypeVar("T")

PIN = "000000"  # the factory PIN the daemons under test start with
CENTRAL = "hci1"  # the test's central adapter (hci0 is the daemon's)
SECOND_CENTRAL = "hci2"
# The module's long-lived client has an adapter of its own: a central that disconnects takes
# down the link of its adapter to the daemon, shared or not (as in BlueZ), and the shared
# client would only learn it a moment later.
SHARED_CENTRAL = "hci3"
THIRD_CENTRAL = "hci4"  # for tests that need one more central than the shared one
ADAPTERS = 5
STARTUP_TIMEOUT_S = 30.0  # daemon start to first advertisement seen, on a loaded 2-core box
STEP_TIMEOUT_S = 60.0  # any single step a test hands to the loop
CLI_TIMEOUT_S = 60.0


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ble-tests", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_rest(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def config_text(state_dir: Path, source: Mapping[str, object], settings: Mapping[str, object],
                name: str) -> str:
    """The daemon's TOML: simulated bank, memory GPIO, BLE on the BlueZ it finds."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return repr(v)

    src = {"type": "simulated", **source}
    lines = [
        "[bms]",
        "rate_hz = 5.0",
        f'state_directory = "{state_dir}"',
        "[source]",
        *(f"{k} = {value(v)}" for k, v in src.items()),
        "[gpio]",
        'backend = "memory"',
        "[ble]",
        "enabled = true",
        'adapter = "hci0"',
        f'name = "{name}"',
        'virtual = "off"',
        "[settings]",
        *(f"{k} = {value(v)}" for k, v in settings.items()),
        "[logging]",
        'level = "info"',
        'format = "logfmt"',
    ]
    return "\n".join(lines) + "\n"


@dataclass
class DaemonUnderTest:
    """One ``smallbms run`` on one virtual bus, plus what a test needs to talk to it."""

    loop: LoopThread
    bus: VirtualBus
    proc: asyncio.subprocess.Process
    directory: Path
    log_path: Path
    address: str
    name: str
    started_to_advertised_s: float = 0.0
    _clients: list[SmallBmsClient] = field(default_factory=list)
    _shared: SmallBmsClient | None = None

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = STEP_TIMEOUT_S) -> T:
        return self.loop.run(coro, timeout)

    def client(self, pin: str | None = PIN, adapter: str = CENTRAL,
               timeout: float = 10.0) -> SmallBmsClient:
        """A client (not yet connected) for this daemon; closed with the module."""
        c = SmallBmsClient(self.address, adapter=adapter, pin=pin, timeout=timeout)
        self._clients.append(c)
        return c

    def connected(self, pin: str | None = PIN, adapter: str = CENTRAL) -> SmallBmsClient:
        """A connected client (disconnect it with ``bms.run(c.disconnect())``)."""
        c = self.client(pin, adapter)
        self.run(c.connect())
        return c

    def shared(self) -> SmallBmsClient:
        """The module's long-lived client (PIN, hci1), reconnected if its link dropped: most
        tests need a client, not a fresh connection, and connecting costs a scan and a pairing."""
        client = self._shared
        if client is None or not client.connected:
            client = self.connected(adapter=SHARED_CENTRAL)
            self._shared = client
        return client

    def session(self, pin: str | None = PIN, adapter: str = CENTRAL) -> _Session:
        """``with bms.session() as c:`` a connected client, disconnected afterwards."""
        return _Session(self, pin, adapter)

    def alive(self) -> bool:
        return self.proc.returncode is None

    def assert_alive(self) -> None:
        assert self.alive(), f"the daemon exited ({self.proc.returncode}):\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cli(self, *args: str, pin: str | None = PIN, env: Mapping[str, str] | None = None,
            adapter: str | None = CENTRAL, device: bool = True,
            timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``smallbms-client ARGS`` as a separate process (a separate central)."""
        full_env = self.bus.env()
        full_env.pop("SMALLBMS_PIN", None)
        if pin is not None:
            full_env["SMALLBMS_PIN"] = pin
        full_env.update(env or {})
        argv = [sys.executable, "-m", "gatt.client_cli"]
        if device:
            argv += ["--device", self.address]
        if adapter is not None:
            argv += ["--adapter", adapter]
        return subprocess.run(  # noqa: PLW1510 - the caller checks returncode
            [*argv, *args], env=full_env, capture_output=True, text=True, timeout=timeout
        )

    async def close_clients(self) -> None:
        for c in self._clients:
            with contextlib.suppress(Exception):
                await c.disconnect()
        self._clients.clear()


class _Session:
    def __init__(self, bms: DaemonUnderTest, pin: str | None, adapter: str) -> None:
        self._bms, self._pin, self._adapter = bms, pin, adapter
        self._client: SmallBmsClient | None = None

    def __enter__(self) -> SmallBmsClient:
        self._client = self._bms.connected(self._pin, self._adapter)
        return self._client

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._bms.run(self._client.disconnect())


async def _start(loop: LoopThread, directory: Path, source: Mapping[str, object],
                 settings: Mapping[str, object], adapters: int,
                 stack: contextlib.AsyncExitStack,
                 run_args: Sequence[str] | None = None) -> DaemonUnderTest:
    bus = await stack.enter_async_context(start_virtual_bus(WorldConfig(adapters=adapters)))
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    name = "smallBMS NG"
    if run_args is None:  # the test's own configuration
        config = directory / "smallbms.toml"
        config.write_text(config_text(directory / "state", source, settings, name))
        run_args = ["--config", str(config)]
    log_path = directory / "daemon.log"
    log_file = log_path.open("w")
    stack.callback(log_file.close)
    t0 = asyncio.get_running_loop().time()
    proc = await bus.spawn(sys.executable, "-m", "bms_daemon.cli", "run", *run_args,
                           stdout=log_file, stderr=subprocess.STDOUT)
    stack.push_async_callback(bus.stop_children)
    address = bus.address_of(bus.peripheral_adapter)
    try:
        await find_device(address, wait_s=STARTUP_TIMEOUT_S, adapter=CENTRAL)
    except Exception as exc:
        raise RuntimeError(
            f"the daemon did not advertise within {STARTUP_TIMEOUT_S:.0f} s: {exc}\n"
            + log_path.read_text(errors="replace")[-3000:]
        ) from exc
    elapsed = asyncio.get_running_loop().time() - t0
    return DaemonUnderTest(loop, bus, proc, directory, log_path, address, name, elapsed)


@contextlib.contextmanager
def running_daemon(directory: Path, *, source: Mapping[str, object] | None = None,
                   settings: Mapping[str, object] | None = None,
                   adapters: int = ADAPTERS,
                   run_args: Sequence[str] | None = None) -> Iterator[DaemonUnderTest]:
    """A daemon on a fresh virtual bus, for the duration of the ``with``.

    ``run_args`` replaces the test's configuration with these ``smallbms run`` arguments
    (e.g. none: the embedded defaults)."""
    loop = LoopThread()
    stack = contextlib.AsyncExitStack()
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    default_source: dict[str, object] = {"soc": 70.0, "load": 8.0, "current_noise": 0.05}
    try:
        bms = loop.run(_start(loop, directory, {**default_source, **(source or {})},
                              settings or {}, adapters, stack, run_args),
                      timeout=STARTUP_TIMEOUT_S + 30)
        try:
            yield bms
        finally:
            loop.run(bms.close_clients())
    finally:
        with contextlib.suppress(Exception):
            loop.run(stack.aclose(), timeout=30)
        loop.close()
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous


async def until(check: Any, *, within: float, what: str, every: float = 0.1) -> Any:
    """Poll ``await check()`` until it returns a truthy value (returned) or ``within`` s.

    For conditions only observable by asking (a value read over BLE): the poll interval is not
    a timing assumption, the timeout is the only bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not true within {within:g} s (last: {last!r})")
        await asyncio.sleep(every)
