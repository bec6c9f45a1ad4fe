"""Advertising data and scan response as BlueZ 5.66 builds them, with the 31-byte limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatt.virtual import air

BLESS_UUID = "12345678-1234-5678-1234-56789abcdef0"
VICTRON = 0x02E1


def bless_like(manufacturer: bytes | None = None, name: str = "smallBMS NG") -> air.Advertisement:
    """What bless 0.3.0 registers: peripheral, its first service's 128-bit UUID, a name."""
    mfr = {VICTRON: manufacturer} if manufacturer is not None else {}
    return air.Advertisement(
        type="peripheral", service_uuids=(BLESS_UUID,), manufacturer_data=mfr, local_name=name
    )


def frame(adv: air.Advertisement) -> air.AirFrame:
    return air.build_frame(adv, adapter_alias="virtual-hci0")


def test_flags_and_128_bit_uuid_leave_six_bytes_of_manufacturer_data() -> None:
    """Measured on BlueZ 5.66: 6 bytes after the company id fit, 16 are refused."""
    fits = frame(bless_like(bytes(6)))
    assert len(fits.adv_data) == air.LEGACY_AD_MAX
    with pytest.raises(air.AdvertisementError, match="Advertising data too long: 32 > 31"):
        frame(bless_like(bytes(7)))
    with pytest.raises(air.AdvertisementError, match="manufacturer data 0x02E1 20"):
        frame(bless_like(bytes(16)))


def test_instant_readout_record_fits_without_a_service_uuid() -> None:
    """Flags 3 + manufacturer AD 4 + 24 bytes (Victron 8-byte header, 16-byte record) = 31."""
    adv = air.Advertisement(
        type="peripheral", manufacturer_data={VICTRON: bytes(24)}, local_name="smallBMS NG"
    )
    assert len(frame(adv).adv_data) == 31
    with pytest.raises(air.AdvertisementError):
        frame(air.Advertisement(manufacturer_data={VICTRON: bytes(25)}))


def test_local_name_goes_to_the_scan_response_and_is_shortened_to_fit() -> None:
    built = frame(bless_like(name="VBZTest"))
    assert b"VBZTest" not in built.adv_data
    assert built.scan_response == bytes((8, air.AD_NAME_COMPLETE)) + b"VBZTest"
    long_name = frame(bless_like(name="N" * 40))
    assert long_name.scan_response == bytes((30, air.AD_NAME_SHORT)) + b"N" * 29
    assert air.decode(long_name).name == "N" * 29


def test_passive_scanner_does_not_see_the_name() -> None:
    assert air.decode(frame(bless_like()), active=False).name is None


def test_includes_local_name_uses_the_adapter_alias() -> None:
    adv = air.Advertisement(includes=("local-name",))
    assert air.decode(air.build_frame(adv, adapter_alias="smallBMS NG")).name == "smallBMS NG"


def test_sig_uuids_use_short_forms_on_the_air() -> None:
    adv = air.Advertisement(
        service_uuids=("180f", "0000180a-0000-1000-8000-00805f9b34fb"),
        service_data={"180f": b"\x64"},
    )
    built = frame(adv)
    assert bytes((5, air.AD_UUID16_ALL, 0x0F, 0x18, 0x0A, 0x18)) in built.adv_data
    report = air.decode(built)
    assert report.uuids == (
        "0000180f-0000-1000-8000-00805f9b34fb",
        "0000180a-0000-1000-8000-00805f9b34fb",
    )
    assert report.service_data == {"0000180f-0000-1000-8000-00805f9b34fb": b"\x64"}


def test_flags_say_general_discoverable_only_when_asked() -> None:
    assert air.decode(frame(bless_like())).flags == air.FLAG_LE_ONLY
    discoverable = air.Advertisement(discoverable=True)
    assert air.decode(frame(discoverable)).flags == air.FLAG_LE_ONLY | air.FLAG_GENERAL_DISCOVERABLE


def test_properties_are_parsed_like_bluez() -> None:
    props = {
        "Type": "peripheral",
        "ServiceUUIDs": [BLESS_UUID.upper()],
        "ManufacturerData": {VICTRON: b"\x10\x02"},
        "LocalName": "x",
        "TxPower": 20,
        "Includes": ["tx-power"],
    }
    adv = air.advertisement_from_properties(props)
    assert adv.service_uuids == (BLESS_UUID,)
    assert air.decode(frame(adv)).tx_power == 20
    with pytest.raises(air.AdvertisementError, match="Type must be"):
        air.advertisement_from_properties({"Type": "beacon"})
    with pytest.raises(air.AdvertisementError, match="not a UUID"):
        air.advertisement_from_properties({"Type": "broadcast", "ServiceUUIDs": ["nope"]})
    assert (
        air.advertisement_from_properties({"Type": "broadcast", "Includes": ["rsi"]}).includes == ()
    )


@given(
    data=st.binary(max_size=10),
    company=st.integers(0, 0xFFFF),
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=29),
)
def test_what_fits_reaches_the_scanner_unchanged(data: bytes, company: int, name: str) -> None:
    adv = air.Advertisement(
        service_uuids=("180f",), manufacturer_data={company: data}, local_name=name
    )
    built = frame(adv)
    assert len(built.adv_data) <= air.LEGACY_AD_MAX
    assert len(built.scan_response) <= air.LEGACY_AD_MAX
    report = air.decode(built)
    assert report.manufacturer_data == {company: data}
    assert report.name == name


@given(data=st.binary(max_size=40), uuids=st.lists(st.uuids().map(str), max_size=2))
def test_an_advertisement_is_either_refused_or_at_most_31_bytes(
    data: bytes, uuids: list[str]
) -> None:
    adv = air.Advertisement(service_uuids=tuple(uuids), manufacturer_data={1: data})
    size = 3 + (2 + 16 * len(uuids) if uuids else 0) + 4 + len(data)
    if size > air.LEGACY_AD_MAX:
        with pytest.raises(air.AdvertisementError, match="too long"):
            frame(adv)
    else:
        built = frame(adv)
        assert len(built.adv_data) == size
        assert air.decode(built).manufacturer_data == {1: data}
