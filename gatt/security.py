"""PIN challenge-response, session envelopes and wrong-PIN rate limiting (pure: time passed in).

Why this shape (docs/security.md has the full threat model):
- Every read and write names the central that sent it (BlueZ's ``device`` option, passed on by
  gatt/server.py), so a session belongs to one central: a protected read is answered only to
  the central that proved the PIN, and a session ends when its central disconnects.
- Each *write* also proves its session: the body travels in an envelope
  ``body | seq (uint32 LE) | tag (8 bytes)`` where ``tag`` is an HMAC under the session key.
  Sequence numbers only go up, so a captured write cannot be replayed.
- The PIN never crosses the air: the client answers a random server nonce with
  ``HMAC(K, "smallbms-auth" | server nonce | client nonce)`` where ``K = PBKDF2(PIN, salt)``.
  The salt is random per device and changes with the PIN.  A 6-digit PIN has only 10^6 values:
  someone who records an exchange on an unencrypted link can still search them offline, which
  is why the characteristics also demand link encryption (pairing).
- Wrong PINs are rate-limited twice (``Lockout``): per central, a lock-out after each wrong
  PIN that doubles from ``FIRST_LOCKOUT_S`` up to ``MAX_LOCKOUT_S``; and globally, whatever the
  centrals, their addresses or their connections, a budget of ``FREE_ATTEMPTS`` wrong PINs that
  comes back at one per ``GLOBAL_INTERVAL_S``.  A right PIN does not refill the budget (an
  attacker cannot ride the owner's logins), and the state is saved, so a restart does not
  either.  docs/security.md has the arithmetic (about 4.75 years for a random 6-digit PIN).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gatt.codec import PIN_SIZE, READOUT_KEY_SIZE, BytesLike, CodecError

# --- our own choices (docs/security.md) -----------------------------------------------------
NONCE_SIZE = 16  # server and client nonces, bytes
SALT_SIZE = 16
PROOF_SIZE = 16  # truncated HMAC-SHA256 proving the PIN
TAG_SIZE = 8  # truncated HMAC-SHA256 on every protected write (2^-64 forgery odds per try)
SEQ_SIZE = 4
ENVELOPE_OVERHEAD = SEQ_SIZE + TAG_SIZE
KDF_ITERATIONS = 20_000  # PBKDF2-SHA256: ~20 ms on a Pi 3, once per PIN on the server
FREE_ATTEMPTS = 3  # global budget: wrong PINs that may come in a burst, from all centrals
GLOBAL_INTERVAL_S = 300.0  # ... and it comes back at one wrong PIN per this many seconds
FIRST_LOCKOUT_S = 5.0  # per central: lock-out after its first wrong PIN, doubled on each further
MAX_LOCKOUT_S = 300.0
MAX_TRACKED_CENTRALS = 64  # per-central lock-outs remembered (the oldest are forgotten)
MAX_SESSIONS = 4  # concurrent authenticated sessions (several centrals may be connected)
SESSION_MAX_AGE_S = 3600.0  # a session ends after this even if no connection change was seen

_AUTH_LABEL = b"smallbms-auth"
_SESSION_LABEL = b"smallbms-session"
_WRITE_LABEL = b"smallbms-write"
_PIN_LABEL = b"smallbms-pin"
_KEY_LABEL = b"smallbms-key"
_RESULT_LABEL = b"smallbms-result"

CHALLENGE_FORMAT = "<BB16s16sI"  # version, flags, server nonce, salt, KDF iterations
CHALLENGE_SIZE = struct.calcsize(CHALLENGE_FORMAT)
CHALLENGE_FLAG_SESSION_OPEN = 1  # at least one session is open (protected reads work)
RESPONSE_SIZE = NONCE_SIZE + PROOF_SIZE


class AuthError(Exception):
    """A refused authentication or protected write; ``kind`` picks the ATT error."""

    WRONG_PIN = "wrong_pin"
    LOCKED_OUT = "locked_out"
    STALE = "stale_challenge"
    NOT_AUTHORIZED = "not_authorized"
    LENGTH = "length"

    def __init__(self, kind: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


# --- the computations both sides make -------------------------------------------------------
def derive_pin_key(pin: str, salt: bytes, iterations: int = KDF_ITERATIONS) -> bytes:
    """K = PBKDF2-HMAC-SHA256(PIN, salt): what both sides hold instead of the PIN."""
    return hashlib.pbkdf2_hmac("sha256", pin.encode("ascii"), salt, iterations, 32)


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def auth_proof(pin_key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The client's answer to a challenge."""
    return _mac(pin_key, _AUTH_LABEL, server_nonce, client_nonce)[:PROOF_SIZE]


