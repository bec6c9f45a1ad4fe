"""Daemon case, peripheral side: the real ``smallbms run``, started as systemd would.

Starts the daemon from ``systemd/smallbms.service`` (see unit.py) with a configuration that
selects real BlueZ and the in-memory GPIO backend, waits for READY=1 and for its advertisement
to be live in bluetoothd, hands the readout key to the central (``smallbms key``, the
documented way), then, when the central asks, SIGKILLs and restarts bluetoothd and measures
how long the daemon takes to advertise again.  At the end it stops the daemon as systemd does
(SIGTERM) and checks it exits cleanly with every output floating.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import pwd
import shutil
import signal as signals
import socket
import subprocess
import sys
import time
from pathlib import Path

import systemd_unit as units
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from e2elib import (
    Results,
    await_flag,
    bonded_reconnect,
    forget_paired_devices,
    log,
    signal,
    work,
)

REPO = Path(os.environ["REPO"])
VENV = Path(os.environ["VENV"])
UNIT_FILE = REPO / "systemd" / "smallbms.service"
DEFAULT_CONFIG = "/etc/smallbms/smallbms.toml"
ADAPTER_PATH = "/org/bluez/hci0"
BLUETOOTHD_LOG = Path("/tmp/bluetoothd.log")  # guest.sh's BLUETOOTHD_LOG
NOTIFY_SOCKET = "/run/e2e-notify.sock"
E2E_CONFIG = """\
# Written by tests/e2e: real BlueZ (never the virtual one), GPIO in memory (the guest has no
# GPIO chip), logs verbose for the kept guest logs.
[ble]
virtual = "off"
adapter = "hci0"

[gpio]
backend = "memory"

