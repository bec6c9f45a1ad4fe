"""Victron "instant readout": the encrypted BMS record that existing decoders read unchanged.

The smallBMS NG shows its key figures in VictronConnect's device list without a connection by
putting them, encrypted, in its advertisement (manual 5.1.1).  Phones, Home Assistant's Victron
BLE integration (through the ``victron-ble`` package), ESPHome and Venus OS decode that format
already, so we speak it byte for byte (research/victron-ble.md, SPEC §6) rather than invent one:

* manufacturer data for company 0x02E1: ``10 02 <product id LE> 0A <nonce LE> <key[0]>`` then
  the 16-byte record encrypted with AES-128-CTR (counter block = nonce LE + 14 zero bytes);
* record type 0x0A "(Lynx Smart) BMS", the only BMS record every public decoder accepts;
* fields bit-packed LSB-first, the unused last bit set, "not available" = all ones (0x7FFF for
  the signed 16-bit fields).

This module is pure (no I/O, no clock, no randomness): the key and the nonce are passed in.  It
also holds our own decoder, used by ``smallbms-client scan --key`` and by the tests, which check
it against ``victron-ble`` so the two cannot drift.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bms_daemon.core.types import Code, Reason, Status
from gatt.codec import SOC_SENT_WHEN_UNKNOWN

# --- framing (research/victron-ble.md §1.2) ------------------------------------------------------
VICTRON_COMPANY_ID = 0x02E1  # Bluetooth SIG company identifier of Victron Energy
PRODUCT_ADVERTISEMENT = 0x10  # byte 0: "product advertisement", checked by every decoder
HEADER_BYTE_1 = 0x02  # byte 1: undocumented, 0x02 in every capture; nobody checks it
RECORD_TYPE_BMS = 0x0A  # "(Lynx Smart) BMS"
DEFAULT_PRODUCT_ID = 0xA3EC  # (ours) "smallBMS"; the real smallBMS NG id is unknown (SPEC §6)
HEADER_SIZE = 8  # 0x10, 0x02, product id (2), record type, nonce (2), key[0]
RECORD_SIZE = 16  # the 0x0A record; ESPHome and Venus reject anything else / longer
KEY_SIZE = 16  # AES-128
NONCE_MODULUS = 1 << 16  # the nonce is a u16 on air; it wraps (see docs/instant-readout.md)
_HEADER = struct.Struct("<BBHBHB")

# --- record field widths and "not available" values (§2.2) -----------------------------------
_FIELDS: tuple[tuple[str, int], ...] = (
    ("error", 8),
    ("ttg", 16),
    ("voltage", 16),
    ("current", 16),
    ("io", 16),
    ("alarms", 18),
    ("soc", 10),
    ("consumed", 20),
    ("temperature", 7),
)
_UNUSED_BITS = RECORD_SIZE * 8 - sum(width for _, width in _FIELDS)  # 1 bit, sent as 1
NA_TTG = 0xFFFF
NA_INT16 = 0x7FFF  # voltage and current (signed: NA is the largest positive value)
NA_SOC = 0x3FF
NA_CONSUMED = 0xFFFFF
NA_TEMPERATURE = 0x7F
TEMPERATURE_OFFSET = 40  # raw = °C + 40, so -40 … 86 °C
VOLTAGE_SCALE = 100  # 0.01 V
CURRENT_SCALE = 10  # 0.1 A
SOC_SCALE = 10  # 0.1 %
CONSUMED_SCALE = 10  # 0.1 Ah

# While the BMS does not know its SOC we send codec.SOC_SENT_WHEN_UNKNOWN (100 %, the same as
# the SIG Battery Level): the record's own "not available" (0x3FF) is decoded by victron-ble
# 0.9.3, hence Home Assistant, as 102.3 %, so it is not an option.  Consumed Ah goes "not
# available" at the same time, which is how our own tools tell it from a real 100 %
# (Readout.soc_known).

_KEY_HEX_RE = re.compile(r"^[0-9a-fA-F]{32}$")


class ReadoutError(ValueError):
    """Manufacturer data that is not a readable instant-readout advertisement; says why."""


class KeyMismatchError(ReadoutError):
    """The advertisement's key byte is not the first byte of the key we were given.

    Decoders use this byte to notice a stale key: the device rotates its key when its PIN
    changes, choosing a new key whose first byte differs.
    """


class AlarmLevel(IntEnum):
    """A 2-bit warning/alarm sub-field (VE_REG_BMS_WARNINGS_ALARMS)."""

    UNSUPPORTED = 0
    OK = 1
    WARNING = 2
    ALARM = 3


# IO sub-fields (VE_REG_BMS_IO): 0 = not available, 1 = yes, 2 = no (Venus also reads 3 as no).
_IO_NOT_AVAILABLE = 0
_IO_YES = 1
_IO_NO = 2


def _io_to_raw(value: bool | None) -> int:
    if value is None:
        return _IO_NOT_AVAILABLE
    return _IO_YES if value else _IO_NO


def _io_from_raw(raw: int) -> bool | None:
    if raw == _IO_NOT_AVAILABLE:
        return None
    return raw == _IO_YES


@dataclass(frozen=True, slots=True)
class IoStatus:
    """The IO register, 2 bits per line in this order; None = not available.

    smallbms maps: allowed_to_charge <- CHARGER, allowed_to_discharge <- LOAD,
    user_relay <- PRE-ALARM, remote <- the remote input; it has no contactor, aux output or
    alternator line, so those are sent "not available".
    """

    contactor: bool | None = None
    allowed_to_charge: bool | None = None
    allowed_to_discharge: bool | None = None
    user_relay: bool | None = None
    aux_output: bool | None = None
    remote: bool | None = None
    alternator: bool | None = None

    def to_raw(self) -> int:
        """The 16-bit register; the undefined bits 14-15 stay 0 as on a real Lynx Smart BMS."""
        raw = 0
        for index, item in enumerate(fields(self)):
            raw |= _io_to_raw(getattr(self, item.name)) << (2 * index)
        return raw

    @classmethod
    def from_raw(cls, raw: int) -> IoStatus:
        values = {item.name: _io_from_raw((raw >> (2 * index)) & 0b11)
                  for index, item in enumerate(fields(cls))}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Alarms:
    """The warnings/alarms register, 2 bits each in this order (bits 14-15 have no meaning).

    ``battery_comms_lost`` is the Lynx "BMS cable" field, renamed "battery communication lost"
    for the NG family.
    """

    low_cell_voltage: AlarmLevel = AlarmLevel.UNSUPPORTED
    high_current: AlarmLevel = AlarmLevel.UNSUPPORTED
    high_internal_temperature: AlarmLevel = AlarmLevel.UNSUPPORTED
    contactor: AlarmLevel = AlarmLevel.UNSUPPORTED
    battery_comms_lost: AlarmLevel = AlarmLevel.UNSUPPORTED
    load_disconnect: AlarmLevel = AlarmLevel.UNSUPPORTED
    low_soc: AlarmLevel = AlarmLevel.UNSUPPORTED
    unnamed: AlarmLevel = AlarmLevel.UNSUPPORTED  # bits 14-15: mapped by no decoder
    high_temperature: AlarmLevel = AlarmLevel.UNSUPPORTED

    def to_raw(self) -> int:
        """The 18-bit register."""
        raw = 0
        for index, item in enumerate(fields(self)):
            raw |= int(getattr(self, item.name)) << (2 * index)
        return raw

    @classmethod
    def from_raw(cls, raw: int) -> Alarms:
        values = {item.name: AlarmLevel((raw >> (2 * index)) & 0b11)
                  for index, item in enumerate(fields(cls))}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Readout:
    """The figures of one 0x0A record, in the record's units; None = not available.

    ``consumed_ah`` is a positive magnitude (Ah taken since the last full charge), as smallbms
    and victron-ble show it; Venus OS shows the same field negated.
    """

    error: int = 0  # the E-Bnn number (E-B09 -> 9); 0 = no error
    ttg_min: int | None = None  # time to go, minutes
    voltage: float | None = None  # V, 0.01 V resolution
    current: float | None = None  # A, positive = charging, 0.1 A resolution
    io: IoStatus = field(default_factory=IoStatus)
    alarms: Alarms = field(default_factory=Alarms)
    soc: float | None = None  # %, 0.1 % resolution
    consumed_ah: float | None = None  # Ah, 0.1 Ah resolution
    temperature: int | None = None  # °C, 1 °C resolution

    @property
    def soc_known(self) -> bool:
        """False for smallbms's "SOC unknown": SOC_SENT_WHEN_UNKNOWN with consumed Ah not
        available (a known SOC always has its consumed Ah, 0.0 at 100 %)."""
        return not (self.soc == SOC_SENT_WHEN_UNKNOWN and self.consumed_ah is None)

    @property
    def prealarm(self) -> bool | None:
        """smallbms sends its PRE-ALARM output as the IO "user relay" line."""
        return self.io.user_relay

    def as_dict(self) -> dict[str, Any]:
        """A flat JSON-ready view for people and scripts (``smallbms-client scan --json``):
        the figures, the IO lines that are available, and the alarms that are supported,
        by name ("ok", "warning", "alarm")."""
        result: dict[str, Any] = {
            "error": self.error,
            "soc": self.soc if self.soc_known else None,  # None: unknown (see soc_known)
            "voltage": self.voltage,
            "current": self.current,
            "ttg_min": self.ttg_min,
            "consumed_ah": self.consumed_ah,
            "temperature": self.temperature,
        }
        for item in fields(self.io):
            value = getattr(self.io, item.name)
            if value is not None:
                result["prealarm" if item.name == "user_relay" else item.name] = value
        result["alarms"] = {
            item.name: getattr(self.alarms, item.name).name.lower()
            for item in fields(self.alarms)
            if getattr(self.alarms, item.name) is not AlarmLevel.UNSUPPORTED
        }
        return result


@dataclass(frozen=True, slots=True)
class Header:
    """The clear-text part of the manufacturer data."""

    product_id: int
    record_type: int
    nonce: int
    key_byte: int


# --- bit packing -----------------------------------------------------------------------------

def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _scaled(value: float | None, scale: int, low: int, high: int, na: int) -> int:
    """``value`` in units of 1/scale, clamped to what the field can say, or NA."""
    if value is None or not math.isfinite(value):
        return na
    return _clamp(round(value * scale), low, high)


def pack_record(readout: Readout) -> bytes:
    """The 16-byte clear-text 0x0A record: LSB-first, unused last bit set to 1."""
    raw = {
        "error": _clamp(readout.error, 0, 0xFF),
        "ttg": NA_TTG if readout.ttg_min is None else _clamp(readout.ttg_min, 0, NA_TTG - 1),
        "voltage": _scaled(readout.voltage, VOLTAGE_SCALE, -0x8000, NA_INT16 - 1, NA_INT16),
        "current": _scaled(readout.current, CURRENT_SCALE, -0x8000, NA_INT16 - 1, NA_INT16),
        "io": readout.io.to_raw(),
        "alarms": readout.alarms.to_raw(),
        "soc": _scaled(readout.soc, SOC_SCALE, 0, 100 * SOC_SCALE, NA_SOC),
        "consumed": _scaled(readout.consumed_ah, CONSUMED_SCALE, 0, NA_CONSUMED - 1, NA_CONSUMED),
        "temperature": (
            NA_TEMPERATURE
            if readout.temperature is None
            else _clamp(readout.temperature + TEMPERATURE_OFFSET, 0, NA_TEMPERATURE - 1)
        ),
    }
    bits = 0
    shift = 0
    for name, width in _FIELDS:
        bits |= (raw[name] & ((1 << width) - 1)) << shift
        shift += width
    bits |= ((1 << _UNUSED_BITS) - 1) << shift
    return bits.to_bytes(RECORD_SIZE, "little")


def unpack_record(plain: bytes) -> Readout:
    """Decode a clear-text 0x0A record (at least 16 bytes; a longer one is an extension)."""
    if len(plain) < RECORD_SIZE:
        raise ReadoutError(
            f"a BMS record has {RECORD_SIZE} bytes, this one has {len(plain)}"
        )
    bits = int.from_bytes(plain[:RECORD_SIZE], "little")
    raw: dict[str, int] = {}
    for name, width in _FIELDS:
        raw[name] = bits & ((1 << width) - 1)
        bits >>= width

    def signed16(value: int) -> int:
        return value - 0x10000 if value & 0x8000 else value

    voltage = signed16(raw["voltage"])
    current = signed16(raw["current"])
    return Readout(
        error=raw["error"],
        ttg_min=None if raw["ttg"] == NA_TTG else raw["ttg"],
        voltage=None if voltage == NA_INT16 else voltage / VOLTAGE_SCALE,
        current=None if current == NA_INT16 else current / CURRENT_SCALE,
        io=IoStatus.from_raw(raw["io"]),
        alarms=Alarms.from_raw(raw["alarms"]),
        soc=None if raw["soc"] == NA_SOC else raw["soc"] / SOC_SCALE,
        consumed_ah=None if raw["consumed"] == NA_CONSUMED else raw["consumed"] / CONSUMED_SCALE,
        temperature=(
            None if raw["temperature"] == NA_TEMPERATURE
            else raw["temperature"] - TEMPERATURE_OFFSET
        ),
    )


# --- encryption and framing ----------------------------------------------------------------

def aes_ctr(key: bytes, nonce: int, data: bytes) -> bytes:
    """AES-128-CTR with the counter block ``nonce LE, 0 x 14`` (encrypts and decrypts)."""
    _check_key(key)
    if not 0 <= nonce < NONCE_MODULUS:
        raise ValueError(f"nonce {nonce} does not fit in 16 bits")
    counter = nonce.to_bytes(2, "little") + bytes(14)
    crypt = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    return crypt.update(data) + crypt.finalize()


def encode_manufacturer_data(
    readout: Readout, key: bytes, nonce: int, product_id: int = DEFAULT_PRODUCT_ID
) -> bytes:
    """The manufacturer data for company 0x02E1 (the company id itself not included)."""
    if not 0 <= product_id <= 0xFFFF:
        raise ValueError(f"product id {product_id:#x} does not fit in 16 bits")
    _check_key(key)
    header = _HEADER.pack(
        PRODUCT_ADVERTISEMENT, HEADER_BYTE_1, product_id, RECORD_TYPE_BMS, nonce, key[0]
    )
    return header + aes_ctr(key, nonce, pack_record(readout))


def parse_header(data: bytes) -> Header:
    """The clear-text header of Victron manufacturer data (no key needed).

    Raises ``ReadoutError`` for data that is not a Victron product advertisement with a record
    (e.g. the 4-byte form some products send while off).
    """
    if len(data) < HEADER_SIZE:
        raise ReadoutError(
            f"manufacturer data of {len(data)} bytes is too short for an instant readout "
            f"(at least {HEADER_SIZE})"
        )
    first, _, product_id, record_type, nonce, key_byte = _HEADER.unpack_from(data)
    if first != PRODUCT_ADVERTISEMENT:
        raise ReadoutError(
            f"manufacturer data starts with {first:#04x}, not {PRODUCT_ADVERTISEMENT:#04x}: "
            "not a Victron product advertisement"
        )
    return Header(product_id=product_id, record_type=record_type, nonce=nonce,
                  key_byte=key_byte)


def is_bms_readout(data: bytes) -> bool:
    """True for Victron manufacturer data carrying a (Lynx Smart) BMS record, as smallbms sends."""
    try:
        header = parse_header(data)
    except ReadoutError:
        return False
    return header.record_type == RECORD_TYPE_BMS and len(data) >= HEADER_SIZE + RECORD_SIZE


def decode_manufacturer_data(data: bytes, key: bytes) -> Readout:
    """Decrypt and decode manufacturer data (company id not included) with the device's key.

    Raises ``KeyMismatchError`` when the key is not this device's current key, and
    ``ReadoutError`` when the data is not a BMS readout.
    """
    header = parse_header(data)
    if header.record_type != RECORD_TYPE_BMS:
        raise ReadoutError(
            f"record type {header.record_type:#04x} is not a BMS record "
            f"({RECORD_TYPE_BMS:#04x})"
        )
    _check_key(key)
    if header.key_byte != key[0]:
        raise KeyMismatchError(
            f"the advertisement was encrypted with another key (its key starts with "
            f"{header.key_byte:02x}, yours with {key[0]:02x}); the PIN may have changed: "
            "get the current key with `smallbms key`"
        )
    cipher = data[HEADER_SIZE:]
    return unpack_record(aes_ctr(key, header.nonce, cipher))


def parse_key(text: str) -> bytes:
    """A key typed by a user: 32 hex digits (spaces and colons allowed between them)."""
    cleaned = re.sub(r"[\s:]", "", text)
    if not _KEY_HEX_RE.match(cleaned):
        raise ValueError(
            "an instant-readout key is 32 hexadecimal digits (16 bytes), e.g. "
            "0df4d0395b7d1a876c0c33ecb9e70dcd; `smallbms key` prints it"
        )
    return bytes.fromhex(cleaned)


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"the readout key has {KEY_SIZE} bytes, not {len(key)}")


# --- what smallbms sends -------------------------------------------------------------------

# LOAD floating for these reasons is the user's choice or start-up, not a load-disconnect alarm.
_NOT_AN_ALARM = frozenset({Reason.REMOTE_OFF, Reason.MODE_OFF, Reason.STARTING})


def _level(codes: tuple[Code, ...], warning: Code | None, alarm: Code | None) -> AlarmLevel:
    if alarm is not None and alarm in codes:
        return AlarmLevel.ALARM
    if warning is not None and warning in codes:
        return AlarmLevel.WARNING
    return AlarmLevel.OK


def _load_disconnect(status: Status) -> AlarmLevel:
    """Alarm while LOAD floats for a protection; warning while the pre-alarm announces it."""
    if not status.outputs.load:
        if status.discharge_reason is None or status.discharge_reason in _NOT_AN_ALARM:
            return AlarmLevel.OK
        return AlarmLevel.ALARM
    return AlarmLevel.WARNING if status.outputs.prealarm else AlarmLevel.OK


def _whole(value: float | None) -> int | None:
    """Rounded to the record's 1-unit resolution; None for unknown or non-finite figures."""
    if value is None or not math.isfinite(value):
        return None
    return round(value)


def readout_from_status(status: Status) -> Readout:
    """The figures smallbms broadcasts for a status (mapping in docs/instant-readout.md)."""
    codes = status.codes
    return Readout(
        error=status.errors[0].number if status.errors else 0,
        ttg_min=_whole(status.ttg_min),
        voltage=status.voltage,
        current=status.current,
        io=IoStatus(
            allowed_to_charge=status.outputs.charger,
            allowed_to_discharge=status.outputs.load,
            user_relay=status.outputs.prealarm,
            remote=status.remote,
        ),
        alarms=Alarms(
            low_cell_voltage=_level(codes, Code.W_B01, Code.A_B01),
            battery_comms_lost=_level(codes, Code.W_B05, Code.A_B05),
            load_disconnect=_load_disconnect(status),
            low_soc=_level(codes, Code.W_B07, Code.A_B07),
            high_temperature=_level(codes, None, Code.A_B09),
        ),
        soc=SOC_SENT_WHEN_UNKNOWN if status.soc is None else status.soc,
        consumed_ah=status.consumed_ah,
        temperature=_whole(status.temperature),
    )
