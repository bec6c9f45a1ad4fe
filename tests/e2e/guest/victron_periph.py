"""Victron case, peripheral side: ``smallbms run`` hears the central's battery over real BlueZ.

The daemon advertises its readout and serves GATT on hci0 and scans there (``type =
"victron-ble"``, the cells); a VE.Direct shunt on a pseudo-terminal gives the bank current
and voltage (``type = "vedirect"``): a combined source, as in docs/victron-bluetooth.md.
Steps, each asked of the central with a flag: healthy cells (LOAD and CHARGER high), a cell
under 3.10 V (PRE-ALARM), under 2.80 V (LOAD floats, not before the 30 s lead), recovery, then
the battery silenced (W-B05, then A-B05 with both outputs floating).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import tty
from pathlib import Path
from typing import Any

from daemon_periph import E2E_CONFIG
from e2elib import Results, await_flag, log, signal, work
from victron_central import KEY, adapter_property

VENV = Path(os.environ["VENV"])
STEP_TIMEOUT_S = 240.0  # under TCG on shared cores
CENTRAL_TIMEOUT_S = 300.0
LEAD_S = 30.0


def vedirect_block(fields: list[tuple[str, str]]) -> bytes:
    body = b"".join(b"\r\n" + k.encode() + b"\t" + v.encode() for k, v in fields)
    body += b"\r\nChecksum\t"
    return body + bytes([(-sum(body)) % 256])


class Shunt:
    """A SmartShunt on the master end of a pty, one block a second."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        block = vedirect_block([("PID", "0xA389"), ("V", "13200"), ("I", "-4000"),
                                ("P", "-53"), ("CE", "-20000"), ("SOC", "800"),
                                ("TTG", "600"), ("Alarm", "OFF"), ("AR", "0")])
        while not self._stop.wait(1.0):
            try:
                os.write(self.master, block)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()


def config(state: Path, address: str, shunt: str) -> str:
    """The daemon case's configuration (real BlueZ, memory GPIO), JSON logs, and the source."""
    common = E2E_CONFIG.replace('level = "debug"', 'level = "info"').replace(
        'format = "logfmt"', 'format = "json"')
    return common + f"""\
[bms]
state_directory = "{state}"
[source]
type = "combined"
cells = "batteries"
current = "shunt"
voltage = "shunt"
comms_warning = "5s"
comms_alarm = "15s"
[source.batteries]
type = "victron-ble"
# btvirt reports an advertisement only when scanning or advertising is (re)enabled, and
# BlueZ restarts LE discovery about every 10 s: the battery is heard every 10 s or so
max_age = "30s"
battery = {{ name = "Smart Lithium 12.8V/100Ah", cells = 4, capacity_ah = 100 }}
batteries = [ {{ name = "e2e", address = "{address}", key = "{KEY.hex()}" }} ]
[source.shunt]
type = "vedirect"
device = "{shunt}"
"""


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process, out: Path) -> None:
        self.proc = proc
        self.entries: list[dict[str, Any]] = []
        self.out = out.open("w")
        self.new = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.out.write(line)
            self.out.flush()
            text = line.strip()
            if text.startswith("<") and ">" in text[:4]:  # the journal's priority prefix
                text = text[text.index(">") + 1:]
            try:
                self.entries.append(json.loads(text))
            except json.JSONDecodeError:
                continue
            self.new.set()

    async def wait(self, event: str, **fields: object) -> dict[str, Any] | None:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        seen = 0
        while time.monotonic() < deadline:
            for entry in self.entries[seen:]:
                if entry.get("event") == event and all(entry.get(k) == v
                                                       for k, v in fields.items()):
                    return entry
            seen = len(self.entries)
            self.new.clear()
            try:
                await asyncio.wait_for(self.new.wait(), 1.0)
            except TimeoutError:
                if self.proc.returncode is not None:
                    return None
        log(f"no {event} {fields} within {STEP_TIMEOUT_S:.0f} s")
        return None


async def advertising(within: float) -> bool:
    """Whether bluetoothd has the daemon's advertisement live on hci0 within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        active = await adapter_property("org.bluez.LEAdvertisingManager1", "ActiveInstances")
        if isinstance(active, int) and active >= 1:
            return True
        await asyncio.sleep(1.0)
    return False


async def steps(daemon: Daemon, results: Results) -> None:
    listening = await daemon.wait("victron_listening")
    results.check("the daemon scans on its own adapter", listening is not None,
                  listening.get("scan") if listening else "no victron_listening")
    healthy = await daemon.wait("outputs", load="high", charger="high", prealarm="floating")
    if not results.check("healthy battery heard: LOAD and CHARGER high", healthy is not None):
        return
    results.check("... while the daemon advertises on the same adapter",
                  await advertising(STEP_TIMEOUT_S))
    fell = time.monotonic()
    signal("victron.prealarm")
    rose = await daemon.wait("outputs", load="high", prealarm="high")
    if not results.check("a cell under 3.10 V: PRE-ALARM high, LOAD high", rose is not None):
        return
    assert rose is not None
    signal("victron.undervoltage")
    floated = await daemon.wait("outputs", load="floating", prealarm="high")
    if not results.check("a cell under 2.80 V: LOAD floats", floated is not None):
        return
    assert floated is not None
    # PRE-ALARM rose after ``fell``; LOAD floated at least the lead after that (the log has no
    # time stamps: the journal adds them)
    since = time.monotonic() - fell
    results.fact("cell under 3.10 V to LOAD floating, seen here (s)", round(since, 1))
    results.check("... not before the 30 s pre-alarm lead", since >= LEAD_S, f"{since:.1f} s")
    signal("victron.recover")
    signal("victron.silence")
    warned = await daemon.wait("code_raised", code="W-B05")
    results.check("battery silenced: W-B05", warned is not None)
    alarmed = await daemon.wait("code_raised", code="A-B05")
    results.check("... then A-B05", alarmed is not None)
    floating = await daemon.wait("outputs", load="floating", charger="floating")
    results.check("... both outputs floating", floating is not None)


async def main() -> int:
    results = Results("victron")
    if not await await_flag("victron.central.ready", CENTRAL_TIMEOUT_S):
        results.check("central broadcasting", False)
        return 1
    address = (work() / "victron.central.address").read_text().strip()
    shunt = Shunt()
    state = Path("/tmp/victron-state")
    path = Path("/tmp/victron.toml")
    path.write_text(config(state, address, shunt.path))  # noqa: ASYNC240 (tmpfs)
    proc = await asyncio.create_subprocess_exec(
        str(VENV / "bin" / "smallbms"), "run", "--config", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    daemon = Daemon(proc, work() / "out" / "periph" / "victron-daemon.log")
    try:
        await steps(daemon, results)
    finally:
        proc.terminate()
        code = await proc.wait()
        results.check("daemon stops cleanly on SIGTERM", code == 0, f"exit {code}")
        shunt.stop()
        signal("victron.periph.done")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
