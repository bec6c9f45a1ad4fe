"""The smallbms client's errors: one type per failure a user can meet, each with a message
written for that user and the exit status ``smallbms-client`` returns for it.

``translate`` turns bleak's, D-Bus's and the OS's exceptions into these, because
"BleakDBusError: org.freedesktop.DBus.Error.ServiceUnknown" tells a battery owner nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from gatt import profile
from gatt.client_defaults import PIN_ENV_VAR


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
class ClientError(Exception):
    """Anything that went wrong, said for the user; ``exit_code`` is the CLI's exit status."""

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class DeviceNotFound(ClientError):  # noqa: N818 (the names users and callers know)
    """No matching device advertised within the timeout, or it vanished before connecting."""

    exit_code = 3


class WrongPin(ClientError):  # noqa: N818 (the names users and callers know)
    """The device refused the PIN (or is refusing any PIN for a while after too many)."""

    exit_code = 4


class NotAuthenticated(ClientError):  # noqa: N818 (the names users and callers know)
    """A PIN-protected characteristic was used without a PIN, or the PIN is missing."""

    exit_code = 4


class RejectedValue(ClientError):  # noqa: N818 (the names users and callers know)
    """The device validated a setting or command and refused it; ``reason`` says why."""

    exit_code = 5

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class LinkLost(ClientError):  # noqa: N818 (the names users and callers know)
    """The Bluetooth link dropped during an operation."""

    exit_code = 6


class PairingFailed(ClientError):  # noqa: N818
    """The device (or the local BlueZ) refused to pair, so the link cannot be encrypted."""

    exit_code = 4


class NoBluetooth(ClientError):  # noqa: N818 (the names users and callers know)
    """No D-Bus system bus, no BlueZ on it, or no usable adapter."""

    exit_code = 7


class NotSmallBms(ClientError):  # noqa: N818 (the names users and callers know)
    """The device connected but does not offer the smallbms service (or another version)."""

    exit_code = 1


NO_BLUEZ_HINT = (
    "start the daemon's demo (`smallbms run`: it uses a virtual BlueZ when none is present) "
    "or `smallbms virtual-bus`, and set DBUS_SYSTEM_BUS_ADDRESS to the address it prints"
)


def translate(exc: BaseException, *, doing: str) -> ClientError:
    """Map a bleak / D-Bus / OS exception to the typed error a user understands."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return NoBluetooth(f"cannot reach the D-Bus system bus while {doing}; {NO_BLUEZ_HINT}")
    if isinstance(exc, BleakDeviceNotFoundError):
        return DeviceNotFound(f"device not found while {doing}; is it on and in range?")
    if isinstance(exc, BleakGATTProtocolError):
        code = exc.code
        if code in (
            BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
            BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION,
            BleakGATTProtocolErrorCode.READ_NOT_PERMITTED,
            BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED,
        ):
            return NotAuthenticated(
                f"the device refused {doing}: PIN needed (give --pin or ${PIN_ENV_VAR})"
            )
        words = profile.ATT_ERROR_MESSAGES.get(int(code)) or code.name.lower().replace("_", " ")
        return RejectedValue(f"the device rejected {doing}: {words}", reason=words)
    if isinstance(exc, BleakDBusError):
        name = exc.dbus_error
        if name == "org.freedesktop.DBus.Error.ServiceUnknown":
            return NoBluetooth(f"BlueZ is not running on the system bus; {NO_BLUEZ_HINT}")
        if name in ("org.freedesktop.DBus.Error.UnknownObject", "org.bluez.Error.DoesNotExist"):
            return DeviceNotFound(f"device not found while {doing}")
        if name in ("org.bluez.Error.NotConnected",) or "ot connected" in str(exc):
            return LinkLost(f"the Bluetooth link was lost while {doing}")
        if name == "org.bluez.Error.NotPermitted":
            return NotAuthenticated(f"the device refused {doing}: PIN or pairing needed")
        return ClientError(f"Bluetooth error while {doing}: {exc}")
    if isinstance(exc, TimeoutError):
        return LinkLost(f"no answer from the device while {doing} (timed out)")
    if isinstance(exc, BleakError):
        text = str(exc)
        lowered = text.lower()
        if "not connected" in lowered or "disconnected" in lowered:
            return LinkLost(f"the Bluetooth link was lost while {doing}")
        if "adapter" in lowered and ("not found" in lowered or "no " in lowered):
            return NoBluetooth(f"{text}; check --adapter (e.g. hci0), or {NO_BLUEZ_HINT}")
        if "bluetooth" in lowered and "not available" in lowered:
            return NoBluetooth(f"{text}; {NO_BLUEZ_HINT}")
        return ClientError(f"Bluetooth error while {doing}: {text}")
    if isinstance(exc, EOFError | ConnectionError | OSError):
        return LinkLost(f"the D-Bus connection was lost while {doing}: {exc}")
    return ClientError(f"unexpected error while {doing}: {exc!r}")


@contextlib.asynccontextmanager
async def translating(doing: str) -> AsyncIterator[None]:
    """Raise bleak / D-Bus / OS failures inside the block as the typed errors above."""
    try:
        yield
    except ClientError:
        raise
    except (BleakError, OSError, EOFError, TimeoutError) as exc:
        raise translate(exc, doing=doing) from exc
