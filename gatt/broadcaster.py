"""What the advertisement's manufacturer data should be right now: the instant readout.

``BleService`` calls ``payload_for(status, now)`` about once a second and puts the result in the
advertisement under company id 0x02E1 (or removes the manufacturer data when it is None).  The
broadcaster decides when a new frame is due, so the rules live in one testable place:

* a new frame (new nonce) only when a figure *as the record encodes it* changed, so noise below
  the record's resolution does not spend nonces;
* at most one new frame per ``MIN_REFRESH_INTERVAL_S``: readers show a figure that is at most
  about a second old, and the 16-bit nonce lasts as long as it can;
* otherwise the previous frame again, byte for byte: repeating a ciphertext leaks nothing and
  decoders treat it as a duplicate;
* None while the ``instant_readout`` or ``bluetooth`` setting is off (the advertisement itself
  stays connectable while Bluetooth is on);
* a PIN change rotates the key before the next frame.

Pure apart from the key store: time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bms_daemon.core.settings import Settings
from bms_daemon.core.types import Status
from bms_daemon.store import Store
from gatt.readout import (
    DEFAULT_PRODUCT_ID,
    VICTRON_COMPANY_ID,
    encode_manufacturer_data,
    pack_record,
    readout_from_status,
)
from gatt.readout_keys import NonceWindowPendingError, ReadoutKeys

log = structlog.get_logger("smallbms.readout")

# (ours) "about once a second": 0.9 s so a caller ticking at 1 Hz with a little jitter is not
# skipped every other tick.
MIN_REFRESH_INTERVAL_S = 0.9
COMPANY_ID = VICTRON_COMPANY_ID  # what the caller passes to set_manufacturer_data


class ReadoutBroadcaster:
    """Turns statuses into instant-readout manufacturer data, one nonce per real change."""

    def __init__(
        self,
        keys: ReadoutKeys,
        settings: Callable[[], Settings],
        *,
        product_id: int = DEFAULT_PRODUCT_ID,
        min_interval: float = MIN_REFRESH_INTERVAL_S,
    ) -> None:
        if not 0 <= product_id <= 0xFFFF:
            raise ValueError(f"product id {product_id:#x} does not fit in 16 bits")
        self._keys = keys
        self._settings = settings
        self._product_id = product_id
        self._min_interval = min_interval
        self._record: bytes | None = None  # clear text of the frame on air
        self._payload: bytes | None = None
        self._key: bytes | None = None  # the key of the frame on air
        self._refreshed_at: float | None = None
        self._checked_pin: str | None = None
        self._store_failing = False

    @classmethod
    def from_store(
        cls,
        store: Store,
        settings: Callable[[], Settings],
        *,
        product_id: int = DEFAULT_PRODUCT_ID,
    ) -> ReadoutBroadcaster:
        """The usual wiring: key and nonce window in ``store`` (document "readout"), the
        window saved in the background so the caller's event loop never waits for the disk."""
        return cls(ReadoutKeys(store, background=True), settings, product_id=product_id)

    @property
    def keys(self) -> ReadoutKeys:
        """The key holder (the key itself is secret: never log it)."""
        return self._keys

    @property
    def nonce(self) -> int | None:
        """The nonce of the frame on air, None when there is none (diagnostics and tests)."""
        return None if self._payload is None else int.from_bytes(self._payload[5:7], "little")

    def payload_for(self, status: Status, now: float) -> bytes | None:
        """The manufacturer data (after the company id) to advertise now, or None for none."""
        settings = self._settings()
        if not (settings.bluetooth and settings.instant_readout):
            self._forget()
            return None
        try:
            if settings.pin != self._checked_pin:
                self._keys.sync_pin(settings.pin)
                self._checked_pin = settings.pin
            readout = readout_from_status(status)
            record = pack_record(readout)
            if not self._due(record, now):
                return self._payload
            nonce = self._keys.next_nonce()
        except NonceWindowPendingError:
            return self._payload  # the next nonce window is being saved: a tick later
        except OSError as exc:
            # Without a saved nonce window a restart could repeat a nonce: keep the frame on
            # air (repeating it is harmless) until the store works again.
            if not self._store_failing:
                log.warning("readout_not_refreshed", error=str(exc),
                            action="keeping the previous frame until the state can be saved")
                self._store_failing = True
            return self._payload
        if self._store_failing:
            log.info("readout_refreshing_again")
            self._store_failing = False
        key = self._keys.key
        self._payload = encode_manufacturer_data(readout, key, nonce, self._product_id)
        self._record = record
        self._key = key
        self._refreshed_at = now
        return self._payload

    def _due(self, record: bytes, now: float) -> bool:
        if self._payload is None or self._refreshed_at is None:
            return True
        if self._key != self._keys.key:
            return True  # the key rotated: the frame on air is unreadable with the new key
        if record == self._record:
            return False
        return now - self._refreshed_at >= self._min_interval

    def _forget(self) -> None:
        """Readout off: the next frame after it is turned on again is fresh."""
        self._record = None
        self._payload = None
        self._key = None
        self._refreshed_at = None
