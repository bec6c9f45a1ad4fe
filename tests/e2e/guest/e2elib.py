"""Shared helpers of the guest-side e2e programs: results, flags, timestamps.

Each program records named checks into ``$E2E_WORK/results/<case>.<role>.json``; the host's
report.py turns them into the verdict.  A check is either passed, failed (with what was seen),
or "not covered" (the part of the product it needs has not been built yet): a missing feature is
reported as such, never faked into a pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

FLAG_POLL_S = 0.1  # how often a guest looks for the other guest's flag file

_T0 = time.monotonic()


def log(*parts: object) -> None:
    """A line in the case log, stamped with seconds since the program started."""
    print(f"[{os.environ.get('E2E_ROLE', '?')} +{time.monotonic() - _T0:6.2f}s]", *parts,
          flush=True)


def work() -> Path:
    return Path(os.environ["E2E_WORK"])


def signal(flag: str) -> None:
    """Tell the other guest that something happened (the shared run directory is all they
    share)."""
    (work() / "flags" / flag).touch()


async def await_flag(flag: str, within: float) -> bool:
    """Wait for the other guest's flag; False on timeout."""
    path = work() / "flags" / flag
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            return True
        await asyncio.sleep(FLAG_POLL_S)
    log(f"timed out after {within:.0f}s waiting for flag {flag}")
    return False


def bonded_reconnect() -> bool:
    """E2E_BONDED_RECONNECT=1: keep the bond across the daemon case's bluetoothd restart."""
    return os.environ.get("E2E_BONDED_RECONNECT", "0") == "1"


async def forget_paired_devices() -> list[str]:
    """``bluetoothctl remove`` every paired device, as a user's "Forget this device" does;
    returns their addresses.

    Why the daemon case does it after the bluetoothd restart, on both sides: a central that
    still holds the bond encrypts the moment it reconnects, and BlueZ 5.66 on kernel 6.1 drops
    the link (and the central's kernel may oops) when that encryption lands inside
    bluetoothd's own raise of the security level: finding 4 of docs/testing.md, about one
    bonded reconnection in seven under TCG.  Without the bond the reconnection pairs afresh,
    like the first connection, which never raced.
    """
    proc = await asyncio.create_subprocess_exec(
        "bluetoothctl", "devices", "Paired", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = await proc.communicate()
    addresses = [line.split()[1] for line in out.decode(errors="replace").splitlines()
                 if line.startswith("Device ")]
    for address in addresses:
        remove = await asyncio.create_subprocess_exec(
            "bluetoothctl", "remove", address, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        await remove.communicate()
    return addresses


class Results:
    """The checks of one case on one side, saved after every change so that a guest that
    dies half-way still leaves what it proved."""

    def __init__(self, case: str) -> None:
        self.case = case
        self.role = os.environ.get("E2E_ROLE", "?")
        self.checks: list[dict[str, Any]] = []
        self.not_covered: list[dict[str, str]] = []
        self.facts: dict[str, Any] = {}
        self.save()

    def check(self, name: str, ok: bool, detail: object = "") -> bool:
        log(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
        self.checks.append({"name": name, "ok": bool(ok), "detail": str(detail)})
        self.save()
        return ok

    def uncovered(self, name: str, why: str) -> None:
        log(f"NOT COVERED {name}: {why}")
        self.not_covered.append({"name": name, "why": why})
        self.save()

    def fact(self, name: str, value: object) -> None:
        """A measurement or observation worth reporting (not a pass/fail)."""
        log(f"fact {name} = {value}")
        self.facts[name] = value
        self.save()

    def save(self) -> None:
        path = work() / "results" / f"{self.case}.{self.role}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"case": self.case, "role": self.role, "checks": self.checks,
                                   "not_covered": self.not_covered, "facts": self.facts},
                                  indent=1))
        tmp.replace(path)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks)
