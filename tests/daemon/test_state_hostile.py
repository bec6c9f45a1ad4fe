"""Hostile and damaged state files: the daemon always starts, keeps what can be trusted, sets
the rest aside, and never falls back to the factory PIN in silence (issue 16, findings 3 and 5).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bms_daemon.cli import main
from bms_daemon.config import from_table
from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.daemon import build
from bms_daemon.device import NotSavedError
from bms_daemon.state.layout import SettingsFile, counters_of, restore, settings_document
from bms_daemon.store import MAX_DOCUMENT_BYTES, FileStore, MemoryStore, StoreError, parse_document

OWNER_PIN = "482915"
HOSTILE = {
    "nested brackets": b"[" * 2000 + b"]" * 2000,
    "nested objects": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "NaN": b'{"version": 1, "soc": {"soc": NaN}}',
    "Infinity": b'{"version": 1, "soc": {"soc": -Infinity}}',
    "huge float": b'{"version": 1, "soc": {"soc": 1e999}}',
    "huge integer": b'{"version": 1, "history": {"charge_cycles": ' + b"9" * 5000 + b"}}",
    "UTF-16": json.dumps({"version": 1}).encode("utf-16"),
    "Latin-1": b'{"version": 1, "name": "\xe9t\xe9"}',
    "too large": b'{"pad": "' + b"x" * (MAX_DOCUMENT_BYTES + 10) + b'"}',
    "newer version": b'{"version": 999, "settings": {}}',
    "wrong types": b'{"version": "1", "settings": [1, 2], "soc": "full", "history": 3}',
    "not an object": b"[1, 2, 3]",
    "truncated": b'{"version": 1, "soc": {"val',
    "empty": b"",
    "NUL bytes": b"\x00" * 64,
}


def _counters() -> dict[str, Any]:
    return counters_of(Bms().snapshot())


def _owner_state(directory: Path) -> FileStore:
    """The state of a daemon that ran before: the owner's PIN and a setting, and counters."""
    store = FileStore(directory)
    owner = Bms().settings.with_values({"pin": OWNER_PIN, "tail_current": 7.5})
    store.save("settings", settings_document(owner), secret=True)
    store.save("bms", _counters())
    return store


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_parse_refuses_hostile_content_with_a_reason(content: bytes) -> None:
    if content.startswith(b'{"version": 999') or content.startswith(b'{"version": "1"'):
        assert isinstance(parse_document(content), dict)  # valid JSON: the reader judges it
        return
    with pytest.raises(ValueError, match=r".") as caught:
        parse_document(content)
    assert type(caught.value).__name__ == "UntrustedContentError"


def test_a_byte_order_mark_from_a_text_editor_is_accepted() -> None:
    assert parse_document(b"\xef\xbb\xbf" + b'{"version": 1}') == {"version": 1}


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_damaged_counters_never_cost_the_settings_or_the_pin(tmp_path: Path,
                                                             content: bytes) -> None:
    store = _owner_state(tmp_path)
    store.path("bms").write_bytes(content)
    restored = restore(store, {})
    assert restored.bms.settings.pin == OWNER_PIN
    assert restored.bms.settings.tail_current == 7.5
    assert not restored.pin_lost


