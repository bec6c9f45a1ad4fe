"""Launch a private ``dbus-daemon`` with the virtual BlueZ on it, from Python.

:func:`start_virtual_bus` is an async context manager that yields a :class:`VirtualBus`: its
``address`` goes into ``DBUS_SYSTEM_BUS_ADDRESS`` for bless and bleak (the fixture in
tests/conftest.py does that with monkeypatch, so it never leaks between tests), and its methods
drive what a test needs beyond the BlueZ API (bluetoothd restart, link loss, pairing outcome,
what is on the air).  The daemon and the emulator are child processes that receive SIGTERM if
the thread that started them dies (``PR_SET_PDEATHSIG``; start the bus from the thread that
runs the event loop), and are stopped, waited for and removed on exit, including when the body
raises or is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from dbus_fast import Message, MessageType

from gatt.virtual.config import WorldConfig
from gatt.virtual.control import ControlClient
from gatt.virtual.dbus_types import BLUEZ

STARTUP_TIMEOUT = 15.0
"""Seconds the daemon and the emulator may take to come up (a loaded 2-core CI machine)."""
STOP_TIMEOUT = 5.0
"""Seconds a child gets between SIGTERM and SIGKILL."""
ENV_VAR = "DBUS_SYSTEM_BUS_ADDRESS"

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={directory}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class VirtualBusError(RuntimeError):
    """The virtual bus could not start or did not do what was asked; the message says why."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no child outlives a killed test."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class VirtualBus:
    """A running private bus with org.bluez; see the module docstring."""

    def __init__(
        self,
        address: str,
        config: WorldConfig,
        directory: Path,
        log_path: Path | None,
        control: ControlClient,
    ) -> None:
        self.address = address
        self.config = config
        self.directory = directory
        self.log_path = log_path
        self.control = control
        self.pids: list[int] = []
        """dbus-daemon and emulator process ids (gone once the context has exited)."""
        self._children: list[asyncio.subprocess.Process] = []

    @property
    def peripheral_adapter(self) -> str:
        return "hci0"

    @property
    def central_adapters(self) -> list[str]:
        return [f"hci{i}" for i in range(1, self.config.adapters)]

    def address_of(self, adapter: str) -> str:
        """Bluetooth address of ``hciN`` (what a central connects to)."""
        from gatt.virtual.adapter import adapter_address  # noqa: PLC0415

        return adapter_address(int(adapter.removeprefix("hci")))

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for a child process that should use this bus as its system bus."""
        env = dict(os.environ if base is None else base)
        env[ENV_VAR] = self.address
        return env

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        """Start a process on this bus; it is stopped and reaped when the bus stops."""
        kwargs.setdefault("env", self.env())
        proc = await asyncio.create_subprocess_exec(*argv, preexec_fn=_die_with_parent, **kwargs)
        self._children.append(proc)
        return proc

    async def stop_children(self) -> None:
        for proc in reversed(self._children):
            await _stop(proc)
        self._children.clear()

    async def bluez_owner(self) -> str:
        """Unique name currently owning org.bluez ("" when bluetoothd is down)."""
        reply = await self.control.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetNameOwner",
                signature="s",
                body=[BLUEZ],
            )
        )
        if reply is None or reply.message_type == MessageType.ERROR:
            return ""
        return str(reply.body[0])

    async def restart_bluetoothd(self, down: float = 0.0) -> None:
        """Simulate bluetoothd restarting: every org.bluez object and registration vanishes,
        then (``down`` seconds later) a fresh org.bluez appears.  Returns once it is back."""
        bus = self.control.bus
        events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

        def on_message(msg: Message) -> None:
            if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == BLUEZ:
                events.put_nowait((msg.body[1], msg.body[2]))

        rule = (
            f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{BLUEZ}'"
        )
        await self._match("AddMatch", rule)
        bus.add_message_handler(on_message)
        try:
            old = await self.bluez_owner()
            await self.control.restart_bluetoothd(down)
            async with asyncio.timeout(STARTUP_TIMEOUT + down):
                while True:
                    _, new = await events.get()
                    if new and new != old:
                        return
        except TimeoutError:
            raise VirtualBusError(
                f"org.bluez did not come back within {STARTUP_TIMEOUT + down:.1f} s"
            ) from None
        finally:
            bus.remove_message_handler(on_message)
            await self._match("RemoveMatch", rule)

    async def wait_name_gone(self, name: str) -> None:
        """Wait until unique name ``name`` has left the bus (a process died or disconnected).

        The emulator hears the same NameOwnerChanged; a control call made after this returns
        is answered after the emulator has cleaned up after ``name``.
        """
        bus = self.control.bus
        gone = asyncio.Event()

        def on_message(msg: Message) -> None:
            if msg.member == "NameOwnerChanged" and msg.body[0] == name and not msg.body[2]:
                gone.set()

        rule = (
            f"type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='{name}'"
        )
        await self._match("AddMatch", rule)
        bus.add_message_handler(on_message)
        try:
            reply = await bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="NameHasOwner",
                    signature="s",
                    body=[name],
                )
            )
            if (
                reply is not None
                and reply.message_type == MessageType.METHOD_RETURN
                and not reply.body[0]
            ):
                return
            async with asyncio.timeout(STARTUP_TIMEOUT):
                await gone.wait()
        except TimeoutError:
            raise VirtualBusError(
                f"{name} is still on the bus after {STARTUP_TIMEOUT:.1f} s"
            ) from None
        finally:
            bus.remove_message_handler(on_message)
            await self._match("RemoveMatch", rule)

    async def _match(self, member: str, rule: str) -> None:
        await self.control.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature="s",
                body=[rule],
            )
        )

    async def drop_link(self, target: str = "") -> int:
        """Link loss on the links ``target`` names (device path, hciN, address; "" = all)."""
        return await self.control.drop_link(target)

    async def set_pairing_mode(self, mode: str) -> None:
        """ "just-works" (encrypted), "authenticated", or "reject" for the next Device1.Pair."""
        await self.control.set_pairing_mode(mode)

    async def advertisements(self) -> list[dict[str, Any]]:
        """What is on the air: adv_data / scan_response hex, decoded fields, last_error."""
        return await self.control.advertisements()

    async def advertisement_refusals(self) -> list[dict[str, Any]]:
        """Refused RegisterAdvertisement calls and why: real BlueZ answers only "Failed to
        register advertisement" and logs the reason; here the reason is kept for tests."""
        return await self.control.refusals()

    async def links(self) -> list[dict[str, Any]]:
        return await self.control.links()

    async def applications(self) -> list[dict[str, Any]]:
        return await self.control.applications()


