"""GPIO case: the daemon's gpiod backend on a kernel GPIO chip (gpio-sim), in its own guest.

What only a kernel chip can prove: that the lines are requested the way bms_daemon/gpio/gpiod.py
says (open-source outputs, a biased and debounced remote input), that the remote input really
switches LOAD and CHARGER, and the fail-safe the product promises: a daemon that dies (SIGKILL)
or stops (SIGTERM) leaves every output line released, so the wiring's pull-downs disconnect
loads and chargers.

The chip is made through gpio-sim's configfs to look like a Pi header: 28 lines named GPIO0 to
GPIO27, so the daemon's default line numbers (LOAD 17, CHARGER 27, PRE-ALARM 22, LEDs 24/25)
are used unchanged; the config names the chip by its label and adds the remote input on 23.

How the pins are observed.  gpio-sim gives every line a simulated pull (``sim_gpioN/pull``) and
shows its level (``sim_gpioN/value``): a line nobody holds follows its pull, which is how
"released" is told from "driven low" once the daemon is gone.  While a line is held, gpio-sim's
debugfs view gives its simulated direction: gpiolib emulates an open-source output's released
state by switching the line to input, and gpio-sim keeps showing the last driven level there,
so "released" is read as direction input, not as a level.  One pull per line stands for both
the outside world and the bias a consumer requests, so the daemon requesting the remote with
pull-down "opens the switch": the case closes it again after each start.

The daemon is started from systemd/smallbms.service as in the daemon case (daemon_periph.py),
as the unit's user, with /dev/gpiochipN given to the gpio group the way Raspberry Pi OS's udev
rules do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import daemon_periph as periph
import gpiod
from e2elib import Results, log, work
from gpiod.line import Bias, Direction, Drive

CONFIGFS = Path("/sys/kernel/config/gpio-sim")
DEBUGFS_GPIO = Path("/sys/kernel/debug/gpio")
LABEL = "smallbms-e2e-header"
NUM_LINES = 28  # GPIO0..GPIO27, as on a Pi's 40-pin header
OUTPUTS = {"load": 17, "charger": 27, "prealarm": 22, "led_blue": 24, "led_red": 25}
TERMINALS = ("load", "charger", "prealarm")
REMOTE = 23
CONFIG = f"""\
# Written by tests/e2e (gpio case): the gpiod backend on a gpio-sim chip, no Bluetooth.
[ble]
enabled = false

[gpio]
backend = "gpiod"
chip = "{LABEL}"

[gpio.lines]
remote = {REMOTE}

