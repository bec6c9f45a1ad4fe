"""Daemon case, central side: ``smallbms-client`` and victron-ble against the real daemon.

Runs the scenario of the e2e issue, each step as a user would (the CLI, in its own process)
except where only bleak can look (the raw advertisement for victron-ble, the sweep that reads
every characteristic once).  Steps whose product parts are missing are reported as not
covered, never faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from e2elib import Results, await_flag, log, signal, work
from real_bluez import INVALID_WRITE_ARGS, INVALID_WRITE_EXIT, INVALID_WRITE_MESSAGE

ADAPTER = "hci0"
VICTRON_COMPANY_ID = 0x02E1
PIN = "000000"  # the factory PIN (SPEC §3)
PERIPH_READY_TIMEOUT_S = 300.0
SCAN_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 180.0   # one smallbms-client run: start, scan, connect, pair, PIN, work
CLIENT_TIMEOUT = "30"   # smallbms-client --timeout: scan and connect, generous under TCG
RESTART_TIMEOUT_S = 120.0
# The readout and the GATT status are read a few seconds apart from a live simulated bank.
SOC_TOLERANCE = 1.0      # %
VOLTAGE_TOLERANCE = 0.1  # V
CURRENT_TOLERANCE = 1.0  # A
SETTING_NAME = "discharge_floor"
SETTING_VALUE = "15"      # %, inside 0-99 and below the default low-SOC warning (20 %)
WATCH_COUNT = 2
SET_SOC = 75              # %, any known value that differs from the start (unknown, shown 100)


@dataclass
class Cli:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def client(*args: str) -> Cli:
    """One ``smallbms-client`` run, as a user types it."""
    argv = ["smallbms-client", "--adapter", ADAPTER, "--timeout", CLIENT_TIMEOUT, *args]
    env = {**os.environ, "SMALLBMS_PIN": PIN}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        err += b"\n(e2e: killed after the CLI timeout)"
    result = Cli(proc.returncode if proc.returncode is not None else -1,
                 out.decode(errors="replace"), err.decode(errors="replace"))
    log(f"$ {' '.join(argv)}  -> exit {result.code} in {time.monotonic() - started:.1f} s")
    for line in (result.out + result.err).strip().splitlines()[:20]:
        log("   ", line)
    return result


def has_cli() -> bool:
    """Is the client library (what smallbms-client runs on) in the tree yet?"""
    try:
        module = importlib.import_module("gatt.client")
    except ImportError:
        return False
    return hasattr(module, "SmallBmsClient")


async def readout(key: bytes, results: Results, when: str = "") -> dict[str, Any] | None:
    """The instant readout as any Victron app sees it: raw advert, decoded by victron-ble.

    Each call starts a new scan: the emulated controller reports an advertisement when a scan
    is enabled, so this sees the data on the air now, not a cached copy."""
    seen: asyncio.Future[tuple[BLEDevice, bytes]] = asyncio.get_running_loop().create_future()

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        data = adv.manufacturer_data.get(VICTRON_COMPANY_ID)
        if data is not None and not seen.done():
            seen.set_result((device, data))

    scanner = BleakScanner(on_advert, bluez={"adapter": ADAPTER})
    await scanner.start()
    try:
        device, data = await asyncio.wait_for(seen, SCAN_TIMEOUT_S)
    except TimeoutError:
        results.check(f"instant readout advertised (0x02E1 manufacturer data){when}", False,
                      f"none in {SCAN_TIMEOUT_S:g} s")
        return None
    finally:
        await scanner.stop()
    results.check(f"instant readout advertised (0x02E1 manufacturer data){when}", True,
                  f"{device.address}: {len(data)} bytes after the company id")
    from victron_ble.devices import LynxSmartBMS, LynxSmartBMSData, detect_device_type  # noqa: PLC0415

    parser = detect_device_type(data)
    if parser is not LynxSmartBMS:
        results.check(f"victron-ble decodes the readout{when}", False,
                      f"victron-ble picks {parser} for {data[:5].hex()}, not LynxSmartBMS")
        return None
    try:
        decoded = LynxSmartBMS(key.hex()).parse(data)
        if not isinstance(decoded, LynxSmartBMSData):
            raise TypeError(f"victron-ble returned {type(decoded).__name__}")  # noqa: TRY301
    except Exception as e:
        results.check(f"victron-ble decodes the readout{when}", False,
                      f"{type(e).__name__}: {e}")
        return None
    figures = {"soc": decoded.get_soc(), "voltage": decoded.get_voltage(),
               "current": decoded.get_current(), "consumed_ah": decoded.get_consumed_ah(),
               "remaining_mins": decoded.get_remaining_mins(),
               "temperature": decoded.get_battery_temperature()}
    results.check(f"victron-ble decodes the readout{when}", True, f"LynxSmartBMS: {figures}")
    return figures


def soc_on_air(gatt_soc: object) -> object:
    """What the readout must carry for the SOC read over GATT: an unknown SOC is sent as
    gatt.readout.SOC_SENT_WHEN_UNKNOWN (victron-ble would show Victron's own "not available"
    as 102.3 %)."""
    if gatt_soc is not None:
        return gatt_soc
    return getattr(importlib.import_module("gatt.readout"), "SOC_SENT_WHEN_UNKNOWN", None)


def near(a: object, b: object, tolerance: float) -> bool:
    if a is None or b is None:
        return a is b
    return isinstance(a, int | float) and isinstance(b, int | float) and abs(a - b) <= tolerance


async def sweep(results: Results) -> None:
    """Read every readable characteristic once, straight through bleak, and check each one
    answers as its access class in gatt/profile.py says: open and paired ones give a value
    (the link is encrypted by now), PIN ones refuse without a PIN session."""
    try:
        from gatt import profile  # noqa: PLC0415
    except ImportError as e:
        results.uncovered("every characteristic read once", f"gatt.profile: {e}")
        return
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: VICTRON_COMPANY_ID in adv.manufacturer_data,
        timeout=SCAN_TIMEOUT_S, bluez={"adapter": ADAPTER})
    if device is None:
        results.check("every characteristic read once", False, "device not found")
        return
    answers: dict[str, str] = {}
    wrong: list[str] = []
    async with BleakClient(device, timeout=float(CLIENT_TIMEOUT),
                           bluez={"adapter": ADAPTER}) as bms:
        for service in bms.services:
            for char in service.characteristics:
                if "read" not in char.properties:
                    continue
                spec = profile.BY_UUID.get(char.uuid)
                name = spec.key if spec is not None else char.uuid
                try:
                    value = await bms.read_gatt_char(char)
                    answers[name] = f"{len(value)} B"
                    refused = False
                except BleakError as e:
                    answers[name] = f"refused: {e}"
                    refused = True
                if spec is not None:
                    expect_refusal = spec.access is profile.Access.PIN
                    if refused != expect_refusal:
                        wrong.append(f"{name} ({spec.access.value}): {answers[name]}")
    log("sweep:", answers)
    results.check("every readable characteristic answers as its access class says",
                  bool(answers) and not wrong, wrong or f"{len(answers)} characteristics")


async def paired_state() -> str:
    proc = await asyncio.create_subprocess_exec("bluetoothctl", "devices", "Paired",
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode(errors="replace").strip()


async def scenario(results: Results) -> None:
    if not await await_flag("daemon.periph.ready", PERIPH_READY_TIMEOUT_S):
        results.check("peripheral ready", False, "no daemon.periph.ready flag")
        return
    if (work() / "flags" / "daemon.no-ble").exists():
        results.uncovered("central scenario (readout, pairing, GATT, notifications, restart)",
                          "the daemon has no BLE server yet (gatt.service)")
        return
    key_file = work() / "flags" / "daemon.key"
    key_hex = key_file.read_text().strip() if key_file.exists() else ""
    if len(key_hex) != 32:
        results.check("readout key from the peripheral", False, repr(key_hex))
        return
    figures = await readout(bytes.fromhex(key_hex), results)

    if not has_cli():
        results.uncovered("smallbms-client scenario (status, settings, notifications)",
                          "gatt.client.SmallBmsClient is not in the tree yet")
        await sweep(results)
        return

    status = await client("status", "--json")
    if results.check("smallbms-client status (connect, pair, PIN session)", status.code == 0,
                     status.err.strip() or "ok"):
        ours = status.json()
        results.fact("paired devices after the first session", await paired_state())
        if figures is not None:
            diffs = {k: (figures[k], ours.get(k)) for k in ("soc", "voltage", "current")}
            results.check(
                "the readout decodes to the daemon's figures",
                near(figures["soc"], soc_on_air(ours.get("soc")), SOC_TOLERANCE)
                and near(figures["voltage"], ours.get("voltage"), VOLTAGE_TOLERANCE)
                and near(figures["current"], ours.get("current"), CURRENT_TOLERANCE),
                f"(victron-ble, GATT): {diffs}")
    for what in ("bank", "history", "get"):
        r = await client(what, "--json")
        results.check(f"smallbms-client {what}", r.code == 0, r.err.strip() or "ok")
    r = await client("key", "--json")
    got_key = r.out.strip().strip('"') if r.code == 0 else ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        parsed = json.loads(r.out)
        got_key = parsed if isinstance(parsed, str) else str(parsed.get("key", got_key))
    results.check("the key read over GATT is the one `smallbms key` prints",
                  r.code == 0 and got_key.lower() == key_hex.lower(),
                  r.err.strip() or "same key")
    await sweep(results)

    r = await client("command", "set_soc", str(SET_SOC))
    if results.check(f"command set_soc {SET_SOC} (control point, result indication)",
                     r.code == 0, r.err.strip() or r.out.strip()):
        after = await readout(bytes.fromhex(key_hex), results, f" after set_soc {SET_SOC}")
        results.check(f"the readout follows: victron-ble shows SOC {SET_SOC} %",
                      after is not None and near(after["soc"], float(SET_SOC), SOC_TOLERANCE),
                      after["soc"] if after is not None else "no readout")
    r = await client("set", SETTING_NAME, SETTING_VALUE)
    results.check(f"set {SETTING_NAME} {SETTING_VALUE}", r.code == 0, r.err.strip() or "ok")
    r = await client("get", SETTING_NAME, "--json")
    results.check(f"read back {SETTING_NAME}", r.code == 0 and SETTING_VALUE in r.out,
                  r.out.strip() or r.err.strip())
    r = await client(*INVALID_WRITE_ARGS)
    results.check(f"invalid write ({' '.join(INVALID_WRITE_ARGS[1:])}) is rejected: exit "
                  f"{INVALID_WRITE_EXIT} and the message the virtual bus gives (real_bluez.py)",
                  (r.code, r.err.strip()) == (INVALID_WRITE_EXIT, INVALID_WRITE_MESSAGE),
                  f"exit {r.code}: {r.err.strip()}")
    r = await client("watch", "--count", str(WATCH_COUNT), "--json")
    lines = [line for line in r.out.splitlines() if line.strip()]
    results.check(f"notifications: watch --count {WATCH_COUNT}",
                  r.code == 0 and len(lines) >= WATCH_COUNT, r.err.strip() or f"{len(lines)}")

    signal("daemon.restart.request")
    if await await_flag("daemon.restart.done", RESTART_TIMEOUT_S):
        r = await client("status", "--json")
        results.check("after bluetoothd's restart: found, connected and read again",
                      r.code == 0, r.err.strip() or "ok")
    else:
        results.check("bluetoothd restart in the peripheral", False, "no daemon.restart.done")
    connected = await connected_devices()
    results.check("disconnected at the end", connected == "", connected or "no connection")


async def connected_devices() -> str:
    proc = await asyncio.create_subprocess_exec("bluetoothctl", "devices", "Connected",
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = await proc.communicate()
    return out.decode(errors="replace").strip()


async def main() -> int:
    results = Results("daemon")
    try:
        await scenario(results)
    except Exception as e:
        results.check("daemon scenario completes", False, f"{type(e).__name__}: {e}")
    finally:
        signal("daemon.central.done")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