def session_key(pin_key: bytes, server_nonce: bytes, client_nonce: bytes) -> bytes:
    """The key both sides use for this session's write tags and masks."""
    return _mac(pin_key, _SESSION_LABEL, server_nonce, client_nonce)


def write_tag(key: bytes, char_uuid: str, seq: int, body: bytes) -> bytes:
    """The tag binding a write to its session, characteristic and sequence number."""
    return _mac(key, _WRITE_LABEL, char_uuid.lower().encode("ascii"),
                struct.pack("<I", seq), body)[:TAG_SIZE]


def seal(key: bytes, char_uuid: str, seq: int, body: bytes) -> bytes:
    """The envelope a client writes to a protected characteristic."""
    return body + struct.pack("<I", seq) + write_tag(key, char_uuid, seq, body)


def _mask(key: bytes, label: bytes, seq: int, size: int) -> bytes:
    return _mac(key, label, struct.pack("<I", seq))[:size]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def mask_pin(key: bytes, seq: int, pin: str) -> bytes:
    """The change-PIN argument: the new PIN's digits, masked so they never cross in clear."""
    raw = pin.encode("ascii")
    if len(raw) != PIN_SIZE:
        raise CodecError("pin must be exactly 6 digits, e.g. 000000")
    return _xor(raw, _mask(key, _PIN_LABEL, seq, PIN_SIZE))


def unmask_pin(key: bytes, seq: int, masked: bytes) -> str:
    """Inverse of ``mask_pin`` (the result is validated by the settings, not here)."""
    return _xor(masked, _mask(key, _PIN_LABEL, seq, PIN_SIZE)).decode("ascii", errors="replace")


def mask_key(key: bytes, seq: int, readout_key: bytes) -> bytes:
    """The read-key result: the readout key masked for the session that asked (a result is
    indicated to every subscribed central, only the asker can unmask it)."""
    return _xor(readout_key, _mask(key, _KEY_LABEL, seq, READOUT_KEY_SIZE))


def unmask_key(key: bytes, seq: int, masked: bytes) -> bytes:
    """Inverse of ``mask_key``."""
    return _xor(masked, _mask(key, _KEY_LABEL, seq, READOUT_KEY_SIZE))


