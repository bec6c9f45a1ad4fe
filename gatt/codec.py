"""Bytes <-> core types for every characteristic of the smallbms GATT profile (both directions).

The server encodes and the client decodes with these same functions, so the two sides cannot
drift apart.  Every layout is a fixed little-endian ``struct`` format, described field by field
in docs/gatt-profile.md; the first byte of each multi-field record is ``PROFILE_VERSION`` so a
client can refuse a layout it does not know instead of showing wrong figures.

Rules that hold for every encoder:
- encoding never raises for a value the core can produce: out-of-range figures are clamped to
  the representable range and ``None`` / NaN become the field's "not available" sentinel (the
  server must answer a read whatever the battery does);
- decoding raises ``CodecError`` for a wrong length or version (``length=True`` for a wrong
  length, so the server can answer ATT "invalid attribute value length") and for a value that
  is not in the field's domain.

Enumerations travel as explicit code tables here (not enum order) so that adding a member to a
core enum cannot silently renumber the wire format.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from bms_daemon.core.types import (
    BalancerState,
    BankStatus,
    BatteryStatus,
    Code,
    History,
    Leds,
    LedState,
    Outputs,
    Reason,
    Status,
)

_T = TypeVar("_T")
BytesLike = bytes | bytearray  # what bleak hands back (bytearray) or a test (bytes)

PROFILE_VERSION = 1  # first byte of every record below; bump on any layout change

# "not available" sentinels, one per integer type (Victron's convention)
NA_U8 = 0xFF
NA_U16 = 0xFFFF
NA_I16 = 0x7FFF
NA_U32 = 0xFFFFFFFF
NA_I32 = 0x7FFFFFFF

_LIMITS = {
    "B": (0, 0xFE),
    "H": (0, 0xFFFE),
    "h": (-0x7FFF, 0x7FFE),
    "I": (0, 0xFFFFFFFE),
    "i": (-0x7FFFFFFF, 0x7FFFFFFE),
}
_NA = {"B": NA_U8, "H": NA_U16, "h": NA_I16, "I": NA_U32, "i": NA_I32}


class CodecError(ValueError):
    """Bytes that are not a valid value of the characteristic; ``length`` = wrong size."""

    def __init__(self, message: str, *, length: bool = False) -> None:
        super().__init__(message)
        self.length = length


# --------------------------------------------------------------------------------------------
# Fixed-point helpers
# --------------------------------------------------------------------------------------------
def _fx(value: float | None, scale: float, kind: str) -> int:
    """``value`` / ``scale`` rounded and clamped to ``kind``; None/NaN -> the NA sentinel."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return _NA[kind]
    lo, hi = _LIMITS[kind]
    return max(lo, min(hi, round(value / scale)))


def _ufx(raw: int, scale: float, kind: str) -> float | None:
    """The inverse of ``_fx``: the NA sentinel -> None."""
    if raw == _NA[kind]:
        return None
    return round(raw * scale, 6)


def _unpack(fmt: str, data: BytesLike, what: str) -> tuple[int, ...]:
    size = struct.calcsize(fmt)
    if len(data) != size:
        raise CodecError(f"{what}: expected {size} bytes, got {len(data)}", length=True)
    return struct.unpack(fmt, data)


def _check_version(version: int, what: str) -> None:
    if version != PROFILE_VERSION:
        raise CodecError(
            f"{what}: profile version {version} is not supported (this program knows "
            f"version {PROFILE_VERSION}); update smallbms"
        )


def _text(value: str, size: int) -> bytes:
    raw = value.encode("utf-8")[:size]
    # never cut a multi-byte character in half
    while raw:
        try:
            raw.decode("utf-8")
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return raw.ljust(size, b"\0")


