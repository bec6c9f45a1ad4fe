"""A BMS on CAN bus (``type = "can"``): the inverter battery protocol, read with python-can.

Most DIY lithium BMSes with a CAN port, and the batteries that talk to inverters, send the
frames that Victron's VE.Can "CAN-bus BMS" and Pylontech-compatible inverters read, once a
second, 11-bit identifiers, 500 kbit/s, little-endian fields.  Every layout smallbms decodes is
in ``FIELDS`` and ``FLAGS`` below, one table, with the sources in docs/sources.md:

* 0x351 charge voltage limit, charge / discharge current limits, discharge voltage limit
* 0x355 SOC, SOH  ·  0x356 battery voltage, current, temperature
* 0x359 Pylontech protection and warning bits  ·  0x35A Victron alarm and warning pairs
* 0x35C charge / discharge enable and force-charge requests  ·  0x35E manufacturer name
* 0x372 modules online / blocking charge / blocking discharge / offline
* 0x373 lowest and highest cell voltage (mV) and cell temperature (K)

What the protocol **lacks**: per-cell voltages (only the extremes of 0x373, so the bank page
lists no cells and the balancer has only the spread) and any battery serial (the pack is named
by the configuration).  A BMS that does not send 0x373 gives no cell voltages at all: smallbms
then never has fresh cell data and the comms rules keep the outputs floating (``source-check``
says which frames are missing).  The BMS's own alarms and requests become ``Readings.notes``:
shown, never obeyed.

The bus is read in a thread of its own (python-can's ``recv`` blocks); decoding happens there
too, so a flood of frames costs that thread's time, not the control loop's.  Bad frames (short,
implausible values, extended or remote or error frames, unknown identifiers) are dropped and
counted; the first of each kind is logged.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bms_daemon.core.types import BatteryReading
from bms_daemon.sources.base import Feed, Quantity, Sample, close_soon, in_thread
from bms_daemon.sources.config import Getter
from bms_daemon.sources.spec import BatteryDescription, FeedConfig

KEYS = frozenset({"interface", "channel", "bitrate", "options"})
DEFAULT_INTERFACE = "socketcan"
DEFAULT_CHANNEL = "can0"
DEFAULT_BITRATE = 500_000
RECV_TIMEOUT_S = 0.5  # how often the reader thread checks whether it should stop
KELVIN = -273.15


@dataclass(frozen=True, slots=True)
class Field:
    """One number in one frame: raw little-endian integer x ``scale`` + ``offset``."""

    frame: int
    name: str
    at: int  # byte offset
    kind: str  # struct code: "H" uint16, "h" int16, "B" uint8
    scale: float
    unit: str
    plausible: tuple[float, float]  # outside: the value cannot be trusted
    offset: float = 0.0
    required: bool = True  # a frame too short for a required field is dropped


FIELDS: tuple[Field, ...] = (
    Field(0x351, "charge_voltage_limit", 0, "H", 0.1, "V", (0.0, 100.0)),
    Field(0x351, "charge_current_limit", 2, "h", 0.1, "A", (-3000.0, 3000.0)),
    Field(0x351, "discharge_current_limit", 4, "h", 0.1, "A", (-3000.0, 3000.0)),
    Field(0x351, "discharge_voltage_limit", 6, "H", 0.1, "V", (0.0, 100.0), required=False),
    Field(0x355, "soc", 0, "H", 1.0, "%", (0.0, 100.0)),
    Field(0x355, "soh", 2, "H", 1.0, "%", (0.0, 100.0), required=False),
    Field(0x356, "voltage", 0, "h", 0.01, "V", (0.0, 100.0)),
    Field(0x356, "current", 2, "h", 0.1, "A", (-3000.0, 3000.0)),
    Field(0x356, "temperature", 4, "h", 0.1, "°C", (-50.0, 120.0)),
    Field(0x372, "modules_online", 0, "H", 1.0, "", (0.0, 1000.0)),
    Field(0x372, "modules_blocking_charge", 2, "H", 1.0, "", (0.0, 1000.0), required=False),
    Field(0x372, "modules_blocking_discharge", 4, "H", 1.0, "", (0.0, 1000.0), required=False),
    Field(0x372, "modules_offline", 6, "H", 1.0, "", (0.0, 1000.0), required=False),
    Field(0x373, "min_cell_voltage", 0, "H", 0.001, "V", (0.5, 5.0)),
    Field(0x373, "max_cell_voltage", 2, "H", 0.001, "V", (0.5, 5.0)),
    Field(0x373, "min_cell_temperature", 4, "H", 1.0, "°C", (-50.0, 120.0), KELVIN, False),
    Field(0x373, "max_cell_temperature", 6, "H", 1.0, "°C", (-50.0, 120.0), KELVIN, False),
)
# Bit flags: frame -> ((byte, bit, width, meaning), ...).  Width 1 = Pylontech bit (set =
# active); width 2 = Victron pair (0b10 = active, 0b01 = normal, 0b00/0b11 = not supported).
FLAGS: dict[int, tuple[tuple[int, int, int, str], ...]] = {
    0x359: (
        (0, 1, 1, "protection: cell or module over-voltage"),
        (0, 2, 1, "protection: cell or module under-voltage"),
        (0, 3, 1, "protection: charge over-temperature"),
        (0, 4, 1, "protection: under-temperature"),
        (0, 7, 1, "protection: discharge over-current"),
        (1, 0, 1, "protection: charge over-current"),
        (1, 3, 1, "protection: system error"),
        (2, 1, 1, "warning: cell or module high voltage"),
        (2, 2, 1, "warning: cell or module low voltage"),
        (2, 3, 1, "warning: charge high temperature"),
        (2, 4, 1, "warning: low temperature"),
        (2, 7, 1, "warning: discharge high current"),
        (3, 0, 1, "warning: charge high current"),
        (3, 3, 1, "warning: internal communication failure"),
    ),
    0x35A: tuple(
        (byte + base, bit, 2, f"{level}: {what}")
        for base, level in ((0, "alarm"), (4, "warning"))
        for byte, bit, what in (
            (0, 0, "general"), (0, 2, "battery high voltage"), (0, 4, "battery low voltage"),
            (0, 6, "high temperature"), (1, 0, "low temperature"),
            (1, 2, "high charge temperature"), (1, 4, "low charge temperature"),
            (1, 6, "high discharge current"), (2, 0, "high charge current"),
            (2, 2, "contactor"), (2, 4, "short circuit"), (2, 6, "BMS internal"),
            (3, 0, "cell imbalance"),
        )
    ),
    # 0x35C requests: only the ones worth showing are named (enable bits set = normal).
    0x35C: ((0, 5, 1, "request: force charge I"), (0, 4, 1, "request: force charge II"),
            (0, 3, 1, "request: full charge")),
}
REQUEST_ENABLES = ((7, "charge"), (6, "discharge"))  # 0x35C byte 0 bits: cleared = forbidden
NAME_FRAME = 0x35E
NEEDED = (0x356, 0x373)  # a sample needs both (voltage/current, cells)


@dataclass(frozen=True, slots=True)
class _Layout:
    fields: tuple[Field, ...]
    required: struct.Struct  # the required fields (and padding before them)
    full: struct.Struct  # every field


def _layouts() -> dict[int, _Layout]:
    """``FIELDS`` compiled to one pair of struct formats per frame (decoding is one unpack)."""
    frames: dict[int, list[Field]] = {}
    for field in FIELDS:
        frames.setdefault(field.frame, []).append(field)
    layouts = {}
    for frame, fields in frames.items():
        fields.sort(key=lambda f: f.at)
        required = [f for f in fields if f.required]
        layouts[frame] = _Layout(tuple(fields), _struct(required), _struct(fields))
    return layouts


def _struct(fields: list[Field]) -> struct.Struct:
    fmt, end = "<", 0
    for field in fields:
        fmt += "x" * (field.at - end) + field.kind
        end = field.at + struct.calcsize("<" + field.kind)
    return struct.Struct(fmt)


LAYOUTS = _layouts()
KNOWN_FRAMES = frozenset(LAYOUTS) | frozenset(FLAGS) | {NAME_FRAME}


class CanDecoder:
    """Frames in, the pack's latest figures out.  Pure: no I/O, time passed in."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.received: dict[int, float] = {}  # frame id -> when last decoded
        self.notes: dict[int, tuple[str, ...]] = {}
        self.name = ""

    def decode(self, frame: int, data: bytes, now: float) -> str | None:
        """Take one frame; returns why it was dropped, or None when it was used."""
        layout = LAYOUTS.get(frame)
        if layout is not None:
            problem = self._numbers(layout, data)
        elif frame in FLAGS:
            problem = self._flags(frame, data)
        elif frame == NAME_FRAME:
            self.name = data.split(b"\0", 1)[0].decode("ascii", "replace").strip()
            problem = None
        else:
            return "unknown frame id"
        if problem is None:
            self.received[frame] = now
        return problem

    def _numbers(self, layout: _Layout, data: bytes) -> str | None:
        full = layout.full
        if len(data) >= full.size:
            raw, fields = full.unpack_from(data), layout.fields
        elif len(data) >= layout.required.size:
            raw = layout.required.unpack_from(data)
            fields = tuple(f for f in layout.fields if f.required)
        else:
            return "short frame"
        decoded: dict[str, float] = {}
        for field, value in zip(fields, raw, strict=True):
            number = value * field.scale + field.offset
            lo, hi = field.plausible
            if lo <= number <= hi:
                decoded[field.name] = number
            elif field.required:
                return "implausible value"
        if decoded.get("min_cell_voltage", 0.0) > decoded.get("max_cell_voltage", math.inf):
            return "implausible value"
        values = self.values
        for field in layout.fields:  # an optional field absent from this frame is forgotten
            values.pop(field.name, None)
        values.update(decoded)
        return None

    def _flags(self, frame: int, data: bytes) -> str | None:
        flags = FLAGS[frame]
        needed = max(byte for byte, _, _, _ in flags) + 1 if frame != 0x35C else 1
        if len(data) < needed:
            return "short frame"
        active = []
        for byte, bit, width, meaning in flags:
            if byte >= len(data):
                continue
            value = (data[byte] >> bit) & ((1 << width) - 1)
            if (width == 1 and value) or (width == 2 and value == 0b10):
                active.append(meaning)
        if frame == 0x35C:
            active.extend(f"request: {what} not allowed" for bit, what in REQUEST_ENABLES
                          if not data[0] >> bit & 1)
        self.notes[frame] = tuple(active)
        return None

    def sample(self, battery: BatteryDescription) -> Sample | None:
        """The pack as last decoded, once 0x356 and 0x373 both arrived; ``at`` = the older."""
        received = self.received
        if not all(frame in received for frame in NEEDED):
            return None
        v = self.values
        if "voltage" not in v or "min_cell_voltage" not in v:
            return None
        pack_t = v.get("temperature")
        max_t = v.get("max_cell_temperature", pack_t)
        min_t = v.get("min_cell_temperature", pack_t)
        if max_t is None or min_t is None:
            return None  # no temperature at all: the cold and hot rules could not work
        if pack_t is not None:
            max_t, min_t = max(max_t, pack_t), min(min_t, pack_t)
        reading = BatteryReading(
            serial=battery.serial,
            model=battery.model.name,
            firmware=self.name,
            voltage=v["voltage"],
            current=v["current"],
            temperature=max_t,
            cell_voltages=(),
            min_temperature=min_t,
            min_cell_voltage=v["min_cell_voltage"],
            max_cell_voltage=v["max_cell_voltage"],
            description=battery.model,
        )
        return Sample(
            at=min(received[frame] for frame in NEEDED),
            batteries=(reading,),
            voltage=v["voltage"],
            current=v["current"],
            notes=self._notes(),
            extra=tuple((name, round(v[name], 3)) for name in _EXTRA if name in v),
        )

    def _notes(self) -> tuple[str, ...]:
        notes: list[str] = []
        for frame in sorted(self.notes):
            notes.extend(self.notes[frame])
        offline = self.values.get("modules_offline")
        if offline:
            notes.append(f"{offline:g} module(s) offline")
        return tuple(notes)


