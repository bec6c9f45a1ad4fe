"""The smallbms GATT profile: every service and characteristic in one declarative table.

The server builds its GATT application from ``SERVICES`` and the client looks characteristics
up by ``key`` here, so a UUID or a permission is written once.  docs/gatt-profile.md explains
each value's byte layout (gatt/codec.py) and is checked against this table by the tests.

Access levels:
- ``OPEN``: anyone in range (Device Information, Battery Level; SPEC §6);
- ``PAIRED``: needs an encrypted link but no PIN: the auth characteristic (the door to the PIN
  check has to be reachable) and Victron's VE-Reg service, whose existing readers know nothing
  of our PIN; its figures are those the instant readout broadcasts anyway (docs/security.md);
- ``PIN``: needs an encrypted link and an open PIN session (gatt/security.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, Flag, auto

from gatt import codec

PROFILE_VERSION = codec.PROFILE_VERSION


def sig_uuid(short: int) -> str:
    """A Bluetooth SIG 16-bit UUID in its 128-bit form (what BlueZ and bleak use)."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


def smallbms_uuid(short: int) -> str:
    """A smallbms 128-bit UUID (our own base; the last 6 bytes spell "smallb")."""
    return f"b8d0{short:04x}-3f1e-4c8a-9e5b-736d616c6c62"


def vereg_uuid(register: int) -> str:
    """Victron VE-Reg GATT UUID for a 16-bit VE register (research victron-ble.md §4.1)."""
    return f"6597{register:04x}-4bda-4c1e-af4b-551c4cf74769"


class Prop(Flag):
    """GATT characteristic properties we use."""

    READ = auto()
    WRITE = auto()
    WRITE_WITHOUT_RESPONSE = auto()
    NOTIFY = auto()
    INDICATE = auto()


class Access(Enum):
    """Who may use a characteristic (see the module docstring)."""

    OPEN = "open"
    PAIRED = "paired"
    PIN = "pin"


# Characteristic Presentation Format (0x2904) format codes and units (Bluetooth Assigned Numbers)
FMT_BOOLEAN = 0x01
FMT_UINT8 = 0x04
FMT_UINT16 = 0x06
FMT_UINT32 = 0x08
FMT_SINT16 = 0x0E
FMT_SINT32 = 0x10
FMT_UTF8 = 0x19
FMT_STRUCT = 0x1B
UNIT_NONE = 0x2700
UNIT_AMPERE = 0x2704
UNIT_KELVIN = 0x2705
UNIT_WATT = 0x2726
UNIT_VOLT = 0x2728
UNIT_MINUTE = 0x2760
UNIT_PERCENT = 0x27AD
UNIT_AMPERE_HOUR = 0x27B0
NAMESPACE_SIG = 0x01

USER_DESCRIPTION_UUID = sig_uuid(0x2901)
PRESENTATION_FORMAT_UUID = sig_uuid(0x2904)


@dataclass(frozen=True, slots=True)
class Presentation:
    """A 0x2904 descriptor: value = raw * 10^exponent in ``unit``."""

    fmt: int
    exponent: int = 0
    unit: int = UNIT_NONE

    def encode(self) -> bytes:
        """The descriptor's 7 bytes: format, exponent, unit, namespace, description."""
        return struct.pack("<BbHBH", self.fmt, self.exponent, self.unit, NAMESPACE_SIG, 0)


@dataclass(frozen=True, slots=True)
class Characteristic:
    """One characteristic: ``key`` is the stable name used in code, docs and the client."""

    key: str
    uuid: str
    description: str  # the User Description (0x2901) a generic app shows
    props: Prop
    access: Access
    presentation: Presentation
    write_size: int | None = None  # expected body length of a write (before any envelope)

    @property
    def encrypted(self) -> bool:
        """Carries BlueZ's encrypt-read/encrypt-write flags (pairing needed)."""
        return self.access is not Access.OPEN

    @property
    def readable(self) -> bool:
        """Has the read property."""
        return Prop.READ in self.props

    @property
    def writable(self) -> bool:
        """Has a write property."""
        return bool(self.props & (Prop.WRITE | Prop.WRITE_WITHOUT_RESPONSE))

    @property
    def enveloped(self) -> bool:
        """Writes carry the session envelope of gatt/security.py."""
        return self.writable and self.access is Access.PIN


