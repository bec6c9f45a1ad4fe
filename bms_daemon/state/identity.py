"""The device serial: one identity for Bluetooth and MQTT, created once in the state directory.

Bluetooth shows it as the Device Information serial; MQTT derives its topics and Home
Assistant's device identifiers from it.  A new serial is a new device to a phone and to Home
Assistant (with the old one's history orphaned), so it must never change, and both sides must
read the same one from the very first start, whichever of them asks first.  It is therefore
kept in its own document (``identity``), written atomically by the store on the first call.

Installs from before this document keep their serial: the Bluetooth one (document ``ble``,
which phones already know) wins, then MQTT's (document ``mqtt``); only a fresh install draws a
new one (``SB`` and ten hex digits).
"""

from __future__ import annotations

import secrets
import weakref

import structlog

from bms_daemon.store import Store

log = structlog.get_logger("smallbms.state")

DOCUMENT = "identity"
# older homes of the serial, in the order they win (gatt.service.STATE_DOCUMENT, then MQTT's)
LEGACY_DOCUMENTS = ("ble", "mqtt")
SERIAL_PREFIX = "SB"
MAX_SERIAL_LENGTH = 32

# A serial that could not be saved (full disk, read-only directory) is still the one answer
# for this store in this process, so Bluetooth and MQTT agree until the next start.
_unsaved: weakref.WeakKeyDictionary[Store, str] = weakref.WeakKeyDictionary()


def new_serial() -> str:
    """A fresh serial in the smallBMS form: ``SB`` and ten upper-case hex digits."""
    return SERIAL_PREFIX + secrets.token_hex(5).upper()


def is_serial(value: object) -> bool:
    """Whether a stored value can name the device (in a topic, an identifier, a GATT string)."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_SERIAL_LENGTH
            and value.isascii() and value.isalnum())


def _stored_serial(store: Store, name: str) -> str:
    try:
        document = store.load(name)
    except Exception as exc:  # an unreadable document: the next candidate is used
        log.warning("identity_unreadable", document=name, error=repr(exc))
        return ""
    serial = document.get("serial") if isinstance(document, dict) else None
    return serial if isinstance(serial, str) and is_serial(serial) else ""


def device_serial(store: Store) -> str:
    """The device serial kept in ``store``; chosen and saved on the first call."""
    serial = _stored_serial(store, DOCUMENT) or _unsaved.get(store, "")
    if serial:
        return serial
    for name in LEGACY_DOCUMENTS:
        serial = _stored_serial(store, name)
        if serial:
            break
    else:
        serial = new_serial()
    try:
        store.save(DOCUMENT, {"serial": serial})
    except Exception as exc:  # kept in memory: both sides agree until the next start
        _unsaved[store] = serial
        log.warning("identity_not_saved", error=repr(exc),
                    action="the serial holds until the next start")
    else:
        log.info("identity_created", serial=serial)
    return serial
