"""Error translation along the path application -> ATT -> central, as BlueZ 5.66 does it.

A GATT application (bless) rejects a request by replying with a D-Bus error; the peripheral's
BlueZ turns that error name into an ATT error code (``dbus_error_to_att_ecode()`` in
``src/gatt-database.c``); the ATT code travels over the air; the central's BlueZ turns it back
into a D-Bus error (``create_gatt_dbus_error()`` in ``src/gatt-client.c``), which bleak maps to
``BleakGATTProtocolError``.  Reproducing both halves, rather than passing the application's
error name through, is what makes bleak raise on the virtual bus exactly what it raises on
hardware.  Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

BLUEZ_ERROR = "org.bluez.Error"
FAILED = f"{BLUEZ_ERROR}.Failed"
NOT_SUPPORTED = f"{BLUEZ_ERROR}.NotSupported"
NOT_AUTHORIZED = f"{BLUEZ_ERROR}.NotAuthorized"
NOT_PERMITTED = f"{BLUEZ_ERROR}.NotPermitted"
INVALID_VALUE_LENGTH = f"{BLUEZ_ERROR}.InvalidValueLength"
INVALID_OFFSET = f"{BLUEZ_ERROR}.InvalidOffset"
INVALID_ARGUMENTS = f"{BLUEZ_ERROR}.InvalidArguments"
IN_PROGRESS = f"{BLUEZ_ERROR}.InProgress"
IMPROPERLY_CONFIGURED = f"{BLUEZ_ERROR}.ImproperlyConfigured"
DOES_NOT_EXIST = f"{BLUEZ_ERROR}.DoesNotExist"
ALREADY_EXISTS = f"{BLUEZ_ERROR}.AlreadyExists"
NOT_READY = f"{BLUEZ_ERROR}.NotReady"
NOT_CONNECTED = f"{BLUEZ_ERROR}.NotConnected"
AUTHENTICATION_FAILED = f"{BLUEZ_ERROR}.AuthenticationFailed"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"


class Att(IntEnum):
    """The ATT error codes this emulator produces (Bluetooth Core, Vol 3, Part F, 3.4.1.1)."""

    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_OFFSET = 0x07
    INSUFFICIENT_AUTHORIZATION = 0x08
    INSUFFICIENT_ENCRYPTION_KEY_SIZE = 0x0C
    INVALID_ATTRIBUTE_VALUE_LENGTH = 0x0D
    UNLIKELY_ERROR = 0x0E
    INSUFFICIENT_ENCRYPTION = 0x0F
    APPLICATION_ERROR_FIRST = 0x80
    APPLICATION_ERROR_LAST = 0x9F
    CCCD_IMPROPERLY_CONFIGURED = 0xFD
    PROCEDURE_IN_PROGRESS = 0xFE


@dataclass(frozen=True)
class CentralError:
    """A D-Bus error as the central's BlueZ reports it to its client (bleak)."""

    name: str
    text: str


def att_code_for_app_error(name: str | None, text: str, *, writing: bool) -> int:
    """The ATT code BlueZ sends when the application replied with error ``name``.

    ``org.bluez.Error.Failed`` may carry an application error code 0x80..0x9F as its message
    ("0x80"); without a number it means 0x80, outside that range 0x0E.  ``NotPermitted``
    depends on the direction.  Every other name (including dbus-next's ServiceError for a plain
    Python exception in a bless callback) becomes "Unlikely Error".
    """
    if name == FAILED:
        try:
            code = int(text.strip(), 0)
        except (TypeError, ValueError):
            return int(Att.APPLICATION_ERROR_FIRST)
        if Att.APPLICATION_ERROR_FIRST <= code <= Att.APPLICATION_ERROR_LAST:
            return code
        return int(Att.UNLIKELY_ERROR)
    if name == NOT_PERMITTED:
        return int(Att.WRITE_NOT_PERMITTED if writing else Att.READ_NOT_PERMITTED)
    return int(APP_ERROR_TO_ATT.get(name or "", Att.UNLIKELY_ERROR))


APP_ERROR_TO_ATT: dict[str, Att] = {
    NOT_SUPPORTED: Att.REQUEST_NOT_SUPPORTED,
    NOT_AUTHORIZED: Att.INSUFFICIENT_AUTHORIZATION,
    INVALID_VALUE_LENGTH: Att.INVALID_ATTRIBUTE_VALUE_LENGTH,
    INVALID_OFFSET: Att.INVALID_OFFSET,
    IN_PROGRESS: Att.PROCEDURE_IN_PROGRESS,
    IMPROPERLY_CONFIGURED: Att.CCCD_IMPROPERLY_CONFIGURED,
}

_NOT_PAIRED = CentralError(NOT_PERMITTED, "Not paired")

_ATT_TO_CENTRAL: dict[int, CentralError] = {
    Att.READ_NOT_PERMITTED: CentralError(NOT_PERMITTED, "Read not permitted"),
    Att.WRITE_NOT_PERMITTED: CentralError(NOT_PERMITTED, "Write not permitted"),
    Att.INSUFFICIENT_AUTHENTICATION: _NOT_PAIRED,
    Att.INSUFFICIENT_ENCRYPTION: _NOT_PAIRED,
    Att.INSUFFICIENT_ENCRYPTION_KEY_SIZE: _NOT_PAIRED,
    Att.INVALID_OFFSET: CentralError(INVALID_ARGUMENTS, "Invalid offset"),
    Att.INVALID_ATTRIBUTE_VALUE_LENGTH: CentralError(INVALID_ARGUMENTS, "Invalid Length"),
    Att.INSUFFICIENT_AUTHORIZATION: CentralError(NOT_AUTHORIZED, "Operation Not Authorized"),
    Att.REQUEST_NOT_SUPPORTED: CentralError(NOT_SUPPORTED, "Operation is not supported"),
}


def central_error_for_att(code: int) -> CentralError:
    """The D-Bus error the central's BlueZ returns for an ATT error response ``code``."""
    known = _ATT_TO_CENTRAL.get(code)
    if known is not None:
        return known
    return CentralError(FAILED, f"Operation failed with ATT error: 0x{code:02x}")
