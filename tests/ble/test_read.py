"""Every characteristic read through real D-Bus: daemon (bless) <-> virtual BlueZ <-> bleak.

The bank is 2 x 2 batteries (24 V), so the bank page has four batteries of four cells each;
the current sensor has no noise, so a status read twice in a row is usually identical and the
VE-Reg figures can be compared with it exactly.
"""

from __future__ import annotations

import json

import pytest
from ble_harness import CENTRAL, DaemonUnderTest
from bleak import BleakClient
from bleak.exc import BleakError

from bms_daemon.store import FileStore
from gatt import codec, profile, security
from gatt.client import NotAuthenticated, SmallBmsClient, scan
from gatt.readout_keys import read_key

pytestmark = pytest.mark.ble

DAEMON_SOURCE = {"series": 2, "parallel": 2, "soc": 70.0, "load": 8.0, "current_noise": 0.0}


def test_open_characteristics_need_no_pin(bms: DaemonUnderTest) -> None:
    with bms.session(pin=None) as c:
        info = bms.run(c.device_information())
        level = bms.run(c.battery_level())
    assert info["model"] == "smallBMS NG"
    assert info["manufacturer"]
    assert info["serial"]
    assert f"profile {profile.PROFILE_VERSION}" in info["firmware"]
    assert 0 <= level <= 100


def test_every_protected_read_is_refused_without_the_pin(bms: DaemonUnderTest) -> None:
    with bms.session(pin=None) as c:
        for read in (c.status, c.bank, c.history, c.settings):
            with pytest.raises(NotAuthenticated, match="PIN"):
                bms.run(read())


def test_status_with_the_pin(bms: DaemonUnderTest) -> None:
    with bms.session() as c:
        status = bms.run(c.status())
    assert status.voltage is not None
    assert 24.0 < status.voltage < 29.0  # two 12.8 V batteries in series
    assert status.current == pytest.approx(-8.0, abs=0.01)  # the simulated load
    assert status.mode is True
    assert status.allowed_to_charge
    assert status.allowed_to_discharge
    assert status.temperature == pytest.approx(25.0, abs=1.0)


def test_bank_lists_every_battery_and_every_cell(bms: DaemonUnderTest) -> None:
    with bms.session() as c:
        bank = bms.run(c.bank())
    assert bank is not None
    assert (bank.batteries, bank.series, bank.parallel, bank.cells) == (4, 2, 2, 16)
    assert bank.model == "12.8V-100Ah"
    assert len(bank.battery_list) == 4
    assert len({b.serial for b in bank.battery_list}) == 4
    for battery in bank.battery_list:
        assert len(battery.cell_voltages) == 4
        assert all(3.0 < v < 3.6 for v in battery.cell_voltages)
        assert battery.voltage == pytest.approx(sum(battery.cell_voltages), abs=0.05)
    cells = [v for b in bank.battery_list for v in b.cell_voltages]
    assert bank.min_cell_voltage == pytest.approx(min(cells), abs=0.002)
    assert bank.max_cell_voltage == pytest.approx(max(cells), abs=0.002)


def test_history_and_settings(bms: DaemonUnderTest) -> None:
    with bms.session() as c:
        history = bms.run(c.history())
        settings = bms.run(c.settings())
    assert history.min_bank_voltage is not None
    assert history.min_bank_voltage <= (history.max_bank_voltage or 0)
    assert set(settings) == set(codec.SETTING_CODECS)
    assert "pin" not in settings
    assert settings["discharge_floor"] == 10.0
    assert settings["bluetooth"] is True