_EXTRA = ("soc", "soh", "charge_voltage_limit", "charge_current_limit",
          "discharge_current_limit", "discharge_voltage_limit", "modules_online",
          "modules_offline")


class CanFeed(Feed):
    """A CAN BMS on a python-can bus (socketcan, slcan, virtual, ...)."""

    kind = "can"
    provides = frozenset(Quantity)

    def __init__(
        self,
        name: str,
        battery: BatteryDescription,
        *,
        interface: str = DEFAULT_INTERFACE,
        channel: str = DEFAULT_CHANNEL,
        bitrate: int | None = DEFAULT_BITRATE,
        options: Mapping[str, Any] | None = None,
        max_age: float = 3.0,
    ) -> None:
        super().__init__(name, max_age=max_age)
        self.battery = battery
        self.interface = interface
        self.channel = channel
        self.bitrate = bitrate
        self.options = dict(options or {})
        self.decoder = CanDecoder()
        self._lock = threading.Lock()  # decoder state: the reader thread vs. source-check

    def describe_device(self) -> str:
        return f"{self.interface} {self.channel} at {self.bitrate or 'its'} bit/s"

    def take(self, frame: int, data: bytes, now: float, *, extended: bool = False,
             remote: bool = False, error: bool = False) -> None:
        """One received frame (the reader thread calls this; tests may too)."""
        if error or remote:
            self.drop("error or remote frame", f"0x{frame:X}")
            return
        if extended:
            self.drop("extended identifier", f"0x{frame:X}")
            return
        with self._lock:
            problem = self.decoder.decode(frame, bytes(data), now)
            if problem is not None:
                self.drop(problem, f"0x{frame:X} {bytes(data).hex(' ')}")
                return
            # a new sample with each frame a sample needs; the others (limits, flags, name)
            # join the next one, at most a BMS period later
            sample = self.decoder.sample(self.battery) if frame in NEEDED else None
        if sample is not None:
            self.publish(sample)
        else:
            self.stats.frames += 1

    def seen_frames(self) -> dict[int, float]:
        """Frame id -> when last decoded (source-check shows what the BMS sends)."""
        with self._lock:
            return dict(self.decoder.received)

    async def session(self) -> None:
        stop = threading.Event()
        bus = await _open_bus(self)
        self.connected()
        try:
            await in_thread(lambda: self._receive(bus, stop), f"can-{self.channel}")
        finally:
            stop.set()
            close_soon(bus.shutdown, f"can-close-{self.channel}")

    def _receive(self, bus: Any, stop: threading.Event) -> None:
        clock = self.clock
        while not stop.is_set():
            message = bus.recv(RECV_TIMEOUT_S)
            if message is None:
                continue
            self.take(message.arbitration_id, message.data, clock(),
                      extended=message.is_extended_id, remote=message.is_remote_frame,
                      error=message.is_error_frame)