[logging]
level = "debug"
format = "logfmt"
"""
READY_TIMEOUT_S = 120.0  # start to READY=1 and advertising, under TCG on shared cores
READVERTISE_LIMIT_S = 5.0  # the bound: advertising again after bluetoothd restarts
READVERTISE_WAIT_S = 60.0  # how long to keep looking after that, to report the real figure
BLUEZ_BACK_TIMEOUT_S = 30.0
CENTRAL_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0  # systemd's default is 90 s; the daemon floats outputs first, then saves
POLL_S = 0.05
COMMAND_TIMEOUT_S = 60.0


def systemd_like_unit(results: Results) -> units.Unit:
    if UNIT_FILE.exists():
        unit = units.parse(UNIT_FILE)
        results.fact("unit", f"{UNIT_FILE.name}: ExecStart={' '.join(unit.exec_start)}")
        if unit.ignored:
            results.fact("unit directives not reproduced", ", ".join(sorted(set(unit.ignored))))
        return unit
    results.uncovered("daemon started from systemd/smallbms.service",
                      "the unit file is not in the tree yet; started as `smallbms run --config`")
    return units.Unit(exec_start=["/usr/local/bin/smallbms", "run", "--config", DEFAULT_CONFIG],
                      directories={"StateDirectory": ["smallbms"]}, type="notify")


def prepare(unit: units.Unit, results: Results, config_text: str = E2E_CONFIG
            ) -> tuple[list[str], dict[str, str], str]:
    """Make the guest look like an installed system; returns argv, environment, config."""
    exe = Path(unit.exec_start[0])
    if not exe.exists():  # the guest's root is an overlay: install by linking the venv's script
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.symlink_to(VENV / "bin" / exe.name)
    config = unit.config_path()
    if config is None:
        results.fact("config", "the unit passes no --config: embedded defaults (virtual=auto)")
        config = ""
    else:
        Path(config).parent.mkdir(parents=True, exist_ok=True)
        Path(config).write_text(config_text)
    user = unit.user or "root"
    group = unit.group or user
    if user != "root":
        for g in [group, *unit.supplementary_groups]:
            subprocess.run(["groupadd", "-f", "-r", g], check=True)
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(["useradd", "-r", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin",
                            "-g", group, user], check=True)
        if unit.supplementary_groups:
            subprocess.run(["usermod", "-a", "-G", ",".join(unit.supplementary_groups), user],
                           check=True)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8", "USER": user, "LOGNAME": user,
           "HOME": pwd.getpwnam(user).pw_dir, "INVOCATION_ID": os.urandom(16).hex()}
    env.update(unit.directory_environment())
    for directive, paths in unit.directories.items():
        root, _ = units.DIRECTORY_ROOTS[directive]
        for p in paths:
            Path(root, p).mkdir(parents=True, exist_ok=True)
            shutil.chown(Path(root, p), user, group)
            if directive == "StateDirectory" and unit.state_directory_mode is not None:
                Path(root, p).chmod(unit.state_directory_mode)
    if user != "root":
        opened = open_path_to(Path(VENV, "bin", "python").resolve())
        if opened:
            results.fact("guest only: made traversable for the service user",
                         f"{', '.join(opened)} (the host's interpreter lives there; a real "
                         "install has its own venv under /opt/smallbms)")
    if unit.type == "notify":
        env["NOTIFY_SOCKET"] = NOTIFY_SOCKET
    env.update(unit.environment)
    argv = list(unit.exec_start)
    if unit.watchdog_s:
        env["WATCHDOG_USEC"] = str(int(unit.watchdog_s * 1e6))
        # WATCHDOG_PID must be the daemon's own pid: set it in a shell that then execs it.
        argv = ["sh", "-c", 'export WATCHDOG_PID=$$; exec "$@"', "sh", *argv]
    if unit.umask is not None:  # setpriv has no umask option: the shell sets it, then execs
        argv = ["sh", "-c", f'umask {unit.umask:04o}; exec "$@"', "sh", *argv]
    return as_service_user(unit, argv), env, config


def open_path_to(target: Path) -> list[str]:
    """Add o+x to the folders above ``target`` that lack it (in the guest's overlay only)."""
    opened = []
    for folder in reversed(target.parents):
        mode = folder.stat().st_mode
        if not mode & 0o001:
            folder.chmod(mode | 0o001)
            opened.append(str(folder))
    return opened


def as_service_user(unit: units.Unit, argv: list[str]) -> list[str]:
    user = unit.user or "root"
    if user == "root":
        return argv
    return ["setpriv", f"--reuid={user}", f"--regid={unit.group or user}", "--init-groups",
            "--", *argv]


class NotifyListener:
    """The $NOTIFY_SOCKET end systemd would hold: records READY=1, WATCHDOG=1, STATUS=."""

    def __init__(self) -> None:
        Path(NOTIFY_SOCKET).unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(NOTIFY_SOCKET)
        os.chmod(NOTIFY_SOCKET, 0o777)
        self.sock.setblocking(False)
        self.ready = asyncio.Event()
        self.watchdog_pings = 0
        self.lines: list[str] = []
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        try:
            data = self.sock.recv(4096).decode(errors="replace")
        except BlockingIOError:
            return
        for line in data.splitlines():
            if line == "WATCHDOG=1":
                self.watchdog_pings += 1
                continue
            self.lines.append(line)
            log("sd_notify:", line)
            if line == "READY=1":
                self.ready.set()


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command to completion: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


def read_text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def write_text(path: Path, text: str) -> None:
    path.write_text(text)


async def get_property(bus: MessageBus, interface: str, name: str) -> object:
    """One property of hci0 in bluetoothd; raises DBusError while bluetoothd or hci0 is away."""
    reply = await bus.call(Message(
        destination="org.bluez", path=ADAPTER_PATH, interface="org.freedesktop.DBus.Properties",
        member="Get", signature="ss", body=[interface, name]))
    if reply is None or reply.message_type == MessageType.ERROR:
        error = reply.error_name if reply is not None else "no reply"
        raise DBusError(error or "error", str(reply.body if reply is not None else ""))
    return reply.body[0].value


async def active_instances(bus: MessageBus) -> int:
    """LEAdvertisingManager1.ActiveInstances: how many advertisements bluetoothd has live."""
    value = await get_property(bus, "org.bluez.LEAdvertisingManager1", "ActiveInstances")
    return value if isinstance(value, int) else 0


async def wait_advertising(bus: MessageBus, within: float) -> float | None:
    """Seconds until bluetoothd has at least one live advertisement, or None."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            if await active_instances(bus) >= 1:
                return time.monotonic() - start
        except DBusError:
            pass  # bluetoothd not (yet) there, or the adapter not yet registered
        await asyncio.sleep(POLL_S)
    return None


def bluetoothd_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "bluetoothd":
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


async def restart_bluetoothd(results: Results) -> None:
    """SIGKILL bluetoothd (what a crash looks like) and start it again, then time the
    daemon's return to the air."""
    killed_at = time.monotonic()
    for pid in bluetoothd_pids():
        os.kill(pid, signals.SIGKILL)
    for _ in range(int(BLUEZ_BACK_TIMEOUT_S / POLL_S)):
        if not bluetoothd_pids():
            break
        await asyncio.sleep(POLL_S)
    # The same log as the first bluetoothd: a file on the guest's tmpfs that guest.sh copies
    # to the run directory (why not straight there: see BLUETOOTHD_LOG in guest.sh).
    with BLUETOOTHD_LOG.open("a") as f:  # noqa: ASYNC230 (tmpfs: does not block)
        f.write("\n==== e2e: bluetoothd killed with SIGKILL and restarted ====\n")
        f.flush()
        await asyncio.create_subprocess_exec(
            "/usr/libexec/bluetooth/bluetoothd", "-n", "-d", stdout=f,
            stderr=subprocess.STDOUT, start_new_session=True)
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    back_at = None
    while time.monotonic() - killed_at < BLUEZ_BACK_TIMEOUT_S:
        try:
            if await get_property(bus, "org.bluez.Adapter1", "Powered"):
                back_at = time.monotonic()
                break
        except DBusError:
            pass
        await asyncio.sleep(POLL_S)
    if back_at is None:
        results.check("bluetoothd restarted", False,
                      f"hci0 not powered after {BLUEZ_BACK_TIMEOUT_S}s")
        return
    results.fact("bluetoothd restart: kill to adapter powered (s)", round(back_at - killed_at, 2))
    took = await wait_advertising(bus, READVERTISE_WAIT_S)
    bus.disconnect()
    results.check(f"advertising again within {READVERTISE_LIMIT_S:g} s of bluetoothd's return",
                  took is not None and took <= READVERTISE_LIMIT_S,
                  "never" if took is None else f"{took:.2f} s")


async def main() -> int:
    results = Results("daemon")
    unit = systemd_like_unit(results)
    argv, env, config = prepare(unit, results)
    notify = NotifyListener() if unit.type == "notify" else None
    daemon_log = (work() / "out" / "periph" / "smallbms.log").open("w")  # its journal
    log("starting:", " ".join(argv))
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=daemon_log, stderr=subprocess.STDOUT,
        cwd=unit.working_directory or "/", start_new_session=True)
    started = time.monotonic()
    try:
        return await scenario(results, unit, env, config, proc, notify, started)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        signal("daemon.periph.ready")  # never leave the central waiting on a dead peripheral