[logging]
level = "debug"
format = "logfmt"
"""
REACT_TIMEOUT_S = 10.0  # the control loop runs at 2 Hz; TCG and shared cores make it slower
POLL_S = 0.05


class SimChip:
    """A gpio-sim chip made through configfs, and its simulated pins in sysfs."""

    def __init__(self) -> None:
        device = CONFIGFS / "smallbms"
        bank = device / "bank0"
        device.mkdir()
        bank.mkdir()
        (bank / "num_lines").write_text(str(NUM_LINES))
        (bank / "label").write_text(LABEL)
        for offset in range(NUM_LINES):
            (bank / f"line{offset}").mkdir()
            (bank / f"line{offset}" / "name").write_text(f"GPIO{offset}")
        (device / "live").write_text("1")
        self.name = (bank / "chip_name").read_text().strip()
        self.path = Path("/dev") / self.name
        self.sysfs = Path("/sys/devices/platform") / (device / "dev_name").read_text().strip()
        self.sysfs /= self.name

    def value(self, offset: int) -> int:
        return int((self.sysfs / f"sim_gpio{offset}" / "value").read_text())

    def state(self, offset: int) -> str:
        """"high" or "low" when the line is driven, "released" otherwise.

        gpio-sim's debugfs section lists the held lines as `` gpio-N (consumer) input,pull-up``
        (N = the chip's base + offset) with the simulated direction; a line not listed is not
        held at all.
        """
        if not DEBUGFS_GPIO.exists():
            subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"],
                           check=True)
        section = DEBUGFS_GPIO.read_text().split(f"{self.name}: ", 1)[1].split("\n\n", 1)[0]
        base = int(section.split("GPIOs ", 1)[1].split("-", 1)[0])
        for line in section.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == f"gpio-{base + offset}":
                if fields[-1].startswith("output"):
                    return "high" if self.value(offset) else "low"
                return "released"
        return "released"

    def pull(self, offset: int, up: bool) -> None:
        (self.sysfs / f"sim_gpio{offset}" / "pull").write_text("pull-up" if up else "pull-down")

    def info(self, offset: int) -> gpiod.LineInfo:
        with gpiod.Chip(str(self.path)) as chip:
            return chip.get_line_info(offset)


async def wait_until(predicate: Callable[[], bool], within: float = REACT_TIMEOUT_S
                     ) -> float | None:
    """Seconds until ``predicate()`` holds, or None."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(POLL_S)
    return None


def levels(chip: SimChip) -> dict[str, str]:
    return {name: chip.state(offset) for name, offset in OUTPUTS.items()}


def released(chip: SimChip, offset: int) -> tuple[bool, str]:
    """A line nobody holds and nobody drives: no consumer, and its level follows the pull."""
    info = chip.info(offset)
    chip.pull(offset, True)
    up = chip.value(offset)
    chip.pull(offset, False)
    down = chip.value(offset)
    ok = not info.used and up == 1 and down == 0
    return ok, (f"used={info.used} consumer={info.consumer!r} direction={info.direction.name} "
                f"level with pull-up={up}, pull-down={down}")


def check_released(results: Results, chip: SimChip, after: str) -> None:
    for name, offset in OUTPUTS.items():
        ok, detail = released(chip, offset)
        results.check(f"{after}: {name} (GPIO{offset}) released", ok, detail)


async def start(argv: list[str], env: dict[str, str], unit: periph.units.Unit,
                results: Results, log_file: Path) -> asyncio.subprocess.Process | None:
    """Start the daemon as systemd would and wait for READY=1; None if it never came."""
    notify = periph.NotifyListener()
    with log_file.open("a") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=out, stderr=subprocess.STDOUT,
            cwd=unit.working_directory or "/", start_new_session=True)
    started = time.monotonic()
    try:
        await asyncio.wait_for(notify.ready.wait(), periph.READY_TIMEOUT_S)
    except TimeoutError:
        results.check("READY=1 sent to $NOTIFY_SOCKET", False,
                      f"none in {periph.READY_TIMEOUT_S:g} s (daemon exit: {proc.returncode})")
        return None
    finally:
        asyncio.get_running_loop().remove_reader(notify.sock.fileno())
        notify.sock.close()
    results.check("READY=1 sent to $NOTIFY_SOCKET", True,
                  f"{time.monotonic() - started:.1f} s after start")
    return proc


async def stop_post(results: Results, chip: SimChip, unit: periph.units.Unit,
                    env: dict[str, str], after: str) -> None:
    """systemd runs ExecStopPost= after any stop: ``smallbms float-outputs`` must succeed and
    leave every output an input.

    That is the part of the fail-safe that matters on a Pi: gpio-sim returns a freed line to
    its pull, but a Pi's pin controller may keep driving a line its process left as an output
    (unless the kernel runs with strict_gpiod), so the unit switches them to inputs itself.
    """
    for command in unit.exec_stop_post:
        code, out, err = await periph.run(*periph.as_service_user(unit, command), env=env)
        results.check(f"{after}: ExecStopPost {' '.join(command[1:])}", code == 0,
                      (err or out).strip()[-200:] or "exit 0")
        directions = {name: chip.info(offset).direction.name for name, offset in OUTPUTS.items()}
        results.check(f"{after}: every output line left as an input by ExecStopPost",
                      set(directions.values()) == {"INPUT"}, directions)


async def remote_switches(results: Results, chip: SimChip, on: bool) -> None:
    """Pull the remote input (a switch closing or opening) and watch LOAD and CHARGER follow."""
    chip.pull(REMOTE, on)
    want = "high" if on else "released"
    took = await wait_until(lambda: chip.state(17) == want and chip.state(27) == want)
    state = "on" if on else "off"
    what = "driven high" if on else "released"
    results.check(f"remote {state}: LOAD and CHARGER {what}", took is not None,
                  f"{took:.2f} s; levels {levels(chip)}" if took is not None
                  else f"levels {levels(chip)} after {REACT_TIMEOUT_S:g} s")


