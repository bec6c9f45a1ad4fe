"""The air: advertising data and scan response bytes, built the way BlueZ 5.66 builds them.

A registered ``LEAdvertisement1`` is turned into two legacy PDUs' worth of AD structures
(``generate_adv_data()`` / ``generate_scan_rsp()`` in ``src/advertising.c`` plus the kernel's
managed Flags), each limited to 31 bytes.  Scanners are then fed what these bytes decode to, not
the registered properties: a payload that would not survive the trip on hardware does not survive
it here either.  Measured on real BlueZ 5.66 (research/qemu-bluez.md): Flags (3) plus one 128-bit
service UUID (18) leave 10 bytes, so manufacturer data of 6 bytes after the company id fits and
16 bytes are refused; the local name always goes to the scan response.  Pure, no I/O.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

LEGACY_AD_MAX = 31
"""Bytes of AD payload in one legacy ADV_IND / SCAN_RSP PDU."""

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

AD_FLAGS = 0x01
AD_UUID16_ALL = 0x03
AD_UUID32_ALL = 0x05
AD_UUID128_ALL = 0x07
AD_NAME_SHORT = 0x08
AD_NAME_COMPLETE = 0x09
AD_TX_POWER = 0x0A
AD_SOLICIT16 = 0x14
AD_SOLICIT128 = 0x15
AD_SERVICE_DATA16 = 0x16
AD_APPEARANCE = 0x19
AD_SOLICIT32 = 0x1F
AD_SERVICE_DATA32 = 0x20
AD_SERVICE_DATA128 = 0x21
AD_MANUFACTURER = 0xFF

FLAG_GENERAL_DISCOVERABLE = 0x02
FLAG_LE_ONLY = 0x04
"""Our virtual controllers are LE-only, so the kernel always sets "BR/EDR not supported"."""

ADVERTISEMENT_TYPES = ("broadcast", "peripheral")
INCLUDES = ("tx-power", "appearance", "local-name")


class AdvertisementError(ValueError):
    """The advertisement cannot be put on the air; the message says why, in bytes."""


@dataclass(frozen=True)
class Advertisement:
    """The ``LEAdvertisement1`` properties BlueZ 5.66 uses, as plain Python values."""

    type: str = "peripheral"
    service_uuids: tuple[str, ...] = ()
    solicit_uuids: tuple[str, ...] = ()
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    local_name: str | None = None
    appearance: int | None = None
    tx_power: int = 0
    includes: tuple[str, ...] = ()
    discoverable: bool = False


@dataclass(frozen=True)
class AirFrame:
    """What a scanner receives: the advertising data and the scan response (both may be empty)."""

    adv_data: bytes
    scan_response: bytes
    connectable: bool


@dataclass(frozen=True)
class Report:
    """What the central's BlueZ puts in Device1 after decoding an advertising report."""

    name: str | None
    uuids: tuple[str, ...]
    manufacturer_data: dict[int, bytes]
    service_data: dict[str, bytes]
    tx_power: int | None
    appearance: int | None
    flags: int | None


def _unwrap(value: Any) -> Any:
    """A dbus-fast Variant's value, or the value itself (so tests can pass plain data)."""
    return getattr(value, "value", value)


def advertisement_from_properties(props: Mapping[str, Any]) -> Advertisement:
    """Parse ``Properties.GetAll("org.bluez.LEAdvertisement1")`` as BlueZ's parsers do.

    Raises AdvertisementError for what BlueZ rejects ("Failed to parse advertisement").
    """
    adv_type = str(_unwrap(props.get("Type", "")))
    if adv_type not in ADVERTISEMENT_TYPES:
        raise AdvertisementError(
            f"Type must be one of {', '.join(ADVERTISEMENT_TYPES)}, not {adv_type!r}"
        )
    mfr: dict[int, bytes] = {}
    for company, data in dict(_unwrap(props.get("ManufacturerData", {}))).items():
        if not 0 <= int(company) <= 0xFFFF:
            raise AdvertisementError(f"manufacturer id {company} is not 16-bit")
        mfr[int(company)] = bytes(_unwrap(data))
    svc_data = {
        normalise_uuid(str(key)): bytes(_unwrap(data))
        for key, data in dict(_unwrap(props.get("ServiceData", {}))).items()
    }
    # BlueZ skips Includes it does not support (SupportedIncludes lists the others)
    includes = tuple(str(i) for i in _unwrap(props.get("Includes", [])) if str(i) in INCLUDES)
    name = _unwrap(props.get("LocalName"))
    appearance = _unwrap(props.get("Appearance"))
    return Advertisement(
        type=adv_type,
        service_uuids=tuple(normalise_uuid(str(u)) for u in _unwrap(props.get("ServiceUUIDs", []))),
        solicit_uuids=tuple(normalise_uuid(str(u)) for u in _unwrap(props.get("SolicitUUIDs", []))),
        manufacturer_data=mfr,
        service_data=svc_data,
        local_name=str(name) if name else None,
        appearance=int(appearance) if appearance is not None else None,
        tx_power=int(_unwrap(props.get("TxPower", 0))),
        includes=includes,
        discoverable=bool(_unwrap(props.get("Discoverable", False))),
    )


