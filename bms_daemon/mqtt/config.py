"""The ``[mqtt]`` table: broker, credentials, TLS, topics, Home Assistant discovery, control.

Checked here, as a whole, when the configuration is loaded (``bms_daemon.config`` turns a
``ValueError`` into a one-line problem naming the key).  The password never sits in the config:
``password_file`` names a file holding it (first line), read at each connection attempt so a
rotated password is picked up without a restart.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
INTERVAL_RANGE_S = (1.0, 3600.0)  # measurements published at most this often
KEEPALIVE_RANGE_S = (5, 3600)
# A topic level may not hold the wildcards or be empty; "/" separates levels.
_TOPIC_RE = re.compile(r"^[^#+\x00]+$")
_CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
INSTALL_HINT = "pip install 'smallbms[mqtt]' (the aiomqtt package)"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """The ``[mqtt]`` table; "" means "chosen at start" for the id, topic and name fields."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 0  # 0 = 1883, or 8883 with TLS
    tls: bool = False
    ca_file: str = ""  # "" = the system's CA certificates
    cert_file: str = ""  # client certificate (optional), PEM
    key_file: str = ""  # its private key, PEM
    username: str = ""
    password_file: str = ""  # first line = the password; never the password itself here
    client_id: str = ""  # "" = smallbms-<serial>
    base_topic: str = ""  # "" = smallbms/<serial>
    discovery_prefix: str = "homeassistant"  # "" = no Home Assistant discovery
    device_name: str = ""  # "" = "smallBMS <serial>": the Home Assistant device name
    allow_control: bool = False
    interval_s: float = 5.0  # measurements at most this often; on/off changes at once
    keepalive_s: int = 60

    @property
    def broker_port(self) -> int:
        """The port actually used."""
        if self.port:
            return self.port
        return DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT

    def describe(self) -> str:
        """One line for ``check-config`` and the start-up log (never the password)."""
        if not self.enabled:
            return "disabled"
        parts = [f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.broker_port}"]
        if self.username:
            parts.append(f"as {self.username!r}")
        parts.append(f"topic {self.base_topic or 'smallbms/<serial>'}")
        parts.append(
            f"Home Assistant discovery under {self.discovery_prefix}/"
            if self.discovery_prefix else "no Home Assistant discovery"
        )
        parts.append("control allowed" if self.allow_control else "read-only")
        return ", ".join(parts)


def available() -> bool:
    """Whether the MQTT client library (the ``[mqtt]`` extra) is installed."""
    return importlib.util.find_spec("aiomqtt") is not None


def from_table(table: dict[str, Any]) -> MqttConfig:
    """Build and check the table (already type-checked against the defaults).

    Raises ``ValueError`` with a message that starts with the key, e.g. ``"port: ..."``.
    """
    config = MqttConfig(**table)
    if config.enabled and not config.host.strip():
        raise ValueError("host: must not be empty when enabled = true; e.g. \"192.168.1.10\"")
    if not 0 <= config.port <= 65535:
        raise ValueError(f"port: {config.port} is not a TCP port (1-65535, 0 = default)")
    if (config.cert_file == "") != (config.key_file == ""):
        raise ValueError("cert_file and key_file: give both (client certificate and its key) "
                         "or neither")
    if (config.ca_file or config.cert_file) and not config.tls:
        raise ValueError("tls: set tls = true to use ca_file, cert_file and key_file")
    if config.password_file and not config.username:
        raise ValueError("username: a password_file needs a username")
    if config.client_id and not _CLIENT_ID_RE.match(config.client_id):
        raise ValueError(f"client_id: {config.client_id!r} must be 1-64 letters, digits, "
                         "'_', '.', ':' or '-'")
    for key in ("base_topic", "discovery_prefix"):
        value: str = getattr(config, key)
        if value and (not _TOPIC_RE.match(value) or value.startswith("/")
                      or value.endswith("/") or "//" in value):
            raise ValueError(f"{key}: {value!r} is not a topic prefix (no '#', '+', empty "
                             "levels, or leading/trailing '/'); e.g. \"smallbms/boat\"")
    lo, hi = INTERVAL_RANGE_S
    if not lo <= config.interval_s <= hi:
        raise ValueError(f"interval_s: {config.interval_s:g} s is out of range {lo:g}-{hi:g} s")
    klo, khi = KEEPALIVE_RANGE_S
    if not klo <= config.keepalive_s <= khi:
        raise ValueError(f"keepalive_s: {config.keepalive_s} s is out of range {klo}-{khi} s")
    return config
