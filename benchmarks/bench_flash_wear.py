"""What the daemon's state saving writes to the SD card per day, at the block layer.

The daemon's persistence policy (``bms_daemon.persistence.Persister``, its ``FileStore`` and its
atomic, fsynced writes) is driven by a simulated day of the daemon's control loop (the simulated
bank, the real core, one tick per second) for three days of use: an idle bank, a steady 30 A
load, a daily cycle (night load, a charge with a synchronisation, an evening load).  The state
directory is on a fresh ext4 file system (with its journal, as on a Raspberry Pi's card) on a
loop device; the figure is the device's sectors written (``/sys/block/loopN/stat``) over the
day, so file system metadata and journal commits count.  Beside each figure: the policy before
issue 14 (every 60 s whenever the snapshot differed), measured the same way in the same run.

Needs root (losetup, mount); without it, only the number of saves and the bytes of file content
are printed.

    .venv/bin/python benchmarks/bench_flash_wear.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bms_daemon.core.bms import Bms
from bms_daemon.core.types import Inputs
from bms_daemon.persistence import SAVE_INTERVAL_S, Persister
from bms_daemon.scenario import parse_scenario
from bms_daemon.simulate import _enter
from bms_daemon.sources.simulated import SimulatedBank
from bms_daemon.state.layout import counters_of
from bms_daemon.store import FileStore

GOAL_MB_PER_DAY = 1.0
SECTOR = 512
DAYS = {
    "idle bank (no current)": """
[bank]
model = "12.8V-200Ah"
soc = 80
[[step]]
duration = "24h"
""",
    "steady 30 A load": """
[bank]
model = "12.8V-300Ah"
parallel = 4
soc = 95
[[step]]
duration = "24h"
load = 30
""",
    "daily cycle": """
[bank]
model = "12.8V-200Ah"
soc = 90
[[step]]
duration = "10h"
load = 8
[[step]]
duration = "8h"
load = 3
charge = 45
[[step]]
duration = "6h"
load = 12
""",
}


class OldPolicy(Persister):
    """The policy before issue 14: every 60 s, whenever the snapshot differed at all."""

    def tick(self, now: float) -> None:
        if self._writing is not None and not self._writing.done():
            return
        if self._last_attempt is not None and now - self._last_attempt < 60.0:
            return
        self._last_attempt = now
        data = self.snapshot()
        if data != self._last_saved:
            self._writing = asyncio.get_running_loop().create_task(self._write(data))


class CountingStore(FileStore):
    """A FileStore that adds up the bytes of file content it writes."""

    written = 0

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        super().save(name, data, secret=secret)
        self.written += self.path(name).stat().st_size


async def simulated_day(text: str, stores: dict[type[Persister], CountingStore]) -> list[int]:
    """Run one day from a state already on disk (no save at start, none at shutdown), each
    policy saving to its own store; returns the saves of each."""
    scenario = parse_scenario(text, "bench")
    bank = SimulatedBank(scenario.bank)
    bms = Bms(scenario.settings)
    bms.command("set_soc", round(bank.true_soc, 1))
    inputs = Inputs()
    _enter(bank, scenario.steps[0])
    bank.apply_outputs(bms.step(bank.read(0.0), inputs, 0.0).outputs)
    persisters = []
    for policy, store in stores.items():
        persister = policy(store, lambda: counters_of(bms.snapshot()), interval_s=SAVE_INTERVAL_S)
        persister.mark_saved(counters_of(bms.snapshot()))  # a daemon that has been running
        persisters.append(persister)
    t = 0
    for step in scenario.steps:
        _enter(bank, step)
        for _ in range(int(step.duration)):
            t += 1
            status = bms.step(bank.read(float(t)), inputs, float(t))
            bank.apply_outputs(status.outputs)
            for persister in persisters:
                persister.tick(float(t))
                if persister._writing is not None:
                    await persister._writing
    return [persister.saves for persister in persisters]


@contextlib.contextmanager
def loop_ext4() -> Iterator[tuple[Path, Callable[[], int]]]:
    """A fresh ext4 on a loop device, mounted; yields (mount point, sectors written so far)."""
    with tempfile.TemporaryDirectory(prefix="smallbms-wear-") as work:
        image, mount = Path(work) / "card.img", Path(work) / "mnt"
        mount.mkdir()
        with image.open("wb") as f:
            f.truncate(64 * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(["mount", "-t", "ext4", device, str(mount)], check=True)
            stat = Path("/sys/block") / Path(device).name / "stat"

            def sectors() -> int:
                os.sync()
                return int(stat.read_text().split()[6])

            try:
                yield mount, sectors
            finally:
                subprocess.run(["umount", str(mount)], check=True)
        finally:
            subprocess.run(["losetup", "--detach", device], check=True)


def run_day(text: str, block: bool) -> list[tuple[int, int, int | None]]:
    """(saves, file bytes, block-layer bytes or None) of one day, for each policy."""
    policies = (Persister, OldPolicy)
    with contextlib.ExitStack() as stack:
        if block:
            disks = [stack.enter_context(loop_ext4()) for _ in policies]
        else:
            disks = [(Path(stack.enter_context(tempfile.TemporaryDirectory())), lambda: 0)
                     for _ in policies]
        stores = {p: CountingStore(mount / "state") for p, (mount, _) in zip(policies, disks,
                                                                               strict=True)}
        before = [sectors() for _, sectors in disks]
        saves = asyncio.run(simulated_day(text, stores))
        wear = [(sectors() - b) * SECTOR if block else None
                for (_, sectors), b in zip(disks, before, strict=True)]
        return [(n, store.written, w)
                for n, store, w in zip(saves, stores.values(), wear, strict=True)]


def _mb(value: int | None) -> str:
    return "  n/a" if value is None else f"{value / 1e6:5.2f}"


def main() -> None:
    block = os.geteuid() == 0 and all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "mount"))
    print(f"state saved per simulated day, 1 tick/s; policy: figures at most every "
          f"{SAVE_INTERVAL_S:g} s, events at once; baseline: the policy before (every 60 s)")
    if not block:
        print("  (not root: block-layer figures need a loop device; file content only)")
    for name, text in DAYS.items():
        (saves, content, wear), (old_saves, old_content, old_wear) = run_day(text, block)
        ratio = f"{wear / old_wear:.3f}" if wear is not None and old_wear else "n/a"
        verdict = ""
        if wear is not None:
            ok = wear / 1e6 <= GOAL_MB_PER_DAY and (saves == 0 or "idle" not in name)
            verdict = "goal met" if ok else "GOAL MISSED"
        print(f"  {name:<24} {saves:4d} saves, {_mb(content)} MB/day file content, "
              f"{_mb(wear)} MB/day block layer  | before: {old_saves:4d} saves, "
              f"{_mb(old_content)} MB/day, {_mb(old_wear)} MB/day block  | ratio {ratio}  "
              f"(goal <= {GOAL_MB_PER_DAY:g} MB/day, idle: nothing) {verdict}")


if __name__ == "__main__":
    main()
