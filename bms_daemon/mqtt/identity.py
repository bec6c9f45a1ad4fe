"""The device serial that MQTT topics and Home Assistant identifiers derive from.

It must never change once a Home Assistant has seen the device (a new serial is a new device,
with the old one's history orphaned), so it is kept in the state directory (document ``mqtt``).
On the first start it takes the Bluetooth side's serial when there is one (document ``ble``,
shown as the Device Information serial), so both sides name the same device; otherwise it draws
one in the same form (``SB`` and ten hex digits).
"""

from __future__ import annotations

import secrets

import structlog

from bms_daemon.store import Store

log = structlog.get_logger("smallbms.mqtt")

DOCUMENT = "mqtt"
BLE_DOCUMENT = "ble"  # gatt.service.STATE_DOCUMENT (not imported: that pulls in bless)
SERIAL_PREFIX = "SB"  # gatt.service.SERIAL_PREFIX


def _stored_serial(store: Store, name: str) -> str:
    try:
        document = store.load(name)
    except Exception as exc:  # an unreadable document: the next candidate is used
        log.warning("mqtt_identity_unreadable", document=name, error=repr(exc))
        return ""
    if document is None:
        return ""
    serial = document.get("serial")
    return serial if isinstance(serial, str) and serial.isalnum() else ""


def device_serial(store: Store) -> str:
    """The serial kept for MQTT; chosen and saved on the first call."""
    serial = _stored_serial(store, DOCUMENT)
    if serial:
        return serial
    serial = _stored_serial(store, BLE_DOCUMENT) or SERIAL_PREFIX + secrets.token_hex(5).upper()
    try:
        store.save(DOCUMENT, {"serial": serial})
    except Exception as exc:  # the topics then hold until the next start; protection unaffected
        log.warning("mqtt_identity_not_saved", error=repr(exc))
    return serial
