"""The client's defaults that its command line shows in ``--help``, without importing bleak.

``smallbms-client --help`` must start fast (a Pi is slow to import bleak, D-Bus and asyncio);
these constants are what the parser needs of the client.  ``gatt.client`` re-exports them.
"""

from __future__ import annotations

# Exit statuses (the module docstring of gatt.client_cli lists them all).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PIN_ENV_VAR = "SMALLBMS_PIN"  # where the command line and the messages look for the PIN
SCAN_TIMEOUT_DEFAULT = 5.0  # s to look for devices (`scan`, or finding --device)
CONNECT_TIMEOUT_DEFAULT = 10.0  # s for connecting and resolving services
COMMANDS: tuple[str, ...] = (
    "set_soc", "synchronise", "mode", "reset_history", "factory_reset", "bluetooth_off",
    "change_pin", "confirm_bank",
)
