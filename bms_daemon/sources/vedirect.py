"""A Victron SmartShunt or BMV on VE.Direct (``type = "vedirect"``): the bank current sensor.

The VE.Direct text protocol (Victron's "VE.Direct Protocol" document, 19200 8N1): the device
sends its fields once a second in blocks of ``\\r\\nLABEL\\tVALUE`` lines; a block ends with
``\\r\\nChecksum\\t`` and one byte chosen so that every byte of the block adds up to 0 modulo
256.  A BMV sends its history fields (H1, H2, ...) in a second block of its own.  Asynchronous
HEX-protocol messages (``:...\\n``) may come between any two bytes and are not part of a block.

What it gives: bank voltage (V, mV), bank current (I, mA), power (P), consumed Ah (CE, mAh),
the shunt's own SOC (SOC, per mille), time-to-go (TTG, min), the battery temperature when a
sensor is fitted (T), the alarm state (Alarm, AR).  What it lacks: any cell voltage, so a
VE.Direct shunt is never a source of its own: it is the current (and voltage) feed of a
combined source.  The shunt's SOC and alarms are shown, not used: smallbms counts its own SOC.

A block whose checksum does not add up is dropped and counted, never used; so is a block that
runs too long or holds a line too long (garbage on the line), after which the parser waits for
the next line start.  The port is read in a thread of its own (pyserial blocks).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bms_daemon.sources.base import Feed, Quantity, Sample, close_soon, in_thread
from bms_daemon.sources.config import Getter
from bms_daemon.sources.spec import FeedConfig

KEYS = frozenset({"device", "baudrate"})
BAUDRATE = 19200
READ_TIMEOUT_S = 0.5
MAX_LABEL = 9  # the longest label of the protocol is 8 ("Checksum")
MAX_VALUE = 33  # a value is at most 33 characters
MAX_FIELDS = 40  # a block has at most ~22 fields
AR_REASONS = {  # the AR (alarm reason) bits
    1: "low voltage", 2: "high voltage", 4: "low SOC", 8: "low starter voltage",
    16: "high starter voltage", 32: "low temperature", 64: "high temperature",
    128: "mid voltage",
}


@dataclass(slots=True)
class TextParser:
    """Bytes in, checked blocks out (a dict of label -> value).  Pure and incremental.

    ``bad`` counts dropped blocks by reason: "bad checksum", "garbage".
    """

    blocks: list[dict[str, str]] = field(default_factory=list)
    bad: dict[str, int] = field(default_factory=dict)
    _state: str = "idle"  # idle | label | value | checksum | hex
    _saved: str = "idle"  # the state a HEX message interrupted
    _sum: int = 0
    _label: bytearray = field(default_factory=bytearray)
    _value: bytearray = field(default_factory=bytearray)
    _fields: dict[str, str] = field(default_factory=dict)
    _synced: bool = False  # False until the first block end: joining mid-block is no error

    def feed(self, data: bytes) -> list[dict[str, str]]:
        """Parse ``data``; returns the blocks completed by it (checksum verified)."""
        done: list[dict[str, str]] = []
        for byte in data:
            state = self._state
            if state == "hex":
                if byte == 0x0A:
                    self._state = self._saved
                continue
            if byte == 0x3A and state != "checksum":  # ':' starts a HEX message
                self._saved, self._state = state, "hex"
                continue
            if state == "idle":  # wait for a line start; the block's sum starts with its \r\n
                if byte == 0x0A:
                    self._sum = 0x0D + 0x0A
                    self._state = "label"
                    self._label.clear()
                continue
            self._sum = (self._sum + byte) & 0xFF
            if state == "checksum":
                if self._sum == 0 and self._fields:
                    done.append(self._fields)
                elif self._synced:
                    self._drop("bad checksum")
                self._synced = True
                self._reset()
            elif byte == 0x0A:  # a line starts: the next bytes are a label
                if state == "value":
                    self._store()
                self._state = "label"
                self._label.clear()
            elif byte == 0x0D:
                pass
            elif state == "label":
                if byte == 0x09:
                    if self._label == b"Checksum":
                        self._state = "checksum"
                    else:
                        self._state = "value"
                        self._value.clear()
                elif len(self._label) >= MAX_LABEL or not 0x20 < byte < 0x7F:
                    self._drop("garbage")
                    self._reset()
                else:
                    self._label.append(byte)
            elif state == "value":
                if len(self._value) >= MAX_VALUE:
                    self._drop("garbage")
                    self._reset()
                else:
                    self._value.append(byte)
        self.blocks.extend(done)
        return done

    def _store(self) -> None:
        if len(self._fields) >= MAX_FIELDS:
            self._drop("garbage")
            self._reset()
            return
        self._fields[self._label.decode("ascii")] = self._value.decode("ascii", "replace")

    def _drop(self, reason: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1

    def _reset(self) -> None:
        """Back to waiting for a line start; the running checksum restarts with the block."""
        self._state = "idle"
        self._sum = 0
        self._fields = {}
        self._label.clear()
        self._value.clear()


class VeDirectFeed(Feed):
    """A SmartShunt / BMV on a VE.Direct USB cable (or any serial port pyserial opens)."""

    kind = "vedirect"
    provides = frozenset({Quantity.CURRENT, Quantity.VOLTAGE})

    def __init__(self, name: str, device: str, *, baudrate: int = BAUDRATE,
                 max_age: float = 3.0) -> None:
        super().__init__(name, max_age=max_age)
        self.device = device
        self.baudrate = baudrate
        self.parser = TextParser()
        self.fields: dict[str, str] = {}  # the latest value of every label seen

    def describe_device(self) -> str:
        return f"{self.device} at {self.baudrate} baud"

    def take(self, data: bytes, now: float) -> None:
        """Bytes from the port (the reader thread calls this; tests may too)."""
        parser = self.parser
        before = dict(parser.bad)
        for block in parser.feed(data):
            self._block(block, now)
        parser.blocks.clear()
        for reason, count in parser.bad.items():
            for _ in range(count - before.get(reason, 0)):
                self.drop(reason)

    def _block(self, block: dict[str, str], now: float) -> None:
        try:
            voltage = int(block["V"]) / 1000.0 if "V" in block else None
            current = int(block["I"]) / 1000.0 if "I" in block else None
        except ValueError:
            self.drop("unreadable value", f"V={block.get('V')!r} I={block.get('I')!r}")
            return
        self.fields.update(block)
        if voltage is None or current is None:
            self.stats.frames += 1  # a history block: shown, no sample
            return
        if not (0.0 <= voltage <= 100.0 and -10_000.0 <= current <= 10_000.0):
            self.drop("implausible value", f"V={voltage} I={current}")
            return
        self.publish(Sample(at=now, voltage=voltage, current=current, notes=self._notes(),
                            extra=self._extra()))

    def _notes(self) -> tuple[str, ...]:
        if self.fields.get("Alarm", "OFF").upper() != "ON":
            return ()
        try:
            reasons = int(self.fields.get("AR", "0"))
        except ValueError:
            reasons = 0
        named = [text for bit, text in AR_REASONS.items() if reasons & bit]
        return (f"shunt alarm: {', '.join(named) or 'on'}",)

    def _extra(self) -> tuple[tuple[str, float | str], ...]:
        extra: list[tuple[str, float | str]] = []
        fields = self.fields
        for label, name, scale in (("SOC", "shunt_soc", 0.1), ("CE", "consumed_ah", 0.001),
                                   ("TTG", "ttg_min", 1.0), ("T", "temperature", 1.0),
                                   ("P", "power", 1.0)):
            try:
                extra.append((name, round(int(fields[label]) * scale, 3)))
            except (KeyError, ValueError):
                continue
        for label, name in (("PID", "product_id"), ("SER#", "serial"), ("FW", "firmware")):
            if label in fields:
                extra.append((name, fields[label]))
        return tuple(extra)

    async def session(self) -> None:
        import serial  # noqa: PLC0415 (pyserial is only needed by a VE.Direct source)

        stop = threading.Event()
        holder: list[Any] = []

        def open_port() -> None:
            holder.append(serial.Serial(self.device, self.baudrate, timeout=READ_TIMEOUT_S))

        await in_thread(open_port, f"vedirect-open-{self.name}")
        port = holder[0]
        self.parser = TextParser()  # a new connection starts mid-block: resynchronise
        self.connected()
        try:
            await in_thread(lambda: self._receive(port, stop), f"vedirect-{self.name}")
        finally:
            stop.set()
            close_soon(port.close, f"vedirect-close-{self.name}")

    def _receive(self, port: Any, stop: threading.Event) -> None:
        clock = self.clock
        while not stop.is_set():
            data = port.read(256)
            if data:
                self.take(data, clock())


PROVIDES = VeDirectFeed.provides


def from_table(table: Mapping[str, Any], common: FeedConfig) -> VeDirectFeed:
    """The feed of a ``type = "vedirect"`` table; ValueError naming the key."""
    get = Getter(table, common.where)
    if "device" not in table:
        raise ValueError(f"{common.where} device: missing; the serial port of the VE.Direct "
                         "cable, e.g. \"/dev/serial/by-id/usb-VictronEnergy_BV_VE_Direct_cable_"
                         "XXXXXXXX-if00-port0\"")
    return VeDirectFeed(
        common.name,
        get.text("device", "", 300),
        baudrate=get.integer("baudrate", BAUDRATE, 1200, 115200),
        max_age=common.max_age,
    )
