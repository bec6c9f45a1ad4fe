"""Decoding the instant-readout records of Victron batteries (0x05) and battery monitors (0x02).

Victron Smart Lithium batteries advertise record 0x05 (up to 8 cell voltages, battery voltage,
temperature, balancer state, BMS flags and error flags); a SmartShunt or BMV advertises record
0x02 (voltage, current, SOC, consumed Ah, time to go, alarm reason, aux input).  Framing and
encryption are those smallbms uses for its own record (gatt/readout.py, research/victron-ble.md):
``10 02 <product id LE> <record> <nonce LE> <key[0]> <AES-128-CTR ciphertext>``.

Decrypting and bit-parsing are done by ``victron-ble`` (the library Home Assistant uses),
around four faults of version 0.9.3 found while writing this module, each with a test in
tests/sources/test_victron_records.py:

1. A record shorter than its layout is decoded anyway: ``Device.decrypt`` pads the ciphertext
   (PKCS#7), so the missing bytes decode to garbage figures.  Here a short record is refused.
2. Smart Lithium balancer values 4..14 (undefined today, "not available" is 15) raise
   ``ValueError`` from the ``BalancerStatus`` enum, losing the whole frame with its cell
   voltages.  Here they read as an unknown balancer state and the cells are kept.
3. Battery monitor current "not available" (0x3FFFFF) is compared after sign extension, so it
   reads as -0.001 A.  Here it is None.
4. A battery monitor alarm reason with more than one bit set (a low-voltage and a low-SOC
   alarm at once) raises ``ValueError`` from the ``AlarmReason`` enum.  Here the raw bits are
   kept and the frame is decoded.

Cell voltages 0x00 and 0x7E mean "2.60 V or less" and "3.86 V or more"; victron-ble gives -inf
and +inf, Victron's own decoder (dbus-ble-sensors ``src/victron-smartlithium.c``) 2.60 and
3.86 V.  Here they are the bound (2.60 / 3.86 V): the figure errs on the side the limit is on,
so the under- and over-voltage rules still act on it.  Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from victron_ble.devices import BatteryMonitor, SmartLithium
from victron_ble.exceptions import AdvertisementKeyMismatchError

from gatt.readout import HEADER_SIZE, ReadoutError, parse_header

RECORD_BATTERY_MONITOR = 0x02
RECORD_SMART_LITHIUM = 0x05

RECORD_NAMES = {
    0x01: "solar charger",
    0x02: "battery monitor",
    0x03: "inverter",
    0x04: "DC/DC converter",
    0x05: "Smart Lithium battery",
    0x06: "Inverter RS",
    0x07: "GX device",
    0x08: "AC charger",
    0x09: "Smart BatteryProtect",
    0x0A: "Lynx Smart BMS",
    0x0B: "Multi RS",
    0x0C: "VE.Bus",
    0x0D: "DC energy meter",
    0x0E: "Smart BMS",
    0x0F: "Orion XS",
}

PAYLOAD_BYTES = {RECORD_SMART_LITHIUM: 16, RECORD_BATTERY_MONITOR: 15}
"""Bytes of ciphertext each record needs (128 and 118 bits of fields)."""

CELLS = 8
CELL_BIAS = 2.60
CELL_LOW_RAW = 0x00  # "2.60 V or less"
CELL_HIGH_RAW = 0x7E  # "3.86 V or more"
CELL_NA_RAW = 0x7F
CELL_LOW = CELL_BIAS
CELL_HIGH = round(CELL_BIAS + CELL_HIGH_RAW / 100, 2)

_BALANCER_BIT = 116  # payload bit of the 4-bit balancer status (dbus-ble-sensors)
_BALANCER_NA = 0xF
BALANCER_STATES = {0: "unknown", 1: "balanced", 2: "balancing", 3: "imbalance"}

_MONITOR_ALARM_BIT = 32
_MONITOR_CURRENT_BIT = 66
_MONITOR_CURRENT_NA = 0x3FFFFF

# VE_REG_BMS_FLAGS bits as Victron's own decoder reads them (dbus-ble-sensors,
# src/victron-smartlithium.c): 2-bit fields where bit 0 = alarm and bit 1 = warning,
# 1-bit fields where 1 = alarm (or "allowed" for the two IO lines).
FLAG_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("high_voltage", 9, 2),
    ("low_voltage", 11, 2),
    ("high_temperature", 15, 2),
    ("low_temperature", 22, 1),
    ("internal_failure", 24, 1),
    ("contactor", 28, 1),
    ("high_current", 29, 1),
    ("cell_imbalance", 30, 1),
)
_ALLOWED_TO_CHARGE_BIT = 25
_ALLOWED_TO_DISCHARGE_BIT = 26


class FrameError(ValueError):
    """Manufacturer data that cannot be trusted as a record of this device; says why."""


class NotARecordError(FrameError):
    """Not a Victron product advertisement with a record (another maker, a 4-byte form)."""


class TruncatedError(FrameError):
    """The record is shorter than its layout: its last fields would be garbage."""


class WrongKeyError(FrameError):
    """The frame was encrypted with another key (the device's PIN was changed)."""


@dataclass(frozen=True, slots=True)
class BmsFlags:
    """The battery BMS's own view (VE_REG_BMS_FLAGS): alarm names and the two IO lines."""

    raw: int
    alarms: tuple[str, ...]
    warnings: tuple[str, ...]
    allowed_to_charge: bool
    allowed_to_discharge: bool

    @classmethod
    def from_raw(cls, raw: int) -> BmsFlags:
        alarms: list[str] = []
        warnings: list[str] = []
        for name, bit, width in FLAG_FIELDS:
            value = (raw >> bit) & ((1 << width) - 1)
            if value & 1:
                alarms.append(name)
            elif value:
                warnings.append(name)
        return cls(
            raw=raw,
            alarms=tuple(alarms),
            warnings=tuple(warnings),
            allowed_to_charge=bool(raw >> _ALLOWED_TO_CHARGE_BIT & 1),
            allowed_to_discharge=bool(raw >> _ALLOWED_TO_DISCHARGE_BIT & 1),
        )


@dataclass(frozen=True, slots=True)
class LithiumRecord:
    """Record 0x05 of a Smart Lithium battery; None = not available."""

    cell_voltages: tuple[float | None, ...]  # V, always 8 entries; None = no such cell
    voltage: float | None  # V
    temperature: float | None  # °C
    balancer: str | None  # "unknown" "balanced" "balancing" "imbalance", or an undefined raw
    flags: BmsFlags
    error_flags: int

    @property
    def cells(self) -> tuple[float, ...]:
        """The cells the battery reports (a 12.8 V battery has 4, a 25.6 V one 8)."""
        return tuple(v for v in self.cell_voltages if v is not None)


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    """Record 0x02 of a SmartShunt or BMV; None = not available."""

    voltage: float | None  # V
    current: float | None  # A, positive = charging
    soc: float | None  # %
    consumed_ah: float | None  # Ah taken since full, a positive magnitude
    ttg_min: int | None  # minutes
    alarm: int  # VE_REG_ALARM_REASON bits, 0 = none
    aux_mode: str  # "starter_voltage" "midpoint_voltage" "temperature" "disabled"
    aux: float | None  # V or °C according to aux_mode


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded advertisement of a device."""

    product_id: int
    record_type: int
    nonce: int
    record: LithiumRecord | MonitorRecord


@dataclass(frozen=True, slots=True)
class Header:
    product_id: int
    record_type: int
    nonce: int
    key_byte: int


def record_name(record_type: int) -> str:
    return RECORD_NAMES.get(record_type, "unknown record")


def read_header(data: bytes) -> Header:
    """The clear-text header, or NotARecordError."""
    try:
        header = parse_header(data)
    except ReadoutError as exc:
        raise NotARecordError(str(exc)) from None
    return Header(header.product_id, header.record_type, header.nonce, header.key_byte)


@lru_cache(maxsize=64)
def _parsers(key_hex: str) -> tuple[SmartLithium, BatteryMonitor]:
    return SmartLithium(key_hex), BatteryMonitor(key_hex)


def decode(data: bytes, key: bytes, header: Header | None = None) -> Frame:
    """Decrypt and decode manufacturer data (after the company id) of a 0x05 or 0x02 record.

    Raises NotARecordError, WrongKeyError, TruncatedError, or FrameError for another record
    type.
    """
    header = header or read_header(data)
    needed = PAYLOAD_BYTES.get(header.record_type)
    if needed is None:
        raise FrameError(
            f"record {header.record_type:#04x} ({record_name(header.record_type)}) is "
            "neither a Smart Lithium battery (0x05) nor a battery monitor (0x02)"
        )
    if header.key_byte != key[0]:
        raise WrongKeyError(
            f"encrypted with another key (its key starts with {header.key_byte:02x}, the "
            f"configured one with {key[0]:02x})"
        )
    if len(data) < HEADER_SIZE + needed:
        raise TruncatedError(
            f"record {header.record_type:#04x} has {len(data) - HEADER_SIZE} bytes, "
            f"its layout {needed}"
        )
    lithium, monitor = _parsers(key.hex())
    parser = lithium if header.record_type == RECORD_SMART_LITHIUM else monitor
    try:
        plain = parser.decrypt(data[: HEADER_SIZE + needed])[:needed]
    except AdvertisementKeyMismatchError as exc:  # pragma: no cover - checked above
        raise WrongKeyError(str(exc)) from None
    if header.record_type == RECORD_SMART_LITHIUM:
        record: LithiumRecord | MonitorRecord = _lithium(lithium, plain)
    else:
        record = _monitor(monitor, plain)
    return Frame(header.product_id, header.record_type, header.nonce, record)


def _bits(plain: bytes, start: int, width: int) -> int:
    return (int.from_bytes(plain, "little") >> start) & ((1 << width) - 1)


def _with_bits(plain: bytes, start: int, width: int, value: int) -> bytes:
    bits = int.from_bytes(plain, "little")
    mask = ((1 << width) - 1) << start
    return ((bits & ~mask) | (value << start)).to_bytes(len(plain), "little")


def _cell(value: float | None) -> float | None:
    if value is None:
        return None
    if math.isinf(value):
        return CELL_LOW if value < 0 else CELL_HIGH
    return round(value, 2)


def _lithium(parser: SmartLithium, plain: bytes) -> LithiumRecord:
    balancer_raw = _bits(plain, _BALANCER_BIT, 4)
    balancer: str | None
    if balancer_raw in BALANCER_STATES:
        balancer = BALANCER_STATES[balancer_raw]
    elif balancer_raw == _BALANCER_NA:
        balancer = None
    else:  # fault 2: undefined today; victron-ble would raise and lose the frame
        balancer = f"undefined ({balancer_raw})"
        plain = _with_bits(plain, _BALANCER_BIT, 4, _BALANCER_NA)
    parsed: dict[str, Any] = parser.parse_decrypted(plain)
    temperature = parsed["battery_temperature"]
    return LithiumRecord(
        cell_voltages=tuple(_cell(v) for v in parsed["cell_voltages"]),
        voltage=parsed["battery_voltage"],
        temperature=None if temperature is None else float(temperature),
        balancer=balancer,
        flags=BmsFlags.from_raw(int(parsed["bms_flags"])),
        error_flags=int(parsed["error_flags"]),
    )


_AUX_NAMES = ("starter_voltage", "midpoint_voltage", "temperature", "disabled")


def _monitor(parser: BatteryMonitor, plain: bytes) -> MonitorRecord:
    alarm = _bits(plain, _MONITOR_ALARM_BIT, 16)
    current_na = _bits(plain, _MONITOR_CURRENT_BIT, 22) == _MONITOR_CURRENT_NA  # fault 3
    # fault 4: parse with no alarm bits (any combination is valid), keep the raw ones
    parsed: dict[str, Any] = parser.parse_decrypted(_with_bits(plain, _MONITOR_ALARM_BIT, 16, 0))
    aux_mode = _AUX_NAMES[parsed["aux_mode"].value]
    aux: float | None = None
    if aux_mode == "starter_voltage":
        aux = parsed.get("starter_voltage")
    elif aux_mode == "midpoint_voltage":
        aux = parsed.get("midpoint_voltage")
    elif aux_mode == "temperature" and parsed.get("temperature_kelvin") is not None:
        aux = round(parsed["temperature_kelvin"] - 273.15, 2)
    consumed = parsed["consumed_ah"]
    return MonitorRecord(
        voltage=parsed["voltage"],
        current=None if current_na else parsed["current"],
        soc=parsed["soc"],
        consumed_ah=None if consumed is None else abs(consumed),
        ttg_min=parsed["remaining_mins"],
        alarm=alarm,
        aux_mode=aux_mode,
        aux=aux,
    )
