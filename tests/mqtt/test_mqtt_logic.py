"""The MQTT side's pure parts, without a broker: payloads, discovery, the newest-wins outbox and
rate limits, the command handler (over a real core), the ``[mqtt]`` table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bms_daemon.config import ConfigError, parse
from bms_daemon.controller import Controller
from bms_daemon.core.bms import Bms
from bms_daemon.core.types import BatteryReading, Inputs, Readings, Status
from bms_daemon.mqtt import discovery, payloads
from bms_daemon.mqtt.control import BURST, CommandHandler
from bms_daemon.mqtt.outbox import Message, Outbox, Throttle, TokenBucket
from bms_daemon.mqtt.topics import Topics

TOPICS = Topics("smallbms/boat", "homeassistant")


def _readings(cell: float = 3.30, batteries: int = 2, current: float = -5.0) -> Readings:
    return Readings(
        tuple(BatteryReading(f"HQ{i:04d}", "12.8V-100Ah", "v1.07", cell * 4, current / batteries,
                             25.0, (cell,) * 4) for i in range(batteries)),
        bank_voltage=cell * 4, bank_current=current)


def _running(cell: float = 3.30, seconds: int = 40) -> tuple[Controller, Status]:
    clock = [0.0]
    controller = Controller(Bms(), lambda: clock[0])
    status = controller.step(None, Inputs(), 0.0)
    for t in range(1, seconds + 1):
        clock[0] = float(t)
        status = controller.step(_readings(cell), Inputs(), float(t))
    return controller, status


# --- payloads -----------------------------------------------------------------------------------
def test_payloads_carry_every_figure_and_never_the_pin() -> None:
    controller, status = _running()
    documents = payloads.for_status(status, controller.history(), controller.settings())
    assert documents["state"]["voltage"] == 13.2
    assert documents["state"]["soc"] is None  # never synchronised: unknown, not 0
    assert documents["outputs"]["soc_known"] is False
    assert documents["outputs"]["allowed_to_discharge"] is True
    assert [len(b["cells"]) for b in documents["cells"]["batteries"]] == [4, 4]
    assert documents["cells"]["batteries"][0]["min_cell_voltage"] == 3.3
    assert "pin" not in documents["settings"]
    assert documents["settings"]["charged_voltage_in_force"] == 14.0  # 3.50 V x 4 in series
    assert "000000" not in json.dumps(documents)


def test_codes_payload_has_the_manuals_title_and_advice() -> None:
    _controller, status = _running(cell=2.70)  # below the cell under-voltage threshold
    codes = payloads.codes(status)
    assert "A-B01" in codes["active"]
    alarm = next(a for a in codes["alarms"] if a["code"] == "A-B01")
    assert alarm["title"] == "Low cell voltage"
    assert alarm["advice"].startswith("Charge the battery")
    assert "A-B01 Low cell voltage" in codes["summary"]
    assert payloads.outputs(status)["allowed_to_discharge"] is False


def test_sensor_noise_below_resolution_gives_identical_bytes() -> None:
    _, status = _running()
    a = payloads.encode(payloads.state(status))
    noisy = status.__class__(**{**{f: getattr(status, f) for f in status.__slots__},
                                "voltage": (status.voltage or 0) + 0.001})
    assert payloads.encode(payloads.state(noisy)) == a


# --- discovery ----------------------------------------------------------------------------------
def _configs(control: bool, shape: tuple[int, ...] = (4, 4)) -> dict[str, Any]:
    device = discovery.Device("SB0123456789", "Boat bank", "1.2.3")
    return discovery.configs(TOPICS, device, shape, control, series=4)  # cells in series


def test_discovery_one_device_unique_ids_and_names_without_the_device_name() -> None:
    configs = {k: v for k, v in _configs(False).items() if v is not None}
    ids = [c["unique_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))
    assert {json.dumps(c["device"], sort_keys=True) for c in configs.values()} == {json.dumps(
        {"identifiers": ["smallbms_SB0123456789"], "name": "Boat bank",
         "manufacturer": discovery.MANUFACTURER, "model": "smallBMS NG",
         "serial_number": "SB0123456789", "sw_version": "1.2.3"}, sort_keys=True)}
    for topic, config in configs.items():
        assert topic.startswith("homeassistant/")
        assert topic.endswith("/config")
        assert not config["name"].startswith("Boat bank")
        assert config["availability_topic"] == "smallbms/boat/status"
        assert config["state_topic"].startswith("smallbms/boat/")
        if config.get("device_class") == "energy":
            assert config["state_class"] == "total_increasing"
            assert config["unit_of_measurement"] == "kWh"
    keys = {topic.split("/")[-2] for topic in configs}
    assert {"battery2_cell4_voltage", "code_e_b11", "charged_energy_kwh", "prealarm",
            "allowed_to_charge", "allowed_to_discharge", "balancer", "active_codes"} <= keys


def test_a_battery_without_cell_figures_gets_its_extremes() -> None:
    configs = {k: v for k, v in _configs(False, shape=(0,)).items() if v is not None}
    keys = {topic.split("/")[-2] for topic in configs}
    assert {"battery1_min_cell_voltage", "battery1_max_cell_voltage"} <= keys
    assert not any("cell1_voltage" in key for key in keys)


def test_discovery_control_variant_replaces_the_read_only_one() -> None:
    read_only, control = _configs(False), _configs(True)
    commands = {c["command_topic"] for c in control.values() if c and "command_topic" in c}
    assert "smallbms/boat/set/mode" in commands
    assert "smallbms/boat/command/factory_reset" in commands
    assert not any(c and "pin" in c.get("command_topic", "") for c in control.values())
    for topic, config in read_only.items():
        if config is not None and topic not in control:
            pytest.fail(f"{topic} would stay when control is allowed")
    removed = [t for t, c in control.items() if c is None]
    assert "homeassistant/binary_sensor/sb0123456789/mode/config" in removed
    number = control["homeassistant/number/sb0123456789/charged_voltage/config"]
    assert (number["min"], number["max"]) == (13.6, 14.4)  # 3.40-3.60 V x 4 cells


# --- outbox, throttle, bucket ---------------------------------------------------------------
def test_outbox_newest_wins_and_is_bounded() -> None:
    box = Outbox(limit=3)
    for i in range(1000):
        box.put(Message("a", str(i).encode()))
        box.put(Message(f"t{i % 5}", b"x"))
    assert len(box) == 3
    assert box.dropped > 0
    kept = [box.pop() for _ in range(3)]
    assert box.pop() is None
    assert Message("a", b"999") in kept


def test_outbox_requeue_never_overrides_a_newer_message() -> None:
    box = Outbox()
    box.put(Message("a", b"new"))
    box.requeue(Message("a", b"old"))
    assert box.pop() == Message("a", b"new")
    box.requeue(Message("b", b"retry"))
    assert box.pop() == Message("b", b"retry")


def test_throttle_holds_changes_until_the_interval_is_over() -> None:
    throttle = Throttle({"state": 5.0})
    assert throttle.offer("state", b"1", 0.0)
    assert not throttle.offer("state", b"1", 10.0)  # unchanged: never sent again
    assert throttle.offer("state", b"2", 10.0)
    assert not throttle.offer("state", b"3", 11.0)  # changed too soon: held
    assert throttle.next_due(11.0) == 4.0
    assert throttle.offer("state", b"4", 15.0)  # the newest goes when due
    assert throttle.offer("outputs", b"on", 15.0)
    assert throttle.offer("outputs", b"off", 15.1)  # no interval: at once
    throttle.forget()
    assert throttle.offer("state", b"4", 15.2)  # after a reconnection: everything again
    assert not throttle.due("state", 16.0)  # not even rendered before 20.2 ...
    assert throttle.next_due(16.0) == pytest.approx(4.2)  # ... but woken up then
    assert throttle.due("state", 20.2)
    assert throttle.next_due(20.2) is None  # rendered: nothing owed (no busy wake-ups)
    assert throttle.due("outputs", 16.0)


def test_token_bucket_refuses_a_flood_and_recovers() -> None:
    bucket = TokenBucket(3, 1.0)
    assert [bucket.allow(0.0) for _ in range(5)] == [True, True, True, False, False]
    assert bucket.allow(1.0)
    assert not bucket.allow(1.0)


# --- commands through the same validation as BLE --------------------------------------------
def _handler() -> tuple[CommandHandler, Controller]:
    controller, _ = _running()
    return CommandHandler(controller, TOPICS), controller


def _send(handler: CommandHandler, topic: str, payload: bytes, *, retain: bool = False,
          now: float = 0.0) -> Any:
    return handler.handle(f"smallbms/boat/{topic}", payload, retain=retain, now=now)


def test_commands_accepted_and_refused() -> None:
    handler, controller = _handler()
    assert _send(handler, "set/tail_current", b"5").accepted
    assert controller.settings().tail_current == 5.0
    answer = _send(handler, "set/charged_voltage", b"15")  # 3.75 V per cell in series
    assert not answer.accepted
    assert "per cell" in answer.message
    assert _send(handler, "set/charged_voltage", b"default").accepted
    assert controller.settings().charged_voltage is None
    assert _send(handler, "set/mode", b"OFF").accepted
    assert controller.settings().mode is False
    assert "cannot be changed over MQTT" in _send(handler, "set/pin", b"123456").message
    assert controller.settings().pin == "000000"
    assert _send(handler, "command/set_soc", b"55").accepted
    assert not _send(handler, "command/reset_history", b"").accepted  # PRESS needed
    assert _send(handler, "command/reset_history", b"PRESS").accepted
    assert _send(handler, "state", b"x") is None  # not a command topic
    assert handler.handle("elsewhere/set/mode", b"ON", retain=False, now=0.0) is None


def test_retained_and_flooding_commands_change_nothing() -> None:
    handler, controller = _handler()
    before = controller.settings()
    assert "retained" in _send(handler, "set/tail_current", b"6", retain=True).message
    answers = [_send(handler, "set/tail_current", b"abc", now=1.0) for _ in range(BURST + 5)]
    assert all(not a.accepted for a in answers)
    assert sum("burst" in a.message for a in answers) == 5
    assert controller.settings() == before


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"9" * 10_000, b"{}", b"nan", b"1e999", b"-1",
                                     b"true", b"11 %"])
def test_bad_values_are_refused_with_a_reason(payload: bytes) -> None:
    handler, controller = _handler()
    before = controller.settings()
    answer = _send(handler, "set/tail_current", payload)
    assert not answer.accepted
    assert answer.message
    assert len(answer.value) <= 64
    assert controller.settings() == before


# --- [mqtt] in the config file --------------------------------------------------------------
@pytest.mark.parametrize(("table", "problem"), [
    ("port = 70000", "[mqtt] port: 70000 is not a TCP port"),
    ("cert_file = \"/c.pem\"\ntls = true", "give both"),
    ("ca_file = \"/ca.pem\"", "set tls = true"),
    ("password_file = \"/p\"", "needs a username"),
    ("base_topic = \"smallbms/#\"", "[mqtt] base_topic"),
    ("discovery_prefix = \"/ha/\"", "[mqtt] discovery_prefix"),
    ("interval_s = 0.1", "[mqtt] interval_s: 0.1 s is out of range"),
    ("password = \"secret\"", "[mqtt] password: unknown key; did you mean 'password_file'?"),
    ("client_id = \"two words\"", "[mqtt] client_id"),
])
def test_bad_mqtt_tables_are_one_line_problems(table: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(f"[mqtt]\nenabled = true\n{table}\n", "bms.toml")
    assert problem in str(raised.value)
    assert str(raised.value).startswith("bms.toml: ")


def test_mqtt_is_off_by_default_and_described() -> None:
    config = parse("", "x")
    assert not config.mqtt.enabled
    on = parse("[mqtt]\nenabled = true\nhost = \"broker\"\ntls = true\nusername = \"bms\"\n"
               "allow_control = true\n", "x")
    assert on.mqtt.broker_port == 8883
    assert on.mqtt.describe() == ("mqtts://broker:8883, as 'bms', topic smallbms/<serial>, "
                                  "Home Assistant discovery under homeassistant/, control allowed")


def test_check_config_explains_a_missing_mqtt_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bms_daemon import config as config_module  # noqa: PLC0415
    from bms_daemon.mqtt import config as mqtt_config  # noqa: PLC0415

    path = tmp_path / "bms.toml"
    path.write_text("[mqtt]\nenabled = true\n")
    monkeypatch.setattr(mqtt_config, "available", lambda: False)
    parser = __import__("argparse").ArgumentParser()
    config_module.configure(parser)
    assert config_module.main(parser.parse_args([str(path)])) == 2
    assert "pip install 'smallbms[mqtt]'" in capsys.readouterr().err


def test_daemon_runs_without_mqtt_when_the_extra_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bms_daemon import daemon as daemon_module  # noqa: PLC0415
    from bms_daemon.mqtt import config as mqtt_config  # noqa: PLC0415

    config = parse(f'[bms]\nstate_directory = "{tmp_path}"\n[ble]\nenabled = false\n'
                   "[mqtt]\nenabled = true\n", "x")
    monkeypatch.setattr(mqtt_config, "available", lambda: False)
    assert daemon_module.build(config, tmp_path).mqtt is None
    monkeypatch.setattr(mqtt_config, "available", lambda: True)
    assert daemon_module.build(config, tmp_path).mqtt is not None