_SHORT_UUID = re.compile(r"^[0-9a-fA-F]{4}$|^[0-9a-fA-F]{8}$")


def normalise_uuid(text: str) -> str:
    """The 128-bit lower-case form of a UUID string; "180f" and "0000180f" are SIG short forms."""
    if _SHORT_UUID.match(text):
        return f"{int(text, 16):08x}{BASE_UUID_SUFFIX}"
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise AdvertisementError(f"{text!r} is not a UUID") from None


def uuid_size(full: str) -> int:
    """2, 4 or 16: the smallest form of a (normalised) UUID on the air."""
    if not full.endswith(BASE_UUID_SUFFIX):
        return 16
    return 2 if full.startswith("0000") else 4


def _uuid_bytes(full: str, size: int) -> bytes:
    return uuid.UUID(full).bytes[:4][-size:][::-1] if size < 16 else uuid.UUID(full).bytes[::-1]


def _ad(ad_type: int, payload: bytes) -> bytes:
    return bytes((len(payload) + 1, ad_type)) + payload


def _uuid_lists(uuids: Iterable[str], types: tuple[int, int, int]) -> list[tuple[str, bytes]]:
    parts: list[tuple[str, bytes]] = []
    full = [normalise_uuid(u) for u in uuids]
    for size, ad_type, label in zip((2, 4, 16), types, ("16", "32", "128"), strict=True):
        chosen = [u for u in full if uuid_size(u) == size]
        if chosen:
            payload = b"".join(_uuid_bytes(u, size) for u in chosen)
            parts.append((f"{label}-bit UUIDs", _ad(ad_type, payload)))
    return parts


def _describe(parts: list[tuple[str, bytes]]) -> str:
    return ", ".join(f"{label} {len(data)}" for label, data in parts)


