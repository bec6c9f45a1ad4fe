"""What the outside world (BLE, command line) may ask of a running BMS.

The daemon implements this; the BLE side (``gatt/``) only sees this protocol, so the GATT
server can be tested against a small fake and the daemon never imports bless.  Every method is
synchronous and quick (bless's callbacks are synchronous): it reads the latest status or asks
the core to change something, and a rejected change raises ``SettingError`` with a message a
user understands, having changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bms_daemon.core.settings import Settings
from bms_daemon.core.types import History, Status

StatusListener = Callable[[Status], None]


class NotSavedError(OSError):
    """A change is in force but did not reach the disk (full, read-only, failing card, or the
    PIN state is lost): it is lost at the next restart.  The message says so to a user."""


class DeviceControl(Protocol):
    """The BMS as the BLE side sees it."""

    def status(self) -> Status:
        """The latest status computed by the control loop."""
        ...

    def history(self) -> History:
        """A copy of the history counters."""
        ...

    def settings(self) -> Settings:
        """The settings in force."""
        ...

    def set_setting(self, name: str, value: object) -> Settings:
        """Change one setting by its config name; returns the new settings.

        Raises ``SettingError`` (nothing changed) when the name is unknown or the value is out
        of range or inconsistent with another setting, and ``NotSavedError`` when the change is
        in force but could not be written to disk; on return, the change is on disk.
        """
        ...

    def command(self, name: str, argument: float | None = None) -> str:
        """Run a command (``set_soc``, ``synchronise``, ``reset_history``, ``factory_reset``);
        returns a short confirmation.  Raises ``SettingError`` when rejected, ``NotSavedError``
        when it changed the settings but they could not be written to disk."""
        ...

    def subscribe(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` with every new status (from the control loop); returns an
        unsubscribe function.  Listeners must not block."""
        ...