async def _read_line(
    stream: asyncio.StreamReader | None,
    what: str,
    proc: asyncio.subprocess.Process,
    log_path: Path | None,
) -> str:
    assert stream is not None
    try:
        line = await asyncio.wait_for(stream.readline(), STARTUP_TIMEOUT)
    except TimeoutError:
        raise VirtualBusError(f"{what} did not start within {STARTUP_TIMEOUT:.0f} s") from None
    if not line:
        await proc.wait()
        detail = ""
        if log_path is not None:
            text = await asyncio.to_thread(log_path.read_text, errors="replace")
            detail = ": " + text.strip()[-2000:]
        raise VirtualBusError(f"{what} exited with status {proc.returncode}{detail}")
    return line.decode().strip()


@asynccontextmanager
async def start_virtual_bus(
    config: WorldConfig | None = None,
    *,
    log: Path | TextIO | None = None,
    verbose: bool = False,
) -> AsyncIterator[VirtualBus]:
    """Start dbus-daemon and the emulator; yield the VirtualBus; stop both on exit.

    ``log``: where the emulator's log goes (a path, an open file such as sys.stderr, or None
    for a file in the bus's temporary directory, kept as ``VirtualBus.log_path``).
    """
    config = config or WorldConfig()
    daemon_bin = shutil.which("dbus-daemon")
    if daemon_bin is None:
        raise VirtualBusError(
            "dbus-daemon not found: install the 'dbus' package (apt-get install dbus)"
        )
    directory = Path(tempfile.mkdtemp(prefix="smallbms-bus-"))
    procs: list[asyncio.subprocess.Process] = []
    control: ControlClient | None = None
    bus: VirtualBus | None = None
    log_file: TextIO | None = None
    try:
        conf = directory / "bus.conf"
        conf.write_text(_BUS_CONFIG.format(directory=directory))
        daemon = await asyncio.create_subprocess_exec(
            daemon_bin,
            "--nofork",
            "--nopidfile",
            "--print-address=1",
            f"--config-file={conf}",
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=None if verbose else asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        procs.append(daemon)
        address = await _read_line(daemon.stdout, "dbus-daemon", daemon, None)
        log_path: Path | None = None
        if log is None:
            log_path = directory / "virtual-bluez.log"
            log_file = log_path.open("w")
            stderr: Any = log_file
        elif isinstance(log, Path):
            log_path = log
            log_file = log.open("w")
            stderr = log_file
        else:
            stderr = log
        argv = [
            sys.executable,
            "-m",
            "gatt.virtual.service",
            "--bus",
            address,
            "--adapters",
            str(config.adapters),
            "--mtu",
            str(config.mtu),
            "--pairing",
            config.pairing,
            f"--rssi={config.rssi}",
            "--report-interval",
            str(config.report_interval),
        ]
        if config.experimental:
            argv.append("--experimental")
        if verbose:
            argv.append("--verbose")
        emulator = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        procs.append(emulator)
        line = await _read_line(emulator.stdout, "the virtual BlueZ", emulator, log_path)
        if not line.startswith("READY"):
            raise VirtualBusError(f"unexpected output from the virtual BlueZ: {line!r}")
        control = await ControlClient.connect(address)
        bus = VirtualBus(address, config, directory, log_path, control)
        bus.pids = [p.pid for p in procs]
        yield bus
    finally:
        if bus is not None:
            await bus.stop_children()
        if control is not None:
            control.close()
        for proc in reversed(procs):
            await _stop(proc)
        if log_file is not None:
            log_file.close()
        shutil.rmtree(directory, ignore_errors=True)
