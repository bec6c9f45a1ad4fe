"""Control over MQTT against a real Mosquitto: accepted, refused with its reason, retained and
ignored, and bad input (garbage, huge, wrong types, out of range, a flood) changing nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from broker import BASE, Mosquitto, Received, Spy, needs_mosquitto

pytestmark = [needs_mosquitto, pytest.mark.slow]


def _result(spy: Spy, topic: str) -> dict[str, Any]:
    message: Received = spy.wait(f"{BASE}/result", lambda m: m.json()["topic"] == topic)
    assert not message.retain
    return message.json()  # type: ignore[no-any-return]


def _settings(spy: Spy, **expected: object) -> dict[str, Any]:
    """The next settings payload holding ``expected``."""
    message = spy.wait(f"{BASE}/settings",
                       lambda m: all(m.json()[k] == v for k, v in expected.items()))
    return message.json()  # type: ignore[no-any-return]


@pytest.fixture
def controlled(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> tuple[Any, Spy]:
    spy = make_spy(broker, (f"{BASE}/#", "homeassistant/#"))
    daemon = start_mqtt_daemon(broker, allow_control=True)
    spy.wait(f"{BASE}/status", lambda m: m.payload == b"online")
    _settings(spy, tail_current=4.0)
    return daemon, spy


def test_control_entities_are_discovered(controlled: tuple[Any, Spy]) -> None:
    _daemon, spy = controlled
    number = spy.first(None, lambda m: m.payload and "/number/" in m.topic
                       and m.topic.endswith("/tail_current/config"))
    config = number.json()
    assert config["command_topic"] == f"{BASE}/set/tail_current"
    assert (config["min"], config["max"]) == (0.5, 10.0)
    button = spy.first(None, lambda m: m.payload and "/button/" in m.topic
                       and m.topic.endswith("/synchronise/config"))
    assert button.json()["payload_press"] == "PRESS"
    # the read-only variant of the same settings is removed (empty retained config)
    removed = spy.first(None, lambda m: "/sensor/" in m.topic
                        and m.topic.endswith("/tail_current/config"))
    assert removed.payload == b""


def test_accepted_refused_and_retained(controlled: tuple[Any, Spy]) -> None:
    daemon, spy = controlled
    spy.publish(f"{BASE}/set/tail_current", "5.5")
    answer = _result(spy, "set/tail_current")
    assert answer["accepted"], answer
    _settings(spy, tail_current=5.5)
    daemon.wait_log("setting_changed", setting="tail_current")

    spy.publish(f"{BASE}/set/tail_current", "50")
    answer = _result(spy, "set/tail_current")
    assert not answer["accepted"]
    assert "out of range 0.5-10%" in answer["message"]

    spy.publish(f"{BASE}/set/discharge_floor", "30")  # above the low SOC warning (20 %)
    answer = _result(spy, "set/discharge_floor")
    assert not answer["accepted"]
    assert "low_soc_warning" in answer["message"]

    spy.publish(f"{BASE}/set/pin", "123456")
    assert "cannot be changed over MQTT" in _result(spy, "set/pin")["message"]

    spy.publish(f"{BASE}/set/tail_current", "7", retain=True)
    answer = _result(spy, "set/tail_current")
    assert not answer["accepted"]
    assert "retained" in answer["message"]

    spy.publish(f"{BASE}/set/mode", "OFF")
    assert _result(spy, "set/mode")["accepted"]
    _settings(spy, mode=False)
    spy.wait(f"{BASE}/outputs", lambda m: m.json()["mode"] is False
             and m.json()["allowed_to_discharge"] is False)

    spy.publish(f"{BASE}/command/synchronise", "PRESS")
    assert _result(spy, "command/synchronise")["accepted"]
    spy.wait(f"{BASE}/state", lambda m: m.json()["soc"] == 100.0)

    assert daemon.terminate() == 0
    assert spy.latest(f"{BASE}/settings").json()["tail_current"] == 5.5  # type: ignore[union-attr]


def test_retained_command_is_not_acted_on_at_start(
    broker: Mosquitto, make_spy: Callable[..., Spy], start_mqtt_daemon: Callable[..., Any]
) -> None:
    spy = make_spy(broker, (f"{BASE}/#",))
    spy.publish(f"{BASE}/set/tail_current", "9", retain=True)  # left on the broker earlier
    daemon = start_mqtt_daemon(broker, allow_control=True)
    answer = _result(spy, "set/tail_current")
    assert not answer["accepted"]
    assert "retained" in answer["message"]
    assert _settings(spy)["tail_current"] == 4.0
    assert not any(e.get("event") == "setting_changed" for e in daemon.log)
    assert daemon.terminate() == 0


BAD_INPUT = [
    ("set/tail_current", b"\xff\xfe\x00garbage"),
    ("set/tail_current", b"9" * 100_000),
    ("set/tail_current", b"{\"value\": 5}"),
    ("set/tail_current", b"nan"),
    ("set/tail_current", b"1e999"),
    ("set/tail_current", b"-3"),
    ("set/charged_voltage", b"99"),
    ("set/mode", b"maybe"),
    ("set/no_such_setting", b"1"),
    ("command/factory_reset", b"yes please"),
    ("command/set_soc", b"150"),
    ("command/set_soc", b"[]"),
    ("command/no_such_command", b"PRESS"),
    ("set/tail_current", b""),
]


def test_bad_input_changes_nothing(controlled: tuple[Any, Spy]) -> None:
    daemon, spy = controlled
    before = spy.latest(f"{BASE}/settings").json()  # type: ignore[union-attr]
    for topic, payload in BAD_INPUT:
        spy.publish(f"{BASE}/{topic}", payload)
        answer = _result(spy, topic)
        assert not answer["accepted"], (topic, payload, answer)
        assert "burst" not in answer["message"]  # refused for what it is, not for the rate
    # a flood: the first few are handled, the rest refused; the daemon keeps running
    for i in range(200):
        spy.publish(f"{BASE}/set/low_soc_warning", str(150 + i))
    spy.wait(f"{BASE}/result", lambda m: "burst" in m.json()["message"])
    spy.publish(f"{BASE}/set/tail_current", "abc")  # still answering after the flood
    assert not _result(spy, "set/tail_current")["accepted"]
    assert not any(e.get("event") == "setting_changed" for e in daemon.log)
    assert daemon.proc.poll() is None
    assert daemon.terminate() == 0
    after = spy.latest(f"{BASE}/settings").json()  # type: ignore[union-attr]
    assert after == before
