"""The BlueZ adapter's own D-Bus objects, flags and error mapping (no bus needed)."""

from __future__ import annotations

import pytest
from dbus_fast.service import ServiceInterface

from gatt import profile
from gatt.server import AttError, dbus_error_for, flags_of
from gatt.server.objects import Advertisement, build_application


def test_the_advertisement_carries_no_service_uuid_and_updates_its_data() -> None:
    adv = Advertisement("smallBMS NG")
    props = {p.name: p.signature for p in ServiceInterface._get_properties(adv)}
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
    (profile.ATT_NOT_SAVED, "org.bluez.Error.Failed", "0x84"),
])
def test_att_errors_become_the_dbus_errors_bluez_maps_back(code: int, name: str,
                                                           text: str | None) -> None:
    err_name, err_text = dbus_error_for(AttError(code))
    assert err_name == name
    if text is not None:
        assert err_text == text  # BlueZ reads the application error code from the text


def test_what_needs_pairing_needs_it_for_subscriptions_too() -> None:
    """BlueZ gives the CCC the permissions of the notify flags alone (e2e ccc case): a plain
    "notify" beside "encrypt-read" lets an unpaired central subscribe."""
    for ch in profile.CHARACTERISTICS.values():
        flags = flags_of(ch)
        if ch.encrypted:
            assert not {"read", "write", "notify", "indicate"} & set(flags), (ch.key, flags)
        if profile.Prop.NOTIFY in ch.props:
            assert ("encrypt-notify" if ch.encrypted else "notify") in flags
        if profile.Prop.INDICATE in ch.props:
            assert ("encrypt-indicate" if ch.encrypted else "indicate") in flags


def test_the_application_lists_every_characteristic_with_its_flags() -> None:
    built = build_application("/t", profile.SERVICES, flags_of,
                              lambda _k, _o: b"", lambda _k, _v, _o: None)
    assert set(built.characteristics) == set(profile.CHARACTERISTICS)
    managed = built.objects[0][1].managed  # type: ignore[attr-defined]
    chars = [v["org.bluez.GattCharacteristic1"] for v in managed.values()
             if "org.bluez.GattCharacteristic1" in v]
    by_uuid = {c["UUID"].value: c["Flags"].value for c in chars}
    for ch in profile.CHARACTERISTICS.values():
        assert by_uuid[ch.uuid] == flags_of(ch)
