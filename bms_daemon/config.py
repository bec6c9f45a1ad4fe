"""The configuration file (TOML): what to run, where to keep state, which pins, BLE, logging.

Every key a file may contain is in the embedded ``defaults.toml``; a file only lists what it
changes.  A file is checked as a whole before anything starts, and every problem is reported as
one line naming the file, the table and the key (``smallbms.toml: [gpio] bakend: unknown key;
did you mean 'backend'?``), so a typo never turns into a silently ignored setting.

``[settings]`` holds *seeds*: they are used on the very first start only, when no settings have
been stored yet.  Afterwards the stored settings (changed over Bluetooth, say) win, so that an
old config file does not undo what the user set on the device.

This module is also the ``smallbms check-config [FILE]`` subcommand.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.resources
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bms_daemon.core.settings import SettingError, Settings
from bms_daemon.gpio.base import (
    BIASES,
    LINE_NAMES,
    MAX_REMOTE_DEBOUNCE_MS,
    GpioConfig,
    LineSpec,
)
from bms_daemon.mqtt import config as mqtt_config
from bms_daemon.mqtt.config import MqttConfig
from bms_daemon.ui.toml_errors import explain as explain_toml

RATE_HZ_RANGE = (0.2, 20.0)  # slower misses the 5 s comms timeout margin; faster only burns CPU
SAVE_INTERVAL_RANGE_S = (5.0, 3600.0)  # bounded SD-card wear vs. SOC lost on a power cut
BLE_NAME_MAX_BYTES = 20  # fits the advertising packet next to the manufacturer data
BACKENDS = ("memory", "gpiod")
VIRTUAL_MODES = ("auto", "on", "off")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "console", "logfmt", "json")
EXIT_BAD_CONFIG = 2
STATE_SUBDIR = "smallbms"
_ADAPTER_RE = re.compile(r"^hci[0-9]{1,2}$")


class ConfigError(ValueError):
    """A configuration problem, in one line a user can act on."""


@dataclass(frozen=True, slots=True)
class BleConfig:
    """The ``[ble]`` table, as the BLE side (gatt.service.BleService) receives it."""

    enabled: bool = True
    adapter: str = "hci0"
    name: str = "smallBMS NG"
    product_id: int = 0xA3EC
    virtual: str = "auto"  # "auto" | "on" | "off"
    vereg: bool = True  # offer Victron's VE-Reg service (pairing only, no PIN: docs/security.md)


@dataclass(frozen=True, slots=True)
class BmsConfig:
    """The ``[bms]`` table; ``state_directory`` "" = chosen at start (see state_directory())."""

    rate_hz: float = 2.0
    state_directory: str = ""
    save_interval_s: float = 2700.0


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """The ``[logging]`` table."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated configuration."""

    bms: BmsConfig = field(default_factory=BmsConfig)
    source: dict[str, Any] = field(default_factory=lambda: {"type": "simulated"})
    gpio: GpioConfig = field(default_factory=GpioConfig)
    ble: BleConfig = field(default_factory=BleConfig)
    settings: dict[str, Any] = field(default_factory=dict)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    origin: str = "<defaults>"

    def state_directory(self, env: Mapping[str, str] | None = None) -> Path:
        """Where state lives: the configured directory, else systemd's ``$STATE_DIRECTORY``,
        else ``~/.local/state/smallbms`` when it can be created, else ``./state``."""
        environ = os.environ if env is None else env
        if self.bms.state_directory:
            return Path(self.bms.state_directory).expanduser()
        systemd_dirs = environ.get("STATE_DIRECTORY", "")
        if systemd_dirs:
            return Path(systemd_dirs.split(":")[0])
        home = environ.get("HOME") or os.path.expanduser("~")
        candidate = Path(home) / ".local" / "state" / STATE_SUBDIR
        if _creatable(candidate):
            return candidate
        return Path.cwd() / "state"

    def state_directory_origin(self, env: Mapping[str, str] | None = None) -> str:
        """Why ``state_directory()`` is what it is, for commands that say which one they used."""
        environ = os.environ if env is None else env
        if self.bms.state_directory:
            return f"[bms] state_directory of {self.origin}"
        if environ.get("STATE_DIRECTORY", ""):
            return "$STATE_DIRECTORY"
        return (f"{self.origin} sets no [bms] state_directory: this user's default; a systemd "
                "service keeps its own in /var/lib/smallbms")

    def seed_settings(self) -> Settings:
        """The settings of a first start: defaults overlaid with the ``[settings]`` seeds."""
        return Settings().with_values(self.settings)


