"""Fixtures for the MQTT tests: a real Mosquitto per test, spies, and daemon processes.

The broker tests skip (with the reason) only when ``mosquitto`` is not installed here; CI
installs it (.ci/run), so there they always run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "daemon"))

from broker import Mosquitto, Spy, mqtt_table
from daemon_harness import DaemonProcess, write_config


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    brokers: list[Mosquitto] = []

    def make(**kwargs: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(brokers)}", **kwargs)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    return make_broker()


@pytest.fixture
def make_spy() -> Iterator[Callable[..., Spy]]:
    spies: list[Spy] = []

    def make(broker: Mosquitto, *args: Any, **kwargs: Any) -> Spy:
        kwargs.setdefault("client_id", f"spy{len(spies)}")
        spy = Spy(broker, *args, **kwargs)
        spies.append(spy)
        return spy

    yield make
    for spy in spies:
        spy.close()


@pytest.fixture
def start_mqtt_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``smallbms run`` with BLE off and the given ``[mqtt]`` table."""
    started: list[DaemonProcess] = []

    def start(broker: Mosquitto, **keys: object) -> DaemonProcess:
        state = tmp_path / "state"
        config = write_config(tmp_path / f"smallbms-{len(started)}.toml", state,
                              "[ble]\nenabled = false\n" + mqtt_table(broker, **keys))
        process = DaemonProcess(state, config, tmp_path / f"notify-{len(started)}")
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()
