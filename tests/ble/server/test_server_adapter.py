"""The bless adapter's own D-Bus objects and error mapping (no bus needed)."""

from __future__ import annotations

import logging

import dbus_next.service
import pytest

from gatt import profile
from gatt.server import AttError, _advertisement_class, _dbus_error, _quiet_att_errors


def test_the_advertisement_carries_no_service_uuid_and_updates_its_data() -> None:
    adv = _advertisement_class()("smallBMS NG")
    props = {p.name: p.signature for p in dbus_next.service.ServiceInterface._get_properties(adv)}  # type: ignore[no-untyped-call]
    assert props == {"Type": "s", "LocalName": "s", "Discoverable": "b",
                     "ManufacturerData": "a{qv}"}
    adv.set_manufacturer(0x02E1, b"\x10\x02")
    assert adv.manufacturer[0x02E1].value == b"\x10\x02"
    adv.set_manufacturer(0x02E1, None)
    assert adv.manufacturer == {}


@pytest.mark.parametrize(("code", "name", "text"), [
    (profile.ATT_INSUFFICIENT_AUTHORIZATION, "org.bluez.Error.NotAuthorized", None),
    (profile.ATT_INVALID_VALUE_LENGTH, "org.bluez.Error.InvalidValueLength", None),
    (profile.ATT_VALUE_REJECTED, "org.bluez.Error.Failed", "0x80"),
    (profile.ATT_LOCKED_OUT, "org.bluez.Error.Failed", "0x82"),
])
def test_att_errors_become_the_dbus_errors_bluez_maps_back(code: int, name: str,
                                                           text: str | None) -> None:
    err = _dbus_error(AttError(code))
    assert err.type == name
    if text is not None:
        assert err.text == text  # BlueZ reads the application error code from the text


def test_expected_att_errors_do_not_flood_the_log() -> None:
    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.ERROR, __file__, 1, msg, None, None)

    assert not _quiet_att_errors(record(
        "got unexpected error processing a message: 0x80.\n"
        "dbus_next.errors.DBusError: 0x80"))
    assert _quiet_att_errors(record("got unexpected error processing a message: KeyError"))
    assert _quiet_att_errors(record("something else"))