@pytest.mark.parametrize("content", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_damaged_settings_file_locks_the_pin_instead_of_opening_it(tmp_path: Path,
                                                                     content: bytes) -> None:
    store = _owner_state(tmp_path)
    store.path("settings").write_bytes(content)
    with capture_logs() as logs:
        restored = restore(store, {})
    assert restored.pin_lost
    assert any(e["event"] == "pin_state_lost" for e in logs)
    assert list(tmp_path.glob("settings.json.corrupt-*"))
    # and the lost state stays lost: nothing saves the factory PIN as the trusted one
    with pytest.raises(NotSavedError):
        SettingsFile(store, pin_lost=True).save(restored.bms.settings)


def test_a_lost_pin_state_takes_the_configured_pin_when_there_is_one(tmp_path: Path) -> None:
    store = _owner_state(tmp_path)
    store.path("settings").unlink()
    restored = restore(store, {"pin": "135790"})
    assert not restored.pin_lost
    assert restored.bms.settings.pin == "135790"


def test_a_first_start_is_not_a_lost_pin(tmp_path: Path) -> None:
    restored = restore(FileStore(tmp_path / "new"), {})
    assert not restored.pin_lost
    assert restored.bms.settings.pin == "000000"


def test_one_bad_counter_part_costs_that_part_only(tmp_path: Path) -> None:
    store = _owner_state(tmp_path)
    bms = Bms()
    bms.command("set_soc", 64.0, 0.0)
    document = counters_of(bms.snapshot())
    document["history"] = {"charge_cycles": "many"}
    store.save("bms", document)
    with capture_logs() as logs:
        restored = restore(store, {})
    assert restored.bms.status.soc == pytest.approx(64.0)
    assert restored.bms.settings.pin == OWNER_PIN
    assert "history" in next(e for e in logs if e["event"] == "state_partly_restored")["dropped"]
    assert list(tmp_path.glob("bms.json.corrupt-*"))  # the original, for a human


def test_an_old_single_file_state_is_migrated_with_its_pin(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    old = Bms(settings=Bms().settings.with_values({"pin": OWNER_PIN}))
    store.save("bms", old.snapshot())
    restored = restore(store, {})
    assert restored.bms.settings.pin == OWNER_PIN
    assert not restored.pin_lost
    assert not restored.settings_on_disk  # saved as settings.json at start-up


def test_the_pin_file_is_owner_only(tmp_path: Path) -> None:
    store = _owner_state(tmp_path)
    assert os.stat(store.path("settings")).st_mode & 0o077 == 0


class FullDisk(MemoryStore):
    def save(self, name: str, data: dict[str, Any], *, secret: bool = False) -> None:
        raise StoreError(f"cannot write /state/{name}.json: No space left on device")


def test_a_setting_on_a_full_disk_is_in_force_but_reported_not_saved() -> None:
    bms = Bms()
    controller = Controller(bms, lambda: 0.0, save_settings=SettingsFile(FullDisk()).save)
    with pytest.raises(NotSavedError, match="lost at the next restart"):
        controller.set_setting("tail_current", 6.0)
    assert bms.settings.tail_current == 6.0
    with pytest.raises(NotSavedError):
        controller.command("factory_reset")


def test_an_accepted_setting_is_on_disk_when_the_call_returns(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    controller = Controller(Bms(), lambda: 0.0, save_settings=SettingsFile(store).save)
    controller.set_setting("tail_current", 6.0)
    assert restore(store, {}).bms.settings.tail_current == 6.0


# --- the property: any content in any state file ---------------------------------------------
DOCUMENTS = ("settings", "bms", "ble", "readout")
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(list(HOSTILE.values())),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["version", "settings", "soc", "history", "pin",
                                           "salt", "serial", "key", "balancer", "protection",
                                           "tail_current"]), inner, max_size=5),
        max_leaves=12,
    ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(damaged=st.dictionaries(st.sampled_from(DOCUMENTS), hostile_bytes, min_size=1))
def test_the_daemon_always_builds_and_never_opens_with_the_factory_pin(
    tmp_path_factory: pytest.TempPathFactory, damaged: dict[str, bytes]
) -> None:
    directory = tmp_path_factory.mktemp("state")
    store = _owner_state(directory)
    for name, content in damaged.items():
        store.path(name).write_bytes(content)
    config = from_table({"bms": {"state_directory": str(directory)},
                         "gpio": {"backend": "memory"}, "ble": {"enabled": False}}, "test")
    daemon = build(config, directory)  # never raises, whatever the files hold
    pin = daemon.controller.settings().pin
    lost = daemon.settings_file.pin_lost
    if "settings" not in damaged:
        assert (pin, lost) == (OWNER_PIN, False)
    else:
        assert lost or pin == OWNER_PIN or _explicit_pin(damaged["settings"]) == pin


def _explicit_pin(content: bytes) -> object:
    try:
        return json.loads(content)["settings"]["pin"]
    except Exception:
        return None


def test_reset_pin_opens_a_locked_device_again_and_keeps_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _owner_state(tmp_path)
    store.path("settings").write_bytes(b"\x00garbage")
    assert restore(store, {}).pin_lost
    assert main(["reset-pin", "--state-directory", str(tmp_path), "--pin", "246810"]) == 0
    restored = restore(FileStore(tmp_path), {})
    assert (restored.bms.settings.pin, restored.pin_lost) == ("246810", False)
    assert main(["reset-pin", "--state-directory", str(tmp_path)]) == 0
    drawn = capsys.readouterr().out.strip().splitlines()[-1]  # after the store's log lines
    assert len(drawn) == 6
    assert drawn.isdigit()
    settings_now = restore(FileStore(tmp_path), {}).bms.settings
    assert settings_now.pin == drawn
    assert main(["reset-pin", "--state-directory", str(tmp_path), "--pin", "12"]) == 2