@dataclass(frozen=True, slots=True)
class Service:
    """A GATT service and its characteristics, in registration order."""

    key: str
    uuid: str
    name: str
    characteristics: tuple[Characteristic, ...]


_OPAQUE = Presentation(FMT_STRUCT)
_RN = Prop.READ | Prop.NOTIFY
_RW = Prop.READ | Prop.WRITE

DEVICE_INFORMATION = Service(
    "device_information", sig_uuid(0x180A), "Device Information",
    (
        Characteristic("manufacturer", sig_uuid(0x2A29), "Manufacturer name", Prop.READ,
                       Access.OPEN, Presentation(FMT_UTF8)),
        Characteristic("model", sig_uuid(0x2A24), "Model number", Prop.READ, Access.OPEN,
                       Presentation(FMT_UTF8)),
        Characteristic("serial", sig_uuid(0x2A25), "Serial number", Prop.READ, Access.OPEN,
                       Presentation(FMT_UTF8)),
        Characteristic("firmware", sig_uuid(0x2A26), "Firmware revision", Prop.READ,
                       Access.OPEN, Presentation(FMT_UTF8)),
    ),
)

BATTERY_SERVICE = Service(
    "battery_service", sig_uuid(0x180F), "Battery Service",
    (
        Characteristic("battery_level", sig_uuid(0x2A19), "Battery level (SOC)", _RN,
                       Access.OPEN, Presentation(FMT_UINT8, 0, UNIT_PERCENT)),
    ),
)


def _setting(short: int, name: str, description: str, presentation: Presentation) -> Characteristic:
    return Characteristic(f"setting.{name}", smallbms_uuid(short), description, _RW, Access.PIN,
                          presentation, write_size=codec.SETTING_CODECS[name].size)


SMALLBMS = Service(
    "smallbms", smallbms_uuid(0x0000), "smallBMS",
    (
        Characteristic("auth", smallbms_uuid(0x0001), "PIN challenge / response", _RW,
                       Access.PAIRED, _OPAQUE),
        Characteristic("status", smallbms_uuid(0x0002), "Status", _RN, Access.PIN, _OPAQUE),
        Characteristic("bank", smallbms_uuid(0x0003), "Bank", _RN, Access.PIN, _OPAQUE),
        Characteristic("battery_select", smallbms_uuid(0x0004), "Battery select (index)",
                       Prop.WRITE, Access.PIN, Presentation(FMT_UINT8), write_size=1),
        Characteristic("battery", smallbms_uuid(0x0005), "Battery details", Prop.READ,
                       Access.PIN, _OPAQUE),
        Characteristic("history", smallbms_uuid(0x0006), "History", Prop.READ, Access.PIN,
                       _OPAQUE),
        Characteristic("control_point", smallbms_uuid(0x0007), "Control point",
                       Prop.WRITE | Prop.INDICATE, Access.PIN, _OPAQUE),
        Characteristic("source_notes", smallbms_uuid(0x0008), "Battery source's own alarms",
                       Prop.READ, Access.PIN, Presentation(FMT_UTF8)),
        _setting(0x0010, "charged_voltage", "Charged voltage (0 = auto)",
                 Presentation(FMT_UINT16, -2, UNIT_VOLT)),
        _setting(0x0011, "tail_current", "Tail current",
                 Presentation(FMT_UINT16, -2, UNIT_PERCENT)),
        _setting(0x0012, "charge_detection_time", "Charge detection time",
                 Presentation(FMT_UINT16, -1, UNIT_MINUTE)),
        _setting(0x0013, "low_soc_warning", "Low SOC warning level",
                 Presentation(FMT_UINT16, -1, UNIT_PERCENT)),
        _setting(0x0014, "discharge_floor", "Discharge floor",
                 Presentation(FMT_UINT16, -1, UNIT_PERCENT)),
        _setting(0x0015, "bluetooth", "Bluetooth enabled", Presentation(FMT_BOOLEAN)),
        _setting(0x0016, "instant_readout", "Instant readout enabled",
                 Presentation(FMT_BOOLEAN)),
        _setting(0x0017, "mode", "Mode (on/off)", Presentation(FMT_BOOLEAN)),
    ),
)