async def scenario(results: Results) -> int:
    try:
        chip = SimChip()
    except OSError as exc:
        results.check("gpio-sim chip created through configfs", False, exc)
        return 1
    results.check("gpio-sim chip created through configfs", True,
                  f"{chip.path} label {LABEL!r}, {NUM_LINES} lines GPIO0..GPIO{NUM_LINES - 1}")
    unit = periph.systemd_like_unit(results)
    argv, env, _ = periph.prepare(unit, results, CONFIG)
    # Raspberry Pi OS: SUBSYSTEM=="gpio", GROUP="gpio", MODE="0660" (udev, 99-com.rules).
    shutil.chown(chip.path, group="gpio")
    chip.path.chmod(0o660)
    log_file = work() / "out" / "gpio" / "smallbms.log"

    proc = await start(argv, env, unit, results, log_file)
    if proc is None:
        return 1
    try:
        held = {name: chip.info(offset) for name, offset in {**OUTPUTS, "remote": REMOTE}.items()}
        results.check("the daemon holds its lines (consumer smallbms), found by chip label",
                      all(i.used and i.consumer == "smallbms" for i in held.values()),
                      {n: (i.consumer, i.name) for n, i in held.items()})
        results.check("outputs requested open-source (inactive = released)",
                      all(held[n].drive == Drive.OPEN_SOURCE
                          and held[n].direction == Direction.OUTPUT for n in OUTPUTS),
                      {n: held[n].drive.name for n in OUTPUTS})
        remote = held["remote"]
        results.check("remote requested as an input, pull-down, debounced",
                      remote.direction == Direction.INPUT and remote.bias == Bias.PULL_DOWN
                      and remote.debounced,
                      f"{remote.direction.name} {remote.bias.name} "
                      f"debounce {remote.debounce_period}")
        # Nothing wired to the remote: the pull-down reads "off", so loads and chargers must be
        # disconnected from the first verdict on (READY=1 is sent once it is on the pins).
        first = levels(chip)
        results.check("remote off at start: LOAD and CHARGER released from the first verdict",
                      first["load"] == first["charger"] == "released", first)
        await remote_switches(results, chip, on=True)
        results.check("PRE-ALARM released while nothing is wrong",
                      chip.state(22) == "released", levels(chip))
        await remote_switches(results, chip, on=False)
        await remote_switches(results, chip, on=True)

        float_outputs = unit.exec_stop_post[0] if unit.exec_stop_post else [
            "smallbms", "float-outputs", "--config", unit.config_path() or ""]
        code, _, err = await periph.run(*periph.as_service_user(unit, float_outputs),
                                          env={**env, "PATH": f"{periph.VENV}/bin:{env['PATH']}"})
        results.check("float-outputs refuses, with a message, while the daemon holds the lines",
                      code != 0 and "Traceback" not in err and err.strip() != ""
                      and chip.state(17) == "high",
                      f"exit {code}: {err.strip()[-200:]}")

        # The fail-safe: SIGKILL (no chance to clean up) with LOAD and CHARGER driven.
        proc.kill()
        await proc.wait()
        check_released(results, chip, "SIGKILL")
        await stop_post(results, chip, unit, env, "after SIGKILL")

        # systemd's Restart=on-failure: the daemon comes back and takes the lines again.
        proc = await start(argv, env, unit, results, log_file)
        if proc is None:
            return 1
        chip.pull(REMOTE, True)  # the switch is still closed (its bias request reset the pull)
        took = await wait_until(lambda: chip.state(17) == chip.state(27) == "high")
        results.check("restarted: LOAD and CHARGER driven again (remote on)",
                      took is not None, levels(chip))

        proc.terminate()  # systemctl stop
        try:
            code = await asyncio.wait_for(proc.wait(), periph.STOP_TIMEOUT_S)
        except TimeoutError:
            code = None
        results.check("SIGTERM: the daemon exits 0", code == 0, f"exit {code}")
        check_released(results, chip, "SIGTERM")
        await stop_post(results, chip, unit, env, "after SIGTERM")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return 0 if results.ok else 1


def main() -> int:
    os.environ["E2E_ROLE"] = "gpio"
    results = Results("gpio")
    results.fact("kernel", os.uname().release)
    if not CONFIGFS.is_dir():
        results.check("gpio-sim in the guest kernel", False,
                      f"no {CONFIGFS} in kernel {os.uname().release}")
        return 1
    log("gpio case: start")
    return asyncio.run(scenario(results))


if __name__ == "__main__":
    sys.exit(main())