async def scenario(results: Results, unit: units.Unit, env: dict[str, str], config: str,
                   proc: asyncio.subprocess.Process, notify: NotifyListener | None,
                   started: float) -> int:
    if notify is not None:
        try:
            await asyncio.wait_for(notify.ready.wait(), READY_TIMEOUT_S)
            results.check("READY=1 sent to $NOTIFY_SOCKET", True,
                          f"{time.monotonic() - started:.1f} s after start")
        except TimeoutError:
            results.check("READY=1 sent to $NOTIFY_SOCKET", False,
                          f"none in {READY_TIMEOUT_S:g} s (daemon exit: {proc.returncode})")
            return 1
    if importlib.util.find_spec("gatt.service") is None:
        results.uncovered("the daemon on real BlueZ (advertising, GATT, readout, restart)",
                          "gatt.service (the BLE server) is not in the tree yet")
        write_text(work() / "flags" / "daemon.no-ble", "")
        signal("daemon.periph.ready")
        await await_flag("daemon.central.done", CENTRAL_TIMEOUT_S)
        await stop(results, unit, env, proc)
        return 0 if results.ok else 1
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    took = await wait_advertising(bus, READY_TIMEOUT_S)
    if not results.check("daemon advertises on real BlueZ", took is not None,
                         f"{time.monotonic() - started:.1f} s after start" if took is not None
                         else f"no live advertisement (daemon exit: {proc.returncode})"):
        return 1
    code, out, err = await run("smallbms", "key", *(["--config", config] if config else []),
                               env={**env, "PATH": f"{VENV}/bin:{env['PATH']}"})
    results.check("`smallbms key` prints the readout key", code == 0 and len(out.strip()) == 32,
                  err.strip() or "32 hex digits")
    write_text(work() / "flags" / "daemon.key", out.strip())
    signal("daemon.periph.ready")

    restart_asked = asyncio.create_task(await_flag("daemon.restart.request", CENTRAL_TIMEOUT_S))
    central_done = asyncio.create_task(await_flag("daemon.central.done", CENTRAL_TIMEOUT_S))
    await asyncio.wait({restart_asked, central_done}, return_when=asyncio.FIRST_COMPLETED)
    if restart_asked.done() and restart_asked.result():
        await restart_bluetoothd(results)
        if not bonded_reconnect():
            results.fact("bonds forgotten after the restart (see e2elib.forget_paired_devices)",
                         await forget_paired_devices())
        signal("daemon.restart.done")
    await central_done
    results.check("daemon still running after the scenario", proc.returncode is None,
                  f"exit {proc.returncode}" if proc.returncode is not None else "")
    if notify is not None and unit.watchdog_s:
        results.fact("watchdog pings", notify.watchdog_pings)
    _, paired, _ = await run("bluetoothctl", "devices", "Paired")
    for line in paired.splitlines():
        results.fact("paired with (peripheral's bluetoothd)", line)

    await stop(results, unit, env, proc)
    return 0 if results.ok else 1


