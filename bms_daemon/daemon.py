"""``smallbms run``: the daemon that composes the core with its edges and keeps it running.

Tasks, all in one asyncio loop:

* the **control loop** (``rate_hz``, 2 Hz by default): read the battery source, let the core
  decide, drive the GPIO outputs, tell a simulated bank what its terminals do, notify listeners,
  log what changed, ping the systemd watchdog.  It is the only task the watchdog depends on, so
  a stalled loop gets the process killed and the outputs released.
* the **LED task**: blinks the optional LEDs between ticks.
* **persistence**: saves run in a worker thread started by the loop (never awaited by it).
* the **source task** (a real battery source only): the source's reader tasks, which
  reconnect on their own; ``read(now)`` in the control loop never waits for them.  A source
  task that fails (a bug) is logged and restarted; the comms rules protect meanwhile.
* **BLE** (optional): ``gatt.service.BleService`` on the real BlueZ, or on a virtual BlueZ when
  none is on the system bus.  Any BLE failure is logged and retried; it never touches the loop.
* **MQTT** (optional, ``[mqtt]``): ``bms_daemon.mqtt.service.MqttService``.  The loop only hands
  it each new status (a reference and an event); connecting, publishing and commands run in its
  own task, so a slow or absent broker never delays a tick.

Start-up floats every output first, and the first outputs asserted are the core's first verdict;
READY=1 goes to systemd once that verdict is on the pins.  SIGTERM/SIGINT/SIGHUP float the outputs
*first*, then save the state and exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import structlog

from bms_daemon import systemd
from bms_daemon.ble_host import BleUnavailableError, ble_environment
from bms_daemon.config import (
    EXIT_BAD_CONFIG,
    Config,
    ConfigError,
    check_source,
    source_factory,
    source_message,
    summary,
)
from bms_daemon.config import load as load_config
from bms_daemon.controller import BmsCore, Controller
from bms_daemon.core.types import Inputs, Outputs, Readings, Status
from bms_daemon.gpio import GpioError, GpioPort, open_port
from bms_daemon.gpio.driver import OutputDriver, next_blink_edge
from bms_daemon.persistence import SAVE_INTERVAL_S, Persister
from bms_daemon.sources import comms_delays as source_comms_delays
from bms_daemon.state.layout import DocumentStore, Restored, SettingsFile, counters_of, restore
from bms_daemon.state.lock import StateDirectoryBusyError, StateLock
from bms_daemon.store import FileStore, Store

log = structlog.get_logger("smallbms.daemon")

EXIT_FAILURE = 1
EXIT_STATE_BUSY = 3  # another smallbms holds the state directory (bms_daemon.state.lock)
STATUS_LOG_INTERVAL_S = 600.0  # one "canonical" status line every 10 min (ours)
BLE_RETRY_FIRST_S = 2.0  # BLE restarts after a failure: 2 s, doubling ...
BLE_RETRY_MAX_S = 60.0  # ... up to once a minute
BLE_STOP_TIMEOUT_S = 5.0  # how long shutdown waits for the BLE side to let go
MQTT_STOP_TIMEOUT_S = 5.0  # how long shutdown waits for MQTT to publish "offline"
SOURCE_ERROR = "source_failed"
SOURCE_RETRY_S = 5.0  # a source task that crashed (a bug, not a device problem) restarts after
# Clean stop (float, save, exit 0) on these; SIGHUP too, so closing the terminal of a
# foreground daemon does not kill it without floating the outputs first.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class MqttRunner(Protocol):
    """bms_daemon.mqtt.service.MqttService, as the daemon drives it."""

    def on_status(self, status: Status) -> None: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...


class Source(Protocol):
    """bms_daemon.sources.base.BatterySource."""

    def read(self, now: float) -> Readings | None: ...

    def apply_outputs(self, outputs: Outputs) -> None: ...


@dataclass(slots=True)
class _Seen:
    """The last values logged, so only changes are logged."""

    outputs: Outputs | None = None
    codes: frozenset[str] = frozenset()
    synchronised: bool | None = None
    mode: bool | None = None
    remote: bool | None = None
    setting_problems: tuple[str, ...] = ()
    notify_status: str = ""
    source_notes: tuple[str, ...] = ()
    status_logged_at: float | None = None


class Daemon:
    """The running BMS.  Build it with ``build`` (from a config) or by hand in tests."""

    def __init__(
        self,
        *,
        bms: BmsCore,
        source: Source,
        driver: OutputDriver,
        store: Store,
        rate_hz: float = 2.0,
        save_interval_s: float = SAVE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        ble: Callable[[Controller], AsyncIterator[None]] | None = None,
    ) -> None:
        self.source = source
        self.driver = driver
        self.store = store
        self.period = 1.0 / rate_hz
        self.clock = clock
        self.persister = Persister(store, lambda: counters_of(bms.snapshot()),
                                   interval_s=save_interval_s)
        self.settings_file = SettingsFile(cast(DocumentStore, store))
        self.controller = Controller(bms, clock, on_change=self.persister.request,
                                     save_settings=self.settings_file.save)
        self.ble_runner = ble
        self.demo_speed: float | None = None  # set with a demo clock (sources/demo.py)
        self.ble_service: Any = None  # set by the BLE runner: has .advertising / .connected
        self.mqtt: MqttRunner | None = None  # set by build() when [mqtt] is enabled
        self.ready = asyncio.Event()
        self.ticks = 0
        self._seen = _Seen()
        self._leds_changed = asyncio.Event()
        self._source_failing = False
        self._watchdog = systemd.watchdog_interval()
        self._last_ping: float | None = None
        if self._watchdog is not None and self.period > self._watchdog:
            log.warning("watchdog_too_short", loop_period_s=self.period,
                        ping_every_s=self._watchdog,
                        fix="raise WatchdogSec or [bms] rate_hz")

    # --- one tick -----------------------------------------------------------------------------
    def tick(self) -> Status:
        """Read, decide, act: one pass of the control loop (synchronous, quick)."""
        now = self.clock()
        readings = self._read(now)
        remote = self.driver.read_remote()
        service = self.ble_service
        inputs = Inputs(
            remote=remote,
            hardware_ok=self.driver.hardware_ok,
            ble_advertising=bool(getattr(service, "advertising", False)),
            ble_connected=bool(getattr(service, "connected", False)),
        )
        status = self.controller.step(readings, inputs, now)
        before_leds = self.driver.leds
        driven = self.driver.apply(status.outputs, status.leds, now)
        if self.driver.leds != before_leds:
            self._leds_changed.set()
        try:
            self.source.apply_outputs(driven)
        except Exception:  # a simulator bug must not stop protection
            log.exception("source_apply_outputs_failed")
        self._report(status, driven, now)
        self.persister.tick(now)
        self.ticks += 1
        return status

    def _read(self, now: float) -> Readings | None:
        try:
            readings = self.source.read(now)
        except Exception as exc:  # no data is what the core handles (W-B05, then A-B05)
            if not self._source_failing:
                log.error(SOURCE_ERROR, error=f"{type(exc).__name__}: {exc}")  # noqa: TRY400
            self._source_failing = True
            return None
        if self._source_failing:
            log.info("source_recovered")
        self._source_failing = False
        return readings

    def _report(self, status: Status, driven: Outputs, now: float) -> None:
        seen = self._seen
        if driven != seen.outputs:
            reasons = {
                key: str(value)
                for key, value in (("discharge_reason", status.discharge_reason),
                                   ("charge_reason", status.charge_reason))
                if value is not None
            }
            log.info(
                "outputs",
                load=_level(driven.load),
                charger=_level(driven.charger),
                prealarm=_level(driven.prealarm),
                **reasons,
            )
            seen.outputs = driven
        codes = frozenset(str(code) for code in status.codes)
        for code in sorted(codes - seen.codes):
            method = log.warning if code.startswith("W") else log.error
            method("code_raised", code=code)
        for code in sorted(seen.codes - codes):
            log.info("code_cleared", code=code)
        seen.codes = codes
        if status.soc_synchronised != seen.synchronised:
            if seen.synchronised is not None or status.soc_synchronised:
                log.info("soc_state", synchronised=status.soc_synchronised, soc=_soc(status.soc))
            seen.synchronised = status.soc_synchronised
        if status.source_notes != seen.source_notes:
            if status.source_notes:  # the battery's own alarms: shown, never obeyed
                log.warning("source_notes", notes=list(status.source_notes))
            else:
                log.info("source_notes_cleared")
            seen.source_notes = status.source_notes
        if status.mode != seen.mode:
            log.info("mode", mode="on" if status.mode else "off")
            seen.mode = status.mode
        if status.remote != seen.remote:
            log.info("remote", remote="on" if status.remote else "off")
            seen.remote = status.remote
        if status.setting_problems != seen.setting_problems:
            for problem in status.setting_problems:
                if problem not in seen.setting_problems:
                    log.warning("setting_not_used", problem=problem)
            if not status.setting_problems:
                log.info("settings_all_used")
            seen.setting_problems = status.setting_problems
        if seen.status_logged_at is None or now - seen.status_logged_at >= STATUS_LOG_INTERVAL_S:
            demo = {"demo_speed": self.demo_speed} if self.demo_speed else {}
            log.info("status", soc=_soc(status.soc), voltage=_round(status.voltage, 2),
                     current=_round(status.current, 2), ttg_min=_round(status.ttg_min, 0), **demo)
            seen.status_logged_at = now

        text = status_line(status, driven, self.demo_speed)
        if text != seen.notify_status:
            systemd.notify(f"STATUS={text}")
            seen.notify_status = text
        if not self.ready.is_set():
            systemd.notify("READY=1", f"STATUS={text}")
            log.info("ready", first_verdict=text)
            self.ready.set()
        if self._watchdog is not None and (
            self._last_ping is None or now - self._last_ping >= self._watchdog
        ):
            systemd.notify("WATCHDOG=1")
            self._last_ping = now

    # --- tasks --------------------------------------------------------------------------------
    async def _control_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while not stop.is_set():
            self.tick()
            deadline += self.period
            delay = deadline - loop.time()
            if delay < 0:  # the machine was too busy: carry on from now, no burst of ticks
                deadline = loop.time()
                delay = 0.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _led_loop(self) -> None:
        while True:
            self._leds_changed.clear()
            timeout = next_blink_edge(self.clock()) if self.driver.blinking else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leds_changed.wait(), timeout=timeout)
            if self.driver.blinking:
                self.driver.blink(self.clock())

    async def _ble_loop(self) -> None:
        if self.ble_runner is None:
            return
        delay = BLE_RETRY_FIRST_S
        failures = 0  # in a row: the first is logged with its traceback, the rest briefly
        while True:
            try:
                async for _ in self.ble_runner(self.controller):
                    delay, failures = BLE_RETRY_FIRST_S, 0  # it came up: retry quickly later
                log.warning("ble_stopped", retry_in_s=delay)
            except asyncio.CancelledError:
                raise
            except BleUnavailableError as exc:
                log.error("ble_unavailable", problem=str(exc),  # noqa: TRY400
                          action="running without Bluetooth; protection is not affected")
                return
            except Exception as exc:
                failures += 1
                problem = f"{type(exc).__name__}: {exc}"
                if failures == 1:
                    log.exception("ble_failed", error=problem, retry_in_s=delay)
                else:
                    log.warning("ble_failed", error=problem, retry_in_s=delay,
                                failures_in_a_row=failures)
            finally:
                self.ble_service = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, BLE_RETRY_MAX_S)

    async def _source_loop(self) -> None:
        run = getattr(self.source, "run", None)
        if run is None:
            return
        while True:
            try:
                await run()
            except asyncio.CancelledError:
                raise
            except Exception:  # the feeds handle device problems; this is a bug
                log.exception("source_task_failed", retry_in_s=SOURCE_RETRY_S,
                              action="no battery data meanwhile: the comms rules protect")
            await asyncio.sleep(SOURCE_RETRY_S)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; outputs float and state is saved on the way out."""
        self.driver.float_all()
        control = asyncio.create_task(self._control_loop(stop), name="control")
        leds = asyncio.create_task(self._led_loop(), name="leds")
        ble = asyncio.create_task(self._ble_loop(), name="ble")
        source = asyncio.create_task(self._source_loop(), name="source")
        mqtt = asyncio.create_task(self._mqtt_loop(), name="mqtt")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait({control, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            systemd.notify("STOPPING=1")
            self.driver.float_all()  # first: the battery's safety does not wait for the disk
            log.info("stopping", outputs="floating")
            stop.set()
            for task in (control, leds, stopping, source):
                task.cancel()
            await asyncio.gather(control, leds, stopping, source, return_exceptions=True)
            await self._save_on_exit()
            await self._stop_mqtt(mqtt)
            ble.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait({ble}, timeout=BLE_STOP_TIMEOUT_S)
            if self.driver.port is not None:
                self.driver.port.close()
        if control.done() and not control.cancelled() and control.exception() is not None:
            raise control.exception()  # type: ignore[misc]

    async def _mqtt_loop(self) -> None:
        if self.mqtt is None:
            return
        unsubscribe = self.controller.subscribe(self.mqtt.on_status)
        try:
            await self.mqtt.run()
        except Exception:  # a bug there must not stop the BMS: log it, run without MQTT
            log.exception("mqtt_failed", action="running without MQTT; protection is not affected")
        finally:
            unsubscribe()

    async def _stop_mqtt(self, task: asyncio.Task[None]) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=MQTT_STOP_TIMEOUT_S)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _save_on_exit(self) -> None:
        try:
            saved = await self.persister.flush()
        except Exception:
            log.exception("state_save_failed_on_exit")
            return
        if saved:
            log.info("state_saved", saves=self.persister.saves)
        else:
            log.error("state_not_saved_on_exit", failures=self.persister.failures)


def _level(active: bool) -> str:
    return "high" if active else "floating"


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _soc(soc: float | None) -> str:
    return "unknown" if soc is None else f"{soc:.1f}%"


def status_line(status: Status, driven: Outputs, demo_speed: float | None = None) -> str:
    """The one line shown by ``systemctl status smallbms`` (marked when time runs fast)."""
    soc = "unknown" if status.soc is None else f"{status.soc:.0f}%"
    parts = [f"DEMO {demo_speed:g}x real time"] if demo_speed else []
    parts += [
        f"SOC {soc}",
        f"load {'on' if driven.load else 'off'}",
        f"charger {'on' if driven.charger else 'off'}",
    ]
    if driven.prealarm:
        parts.append("pre-alarm")
    if status.codes:
        parts.append(" ".join(str(code) for code in status.codes))
    return ", ".join(parts)


# --- building from a configuration -------------------------------------------------------------
def load_bms(config: Config, store: FileStore) -> Restored:
    """The core, restored from the state directory as far as each part can be trusted.

    bms_daemon/state/layout.py decides what is kept: settings and PIN apart from the counters,
    a bad part set aside on its own, a lost PIN state loud and never the factory PIN.
    """
    restored = restore(store, config.settings)
    if restored.counters is not None:
        log.info("state_restored", file=str(store.path("bms")),
                 soc=_soc(restored.bms.status.soc))
    return restored


def open_gpio(config: Config, state_directory: Path) -> OutputDriver:
    """The GPIO driver; lines that cannot be had give a driver in fault (E-B11), not a crash."""
    port: GpioPort | None
    try:
        port = open_port(config.gpio, state_directory)
    except GpioError as exc:
        log.error("hardware_error", code="E-B11", problem=str(exc),  # noqa: TRY400
                  action="all outputs floating until restart")
        return OutputDriver(None, str(exc))
    return OutputDriver(port)


def build(
    config: Config, state_directory: Path, *, clock: Callable[[], float] = time.monotonic
) -> Daemon:
    """Wire everything from a validated config (raises ConfigError for a bad [source])."""
    factory = source_factory()
    if factory is None:
        raise ConfigError("no battery source available (bms_daemon.sources.create_source)")
    try:
        source = factory(config.source)
        comms = source_comms_delays(config.source)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{config.origin}: {source_message(str(exc))}") from None
    store = FileStore(state_directory)
    leftovers = store.remove_temporaries()
    if leftovers:
        log.info("removed_interrupted_saves", files=leftovers)
    restored = load_bms(config, store)
    restored.bms.set_comms_delays(*comms)
    initial_soc = getattr(source, "initial_soc", None)  # a simulated bank with known_soc
    if restored.counters is None and initial_soc is not None:
        restored.bms.command("set_soc", round(initial_soc, 1), clock())
        log.info("soc_known_at_start", soc=_soc(restored.bms.status.soc), why="[source] known_soc")
    driver = open_gpio(config, state_directory)
    daemon = Daemon(
        bms=restored.bms,
        source=source,
        driver=driver,
        store=store,
        rate_hz=config.bms.rate_hz,
        save_interval_s=config.bms.save_interval_s,
        clock=clock,
    )
    daemon.persister.mark_saved(restored.counters)
    daemon.settings_file.pin_lost = restored.pin_lost
    if not restored.settings_on_disk and not restored.pin_lost:
        # a first start or a migration: from now on a lost settings file is noticed (a failure
        # is logged by the save, and the state directory problem was reported already)
        with contextlib.suppress(OSError):
            daemon.settings_file.save(restored.bms.settings)
    if config.ble.enabled:
        daemon.ble_runner = _ble_runner(config, store, daemon, pin_lost=restored.pin_lost)
    if config.mqtt.enabled:
        daemon.mqtt = _mqtt_service(config, store, daemon.controller)
    return daemon


def _mqtt_service(config: Config, store: Store, controller: Controller) -> MqttRunner | None:
    """The MQTT task, or None (logged) when the client library is not installed."""
    from bms_daemon.mqtt import config as mqtt_config  # noqa: PLC0415
    from bms_daemon.state.identity import device_serial  # noqa: PLC0415

    if not mqtt_config.available():
        log.error("mqtt_unavailable", problem="[mqtt] enabled = true but the MQTT client is "
                  "not installed", fix=mqtt_config.INSTALL_HINT,
                  action="running without MQTT; protection is not affected")
        return None
    from bms_daemon.mqtt.service import MqttService  # noqa: PLC0415 (lazy: aiomqtt, paho)

    return MqttService(config.mqtt, controller, device_serial(store))


def _ble_runner(
    config: Config, store: Store, daemon: Daemon, *, pin_lost: bool = False
) -> Callable[[Controller], AsyncIterator[None]]:
    async def run(controller: Controller) -> AsyncIterator[None]:
        try:
            service_module = importlib.import_module("gatt.service")  # "ble-server"; lazy: bless
        except ImportError as exc:
            raise BleUnavailableError(f"gatt.service is not available: {exc}") from exc
        async with ble_environment(config.ble):
            service = service_module.BleService(device=controller, config=config.ble, store=store,
                                                pin_lost=pin_lost)
            daemon.ble_service = service
            yield None
            await service.run()

    return run


# --- `smallbms run` ----------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms run``."""
    parser.description = (
        "Run the BMS: read the battery source, drive the LOAD, CHARGER and PRE-ALARM outputs, "
        "serve Bluetooth, keep SOC and history in the state directory. Stops cleanly (outputs "
        "floating, state saved) on SIGTERM, SIGHUP or Ctrl-C."
    )
    parser.add_argument("-c", "--config", type=Path, metavar="FILE",
                        help="TOML configuration file (default: the embedded defaults; "
                             "see `smallbms check-config`)")
    parser.add_argument("--state-directory", type=Path, metavar="DIR",
                        help="override [bms] state_directory")
    parser.add_argument("--no-ble", action="store_true",
                        help="do not start Bluetooth (same as [ble] enabled = false)")
    parser.add_argument("--demo-speed", type=float, metavar="N",
                        help="demonstrations: run the simulated bank's day N times faster than "
                             "real time (at most 120 at 2 Hz); marked in the logs and the "
                             "status line; refused with any other source")
    parser.epilog = (
        f"Exit status: 0 after a clean stop, {EXIT_FAILURE} on a failure, {EXIT_BAD_CONFIG} for a "
        f"bad configuration, {EXIT_STATE_BUSY} when another smallbms already runs on the same "
        "state directory."
    )


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms run``; returns 0 after a clean stop, 2 for a bad configuration."""
    from dataclasses import replace  # noqa: PLC0415

    from bms_daemon import logging as smallbms_logging  # noqa: PLC0415

    # A stop requested while starting (systemd may send SIGTERM at any time) is honoured once
    # the loop runs: it then floats, saves and exits 0 without asserting any output.
    early_stop: list[int] = []

    def remember(received: int, _frame: object) -> None:
        early_stop.append(received)

    for signum in STOP_SIGNALS:
        signal.signal(signum, remember)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    # the whole file, [source] included, before anything is logged as started or created
    problem = check_source(config)
    if problem is None and args.demo_speed is not None:
        from bms_daemon.sources.demo import check_demo_speed  # noqa: PLC0415 (demos only)

        problem = check_demo_speed(args.demo_speed, config.bms.rate_hz, config.source.get("type"))
    if problem:
        print(f"smallbms: error: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if args.state_directory is not None:
        config = replace(config, bms=replace(config.bms, state_directory=str(args.state_directory)))
    if args.no_ble:
        config = replace(config, ble=replace(config.ble, enabled=False))
    smallbms_logging.configure(config.logging.level, config.logging.format)
    state_directory = config.state_directory()
    log.info("starting", config=config.origin, pid=os.getpid())
    clock: Callable[[], float] = time.monotonic
    if args.demo_speed is not None:
        from bms_daemon.sources.demo import demo_clock  # noqa: PLC0415 (demos only)

        clock = demo_clock(args.demo_speed)
        log.warning("demo_speed", speed=args.demo_speed,
                    meaning=f"simulated time runs {args.demo_speed:g}x faster than real time: "
                            "a demonstration, not a battery")
    problem = prepare_state_directory(state_directory)
    lock = StateLock(state_directory)
    if not problem:
        try:
            lock.acquire("smallbms run")  # held until this process ends
        except StateDirectoryBusyError as exc:
            log.error("state_directory_busy", directory=str(state_directory))  # noqa: TRY400
            print(f"smallbms: error: {exc}", file=sys.stderr)
            return EXIT_STATE_BUSY
        except OSError as exc:
            problem = f"cannot lock it: {exc.strerror or exc}"
    if problem:
        # Protecting the battery matters more than remembering SOC: run, say so loudly.
        log.error("state_directory_unusable", directory=str(state_directory), problem=problem,
                  action="running; settings, SOC and history will not survive a restart")
    try:
        return _build_and_run(config, state_directory, early_stop, clock, args.demo_speed)
    finally:
        lock.release()


def _build_and_run(
    config: Config,
    state_directory: Path,
    early_stop: list[int],
    clock: Callable[[], float] = time.monotonic,
    demo_speed: float | None = None,
) -> int:
    for line in summary(config).splitlines():
        log.info("config", detail=line.strip())
    try:
        daemon = build(config, state_directory, clock=clock)
        daemon.demo_speed = demo_speed
    except ConfigError as exc:
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        asyncio.run(_run_until_signal(daemon, early_stop))
    except Exception:
        log.exception("daemon_failed", action="outputs floating; exiting")
        return EXIT_FAILURE
    log.info("stopped")
    return 0


def prepare_state_directory(directory: Path) -> str | None:
    """Create the state directory (mode 0700) if needed; returns a problem, or None."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create it: {exc.strerror or exc}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return "not writable by this user"
    return None


async def _run_until_signal(daemon: Daemon, early_stop: list[int]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_signal, stop, signum)
    for received in early_stop:
        _on_signal(stop, received)
    await daemon.run(stop)


def _on_signal(stop: asyncio.Event, signum: int) -> None:
    log.info("signal", signal=signal.Signals(signum).name)
    stop.set()