def _creatable(path: Path) -> bool:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def default_table() -> dict[str, Any]:
    """The embedded defaults, as parsed TOML."""
    text = importlib.resources.files("bms_daemon").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


# --- loading ---------------------------------------------------------------------------------
def load_or_report(path: Path | None) -> Config | None:
    """``load`` for a one-shot command: a bad file is said on stderr (None returned), the
    command then exits ``EXIT_BAD_CONFIG``; one wording for every command that reads it."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return None


def load(path: Path | None) -> Config:
    """Read and validate ``path`` (None = the embedded defaults); raises ``ConfigError``."""
    if path is None:
        return from_table({}, "<defaults>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse(text, str(path))


def parse(text: str, origin: str = "<string>") -> Config:
    """Validate TOML text; raises ``ConfigError`` naming ``origin``, the table and the key."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: invalid TOML: {explain_toml(exc, text)}") from None
    return from_table(table, origin)


def from_table(table: Mapping[str, Any], origin: str) -> Config:
    """Validate an already-parsed table against the embedded defaults."""
    try:
        return _build(table, default_table(), origin)
    except _ProblemError as problem:
        raise ConfigError(f"{origin}: {problem}") from None


class _ProblemError(Exception):
    pass


# tables whose keys are fixed but whose values may take several types (checked afterwards)
_UNTYPED_TABLES = frozenset({"gpio.lines"})


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(choices)}"


def _home(key: str, tables: Mapping[str, Any]) -> str:
    """For a key written outside its table: "; it belongs in [bms]" (or "")."""
    for name, table in tables.items():
        if isinstance(table, dict) and key in table:
            return f"; it belongs in [{name}]"
    return ""


def _merge(
    user: Mapping[str, Any], defaults: Mapping[str, Any], where: str, free: frozenset[str]
) -> dict[str, Any]:
    """Defaults overlaid with ``user``; unknown keys and wrong types are problems."""
    merged = dict(defaults)
    for key, value in user.items():
        label = f"[{where}] {key}" if where else f"[{key}]"
        if key not in defaults:
            if where:
                what = "key"
            elif isinstance(value, dict):
                what = "table"
            else:
                label, what = key, "key outside any table"
            raise _ProblemError(f"{label}: unknown {what}"
                                f"{_home(key, defaults) or _suggest(key, list(defaults))}")
        default = defaults[key]
        path = f"{where}.{key}" if where else key
        if path in free:
            if not isinstance(value, dict):
                raise _ProblemError(f"{label}: must be a table")
            merged[key] = {**default, **value}
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise _ProblemError(f"{label}: must be a table")
            merged[key] = _merge(value, default, path, free)
        elif where in _UNTYPED_TABLES:
            merged[key] = value  # checked by the table's own validation
        else:
            merged[key] = _check_type(label, value, default)
    return merged


