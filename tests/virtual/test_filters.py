"""Discovery filters (Adapter1.SetDiscoveryFilter) decide which advertisers are reported."""

from __future__ import annotations

import pytest
from dbus_fast import Variant

from gatt.virtual import air
from gatt.virtual.adapter import DiscoveryFilter

SERVICE = "12345678-1234-5678-1234-56789abcdef0"
REPORT = air.Report(
    name="smallBMS NG",
    uuids=(SERVICE,),
    manufacturer_data={},
    service_data={},
    tx_power=None,
    appearance=None,
    flags=4,
)


def accepts(options: dict[str, Variant], rssi: int = -50) -> bool:
    return DiscoveryFilter.from_options(options).accepts(REPORT, "00:00:00:00:00:01", rssi)


def test_bleak_default_filter_reports_everything() -> None:
    assert accepts({"Transport": Variant("s", "le"), "DuplicateData": Variant("b", False)})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"UUIDs": Variant("as", [SERVICE])}, True),
        ({"UUIDs": Variant("as", ["180f"])}, False),
        ({"RSSI": Variant("n", -60)}, True),
        ({"RSSI": Variant("n", -40)}, False),
        ({"Pattern": Variant("s", "smallBMS")}, True),
        ({"Pattern": Variant("s", "00:00:00")}, True),
        ({"Pattern": Variant("s", "Lynx")}, False),
    ],
)
def test_filters_select_advertisers(options: dict[str, Variant], expected: bool) -> None:
    assert accepts(options) is expected


def test_a_bad_uuid_in_a_filter_is_refused() -> None:
    with pytest.raises(air.AdvertisementError):
        DiscoveryFilter.from_options({"UUIDs": Variant("as", ["not-a-uuid"])})