async def _open_bus(feed: CanFeed) -> Any:
    """python-can's Bus, opened in a thread (slcan sleeps after opening its port)."""
    import can  # noqa: PLC0415 (python-can is only needed by a CAN source)

    holder: list[Any] = []

    def open_bus() -> None:
        kwargs = dict(feed.options)
        if feed.bitrate is not None:
            kwargs["bitrate"] = feed.bitrate
        holder.append(can.Bus(interface=feed.interface, channel=feed.channel, **kwargs))

    await in_thread(open_bus, f"can-open-{feed.channel}")
    return holder[0]


PROVIDES = CanFeed.provides


def from_table(table: Mapping[str, Any], common: FeedConfig) -> CanFeed:
    """The feed of a ``type = "can"`` table; ValueError naming the key."""
    get = Getter(table, common.where)
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(  # noqa: TRY004 (a config problem: reported like every other)
            f"{common.where} options: must be a table of python-can bus options"
        )
    bitrate = get.integer("bitrate", DEFAULT_BITRATE, 0, 1_000_000)
    battery = common.battery
    if battery is None:  # spec.py says so with the example; keep mypy informed
        raise ValueError(f"{common.where} battery: missing")
    return CanFeed(
        common.name,
        battery,
        interface=get.text("interface", DEFAULT_INTERFACE, 40),
        channel=get.text("channel", DEFAULT_CHANNEL, 200),
        bitrate=bitrate or None,
        options=options,
        max_age=common.max_age,
    )


def encode(frame: int, values: Mapping[str, float]) -> bytes:
    """The bytes of ``frame`` holding ``values`` (by field name; others 0): for test
    peripherals and benchmarks, from the same table the decoder reads."""
    layout = LAYOUTS[frame]
    raw = []
    for field in layout.fields:
        number = values.get(field.name, -field.offset if field.offset else 0.0)
        raw.append(round((number - field.offset) / field.scale))
    return layout.full.pack(*raw)


def frames_for(values: Mapping[str, float]) -> Iterator[tuple[int, bytes]]:
    """Every numeric frame with ``values`` (a test BMS's once-a-second burst)."""
    for frame in sorted(LAYOUTS):
        yield frame, encode(frame, values)
