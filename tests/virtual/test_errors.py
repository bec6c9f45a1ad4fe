"""Errors go app -> ATT -> central as on BlueZ, so bleak raises what it raises on hardware."""

from __future__ import annotations

import pytest
from bleak.backends.bluezdbus.utils import assert_gatt_reply
from bleak.exc import BleakDBusError, BleakGATTProtocolError, BleakGATTProtocolErrorCode
from dbus_fast import Message, MessageType
from hypothesis import given
from hypothesis import strategies as st

from gatt.virtual import errors


def bleak_sees(app_error: str, text: str = "", *, writing: bool = True) -> BaseException:
    """Run the app's error through both BlueZ halves and bleak's own reply check."""
    code = errors.att_code_for_app_error(app_error, text, writing=writing)
    central = errors.central_error_for_att(code)
    reply = Message(
        message_type=MessageType.ERROR,
        error_name=central.name,
        reply_serial=1,
        signature="s",
        body=[central.text],
    )
    with pytest.raises((BleakGATTProtocolError, BleakDBusError)) as info:
        assert_gatt_reply(reply)
    return info.value


@pytest.mark.parametrize(
    ("app_error", "text", "expected"),
    [
        (
            "org.bluez.Error.InvalidValueLength",
            "",
            BleakGATTProtocolErrorCode.INVALID_ATTRIBUTE_VALUE_LENGTH,
        ),
        (
            "org.bluez.Error.NotAuthorized",
            "",
            BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHORIZATION,
        ),
        ("org.bluez.Error.NotSupported", "", BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED),
        ("org.bluez.Error.InvalidOffset", "", BleakGATTProtocolErrorCode.INVALID_OFFSET),
        ("org.bluez.Error.NotPermitted", "", BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED),
        ("org.bluez.Error.Failed", "0x85", 0x85),
        ("org.bluez.Error.Failed", "whatever", 0x80),
        ("org.bluez.Error.Failed", "0x20", BleakGATTProtocolErrorCode.UNLIKELY_ERROR),
        (
            "com.dubstepdish.dbus.next.ServiceError",
            "Traceback",
            BleakGATTProtocolErrorCode.UNLIKELY_ERROR,
        ),
        ("org.bluez.Error.InProgress", "", 0xFE),
    ],
)
def test_application_errors_reach_bleak_as_gatt_protocol_errors(
    app_error: str, text: str, expected: int
) -> None:
    err = bleak_sees(app_error, text)
    assert isinstance(err, BleakGATTProtocolError)
    assert int(err.code) == int(expected)


def test_not_permitted_depends_on_the_direction() -> None:
    err = bleak_sees("org.bluez.Error.NotPermitted", writing=False)
    assert isinstance(err, BleakGATTProtocolError)
    assert err.code == BleakGATTProtocolErrorCode.READ_NOT_PERMITTED


@pytest.mark.parametrize(
    "code", [errors.Att.INSUFFICIENT_ENCRYPTION, errors.Att.INSUFFICIENT_AUTHENTICATION]
)
def test_insufficient_security_is_not_paired_for_the_central(code: int) -> None:
    central = errors.central_error_for_att(code)
    assert (central.name, central.text) == ("org.bluez.Error.NotPermitted", "Not paired")


@given(
    name=st.one_of(st.sampled_from(sorted(errors.APP_ERROR_TO_ATT)), st.text(max_size=40)),
    text=st.text(max_size=20),
    writing=st.booleans(),
)
def test_every_application_error_makes_bleak_raise(name: str, text: str, writing: bool) -> None:
    """Whatever the application answers, the central's request fails: never a silent success,
    and the ATT code is a valid one-byte error."""
    code = errors.att_code_for_app_error(name, text, writing=writing)
    assert 0x01 <= code <= 0xFF
    assert isinstance(
        bleak_sees(name, text, writing=writing), BleakDBusError | BleakGATTProtocolError
    )
