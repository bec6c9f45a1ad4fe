"""GPIO: the three outputs (LOAD, CHARGER, PRE-ALARM), the optional LEDs and the remote input.

``open_port`` builds the configured backend; ``float_outputs`` is the stand-alone "make it safe"
used by ``smallbms float-outputs`` after the daemon has stopped (systemd ExecStopPost).
"""

from __future__ import annotations

from pathlib import Path

from bms_daemon.gpio.base import GpioConfig, GpioError, GpioPort, LineSpec

__all__ = ["GpioConfig", "GpioError", "GpioPort", "LineSpec", "float_outputs", "open_port"]


def _in_state(state_directory: Path, name: str) -> Path | None:
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() else state_directory / path


def open_port(config: GpioConfig, state_directory: Path) -> GpioPort:
    """The backend named in the config; raises ``GpioError`` when its lines cannot be had."""
    if config.backend == "gpiod":
        from bms_daemon.gpio.gpiod import GpiodPort  # noqa: PLC0415 (needs the gpiod package)

        return GpiodPort(config)
    from bms_daemon.gpio.memory import MemoryPort  # noqa: PLC0415

    return MemoryPort(
        config.outputs(),
        remote_connected=config.remote is not None or bool(config.remote_file),
        debounce_s=config.remote_debounce_ms / 1000.0,
        outputs_file=_in_state(state_directory, config.memory_file),
        remote_file=_in_state(state_directory, config.remote_file),
    )


def float_outputs(config: GpioConfig, state_directory: Path) -> None:
    """Release every output of a stopped daemon (raises ``GpioError`` when impossible)."""
    if config.backend == "gpiod":
        from bms_daemon.gpio.gpiod import release_outputs  # noqa: PLC0415

        release_outputs(config)
        return
    from bms_daemon.gpio.memory import float_file  # noqa: PLC0415

    path = _in_state(state_directory, config.memory_file)
    if path is not None:
        float_file(path)
