"""The running BMS as the outside world sees it: ``DeviceControl`` over the core's ``Bms``.

The control loop is the only caller of ``step``; the BLE side (and anything else) reads the
latest status and asks for setting changes or commands through this object.  A change of the
settings is written to disk (fsynced) by ``save_settings`` *before* the call returns, so what a
client is told was set survives a power cut a moment later; when the disk refuses, the call
raises ``NotSavedError`` (the change is in force, but not durable) and the client is told so.
Every accepted change or command is also reported to ``on_change`` (the persistence policy
saves the counters soon), while the slowly drifting SOC is saved at a bounded rate.  Listeners
that misbehave are logged and dropped from that one call; they can never break the control loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from bms_daemon.core.settings import Settings
from bms_daemon.core.types import History, Inputs, Readings, Status
from bms_daemon.device import StatusListener

log = structlog.get_logger("smallbms.controller")


class BmsCore(Protocol):
    """What the daemon uses of ``bms_daemon.core.bms.Bms``."""

    @property
    def status(self) -> Status: ...

    @property
    def settings(self) -> Settings: ...

    def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status: ...

    def history(self) -> History: ...

    def set_setting(self, name: str, value: Any) -> Settings: ...

    def command(self, name: str, argument: float | None, now: float) -> str: ...

    def snapshot(self) -> dict[str, Any]: ...


class Controller:
    """``DeviceControl`` for the daemon; ``clock`` is the same monotonic clock as the loop's."""

    def __init__(
        self,
        bms: BmsCore,
        clock: Callable[[], float],
        on_change: Callable[[str], None] | None = None,
        save_settings: Callable[[Settings], None] | None = None,
    ) -> None:
        self.bms = bms
        self.clock = clock
        self.on_change = on_change
        self.save_settings = save_settings
        self._listeners: list[StatusListener] = []

    # --- the control loop's side ------------------------------------------------------------
    def step(self, readings: Readings | None, inputs: Inputs, now: float) -> Status:
        """One decision of the core, then every listener hears about it."""
        status = self.bms.step(readings, inputs, now)
        for listener in tuple(self._listeners):
            try:
                listener(status)
            except Exception:  # a listener bug must not stop the battery's protection
                log.exception("status_listener_failed", listener=repr(listener))
        return status

    def snapshot(self) -> dict[str, Any]:
        """What the store keeps (settings, SOC state, history)."""
        return self.bms.snapshot()

    # --- DeviceControl ----------------------------------------------------------------------
    def status(self) -> Status:
        return self.bms.status

    def history(self) -> History:
        return self.bms.history()

    def settings(self) -> Settings:
        return self.bms.settings

    def set_setting(self, name: str, value: object) -> Settings:
        before = self.bms.settings
        new = self.bms.set_setting(name, value)
        if new != before:
            log.info("setting_changed", setting=name,
                     value="******" if name == "pin" else getattr(new, name, value))
            self._changed(f"setting {name}")
            self._save(new)
        return new

    def command(self, name: str, argument: float | None = None) -> str:
        before = self.bms.settings
        result = self.bms.command(name, argument, self.clock())
        log.info("command", command=name, argument=argument, result=result)
        self._changed(f"command {name}")
        if self.bms.settings != before:
            self._save(self.bms.settings)
        return result

    def _save(self, settings: Settings) -> None:
        """Settings on disk before the caller answers (raises NotSavedError)."""
        if self.save_settings is not None:
            self.save_settings(settings)

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _changed(self, what: str) -> None:
        if self.on_change is not None:
            self.on_change(what)