# VE-Reg registers we publish: key, register, description, presentation, codec format/scale
VEREG_KEEP_ALIVE = 0xFFFF
VEREG_REGISTERS: tuple[tuple[str, int, str, Presentation, str, float], ...] = (
    ("vereg.soc", 0x0FFF, "State of charge", Presentation(FMT_UINT16, -2, UNIT_PERCENT), "H",
     0.01),
    ("vereg.ttg", 0x0FFE, "Time to go", Presentation(FMT_UINT16, 0, UNIT_MINUTE), "H", 1),
    ("vereg.voltage", 0xED8D, "Battery voltage", Presentation(FMT_SINT16, -2, UNIT_VOLT), "h",
     0.01),
    ("vereg.current", 0xED8C, "Battery current", Presentation(FMT_SINT32, -3, UNIT_AMPERE), "i",
     0.001),
    ("vereg.power", 0xED8E, "Power", Presentation(FMT_SINT16, 0, UNIT_WATT), "h", 1),
    ("vereg.consumed_ah", 0xEEFF, "Consumed Ah",
     Presentation(FMT_SINT32, -1, UNIT_AMPERE_HOUR), "i", 0.1),
    ("vereg.temperature", 0xEDEC, "Battery temperature",
     Presentation(FMT_UINT16, -2, UNIT_KELVIN), "H", 0.01),
)

VEREG = Service(
    "vereg", vereg_uuid(0x0000), "Victron VE-Reg",
    (
        *(
            Characteristic(key, vereg_uuid(reg), description, _RN, Access.PAIRED, presentation)
            for key, reg, description, presentation, _fmt, _scale in VEREG_REGISTERS
        ),
        Characteristic("vereg.keep_alive", vereg_uuid(VEREG_KEEP_ALIVE), "Keep-alive (ms)",
                       Prop.WRITE | Prop.WRITE_WITHOUT_RESPONSE, Access.PAIRED,
                       Presentation(FMT_UINT16, -3, UNIT_NONE), write_size=2),
    ),
)

# Registration order (the order a generic app lists them); gatt/server.py makes every one
# primary, which bless alone would not.
SERVICES: tuple[Service, ...] = (SMALLBMS, DEVICE_INFORMATION, BATTERY_SERVICE, VEREG)

CHARACTERISTICS: dict[str, Characteristic] = {
    c.key: c for s in SERVICES for c in s.characteristics
}
BY_UUID: dict[str, Characteristic] = {c.uuid: c for c in CHARACTERISTICS.values()}
SERVICE_OF: dict[str, Service] = {c.key: s for s in SERVICES for c in s.characteristics}
SETTING_KEYS: dict[str, str] = {
    name: f"setting.{name}" for name in codec.SETTING_CODECS
}


def uuid_of(key: str) -> str:
    """The UUID of a characteristic by its key (``"status"``, ``"setting.mode"``)."""
    return CHARACTERISTICS[key].uuid


# ATT errors the server answers with (the client maps them back to messages)
ATT_INSUFFICIENT_AUTHORIZATION = 0x08  # no open PIN session, bad or replayed write tag
ATT_INVALID_VALUE_LENGTH = 0x0D  # wrong number of bytes for the characteristic
ATT_VALUE_REJECTED = 0x80  # the BMS refused the value (out of range, inconsistent)
ATT_WRONG_PIN = 0x81  # the challenge answer did not prove the PIN
ATT_LOCKED_OUT = 0x82  # too many wrong PINs: wait (docs/security.md)
ATT_UNKNOWN_COMMAND = 0x83  # control point: opcode not known
ATT_NOT_SAVED = 0x84  # in force, but the disk refused it: lost at the next restart
ATT_PIN_STATE_LOST = 0x85  # the PIN state is lost: every PIN refused until `smallbms reset-pin`
ATT_ERROR_MESSAGES: dict[int, str] = {
    ATT_INSUFFICIENT_AUTHORIZATION: "not authorised: authenticate with the PIN first",
    ATT_INVALID_VALUE_LENGTH: "wrong number of bytes for this characteristic",
    ATT_VALUE_REJECTED: "value rejected by the BMS",
    ATT_WRONG_PIN: "wrong PIN",
    ATT_LOCKED_OUT: "too many wrong PINs; wait and try again",
    ATT_UNKNOWN_COMMAND: "unknown command",
    ATT_NOT_SAVED: "in force but NOT saved (disk full or read-only?): lost at the next restart",
    ATT_PIN_STATE_LOST: "the BMS lost its PIN state and refuses every PIN; its operator must "
                        "run `smallbms reset-pin` on it",
}