def _check_type(label: str, value: object, default: object) -> object:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _ProblemError(f"{label}: must be true or false, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _ProblemError(f"{label}: must be a number, not {value!r}")
        return float(value)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _ProblemError(f"{label}: must be a whole number, not {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _ProblemError(f"{label}: must be a string, not {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise _ProblemError(f"{label}: must be a list, not {value!r}")
        return value
    return value


def _one_of(label: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _ProblemError(f"{label}: {value!r} is not one of {', '.join(choices)}{hint}")
    return value


def _in_range(label: str, value: float, bounds: tuple[float, float], unit: str) -> float:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise _ProblemError(f"{label}: {value:g}{unit} is out of range {lo:g}-{hi:g}{unit}")
    return value


def _build(user: Mapping[str, Any], defaults: dict[str, Any], origin: str) -> Config:
    # [source] and [settings] belong to others (the battery source, the core): their keys are
    # checked by create_source and Settings, not against defaults.toml.
    table = _merge(user, defaults, "", frozenset({"source", "settings"}))

    bms = table["bms"]
    bms_config = BmsConfig(
        rate_hz=_in_range("[bms] rate_hz", bms["rate_hz"], RATE_HZ_RANGE, " Hz"),
        state_directory=bms["state_directory"],
        save_interval_s=_in_range(
            "[bms] save_interval_s", bms["save_interval_s"], SAVE_INTERVAL_RANGE_S, " s"
        ),
    )

    # The embedded [source] describes the demo bank; a file that names its own source type
    # describes its source whole (the demo's keys would be unknown to another type, and would
    # turn a plain simulated bank into the demo's day).
    user_source = user.get("source")
    if isinstance(user_source, dict) and "type" in user_source:
        table["source"] = dict(user_source)
    source = dict(table["source"])
    source_type = source.get("type")
    if not isinstance(source_type, str) or not source_type:
        raise _ProblemError("[source] type: missing; e.g. type = \"simulated\"")

    settings = dict(table["settings"])
    try:
        Settings().with_values(settings).check_charged_voltage_fits_a_bank()
    except SettingError as exc:
        raise _ProblemError(f"[settings] {exc}") from None

    ble = table["ble"]
    name_bytes = len(ble["name"].encode("utf-8"))
    if not 0 < name_bytes <= BLE_NAME_MAX_BYTES:
        raise _ProblemError(f"[ble] name: must be 1 to {BLE_NAME_MAX_BYTES} bytes long "
                       f"(it is {name_bytes})")
    if not _ADAPTER_RE.match(ble["adapter"]):
        raise _ProblemError(f"[ble] adapter: {ble['adapter']!r} is not an adapter name like 'hci0'")
    if not 0 <= ble["product_id"] <= 0xFFFF:
        raise _ProblemError(f"[ble] product_id: {ble['product_id']} does not fit 16 bits "
                       "(0x0000-0xFFFF)")
    ble_config = BleConfig(
        enabled=ble["enabled"],
        adapter=ble["adapter"],
        name=ble["name"],
        product_id=ble["product_id"],
        virtual=_one_of("[ble] virtual", ble["virtual"], VIRTUAL_MODES),
        vereg=ble["vereg"],
    )

    logs = table["logging"]
    logging_config = LoggingConfig(
        level=_one_of("[logging] level", logs["level"], LOG_LEVELS),
        format=_one_of("[logging] format", logs["format"], LOG_FORMATS),
    )

    try:
        mqtt = mqtt_config.from_table(table["mqtt"])
    except ValueError as exc:
        raise _ProblemError(f"[mqtt] {exc}") from None

    return Config(
        bms=bms_config,
        source=source,
        gpio=_gpio(table["gpio"]),
        ble=ble_config,
        settings=settings,
        logging=logging_config,
        mqtt=mqtt,
        origin=origin,
    )


def _gpio(gpio: dict[str, Any]) -> GpioConfig:
    backend = _one_of("[gpio] backend", gpio["backend"], BACKENDS)
    if not gpio["chip"]:
        raise _ProblemError("[gpio] chip: must not be empty; e.g. \"gpiochip0\"")
    active_low = gpio["active_low"]
    for name in active_low:
        if name not in LINE_NAMES:
            raise _ProblemError(f"[gpio] active_low: {name!r} is not a line"
                           f"{_suggest(str(name), list(LINE_NAMES))}")
    lines: dict[str, LineSpec] = {}
    seen: dict[int | str, str] = {}
    for name, value in gpio["lines"].items():
        label = f"[gpio.lines] {name}"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _ProblemError(f"{label}: must be a line offset (17) or a line name (\"GPIO17\")")
        if isinstance(value, int) and value < 0:
            raise _ProblemError(f"{label}: line offset {value} is negative")
        if value == "":
            if name in ("load", "charger", "prealarm"):
                raise _ProblemError(f"{label}: the {name} output must be connected to a line")
            continue
        if value in seen:
            raise _ProblemError(f"{label}: line {value!r} is already used by {seen[value]}")
        seen[value] = name
        lines[name] = LineSpec(line=value, active_low=name in active_low)
    return GpioConfig(
        backend=backend,
        chip=gpio["chip"],
        lines=lines,
        remote_bias=_one_of("[gpio] remote_bias", gpio["remote_bias"], BIASES),
        remote_debounce_ms=_in_range(
            "[gpio] remote_debounce_ms",
            gpio["remote_debounce_ms"],
            (0.0, MAX_REMOTE_DEBOUNCE_MS),
            " ms",
        ),
        memory_file=gpio["memory_file"],
        remote_file=gpio["remote_file"],
    )


def source_factory() -> Callable[[Mapping[str, Any]], Any] | None:
    """``bms_daemon.sources.create_source``, or None while that module does not offer it."""
    try:
        module = importlib.import_module("bms_daemon.sources")
    except ImportError:
        return None
    factory = getattr(module, "create_source", None)
    return cast(Callable[[Mapping[str, Any]], Any], factory) if callable(factory) else None


def check_source(config: Config) -> str | None:
    """Build the battery source once to validate ``[source]``; returns a problem or None."""
    create_source = source_factory()
    if create_source is None:
        return None
    try:
        create_source(config.source)
    except (ValueError, TypeError, KeyError) as exc:
        return f"{config.origin}: {source_message(str(exc))}"
    return None


def check_mqtt(config: Config) -> str | None:
    """``[mqtt] enabled`` without the MQTT client installed; the daemon then runs without MQTT."""
    if config.mqtt.enabled and not mqtt_config.available():
        return (f"{config.origin}: [mqtt] enabled = true but the MQTT client is not installed: "
                f"{mqtt_config.INSTALL_HINT}")
    return None


def source_message(message: str) -> str:
    """Name the [source] table once, whether or not the source's message already does."""
    return message if message.startswith(("[source]", "[source.")) else f"[source] {message}"


# --- `smallbms check-config` ------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    """Options of ``smallbms check-config``."""
    parser.description = (
        "Validate a smallbms configuration file and print a summary (exit 0), or the problem "
        "(exit 2). Without FILE, the embedded defaults are shown."
    )
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE",
                        help="TOML configuration file, e.g. /etc/smallbms/smallbms.toml")


def main(args: argparse.Namespace) -> int:
    """Run ``smallbms check-config``."""
    path: Path | None = args.file
    try:
        config = load(path)
    except ConfigError as exc:
        print(f"smallbms: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    problem = check_source(config) or check_mqtt(config)
    if problem:
        print(f"smallbms: error: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"OK: {config.origin}")
    print(summary(config))
    return 0


def _without_keys(value: Any) -> Any:
    """``value`` with every ``key = "…"`` (a device's encryption key) hidden: the summary goes
    to the journal."""
    if isinstance(value, dict):
        return {k: "<hidden>" if k == "key" else _without_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_keys(v) for v in value]
    return value


def summary(config: Config) -> str:
    """A few lines a user can check at a glance (also logged by the daemon at start)."""
    gpio = config.gpio
    lines = " ".join(
        f"{name}={spec.line}{'(active low)' if spec.active_low else ''}"
        for name, spec in gpio.lines.items()
    )
    source_extra = ", ".join(f"{k}={_without_keys(v)!r}" for k, v in config.source.items()
                             if k != "type")
    ble = config.ble
    seeds = ", ".join(f"{k}={v!r}" for k, v in config.settings.items()) or "none"
    return "\n".join([
        f"  state directory: {config.state_directory()}",
        f"  control loop:    {config.bms.rate_hz:g} Hz, figures saved at most every "
        f"{config.bms.save_interval_s:g} s while changing",
        f"  battery source:  {config.source['type']}"
        + (f" ({source_extra})" if source_extra else ""),
        f"  gpio:            {gpio.backend} backend, chip {gpio.chip}: {lines}",
        "  bluetooth:       "
        + (f"enabled on {ble.adapter} as {ble.name!r}, product id 0x{ble.product_id:04X}, "
           f"virtual BlueZ {ble.virtual}" if ble.enabled else "disabled"),
        f"  mqtt:            {config.mqtt.describe()}",
        f"  settings seeds:  {seeds} (first start only)",
        f"  logging:         {config.logging.level}, format {config.logging.format}",
    ])
