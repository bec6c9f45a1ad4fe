"""Records 0x05 and 0x02 built as Victron devices send them: for test broadcasters and benchmarks.

The daemon never sends these; the test suite's broadcasters (a Smart Lithium battery, a
SmartShunt, each on its own virtual adapter), the benchmarks and the e2e tier's central guest
do.  Field layouts are those of Victron's own decoder (dbus-ble-sensors) and of the 2022
"extra manufacturer data" document (research/victron-ble.md); the tests decode every frame
built here with ``victron-ble`` as well as with :mod:`.records`, so the encoder cannot drift
from what real receivers read.  Fields are packed LSB-first and the unused bits are set.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from bms_daemon.sources.victron.records import (
    CELL_BIAS,
    CELL_HIGH_RAW,
    CELL_NA_RAW,
    CELLS,
    FLAG_FIELDS,
    PAYLOAD_BYTES,
    RECORD_BATTERY_MONITOR,
    RECORD_SMART_LITHIUM,
)
from gatt.readout import HEADER_BYTE_1, NONCE_MODULUS, PRODUCT_ADVERTISEMENT, aes_ctr

PRODUCT_SMART_LITHIUM = 0xA0E5  # Smart Lithium Battery 12.8V/100Ah (victron-ble's product list)
PRODUCT_SMARTSHUNT = 0xA389  # SmartShunt 500A/50mV (victron-ble's product list)

_WARNING_WIDTH = 2  # only the 2-bit fields have a warning level


def pack(fields: Sequence[tuple[int, int]], size: int) -> bytes:
    """(value, width) fields LSB-first into ``size`` bytes; the unused bits are set."""
    bits = 0
    shift = 0
    for value, width in fields:
        bits |= (value & ((1 << width) - 1)) << shift
        shift += width
    bits |= ((1 << (8 * size - shift)) - 1) << shift
    return bits.to_bytes(size, "little")


def _raw(value: float | None, scale: float, low: int, high: int, na: int) -> int:
    if value is None or not math.isfinite(value):
        return na
    return max(low, min(high, round(value * scale)))


def bms_flags(
    *,
    allowed_to_charge: bool = True,
    allowed_to_discharge: bool = True,
    alarms: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> int:
    """A VE_REG_BMS_FLAGS value (see records.BmsFlags for the bits)."""
    raw = (allowed_to_charge << 25) | (allowed_to_discharge << 26)
    for name, bit, width in FLAG_FIELDS:
        if name in alarms:
            raw |= 1 << bit
        elif name in warnings and width == _WARNING_WIDTH:
            raw |= 0b10 << bit
    return raw


def lithium_record(
    cells: Sequence[float | None],
    *,
    voltage: float | None = None,
    temperature: float | None = 20.0,
    balancer: int = 1,
    flags: int | None = None,
    error_flags: int = 0,
) -> bytes:
    """The 16-byte clear-text 0x05 record; ``voltage`` defaults to the sum of the cells."""
    if len(cells) > CELLS:
        raise ValueError(f"a Smart Lithium record holds {CELLS} cells, not {len(cells)}")
    padded = list(cells) + [None] * (CELLS - len(cells))
    if voltage is None and all(c is not None for c in cells):
        voltage = sum(c for c in cells if c is not None)
    fields = [
        (bms_flags() if flags is None else flags, 32),
        (error_flags, 16),
        *((_raw(None if c is None else c - CELL_BIAS, 100, 0, CELL_HIGH_RAW, CELL_NA_RAW), 7)
          for c in padded),
        (_raw(voltage, 100, 0, 0xFFE, 0xFFF), 12),
        (balancer, 4),
        (_raw(None if temperature is None else temperature + 40, 1, 0, 0x7E, 0x7F), 7),
    ]
    return pack(fields, PAYLOAD_BYTES[RECORD_SMART_LITHIUM])


def monitor_record(
    *,
    voltage: float | None,
    current: float | None,
    soc: float | None = None,
    consumed_ah: float | None = None,
    ttg_min: int | None = None,
    alarm: int = 0,
    aux_mode: int = 3,
    aux: int = 0,
) -> bytes:
    """The 15-byte clear-text 0x02 record (current in mA on 22 bits, signed)."""
    fields = [
        (0xFFFF if ttg_min is None else max(0, min(0xFFFE, ttg_min)), 16),
        (_raw(voltage, 100, -0x8000, 0x7FFE, 0x7FFF), 16),
        (alarm, 16),
        (aux, 16),
        (aux_mode, 2),
        (_raw(current, 1000, -0x200000, 0x1FFFFE, 0x3FFFFF), 22),
        (_raw(consumed_ah, 10, 0, 0xFFFFE, 0xFFFFF), 20),
        (_raw(soc, 10, 0, 1000, 0x3FF), 10),
    ]
    return pack(fields, PAYLOAD_BYTES[RECORD_BATTERY_MONITOR])


def manufacturer_data(
    record_type: int, plain: bytes, key: bytes, nonce: int, product_id: int
) -> bytes:
    """The manufacturer data for company 0x02E1 (company id not included)."""
    header = struct.pack(
        "<BBHBHB", PRODUCT_ADVERTISEMENT, HEADER_BYTE_1, product_id, record_type, nonce, key[0]
    )
    return header + aes_ctr(key, nonce, plain)


@dataclass
class DeviceEncoder:
    """One device's frames: a new nonce for each new reading, as the devices do."""

    key: bytes
    record_type: int
    product_id: int
    nonce: int = 0

    def frame(self, plain: bytes) -> bytes:
        self.nonce = (self.nonce + 1) % NONCE_MODULUS
        return manufacturer_data(self.record_type, plain, self.key, self.nonce, self.product_id)

    @classmethod
    def battery(cls, key: bytes, nonce: int = 0) -> DeviceEncoder:
        return cls(key, RECORD_SMART_LITHIUM, PRODUCT_SMART_LITHIUM, nonce)

    @classmethod
    def monitor(cls, key: bytes, nonce: int = 0) -> DeviceEncoder:
        return cls(key, RECORD_BATTERY_MONITOR, PRODUCT_SMARTSHUNT, nonce)
