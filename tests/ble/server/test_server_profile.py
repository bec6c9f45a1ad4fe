"""The profile table is consistent, and docs/gatt-profile.md documents exactly that table."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from bms_daemon.core.settings import Settings
from gatt import codec, profile, security
from gatt.profile import Access, Prop

DOC = Path(__file__).resolve().parents[3] / "docs" / "gatt-profile.md"


def test_uuids_are_unique_and_lower_case() -> None:
    uuids = [c.uuid for c in profile.CHARACTERISTICS.values()]
    assert len(uuids) == len(set(uuids))
    assert all(u == u.lower() for u in uuids)
    assert len({s.uuid for s in profile.SERVICES}) == len(profile.SERVICES)


def test_only_device_information_and_battery_level_are_open() -> None:
    open_keys = {c.key for c in profile.CHARACTERISTICS.values() if c.access is Access.OPEN}
    assert open_keys == {"manufacturer", "model", "serial", "firmware", "battery_level"}
    for c in profile.CHARACTERISTICS.values():
        assert c.encrypted == (c.access is not Access.OPEN)


def test_every_setting_has_a_characteristic_except_the_pin() -> None:
    settings = {k.removeprefix("setting.") for k in profile.CHARACTERISTICS
                if k.startswith("setting.")}
    assert settings == set(Settings.names()) - {"pin"}
    for name in settings:
        ch = profile.CHARACTERISTICS[f"setting.{name}"]
        assert ch.write_size == codec.SETTING_CODECS[name].size
        assert Prop.READ in ch.props
        assert Prop.WRITE in ch.props


def test_presentation_descriptors_are_seven_bytes_in_the_sig_namespace() -> None:
    for c in profile.CHARACTERISTICS.values():
        raw = c.presentation.encode()
        assert len(raw) == 7
        assert struct.unpack("<BbHBH", raw)[3] == profile.NAMESPACE_SIG
        assert c.description


def test_vereg_uuids_follow_victrons_register_pattern() -> None:
    assert profile.uuid_of("vereg.soc") == "65970fff-4bda-4c1e-af4b-551c4cf74769"
    assert profile.uuid_of("vereg.keep_alive") == "6597ffff-4bda-4c1e-af4b-551c4cf74769"
    assert profile.VEREG.uuid == "65970000-4bda-4c1e-af4b-551c4cf74769"


def _doc_rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `([a-z_.]+)` \| `([0-9a-fA-Fx-]+)…?` \| ([^|]+) \| (\w+) \|", line)
        if m:
            rows[m.group(1)] = [m.group(2), m.group(3).strip(), m.group(4)]
    return rows


def test_the_document_lists_every_characteristic_with_its_uuid_properties_and_access() -> None:
    rows = _doc_rows()
    assert set(rows) == set(profile.CHARACTERISTICS)
    for key, (uuid, props, access) in rows.items():
        ch = profile.CHARACTERISTICS[key]
        short = uuid.removeprefix("0x").lower()
        assert short in ch.uuid.replace("-", "")[:8] or ch.uuid.startswith(short), key
        assert access.lower() == ch.access.value, key
        words = {w.strip() for w in props.split(",")}
        expected = {
            Prop.READ: "read", Prop.WRITE: "write", Prop.NOTIFY: "notify",
            Prop.INDICATE: "indicate", Prop.WRITE_WITHOUT_RESPONSE: "write without response",
        }
        assert words == {v for p, v in expected.items() if p in ch.props}, key


@pytest.mark.parametrize(("title", "size"), [
    ("status", codec.STATUS_SIZE), ("bank", codec.BANK_SIZE), ("history", codec.HISTORY_SIZE),
])
def test_the_document_gives_the_record_sizes_of_the_code(title: str, size: int) -> None:
    assert f"### {title} ({size} bytes)" in DOC.read_text()


def test_the_document_gives_the_auth_sizes_of_the_code() -> None:
    text = DOC.read_text()
    assert f"challenge (read, {security.CHALLENGE_SIZE} bytes)" in text
    assert f"answer (write, {security.RESPONSE_SIZE} bytes)" in text
    assert f"at most {codec.BATTERY_MAX_SIZE})" in text


def test_the_document_lists_every_att_error_code() -> None:
    text = DOC.read_text()
    for code in profile.ATT_ERROR_MESSAGES:
        assert f"`0x{code:02X}`" in text or f"`0x{code:02x}`" in text
