"""PIN challenge-response, session envelopes and the wrong-PIN lock-out (pure logic)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatt import security
from gatt.security import AuthError, Guard, answer_challenge, decode_challenge, seal

UUID = "b8d00017-3f1e-4c8a-9e5b-736d616c6c62"
FAST = 10  # PBKDF2 iterations in tests: the logic, not the cost, is under test


def counter_random() -> Callable[[int], bytes]:
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "little")


def guard(pin: str = "123456") -> Guard:
    return Guard(pin=pin, salt=b"s" * 16, iterations=FAST, random=counter_random())


def login(g: Guard, pin: str, now: float = 0.0) -> security.ClientSession:
    response, session = answer_challenge(pin, decode_challenge(g.challenge(now)))
    g.authenticate(response, now)
    return session


def test_right_pin_opens_a_session_and_the_pin_never_appears_in_the_exchange() -> None:
    g = guard("123456")
    challenge = g.challenge(0)
    response, _ = answer_challenge("123456", decode_challenge(challenge))
    assert b"123456" not in challenge + response
    assert not g.session_open(0)
    g.authenticate(response, 0)
    assert g.session_open(0)
    assert decode_challenge(g.challenge(0)).session_open


def test_wrong_pin_is_refused_and_opens_nothing() -> None:
    g = guard("123456")
    response, _ = answer_challenge("000000", decode_challenge(g.challenge(0)))
    with pytest.raises(AuthError) as info:
        g.authenticate(response, 0)
    assert info.value.kind == AuthError.WRONG_PIN
    assert not g.session_open(0)


def test_a_challenge_answers_only_once() -> None:
    g = guard()
    response, _ = answer_challenge("123456", decode_challenge(g.challenge(0)))
    g.authenticate(response, 0)
    with pytest.raises(AuthError):
        g.authenticate(response, 1)  # a replayed answer is a wrong one


def _wrong(g: Guard, now: float, device: str = "A") -> AuthError:
    response, _ = answer_challenge("999999", decode_challenge(g.challenge(now)))
    with pytest.raises(AuthError) as info:
        g.authenticate(response, now, device=device)
    return info.value


def test_a_wrong_pin_locks_that_central_with_a_doubling_delay_even_for_the_right_pin() -> None:
    g = guard("123456")
    assert _wrong(g, 0.0).kind == AuthError.WRONG_PIN
    assert g.locked_for(0.0, "A") == security.FIRST_LOCKOUT_S
    right, _ = answer_challenge("123456", decode_challenge(g.challenge(1.0)))
    with pytest.raises(AuthError) as info:
        g.authenticate(right, 1.0, device="A")
    assert info.value.kind == AuthError.LOCKED_OUT
    assert info.value.retry_after == pytest.approx(security.FIRST_LOCKOUT_S - 1)
    assert _wrong(g, security.FIRST_LOCKOUT_S).kind == AuthError.WRONG_PIN
    assert g.locked_for(security.FIRST_LOCKOUT_S, "A") == 2 * security.FIRST_LOCKOUT_S
    login(g, "123456", 3 * security.FIRST_LOCKOUT_S)  # after the wait the right PIN works
    assert g.lockout.wait("A", 3 * security.FIRST_LOCKOUT_S) == 0


def test_the_global_budget_holds_whatever_the_centrals_and_a_login_does_not_refill_it() -> None:
    g = guard("123456")
    for i in range(security.FREE_ATTEMPTS):
        assert _wrong(g, 0.0, device=f"attacker{i}").kind == AuthError.WRONG_PIN
    # a new address, and the owner logging in, get no more guesses for anyone
    assert _wrong(g, 1.0, device="fresh").kind == AuthError.LOCKED_OUT
    assert g.locked_for(1.0, "owner") == pytest.approx(security.GLOBAL_INTERVAL_S - 1)
    now = security.GLOBAL_INTERVAL_S
    login(g, "123456", now)  # the owner gets in once the budget has a slot again
    assert _wrong(g, now, device="fresh").kind == AuthError.WRONG_PIN
    assert _wrong(g, now + 1, device="fresh2").kind == AuthError.LOCKED_OUT


def test_the_sustained_rate_is_one_wrong_pin_per_interval() -> None:
    g = guard("123456")
    now, evaluated, day = 0.0, 0, 86_400.0
    while now < day:
        wait = g.lockout.wait(f"dev{evaluated}", now)
        now += max(wait, 0.1)
        if _wrong(g, now, device=f"dev{evaluated}").kind == AuthError.WRONG_PIN:
            evaluated += 1
    assert evaluated <= day / security.GLOBAL_INTERVAL_S + security.FREE_ATTEMPTS


def test_per_central_lockout_never_exceeds_the_maximum() -> None:
    lockout = security.Lockout()
    for i in range(40):
        lockout.failed("A", i * 1000.0)
    assert lockout.devices["A"][1] - 39_000.0 == security.MAX_LOCKOUT_S


@pytest.mark.parametrize("document", [
    None, [], {"version": 2}, {"version": 1, "earliest": "soon", "devices": {}},
    {"version": 1, "earliest": float("nan"), "devices": {}},
    {"version": 1, "earliest": 0, "devices": []},
])
def test_an_untrustworthy_saved_lockout_counts_the_budget_as_spent(document: object) -> None:
    lockout = security.Lockout.from_document(document, 1000.0)
    assert lockout.wait("anyone", 1000.0) == pytest.approx(security.GLOBAL_INTERVAL_S)


def test_the_lockout_survives_a_save_and_a_clock_far_ahead_does_not_lock_for_good() -> None:
    lockout = security.Lockout()
    for _ in range(security.FREE_ATTEMPTS):
        lockout.failed("A", 0.0)
    again = security.Lockout.from_document(lockout.document(), 10.0)
    assert again.wait("B", 10.0) == lockout.wait("B", 10.0)
    ahead = security.Lockout(earliest=1e12)
    restored = security.Lockout.from_document(ahead.document(), 0.0)
    assert restored.wait("B", 0.0) <= security.FREE_ATTEMPTS * security.GLOBAL_INTERVAL_S


def test_sealed_writes_open_once_in_order() -> None:
    g = guard()
    s = login(g, "123456")
    opened = g.open(UUID, seal(s.key, UUID, 1, b"\x01"), 1)
    assert (opened.body, opened.seq) == (b"\x01", 1)
    with pytest.raises(AuthError, match="replayed"):
        g.open(UUID, seal(s.key, UUID, 1, b"\x01"), 2)
    assert g.open(UUID, seal(s.key, UUID, 5, b"\x00"), 2).seq == 5


def test_a_write_sealed_for_another_characteristic_is_refused() -> None:
    g = guard()
    s = login(g, "123456")
    other = UUID.replace("0017", "0016")
    with pytest.raises(AuthError) as info:
        g.open(UUID, seal(s.key, other, 1, b"\x01"), 1)
    assert info.value.kind == AuthError.NOT_AUTHORIZED


def test_without_a_session_every_write_is_not_authorised() -> None:
    g = guard()
    with pytest.raises(AuthError) as info:
        g.open(UUID, b"\x01" * 20, 0)
    assert info.value.kind == AuthError.NOT_AUTHORIZED


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_never_pass_as_a_sealed_write(data: bytes) -> None:
    g = guard()
    login(g, "123456")
    with pytest.raises(AuthError):
        g.open(UUID, data, 1)


def test_closing_ends_every_session() -> None:
    g = guard()
    s1 = login(g, "123456")
    s2 = login(g, "123456")
    assert s1.key != s2.key
    assert g.open(UUID, seal(s2.key, UUID, 1, b"x"), 0).key == s2.key
    g.close_all()
    assert not g.session_open(0)
    with pytest.raises(AuthError):
        g.open(UUID, seal(s1.key, UUID, 2, b"x"), 0)


def test_sessions_expire_after_their_maximum_age() -> None:
    g = guard()
    login(g, "123456", now=0)
    assert g.session_open(security.SESSION_MAX_AGE_S - 1)
    assert not g.session_open(security.SESSION_MAX_AGE_S)


def test_at_most_max_sessions_the_oldest_goes_first() -> None:
    g = guard()
    sessions = [login(g, "123456") for _ in range(security.MAX_SESSIONS + 1)]
    with pytest.raises(AuthError):
        g.open(UUID, seal(sessions[0].key, UUID, 1, b"x"), 0)
    g.open(UUID, seal(sessions[-1].key, UUID, 1, b"x"), 0)


def test_changing_the_pin_closes_sessions_and_needs_the_new_pin() -> None:
    g = guard("123456")
    login(g, "123456")
    g.change_pin("654321", b"t" * 16)
    assert not g.session_open(0)
    challenge = decode_challenge(g.challenge(0))
    assert challenge.salt == b"t" * 16
    old, _ = answer_challenge("123456", challenge)
    with pytest.raises(AuthError):
        g.authenticate(old, 0)
    login(g, "654321", security.FIRST_LOCKOUT_S)  # after the wrong one's wait


@settings(deadline=None)
@given(st.text(alphabet="0123456789", min_size=6, max_size=6), st.integers(0, 2**32 - 1))
def test_pin_and_key_masks_round_trip_and_hide_the_value(pin: str, seq: int) -> None:
    key = bytes(range(32))
    masked = security.mask_pin(key, seq, pin)
    assert security.unmask_pin(key, seq, masked) == pin
    readout = bytes(range(16))
    assert security.unmask_key(key, seq, security.mask_key(key, seq, readout)) == readout
    assert security.mask_key(key, seq, readout) != readout


def test_answers_of_the_wrong_length_are_length_errors() -> None:
    with pytest.raises(AuthError) as info:
        guard().authenticate(b"\x00" * 31, 0)
    assert info.value.kind == AuthError.LENGTH