def mask_result(key: bytes, seq: int, data: bytes) -> bytes:
    """A control-point result's data, readable only by the session that sent command ``seq``:
    BlueZ indicates a result to every subscribed central, and a central without the PIN must
    not learn what the owner did ("SOC set to 42.42 %").  Its own inverse."""
    stream = b"".join(_mac(key, _RESULT_LABEL, struct.pack("<IH", seq, block))
                      for block in range((len(data) + 31) // 32))
    return _xor(data, stream[:len(data)])


@dataclass(frozen=True, slots=True)
class Challenge:
    """What a client reads from the auth characteristic."""

    version: int
    session_open: bool
    server_nonce: bytes
    salt: bytes
    iterations: int


def encode_challenge(c: Challenge) -> bytes:
    """The auth characteristic's value."""
    return struct.pack(CHALLENGE_FORMAT, c.version,
                       CHALLENGE_FLAG_SESSION_OPEN if c.session_open else 0,
                       c.server_nonce, c.salt, c.iterations)


def decode_challenge(data: BytesLike) -> Challenge:
    """Inverse of ``encode_challenge``."""
    if len(data) != CHALLENGE_SIZE:
        raise CodecError(f"challenge: expected {CHALLENGE_SIZE} bytes, got {len(data)}",
                         length=True)
    version, flags, nonce, salt, iterations = struct.unpack(CHALLENGE_FORMAT, data)
    return Challenge(version, bool(flags & CHALLENGE_FLAG_SESSION_OPEN), nonce, salt, iterations)


@dataclass(frozen=True, slots=True)
class ClientSession:
    """The client side of an open session: its key and the next sequence number to use."""

    key: bytes
    next_seq: int = 1


def answer_challenge(pin: str, challenge: Challenge,
                     client_nonce: bytes | None = None) -> tuple[bytes, ClientSession]:
    """The bytes to write to the auth characteristic, and the session they open."""
    nonce = client_nonce if client_nonce is not None else secrets.token_bytes(NONCE_SIZE)
    k = derive_pin_key(pin, challenge.salt, challenge.iterations)
    response = nonce + auth_proof(k, challenge.server_nonce, nonce)
    return response, ClientSession(key=session_key(k, challenge.server_nonce, nonce))


# --- the server's state ---------------------------------------------------------------------
@dataclass(slots=True)
class _Session:
    key: bytes
    opened: float
    device: str = ""
    last_seq: int = 0


@dataclass(slots=True)
class Lockout:
    """Wrong-PIN limits, global and per central; wall-clock seconds (``now``) are passed in.

    Global: a generic cell rate algorithm.  ``earliest`` is the theoretical time at which the
    budget is full again; a wrong PIN pushes it ``GLOBAL_INTERVAL_S`` later, and an attempt is
    evaluated only while ``earliest - now`` leaves room for one more within ``FREE_ATTEMPTS``.
    Sustained, that is one wrong PIN per ``GLOBAL_INTERVAL_S`` however many centrals try.  A
    clock that goes back only makes the wait longer; one that jumps forward gives back at most
    the ``FREE_ATTEMPTS`` burst.

    Per central (``device``, BlueZ's object path, i.e. its address): after its n-th wrong PIN in
    a row it waits ``FIRST_LOCKOUT_S * 2**(n-1)`` (at most ``MAX_LOCKOUT_S``); a right PIN
    clears its count.  An attacker changing address escapes this one, not the global one.

    ``document()`` / ``from_document()`` persist it (bms_daemon's store, ``lockout.json``).
    """

    earliest: float = 0.0
    devices: dict[str, tuple[int, float]] = field(default_factory=dict)  # failures, until

    def wait(self, device: str, now: float) -> float:
        """Seconds before ``device`` may have a PIN evaluated (0 = now)."""
        budget = max(0.0, self.earliest - now - (FREE_ATTEMPTS - 1) * GLOBAL_INTERVAL_S)
        _, until = self.devices.get(device, (0, 0.0))
        return max(budget, until - now, 0.0)

    def failed(self, device: str, now: float) -> None:
        """A wrong PIN was evaluated for ``device``."""
        self.earliest = max(self.earliest, now) + GLOBAL_INTERVAL_S
        failures = self.devices.pop(device, (0, 0.0))[0] + 1
        lock = min(MAX_LOCKOUT_S, FIRST_LOCKOUT_S * 2 ** min(failures - 1, 16))
        self.devices[device] = (failures, now + lock)
        while len(self.devices) > MAX_TRACKED_CENTRALS:
            self.devices.pop(next(iter(self.devices)))

    def succeeded(self, device: str) -> None:
        """A right PIN: that central's count restarts; the global budget does not refill."""
        self.devices.pop(device, None)

    def document(self) -> dict[str, Any]:
        return {"version": 1, "earliest": self.earliest,
                "devices": {d: [n, t] for d, (n, t) in self.devices.items()}}

    @classmethod
    def from_document(cls, document: Any, now: float) -> Lockout:
        """The saved state; anything untrustworthy gives the strictest state: the whole global
        budget spent from ``now`` (a damaged file must not give an attacker free guesses)."""
        strictest = cls(earliest=now + FREE_ATTEMPTS * GLOBAL_INTERVAL_S)
        if not isinstance(document, dict) or document.get("version") != 1:
            return strictest
        earliest, devices = document.get("earliest"), document.get("devices")
        if not isinstance(earliest, int | float) or isinstance(earliest, bool) \
                or not isinstance(devices, dict) or not math.isfinite(earliest):
            return strictest
        # never further out than a full budget from now: a clock that was far ahead when it
        # was saved must not lock the owner out for good
        lockout = cls(earliest=min(float(earliest), now + FREE_ATTEMPTS * GLOBAL_INTERVAL_S))
        for device, entry in list(devices.items())[-MAX_TRACKED_CENTRALS:]:
            if (isinstance(device, str) and isinstance(entry, list) and len(entry) == 2
                    and all(isinstance(x, int | float) and not isinstance(x, bool)
                            and math.isfinite(x) for x in entry)):
                failures = max(0, min(int(entry[0]), 64))
                lockout.devices[device] = (failures, min(float(entry[1]), now + MAX_LOCKOUT_S))
        return lockout


@dataclass(slots=True)
class Opened:
    """A verified protected write: the body, and the session that sent it."""

    body: bytes
    seq: int
    key: bytes


@dataclass(slots=True)
class Guard:
    """The server side: current challenge, open sessions and the wrong-PIN counter.

    ``random`` is injected so tests are deterministic; ``now`` (monotonic seconds) is passed
    to every call, so nothing here reads a clock.
    """

    pin: str
    salt: bytes
    iterations: int = KDF_ITERATIONS
    version: int = 1
    random: Callable[[int], bytes] = secrets.token_bytes
    lockout: Lockout = field(default_factory=Lockout)
    _pin_key: bytes = b""
    _nonce: bytes = b""
    _sessions: list[_Session] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pin_key = derive_pin_key(self.pin, self.salt, self.iterations)
        self._nonce = self.random(NONCE_SIZE)

    # -- queries --
    def session_open(self, now: float, device: str | None = None) -> bool:
        """True while ``device`` holds a session (any central when ``device`` is None)."""
        self._expire(now)
        return any(device is None or s.device == device for s in self._sessions)

    def authenticated(self, now: float) -> frozenset[str]:
        """The centrals that hold a session."""
        self._expire(now)
        return frozenset(s.device for s in self._sessions)

    def challenge(self, now: float, device: str | None = None) -> bytes:
        """The auth characteristic's value (the nonce stays until an answer uses it)."""
        return encode_challenge(Challenge(self.version, self.session_open(now, device),
                                          self._nonce, self.salt, self.iterations))

    def locked_for(self, wall: float, device: str = "") -> float:
        """Seconds until a PIN attempt from ``device`` is evaluated again (0 = now)."""
        return self.lockout.wait(device, wall)

    # -- authentication --
    def authenticate(self, response: bytes, now: float, *, wall: float | None = None,
                     device: str = "") -> bool:
        """Check a client's answer; opens a session for ``device`` or raises ``AuthError``.

        ``now`` is monotonic (sessions), ``wall`` the wall clock (the persisted lock-out;
        ``now`` when not given).  Every answer evaluated, right or wrong, uses up the nonce, so
        one challenge gives one guess.  Returns True when the lock-out state changed (the
        caller saves it).
        """
        wall = now if wall is None else wall
        if len(response) != RESPONSE_SIZE:
            raise AuthError(AuthError.LENGTH,
                            f"auth answer must be {RESPONSE_SIZE} bytes, got {len(response)}")
        wait = self.lockout.wait(device, wall)
        if wait > 0:
            raise AuthError(AuthError.LOCKED_OUT,
                            f"too many wrong PINs; try again in {wait:.0f} s", retry_after=wait)
        server_nonce, self._nonce = self._nonce, self.random(NONCE_SIZE)
        client_nonce, proof = response[:NONCE_SIZE], response[NONCE_SIZE:]
        expected = auth_proof(self._pin_key, server_nonce, client_nonce)
        if not hmac.compare_digest(proof, expected):
            self.lockout.failed(device, wall)
            raise AuthError(AuthError.WRONG_PIN,
                            "wrong PIN (or a challenge already used: read it again)")
        changed = device in self.lockout.devices
        self.lockout.succeeded(device)
        self._expire(now)
        self._sessions = [s for s in self._sessions if s.device != device]
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(0)  # the oldest goes; its owner re-authenticates
        self._sessions.append(_Session(session_key(self._pin_key, server_nonce, client_nonce),
                                       opened=now, device=device))
        return changed

    def open(self, char_uuid: str, data: bytes, now: float, device: str | None = None) -> Opened:
        """Verify a protected write's envelope; the body, or ``AuthError`` (nothing changes).

        Only the sessions of ``device`` (every session when None) can sign its writes."""
        self._expire(now)
        sessions = [s for s in self._sessions if device is None or s.device == device]
        if not sessions:
            raise AuthError(AuthError.NOT_AUTHORIZED, "authenticate with the PIN first")
        if len(data) < ENVELOPE_OVERHEAD:
            raise AuthError(AuthError.LENGTH, "write too short for the session envelope")
        body = bytes(data[:-ENVELOPE_OVERHEAD])
        (seq,) = struct.unpack("<I", data[-ENVELOPE_OVERHEAD:-TAG_SIZE])
        tag = bytes(data[-TAG_SIZE:])
        for session in sessions:
            if hmac.compare_digest(tag, write_tag(session.key, char_uuid, seq, body)):
                if seq <= session.last_seq:
                    raise AuthError(AuthError.NOT_AUTHORIZED, "replayed write refused")
                session.last_seq = seq
                return Opened(body=body, seq=seq, key=session.key)
        raise AuthError(AuthError.NOT_AUTHORIZED, "write not signed by an open session")

    # -- changes --
    def close_all(self) -> None:
        """End every session (BlueZ went away, or the PIN changed)."""
        self._sessions.clear()

    def close_except(self, connected: frozenset[str]) -> bool:
        """End the sessions of centrals no longer connected; True if any ended."""
        before = len(self._sessions)
        self._sessions = [s for s in self._sessions if s.device in connected]
        return len(self._sessions) != before

    def change_pin(self, pin: str, salt: bytes) -> None:
        """New PIN and salt: every session ends.  The wrong-PIN budget stays as it is (a PIN
        change must not hand an attacker fresh guesses)."""
        self.pin, self.salt = pin, salt
        self._pin_key = derive_pin_key(pin, salt, self.iterations)
        self._nonce = self.random(NONCE_SIZE)
        self.close_all()

    def _expire(self, now: float) -> None:
        self._sessions = [s for s in self._sessions if now - s.opened < SESSION_MAX_AGE_S]
