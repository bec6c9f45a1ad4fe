"""The libgpiod 2.x backend (PyPI ``gpiod``), for a real Raspberry Pi.

Outputs are requested **open-source** (``Drive.OPEN_SOURCE``): active drives the pin high,
inactive releases it (the kernel emulates open-source on the Pi by switching the pin to input).
So "floating" in the manual is a released pin here, and a dead process leaves released pins
behind (with ``dtparam=strict_gpiod``).  A line configured active-low is requested
**open-drain** instead (active pulls the pin low, inactive releases it): inactive is released
whatever the polarity, for driver stages that want a low to switch on (with a pull-up).

The remote input gets the configured bias and the kernel's debounce.  ``gpiod`` is imported
inside the functions, so the rest of smallbms (and ``smallbms --help``) runs without it.
"""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path
from typing import Any

from bms_daemon.gpio.base import REMOTE, GpioConfig, GpioError, LineSpec

CONSUMER = "smallbms"
DEV = Path("/dev")


def _gpiod() -> Any:
    try:
        import gpiod  # noqa: PLC0415  (lazy: only the Pi needs it)
    except ImportError as exc:
        raise GpioError(
            "the gpiod backend needs the gpiod package (pip install 'smallbms[gpio]')"
        ) from exc
    return gpiod


def resolve_chip(chip: str) -> str:
    """A chip path from ``/dev/gpiochipN``, ``gpiochipN`` or a chip label (``pinctrl-rp1``).

    Labels survive the renumbering between Pi models and kernels (the Pi 5 header chip was
    ``gpiochip4`` on older images and ``gpiochip0`` on newer ones).
    """
    if chip.startswith("/"):
        return chip
    if (DEV / chip).exists():
        return str(DEV / chip)
    gpiod = _gpiod()
    for path in sorted(DEV.glob("gpiochip*")):
        with contextlib.suppress(OSError), gpiod.Chip(str(path)) as handle:
            if handle.get_info().label == chip:
                return str(path)
    raise GpioError(f"GPIO chip {chip!r} not found (neither /dev/{chip} nor a chip label)")


def line_settings(name: str, spec: LineSpec, config: GpioConfig) -> Any:
    """The gpiod ``LineSettings`` for one of our lines (pure apart from the import)."""
    gpiod = _gpiod()
    from gpiod.line import Bias, Direction, Drive, Value  # noqa: PLC0415

    if name == REMOTE:
        bias = {
            "pull_down": Bias.PULL_DOWN,
            "pull_up": Bias.PULL_UP,
            "disabled": Bias.DISABLED,
            "as_is": Bias.AS_IS,
        }[config.remote_bias]
        return gpiod.LineSettings(
            direction=Direction.INPUT,
            bias=bias,
            active_low=spec.active_low,
            debounce_period=datetime.timedelta(milliseconds=config.remote_debounce_ms),
        )
    return gpiod.LineSettings(
        direction=Direction.OUTPUT,
        drive=Drive.OPEN_DRAIN if spec.active_low else Drive.OPEN_SOURCE,
        active_low=spec.active_low,
        output_value=Value.INACTIVE,
    )


class GpiodPort:
    """All our lines in one request on one chip, held until ``close``."""

    def __init__(self, config: GpioConfig) -> None:
        gpiod = _gpiod()
        from gpiod.line import Value  # noqa: PLC0415

        self._active = Value.ACTIVE
        self._inactive = Value.INACTIVE
        self._lines = dict(config.lines)
        self._names = tuple(config.outputs())
        request_config = {
            spec.line: line_settings(name, spec, config) for name, spec in self._lines.items()
        }
        try:
            self._request = gpiod.request_lines(
                resolve_chip(config.chip), config=request_config, consumer=CONSUMER
            )
        except (OSError, ValueError) as exc:
            raise GpioError(f"cannot request GPIO lines on {config.chip}: {exc}") from exc

    @property
    def outputs(self) -> tuple[str, ...]:
        return self._names

    def set_output(self, name: str, active: bool) -> None:
        line = self._lines[name].line
        try:
            if not active:  # released: the level is the wiring's, see GpioPort.set_output
                self._request.set_value(line, self._inactive)
                return
            self._request.set_value(line, self._active)
            readback = self._request.get_value(line)
        except (OSError, ValueError) as exc:
            raise GpioError(f"output {name} (line {line}): {exc}") from exc
        if readback != self._active:
            raise GpioError(
                f"output {name} (line {line}) reads back {readback.name.lower()} after being "
                "driven active"
            )

    def read_remote(self) -> bool:
        spec = self._lines.get(REMOTE)
        if spec is None:
            return True
        try:
            return bool(self._request.get_value(spec.line) == self._active)
        except (OSError, ValueError) as exc:
            raise GpioError(f"remote input (line {spec.line}): {exc}") from exc

    def float_outputs(self) -> None:
        for name in self._names:
            with contextlib.suppress(OSError, ValueError):
                self._request.set_value(self._lines[name].line, self._inactive)

    def close(self) -> None:
        self.float_outputs()
        with contextlib.suppress(OSError, ValueError):
            self._request.release()


def release_outputs(config: GpioConfig) -> None:
    """Float the outputs of a daemon that is gone (``smallbms float-outputs``).

    Requests each output line as an input with no bias change and releases it: whatever a
    crashed process left behind, the pin ends released.  Fails if the daemon still holds them
    (the kernel grants a line to one request at a time).
    """
    gpiod = _gpiod()
    from gpiod.line import Bias, Direction  # noqa: PLC0415

    settings = gpiod.LineSettings(direction=Direction.INPUT, bias=Bias.AS_IS)
    lines = [spec.line for spec in config.outputs().values()]
    try:
        request = gpiod.request_lines(
            resolve_chip(config.chip), config={tuple(lines): settings}, consumer=CONSUMER
        )
    except (OSError, ValueError) as exc:
        raise GpioError(f"cannot release GPIO lines on {config.chip}: {exc}") from exc
    request.release()
