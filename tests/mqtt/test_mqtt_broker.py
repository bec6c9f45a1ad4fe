"""``smallbms run`` against a real Mosquitto: discovery, state, availability, last will, birth.

A subscriber sees what Home Assistant would: retained discovery configs under
``homeassistant/``, retained JSON state topics under the base topic, ``online`` once running,
``offline`` after a clean stop and (as the broker's last will) after SIGKILL.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest
from broker import BASE, Mosquitto, Received, Spy, needs_mosquitto

pytestmark = [needs_mosquitto, pytest.mark.slow]

DISCOVERY = "homeassistant/#"


def test_discovery_describes_one_complete_device(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> None:
    spy = make_spy(broker, (DISCOVERY, f"{BASE}/#"))
    daemon = start_mqtt_daemon(broker)
    daemon.wait_log("mqtt_discovery_published")
    assert spy.wait(f"{BASE}/status").payload == b"online"
    state = spy.wait(f"{BASE}/state", lambda m: m.json()["voltage"] is not None).json()
    assert 10.0 < state["voltage"] < 60.0
    configs = {m.topic: m.json() for m in spy.received
               if m.topic.startswith("homeassistant/") and m.payload}
    assert configs, "no discovery config"
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    devices = {c["device"]["identifiers"][0] for c in configs.values()}
    assert len(devices) == 1  # one device, every entity on it
    device = next(iter(configs.values()))["device"]
    assert device["model"] == "smallBMS NG"
    assert device["manufacturer"]
    assert device["sw_version"]
    assert device["serial_number"]
    by_key = {topic.split("/")[-2]: config for topic, config in configs.items()}
    soc = by_key["soc"]
    assert soc["device_class"] == "battery"
    assert soc["unit_of_measurement"] == "%"
    assert soc["state_topic"] == f"{BASE}/state"
    assert soc["availability_topic"] == f"{BASE}/status"
    energy = by_key["charged_energy_kwh"]
    assert (energy["device_class"], energy["state_class"], energy["unit_of_measurement"]) == (
        "energy", "total_increasing", "kWh")
    assert by_key["code_a_b01"]["entity_category"] == "diagnostic"
    assert "/binary_sensor/" in next(t for t in configs if t.endswith("/allowed_to_charge/config"))
    # read-only by default: no command topics anywhere
    assert not any("command_topic" in c for c in configs.values())
    # every state topic is retained and carries what the issue lists
    outputs = spy.wait(f"{BASE}/outputs").json()
    assert {"load", "charger", "prealarm", "allowed_to_charge", "allowed_to_discharge",
            "mode", "remote", "balancer", "soc_known"} <= set(outputs)
    codes = spy.wait(f"{BASE}/codes").json()
    assert {"active", "warnings", "alarms", "errors"} <= set(codes)
    history = spy.wait(f"{BASE}/history").json()
    assert "charged_energy_kwh" in history
    settings = spy.wait(f"{BASE}/settings").json()
    assert "pin" not in settings
    assert settings["tail_current"] == 4.0
    cells = spy.wait(f"{BASE}/cells", lambda m: bool(m.json()["batteries"])).json()
    assert cells["batteries"][0]["cells"]
    # a late subscriber gets the retained last values at once
    late = make_spy(broker, (f"{BASE}/#",))
    for name in ("status", "state", "outputs", "codes", "history", "settings", "cells"):
        assert late.first(f"{BASE}/{name}").retain
    assert daemon.terminate() == 0


def test_clean_stop_publishes_offline(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> None:
    spy = make_spy(broker, (f"{BASE}/status",))
    daemon = start_mqtt_daemon(broker, discovery_prefix="")
    assert spy.wait(f"{BASE}/status").payload == b"online"
    assert daemon.terminate() == 0
    assert spy.wait(f"{BASE}/status").payload == b"offline"
    daemon.wait_log("mqtt_offline_published")


def test_last_will_after_sigkill(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> None:
    spy = make_spy(broker, (f"{BASE}/status",))
    daemon = start_mqtt_daemon(broker, discovery_prefix="")
    assert spy.wait(f"{BASE}/status").payload == b"online"
    daemon.terminate(signum=signal.SIGKILL)
    offline: Received = spy.wait(f"{BASE}/status")
    assert offline.payload == b"offline"
    late = make_spy(broker, (f"{BASE}/status",))
    retained = late.wait(f"{BASE}/status")
    assert (retained.payload, retained.retain) == (b"offline", True)


def test_home_assistant_birth_sends_discovery_again(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> None:
    daemon = start_mqtt_daemon(broker)
    daemon.wait_log("mqtt_discovery_published", why="connected")
    spy = make_spy(broker, ("homeassistant/sensor/+/soc/config",))
    first = spy.wait(None)
    assert first.retain  # the retained copy, delivered on subscription
    spy.publish("homeassistant/status", "online")  # Home Assistant (re)started
    daemon.wait_log("mqtt_home_assistant_online")
    daemon.wait_log("mqtt_discovery_published", why="home_assistant_online")
    again = spy.wait(first.topic, lambda m: not m.retain)  # sent live, after the birth
    assert again.json() == first.json()
    spy.publish("homeassistant/status", "offline")  # Home Assistant's own last will: no answer
    assert daemon.terminate() == 0
    answers = [e for e in daemon.log if e.get("event") == "mqtt_discovery_published"
               and e.get("why") == "home_assistant_online"]
    assert len(answers) == 1
