"""PIN challenge-response, session envelopes and wrong-PIN rate limiting (pure: time passed in).

Why this shape (docs/security.md has the full threat model):
- bless 0.3.0 gives no peer address in its read/write callbacks, so the server cannot keep
  per-connection state.  Instead each *write* proves its session: the body travels in an
  envelope ``body | seq (uint32 LE) | tag (8 bytes)`` where ``tag`` is an HMAC under the
  session key.  A central that did not prove the PIN cannot produce a tag, whoever else is
  connected.  Sequence numbers only go up, so a captured write cannot be replayed.
- *Reads* cannot carry a proof, so protected reads (and notifications) are allowed while at
  least one session is open.  The service closes every session whenever a central connects or
  disconnects (it watches BlueZ's Device1.Connected), so a session never outlives the link that
  opened it, and a newcomer cannot ride on a session opened before it arrived.
- The PIN never crosses the air: the client answers a random server nonce with
  ``HMAC(K, "smallbms-auth" | server nonce | client nonce)`` where ``K = PBKDF2(PIN, salt)``.
  The salt is random per device and changes with the PIN.  A 6-digit PIN has only 10^6 values:
  someone who records an exchange on an unencrypted link can still search them offline, which
  is why the characteristics also demand link encryption (pairing).
- Wrong PINs are rate-limited globally (there is no peer to limit): after
  ``FREE_ATTEMPTS`` failures every attempt is refused until a lock-out that doubles each time,
  up to ``MAX_LOCKOUT_S``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from gatt.codec import PIN_SIZE, READOUT_KEY_SIZE, BytesLike, CodecError

# --- our own choices (docs/security.md) -----------------------------------------------------
NONCE_SIZE = 16  # server and client nonces, bytes
SALT_SIZE = 16
PROOF_SIZE = 16  # truncated HMAC-SHA256 proving the PIN
TAG_SIZE = 8  # truncated HMAC-SHA256 on every protected write (2^-64 forgery odds per try)
SEQ_SIZE = 4
ENVELOPE_OVERHEAD = SEQ_SIZE + TAG_SIZE
KDF_ITERATIONS = 20_000  # PBKDF2-SHA256: ~20 ms on a Pi 3, once per PIN on the server
FREE_ATTEMPTS = 3  # wrong PINs allowed before the lock-out starts
FIRST_LOCKOUT_S = 5.0  # lock-out after the FREE_ATTEMPTS-th wrong PIN, doubled on each further one
MAX_LOCKOUT_S = 300.0
MAX_SESSIONS = 4  # concurrent authenticated sessions (several centrals may be connected)
SESSION_MAX_AGE_S = 3600.0  # a session ends after this even if no connection change was seen

_AUTH_LABEL = b"smallbms-auth"
_SESSION_LABEL = b"smallbms-session"
_WRITE_LABEL = b"smallbms-write"
_PIN_LABEL = b"smallbms-pin"
_KEY_LABEL = b"smallbms-key"

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
    last_seq: int = 0


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
    _pin_key: bytes = b""
    _nonce: bytes = b""
    _sessions: list[_Session] = field(default_factory=list)
    _failures: int = 0
    _locked_until: float = 0.0

    def __post_init__(self) -> None:
        self._pin_key = derive_pin_key(self.pin, self.salt, self.iterations)
        self._nonce = self.random(NONCE_SIZE)

    # -- queries --
    def session_open(self, now: float) -> bool:
        """True while at least one session is open (protected reads are allowed)."""
        self._expire(now)
        return bool(self._sessions)

    def challenge(self, now: float) -> bytes:
        """The auth characteristic's value (the nonce stays until an answer uses it)."""
        return encode_challenge(Challenge(self.version, self.session_open(now), self._nonce,
                                          self.salt, self.iterations))

    def locked_for(self, now: float) -> float:
        """Seconds until a PIN attempt is accepted again (0 = now)."""
        return max(0.0, self._locked_until - now)

    # -- authentication --
    def authenticate(self, response: bytes, now: float) -> None:
        """Check a client's answer; opens a session or raises ``AuthError``.

        Every answer, right or wrong, uses up the nonce, so one challenge gives one guess.
        """
        if len(response) != RESPONSE_SIZE:
            raise AuthError(AuthError.LENGTH,
                            f"auth answer must be {RESPONSE_SIZE} bytes, got {len(response)}")
        wait = self.locked_for(now)
        if wait > 0:
            raise AuthError(AuthError.LOCKED_OUT,
                            f"too many wrong PINs; try again in {wait:.0f} s", retry_after=wait)
        server_nonce, self._nonce = self._nonce, self.random(NONCE_SIZE)
        client_nonce, proof = response[:NONCE_SIZE], response[NONCE_SIZE:]
        expected = auth_proof(self._pin_key, server_nonce, client_nonce)
        if not hmac.compare_digest(proof, expected):
            self._failures += 1
            if self._failures >= FREE_ATTEMPTS:
                doublings = self._failures - FREE_ATTEMPTS
                lockout = min(MAX_LOCKOUT_S, FIRST_LOCKOUT_S * 2 ** min(doublings, 16))
                self._locked_until = now + lockout
            raise AuthError(AuthError.WRONG_PIN,
                            "wrong PIN (or a challenge already used: read it again)")
        self._failures = 0
        self._expire(now)
        if len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(0)  # the oldest goes; its owner re-authenticates
        self._sessions.append(_Session(session_key(self._pin_key, server_nonce, client_nonce),
                                       opened=now))

    def open(self, char_uuid: str, data: bytes, now: float) -> Opened:
        """Verify a protected write's envelope; the body, or ``AuthError`` (nothing changes)."""
        self._expire(now)
        if not self._sessions:
            raise AuthError(AuthError.NOT_AUTHORIZED, "authenticate with the PIN first")
        if len(data) < ENVELOPE_OVERHEAD:
            raise AuthError(AuthError.LENGTH, "write too short for the session envelope")
        body = bytes(data[:-ENVELOPE_OVERHEAD])
        (seq,) = struct.unpack("<I", data[-ENVELOPE_OVERHEAD:-TAG_SIZE])
        tag = bytes(data[-TAG_SIZE:])
        for session in self._sessions:
            if hmac.compare_digest(tag, write_tag(session.key, char_uuid, seq, body)):
                if seq <= session.last_seq:
                    raise AuthError(AuthError.NOT_AUTHORIZED, "replayed write refused")
                session.last_seq = seq
                return Opened(body=body, seq=seq, key=session.key)
        raise AuthError(AuthError.NOT_AUTHORIZED, "write not signed by an open session")

    # -- changes --
    def close_all(self) -> None:
        """End every session (a central connected or disconnected, or the PIN changed)."""
        self._sessions.clear()

    def change_pin(self, pin: str, salt: bytes) -> None:
        """New PIN and salt: every session ends and the wrong-PIN counter restarts."""
        self.pin, self.salt = pin, salt
        self._pin_key = derive_pin_key(pin, salt, self.iterations)
        self._nonce = self.random(NONCE_SIZE)
        self._failures = 0
        self._locked_until = 0.0
        self.close_all()

    def _expire(self, now: float) -> None:
        self._sessions = [s for s in self._sessions if now - s.opened < SESSION_MAX_AGE_S]