async def stop(results: Results, unit: units.Unit, env: dict[str, str],
               proc: asyncio.subprocess.Process) -> None:
    """``systemctl stop``: SIGTERM, wait, then check the outputs were left floating."""
    if proc.returncode is None:
        proc.send_signal(signals.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            results.check("SIGTERM: the daemon exits 0", code == 0, f"exit {code}")
        except TimeoutError:
            results.check("SIGTERM: the daemon exits 0", False,
                          f"still running after {STOP_TIMEOUT_S:g} s")
        for command in unit.exec_stop_post:  # systemd runs these after any stop
            code, out, err = await run(*as_service_user(unit, command), env=env)
            results.check(f"ExecStopPost {' '.join(command[1:])}", code == 0,
                          (err or out).strip()[-200:] or "exit 0")
        levels = Path(env.get("STATE_DIRECTORY", "/var/lib/smallbms").split(":")[0],
                      "gpio-memory.json")
        text = read_text(levels)
        if text is not None:
            state = json.loads(text)
            outputs = {k: v for k, v in state.items() if k in ("load", "charger", "prealarm")}
            results.check("after stop every output floats (memory GPIO)",
                          bool(outputs) and not any(outputs.values()), state)
        else:
            results.uncovered("outputs float after stop", f"{levels} not written")
    else:
        results.check("the daemon runs until stopped", False, f"exited early: {proc.returncode}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
