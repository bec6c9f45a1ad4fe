"""When a new instant-readout frame goes on air, and what it says."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from readout_helpers import make_status, victron_decode
from victron_ble.devices import LynxSmartBMS
from victron_ble.exceptions import AdvertisementKeyMismatchError

from bms_daemon.core.settings import Settings
from bms_daemon.store import MemoryStore
from gatt.broadcaster import MIN_REFRESH_INTERVAL_S, ReadoutBroadcaster
from gatt.readout import KeyMismatchError, decode_manufacturer_data, parse_header
from gatt.readout_keys import ReadoutKeys


class Knobs:
    """The settings in force, changeable by a test like the BLE side would change them."""

    def __init__(self) -> None:
        self.settings = Settings()

    def __call__(self) -> Settings:
        return self.settings

    def set(self, **values: Any) -> None:
        self.settings = self.settings.with_values(values)


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        if self.broken:
            raise OSError(30, "Read-only file system")
        super().save(name, data, secret=secret)


def make(
    store: MemoryStore | None = None, window: int = 256, **kwargs: Any
) -> tuple[ReadoutBroadcaster, Knobs]:
    knobs = Knobs()
    keys = ReadoutKeys(store if store is not None else MemoryStore(), window=window)
    return ReadoutBroadcaster(keys, knobs, **kwargs), knobs


def nonce_of(payload: bytes | None) -> int:
    assert payload is not None
    return parse_header(payload).nonce


def test_first_frame_is_immediate_and_decodes_to_the_status() -> None:
    broadcaster, _ = make(product_id=0xA3E7)
    status = make_status()
    payload = broadcaster.payload_for(status, now=5.0)
    assert payload is not None
    decoded = victron_decode(payload, broadcaster.keys.key)
    assert decoded.get_soc() == 80.0
    assert decoded.get_voltage() == 13.21
    assert decoded.get_current() == -5.0
    assert decoded.get_remaining_mins() == 840
    assert decoded.get_consumed_ah() == 20.0
    assert decoded.get_battery_temperature() == 25
    assert parse_header(payload).product_id == 0xA3E7


def test_unchanged_figures_repeat_the_same_frame() -> None:
    broadcaster, _ = make()
    status = make_status()
    first = broadcaster.payload_for(status, 0.0)
    # a change below the record's resolution (0.01 V) is not a change
    later = broadcaster.payload_for(make_status(voltage=13.2101, t=200.0), 60.0)
    assert later == first


def test_a_change_gets_a_new_nonce_at_most_about_once_a_second() -> None:
    broadcaster, _ = make()
    first = broadcaster.payload_for(make_status(soc=80.0), 0.0)
    soon = broadcaster.payload_for(make_status(soc=79.9), 0.5)
    assert soon == first  # too soon: the previous frame again
    due = broadcaster.payload_for(make_status(soc=79.9), MIN_REFRESH_INTERVAL_S)
    assert nonce_of(due) == nonce_of(first) + 1
    assert decode_manufacturer_data(due, broadcaster.keys.key).soc == 79.9  # type: ignore[arg-type]


def test_a_one_hz_caller_refreshes_every_tick_when_figures_keep_changing() -> None:
    broadcaster, _ = make()
    nonces = []
    now = 0.0
    for tick in range(30):
        now += 1.0 + (-0.05 if tick % 2 else 0.05)  # a little jitter
        nonces.append(nonce_of(broadcaster.payload_for(make_status(soc=80 - tick / 10), now)))
    assert nonces == list(range(nonces[0], nonces[0] + 30))


def test_readout_off_or_bluetooth_off_sends_nothing_and_resumes_fresh() -> None:
    broadcaster, knobs = make()
    status = make_status()
    before = nonce_of(broadcaster.payload_for(status, 0.0))
    knobs.set(instant_readout=False)
    assert broadcaster.payload_for(status, 1.0) is None
    knobs.set(instant_readout=True, bluetooth=False)
    assert broadcaster.payload_for(status, 2.0) is None
    knobs.set(bluetooth=True)
    again = broadcaster.payload_for(status, 2.1)
    assert nonce_of(again) > before  # a fresh frame, even with the same figures


def test_pin_change_rotates_the_key_old_key_fails_new_key_decodes() -> None:
    broadcaster, knobs = make()
    status = make_status()
    old_key = broadcaster.keys.key
    before = broadcaster.payload_for(status, 0.0)
    assert before is not None
    knobs.set(pin="246810")
    after = broadcaster.payload_for(status, 0.1)  # at once, not a second later
    assert after is not None
    new_key = broadcaster.keys.key
    assert new_key[0] != old_key[0]
    assert after[7] == new_key[0]
    assert nonce_of(after) > nonce_of(before)
    with pytest.raises(AdvertisementKeyMismatchError):
        LynxSmartBMS(old_key.hex()).parse(after)
    with pytest.raises(KeyMismatchError):
        decode_manufacturer_data(after, old_key)
    assert victron_decode(after, new_key).get_soc() == 80.0


def test_restart_with_the_same_store_keeps_the_key_and_moves_the_nonce_on() -> None:
    store = MemoryStore()
    first, _ = make(store)
    payloads = [first.payload_for(make_status(soc=50 + i), float(i)) for i in range(5)]
    second, _ = make(store)
    resumed = second.payload_for(make_status(soc=50), 100.0)
    assert resumed is not None
    assert nonce_of(resumed) > max(nonce_of(p) for p in payloads)
    assert second.keys.key == first.keys.key
    assert victron_decode(resumed, first.keys.key).get_soc() == 50.0


def test_store_failure_keeps_the_last_frame_on_air_until_saves_work() -> None:
    store = FlakyStore()
    broadcaster, _ = make(store, window=1)  # every refresh needs a save
    keys = broadcaster.keys
    on_air = broadcaster.payload_for(make_status(soc=70.0), 0.0)
    store.broken = True
    assert broadcaster.payload_for(make_status(soc=69.0), 5.0) == on_air
    assert broadcaster.payload_for(make_status(soc=68.0), 10.0) == on_air
    store.broken = False
    fresh = broadcaster.payload_for(make_status(soc=68.0), 15.0)
    assert fresh is not None
    assert nonce_of(fresh) == nonce_of(on_air) + 1
    assert victron_decode(fresh, keys.key).get_soc() == 68.0


def test_store_failure_before_any_frame_sends_nothing() -> None:
    store = FlakyStore()
    broadcaster, _ = make(store)
    store.broken = True
    assert broadcaster.payload_for(make_status(), 0.0) is None


def test_bad_product_id_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bits"):
        make(product_id=0x1_0000)


def test_from_store_wiring() -> None:
    store = MemoryStore()
    broadcaster = ReadoutBroadcaster.from_store(store, Settings, product_id=0xA3EC)
    payload = broadcaster.payload_for(dataclasses.replace(make_status(), soc=12.3), 0.0)
    assert victron_decode(payload, broadcaster.keys.key).get_soc() == 12.3  # type: ignore[arg-type]
    assert "readout" in store.secret