def test_vereg_reads_the_same_figures_as_the_status(bms: DaemonUnderTest) -> None:
    """Read status, VE-Reg, status; compare when the two statuses agree (nothing changed
    in between), so a tick of the control loop in the middle cannot fail the test."""

    async def compare(c: SmallBmsClient) -> tuple[codec.StatusView, dict[str, float | None]]:
        for _ in range(20):
            before = await c.status()
            vereg = await c.vereg()
            after = await c.status()
            if before == after:
                return before, vereg
        raise AssertionError("the status never held still for one VE-Reg read")

    with bms.session() as c:
        status, vereg = bms.run(compare(c))
    assert vereg["voltage"] == pytest.approx(status.voltage, abs=0.005)
    assert vereg["current"] == pytest.approx(status.current, abs=0.0005)
    assert vereg["power"] == pytest.approx(status.power, abs=0.5)
    assert vereg["temperature"] == pytest.approx((status.temperature or 0) + 273.15, abs=0.005)
    if status.soc is None:
        assert vereg["soc"] is None
    else:
        assert vereg["soc"] == pytest.approx(status.soc, abs=0.005)
    if status.consumed_ah is None:
        assert vereg["consumed_ah"] is None
    else:  # Victron publishes consumed Ah as a negative number
        assert vereg["consumed_ah"] == pytest.approx(-status.consumed_ah, abs=0.05)
    if status.ttg_min is None:
        assert vereg["ttg"] is None
    else:
        assert vereg["ttg"] == pytest.approx(status.ttg_min, abs=0.5)


def test_every_characteristic_has_a_name_and_a_format(bms: DaemonUnderTest) -> None:
    """What nRF Connect shows: a User Description and a Presentation Format on each."""

    async def read_descriptors(c: SmallBmsClient) -> dict[str, tuple[str, bytes]]:
        found: dict[str, tuple[str, bytes]] = {}
        for ch in profile.CHARACTERISTICS.values():
            bleak_char = c.bleak.services.get_characteristic(ch.uuid)
            assert bleak_char is not None, f"{ch.key} ({ch.uuid}) is not offered"
            descriptors = {d.uuid: d for d in bleak_char.descriptors}
            user = descriptors[profile.USER_DESCRIPTION_UUID]
            fmt = descriptors[profile.PRESENTATION_FORMAT_UUID]
            name = bytes(await c.bleak.read_gatt_descriptor(user)).decode()
            found[ch.key] = (name, bytes(await c.bleak.read_gatt_descriptor(fmt)))
        return found

    with bms.session() as c:
        found = bms.run(read_descriptors(c))
    for key, ch in profile.CHARACTERISTICS.items():
        assert found[key] == (ch.description, ch.presentation.encode())


def test_protected_characteristics_demand_an_encrypted_link(bms: DaemonUnderTest) -> None:
    """Without pairing, BlueZ refuses the encrypted characteristics before the daemon sees
    the request; Device Information stays readable."""

    async def unpaired() -> tuple[bytes, dict[str, str]]:
        async with BleakClient(bms.address, bluez={"adapter": CENTRAL}, timeout=10) as raw:
            await raw.unpair()  # forget any bond an earlier test made on this adapter
        refused: dict[str, str] = {}
        async with BleakClient(bms.address, bluez={"adapter": CENTRAL}, timeout=10) as raw:
            model = bytes(await raw.read_gatt_char(profile.uuid_of("model")))
            for key in ("status", "auth", "vereg.soc", "history"):
                try:
                    await raw.read_gatt_char(profile.uuid_of(key))
                except BleakError as exc:
                    refused[key] = str(exc)
        return model, refused

    model, refused = bms.run(unpaired())
    assert model == b"smallBMS NG"
    assert list(refused) == ["status", "auth", "vereg.soc", "history"]
    assert all("paired" in reason.lower() for reason in refused.values()), refused


def test_scan_decodes_the_instant_readout_with_the_key(bms: DaemonUnderTest) -> None:
    with bms.session() as c:
        key = bms.run(c.readout_key())
        status = bms.run(c.status())
    assert key == read_key(FileStore(bms.state_dir))
    found = bms.run(scan(duration=1.5, adapter=CENTRAL, key=key))
    ours = [r for r in found if r.address == bms.address]
    assert ours, found
    assert ours[0].name == bms.name
    assert ours[0].readout is not None, ours[0].readout_note
    assert ours[0].readout["voltage"] == pytest.approx(status.voltage, abs=0.05)
    assert ours[0].readout["allowed_to_discharge"] is True


