"""One device's frames: each nonce once, replays ignored, a wrong key or record said once."""

from __future__ import annotations

import itertools

import structlog
from hypothesis import given
from hypothesis import strategies as st

from bms_daemon.sources.victron import encode, records
from bms_daemon.sources.victron.frames import DeviceFrames

KEY = bytes.fromhex("0df4d0395b7d1a876c0c33ecb9e70dcd")
NEW_KEY = bytes.fromhex("5ef4d0395b7d1a876c0c33ecb9e70dcd")
CELLS = [3.30, 3.31, 3.29, 3.30]


def battery(resync_after: float = 10.0) -> DeviceFrames:
    return DeviceFrames("house-1", KEY, records.RECORD_SMART_LITHIUM, resync_after)


def frame(nonce: int, cells: list[float] = CELLS, key: bytes = KEY) -> bytes:
    return encode.manufacturer_data(
        records.RECORD_SMART_LITHIUM, encode.lithium_record(cells), key, nonce,
        encode.PRODUCT_SMART_LITHIUM,
    )


def test_each_nonce_is_decoded_once_and_its_copies_renew_its_age() -> None:
    dev = battery()
    first = dev.offer(frame(10), now=0.0, rssi=-70)
    assert first is not None
    assert dev.offer(frame(10), now=5.0) is first  # the device repeats it: still current
    assert dev.age(6.0) == 1.0
    assert dev.offer(frame(11), now=7.0) is not first
    assert dev.counters.accepted == 2
    assert dev.counters.repeated == 1
    assert dev.rssi == -70
    assert dev.age(9.0) == 2.0


def test_the_current_nonce_with_other_bytes_is_a_forgery_and_ignored() -> None:
    dev = battery()
    dev.offer(frame(10, [3.30] * 4), now=0.0)
    assert dev.offer(frame(10, [2.50] * 4), now=5.0) is None
    assert dev.counters.replayed == 1
    assert dev.age(5.0) == 5.0


def test_old_nonces_replayed_are_ignored_while_the_device_is_heard() -> None:
    dev = battery()
    dev.offer(frame(100, [3.30] * 4), now=0.0)
    assert dev.offer(frame(99, [2.50] * 4), now=1.0) is None
    assert dev.offer(frame(99, [3.30] * 4), now=1.0) is None
    assert dev.offer(frame((100 - 30000) % 0x10000, [2.50] * 4), now=2.0) is None
    assert dev.last_frame is not None
    assert isinstance(dev.last_frame.record, records.LithiumRecord)
    assert dev.last_frame.record.cells == (3.30,) * 4


def test_nonce_wraps_around() -> None:
    dev = battery()
    assert dev.offer(frame(0xFFFF), now=0.0) is not None
    assert dev.offer(frame(0x0000), now=1.0) is not None
    assert dev.offer(frame(0x0003), now=2.0) is not None


def test_a_device_that_restarted_its_counter_is_heard_again_once_stale() -> None:
    dev = battery(resync_after=10.0)
    dev.offer(frame(5000), now=0.0)
    assert dev.offer(frame(3), now=5.0) is None  # still fresh: could be a replay
    assert dev.offer(frame(4), now=10.5) is not None  # stale: the comms rules already act
    assert dev.offer(frame(5), now=11.0) is not None


def test_wrong_key_is_reported_once_and_again_after_it_decoded() -> None:
    dev = battery()
    with structlog.testing.capture_logs() as logs:
        for nonce in range(1, 6):
            assert dev.offer(frame(nonce, key=NEW_KEY), now=float(nonce)) is None
    wrong = [e for e in logs if e["event"] == "victron_wrong_key"]
    assert len(wrong) == 1
    assert wrong[0]["device"] == "house-1"
    assert "PIN" in wrong[0]["action"]
    assert dev.counters.wrong_key == 5
    with structlog.testing.capture_logs() as logs:
        assert dev.offer(frame(7), now=7.0) is not None
        dev.offer(frame(8, key=NEW_KEY), now=8.0)
    assert [e["event"] for e in logs] == ["victron_key_decodes_again", "victron_wrong_key"]


def test_another_record_type_is_logged_once() -> None:
    dev = battery()
    shunt = encode.manufacturer_data(
        records.RECORD_BATTERY_MONITOR, encode.monitor_record(voltage=13.0, current=1.0),
        KEY, 1, encode.PRODUCT_SMARTSHUNT,
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            assert dev.offer(shunt, now=0.0) is None
    assert [e["event"] for e in logs] == ["victron_other_record"]
    assert "battery monitor" in logs[0]["record"]
    assert dev.counters.other_record == 3


def test_truncated_and_foreign_data_never_count_as_a_frame() -> None:
    dev = battery()
    with structlog.testing.capture_logs() as logs:
        assert dev.offer(frame(1)[:-4], now=0.0) is None
        assert dev.offer(frame(2)[:-4], now=0.0) is None
        assert dev.offer(b"\x01\x02\x03", now=0.0) is None
    assert [e["event"] for e in logs] == ["victron_truncated_record", "victron_not_a_record"]
    assert dev.last_frame is None
    # the truncated frame did not use up its nonce: the whole frame still counts
    assert dev.offer(frame(1), now=1.0) is not None


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=30)), max_size=30))
def test_any_mix_of_frames_never_goes_back_to_an_older_nonce(
    items: list[tuple[int, bytes]],
) -> None:
    dev = battery(resync_after=1e9)
    accepted: list[int] = []
    for nonce, junk in items:
        for data in (frame(nonce), junk):
            got = dev.offer(data, now=0.0)
            if got is not None and (not accepted or got.nonce != accepted[-1]):
                accepted.append(got.nonce)
    for before, after in itertools.pairwise(accepted):
        assert 0 < (after - before) % 0x10000 < 0x8000
