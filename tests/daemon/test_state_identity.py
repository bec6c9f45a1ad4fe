"""The device serial: one identity for Bluetooth and MQTT (bms_daemon/state/identity.py).

Whichever side asks first creates it; every later ask, from either side and after a restart,
gets the same one.  Older installs keep the serial their phones and Home Assistant know.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bms_daemon.state.identity import device_serial
from bms_daemon.store import FileStore, MemoryStore, StoreError

SALT = "00" * 16


def test_a_fresh_install_draws_one_serial_and_keeps_it(tmp_path: Path) -> None:
    first = device_serial(FileStore(tmp_path))
    assert first.startswith("SB")
    assert len(first) == 12
    assert int(first[2:], 16) >= 0
    # a restart (a new store on the same directory) and a second caller get the same one
    assert device_serial(FileStore(tmp_path)) == first
    assert json.loads((tmp_path / "identity.json").read_text())["serial"] == first
    assert not list(tmp_path.glob("*.tmp*"))  # written whole (the store's atomic save)


def test_an_existing_bluetooth_serial_wins_over_mqtt(tmp_path: Path) -> None:
    # an install where both sides ran before the shared identity, with different serials
    store = FileStore(tmp_path)
    store.save("mqtt", {"serial": "SBMMMMMMMMMM"})
    store.save("ble", {"salt": SALT, "serial": "SBAAAAAAAAAA"}, secret=True)
    assert device_serial(store) == "SBAAAAAAAAAA"
    # from then on it never changes, whatever happens to ble.json
    store.save("ble", {"salt": SALT, "serial": "SBBBBBBBBBBB"}, secret=True)
    assert device_serial(FileStore(tmp_path)) == "SBAAAAAAAAAA"


def test_an_mqtt_only_install_keeps_its_serial() -> None:
    store = MemoryStore()
    store.save("mqtt", {"serial": "SB0123456789"})
    assert device_serial(store) == "SB0123456789"
    assert store.load("identity") == {"serial": "SB0123456789"}


@pytest.mark.parametrize("bad", ["", "SB/123", "a b", "#", "x" * 33, 42, None, ["SB1"]])
def test_a_serial_unfit_for_a_topic_is_not_taken(bad: Any) -> None:
    store = MemoryStore()
    store.save("ble", {"salt": SALT, "serial": bad})
    serial = device_serial(store)
    assert serial != bad
    assert serial.startswith("SB")


def test_a_damaged_identity_falls_back_to_the_bluetooth_serial(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.save("ble", {"salt": SALT, "serial": "SBAAAAAAAAAA"}, secret=True)
    (tmp_path / "identity.json").write_bytes(b"\xff\xfe garbage")
    assert device_serial(store) == "SBAAAAAAAAAA"


class FullDisk(MemoryStore):
    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        raise StoreError(f"cannot write /state/{name}.json: No space left on device")


def test_an_unsaved_serial_is_still_one_answer_until_the_next_start() -> None:
    store = FullDisk()
    first = device_serial(store)
    assert device_serial(store) == first  # Bluetooth and MQTT still agree
    assert device_serial(FullDisk()) != first  # nothing was kept: a restart draws again