def test_cli_status_json(bms: DaemonUnderTest) -> None:
    result = bms.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert 24.0 < status["voltage"] < 29.0
    assert status["allowed_to_discharge"] is True
    assert status["outputs"] == {"load": True, "charger": True, "prealarm": False}
    assert result.stderr == ""


def test_cli_reads_in_text_and_json(bms: DaemonUnderTest) -> None:
    bank = bms.cli("bank")
    assert bank.returncode == 0, bank.stderr
    assert "2 in series x 2 in parallel" in bank.stdout
    assert bank.stdout.count("cells: ") == 4
    history = bms.cli("history", "--json")
    assert history.returncode == 0, history.stderr
    assert "charge_cycles" in json.loads(history.stdout)
    one = bms.cli("get", "discharge_floor", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == 10.0
    every = bms.cli("get")
    assert every.returncode == 0, every.stderr
    assert "tail_current" in every.stdout
    assert "4 %" in every.stdout


def test_cli_scan_lists_the_daemon(bms: DaemonUnderTest) -> None:
    result = bms.cli("scan", "--timeout", "1.5", "--json", device=False, pin=None)
    assert result.returncode == 0, result.stderr
    devices = json.loads(result.stdout)
    assert [d["address"] for d in devices] == [bms.address]
    assert devices[0]["readout"] is None
    assert "encrypted" in devices[0]["readout_note"]


def test_cli_unknown_device_says_so(bms: DaemonUnderTest) -> None:
    result = bms.cli("--device", "11:22:33:44:55:66", "--timeout", "1", "status", device=False)
    assert result.returncode == 3
    assert result.stderr.startswith("smallbms-client: no device '11:22:33:44:55:66' found")
    assert "Traceback" not in result.stderr


def test_every_readable_characteristic_reads_and_decodes(bms: DaemonUnderTest) -> None:
    """Walks the profile table, so a characteristic added there is read here too."""
    decoders = {
        "manufacturer": codec.decode_text, "model": codec.decode_text,
        "serial": codec.decode_text, "firmware": codec.decode_text,
        "battery_level": codec.decode_battery_level,
        "auth": security.decode_challenge,
        "status": codec.decode_status, "bank": codec.decode_bank,
        "battery": codec.decode_battery, "history": codec.decode_history,
        "source_notes": codec.decode_source_notes,
        **{key: codec.SETTING_CODECS[name].decode
           for name, key in profile.SETTING_KEYS.items()},
        **{key: (lambda d, f=fmt, s=scale: codec.decode_vereg(f, s, d))
           for key, _reg, _desc, _pres, fmt, scale in profile.VEREG_REGISTERS},
    }
    readable = [key for key, ch in profile.CHARACTERISTICS.items() if ch.readable]
    assert sorted(readable) == sorted(decoders)
    c = bms.shared()
    bms.run(c.authenticate())
    for key in readable:
        decoders[key](bms.run(c.read_raw(key)))  # raises CodecError on a malformed value


def test_cli_finds_the_device_by_name_or_alone(bms: DaemonUnderTest) -> None:
    by_name = bms.cli("--device", bms.name, "get", "mode", "--json", device=False)
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout) is True
    alone = bms.cli("get", "mode", device=False, adapter=None)  # the only smallbms in range
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.split() == ["mode", "on"]


def test_cli_unknown_adapter_says_so(bms: DaemonUnderTest) -> None:
    result = bms.cli("--adapter", "hci9", "status", adapter=None)
    assert result.returncode == 7
    assert result.stderr.startswith("smallbms-client: adapter 'hci9' not found; check --adapter")
