"""Which advertisements of one Victron device to trust: one frame per nonce, keys, record types.

Over the radio the same frame arrives many times (a device repeats it until its figures change,
BlueZ reports every copy), late, out of order, or replayed by someone else; the record has no
MAC, so its nonce is the only freshness it carries.  :class:`DeviceFrames` keeps, per device:

* the last accepted nonce: a frame whose nonce is not ahead of it (16-bit, wrapping: "ahead"
  is 1..32767 steps forward) is a replay and is ignored unread;
* a device repeats its current frame, byte for byte, until one of its figures changes (the
  nonce moves only then): such a copy is not decoded again, but it says the figures are still
  current, so it renews their age.  Without that an idle battery whose cells do not move would
  look silent;
* one exception so a device that restarted its counter is not locked out forever: once nothing
  was accepted for ``resync_after`` seconds (the source's staleness limit, so the comms alarms
  already protect the bank), the next frame that decodes is accepted whatever its nonce;
* a wrong key (the key byte does not match: the PIN, hence the key, was changed) reported once
  until the key decodes again; the same for a record of another type than expected, a short
  record and foreign manufacturer data.

Pure: time is passed in; the log lines go to structlog with the device's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from bms_daemon.sources.victron.records import (
    Frame,
    FrameError,
    NotARecordError,
    TruncatedError,
    WrongKeyError,
    decode,
    read_header,
    record_name,
)
from gatt.readout import NONCE_MODULUS

log = structlog.get_logger("smallbms.source.victron")

HALF_NONCE_SPACE = NONCE_MODULUS // 2


@dataclass
class Counters:
    """How the frames of one device were judged (``source-check`` shows them)."""

    accepted: int = 0  # new frames, decoded
    repeated: int = 0  # copies of the current frame: renew its age
    replayed: int = 0  # older nonces, or the current nonce with other bytes: ignored
    wrong_key: int = 0
    other_record: int = 0
    truncated: int = 0
    not_victron: int = 0


@dataclass
class DeviceFrames:
    """The frames of one configured device (``name`` for the log, its ``key``)."""

    name: str
    key: bytes
    record_type: int  # what this device must send (0x05 battery, 0x02 monitor)
    resync_after: float
    last_nonce: int | None = None
    last_frame: Frame | None = None
    last_at: float | None = None  # when the current frame (or a copy of it) was last heard
    last_data: bytes = b""
    rssi: int | None = None
    counters: Counters = field(default_factory=Counters)
    _reported: set[str] = field(default_factory=set)

    def offer(self, data: bytes, now: float, rssi: int | None = None) -> Frame | None:
        """Judge one advertisement's manufacturer data (company 0x02E1, id not included):
        the frame if it is new and trustworthy or a copy of the current one (whose age it
        renews), else None."""
        self.rssi = rssi if rssi is not None else self.rssi
        try:
            header = read_header(data)
        except NotARecordError as exc:
            self.counters.not_victron += 1
            self._once("not_victron", "victron_not_a_record", reason=str(exc))
            return None
        if header.record_type != self.record_type:
            self.counters.other_record += 1
            self._once(
                f"record_{header.record_type}",
                "victron_other_record",
                record=f"{header.record_type:#04x} ({record_name(header.record_type)})",
                expected=f"{self.record_type:#04x} ({record_name(self.record_type)})",
                action="ignored; check the device's address in the configuration",
            )
            return None
        if header.key_byte != self.key[0]:
            self.counters.wrong_key += 1
            self._once(
                "wrong_key",
                "victron_wrong_key",
                action="its frames are ignored until the key matches: was the device's PIN "
                "changed? Copy the new key from VictronConnect (Product info, Instant "
                "readout details, Show encryption data) into the configuration",
                level="error",
            )
            return None
        if header.nonce == self.last_nonce and data == self.last_data:
            self.counters.repeated += 1
            self.last_at = now
            return self.last_frame
        if self._replayed(header.nonce, now):
            self.counters.replayed += 1
            return None
        try:
            frame = decode(data, self.key, header)
        except TruncatedError as exc:
            self.counters.truncated += 1
            self._once("truncated", "victron_truncated_record", reason=str(exc))
            return None
        except WrongKeyError:  # pragma: no cover - the key byte was checked above
            self.counters.wrong_key += 1
            return None
        except FrameError as exc:
            self.counters.other_record += 1
            self._once("frame", "victron_bad_frame", reason=str(exc))
            return None
        if "wrong_key" in self._reported:
            self._reported.discard("wrong_key")
            log.info("victron_key_decodes_again", device=self.name)
        if self.last_nonce is not None and not self._ahead(header.nonce):
            log.info("victron_nonce_restarted", device=self.name, nonce=header.nonce,
                     previous=self.last_nonce)
        self.last_nonce = header.nonce
        self.last_frame = frame
        self.last_data = bytes(data)
        self.last_at = now
        self.counters.accepted += 1
        return frame

    def age(self, now: float) -> float | None:
        """Seconds since the current frame was last heard, None before the first one."""
        return None if self.last_at is None else now - self.last_at

    def _ahead(self, nonce: int) -> bool:
        assert self.last_nonce is not None
        step = (nonce - self.last_nonce) % NONCE_MODULUS
        return 0 < step < HALF_NONCE_SPACE

    def _replayed(self, nonce: int, now: float) -> bool:
        if self.last_nonce is None or self._ahead(nonce):
            return False
        age = self.age(now)
        return age is None or age < self.resync_after

    def _once(self, key: str, event: str, level: str = "warning", **fields: str) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        getattr(log, level)(event, device=self.name, **fields)