def _untext(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# Code tables (wire value = index; never reorder, only append)
# --------------------------------------------------------------------------------------------
REASONS: tuple[Reason, ...] = (
    Reason.CELL_UNDER_VOLTAGE,
    Reason.CELL_PRE_ALARM,
    Reason.LOW_PACK_VOLTAGE,
    Reason.DISCHARGE_FLOOR,
    Reason.LOW_SOC,
    Reason.CELL_OVER_VOLTAGE,
    Reason.COLD,
    Reason.HOT,
    Reason.REMOTE_OFF,
    Reason.MODE_OFF,
    Reason.COMMS_LOST,
    Reason.CONFIGURATION,
    Reason.VOLTAGE_NOT_ALLOWED,
    Reason.HARDWARE,
    Reason.STARTING,
)
REASON_NONE = 0xFF
REASON_OTHER = 0xFE  # a reason this version of the profile does not know

CODES: tuple[Code, ...] = (
    Code.W_B01,
    Code.W_B05,
    Code.W_B07,
    Code.A_B01,
    Code.A_B05,
    Code.A_B07,
    Code.A_B08,
    Code.A_B09,
    Code.E_B01,
    Code.E_B05,
    Code.E_B09,
    Code.E_B11,
)
LED_STATES: tuple[LedState, ...] = (LedState.OFF, LedState.BLINK, LedState.ON)
BALANCER_STATES: tuple[BalancerState, ...] = (
    BalancerState.UNKNOWN,
    BalancerState.BALANCING,
    BalancerState.IMBALANCE,
    BalancerState.BALANCED,
)
# Lithium NG models; 0 = unknown / not one of these
MODEL_CODES: tuple[str, ...] = (
    "",
    "12.8V-100Ah",
    "12.8V-150Ah",
    "12.8V-200Ah",
    "12.8V-300Ah",
    "25.6V-100Ah",
    "25.6V-200Ah",
    "25.6V-300Ah",
    "51.2V-100Ah",
)


def _index(table: tuple[object, ...], value: object, missing: int) -> int:
    try:
        return table.index(value)
    except ValueError:
        return missing


def _lookup(table: tuple[_T, ...], raw: int, what: str) -> _T:
    if raw >= len(table):
        raise CodecError(f"{what}: unknown value {raw}")
    return table[raw]


def codes_mask(codes: tuple[Code, ...]) -> int:
    """Bit ``i`` set when ``CODES[i]`` is active."""
    mask = 0
    for code in codes:
        i = _index(CODES, code, -1)
        if i >= 0:
            mask |= 1 << i
    return mask


def codes_from_mask(mask: int) -> tuple[Code, ...]:
    """The active codes, in ``CODES`` order (warnings, alarms, errors)."""
    return tuple(code for i, code in enumerate(CODES) if mask & (1 << i))


# --------------------------------------------------------------------------------------------
# Status (read + notify)
# --------------------------------------------------------------------------------------------
# version, flags, soc 0.01 %, voltage 0.01 V, current mA, power 0.1 W, consumed 0.1 Ah,
# ttg min, temperature 0.01 °C, charge reason, discharge reason, blue LED, red LED, codes
STATUS_FORMAT = "<BHHHiiiHhBBBBH"
STATUS_SIZE = struct.calcsize(STATUS_FORMAT)
FLAG_MODE = 1 << 0
FLAG_REMOTE = 1 << 1
FLAG_ALLOWED_TO_CHARGE = 1 << 2
FLAG_ALLOWED_TO_DISCHARGE = 1 << 3
FLAG_PREALARM = 1 << 4
FLAG_SOC_SYNCHRONISED = 1 << 5
FLAG_LOAD_OUTPUT = 1 << 6
FLAG_CHARGER_OUTPUT = 1 << 7
FLAG_CHARGED_VOLTAGE_NOT_USED = 1 << 8  # the stored charged voltage does not fit the bank


@dataclass(frozen=True, slots=True)
class StatusView:
    """What a client learns from the status characteristic (a Status without the bank)."""

    soc: float | None
    soc_synchronised: bool
    mode: bool
    remote: bool
    voltage: float | None
    current: float | None
    power: float | None
    consumed_ah: float | None
    ttg_min: float | None
    temperature: float | None
    allowed_to_charge: bool
    charge_reason: Reason | None
    allowed_to_discharge: bool
    discharge_reason: Reason | None
    outputs: Outputs
    leds: Leds
    warnings: tuple[Code, ...]
    alarms: tuple[Code, ...]
    errors: tuple[Code, ...]
    # the stored charged voltage does not fit the detected bank: 3.50 V per cell is used
    charged_voltage_not_used: bool = False
    # the battery source's own alarms (a separate characteristic, read by the client)
    source_notes: tuple[str, ...] = ()

    @property
    def codes(self) -> tuple[Code, ...]:
        """Warnings, alarms and errors together, in that order."""
        return self.warnings + self.alarms + self.errors


def _reason_code(reason: Reason | None) -> int:
    return REASON_NONE if reason is None else _index(REASONS, reason, REASON_OTHER)


def _reason(raw: int) -> Reason | None:
    if raw in (REASON_NONE, REASON_OTHER):
        return None
    return _lookup(REASONS, raw, "reason")


def encode_status(status: Status) -> bytes:
    """The status characteristic's value."""
    flags = (
        (FLAG_MODE if status.mode else 0)
        | (FLAG_REMOTE if status.remote else 0)
        | (FLAG_ALLOWED_TO_CHARGE if status.allowed_to_charge else 0)
        | (FLAG_ALLOWED_TO_DISCHARGE if status.allowed_to_discharge else 0)
        | (FLAG_PREALARM if status.outputs.prealarm else 0)
        | (FLAG_SOC_SYNCHRONISED if status.soc_synchronised else 0)
        | (FLAG_LOAD_OUTPUT if status.outputs.load else 0)
        | (FLAG_CHARGER_OUTPUT if status.outputs.charger else 0)
        | (FLAG_CHARGED_VOLTAGE_NOT_USED if status.setting_problems else 0)
    )
    return struct.pack(
        STATUS_FORMAT,
        PROFILE_VERSION,
        flags,
        _fx(status.soc, 0.01, "H"),
        _fx(status.voltage, 0.01, "H"),
        _fx(status.current, 0.001, "i"),
        _fx(status.power, 0.1, "i"),
        _fx(status.consumed_ah, 0.1, "i"),
        _fx(status.ttg_min, 1, "H"),
        _fx(status.temperature, 0.01, "h"),
        _reason_code(status.charge_reason),
        _reason_code(status.discharge_reason),
        _index(LED_STATES, status.leds.blue, 0),
        _index(LED_STATES, status.leds.red, 0),
        codes_mask(status.codes),
    )


def decode_status(data: BytesLike) -> StatusView:
    """Inverse of ``encode_status`` (quantised to the wire resolution)."""
    (version, flags, soc, voltage, current, power, consumed, ttg, temperature, charge_reason,
     discharge_reason, blue, red, mask) = _unpack(STATUS_FORMAT, data, "status")
    _check_version(version, "status")
    codes = codes_from_mask(mask)
    return StatusView(
        soc=_ufx(soc, 0.01, "H"),
        soc_synchronised=bool(flags & FLAG_SOC_SYNCHRONISED),
        mode=bool(flags & FLAG_MODE),
        remote=bool(flags & FLAG_REMOTE),
        voltage=_ufx(voltage, 0.01, "H"),
        current=_ufx(current, 0.001, "i"),
        power=_ufx(power, 0.1, "i"),
        consumed_ah=_ufx(consumed, 0.1, "i"),
        ttg_min=_ufx(ttg, 1, "H"),
        temperature=_ufx(temperature, 0.01, "h"),
        allowed_to_charge=bool(flags & FLAG_ALLOWED_TO_CHARGE),
        charge_reason=_reason(charge_reason),
        allowed_to_discharge=bool(flags & FLAG_ALLOWED_TO_DISCHARGE),
        discharge_reason=_reason(discharge_reason),
        outputs=Outputs(
            load=bool(flags & FLAG_LOAD_OUTPUT),
            charger=bool(flags & FLAG_CHARGER_OUTPUT),
            prealarm=bool(flags & FLAG_PREALARM),
        ),
        leds=Leds(blue=_lookup(LED_STATES, blue, "blue LED"),
                  red=_lookup(LED_STATES, red, "red LED")),
        warnings=tuple(c for c in codes if c.kind == "warning"),
        alarms=tuple(c for c in codes if c.kind == "alarm"),
        errors=tuple(c for c in codes if c.kind == "error"),
        charged_voltage_not_used=bool(flags & FLAG_CHARGED_VOLTAGE_NOT_USED),
    )


# --------------------------------------------------------------------------------------------
# Battery Level (SIG 0x2A19)
# --------------------------------------------------------------------------------------------
# What a format without an "unknown" carries while the BMS does not know its SOC (never
# synchronised nor set): the SIG Battery Level here and the instant readout (gatt/readout.py),
# the same figure in both, so that no two outside views of one BMS disagree.  (ours) 100 %: what
# a Victron battery monitor shows before its first synchronisation ("start synchronised"), and,
# unlike 0 %, a value that cannot trip a phone's or an automation's low-battery action; the
# LOAD and CHARGER outputs, not this figure, protect the battery.  Our own views (client,
# JSON, GATT status, logs, MQTT) say "unknown".  docs/gatt-profile.md, docs/instant-readout.md.
SOC_SENT_WHEN_UNKNOWN = 100.0


def encode_battery_level(soc: float | None) -> bytes:
    """SIG Battery Level: uint8 0-100 %; the format has no "unknown": SOC_SENT_WHEN_UNKNOWN."""
    if soc is None or not math.isfinite(soc):
        soc = SOC_SENT_WHEN_UNKNOWN
    return bytes([max(0, min(100, round(soc)))])


def decode_battery_level(data: BytesLike) -> int:
    """Inverse of ``encode_battery_level``."""
    (level,) = _unpack("<B", data, "battery level")
    if level > 100:
        raise CodecError(f"battery level {level} is above 100 %")
    return int(level)


# --------------------------------------------------------------------------------------------
# Bank summary (read + notify)
# --------------------------------------------------------------------------------------------
# version, flags (bit0 bank known), model, batteries, cells, series, parallel, capacity 0.1 Ah,
# min cell mV, max cell mV, min temp 0.01 °C, max temp 0.01 °C, balancer
BANK_FORMAT = "<BBBBHBBIHHhhB"
BANK_SIZE = struct.calcsize(BANK_FORMAT)
BANK_KNOWN = 1
# The bank is a DIY pack (a ``[source]`` battery description), not a Lithium NG model: the
# model code stays 0, which every client already reads as "unknown" (a new code would be
# refused by older clients' decoders), and new clients describe the pack from its figures.
BANK_CUSTOM = 2


def custom_model(cells: int, capacity_ah: float) -> str:
    """How a client names a DIY pack it knows only by its figures (one battery's)."""
    return f"custom ({cells} cells, {capacity_ah:.0f} Ah)"


def encode_bank(bank: BankStatus | None) -> bytes:
    """The bank summary; ``None`` (no battery data yet) encodes as "bank unknown"."""
    if bank is None:
        return struct.pack(BANK_FORMAT, PROFILE_VERSION, 0, 0, 0, 0, 0, 0, 0, NA_U16, NA_U16,
                           NA_I16, NA_I16, 0)
    model = _index(MODEL_CODES, bank.model or "", 0)
    custom = BANK_CUSTOM if bank.model and not model else 0
    return struct.pack(
        BANK_FORMAT,
        PROFILE_VERSION,
        BANK_KNOWN | custom,
        model,
        max(0, min(0xFF, bank.batteries)),
        max(0, min(0xFFFF, bank.cells)),
        max(0, min(0xFF, bank.series)),
        max(0, min(0xFF, bank.parallel)),
        _fx(bank.capacity_ah, 0.1, "I"),
        _fx(bank.min_cell_voltage, 0.001, "H"),
        _fx(bank.max_cell_voltage, 0.001, "H"),
        _fx(bank.min_temperature, 0.01, "h"),
        _fx(bank.max_temperature, 0.01, "h"),
        _index(BALANCER_STATES, bank.balancer, 0),
    )


def decode_bank(data: BytesLike) -> BankStatus | None:
    """Inverse of ``encode_bank``; ``battery_list`` is empty (read batteries one by one)."""
    (version, flags, model, batteries, cells, series, parallel, capacity, min_cell, max_cell,
     min_temp, max_temp, balancer) = _unpack(BANK_FORMAT, data, "bank")
    _check_version(version, "bank")
    if not flags & BANK_KNOWN:
        return None
    model_name = _lookup(MODEL_CODES, model, "battery model")
    if flags & BANK_CUSTOM:
        model_name = custom_model(cells // max(1, batteries),
                                  (_ufx(capacity, 0.1, "I") or 0.0) / max(1, parallel))
    return BankStatus(
        model=model_name or None,
        batteries=batteries,
        cells=cells,
        series=series,
        parallel=parallel,
        capacity_ah=_ufx(capacity, 0.1, "I") or 0.0,
        min_cell_voltage=_ufx(min_cell, 0.001, "H"),
        max_cell_voltage=_ufx(max_cell, 0.001, "H"),
        min_temperature=_ufx(min_temp, 0.01, "h"),
        max_temperature=_ufx(max_temp, 0.01, "h"),
        balancer=_lookup(BALANCER_STATES, balancer, "balancer state"),
    )


# --------------------------------------------------------------------------------------------
# One battery (read after writing its index to "battery select")
# --------------------------------------------------------------------------------------------
# version, index, batteries in bank, cells n, serial, firmware, model, capacity 0.1 Ah,
# voltage 0.01 V, current mA, temperature 0.01 °C, then n cell voltages in mV
BATTERY_HEAD_FORMAT = "<BBBB16s8sBHHih"
BATTERY_HEAD_SIZE = struct.calcsize(BATTERY_HEAD_FORMAT)
MAX_CELLS = 16  # 51.2 V battery
BATTERY_MAX_SIZE = BATTERY_HEAD_SIZE + 2 * MAX_CELLS
SERIAL_SIZE = 16
FIRMWARE_SIZE = 8
MAX_BATTERIES = 0xFE


@dataclass(frozen=True, slots=True)
class BatteryRecord:
    """The answer of the battery characteristic: which battery, of how many, and its data
    (``battery`` None when ``index`` is past the end of the bank)."""

    index: int
    count: int
    battery: BatteryStatus | None


def encode_battery(index: int, batteries: Sequence[BatteryStatus]) -> bytes:
    """Battery ``index`` (0-based) of ``batteries``; a header only when out of range."""
    count = min(len(batteries), MAX_BATTERIES)
    index = max(0, min(MAX_BATTERIES, index))
    if index >= count:
        return struct.pack(BATTERY_HEAD_FORMAT, PROFILE_VERSION, index, count, 0, b"", b"", 0,
                           0, NA_U16, NA_I32, NA_I16)
    b = batteries[index]
    cells = b.cell_voltages[:MAX_CELLS]
    head = struct.pack(
        BATTERY_HEAD_FORMAT,
        PROFILE_VERSION,
        index,
        count,
        len(cells),
        _text(b.serial, SERIAL_SIZE),
        _text(b.firmware, FIRMWARE_SIZE),
        _index(MODEL_CODES, b.model, 0),
        _fx(b.capacity_ah, 0.1, "H"),
        _fx(b.voltage, 0.01, "H"),
        _fx(b.current, 0.001, "i"),
        _fx(b.temperature, 0.01, "h"),
    )
    return head + b"".join(struct.pack("<H", _fx(v, 0.001, "H")) for v in cells)


def decode_battery(data: BytesLike) -> BatteryRecord:
    """Inverse of ``encode_battery``."""
    if len(data) < BATTERY_HEAD_SIZE:
        raise CodecError(f"battery: expected at least {BATTERY_HEAD_SIZE} bytes, got "
                         f"{len(data)}", length=True)
    (version, index, count, ncells, serial, firmware, model, capacity, voltage, current,
     temperature) = struct.unpack(BATTERY_HEAD_FORMAT, data[:BATTERY_HEAD_SIZE])
    _check_version(version, "battery")
    if ncells > MAX_CELLS or len(data) != BATTERY_HEAD_SIZE + 2 * ncells:
        raise CodecError(f"battery: {ncells} cells do not match {len(data)} bytes", length=True)
    if index >= count:
        return BatteryRecord(index=index, count=count, battery=None)
    cells = struct.unpack(f"<{ncells}H", data[BATTERY_HEAD_SIZE:])
    battery = BatteryStatus(
        serial=_untext(serial),
        model=_lookup(MODEL_CODES, model, "battery model"),
        capacity_ah=_ufx(capacity, 0.1, "H") or 0.0,
        firmware=_untext(firmware),
        voltage=_ufx(voltage, 0.01, "H") or 0.0,
        current=_ufx(current, 0.001, "i") or 0.0,
        temperature=_ufx(temperature, 0.01, "h") or 0.0,
        cell_voltages=tuple(_ufx(c, 0.001, "H") or 0.0 for c in cells),
    )
    return BatteryRecord(index=index, count=count, battery=battery)


def with_batteries(bank: BankStatus, batteries: Sequence[BatteryStatus]) -> BankStatus:
    """The bank page with its batteries read one by one.  A DIY pack's batteries carry model
    code 0 (see ``BANK_CUSTOM``); every battery of a bank is the same pack, so they take the
    bank's description."""
    named = tuple(b if b.model or not bank.model else replace(b, model=bank.model)
                  for b in batteries)
    return replace(bank, battery_list=named)


def encode_battery_select(index: int) -> bytes:
    """The write that selects which battery the battery characteristic shows (0-based)."""
    if not 0 <= index <= MAX_BATTERIES:
        raise CodecError(f"battery index {index} is out of range 0-{MAX_BATTERIES}")
    return struct.pack("<B", index)


def decode_battery_select(data: BytesLike) -> int:
    """Inverse of ``encode_battery_select``."""
    (index,) = _unpack("<B", data, "battery select")
    if index > MAX_BATTERIES:
        raise CodecError(f"battery index {index} is out of range 0-{MAX_BATTERIES}")
    return int(index)


# --------------------------------------------------------------------------------------------
# History (read)
# --------------------------------------------------------------------------------------------
# version, deepest 0.1 Ah, last 0.1 Ah, cumulative 0.1 Ah, discharged Wh, charged Wh,
# synchronisations, cycles, full discharges, s since full charge, min/max bank 0.01 V,
# min/max cell mV, min/max temperature 0.01 °C
HISTORY_FORMAT = "<BiiiiiIIIIHHHHhh"
HISTORY_SIZE = struct.calcsize(HISTORY_FORMAT)


def _count(value: int) -> int:
    return max(0, min(0xFFFFFFFE, value))


def encode_history(h: History) -> bytes:
    """The history characteristic's value."""
    return struct.pack(
        HISTORY_FORMAT,
        PROFILE_VERSION,
        _fx(h.deepest_discharge_ah, 0.1, "i"),
        _fx(h.last_discharge_ah, 0.1, "i"),
        _fx(h.cumulative_ah_drawn, 0.1, "i"),
        _fx(h.discharged_energy_kwh, 0.001, "i"),
        _fx(h.charged_energy_kwh, 0.001, "i"),
        _count(h.synchronisations),
        _count(h.charge_cycles),
        _count(h.full_discharges),
        _fx(h.seconds_since_full_charge, 1, "I"),
        _fx(h.min_bank_voltage, 0.01, "H"),
        _fx(h.max_bank_voltage, 0.01, "H"),
        _fx(h.min_cell_voltage, 0.001, "H"),
        _fx(h.max_cell_voltage, 0.001, "H"),
        _fx(h.min_temperature, 0.01, "h"),
        _fx(h.max_temperature, 0.01, "h"),
    )


def decode_history(data: BytesLike) -> History:
    """Inverse of ``encode_history`` (the counting-rule memory is not sent)."""
    (version, deepest, last, cumulative, discharged, charged, syncs, cycles, full,
     since_full, min_bank, max_bank, min_cell, max_cell, min_temp,
     max_temp) = _unpack(HISTORY_FORMAT, data, "history")
    _check_version(version, "history")
    return History(
        deepest_discharge_ah=_ufx(deepest, 0.1, "i") or 0.0,
        last_discharge_ah=_ufx(last, 0.1, "i") or 0.0,
        cumulative_ah_drawn=_ufx(cumulative, 0.1, "i") or 0.0,
        discharged_energy_kwh=_ufx(discharged, 0.001, "i") or 0.0,
        charged_energy_kwh=_ufx(charged, 0.001, "i") or 0.0,
        synchronisations=syncs,
        charge_cycles=cycles,
        full_discharges=full,
        seconds_since_full_charge=_ufx(since_full, 1, "I"),
        min_bank_voltage=_ufx(min_bank, 0.01, "H"),
        max_bank_voltage=_ufx(max_bank, 0.01, "H"),
        min_cell_voltage=_ufx(min_cell, 0.001, "H"),
        max_cell_voltage=_ufx(max_cell, 0.001, "H"),
        min_temperature=_ufx(min_temp, 0.01, "h"),
        max_temperature=_ufx(max_temp, 0.01, "h"),
    )


# --------------------------------------------------------------------------------------------
# Settings: one characteristic per setting (read + write)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SettingCodec:
    """How one setting travels: a little-endian unsigned integer of ``fmt`` in ``scale``
    units; booleans are one byte 0/1.  ``zero_is_none`` maps raw 0 to None (charged voltage:
    0 = "3.50 V per cell in series, for whatever bank is connected")."""

    name: str
    fmt: str  # "B" (bool) or "H" (number)
    scale: float
    zero_is_none: bool = False

    @property
    def size(self) -> int:
        """Bytes on the wire."""
        return struct.calcsize("<" + self.fmt)

    def encode(self, value: object) -> bytes:
        """The wire bytes for a value of the setting (bool, number or None)."""
        if self.fmt == "B":
            return struct.pack("<B", 1 if value else 0)
        if value is None:
            if not self.zero_is_none:
                raise CodecError(f"{self.name} cannot be empty")
            return struct.pack("<H", 0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise CodecError(f"{self.name} must be a number, not {value!r}")
        raw = round(float(value) / self.scale)
        if not 0 <= raw <= 0xFFFF or (raw == 0 and self.zero_is_none):
            raise CodecError(f"{self.name} {value!r} cannot be sent (out of the wire range)")
        return struct.pack("<H", raw)

    def decode(self, data: BytesLike) -> bool | float | None:
        """The setting's value from the wire bytes; ``CodecError`` when malformed."""
        (raw,) = _unpack("<" + self.fmt, data, self.name)
        if self.fmt == "B":
            if raw > 1:
                raise CodecError(f"{self.name} must be 0 (off) or 1 (on), not {raw}")
            return bool(raw)
        if raw == 0 and self.zero_is_none:
            return None
        return round(raw * self.scale, 6)


SETTING_CODECS: dict[str, SettingCodec] = {
    c.name: c
    for c in (
        SettingCodec("charged_voltage", "H", 0.01, zero_is_none=True),
        SettingCodec("tail_current", "H", 0.01),
        SettingCodec("charge_detection_time", "H", 0.1),
        SettingCodec("low_soc_warning", "H", 0.1),
        SettingCodec("discharge_floor", "H", 0.1),
        SettingCodec("bluetooth", "B", 1),
        SettingCodec("instant_readout", "B", 1),
        SettingCodec("mode", "B", 1),
    )
}


# --------------------------------------------------------------------------------------------
# Control point (write) and its results (indicate)
# --------------------------------------------------------------------------------------------
OP_SET_SOC = 0x01  # argument: uint16 SOC in 0.01 %
OP_SYNCHRONISE = 0x02
OP_MODE = 0x03  # argument: uint8 0 = off, 1 = on
OP_RESET_HISTORY = 0x04
OP_FACTORY_RESET = 0x05
OP_BLUETOOTH_OFF = 0x06
OP_CHANGE_PIN = 0x07  # argument: 6 bytes, the new PIN's ASCII digits masked with the session
OP_READ_KEY = 0x08  # result data: the 16-byte readout key masked with the session
OP_CONFIRM_BANK = 0x09  # the batteries reporting now are the bank (a battery was removed)
OP_SETTING_REJECTED = 0x80  # result only: why the last settings write was refused

OPCODE_NAMES: dict[int, str] = {
    OP_SET_SOC: "set_soc",
    OP_SYNCHRONISE: "synchronise",
    OP_MODE: "mode",
    OP_RESET_HISTORY: "reset_history",
    OP_FACTORY_RESET: "factory_reset",
    OP_BLUETOOTH_OFF: "bluetooth_off",
    OP_CHANGE_PIN: "change_pin",
    OP_READ_KEY: "read_key",
    OP_CONFIRM_BANK: "confirm_bank",
    OP_SETTING_REJECTED: "setting_rejected",
}
_ARGUMENT_SIZE = {OP_SET_SOC: 2, OP_SYNCHRONISE: 0, OP_MODE: 1, OP_RESET_HISTORY: 0,
                  OP_FACTORY_RESET: 0, OP_BLUETOOTH_OFF: 0, OP_CHANGE_PIN: 6, OP_READ_KEY: 0,
                  OP_CONFIRM_BANK: 0}
PIN_SIZE = 6
READOUT_KEY_SIZE = 16

RESULT_OK = 0x00
RESULT_REJECTED = 0x01  # the BMS refused (value out of range, ...): the message says why
RESULT_FAILED = 0x02  # the command could not be carried out (internal error)
RESULT_NAMES = {RESULT_OK: "ok", RESULT_REJECTED: "rejected", RESULT_FAILED: "failed"}
RESULT_HEAD_FORMAT = "<BBIB"  # version, opcode, sequence of the write it answers, result
RESULT_HEAD_SIZE = struct.calcsize(RESULT_HEAD_FORMAT)
RESULT_MAX_DATA = 180  # keeps an indication within a 185-byte ATT MTU (iOS default)


@dataclass(frozen=True, slots=True)
class Command:
    """A decoded control-point request (``argument`` raw bytes, opcode-specific)."""

    opcode: int
    argument: bytes

    @property
    def name(self) -> str:
        """The command's name (``set_soc``, ...)."""
        return OPCODE_NAMES.get(self.opcode, f"0x{self.opcode:02x}")


def encode_command(opcode: int, argument: bytes = b"") -> bytes:
    """The control-point request body (before the session envelope)."""
    return bytes([opcode]) + argument


def encode_set_soc(soc: float) -> bytes:
    """Body of "set SOC" (0-100 %)."""
    if not (math.isfinite(soc) and 0 <= soc <= 100):
        raise CodecError(f"SOC {soc!r} is out of range 0-100 %")
    return encode_command(OP_SET_SOC, struct.pack("<H", round(soc * 100)))


def decode_command(data: BytesLike) -> Command:
    """A control-point body: opcode and argument of the opcode's length."""
    if not data:
        raise CodecError("control point: empty command", length=True)
    opcode, argument = data[0], bytes(data[1:])
    size = _ARGUMENT_SIZE.get(opcode)
    if size is None:
        raise CodecError(f"control point: unknown command 0x{opcode:02x}")
    if len(argument) != size:
        raise CodecError(f"{OPCODE_NAMES[opcode]}: expected {size} argument bytes, got "
                         f"{len(argument)}", length=True)
    return Command(opcode=opcode, argument=argument)


def decode_set_soc_argument(argument: bytes) -> float:
    """The SOC of a set-SOC command, 0-100 %."""
    (raw,) = _unpack("<H", argument, "set_soc")
    if raw > 10000:
        raise CodecError(f"SOC {raw / 100:g} % is out of range 0-100 %")
    return raw / 100


@dataclass(frozen=True, slots=True)
class CommandResult:
    """An indication on the control point: the answer to the write with sequence ``seq``."""

    opcode: int
    seq: int
    result: int
    data: bytes = b""

    @property
    def ok(self) -> bool:
        """True when the command was carried out."""
        return self.result == RESULT_OK

    @property
    def message(self) -> str:
        """The data as text (every result but read_key carries a UTF-8 message)."""
        return self.data.decode("utf-8", errors="replace")


def encode_result(result: CommandResult) -> bytes:
    """The control-point indication."""
    data = result.data[:RESULT_MAX_DATA]
    return struct.pack(RESULT_HEAD_FORMAT, PROFILE_VERSION, result.opcode,
                       result.seq & 0xFFFFFFFF, result.result) + data


_ELLIPSIS = "\u2026".encode()


def message_bytes(message: str) -> bytes:
    """A message that fits an indication.

    A longer one is cut at a word boundary and ends with an ellipsis, so the reader sees that
    something is missing rather than a word chopped in half.
    """
    raw = message.encode("utf-8")
    if len(raw) <= RESULT_MAX_DATA:
        return raw
    cut = _text(message, RESULT_MAX_DATA - len(_ELLIPSIS)).rstrip(b"\0")
    space = cut.rfind(b" ")
    if space > RESULT_MAX_DATA // 2:
        cut = cut[:space]
    return cut.rstrip(b" ,;:") + _ELLIPSIS


def decode_result(data: BytesLike) -> CommandResult:
    """Inverse of ``encode_result``."""
    if len(data) < RESULT_HEAD_SIZE:
        raise CodecError(f"result: expected at least {RESULT_HEAD_SIZE} bytes, got "
                         f"{len(data)}", length=True)
    version, opcode, seq, result = struct.unpack(RESULT_HEAD_FORMAT, data[:RESULT_HEAD_SIZE])
    _check_version(version, "result")
    return CommandResult(opcode=opcode, seq=seq, result=result, data=bytes(data[RESULT_HEAD_SIZE:]))


# --------------------------------------------------------------------------------------------
# Victron VE-Reg service values (research victron-ble.md §4.1)
# --------------------------------------------------------------------------------------------
VEREG_KEEP_ALIVE_FOREVER = 0xFFFF


def _le(fmt: str, value: int) -> bytes:
    return struct.pack("<" + fmt, value)


def vereg_soc(soc: float | None) -> bytes:
    """VE_REG_SOC 0x0FFF: uint16, 0.01 %."""
    return _le("H", _fx(soc, 0.01, "H"))


def vereg_ttg(ttg_min: float | None) -> bytes:
    """VE_REG_TTG 0x0FFE: uint16, minutes."""
    return _le("H", _fx(ttg_min, 1, "H"))


def vereg_voltage(voltage: float | None) -> bytes:
    """DC channel 1 voltage 0xED8D: int16, 0.01 V."""
    return _le("h", _fx(voltage, 0.01, "h"))


def vereg_current(current: float | None) -> bytes:
    """DC channel 1 current 0xED8C: int32, mA (positive = charging)."""
    return _le("i", _fx(current, 0.001, "i"))


def vereg_power(power: float | None) -> bytes:
    """DC channel 1 power 0xED8E: int16, W."""
    return _le("h", _fx(power, 1, "h"))


def vereg_consumed_ah(consumed_ah: float | None) -> bytes:
    """VE_REG_CAH 0xEEFF: int32, 0.1 Ah, negative (Victron shows consumed charge as < 0)."""
    return _le("i", _fx(None if consumed_ah is None else -consumed_ah, 0.1, "i"))


def vereg_temperature(celsius: float | None) -> bytes:
    """VE_REG_BAT_TEMPERATURE 0xEDEC: uint16, 0.01 K."""
    return _le("H", _fx(None if celsius is None else celsius + 273.15, 0.01, "H"))


def decode_vereg(fmt: str, scale: float, data: BytesLike) -> float | None:
    """A VE-Reg value as a number in its unit (None = not available)."""
    (raw,) = _unpack("<" + fmt, data, "VE-Reg value")
    return _ufx(raw, scale, fmt)


def decode_keep_alive(data: BytesLike) -> int | None:
    """The keep-alive write: uint16 ms, 0xFFFF = forever (returned as None)."""
    (raw,) = _unpack("<H", data, "keep-alive")
    return None if raw == VEREG_KEEP_ALIVE_FOREVER else int(raw)


# --------------------------------------------------------------------------------------------
# Device information strings
# --------------------------------------------------------------------------------------------
SOURCE_NOTES_MAX = 180  # bytes: one read within a 185-byte ATT MTU (iOS default)


def encode_source_notes(notes: tuple[str, ...]) -> bytes:
    """The battery source's own alarms and requests, one per line; as many whole lines as fit
    ``SOURCE_NOTES_MAX`` bytes, then a last line saying how many were left out."""
    out: list[str] = []
    size = 0
    for i, note in enumerate(notes):
        line = note.replace("\n", " ")
        rest = len(notes) - i - 1
        more = f"\n(+{rest} more)" if rest else ""
        if size + len(line.encode()) + 1 + len(more.encode()) > SOURCE_NOTES_MAX:
            out.append(f"(+{len(notes) - i} more)")
            break
        out.append(line)
        size += len(line.encode()) + 1
    raw = "\n".join(out).encode("utf-8")[:SOURCE_NOTES_MAX]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")  # no half character at the end


def decode_source_notes(data: BytesLike) -> tuple[str, ...]:
    """Inverse of ``encode_source_notes``: () when the source reports nothing."""
    text = bytes(data).decode("utf-8", errors="replace")
    return tuple(line for line in text.split("\n") if line)


def encode_text(text: str) -> bytes:
    """A UTF-8 string characteristic (Device Information)."""
    return text.encode("utf-8")


def decode_text(data: BytesLike) -> str:
    """Inverse of ``encode_text``."""
    return bytes(data).decode("utf-8", errors="replace")
