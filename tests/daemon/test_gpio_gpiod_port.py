"""GpiodPort over a fake character device: what it requests, read-back, release.

The real kernel path needs root, configfs and a kernel with gpio-sim: the e2e gpio case runs it
in a qemu guest (docs/testing.md).  In the fast suite this fake stands in for
``gpiod.request_lines`` only, keeping the real ``gpiod`` settings and enums.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gpiod
import pytest
from gpiod.line import Direction, Drive, Value

from bms_daemon.config import parse
from bms_daemon.gpio import GpioError, float_outputs, open_port


class FakeRequest:
    def __init__(self, config: dict[Any, Any]) -> None:
        self.config: dict[Any, Any] = {}
        for key, settings in config.items():
            for line in key if isinstance(key, tuple) else (key,):
                self.config[line] = settings
        self.values = dict.fromkeys(self.config, Value.INACTIVE)
        self.stuck: dict[Any, Value] = {}
        self.released = False

    def set_value(self, line: Any, value: Value) -> None:
        if self.released:
            raise OSError("request released")
        self.values[line] = value

    def get_value(self, line: Any) -> Value:
        return self.stuck.get(line, self.values[line])

    def release(self) -> None:
        self.released = True


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[FakeRequest]:
    made: list[FakeRequest] = []

    def request_lines(path: str, config: dict[Any, Any], consumer: str | None = None,
                      **_: Any) -> FakeRequest:
        assert path == str(tmp_path / "gpiochip0")
        assert consumer == "smallbms"
        made.append(FakeRequest(config))
        return made[-1]

    monkeypatch.setattr(gpiod, "request_lines", request_lines)
    (tmp_path / "gpiochip0").touch()
    return made


def _config(tmp_path: Path, extra: str = "") -> Any:
    return parse(f'[gpio]\nbackend = "gpiod"\nchip = "{tmp_path}/gpiochip0"\n{extra}'
                 '[gpio.lines]\nremote = "GPIO23"\n').gpio


def test_requests_every_line_once_outputs_open_source_inactive(
    requests: list[FakeRequest], tmp_path: Path
) -> None:
    port = open_port(_config(tmp_path), tmp_path)
    (request,) = requests
    assert set(request.config) == {17, 27, 22, 24, 25, "GPIO23"}
    for line in (17, 27, 22, 24, 25):
        assert request.config[line].drive == Drive.OPEN_SOURCE
        assert request.config[line].output_value == Value.INACTIVE
    assert request.config["GPIO23"].direction == Direction.INPUT
    assert port.outputs == ("load", "charger", "prealarm", "led_blue", "led_red")


def test_set_reads_back_and_a_stuck_line_is_an_error(
    requests: list[FakeRequest], tmp_path: Path
) -> None:
    port = open_port(_config(tmp_path), tmp_path)
    (request,) = requests
    port.set_output("load", True)
    assert request.values[17] == Value.ACTIVE
    request.stuck[27] = Value.INACTIVE  # e.g. shorted to ground
    with pytest.raises(GpioError, match="charger \\(line 27\\) reads back inactive"):
        port.set_output("charger", True)


def test_a_released_line_is_not_read_back(requests: list[FakeRequest], tmp_path: Path) -> None:
    # On a kernel chip (gpio-sim, e2e gpio case) a line switched to input kept reading its last
    # driven level; on a Pi it reads whatever the wiring pulls it to.  Neither is a fault.
    port = open_port(_config(tmp_path), tmp_path)
    (request,) = requests
    port.set_output("load", True)
    request.stuck[17] = Value.ACTIVE
    port.set_output("load", False)
    assert request.values[17] == Value.INACTIVE


def test_remote_reads_active_as_on(requests: list[FakeRequest], tmp_path: Path) -> None:
    port = open_port(_config(tmp_path), tmp_path)
    (request,) = requests
    assert port.read_remote() is False
    request.values["GPIO23"] = Value.ACTIVE
    assert port.read_remote() is True


def test_close_floats_then_releases(requests: list[FakeRequest], tmp_path: Path) -> None:
    port = open_port(_config(tmp_path), tmp_path)
    (request,) = requests
    port.set_output("load", True)
    port.close()
    assert request.values[17] == Value.INACTIVE
    assert request.released


def test_float_outputs_requests_the_outputs_as_inputs_and_releases(
    requests: list[FakeRequest], tmp_path: Path
) -> None:
    float_outputs(_config(tmp_path), tmp_path)
    (request,) = requests
    assert set(request.config) == {17, 27, 22, 24, 25}
    assert all(s.direction == Direction.INPUT for s in request.config.values())
    assert request.released
