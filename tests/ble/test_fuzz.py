"""Random bytes written to every writable characteristic, through the bus.

Whatever arrives, the daemon answers with an ATT error or accepts a harmless value, keeps
running, and never changes a setting.  Two kinds of garbage:
- raw bytes, as any app in range could send (no PIN session envelope);
- bytes inside a valid session envelope (the attacker knows the PIN, or it is a buggy app),
  restricted to bodies that are not a valid value, so "never changes a setting" still holds.
Wrong-PIN answers (32-byte writes to ``auth``) are left out: they would trip the wrong-PIN
lock-out, which test_pin.py covers.
"""

from __future__ import annotations

import pytest
from ble_harness import DaemonUnderTest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gatt import codec, profile, security
from gatt.client import ClientError, LinkLost, NotSmallBms

pytestmark = pytest.mark.ble

WRITABLE = sorted(key for key, ch in profile.CHARACTERISTICS.items() if ch.writable)
ENVELOPED = sorted(key for key, ch in profile.CHARACTERISTICS.items() if ch.enveloped)
RAW_EXAMPLES = 15
SEALED_EXAMPLES = 15

def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _expect_refusal_or_harmless(bms: DaemonUnderTest, write: object) -> None:
    try:
        bms.run(write, timeout=20)  # type: ignore[arg-type]
    except (LinkLost, NotSmallBms):
        raise
    except ClientError:
        pass  # an ATT error: the daemon refused it, as it should


def _valid_body(key: str, body: bytes) -> bool:
    """Would the daemon accept ``body`` (inside an envelope) as a real value or command?"""
    try:
        if key.startswith("setting."):
            codec.SETTING_CODECS[key.removeprefix("setting.")].decode(body)
        elif key == "control_point":
            codec.decode_command(body)
        elif key == "battery_select":
            codec.decode_battery_select(body)
        else:
            return False
    except codec.CodecError:
        return False
    return True


@pytest.mark.parametrize("key", WRITABLE)
def test_raw_garbage_changes_nothing(bms: DaemonUnderTest, key: str) -> None:
    c = bms.shared()
    before = bms.run(c.settings())

    @fuzz(RAW_EXAMPLES)
    @given(data=st.binary(max_size=64))
    def write(data: bytes) -> None:
        assume(not (key == "auth" and len(data) == security.RESPONSE_SIZE))
        _expect_refusal_or_harmless(bms, c.write_raw(key, data))

    write()
    bms.assert_alive()
    assert bms.run(c.settings()) == before


@pytest.mark.parametrize("key", ENVELOPED)
def test_sealed_garbage_changes_nothing(bms: DaemonUnderTest, key: str) -> None:
    c = bms.shared()
    before = bms.run(c.settings())

    @fuzz(SEALED_EXAMPLES)
    @given(data=st.binary(max_size=48))
    def write(data: bytes) -> None:
        assume(not _valid_body(key, data))
        _expect_refusal_or_harmless(bms, c.write_protected(key, data))

    write()
    bms.assert_alive()
    assert bms.run(c.settings()) == before
    assert bms.run(c.status()).voltage is not None