def build_frame(
    adv: Advertisement, *, adapter_alias: str, adapter_discoverable: bool = False
) -> AirFrame:
    """The bytes on the air for ``adv``, or AdvertisementError when they exceed 31 bytes.

    Advertising data: Flags (managed by the kernel, always present on our LE-only controllers),
    service UUIDs, solicit UUIDs, manufacturer data, service data, appearance, TX power.
    Scan response: the local name (LocalName, or the adapter alias with Includes
    "local-name"), shortened to fit as BlueZ's ``bt_ad`` does.
    """
    flags = FLAG_LE_ONLY
    if adv.discoverable or adapter_discoverable:
        flags |= FLAG_GENERAL_DISCOVERABLE
    parts: list[tuple[str, bytes]] = [("flags", _ad(AD_FLAGS, bytes((flags,))))]
    parts += _uuid_lists(adv.service_uuids, (AD_UUID16_ALL, AD_UUID32_ALL, AD_UUID128_ALL))
    parts += [
        (f"solicit {label}", data)
        for label, data in _uuid_lists(
            adv.solicit_uuids, (AD_SOLICIT16, AD_SOLICIT32, AD_SOLICIT128)
        )
    ]
    for company, data in adv.manufacturer_data.items():
        parts.append(
            (
                f"manufacturer data 0x{company:04X}",
                _ad(AD_MANUFACTURER, company.to_bytes(2, "little") + data),
            )
        )
    for key, data in adv.service_data.items():
        svc = normalise_uuid(key)
        size = uuid_size(svc)
        ad_type = {2: AD_SERVICE_DATA16, 4: AD_SERVICE_DATA32, 16: AD_SERVICE_DATA128}[size]
        parts.append((f"service data {svc}", _ad(ad_type, _uuid_bytes(svc, size) + data)))
    appearance = adv.appearance
    if appearance is None and "appearance" in adv.includes:
        appearance = 0
    if appearance is not None:
        parts.append(("appearance", _ad(AD_APPEARANCE, appearance.to_bytes(2, "little"))))
    if "tx-power" in adv.includes:
        parts.append(("tx power", _ad(AD_TX_POWER, (adv.tx_power & 0xFF).to_bytes(1, "little"))))
    adv_data = b"".join(data for _, data in parts)
    if len(adv_data) > LEGACY_AD_MAX:
        raise AdvertisementError(
            f"Advertising data too long: {len(adv_data)} > {LEGACY_AD_MAX} bytes "
            f"({_describe(parts)}); the local name already goes to the scan response"
        )
    name = adv.local_name
    if name is None and "local-name" in adv.includes:
        name = adapter_alias
    scan_response = b""
    if name:
        encoded = name.encode()
        room = LEGACY_AD_MAX - 2
        if len(encoded) > room:
            scan_response = _ad(AD_NAME_SHORT, encoded[:room])
        else:
            scan_response = _ad(AD_NAME_COMPLETE, encoded)
    return AirFrame(adv_data, scan_response, connectable=adv.type == "peripheral")


def split_ad(data: bytes) -> list[tuple[int, bytes]]:
    """The (AD type, payload) structures of advertising data, as a scanner parses them."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 1 < len(data):
        length = data[pos]
        if length == 0:
            break
        out.append((data[pos + 1], data[pos + 2 : pos + 1 + length]))
        pos += 1 + length
    return out


def _uuids_from(payload: bytes, size: int) -> list[str]:
    out = []
    for i in range(0, len(payload) - size + 1, size):
        raw = payload[i : i + size][::-1]
        if size == 16:
            out.append(str(uuid.UUID(bytes=raw)))
        else:
            out.append(f"{int.from_bytes(raw, 'big'):08x}{BASE_UUID_SUFFIX}")
    return out


def decode(frame: AirFrame, *, active: bool = True) -> Report:
    """What a scanner learns from ``frame`` (an active scanner also reads the scan response)."""
    name: str | None = None
    uuids: list[str] = []
    mfr: dict[int, bytes] = {}
    svc: dict[str, bytes] = {}
    tx: int | None = None
    appearance: int | None = None
    flags: int | None = None
    data = frame.adv_data + (frame.scan_response if active else b"")
    for ad_type, payload in split_ad(data):
        if ad_type == AD_FLAGS and payload:
            flags = payload[0]
        elif ad_type in (AD_UUID16_ALL, AD_UUID32_ALL, AD_UUID128_ALL):
            size = {AD_UUID16_ALL: 2, AD_UUID32_ALL: 4, AD_UUID128_ALL: 16}[ad_type]
            uuids += [u for u in _uuids_from(payload, size) if u not in uuids]
        elif ad_type in (AD_NAME_COMPLETE, AD_NAME_SHORT):
            if name is None or ad_type == AD_NAME_COMPLETE:
                name = payload.decode(errors="replace")
        elif ad_type == AD_MANUFACTURER and len(payload) >= 2:
            mfr[int.from_bytes(payload[:2], "little")] = payload[2:]
        elif ad_type in (AD_SERVICE_DATA16, AD_SERVICE_DATA32, AD_SERVICE_DATA128):
            size = {AD_SERVICE_DATA16: 2, AD_SERVICE_DATA32: 4, AD_SERVICE_DATA128: 16}[ad_type]
            if len(payload) >= size:
                svc[_uuids_from(payload[:size], size)[0]] = payload[size:]
        elif ad_type == AD_TX_POWER and payload:
            tx = int.from_bytes(payload[:1], "little", signed=True)
        elif ad_type == AD_APPEARANCE and len(payload) >= 2:
            appearance = int.from_bytes(payload[:2], "little")
    return Report(name, tuple(uuids), mfr, svc, tx, appearance, flags)
