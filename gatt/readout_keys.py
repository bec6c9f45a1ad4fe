"""The instant-readout key and nonce, kept so a nonce is never handed out twice under one key.

AES-CTR with a reused (key, nonce) pair leaks the XOR of two records, and decoders drop frames
whose nonce repeats (ESPHome) or steps back (Venus OS drops 1-60 behind).  So the nonce must keep
increasing across restarts and power cuts.  Saving every value would write the SD card once a
second; instead we persist a *window*: before handing out the first nonce at or beyond the saved
high-water mark we save ``mark = next + NONCE_WINDOW``.  After a crash or power cut the next run
starts at the saved mark, skipping at most one window of unused values (one and a half in
background mode, which saves ahead): never a repeat, never a step back, one small write per
window.

The nonce on air is the low 16 bits of an ever-increasing sequence number, so it wraps after
65 536 refreshes (about 18 h at the fastest rate of one per second).  The default policy is to
wrap, like Victron's own devices: every decoder accepts a wrap (Venus OS sees 65535 -> 0 as one
step forward), while rotating the key would break every phone, Home Assistant and Venus set-up
that holds it.  ``rotate_on_wrap=True`` gives the strict alternative: a new key whenever the 16-bit
space of the current key is used up, so no (key, nonce) pair is ever reused.  See
docs/instant-readout.md for the reasoning.

The key is 16 random bytes made on first start, saved with mode 0600 and never logged.  A PIN
change rotates it, to a key whose first byte differs from the old one (decoders compare that
byte to notice a stale key).  The PIN is remembered only as an HMAC under the current key, in
the same secret file, so a PIN changed while the daemon was stopped still rotates the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeGuard

import structlog

from bms_daemon.store import Store
from gatt.readout import KEY_SIZE, NONCE_MODULUS

log = structlog.get_logger("smallbms.readout")

DOCUMENT = "readout"  # the store document: state directory/readout.json, mode 0600
FORMAT_VERSION = 1
# (ours) nonces reserved per save: at most one save per 256 refreshes (~4 min at 1 Hz), and a
# restart skips at most 384 values (1.5 windows), far from the 65 476 a Venus OS de-duplicator
# would read as "behind".
NONCE_WINDOW = 256
# (ours) background mode starts saving the next window when this share of the saved one is used,
# leaving half a window (~2 min at 1 Hz) for a slow SD card before a frame would be held back.
RESERVE_AHEAD_FRACTION = 0.5
MAX_NONCE_WINDOW = NONCE_MODULUS - 61  # a bigger skip would look 1-60 behind to Venus OS
_HEX_KEY = re.compile(r"^[0-9a-f]{32}$")

RandomBytes = Callable[[int], bytes]

_saver: ThreadPoolExecutor | None = None  # one worker: background saves never overlap


def _background_saver() -> ThreadPoolExecutor:
    global _saver  # noqa: PLW0603 - one lazily made worker for the whole process
    if _saver is None:
        _saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readout-save")
    return _saver


class NonceWindowPendingError(Exception):
    """No nonce can be handed out until the next nonce window is saved (background mode).

    Transient: the save is under way (or is retried); the caller keeps its previous frame.
    """


class ReadoutKeys:
    """The readout key and the nonce sequence of one device, persisted in ``store``.

    Every change is saved before it is used; a failed save raises the store's error (an
    ``OSError``) and leaves the object as it was, so the caller simply does not refresh.

    ``background=True`` (what the daemon uses) keeps the once-per-window fsync'd save out of
    the caller's thread, so it never stalls the event loop that also runs the control loop:
    when half the window is used, the next window is saved by a worker thread while nonces
    are still handed out below the saved mark.  Only if the mark is reached before that save
    has finished does ``next_nonce`` raise ``NonceWindowPendingError`` (the caller keeps its
    previous frame).  Key changes (rare, a user's PIN change) stay synchronous.
    """

    def __init__(
        self,
        store: Store,
        *,
        window: int = NONCE_WINDOW,
        rotate_on_wrap: bool = False,
        random_bytes: RandomBytes = os.urandom,
        background: bool = False,
    ) -> None:
        if not 1 <= window <= MAX_NONCE_WINDOW:
            raise ValueError(f"nonce window must be 1-{MAX_NONCE_WINDOW}, not {window}")
        self._store = store
        self._window = window
        self._rotate_on_wrap = rotate_on_wrap
        self._random = random_bytes
        self._background = background
        self._saving: Future[None] | None = None  # the background save under way
        self._saving_mark = 0  # the mark that save writes
        self._background_failing = False
        saved = _parse(store.load(DOCUMENT), store)
        if saved is None:
            self._key = self._new_key(None)
            self._reserved = 0  # nothing handed out yet under this brand-new key
            self._key_since = 0
            self._pin_mac: str | None = None
            self._save()
            log.info("readout_key_created", hint="`smallbms key` prints it")
        else:
            self._key, self._reserved, self._key_since, self._pin_mac = saved
        self._next = self._reserved  # values below the mark may have been used before a crash
        self._pin: str | None = None  # the PIN last checked, to re-fingerprint on a wrap rotation
        if background:
            # the first window of this run, at start-up, so the first frame need not wait
            self._reserved = self._next + window
            try:
                self._save()
            except OSError as exc:
                self._reserved = self._next
                log.warning("readout_nonce_window_not_saved", error=str(exc),
                            action="retrying in the background")

    # --- queries -----------------------------------------------------------------------------
    @property
    def key(self) -> bytes:
        """The current 16-byte key (secret: never log it)."""
        return self._key

    @property
    def reserved(self) -> int:
        """The saved high-water mark: no sequence number at or above it was ever handed out."""
        return self._reserved

    def __repr__(self) -> str:  # the key must not reach a log through a repr
        return f"ReadoutKeys(key[0]={self._key[0]:02x}, next={self._next})"

    # --- changes -----------------------------------------------------------------------------
    def next_nonce(self) -> int:
        """A fresh nonce (u16) for the next refresh: always one step after the previous one,
        possibly skipping values after a restart, never repeating one (see the module doc).

        Raises the store's ``OSError`` when a needed save fails, or, in background mode,
        ``NonceWindowPendingError`` while the next window is not saved yet.
        """
        self._collect()
        sequence = self._next
        before = (self._key, self._key_since, self._reserved, self._pin_mac)
        rotated = self._rotate_on_wrap and sequence - self._key_since >= NONCE_MODULUS
        if rotated:
            self._key = self._new_key(self._key)
            self._key_since = sequence
            self._pin_mac = None if self._pin is None else self._mac(self._pin)
        if self._background and not rotated:
            if sequence >= self._reserved - int(self._window * (1 - RESERVE_AHEAD_FRACTION)):
                self._reserve_in_background(sequence)
            if sequence >= self._reserved:
                raise NonceWindowPendingError("the next nonce window is being saved")
        elif rotated or sequence >= self._reserved:
            self._reserved = sequence + self._window
            try:
                self._save()
            except OSError:
                self._key, self._key_since, self._reserved, self._pin_mac = before
                raise
        if rotated:
            log.warning("readout_key_rotated", reason="nonce space of the key used up",
                        hint="give the new key (`smallbms key`) to your readers")
        self._next = sequence + 1
        return sequence % NONCE_MODULUS

    def flush(self) -> None:
        """Wait for a background save under way and take its result (for tests and exit)."""
        saving = self._saving
        if saving is not None:
            saving.exception()  # waits; a failure is logged by _collect
        self._collect()

    def sync_pin(self, pin: str) -> bool:
        """Rotate the key if ``pin`` is not the PIN the key was made for; True if rotated.

        The first call after the key was created only remembers the PIN.
        """
        if self._pin_mac is not None and hmac.compare_digest(self._pin_mac, self._mac(pin)):
            self._pin = pin
            return False
        if self._pin_mac is None:
            self._pin_mac = self._mac(pin)
            try:
                self._save()
            except OSError:
                self._pin_mac = None
                raise
            self._pin = pin
            return False
        self.rotate(pin)
        return True

    def rotate(self, pin: str | None = None) -> None:
        """Replace the key by a random one with a different first byte, and save it."""
        old = (self._key, self._key_since, self._pin_mac)
        self._key = self._new_key(self._key)
        self._key_since = self._next
        self._pin_mac = None if pin is None else self._mac(pin)
        try:
            self._save()
        except OSError:
            self._key, self._key_since, self._pin_mac = old
            raise
        self._pin = pin
        log.warning("readout_key_rotated", reason="PIN changed" if pin is not None else "asked",
                    hint="give the new key (`smallbms key`) to your readers")

    # --- internals ---------------------------------------------------------------------------
    def _new_key(self, old: bytes | None) -> bytes:
        while True:
            key = self._random(KEY_SIZE)
            if len(key) != KEY_SIZE:
                raise ValueError(f"random source gave {len(key)} bytes, not {KEY_SIZE}")
            if old is None or key[0] != old[0]:
                return key

    def _mac(self, pin: str) -> str:
        return hmac.new(self._key, pin.encode("utf-8"), hashlib.sha256).hexdigest()

    def _document(self, reserved: int) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "key": self._key.hex(),
            "reserved": reserved,
            "key_since": self._key_since,
        }
        if self._pin_mac is not None:
            document["pin_mac"] = self._pin_mac
        return document

    def _save(self) -> None:
        """Save now, after any background save (so the file never goes back in time)."""
        self.flush()
        self._store.save(DOCUMENT, self._document(self._reserved), secret=True)

    def _reserve_in_background(self, sequence: int) -> None:
        if self._saving is not None:
            return
        mark = max(self._reserved, sequence) + self._window
        document = self._document(mark)  # built here: only this thread changes the state
        self._saving_mark = mark
        self._saving = _background_saver().submit(
            self._store.save, DOCUMENT, document, secret=True
        )

    def _collect(self) -> None:
        """Take the result of a finished background save: a higher mark, or a logged error."""
        saving = self._saving
        if saving is None or not saving.done():
            return
        self._saving = None
        error = saving.exception()
        if error is None:
            self._reserved = max(self._reserved, self._saving_mark)
            if self._background_failing:
                log.info("readout_nonce_window_saved_again")
                self._background_failing = False
        elif not self._background_failing:
            log.warning("readout_nonce_window_not_saved", error=str(error),
                        action="keeping the frame on air; retrying")
            self._background_failing = True


def _parse(
    document: dict[str, Any] | None, store: Store
) -> tuple[bytes, int, int, str | None] | None:
    """(key, reserved, key_since, pin_mac) from a saved document, or None to start afresh."""
    if document is None:
        return None
    problem = _problem(document)
    if problem is None:
        pin_mac = document.get("pin_mac")
        return (bytes.fromhex(document["key"]), document["reserved"], document["key_since"],
                pin_mac if isinstance(pin_mac, str) else None)
    set_aside = getattr(store, "set_aside", None)
    if callable(set_aside):
        set_aside(DOCUMENT, problem)
    log.error("readout_state_invalid", problem=problem,
              action="a new key is made: give it to your readers (`smallbms key`)")
    return None


def _problem(document: dict[str, Any]) -> str | None:
    if document.get("version") != FORMAT_VERSION:
        return f"unknown format version {document.get('version')!r}"
    key = document.get("key")
    if not isinstance(key, str) or not _HEX_KEY.match(key):
        return "the key is not 32 lower-case hex digits"
    reserved = document.get("reserved")
    since = document.get("key_since")
    if not _is_count(reserved) or not _is_count(since):
        return "the nonce mark is not a non-negative integer"
    if since > reserved:
        return "the key is newer than the nonce mark"
    pin_mac = document.get("pin_mac")
    if pin_mac is not None and not isinstance(pin_mac, str):
        return "the PIN fingerprint is not text"
    return None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_key(store: Store) -> bytes | None:
    """The saved key, without creating one; None when there is none."""
    return key_from_document(store.load(DOCUMENT))


def key_from_document(document: object) -> bytes | None:
    """The key in a parsed readout document (e.g. read by ``smallbms key`` straight from the
    file, which must not move a damaged file aside as the store's ``load`` does)."""
    if not isinstance(document, dict) or _problem(document) is not None:
        return None
    return bytes.fromhex(document["key"])
